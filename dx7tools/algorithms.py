"""The 32 DX7 algorithms: one data table, and everything else derived from it.

An algorithm says which operators frequency-modulate which others, and where the single
feedback loop of the voice sits. The table below holds exactly that per algorithm -- the
modulation edges and the feedback edge -- and nothing else: carriers, masks, matrices, the
render order, stack depths, text descriptions and ASCII diagrams are all computed from it, so
a synth (numpy here, torch elsewhere) and the docs cannot disagree with each other.

Conventions used throughout:

* Operators are numbered 1..6 as on the DX7 panel (OP1..OP6), in every tuple, edge and string.
* Arrays are indexed OP1 first: ``carrier_mask[0]`` and row/column 0 of ``mod_matrix`` are OP1.
* An edge ``(source, target)`` means "source's output modulates target's phase" (source → target).
* A carrier is an operator that modulates nobody: its output goes to the audio mix.
* Feedback is kept apart from the modulation edges: ``feedback = (source, target)`` feeds the
  previous sample of ``source``'s output into ``target``. It is ``(n, n)`` for all but two
  algorithms: in algorithm 4 OP4 feeds back into OP6, in algorithm 6 OP5 into OP6.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from .errors import DX7Error

N_OPERATORS = 6
N_ALGORITHMS = 32

Edge = tuple[int, int]

# Source: Yamaha DX7 Operation Manual, algorithm chart (the 32 diagrams printed on the front
# panel as well); cross-checked in tests/test_algorithms.py against dexed-py.
# One row per algorithm: (number, modulation edges as (source, target), feedback (source, target)).
# Every DX7 edge runs from a higher-numbered operator to a lower one.
_DX7_TABLE: tuple[tuple[int, tuple[Edge, ...], Edge], ...] = (
    (1, ((2, 1), (4, 3), (5, 4), (6, 5)), (6, 6)),
    (2, ((2, 1), (4, 3), (5, 4), (6, 5)), (2, 2)),
    (3, ((2, 1), (3, 2), (5, 4), (6, 5)), (6, 6)),
    (4, ((2, 1), (3, 2), (5, 4), (6, 5)), (4, 6)),
    (5, ((2, 1), (4, 3), (6, 5)), (6, 6)),
    (6, ((2, 1), (4, 3), (6, 5)), (5, 6)),
    (7, ((2, 1), (4, 3), (5, 3), (6, 5)), (6, 6)),
    (8, ((2, 1), (4, 3), (5, 3), (6, 5)), (4, 4)),
    (9, ((2, 1), (4, 3), (5, 3), (6, 5)), (2, 2)),
    (10, ((2, 1), (3, 2), (5, 4), (6, 4)), (3, 3)),
    (11, ((2, 1), (3, 2), (5, 4), (6, 4)), (6, 6)),
    (12, ((2, 1), (4, 3), (5, 3), (6, 3)), (2, 2)),
    (13, ((2, 1), (4, 3), (5, 3), (6, 3)), (6, 6)),
    (14, ((2, 1), (4, 3), (5, 4), (6, 4)), (6, 6)),
    (15, ((2, 1), (4, 3), (5, 4), (6, 4)), (2, 2)),
    (16, ((2, 1), (3, 1), (5, 1), (4, 3), (6, 5)), (6, 6)),
    (17, ((2, 1), (3, 1), (5, 1), (4, 3), (6, 5)), (2, 2)),
    (18, ((2, 1), (3, 1), (4, 1), (5, 4), (6, 5)), (3, 3)),
    (19, ((2, 1), (3, 2), (6, 4), (6, 5)), (6, 6)),
    (20, ((3, 1), (3, 2), (5, 4), (6, 4)), (3, 3)),
    (21, ((3, 1), (3, 2), (6, 4), (6, 5)), (3, 3)),
    (22, ((2, 1), (6, 3), (6, 4), (6, 5)), (6, 6)),
    (23, ((3, 2), (6, 4), (6, 5)), (6, 6)),
    (24, ((6, 3), (6, 4), (6, 5)), (6, 6)),
    (25, ((6, 4), (6, 5)), (6, 6)),
    (26, ((3, 2), (5, 4), (6, 4)), (6, 6)),
    (27, ((3, 2), (5, 4), (6, 4)), (3, 3)),
    (28, ((2, 1), (4, 3), (5, 4)), (5, 5)),
    (29, ((4, 3), (6, 5)), (6, 6)),
    (30, ((4, 3), (5, 4)), (5, 5)),
    (31, ((6, 5),), (6, 6)),
    (32, (), (6, 6)),
)

_OPS = range(1, N_OPERATORS + 1)


@dataclass(frozen=True)
class Algorithm:
    """One DX7 algorithm (see the module docstring for the numbering conventions).

    Given fields: ``number`` (1..32), ``edges`` (modulation edges ``(source, target)``,
    1-based, feedback not included) and ``feedback`` (``(source, target)``, 1-based).

    Derived fields, computed once at construction:

    * ``carriers``: operators that modulate nobody (they go to the output), ascending.
    * ``modulators``: all other operators, ascending.
    * ``carrier_mask``: bool array of shape (6,), index 0 = OP1; read-only.
    * ``mod_matrix``: float32 array of shape (6, 6) with ``mod_matrix[dst-1, src-1] = 1`` when
      src modulates dst, so ``mod_matrix @ outputs`` is each operator's modulation input.
      The feedback edge is not in it. Read-only.
    * ``render_order``: every operator once, each modulator before the operators it modulates
      (highest-numbered first among the ready ones), the order a synth computes a sample in.
      Feedback reads the previous sample, so it plays no part in the order.
    * ``depth``: for each carrier, the number of modulator levels stacked on it -- the length
      (in edges) of the longest modulation chain ending at it; 0 for a bare carrier.
    """

    number: int
    edges: tuple[Edge, ...]
    feedback: Edge
    carriers: tuple[int, ...] = field(init=False, compare=False)
    modulators: tuple[int, ...] = field(init=False, compare=False)
    carrier_mask: np.ndarray = field(init=False, repr=False, compare=False)
    mod_matrix: np.ndarray = field(init=False, repr=False, compare=False)
    render_order: tuple[int, ...] = field(init=False, repr=False, compare=False)
    depth: Mapping[int, int] = field(init=False, repr=False, compare=False)

    def __reduce__(self):
        # Rebuild from the table fields: the read-only derived fields need not (and the
        # mapping proxy cannot) be pickled.
        return (Algorithm, (self.number, self.edges, self.feedback))

    def __post_init__(self) -> None:
        # The dataclass is frozen; fields are normalised and derived once, here, and never again.
        set_field = object.__setattr__
        set_field(self, "edges", tuple((int(src), int(dst)) for src, dst in self.edges))
        set_field(self, "feedback", (int(self.feedback[0]), int(self.feedback[1])))
        _check_table_entry(self.number, self.edges, self.feedback)
        sources = {src for src, _ in self.edges}
        carriers = tuple(op for op in _OPS if op not in sources)

        carrier_mask = np.array([op in carriers for op in _OPS], dtype=bool)
        carrier_mask.setflags(write=False)
        mod_matrix = np.zeros((N_OPERATORS, N_OPERATORS), dtype=np.float32)
        for src, dst in self.edges:
            mod_matrix[dst - 1, src - 1] = 1.0
        mod_matrix.setflags(write=False)

        set_field(self, "carriers", carriers)
        set_field(self, "modulators", tuple(sorted(sources)))
        set_field(self, "carrier_mask", carrier_mask)
        set_field(self, "mod_matrix", mod_matrix)
        set_field(self, "render_order", _render_order(self.edges))
        levels = _levels_below(self.edges, self.render_order)
        set_field(self, "depth", MappingProxyType({c: levels[c] for c in carriers}))

    def modulators_of(self, op: int) -> tuple[int, ...]:
        """Operators modulating ``op`` directly, ascending (feedback not counted)."""
        return tuple(sorted(src for src, dst in self.edges if dst == op))

    def targets_of(self, op: int) -> tuple[int, ...]:
        """Operators that ``op`` modulates directly, ascending; empty for a carrier."""
        return tuple(sorted(dst for src, dst in self.edges if src == op))

    def describe(self) -> str:
        """One line such as ``"2→1; 6→5→4→3; fb 6"`` (see :func:`describe`)."""
        chains = [
            "→".join(str(op) for op in chain) for chain in _chains(self.edges)
        ] or ["no modulation"]
        return "; ".join(chains + [_feedback_text(self.feedback, arrow="→")])

    def diagram(self) -> str:
        """A multi-line ASCII drawing of the algorithm, laid out from the table.

        Carriers sit on the bottom row; every other operator sits one row above the highest of
        the operators it modulates, so a stack reads top (modulator) to bottom (carrier). Pipes
        and ``+---+`` bars join each modulator to its targets. ``fb`` marks self-feedback; a
        loop ``<+ ... -+`` drawn up the right of a column marks cross-feedback (algorithms 4
        and 6). Every operator appears exactly once in the drawing. After a blank line, the
        edges and the feedback are listed in text, which settles any doubt about the drawing.
        """
        edge_text = " ".join(f"{src}->{dst}" for src, dst in self.edges) or "none"
        src, dst = self.feedback
        how = "self" if src == dst else f"OP{src} output into OP{dst}"
        feedback_text = f"{src}->{dst} ({how})"
        listing = [f"algorithm {self.number}: edges {edge_text}", f"feedback: {feedback_text}"]
        return "\n".join(_draw(self) + [""] + listing)


def _check_table_entry(number: int, edges: tuple[Edge, ...], feedback: Edge) -> None:
    """Reject a malformed table entry early (the table is hand-typed data)."""
    if not 1 <= number <= N_ALGORITHMS:
        raise ValueError(f"algorithm must be 1-{N_ALGORITHMS}, got {number}")
    for src, dst in (*edges, feedback):
        if src not in _OPS or dst not in _OPS:
            raise ValueError(f"algorithm {number}: operator out of range in {(src, dst)}")
    if any(src == dst for src, dst in edges):
        raise ValueError(f"algorithm {number}: self-modulation belongs in `feedback`, not `edges`")
    if len(set(edges)) != len(edges):
        raise ValueError(f"algorithm {number}: duplicate edge")


def _render_order(edges: tuple[Edge, ...]) -> tuple[int, ...]:
    """Topological order of OP1..OP6: every modulator before the operators it modulates.

    Among the operators whose modulators are all done, the highest-numbered goes first, so for
    the DX7 (whose edges all run downwards) this is always 6, 5, 4, 3, 2, 1.
    """
    waiting_on = {op: {src for src, dst in edges if dst == op} for op in _OPS}
    order: list[int] = []
    while waiting_on:
        ready = [op for op, mods in waiting_on.items() if not mods]
        if not ready:
            raise ValueError(f"modulation edges contain a cycle: {edges}")
        op = max(ready)
        order.append(op)
        del waiting_on[op]
        for mods in waiting_on.values():
            mods.discard(op)
    return tuple(order)


def _levels_below(edges: tuple[Edge, ...], render_order: tuple[int, ...]) -> dict[int, int]:
    """For each operator, the length of the longest modulation chain ending at it."""
    levels = {op: 0 for op in _OPS}
    for op in render_order:  # modulators first, so their levels are final when used
        for src, dst in edges:
            if src == op:
                levels[dst] = max(levels[dst], levels[op] + 1)
    return levels


def _rows_above_output(edges: tuple[Edge, ...], render_order: tuple[int, ...]) -> dict[int, int]:
    """Diagram row of each operator: 0 for carriers, else one above its highest target."""
    rows = {op: 0 for op in _OPS}
    for op in reversed(render_order):  # targets first
        targets = [dst for src, dst in edges if src == op]
        if targets:
            rows[op] = 1 + max(rows[t] for t in targets)
    return rows


def _chains(edges: tuple[Edge, ...]) -> list[list[int]]:
    """Split the edges into chains written top modulator first, each edge in exactly one chain.

    A chain runs on through an operator only when that operator has exactly one modulator and
    one target (a plain link in a stack); at a fork or a join a new chain starts.
    """
    def is_link(op: int) -> bool:
        return sum(dst == op for _, dst in edges) == 1 and sum(src == op for src, _ in edges) == 1

    chains = []
    for src, dst in edges:
        if is_link(src):
            continue  # this edge is the continuation of the chain through src
        chain = [src, dst]
        while is_link(chain[-1]):
            chain.append(next(d for s, d in edges if s == chain[-1]))
        chains.append(chain)
    return sorted(chains, key=lambda chain: (chain[-1], chain[0]))


def _feedback_text(feedback: Edge, arrow: str) -> str:
    src, dst = feedback
    return f"fb {src}" if src == dst else f"fb {src}{arrow}{dst}"


# --- ASCII diagram -------------------------------------------------------------------------

_PITCH = 6  # characters per diagram column: "[6]fb" and a gap


def _columns(alg: Algorithm, rows: dict[int, int]) -> dict[int, int]:
    """Column of each operator, laid out like a tree growing up from the carriers.

    Each carrier's modulators are placed (recursively) before it, left to right, and an operator
    sits above the middle of its modulators, so plain stacks come out as vertical columns. An
    operator modulating several others is then moved above the middle of its targets when that
    spot is free, so a fan-out looks like one.
    """
    columns: dict[int, int] = {}

    def place(op: int) -> None:
        placed_here = [m for m in alg.modulators_of(op) if m not in columns]
        for mod in placed_here:
            place(mod)
        if op in columns:  # reached again through another target while placing a modulator
            return
        if placed_here:
            below = sorted(columns[m] for m in placed_here)
            columns[op] = below[(len(below) - 1) // 2]
        else:
            columns[op] = max(columns.values(), default=-1) + 1

    for carrier in alg.carriers:
        place(carrier)

    for op in _OPS:
        targets = alg.targets_of(op)
        if len(targets) > 1:
            middle = sorted(columns[t] for t in targets)[(len(targets) - 1) // 2]
            taken = {columns[o] for o in _OPS if rows[o] == rows[op] and o != op}
            if middle not in taken:
                columns[op] = middle
    return columns


def _draw(alg: Algorithm) -> list[str]:
    rows = _rows_above_output(alg.edges, alg.render_order)
    columns = _columns(alg, rows)
    width = _PITCH * (max(columns.values()) + 1)
    x = {op: _PITCH * columns[op] + 1 for op in _OPS}  # x of the digit inside "[n]"

    lines: list[list[str]] = []
    line_of_row: dict[int, int] = {}  # diagram row -> index of its line of boxes
    for row in range(max(rows.values()), -1, -1):  # top modulators first, carriers last
        line_of_row[row] = len(lines)
        lines.append([" "] * width)
        for op in _OPS:
            if rows[op] == row:
                lines[-1][x[op] - 1 : x[op] + 2] = f"[{op}]"
        if row > 0:
            lines += _connector_lines([(x[s], x[d]) for s, d in alg.edges if rows[s] == row], width)

    fb_src, fb_dst = alg.feedback
    top, bottom = line_of_row[rows[fb_dst]], line_of_row[rows[fb_src]]
    looped = fb_src != fb_dst and _draw_feedback_loop(lines, x[fb_src], x[fb_dst], top, bottom)
    if not looped:  # self-feedback, or a loop that cannot be drawn: tag the target
        lines[top][x[fb_dst] + 2 : x[fb_dst] + 4] = "fb"
    return ["".join(line).rstrip() for line in lines]


def _connector_lines(drops: list[tuple[int, int]], width: int) -> list[list[str]]:
    """Lines joining one row of boxes to the row below; ``drops`` are (x above, x below) pairs.

    Straight drops need one line of pipes. Otherwise three: pipes out of the sources, a bar
    ``+-----+`` spanning each source and its target, pipes into the targets.
    """
    spans = [sorted(drop) for drop in drops if drop[0] != drop[1]]
    tops, bottoms = {top for top, _ in drops}, {bottom for _, bottom in drops}
    above, bar, below = ([" "] * width for _ in range(3))
    for pos in tops:
        above[pos] = "|"
    if not spans:
        return [above]
    for pos in bottoms:
        below[pos] = "|"
    for left, right in spans:
        bar[left : right + 1] = "-" * (right - left + 1)
    for pos in tops | bottoms:
        bar[pos] = "+" if any(left <= pos <= right for left, right in spans) else "|"
    return [above, bar, below]


def _draw_feedback_loop(
    lines: list[list[str]], src_x: int, dst_x: int, top: int, bottom: int
) -> bool:
    """Draw cross-feedback as a loop up the right side of a column; False if it cannot be drawn.

    ``[6]<+`` on the target's line, ``|`` on the lines between, ``[4]-+`` on the source's line.
    This needs the source straight below the target (true for DX7 algorithms 4 and 6) and a
    clear path; otherwise the caller tags the target ``fb`` and the text under the drawing
    says where the feedback comes from.
    """
    loop = dst_x + 3
    clear = all(line[loop - 1 : loop + 1] == [" ", " "] for line in lines[top : bottom + 1])
    if src_x != dst_x or top >= bottom or not clear:
        return False
    lines[top][loop - 1 : loop + 1] = "<+"
    for line in lines[top + 1 : bottom]:
        line[loop] = "|"
    lines[bottom][loop - 1 : loop + 1] = "-+"
    return True


ALGORITHMS: tuple[Algorithm, ...] = tuple(
    Algorithm(number, edges, feedback) for number, edges, feedback in _DX7_TABLE
)
"""The 32 DX7 algorithms; ``ALGORITHMS[n - 1].number == n``."""


def get_algorithm(number: int) -> Algorithm:
    """The DX7 algorithm with panel number ``number`` (1..32)."""
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or not (
        1 <= number <= N_ALGORITHMS
    ):
        raise DX7Error(f"algorithm must be 1-{N_ALGORITHMS}, got {number!r}")
    return ALGORITHMS[int(number) - 1]


def describe(number: int) -> str:
    """One line of text for algorithm ``number``: ``"2→1; 6→5→4→3; fb 6"`` for algorithm 1.

    Chains are written from the top modulator down to the operator it ends on; where operators
    fork or join, each branch is its own chain: algorithm 16 is ``"2→1; 4→3→1; 6→5→1; fb 6"``.
    Feedback is ``fb n`` for self-feedback and ``fb src→dst`` otherwise.
    """
    return get_algorithm(number).describe()
