"""RoadAccidentDataset: static graph, monthly snapshots against the tables, splits, tasks, caching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gnnbench.datasets import RoadAccidentDataset
from gnnbench.road import Evaluator
from gnnbench.road.build import RegionPaths
from gnnbench.road.tables import WEATHER_COLUMNS, read_table


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("road")
    RoadAccidentDataset(root, "DEMO")  # builds the demo region on first use
    return root


@pytest.fixture(scope="module")
def tables(root):
    directory = RegionPaths.for_region("DEMO", root).tables
    return {name: read_table(name, directory).to_pandas()
            for name in ("nodes", "edges", "accidents", "node_weather", "edge_volume")}


def test_static_graph_matches_the_tables(root, tables):
    dataset = RoadAccidentDataset(root, "DEMO")
    graph = dataset[0]
    edges, nodes = tables["edges"], tables["nodes"]
    assert len(dataset) == 1 and graph.num_nodes == len(nodes)
    assert torch.equal(graph.edge_index, torch.tensor(np.stack([edges["src"], edges["dst"]])))
    names = dataset.edge_feature_names
    assert graph.edge_attr.shape == (len(edges), len(names)) and len(names) == 23
    np.testing.assert_allclose(graph.edge_attr[:, names.index("length_m")], edges["length_m"], rtol=1e-6)
    onehot = graph.edge_attr[:, names.index("highway_motorway"):]
    assert torch.equal(onehot.sum(1), torch.ones(len(edges)))
    np.testing.assert_allclose(graph.x[:, 3], nodes["lat"], rtol=1e-6)
    with pytest.raises(IndexError):
        dataset[1]


def test_snapshot_labels_equal_the_accidents_table(root, tables):
    dataset = RoadAccidentDataset(root, "DEMO", task="accident_count")
    accidents = tables["accidents"]
    for year, month in [(2018, 1), (2019, 7), (2021, 12)]:
        data = dataset.snapshot(year, month)
        month_rows = accidents[(accidents.year == year) & (accidents.month == month)]
        expected = np.zeros(data.edge_index.shape[1], dtype=np.float32)
        expected[month_rows.edge_id.to_numpy()] = month_rows["count"].to_numpy()
        mask = data.eval_mask.numpy()
        np.testing.assert_array_equal(data.y.numpy()[mask], expected[mask])
        assert expected[~mask].sum() == 0  # crashes sit on canonical edges only
        assert data.y.sum() >= month_rows["count"].sum()
        # both directions of a two-way road carry their segment's count
        twins = dataset.store.segment != np.arange(len(mask))
        assert twins.any()
        np.testing.assert_array_equal(data.y.numpy()[twins], data.y.numpy()[dataset.store.segment[twins]])
    occurrence = RoadAccidentDataset(root, "DEMO").snapshot(2019, 7)
    assert torch.equal(occurrence.y, (dataset.snapshot(2019, 7).y > 0).float())


def test_snapshot_node_features_carry_that_months_weather(root, tables):
    dataset = RoadAccidentDataset(root, "DEMO")
    weather = tables["node_weather"]
    data = dataset.snapshot(2020, 3)
    rows = weather[(weather.year == 2020) & (weather.month == 3)].sort_values("node_id")
    np.testing.assert_allclose(data.x[:, 4:].numpy(), rows[list(WEATHER_COLUMNS)].to_numpy(), rtol=1e-6)
    assert dataset.node_feature_names[4:] == list(WEATHER_COLUMNS)
    assert data.year == 2020 and data.month == 3


def test_splits_follow_the_region_years(root):
    dataset = RoadAccidentDataset(root, "DEMO")
    split = dataset.get_split()
    assert list(split) == ["train", "valid", "test"]
    assert split["train"][0] == (2018, 1) and split["train"][-1] == (2019, 12) and len(split["train"]) == 24
    assert split["valid"] == [(2020, month) for month in range(1, 13)]
    volume = RoadAccidentDataset(root, "DEMO", task="traffic_volume").get_split()
    assert volume == {"train": [2018, 2019], "valid": [2020], "test": [2021]}
    with pytest.raises(KeyError, match="not a month of this dataset"):
        dataset.snapshot(2030, 1)
    with pytest.raises(ValueError, match="needs a month"):
        dataset.snapshot(2020)


def test_traffic_volume_labels_are_the_matched_aadt(root, tables):
    dataset = RoadAccidentDataset(root, "DEMO", task="traffic_volume")
    data = dataset.snapshot(2019)
    volume = tables["edge_volume"]
    rows = volume[volume.year == 2019]
    y = data.y.numpy()
    np.testing.assert_allclose(y[rows.edge_id.to_numpy()], rows.aadt.to_numpy(), rtol=1e-6)
    assert np.isnan(np.delete(y, rows.edge_id.to_numpy())).all()
    assert data.eval_mask.sum() > 0 and torch.isfinite(data.y[data.eval_mask]).all()
    result = Evaluator("traffic_volume").eval({"y_true": data.y[data.eval_mask],
                                               "y_pred": torch.full((int(data.eval_mask.sum()),), 10_000.0)})
    assert result["count"] == int(data.eval_mask.sum()) and result["mae"] > 0


def test_negative_sampling_is_an_option_for_training(root):
    dataset = RoadAccidentDataset(root, "DEMO")
    edges, labels = dataset.training_edges(2019, 5, negative_ratio=2.0, generator=torch.Generator().manual_seed(0))
    counts = dataset.store.counts(2019, 5)
    positives = int(labels.sum())
    assert positives == int(((counts > 0) & dataset.store.eval_mask).sum())
    assert len(labels) == positives * 3
    assert (counts[edges[labels == 0].numpy()] == 0).all() and dataset.store.eval_mask[edges.numpy()].all()


def test_changed_tables_are_processed_again(root, tmp_path, caplog):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    RoadAccidentDataset(copy, "DEMO")
    manifest_path = Path(RegionPaths.for_region("DEMO", copy).tables) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["tables"]["accidents"]["sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with caplog.at_level("WARNING"):
        RoadAccidentDataset(copy, "DEMO")
    assert "processing again" in caplog.text


def test_unknown_task_and_missing_state_are_clear_errors(root):
    with pytest.raises(ValueError, match="unknown task"):
        RoadAccidentDataset(root, "DEMO", task="crash_severity")
    with pytest.raises(FileNotFoundError, match="gnnbench download road --state MA"):
        RoadAccidentDataset(root, "MA")
