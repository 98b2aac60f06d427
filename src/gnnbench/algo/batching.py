"""Hints in CLRS-30's batch layout: time-first, ``[max_steps, num, ...]``, zero-padded.

A trace set stores each hint with the steps of all traces concatenated
(``offsets`` marks where trace i's steps begin), dense or encoded. These compiled
scatters write that into the batch layout, ``out[t, i]`` being step t of trace i
and 0 from trace i's last step on. Each writes every entry of its output, padding
included, so outputs can start uninitialised, except the scatters of mostly-zero
hints (``pad_event_ones``, ``pad_one_hot`` with ``zeroed``), which write only the
ones into an output zeroed beforehand (``memory.zero``: C's ``memset``, several
times faster than writing every entry).
They loop over t outermost, so the output is written front to back, and outputs
larger than the last-level cache (``STREAM_BYTES``) that repeat per-trace values
(``pad_repeated``, ``pad_events``) are written with non-temporal stores, which skip
reading each cache line before overwriting it (the dense edge hints of bridges and
SCC at n = 64 are hundreds of megabytes per batch; copies from large step buffers,
which must read as much as they write, measured faster with ordinary stores).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

STREAM_BYTES = 32 << 20  # outputs at least this large are written with non-temporal stores


@intrinsic
def _stream_store(typingctx, out, t, i, j, value):
    """``out[t, i, j] = value`` as a non-temporal store (C-contiguous 3-d ``out``, no bounds check)."""
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        indices = [context.cast(builder, arg, ty, types.intp)
                   for arg, ty in zip(args[1:4], signature.args[1:4])]
        pointer = cgutils.get_item_pointer(context, builder, signature.args[0], array, indices)
        stored = context.cast(builder, args[4], signature.args[4], signature.args[0].dtype)
        store = builder.store(stored, pointer)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()
    return types.void(out, t, i, j, value), codegen


@intrinsic
def _store_fence(typingctx):
    """Order the non-temporal stores before everything after (x86 ``sfence``; a full fence elsewhere)."""
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.void(), codegen


@njit(inline="always")
def _put(out, t, i, j, value, stream):
    if stream:
        _stream_store(out, t, i, j, value)
    else:
        out[t, i, j] = value


@njit(cache=True)
def pad_rows(buffer, quantity, offsets, out):
    """Quantity ``quantity`` of the C-contiguous ``buffer`` ``[sum T_i, quantities, m]`` (any real
    dtype; a plain ``[sum T_i, m]`` array as ``[sum T_i, 1, m]``, quantity 0) into ``out``
    ``[T, num, m]`` (indexing the quantity here, not through a strided view, keeps it vectorised)."""
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
def pad_one_hot(index, offsets, out, zeroed):
    """Class indices ``index`` ``[sum T_i, k]`` one-hot into ``out`` ``[T, num, k, classes]``;
    with ``zeroed`` (``out`` already zero: few classes per cache line) only the ones are written."""
    max_steps, num, k, classes = out.shape
    for t in range(max_steps):
        for i in range(num):
            if not zeroed:
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
    stream = out.size * out.itemsize >= STREAM_BYTES
    for t in range(max_steps):
        for i in range(num):
            live = t < offsets[i + 1] - offsets[i]
            for j in range(m):
                _put(out, t, i, j, values[i, j] if live else 0.0, stream)
    _store_fence()


@njit(cache=True)
def pad_events(events, base, offsets, out):
    """Event masks into ``out`` ``[T, num, m]``: 1 where ``t >= events[i, j]``, else ``base[i, j]``
    (``events`` and ``base`` ``[num, m]``, event steps local to each trace). Each trace's
    current mask is kept in cache, updated at its (few) events, and copied out per step."""
    max_steps, num, m = out.shape
    order, count = _event_order(events, offsets)
    state = base.copy()
    active = np.zeros(num, dtype=np.int64)  # entries of order[i] whose event has happened
    stream = out.size * out.itemsize >= STREAM_BYTES
    for t in range(max_steps):
        for i in range(num):
            live = t < offsets[i + 1] - offsets[i]
            while live and active[i] < count[i] and events[i, order[i, active[i]]] <= t:
                state[i, order[i, active[i]]] = 1.0
                active[i] += 1
            for j in range(m):
                _put(out, t, i, j, state[i, j] if live else 0.0, stream)
    _store_fence()


@njit(cache=True)
def pad_event_ones(events, offsets, out):
    """``pad_events`` with a zero base into the zeroed ``out``: only the ones are written."""
    max_steps, num, m = out.shape
    order, count = _event_order(events, offsets)
    active = np.zeros(num, dtype=np.int64)
    for t in range(max_steps):
        for i in range(num):
            if t < offsets[i + 1] - offsets[i]:
                while active[i] < count[i] and events[i, order[i, active[i]]] <= t:
                    active[i] += 1
                for k in range(active[i]):
                    out[t, i, order[i, k]] = 1.0


@njit(cache=True)
def event_ones(events, offsets):
    """How many ones the event masks hold over all steps of their traces."""
    num, m = events.shape
    ones = 0
    for i in range(num):
        steps = offsets[i + 1] - offsets[i]
        for j in range(m):
            ones += max(steps - events[i, j], 0)
    return ones


@njit(cache=True)
def _event_order(events, offsets):
    """Each trace's entries whose event falls within its steps (``order[i, :count[i]]``),
    by event step (a counting sort: steps are bounded by the trace's length)."""
    num, m = events.shape
    order = np.empty((num, m), dtype=np.int64)
    count = np.zeros(num, dtype=np.int64)
    for i in range(num):
        steps = offsets[i + 1] - offsets[i]
        starts = np.zeros(steps + 1, dtype=np.int64)
        for j in range(m):
            if events[i, j] < steps:
                starts[events[i, j] + 1] += 1
        for t in range(steps):
            starts[t + 1] += starts[t]
        count[i] = starts[steps]
        for j in range(m):
            if events[i, j] < steps:
                order[i, starts[events[i, j]]] = j
                starts[events[i, j]] += 1
    return order, count


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
