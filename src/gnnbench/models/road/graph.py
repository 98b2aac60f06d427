"""Sparse operators of one road graph, built once and shared by every month (the graph never changes).

ML4RoadSafety's convolutions (``ml_for_road_safety/layers.py`` of https://github.com/VirtuosoResearch/ML4RoadSafety
at commit d8b3d96a8dc9f1323e9595addd705c3c2c96b42c) add a self-loop to every node, embed every edge's features with
a linear layer, and aggregate ``W x_j + b + W_e e_ji + b_e`` over the incoming edges ``j -> i`` (a self-loop's edge
features are zeros). Every aggregation there is linear, so the same numbers come from aggregating the raw inputs
first and applying the linear layers to the (much smaller) aggregates::

    mean_j (W x_j + b + W_e e_ji + b_e) = W mean_j(x_j) + b + W_e mean_j(e_ji) + b_e

:class:`RoadGraph` holds the sparse matrices (``A + I`` with the rows scaled for a mean, or GCN's symmetric
normalisation) and the aggregated edge features, which depend only on the static graph: they are computed once
per graph instead of once per layer and month. Messages flow from ``edge_index[0]`` to ``edge_index[1]`` (PyG's
``source_to_target``); row ``i`` of every operator aggregates the edges that end at ``i``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

#: Aggregations the encoders use: "mean" (GraphSAGE), "gcn" (symmetric normalisation), "sum" (GIN).
KINDS = ("mean", "gcn", "sum")


class _SpMM(torch.autograd.Function):
    """``matrix @ x`` for a constant sparse CSR ``matrix``; the gradient is ``matrix.T @ grad`` (also a
    ``_SpMM``, so second derivatives, which Hessian-vector products need, work too). The transpose is kept
    as its own CSR matrix: both products then run row by row, deterministically on the CPU."""

    @staticmethod
    def forward(ctx, matrix: Tensor, transpose: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.matrices = (matrix, transpose)
        return _sparse_product(matrix, x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        matrix, transpose = ctx.matrices
        return None, None, _SpMM.apply(transpose, matrix, grad)


def _sparse_product(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix @ x``. On the CPU into an uninitialised result (``addmm`` with ``beta=0`` ignores it):
    ``torch.sparse.mm`` zero-fills its result and copies it once more, which costs more than the product."""
    if x.device.type != "cpu":
        return torch.sparse.mm(matrix, x)
    out = x.new_empty(matrix.shape[0], x.shape[1])
    return torch.addmm(out, matrix, x.contiguous(), beta=0, out=out)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)`` with the weight's gradient computed as ``x.T @ grad``: autograd computes it as
    ``(grad.T @ x).T`` for ``F.linear`` or any transposed weight, which is up to twenty times slower on the CPU when
    ``x`` is tall and narrow (the first layer's ten node features, the 23 edge features). A contiguous copy of
    ``weight.T`` (tiny) makes the product take the fast order; the result is the same product."""
    transposed = weight.t().contiguous() if weight.shape[1] < 64 else weight.t()
    if bias is None:
        return x @ transposed
    return torch.addmm(bias, x, transposed)


@dataclass
class Operator:
    """A constant sparse matrix with its transpose, applied with :meth:`__call__` (differentiable in ``x``)."""

    matrix: Tensor
    transpose: Tensor

    def __call__(self, x: Tensor) -> Tensor:
        return _SpMM.apply(self.matrix, self.transpose, x)


@dataclass
class RoadGraph:
    """A directed graph (``edge_index`` ``[2, E]``, ``num_nodes``) with its static edge features ``[E, F]``.

    Operators and edge aggregates are built on first use and cached; :meth:`to` moves everything to a device.
    Existing self-loops and parallel edges are kept as they are (ML4RoadSafety adds one self-loop per node on
    top of whatever the graph holds, and sums duplicate messages).
    """

    edge_index: Tensor
    num_nodes: int
    edge_attr: Tensor | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.edge_index.dim() != 2 or self.edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {tuple(self.edge_index.shape)}")
        self.edge_index = self.edge_index.to(torch.long)
        if self.edge_attr is not None and self.edge_attr.shape[0] != self.edge_index.shape[1]:
            raise ValueError(f"edge_attr has {self.edge_attr.shape[0]} rows but edge_index has "
                             f"{self.edge_index.shape[1]} edges")
        if self.edge_index.numel() and int(self.edge_index.max()) >= self.num_nodes:
            raise ValueError(f"edge_index refers to node {int(self.edge_index.max())} but num_nodes is "
                             f"{self.num_nodes}")

    @property
    def device(self) -> torch.device:
        return self.edge_index.device

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def to(self, device: torch.device | str) -> RoadGraph:
        """This graph on ``device`` (moved once: later calls return the same copy, with its built operators)."""
        device = torch.device(device)
        if device == self.device or (device.type == self.device.type and device.index is None):
            return self
        return self._cached(f"on:{device}", lambda: RoadGraph(
            self.edge_index.to(device), self.num_nodes, None if self.edge_attr is None else self.edge_attr.to(device)))

    # -- degrees -----------------------------------------------------------------------------------
    def in_degree(self) -> Tensor:
        """Incoming edges per node (the self-loop not counted)."""
        return self._cached("in_degree", lambda: torch.bincount(self.edge_index[1], minlength=self.num_nodes))

    def gcn_degree(self) -> Tensor:
        """ML4RoadSafety's GCN degree: the edges *leaving* each node plus its self-loop (``scatter_add`` over
        ``edge_index[0]`` after ``add_self_loops``)."""
        return self._cached("gcn_degree", lambda: torch.bincount(self.edge_index[0], minlength=self.num_nodes) + 1)

    def _gcn_weights(self) -> tuple[Tensor, Tensor]:
        """(edge weights ``d_j^-1/2 d_i^-1/2`` of the edges ``j -> i``, self-loop weights ``d_i^-1``)."""
        def build() -> tuple[Tensor, Tensor]:
            inv_sqrt = self.gcn_degree().to(torch.float32).pow(-0.5)
            source, target = self.edge_index
            return inv_sqrt[source] * inv_sqrt[target], inv_sqrt * inv_sqrt
        return self._cached("gcn_weights", build)

    # -- operators ---------------------------------------------------------------------------------
    def operator(self, kind: str) -> Operator:
        """The sparse matrix of an aggregation over ``A + I`` (``kind`` in :data:`KINDS`)."""
        if kind not in KINDS:
            raise ValueError(f"unknown aggregation {kind!r}; expected one of {', '.join(KINDS)}")
        return self._cached(f"operator:{kind}", lambda: self._build_operator(kind))

    def _build_operator(self, kind: str) -> Operator:
        n = self.num_nodes
        loops = torch.arange(n, device=self.device)
        source = torch.cat([self.edge_index[0], loops])
        target = torch.cat([self.edge_index[1], loops])
        if kind == "mean":
            count = (self.in_degree() + 1).to(torch.float32)
            values = 1.0 / count[target]
        elif kind == "gcn":
            edge_weight, loop_weight = self._gcn_weights()
            values = torch.cat([edge_weight, loop_weight])
        else:
            values = torch.ones(source.shape[0], device=self.device)
        with warnings.catch_warnings():  # torch notes that its CSR support is in beta: known, and tested here
            warnings.simplefilter("ignore", UserWarning)
            matrix = torch.sparse_coo_tensor(torch.stack([target, source]), values, (n, n),
                                             check_invariants=False).coalesce().to_sparse_csr()
            transpose = torch.sparse_coo_tensor(torch.stack([source, target]), values, (n, n),
                                                check_invariants=False).coalesce().to_sparse_csr()
        return Operator(matrix, transpose)

    def row_sum(self, kind: str) -> Tensor:
        """``[N, 1]``: the sum of row ``i`` of :meth:`operator` (what a bias added to every message becomes)."""
        def build() -> Tensor:
            if kind == "mean":
                return torch.ones(self.num_nodes, 1, device=self.device)
            if kind == "sum":
                return (self.in_degree() + 1).to(torch.float32).unsqueeze(1)
            edge_weight, loop_weight = self._gcn_weights()
            total = loop_weight.clone().index_add_(0, self.edge_index[1], edge_weight)
            return total.unsqueeze(1)
        return self._cached(f"row_sum:{kind}", build)

    def edge_aggregate(self, kind: str) -> Tensor | None:
        """``[N, F]``: the edge features aggregated like :meth:`operator` aggregates nodes (a self-loop's edge
        features are zeros), or ``None`` without edge features. Constant: computed once per graph."""
        if self.edge_attr is None:
            return None

        def build() -> Tensor:
            attr = self.edge_attr.to(torch.float32)
            target = self.edge_index[1]
            if kind == "gcn":
                attr = attr * self._gcn_weights()[0].unsqueeze(1)
            total = torch.zeros(self.num_nodes, attr.shape[1], device=self.device).index_add_(0, target, attr)
            if kind == "mean":
                total = total / (self.in_degree() + 1).to(torch.float32).unsqueeze(1)
            return total
        return self._cached(f"edge_aggregate:{kind}", build)

    def with_loops(self) -> tuple[Tensor, Tensor]:
        """``(source, target)`` of every edge followed by one self-loop per node (GAT's per-edge attention)."""
        def build() -> tuple[Tensor, Tensor]:
            loops = torch.arange(self.num_nodes, device=self.device)
            return torch.cat([self.edge_index[0], loops]), torch.cat([self.edge_index[1], loops])
        return self._cached("with_loops", build)

    def _cached(self, key: str, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]
