"""DGL twins of the datasets (needs the optional ``dgl`` extra: ``pip install gnnbench[dgl]``, which pins the one
supported environment, see :mod:`gnnbench.datasets.dgl_environment`).

Each DGL item holds exactly the tensors of the PyTorch Geometric item: node fields
in ``g.ndata``, edge fields in ``g.edata`` (same edge order: every ordered pair,
row-major), graph fields and ``num_steps`` in a dict returned beside the graph.
Pointers stay per-graph node indices (``dgl.batch`` does not offset them).
Road graphs keep node features in ``ndata["feat"]`` and edge features, labels and the
evaluation mask in ``edata["feat"]``, ``edata["label"]`` and ``edata["eval_mask"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..algo.specs import SPECS, Location
from .algorithmic_reasoning import AlgorithmicReasoningDataset
from .dgl_environment import import_dgl
from .road_accidents import RoadAccidentDataset

dgl = import_dgl()  # DGLMissingError / DGLBrokenError (with the reason and the supported set) otherwise
DGLDataset = dgl.data.DGLDataset


def to_dgl(data: Any, algorithm: str) -> tuple[dgl.DGLGraph, dict[str, torch.Tensor]]:
    """Convert one ``AlgorithmicReasoningData`` item to ``(graph, graph_fields)``."""
    graph = dgl.graph((data.edge_index[0], data.edge_index[1]), num_nodes=int(data.num_nodes))
    graph_fields = {"num_steps": data.num_steps}
    for name, (_, location, _) in SPECS[algorithm].items():
        value = data[name]
        if location == Location.NODE:
            graph.ndata[name] = value
        elif location == Location.EDGE:
            graph.edata[name] = value
        else:
            graph_fields[name] = value
    return graph, graph_fields


class AlgorithmicReasoningDGLDataset(DGLDataset):
    """DGL view of :class:`~gnnbench.datasets.AlgorithmicReasoningDataset` (same arguments,
    same cache; ``split="valid"``, or CLRS-30's ``"val"``): ``dataset[i]`` is ``(graph, graph_fields)``."""

    def __init__(self, root: str | Path | None, algorithm: str, split: str = "train", *,
                 force_reload: bool = False, **options: Any) -> None:
        self.source = AlgorithmicReasoningDataset(root, algorithm, split, force_reload=force_reload, **options)
        self.algorithm = self.source.algorithm
        super().__init__(name=f"gnnbench_{self.algorithm}_{self.source.split}", verbose=False)

    def process(self) -> None:
        pass  # the PyG dataset (opened in __init__) owns the cache

    def has_cache(self) -> bool:
        return False

    def __getitem__(self, idx: int) -> tuple[dgl.DGLGraph, dict[str, torch.Tensor]]:
        return to_dgl(self.source[idx], self.algorithm)

    def __len__(self) -> int:
        return len(self.source)


def road_to_dgl(data: Any) -> dgl.DGLGraph:
    """Convert a road graph or monthly snapshot (PyG ``Data``) to a DGL graph with the same tensors."""
    graph = dgl.graph((data.edge_index[0], data.edge_index[1]), num_nodes=int(data.num_nodes))
    graph.ndata["feat"] = data.x
    graph.edata["feat"] = data.edge_attr
    graph.edata["eval_mask"] = data.eval_mask
    if getattr(data, "y", None) is not None:
        graph.edata["label"] = data.y
    return graph


class RoadAccidentDGLDataset(DGLDataset):
    """DGL view of :class:`~gnnbench.datasets.RoadAccidentDataset` (same arguments, same tables and cache):
    ``dataset[i]`` is month ``i`` (year ``i`` for ``traffic_volume``) as a DGL graph, ``snapshot(year, month)``
    one month, ``static_graph`` the road network, ``get_split()``/``get_idx_split()`` the splits. Every graph is
    fresh: changing it never changes the dataset."""

    def __init__(self, root: str | Path | None = None, state: str | None = None, task: str = "accident_occurrence",
                 *, force_reload: bool = False, **options: Any) -> None:
        self.source = RoadAccidentDataset(root, state, task, force_reload=force_reload, **options)
        super().__init__(name=f"gnnbench_road_{self.source.state}_{task}", verbose=False)

    def process(self) -> None:
        pass  # the PyG dataset (opened in __init__) owns the tables and the cache

    def has_cache(self) -> bool:
        return False

    def __getitem__(self, idx: int) -> dgl.DGLGraph:
        return road_to_dgl(self.source[idx])

    def __len__(self) -> int:
        return len(self.source)

    def snapshot(self, year: int, month: int | None = None) -> dgl.DGLGraph:
        return road_to_dgl(self.source.snapshot(year, month))

    @property
    def static_graph(self) -> dgl.DGLGraph:
        return road_to_dgl(self.source.static_graph)

    def get_split(self) -> dict[str, list]:
        return self.source.get_split()

    def get_idx_split(self) -> dict[str, torch.Tensor]:
        return self.source.get_idx_split()

    @property
    def months(self) -> list[tuple[int, int]]:
        return self.source.months
