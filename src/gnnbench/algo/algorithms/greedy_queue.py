"""The array-backed priority queue CLRS-30 uses in Prim's and Dijkstra's algorithms."""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import overload

from ..recording import NEVER, TIE, Layout, Recording
from ..trace import OneHotSteps, StepIntervals, StepUpdates


def extract_min(key: np.ndarray, in_queue: np.ndarray, values: np.ndarray, bits: np.ndarray) -> int:
    """The node CLRS-30 extracts next: ``np.argsort(key + (1 - in_queue) * 1e9)[0]``.

    The caller stops when that node is not in the queue. Compiled, a tie among
    the minimal keys that includes a queued node returns ``TIE`` (see ``ordering``);
    ``values`` (float64) and ``bits`` (its int64 view) are scratch space for that version.
    """
    return int(np.argsort(key + (1.0 - in_queue) * 1e9)[0])


@overload(extract_min, jit_options={"_nrt": False})  # no reference counting per call
def _extract_min_compiled(key, in_queue, values, bits):
    # Non-negative doubles order as their int64 bit patterns, so the minimum is an integer
    # minimum, which vectorises (a floating-point one does not); branch-free passes then count
    # the keys equal to it. A negative key (or -0.0) sends the search down the exact float path.
    def impl(key, in_queue, values, bits):
        n = key.shape[0]
        for j in range(n):
            values[j] = key[j] + (1.0 - in_queue[j]) * 1e9
        best = np.int64(0x7FFFFFFFFFFFFFFF)
        for j in range(n):
            best = min(best, bits[j])
        if best < 0:
            return _float_extract_min(values, in_queue)
        ties = 0
        queued = 0
        for j in range(n):
            hit = bits[j] == best
            ties += hit
            queued += hit & (in_queue[j] == 1.0)
        if ties > 1 and queued > 0:
            return TIE
        for j in range(n):  # unique, or every tied node is out of the queue: the caller stops
            if bits[j] == best:
                return j
        return 0
    return impl


@njit(cache=True)
def _float_extract_min(values, in_queue):
    best_key = np.inf
    for j in range(values.shape[0]):
        best_key = min(best_key, values[j])
    ties = 0
    queued = False
    first = -1
    for j in range(values.shape[0]):
        if values[j] == best_key:
            ties += 1
            queued = queued or in_queue[j] == 1.0
            first = j if first < 0 else first
    if ties > 1 and queued:
        return TIE
    return max(first, 0)


def record_updates(changed, words, key, u, nodes, keys, parents, e):
    """Append an update ``(v, key[v], u)`` to ``nodes``/``keys``/``parents`` at ``e``, ``e + 1``, ...
    for each node ``v`` (in order) with ``changed[v]`` (uint8) set; returns the new ``e``.
    ``words`` is ``changed`` (zero-padded to whole words) viewed as uint64: compiled, this
    finds the few changed nodes of a step a word (8 nodes) at a time."""
    for v in range(key.shape[0]):
        if changed[v]:
            nodes[e] = v
            keys[e] = key[v]
            parents[e] = u
            e += 1
    return e


@overload(record_updates, jit_options={"_nrt": False})
def _record_updates_compiled(changed, words, key, u, nodes, keys, parents, e):
    def impl(changed, words, key, u, nodes, keys, parents, e):
        for w in range(words.shape[0]):
            word = words[w]
            while word:  # node 8w + k is byte k: little-endian (every platform numba targets)
                v = 8 * w + (np.int64(trailing_zeros(word)) >> 3)
                nodes[e] = v
                keys[e] = key[v]
                parents[e] = u
                e += 1
                word &= word - np.uint64(1)
        return e
    return impl


def greedy_queue_steps(A, s, rec, t0, cap, out, i, shortest):
    """Prim's (``shortest=False``: a node's key is its cheapest edge to the tree) or
    Dijkstra's (``shortest=True``: its distance) algorithm with CLRS-30's array queue,
    one step recorded per extraction (the first before any); returns the step count.

    A step changes the keys and ``pi`` of a few nodes only, so steps record those
    updates (see ``StepUpdates``): row ``r`` of ``u_rec`` holds the node extracted
    (the source on a trace's first row) and ``end_rec[r]`` the number of updates
    recorded up to and including row r, the updates ``(node, key, pi)`` going to the
    flattened update buffers in step order (at most n - 1 per step, so they fit
    wherever the rows do). ``mark`` and ``in_queue`` switch once each way, so
    ``out[1][i]`` / ``out[2][i]`` receive the step at which each node joins / leaves
    the queue (``NEVER`` if it does not). Called from a kernel this is the compiled
    version below; from ``kernel.py_func`` (a rerun after tied keys) it runs as Python,
    with ``extract_min`` asking NumPy. The loops are written out here, not in helpers:
    arrays passed to helper calls cost atomic reference counting that would dominate.
    """
    node_rec, key_rec, pi_rec, u_rec, end_rec = rec
    nodes, keys, parents = node_rec.reshape(-1), key_rec.reshape(-1), pi_rec.reshape(-1)
    pi_out, enter, leave = out[0][i], out[1][i], out[2][i]
    n = A.shape[0]
    key = np.zeros(n)
    mark = np.zeros(n)
    in_queue = np.zeros(n)
    pi = np.arange(n)
    values = np.empty(n)
    bits = values.view(np.int64)
    changed = np.zeros(-(-n // 8) * 8, dtype=np.uint8)
    words = changed.view(np.uint64)
    e = end_rec[t0 - 1] if t0 > 0 else 0  # updates recorded by the traces before this one
    for v in range(n):
        enter[v] = NEVER
        leave[v] = NEVER
    in_queue[s] = 1.0
    enter[s] = 0
    u = s
    t = 0
    while True:
        row = t0 + t
        if row < cap:
            u_rec[row] = u
            end_rec[row] = e
        t += 1
        if t > n:  # n extractions
            break
        u = extract_min(key, in_queue, values, bits)
        if u == TIE:
            return TIE
        if in_queue[u] == 0:
            break
        mark[u] = 1.0
        in_queue[u] = 0.0
        leave[u] = t
        base = key[u] if shortest else 0.0  # Prim: 0.0 + A[u, v] is A[u, v]
        for v in range(n):  # branch-free (random edges would mispredict); v depends only on its entries
            weight = A[u, v]
            candidate = base + weight
            take = (weight != 0) & (mark[v] == 0) & ((in_queue[v] == 0) | (candidate < key[v]))
            enter[v] = t if take & (in_queue[v] == 0) else enter[v]
            pi[v] = u if take else pi[v]
            key[v] = candidate if take else key[v]
            in_queue[v] = 1.0 if take else in_queue[v]
            changed[v] = take
        if t0 + t < cap:  # the updates of the next row (a longer trace is rerun with more rows)
            e = record_updates(changed, words, key, u, nodes, keys, parents, e)
    for v in range(n):
        pi_out[v] = pi[v]
    return t


@overload(greedy_queue_steps)
def _greedy_queue_steps_compiled(A, s, rec, t0, cap, out, i, shortest):
    return greedy_queue_steps


def priority_queue_probes(rec: Recording, graphs: np.ndarray, key_name: str):
    """CLRS probes of Prim (``key``) or Dijkstra (``d``) from their step records."""
    nodes, keys, parents, u, ends = rec.steps
    pi_out, enter, leave = rec.per_sample
    n = graphs.shape[1]
    updates = int(ends[-1]) if ends.shape[0] else 0
    nodes, keys, parents = (buf.reshape(-1)[:updates] for buf in (nodes, keys, parents))
    never = np.full_like(leave, NEVER)
    hints = {"pi_h": StepUpdates(np.arange(n), nodes, parents, ends, rec.offsets, np.int64),
             key_name: StepUpdates(np.zeros(n), nodes, keys, ends, rec.offsets, np.float64),
             "mark": StepIntervals(leave, never, rec.offsets),
             "in_queue": StepIntervals(enter, leave, rec.offsets), "u": OneHotSteps(u, n, rec.offsets)}
    return hints, {"pi": pi_out}


# Step buffers: updated nodes (int32), their keys and pi (int32), flattened in step order
# (n per row of capacity); the extracted node and the running update count per step.
QUEUE_LAYOUT = Layout(
    steps=((np.dtype(np.int32), lambda n: (n,)), (np.dtype(np.float64), lambda n: (n,)),
           (np.dtype(np.int32), lambda n: (n,)), (np.dtype(np.int64), lambda n: ()),
           (np.dtype(np.int64), lambda n: ())),
    per_sample=((np.dtype(np.int64), lambda n: (n,)), (np.dtype(np.int64), lambda n: (n,)),
                (np.dtype(np.int64), lambda n: (n,))),
    expected_steps=lambda n: n + 1,
)
