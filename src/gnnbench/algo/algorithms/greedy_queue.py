"""The array-backed priority queue CLRS-30 uses in Prim's and Dijkstra's algorithms."""

from __future__ import annotations

import numpy as np
from numba import njit

from ..recording import Layout, Recording, one_hot



@njit(cache=True)
def priority_queue_push(pi, key, mark, in_queue, u, rec, t0, t, cap):
    """Step record shared by Prim and Dijkstra: pi, key/distance, mark, in_queue, u."""
    row = t0 + t
    if row < cap:
        rec[0][row, :] = pi
        rec[1][row, :] = key
        rec[2][row, :] = mark
        rec[3][row, :] = in_queue
        rec[4][row] = u
    return t + 1


@njit(cache=True)
def queue_keys(key, in_queue):
    """CLRS-30 extracts ``np.argsort(queue_keys(key, in_queue))[0]`` as the next node."""
    return key + (1.0 - in_queue) * 1e9


def priority_queue_probes(rec: Recording, graphs: np.ndarray, key_name: str):
    """CLRS probes of Prim (``key``) or Dijkstra (``d``) from their step records."""
    pi, key, mark, in_queue, u = rec.steps
    hints = {"pi_h": pi.copy(), key_name: key.copy(), "mark": mark.copy(), "in_queue": in_queue.copy(),
             "u": one_hot(u, graphs.shape[1])}
    return hints, {"pi": rec.per_sample[0].copy()}


QUEUE_LAYOUT = Layout(
    steps=((np.dtype(np.int64), lambda n: (n,)), (np.dtype(np.float64), lambda n: (n,)),
           (np.dtype(np.float64), lambda n: (n,)), (np.dtype(np.float64), lambda n: (n,)),
           (np.dtype(np.int64), lambda n: ())),
    per_sample=((np.dtype(np.int64), lambda n: (n,)),),
    steps_per_node=1,
)
