"""Compiled loops that run one kernel over a batch of graphs.

numba cannot cache code that receives a compiled function as a value, so each
group of kernels sharing a step-buffer layout gets its own loop calling them
directly, ``which`` choosing the kernel. Every loop returns ``(done, status)``:
``done == num`` when all graphs ran, else the graph it stopped at, with
``status`` either a negative kernel status or the step capacity it needed.
"""

from __future__ import annotations

from numba import njit

from .bfs import bfs_kernel
from .dfs_machine import (
    articulation_points_kernel,
    bridges_kernel,
    dag_shortest_paths_kernel,
    dfs_kernel,
    strongly_connected_components_kernel,
    topological_sort_kernel,
)
from .mst import mst_kruskal_kernel, mst_prim_kernel
from .shortest_paths import bellman_ford_kernel, dijkstra_kernel, floyd_warshall_kernel

# ``which`` values.
DFS, TOPOLOGICAL_SORT, ARTICULATION_POINTS, BRIDGES, SCC, DAG_SHORTEST_PATHS = range(6)
PRIM, DIJKSTRA = range(2)


@njit(cache=True)
def _advance(offsets, i, steps, cap) -> bool:
    """Book graph i's steps; False if it failed or overflowed the buffers."""
    if steps < 0 or offsets[i] + steps > cap:
        return False
    offsets[i + 1] = offsets[i] + steps
    return True


@njit(cache=True)
def _status(offsets, i, steps):
    return steps if steps < 0 else offsets[i] + steps


@njit(cache=True)
def dfs_family(which, graphs, sources, aux, rec, out, offsets, start, cap):
    for i in range(start, graphs.shape[0]):
        A, s, t0 = graphs[i], sources[i], offsets[i]
        if which == DFS:
            steps = dfs_kernel(A, s, aux, rec, t0, cap, out, i)
        elif which == TOPOLOGICAL_SORT:
            steps = topological_sort_kernel(A, s, aux, rec, t0, cap, out, i)
        elif which == ARTICULATION_POINTS:
            steps = articulation_points_kernel(A, s, aux, rec, t0, cap, out, i)
        elif which == BRIDGES:
            steps = bridges_kernel(A, s, aux, rec, t0, cap, out, i)
        elif which == SCC:
            steps = strongly_connected_components_kernel(A, s, aux, rec, t0, cap, out, i)
        else:
            steps = dag_shortest_paths_kernel(A, s, aux, rec, t0, cap, out, i)
        if not _advance(offsets, i, steps, cap):
            return i, _status(offsets, i, steps)
    return graphs.shape[0], 0


@njit(cache=True)
def priority_queue_family(which, graphs, sources, aux, rec, out, offsets, start, cap):
    for i in range(start, graphs.shape[0]):
        A, s, t0 = graphs[i], sources[i], offsets[i]
        if which == PRIM:
            steps = mst_prim_kernel(A, s, aux, rec, t0, cap, out, i)
        else:
            steps = dijkstra_kernel(A, s, aux, rec, t0, cap, out, i)
        if not _advance(offsets, i, steps, cap):
            return i, _status(offsets, i, steps)
    return graphs.shape[0], 0


@njit(cache=True)
def bfs_batch(which, graphs, sources, aux, rec, out, offsets, start, cap):
    for i in range(start, graphs.shape[0]):
        steps = bfs_kernel(graphs[i], sources[i], aux, rec, offsets[i], cap, out, i)
        if not _advance(offsets, i, steps, cap):
            return i, _status(offsets, i, steps)
    return graphs.shape[0], 0


@njit(cache=True)
def mst_kruskal_batch(which, graphs, sources, aux, rec, out, offsets, start, cap):
    for i in range(start, graphs.shape[0]):
        steps = mst_kruskal_kernel(graphs[i], sources[i], aux, rec, offsets[i], cap, out, i)
        if not _advance(offsets, i, steps, cap):
            return i, _status(offsets, i, steps)
    return graphs.shape[0], 0


@njit(cache=True)
def bellman_ford_batch(which, graphs, sources, aux, rec, out, offsets, start, cap):
    for i in range(start, graphs.shape[0]):
        steps = bellman_ford_kernel(graphs[i], sources[i], aux, rec, offsets[i], cap, out, i)
        if not _advance(offsets, i, steps, cap):
            return i, _status(offsets, i, steps)
    return graphs.shape[0], 0


@njit(cache=True)
def floyd_warshall_batch(which, graphs, sources, aux, rec, out, offsets, start, cap):
    for i in range(start, graphs.shape[0]):
        steps = floyd_warshall_kernel(graphs[i], sources[i], aux, rec, offsets[i], cap, out, i)
        if not _advance(offsets, i, steps, cap):
            return i, _status(offsets, i, steps)
    return graphs.shape[0], 0
