"""The public names and shapes this issue promises (also pinned by acceptance tests)."""

import numpy as np
import pytest

import gnnbench.algo as algo
from gnnbench.algo import ALGORITHMS, CLRS30_SPLITS, LENGTH_GENERALIZATION_SIZES, SPECS, Trace, run_algorithm, sample

TWELVE = ("bfs", "dfs", "topological_sort", "articulation_points", "bridges", "strongly_connected_components",
          "mst_kruskal", "mst_prim", "dijkstra", "bellman_ford", "dag_shortest_paths", "floyd_warshall")


def test_algorithms_tuple():
    assert isinstance(ALGORITHMS, tuple)
    assert ALGORITHMS == TWELVE


@pytest.mark.parametrize("name", TWELVE)
def test_spec_vocabulary(name):
    spec = SPECS[name]
    assert isinstance(spec, dict) or hasattr(spec, "items")
    for field, (stage, location, type_) in spec.items():
        assert stage in ("input", "hint", "output"), field
        assert location in ("node", "edge", "graph"), field
        assert type_ in ("scalar", "categorical", "mask", "mask_one", "pointer"), field
    assert {"pos", "A", "adj"} <= set(spec)
    assert any(st == "output" for st, _, _ in spec.values())
    assert any(st == "hint" for st, _, _ in spec.values())


@pytest.mark.parametrize("name", TWELVE)
def test_run_algorithm_shapes(name):
    n = 7
    rng = np.random.default_rng(1)
    A = np.triu((rng.random((n, n)) < 0.4) * rng.uniform(0.1, 1.0, (n, n)), 1)
    if name not in ("topological_sort", "dag_shortest_paths"):
        A = A + A.T
    s = 0 if "s" in SPECS[name] and SPECS[name]["s"][0] == "input" else None
    trace = run_algorithm(name, A, s)
    assert isinstance(trace, Trace)
    T = trace.num_steps
    assert T >= 1
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


def test_sample_signature_and_determinism():
    a = sample("bfs", 5, n=8, seed=3)
    b = sample("bfs", 5, n=8, seed=3)
    assert len(a) == 5
    for x, y in zip(a, b):
        for field in SPECS["bfs"]:
            np.testing.assert_array_equal(x.field(field), y.field(field))
    assert all(isinstance(t, Trace) for t in a)


def test_clrs30_splits():
    assert (CLRS30_SPLITS["train"].num_samples, CLRS30_SPLITS["train"].n, CLRS30_SPLITS["train"].seed) == (1000, 16, 1)
    assert (CLRS30_SPLITS["val"].num_samples, CLRS30_SPLITS["val"].n, CLRS30_SPLITS["val"].seed) == (32, 16, 2)
    assert (CLRS30_SPLITS["test"].num_samples, CLRS30_SPLITS["test"].n, CLRS30_SPLITS["test"].seed) == (32, 64, 3)
    assert LENGTH_GENERALIZATION_SIZES == (16, 32, 64, 128)


def test_unknown_algorithm_lists_valid_names():
    with pytest.raises(ValueError, match="dijkstra"):
        run_algorithm("quicksort", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="floyd_warshall"):
        sample("nope", 1)


def test_exports():
    for name in ("ALGORITHMS", "SPECS", "run_algorithm", "sample", "Trace", "TraceSet", "Evaluator"):
        assert hasattr(algo, name)


# --------------------------------------------------------------------------- road (issue 3)

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


def test_road_dataset_and_evaluator_signatures():
    import inspect

    from gnnbench.datasets import RoadAccidentDataset
    from gnnbench.road import Evaluator

    parameters = list(inspect.signature(RoadAccidentDataset).parameters)
    assert parameters[:3] == ["root", "state", "task"]
    assert inspect.signature(RoadAccidentDataset).parameters["task"].default == "accident_occurrence"
    assert callable(RoadAccidentDataset.get_split) and callable(RoadAccidentDataset.snapshot)
    for task in ("accident_occurrence", "accident_count", "traffic_volume"):
        assert Evaluator(task).task == task
