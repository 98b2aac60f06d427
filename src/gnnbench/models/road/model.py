"""The road baseline: a node encoder, then one link predictor per state (one for a single-state run); the
multimodal baselines put a fusion head (:mod:`gnnbench.models.road.fusion`) between them.

This is ML4RoadSafety's model (``train.py`` / ``train_multitask.py`` of
https://github.com/VirtuosoResearch/ML4RoadSafety at commit d8b3d96a8dc9f1323e9595addd705c3c2c96b42c): a shared
encoder and, for several states, one predictor head per state. :class:`EdgeBatch` is a self-contained batch (node
features, graph, the edges to score, their targets), so one loss closure serves training and the Hessian
measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...arguments import check_choice, check_int
from .encoders import NodeEncoder
from .fusion import FUSIONS, build_fusion
from .graph import RoadGraph
from .link_predictor import LinkPredictor

TASKS = ("accident_occurrence", "accident_count", "traffic_volume")
#: ``RoadModel(fusion=...)``: no fusion head, or one of :data:`~gnnbench.models.road.fusion.FUSIONS`.
MODEL_FUSIONS = ("none", *FUSIONS)


@dataclass
class EdgeBatch:
    """Edges ``edge_index`` (``[2, B]``, rows of ``x``) of ``graph`` to score with predictor ``head``."""

    x: Tensor                  # [N, node features] of the graph (a month's, normalised; image features last)
    graph: RoadGraph
    edge_index: Tensor         # [2, B]
    edge_attr: Tensor | None   # [B, edge features]
    target: Tensor             # [B]: 0/1, counts, or AADT in thousands of vehicles per day
    head: int = 0

    def __len__(self) -> int:
        return int(self.edge_index.shape[1])

    def to(self, device: torch.device) -> EdgeBatch:
        return EdgeBatch(self.x.to(device), self.graph.to(device), self.edge_index.to(device),
                         None if self.edge_attr is None else self.edge_attr.to(device), self.target.to(device),
                         self.head)


class RoadModel(nn.Module):
    """``encoder`` (a :class:`NodeEncoder`), an optional ``fusion`` head and ``predictors`` (one
    :class:`LinkPredictor` per head).

    With ``fusion`` one of ``concat``, ``gated``, ``moe``, the last ``image_channels`` of the ``node_channels``
    columns of ``x`` are image features: the encoder runs on the others (the graph features), the fusion head
    combines its output with the image features, and the predictors score the fused representations.
    ``fusion_layers`` (concat, gated), ``gate`` (gated), ``experts`` and ``moe_gate_relu`` (moe) configure the head.
    """

    def __init__(self, encoder_name: str, node_channels: int, edge_channels: int, *, hidden_channels: int = 256,
                 num_layers: int = 2, predictor_layers: int = 2, dropout: float = 0.0, heads: int = 1,
                 image_channels: int = 0, fusion: str = "none", fusion_layers: int = 5, experts: int = 4,
                 moe_gate_relu: bool = True, gate: str = "node") -> None:
        super().__init__()
        heads = check_int("heads", heads, minimum=1)
        check_choice("fusion", fusion, MODEL_FUSIONS)
        node_channels = check_int("node_channels", node_channels, minimum=1)
        self.image_channels = check_int("image_channels", image_channels, minimum=0)
        if (fusion == "none") != (image_channels == 0) or image_channels >= node_channels:
            raise ValueError(f"fusion {fusion!r} with {image_channels} image channels of {node_channels}: a fusion "
                             "head needs image channels (the last columns of x) and graph features besides them; "
                             "without a head there are none (image columns are then plain node features)")
        self.encoder = NodeEncoder(encoder_name, node_channels - image_channels, edge_channels, hidden_channels,
                                   num_layers, dropout)
        self.fusion = None if fusion == "none" else build_fusion(
            fusion, self.encoder.out_channels, image_channels, hidden_channels, num_layers=fusion_layers,
            dropout=dropout, experts=experts, gate_relu=moe_gate_relu, gate=gate)
        width = self.encoder.out_channels if self.fusion is None else self.fusion.out_channels
        self.predictors = nn.ModuleList(
            LinkPredictor(width, edge_channels, hidden_channels, predictor_layers, dropout) for _ in range(heads))

    def encode(self, x: Tensor, graph: RoadGraph) -> Tensor:
        """Node representations: the encoder's, or with a fusion head the fused ones."""
        if self.fusion is None:
            return self.encoder(x, graph)
        split = x.shape[1] - self.image_channels
        h = self.encoder(x[:, :split].contiguous(), graph)
        return self.fusion(h, x[:, split:].contiguous())

    def forward(self, batch: EdgeBatch) -> Tensor:
        """Raw outputs (logits or values) ``[B]`` for the batch's edges."""
        h = self.encode(batch.x, batch.graph)
        return self.predictors[batch.head].score_pairs(h, batch.edge_index, batch.edge_attr)


def task_loss(task: str, output: Tensor, target: Tensor) -> Tensor:
    """ML4RoadSafety's losses: binary cross-entropy for occurrence, L1 for the counts and the volume."""
    check_choice("task", task, TASKS)
    if task == "accident_occurrence":
        return F.binary_cross_entropy_with_logits(output, target)
    return F.l1_loss(output, target)


def batch_loss(model: RoadModel, task: str, batch: EdgeBatch) -> Tensor:
    """The mean training loss of ``model`` on ``batch``."""
    return task_loss(task, model(batch), batch.target)
