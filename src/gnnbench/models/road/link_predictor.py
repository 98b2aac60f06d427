"""ML4RoadSafety's link predictor: an MLP over ``[h_u, h_v, edge features]`` giving one number per road edge.

As ``LinkPredictor`` in ``ml_for_road_safety/models/gnn_models.py`` of https://github.com/VirtuosoResearch/ML4RoadSafety
(commit d8b3d96a8dc9f1323e9595addd705c3c2c96b42c): ``num_layers`` linear layers, ReLU and dropout between them, one
output. Upstream applies a sigmoid inside the predictor for classification; here the predictor always returns the
raw output (a logit for occurrence, trained with ``binary_cross_entropy_with_logits``, the same loss computed
stably) and callers apply the sigmoid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...arguments import check_float, check_int
from .graph import linear


class LinkPredictor(nn.Module):
    """``MLP([h_u, h_v, e])`` -> ``[B]``: node ``u``'s representation, node ``v``'s, then the edge's features.

    ``in_channels = 2 * node_channels + edge_channels``. :meth:`score_pairs` (training batches: each distinct
    endpoint projected once) and :meth:`score_edges` (every edge of a graph: each node projected once) split the
    first layer into its ``h_u``, ``h_v`` and ``e`` blocks: the same numbers up to float rounding, less work.
    """

    def __init__(self, node_channels: int, edge_channels: int, hidden_channels: int = 256, num_layers: int = 2,
                 dropout: float = 0.0, out_channels: int = 1) -> None:
        super().__init__()
        self.node_channels = check_int("node_channels", node_channels, minimum=1)
        self.edge_channels = check_int("edge_channels", edge_channels, minimum=0)
        hidden_channels = check_int("hidden_channels", hidden_channels, minimum=1)
        num_layers = check_int("num_layers", num_layers, minimum=1)
        self.dropout = check_float("dropout", dropout, minimum=0.0, maximum=1.0, open_max=True)
        self.out_channels = check_int("out_channels", out_channels, minimum=1)
        widths = [2 * node_channels + edge_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        self.lins = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def reset_parameters(self) -> None:
        for lin in self.lins:
            lin.reset_parameters()

    def forward(self, h_u: Tensor, h_v: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        """``[B]`` outputs for ``B`` edges (``[B, out_channels]`` when ``out_channels > 1``)."""
        self._check(h_u, edge_attr)
        parts = [h_u, h_v] if edge_attr is None or self.edge_channels == 0 else [h_u, h_v, edge_attr]
        first = self.lins[0]
        return self._tail(linear(torch.cat(parts, dim=1), first.weight, first.bias))

    def score_pairs(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        """Outputs for the pairs ``edge_index`` (``[2, B]``) of node representations ``h``, the first layer applied
        once per distinct endpoint: ``forward(h[u], h[v], e)`` up to float rounding, cheaper when endpoints repeat
        (the training batches' do) and without the ``[B, 2C + F]`` concatenation."""
        self._check(h, edge_attr)
        first = self.lins[0]
        c = self.node_channels
        u_nodes, u_index = torch.unique(edge_index[0], return_inverse=True)
        v_nodes, v_index = torch.unique(edge_index[1], return_inverse=True)
        # one gather; index_select's gradient is an index_add, deterministic on the CPU with several threads
        rows_u, rows_v = torch.index_select(h, 0, torch.cat([u_nodes, v_nodes])).split(
            [u_nodes.numel(), v_nodes.numel()])  # split, not slices: its gradient is one concatenation
        from_u = linear(rows_u, first.weight[:, :c])
        from_v = linear(rows_v, first.weight[:, c:2 * c])
        if edge_attr is not None and self.edge_channels:
            hidden_edges = linear(edge_attr, first.weight[:, 2 * c:], first.bias)
        else:
            hidden_edges = first.bias
        hidden = torch.add(torch.index_select(from_u, 0, u_index), torch.index_select(from_v, 0, v_index))
        hidden = hidden.add_(hidden_edges)
        return self._tail(hidden)

    def score_edges(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None,
                    chunk_size: int = 1 << 18) -> Tensor:
        """Outputs for the edges ``edge_index`` (``[2, E]``) of node representations ``h``, in chunks of edges."""
        self._check(h, edge_attr)
        first = self.lins[0]
        c = self.node_channels
        from_u = linear(h, first.weight[:, :c])
        from_v = linear(h, first.weight[:, c:2 * c])
        outputs = []
        for start in range(0, edge_index.shape[1], chunk_size):
            u = edge_index[0, start:start + chunk_size]
            v = edge_index[1, start:start + chunk_size]
            hidden = from_u[u] + from_v[v] + first.bias
            if edge_attr is not None and self.edge_channels:
                hidden = hidden + linear(edge_attr[start:start + chunk_size], first.weight[:, 2 * c:])
            outputs.append(self._tail(hidden))
        if not outputs:
            return h.new_zeros((0,) if self.out_channels == 1 else (0, self.out_channels))
        return torch.cat(outputs)

    def _tail(self, hidden: Tensor) -> Tensor:
        for lin in self.lins[1:]:
            hidden = F.dropout(F.relu(hidden), self.dropout, training=self.training)
            hidden = linear(hidden, lin.weight, lin.bias)
        return hidden.squeeze(-1) if self.out_channels == 1 else hidden

    def _check(self, h: Tensor, edge_attr: Tensor | None) -> None:
        if h.shape[-1] != self.node_channels:
            raise ValueError(f"node representations have {h.shape[-1]} channels, the predictor expects "
                             f"{self.node_channels}")
        have = 0 if edge_attr is None else edge_attr.shape[-1]
        if self.edge_channels and have != self.edge_channels:
            raise ValueError(f"edge features have {have} channels, the predictor expects {self.edge_channels}")
