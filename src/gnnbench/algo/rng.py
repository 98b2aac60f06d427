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

Functions that allocate nothing are compiled with ``_nrt=False``: without numba's
reference counting, whose atomic operation per array view (a slice per block of
624 words) cost as much as decoding the block.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

_N = 624
_M = 397
_MATRIX_A = np.uint64(0x9908B0DF)
_UPPER = np.uint64(0x80000000)
_LOWER = np.uint64(0x7FFFFFFF)


def seeded_stream(seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The MT19937 state of ``np.random.RandomState(seed)``, ready to draw from (a fresh copy)."""
    if seed is None:
        return _stream_of(np.random.RandomState())
    key, pos = _seeded(int(seed))
    return key.copy(), pos.copy()


@functools.lru_cache(maxsize=64)
def _seeded(seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Seeding a RandomState costs ~0.1 ms, as much as drawing dozens of small graphs.
    key, pos = _stream_of(np.random.RandomState(seed))
    key.flags.writeable = pos.flags.writeable = False  # callers get copies
    return key, pos


def _stream_of(state: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    _, words, pos, _, _ = state.get_state(legacy=True)
    key = np.zeros(2 * _N, dtype=np.uint32)
    key[:_N] = words
    _temper_block(key)
    return key, np.array([pos], dtype=np.int64)


@njit(cache=True, inline="always")
def _mix(upper, lower, far):
    y = (np.uint64(upper) & _UPPER) | (np.uint64(lower) & _LOWER)
    mag = _MATRIX_A if (y & np.uint64(1)) else np.uint64(0)
    return np.uint32(np.uint64(far) ^ (y >> np.uint64(1)) ^ mag)


@njit(cache=True, _nrt=False)
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


@njit(cache=True, _nrt=False)
def _temper_block(key: np.ndarray) -> None:
    for i in range(_N):
        key[_N + i] = np.uint32(_temper(key[i]))


@njit(cache=True, _nrt=False)
def _refill(key: np.ndarray, pos: np.ndarray) -> None:
    _twist(key)
    _temper_block(key)
    pos[0] = 0


@njit(cache=True)
def _to_double(a, b) -> float:
    # NumPy's next_double: 53 random bits from two words.
    return ((a >> np.uint64(5)) * 67108864.0 + (b >> np.uint64(6))) / 9007199254740992.0


@njit(cache=True, _nrt=False)
def next_uint32(key: np.ndarray, pos: np.ndarray) -> np.uint64:
    if pos[0] >= _N:
        _refill(key, pos)
    word = key[_N + pos[0]]
    pos[0] += 1
    return np.uint64(word)


@njit(cache=True, _nrt=False)
def next_double(key: np.ndarray, pos: np.ndarray) -> float:
    a = next_uint32(key, pos)
    return _to_double(a, next_uint32(key, pos))


# The matrix samplers below decode whole runs of doubles straight from the current
# block of tempered words, in tight integer loops that LLVM vectorises: the two words
# of a double are read as one little-endian uint64 ``x`` and its 53 random bits are
# ``K = (x_low >> 5) * 2**26 + (x_high >> 6)``, NumPy's double being ``K / 2**53``
# exactly. (Slices index from 0, so no index needs wrapping.) A double that straddles
# two blocks, or a draw that NumPy would retry, goes through ``next_double``.

_TWO53 = 9007199254740992.0


@njit(cache=True, inline="always")
def _bits53(x):
    return ((x & np.uint64(0xFFFFFFFF)) >> np.uint64(5)) << np.uint64(26) | (x >> np.uint64(38))


@njit(cache=True, _nrt=False)
def _bernoulli_run(dst, pairs, zero_max, retry_min, flip):
    """Decode ``dst.shape[0]`` draws from the word pairs ``pairs``: X = 0 when
    ``K <= zero_max`` (``u <= qn``); NumPy retries when ``K >= retry_min``. Returns the
    index of the first retried draw, or -1."""
    retry = 0
    for k in range(dst.shape[0]):
        bits = _bits53(pairs[k])
        retry |= bits >= retry_min
        dst[k] = flip ^ np.int64(bits > zero_max)
    if not retry:
        return -1
    for k in range(dst.shape[0]):
        if _bits53(pairs[k]) >= retry_min:
            return k
    return -1


@njit(cache=True)
def _retry_min(qn, px1):
    # The smallest K with K / 2**53 - qn > px1 (that difference only grows with K), else 2**53.
    if (_TWO53 - 1.0) / _TWO53 - qn <= px1:  # not even the largest double retries (the usual case)
        return np.uint64(9007199254740992)
    lo, hi = np.int64(0), np.int64(9007199254740992)
    while lo < hi:
        mid = (lo + hi) // 2
        if mid / _TWO53 - qn > px1:
            hi = mid
        else:
            lo = mid + 1
    return np.uint64(lo)


@njit(cache=True, _nrt=False)
def bernoulli_fill(out: np.ndarray, key: np.ndarray, pos: np.ndarray, p: float) -> None:
    """Fill the C-contiguous ``out`` with ``RandomState.binomial(1, p, size=out.shape)``.

    NumPy's legacy binomial inverts the CDF for n * p <= 30 (using 1 - p when
    p > 0.5), one double per draw except in a rare restart; p = 0 still draws.
    """
    flip = np.int64(p > 0.5)
    pp = 1.0 - p if flip else p
    q = 1.0 - pp
    qn = np.exp(np.log(q))  # P(X = 0), as NumPy computes q ** n
    px1 = ((1 - 1 + 1) * pp * qn) / (1 * q)  # P(X = 1), NumPy's recurrence at X = 1
    # n = 1 makes NumPy's search bound 1: X = 0 if u <= qn, X = 1 if u - qn <= px1,
    # otherwise (rounding at u ~ 1, astronomically rare) it restarts with a new u.
    zero_max = np.uint64(qn * _TWO53)  # u <= qn exactly when K <= floor(qn * 2**53)
    retry_min = _retry_min(qn, px1)
    flat = out.reshape(-1)
    total = flat.shape[0]
    done = 0
    at = pos[0]
    while done < total:
        run = min((_N - at) // 2, total - done)
        if run > 0:
            pairs = key[_N + at:_N + at + 2 * run].view(np.uint64)
            retry = _bernoulli_run(flat[done:done + run], pairs, zero_max, retry_min, flip)
            if retry < 0:
                at += 2 * run
                done += run
                continue
            at += 2 * retry
            done += retry
        pos[0] = at  # this draw straddles two blocks, or NumPy retries it
        u = next_double(key, pos)
        while u - qn > px1:
            u = next_double(key, pos)
        at = pos[0]
        flat[done] = flip ^ np.int64(u > qn)
        done += 1
    pos[0] = at


@njit(cache=True)
def bernoulli_matrix(key: np.ndarray, pos: np.ndarray, n: int, p: float) -> np.ndarray:
    """``RandomState.binomial(1, p, size=(n, n))`` as int64."""
    out = np.empty((n, n), dtype=np.int64)
    bernoulli_fill(out, key, pos, p)
    return out


@njit(cache=True, _nrt=False)
def _uniform_run(dst, pairs, low, span):
    for k in range(dst.shape[0]):
        dst[k] = low + span * (np.float64(np.int64(_bits53(pairs[k]))) * (1.0 / _TWO53))


@njit(cache=True, _nrt=False)
def uniform_fill(out: np.ndarray, key: np.ndarray, pos: np.ndarray, low: float, high: float) -> None:
    """Fill the C-contiguous ``out`` with ``RandomState.uniform(low, high, size=out.shape)``."""
    flat = out.reshape(-1)
    total = flat.shape[0]
    span = high - low
    done = 0
    at = pos[0]
    while done < total:
        run = min((_N - at) // 2, total - done)
        if run > 0:
            _uniform_run(flat[done:done + run], key[_N + at:_N + at + 2 * run].view(np.uint64), low, span)
            at += 2 * run
            done += run
        else:  # a double straddling two blocks
            pos[0] = at
            flat[done] = low + span * next_double(key, pos)
            at = pos[0]
            done += 1
    pos[0] = at


@njit(cache=True)
def uniform_matrix(key: np.ndarray, pos: np.ndarray, n: int, low: float, high: float) -> np.ndarray:
    """``RandomState.uniform(low, high, size=(n, n))``."""
    out = np.empty((n, n), dtype=np.float64)
    uniform_fill(out, key, pos, low, high)
    return out


@njit(cache=True, _nrt=False)
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
