"""Bit-exact replay of NumPy's legacy ``RandomState`` draws inside numba kernels.

CLRS-30 samples its graphs with ``np.random.RandomState(seed)``. To reproduce its
datasets exactly while generating thousands of graphs without per-sample Python
overhead, we seed a real ``RandomState``, copy out its Mersenne-Twister state and
continue that MT19937 stream here, decoding it with the same arithmetic NumPy's
legacy distributions use: ``next_double``, binomial inversion, masked rejection
for bounded integers and Fisher-Yates shuffling.

A stream is a pair ``(key, pos)``: ``key`` holds the 624-word MT19937 state
followed by that block's 624 tempered output words, ``pos`` (one element) the read
position in the block, as NumPy's ``mt19937_state`` keeps it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_N = 624
_M = 397
_MATRIX_A = np.uint64(0x9908B0DF)
_UPPER = np.uint64(0x80000000)
_LOWER = np.uint64(0x7FFFFFFF)


def seeded_stream(seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The MT19937 state of ``np.random.RandomState(seed)``, ready to draw from."""
    _, state, pos, _, _ = np.random.RandomState(seed).get_state(legacy=True)
    key = np.zeros(2 * _N, dtype=np.uint32)
    key[:_N] = state
    _temper_block(key)
    return key, np.array([pos], dtype=np.int64)


@njit(cache=True, inline="always")
def _mix(upper, lower, far):
    y = (np.uint64(upper) & _UPPER) | (np.uint64(lower) & _LOWER)
    mag = _MATRIX_A if (y & np.uint64(1)) else np.uint64(0)
    return np.uint32(np.uint64(far) ^ (y >> np.uint64(1)) ^ mag)


@njit(cache=True)
def _twist(key: np.ndarray) -> None:
    # The MT19937 state transition (Matsumoto & Nishimura, 1998).
    for i in range(_N - _M):  # key[_N:] (tempered output) is not part of the state
        key[i] = _mix(key[i], key[i + 1], key[i + _M])
    for i in range(_N - _M, _N - 1):
        key[i] = _mix(key[i], key[i + 1], key[i + _M - _N])
    key[_N - 1] = _mix(key[_N - 1], key[0], key[_M - 1])


@njit(cache=True)
def _temper(word) -> np.uint64:
    # MT19937 output tempering, in uint64 arithmetic (numba's uint32 operators are slow).
    y = np.uint64(word)
    y ^= y >> np.uint64(11)
    y ^= (y << np.uint64(7)) & np.uint64(0x9D2C5680)
    y ^= (y << np.uint64(15)) & np.uint64(0xEFC60000)
    y ^= y >> np.uint64(18)
    return y & np.uint64(0xFFFFFFFF)


@njit(cache=True)
def _temper_block(key: np.ndarray) -> None:
    for i in range(_N):
        key[_N + i] = np.uint32(_temper(key[i]))


@njit(cache=True)
def _refill(key: np.ndarray, pos: np.ndarray) -> None:
    _twist(key)
    _temper_block(key)
    pos[0] = 0


@njit(cache=True)
def _to_double(a, b) -> float:
    # NumPy's next_double: 53 random bits from two words.
    return ((a >> np.uint64(5)) * 67108864.0 + (b >> np.uint64(6))) / 9007199254740992.0


@njit(cache=True)
def next_uint32(key: np.ndarray, pos: np.ndarray) -> np.uint64:
    if pos[0] >= _N:
        _refill(key, pos)
    word = key[_N + pos[0]]
    pos[0] += 1
    return np.uint64(word)


@njit(cache=True)
def next_double(key: np.ndarray, pos: np.ndarray) -> float:
    a = next_uint32(key, pos)
    return _to_double(a, next_uint32(key, pos))


# The matrix samplers below read the state array directly while a whole double
# fits in the current block: calling ``next_double`` per element costs an array
# reference-count round trip each time, which would dominate these loops.

@njit(cache=True)
def bernoulli_fill(out: np.ndarray, key: np.ndarray, pos: np.ndarray, p: float) -> None:
    """Fill the square ``out`` with ``RandomState.binomial(1, p, size=out.shape)``.

    NumPy's legacy binomial inverts the CDF for n * p <= 30 (using 1 - p when
    p > 0.5), one double per draw except in a rare restart; p = 0 still draws.
    """
    flip = p > 0.5
    pp = 1.0 - p if flip else p
    q = 1.0 - pp
    qn = np.exp(np.log(q))  # P(X = 0), as NumPy computes q ** n
    px1 = ((1 - 1 + 1) * pp * qn) / (1 * q)  # P(X = 1), NumPy's recurrence at X = 1
    # n = 1 makes NumPy's search bound 1: X = 0 if u <= qn, X = 1 if u - qn <= px1,
    # otherwise (rounding at u ~ 1, astronomically rare) it restarts with a new u.
    n = out.shape[0]
    at = pos[0]
    for i in range(n):
        for j in range(n):
            if at + 2 <= _N:
                u = _to_double(np.uint64(key[_N + at]), np.uint64(key[_N + at + 1]))
                at += 2
            else:
                pos[0] = at
                u = next_double(key, pos)
                at = pos[0]
            while u - qn > px1:  # implies u > qn, since px1 >= 0
                pos[0] = at
                u = next_double(key, pos)
                at = pos[0]
            x = np.int64(u > qn)
            out[i, j] = 1 - x if flip else x
    pos[0] = at


@njit(cache=True)
def bernoulli_matrix(key: np.ndarray, pos: np.ndarray, n: int, p: float) -> np.ndarray:
    """``RandomState.binomial(1, p, size=(n, n))`` as int64."""
    out = np.empty((n, n), dtype=np.int64)
    bernoulli_fill(out, key, pos, p)
    return out


@njit(cache=True)
def uniform_matrix(key: np.ndarray, pos: np.ndarray, n: int, low: float, high: float) -> np.ndarray:
    """``RandomState.uniform(low, high, size=(n, n))``."""
    out = np.empty((n, n), dtype=np.float64)
    span = high - low
    at = pos[0]
    for i in range(n):
        for j in range(n):
            if at + 2 <= _N:
                u = _to_double(np.uint64(key[_N + at]), np.uint64(key[_N + at + 1]))
                at += 2
            else:
                pos[0] = at
                u = next_double(key, pos)
                at = pos[0]
            out[i, j] = low + span * u
    pos[0] = at
    return out


@njit(cache=True)
def bounded(key: np.ndarray, pos: np.ndarray, high: int) -> int:
    """``RandomState.randint(0, high)`` (also ``choice(high)``), ``1 <= high <= 2**32``."""
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
        value = next_uint32(key, pos) & mask
        if value <= rng:
            return np.int64(value)


@njit(cache=True)
def permutation(key: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
    """``RandomState.permutation(n)``: Fisher-Yates from the back."""
    perm = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = bounded(key, pos, i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm
