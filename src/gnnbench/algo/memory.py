"""Recycled memory for the large arrays of trace batches.

Each ``sample`` call fills a few megabytes of fresh arrays (graphs, step buffers,
probes). Fresh memory costs a page fault and a zeroed page per 4 KiB, and whether
malloc hands back recently freed memory instead depends on its trimming heuristics;
at n = 64 those faults cost as much as running the algorithms. So the blocks behind
these arrays are kept in a small pool and handed out again once nothing refers to
them any more: every NumPy view keeps its base block alive, so a block whose only
references are the pool's own is free, and a block still seen through any view
(or anything holding a view: a trace, a tensor made with ``torch.from_numpy``) is
never reused. At most ``POOL_BYTES`` of blocks are kept (blocks up to half of it are
pooled; a larger one is an ordinary array), like PyTorch's caching allocator keeps
freed GPU memory: the dense CLRS-30 batches of ``TraceSet.clrs_batch()`` reach a few
hundred megabytes at n = 64, and refilling recycled memory costs half as much as
faulting in fresh pages. ``release()`` drops the pool; lower ``POOL_BYTES`` (0 turns
pooling off) to keep less.
"""

from __future__ import annotations

import ctypes
import functools
import math
import sys
import threading

import numpy as np

POOL_BYTES = 1 << 30  # blocks kept for reuse, in use or not
_ALIGN = 64

_pool: list[np.ndarray] = []
_lock = threading.Lock()


def _scan(pool: list[np.ndarray], nbytes: int, free: int) -> int:
    """Index of a block of ``nbytes`` to twice that (plus 1 MiB) with exactly ``free``
    references, else -1; ``free=-1`` returns the reference count of ``pool[0]`` instead."""
    limit = 2 * nbytes + (1 << 20)
    for k in range(len(pool)):
        block = pool[k]
        if free < 0:  # references: the pool's slot, ``block`` and this call's argument
            return sys.getrefcount(block)
        if nbytes <= block.nbytes <= limit and sys.getrefcount(block) == free:  # size first: cheaper
            return k
    return -1


_FREE = _scan([np.empty(1, dtype=np.uint8)], 1, -1)  # references of a block nobody else holds


def _take(nbytes: int) -> np.ndarray:
    """A free pooled block of at least ``nbytes``, else a new one (pooled unless huge)."""
    with _lock:
        k = _scan(_pool, nbytes, _FREE)
        if k >= 0:
            block = _pool.pop(k)
            _pool.append(block)  # most recently used last
            return block
        block = np.empty(max(nbytes, 1), dtype=np.uint8)
        if block.nbytes <= POOL_BYTES // 2:
            _pool.append(block)
            total = sum(b.nbytes for b in _pool)
            while total > POOL_BYTES:
                total -= _pool.pop(0).nbytes  # the least recently used
        return block


def buffers(specs: list[tuple[tuple[int, ...], np.dtype]]) -> tuple[np.ndarray, ...]:
    """Uninitialised arrays of the given shapes and dtypes, from one block (each starting
    a multiple of 64 bytes into it: at least as aligned as malloc's memory)."""
    total, views = _layout(tuple(specs))
    block = _take(total)
    return tuple(np.ndarray(shape, dtype, block, start) for shape, dtype, start in views)


@functools.lru_cache(maxsize=256)
def _layout(specs: tuple[tuple[tuple[int, ...], np.dtype], ...]) -> tuple[int, tuple]:
    """Bytes of the block for ``specs`` and each array's ``(shape, dtype, start)`` in it."""
    views, start = [], 0
    for shape, dtype in specs:
        shape, dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        views.append((shape, dtype, start))
        start += -(-math.prod(shape) * dtype.itemsize // _ALIGN) * _ALIGN
    return start, tuple(views)


def empty(shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """An uninitialised array (``np.empty``) from recycled memory."""
    return buffers([(tuple(shape), np.dtype(dtype))])[0]


def zeros(shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    """A zero-filled array (``np.zeros``) from recycled memory."""
    return zero(empty(shape, dtype))


def zero(array: np.ndarray) -> np.ndarray:
    """``array`` set to zero in place (C's ``memset`` when contiguous: several times
    faster than ``fill(0)`` on large arrays) and returned."""
    if array.flags.c_contiguous:
        ctypes.memset(array.ctypes.data, 0, array.nbytes)
    else:
        array.fill(0)
    return array


def release() -> None:
    """Forget every pooled block (arrays still in use stay valid)."""
    with _lock:
        _pool.clear()


def pooled_bytes() -> int:
    """Bytes of the blocks in the pool, in use or not."""
    with _lock:
        return sum(block.nbytes for block in _pool)
