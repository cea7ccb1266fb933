"""The one exception type of the dx7tools library API.

Every problem with user input (a file, a voice reference, an option) raises :class:`DX7Error`.
Its ``str()`` is a single line that names the source and the problem, and the byte offset
where one helps — the CLI prints exactly that line and exits non-zero. Repairs made while
reading (stale checksum, values masked into range) are not exceptions: readers list them in
``Cartridge.warnings``.
"""

from __future__ import annotations


class DX7Error(ValueError):
    """Bad input: a file that is not DX7 data, a truncated dump, an unknown voice, …

    Attributes:
        source: the file (or other input) the problem was found in, or ``None``.
        problem: what is wrong, in words.
        offset: byte offset into ``source`` where it was found, or ``None``.
    """

    def __init__(self, problem: str, source: str | None = None, offset: int | None = None):
        self.problem = problem
        self.source = source
        self.offset = offset
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = f" (at byte {self.offset})" if self.offset is not None else ""
        prefix = f"{self.source}: " if self.source else ""
        return f"{prefix}{self.problem}{where}"


class MissingExtra(DX7Error):
    """An optional extra that the call needs is not installed (e.g. dexed-py, extra ``dexed``).

    Attributes:
        extra: the extra's name, as in ``pip install 'dx7tools[EXTRA]'``.
    """

    def __init__(self, problem: str, extra: str):
        self.extra = extra
        super().__init__(problem)
