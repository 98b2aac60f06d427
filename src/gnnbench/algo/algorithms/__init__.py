"""Compiled implementations of the twelve graph algorithms, one entry per name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..recording import Layout, Recording
from . import bfs, dfs_machine, drivers, mst, shortest_paths
from .greedy_queue import QUEUE_LAYOUT

# finalize(recording, graphs in the caller's dtype, their adj probe) -> (hints, outputs)
Finalize = Callable[[Recording, np.ndarray, np.ndarray], tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]


@dataclass(frozen=True)
class Implementation:
    """How to run one algorithm: its batch loop (with ``which``), its single-graph
    kernel (whose ``py_func`` reruns tied samples), what it records, and how that
    recording becomes CLRS probes."""

    batch: Any
    which: int
    kernel: Any
    layout: Layout
    finalize: Finalize
    float32_kernel: bool = False  # runs float32 inputs as float32 (CLRS-30 computes in A's dtype)


_dfs = dfs_machine
IMPLEMENTATIONS: dict[str, Implementation] = {
    "bfs": Implementation(drivers.bfs_batch, 0, bfs.bfs_kernel, bfs.BFS_LAYOUT, bfs.finalize_bfs),
    "dfs": Implementation(drivers.dfs_family, drivers.DFS, _dfs.dfs_kernel, _dfs.DFS_LAYOUT, _dfs.finalize_dfs),
    "topological_sort": Implementation(drivers.dfs_family, drivers.TOPOLOGICAL_SORT, _dfs.topological_sort_kernel,
                                       _dfs.TOPO_LAYOUT, _dfs.finalize_topological_sort),
    "articulation_points": Implementation(drivers.dfs_family, drivers.ARTICULATION_POINTS,
                                          _dfs.articulation_points_kernel, _dfs.CUT_LAYOUT,
                                          _dfs.finalize_articulation_points),
    "bridges": Implementation(drivers.dfs_family, drivers.BRIDGES, _dfs.bridges_kernel, _dfs.BRIDGE_LAYOUT,
                              _dfs.finalize_bridges),
    "strongly_connected_components": Implementation(drivers.dfs_family, drivers.SCC,
                                                    _dfs.strongly_connected_components_kernel, _dfs.SCC_LAYOUT,
                                                    _dfs.finalize_strongly_connected_components),
    "mst_kruskal": Implementation(drivers.mst_kruskal_batch, 0, mst.mst_kruskal_kernel, mst.KRUSKAL_LAYOUT,
                                  mst.finalize_mst_kruskal),
    "mst_prim": Implementation(drivers.priority_queue_family, drivers.PRIM, mst.mst_prim_kernel, QUEUE_LAYOUT,
                               mst.finalize_mst_prim),
    "dijkstra": Implementation(drivers.priority_queue_family, drivers.DIJKSTRA, shortest_paths.dijkstra_kernel,
                               QUEUE_LAYOUT, shortest_paths.finalize_dijkstra),
    "bellman_ford": Implementation(drivers.bellman_ford_batch, 0, shortest_paths.bellman_ford_kernel,
                                   shortest_paths.SCALAR_ROUNDS_LAYOUT, shortest_paths.finalize_bellman_ford),
    "dag_shortest_paths": Implementation(drivers.dfs_family, drivers.DAG_SHORTEST_PATHS,
                                         _dfs.dag_shortest_paths_kernel, _dfs.DAG_LAYOUT,
                                         _dfs.finalize_dag_shortest_paths),
    "floyd_warshall": Implementation(drivers.floyd_warshall_batch, 0, shortest_paths.floyd_warshall_kernel,
                                     shortest_paths.FLOYD_WARSHALL_LAYOUT, shortest_paths.finalize_floyd_warshall,
                                     float32_kernel=True),
}
