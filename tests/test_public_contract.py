"""The public names, signatures and behaviours the issues promise, pinned by behaviour (not just existence)."""

import inspect

import numpy as np
import pytest

import gnnbench.algo as algo
from gnnbench.algo import (ALGORITHMS, CLRS30_SPLITS, LENGTH_GENERALIZATION_SIZES, SPECS, Evaluator, Trace, TraceSet,
                           run_algorithm, sample)

TWELVE = ("bfs", "dfs", "topological_sort", "articulation_points", "bridges", "strongly_connected_components",
          "mst_kruskal", "mst_prim", "dijkstra", "bellman_ford", "dag_shortest_paths", "floyd_warshall")

# Entries of CLRS-30's spec table, copied by hand from
# https://github.com/google-deepmind/clrs/blob/master/clrs/_src/specs.py (the same names, stages, locations, types).
CLRS30_SPEC_EXCERPT = {
    "bfs": {"pos": ("input", "node", "scalar"), "s": ("input", "node", "mask_one"), "A": ("input", "edge", "scalar"),
            "adj": ("input", "edge", "mask"), "pi": ("output", "node", "pointer"),
            "reach_h": ("hint", "node", "mask"), "pi_h": ("hint", "node", "pointer")},
    "topological_sort": {"topo": ("output", "node", "pointer"), "topo_head": ("output", "node", "mask_one"),
                         "color": ("hint", "node", "categorical"), "s_prev": ("hint", "node", "pointer")},
    "dijkstra": {"pi": ("output", "node", "pointer"), "d": ("hint", "node", "scalar"),
                 "mark": ("hint", "node", "mask"), "in_queue": ("hint", "node", "mask"),
                 "u": ("hint", "node", "mask_one")},
    "floyd_warshall": {"Pi": ("output", "edge", "pointer"), "Pi_h": ("hint", "edge", "pointer"),
                       "D": ("hint", "edge", "scalar"), "msk": ("hint", "edge", "mask"),
                       "k": ("hint", "node", "mask_one")},
}


def test_algorithms_tuple():
    assert type(ALGORITHMS) is tuple and ALGORITHMS == TWELVE
    assert set(SPECS) == set(TWELVE)


@pytest.mark.parametrize("name", sorted(CLRS30_SPEC_EXCERPT))
def test_spec_entries_equal_clrs30s(name):
    for field, expected in CLRS30_SPEC_EXCERPT[name].items():
        assert tuple(SPECS[name][field]) == expected, field


@pytest.mark.parametrize("name", TWELVE)
def test_spec_vocabulary(name):
    spec = SPECS[name]
    for field, (stage, location, type_) in spec.items():
        assert stage in ("input", "hint", "output"), field
        assert location in ("node", "edge", "graph"), field
        assert type_ in ("scalar", "categorical", "mask", "mask_one", "pointer"), field
    assert spec["pos"] == ("input", "node", "scalar") and spec["A"] == ("input", "edge", "scalar")
    assert spec["adj"] == ("input", "edge", "mask")
    # CLRS-30's algorithms with a source node (an input "s")
    assert ("s" in spec and spec["s"][0] == "input") == (name in (
        "bfs", "mst_prim", "dijkstra", "bellman_ford", "dag_shortest_paths"))


def test_run_algorithm_signature():
    parameters = inspect.signature(run_algorithm).parameters
    assert list(parameters) == ["name", "A", "s"] and parameters["s"].default is None


def test_bfs_trace_on_a_path_by_hand():
    """BFS from 0 on the path 0 - 1 - 2, traced by hand with CLRS-30's rules (a hint before each sweep)."""
    A = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])
    trace = run_algorithm("bfs", A, s=0)
    assert trace.num_steps == 3
    np.testing.assert_array_equal(trace.hints["reach_h"], [[1, 0, 0], [1, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(trace.hints["pi_h"], [[0, 1, 2], [0, 0, 2], [0, 0, 1]])
    np.testing.assert_array_equal(trace.outputs["pi"], [0, 0, 1])
    np.testing.assert_allclose(trace.inputs["pos"], [0, 1 / 3, 2 / 3])
    np.testing.assert_array_equal(trace.inputs["s"], [1, 0, 0])


@pytest.mark.parametrize("name", TWELVE)
def test_run_algorithm_shapes(name):
    n = 7
    rng = np.random.default_rng(1)
    A = np.triu((rng.random((n, n)) < 0.4) * rng.uniform(0.1, 1.0, (n, n)), 1)
    if name not in ("topological_sort", "dag_shortest_paths"):
        A = A + A.T
    s = 0 if "s" in SPECS[name] and SPECS[name]["s"][0] == "input" else None
    trace = run_algorithm(name, A, s)
    T = trace.num_steps
    for field, (stage, location, type_) in SPECS[name].items():
        value = trace.field(field)
        shape = {"node": (n,), "edge": (n, n), "graph": ()}[location]
        if stage == "hint":
            shape = (T, *shape)
        if type_ == "categorical":
            assert value.shape[:-1] == shape, field
        else:
            assert value.shape == shape, field
    assert set(trace.inputs) | set(trace.hints) | set(trace.outputs) == set(SPECS[name])
    np.testing.assert_array_equal(trace.inputs["A"], A)  # the input is the graph given


def test_sample_signature_and_determinism():
    parameters = inspect.signature(sample).parameters
    assert list(parameters) == ["name", "num", "n", "seed", "sampler_options"]
    assert parameters["n"].default == 16 and parameters["seed"].default == 0
    assert parameters["sampler_options"].kind == inspect.Parameter.VAR_KEYWORD
    a = sample("bfs", 5, n=8, seed=3)
    b = sample("bfs", 5, n=8, seed=3)
    c = sample("bfs", 5, n=8, seed=4)
    assert len(a) == 5 and a.inputs["A"].shape == (5, 8, 8)
    for x, y in zip(a, b):
        for field in SPECS["bfs"]:
            np.testing.assert_array_equal(x.field(field), y.field(field))
    assert not np.array_equal(a.inputs["A"], c.inputs["A"])
    # each sampled trace is the trace of its own graph and source
    for i in range(5):
        again = run_algorithm("bfs", a.inputs["A"][i], int(np.argmax(a.inputs["s"][i])))
        np.testing.assert_array_equal(again.outputs["pi"], a[i].outputs["pi"])


def test_clrs30_splits():
    table = {name: (c.num_samples, c.n, c.seed) for name, c in CLRS30_SPLITS.items()}
    assert table == {"train": (1000, 16, 1), "valid": (32, 16, 2), "test": (32, 64, 3)}
    assert CLRS30_SPLITS["val"] == CLRS30_SPLITS["valid"]  # CLRS-30's spelling is accepted
    assert LENGTH_GENERALIZATION_SIZES == (16, 32, 64, 128)


def test_unknown_algorithm_lists_valid_names():
    with pytest.raises(ValueError, match="dijkstra"):
        run_algorithm("quicksort", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="floyd_warshall"):
        sample("nope", 1)


def test_exports_and_evaluator_contract():
    assert {"ALGORITHMS", "SPECS", "run_algorithm", "sample", "Trace", "TraceSet", "Evaluator"} <= set(algo.__all__)
    assert algo.Trace is Trace and algo.TraceSet is TraceSet
    assert list(inspect.signature(Evaluator).parameters) == ["algorithm"]
    truth = {"pi": np.array([[0, 0, 1], [1, 1, 1]])}
    # two of six pointers wrong: exact-match accuracy 4 / 6, and the score is the mean over the one output field
    result = Evaluator("bfs").eval({"y_true": truth, "y_pred": {"pi": np.array([[0, 0, 0], [1, 1, 2]])}})
    assert result == {"pi": pytest.approx(4 / 6), "score": pytest.approx(4 / 6)}


# --------------------------------------------------------------------------- road (issue 3, renamed in issue 8)

ML4RS_SPLITS = {
    "DE": ((2009, 2012), (2013, 2017), (2018, 2022)), "IA": ((2013, 2016), (2017, 2019), (2020, 2022)),
    "IL": ((2012, 2014), (2015, 2017), (2018, 2021)), "MA": ((2002, 2008), (2009, 2015), (2016, 2022)),
    "MD": ((2015, 2017), (2018, 2019), (2020, 2022)), "MN": ((2015, 2017), (2018, 2019), (2020, 2022)),
    "MT": ((2016, 2017), (2018, 2018), (2019, 2020)), "NV": ((2016, 2017), (2018, 2018), (2019, 2020)),
}


@pytest.mark.parametrize("code", sorted(ML4RS_SPLITS))
def test_road_state_registry_splits(code):
    from gnnbench.road import STATES

    assert set(STATES) == set(ML4RS_SPLITS)
    expected = {name: list(range(first, last + 1))
                for name, (first, last) in zip(("train", "valid", "test"), ML4RS_SPLITS[code])}
    assert STATES[code].splits == expected and type(STATES[code].splits) is dict


def test_road_dataset_signature():
    from gnnbench.datasets import RoadAccidentDataset

    parameters = inspect.signature(RoadAccidentDataset).parameters
    assert list(parameters)[:7] == ["root", "state", "task", "transform", "pre_transform", "pre_filter",
                                    "force_reload"]
    assert parameters["task"].default == "accident_occurrence"
    assert parameters["source"].kind == inspect.Parameter.KEYWORD_ONLY and parameters["source"].default == "build"
    for name in ("get_split", "get_idx_split", "snapshot", "training_edges"):
        assert inspect.isfunction(getattr(RoadAccidentDataset, name)), name
    assert list(inspect.signature(RoadAccidentDataset.snapshot).parameters)[:3] == ["self", "year", "month"]
    with pytest.raises(TypeError, match="needs a state"):
        RoadAccidentDataset()


def test_algorithmic_dataset_signature():
    from gnnbench.datasets import AlgorithmicReasoningDataset

    parameters = inspect.signature(AlgorithmicReasoningDataset).parameters
    assert list(parameters)[:7] == ["root", "algorithm", "split", "transform", "pre_transform", "pre_filter",
                                    "force_reload"]
    assert parameters["split"].default == "train"


def test_road_evaluator_tasks():
    import torch

    from gnnbench.road import Evaluator as RoadEvaluator

    result = RoadEvaluator("accident_count").eval({"y_true": torch.tensor([1.0, 3.0, 0.0]),
                                                   "y_pred": torch.tensor([2.0, 3.0, 2.0])})
    assert result["mae"] == pytest.approx(1.0) and result["rmse"] == pytest.approx(np.sqrt(5 / 3))
    with pytest.raises(ValueError, match="task"):
        RoadEvaluator("crash_severity")
