"""Tests for dx7tools.algorithms: the DX7 algorithm table and what is derived from it."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

from dx7tools.algorithms import ALGORITHMS, Algorithm, describe, get_algorithm

OPS = (1, 2, 3, 4, 5, 6)


def drawing_part(diagram: str) -> str:
    """The drawing above the first blank line (the text listing comes after it)."""
    return diagram.split("\n\n", 1)[0]


# --- the table ---------------------------------------------------------------------------


def test_table_has_32_algorithms_numbered_in_order():
    assert len(ALGORITHMS) == 32
    assert [alg.number for alg in ALGORITHMS] == list(range(1, 33))


@pytest.mark.parametrize("alg", ALGORITHMS, ids=lambda alg: f"alg{alg.number}")
def test_edges_are_well_formed(alg):
    assert len(set(alg.edges)) == len(alg.edges)
    for src, dst in (*alg.edges, alg.feedback):
        assert src in OPS and dst in OPS
    assert all(src != dst for src, dst in alg.edges), "self-modulation belongs in feedback"


@pytest.mark.parametrize("alg", ALGORITHMS, ids=lambda alg: f"alg{alg.number}")
def test_carriers_and_modulators_partition_the_operators(alg):
    sources = {src for src, _ in alg.edges}
    assert set(alg.modulators) == sources  # every non-carrier modulates something
    assert set(alg.carriers) == set(OPS) - sources
    assert alg.carriers == tuple(sorted(alg.carriers)) and alg.carriers
    assert alg.modulators == tuple(sorted(alg.modulators))
    assert alg.carrier_mask.dtype == bool and alg.carrier_mask.shape == (6,)
    assert tuple(np.flatnonzero(alg.carrier_mask) + 1) == alg.carriers


@pytest.mark.parametrize("alg", ALGORITHMS, ids=lambda alg: f"alg{alg.number}")
def test_render_order_puts_modulators_first(alg):
    # A valid order exists only if the graph is acyclic, so this also checks acyclicity.
    assert sorted(alg.render_order) == list(OPS)
    position = {op: i for i, op in enumerate(alg.render_order)}
    for src, dst in alg.edges:
        assert position[src] < position[dst]


def test_dx7_edges_all_run_downwards_so_render_order_is_6_to_1():
    for alg in ALGORITHMS:
        assert all(src > dst for src, dst in alg.edges)
        assert alg.render_order == (6, 5, 4, 3, 2, 1)


@pytest.mark.parametrize("alg", ALGORITHMS, ids=lambda alg: f"alg{alg.number}")
def test_mod_matrix_matches_edges_and_is_read_only(alg):
    expected = np.zeros((6, 6), dtype=np.float32)
    for src, dst in alg.edges:
        expected[dst - 1, src - 1] = 1
    assert alg.mod_matrix.dtype == np.float32
    np.testing.assert_array_equal(alg.mod_matrix, expected)
    with pytest.raises(ValueError):
        alg.mod_matrix[0, 1] = 1
    with pytest.raises(ValueError):
        alg.carrier_mask[0] = False
    # A carrier's column is empty: it modulates nobody.
    assert not alg.mod_matrix[:, alg.carrier_mask].any()


# --- well-known algorithms ----------------------------------------------------------------


def test_carriers_of_well_known_algorithms():
    assert get_algorithm(1).carriers == (1, 3)
    assert get_algorithm(16).carriers == (1,)
    assert get_algorithm(32).carriers == (1, 2, 3, 4, 5, 6)
    assert get_algorithm(32).modulators == ()


def test_feedback_is_self_except_algorithms_4_and_6():
    assert get_algorithm(4).feedback == (4, 6)
    assert get_algorithm(6).feedback == (5, 6)
    for alg in ALGORITHMS:
        if alg.number not in (4, 6):
            assert alg.feedback[0] == alg.feedback[1]
    assert get_algorithm(1).feedback == (6, 6)
    assert get_algorithm(2).feedback == (2, 2)


def test_depth_is_longest_chain_into_each_carrier():
    assert dict(get_algorithm(1).depth) == {1: 1, 3: 3}
    assert dict(get_algorithm(16).depth) == {1: 2}
    assert dict(get_algorithm(18).depth) == {1: 3}
    assert dict(get_algorithm(32).depth) == {op: 0 for op in OPS}
    for alg in ALGORITHMS:
        assert tuple(alg.depth) == alg.carriers


def test_get_algorithm_rejects_bad_numbers():
    assert get_algorithm(5) is ALGORITHMS[4]
    assert get_algorithm(np.int64(5)) is ALGORITHMS[4]
    for bad in (0, 33, -1):
        with pytest.raises(ValueError, match=rf"algorithm must be 1-32, got {bad}"):
            get_algorithm(bad)
    for bad in ("1", 1.0, True, None):
        with pytest.raises(ValueError, match="algorithm must be 1-32"):
            get_algorithm(bad)


@pytest.mark.parametrize(
    "edges, feedback",
    [
        (((1, 1),), (6, 6)),  # self-edge
        (((2, 1), (1, 2)), (6, 6)),  # cycle
        (((7, 1),), (6, 6)),  # operator out of range
        (((2, 1),), (0, 6)),  # feedback out of range
        (((2, 1), (2, 1)), (6, 6)),  # duplicate
    ],
)
def test_malformed_entries_are_rejected(edges, feedback):
    with pytest.raises(ValueError):
        Algorithm(1, edges, feedback)


def test_algorithms_are_hashable_and_pickle():
    alg = get_algorithm(4)
    assert len(set(ALGORITHMS)) == 32
    again = pickle.loads(pickle.dumps(alg))
    assert again == alg and again.carriers == alg.carriers
    np.testing.assert_array_equal(again.mod_matrix, alg.mod_matrix)


# --- text -------------------------------------------------------------------------------


def test_describe_examples():
    assert describe(1) == "2→1; 6→5→4→3; fb 6"
    assert describe(4) == "3→2→1; 6→5→4; fb 4→6"
    assert describe(6) == "2→1; 4→3; 6→5; fb 5→6"
    assert describe(16) == "2→1; 4→3→1; 6→5→1; fb 6"
    assert describe(22) == "2→1; 6→3; 6→4; 6→5; fb 6"
    assert describe(32) == "no modulation; fb 6"


@pytest.mark.parametrize("alg", ALGORITHMS, ids=lambda alg: f"alg{alg.number}")
def test_describe_lists_every_edge_once(alg):
    *chains, fb = alg.describe().split("; ")
    written = []
    for chain in chains:
        if chain == "no modulation":
            continue
        ops = [int(op) for op in chain.split("→")]
        written += list(zip(ops, ops[1:]))
    assert sorted(written) == sorted(alg.edges)
    src, dst = alg.feedback
    assert fb == (f"fb {src}" if src == dst else f"fb {src}→{dst}")


@pytest.mark.parametrize("alg", ALGORITHMS, ids=lambda alg: f"alg{alg.number}")
def test_diagram_shows_each_operator_once_and_the_feedback(alg):
    diagram = alg.diagram()
    assert diagram == alg.diagram()  # deterministic
    assert diagram.isascii()
    assert len(diagram.splitlines()) <= 12
    drawing = drawing_part(diagram)
    assert sorted(re.findall(r"\d", drawing)) == [str(op) for op in OPS]
    for op in OPS:
        assert drawing.count(f"[{op}]") == 1
    # Carriers are on the bottom row of the drawing.
    bottom = drawing.splitlines()[-1]
    assert sorted(int(op) for op in re.findall(r"\[(\d)\]", bottom)) == list(alg.carriers)
    src, dst = alg.feedback
    assert f"feedback: {src}->{dst}" in diagram
    if src == dst:
        assert f"[{src}]fb" in drawing
    else:
        assert f"[{dst}]<+" in drawing and f"[{src}]-+" in drawing
    for edge_src, edge_dst in alg.edges:
        assert f"{edge_src}->{edge_dst}" in diagram


# --- oracle: dexed-py ---------------------------------------------------------------------


@pytest.mark.oracle
def test_table_matches_dexed_py(dexed):
    for alg in ALGORITHMS:
        a0 = alg.number - 1  # dexed numbers algorithms and operators from 0
        assert tuple(op + 1 for op in dexed.get_carriers(a0)) == alg.carriers, alg.number
        # dexed: mod_matrix[i, j] = 1 when op j modulates op i; feedback is not in it.
        np.testing.assert_array_equal(
            np.asarray(dexed.get_mod_matrix(a0), dtype=np.float32),
            alg.mod_matrix,
            err_msg=f"algorithm {alg.number}",
        )
        src, dst = dexed.get_feedback_edge(a0)
        assert (src + 1, dst + 1) == alg.feedback, alg.number
