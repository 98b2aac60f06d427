"""RoadAccidentDataset: months as items, snapshots against the tables, fresh tensors, PyG conventions, caching."""

from __future__ import annotations

import inspect
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from gnnbench.datasets import RoadAccidentDataset
from gnnbench.io import CacheRebuiltWarning
from gnnbench.road import Evaluator
from gnnbench.road.build import RegionPaths
from gnnbench.road.tables import WEATHER_COLUMNS, read_table

DEMO_YEARS = (2018, 2019, 2020, 2021)  # the demo region's crash years (gnnbench.road.demo.region)
DEMO_MONTHS = [(year, month) for year in DEMO_YEARS for month in range(1, 13)]


@pytest.fixture(scope="module")
def root(tmp_path_factory, copy_demo_region):
    root = copy_demo_region(tmp_path_factory.mktemp("road"))  # built once per test run (conftest.demo_region)
    RoadAccidentDataset(root, "DEMO")
    return root


@pytest.fixture
def copy(root, tmp_path):
    """A private copy of the built region (for tests that write caches or change files)."""
    target = tmp_path / "copy"
    shutil.copytree(root, target)
    return target


@pytest.fixture(scope="module")
def tables(root):
    directory = RegionPaths.for_region("DEMO", root).tables
    return {name: read_table(name, directory).to_pandas()
            for name in ("nodes", "edges", "accidents", "node_weather", "edge_volume")}


def expected_counts(tables, year, month):
    """Crash count per directed edge in a month, from the accidents table (crashes sit on canonical edges)."""
    accidents = tables["accidents"]
    rows = accidents[(accidents.year == year) & (accidents.month == month)]
    counts = np.zeros(len(tables["edges"]), dtype=np.float32)
    np.add.at(counts, rows.edge_id.to_numpy(), rows["count"].to_numpy())
    return counts


def assert_static_equals_tables(graph, tables):
    edges, nodes = tables["edges"], tables["nodes"]
    assert torch.equal(graph.edge_index, torch.tensor(np.stack([edges["src"], edges["dst"]])))
    np.testing.assert_allclose(graph.edge_attr[:, 0].numpy(), edges["length_m"], rtol=1e-6)
    assert torch.equal(graph.edge_attr[:, 8:].sum(1), torch.ones(len(edges)))  # the highway one-hot
    np.testing.assert_allclose(graph.x[:, 2].numpy(), nodes["lon"], rtol=1e-6)
    np.testing.assert_allclose(graph.x[:, 3].numpy(), nodes["lat"], rtol=1e-6)


# --- content ----------------------------------------------------------------------------------------

def test_static_graph_matches_the_tables(root, tables):
    dataset = RoadAccidentDataset(root, "DEMO")
    graph = dataset.static_graph
    assert graph.num_nodes == len(tables["nodes"]) and graph.x.shape == (len(tables["nodes"]), 4)
    names = dataset.edge_feature_names
    assert graph.edge_attr.shape == (len(tables["edges"]), 23) and len(names) == 23
    assert names[0] == "length_m" and names[8] == "highway_motorway"
    assert_static_equals_tables(graph, tables)


def test_items_are_the_months(root, tables):
    dataset = RoadAccidentDataset(root, "DEMO", "accident_count")
    assert len(dataset) == len(DEMO_MONTHS) == 48 and dataset.months == DEMO_MONTHS
    for i in (0, 17, 47, -1):
        year, month = DEMO_MONTHS[i]
        item = dataset[i]
        assert (item.year, item.month) == (year, month)
        np.testing.assert_array_equal(item.y.numpy()[item.eval_mask.numpy()],
                                      expected_counts(tables, year, month)[item.eval_mask.numpy()])
        assert_static_equals_tables(item, tables)
    with pytest.raises(IndexError):
        dataset[48]


def test_snapshot_labels_equal_the_accidents_table(root, tables):
    dataset = RoadAccidentDataset(root, "DEMO", task="accident_count")
    segment = dataset.store.segment
    for year, month in [(2018, 1), (2019, 7), (2021, 12)]:
        data = dataset.snapshot(year, month)
        expected = expected_counts(tables, year, month)
        mask = data.eval_mask.numpy()
        np.testing.assert_array_equal(data.y.numpy()[mask], expected[mask])
        assert expected[~mask].sum() == 0  # crashes sit on canonical edges only
        accidents = tables["accidents"]
        assert data.y.numpy()[mask].sum() == accidents[(accidents.year == year) & (accidents.month == month)][
            "count"].sum()
        twins = segment != np.arange(len(mask))  # both directions of a two-way road carry their segment's count
        assert twins.any()
        np.testing.assert_array_equal(data.y.numpy()[twins], expected[segment[twins]])
    occurrence = RoadAccidentDataset(root, "DEMO").snapshot(2019, 7)
    assert torch.equal(occurrence.y, torch.from_numpy((expected_counts(tables, 2019, 7)[segment] > 0)
                                                      .astype(np.float32)))


def test_snapshot_node_features_carry_that_months_weather(root, tables):
    dataset = RoadAccidentDataset(root, "DEMO")
    weather = tables["node_weather"]
    data = dataset.snapshot(2020, 3)
    rows = weather[(weather.year == 2020) & (weather.month == 3)].sort_values("node_id")
    np.testing.assert_allclose(data.x[:, 4:].numpy(), rows[list(WEATHER_COLUMNS)].to_numpy(), rtol=1e-6)
    assert dataset.node_feature_names[4:] == list(WEATHER_COLUMNS)
    assert data.year == 2020 and data.month == 3


def test_splits_as_months_and_as_item_indices(root):
    dataset = RoadAccidentDataset(root, "DEMO")
    split = dataset.get_split()
    assert list(split) == ["train", "valid", "test"]
    assert split["train"] == [(y, m) for y in (2018, 2019) for m in range(1, 13)]
    assert split["valid"] == [(2020, month) for month in range(1, 13)]
    assert split["test"] == [(2021, month) for month in range(1, 13)]
    index = dataset.get_idx_split()
    for name, months in split.items():
        # item i is month i of 2018-01 .. 2021-12
        assert index[name].tolist() == [12 * (year - 2018) + month - 1 for year, month in months]
        assert index[name].dtype == torch.long
        subset = dataset[index[name]]
        assert [(int(g.year), int(g.month)) for g in subset] == months
    volume = RoadAccidentDataset(root, "DEMO", task="traffic_volume")
    assert volume.get_split() == {"train": [2018, 2019], "valid": [2020], "test": [2021]}
    assert {k: v.tolist() for k, v in volume.get_idx_split().items()} == {"train": [0, 1], "valid": [2],
                                                                         "test": [3]}
    with pytest.raises(KeyError, match="not a month of this dataset"):
        dataset.snapshot(2030, 1)
    with pytest.raises(ValueError, match="needs a month"):
        dataset.snapshot(2020)


def test_traffic_volume_items_are_years_labelled_with_the_matched_aadt(root, tables):
    dataset = RoadAccidentDataset(root, "DEMO", task="traffic_volume")
    assert len(dataset) == 4 and dataset.years == list(DEMO_YEARS)
    data = dataset[1]
    assert data.year == 2019 and torch.allclose(data.y, dataset.snapshot(2019).y, equal_nan=True)
    volume = tables["edge_volume"]
    rows = volume[volume.year == 2019]
    y = data.y.numpy()
    np.testing.assert_allclose(y[rows.edge_id.to_numpy()], rows.aadt.to_numpy(), rtol=1e-6)
    assert np.isnan(np.delete(y, rows.edge_id.to_numpy())).all()
    mask = data.eval_mask.numpy()
    assert mask.sum() > 0 and np.isfinite(y[mask]).all()
    np.testing.assert_array_equal(mask, np.isfinite(y) & dataset.store.eval_mask)
    # node weather of a year is the mean of its months
    weather = tables["node_weather"]
    months = weather[weather.year == 2019].groupby("node_id")[list(WEATHER_COLUMNS)].mean().sort_index()
    np.testing.assert_allclose(data.x[:, 4:].numpy(), months.to_numpy(), rtol=1e-5)
    result = Evaluator("traffic_volume").eval({"y_true": data.y[data.eval_mask],
                                               "y_pred": torch.full((int(mask.sum()),), 10_000.0)})
    assert result["count"] == int(mask.sum())
    assert result["mae"] == pytest.approx(float(np.mean(np.abs(y[mask].astype(np.float64) - 10_000.0))), rel=1e-5)
    with pytest.raises(ValueError, match="one graph per year"):
        dataset.snapshot(2019, 5)


def test_negative_sampling_is_an_option_for_training(root, tables):
    dataset = RoadAccidentDataset(root, "DEMO")
    edges, labels = dataset.training_edges(2019, 5, negative_ratio=2.0, generator=torch.Generator().manual_seed(0))
    counts = expected_counts(tables, 2019, 5)
    canonical = dataset.store.eval_mask
    positives = int(labels.sum())
    assert positives == int(((counts > 0) & canonical).sum())
    assert len(labels) == positives * 3
    assert set(edges[labels == 1].tolist()) == set(np.flatnonzero((counts > 0) & canonical).tolist())
    assert (counts[edges[labels == 0].numpy()] == 0).all() and canonical[edges.numpy()].all()
    none = dataset.training_edges(2019, 5, negative_ratio=0)[1]
    assert none.tolist() == [1.0] * positives


# --- fresh tensors ------------------------------------------------------------------------------------

def _scramble(graph):
    for key in graph.keys():
        value = graph[key]
        if torch.is_tensor(value):
            value.fill_(True) if value.dtype == torch.bool else value.mul_(0).add_(7)


def test_changing_a_snapshot_in_place_never_changes_the_dataset(root, tables):
    dataset = RoadAccidentDataset(root, "DEMO", "accident_count")
    processed = Path(dataset.processed_dir)
    files = {name: np.load(processed / f"{name}.npy") for name in ("edge_index", "edge_features")}
    before = dataset.snapshot(2019, 7)
    mask = before.eval_mask.clone()
    _scramble(dataset.snapshot(2019, 7))
    _scramble(dataset[0])
    _scramble(dataset.static_graph)
    after = dataset.snapshot(2019, 7)
    for key in before.keys():
        assert torch.equal(after[key], before[key]) if torch.is_tensor(before[key]) else after[key] == before[key]
    assert torch.equal(after.eval_mask, mask) and not mask.all()
    assert_static_equals_tables(dataset[0], tables)
    assert_static_equals_tables(dataset.static_graph, tables)
    assert_static_equals_tables(RoadAccidentDataset(root, "DEMO").snapshot(2018, 2), tables)
    for name, array in files.items():  # the processed arrays on disk are untouched
        np.testing.assert_array_equal(np.load(processed / f"{name}.npy"), array)
    np.testing.assert_array_equal(dataset.store.eval_mask, dataset.store.segment == np.arange(len(mask)))


def test_two_snapshots_do_not_share_memory(root):
    dataset = RoadAccidentDataset(root, "DEMO")
    a, b = dataset.snapshot(2019, 7), dataset.snapshot(2019, 7)
    for key in ("x", "edge_index", "edge_attr", "y", "eval_mask"):
        a[key].view(-1)[0] = -12345 if a[key].dtype != torch.bool else not bool(a[key].view(-1)[0])
        assert not torch.equal(a[key], b[key]), key


# --- PyTorch Geometric conventions --------------------------------------------------------------------

def test_constructor_follows_pyg_argument_order():
    from torch_geometric.datasets import TUDataset

    ours = inspect.signature(RoadAccidentDataset).parameters
    positional = [name for name, p in ours.items() if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert positional == ["root", "state", "task", "transform", "pre_transform", "pre_filter", "force_reload"]
    pyg = inspect.signature(TUDataset).parameters
    for name in ("transform", "pre_transform", "pre_filter", "force_reload"):
        assert ours[name].default == pyg[name].default, name
    assert ours["task"].default == "accident_occurrence" and ours["source"].kind == inspect.Parameter.KEYWORD_ONLY


def test_state_is_required(root, tmp_path, monkeypatch):
    with pytest.raises(TypeError, match="needs a state"):
        RoadAccidentDataset(root)
    with pytest.raises(TypeError, match="did you mean state='DEMO'"):
        RoadAccidentDataset("DEMO")
    monkeypatch.setenv("GNNBENCH_HOME", str(tmp_path / "home"))
    shutil.copytree(root, tmp_path / "home" / "road")
    by_keyword = RoadAccidentDataset(state="demo")  # the default root, $GNNBENCH_HOME/road
    assert by_keyword.state == "DEMO" and by_keyword.root == str(tmp_path / "home" / "road")
    assert len(by_keyword) == 48


def test_feature_and_class_counts(root, tables):
    dataset = RoadAccidentDataset(root, "DEMO")
    assert dataset.num_node_features == dataset.num_features == 4 + len(WEATHER_COLUMNS) == 10
    assert dataset.num_edge_features == 23
    assert dataset.num_classes == 2
    for task, label in (("accident_count", "crash count"), ("traffic_volume", "AADT")):
        with pytest.raises(AttributeError, match=f"not defined for the {task} task.*{label}"):
            RoadAccidentDataset(root, "DEMO", task).num_classes


def test_dataloader_batches_months(root, tables):
    dataset = RoadAccidentDataset(root, "DEMO", "accident_count")
    num_nodes, num_edges = len(tables["nodes"]), len(tables["edges"])
    batches = list(DataLoader(dataset[:8], batch_size=4))
    assert len(batches) == 2
    batch = batches[1]
    assert batch.num_graphs == 4 and batch.x.shape == (4 * num_nodes, 10)
    assert batch.year.tolist() == [2018] * 4 and batch.month.tolist() == [5, 6, 7, 8]
    assert torch.equal(batch.y, torch.cat([torch.from_numpy(expected_counts(tables, 2018, m)[dataset.store.segment])
                                           for m in (5, 6, 7, 8)]))
    offsets = torch.arange(4).repeat_interleave(num_edges) * num_nodes
    assert torch.equal(batch.edge_index - offsets, dataset.static_graph.edge_index.repeat(1, 4))


def test_slicing_masks_and_shuffle(root):
    dataset = RoadAccidentDataset(root, "DEMO")
    assert [(g.year, g.month) for g in dataset[2:5]] == DEMO_MONTHS[2:5]
    mask = torch.zeros(48, dtype=torch.bool)
    mask[[3, 40]] = True
    assert [(g.year, g.month) for g in dataset[mask]] == [DEMO_MONTHS[3], DEMO_MONTHS[40]]
    assert [(g.year, g.month) for g in dataset[np.array([47, 0])]] == [DEMO_MONTHS[47], DEMO_MONTHS[0]]
    shuffled, perm = dataset.shuffle(return_perm=True)
    assert sorted(perm.tolist()) == list(range(48))
    assert [(g.year, g.month) for g in shuffled[:5]] == [DEMO_MONTHS[i] for i in perm[:5].tolist()]


def test_transform_applies_to_items_and_snapshots(root):
    def drop_weather(data):
        data.x = data.x[:, :4]
        return data

    dataset = RoadAccidentDataset(root, "DEMO", "accident_occurrence", drop_weather)
    assert dataset[3].x.shape[1] == 4 and dataset.snapshot(2018, 4).x.shape[1] == 4
    assert dataset.num_node_features == 4
    assert dataset.static_graph.x.shape[1] == 4  # not an item: no transform, and never any weather


def test_pre_transform_runs_once_on_the_static_graph_and_is_cached(copy, tables):
    calls = []

    def scale_lengths(data):
        calls.append(1)
        data.edge_attr = data.edge_attr.clone()
        data.edge_attr[:, 0] = data.edge_attr[:, 0] / 1000.0  # metres -> km
        data.x = data.x[:, 2:4]  # lon, lat only
        data.segment_weight = torch.ones(data.edge_index.shape[1]) * 2
        return data

    dataset = RoadAccidentDataset(copy, "DEMO", pre_transform=scale_lengths)
    assert len(calls) == 1
    item = dataset.snapshot(2019, 7)
    np.testing.assert_allclose(item.edge_attr[:, 0].numpy(), tables["edges"]["length_m"] / 1000.0, rtol=1e-6)
    assert item.x.shape[1] == 2 + len(WEATHER_COLUMNS)  # the month's weather follows the pre-transformed x
    np.testing.assert_allclose(item.x[:, 1].numpy(), tables["nodes"]["lat"], rtol=1e-6)
    assert torch.equal(item.segment_weight, torch.full((len(tables["edges"]),), 2.0))
    item.segment_weight.zero_()  # fresh here too
    assert dataset[30].segment_weight.sum() == 2 * len(tables["edges"])
    assert len(calls) == 1
    again = RoadAccidentDataset(copy, "DEMO", pre_transform=scale_lengths)
    assert len(calls) == 1  # cached with its fingerprint
    assert torch.equal(again[5].edge_attr, dataset[5].edge_attr)
    plain = RoadAccidentDataset(copy, "DEMO")  # without a pre_transform: the unprocessed graph
    np.testing.assert_allclose(plain[5].edge_attr[:, 0].numpy(), tables["edges"]["length_m"], rtol=1e-6)
    RoadAccidentDataset(copy, "DEMO", pre_transform=scale_lengths, force_reload=True)
    assert len(calls) == 2


def test_a_different_pre_transform_processes_again_with_a_warning(copy, tables):
    import torch_geometric.transforms as T

    RoadAccidentDataset(copy, "DEMO", pre_transform=T.NormalizeFeatures(["edge_attr"]))
    with pytest.warns(UserWarning, match="pre_transform differs"):
        # same repr as PyG prints it ("NormalizeFeatures()"), other attributes: another function
        changed = RoadAccidentDataset(copy, "DEMO", pre_transform=T.NormalizeFeatures(["x"]))
    from torch_geometric.data import Data

    raw = torch.tensor(tables["nodes"][["degree", "betweenness", "lon", "lat"]].to_numpy(), dtype=torch.float32)
    expected = T.NormalizeFeatures(["x"])(Data(x=raw)).x  # the transform on the node table itself
    np.testing.assert_allclose(changed.static_graph.x.numpy(), expected.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(changed[0].x[:, :4].numpy(), expected.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(changed[0].edge_attr[:, 0].numpy(), tables["edges"]["length_m"], rtol=1e-6)


def test_pre_transform_must_keep_the_edges(copy):
    import torch_geometric.transforms as T

    with pytest.raises(ValueError, match="pre_transform changed the road graph's nodes or edge_index"):
        RoadAccidentDataset(copy, "DEMO", pre_transform=T.AddSelfLoops())


def test_pre_filter_keeps_months(copy, tables):
    accidents = tables["accidents"]
    per_month = accidents.groupby(["year", "month"])["count"].sum()
    threshold = int(per_month.median())
    keep = [month for month in DEMO_MONTHS if per_month.get(month, 0) > threshold]
    assert 0 < len(keep) < 48

    def busy(data):
        assert data.y.dtype == torch.float32 and "year" in data
        return float(data.y[data.eval_mask].sum()) > threshold

    dataset = RoadAccidentDataset(copy, "DEMO", "accident_count", pre_filter=busy)
    assert dataset.months == keep and len(dataset) == len(keep)
    assert [(g.year, g.month) for g in dataset] == keep
    split = dataset.get_split()
    assert split["train"] == [month for month in keep if month[0] < 2020]
    assert [keep[i] for i in dataset.get_idx_split()["test"].tolist()] == [m for m in keep if m[0] == 2021]
    dropped = next(month for month in DEMO_MONTHS if month not in keep)
    with pytest.raises(KeyError, match="pre_filter"):
        dataset.snapshot(*dropped)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert len(RoadAccidentDataset(copy, "DEMO", "accident_count", pre_filter=busy)) == len(keep)
    assert not [w for w in record if "differs" in str(w.message)]
    with pytest.warns(UserWarning, match="pre_filter differs"):
        assert len(RoadAccidentDataset(copy, "DEMO", "accident_count", pre_filter=lambda data: True)) == 48
    assert len(RoadAccidentDataset(copy, "DEMO", "accident_count")) == 48  # no pre_filter: every month


def test_no_console_output_from_the_library(copy, capfd, monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # PyG prints "Processing..." only outside pytest
    dataset = RoadAccidentDataset(copy, "DEMO", force_reload=True, pre_filter=lambda data: True)
    dataset.snapshot(2019, 1)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


# --- caching and errors ---------------------------------------------------------------------------------

def test_changed_tables_are_processed_again(copy):
    RoadAccidentDataset(copy, "DEMO")
    stored = copy / "processed" / "DEMO" / "manifest.json"
    meta = json.loads(stored.read_text())
    meta["parameters"]["tables"]["accidents"]["sha256"] = "0" * 64  # processed from other tables than these
    stored.write_text(json.dumps(meta))
    with pytest.warns(CacheRebuiltWarning, match="tables changed.*processing the tables again"):
        RoadAccidentDataset(copy, "DEMO")
    tables = json.loads((Path(RegionPaths.for_region("DEMO", copy).tables) / "manifest.json").read_text())
    assert json.loads(stored.read_text())["parameters"]["tables"] == tables["files"]


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage-manifest"])
def test_damaged_arrays_are_processed_again(copy, damage):
    first = RoadAccidentDataset(copy, "DEMO")
    expected = first.snapshot(2019, 6)
    processed = copy / "processed" / "DEMO"
    if damage == "truncate":
        path = processed / "weather.npy"
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "delete":
        (processed / "edge_index.npy").unlink()
    else:
        (processed / "manifest.json").write_text("{not json")
    with pytest.warns(CacheRebuiltWarning) as record:
        again = RoadAccidentDataset(copy, "DEMO").snapshot(2019, 6)
    reason = {"truncate": "weather.npy: 100 bytes", "delete": "edge_index.npy: missing",
              "garbage-manifest": "unreadable manifest"}[damage]
    (message,) = [str(w.message) for w in record if w.category is CacheRebuiltWarning]
    assert reason in message and "processing the tables again" in message
    for key in ("x", "edge_index", "edge_attr", "y", "eval_mask"):
        assert torch.equal(again[key], expected[key]), key


@pytest.mark.parametrize("call, name", [
    (lambda d: d.snapshot(2019, 13), "month"), (lambda d: d.snapshot(2019, 0), "month"),
    (lambda d: d.snapshot(2019, 1.5), "month"), (lambda d: d.snapshot(2019.0, 1), "year"),
    (lambda d: d.snapshot("2019", 1), "year"),
    (lambda d: d.training_edges(2019, 5, negative_ratio=-1), "negative_ratio"),
    (lambda d: d.training_edges(2019, 5, negative_ratio=float("nan")), "negative_ratio"),
    (lambda d: d.training_edges(2019, 5, negative_ratio="1"), "negative_ratio"),
    (lambda d: d.training_edges(2019, 13), "month"),
    (lambda d: d.store.month_position(2019.5, 7), "year"), (lambda d: d.store.counts(2019, 7.0), "month"),
    (lambda d: d.store.volume_of(2019.0), "year"), (lambda d: d.store.weather_of(2019, 13), "month"),
    (lambda d: d.store.weather_of("2019"), "year"),
])
def test_numeric_arguments_are_checked(root, call, name):
    with pytest.raises(ValueError, match=name):
        call(RoadAccidentDataset(root, "DEMO"))


def test_unknown_task_source_and_state_are_clear_errors(root):
    with pytest.raises(ValueError, match="task must be one of 'accident_occurrence'"):
        RoadAccidentDataset(root, "DEMO", task="crash_severity")
    with pytest.raises(ValueError, match="source must be one of"):
        RoadAccidentDataset(root, "DEMO", source="kaggle")
    with pytest.raises(FileNotFoundError, match="gnnbench download road --state MA"):
        RoadAccidentDataset(root, "MA")
    with pytest.raises(ValueError, match="unknown state 'XX'.*DE, IA"):
        RoadAccidentDataset(root, "XX")
    with pytest.raises(ValueError, match="state must be a state code"):
        RoadAccidentDataset(root, 12)


def test_snapshots_cross_process_boundaries(root):
    """Items go through DataLoader workers (torch.multiprocessing pickling) unharmed."""
    dataset = RoadAccidentDataset(root, "DEMO")
    items = list(torch.utils.data.DataLoader(dataset[:4], batch_size=None, num_workers=2))
    for i, item in enumerate(items):
        expected = dataset[i]
        assert torch.equal(item.edge_attr, expected.edge_attr) and torch.equal(item.edge_index, expected.edge_index)
    batch = next(iter(DataLoader(dataset, batch_size=2, num_workers=2)))
    assert batch.num_graphs == 2 and batch.month.tolist() == [1, 2]


@pytest.mark.parametrize("array", [np.arange(12, dtype=np.float32).reshape(3, 4),
                                   np.arange(12, dtype=np.int64).reshape(2, 6), np.array([True, False, True]),
                                   np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
                                   np.arange(6, dtype=">f4"), np.zeros((0, 3), dtype=np.float32),
                                   np.arange(5, dtype=np.uint16)],
                         ids=["float32", "int64", "bool", "fortran", "big-endian", "empty", "uint16"])
def test_private_mappings_are_fresh_copies_of_the_file(tmp_path, array):
    import os

    from gnnbench.datasets.mapped import map_private

    path = tmp_path / "array.npy"
    np.save(path, array)
    descriptors = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").exists() else None
    a, b = map_private(path), map_private(path)
    np.testing.assert_array_equal(a.numpy(), array)
    assert tuple(a.shape) == array.shape
    if a.numel():
        a.view(-1)[0] = 1 if a.dtype != torch.bool else not bool(a.view(-1)[0])
        assert not torch.equal(a, b)
        np.testing.assert_array_equal(b.numpy(), array)
    np.testing.assert_array_equal(np.load(path), array)  # the file is untouched
    if descriptors is not None:
        assert len(os.listdir("/proc/self/fd")) == descriptors  # no file descriptor kept per mapping


def test_pre_filter_and_pre_transform_match_pygs_own_recipe(copy, tmp_path):
    """PyG's recipe (filter the items, pre-transform each, collate) on the plain monthly graphs gives the same
    months as the dataset's own pre_filter/pre_transform, for a pre_transform of the road attributes."""
    import torch_geometric.transforms as T
    from torch_geometric.data import InMemoryDataset

    plain = RoadAccidentDataset(copy, "DEMO", "accident_count")

    def busy(data):
        return float(data.y[data.eval_mask].sum()) > 40

    class Reference(InMemoryDataset):
        def __init__(self, root, pre_transform, pre_filter):
            super().__init__(str(root), None, pre_transform, pre_filter, log=False)
            self.load(self.processed_paths[0])

        @property
        def raw_file_names(self):
            return []

        @property
        def processed_file_names(self):
            return ["data.pt"]

        def process(self):
            data_list = [data for data in plain if self.pre_filter(data)]
            self.save([self.pre_transform(data) for data in data_list], self.processed_paths[0])

    normalise = T.NormalizeFeatures(["edge_attr"])
    reference = Reference(tmp_path / "reference", normalise, busy)
    ours = RoadAccidentDataset(copy, "DEMO", "accident_count", pre_transform=normalise, pre_filter=busy)
    assert 0 < len(ours) == len(reference) < 48
    for mine, theirs in zip(ours, reference):
        assert set(mine.keys()) == set(theirs.keys())
        for key in mine.keys():
            if torch.is_tensor(mine[key]):
                torch.testing.assert_close(mine[key], theirs[key], rtol=1e-6, atol=1e-7, msg=key)
            else:
                assert mine[key] == theirs[key], key
