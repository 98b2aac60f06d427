"""Checks on user-supplied graphs before an algorithm runs; each failure names its cause."""

from __future__ import annotations

import numbers

import numpy as np

from .specs import ALGORITHMS, SOURCE_ALGORITHMS, check_algorithm

NON_NEGATIVE = frozenset({"dijkstra", "mst_prim"})
ACYCLIC = frozenset({"topological_sort", "dag_shortest_paths"})


def check_graph(name: str, A: object, s: object = None) -> tuple[np.ndarray, int]:
    """Validate ``(A, s)`` for algorithm ``name``; return ``A`` as an array and ``s`` as int.

    Raises ``ValueError`` naming the failed condition.
    """
    check_algorithm(name)
    A = _check_matrix(A)
    n = A.shape[0]
    source = _check_source(name, s, n)
    if name in NON_NEGATIVE and (A < 0).any():
        i, j = np.argwhere(A < 0)[0]
        raise ValueError(f"{name} requires non-negative weights, but A[{i}, {j}] = {A[i, j].item()!r} is negative")
    if name in ACYCLIC:
        cycle_node = node_on_cycle(A)
        if cycle_node is not None:
            raise ValueError(f"{name} requires a directed acyclic graph, but node {cycle_node} lies on a "
                             "directed cycle of A (A[i, j] != 0 is an edge i -> j; self-loops count)")
    return A, source


def _check_matrix(A: object) -> np.ndarray:
    A = np.asarray(A)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square n x n weight matrix, got shape {A.shape}")
    if A.shape[0] == 0:
        raise ValueError("A must have at least one node, got shape (0, 0)")
    if A.dtype == bool:
        A = A.astype(np.int64)
    if not (np.issubdtype(A.dtype, np.integer) or A.dtype in (np.float32, np.float64)):
        raise ValueError(f"A must hold real numbers (an integer, bool, float32 or float64 dtype), got dtype {A.dtype}")
    if np.issubdtype(A.dtype, np.floating) and not np.isfinite(A).all():
        i, j = np.argwhere(~np.isfinite(A))[0]
        raise ValueError(f"A must be finite, but A[{i}, {j}] = {A[i, j].item()!r}")
    return A


def _check_source(name: str, s: object, n: int) -> int:
    if name not in SOURCE_ALGORITHMS:
        if s is not None:
            raise ValueError(f"{name} takes no source node, but s={s!r} was given; "
                             f"algorithms with a source: {', '.join(a for a in ALGORITHMS if a in SOURCE_ALGORITHMS)}")
        return 0
    if s is None:
        raise ValueError(f"{name} needs a source node: pass s, an integer in [0, {n})")
    if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
        raise ValueError(f"source node s must be an integer in [0, {n}), got {s!r}")
    if not 0 <= int(s) < n:
        raise ValueError(f"source node s={int(s)} is out of range for a graph of {n} nodes (valid: 0..{n - 1})")
    return int(s)


def node_on_cycle(A: np.ndarray) -> int | None:
    """A node on a directed cycle of ``A != 0`` (self-loops included), or None for a DAG."""
    edges = A != 0
    in_degree = edges.sum(axis=0)
    alive = np.ones(A.shape[0], dtype=bool)
    frontier = list(np.flatnonzero(in_degree == 0))
    while frontier:
        u = frontier.pop()
        alive[u] = False
        for v in np.flatnonzero(edges[u]):
            in_degree[v] -= 1
            if in_degree[v] == 0:
                frontier.append(v)
    if not alive.any():
        return None
    # Walk backwards inside the leftover subgraph (every node there keeps a live predecessor)
    # until a node repeats: that node is on a cycle.
    node = int(np.flatnonzero(alive)[0])
    seen = set()
    while node not in seen:
        seen.add(node)
        node = int(np.flatnonzero(edges[:, node] & alive)[0])
    return node
