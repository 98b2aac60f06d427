"""The multitask family: config checks, `gnnbench branch train` end to end, determinism and resume, the per-algorithm
optimizer step, the variants, the Hessian column, and the tree search's `fit` / `score`."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from gnnbench.algo import Evaluator
from gnnbench.cli import main
from gnnbench.harness import finished_seeds, resolve
from gnnbench.harness import multitask_family as mt
from gnnbench.harness.algo_data import split_traces
from gnnbench.harness.algo_eval import predictions_from_columns
from gnnbench.harness.config import config_sha256
from gnnbench.harness.family import SeedContext
from gnnbench.models.multitask import Tree

torch.set_num_threads(1)

ALGOS = ("bfs", "bellman_ford", "mst_prim")
TREE = Tree.from_partitions(ALGOS, [[ALGOS], [("bfs", "bellman_ford"), ("mst_prim",)]])
#: a tiny budget: hidden 8, 2 layers, 4 steps, validation after steps 1 and 3, checkpoints after steps 2 and 4
TINY = ["model.hidden=8", "model.nb_heads=1", "model.num_layers=2", "train.steps=4", "train.eval_every=2",
        "train.checkpoint_every=2", "data.test=test_16"]


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


def config(variant: str = "branched", algorithms=ALGOS, extra=()) -> dict:
    overrides = [f"data.algorithms={json.dumps(list(algorithms))}", *TINY, *extra]
    if variant == "branched":
        overrides.append(f"model.tree={json.dumps(mt.tree_value(TREE))}")
    (spec,) = resolve("multitask", shortcuts={"model": variant}, overrides=overrides)
    return spec.config


def context(cfg: dict, directory: Path, seed: int = 0) -> SeedContext:
    directory.mkdir(parents=True, exist_ok=True)
    return SeedContext(config=cfg, seed=seed, directory=directory, device=torch.device("cpu"), progress=False)


def same_outcome(a, b) -> None:
    assert a.valid == b.valid and a.test == b.test and a.steps == b.steps
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in a.curve]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in b.curve]
    for name in a.predictions:
        assert np.array_equal(a.predictions[name], b.predictions[name])
    state_a, state_b = a.model.state_dict(), b.model.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[key], state_b[key]) for key in state_a)


# ------------------------------------------------------------------------------------------------------ config


def test_shipped_config_is_the_studys_settings():
    (spec,) = resolve("multitask")
    model, train, data = spec.config["model"], spec.config["train"], spec.config["data"]
    assert (model["hidden"], model["nb_heads"], model["num_layers"]) == (192, 12, 5)
    assert (train["batch_size"], train["learning_rate"], train["steps"], train["grad_clip"]) == (4, 2.5e-4, 10000, 1.0)
    assert (data["train"], data["train_sizes"], data["test"]) == ("online", [16], "test")
    assert data["algorithms"] == ["bfs", "dfs", "topological_sort", "articulation_points", "bridges",
                                  "strongly_connected_components", "mst_kruskal", "mst_prim", "dijkstra",
                                  "bellman_ford", "dag_shortest_paths", "floyd_warshall"]
    assert model["variant"] == "mtn" and model["tree"] == []


@pytest.mark.parametrize("variant, overrides, message", [
    ("mtn", ["data.algorithms=bfs,quicksort"], r"data.algorithms\[1\]"),
    ("mtn", ["data.algorithms=bfs,dfs,bfs"], "data.algorithms lists bfs more than once"),
    ("mtn", ["data.algorithms=[]"], "data.algorithms must not be empty"),
    ("stn", ['model.tree=[[["bfs"]]]'], "model.tree is set but model.variant is 'stn'"),
    ("branched", [], "model.variant 'branched' needs model.tree"),
    ("branched", ['model.tree=[[["bfs", "bellman_ford"]], [["bfs"], ["bellman_ford"]]]'],
     "model.tree: depth 1 leaves out mst_prim"),
    ("branched", ['model.tree=[[["bfs", "bellman_ford", "mst_prim"]]]'],
     r"model.num_layers \(2\) must equal the number of depths of model.tree \(1\)"),
    ("branched", ['model.tree=[[["bfs", "bellman_ford", "mst_prim"]], [["bfs", "mst_prim"], ["bellman_ford"]], '
                  '[["bfs"], ["bellman_ford", "mst_prim"]]]', "model.num_layers=3"], "model.tree: depth 3, group 2"),
    ("mmoe", ["model.num_experts=0"], "model.num_experts"),
    ("gatv2", [], "model.variant"),
    ("mtn", ["model.processor=gcn"], "model.processor"),
    ("mtn", ["model.processor=gatv2", "model.hidden=8", "model.nb_heads=3"], r"model.nb_heads \(3\) must divide"),
    ("mtn", ["train.steps=0"], "train.steps"),
    ("mtn", ["data.valid=valid_16"], "data.valid"),
])
def test_config_errors_name_the_key(variant, overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve("multitask", shortcuts={"model": variant},
                overrides=["data.algorithms=bfs,bellman_ford,mst_prim", "model.num_layers=2", *overrides])


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match="unknown config key 'model.layers'"):
        resolve("multitask", overrides=["model.layers=3"])


# ------------------------------------------------------------------------------------------------ end to end


def test_branched_run_through_the_cli_rescored_from_its_predictions(tmp_path, capsys):
    tree_file = TREE.save(tmp_path / "my_tree.json")
    out = tmp_path / "run"
    args = [f"--set={item}" for item in TINY if item != "data.test=test_16"]  # the real test split, n = 64
    assert main(["branch", "train", "--tree", str(tree_file), "--seeds", "0", *args, "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["data"]["algorithms"] == list(ALGOS) and config["model"]["variant"] == "branched"
    assert config["model"]["tree"] == [[list(ALGOS)], [["bfs", "bellman_ford"], ["mst_prim"]]]
    assert Tree.load(out / "tree.json") == TREE
    record = finished_seeds(out, config_sha256(config))[0]
    assert record["steps"] == 4 and record["extra"]["updates"] == 12 and record["extra"]["variant"] == "branched"
    assert record["wall_seconds"] > 0 and record["peak_memory"]["rss_bytes"] > 0
    assert [row["step"] for row in record["curve"]] == [1, 3]
    test = record["test"]
    assert set(test) == {"score", *(f"score_{a}" for a in ALGOS)}
    assert test["score"] == pytest.approx(np.mean([test[f"score_{a}"] for a in ALGOS]), abs=1e-15)
    for algorithm in ALGOS:
        assert f"{algorithm:30s} test {test[f'score_{algorithm}']:.4f}" in printed
    # the predictions rescore, per algorithm, to the recorded test scores
    columns = {k: np.asarray(v) for k, v in pq.read_table(out / "seed_0" / "predictions.parquet").to_pydict().items()}
    assert set(np.unique(columns["algorithm"])) == set(ALGOS)
    for algorithm, part in mt.predictions_by_algorithm(columns).items():
        traces = split_traces(algorithm, "test")
        assert traces.num_nodes == 64
        rescored = Evaluator(algorithm).eval({"y_true": traces.outputs,
                                              "y_pred": predictions_from_columns(algorithm, part, traces)})
        assert rescored["score"] == pytest.approx(test[f"score_{algorithm}"], abs=1e-12)
    # model.pt holds the selected weights: a fresh net loading them scores the recorded valid scores
    net = mt.build_net(config)
    net.load_state_dict(torch.load(out / "seed_0" / "model.pt", weights_only=True))
    valid = mt.score(net, "valid")
    assert valid == {a: record["valid"][f"score_{a}"] for a in ALGOS}


def test_cli_rejects_a_tree_with_another_variant_and_other_algorithms(tmp_path, capsys):
    tree_file = TREE.save(tmp_path / "tree.json")
    assert main(["branch", "train", "--tree", str(tree_file), "--variant", "mtn", "--dry-run"]) == 2
    assert "--tree goes with --variant branched" in capsys.readouterr().err
    assert main(["branch", "train", "--tree", str(tree_file), "--algorithms", "bfs,dfs", "--dry-run"]) == 2
    assert "differ from the tree's" in capsys.readouterr().err
    assert main(["branch", "train", "--tree", str(tmp_path / "missing.json"), "--dry-run"]) == 2
    assert "no such tree file" in capsys.readouterr().err


def test_variants_sweep_from_the_cli_dry_run(capsys):
    assert main(["branch", "train", "--variant", "stn,mtn,mmoe", "--algorithms", "bfs,dfs", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert [line.split("runs/")[1].split("-")[1] for line in printed.splitlines()
            if line.startswith("# run directory")] == ["stn", "mtn", "mmoe"]
    assert main(["branch", "train", "--tree", "published", "--dry-run"]) == 0
    config = tomllib.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert config["model"]["num_layers"] == 5 and len(config["model"]["tree"][1]) == 3  # the study's first split


# --------------------------------------------------------------------------------------- determinism and resume


def test_same_seed_same_result_and_resume_after_kill(tmp_path):
    cfg = config()
    whole = mt.train_seed(context(cfg, tmp_path / "run_a" / "seed_0"))
    again = mt.train_seed(context(cfg, tmp_path / "run_b" / "seed_0"))
    same_outcome(whole, again)
    killed = tmp_path / "killed" / "seed_0"
    killed.mkdir(parents=True)
    with pytest.raises(Killed):  # dies at its second checkpoint (step 4): steps 3-4 are lost
        mt.train_seed(KilledAfter(cfg, 0, killed, torch.device("cpu"), False, saves=2))
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["step"] == 2
    resumed = mt.train_seed(context(cfg, killed))
    same_outcome(whole, resumed)
    other = mt.train_seed(context(cfg, tmp_path / "run_c" / "seed_1", seed=1))
    assert [r["loss"] for r in other.curve] != [r["loss"] for r in whole.curve]


# -------------------------------------------------------------------------------------------- optimizer step


class Toy(nn.Module):
    """loss_a = |w + h_a - t|^2: a shared w and one head h_a per algorithm (float64)."""

    algorithms = ("a", "b")

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
        self.h = nn.ParameterDict({"a": nn.Parameter(torch.tensor([0.5, 0.5], dtype=torch.float64)),
                                   "b": nn.Parameter(torch.tensor([-1.0, 3.0], dtype=torch.float64))})

    def loss(self, algorithm: str, target: torch.Tensor) -> torch.Tensor:
        return ((self.w + self.h[algorithm] - target) ** 2).sum()


def test_each_step_is_one_clipped_adam_update_per_algorithm_in_order():
    """Two steps written out by hand: per step, a's update (w and h_a), then b's (w and h_b) at the weights a's
    left; each update clipped on its own; a parameter's Adam moments and step count move only when it has a
    gradient."""
    model, lr, clip = Toy(), 0.1, 1.0
    step = mt.MultitaskStep(model, lr, clip)
    targets = [{"a": np.array([0.0, 0.0]), "b": np.array([2.0, 1.0])},
               {"a": np.array([0.3, -0.2]), "b": np.array([0.0, 0.0])}]
    p = {"w": np.array([1.0, -2.0]), "a": np.array([0.5, 0.5]), "b": np.array([-1.0, 3.0])}
    m = {k: np.zeros(2) for k in p}
    v = {k: np.zeros(2) for k in p}
    t = {k: 0 for k in p}

    def adam(name, g):
        t[name] += 1
        m[name] = 0.9 * m[name] + 0.1 * g
        v[name] = 0.999 * v[name] + 0.001 * g ** 2
        p[name] = p[name] - lr * (m[name] / (1 - 0.9 ** t[name])) / (np.sqrt(v[name] / (1 - 0.999 ** t[name])) + 1e-8)

    for target in targets:
        losses = step({k: torch.tensor(x) for k, x in target.items()})
        assert list(losses) == ["a", "b"]
        for algorithm in ("a", "b"):
            residual = p["w"] + p[algorithm] - target[algorithm]
            g = 2 * residual  # the same gradient for w and h_algorithm
            norm = np.sqrt(2 * (g ** 2).sum())
            g = g if norm < clip else g / norm * clip
            adam("w", g)
            adam(algorithm, g)
    assert np.allclose(model.w.detach().numpy(), p["w"], rtol=1e-12, atol=1e-12)
    for algorithm in ("a", "b"):
        assert np.allclose(model.h[algorithm].detach().numpy(), p[algorithm], rtol=1e-12, atol=1e-12)
    state = step.optimizer.state
    assert float(state[model.w]["step"]) == 4 and float(state[model.h["a"]]["step"]) == 2


def test_layers_take_one_update_per_algorithm_that_runs_through_them():
    """Adam's per-parameter step count after two steps of the branched net: depth 1 (all three algorithms) 6,
    depth 2's bfs + bellman_ford layer 4, its mst_prim layer 2, every head 2."""
    cfg = config()
    net = mt.build_net(cfg, torch.Generator().manual_seed(0))
    step = mt.MultitaskStep(net, 1e-3, 1.0)
    batches = mt._train_batches(ALGOS, cfg["data"], 2, [np.random.default_rng(i) for i in range(3)])
    for _ in range(2):
        step(mt._next(batches, torch.device("cpu")))
    counts = {name: float(step.optimizer.state[p]["step"]) for name, p in net.named_parameters()}
    expected = {"layers.0.0.": 6, "layers.1.0.": 4, "layers.1.1.": 2, "heads.": 2}
    for name, count in counts.items():
        assert count == next(n for prefix, n in expected.items() if name.startswith(prefix)), name


# ------------------------------------------------------------------------------------------------ variants


@pytest.mark.parametrize("variant", ["stn", "mtn", "mmoe"])
def test_variants_train_and_record(variant, tmp_path):
    cfg = config(variant, algorithms=("bfs", "bellman_ford"))
    outcome = mt.train_seed(context(cfg, tmp_path / "run" / "seed_0"))
    assert outcome.steps == 4 and outcome.extra["variant"] == variant
    scores = [outcome.test["score_bfs"], outcome.test["score_bellman_ford"]]
    assert outcome.test["score"] == pytest.approx(np.mean(scores), abs=1e-15)
    assert outcome.valid["score"] == max(row["valid_score"] for row in outcome.curve)
    assert set(np.unique(outcome.predictions["algorithm"])) == {"bfs", "bellman_ford"}
    assert (tmp_path / "run" / "tree.json").exists() == (variant != "mmoe")
    # the Hessian column's loss: the sum of the algorithms' losses on a batch holding every algorithm
    batch = outcome.hessian.train_batches[0]
    assert list(batch) == ["bfs", "bellman_ford"] and all(b.num_graphs == 4 for b in batch.values())
    expected = sum(outcome.model.loss(a, b).item() for a, b in batch.items())
    assert outcome.hessian.loss_fn(batch).item() == pytest.approx(expected, rel=1e-6)
    layers = sum(p.numel() for name, p in outcome.model.named_parameters() if name.startswith("layers."))
    one_stack = sum(p.numel() for name, p in mt.build_net(config("mtn", algorithms=("bfs", "bellman_ford")))
                    .named_parameters() if name.startswith("layers."))
    experts = cfg["model"]["num_experts"]
    gates = 2 * 2 * (2 * 8 + 1) * experts  # 2 depths x 2 algorithms x a linear 2H -> experts
    assert layers == {"stn": 2 * one_stack, "mtn": one_stack, "mmoe": experts * one_stack + gates}[variant]


# ----------------------------------------------------------------------------------------------------- Hessian


def test_hessian_column_of_the_summed_losses(tmp_path):
    pair = ("bfs", "bellman_ford")
    tree_file = Tree.from_partitions(pair, [[pair], [("bfs",), ("bellman_ford",)]]).save(tmp_path / "tree.json")
    out = tmp_path / "run"
    budget = ["hessian.max_train_batches=1", "hessian.max_test_batches=1", "hessian.num_matvecs=6",
              "hessian.density_steps=4", "hessian.parameters=layers.1", "train.batch_size=2"]
    assert main(["branch", "train", "--tree", str(tree_file), "--seeds", "0", "--hessian",
                 *[f"--set={item}" for item in [*TINY, *budget]], "--out", str(out), "--no-progress"]) == 0
    config_ = tomllib.loads((out / "config.toml").read_text())
    column = finished_seeds(out, config_sha256(config_))[0]["hessian"]
    assert column["batches"] == {"train": 1, "test": 1} and column["num_matvecs"]["trace"] == 6
    assert math.isfinite(column["trace"]) and math.isfinite(column["top_eigenvalue"])
    layers = set(column["per_layer_trace"])  # both branches of depth 2, nothing of depth 1 or the heads
    assert {name.rsplit(".", 1)[0] for name in layers} == {"layers.1.0", "layers.1.1"}
    assert column["num_matvecs"]["bounds"] == len(layers)  # one product per layer and training batch


# ------------------------------------------------------------------------------------------------ fit, score


def test_fit_leaves_frozen_layers_bitwise_unchanged():
    cfg = config()
    net = mt.build_net(cfg, torch.Generator().manual_seed(0))
    net.freeze_below(2)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    losses = mt.fit(net, steps=2, batch_size=2, learning_rate=1e-2, grad_clip=1.0, rng=np.random.default_rng(0))
    assert len(losses) == 2
    after = dict(net.named_parameters())
    frozen = [name for name in before if name.startswith("layers.0.")]
    trained = [name for name in before if name.startswith("layers.1.")]
    assert frozen and all(torch.equal(before[name], after[name]) for name in frozen)
    # every trained weight moved but the graph-feature linear's (its input, the graph features, is zero for these
    # three algorithms: zero gradient, zero Adam step)
    unchanged = {name for name in trained if torch.equal(before[name], after[name])}
    assert trained and unchanged <= {name for name in trained if ".m_g." in name}


def test_fit_is_deterministic_for_its_rng_and_checks_arguments():
    cfg = config("mtn")
    runs = []
    for _ in range(2):
        net = mt.build_net(cfg, torch.Generator().manual_seed(0))
        runs.append(mt.fit(net, steps=2, batch_size=2, learning_rate=1e-3, grad_clip=1.0,
                           rng=np.random.default_rng(5)))
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="batch_size"):
        mt.fit(net, steps=1, batch_size=0, learning_rate=1e-3, grad_clip=1.0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="rng"):
        mt.fit(net, steps=1, batch_size=1, learning_rate=1e-3, grad_clip=1.0, rng=0)


def test_score_is_each_heads_evaluator_score():
    """Against the heads' predictions on each whole validation split (one batch, no chunking), scored by
    Evaluator: every algorithm of the three has a single pointer output, ``pi``."""
    from gnnbench.harness.algo_data import to_device

    net = mt.build_net(config(), torch.Generator().manual_seed(0))
    scores = mt.score(net, "valid")
    assert list(scores) == list(ALGOS)
    net.eval()
    for algorithm in ALGOS:
        traces = split_traces(algorithm, "valid")
        predicted = net.head(algorithm).predict(to_device(traces.clrs_batch(), "cpu"))
        assert set(predicted) == {"pi"}
        expected = Evaluator(algorithm).eval({"y_true": traces.outputs,
                                              "y_pred": {"pi": predicted["pi"].numpy().astype(np.float64)}})
        assert scores[algorithm] == pytest.approx(expected["score"], abs=1e-15)
    with pytest.raises(ValueError, match="split"):
        mt.score(net, "nonsense")
