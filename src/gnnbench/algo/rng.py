"""Bit-exact replay of NumPy's legacy ``RandomState`` draws inside numba kernels.

CLRS-30 samples its graphs with ``np.random.RandomState(seed)``. To reproduce its
datasets exactly while generating thousands of graphs without per-sample Python
overhead, we draw the raw 32-bit Mersenne-Twister words from a real
``RandomState`` in bulk and decode them here with the same arithmetic NumPy's
legacy distributions use (``next_double``, binomial inversion, masked rejection
for bounded integers, Fisher-Yates shuffling).

A kernel reads words through a ``cursor``: an int64 array ``[position, overrun]``.
Reading past the end of the word buffer sets ``overrun`` instead of failing, so
the caller can refill the buffer and replay the sample.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_WORDS_PER_DRAW = 2  # a double consumes two 32-bit words


class WordStream:
    """Raw 32-bit words of ``np.random.RandomState(seed)``, drawn in chunks."""

    def __init__(self, seed: int | None) -> None:
        self._rng = np.random.RandomState(seed)

    def draw(self, count: int) -> np.ndarray:
        """The next ``count`` raw words (one MT19937 output each)."""
        # Full-range uint32 ``randint`` returns one raw output per element.
        return self._rng.randint(0, 2**32, size=count, dtype=np.uint32)


@njit(cache=True, inline="always")
def next_uint32(words: np.ndarray, cursor: np.ndarray) -> np.uint64:
    i = cursor[0]
    if i >= words.shape[0]:
        cursor[1] = 1
        return np.uint64(0)
    cursor[0] = i + 1
    return np.uint64(words[i])


@njit(cache=True, inline="always")
def next_double(words: np.ndarray, cursor: np.ndarray) -> float:
    a = next_uint32(words, cursor) >> np.uint64(5)
    b = next_uint32(words, cursor) >> np.uint64(6)
    return (a * 67108864.0 + b) / 9007199254740992.0


@njit(cache=True)
def _bernoulli_inversion(words: np.ndarray, cursor: np.ndarray, p: float) -> int:
    # NumPy's binomial inversion algorithm specialised to n = 1 (p <= 0.5).
    q = 1.0 - p
    qn = np.exp(np.log(q))
    mean = p
    bound = min(1.0, mean + 10.0 * np.sqrt(mean * q + 1.0))
    bound_i = int(bound)
    x = 0
    px = qn
    u = next_double(words, cursor)
    while u > px:
        x += 1
        if x > bound_i:
            x = 0
            px = qn
            u = next_double(words, cursor)
        else:
            u -= px
            px = ((1 - x + 1) * p * px) / (x * q)
        if cursor[1]:
            return 0
    return x


@njit(cache=True)
def bernoulli(words: np.ndarray, cursor: np.ndarray, p: float) -> int:
    """One draw of ``RandomState.binomial(1, p)`` (legacy: p = 0 still draws)."""
    if p <= 0.5:
        return _bernoulli_inversion(words, cursor, p)
    return 1 - _bernoulli_inversion(words, cursor, 1.0 - p)


@njit(cache=True)
def bernoulli_matrix(words: np.ndarray, cursor: np.ndarray, n: int, p: float) -> np.ndarray:
    """``RandomState.binomial(1, p, size=(n, n))`` as int64."""
    out = np.zeros((n, n), dtype=np.int64)
    for i in range(n):
        for j in range(n):
            out[i, j] = bernoulli(words, cursor, p)
    return out


@njit(cache=True)
def uniform_matrix(words: np.ndarray, cursor: np.ndarray, n: int, low: float, high: float) -> np.ndarray:
    """``RandomState.uniform(low, high, size=(n, n))``."""
    out = np.empty((n, n), dtype=np.float64)
    span = high - low
    for i in range(n):
        for j in range(n):
            out[i, j] = low + span * next_double(words, cursor)
    return out


@njit(cache=True)
def bounded(words: np.ndarray, cursor: np.ndarray, high: int) -> int:
    """``RandomState.randint(0, high)`` (also ``choice(high)``), ``high <= 2**32``."""
    rng = np.uint64(high - 1)
    if rng == 0:
        return np.int64(0)
    mask = rng
    mask |= mask >> np.uint64(1)
    mask |= mask >> np.uint64(2)
    mask |= mask >> np.uint64(4)
    mask |= mask >> np.uint64(8)
    mask |= mask >> np.uint64(16)
    while True:
        value = next_uint32(words, cursor) & mask
        if value <= rng or cursor[1]:
            return np.int64(value)


@njit(cache=True)
def permutation(words: np.ndarray, cursor: np.ndarray, n: int) -> np.ndarray:
    """``RandomState.permutation(n)``: Fisher-Yates from the back."""
    perm = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = bounded(words, cursor, i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm
