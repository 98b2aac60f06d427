"""Hints in CLRS-30's batch layout: time-first, ``[max_steps, num, ...]``, zero-padded.

A trace set stores each hint with the steps of all traces concatenated
(``offsets`` marks where trace i's steps begin), dense or encoded. These compiled
scatters write that into the batch layout, ``out[t, i]`` being step t of trace i
and 0 from trace i's last step on. Each writes every entry of its output, padding
included, so outputs can start uninitialised. They loop over t outermost, so the
output is written front to back.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def pad_dense(value, offsets, out):
    """``value`` ``[sum T_i, m]`` (any real dtype) into ``out`` ``[T, num, m]``."""
    max_steps, num, m = out.shape
    for t in range(max_steps):
        for i in range(num):
            if t < offsets[i + 1] - offsets[i]:
                src = offsets[i] - offsets[0] + t
                for j in range(m):
                    out[t, i, j] = value[src, j]
            else:
                for j in range(m):
                    out[t, i, j] = 0.0


@njit(cache=True)
def pad_rows(buffer, quantity, offsets, out):
    """Quantity ``quantity`` of the C-contiguous ``buffer`` ``[sum T_i, quantities, m]`` into
    ``out`` ``[T, num, m]`` (``pad_dense`` of a strided view would not vectorise)."""
    max_steps, num, m = out.shape
    for t in range(max_steps):
        for i in range(num):
            if t < offsets[i + 1] - offsets[i]:
                src = offsets[i] - offsets[0] + t
                for j in range(m):
                    out[t, i, j] = buffer[src, quantity, j]
            else:
                for j in range(m):
                    out[t, i, j] = 0.0


@njit(cache=True)
def pad_one_hot(index, offsets, out):
    """Class indices ``index`` ``[sum T_i, k]`` one-hot into ``out`` ``[T, num, k, classes]``."""
    max_steps, num, k, classes = out.shape
    for t in range(max_steps):
        for i in range(num):
            for a in range(k):  # zeros first (a plain vectorised fill), then the ones
                for c in range(classes):
                    out[t, i, a, c] = 0.0
            if t < offsets[i + 1] - offsets[i]:
                src = offsets[i] - offsets[0] + t
                for a in range(k):
                    out[t, i, a, index[src, a]] = 1.0


@njit(cache=True)
def pad_repeated(values, offsets, out):
    """Trace i's ``values[i]`` (``[num, m]``) at each of its steps into ``out`` ``[T, num, m]``."""
    max_steps, num, m = out.shape
    for t in range(max_steps):
        for i in range(num):
            live = t < offsets[i + 1] - offsets[i]
            for j in range(m):
                out[t, i, j] = values[i, j] if live else 0.0


@njit(cache=True)
def pad_events(events, base, offsets, out):
    """Event masks into ``out`` ``[T, num, m]``: 1 where ``t >= events[i, j]``, else ``base[i, j]``
    (``events`` and ``base`` ``[num, m]``, event steps local to each trace)."""
    max_steps, num, m = out.shape
    for t in range(max_steps):
        for i in range(num):
            if t < offsets[i + 1] - offsets[i]:
                for j in range(m):
                    out[t, i, j] = 1.0 if events[i, j] <= t else base[i, j]
            else:
                for j in range(m):
                    out[t, i, j] = 0.0


@njit(cache=True)
def pad_intervals(start, stop, offsets, out):
    """1 where ``start[i, j] <= t < stop[i, j]``, else 0, into ``out`` ``[T, num, m]``
    (``start`` and ``stop`` ``[num, m]``, steps local to each trace)."""
    max_steps, num, m = out.shape
    for t in range(max_steps):
        for i in range(num):
            live = t < offsets[i + 1] - offsets[i]
            for j in range(m):
                out[t, i, j] = np.float64(live & (start[i, j] <= t) & (t < stop[i, j]))


@njit(cache=True)
def pad_updates(initial, nodes, values, ends, offsets, out):
    """Step updates (see ``trace.StepUpdates``) into ``out`` ``[T, num, n]``: trace i's first
    step is ``initial``, each later step its previous one with the updates of that step."""
    max_steps, num, m = out.shape
    for t in range(max_steps):
        for i in range(num):
            if t >= offsets[i + 1] - offsets[i]:
                for j in range(m):
                    out[t, i, j] = 0.0
            elif t == 0:
                for j in range(m):
                    out[t, i, j] = initial[j]
            else:
                for j in range(m):
                    out[t, i, j] = out[t - 1, i, j]
                r = offsets[i] - offsets[0] + t
                for e in range(ends[r - 1], ends[r]):
                    out[t, i, nodes[e]] = values[e]
