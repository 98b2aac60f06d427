"""Breadth-first search, level-synchronous as CLRS-30 records it."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..recording import Layout, Recording, store


@njit(cache=True)
def bfs_kernel(A, s, aux, rec, t0, cap, out, i):
    """Each step records the reached set and parents before expanding one level."""
    reach_rec, pi_rec = rec
    n = A.shape[0]
    reach = np.zeros(n)
    pi = np.arange(n)
    reach[s] = 1.0
    t = 0
    while True:
        prev = reach.copy()
        if t0 + t < cap:
            store(reach_rec[t0 + t], prev)
            store(pi_rec[t0 + t], pi)
        t += 1
        for a in range(n):
            if prev[a] == 1:
                row = A[a]
                for b in range(n):  # branch-free: each b depends only on its own entries
                    hit = row[b] > 0
                    pi[b] = a if hit & (pi[b] == b) & (b != s) else pi[b]
                    reach[b] = 1.0 if hit else reach[b]
        if np.all(reach == prev):
            break
    out[0][i, :] = pi
    return t


def finalize_bfs(rec: Recording, graphs: np.ndarray, adj: np.ndarray):
    reach, pi = rec.steps
    return {"reach_h": reach, "pi_h": pi}, {"pi": rec.per_sample[0]}


BFS_LAYOUT = Layout(
    steps=((np.dtype(np.float64), lambda n: (n,)), (np.dtype(np.int64), lambda n: (n,))),
    per_sample=((np.dtype(np.int64), lambda n: (n,)),),
    expected_steps=lambda n: n,
)
