"""The ``road`` family: ML4RoadSafety's training protocol for the road baselines (``gnnbench run road``).

The setting of https://github.com/VirtuosoResearch/ML4RoadSafety (commit d8b3d96a8dc9f1323e9595addd705c3c2c96b42c,
``ml_for_road_safety/train.py``, ``train_multitask.py`` and ``trainers/``): a node encoder (``model.encoder``: mlp,
gcn, sage, gin, gat; 2 layers, hidden 256) over the static and monthly node features, and a link predictor MLP over
``[h_u, h_v, edge features]``. Each epoch visits the training months in order (years for ``traffic_volume``); for
each month the positive segments are shuffled into batches of ``train.batch_size``, each joined by one sampled
crash-free segment per positive (``train.negative_ratio``), one Adam step per batch with the encoder run on the
month's graph (see :mod:`gnnbench.models.road.data`). Losses: binary cross-entropy (occurrence), L1 on the counts
with the negatives' 0 (count), L1 on AADT in thousands (volume). Every ``eval.every`` epochs and after the last,
the model is scored on the validation months; the weights with the best validation ``score`` (strictly better
replaces) are scored on the test months with :class:`gnnbench.road.Evaluator` under both protocols
(``ml4roadsafety.*`` keys: ML4RoadSafety's). ``score`` is ROC-AUC for occurrence (higher is better) and MAE for
the regression tasks (lower is better; ``extra["higher_is_better"]`` says which).

Several states (``data.states = ["MA", "DE"]``, replacing ``data.state``): one shared encoder and one predictor
per state, as ``train_multitask.py``; each epoch trains the states one after the other in a random order. Metrics
are the mean over states (``score`` too) followed by every state's own, prefixed ``<STATE>.``.

Multimodal baselines (``configs/road_multimodal.toml``): ``data.image_features`` (an image model, e.g.
``"clip-vit-b32"``; ``data.image_source`` picks the imagery source when several have embeddings) adds each node's
image embedding and ``image_available`` to the node features (see :class:`gnnbench.datasets.RoadAccidentDataset`).
``model.fusion`` says how the model uses them: ``"early"``, as plain node features of the encoder; ``"concat"``,
``"gated"`` or ``"moe"``, through that fusion head of the multimodal study MMTraCE (arXiv 2512.02920) over the
encoder's output and the raw image features (``model.fusion_layers``, ``model.gate``, ``model.experts``,
``model.moe_gate_relu``; see :mod:`gnnbench.models.road.fusion`); ``"none"`` (graph only) needs ``data.image_features = ""``.

``train.neighbor_sampling = true``: for graphs that do not fit, each batch's encoder runs on the subgraph PyG's
``NeighborLoader`` samples around the batch's endpoints (``train.num_neighbors`` per layer); evaluation encodes
all nodes in batches of ``train.sampling_batch_size`` over their complete neighbourhoods.

Predictions (``SeedOutcome.predictions``): one row per directed edge per test period, equal-length 1-D columns:

* ``state`` (int16): index into ``extra["states"]`` (0 for a single state);
* ``year`` (int16), ``month`` (int8; 0 for ``traffic_volume``, whose periods are years);
* ``edge`` (int32): the edge's column in the state's ``edge_index`` (``RoadAccidentDataset(...).static_graph``);
* ``prediction`` (float32): the probability of a crash, the crash count, or AADT in vehicles per day.

To rescore, take the test period's ``snapshot``: ``y[eval_mask]`` against ``prediction[eval_mask]`` is the
gnnbench protocol; every edge with ``edge_index`` is the ML4RoadSafety protocol (see :mod:`gnnbench.road.evaluation`).

Hyperparameters (``configs/road.toml`` says why each): lr 0.001 and 30 epochs as ML4RoadSafety's ``train.sh``,
batch 32 * 1024, evaluation every 5 epochs, dropout 0, 2-layer predictor, as its ``train.py`` defaults.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..arguments import check_choice, check_float, check_int
from ..io.cache import gnnbench_home
from ..road.states import region_code
from .allocator import retain_freed_memory
from .family import HessianInputs, SeedContext, SeedOutcome, check_sections

logger = logging.getLogger(__name__)

FAMILY = "road"
TASKS = ("accident_occurrence", "accident_count", "traffic_volume")
SOURCES = ("build", "ml4roadsafety")
#: ``model.fusion``: graph only, image features as plain node features, or a fusion head.
FUSION_MODES = ("none", "early", "concat", "gated", "moe")
HESSIAN_BATCHES = 4  # training and test batches handed to the Hessian column (their own generator)


def default_config() -> dict[str, dict[str, Any]]:
    """Every key of the ``data``, ``model``, ``train`` and ``eval`` sections (see ``configs/road.toml``)."""
    return {
        "data": {"root": "", "state": "DEMO", "states": [], "task": "accident_occurrence", "source": "build",
                 "image_features": "", "image_source": ""},
        "model": {"encoder": "sage", "hidden_channels": 256, "num_layers": 2, "predictor_layers": 2,
                  "dropout": 0.0, "fusion": "none", "fusion_layers": 5, "experts": 4, "moe_gate_relu": True,
                  "gate": "node"},
        "train": {"epochs": 30, "lr": 0.001, "weight_decay": 0.0, "batch_size": 32 * 1024, "negative_ratio": 1.0,
                  "checkpoint_every": 1, "neighbor_sampling": False, "num_neighbors": [10, 10],
                  "sampling_batch_size": 8192},
        "eval": {"every": 5, "k": 100, "threshold": 0.5},
    }


def validate_config(config: Mapping[str, Any]) -> None:
    """ValueError naming the key (``train.epochs``, ...) on a missing, unknown or bad value."""
    from ..models.road import ENCODERS

    schema = default_config()
    check_sections(config, schema, "road")
    benchmark = (config.get("run") or {}).get("benchmark", FAMILY)
    if benchmark != FAMILY:
        raise ValueError(f"run.benchmark is {benchmark!r}, but this is the {FAMILY!r} family")
    data, model, train, evaluation = (config[s] for s in ("data", "model", "train", "eval"))
    if not isinstance(data["root"], (str, Path)):
        raise ValueError(f"data.root must be a directory path ('' for $GNNBENCH_HOME/road), got {data['root']!r}")
    home = (_root(data) or gnnbench_home() / "road") / ("ml4roadsafety" if data["source"] == "ml4roadsafety" else "")
    for index, state in enumerate(_states(data)):
        key = "data.state" if not data["states"] else f"data.states[{index}]"
        if not isinstance(state, str) or not state.strip().isalnum():
            raise ValueError(f"{key} must be a state code such as 'MA' (or 'DEMO'), got {state!r}")
        try:
            region_code(state, tables=home / "tables")  # a registry state, DEMO or a region built under data.root
        except ValueError as error:
            raise ValueError(f"{key}: {error}") from None
    states = [state.strip().upper() for state in _states(data)]
    if len(set(states)) != len(states):
        raise ValueError(f"data.states names a state twice: {data['states']}")
    check_choice("data.task", data["task"], TASKS)
    check_choice("data.source", data["source"], SOURCES)
    check_choice("model.encoder", model["encoder"], ENCODERS)
    check_int("model.hidden_channels", model["hidden_channels"], minimum=1)
    layers = check_int("model.num_layers", model["num_layers"], minimum=1)
    check_int("model.predictor_layers", model["predictor_layers"], minimum=1)
    check_float("model.dropout", model["dropout"], minimum=0.0, maximum=1.0, open_max=True)
    _validate_images(data, model)
    check_int("train.epochs", train["epochs"], minimum=1)
    check_float("train.lr", train["lr"], minimum=0.0, open_min=True)
    check_float("train.weight_decay", train["weight_decay"], minimum=0.0)
    check_int("train.batch_size", train["batch_size"], minimum=1)
    check_float("train.negative_ratio", train["negative_ratio"], minimum=0.0)
    check_int("train.checkpoint_every", train["checkpoint_every"], minimum=1)
    if not isinstance(train["neighbor_sampling"], bool):
        raise ValueError(f"train.neighbor_sampling must be true or false, got {train['neighbor_sampling']!r}")
    neighbors = train["num_neighbors"]
    if not isinstance(neighbors, (list, tuple)) or len(neighbors) != layers:
        raise ValueError(f"train.num_neighbors must list one number per encoder layer (model.num_layers = {layers}),"
                         f" got {neighbors!r}")
    for index, value in enumerate(neighbors):
        if check_int(f"train.num_neighbors[{index}]", value, minimum=-1) == 0:
            raise ValueError(f"train.num_neighbors[{index}] must be positive or -1 (every neighbour), got 0")
    check_int("train.sampling_batch_size", train["sampling_batch_size"], minimum=1)
    check_int("eval.every", evaluation["every"], minimum=1)
    check_int("eval.k", evaluation["k"], minimum=1)
    check_float("eval.threshold", evaluation["threshold"])


def _validate_images(data: Mapping[str, Any], model: Mapping[str, Any]) -> None:
    """The image features and the fusion keys agree: a fusion (early or a head) needs image features and the
    graph-only model none."""
    from ..models.road.fusion import FUSIONS
    from ..road.tiles.embed.models import registered_models
    from ..road.tiles.layout import IMAGE_MODELS

    images, fusion = data["image_features"], model["fusion"]
    if images != "":
        check_choice("data.image_features", images, registered_models())
    if not isinstance(data["image_source"], str):
        raise ValueError(f"data.image_source must be an imagery source name ('' for the only one), got "
                         f"{data['image_source']!r}")
    if data["image_source"] and not images:
        raise ValueError("data.image_source is set but data.image_features is not: name an image model "
                         f"({', '.join(IMAGE_MODELS)})")
    check_choice("model.fusion", fusion, FUSION_MODES)
    if fusion == "none" and images:
        raise ValueError(f"data.image_features = {images!r} needs model.fusion: 'early' (image columns as plain node "
                         f"features) or a fusion head ({', '.join(FUSIONS)}); 'none' is the graph-only baseline")
    if fusion != "none" and not images:
        raise ValueError(f"model.fusion = {fusion!r} needs data.image_features (one of {', '.join(IMAGE_MODELS)}), "
                         "made by `gnnbench embed tiles --state STATE --model MODEL`")
    check_int("model.fusion_layers", model["fusion_layers"], minimum=1)
    check_int("model.experts", model["experts"], minimum=1)
    check_choice("model.gate", model["gate"], ("node", "channel"))
    if not isinstance(model["moe_gate_relu"], bool):
        raise ValueError(f"model.moe_gate_relu must be true or false, got {model['moe_gate_relu']!r}")


def _states(data: Mapping[str, Any]) -> list[Any]:
    return list(data["states"]) if data["states"] else [data["state"]]


def _root(data: Mapping[str, Any]) -> Path | None:
    return Path(data["root"]).expanduser() if data["root"] else None


def dataset_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """Per state: the source, the tables' manifest checksums and row counts, graph sizes and split periods."""
    from ..datasets.road_accidents import RoadAccidentDataset
    from ..road.manifest import read_manifest

    data = config["data"]
    states = []
    for state in _states(data):
        dataset = RoadAccidentDataset(_root(data), state, data["task"], source=data["source"], **_image_options(data))
        manifest = read_manifest(dataset.raw_dir)
        static = dataset.static_graph
        splits = dataset.get_split()
        identity = {
            "state": dataset.state, "source": data["source"], "task": data["task"], "kind": manifest.get("kind"),
            "tables": {name: {"sha256": entry.get("sha256"), "rows": entry.get("rows")}
                       for name, entry in sorted(manifest["files"].items())},
            "nodes": int(static.num_nodes), "edges": int(static.edge_index.shape[1]),
            "segments": int(static.eval_mask.sum()),
            "splits": {name: [list(p) if isinstance(p, tuple) else [p] for p in periods]
                       for name, periods in splits.items()}}
        if dataset.image_manifest is not None:  # only then: graph-only runs keep their identity
            images = dataset.image_manifest
            identity["images"] = {
                "model": dataset.image_features, "source": dataset.image_source,
                "features": dataset.num_image_features, "counts": images.get("counts"),
                "files": {name: {"sha256": record.get("sha256"), "rows": record.get("rows")}
                          for name, record in sorted(images["files"].items())}}
        states.append(identity)
    return {"states": states}


def _image_options(data: Mapping[str, Any]) -> dict[str, str | None]:
    """``RoadAccidentDataset``'s image arguments from the ``data`` section ("" is None)."""
    return {"image_features": data["image_features"] or None, "image_source": data["image_source"] or None}


# ---------------------------------------------------------------------------------------------------- training


def _seeds(seed: int, count: int) -> list[int]:
    """Independent 63-bit seeds for the seed's streams (model init, batches, sampling, dropout, Hessian)."""
    return [int(value >> 1) for value in np.random.SeedSequence([seed, 0x70AD]).generate_state(count, np.uint64)]


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}


class RoadTrainer:
    """One seed's training: the regions, the model, and everything a checkpoint holds (``train_epoch`` is
    what ``benchmarks/train_speed.py road`` times)."""

    def __init__(self, context: SeedContext) -> None:
        from ..models.road import RoadModel
        from ..models.road.data import RoadRegion
        from ..models.road.sampling import NeighborSubgraphs
        from ..models.road.scoring import HEADLINE, NodeEncoding

        config = context.config
        validate_config(config)
        self.context, self.config = context, config
        self.data, self.train, self.eval = config["data"], config["train"], config["eval"]
        self.task = self.data["task"]
        self.device = torch.device(context.device)
        threads = torch.get_num_threads()
        model_config = config["model"]
        fuse = model_config["fusion"] not in ("none", "early")  # a fusion head takes the image features apart
        self.regions = [RoadRegion(_root(self.data), state, self.task, source=self.data["source"],
                                   fuse_images=fuse, **_image_options(self.data))
                        for state in _states(self.data)]
        torch.set_num_threads(threads)  # building the demo region starts numba's OpenMP pool, which resets torch's
        widths = {(region.node_channels, region.edge_channels, region.image_channels) for region in self.regions}
        if len(widths) != 1:
            raise ValueError(f"data.states: the states' feature widths differ ({sorted(widths)}); one encoder "
                             "needs the same node, edge and image features everywhere")
        node_channels, edge_channels, image_channels = widths.pop()
        init_seed, batch_seed, sample_seed, dropout_seed, self.hessian_seed = _seeds(context.seed, 5)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.model = RoadModel(model_config["encoder"], node_channels, edge_channels,
                                   hidden_channels=model_config["hidden_channels"],
                                   num_layers=model_config["num_layers"],
                                   predictor_layers=model_config["predictor_layers"], dropout=model_config["dropout"],
                                   heads=len(self.regions), image_channels=image_channels,
                                   fusion=model_config["fusion"] if fuse else "none",
                                   fusion_layers=model_config["fusion_layers"], experts=model_config["experts"],
                                   moe_gate_relu=model_config["moe_gate_relu"], gate=model_config["gate"])
        self.initial_state = _clone_state(self.model)
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.train["lr"],
                                          weight_decay=self.train["weight_decay"])
        self.generator = torch.Generator().manual_seed(batch_seed)
        self.sample_generator = torch.Generator().manual_seed(sample_seed)
        self.dropout_state = torch.Generator().manual_seed(dropout_seed).get_state()
        self.metric, self.higher_is_better = HEADLINE[self.task]
        self.samplers: list[NeighborSubgraphs] | None = None
        self.encodings = [NodeEncoding() for _ in self.regions]
        if self.train["neighbor_sampling"]:
            full = [-1] * model_config["num_layers"]
            self.samplers = [NeighborSubgraphs(r.edge_index, r.num_nodes, r.graph.edge_attr,
                                               self.train["num_neighbors"], self.sample_generator)
                             for r in self.regions]
            self.encodings = [NodeEncoding(NeighborSubgraphs(r.edge_index, r.num_nodes, r.graph.edge_attr, full),
                                           self.train["sampling_batch_size"]) for r in self.regions]
        self.epoch = self.steps = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_score = math.nan
        self.best_epoch = 0
        self.curve: list[dict[str, float]] = []
        self.seconds = 0.0

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"format": 1, "family": FAMILY, "epoch": self.epoch, "steps": self.steps,
                "model": _clone_state(self.model), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "sample_generator": self.sample_generator.get_state(),
                "dropout_state": self.dropout_state, "best_state": self.best_state, "best_score": self.best_score,
                "best_epoch": self.best_epoch, "curve": copy.deepcopy(self.curve), "seconds": self.seconds}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != 1 or state.get("family") != FAMILY:
            raise ValueError(f"{self.context.checkpoint_path}: not a checkpoint of a road run "
                             f"(format {state.get('format')}, family {state.get('family')})")
        self.epoch, self.steps = int(state["epoch"]), int(state["steps"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.sample_generator.set_state(state["sample_generator"])
        self.dropout_state = state["dropout_state"]
        self.best_state = state["best_state"]
        self.best_score, self.best_epoch = float(state["best_score"]), int(state["best_epoch"])
        self.curve, self.seconds = list(state["curve"]), float(state["seconds"])

    # -- batches -------------------------------------------------------------------------------
    def epoch_batches(self, generator: torch.Generator) -> Iterator[Any]:
        """One epoch's batches: the states in a random order (several states), each state's periods in order."""
        order = torch.randperm(len(self.regions), generator=generator).tolist() if len(self.regions) > 1 else [0]
        for head in order:
            region = self.regions[head]
            for period in region.splits["train"]:
                for batch in region.batches(period, self.train["batch_size"], self.train["negative_ratio"],
                                            generator, head):
                    yield self.prepared(batch)

    def prepared(self, batch: Any, generator: torch.Generator | None = None) -> Any:
        """The batch on the device; with neighbour sampling, restricted to the subgraph sampled around it (drawn
        from ``generator``, by default the training's)."""
        if self.samplers is None:
            return batch.to(self.device)
        from ..models.road import EdgeBatch, RoadGraph

        seeds, local = torch.unique(batch.edge_index, return_inverse=True)
        sub = self.samplers[batch.head].subgraph(batch.x, seeds, generator=generator)
        graph = RoadGraph(sub.edge_index, int(sub.num_nodes), sub.edge_attr)
        return EdgeBatch(sub.x, graph, local, batch.edge_attr, batch.target, batch.head).to(self.device)

    # -- the loop ------------------------------------------------------------------------------
    def train_epoch(self) -> float:
        """One epoch over the training periods (one Adam step per batch); returns the mean training loss."""
        from ..models.road import batch_loss

        self.model.train()
        total = torch.zeros((), dtype=torch.float64)
        examples = 0
        for batch in self.epoch_batches(self.generator):
            self.optimizer.zero_grad()
            loss = batch_loss(self.model, self.task, batch)
            loss.backward()
            self.optimizer.step()
            self.steps += 1
            total += loss.detach().cpu().double() * len(batch)
            examples += len(batch)
        self.epoch += 1
        return float(total) / max(examples, 1)

    def run(self) -> None:
        """Train up to ``train.epochs``: validation every ``eval.every`` epochs, checkpoints, a progress bar."""
        from tqdm.auto import tqdm

        epochs = self.train["epochs"]
        states = "+".join(region.state for region in self.regions)
        with torch.random.fork_rng(devices=[]), tqdm(
                total=epochs, initial=self.epoch, disable=not self.context.progress, leave=False,
                desc=f"road {states} {self.config['model']['encoder']} seed {self.context.seed}") as bar:
            torch.set_rng_state(self.dropout_state)
            while self.epoch < epochs:
                start = time.perf_counter()
                loss = self.train_epoch()
                self.seconds += time.perf_counter() - start
                row = {"epoch": self.epoch, "step": self.steps, "loss": loss, "seconds": self.seconds}
                if self.epoch % self.eval["every"] == 0 or self.epoch == epochs:
                    row["valid_score"] = self.validate()
                    bar.set_postfix(loss=f"{row['loss']:.4f}", valid=f"{row['valid_score']:.4f}", refresh=False)
                else:
                    bar.set_postfix(loss=f"{row['loss']:.4f}", refresh=False)
                self.curve.append(row)
                self.dropout_state = torch.get_rng_state()
                if self.epoch % self.train["checkpoint_every"] == 0 or self.epoch == epochs:
                    self.context.save_checkpoint(self.state_dict())
                bar.update(1)

    def validate(self) -> float:
        """Score on the validation periods; keep the weights when the score is strictly better (or the first)."""
        score = self.scores("valid", protocols=("gnnbench",))["score"]
        if self.best_state is None or _better(score, self.best_score, self.higher_is_better):
            self.best_score, self.best_epoch, self.best_state = score, self.epoch, _clone_state(self.model)
        return score

    def scores(self, split: str, *, protocols: Sequence[str] = ("gnnbench", "ml4roadsafety"),
               columns: bool = False) -> tuple[dict[str, float], dict[str, np.ndarray]] | dict[str, float]:
        """Metrics of ``split`` (the mean over states, then each state's prefixed by its code)."""
        from ..models.road.scoring import score_split

        per_state = [score_split(self.model, region, split, head=head, encoding=self.encodings[head],
                                 protocols=protocols, k=self.eval["k"], threshold=self.eval["threshold"],
                                 columns=columns, state_index=head, device=self.device)
                     for head, region in enumerate(self.regions)]
        if len(per_state) == 1:
            metrics = dict(per_state[0].metrics)
        else:
            metrics = {key: float(np.mean([scores.metrics[key] for scores in per_state]))
                       for key in per_state[0].metrics}
            for region, scores in zip(self.regions, per_state):
                metrics.update({f"{region.state}.{key}": value for key, value in scores.metrics.items()})
        if not columns:
            return metrics
        merged = {key: np.concatenate([scores.columns[key] for scores in per_state]) for key in per_state[0].columns}
        return metrics, merged


def _better(score: float, best: float, higher_is_better: bool) -> bool:
    if math.isnan(score):
        return False
    if math.isnan(best):
        return True
    return score > best if higher_is_better else score < best


def train_seed(context: SeedContext) -> SeedOutcome:
    """Train one seed under ML4RoadSafety's protocol, select on valid, score on test (both protocols)."""
    retain_freed_memory()  # the step's [N, 256] tensors reuse freed memory instead of faulting in fresh pages
    run = RoadTrainer(context)
    state = context.load_checkpoint()
    if state is not None:
        run.load_state_dict(state)
        logger.info("road seed %d: resuming after epoch %d", context.seed, run.epoch)
    run.run()
    run.model.load_state_dict(run.best_state)
    valid = run.scores("valid")
    test, columns = run.scores("test", columns=True)
    return SeedOutcome(
        valid=valid, test=test, curve=run.curve, predictions=columns, model=run.model, steps=run.steps,
        hessian=_hessian_inputs(run),
        extra={"metric": run.metric, "higher_is_better": run.higher_is_better, "best_epoch": run.best_epoch,
               "states": [region.state for region in run.regions], "train_seconds": run.seconds,
               "seconds_per_epoch": run.seconds / run.epoch if run.epoch else None,
               "parameters": sum(p.numel() for p in run.model.parameters()),
               "ml4roadsafety_labels": "release" if run.data["source"] == "ml4roadsafety" else "segment"})


class _Batches:
    """A re-iterable, deterministic set of the first ``count`` batches of ``split`` (own generator)."""

    def __init__(self, run: RoadTrainer, split: str, seed: int, count: int) -> None:
        self.run, self.split, self.seed, self.count = run, split, seed, count

    def __iter__(self) -> Iterator[Any]:
        run = self.run
        generator = torch.Generator().manual_seed(self.seed)
        produced = 0
        for head, region in enumerate(run.regions):
            for period in region.splits[self.split]:
                for batch in region.batches(period, run.train["batch_size"], run.train["negative_ratio"],
                                            generator, head):
                    if produced == self.count:
                        return
                    produced += 1
                    yield run.prepared(batch, generator)


def _hessian_inputs(run: RoadTrainer) -> HessianInputs:
    from ..models.road import batch_loss

    examples = sum(region.examples_per_epoch(period, run.train["batch_size"], run.train["negative_ratio"])
                   for region in run.regions for period in region.splits["train"])
    return HessianInputs(loss_fn=lambda batch: batch_loss(run.model, run.task, batch),
                         train_batches=_Batches(run, "train", run.hessian_seed, HESSIAN_BATCHES),
                         test_batches=_Batches(run, "test", run.hessian_seed + 1, HESSIAN_BATCHES),
                         initial_state=run.initial_state, num_train_examples=examples)
