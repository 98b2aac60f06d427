"""Scoring a road model on a split: predictions for every directed edge of every period, metrics under both of
:class:`gnnbench.road.Evaluator`'s protocols, and the prediction columns the run record keeps.

Predictions are probabilities (``accident_occurrence``), crash counts (``accident_count``) or AADT in vehicles per
day (``traffic_volume``; the model learns thousands). ``protocol="gnnbench"`` scores each road segment once
(``eval_mask``); ``protocol="ml4roadsafety"`` scores directed edges as ML4RoadSafety does, with an imported
release's own per-direction labels, or, for a built region, each direction carrying its segment's label. Its keys
are prefixed ``ml4roadsafety.``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ...road.evaluation import Evaluator
from .data import VOLUME_UNIT, RoadRegion
from .graph import RoadGraph
from .model import RoadModel
from .sampling import NeighborSubgraphs

#: The headline metric per task (``score``) and whether higher is better.
HEADLINE = {"accident_occurrence": ("roc_auc", True), "accident_count": ("mae", False),
            "traffic_volume": ("mae", False)}
UPSTREAM_PREFIX = "ml4roadsafety."

logger = logging.getLogger(__name__)


@dataclass
class NodeEncoding:
    """How node representations of a whole graph are computed: the full graph at once, or (for graphs that do
    not fit) node batches of ``batch_size`` over their complete ``num_layers``-hop neighbourhoods."""

    subgraphs: NeighborSubgraphs | None = None
    batch_size: int = 8192

    def encode(self, model: RoadModel, x: Tensor, graph: RoadGraph) -> Tensor:
        if self.subgraphs is None:
            return model.encode(x, graph)
        parts = []
        device = x.device
        for start in range(0, graph.num_nodes, self.batch_size):
            seeds = torch.arange(start, min(start + self.batch_size, graph.num_nodes))
            sub = self.subgraphs.subgraph(x.cpu(), seeds)
            local = RoadGraph(sub.edge_index, int(sub.num_nodes), sub.edge_attr).to(device)
            parts.append(model.encode(sub.x.to(device), local)[:seeds.numel()])
        return torch.cat(parts)


@dataclass
class SplitScores:
    """Metrics of one region on one split, and (when asked for) its prediction columns."""

    metrics: dict[str, float]
    columns: dict[str, np.ndarray] = field(default_factory=dict)


def output_to_prediction(task: str, output: Tensor) -> Tensor:
    """Raw model outputs -> what the evaluator scores (probabilities, counts, vehicles per day)."""
    if task == "accident_occurrence":
        return torch.sigmoid(output)
    if task == "traffic_volume":
        return output * VOLUME_UNIT
    return output


@torch.no_grad()
def score_split(model: RoadModel, region: RoadRegion, split: str, *, head: int = 0,
                encoding: NodeEncoding | None = None, protocols: Sequence[str] = ("gnnbench", "ml4roadsafety"),
                k: int = 100, threshold: float = 0.5, columns: bool = False, state_index: int = 0,
                device: torch.device | str = "cpu") -> SplitScores:
    """Score ``model`` (predictor ``head``) on every period of ``region``'s ``split``."""
    periods = region.splits[split]
    if not periods:
        raise ValueError(f"{region.state}: the {split} split is empty; the road protocol selects on valid and "
                         f"scores on test (splits: { {name: len(p) for name, p in region.splits.items()} })")
    device = torch.device(device)
    encoding = encoding or NodeEncoding()
    was_training = model.training
    model.eval()
    graph = region.graph.to(device)
    edge_index = region.edge_index.to(device)
    segment_true, segment_pred, upstream_true, upstream_pred = [], [], [], []
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("state", "year", "month", "edge", "prediction")}
    try:
        for period in periods:
            snapshot = region.snapshot(period)
            x = region.features(snapshot).to(device)
            h = encoding.encode(model, x, graph)
            output = model.predictors[head].score_edges(h, edge_index, graph.edge_attr)
            prediction = output_to_prediction(region.task, output).cpu()
            mask = snapshot.eval_mask
            segment_true.append(snapshot.y[mask])
            segment_pred.append(prediction[mask])
            if "ml4roadsafety" in protocols:
                upstream_true.append(region.ml4roadsafety_labels(period, snapshot))
                upstream_pred.append(prediction)
            if columns:
                count = prediction.numel()
                parts["state"].append(np.full(count, state_index, dtype=np.int16))
                parts["year"].append(np.full(count, period[0], dtype=np.int16))
                parts["month"].append(np.full(count, period[1] if len(period) > 1 else 0, dtype=np.int8))
                parts["edge"].append(np.arange(count, dtype=np.int32))
                parts["prediction"].append(prediction.numpy().astype(np.float32))
    finally:
        model.train(was_training)
    upstream = "ml4roadsafety" in protocols
    metrics = protocol_metrics(region.task, segment_true, segment_pred,
                               upstream_true=upstream_true if upstream else None,
                               upstream_pred=upstream_pred if upstream else None,
                               edge_index=region.edge_index, k=k, threshold=threshold)
    return SplitScores(metrics, {key: np.concatenate(value) for key, value in parts.items()} if columns else {})


def protocol_metrics(task: str, segment_true: Sequence[Tensor | np.ndarray],
                     segment_pred: Sequence[Tensor | np.ndarray], *,
                     upstream_true: Sequence[Tensor | np.ndarray] | None = None,
                     upstream_pred: Sequence[Tensor | np.ndarray] | None = None,
                     edge_index: Tensor | np.ndarray | None = None, k: int = 100,
                     threshold: float = 0.5) -> dict[str, float]:
    """A split's metrics from per-period labels and predictions, keyed as the run record keys them.

    ``segment_true``/``segment_pred``: each period's ``y[eval_mask]`` and predictions of those segments (the gnnbench
    protocol, with ``k`` and ``threshold``); ``upstream_true``/``upstream_pred``: each period's per-directed-edge
    labels and predictions with the state's ``edge_index`` (the ML4RoadSafety protocol, keys prefixed
    ``ml4roadsafety.``; left out when not given). ``score`` is the task's headline metric. Training
    (:func:`score_split`) and the leaderboard's rescoring share this one implementation."""
    metrics = _metrics(task, "gnnbench", segment_true, segment_pred, None, k=k, threshold=threshold)
    name, _ = HEADLINE[task]
    metrics = {"score": metrics[name], **metrics}
    if upstream_true is not None and upstream_pred is not None:
        upstream = _metrics(task, "ml4roadsafety", upstream_true, upstream_pred, edge_index)
        metrics.update({UPSTREAM_PREFIX + key: value for key, value in upstream.items()})
    return metrics


def _metrics(task: str, protocol: str, y_true: Sequence[Tensor | np.ndarray], y_pred: Sequence[Tensor | np.ndarray],
             edge_index: Tensor | np.ndarray | None, *, k: int = 100, threshold: float = 0.5) -> dict[str, float]:
    evaluator = Evaluator(task, protocol=protocol)
    inputs: dict = {"y_true": [np.asarray(t) for t in y_true], "y_pred": [np.asarray(p) for p in y_pred]}
    if protocol == "gnnbench" and task == "accident_occurrence":
        inputs.update(k=k, threshold=threshold)
    if protocol == "ml4roadsafety" and task != "traffic_volume":
        if edge_index is None:
            raise ValueError(f"the ML4RoadSafety protocol scores {task} on directed edges: pass edge_index")
        inputs["edge_index"] = np.asarray(edge_index)
    if task != "accident_occurrence" and protocol == "gnnbench":  # pooled regression: one array of all periods
        inputs = {"y_true": np.concatenate(inputs["y_true"]), "y_pred": np.concatenate(inputs["y_pred"])}
    try:
        result = evaluator.eval(inputs)
    except ValueError as error:
        if protocol != "ml4roadsafety":
            raise
        # ML4RoadSafety's own code fails there too (a month whose every crash-free edge has both endpoints on
        # crash edges leaves no negative to score): its metrics are NaN, and the reason is logged
        logger.warning("ML4RoadSafety protocol: no %s metrics (%s)", task, error)
        return {name: math.nan for name in evaluator.metrics}
    return {key: float(value) for key, value in result.items()}
