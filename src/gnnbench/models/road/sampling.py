"""Neighbour-sampled subgraphs for road graphs that do not fit in memory, through PyG's ``NeighborLoader``.

:class:`TorchNeighborSampler` is a ``torch_geometric.sampler.NeighborSampler`` whose sampling step is written in
plain torch, so ``NeighborLoader`` works without the compiled ``pyg-lib`` / ``torch-sparse`` extensions (which
are not on PyPI for current torch) and draws from a ``torch.Generator`` the caller owns: the same generator state
gives the same subgraph (a checkpoint stores it). Sampling is PyG's ``directional`` kind: from each frontier node
up to ``k`` of its incoming edges (all of them for ``k = -1``), uniformly without replacement; seed nodes come
first in the subgraph, then each hop's new nodes in order of first appearance.

:class:`NeighborSubgraphs` wraps one ``NeighborLoader`` over a road graph: ``subgraph(x, seeds)`` gives the sampled
``Data`` (``x``, ``edge_index``, ``edge_attr``, ``n_id``, ``e_id``) whose first ``len(seeds)`` nodes are ``seeds``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.loader import NeighborLoader
from torch_geometric.sampler import NeighborSampler, SamplerOutput


class TorchNeighborSampler(NeighborSampler):
    """``NeighborSampler`` for homogeneous graphs, sampling in plain torch with ``generator``."""

    def __init__(self, data: Data, num_neighbors: Sequence[int], generator: torch.Generator | None = None) -> None:
        with warnings.catch_warnings():  # PyG warns that sampling without pyg-lib is deprecated: not here
            warnings.simplefilter("ignore")
            super().__init__(data, num_neighbors=list(num_neighbors))
        self.generator = generator
        self._local = torch.full((int(data.num_nodes),), -1, dtype=torch.long)

    def _sample(self, seed: Tensor, seed_time: Tensor | None = None,  # type: ignore[override]
                **kwargs) -> SamplerOutput:
        if isinstance(seed, dict) or seed_time is not None:
            raise ValueError("TorchNeighborSampler samples homogeneous graphs without time")
        row, local = self.row, self._local
        seed = seed.to(torch.long)
        if torch.unique(seed).numel() != seed.numel():
            raise ValueError("seed nodes must be distinct")
        local[seed] = torch.arange(seed.numel())
        nodes, rows, cols, edges = [seed], [], [], []
        sampled_nodes, sampled_edges = [seed.numel()], []
        frontier, count = seed, seed.numel()
        try:
            for k in self.num_neighbors.get_mapped_values():
                position, segment = self._edges_of(frontier, int(k))
                source = row[position]
                new = _first_appearances(source[local[source] < 0])
                local[new] = torch.arange(count, count + new.numel())
                count += new.numel()
                rows.append(local[source])
                cols.append(local[frontier[segment]])
                edges.append(position)
                nodes.append(new)
                sampled_nodes.append(new.numel())
                sampled_edges.append(position.numel())
                frontier = new
            node = torch.cat(nodes)
        finally:
            local[torch.cat(nodes)] = -1
        return SamplerOutput(node=node, row=torch.cat(rows), col=torch.cat(cols), edge=torch.cat(edges), batch=None,
                             num_sampled_nodes=sampled_nodes, num_sampled_edges=sampled_edges)

    def _edges_of(self, frontier: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """(CSC positions, frontier index) of the incoming edges kept for each frontier node."""
        start = self.colptr[frontier]
        degree = self.colptr[frontier + 1] - start
        segment = torch.repeat_interleave(torch.arange(frontier.numel()), degree)
        first = torch.cumsum(degree, 0) - degree
        position = start[segment] + torch.arange(segment.numel()) - first[segment]
        if k < 0 or not bool((degree > k).any()):
            return position, segment
        keys = segment.to(torch.float64) + torch.rand(segment.numel(), generator=self.generator,
                                                      dtype=torch.float64)
        order = torch.argsort(keys, stable=True)  # by node, then in random order within a node
        rank = torch.arange(segment.numel()) - first[segment[order]]
        keep = order[rank < k]
        return position[keep], segment[keep]


def _first_appearances(values: Tensor) -> Tensor:
    """The distinct values in order of first appearance."""
    if values.numel() == 0:
        return values
    unique, inverse = torch.unique(values, return_inverse=True)
    first = torch.full((unique.numel(),), values.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(values.numel()), reduce="amin")
    return unique[torch.argsort(first)]


class NeighborSubgraphs:
    """A ``NeighborLoader`` over one road graph whose node features change (monthly weather)."""

    def __init__(self, edge_index: Tensor, num_nodes: int, edge_attr: Tensor | None, num_neighbors: Sequence[int],
                 generator: torch.Generator | None = None) -> None:
        self.data = Data(edge_index=edge_index, edge_attr=edge_attr, num_nodes=num_nodes)
        self.sampler = TorchNeighborSampler(self.data, num_neighbors, generator)
        self.loader = NeighborLoader(self.data, num_neighbors=list(num_neighbors), neighbor_sampler=self.sampler,
                                     batch_size=1)

    def subgraph(self, x: Tensor, seeds: Tensor, generator: torch.Generator | None = None) -> Data:
        """The sampled subgraph around ``seeds`` (distinct node ids) with ``x``'s rows; seeds first. ``generator``
        replaces the sampler's own for this call."""
        self.data.x = x
        own = self.sampler.generator
        if generator is not None:
            self.sampler.generator = generator
        try:
            return self.loader(seeds)
        finally:
            self.data.x = None
            self.sampler.generator = own
