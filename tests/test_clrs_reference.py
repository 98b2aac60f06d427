"""gnnbench against DeepMind's CLRS-30 reference implementation (dm-clrs), field for field.

Skipped when the reference is not installed, unless GNNBENCH_REQUIRE_CLRS=1 (as in
CI's reference environment), where its absence is an error.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from gnnbench.algo import ALGORITHMS, CLRS30_SPLITS, SPECS, Evaluator
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

from clrs_parity import mismatches, sampler_mismatches  # noqa: E402

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
        if name == "bellman_ford" and (A < 0).any():
            continue  # negative cycles make the reference loop forever
        problems = mismatches(REF, name, A, s)
        if problems:
            failures.append((A.shape, A.dtype.name, s, problems[:3]))
        checked += 1
    assert not failures, failures[:3]


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
