"""gnnbench against DeepMind's CLRS-30 reference implementation (dm-clrs), field for field.

Skipped when the reference is not installed, unless GNNBENCH_REQUIRE_CLRS=1 (as in
CI's reference environment), where its absence is an error.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from gnnbench.algo import ALGORITHMS, CLRS30_SPLITS, SPECS, Evaluator, run_algorithm
from gnnbench.algo.reference import load_clrs_reference
from gnnbench.algo.specs import SOURCE_ALGORITHMS
from gnnbench.algo.validation import check_graph

pytestmark = pytest.mark.reference

if os.environ.get("GNNBENCH_REQUIRE_CLRS"):
    REF = load_clrs_reference()
else:
    try:
        REF = load_clrs_reference()
    except ImportError as missing:
        pytest.skip(f"CLRS-30 reference not installed ({missing})", allow_module_level=True)

from clrs_parity import (  # noqa: E402
    mismatches,
    reachable_negative_cycle,
    reference_bellman_ford_steps,
    sampler_mismatches,
)

DAG_ALGORITHMS = ("topological_sort", "dag_shortest_paths")


@pytest.mark.parametrize("name", ALGORITHMS)
def test_spec_equals_reference(name):
    assert list(SPECS[name].items()) == list(REF.specs.SPECS[name].items())


def random_graph(rng: np.random.Generator, name: str):
    """A graph from a broad family: sizes 1-40, densities 0.05-0.95, many weightings."""
    n = int(rng.choice([1, 2, 3, 4, 5, 7, 8, 11, 16, 20, 27, 33, 40]))
    p = float(rng.choice([0.05, 0.15, 0.3, 0.5, 0.7, 0.95]))
    edges = (rng.random((n, n)) < p).astype(np.int64)
    if name in DAG_ALGORITHMS:
        edges = np.triu(edges, 1)
        perm = rng.permutation(n)
        edges = edges[perm][:, perm]
    else:
        if rng.random() < 0.6:
            edges = np.maximum(edges, edges.T)
        if rng.random() < 0.5:
            np.fill_diagonal(edges, 0)
    kind = int(rng.integers(7))
    if kind == 0:
        A = edges
    elif kind == 1:
        A = edges * rng.uniform(0.05, 1.0, (n, n))
    elif kind == 2:
        A = edges * rng.integers(1, 4, (n, n))  # integer weights: many ties
    elif kind == 3:
        weights = np.sqrt(rng.random((n, n)) * rng.random((n, n)).T + 1e-3)
        A = np.maximum(edges * weights, (edges * weights).T)
    elif kind == 4:
        A = (edges * rng.integers(1, 3, (n, n))).astype(np.float64)
    elif kind == 5:
        A = edges * rng.uniform(-1.0, 1.0, (n, n))
    else:
        A = (edges * rng.uniform(0.05, 1.0, (n, n))).astype(np.float32)
    s = int(rng.integers(n)) if name in SOURCE_ALGORITHMS else None
    return A, s


def never_ends(A: np.ndarray, s: int) -> bool:
    """What gnnbench's ``ValueError`` for Bellman-Ford claims, checked independently: a negative
    cycle is reachable from ``s`` and the reference is still looping after 3n + 3 rounds."""
    return reachable_negative_cycle(A, s) and reference_bellman_ford_steps(REF, A, s, 3 * A.shape[0] + 3) is None


@pytest.mark.parametrize("name", ALGORITHMS)
def test_traces_equal_reference_on_random_graphs(name):
    rng = np.random.default_rng(ALGORITHMS.index(name))
    checked = 0
    failures = []
    while checked < 150:
        A, s = random_graph(rng, name)
        try:
            check_graph(name, A, s)
        except ValueError:
            continue  # inputs gnnbench rejects (the reference would loop or misbehave)
        try:
            problems = mismatches(REF, name, A, s)
        except ValueError as error:  # Bellman-Ford on a graph where the reference never ends
            problems = [] if name == "bellman_ford" and never_ends(A, s) else [f"raised {error}"]
        if problems:
            failures.append((A.shape, A.dtype.name, s, problems[:3]))
        checked += 1
    assert not failures, failures[:3]


def mixed_sign_graph(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Directed graphs with weights of both signs: acyclic (no cycle at all), sparse (negative
    cycles now and then) or symmetric (any negative edge is a negative 2-cycle)."""
    n = int(rng.integers(1, 25))
    kind = int(rng.integers(3))
    edges = rng.random((n, n)) < (0.3 if kind == 0 else 0.12)
    if kind == 0:
        edges = np.triu(edges, 1)
        perm = rng.permutation(n)
        edges = edges[perm][:, perm]
    elif kind == 2:
        edges = np.triu(edges, 1)
        edges = edges | edges.T
    weights = rng.choice([rng.uniform(-1.0, 1.0, (n, n)), rng.integers(-3, 4, (n, n)).astype(np.float64)])
    if kind == 2:
        weights = np.triu(weights) + np.triu(weights, 1).T
    return edges * weights, int(rng.integers(n))


def test_bellman_ford_equals_reference_with_negative_weights():
    """Every mixed-sign graph on which the reference ends gives the reference's trace; on every
    other one gnnbench raises, and the reference has a reachable negative cycle and keeps looping."""
    rng = np.random.default_rng(8)
    compared, raised, failures = 0, 0, []  # compared: graphs with a negative weight, traced by both
    for _ in range(300):
        A, s = mixed_sign_graph(rng)
        finished = reference_bellman_ford_steps(REF, A, s, 3 * A.shape[0] + 3)
        try:
            problems = mismatches(REF, "bellman_ford", A, s)
        except ValueError as error:
            raised += 1
            if finished is not None or not reachable_negative_cycle(A, s):
                failures.append((A.shape[0], s, f"raised {error}, reference finished in {finished} steps"))
            continue
        compared += bool((A < 0).any())
        if problems or finished is None:
            failures.append((A.shape[0], s, problems[:3] or ["reference never finished"]))
    assert not failures, failures[:3]
    assert compared >= 100 and raised >= 30, (compared, raised)  # both kinds are exercised


def test_bellman_ford_stops_on_unchanged_distances_like_the_reference():
    """CLRS-30 stops after a round that changes no distance, even if a node was first reached in it
    at distance exactly 0 and a negative cycle lies beyond it. Hand-computed: 0 -> 1 (1), 1 -> 2 (-1),
    2 -> 3 (-5), 3 -> 2 (1); round 1 reaches node 1 (d = 1), round 2 node 2 at d = 1 - 1 = 0."""
    A = np.zeros((4, 4))
    A[0, 1], A[1, 2], A[2, 3], A[3, 2] = 1.0, -1.0, -5.0, 1.0
    expected = {
        "pi_h": np.array([[0, 1, 2, 3], [0, 0, 2, 3]]),
        "d": np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]),
        "msk": np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]),
        "pi": np.array([0, 0, 1, 3]),
    }
    trace = run_algorithm("bellman_ford", A, 0)
    for field, want in expected.items():
        np.testing.assert_array_equal(trace.field(field), want, err_msg=field)
    assert reachable_negative_cycle(A, 0)  # 2 -> 3 -> 2 weighs -4
    assert reference_bellman_ford_steps(REF, A, 0, 100) == 2
    assert mismatches(REF, "bellman_ford", A, 0) == []


@pytest.mark.parametrize("name", ("dijkstra", "mst_prim", "mst_kruskal"))
@pytest.mark.parametrize("n", (20, 64, 100))
def test_tie_breaking_equals_reference(name, n):
    """Integer weights tie constantly; NumPy's (SIMD) argsort decides, as in CLRS-30."""
    rng = np.random.default_rng(n)
    for trial in range(6):
        edges = (rng.random((n, n)) < 0.3).astype(np.int64)
        edges = np.maximum(edges, edges.T)
        A = edges * rng.integers(1, 3, (n, n))
        A = np.maximum(A, A.T)
        if trial % 2:
            A = A.astype(np.float64)
        s = None if name == "mst_kruskal" else int(rng.integers(n))
        assert mismatches(REF, name, A, s) == []


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("split", ("val", "test"))
def test_clrs30_split_equals_reference(name, split):
    config = CLRS30_SPLITS[split]
    assert sampler_mismatches(REF, name, config.num_samples, config.n, config.seed) == []


@pytest.mark.parametrize("name", ALGORITHMS)
def test_clrs30_train_prefix_equals_reference(name):
    # The sampler draws graphs sequentially, so the first 100 graphs of seed 1 are
    # the first 100 of CLRS-30's training split.
    config = CLRS30_SPLITS["train"]
    assert sampler_mismatches(REF, name, 100, config.n, config.seed) == []


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("n, seed, options", [(5, 11, {}), (33, 12, {}), (12, 13, {"p": (0.1, 0.3, 0.9)})])
def test_sampler_options_equal_reference(name, n, seed, options):
    assert sampler_mismatches(REF, name, 8, n, seed, **options) == []


def test_scc_community_options_equal_reference():
    assert sampler_mismatches(REF, "strongly_connected_components", 6, 12, 4, k=3, eps=0.2) == []


@pytest.mark.parametrize("name", ALGORITHMS)
def test_evaluator_equals_reference(name):
    from clrs._src import evaluation

    from gnnbench.algo import sample

    traces = sample(name, 16, n=10, seed=3)
    rng = np.random.default_rng(0)
    truth, preds = {}, {}
    for field, (stage, location, type_) in SPECS[name].items():
        if stage != "output":
            continue
        values = traces.outputs[field]
        if type_ == "pointer":
            pred = np.where(rng.random(values.shape) < 0.7, values, rng.integers(0, 10, values.shape))
        elif type_ == "mask":
            pred = np.where(rng.random(values.shape) < 0.7, values, rng.random(values.shape))
        else:
            pred = values + rng.normal(0, 0.5, values.shape)
        truth[field] = REF.probing.DataPoint(field, location, type_, values)
        preds[field] = REF.probing.DataPoint(field, location, type_, pred)
    expected = evaluation.evaluate(tuple(truth.values()), preds)
    got = Evaluator(name).eval({"y_true": {k: v.data for k, v in truth.items()},
                                "y_pred": {k: v.data for k, v in preds.items()}})
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(float(expected[key]), rel=1e-6, abs=1e-9)
