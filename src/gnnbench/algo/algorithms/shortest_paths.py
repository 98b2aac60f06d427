"""Single-source and all-pairs shortest paths: Dijkstra, Bellman-Ford, Floyd-Warshall.

DAG shortest paths shares the DFS walker and lives in ``dfs_machine``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..recording import NEVER, Layout, Recording, store
from ..trace import EventMask, OneHotSteps
from .greedy_queue import greedy_queue_steps, priority_queue_probes

NEGATIVE_CYCLE = -1  # kernel error code


@njit(cache=True)
def dijkstra_kernel(A, s, aux, rec, t0, cap, out, i):
    return greedy_queue_steps(A, s, rec, t0, cap, out, i, True)


@njit(cache=True)
def bellman_ford_kernel(A, s, aux, rec, t0, cap, out, i):
    """Synchronous relaxation rounds until distances stop changing.

    Without a reachable negative cycle that happens within n rounds; CLRS-30's
    loop would never end otherwise, so more rounds report ``NEGATIVE_CYCLE``.
    """
    pi_rec, d_rec, msk_rec = rec
    n = A.shape[0]
    d = np.zeros(n)
    pi = np.arange(n)
    msk = np.zeros(n)
    msk[s] = 1.0
    t = 0
    while True:
        if t > n + 1:
            return NEGATIVE_CYCLE
        prev_d = d.copy()
        prev_msk = msk.copy()
        if t0 + t < cap:
            store(pi_rec[t0 + t], pi)
            store(d_rec[t0 + t], prev_d)
            store(msk_rec[t0 + t], prev_msk)
        t += 1
        for u in range(n):
            if prev_msk[u] == 1:
                row, base = A[u], prev_d[u]
                for v in range(n):  # branch-free: each v depends only on its own entries
                    candidate = base + row[v]
                    edge = row[v] != 0
                    take = edge & ((msk[v] == 0) | (candidate < d[v]))
                    d[v] = candidate if take else d[v]
                    pi[v] = u if take else pi[v]
                    msk[v] = 1.0 if edge else msk[v]
        if np.all(d == prev_d):
            break
    out[0][i, :] = pi
    return t


@njit(cache=True)
def floyd_warshall_kernel(A, s, aux, rec, t0, cap, out, i):
    """One step per intermediate node k, recorded before relaxing through k.

    ``msk`` (reachable pairs) only ever switches on, so instead of a step buffer
    ``out[1][i]`` receives the step at which each pair becomes reachable.
    """
    pi_rec, d_rec, k_rec = rec
    events = out[1][i]
    events[:, :] = NEVER
    n = A.shape[0]
    D = A.copy()
    Pi = np.empty((n, n))
    msk = np.empty((n, n))
    for a in range(n):
        for b in range(n):
            Pi[a, b] = a
            msk[a, b] = 1.0 if A[a, b] + (1.0 if a == b else 0.0) != 0 else 0.0
    prev_D = np.empty_like(D)  # distances add in A's dtype, as CLRS-30's D = copy(A)
    prev_msk = np.empty((n, n))
    for k in range(n):
        prev_D[:, :] = D
        prev_msk[:, :] = msk
        if t0 + k < cap:
            pi_rec[t0 + k] = Pi
            d_rec[t0 + k] = prev_D
            k_rec[t0 + k] = k
        for a in range(n):
            if prev_msk[a, k] > 0:
                for b in range(n):
                    if prev_msk[k, b] > 0:
                        through = prev_D[a, k] + prev_D[k, b]
                        if msk[a, b] == 0 or through < D[a, b]:
                            D[a, b] = through
                            Pi[a, b] = Pi[k, b]
                        if msk[a, b] == 0:
                            msk[a, b] = 1.0
                            events[a, b] = k + 1
    out[0][i] = Pi
    return n


# --- from recordings to CLRS probes --------------------------------------------

def finalize_dijkstra(rec: Recording, graphs: np.ndarray, adj: np.ndarray):
    return priority_queue_probes(rec, graphs, "d")


def finalize_bellman_ford(rec: Recording, graphs: np.ndarray, adj: np.ndarray):
    pi, d, msk = rec.steps
    return {"pi_h": pi, "d": d, "msk": msk}, {"pi": rec.per_sample[0]}


def finalize_floyd_warshall(rec: Recording, graphs: np.ndarray, adj: np.ndarray):
    Pi, D, k = rec.steps
    Pi_out, reachable = rec.per_sample
    if graphs.dtype != np.float64:
        D = D.astype(graphs.dtype)  # CLRS-30's D = copy(A) keeps A's dtype
    hints = {"Pi_h": Pi, "D": D, "msk": EventMask(reachable, adj, rec.offsets),
             "k": OneHotSteps(k, graphs.shape[1], rec.offsets)}
    return hints, {"Pi": Pi_out}


SCALAR_ROUNDS_LAYOUT = Layout(
    steps=((np.dtype(np.int64), lambda n: (n,)), (np.dtype(np.float64), lambda n: (n,)),
           (np.dtype(np.float64), lambda n: (n,))),
    per_sample=((np.dtype(np.int64), lambda n: (n,)),),
    expected_steps=lambda n: n + 1,
)
FLOYD_WARSHALL_LAYOUT = Layout(
    steps=((np.dtype(np.float64), lambda n: (n, n)), (np.dtype(np.float64), lambda n: (n, n)),
           (np.dtype(np.int64), lambda n: ())),
    per_sample=((np.dtype(np.float64), lambda n: (n, n)), (np.dtype(np.int64), lambda n: (n, n))),
    expected_steps=lambda n: n,
)
