"""``TraceSet.clrs_batch()`` against a plain NumPy padding of each hint, for every kernel path.

The batch writers choose between per-entry writes, memset-then-ones for mostly-zero
hints, and non-temporal stores for outputs past ``batching.STREAM_BYTES``; the large
cases here (n = 64, hundreds of megabytes) take the streaming and sparse paths, the
small ones the cached paths, and every path must give the same arrays.
"""

import numpy as np
import pytest

from gnnbench.algo import ALGORITHMS, batching, sample


def _padded_by_numpy(traces, name: str, max_steps: int) -> np.ndarray:
    dense = np.asarray(traces.hint_array(name), dtype=np.float64)
    out = np.zeros((max_steps, len(traces), *dense.shape[1:]))
    start = 0
    for i, steps in enumerate(np.diff(traces.offsets)):
        out[:steps, i] = dense[start:start + steps]
        start += steps
    return out


def _check(traces, min_steps: int = 0) -> None:
    batch = traces.clrs_batch(min_steps)
    max_steps = max(min_steps, int(traces.lengths.max()))
    for name, array in batch.hints.items():
        assert array.dtype == np.float64 and array.flags.c_contiguous, name
        np.testing.assert_array_equal(array, _padded_by_numpy(traces, name, max_steps), err_msg=name)
    np.testing.assert_array_equal(batch.lengths, traces.lengths)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_small_batches_match_numpy_padding(algorithm):
    _check(sample(algorithm, 7, n=9, seed=3), min_steps=0)
    _check(sample(algorithm, 3, n=5, seed=4), min_steps=200)  # padding beyond every trace


@pytest.mark.parametrize("algorithm, num", [  # the fewest graphs whose largest hint still streams (80-100 MB)
    ("bridges", 8), ("strongly_connected_components", 8), ("mst_kruskal", 8), ("floyd_warshall", 32)])
def test_large_batches_take_the_streaming_and_sparse_paths_exactly(algorithm, num):
    traces = sample(algorithm, num, n=64, seed=11)
    largest = max(a.nbytes for a in traces.clrs_batch().hints.values())
    assert largest >= batching.STREAM_BYTES  # the case under test: non-temporal stores
    _check(traces)


def test_reused_memory_carries_nothing_over():
    first = sample("mst_kruskal", 32, n=64, seed=1).clrs_batch()
    del first  # its block goes back to the pool, full of another batch's values
    _check(sample("mst_kruskal", 32, n=64, seed=2))
    _check(sample("bridges", 32, n=64, seed=2))
