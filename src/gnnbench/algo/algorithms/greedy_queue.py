"""The array-backed priority queue CLRS-30 uses in Prim's and Dijkstra's algorithms."""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import overload

from ..recording import TIE, Layout, Recording
from ..trace import OneHotSteps


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


def extract_min(key: np.ndarray, in_queue: np.ndarray) -> int:
    """The node CLRS-30 extracts next: ``np.argsort(key + (1 - in_queue) * 1e9)[0]``.

    The caller stops when that node is not in the queue. Compiled, a tie among
    the minimal keys that includes a queued node returns ``TIE`` (see ``ordering``).
    """
    return int(np.argsort(key + (1.0 - in_queue) * 1e9)[0])


@overload(extract_min)
def _extract_min_compiled(key, in_queue):
    def impl(key, in_queue):
        best = 0
        best_key = np.inf
        ties = 0
        queued_tie = False
        for j in range(key.shape[0]):
            value = key[j] + (1.0 - in_queue[j]) * 1e9
            if value < best_key:
                best, best_key, ties, queued_tie = j, value, 1, in_queue[j] == 1
            elif value == best_key:
                ties += 1
                queued_tie = queued_tie or in_queue[j] == 1
        if ties > 1 and queued_tie:
            return TIE
        return best  # unique, or every tied node is out of the queue: the caller stops
    return impl


def priority_queue_probes(rec: Recording, graphs: np.ndarray, key_name: str):
    """CLRS probes of Prim (``key``) or Dijkstra (``d``) from their step records."""
    pi, key, mark, in_queue, u = rec.steps
    hints = {"pi_h": pi, key_name: key, "mark": mark, "in_queue": in_queue,
             "u": OneHotSteps(u, graphs.shape[1], rec.offsets)}
    return hints, {"pi": rec.per_sample[0]}


QUEUE_LAYOUT = Layout(
    steps=((np.dtype(np.int64), lambda n: (n,)), (np.dtype(np.float64), lambda n: (n,)),
           (np.dtype(np.float64), lambda n: (n,)), (np.dtype(np.float64), lambda n: (n,)),
           (np.dtype(np.int64), lambda n: ())),
    per_sample=((np.dtype(np.int64), lambda n: (n,)),),
    expected_steps=lambda n: n + 1,
)
