"""The ``algo`` family: CLRS-30's training protocol for the encode-process-decode baselines.

The protocol is CLRS-30's current ``run.py`` (https://github.com/google-deepmind/clrs/blob/master/clrs/examples/run.py,
commit bfd042f): hidden 128, Adam (learning rate 1e-3) after gradient clipping to global norm 1.0 (as
``optax.clip_by_global_norm``), batches of 32, 10,000 steps, hints encoded and decoded with soft re-prediction and
no teacher forcing, layer norm, Xavier initialisation on scalar encoders, randomised ``pos``. After the first step
and every ``eval_every`` steps after it (steps 1, 51, 101, ... as ``run.py`` evaluates) the model is scored on the
validation split (CLRS-30's: 32 graphs, n = 16); the weights with the best validation score so far are kept (a
later evaluation replaces them only with a strictly higher score), and those are tested on the test split
(CLRS-30's: 32 graphs, n = 64; ``score`` is the headline) and the length suite (``score_n16`` .. ``score_n128``),
scored by :class:`gnnbench.algo.Evaluator`. Training data (``data.train``: CLRS-30's train split, drawn with
replacement or in order, or fresh graphs every step): see :mod:`gnnbench.harness.algo_data`.

Deliberate differences from ``run.py``: validation uses the fixed CLRS-30 validation split with its own ``pos``
(``run.py`` re-draws 32 of 64 graphs of its own with random ``pos`` at each evaluation), so every evaluation scores
the same graphs; training batches are padded to their own longest trace (``train.bucket``), which changes no result.

Predictions (``SeedOutcome.predictions``): the test split's hard output predictions as the flat columns of
:mod:`gnnbench.harness.algo_eval` (``graph``, ``field``, ``position``, ``value``), which
:func:`~gnnbench.harness.algo_eval.predictions_from_columns` turns back into :class:`~gnnbench.algo.Evaluator` input.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..algo.specs import ALGORITHMS
from ..algo.splits import CLRS30_SPLITS, resolve_split
from ..arguments import check_choice, check_float, check_int
from ..models.algo.encoders import ENCODER_INITS
from ..models.algo.net import HINT_MODES as _NET_HINT_MODES
from ..models.algo.net import HINT_REPRED_MODES
from ..models.algo.processors import PROCESSORS
from . import algo_data
from .allocator import retain_freed_memory
from .algo_data import TRAIN_ORDERS, TRAIN_SOURCES, TrainBatches, split_traces, to_device
from .algo_eval import Evaluation, evaluate, prediction_columns, predictions_from_columns
from .family import HessianInputs, SeedContext, SeedOutcome, check_sections

__all__ = ["FAMILY", "Evaluation", "TrainStep", "build_model", "clip_by_global_norm_", "dataset_identity",
           "default_config", "evaluate", "prediction_columns", "predictions_from_columns", "to_device",
           "train_seed", "validate_config"]

logger = logging.getLogger(__name__)

FAMILY = "algo"
HINT_MODES = tuple(_NET_HINT_MODES)  # the network's options, named in one place (models.algo)
HESSIAN_TRAIN_BATCHES = 4  # training (and as many held-out) batches handed to the Hessian column (own generators)
#: Graphs per Hessian batch (at most the training batch size): a Hessian-vector product back-propagates twice
#: through every hint step, and at batch 32 Floyd-Warshall's MPNN (16 steps over 16 x 16 edges) held 16 GB of
#: the CPU's memory; the column's trace and gap are means over graphs, which smaller batches estimate the same.
HESSIAN_BATCH_SIZE = 8
HELD_OUT_KEY = 1  # spawn-key suffix of the held-out batches' generator (beside the training batches' own)


def default_config() -> dict[str, dict[str, Any]]:
    """Every key of the ``data``, ``model``, ``train`` and ``eval`` sections with CLRS-30's defaults."""
    return {
        "data": {
            "algorithm": "bfs",
            "train": "clrs30",  # "clrs30": the 1000-graph train split (n = 16); "online": fresh graphs every step
            "train_order": "random",  # clrs30: "random" (with replacement, as Sampler.next) or "sequential"
            "train_sizes": list(algo_data.ONLINE_SIZES),  # online: graph size of step i is train_sizes[i % len]
            "online_p": [],  # online edge probabilities; [] = run.py's (0.1 .. 0.9, halved for sparse algorithms)
            "random_pos": True,
            "valid": "valid",
            "test": "test",
            "length_splits": [f"test_{n}" for n in (16, 32, 64, 128)],
        },
        "model": {
            "processor": "triplet_gmpnn",
            "hidden": 128,
            "num_layers": 1,  # processor layers per hint step (CLRS-30: 1; the branching study's Edge Transformer: 5)
            "nb_triplet_fts": 8,
            "nb_heads": 1,
            "use_ln": True,
            "hint_mode": "encoded_decoded",
            "hint_repred": "soft",
            "encoder_init": "xavier_on_scalars",
        },
        "train": {
            "steps": 10000,
            "batch_size": 32,
            "learning_rate": 0.001,
            "grad_clip": 1.0,  # global-norm clipping; 0 turns it off
            "eval_every": 50,
            "checkpoint_every": 500,
            "bucket": True,  # pad each batch to its own longest trace (not the dataset's)
        },
        "eval": {
            "batch_size": 32,  # graphs per evaluation batch at n <= 64 (scaled by (64 / n)^2 above)
        },
    }


# ---------------------------------------------------------------------------------------------------- config


def validate_config(config: Mapping[str, Any]) -> None:
    """ValueError naming the key (``train.steps``, ...) on a missing, unknown or bad value."""
    schema = default_config()
    check_sections(config, schema, "algo")
    data = config["data"]
    check_choice("data.algorithm", data["algorithm"], ALGORITHMS)
    validate_protocol(config)
    for i, split in enumerate(_sequence("data.length_splits", data["length_splits"], allow_empty=True)):
        _split_name(f"data.length_splits[{i}]", split)


def validate_protocol(config: Mapping[str, Any]) -> None:
    """The keys the CLRS-30 protocol's families share (training data, the network's options, ``[train]``,
    ``[eval]``); ValueError naming the key. The ``algo`` and ``multitask`` families check their own keys besides."""
    data, model, train, evaluation = (config[s] for s in ("data", "model", "train", "eval"))
    check_choice("data.train", data["train"], TRAIN_SOURCES)
    check_choice("data.train_order", data["train_order"], TRAIN_ORDERS)
    sizes = _sequence("data.train_sizes", data["train_sizes"], allow_empty=False)
    for i, size in enumerate(sizes):
        check_int(f"data.train_sizes[{i}]", size, minimum=1)
    for i, p in enumerate(_sequence("data.online_p", data["online_p"], allow_empty=True)):
        check_float(f"data.online_p[{i}]", p, minimum=0.0, maximum=1.0)
    _boolean("data.random_pos", data["random_pos"])
    for key in ("valid", "test"):
        _split_name(f"data.{key}", data[key])
    check_choice("model.processor", model["processor"], PROCESSORS)
    check_int("model.hidden", model["hidden"], minimum=1)
    check_int("model.num_layers", model["num_layers"], minimum=1)
    check_int("model.nb_triplet_fts", model["nb_triplet_fts"], minimum=1)
    check_int("model.nb_heads", model["nb_heads"], minimum=1)
    if model["processor"] in ("gatv2", "edge_transformer") and model["hidden"] % model["nb_heads"]:
        raise ValueError(f"model.nb_heads ({model['nb_heads']}) must divide model.hidden ({model['hidden']})")
    _boolean("model.use_ln", model["use_ln"])
    if model["processor"] == "edge_transformer" and not model["use_ln"]:
        raise ValueError("model.use_ln must be true for edge_transformer (its LayerNorms are part of the layer)")
    check_choice("model.hint_mode", model["hint_mode"], HINT_MODES)
    check_choice("model.hint_repred", model["hint_repred"], HINT_REPRED_MODES)
    check_choice("model.encoder_init", model["encoder_init"], ENCODER_INITS)
    check_int("train.steps", train["steps"], minimum=1)
    check_int("train.batch_size", train["batch_size"], minimum=1)
    check_float("train.learning_rate", train["learning_rate"], minimum=0.0, open_min=True)
    check_float("train.grad_clip", train["grad_clip"], minimum=0.0)
    check_int("train.eval_every", train["eval_every"], minimum=1)
    check_int("train.checkpoint_every", train["checkpoint_every"], minimum=1)
    _boolean("train.bucket", train["bucket"])
    check_int("eval.batch_size", evaluation["batch_size"], minimum=1)
    if data["train"] == "clrs30" and train["batch_size"] > CLRS30_SPLITS["train"].num_samples:
        raise ValueError(f"train.batch_size ({train['batch_size']}) exceeds the CLRS-30 train split "
                         f"({CLRS30_SPLITS['train'].num_samples} graphs)")


def _sequence(name: str, value: Any, allow_empty: bool) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list, got {value!r}")
    if not allow_empty and not value:
        raise ValueError(f"{name} must not be empty")
    return value


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")


def _split_name(name: str, value: Any) -> None:
    try:
        resolve_split(value)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None


def dataset_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The generated splits the run uses: their recipe (size, n, seed) and a SHA-256 of their inputs, outputs and
    trace lengths; online training data is described by its recipe (its graphs are drawn per seed)."""
    data = config["data"]
    algorithm = data["algorithm"]
    names = [data["valid"], data["test"], *data["length_splits"]]
    if data["train"] == "clrs30":
        names.insert(0, "train")
    splits = {}
    for split in names:
        name, recipe = resolve_split(split)
        splits[name] = {"num_samples": recipe.num_samples, "n": recipe.n, "seed": recipe.seed,
                        "sha256": algo_data.traces_checksum(split_traces(algorithm, name))}
    identity: dict[str, Any] = {"algorithm": algorithm, "generator": "gnnbench.algo.sample", "splits": splits}
    if data["train"] == "online":
        identity["online"] = {"sizes": list(data["train_sizes"]),
                              "p": list(algo_data.online_p(algorithm, data["online_p"])),
                              "seeds": "drawn per step from the seed's generator"}
    return identity


# ------------------------------------------------------------------------------------------------------- model


def build_model(algorithm: str, model_config: Mapping[str, Any], generator: torch.Generator) -> torch.nn.Module:
    """The encode-process-decode network of ``model_config`` for ``algorithm``, initialised from ``generator``."""
    from ..models.algo.net import EncodeProcessDecode

    return EncodeProcessDecode(algorithm, **_net_arguments(model_config), generator=generator)


def _net_arguments(model_config: Mapping[str, Any]) -> dict[str, Any]:
    # num_layers: 1 in a config resolved before the key existed (a run started then, resumed or still training)
    return {"processor": model_config["processor"], "hidden": model_config["hidden"],
            "num_layers": model_config.get("num_layers", 1),
            "hint_mode": model_config["hint_mode"], "hint_repred_mode": model_config["hint_repred"],
            "use_ln": model_config["use_ln"], "nb_triplet_fts": model_config["nb_triplet_fts"],
            "nb_heads": model_config["nb_heads"], "encoder_init": model_config["encoder_init"]}


def clip_by_global_norm_(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale ``grads`` in place to global norm at most ``max_norm``, as ``optax.clip_by_global_norm`` (no
    epsilon, no host synchronisation); returns the norm before clipping."""
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    scale = torch.where(norm < max_norm, torch.ones_like(norm), max_norm / norm)
    torch._foreach_mul_(grads, scale)
    return norm


class TrainStep:
    """One optimizer step of the protocol: loss, gradients, global-norm clipping, Adam (optax's arithmetic)."""

    def __init__(self, model: torch.nn.Module, learning_rate: float, grad_clip: float) -> None:
        self.model, self.grad_clip = model, grad_clip
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        try:  # one fused kernel per step (CPU and CUDA, torch >= 2.4): a third of the multi-tensor loop's time
            self.optimizer = torch.optim.Adam(self.parameters, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8,
                                              fused=True)
        except (RuntimeError, TypeError):
            self.optimizer = torch.optim.Adam(self.parameters, lr=learning_rate, betas=(0.9, 0.999), eps=1e-8,
                                              foreach=True)

    def __call__(self, batch: Any) -> torch.Tensor:
        """Train on one batch (the net's tensors); returns the batch's loss (a detached tensor: no sync)."""
        self.model.train()
        for p in self.parameters:
            p.grad = None
        loss = self.model.loss(batch)
        loss.backward()
        grads = [p.grad for p in self.parameters if p.grad is not None]
        if self.grad_clip > 0 and grads:
            clip_by_global_norm_(grads, self.grad_clip)
        self.optimizer.step()
        return loss.detach()


# ---------------------------------------------------------------------------------------------------- training


def _seed_sequence(config: Mapping[str, Any], seed: int) -> np.random.SeedSequence:
    """The seed's root of randomness: the seed and the algorithm (so algorithms draw different batches)."""
    return np.random.SeedSequence([seed, ALGORITHMS.index(config["data"]["algorithm"])])


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class _Run:
    """One seed's training state: everything a checkpoint holds."""

    def __init__(self, context: SeedContext) -> None:
        config = context.config
        self.context, self.config = context, config
        self.data, self.train = config["data"], config["train"]
        self.algorithm = self.data["algorithm"]
        self.device = torch.device(context.device)
        root = _seed_sequence(config, context.seed)
        init_seed, data_seed, hessian_seed = root.spawn(3)
        generator = torch.Generator().manual_seed(int(init_seed.generate_state(1, np.uint64)[0] >> 1))
        self.model = build_model(self.algorithm, config["model"], generator)
        self.initial_state = _clone_state(self.model)
        self.model.to(self.device)
        self.step_fn = TrainStep(self.model, self.train["learning_rate"], self.train["grad_clip"])
        self.batches = TrainBatches(self.algorithm, source=self.data["train"], batch_size=self.train["batch_size"],
                                    rng=np.random.default_rng(data_seed), bucket=self.train["bucket"],
                                    random_pos=self.data["random_pos"], sizes=self.data["train_sizes"],
                                    p=self.data["online_p"], order=self.data["train_order"])
        self.hessian_seed = hessian_seed
        self.step = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_score = -math.inf
        self.best_step = 0
        self.curve: list[dict[str, float]] = []
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.loss_count = 0
        self.seconds = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"format": 1, "algorithm": self.algorithm, "step": self.step,
                "model": _clone_state(self.model), "optimizer": self.step_fn.optimizer.state_dict(),
                "best_state": self.best_state, "best_score": self.best_score, "best_step": self.best_step,
                "curve": copy.deepcopy(self.curve), "batches": self.batches.state_dict(),
                "loss_sum": self.loss_sum.detach().cpu(), "loss_count": self.loss_count, "seconds": self.seconds}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != 1 or state.get("algorithm") != self.algorithm:
            raise ValueError(f"{self.context.checkpoint_path}: not a checkpoint of this algo run "
                             f"(format {state.get('format')}, algorithm {state.get('algorithm')})")
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.step_fn.optimizer.load_state_dict(state["optimizer"])
        self.best_state = state["best_state"]
        self.best_score, self.best_step = float(state["best_score"]), int(state["best_step"])
        self.curve = list(state["curve"])
        self.batches.load_state_dict(state["batches"])
        self.loss_sum = state["loss_sum"].to(self.device)
        self.loss_count, self.seconds = int(state["loss_count"]), float(state["seconds"])

    def evaluate(self, split: str) -> Evaluation:
        return evaluate(self.model, self.algorithm, split, batch_size=self.config["eval"]["batch_size"],
                        device=self.device)

    def validate(self, bar: Any) -> None:
        """``run.py``'s periodic evaluation: score on valid, keep the weights on a strictly better score."""
        score = self.evaluate(self.data["valid"]).metrics["score"]
        loss = float(self.loss_sum) / max(self.loss_count, 1)
        self.loss_sum.zero_()
        self.loss_count = 0
        self.curve.append({"step": self.step, "loss": loss, "valid_score": score, "seconds": self.seconds})
        if score > self.best_score or self.best_state is None:
            self.best_score, self.best_step, self.best_state = score, self.step, _clone_state(self.model)
        bar.set_postfix(loss=f"{loss:.4f}", valid=f"{score:.3f}", best=f"{self.best_score:.3f}", refresh=False)

    def run(self) -> None:
        from tqdm.auto import tqdm

        steps, eval_every = self.train["steps"], self.train["eval_every"]
        checkpoint_every = self.train["checkpoint_every"]
        with tqdm(total=steps, initial=self.step, disable=not self.context.progress, leave=False,
                  desc=f"{self.algorithm} seed {self.context.seed}") as bar:
            while self.step < steps:
                start = time.perf_counter()
                loss = self.step_fn(to_device(self.batches.next(), self.device))
                self.loss_sum += loss
                self.loss_count += 1
                self.step += 1
                self.seconds += time.perf_counter() - start
                if (self.step - 1) % eval_every == 0:  # run.py: after steps 1, 1 + eval_every, ...
                    self.validate(bar)
                if self.step % checkpoint_every == 0 or self.step == steps:
                    self.context.save_checkpoint(self.state_dict())
                bar.update(1)


def train_seed(context: SeedContext) -> SeedOutcome:
    """Train one seed under the CLRS-30 protocol, select on valid, score on test and the length suite."""
    retain_freed_memory()  # large tensors reuse freed memory instead of faulting in fresh pages
    run = _Run(context)
    state = context.load_checkpoint()
    if state is not None:
        run.load_state_dict(state)
        logger.info("%s seed %d: resuming at step %d", run.algorithm, context.seed, run.step)
    run.run()
    model = run.model
    model.load_state_dict(run.best_state)
    data = run.data
    valid = run.evaluate(data["valid"])
    test = run.evaluate(data["test"])
    test_metrics = dict(test.metrics)
    _, test_recipe = resolve_split(data["test"])
    for split in data["length_splits"]:
        _, recipe = resolve_split(split)
        result = test if recipe == test_recipe else run.evaluate(split)
        test_metrics[f"score_n{recipe.n}"] = result.metrics["score"]
    return SeedOutcome(
        valid=valid.metrics, test=test_metrics, curve=run.curve, predictions=prediction_columns(test.predictions),
        model=model, steps=run.step, hessian=_hessian_inputs(run),
        extra={"best_step": run.best_step, "train_seconds": run.seconds,
               "steps_per_second": run.step / run.seconds if run.seconds > 0 else None,
               "parameters": sum(p.numel() for p in model.parameters()), "train_source": data["train"]})


def _hessian_inputs(run: _Run) -> HessianInputs:
    """A few training batches and as many held-out batches from the training distribution (each from its own
    generator: training is not disturbed), and the initial weights.

    The measured gap is in-distribution, as the bounds are: the held-out graphs are fresh draws of the training
    distribution (CLRS-30's train-split generator at n = 16 under ``data.train = "clrs30"``, the online sizes
    otherwise), never the n = 64 test split, whose loss adds the size shift the bounds do not cover.
    """
    data, train = run.data, run.train
    batch_size = min(train["batch_size"], HESSIAN_BATCH_SIZE)
    batches = TrainBatches(run.algorithm, source=data["train"], batch_size=batch_size,
                           rng=np.random.default_rng(run.hessian_seed), bucket=True, random_pos=data["random_pos"],
                           sizes=data["train_sizes"], p=data["online_p"], order=data["train_order"])
    train_batches = [to_device(batches.next(), run.device) for _ in range(HESSIAN_TRAIN_BATCHES)]
    held_out = np.random.default_rng(np.random.SeedSequence(run.hessian_seed.entropy,
                                                            spawn_key=(*run.hessian_seed.spawn_key, HELD_OUT_KEY)))
    test_batches = [to_device(batch, run.device) for batch in
                    algo_data.held_out_batches(run.algorithm, data, batch_size, HESSIAN_TRAIN_BATCHES,
                                               held_out)]
    size = batches.dataset_size
    return HessianInputs(loss_fn=run.model.loss, train_batches=train_batches, test_batches=test_batches,
                         initial_state=run.initial_state,
                         num_train_examples=size if size is not None else run.step * train["batch_size"])
