"""The patch library: every imported voice once, with where it came from, in SQLite.

The library lives in a data home (:func:`resolve_home`): ``--home PATH``, else the environment
variable ``DX7TOOLS_HOME``, else the user's data directory (``platformdirs``). Its index is
``library.sqlite`` there. Voices are identified by the SHA-256 of their 155 VCED bytes (the name
counts), so importing the same cartridge twice adds provenance, not voices. Every import is one
SQLite transaction: it lands whole or not at all.
"""

from __future__ import annotations

import fnmatch
import os
import sqlite3
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from .errors import DX7Error
from .sysex import Cartridge, read_file
from .voice import Voice

HOME_ENV = "DX7TOOLS_HOME"
LIBRARY_FILE = "library.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS voices (
    id        INTEGER PRIMARY KEY,
    hash      TEXT NOT NULL UNIQUE,
    name      TEXT NOT NULL,
    algorithm INTEGER NOT NULL,
    feedback  INTEGER NOT NULL,
    vced      BLOB NOT NULL,
    added     TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS sources (
    voice_id INTEGER NOT NULL REFERENCES voices(id),
    file     TEXT NOT NULL,
    bank     INTEGER NOT NULL,
    slot     INTEGER NOT NULL,
    UNIQUE (voice_id, file, bank, slot)
);
CREATE INDEX IF NOT EXISTS voices_algorithm ON voices(algorithm);
"""


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """The data home: ``home`` if given, else ``$DX7TOOLS_HOME``, else the user data directory."""
    if home is None or str(home) == "":
        home = os.environ.get(HOME_ENV) or None
    if home is None:
        import platformdirs

        return Path(platformdirs.user_data_dir("dx7tools", appauthor=False))
    return Path(home).expanduser()


@dataclass(frozen=True)
class Source:
    """Where a library voice was read: file, bank (from 0) and slot (0-31)."""

    file: str
    bank: int
    slot: int

    def __str__(self) -> str:
        return f"{self.file} bank {self.bank + 1} slot {self.slot + 1}"


@dataclass(frozen=True)
class LibraryVoice:
    """A voice in the library, with its id and provenance."""

    id: int
    voice: Voice
    sources: tuple[Source, ...]

    @property
    def name(self) -> str:
        return self.voice.name

    def to_dict(self) -> dict:
        """The ``list --json`` row: id, name, algorithm (1-32), ratios, fixed_hz, feedback, sources."""
        return {
            "id": self.id,
            **self.voice.to_dict(include_parameters=False),
            "source": str(self.sources[0]) if self.sources else None,
            "sources": [{"file": s.file, "bank": s.bank + 1, "slot": s.slot + 1} for s in self.sources],
        }


@dataclass
class ImportReport:
    """What an import did. ``failed`` lists files skipped with ``skip_bad`` (one line each)."""

    files: int = 0
    voices_read: int = 0
    new: int = 0
    duplicates: int = 0
    ids: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "voices_read": self.voices_read,
            "new": self.new,
            "duplicates": self.duplicates,
            "ids": self.ids,
            "warnings": self.warnings,
            "failed": self.failed,
        }


CARTRIDGE_SUFFIXES = (".syx", ".sysex", ".dx7", ".bnk", ".bin")
"""File name endings that a ``recursive`` import picks up inside folders (case-insensitive)."""


def expand_paths(paths: Iterable[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """Files to import: the paths themselves, and with ``recursive`` every cartridge-like file
    (see :data:`CARTRIDGE_SUFFIXES`) under a folder. Files named explicitly are read whatever
    their name."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            if not recursive:
                raise DX7Error("is a directory (use --recursive to import every cartridge file in it)", str(p))
            out.extend(
                sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in CARTRIDGE_SUFFIXES
                )
            )
        else:
            out.append(p)
    return out


class Library:
    """The SQLite patch library in a data home.

    >>> lib = Library("/tmp/dx7home")           # doctest: +SKIP
    >>> report = lib.import_files(["rom1a.syx"])  # doctest: +SKIP
    >>> lib.get("STRINGS 1").voice.algorithm      # doctest: +SKIP
    2
    """

    def __init__(self, home: str | os.PathLike | None = None):
        self.home = resolve_home(home)
        self.path = self.home / LIBRARY_FILE

    # -- connection ------------------------------------------------------------------------
    @contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection | None]:
        """A connection; for reads of a library that does not exist yet, ``None`` (empty)."""
        if not write and not self.path.exists():
            yield None
            return
        if write:
            try:
                self.home.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DX7Error(f"cannot create the data home: {exc.strerror or exc}", str(self.home)) from None
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise DX7Error(f"cannot open the library: {exc}", str(self.path)) from None
        with closing(conn):
            try:
                conn.execute("PRAGMA foreign_keys = ON")
                if write:
                    conn.executescript(_SCHEMA)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                yield conn
            except sqlite3.DatabaseError as exc:
                raise DX7Error(f"the library is damaged or not a dx7tools library: {exc}", str(self.path)) from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything in it lands, or nothing does."""
        with self._connect(write=True) as conn:
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # -- writing ---------------------------------------------------------------------------
    def import_files(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        recursive: bool = False,
        repair_names: bool = False,
        skip_bad: bool = False,
        progress: Callable[[Path], None] | None = None,
    ) -> ImportReport:
        """Read every file, then add all their voices in one transaction.

        Unless ``skip_bad``, the first unreadable file raises :class:`DX7Error` before anything
        is written, so the library stays exactly as it was. ``progress`` is called once per file.
        """
        report = ImportReport()
        cartridges: list[Cartridge] = []
        for path in expand_paths(paths, recursive):
            try:
                cartridges.append(read_file(path, repair_names=repair_names))
            except DX7Error as exc:
                if not skip_bad:
                    raise
                report.failed.append(str(exc))
            finally:
                if progress:
                    progress(path)
        return self.add_cartridges(cartridges, report)

    def add_cartridges(self, cartridges: Sequence[Cartridge], report: ImportReport | None = None) -> ImportReport:
        """Add the voices of already-read cartridges in one transaction; see :meth:`import_files`."""
        report = report or ImportReport()
        with self._transaction() as conn:
            for cart in cartridges:
                report.files += 1
                report.warnings.extend(f"{cart.source}: {w}" for w in cart.warnings)
                file = os.path.abspath(cart.source) if cart.source != "<bytes>" else cart.source
                for rec in cart.voices:
                    report.voices_read += 1
                    voice_id, is_new = self._insert_voice(conn, rec.voice)
                    report.new += is_new
                    report.duplicates += not is_new
                    report.ids.append(voice_id)
                    conn.execute(
                        "INSERT OR IGNORE INTO sources (voice_id, file, bank, slot) VALUES (?, ?, ?, ?)",
                        (voice_id, file, rec.bank, rec.slot),
                    )
        return report

    def add_voice(self, voice: Voice, source: str = "<python>") -> int:
        """Add one voice (made in Python, say); returns its id, existing or new."""
        with self._transaction() as conn:
            voice_id, _ = self._insert_voice(conn, voice)
            conn.execute(
                "INSERT OR IGNORE INTO sources (voice_id, file, bank, slot) VALUES (?, ?, 0, 0)",
                (voice_id, source),
            )
        return voice_id

    @staticmethod
    def _insert_voice(conn: sqlite3.Connection, voice: Voice) -> tuple[int, bool]:
        digest = voice.content_hash
        row = conn.execute("SELECT id FROM voices WHERE hash = ?", (digest,)).fetchone()
        if row:
            return int(row[0]), False
        cur = conn.execute(
            "INSERT INTO voices (hash, name, algorithm, feedback, vced) VALUES (?, ?, ?, ?, ?)",
            (digest, voice.name, voice.algorithm, voice.feedback, voice.to_vced()),
        )
        return int(cur.lastrowid), True

    # -- reading ---------------------------------------------------------------------------
    def voices(self, algorithm: int | None = None, name: str | None = None) -> list[LibraryVoice]:
        """Library voices in id order, optionally only one algorithm (1-32) and/or a name pattern.

        ``name`` matches case-insensitively: a shell pattern if it holds ``*?[``, else a substring.
        """
        if algorithm is not None and not 1 <= algorithm <= 32:
            raise DX7Error(f"algorithm must be 1-32, got {algorithm}")
        with self._connect(write=False) as conn:
            if conn is None:
                return []
            sql, args = "SELECT id, vced FROM voices", []
            if algorithm is not None:
                sql, args = sql + " WHERE algorithm = ?", [algorithm]
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
            sources = self._sources(conn)
        out = [LibraryVoice(int(i), Voice(blob), sources.get(int(i), ())) for i, blob in rows]
        if name is not None:
            out = [v for v in out if _name_matches(v.name, name)]
        return out

    def get(self, ref: str | int) -> LibraryVoice:
        """One voice by id (``12`` or ``"12"``) or by a name that matches exactly one voice.

        A name matches exactly (ignoring case and runs of spaces) before it matches as a pattern. Raises :class:`DX7Error` for unknown or ambiguous references.
        """
        text = str(ref).strip()
        everything = self.voices()
        if text.isdigit():
            for v in everything:
                if v.id == int(text):
                    return v
            raise DX7Error(f"no voice with id {text} in the library ({self.path})")
        exact = [v for v in everything if _squeeze(v.name) == _squeeze(text)]
        matches = exact or [v for v in everything if _name_matches(v.name, text)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise DX7Error(f"no voice named {text!r} in the library ({self.path})")
        shown = ", ".join(f"{v.id} {v.name!r}" for v in matches[:8])
        more = f" and {len(matches) - 8} more" if len(matches) > 8 else ""
        raise DX7Error(f"{len(matches)} voices match {text!r}: {shown}{more}; give an id")

    def __len__(self) -> int:
        with self._connect(write=False) as conn:
            return 0 if conn is None else int(conn.execute("SELECT COUNT(*) FROM voices").fetchone()[0])

    @staticmethod
    def _sources(conn: sqlite3.Connection) -> dict[int, tuple[Source, ...]]:
        out: dict[int, list[Source]] = {}
        for voice_id, file, bank, slot in conn.execute(
            "SELECT voice_id, file, bank, slot FROM sources ORDER BY rowid"
        ):
            out.setdefault(int(voice_id), []).append(Source(file, int(bank), int(slot)))
        return {k: tuple(v) for k, v in out.items()}


def _squeeze(name: str) -> str:
    """Case and runs of spaces ignored: "BRASS 1" finds the factory voice "BRASS   1"."""
    return " ".join(name.split()).casefold()


def _name_matches(name: str, pattern: str) -> bool:
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name.casefold(), pattern.casefold())
    return pattern.casefold() in name.casefold()
