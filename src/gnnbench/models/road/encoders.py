"""ML4RoadSafety's node encoders in PyTorch: MLP, GCN, GraphSAGE, GIN and GAT over a :class:`RoadGraph`.

The layers compute what ``ml_for_road_safety/layers.py`` and ``models/gnn_models.py`` of
https://github.com/VirtuosoResearch/ML4RoadSafety (commit d8b3d96a8dc9f1323e9595addd705c3c2c96b42c) compute, read and
rewritten (no code copied). Every convolution adds a self-loop to each node and an edge embedding
``W_e e_ji + b_e`` to each message (zeros as a self-loop's edge features); for node ``i`` with incoming edges
``j -> i`` (plus the loop):

* ``gcn``:  ``sum_j d_j^-1/2 d_i^-1/2 (W x_j + b + W_e e_ji + b_e)``, where ``d`` counts the edges *leaving* a node
  plus its loop (upstream's ``scatter_add`` over ``edge_index[0]``);
* ``sage``: ``normalize(mean_j (W x_j + b + W_e e_ji + b_e))`` (L2 norm of each row);
* ``gin``:  ``MLP(sum_j (x'_j + W_e e_ji + b_e))`` with ``MLP = Linear(C, 2C), ReLU, Linear(2C, C)`` and
  ``x' = W x + b`` when the input width differs from ``C``, else ``x`` itself (upstream skips its node layer then;
  here it is not created);
* ``gat``:  two heads, ``alpha_ji = softmax(leaky_relu(a . [W x_i, W x_j + E_ji], 0.2))`` with ``E_ji`` the edge
  embedding, messages ``alpha_ji (W x_j + E_ji)`` summed at ``i``, then the mean over heads plus a bias. As upstream,
  the softmax normalises over the edges that share a *source* node (``softmax(alpha, edge_index[0])``);
* ``mlp``: no message passing (upstream's ``--encoder none``, its MLP baseline): the node features go to the link
  predictor as they are, and the predictor's MLP is the model.

The encoder stacks ``num_layers`` convolutions, each followed by batch normalisation and, except after the last,
a ReLU; dropout after every layer; the last layer's output is the node representation (upstream's ``JK="last"``).
GCN, GraphSAGE and GIN aggregate their inputs before the linear layers where that is cheaper (see
:mod:`gnnbench.models.road.graph`): the same function, up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...arguments import check_choice, check_float, check_int
from .graph import RoadGraph, linear

#: Encoder names (``model.name`` in a road config).
ENCODERS = ("mlp", "gcn", "sage", "gin", "gat")


class _EdgeEmbedding(nn.Module):
    """``W_e e + b_e`` applied to aggregated edge features: ``W_e agg(e) + b_e * row_sum``."""

    def __init__(self, edge_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear_edge = nn.Linear(edge_channels, out_channels) if edge_channels else None
        self.out_channels = out_channels

    def aggregated(self, graph: RoadGraph, kind: str) -> Tensor | None:
        """The edge-embedding part of every node's aggregated message, ``[N, C]`` (``None`` without features)."""
        if self.linear_edge is None or graph.edge_attr is None:
            return None
        weights = linear(graph.edge_aggregate(kind), self.linear_edge.weight)
        return weights + graph.row_sum(kind) * self.linear_edge.bias


def _check_edge_features(graph: RoadGraph, layer: nn.Module, edge_channels: int) -> None:
    have = 0 if graph.edge_attr is None else int(graph.edge_attr.shape[1])
    if have != edge_channels:
        raise ValueError(f"{type(layer).__name__} was built for {edge_channels} edge features, the graph has {have}")


class GCNConv(_EdgeEmbedding):
    """ML4RoadSafety's ``GCNConv`` (see the module docstring)."""

    def __init__(self, in_channels: int, edge_channels: int, out_channels: int) -> None:
        super().__init__(edge_channels, out_channels)
        self.linear_node = nn.Linear(in_channels, out_channels)
        self.edge_channels = edge_channels

    def forward(self, x: Tensor, graph: RoadGraph) -> Tensor:
        _check_edge_features(graph, self, self.edge_channels)
        operator = graph.operator("gcn")
        if self.linear_node.in_features <= self.linear_node.out_features:
            out = linear(operator(x), self.linear_node.weight)
        else:
            out = operator(linear(x, self.linear_node.weight))
        out = out + graph.row_sum("gcn") * self.linear_node.bias
        edges = self.aggregated(graph, "gcn")
        return out if edges is None else out + edges


class SAGEConv(_EdgeEmbedding):
    """ML4RoadSafety's ``GraphSAGEConv`` (see the module docstring)."""

    def __init__(self, in_channels: int, edge_channels: int, out_channels: int) -> None:
        super().__init__(edge_channels, out_channels)
        self.linear_node = nn.Linear(in_channels, out_channels)
        self.edge_channels = edge_channels

    def forward(self, x: Tensor, graph: RoadGraph) -> Tensor:
        _check_edge_features(graph, self, self.edge_channels)
        operator = graph.operator("mean")
        edges = graph.edge_aggregate("mean") if self.linear_edge is not None else None
        # a mean's row sums are 1: both biases join the node layer's; the edge term accumulates in place (addmm)
        bias = self.linear_node.bias if edges is None else self.linear_node.bias + self.linear_edge.bias
        if self.linear_node.in_features <= self.linear_node.out_features:
            out = linear(operator(x), self.linear_node.weight, bias)
        else:
            out = operator(linear(x, self.linear_node.weight)) + bias
        if edges is not None:
            out = out.addmm_(edges, self.linear_edge.weight.t().contiguous())  # in place; see graph.linear
        return l2_normalize(out)


class _L2Normalize(torch.autograd.Function):
    """``F.normalize(x, dim=-1)`` in one pass forward and one backward (the layer's largest elementwise cost).

    Under ``create_graph`` (second derivatives) the backward is recomputed from ``x`` with differentiable ops."""

    EPS = 1e-12

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        scale = norm.clamp_min(_L2Normalize.EPS).reciprocal_()
        y = x * scale
        ctx.save_for_backward(x, y, scale, norm > _L2Normalize.EPS)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        x, y, scale, above = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: every term as a differentiable function of x
            norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
            scale = 1.0 / norm.clamp_min(_L2Normalize.EPS)
            y = x * scale
            return (grad - y * ((grad * y).sum(-1, keepdim=True) * above)) * scale
        dot = torch.linalg.vecdot(grad, y).unsqueeze(-1).mul_(above)
        return torch.addcmul(grad, y, dot, value=-1.0).mul_(scale)


def l2_normalize(x: Tensor) -> Tensor:
    """Each row of ``x`` divided by its L2 norm (at least 1e-12), as ``F.normalize(x, p=2, dim=-1)``."""
    return _L2Normalize.apply(x)


class GINConv(_EdgeEmbedding):
    """ML4RoadSafety's ``GINConv`` (see the module docstring)."""

    def __init__(self, in_channels: int, edge_channels: int, out_channels: int) -> None:
        super().__init__(edge_channels, out_channels)
        self.linear_node = nn.Linear(in_channels, out_channels) if in_channels != out_channels else None
        self.mlp = nn.Sequential(nn.Linear(out_channels, 2 * out_channels), nn.ReLU(),
                                 nn.Linear(2 * out_channels, out_channels))
        self.edge_channels = edge_channels

    def forward(self, x: Tensor, graph: RoadGraph) -> Tensor:
        _check_edge_features(graph, self, self.edge_channels)
        operator = graph.operator("sum")
        if self.linear_node is None:
            out = operator(x)
        elif self.linear_node.in_features <= self.linear_node.out_features:
            out = linear(operator(x), self.linear_node.weight) + graph.row_sum("sum") * self.linear_node.bias
        else:
            out = operator(linear(x, self.linear_node.weight, self.linear_node.bias))
        edges = self.aggregated(graph, "sum")
        if edges is not None:
            out = out + edges
        return self.mlp(out)


class GATConv(nn.Module):
    """ML4RoadSafety's ``GATConv`` (two heads; see the module docstring)."""

    def __init__(self, in_channels: int, edge_channels: int, out_channels: int, heads: int = 2,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        self.heads, self.out_channels, self.negative_slope = heads, out_channels, negative_slope
        self.weight_linear = nn.Linear(in_channels, heads * out_channels)
        self.linear_edge = nn.Linear(edge_channels, heads * out_channels) if edge_channels else None
        self.att = nn.Parameter(torch.empty(1, heads, 2 * out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.edge_channels = edge_channels
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.att.view(self.heads, 2 * self.out_channels))  # glorot over (heads, 2C)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, graph: RoadGraph) -> Tensor:
        from torch_geometric.utils import softmax

        _check_edge_features(graph, self, self.edge_channels)
        heads, channels = self.heads, self.out_channels
        xw = self.weight_linear(x).view(-1, heads, channels)
        att_target, att_source = self.att[0, :, :channels], self.att[0, :, channels:]
        source, target = graph.with_loops()
        num_edges = graph.num_edges
        # index_select, not xw[index]: its gradient is an index_add, deterministic on the CPU with several threads
        # (indexing's accumulating index_put is not)
        score = (torch.index_select((xw * att_target).sum(-1), 0, target)
                 + torch.index_select((xw * att_source).sum(-1), 0, source))
        if self.linear_edge is not None:
            weight = self.linear_edge.weight.view(heads, channels, -1)
            bias = self.linear_edge.bias.view(heads, channels)
            edge_score = graph.edge_attr @ torch.einsum("hcf,hc->fh", weight, att_source)  # [E, H]
            loop_score = (bias * att_source).sum(-1)  # a self-loop's embedding is the bias alone
            score = score + torch.cat([edge_score + loop_score, loop_score.expand(graph.num_nodes, heads)])
        alpha = softmax(F.leaky_relu(score, self.negative_slope), source, num_nodes=graph.num_nodes)
        out = torch.zeros_like(xw).index_add_(0, target, torch.index_select(xw, 0, source) * alpha.unsqueeze(-1))
        if self.linear_edge is not None:
            # sum_j alpha_ji (W_e e_ji + b_e): the features weighted per head, then W_e; b_e times sum_j alpha_ji
            edge_alpha = alpha[:num_edges]
            weighted = torch.zeros(graph.num_nodes, heads, graph.edge_attr.shape[1], device=x.device,
                                   dtype=xw.dtype).index_add_(
                0, graph.edge_index[1], graph.edge_attr.unsqueeze(1) * edge_alpha.unsqueeze(-1))
            alpha_sum = torch.zeros(graph.num_nodes, heads, device=x.device, dtype=xw.dtype).index_add_(
                0, target, alpha)
            out = out + torch.einsum("nhf,hcf->nhc", weighted, weight) + alpha_sum.unsqueeze(-1) * bias
        return out.mean(dim=1) + self.bias


_CONVS = {"gcn": GCNConv, "sage": SAGEConv, "gin": GINConv, "gat": GATConv}


class NodeEncoder(nn.Module):
    """``num_layers`` convolutions of one kind, each followed by batch normalisation (and ReLU but the last).

    ``name="mlp"`` has no layers: :meth:`forward` returns ``x`` and :attr:`out_channels` is ``node_channels``.
    """

    def __init__(self, name: str, node_channels: int, edge_channels: int, hidden_channels: int = 256,
                 num_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.name = check_choice("name", name, ENCODERS)
        node_channels = check_int("node_channels", node_channels, minimum=1)
        edge_channels = check_int("edge_channels", edge_channels, minimum=0)
        hidden_channels = check_int("hidden_channels", hidden_channels, minimum=1)
        num_layers = check_int("num_layers", num_layers, minimum=1)
        self.dropout = check_float("dropout", dropout, minimum=0.0, maximum=1.0, open_max=True)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        if name != "mlp":
            for layer in range(num_layers):
                width = node_channels if layer == 0 else hidden_channels
                self.convs.append(_CONVS[name](width, edge_channels, hidden_channels))
                self.norms.append(nn.BatchNorm1d(hidden_channels))
        self.out_channels = node_channels if name == "mlp" else hidden_channels

    def forward(self, x: Tensor, graph: RoadGraph) -> Tensor:
        if x.shape[0] != graph.num_nodes:
            raise ValueError(f"x has {x.shape[0]} rows but the graph has {graph.num_nodes} nodes")
        last = len(self.convs) - 1
        for layer, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = norm(conv(x, graph))
            if layer != last:
                x = F.relu(x)
            x = F.dropout(x, self.dropout, training=self.training)
        return x
