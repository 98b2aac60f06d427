"""Running compiled algorithm kernels over batches of graphs and recording their steps.

A kernel is a numba function ``kernel(A, s, aux, rec, t0, cap, out, i) -> steps``
that runs one algorithm on the matrix ``A`` (float64; float32 where the
implementation computes in the input's dtype) from source ``s`` and writes
its state at every step into the step buffers ``rec`` (a tuple of arrays whose
first axis is the global step index), starting at row ``t0``. Rows at or beyond
``cap`` are not written; the kernel still returns the true number of steps, so the
driver can grow the buffers and rerun that sample. Per-sample results go to row
``i`` of the arrays in ``out``. A negative return value is an error code.

Each algorithm declares a ``Layout`` (what to allocate) and a ``finalize`` that
turns the compact recording into CLRS-format fields with vectorised NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit

from . import memory

TIE = -2  # kernel status: tied keys met; rerun this sample in Python (see algorithms.ordering)
NEVER = np.iinfo(np.int64).max  # event step of something that never happens (see trace.EventMask)

# Shape of a buffer row in terms of the graph size n.
ShapeFn = Callable[[int], tuple[int, ...]]


@dataclass(frozen=True)
class Layout:
    """Step buffers (one row per step) and per-sample buffers of a kernel."""

    steps: tuple[tuple[np.dtype, ShapeFn], ...]
    per_sample: tuple[tuple[np.dtype, ShapeFn], ...]
    expected_steps: Callable[[int], int]  # generous steps-per-graph estimate for n nodes


@dataclass(frozen=True)
class Recording:
    """What a batch run produced: trimmed step buffers, per-sample buffers, offsets."""

    steps: tuple[np.ndarray, ...]
    per_sample: tuple[np.ndarray, ...]
    offsets: np.ndarray


class KernelError(Exception):
    """A kernel reported an error code for one sample."""

    def __init__(self, sample: int, code: int) -> None:
        super().__init__(f"sample {sample}: kernel error code {code}")
        self.sample = sample
        self.code = code


def record(batch, which: int, kernel, layout: Layout, graphs: np.ndarray, sources: np.ndarray,
           aux: np.ndarray | None = None) -> Recording:
    """Run a kernel on every graph of ``graphs`` ``[num, n, n]`` and collect its steps.

    ``batch(which, ...)`` is the compiled loop calling the kernel; samples it
    reports as ``TIE`` are rerun through ``kernel.py_func`` (see ``ordering``).
    """
    num, n = graphs.shape[0], graphs.shape[1]
    graphs = np.ascontiguousarray(graphs)
    sources = np.ascontiguousarray(sources, dtype=np.int64)
    if aux is None:
        aux = np.zeros((0, 0), dtype=np.int64)
    cap = max(16, num * layout.expected_steps(n))
    buffers = memory.buffers([((cap, *shape(n)), dtype) for dtype, shape in layout.steps]
                             + [((num, *shape(n)), dtype) for dtype, shape in layout.per_sample])
    rec, out = buffers[:len(layout.steps)], buffers[len(layout.steps):]
    offsets = np.zeros(num + 1, dtype=np.int64)
    start = 0
    while start < num:
        done, status = batch(which, graphs, sources, aux, rec, out, offsets, start, cap)
        if done == num:
            break
        if status == TIE:
            status = kernel.py_func(graphs[done], sources[done], aux, rec, offsets[done], cap, out, done)
            if status >= 0 and offsets[done] + status <= cap:
                offsets[done + 1] = offsets[done] + status
                start = done + 1
                continue
            status = status if status < 0 else offsets[done] + status
        if status < 0:
            raise KernelError(int(done), int(status))
        used = int(offsets[done])
        cap = max(2 * cap, int(status) + cap // 2)
        grown = memory.buffers([((cap, *buf.shape[1:]), buf.dtype) for buf in rec])
        for new, old in zip(grown, rec):
            new[:used] = old[:used]
        rec = grown
        start = done
    total = int(offsets[-1])
    return Recording(steps=tuple(buf[:total] for buf in rec), per_sample=out, offsets=offsets)


def one_hot(index: np.ndarray, classes: int) -> np.ndarray:
    """float64 one-hot encoding along a new last axis (CLRS ``mask_one``/``categorical``)."""
    index = np.asarray(index)
    out = memory.empty((index.size, classes))
    _fill_one_hot(index.reshape(-1).astype(np.int64, copy=False), out)
    return out.reshape(*index.shape, classes)


@njit(cache=True)
def _fill_one_hot(index: np.ndarray, out: np.ndarray) -> None:
    out[:, :] = 0.0
    for j in range(index.shape[0]):
        out[j, index[j]] = 1.0


def expand_events(events: np.ndarray, offsets: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per-step edge masks from event steps: ``1`` from step ``events[i, u, v]`` on,
    ``base[i, u, v]`` before. Returns ``[offsets[-1] - offsets[0], n, n]``."""
    n = events.shape[1]
    out = memory.empty((int(offsets[-1] - offsets[0]), n, n))
    _fill_events(events, offsets, base, out)
    return out


@njit(cache=True)
def _fill_events(events, offsets, base, out):
    for i in range(events.shape[0]):
        first = offsets[i] - offsets[0]
        for t in range(offsets[i + 1] - offsets[i]):
            for u in range(events.shape[1]):
                for v in range(events.shape[2]):  # branch-free select
                    out[first + t, u, v] = 1.0 if events[i, u, v] <= t else base[i, u, v]


def expand_updates(initial: np.ndarray, nodes: np.ndarray, values: np.ndarray, ends: np.ndarray,
                   offsets: np.ndarray, first_row: int, dtype: type) -> np.ndarray:
    """Per-step vectors from step updates (see ``trace.StepUpdates``): the traces of
    ``offsets``, whose rows start at row ``first_row`` of ``ends``. Returns ``[T, n]``."""
    out = memory.empty((int(offsets[-1] - offsets[0]), initial.shape[0]), dtype)
    _fill_updates(initial, nodes, values, ends, offsets, first_row, out)
    return out


@njit(cache=True)
def _fill_updates(initial, nodes, values, ends, offsets, first_row, out):
    for i in range(offsets.shape[0] - 1):
        first = offsets[i] - offsets[0]
        for t in range(offsets[i + 1] - offsets[i]):
            row = out[first + t]
            if t == 0:
                for j in range(row.shape[0]):
                    row[j] = initial[j]
                continue
            previous = out[first + t - 1]
            for j in range(row.shape[0]):
                row[j] = previous[j]
            r = first_row + first + t
            for e in range(ends[r - 1], ends[r]):
                row[nodes[e]] = values[e]


def graph_probe(A: np.ndarray) -> np.ndarray:
    """CLRS ``adj``: 1 where ``A + I`` is non-zero (so the diagonal counts as an edge).

    ``A`` is ``[n, n]`` or a batch ``[num, n, n]``.
    """
    batch = np.ascontiguousarray(A, dtype=np.float64).reshape(-1, A.shape[-2], A.shape[-1])
    out = memory.empty(batch.shape)
    _fill_graph_probe(batch, out)
    return out.reshape(A.shape)


@njit(cache=True)
def _fill_graph_probe(A, out):
    # Branch-free (random graphs would mispredict a branch per entry).
    for g in range(A.shape[0]):
        for i in range(A.shape[1]):
            row, dst = A[g, i], out[g, i]
            for j in range(A.shape[2]):
                dst[j] = np.float64(row[j] + np.float64(i == j) != 0)


@njit(cache=True, inline="always")
def store(dst, src) -> None:
    """``dst[:] = src`` for 1-D arrays as a plain loop (numba's slice assignment is slower)."""
    for j in range(src.shape[0]):
        dst[j] = src[j]


def node_positions(num: int, n: int) -> np.ndarray:
    """CLRS ``pos``: node i at i / n."""
    return np.broadcast_to(np.arange(n) * 1.0 / n, (num, n)).copy()
