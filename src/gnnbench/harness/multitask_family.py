"""The ``multitask`` family: one network trained on several CLRS-30 algorithms at once (the branching study's protocol).

The network is a :class:`gnnbench.models.multitask.MultitaskNet` (``model.variant``: ``stn``, ``mtn``, ``mmoe`` or
``branched`` with the tree ``model.tree``) over ``data.algorithms``. Every training step draws one batch of every
algorithm and then makes one optimizer update per algorithm, in the order of ``data.algorithms``: that algorithm's
loss, its gradients, clipping to global norm ``train.grad_clip``, Adam; one Adam optimizer over all trainable
parameters. So CLRS-30's multi-algorithm ``run.py`` trains, and the branching study's fork of it (Li et al.,
https://arxiv.org/abs/2512.01113; ``clrs_experiments/clrs/examples/run.py`` of
https://github.com/VirtuosoResearch/Multitask-algorithmic-reasoning). Parameters an algorithm's loss does not reach
(the other algorithms' encoders and decoders, the layers of other branches, layers frozen with ``freeze_below``) get
no gradient, and that update leaves them and their Adam moments alone, as CLRS-30's ``filter_null_grads`` does for
encoders and decoders (the study's JAX code still moves other branches' layers on their momentum). Adam's bias
correction counts each parameter's own updates (torch), where optax counts every update.

Validation after step 1 and every ``train.eval_every`` steps after it (1, 1 + eval_every, ...): every algorithm is
scored on the validation split (CLRS-30's: 32 graphs, n = 16) and the weights with the best mean score so far are
kept (a later evaluation replaces them only with a strictly higher mean, as ``run.py``'s sum of validation scores).
Those weights are tested per algorithm on ``data.test`` (CLRS-30's test split: 32 graphs, n = 64). Metrics, valid
and test: ``score`` (the mean over algorithms: the study's average accuracy) and ``score_<algorithm>``.

Training data: each algorithm's batches come from :class:`~gnnbench.harness.algo_data.TrainBatches` with the
generator the ``algo`` family gives that algorithm and seed, so a multitask run sees, per algorithm, the batches
of the single-task run of the same seed and data settings. Initial weights come from their own generator.

Defaults (``configs/multitask.toml``) are the study's Edge Transformer settings (its ``run.py`` at d426c27 and its
README): hidden 192, 12 heads, 5 layers, batch 4 per algorithm, Adam 2.5e-4, 10,000 steps, clipping 1.0, fresh
graphs of n = 16 every step; the processor defaults to ``mpnn`` (``--processor edge_transformer`` for the study's).
That is GPU work. A CPU budget overrides keys on the command line, e.g. ``gnnbench branch train --tree TREE.json
--processor mpnn --set model.hidden=64 --set model.num_layers=3 --set train.steps=500``; overridden keys enter the
config's hash and the run directory's ``config.toml``, so every number of such a run carries its processor, hidden
size and steps, and such a run is not a reproduction of the study.

Run directory extras: ``tree.json`` (the network's tree: the branched tree, or the STN/MTN one; not for MMoE) in the
run directory, the seed directory's parent. Predictions (``SeedOutcome.predictions``): the ``algo`` family's flat
columns (``graph``, ``field``, ``position``, ``value``; :mod:`gnnbench.harness.algo_eval`) plus ``algorithm`` (str),
one block of rows per algorithm; :func:`predictions_by_algorithm` splits them again. The Hessian column measures
``net.total_loss`` (the sum of the algorithms' losses) on batches that hold every algorithm (``{algorithm:
batch}``). For the tree search: :func:`fit` (the training step, without validation) and :func:`score`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..algo.specs import ALGORITHMS
from ..algo.trace import TraceSet
from ..arguments import check_choice, check_float, check_int
from . import algo_data, algo_family
from .algo_data import TRAIN_SOURCES, TrainBatches, split_traces, to_device
from .algo_eval import Evaluation, evaluate, prediction_columns
from .algo_family import TrainStep, _clone_state, _sequence, _split_name, validate_protocol
from .allocator import retain_freed_memory
from .family import HessianInputs, SeedContext, SeedOutcome, check_sections

__all__ = ["FAMILY", "MultitaskStep", "build_net", "config_tree", "dataset_identity", "default_config", "fit",
           "predictions_by_algorithm", "score", "train_seed", "tree_value", "validate_config"]

logger = logging.getLogger(__name__)

FAMILY = "multitask"
TREE_NAME = "tree.json"  # in the run directory
HESSIAN_TRAIN_BATCHES = 4  # training (and as many held-out) batches handed to the Hessian column
#: Graphs per algorithm in a Hessian batch (at most the training batch size): one batch holds every algorithm, and
#: a Hessian-vector product back-propagates twice through all of them at once.
HESSIAN_BATCH_SIZE = 4
_INIT_KEY = len(ALGORITHMS)  # seed-sequence key of the initial weights (the algo family keys 0..11 by algorithm)


def default_config() -> dict[str, dict[str, Any]]:
    """Every key of the ``data``, ``model``, ``train`` and ``eval`` sections with the study's defaults."""
    return {
        "data": {
            "algorithms": list(ALGORITHMS),
            "train": "online",  # the study: fresh graphs every step; "clrs30": the 1000-graph train split
            "train_order": "random",  # clrs30: "random" (with replacement) or "sequential"
            "train_sizes": [16],  # online: graph size of step i is train_sizes[i % len] (the study: 16 only)
            "online_p": [],  # online edge probabilities; [] = run.py's (0.1 .. 0.9, halved for sparse algorithms)
            "random_pos": True,
            "valid": "valid",
            "test": "test",
        },
        "model": {
            "variant": "mtn",
            "tree": [],  # branched: depth -> groups -> algorithms ([[["bfs", "dfs"]], [["bfs"], ["dfs"]]])
            "processor": "mpnn",
            "hidden": 192,
            "num_layers": 5,
            "num_experts": 3,
            "nb_heads": 12,
            "nb_triplet_fts": 8,
            "use_ln": True,
            "hint_mode": "encoded_decoded",
            "hint_repred": "soft",
            "encoder_init": "xavier_on_scalars",
        },
        "train": {
            "steps": 10000,
            "batch_size": 4,  # graphs per algorithm per step
            "learning_rate": 0.00025,
            "grad_clip": 1.0,
            "eval_every": 50,
            "checkpoint_every": 500,
            "bucket": True,
        },
        "eval": {
            "batch_size": 32,
        },
    }


# ---------------------------------------------------------------------------------------------------- config


def validate_config(config: Mapping[str, Any]) -> None:
    """ValueError naming the key (``model.tree``, ``train.steps``, ...) on a missing, unknown or bad value."""
    from ..models.multitask import VARIANTS

    check_sections(config, default_config(), FAMILY)
    data, model = config["data"], config["model"]
    algorithms = _sequence("data.algorithms", data["algorithms"], allow_empty=False)
    for i, algorithm in enumerate(algorithms):
        check_choice(f"data.algorithms[{i}]", algorithm, ALGORITHMS)
    repeated = sorted({a for a in algorithms if list(algorithms).count(a) > 1})
    if repeated:
        raise ValueError(f"data.algorithms lists {', '.join(repeated)} more than once")
    check_choice("model.variant", model["variant"], VARIANTS)
    check_int("model.num_experts", model["num_experts"], minimum=1)
    validate_protocol(config)
    config_tree(config)


def config_tree(config: Mapping[str, Any]) -> Any:
    """The :class:`~gnnbench.models.multitask.Tree` of a branched config (``None`` for the other variants); a
    ValueError naming ``model.tree`` when it is malformed, missing, set for another variant, or of another depth
    than ``model.num_layers``."""
    from ..models.multitask.tree import FORMAT, Tree

    model, algorithms = config["model"], config["data"]["algorithms"]
    depths = model["tree"]
    if not isinstance(depths, list):
        raise ValueError(f"model.tree must be a list (depth -> groups -> algorithms), got {depths!r}")
    if model["variant"] != "branched":
        if depths:
            raise ValueError(f"model.tree is set but model.variant is {model['variant']!r}: a tree is only for "
                             "variant 'branched' (set model.tree = [])")
        return None
    if not depths:
        raise ValueError("model.variant 'branched' needs model.tree (depth -> groups -> algorithms, e.g. "
                         "[[[\"bfs\", \"dfs\"]], [[\"bfs\"], [\"dfs\"]]]); `gnnbench branch train --tree TREE.json` "
                         "sets it from a tree file")
    tree = Tree.from_dict({"format": FORMAT, "algorithms": list(algorithms),
                           "depths": {str(depth): groups for depth, groups in enumerate(depths, start=1)}},
                          source="model.tree")
    if tree.num_layers != model["num_layers"]:
        raise ValueError(f"model.num_layers ({model['num_layers']}) must equal the number of depths of model.tree "
                         f"({tree.num_layers})")
    return tree


def tree_value(tree: Any) -> list[list[list[str]]]:
    """A :class:`~gnnbench.models.multitask.Tree` as the value of ``model.tree`` (depth -> groups -> algorithms)."""
    return [[list(group) for group in groups] for groups in tree.depths]


def dataset_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """Per algorithm, the ``algo`` family's identity of its splits (recipes and checksums; online: the recipe)."""
    data = config["data"]
    return {"algorithms": {algorithm: algo_family.dataset_identity(
        {"data": {**data, "algorithm": algorithm, "length_splits": []}}) for algorithm in data["algorithms"]}}


# ------------------------------------------------------------------------------------------------------- model


def build_net(config: Mapping[str, Any], generator: torch.Generator | None = None) -> torch.nn.Module:
    """The :class:`~gnnbench.models.multitask.MultitaskNet` of a (validated) config, initialised from
    ``generator``."""
    from ..models.multitask import MultitaskNet

    model = config["model"]
    variant = model["variant"]
    return MultitaskNet(config["data"]["algorithms"], model["processor"], hidden=model["hidden"],
                        num_layers=model["num_layers"], variant=variant, tree=config_tree(config),
                        num_experts=model["num_experts"], use_ln=model["use_ln"],
                        nb_triplet_fts=model["nb_triplet_fts"], nb_heads=model["nb_heads"], generator=generator,
                        hint_mode=model["hint_mode"], hint_repred_mode=model["hint_repred"],
                        encoder_init=model["encoder_init"])


class MultitaskStep(TrainStep):
    """One training step: one update per algorithm of ``net.algorithms``, in that order (loss, gradients of the
    trainable parameters it reaches, global-norm clipping, Adam); one Adam optimizer over every trainable
    parameter (:class:`~gnnbench.harness.algo_family.TrainStep`'s)."""

    def __call__(self, batches: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Train on ``{algorithm: batch}`` (every algorithm of the net); returns the detached losses."""
        missing = [a for a in self.model.algorithms if a not in batches]
        if missing:
            raise ValueError(f"batches lacks {', '.join(missing)} (a step trains every algorithm of the net)")
        return {algorithm: self._update(lambda: self.model.loss(algorithm, batches[algorithm]))
                for algorithm in self.model.algorithms}

    def _update(self, loss_fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        self.model.train()
        for p in self.parameters:
            p.grad = None
        loss = loss_fn()
        loss.backward()
        grads = [p.grad for p in self.parameters if p.grad is not None]
        if self.grad_clip > 0 and grads:
            algo_family.clip_by_global_norm_(grads, self.grad_clip)
        self.optimizer.step()  # parameters without a gradient are skipped, their moments untouched
        return loss.detach()


def _data_seed(seed: int, algorithm: str) -> np.random.SeedSequence:
    """The ``algo`` family's training-data seed sequence of ``algorithm`` and ``seed``."""
    return np.random.SeedSequence([seed, ALGORITHMS.index(algorithm)]).spawn(3)[1]


def _train_batches(algorithms: Sequence[str], data: Mapping[str, Any], batch_size: int,
                   rngs: Sequence[np.random.Generator], bucket: bool = True) -> dict[str, TrainBatches]:
    return {algorithm: TrainBatches(algorithm, source=data["train"], batch_size=batch_size, rng=rng, bucket=bucket,
                                    random_pos=data["random_pos"], sizes=data["train_sizes"], p=data["online_p"],
                                    order=data["train_order"])
            for algorithm, rng in zip(algorithms, rngs)}


def _next(batches: Mapping[str, TrainBatches], device: torch.device) -> dict[str, Any]:
    return {algorithm: to_device(source.next(), device) for algorithm, source in batches.items()}


# ------------------------------------------------------------------------------------------- search helpers


def fit(net: torch.nn.Module, *, steps: int, batch_size: int, learning_rate: float, grad_clip: float,
        rng: np.random.Generator, device: torch.device | str = "cpu", data: Mapping[str, Any] | None = None,
        bucket: bool = True, progress: bool = False) -> list[float]:
    """Train ``net`` (a ``MultitaskNet``) for ``steps`` steps of the family's step on its algorithms; returns each
    step's loss (the sum over algorithms).

    Only parameters with ``requires_grad`` are optimised (layers frozen with ``net.freeze_below`` stay bitwise
    unchanged). ``data``: the training keys of the ``[data]`` section (``train``, ``train_order``, ``train_sizes``,
    ``online_p``, ``random_pos``; default: the shipped config's: fresh graphs of n = 16). ``rng`` draws the batches
    (one child generator per algorithm). The net is moved to ``device``; no validation, no checkpoint.
    """
    from tqdm.auto import tqdm

    steps = check_int("steps", steps, minimum=0)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    learning_rate = check_float("learning_rate", learning_rate, minimum=0.0, open_min=True)
    grad_clip = check_float("grad_clip", grad_clip, minimum=0.0)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    settings = {**default_config()["data"], **(data or {})}
    check_choice("data.train", settings["train"], TRAIN_SOURCES)
    device = torch.device(device)
    net.to(device)
    step = MultitaskStep(net, learning_rate, grad_clip)
    batches = _train_batches(net.algorithms, settings, batch_size, rng.spawn(len(net.algorithms)), bucket)
    losses = []
    for _ in tqdm(range(steps), disable=not progress, leave=False, desc="fit"):
        losses.append(torch.stack(list(step(_next(batches, device)).values())).sum())
    return [float(loss) for loss in losses]


def _evaluate_all(net: torch.nn.Module, splits: Mapping[str, str | TraceSet], batch_size: int,
                  device: torch.device | str | None = None) -> dict[str, Evaluation]:
    was_training = net.training
    net.eval()  # the whole net: a head's eval() does not reach the shared layers it routes through
    try:
        return {algorithm: evaluate(net.head(algorithm), algorithm, splits[algorithm], batch_size=batch_size,
                                    device=device) for algorithm in net.algorithms}
    finally:
        net.train(was_training)


def score(net: torch.nn.Module, split: str, *, batch_size: int = 32,
          device: torch.device | str | None = None) -> dict[str, float]:
    """``{algorithm: score}`` of ``net`` (a ``MultitaskNet``) on a named split (``"valid"``, ``"test"``, ...),
    scored per algorithm by :class:`gnnbench.algo.Evaluator`."""
    _split_name("split", split)
    evaluations = _evaluate_all(net, {a: split for a in net.algorithms}, batch_size, device)
    return {algorithm: result.metrics["score"] for algorithm, result in evaluations.items()}


def _metrics(evaluations: Mapping[str, Evaluation]) -> dict[str, float]:
    scores = {algorithm: float(result.metrics["score"]) for algorithm, result in evaluations.items()}
    return {"score": float(np.mean(list(scores.values()))), **{f"score_{a}": s for a, s in scores.items()}}


def predictions_by_algorithm(columns: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """The family's prediction columns split into the ``algo`` family's columns per algorithm (for
    :func:`~gnnbench.harness.algo_eval.predictions_from_columns`)."""
    if "algorithm" not in columns:
        raise ValueError("the prediction columns have no 'algorithm' column (not a multitask run's predictions)")
    names = np.asarray(columns["algorithm"]).astype(str)
    out = {}
    for algorithm in dict.fromkeys(names.tolist()):
        rows = names == algorithm
        out[algorithm] = {key: np.asarray(value)[rows] for key, value in columns.items() if key != "algorithm"}
    return out


def _prediction_columns(evaluations: Mapping[str, Evaluation]) -> dict[str, np.ndarray]:
    parts = []
    for algorithm, result in evaluations.items():
        columns = prediction_columns(result.predictions)
        parts.append({"algorithm": np.full(len(columns["graph"]), algorithm), **columns})
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


# ---------------------------------------------------------------------------------------------------- training


class _Run:
    """One seed's training state: everything a checkpoint holds."""

    def __init__(self, context: SeedContext) -> None:
        config = context.config
        self.context, self.config = context, config
        self.data, self.train = config["data"], config["train"]
        self.algorithms = tuple(self.data["algorithms"])
        self.device = torch.device(context.device)
        init_seed, self.hessian_seed = np.random.SeedSequence([context.seed, _INIT_KEY]).spawn(2)
        generator = torch.Generator().manual_seed(int(init_seed.generate_state(1, np.uint64)[0] >> 1))
        self.net = build_net(config, generator)
        self.initial_state = _clone_state(self.net)
        self.net.to(self.device)
        self.step_fn = MultitaskStep(self.net, self.train["learning_rate"], self.train["grad_clip"])
        rngs = [np.random.default_rng(_data_seed(context.seed, a)) for a in self.algorithms]
        self.batches = _train_batches(self.algorithms, self.data, self.train["batch_size"], rngs, self.train["bucket"])
        self.valid = {a: split_traces(a, self.data["valid"]) for a in self.algorithms}  # held: 12 x 3 splits > cache
        self.step = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_score = -math.inf
        self.best_step = 0
        self.curve: list[dict[str, float]] = []
        self.loss_sum = torch.zeros(len(self.algorithms), dtype=torch.float64, device=self.device)
        self.loss_count = 0
        self.seconds = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"format": 1, "algorithms": list(self.algorithms), "step": self.step,
                "model": _clone_state(self.net), "optimizer": self.step_fn.optimizer.state_dict(),
                "best_state": self.best_state, "best_score": self.best_score, "best_step": self.best_step,
                "curve": copy.deepcopy(self.curve),
                "batches": {a: source.state_dict() for a, source in self.batches.items()},
                "loss_sum": self.loss_sum.detach().cpu(), "loss_count": self.loss_count, "seconds": self.seconds}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != 1 or state.get("algorithms") != list(self.algorithms):
            raise ValueError(f"{self.context.checkpoint_path}: not a checkpoint of this multitask run "
                             f"(format {state.get('format')}, algorithms {state.get('algorithms')})")
        self.step = int(state["step"])
        self.net.load_state_dict(state["model"])
        self.step_fn.optimizer.load_state_dict(state["optimizer"])
        self.best_state = state["best_state"]
        self.best_score, self.best_step = float(state["best_score"]), int(state["best_step"])
        self.curve = list(state["curve"])
        for algorithm, source in self.batches.items():
            source.load_state_dict(state["batches"][algorithm])
        self.loss_sum = state["loss_sum"].to(self.device)
        self.loss_count, self.seconds = int(state["loss_count"]), float(state["seconds"])

    def validate(self, bar: Any) -> None:
        """Score every algorithm on valid; keep the weights on a strictly better mean."""
        metrics = _metrics(_evaluate_all(self.net, self.valid, self.config["eval"]["batch_size"], self.device))
        losses = (self.loss_sum / max(self.loss_count, 1)).tolist()
        self.loss_sum.zero_()
        self.loss_count = 0
        row = {"step": self.step, "loss": float(sum(losses)), "valid_score": metrics["score"],
               "seconds": self.seconds}
        for algorithm, loss in zip(self.algorithms, losses):
            row[f"loss_{algorithm}"] = loss
            row[f"valid_score_{algorithm}"] = metrics[f"score_{algorithm}"]
        self.curve.append(row)
        if metrics["score"] > self.best_score or self.best_state is None:
            self.best_score, self.best_step, self.best_state = metrics["score"], self.step, _clone_state(self.net)
        bar.set_postfix(loss=f"{row['loss']:.4f}", valid=f"{metrics['score']:.3f}", best=f"{self.best_score:.3f}",
                        refresh=False)

    def run(self) -> None:
        from tqdm.auto import tqdm

        steps, eval_every = self.train["steps"], self.train["eval_every"]
        checkpoint_every = self.train["checkpoint_every"]
        with tqdm(total=steps, initial=self.step, disable=not self.context.progress, leave=False,
                  desc=f"multitask ({len(self.algorithms)} algorithms) seed {self.context.seed}") as bar:
            while self.step < steps:
                start = time.perf_counter()
                losses = self.step_fn(_next(self.batches, self.device))
                self.loss_sum += torch.stack(list(losses.values())).to(torch.float64)
                self.loss_count += 1
                self.step += 1
                self.seconds += time.perf_counter() - start
                if (self.step - 1) % eval_every == 0:  # run.py: after steps 1, 1 + eval_every, ...
                    self.validate(bar)
                if self.step % checkpoint_every == 0 or self.step == steps:
                    self.context.save_checkpoint(self.state_dict())
                bar.update(1)


def _save_tree(net: torch.nn.Module, run_dir: Path) -> None:
    if net.tree is not None:
        net.tree.save(run_dir / TREE_NAME)


def train_seed(context: SeedContext) -> SeedOutcome:
    """Train one seed of the multitask protocol, select on the mean validation score, test every algorithm."""
    retain_freed_memory()
    run = _Run(context)
    _save_tree(run.net, Path(context.directory).parent)
    state = context.load_checkpoint()
    if state is not None:
        run.load_state_dict(state)
        logger.info("multitask seed %d: resuming at step %d", context.seed, run.step)
    run.run()
    net = run.net
    net.load_state_dict(run.best_state)
    batch_size = run.config["eval"]["batch_size"]
    valid = _evaluate_all(net, run.valid, batch_size, run.device)
    test = _evaluate_all(net, {a: run.data["test"] for a in run.algorithms}, batch_size, run.device)
    best_steps = {}
    for algorithm in run.algorithms:  # where each algorithm's own validation score peaked (first maximum)
        key = f"valid_score_{algorithm}"
        best_steps[algorithm] = max(run.curve, key=lambda row: (row[key], -row["step"]))["step"]
    return SeedOutcome(
        valid=_metrics(valid), test=_metrics(test), curve=run.curve, predictions=_prediction_columns(test),
        model=net, steps=run.step, hessian=_hessian_inputs(run),
        extra={"best_step": run.best_step, "best_step_per_algorithm": best_steps, "train_seconds": run.seconds,
               "steps_per_second": run.step / run.seconds if run.seconds > 0 else None,
               "updates": run.step * len(run.algorithms), "parameters": sum(p.numel() for p in net.parameters()),
               "algorithms": list(run.algorithms), "variant": net.variant,
               "tree": net.tree.to_dict() if net.tree is not None else None, "train_source": run.data["train"]})


def _hessian_inputs(run: _Run) -> HessianInputs:
    """Batches of every algorithm (``{algorithm: batch}``): a few training batches and as many held-out ones from
    the training distribution (as the ``algo`` family's, from generators of their own), and the initial weights."""
    data, train = run.data, run.train
    batch_size = min(train["batch_size"], HESSIAN_BATCH_SIZE)
    seed = run.hessian_seed
    train_parts, held_out_parts = {}, {}
    for algorithm in run.algorithms:
        key = (*seed.spawn_key, ALGORITHMS.index(algorithm))
        rng = np.random.default_rng(np.random.SeedSequence(seed.entropy, spawn_key=key))
        held_out = np.random.default_rng(np.random.SeedSequence(seed.entropy,
                                                                spawn_key=(*key, algo_family.HELD_OUT_KEY)))
        source = _train_batches([algorithm], data, batch_size, [rng])[algorithm]
        train_parts[algorithm] = [source.next() for _ in range(HESSIAN_TRAIN_BATCHES)]
        held_out_parts[algorithm] = algo_data.held_out_batches(algorithm, data, batch_size, HESSIAN_TRAIN_BATCHES,
                                                               held_out)
    train_batches = [{a: to_device(train_parts[a][k], run.device) for a in run.algorithms}
                     for k in range(HESSIAN_TRAIN_BATCHES)]
    test_batches = [{a: to_device(held_out_parts[a][k], run.device) for a in run.algorithms}
                    for k in range(HESSIAN_TRAIN_BATCHES)]
    size = run.batches[run.algorithms[0]].dataset_size
    return HessianInputs(loss_fn=run.net.total_loss, train_batches=train_batches, test_batches=test_batches,
                         initial_state=run.initial_state,
                         num_train_examples=size if size is not None else run.step * train["batch_size"])
