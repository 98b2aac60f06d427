"""Input validation of ``run_algorithm`` and ``sample``: every bad input is a ValueError naming its cause."""

import numpy as np
import pytest

from gnnbench.algo import ALGORITHMS, SPECS, run_algorithm, sample
from gnnbench.algo.specs import SOURCE_ALGORITHMS, Stage
from gnnbench.algo.validation import check_graph, node_on_cycle
from test_algorithms_networkx import check_trace

SOURCE = sorted(SOURCE_ALGORITHMS)
NO_SOURCE = [name for name in ALGORITHMS if name not in SOURCE_ALGORITHMS]
ACYCLIC = ("topological_sort", "dag_shortest_paths")


def _source(name):
    return 0 if name in SOURCE_ALGORITHMS else None


def _small_graph(name, dtype=float):
    """A 4-node graph valid for ``name`` (a DAG for the acyclic algorithms)."""
    A = np.array([[0, 2, 0, 1],
                  [0, 0, 3, 0],
                  [0, 0, 0, 4],
                  [0, 0, 0, 0]], dtype=dtype)
    return A if name in ACYCLIC else A + A.T


def test_source_algorithms_are_the_five_with_a_source_input():
    assert set(SOURCE_ALGORITHMS) == {"bfs", "mst_prim", "dijkstra", "bellman_ford", "dag_shortest_paths"}
    for name in ALGORITHMS:
        assert (name in SOURCE_ALGORITHMS) == (SPECS[name].get("s", ("",))[0] == Stage.INPUT)


# --- the weight matrix -------------------------------------------------------------------

@pytest.mark.parametrize("A", [np.zeros((2, 3)), np.zeros((3, 2)), np.zeros(3), np.float64(1.0),
                               np.zeros((2, 2, 2)), [[0, 1, 0], [1, 0, 1]]],
                         ids=["2x3", "3x2", "1-D", "0-D", "3-D", "nested-list"])
@pytest.mark.parametrize("name", ["bfs", "dfs"])
def test_non_square_or_wrong_rank_A(name, A):
    with pytest.raises(ValueError, match="square"):
        run_algorithm(name, A, _source(name))


def test_1d_A_message_names_the_shape():
    with pytest.raises(ValueError, match=r"square n x n .*shape \(3,\)"):
        run_algorithm("dfs", np.zeros(3))


@pytest.mark.parametrize("A", [np.zeros((0, 0)), np.zeros((0, 0), dtype=np.int64)], ids=["float", "int"])
@pytest.mark.parametrize("name", ["dfs", "floyd_warshall"])
def test_empty_A(name, A):
    with pytest.raises(ValueError, match="at least one node"):
        run_algorithm(name, A)


def test_empty_A_with_source():
    with pytest.raises(ValueError, match="at least one node"):
        run_algorithm("bfs", np.zeros((0, 0)), 0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ALGORITHMS)
def test_non_finite_A(name, bad):
    A = _small_graph(name)
    A[1, 2] = bad
    with pytest.raises(ValueError, match=r"finite.*A\[1, 2\]"):
        run_algorithm(name, A, _source(name))


@pytest.mark.parametrize("A", [np.zeros((2, 2), dtype=complex),
                               np.array([[0, "a"], [1, 0]], dtype=object),
                               np.array([[0, 1], [1, 0]], dtype=object),
                               np.array([["0", "1"], ["1", "0"]])],
                         ids=["complex", "object-mixed", "object-int", "str"])
def test_non_real_dtype(A):
    with pytest.raises(ValueError, match="real numbers.*dtype"):
        run_algorithm("dfs", A)


# --- the source node -----------------------------------------------------------------------

@pytest.mark.parametrize("name", SOURCE)
def test_missing_source(name):
    with pytest.raises(ValueError, match=rf"{name} needs a source node"):
        run_algorithm(name, _small_graph(name))


@pytest.mark.parametrize("s", [4, 5, 100, -1, -4])
@pytest.mark.parametrize("name", SOURCE)
def test_out_of_range_source(name, s):
    with pytest.raises(ValueError, match=rf"s={s} is out of range .* 4 nodes"):
        run_algorithm(name, _small_graph(name), s)


@pytest.mark.parametrize("s", [1.0, np.float64(1.0), True, np.bool_(True), "1", [1], 1.5],
                         ids=["float", "np.float64", "bool", "np.bool_", "str", "list", "fraction"])
@pytest.mark.parametrize("name", ["bfs", "dijkstra"])
def test_non_integer_source(name, s):
    with pytest.raises(ValueError, match="must be an integer"):
        run_algorithm(name, _small_graph(name), s)


@pytest.mark.parametrize("s", [2, np.int32(2), np.int64(2), np.uint8(2)], ids=["int", "int32", "int64", "uint8"])
def test_integer_like_sources_are_accepted(s):
    trace = run_algorithm("bfs", _small_graph("bfs"), s)
    assert trace.inputs["s"].tolist() == [0, 0, 1, 0]


@pytest.mark.parametrize("s", [0, 1, np.int64(0)])
@pytest.mark.parametrize("name", NO_SOURCE)
def test_source_given_to_algorithm_without_one(name, s):
    with pytest.raises(ValueError, match=rf"{name} takes no source node") as info:
        run_algorithm(name, _small_graph(name), s)
    assert "bfs" in str(info.value)  # lists the algorithms that do take one


# --- algorithm-specific conditions -----------------------------------------------------------

@pytest.mark.parametrize("name", ["dijkstra", "mst_prim"])
def test_negative_weight_rejected(name):
    A = _small_graph(name)
    A[2, 3] = A[3, 2] = -0.5
    with pytest.raises(ValueError, match=rf"{name} requires non-negative weights.*A\[2, 3\] = -0.5"):
        run_algorithm(name, A, 0)


@pytest.mark.parametrize("name", ["dijkstra", "mst_prim"])
def test_negative_integer_weight_rejected(name):
    A = _small_graph(name, dtype=np.int64)
    A[0, 1] = -3
    with pytest.raises(ValueError, match="non-negative"):
        run_algorithm(name, A, 0)


@pytest.mark.parametrize("name", ["dijkstra", "mst_prim"])
def test_zero_weights_are_not_negative(name):
    # -0.0 is "no edge", not a negative weight: accepted, and the same trace as with +0.0
    A = _small_graph(name)
    A[A == 0] = -0.0
    assert np.signbit(A).sum() == 16 - 8  # 8 edges (4 undirected), 8 entries of -0.0
    trace = run_algorithm(name, A, 0)
    check_trace(name, A, 0, trace)
    plain = run_algorithm(name, np.abs(A), 0)
    for field in SPECS[name]:
        np.testing.assert_array_equal(np.asarray(trace.field(field)), np.asarray(plain.field(field)), err_msg=field)


CYCLES = {
    "two-cycle": np.array([[0, 1], [1, 0]]),
    "self-loop": np.array([[0, 1], [0, 1]]),
    "self-loop-only": np.array([[1.0]]),
    "three-cycle": np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]),
    "cycle-behind-a-tail": np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 1, 0]]),
    "negative-weights": np.array([[0, -1.0, 0], [0, 0, -2.0], [-3.0, 0, 0]]),
}


@pytest.mark.parametrize("graph", list(CYCLES))
@pytest.mark.parametrize("name", ACYCLIC)
def test_cyclic_graph_rejected(name, graph):
    A = CYCLES[graph]
    with pytest.raises(ValueError, match=rf"{name} requires a directed acyclic graph.*node \d+ lies on a "
                                         "directed cycle"):
        run_algorithm(name, A, _source(name))


@pytest.mark.parametrize("graph", list(CYCLES))
def test_node_on_cycle_names_a_node_that_is_on_a_cycle(graph):
    A = CYCLES[graph]
    node = node_on_cycle(A)
    assert node is not None
    # node reaches itself through at least one edge
    edges = A != 0
    reach = edges.copy()
    for _ in range(A.shape[0]):
        reach = reach | ((reach.astype(int) @ edges.astype(int)) > 0)
    assert reach[node, node]


def test_node_on_cycle_is_none_for_a_dag():
    assert node_on_cycle(_small_graph("topological_sort")) is None
    assert node_on_cycle(np.zeros((3, 3))) is None


@pytest.mark.parametrize("name", ACYCLIC)
def test_undirected_edge_is_a_cycle_for_dag_algorithms(name):
    with pytest.raises(ValueError, match="directed acyclic"):
        run_algorithm(name, _small_graph("bfs"), _source(name))


@pytest.mark.parametrize("name", [a for a in ALGORITHMS if a not in ACYCLIC])
def test_cycles_are_fine_elsewhere(name):
    A = np.array([[1.0, 1, 0], [0, 0, 1], [1, 0, 0]])
    A = A + A.T  # a triangle with a self-loop at node 0
    trace = run_algorithm(name, A, _source(name))
    check_trace(name, A, _source(name), trace)  # accepted, and the outputs are right (networkx)


@pytest.mark.parametrize("A", [np.array([[0, -1.0], [-1.0, 0]]),
                               np.array([[-1.0, 0], [0, 0]]),
                               np.array([[0, 1.0, 0], [0, 0, 1.0], [-5.0, 0, 0]])],
                         ids=["negative-undirected-edge", "negative-self-loop", "negative-three-cycle"])
def test_bellman_ford_negative_cycle(A):
    with pytest.raises(ValueError, match="bellman_ford.*negative-weight cycle"):
        run_algorithm("bellman_ford", A, 0)


def test_bellman_ford_negative_edge_without_cycle_is_fine():
    A = np.array([[0, 4.0, 1.0], [0, 0, 0], [0, -2.0, 0]])
    trace = run_algorithm("bellman_ford", A, 0)
    assert trace.outputs["pi"].tolist() == [0, 2, 0]  # 0 -> 2 -> 1 costs -1 < 4


def test_bellman_ford_unreachable_negative_cycle_is_fine():
    A = np.array([[0, 0, 0], [0, 0, -1.0], [0, -1.0, 0]])
    trace = run_algorithm("bellman_ford", A, 0)
    assert trace.outputs["pi"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("name", ["bfs ", "BFS", "dfz", "", "mst"])
def test_unknown_algorithm_lists_valid_names(name):
    with pytest.raises(ValueError, match="unknown algorithm") as info:
        run_algorithm(name, np.zeros((2, 2)), 0)
    for valid in ALGORITHMS:
        assert valid in str(info.value)


def test_check_graph_returns_array_and_int_source():
    A, s = check_graph("bfs", [[0, 1], [1, 0]], np.int16(1))
    assert A.tolist() == [[0, 1], [1, 0]] and A.dtype.kind == "i"
    assert s == 1 and type(s) is int
    A, s = check_graph("dfs", np.ones((3, 3), dtype=bool))
    assert A.dtype == np.int64 and A.tolist() == [[1] * 3] * 3 and s == 0


# --- sample ---------------------------------------------------------------------------------

def test_sample_unknown_option():
    with pytest.raises(ValueError, match=r"unknown sampler option.*'foo'.*valid options: .*\bp\b"):
        sample("bfs", 2, n=4, foo=1)


@pytest.mark.parametrize("p", [1.5, -0.1, (), [0.5, 1.01], float("nan")])
def test_sample_bad_p(p):
    # names the argument (gnnbench.arguments' "p must be ..." or the distribution check's wording)
    with pytest.raises(ValueError, match=r"(edge probabilities p|\bp must be)"):
        sample("bfs", 2, n=4, p=p)


def test_sample_k_larger_than_n_for_scc():
    with pytest.raises(ValueError, match=r"k=4 .*need k <= n"):
        sample("strongly_connected_components", 2, n=3)
    with pytest.raises(ValueError, match=r"k=6"):
        sample("strongly_connected_components", 2, n=5, k=6)


def test_sample_k_equal_n_for_scc_works():
    traces = sample("strongly_connected_components", 2, n=4)
    assert len(traces) == 2
    for i in range(2):  # four communities of one node each: a valid graph, with SCCs as networkx finds them
        A = np.asarray(traces[i].inputs["A"])
        assert A.shape == (4, 4)
        check_trace("strongly_connected_components", A, None, traces[i])


@pytest.mark.parametrize("options, match", [
    ({"k": 0}, r"k (must be an integer )?>= 1"),
    ({"eps": 2.0}, "eps"),
    ({"generator": "ba"}, "unknown generator"),
])
def test_sample_bad_community_options(options, match):
    with pytest.raises(ValueError, match=match):
        sample("strongly_connected_components", 2, n=8, **options)


@pytest.mark.parametrize("name, options, match", [
    ("dijkstra", {"low": 2.0, "high": 1.0}, "low <= high"),
    ("dijkstra", {"low": -1.0, "directed": True}, "non-negative"),
    ("mst_prim", {"low": -1.0, "directed": True}, "non-negative"),
    ("bellman_ford", {"low": -1.0, "directed": True}, "bellman_ford"),
    ("floyd_warshall", {"low": -1.0}, "low >= 0"),
    ("topological_sort", {"acyclic": False}, "directed acyclic"),
    ("bfs", {"acyclic": True}, "requires directed=True"),
])
def test_sample_bad_distribution(name, options, match):
    with pytest.raises(ValueError, match=match):
        sample(name, 2, n=4, **options)


@pytest.mark.parametrize("num, n, match", [(-1, 4, r"num must be (an integer )?>= 0"),
                                            (2, 0, r"\bn must be (an integer )?>= 1")])
def test_sample_bad_sizes(num, n, match):
    with pytest.raises(ValueError, match=match):
        sample("bfs", num, n=n)


def test_sample_unknown_algorithm():
    with pytest.raises(ValueError, match="unknown algorithm 'bfz'.*floyd_warshall"):
        sample("bfz", 2, n=4)


def test_sample_zero_graphs():
    traces = sample("bfs", 0, n=4)
    assert len(traces) == 0
    assert traces.offsets.tolist() == [0]


# --- valid edge cases -------------------------------------------------------------------------

@pytest.mark.parametrize("A", [np.zeros((1, 1)), np.zeros((1, 1), dtype=np.int64), np.zeros((1, 1), dtype=bool),
                               [[0]], [[0.0]]],
                         ids=["float", "int", "bool", "list-int", "list-float"])
@pytest.mark.parametrize("name", ALGORITHMS)
def test_single_node_graph(name, A):
    trace = run_algorithm(name, A, _source(name))
    assert trace.num_nodes == 1
    assert trace.num_steps >= 1
    # CLRS squeezes singleton axes of inputs and outputs: node and edge fields become 0-d
    for group in (trace.inputs, trace.outputs):
        for field, value in group.items():
            assert np.shape(value) == (), field
    assert float(trace.inputs["pos"]) == 0.0
    if name in SOURCE_ALGORITHMS:
        assert float(trace.inputs["s"]) == 1.0
    # hints keep their time and node axes
    for field, value in trace.hints.items():
        _, location, _ = SPECS[name][field]
        assert value.shape[0] == trace.num_steps, field
        expected_rank = {"node": 2, "edge": 3, "graph": 1}[location]
        assert value.ndim in (expected_rank, expected_rank + 1), field  # + class axis for categoricals
    # every pointer of a one-node graph points at node 0
    for field, (_, _, type_) in SPECS[name].items():
        if type_ == "pointer":
            assert np.all(np.asarray(trace.field(field)) == 0), field


@pytest.mark.parametrize("name", [a for a in ALGORITHMS if a not in ACYCLIC])
def test_single_node_with_self_loop(name):
    trace = run_algorithm(name, [[2.5]], _source(name))
    assert float(trace.inputs["A"]) == 2.5
    assert float(trace.inputs["adj"]) == 1.0


@pytest.mark.parametrize("name", [a for a in ALGORITHMS if a != "mst_kruskal"])
def test_integer_and_bool_A_match_float(name):
    """Unit weights: integer, bool and float matrices give the same trace."""
    unit = (_small_graph(name) != 0)
    as_float = run_algorithm(name, unit.astype(float), _source(name))
    for A in (unit.astype(np.int64), unit.astype(np.int32), unit, unit.astype(np.uint8)):
        trace = run_algorithm(name, A, _source(name))
        for field in SPECS[name]:
            np.testing.assert_allclose(np.asarray(trace.field(field), dtype=float),
                                       np.asarray(as_float.field(field), dtype=float), err_msg=field)


def test_kruskal_integer_weights_without_ties_match_float():
    A = _small_graph("mst_kruskal", dtype=np.int64)
    as_int = run_algorithm("mst_kruskal", A)
    as_float = run_algorithm("mst_kruskal", A.astype(float))
    np.testing.assert_array_equal(as_int.outputs["in_mst"], as_float.outputs["in_mst"])
    assert as_int.outputs["in_mst"].sum() == 6  # the 4-node tree: 3 undirected edges, both directions


def test_bool_A_is_accepted_and_stored_as_integers():
    A = _small_graph("dfs") != 0
    trace = run_algorithm("dfs", A)
    assert np.issubdtype(trace.inputs["A"].dtype, np.integer)
    np.testing.assert_array_equal(trace.inputs["A"], A.astype(int))


def test_integer_A_keeps_its_dtype_in_the_input_field():
    A = _small_graph("bfs", dtype=np.int64)
    trace = run_algorithm("bfs", A, 0)
    assert trace.inputs["A"].dtype == np.int64
    np.testing.assert_array_equal(trace.inputs["A"], A)


def test_validation_does_not_modify_the_callers_matrix():
    A = _small_graph("dijkstra")
    before = A.copy()
    run_algorithm("dijkstra", A, 0)
    np.testing.assert_array_equal(A, before)


def test_float16_weights_are_rejected_with_the_supported_dtypes():
    with pytest.raises(ValueError, match="float32 or float64"):
        run_algorithm("dfs", np.ones((3, 3), dtype=np.float16))


def test_floyd_warshall_keeps_float32_arithmetic():
    # CLRS-30 copies A into D, so float32 inputs add distances in float32.
    rng = np.random.default_rng(0)
    A = (rng.random((9, 9)) < 0.5) * rng.uniform(0.1, 1.0, (9, 9))
    A32 = A.astype(np.float32)
    trace = run_algorithm("floyd_warshall", A32)
    assert trace.hints["D"].dtype == np.float32
    D = A32.copy()
    for k in range(9):  # the recorded D at step k is the float32 state before relaxing through k
        np.testing.assert_array_equal(trace.hints["D"][k][np.isfinite(D)], D[np.isfinite(D)])
        msk = trace.hints["msk"][k] > 0
        through = D[:, k:k + 1] + D[k:k + 1, :]
        update = msk[:, k:k + 1] & msk[k:k + 1, :] & (~msk | (through < D))
        D = np.where(update, through, D).astype(np.float32)
