"""A tiny end-to-end ``gnnbench run`` of every baseline model (seconds each): the shipped configs with small budgets,
through the command line, into a run directory whose records verify and whose predictions rescore to the recorded
test metrics (as the leaderboard will rescore them)."""

from __future__ import annotations

import json
import math
import tomllib

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from gnnbench.cli import main
from gnnbench.harness import finished_seeds
from gnnbench.harness.config import config_sha256

pytestmark = pytest.mark.e2e

torch.set_num_threads(1)

ALGO_TINY = ["--set", "train.steps=2", "--set", "model.hidden=8", "--set", "data.length_splits=[\"test_16\"]",
             "--set", "train.batch_size=8"]
ROAD_TINY = ["--set", "train.epochs=2", "--set", "model.hidden_channels=16", "--set", "eval.every=1"]


def finished(directory):
    config = tomllib.loads((directory / "config.toml").read_text())
    records = finished_seeds(directory, config_sha256(config))
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["seeds"] == sorted(records) and summary["config_sha256"] == config_sha256(config)
    return config, records


def selected_weights_saved(seed_dir):
    """model.pt (weights_only) holds the selected weights: the final checkpoint's best state."""
    model = torch.load(seed_dir / "model.pt", weights_only=True)
    best = torch.load(seed_dir / "checkpoint.pt", weights_only=True)["best_state"]
    assert model.keys() == best.keys() and all(torch.equal(model[key], best[key].cpu()) for key in model)


@pytest.mark.parametrize("processor", ["mpnn", "pgn", "gatv2", "triplet_gmpnn"])
def test_algo_run(processor, tmp_path):
    from gnnbench.algo import Evaluator
    from gnnbench.harness.algo_data import split_traces
    from gnnbench.harness.algo_family import predictions_from_columns

    out = tmp_path / "run"
    assert main(["run", "algo", "--algorithm", "bfs", "--model", processor, "--seeds", "0", *ALGO_TINY,
                 "--out", str(out), "--no-progress"]) == 0
    config, records = finished(out)
    assert config["model"]["processor"] == processor and config["data"]["algorithm"] == "bfs"
    record = records[0]
    assert record["steps"] == 2 and set(record["test"]) >= {"score", "score_n16"}
    columns = pq.read_table(out / "seed_0" / "predictions.parquet").to_pydict()
    traces = split_traces("bfs", "test")
    rescored = Evaluator("bfs").eval({"y_true": traces.outputs, "y_pred": predictions_from_columns(
        "bfs", {key: np.asarray(value) for key, value in columns.items()}, traces)})
    assert rescored["score"] == pytest.approx(record["test"]["score"], abs=1e-12)
    selected_weights_saved(out / "seed_0")


def test_algo_run_edge_transformer_with_two_layers(tmp_path):
    from gnnbench.models.algo.net import EncodeProcessDecode

    out = tmp_path / "run"
    assert main(["run", "algo", "--algorithm", "bfs", "--model", "edge_transformer", "--seeds", "0", *ALGO_TINY,
                 "--set", "model.num_layers=2", "--set", "model.hidden=16", "--set", "model.nb_heads=4",
                 "--set", "train.steps=3", "--out", str(out), "--no-progress"]) == 0
    config, records = finished(out)
    assert config["model"]["processor"] == "edge_transformer" and config["model"]["num_layers"] == 2
    record = records[0]
    assert record["steps"] == 3 and 0.0 <= record["test"]["score"] <= 1.0 and "score_n16" in record["test"]
    weights = torch.load(out / "seed_0" / "model.pt", weights_only=True)
    assert "processor.layers.1.q.weight" in weights and "processor.layers.2.q.weight" not in weights
    sizes = {layers: sum(p.numel() for p in EncodeProcessDecode("bfs", "edge_transformer", 16, nb_heads=4,
                                                                 num_layers=layers).parameters()) for layers in (1, 2)}
    assert record["extra"]["parameters"] == sizes[2] != sizes[1]
    selected_weights_saved(out / "seed_0")


@pytest.fixture(scope="module")
def road_root(tmp_path_factory, copy_demo_region):
    return copy_demo_region(tmp_path_factory.mktemp("road"))  # built once per test run (conftest.demo_region)


@pytest.mark.parametrize("encoder", ["mlp", "gcn", "sage", "gin", "gat"])
def test_road_run(encoder, road_root, tmp_path):
    from gnnbench.datasets import RoadAccidentDataset
    from gnnbench.road import Evaluator

    out = tmp_path / "run"
    assert main(["run", "road", "--state", "DEMO", "--model", encoder, "--task", "accident_occurrence",
                 "--seeds", "0", "--root", str(road_root), *ROAD_TINY, "--out", str(out), "--no-progress"]) == 0
    config, records = finished(out)
    assert config["model"]["encoder"] == encoder and config["data"]["root"] == str(road_root)
    record = records[0]
    columns = {key: np.asarray(value) for key, value in
               pq.read_table(out / "seed_0" / "predictions.parquet").to_pydict().items()}
    dataset = RoadAccidentDataset(road_root, "DEMO", "accident_occurrence")
    truths, scores = [], []
    for year, month in dataset.get_split()["test"]:
        rows = (columns["year"] == year) & (columns["month"] == month)
        snapshot = dataset.snapshot(year, month)
        prediction = np.full(snapshot.num_edges, np.nan, dtype=np.float32)
        prediction[columns["edge"][rows]] = columns["prediction"][rows]
        mask = snapshot.eval_mask.numpy()
        truths.append(snapshot.y.numpy()[mask])
        scores.append(prediction[mask])
    rescored = Evaluator("accident_occurrence").eval({"y_true": truths, "y_pred": scores,
                                                      "k": config["eval"]["k"]})
    assert rescored["roc_auc"] == pytest.approx(record["test"]["roc_auc"], abs=1e-6)
    selected_weights_saved(out / "seed_0")


def hessian_column_is_consistent(column, batches):
    assert column["batches"] == batches
    assert math.isfinite(column["trace"]) and math.isfinite(column["top_eigenvalue"])
    assert sum(column["per_layer_trace"].values()) == pytest.approx(column["trace"], rel=1e-9)
    assert column["num_matvecs"]["total"] == sum(v for k, v in column["num_matvecs"].items() if k != "total")
    bounds = column["bounds"]
    assert bounds["ju_li_zhang_2022"]["measured_gap"] == bounds["trace_radius"]["measured_gap"] == column["measured_gap"]
    for bound in bounds.values():
        assert bound["bound_on_gap"] >= 0
        assert bound["measured_gap"] == pytest.approx(bound["test_loss"] - bound["train_loss"], abs=1e-12)


def test_algo_run_with_hessian(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "algo", "--algorithm", "bfs", "--model", "mpnn", "--seeds", "0", *ALGO_TINY,
                 "--set", "train.batch_size=1", "--set", "hessian.max_train_batches=1",
                 "--set", "hessian.max_test_batches=1", "--set", "hessian.num_matvecs=6",
                 "--set", "hessian.density_steps=4", "--set", "hessian.parameters=processor", "--hessian",
                 "--out", str(out), "--no-progress"]) == 0
    _, records = finished(out)
    column = records[0]["hessian"]
    hessian_column_is_consistent(column, {"train": 1, "test": 1})
    assert column["num_matvecs"]["trace"] == 6
    layers = set(column["per_layer_trace"])  # only the processor's layers were measured
    assert layers and all(name.startswith("processor.") for name in layers)
    assert column["num_matvecs"]["bounds"] == len(layers)  # one product per layer and training batch


def test_road_run_with_hessian(road_root, tmp_path):
    """The default [hessian] budget on a CI-sized road model."""
    out = tmp_path / "run"
    assert main(["run", "road", "--state", "DEMO", "--model", "sage", "--task", "accident_occurrence", "--seeds", "0",
                 "--root", str(road_root), *ROAD_TINY, "--hessian", "--out", str(out), "--no-progress"]) == 0
    config, records = finished(out)
    column = records[0]["hessian"]
    hessian_column_is_consistent(column, {"train": 2, "test": 2})
    assert column["num_matvecs"]["trace"] == config["hessian"]["num_matvecs"] == 40
    assert any(name.startswith("encoder.") for name in column["per_layer_trace"])
    assert any(name.startswith("predictors.") for name in column["per_layer_trace"])
