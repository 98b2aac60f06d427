"""Structural invariants of the hint trajectories of all twelve algorithms.

These hold for every CLRS-30 trace whatever the graph: one-hot fields are
exactly one-hot, monotone state (reached sets, marks, colours, tree edges) only
grows, the last hint step agrees with the output, inputs are derived from ``A``
as CLRS-30 derives them, and sampling is deterministic in its seed.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from gnnbench.algo import ALGORITHMS, SPECS, sample, sample_graphs

SOURCE_ALGORITHMS = frozenset({"bfs", "mst_prim", "dijkstra", "bellman_ford", "dag_shortest_paths"})
DFS_FAMILY = ("dfs", "topological_sort", "articulation_points", "bridges", "strongly_connected_components",
              "dag_shortest_paths")
NUM = 20

# (n, seed, sampler options): CLRS-30's defaults plus sparse/dense/mixed variations.
BATCHES = (
    (2, 11, ()),
    (7, 12, (("p", (0.1, 0.9)),)),
    (12, 13, ()),
    (24, 14, (("p", 0.15),)),
)


def _options(name: str, n: int, options: tuple) -> dict:
    opts = dict(options)
    if name == "strongly_connected_components" and n < 4:
        opts["k"] = n  # CLRS-30's SCC graphs have k = 4 communities, which needs n >= 4
    return opts


@functools.lru_cache(maxsize=None)
def batch(name: str, n: int, seed: int, options: tuple):
    opts = _options(name, n, options)
    return sample(name, NUM, n=n, seed=seed, **opts), sample_graphs(name, NUM, n, seed, **opts)


def traces(name: str, n: int, seed: int, options: tuple):
    """(trace, A, s) for each sampled graph."""
    traceset, (graphs, sources) = batch(name, n, seed, options)
    return [(traceset[i], graphs[i], int(sources[i])) for i in range(len(traceset))]


def cases(names=ALGORITHMS):
    return [pytest.param(name, n, seed, options, id=f"{name}-n{n}-seed{seed}")
            for name in names for n, seed, options in BATCHES]


def hint_fields(name: str, *types: str):
    return [f for f, (stage, _, kind) in SPECS[name].items() if stage == "hint" and kind in types]


def assert_never_decreases(x: np.ndarray, what: str) -> None:
    x = np.asarray(x)
    steps = np.flatnonzero(np.any(np.diff(x, axis=0) < 0, axis=tuple(range(1, x.ndim))))
    assert steps.size == 0, f"{what} decreases from step {steps[0]} to {steps[0] + 1}"


def test_assert_never_decreases_can_fail():
    assert_never_decreases(np.array([[0, 0], [0, 1], [1, 1]]), "x")
    with pytest.raises(AssertionError, match="x decreases from step 1 to 2"):
        assert_never_decreases(np.array([[0, 0], [0, 1], [1, 0]]), "x")
    with pytest.raises(AssertionError, match="decreases from step 0 to 1"):
        assert_never_decreases(np.array([[[1.0]], [[0.5]]]), "x")


# Per-step checks below only bite when the event they guard happens: a parent or distance that
# changes, a mark or tree edge that is added. Count those events over all BATCHES so that a
# batch change cannot leave a check with nothing to look at.

def _changes(x):
    return np.diff(np.asarray(x), axis=0)


EVENTS = {
    # bfs: pi_h changes at some step after the first (what "parents are set once" constrains)
    "bfs pi_h set": ("bfs", lambda t, A, s: np.sum(_changes(t.hints["pi_h"]) != 0)),
    # bellman_ford / floyd_warshall: a known (masked) distance strictly improves
    "bellman_ford known d improves": ("bellman_ford", lambda t, A, s: np.sum(
        (_changes(t.hints["d"]) < 0) & (np.asarray(t.hints["msk"])[:-1] == 1))),
    "floyd_warshall known D improves": ("floyd_warshall", lambda t, A, s: np.sum(
        (_changes(t.hints["D"]) < 0) & (np.asarray(t.hints["msk"])[:-1] == 1))),
    "dijkstra mark added": ("dijkstra", lambda t, A, s: np.sum(_changes(t.hints["mark"]) > 0)),
    "mst_prim mark added": ("mst_prim", lambda t, A, s: np.sum(_changes(t.hints["mark"]) > 0)),
    "mst_kruskal edge added": ("mst_kruskal", lambda t, A, s: np.sum(_changes(t.hints["in_mst_h"]) > 0)),
    "bridges edge decided": ("bridges", lambda t, A, s: np.sum(_changes(t.hints["is_bridge_h"]) > 0)),
    "dfs time set": ("dfs", lambda t, A, s: np.sum(_changes(t.hints["d"]) != 0)),
    "scc second pass": ("strongly_connected_components", lambda t, A, s: np.sum(_changes(t.hints["phase"]) > 0)),
}


@pytest.mark.parametrize("event", list(EVENTS))
def test_batches_exercise_the_per_step_checks(event):
    name, count = EVENTS[event]
    total = sum(int(count(*case)) for n, seed, options in BATCHES for case in traces(name, n, seed, options))
    assert total > 0, f"no trace in BATCHES has a '{event}' event: the per-step check of {name} checks nothing"


# --- generic shape and value checks ------------------------------------------------

@pytest.mark.parametrize(("name", "n", "seed", "options"), cases())
def test_hints_are_time_first_with_a_common_length(name, n, seed, options):
    for trace, A, s in traces(name, n, seed, options):
        lengths = {f: np.shape(v)[0] for f, v in trace.hints.items()}
        assert len(set(lengths.values())) == 1, f"hint lengths differ: {lengths}"
        assert trace.num_steps >= 1
        for field, (stage, location, kind) in SPECS[name].items():
            if stage != "hint":
                continue
            shape = np.shape(trace.hints[field])[1:]
            base = {"node": (n,), "edge": (n, n), "graph": ()}[location]
            if kind == "categorical":
                assert shape[:-1] == base and shape[-1] >= 2, f"{field}: shape {shape}"
            else:
                assert shape == base, f"{field}: shape {shape}, expected {base}"


ONE_HOT_ALGORITHMS = [a for a in ALGORITHMS if hint_fields(a, "mask_one", "categorical")]  # not bfs, bellman_ford


@pytest.mark.parametrize(("name", "n", "seed", "options"), cases(ONE_HOT_ALGORITHMS))
def test_mask_one_and_categorical_hints_are_one_hot(name, n, seed, options):
    fields = hint_fields(name, "mask_one", "categorical")
    for i, (trace, A, s) in enumerate(traces(name, n, seed, options)):
        for field in fields:
            x = np.asarray(trace.hints[field])
            assert np.all((x == 0) | (x == 1)), f"trace {i} {field}: values other than 0/1"
            sums = x.sum(axis=-1)
            bad = np.argwhere(sums != 1)
            assert bad.size == 0, f"trace {i} {field}: not one-hot at (step, ...) {tuple(bad[0])}"


@pytest.mark.parametrize(("name", "n", "seed", "options"), cases())
def test_mask_and_pointer_hints_take_valid_values(name, n, seed, options):
    for i, (trace, A, s) in enumerate(traces(name, n, seed, options)):
        for field in hint_fields(name, "mask"):
            x = np.asarray(trace.hints[field])
            allowed = (-1, 0, 1) if field == "is_bridge_h" else (0, 1)
            assert np.all(np.isin(x, allowed)), f"trace {i} {field}: values {np.unique(x)}"
        for field in hint_fields(name, "pointer"):
            x = np.asarray(trace.hints[field])
            assert np.all(x == np.rint(x)) and x.min() >= 0 and x.max() < n, f"trace {i} {field}: not node ids"


@pytest.mark.parametrize(("name", "n", "seed", "options"), cases())
def test_inputs_derive_from_the_graph(name, n, seed, options):
    for i, (trace, A, s) in enumerate(traces(name, n, seed, options)):
        assert np.array_equal(trace.inputs["A"], A), f"trace {i}: A is not the sampled graph"
        assert np.allclose(trace.inputs["pos"], np.arange(n) / n), f"trace {i}: pos != arange(n) / n"
        assert np.array_equal(trace.inputs["adj"], ((A + np.eye(n)) != 0).astype(float)), f"trace {i}: adj"
        if name in SOURCE_ALGORITHMS:
            assert np.array_equal(trace.inputs["s"], np.eye(n)[s]), f"trace {i}: s is not one-hot at {s}"
        else:
            assert "s" not in trace.inputs


# --- algorithm-specific monotonicity -------------------------------------------------

@pytest.mark.parametrize(("name", "n", "seed", "options"), cases(["bfs"]))
def test_bfs_reach_grows_from_the_source(name, n, seed, options):
    for trace, A, s in traces(name, n, seed, options):
        reach = np.asarray(trace.hints["reach_h"])
        assert np.array_equal(reach[0], np.eye(n)[s]), "first reach_h step is not exactly the source"
        assert_never_decreases(reach, "reach_h")
        # Parents are set once, when a node is reached, and then stay.
        pi = np.asarray(trace.hints["pi_h"])
        for t in range(1, len(pi)):
            changed = pi[t] != pi[t - 1]
            assert np.all(reach[t - 1][changed] == 0), f"pi_h of an already reached node changes at step {t}"


@pytest.mark.parametrize(("name", "n", "seed", "options"), cases(DFS_FAMILY))
def test_dfs_colour_goes_white_grey_black(name, n, seed, options):
    for i, (trace, A, s) in enumerate(traces(name, n, seed, options)):
        color = np.asarray(trace.hints["color"]).argmax(axis=-1)
        if name == "strongly_connected_components":
            # Kosaraju's second pass (phase 1) repaints every node white once.
            phase = np.asarray(trace.hints["phase"])
            assert_never_decreases(phase, "phase")
            assert phase[0] == 0
            segments = [color[phase == 0], color[phase == 1]]
            assert len(segments[1]) and np.all(segments[0][-1] == 2), f"trace {i}: first pass leaves white nodes"
        else:
            segments = [color]
        for seg in segments:
            steps = np.diff(seg, axis=0)
            assert np.all((steps == 0) | (steps == 1)), f"trace {i}: colour changes other than +1 (white->grey->black)"
        final = segments[-1][-1]
        if name == "dag_shortest_paths":
            # Only the nodes the source reaches are visited: exactly the finished ones.
            reached = np.asarray(trace.outputs["pi"]) != np.arange(n)
            reached[s] = True
            assert np.array_equal(final == 2, reached), f"trace {i}: black nodes != nodes reached from s"
            assert np.all(final != 1)
        else:
            assert np.all(final == 2), f"trace {i}: not every node ends black"


@pytest.mark.parametrize(("name", "n", "seed", "options"), cases(["dfs", "articulation_points", "bridges"]))
def test_dfs_times_once_set_never_change(name, n, seed, options):
    for i, (trace, A, s) in enumerate(traces(name, n, seed, options)):
        for field in ("d", "f"):
            x = np.asarray(trace.hints[field])
            for t in range(1, len(x)):
                was_set = x[t - 1] != 0
                assert np.array_equal(x[t][was_set], x[t - 1][was_set]), f"trace {i}: {field} changes at step {t}"
            assert np.all(x[-1] > 0), f"trace {i}: some node never gets {field}"
        d, f = np.asarray(trace.hints["d"])[-1], np.asarray(trace.hints["f"])[-1]
        assert np.all(d < f)
        times = np.rint(np.concatenate([d, f]) * 100).astype(int)
        assert sorted(times) == list(range(1, 2 * n + 1)), f"trace {i}: times are not 0.01, 0.02, ..., 2n/100"


@pytest.mark.parametrize(("name", "n", "seed", "options"), cases(["dijkstra", "mst_prim"]))
def test_priority_queue_marks_only_grow(name, n, seed, options):
    for i, (trace, A, s) in enumerate(traces(name, n, seed, options)):
        mark = np.asarray(trace.hints["mark"])
        in_queue = np.asarray(trace.hints["in_queue"])
        assert_never_decreases(mark, "mark")
        assert not np.any((mark == 1) & (in_queue == 1)), f"trace {i}: a marked node is still queued"
        assert np.array_equal(mark[0], np.zeros(n)) and np.array_equal(in_queue[0], np.eye(n)[s])


@pytest.mark.parametrize(("name", "n", "seed", "options"), cases(["bellman_ford"]))
def test_bellman_ford_mask_only_grows(name, n, seed, options):
    for i, (trace, A, s) in enumerate(traces(name, n, seed, options)):
        msk = np.asarray(trace.hints["msk"])
        assert np.array_equal(msk[0], np.eye(n)[s])
        assert_never_decreases(msk, "msk")
        d = np.asarray(trace.hints["d"])
        for t in range(1, len(d)):
            was = msk[t - 1] == 1
            assert np.all(d[t][was] <= d[t - 1][was]), f"trace {i}: a known distance increases at step {t}"


@pytest.mark.parametrize(("name", "n", "seed", "options"), cases(["floyd_warshall"]))
def test_floyd_warshall_mask_grows_and_distances_shrink(name, n, seed, options):
    for i, (trace, A, s) in enumerate(traces(name, n, seed, options)):
        msk = np.asarray(trace.hints["msk"])
        D = np.asarray(trace.hints["D"])
        assert np.array_equal(msk[0], ((A + np.eye(n)) != 0).astype(float))
        assert np.array_equal(D[0], A)
        assert np.array_equal(np.asarray(trace.hints["k"]), np.eye(n)), "k is not 0, 1, ..., n-1"
        assert_never_decreases(msk, "msk")
        for t in range(1, len(D)):
            was = msk[t - 1] == 1
            assert np.all(D[t][was] <= D[t - 1][was]), f"trace {i}: D increases where reachable at step {t}"


@pytest.mark.parametrize(("name", "n", "seed", "options"), cases(["mst_kruskal"]))
def test_kruskal_tree_only_grows_to_the_output(name, n, seed, options):
    for i, (trace, A, s) in enumerate(traces(name, n, seed, options)):
        in_mst_h = np.asarray(trace.hints["in_mst_h"])
        assert np.all(in_mst_h[0] == 0)
        assert_never_decreases(in_mst_h, "in_mst_h")
        assert np.array_equal(in_mst_h[-1], trace.outputs["in_mst"]), f"trace {i}: last in_mst_h != in_mst"


# --- last hint step equals the output -------------------------------------------------

LAST_STEP_IS_OUTPUT = {
    "bfs": (("pi_h", "pi"),),
    "dfs": (("pi_h", "pi"),),
    "topological_sort": (("topo_h", "topo"), ("topo_head_h", "topo_head")),
    "articulation_points": (("is_cut_h", "is_cut"),),
    "bridges": (("is_bridge_h", "is_bridge"),),
    "strongly_connected_components": (("scc_id_h", "scc_id"),),
    "mst_kruskal": (("in_mst_h", "in_mst"),),
    "mst_prim": (("pi_h", "pi"),),
    "dijkstra": (("pi_h", "pi"),),
    "bellman_ford": (("pi_h", "pi"),),
    "dag_shortest_paths": (("pi_h", "pi"),),
}


@pytest.mark.parametrize(("name", "n", "seed", "options"), cases(list(LAST_STEP_IS_OUTPUT)))
def test_last_hint_step_equals_output(name, n, seed, options):
    for i, (trace, A, s) in enumerate(traces(name, n, seed, options)):
        for hint, output in LAST_STEP_IS_OUTPUT[name]:
            last = np.asarray(trace.hints[hint])[-1]
            assert np.array_equal(last, trace.outputs[output]), f"trace {i}: last {hint} != {output}"


@pytest.mark.parametrize(("name", "n", "seed", "options"), cases(["bridges"]))
def test_bridge_hint_starts_from_the_edge_mask(name, n, seed, options):
    for i, (trace, A, s) in enumerate(traces(name, n, seed, options)):
        is_bridge_h = np.asarray(trace.hints["is_bridge_h"])
        assert np.array_equal(is_bridge_h[0], ((A + np.eye(n)) != 0) - 1.0), f"trace {i}: first step"
        assert_never_decreases(is_bridge_h, "is_bridge_h")


# --- determinism -------------------------------------------------------------------------

def _all_arrays(traceset):
    arrays = {"offsets": np.asarray(traceset.offsets)}
    arrays.update({f"input {k}": np.asarray(v) for k, v in traceset.inputs.items()})
    arrays.update({f"output {k}": np.asarray(v) for k, v in traceset.outputs.items()})
    arrays.update({f"hint {k}": np.asarray(traceset.hint_array(k)) for k in traceset.hints})
    return arrays


@pytest.mark.parametrize("name", ALGORITHMS)
def test_sampling_is_deterministic_in_the_seed(name):
    first = _all_arrays(sample(name, 20, n=12, seed=5))
    second = _all_arrays(sample(name, 20, n=12, seed=5))
    assert first.keys() == second.keys()
    for key in first:
        assert first[key].dtype == second[key].dtype, key
        assert np.array_equal(first[key], second[key]), f"{key} differs between two runs with seed 5"
    other = sample(name, 20, n=12, seed=6)
    assert not np.array_equal(np.asarray(other.inputs["A"]), first["input A"]), "seed 6 gave seed 5's graphs"
    graphs, _ = sample_graphs(name, 20, 12, 5)
    assert np.array_equal(graphs, first["input A"]), "sample and sample_graphs disagree on the graphs"
