"""One state's road graph prepared for the baselines: normalised features, splits, training batches, labels.

* Node features (degree, betweenness, lon, lat and the month's weather) are standardised with the mean and
  standard deviation of the training periods (ML4RoadSafety standardises its monthly weather the same way); edge
  features column by column over the edges. A constant column is only centred.
* Image features (``image_features``, see :class:`~gnnbench.datasets.RoadAccidentDataset`): by default plain node
  features, standardised with the others (``model.fusion = "early"``). With ``fuse_images`` (the fusion heads)
  they move to the last columns of the features and stay as the embedding model made them (not standardised, as
  the multimodal study feeds them); :attr:`RoadRegion.image_channels` says how many there are.
* Training examples (ML4RoadSafety's trainers, https://github.com/VirtuosoResearch/ML4RoadSafety at commit
  d8b3d96a8dc9f1323e9595addd705c3c2c96b42c): for the accident tasks the month's road segments with a crash, shuffled
  into batches of ``batch_size``, each with ``negative_ratio`` times as many crash-free segments drawn without
  replacement (target 0); for ``traffic_volume`` the year's segments with an AADT (target in thousands of vehicles
  per day, as upstream divides by 1000), no negatives. Segments are gnnbench's (``eval_mask``: one edge per road),
  each scored with its own edge features (upstream's trainers index ``edge_attr`` by the position in the batch,
  not by the edge; that is not reproduced).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data

from .graph import RoadGraph
from .model import EdgeBatch

VOLUME_UNIT = 1000.0  # AADT is learned in thousands of vehicles per day (ML4RoadSafety's unit)


class RoadRegion:
    """A state's (or region's) dataset for one task, ready for training: see the module docstring."""

    def __init__(self, root: str | Path | None, state: str, task: str, *, source: str = "build",
                 image_features: str | None = None, image_source: str | None = None,
                 fuse_images: bool = False) -> None:
        from ...datasets.road_accidents import RoadAccidentDataset

        self.dataset = RoadAccidentDataset(root, state, task, source=source, image_features=image_features,
                                           image_source=image_source)
        self.state, self.task, self.source = self.dataset.state, task, source
        self._order, self.image_channels = _image_last(self.dataset, fuse_images)
        static = self.dataset.static_graph
        self.num_nodes = int(static.num_nodes)
        self.edge_index = static.edge_index.clone()
        self.eval_mask = static.eval_mask.clone()
        edge_attr = static.edge_attr.to(torch.float32)
        self.edge_mean, self.edge_std = _moments([edge_attr])
        self.graph = RoadGraph(self.edge_index, self.num_nodes, (edge_attr - self.edge_mean) / self.edge_std)
        self.splits: dict[str, list[tuple[int, ...]]] = {
            name: [_period(period) for period in periods] for name, periods in self.dataset.get_split().items()}
        for name in ("train", "valid", "test"):
            self.splits.setdefault(name, [])
        if not self.splits["train"]:
            raise ValueError(f"{self.state}: the train split has no {self._unit}s")
        self.node_mean, self.node_std = _moments(self._columns(self.snapshot(period).x)
                                                 for period in self.splits["train"])
        if self.image_channels:  # the fusion heads take the image features as they are
            self.node_mean[-self.image_channels:] = 0.0
            self.node_std[-self.image_channels:] = 1.0

    @property
    def _unit(self) -> str:
        return "year" if self.task == "traffic_volume" else "month"

    @property
    def node_channels(self) -> int:
        """Columns of :meth:`features`, the image features included."""
        return int(self.node_mean.shape[0])

    @property
    def edge_channels(self) -> int:
        return int(self.edge_mean.shape[0])

    def snapshot(self, period: tuple[int, ...], labels: str = "segment") -> Data:
        return self.dataset.snapshot(*period, labels=labels)

    def features(self, snapshot: Data) -> Tensor:
        """The snapshot's node features, standardised with the training periods' statistics (with
        ``fuse_images``: the image features last, as they are)."""
        if not bool(torch.isfinite(snapshot.x).all()):
            raise ValueError(f"{self.state} {'-'.join(map(str, (snapshot.year, snapshot.month)))}: the node "
                             "features hold NaN or infinite values")
        return (self._columns(snapshot.x).to(torch.float32) - self.node_mean) / self.node_std

    def _columns(self, x: Tensor) -> Tensor:
        return x if self._order is None else x[:, self._order]

    def labelled(self, snapshot: Data) -> tuple[Tensor, Tensor]:
        """``(edge ids, targets)`` of the segments a period labels for training (positives only for accidents)."""
        y, mask = snapshot.y, snapshot.eval_mask
        if self.task == "traffic_volume":
            ids = torch.nonzero(mask & torch.isfinite(y)).flatten()
            return ids, y[ids].to(torch.float32) / VOLUME_UNIT
        ids = torch.nonzero(mask & (y > 0)).flatten()
        target = torch.ones(ids.numel()) if self.task == "accident_occurrence" else y[ids].to(torch.float32)
        return ids, target

    def negatives(self, snapshot: Data) -> Tensor:
        """Edge ids of the period's crash-free segments (the pool negatives are drawn from)."""
        return torch.nonzero(snapshot.eval_mask & (snapshot.y == 0)).flatten()

    def examples_per_epoch(self, period: tuple[int, ...], batch_size: int, negative_ratio: float) -> int:
        """Training examples (positives and negatives) one epoch draws from ``period``."""
        snapshot = self.snapshot(period)
        positives = self.labelled(snapshot)[0].numel()
        if self.task == "traffic_volume":
            return positives
        pool = self.negatives(snapshot).numel()
        sizes = [min(batch_size, positives - start) for start in range(0, positives, batch_size)]
        return positives + sum(_negatives_for(size, negative_ratio, pool) for size in sizes)

    def batches(self, period: tuple[int, ...], batch_size: int, negative_ratio: float,
                generator: torch.Generator, head: int = 0) -> Iterator[EdgeBatch]:
        """The period's training batches in a random order drawn from ``generator`` (see the module docstring).

        Drawn lazily: each batch's negatives are drawn when the batch is reached.
        """
        snapshot = self.snapshot(period)
        x = self.features(snapshot)
        ids, target = self.labelled(snapshot)
        pool = self.negatives(snapshot) if self.task != "traffic_volume" else None
        order = torch.randperm(ids.numel(), generator=generator)
        for start in range(0, ids.numel(), batch_size):
            chosen = order[start:start + batch_size]
            edges, values = ids[chosen], target[chosen]
            if pool is not None:
                wanted = _negatives_for(chosen.numel(), negative_ratio, pool.numel())
                negative = pool[torch.randperm(pool.numel(), generator=generator)[:wanted]]
                edges = torch.cat([edges, negative])
                values = torch.cat([values, torch.zeros(negative.numel())])
            yield EdgeBatch(x, self.graph, self.edge_index[:, edges], self.graph.edge_attr[edges], values, head)

    def ml4roadsafety_labels(self, period: tuple[int, ...], snapshot: Data) -> Tensor:
        """Per-directed-edge labels for ``Evaluator(task, protocol="ml4roadsafety")``: an imported release's own
        (``labels="ml4roadsafety"``); for a built region every directed edge carries its road segment's label."""
        if self.source == "ml4roadsafety":
            return self.snapshot(period, labels="ml4roadsafety").y
        return snapshot.y


def _image_last(dataset: Any, fuse_images: bool) -> tuple[Tensor | None, int]:
    """(the column order putting the image features last, their number), or (None, 0) without fusion."""
    if not fuse_images:
        return None, 0
    columns = dataset.image_feature_slice
    if columns is None:
        raise ValueError("fuse_images needs image features: RoadRegion(..., image_features='clip-vit-b32')")
    width = len(dataset.node_feature_names)
    images = list(range(columns.start, columns.stop))
    order = [column for column in range(width) if not columns.start <= column < columns.stop] + images
    return torch.tensor(order, dtype=torch.long), len(images)


def _period(period) -> tuple[int, ...]:
    return tuple(int(value) for value in period) if isinstance(period, (tuple, list)) else (int(period),)


def _negatives_for(positives: int, ratio: float, available: int) -> int:
    """Negatives drawn for a batch of ``positives``: ``ratio`` times as many, at most the ``available`` pool."""
    return min(available, int(round(ratio * positives)))


def _moments(arrays) -> tuple[Tensor, Tensor]:
    """Column means and standard deviations over the rows of every array (float64 sums); std 0 becomes 1."""
    total = square = None
    rows = 0
    for array in arrays:
        array = array.to(torch.float64)
        total = array.sum(0) if total is None else total + array.sum(0)
        square = (array * array).sum(0) if square is None else square + (array * array).sum(0)
        rows += array.shape[0]
    if rows == 0:
        raise ValueError("no rows to compute feature statistics from")
    mean = total / rows
    std = (square / rows - mean * mean).clamp_min(0).sqrt()
    std = torch.where(std > 1e-6 * mean.abs().clamp_min(1.0), std, torch.ones_like(std))
    return mean.to(torch.float32), std.to(torch.float32)
