"""Files written atomically: readers see the old file or the new one, never half of it.

Every file the project writes (cartridges, WAVs, checkpoints, run records, rankings, reports)
goes through :func:`atomic_write_bytes`: a temporary file in the same folder, fsync, rename.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import DX7Error


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; when the block ends normally it is fsynced and
    renamed onto ``path``, otherwise removed (for writers that stream, e.g. a long WAV)."""
    path = Path(path)
    target_dir = path.parent if str(path.parent) else Path(".")
    if not target_dir.is_dir():
        raise DX7Error("cannot write: the folder does not exist", str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=target_dir)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
