"""Minimum spanning trees: Kruskal (union-find with path compression) and Prim."""

from __future__ import annotations

import numpy as np
from numba import njit

from .. import memory
from ..recording import NEVER, TIE, Layout, Recording
from ..trace import EventMask, RecordedSteps, OneHotSteps
from .greedy_queue import greedy_queue_steps, priority_queue_probes
from .ordering import argsort_exact, has_ties

# Columns of Kruskal's scalar step record.
K_U, K_V, K_ROOT_U, K_ROOT_V, K_PHASE = range(5)


@njit(cache=True)
def upper_edges(A):
    """Edges (i, j), i < j, with A[i, j] > 0 in row-major order, and their weights."""
    n = A.shape[0]
    count = 0
    for a in range(n):
        for b in range(a + 1, n):
            if A[a, b] > 0:
                count += 1
    lx = np.empty(count, dtype=np.int64)
    ly = np.empty(count, dtype=np.int64)
    wts = np.empty(count)
    e = 0
    for a in range(n):
        for b in range(a + 1, n):
            if A[a, b] > 0:
                lx[e] = a
                ly[e] = b
                wts[e] = A[a, b]
                e += 1
    return lx, ly, wts


@njit(cache=True, _nrt=False)
def _kruskal_push(pi, mask_u, mask_v, u, v, root_u, root_v, phase, rec, t0, t, cap):
    # Without numba's reference counting (nothing is allocated): it would cost an atomic
    # operation per array per call.
    row = t0 + t
    if row < cap:
        pi_rec, u_rec, v_rec, scal = rec[0][row], rec[1][row], rec[2][row], rec[3][row]
        for j in range(pi.shape[0]):
            pi_rec[j] = pi[j]
            u_rec[j] = mask_u[j]
            v_rec[j] = mask_v[j]
        scal[K_U] = u
        scal[K_V] = v
        scal[K_ROOT_U] = root_u
        scal[K_ROOT_V] = root_v
        scal[K_PHASE] = phase
    return t + 1


@njit(cache=True)
def mst_kruskal_kernel(A, s, aux, rec, t0, cap, out, i):
    """Kruskal; ``out[0][i]`` gets the step at which each edge joins the tree.

    ``aux[i]``, when given, is the edge order (NumPy's argsort of the weights in
    the caller's dtype), padded with -1.
    """
    n = A.shape[0]
    joined = out[0][i]
    joined[:, :] = NEVER
    pi = np.arange(n)
    zeros = np.zeros(n)
    t = _kruskal_push(pi, zeros, zeros, 0, 0, 0, 0, 0, rec, t0, 0, cap)
    lx, ly, wts = upper_edges(A)
    if aux.shape[0] > 0:
        order = aux[i, : wts.shape[0]].copy()
    else:
        order = argsort_exact(wts)
        if has_ties(order, wts.shape[0]):
            return TIE
    mask_u = np.zeros(n)
    mask_v = np.zeros(n)
    for e in order:
        u = lx[e]
        v = ly[e]
        root_u = u
        root_v = v
        mask_u[:] = 0.0
        mask_v[:] = 0.0
        mask_u[u] = 1.0
        mask_v[v] = 1.0
        t = _kruskal_push(pi, mask_u, mask_v, u, v, root_u, root_v, 1, rec, t0, t, cap)
        while pi[root_u] != root_u:
            root_u = pi[root_u]
            for w in range(n):
                if mask_u[w] == 1:
                    pi[w] = root_u
            mask_u[root_u] = 1.0
            t = _kruskal_push(pi, mask_u, mask_v, u, v, root_u, root_v, 1, rec, t0, t, cap)
        while pi[root_v] != root_v:
            root_v = pi[root_v]
            for w in range(n):
                if mask_v[w] == 1:
                    pi[w] = root_v
            mask_v[root_v] = 1.0
            t = _kruskal_push(pi, mask_u, mask_v, u, v, root_u, root_v, 2, rec, t0, t, cap)
        if root_u != root_v:
            joined[u, v] = t
            joined[v, u] = t
            if root_u < root_v:
                pi[root_u] = root_v
            else:
                pi[root_v] = root_u
        t = _kruskal_push(pi, mask_u, mask_v, u, v, root_u, root_v, 0, rec, t0, t, cap)
    return t


@njit(cache=True)
def mst_prim_kernel(A, s, aux, rec, t0, cap, out, i):
    return greedy_queue_steps(A, s, rec, t0, cap, out, i, False)


# --- from recordings to CLRS probes --------------------------------------------

def finalize_mst_kruskal(rec: Recording, graphs: np.ndarray, adj: np.ndarray):
    pi, mask_u, mask_v, scal = rec.steps
    joined = rec.per_sample[0]
    n = graphs.shape[1]
    hints = {
        "in_mst_h": EventMask(joined, memory.zeros(joined.shape), rec.offsets),
        "pi": RecordedSteps(pi, rec.offsets, np.int64),
        "u": OneHotSteps(scal[:, K_U], n, rec.offsets),
        "v": OneHotSteps(scal[:, K_V], n, rec.offsets),
        "root_u": OneHotSteps(scal[:, K_ROOT_U], n, rec.offsets),
        "root_v": OneHotSteps(scal[:, K_ROOT_V], n, rec.offsets),
        "mask_u": RecordedSteps(mask_u, rec.offsets, np.float64),
        "mask_v": RecordedSteps(mask_v, rec.offsets, np.float64),
        "phase": OneHotSteps(scal[:, K_PHASE], 3, rec.offsets),
    }
    in_mst = memory.empty(joined.shape)
    np.less(joined, NEVER, out=in_mst)
    return hints, {"in_mst": in_mst}


def finalize_mst_prim(rec: Recording, graphs: np.ndarray, adj: np.ndarray):
    return priority_queue_probes(rec, graphs, "key")


KRUSKAL_LAYOUT = Layout(  # pi as int32, the masks as uint8: exact (see RecordedSteps)
    steps=((np.dtype(np.int32), lambda n: (n,)), (np.dtype(np.uint8), lambda n: (n,)),
           (np.dtype(np.uint8), lambda n: (n,)), (np.dtype(np.int64), lambda n: (5,))),
    per_sample=((np.dtype(np.int64), lambda n: (n, n)),),
    expected_steps=lambda n: 5 * n + 2,
)
