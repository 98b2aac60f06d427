"""The pool that recycles the memory of trace batches never hands out memory still in use."""

import numpy as np

from gnnbench.algo import memory, sample


def test_views_kept_by_the_caller_survive_later_batches():
    traces = sample("dijkstra", 20, n=12, seed=5)
    # views into the batch's blocks: its graphs and its step records (Dijkstra's distance updates)
    kept = [traces.inputs["A"], traces.hints["d"].values]
    expected = [array.copy() for array in kept]
    trace = traces[3]
    expected_trace = {k: np.array(v) for k, v in trace.hints.items()}
    del traces
    for seed in range(6):  # same sizes: every one of these could reuse a free block
        sample("dijkstra", 20, n=12, seed=100 + seed).clrs_batch()
    for array, values in zip(kept, expected):
        np.testing.assert_array_equal(array, values)
    for name, value in trace.hints.items():
        np.testing.assert_array_equal(value, expected_trace[name])


def test_free_blocks_are_reused():
    memory.release()
    sample("bfs", 30, n=10, seed=1)  # dropped at once: its blocks are free again
    first = memory.pooled_bytes()
    for seed in range(5):
        sample("bfs", 30, n=10, seed=seed)
    assert first > 0
    assert memory.pooled_bytes() == first


def test_blocks_in_use_are_not_reused():
    memory.release()
    held = [sample("bfs", 30, n=10, seed=seed) for seed in range(3)]
    one = memory.pooled_bytes()
    held.append(sample("bfs", 30, n=10, seed=9))
    assert memory.pooled_bytes() > one  # a fourth set of blocks: none of the first three was free
    addresses = {traces.inputs["A"].__array_interface__["data"][0] for traces in held}
    assert len(addresses) == 4


def test_buffers_shapes_dtypes_and_independence():
    a, b, c = memory.buffers([((3, 4), np.float64), ((5,), np.int64), ((0,), np.int8)])
    assert (a.shape, a.dtype, b.shape, b.dtype, c.shape) == ((3, 4), np.float64, (5,), np.int64, (0,))
    a[:] = 1.5
    b[:] = -7
    assert not np.shares_memory(a, b)
    np.testing.assert_array_equal(a, np.full((3, 4), 1.5))
    np.testing.assert_array_equal(b, np.full(5, -7))
    np.testing.assert_array_equal(memory.zeros((2, 3)), np.zeros((2, 3)))
