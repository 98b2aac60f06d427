"""Fusion heads of the multimodal road baselines: node representations ``h`` (the encoder's, from the graph
features) and image features ``v`` (each node's image embedding and ``image_available``, not standardised) -> one
representation ``z`` per node, which the link predictor scores as it scores ``h`` in the graph-only baselines.

The three heads of the multimodal study MMTraCE (arXiv 2512.02920; its ``models/gnn_vision_mlp.py``,
``gatedfusion.py`` and ``moe.py`` at https://github.com/VirtuosoResearch/MMTraCE commit 88be9cb, read and
rewritten, no code copied):

* ``concat`` (:class:`ConcatFusion`): ``MLP([h, v])``, ``num_layers`` linear layers (the study: 5) with ReLU and
  dropout between them, every width ``hidden_channels``;
* ``gated`` (:class:`GatedFusion`): ``g = sigmoid(MLP([h, v]))`` (three linear layers, ReLU between),
  ``z = MLP_out(g * h + (1 - g) * W v)`` with ``W v`` the image features projected to ``h``'s width and
  ``MLP_out`` ``num_layers - 1`` linear layers (the study: 4; none when ``num_layers = 1``). ``gate="node"``
  (the default) is the study's scalar gate, one per node; ``gate="channel"`` gives every node and channel its own;
* ``moe`` (:class:`MoEFusion`): ``experts`` (the study: 4) three-layer MLPs on ``[h, v]`` mixed per node with the
  weights ``softmax(Linear-ReLU-Linear([h, v]))``. The study's gate network ends in a ReLU, so its softmax sees
  non-negative logits (a negative logit becomes 0, and all-negative logits give equal weights): a quirk of the
  study, kept with ``gate_relu=True`` (the default, to reproduce it); ``gate_relu=False`` is the usual gate.

``dropout`` (the road config's ``model.dropout``, 0 by default) applies between the layers of the concat MLP, the
gated head's output MLP and the experts (the study has none in its experts); the gates have none.
:data:`FUSIONS` maps the names to the classes; :func:`build_fusion` builds one from the road config's keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...arguments import check_choice, check_float, check_int
from .graph import linear

GATES = ("channel", "node")
EXPERT_LAYERS = 3  # the study's experts: Linear-ReLU-Linear-ReLU-Linear
GATE_LAYERS = 3  # the study's gated fusion gate: Linear-ReLU-Linear-ReLU-Linear, then the sigmoid


class MLP(nn.Module):
    """Linear layers of the given ``widths`` with ReLU and dropout between them (none after the last)."""

    def __init__(self, widths: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"an MLP needs an input and at least one layer width, got {list(widths)}")
        self.dropout = check_float("dropout", dropout, minimum=0.0, maximum=1.0, open_max=True)
        self.lins = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    @property
    def out_channels(self) -> int:
        return self.lins[-1].out_features

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.lins) - 1
        for index, lin in enumerate(self.lins):
            x = linear(x, lin.weight, lin.bias)
            if index != last:
                x = F.dropout(F.relu(x), self.dropout, training=self.training)
        return x


class _Fusion(nn.Module):
    """What the heads share: ``forward(h, v)``, ``h`` ``[N, node_channels]`` and ``v`` ``[N, image_channels]``."""

    def __init__(self, node_channels: int, image_channels: int) -> None:
        super().__init__()
        self.node_channels = check_int("node_channels", node_channels, minimum=1)
        self.image_channels = check_int("image_channels", image_channels, minimum=1)

    def _joined(self, h: Tensor, v: Tensor) -> Tensor:
        if h.dim() != 2 or v.dim() != 2 or h.shape[0] != v.shape[0]:
            raise ValueError(f"fusion needs node representations [N, C] and image features [N, D] of the same "
                             f"nodes, got {tuple(h.shape)} and {tuple(v.shape)}")
        if h.shape[1] != self.node_channels or v.shape[1] != self.image_channels:
            raise ValueError(f"{type(self).__name__} was built for {self.node_channels} node and "
                             f"{self.image_channels} image channels, got {h.shape[1]} and {v.shape[1]}")
        return torch.cat([h, v], dim=1)


class ConcatFusion(_Fusion):
    """``MLP([h, v])``: ``num_layers`` linear layers to ``hidden_channels``, ReLU and dropout between them."""

    def __init__(self, node_channels: int, image_channels: int, hidden_channels: int = 256, *,
                 num_layers: int = 5, dropout: float = 0.0) -> None:
        super().__init__(node_channels, image_channels)
        hidden_channels = check_int("hidden_channels", hidden_channels, minimum=1)
        num_layers = check_int("num_layers", num_layers, minimum=1)
        self.mlp = MLP([node_channels + image_channels] + [hidden_channels] * num_layers, dropout)
        self.out_channels = hidden_channels

    def forward(self, h: Tensor, v: Tensor) -> Tensor:
        return self.mlp(self._joined(h, v))


class GatedFusion(_Fusion):
    """``z = MLP_out(g * h + (1 - g) * W v)`` with ``g = sigmoid(MLP_gate([h, v]))`` (see the module docstring)."""

    def __init__(self, node_channels: int, image_channels: int, hidden_channels: int = 256, *,
                 num_layers: int = 5, dropout: float = 0.0, gate: str = "node") -> None:
        super().__init__(node_channels, image_channels)
        hidden_channels = check_int("hidden_channels", hidden_channels, minimum=1)
        num_layers = check_int("num_layers", num_layers, minimum=1)
        self.gate = check_choice("gate", gate, GATES)
        gate_width = node_channels if gate == "channel" else 1
        self.gate_mlp = MLP([node_channels + image_channels] + [hidden_channels] * (GATE_LAYERS - 1) + [gate_width])
        self.project = nn.Linear(image_channels, node_channels)
        self.output = (MLP([node_channels] + [hidden_channels] * (num_layers - 1), dropout) if num_layers > 1
                       else None)
        self.out_channels = hidden_channels if num_layers > 1 else node_channels

    def gate_values(self, h: Tensor, v: Tensor) -> Tensor:
        """``g`` in (0, 1): ``[N, node_channels]`` (``gate="channel"``) or ``[N, 1]`` (``gate="node"``)."""
        return torch.sigmoid(self.gate_mlp(self._joined(h, v)))

    def forward(self, h: Tensor, v: Tensor) -> Tensor:
        g = self.gate_values(h, v)
        projected = linear(v, self.project.weight, self.project.bias)
        fused = g * h + (1 - g) * projected
        return fused if self.output is None else self.output(fused)


class MoEFusion(_Fusion):
    """``sum_e w_e(h, v) * expert_e([h, v])``: ``experts`` MLPs mixed by a softmax gate (see the module docstring)."""

    def __init__(self, node_channels: int, image_channels: int, hidden_channels: int = 256, *, experts: int = 4,
                 gate_relu: bool = True, dropout: float = 0.0) -> None:
        super().__init__(node_channels, image_channels)
        hidden_channels = check_int("hidden_channels", hidden_channels, minimum=1)
        self.num_experts = check_int("experts", experts, minimum=1)
        if not isinstance(gate_relu, bool):
            raise ValueError(f"gate_relu must be True or False, got {gate_relu!r}")
        self.gate_relu = gate_relu
        joined = node_channels + image_channels
        self.experts = nn.ModuleList(MLP([joined] + [hidden_channels] * EXPERT_LAYERS, dropout)
                                     for _ in range(self.num_experts))
        self.gate_mlp = MLP([joined, self.num_experts, self.num_experts])
        self.out_channels = hidden_channels

    def weights(self, h: Tensor, v: Tensor) -> Tensor:
        """``[N, experts]`` mixing weights: non-negative, each row summing to 1."""
        return self._weights(self._joined(h, v))

    def forward(self, h: Tensor, v: Tensor) -> Tensor:
        joined = self._joined(h, v)
        outputs = torch.stack([expert(joined) for expert in self.experts], dim=1)  # [N, E, hidden]
        return (self._weights(joined).unsqueeze(-1) * outputs).sum(dim=1)

    def _weights(self, joined: Tensor) -> Tensor:
        logits = self.gate_mlp(joined)
        if self.gate_relu:
            logits = F.relu(logits)  # the study's quirk (see the module docstring)
        return torch.softmax(logits, dim=-1)


#: Fusion heads by ``model.fusion`` name (``"none"`` and ``"early"`` need no head: see :class:`RoadModel`).
FUSIONS: dict[str, type[_Fusion]] = {"concat": ConcatFusion, "gated": GatedFusion, "moe": MoEFusion}


def build_fusion(name: str, node_channels: int, image_channels: int, hidden_channels: int, *, num_layers: int = 5,
                 dropout: float = 0.0, experts: int = 4, gate_relu: bool = True, gate: str = "node") -> _Fusion:
    """The head ``name`` with the options that apply to it (``num_layers``: concat, gated; ``gate``: gated;
    ``experts`` and ``gate_relu``: moe)."""
    check_choice("fusion", name, tuple(FUSIONS))
    if name == "moe":
        return MoEFusion(node_channels, image_channels, hidden_channels, experts=experts, gate_relu=gate_relu,
                         dropout=dropout)
    if name == "gated":
        return GatedFusion(node_channels, image_channels, hidden_channels, num_layers=num_layers, dropout=dropout,
                           gate=gate)
    return FUSIONS[name](node_channels, image_channels, hidden_channels, num_layers=num_layers, dropout=dropout)
