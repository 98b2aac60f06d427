"""The numba replay of NumPy's legacy RandomState must match it draw for draw."""

import numpy as np
import pytest

from gnnbench.algo import rng


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 12345, 2**32 - 1])
@pytest.mark.parametrize("p", [0.0, 0.01, 0.2, 0.5, 0.5000001, 0.7, 0.99, 1.0])
@pytest.mark.parametrize("n", [1, 5, 17, 40])
def test_stream_matches_randomstate(seed, p, n):
    reference = np.random.RandomState(seed)
    expected = [
        reference.choice((0.3, p)),
        reference.binomial(1, p, size=(n, n)),
        reference.uniform(0.0, 1.0, size=(n, n)),
        reference.choice(n),
        reference.permutation(n),
        reference.choice((p,)),
        reference.randint(0, 2**31),
        reference.uniform(-2.0, 3.0, size=(n, n)),
        reference.randint(0, 7),
    ]
    key, pos = rng.seeded_stream(seed)
    got = [
        (0.3, p)[rng.bounded(key, pos, 2)],
        rng.bernoulli_matrix(key, pos, n, p),
        rng.uniform_matrix(key, pos, n, 0.0, 1.0),
        rng.bounded(key, pos, n),
        rng.permutation(key, pos, n),
        (p,)[rng.bounded(key, pos, 1)],
        rng.bounded(key, pos, 2**31),
        rng.uniform_matrix(key, pos, n, -2.0, 3.0),
        rng.bounded(key, pos, 7),
    ]
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(np.asarray(have), np.asarray(want))


def test_long_stream_crosses_many_twists():
    reference = np.random.RandomState(7)
    want = reference.binomial(1, 0.5, size=(300, 300))
    key, pos = rng.seeded_stream(7)
    np.testing.assert_array_equal(rng.bernoulli_matrix(key, pos, 300, 0.5), want)
    assert reference.randint(0, 1000) == rng.bounded(key, pos, 1000)
