"""The road family's training protocol on the demo region (and a second small synthetic region): it learns, is
deterministic, resumes after a kill to the same result, trains several states at once, samples neighbours, and
names the key of a bad config value. Small models and few epochs keep every run to seconds."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from gnnbench.datasets.road_accidents import RoadAccidentDataset
from gnnbench.harness import road_family
from gnnbench.harness.family import SeedContext
from gnnbench.road.evaluation import Evaluator

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread for every test: building the demo region runs numba's parallel betweenness, whose OpenMP
    start-up can raise torch's thread count again (two threads on cores others share made these tests 20x
    slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def root(tmp_path_factory, copy_demo_region):
    from synthetic.state_scale import generate_state_scale

    directory = copy_demo_region(tmp_path_factory.mktemp("road"))  # built once per test run (conftest.demo_region)
    generate_state_scale(directory, num_nodes=200, num_edges=460, num_crashes=6000, years=(2018, 2019, 2020),
                         release=False)  # tables/ZZ: a second, small region
    return directory


def _config(root, **sections):
    config = {"run": {"benchmark": "road"}, **road_family.default_config()}
    config["data"]["root"] = str(root)
    config["model"].update(hidden_channels=32)
    config["train"].update(epochs=6)
    config["eval"].update(every=3)
    for section, values in sections.items():
        config[section].update(values)
    return config


def _train(config, directory, seed=0):
    directory.mkdir(parents=True, exist_ok=True)
    return road_family.train_seed(SeedContext(config=config, seed=seed, directory=directory,
                                              device=torch.device("cpu"), progress=False))


def _test_periods(root, task="accident_occurrence", state="DEMO"):
    dataset = RoadAccidentDataset(root, state, task)
    return dataset, dataset.get_split()["test"]


def _rescored(root, outcome, task):
    """The gnnbench-protocol test metrics recomputed from the prediction columns and the dataset's labels."""
    dataset, periods = _test_periods(root, task)
    columns = outcome.predictions
    truths, preds = [], []
    for period in periods:
        key = period if isinstance(period, tuple) else (period, 0)
        rows = (columns["year"] == key[0]) & (columns["month"] == key[1])
        snapshot = dataset.snapshot(*(period if isinstance(period, tuple) else (period,)))
        prediction = np.empty(snapshot.num_edges, dtype=np.float32)
        prediction[columns["edge"][rows]] = columns["prediction"][rows]
        assert rows.sum() == snapshot.num_edges
        mask = snapshot.eval_mask.numpy()
        truths.append(snapshot.y.numpy()[mask])
        preds.append(prediction[mask])
    if task == "accident_occurrence":
        return Evaluator(task).eval({"y_true": truths, "y_pred": preds}), truths, preds
    return Evaluator(task).eval({"y_true": np.concatenate(truths), "y_pred": np.concatenate(preds)}), truths, preds


def test_occurrence_learns_and_predictions_rescore(root, tmp_path):
    outcome = _train(_config(root, model={"encoder": "sage", "hidden_channels": 64}), tmp_path / "a")
    rescored, truths, _ = _rescored(root, outcome, "accident_occurrence")
    assert outcome.test["score"] == outcome.test["roc_auc"] == pytest.approx(rescored["roc_auc"], abs=1e-6)
    assert outcome.test["roc_auc"] > 0.6  # a constant (or random) score has ROC-AUC 0.5
    for key in ("ml4roadsafety.roc_auc", "ml4roadsafety.f1", "average_precision", "recall@100"):
        assert math.isfinite(outcome.test[key]) and math.isfinite(outcome.valid[key])
    assert outcome.extra["higher_is_better"] is True and outcome.extra["metric"] == "roc_auc"
    assert outcome.steps == 6 * 24  # one batch per training month (demo months have < 32768 crash segments)
    evaluations = [row for row in outcome.curve if "valid_score" in row]
    assert [row["epoch"] for row in evaluations] == [3, 6]
    assert outcome.valid["score"] == max(row["valid_score"] for row in evaluations)


def test_count_regression_beats_the_best_constant_of_its_training_mix(root, tmp_path):
    """Trained on positives and as many crash-free segments (L1), every constant in [0, 1] has the same mixed loss
    0.5 * mean(positive counts); the model must do better on the test months' segments (all negatives counted)."""
    outcome = _train(_config(root, data={"task": "accident_count"}, model={"encoder": "gcn", "hidden_channels": 64},
                             train={"epochs": 9}), tmp_path / "c")
    rescored, truths, preds = _rescored(root, outcome, "accident_count")
    assert outcome.test["mae"] == pytest.approx(rescored["mae"], rel=1e-6)
    assert outcome.extra["higher_is_better"] is False and outcome.test["score"] == outcome.test["mae"]
    truth, pred = np.concatenate(truths), np.concatenate(preds)
    positive = truth > 0
    mixed_mae = 0.5 * np.abs(pred - truth)[positive].mean() + 0.5 * np.abs(pred[~positive]).mean()
    assert mixed_mae < 0.9 * 0.5 * truth[positive].mean()


def test_traffic_volume_predicts_vehicles_per_day(root, tmp_path):
    outcome = _train(_config(root, data={"task": "traffic_volume"}, train={"epochs": 30}, eval={"every": 10}),
                     tmp_path / "v")
    rescored, truths, preds = _rescored(root, outcome, "traffic_volume")
    assert outcome.test["mae"] == pytest.approx(rescored["mae"], rel=1e-6)
    truth = np.concatenate(truths)
    assert outcome.test["mae"] < np.abs(truth - np.median(truth)).mean() * 1.5  # the right scale (vehicles/day)
    assert outcome.test["ml4roadsafety.mae"] == pytest.approx(outcome.test["mae"] / 1000, rel=0.5)
    assert set(outcome.predictions["month"].tolist()) == {0}


def test_same_seed_same_bits_and_resume_after_a_kill(root, tmp_path):
    config = _config(root, model={"encoder": "gin"}, train={"epochs": 4, "checkpoint_every": 1},
                     eval={"every": 2})
    first = _train(config, tmp_path / "first")
    second = _train(config, tmp_path / "second")
    assert first.test == second.test and first.valid == second.valid
    for name in first.predictions:
        assert np.array_equal(first.predictions[name], second.predictions[name])
    other = _train(config, tmp_path / "other", seed=1)
    assert other.test["score"] != first.test["score"]

    class Killed(Exception):
        pass

    class KilledAfterTwoCheckpoints(SeedContext):
        def save_checkpoint(self, state):
            super().save_checkpoint(state)
            if state["epoch"] == 2:
                raise Killed

    directory = tmp_path / "killed"
    directory.mkdir()
    with pytest.raises(Killed):
        road_family.train_seed(KilledAfterTwoCheckpoints(config=config, seed=0, directory=directory,
                                                         device=torch.device("cpu"), progress=False))
    saved = torch.load(directory / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 2
    resumed = _train(config, directory)
    assert resumed.test == first.test and resumed.valid == first.valid and resumed.steps == first.steps
    assert np.array_equal(resumed.predictions["prediction"], first.predictions["prediction"])
    assert [row["loss"] for row in resumed.curve] == [row["loss"] for row in first.curve]


def test_two_states_share_one_encoder(root, tmp_path):
    config = _config(root, data={"states": ["DEMO", "ZZ"]}, train={"epochs": 2}, eval={"every": 2})
    outcome = _train(config, tmp_path / "two")
    assert len(outcome.model.predictors) == 2
    assert outcome.test["score"] == pytest.approx((outcome.test["DEMO.score"] + outcome.test["ZZ.score"]) / 2)
    assert outcome.extra["states"] == ["DEMO", "ZZ"]
    counts = {}
    for index, state in enumerate(["DEMO", "ZZ"]):
        dataset, periods = _test_periods(root, state=state)
        counts[index] = len(periods) * dataset.static_graph.num_edges
    assert {index: int((outcome.predictions["state"] == index).sum()) for index in (0, 1)} == counts
    months = {state: len(RoadAccidentDataset(root, state).get_split()["train"]) for state in ("DEMO", "ZZ")}
    assert outcome.steps == 2 * (months["DEMO"] + months["ZZ"])


def test_neighbour_sampling_trains_and_is_deterministic(root, tmp_path):
    config = _config(root, train={"epochs": 2, "neighbor_sampling": True, "num_neighbors": [2, 2],
                                  "sampling_batch_size": 16}, eval={"every": 2})
    first = _train(config, tmp_path / "s1")
    assert all(math.isfinite(value) for value in first.test.values())
    assert first.test == _train(config, tmp_path / "s2").test


def test_hessian_inputs(root, tmp_path):
    config = _config(root, train={"epochs": 1}, eval={"every": 1})
    outcome = _train(config, tmp_path / "h")
    inputs = outcome.hessian
    batches = list(inputs.train_batches)
    assert len(batches) == road_family.HESSIAN_BATCHES
    again = list(inputs.train_batches)
    assert all(torch.equal(a.edge_index, b.edge_index) for a, b in zip(batches, again))
    loss = inputs.loss_fn(batches[0])
    logits = outcome.model(batches[0])
    expected = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logits), batches[0].target)
    torch.testing.assert_close(loss, expected)
    assert len(list(inputs.test_batches)) > 0
    dataset = RoadAccidentDataset(root, "DEMO")
    expected_examples = 0
    for period in dataset.get_split()["train"]:
        snapshot = dataset.snapshot(*period)
        segments = snapshot.eval_mask
        positives = int((snapshot.y[segments] > 0).sum())
        expected_examples += positives + min(positives, int((snapshot.y[segments] == 0).sum()))
    assert inputs.num_train_examples == expected_examples
    assert set(inputs.initial_state) == set(outcome.model.state_dict())


def test_dataset_identity_lists_the_tables(root):
    from gnnbench.road.manifest import read_manifest

    identity = road_family.dataset_identity(_config(root, data={"states": ["DEMO", "ZZ"]}))
    assert [entry["state"] for entry in identity["states"]] == ["DEMO", "ZZ"]
    manifest = read_manifest(root / "tables" / "DEMO")
    assert identity["states"][0]["tables"]["edges"]["sha256"] == manifest["files"]["edges"]["sha256"]
    assert identity["states"][0]["edges"] == 325


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "epochs", 0, "train.epochs"),
    ("train", "lr", 0.0, "train.lr"),
    ("model", "encoder", "transformer", "model.encoder"),
    ("data", "task", "crashes", "data.task"),
    ("data", "states", ["DEMO", "demo"], "data.states"),
    ("data", "state", "M-A", "data.state"),
    ("train", "num_neighbors", [10], "train.num_neighbors"),
    ("train", "num_neighbors", [10, 0], r"train.num_neighbors\[1\]"),
    ("train", "neighbor_sampling", 1, "train.neighbor_sampling"),
    ("eval", "every", -1, "eval.every"),
    ("model", "dropout", 1.0, "model.dropout"),
])
def test_config_errors_name_the_key(section, key, value, message):
    config = _config("")
    config[section][key] = value
    with pytest.raises(ValueError, match=message):
        road_family.validate_config(config)


def test_unknown_and_missing_keys_are_named():
    config = _config("")
    config["train"]["epoch"] = 3
    with pytest.raises(ValueError, match="unknown config key train.epoch"):
        road_family.validate_config(config)
    config = copy.deepcopy(_config(""))
    del config["model"]["encoder"]
    with pytest.raises(ValueError, match="missing config key model.encoder"):
        road_family.validate_config(config)
