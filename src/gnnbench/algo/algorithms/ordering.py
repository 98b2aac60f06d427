"""Sorting with NumPy's exact tie-breaking.

CLRS-30 picks Prim's and Dijkstra's next node with ``np.argsort(keys)[0]`` and
orders Kruskal's edges with ``np.argsort(weights)``. NumPy's default sort is not stable and, on CPUs with
AVX2/AVX-512, its order among equal keys depends on the SIMD kernel in use, so the
only faithful way to break ties is to ask NumPy itself.

Such functions therefore have two implementations (here and in ``greedy_queue``). Called from Python they
use NumPy. Compiled into a kernel (numba), keys without ties have a unique order
that numba computes directly, and tied keys return ``TIE`` so the kernel can stop
with status ``TIE``; the batch driver then reruns that one sample as plain Python
(``kernel.py_func``), where these functions are NumPy again.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.extending import overload


def argsort_exact(x: np.ndarray) -> np.ndarray:
    """``np.argsort(x)``; compiled, an empty array when ``x`` has equal keys."""
    return np.argsort(x).astype(np.int64)


@overload(argsort_exact)
def _argsort_exact_compiled(x):
    def impl(x):
        order = np.argsort(x)
        for j in range(1, order.shape[0]):
            if x[order[j]] == x[order[j - 1]]:
                return np.empty(0, dtype=np.int64)
        return order
    return impl


@njit(cache=True)
def has_ties(order: np.ndarray, count: int) -> bool:
    """Whether ``argsort_exact`` gave up on ``count`` keys (returned no order)."""
    return order.shape[0] != count
