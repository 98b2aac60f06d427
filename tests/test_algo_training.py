"""The algo family's training protocol: learning, determinism, resume, data, config, optimizer, predictions."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gnnbench.algo import CLRS30_SPLITS, Evaluator, sample
from gnnbench.harness import algo_family
from gnnbench.harness.algo_data import TrainBatches, held_out_batches, online_p, split_traces, take
from gnnbench.harness.family import SeedContext

torch.set_num_threads(1)


class Killed(Exception):
    """Stands in for the process being killed."""


class KilledAfter(SeedContext):
    """A context whose process dies at its ``saves``-th checkpoint, before writing it."""

    def __init__(self, *args, saves: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "_left", saves)

    def save_checkpoint(self, state) -> None:
        object.__setattr__(self, "_left", self._left - 1)
        if self._left == 0:
            raise Killed
        super().save_checkpoint(state)


def config(**sections) -> dict:
    cfg = algo_family.default_config()
    cfg["data"].update(length_splits=[])
    for section, values in sections.items():
        cfg[section].update(values)
    algo_family.validate_config(cfg)
    return cfg


def context(cfg: dict, directory: Path, seed: int = 0) -> SeedContext:
    directory.mkdir(parents=True, exist_ok=True)
    return SeedContext(config=cfg, seed=seed, directory=directory, device=torch.device("cpu"), progress=False)


TINY = {"model": {"processor": "mpnn", "hidden": 8},
        "train": {"steps": 12, "eval_every": 4, "checkpoint_every": 5}}


def _tiny(**data) -> dict:
    return config(model=TINY["model"], train=TINY["train"], data=data)


def same_outcome(a, b) -> None:
    assert a.valid == b.valid and a.test == b.test and a.steps == b.steps
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in a.curve]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in b.curve]
    for name in a.predictions:
        assert np.array_equal(a.predictions[name], b.predictions[name])
    state_a, state_b = a.model.state_dict(), b.model.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


# ------------------------------------------------------------------------------------------------- learning


@pytest.mark.heavy
def test_small_mpnn_learns_bfs_nearly_perfectly(tmp_path):
    """BFS hints are easy: a small MPNN under the protocol (Adam 1e-3, clipping, soft hints) reaches >= 0.95
    on the validation graphs (n = 16) and on the test graphs (n = 64) within 150 steps."""
    cfg = config(model={"processor": "mpnn", "hidden": 32},
                 train={"steps": 150, "eval_every": 25, "checkpoint_every": 1000}, data={"length_splits": ["test_16"]})
    outcome = algo_family.train_seed(context(cfg, tmp_path))
    assert outcome.steps == 150
    assert [row["step"] for row in outcome.curve] == [1, 26, 51, 76, 101, 126]  # run.py's evaluation steps
    assert outcome.curve[0]["valid_score"] < 0.6  # an untrained model does not already solve it
    assert outcome.valid["score"] >= 0.95
    assert outcome.test["score"] >= 0.95 and outcome.test["score_n16"] >= 0.95
    assert outcome.curve[-1]["loss"] < outcome.curve[0]["loss"] / 5
    # the selected weights are the best validation evaluation's, and the reported valid score is theirs
    best = max(row["valid_score"] for row in outcome.curve)
    assert outcome.valid["score"] == best
    assert outcome.extra["best_step"] == next(r["step"] for r in outcome.curve if r["valid_score"] == best)


# ------------------------------------------------------------------------------------ determinism and resume


@pytest.mark.parametrize("source", ["clrs30", "online"])
def test_resume_after_kill_equals_uninterrupted_run(tmp_path, source):
    cfg = _tiny(train=source)
    whole = algo_family.train_seed(context(cfg, tmp_path / "whole"))
    killed = tmp_path / "killed"
    killed.mkdir()
    with pytest.raises(Killed):  # dies at its second checkpoint (step 10): steps 6-10 are lost
        algo_family.train_seed(KilledAfter(cfg, 0, killed, torch.device("cpu"), False, saves=2))
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["step"] == 5
    resumed = algo_family.train_seed(context(cfg, killed))
    same_outcome(whole, resumed)


def test_same_seed_same_metrics_bitwise_other_seed_differs(tmp_path):
    cfg = _tiny()
    first = algo_family.train_seed(context(cfg, tmp_path / "a", seed=3))
    second = algo_family.train_seed(context(cfg, tmp_path / "b", seed=3))
    same_outcome(first, second)
    other = algo_family.train_seed(context(cfg, tmp_path / "c", seed=4))
    assert [r["loss"] for r in other.curve] != [r["loss"] for r in first.curve]


def test_checkpoint_of_another_algorithm_is_refused(tmp_path):
    cfg = _tiny()
    algo_family.train_seed(context(cfg, tmp_path))
    other = _tiny(algorithm="dfs")
    with pytest.raises(ValueError, match="not a checkpoint of this algo run"):
        algo_family.train_seed(context(other, tmp_path))


# ------------------------------------------------------------------------------------------------------ data


def test_online_batches_cycle_the_configured_sizes():
    batches = TrainBatches("bfs", source="online", batch_size=4, rng=np.random.default_rng(0), sizes=[5, 9, 6])
    drawn = [batches.next() for _ in range(7)]
    assert [b.inputs["A"].shape[1] for b in drawn] == [5, 9, 6, 5, 9, 6, 5]
    assert all(b.inputs["A"].shape[0] == 4 for b in drawn)
    assert not np.array_equal(drawn[0].inputs["A"], drawn[3].inputs["A"])  # fresh graphs, same size


def test_online_edge_probabilities():
    # run.py: 0.1 .. 0.9, halved for articulation points, bridges and Kruskal
    assert np.allclose(online_p("bfs"), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    assert np.allclose(online_p("bridges"), [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45])
    complete = TrainBatches("bfs", source="online", batch_size=3, rng=np.random.default_rng(1), sizes=[6],
                            p=[1.0]).next()
    assert np.array_equal(complete.inputs["A"], np.ones((3, 6, 6)))  # CLRS-30's ER graphs keep self-loops
    empty = TrainBatches("bfs", source="online", batch_size=3, rng=np.random.default_rng(1), sizes=[6],
                         p=[0.0]).next()
    assert not empty.inputs["A"].any()


def test_clrs30_batches_come_from_the_train_split_with_random_pos():
    split = split_traces("bfs", "train")
    assert len(split) == CLRS30_SPLITS["train"].num_samples and split.num_nodes == 16
    rng = np.random.default_rng(5)
    batch = TrainBatches("bfs", source="clrs30", batch_size=32, rng=rng).next()
    graphs = {split.inputs["A"][i].tobytes(): i for i in range(len(split))}
    indices = [graphs[a.tobytes()] for a in batch.inputs["A"]]  # every graph is one of the split's
    assert np.array_equal(batch.lengths, split.lengths[indices])
    steps = int(split.lengths[indices].max())
    dense = split.clrs_batch()
    assert batch.hints["pi_h"].shape == (steps, 32, 16)  # bucketed: cut to the batch's longest trace
    assert np.array_equal(batch.hints["pi_h"], dense.hints["pi_h"][:steps, indices])
    pos = batch.inputs["pos"]
    assert np.all(np.diff(pos, axis=1) >= 0) and pos.min() >= 0 and pos.max() < 1
    assert not np.allclose(pos, np.arange(16) / 16)
    padded = TrainBatches("bfs", source="clrs30", batch_size=32, rng=np.random.default_rng(5), bucket=False,
                          random_pos=False).next()
    assert padded.hints["pi_h"].shape[0] == int(split.lengths.max())
    assert np.array_equal(padded.inputs["pos"], np.broadcast_to(np.arange(16) / 16, (32, 16)))


def test_held_out_batches_are_fresh_draws_of_the_training_distribution():
    data = {"train": "clrs30", "random_pos": False, "train_sizes": [4, 7, 11, 13, 16], "online_p": []}
    batches = held_out_batches("bfs", data, 8, 3, np.random.default_rng(0))
    assert [batch.inputs["A"].shape for batch in batches] == [(8, 16, 16)] * 3
    train = split_traces("bfs", "train")
    seen = {a.tobytes() for a in train.inputs["A"]}
    held = [a.tobytes() for batch in batches for a in batch.inputs["A"]]
    assert len(set(held)) == 24 and not seen.intersection(held)  # 24 distinct graphs, none trained on
    # the same generator as the train split: its edge density matches the split's (same p), not run.py's online p
    density = np.mean([batch.inputs["A"].mean() for batch in batches])
    assert abs(density - train.inputs["A"].mean()) < 0.1
    again = held_out_batches("bfs", data, 8, 3, np.random.default_rng(0))
    assert all(np.array_equal(a.inputs["A"], b.inputs["A"]) for a, b in zip(batches, again))
    online = held_out_batches("bfs", {**data, "train": "online", "train_sizes": [5, 9]}, 4, 2,
                              np.random.default_rng(0))
    assert [batch.inputs["A"].shape[1] for batch in online] == [5, 9]  # the online sizes in turn


def test_clrs30_sequential_order_is_repeat_then_batch():
    """run.py on the dataset files: tf.data ``repeat().batch(b)``: consecutive traces, wrapping at the end."""
    split = split_traces("bfs", "train")
    batches = TrainBatches("bfs", source="clrs30", batch_size=300, rng=np.random.default_rng(0), random_pos=False,
                           order="sequential")
    expected = [range(0, 300), range(300, 600), range(600, 900), [*range(900, 1000), *range(0, 200)]]
    for indices in expected:
        assert np.array_equal(batches.next().inputs["A"], split.inputs["A"][list(indices)])


def test_bucketing_changes_no_loss_gradient_or_prediction():
    torch.manual_seed(0)
    model = algo_family.build_model("dijkstra", config(model={"processor": "mpnn", "hidden": 16})["model"],
                                    torch.Generator().manual_seed(0)).double()
    dense = sample("dijkstra", 6, n=8, seed=2).clrs_batch(min_steps=14)
    short = take(dense, np.arange(6), bucket=True)
    assert dense.hints["d"].shape[0] == 14 > short.hints["d"].shape[0]
    results = []
    for batch in (dense, short):
        tensors = algo_family.to_device(batch, "cpu").to(dtype=torch.float64)
        model.zero_grad()
        loss = model.loss(tensors)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()], model.predict(tensors)))
    (loss_a, grads_a, pred_a), (loss_b, grads_b, pred_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    for a, b in zip(grads_a, grads_b):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    assert all(torch.equal(pred_a[k], pred_b[k]) for k in pred_a)


def test_dataset_identity_names_the_splits():
    cfg = config(data={"length_splits": ["test_64"]})
    identity = algo_family.dataset_identity(cfg)
    assert set(identity["splits"]) == {"train", "valid", "test", "test_64"}
    assert identity["splits"]["valid"]["n"] == 16 and identity["splits"]["test"]["n"] == 64
    assert identity["splits"]["test"]["sha256"] == identity["splits"]["test_64"]["sha256"]  # one recipe
    assert identity["splits"]["test"]["sha256"] != identity["splits"]["valid"]["sha256"]
    online = algo_family.dataset_identity(config(data={"train": "online", "length_splits": []}))
    assert "train" not in online["splits"] and online["online"]["sizes"] == [4, 7, 11, 13, 16]


# ---------------------------------------------------------------------------------------------------- config


def test_shipped_config_is_the_clrs30_protocol():
    path = Path(algo_family.__file__).parent / "configs" / "algo.toml"
    shipped = tomllib.loads(path.read_text())
    assert shipped["run"]["benchmark"] == "algo"
    expected = {("model", "hidden"): 128, ("model", "processor"): "triplet_gmpnn", ("model", "nb_triplet_fts"): 8,
                ("model", "use_ln"): True, ("model", "hint_mode"): "encoded_decoded",
                ("model", "hint_repred"): "soft", ("model", "encoder_init"): "xavier_on_scalars",
                ("train", "learning_rate"): 1e-3, ("train", "batch_size"): 32, ("train", "steps"): 10000,
                ("train", "grad_clip"): 1.0, ("train", "eval_every"): 50, ("data", "random_pos"): True,
                ("data", "train_sizes"): [4, 7, 11, 13, 16], ("data", "train"): "clrs30",
                ("data", "length_splits"): ["test_16", "test_32", "test_64", "test_128"]}
    for (section, key), value in expected.items():
        assert shipped[section][key] == value, f"{section}.{key}"
    defaults = algo_family.default_config()
    assert {s: shipped[s] for s in defaults} == defaults
    algo_family.validate_config(shipped)


@pytest.mark.parametrize("key, value", [
    ("train.steps", 0), ("train.steps", 1.5), ("train.learning_rate", 0.0), ("train.grad_clip", -1.0),
    ("train.batch_size", 1001), ("train.eval_every", 0), ("train.checkpoint_every", "10"), ("train.bucket", 1),
    ("model.processor", "gcn"), ("model.hidden", 0), ("model.hint_mode", "teacher"),
    ("model.hint_repred", "soft!"), ("model.encoder_init", "zeros"), ("model.use_ln", "yes"),
    ("data.algorithm", "quicksort"), ("data.train", "file"), ("data.train_order", "shuffled"), ("data.train_sizes", []),
    ("data.train_sizes", [4, 0]), ("data.online_p", [1.5]), ("data.valid", "validation_64"),
    ("data.length_splits", ["test_17"]), ("eval.batch_size", 0),
])
def test_config_errors_name_the_key(key, value):
    cfg = algo_family.default_config()
    section, name = key.split(".")
    cfg[section][name] = value
    with pytest.raises(ValueError, match=key.replace(".", r"\.").replace("[", r"\[")):
        algo_family.validate_config(cfg)


def test_config_missing_and_unknown_keys_are_named():
    cfg = algo_family.default_config()
    del cfg["train"]["steps"]
    with pytest.raises(ValueError, match=r"missing config key train\.steps"):
        algo_family.validate_config(cfg)
    cfg = algo_family.default_config()
    cfg["model"]["dropout"] = 0.1
    with pytest.raises(ValueError, match=r"unknown config key model\.dropout"):
        algo_family.validate_config(cfg)
    cfg = algo_family.default_config()
    cfg["model"].update(processor="gatv2", hidden=10, nb_heads=3)
    with pytest.raises(ValueError, match=r"model\.nb_heads"):
        algo_family.validate_config(cfg)


# ------------------------------------------------------------------------------------------------- optimizer


def test_clip_by_global_norm_as_optax():
    grads = [torch.tensor([3.0]), torch.tensor([[4.0, 0.0]])]  # global norm 5
    norm = algo_family.clip_by_global_norm_(grads, 1.0)
    assert norm.item() == pytest.approx(5.0)
    assert torch.allclose(grads[0], torch.tensor([0.6])) and torch.allclose(grads[1], torch.tensor([[0.8, 0.0]]))
    small = [torch.tensor([0.3, 0.4])]  # norm 0.5 < 1: untouched
    algo_family.clip_by_global_norm_(small, 1.0)
    assert torch.equal(small[0], torch.tensor([0.3, 0.4]))


class Quadratic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))

    def loss(self, target: torch.Tensor) -> torch.Tensor:
        return ((self.w - target) ** 2).sum()


def test_train_step_is_clipped_adam_with_optax_arithmetic():
    """Three steps against optax's chain(clip_by_global_norm(c), scale_by_adam(), scale(-lr)) written out."""
    model, lr, clip = Quadratic(), 0.1, 1.0
    step = algo_family.TrainStep(model, lr, clip)
    targets = [torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64), torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64),
               torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)]
    w = np.array([1.0, -2.0, 0.5])
    m = v = np.zeros(3)
    for t, target in enumerate(targets, start=1):
        loss = step(target)
        assert loss.item() == pytest.approx(float(((w - target.numpy()) ** 2).sum()))
        g = 2 * (w - target.numpy())
        norm = np.sqrt((g ** 2).sum())
        g = g if norm < clip else g / norm * clip
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g ** 2
        w = w - lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        assert np.allclose(model.w.detach().numpy(), w, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------- predictions


def test_evaluation_is_independent_of_batching_and_columns_rescore(tmp_path):
    cfg = _tiny(algorithm="floyd_warshall")
    model = algo_family.build_model("floyd_warshall", cfg["model"], torch.Generator().manual_seed(1))
    whole = algo_family.evaluate(model, "floyd_warshall", "valid", batch_size=32)
    pieces = algo_family.evaluate(model, "floyd_warshall", "val", batch_size=5)
    assert whole.metrics == pieces.metrics
    assert np.array_equal(whole.predictions["Pi"], pieces.predictions["Pi"])
    traces = split_traces("floyd_warshall", "valid")
    pi = whole.predictions["Pi"]
    assert pi.shape == (32, 16, 16) and set(np.unique(pi)) <= set(range(16))
    # the score is CLRS-30's pointer accuracy, counted here by hand
    assert whole.metrics["score"] == pytest.approx(np.mean(pi == traces.outputs["Pi"]))
    columns = algo_family.prediction_columns(whole.predictions)
    assert {len(c) for c in columns.values()} == {32 * 16 * 16}
    row = 3 * 256 + 5 * 16 + 7  # graph 3, entry (5, 7)
    assert (columns["graph"][row], columns["field"][row], columns["position"][row]) == (3, "Pi", 5 * 16 + 7)
    assert columns["value"][row] == pi[3, 5, 7]
    rebuilt = algo_family.predictions_from_columns("floyd_warshall", columns, traces)
    assert Evaluator("floyd_warshall").eval({"y_true": traces.outputs, "y_pred": rebuilt}) == whole.metrics
    with pytest.raises(ValueError, match="'Pi'"):
        algo_family.predictions_from_columns("floyd_warshall", {k: v[1:] for k, v in columns.items()}, traces)


def test_seed_outcome_carries_test_predictions_and_hessian_inputs(tmp_path):
    cfg = _tiny(algorithm="bfs", length_splits=["test_16"])
    outcome = algo_family.train_seed(context(cfg, tmp_path))
    traces = split_traces("bfs", "test")
    rebuilt = algo_family.predictions_from_columns("bfs", outcome.predictions, traces)
    assert Evaluator("bfs").eval({"y_true": traces.outputs, "y_pred": rebuilt})["score"] == outcome.test["score"]
    assert set(outcome.test) == {"pi", "score", "score_n16"}
    hessian = outcome.hessian
    assert hessian.num_train_examples == 1000
    assert len(hessian.train_batches) == len(hessian.test_batches) == algo_family.HESSIAN_TRAIN_BATCHES
    # the measured gap is in-distribution: held-out graphs of the training size (16), not the n = 64 test split
    assert {batch.num_nodes for batch in hessian.test_batches} == {16}
    # Hessian batches hold at most HESSIAN_BATCH_SIZE graphs (a double backward at batch 32 took 16 GB for FW)
    assert cfg["train"]["batch_size"] == 32 > algo_family.HESSIAN_BATCH_SIZE
    assert {len(batch.lengths) for batch in [*hessian.train_batches, *hessian.test_batches]} == {
        algo_family.HESSIAN_BATCH_SIZE}
    loss = hessian.loss_fn(hessian.train_batches[0])
    assert loss.requires_grad and torch.isfinite(loss)
    initial = algo_family.build_model("bfs", cfg["model"], torch.Generator().manual_seed(0)).state_dict()
    assert hessian.initial_state.keys() == initial.keys()
    assert any(not torch.equal(hessian.initial_state[k], outcome.model.state_dict()[k]) for k in initial)


_REALLOCATIONS = """
import resource, sys, torch
from gnnbench.harness import allocator
if sys.argv[1] == "keep" and not allocator.retain_freed_memory():
    print("skip"); raise SystemExit
faults = []
for _ in range(16):  # a training loop allocating the same 64 MB tensor at every step
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensor = torch.ones(16 << 20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert tensor.sum().item() == 16 << 20
    del tensor
print(*faults)
"""


def _reallocation_faults(mode: str) -> list[int] | None:
    out = subprocess.run([sys.executable, "-c", _REALLOCATIONS, mode], capture_output=True, text=True,
                         check=True).stdout.split()
    return None if out == ["skip"] else [int(x) for x in out]


def test_freed_memory_is_reused_without_page_faults():
    """With retain_freed_memory, a loop re-allocating a 64 MB tensor settles on reusing freed memory: no fresh
    pages after the first steps (glibc hands PyTorch's 64-byte-aligned requests of a freed block's size a new
    block until freed neighbours merge), where by default every allocation faults in 16,384 fresh pages. Run in
    fresh interpreters, as a training process starts."""
    pytest.importorskip("resource")
    kept = _reallocation_faults("keep")
    if kept is None:
        pytest.skip("not glibc")
    default = _reallocation_faults("default")
    assert min(default) >= 16000, default  # glibc's default: unmapped on free, fresh pages every time
    assert max(kept[-6:]) < 1000, kept  # steady state: the freed memory is reused
