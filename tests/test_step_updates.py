"""StepUpdates: per-step node vectors stored as the updates of each step, expanded on access."""

import numpy as np
import pytest

from gnnbench.algo import run_algorithm, sample
from gnnbench.algo.trace import StepUpdates

# Two traces over n = 3 nodes: trace 0 has 3 steps (rows 0-2), trace 1 has 2 (rows 3-4).
# Row 1 sets node 1 to 2.5 and node 2 to 4.0, row 2 sets node 2 to 3.0, row 4 sets node 0 to 1.0.
OFFSETS = np.array([0, 3, 5])
NODES = np.array([1, 2, 2, 0], dtype=np.int32)
VALUES = np.array([2.5, 4.0, 3.0, 1.0])
ENDS = np.array([0, 2, 3, 3, 4])
TRACE_0 = np.array([[0.0, 0.0, 0.0], [0.0, 2.5, 4.0], [0.0, 2.5, 3.0]])
TRACE_1 = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])


def test_rows_dense_and_padded_batch_by_hand():
    updates = StepUpdates(np.zeros(3), NODES, VALUES, ENDS, OFFSETS, np.float64)
    assert updates.row_shape == (3,)
    np.testing.assert_array_equal(updates.rows(0), TRACE_0)
    np.testing.assert_array_equal(updates.rows(1), TRACE_1)
    np.testing.assert_array_equal(updates.dense(), np.concatenate([TRACE_0, TRACE_1]))
    out = np.full((4, 2, 3), np.nan)  # one step more than the longest trace: zero padding
    updates.fill_padded(out)
    expected = np.zeros((4, 2, 3))
    expected[:3, 0], expected[:2, 1] = TRACE_0, TRACE_1
    np.testing.assert_array_equal(out, expected)


def test_integer_values_start_from_their_own_initial_vector():
    parents = np.array([7, 7, 8, 9], dtype=np.int32)  # the pointer each update sets
    pointers = StepUpdates(np.arange(3), NODES, parents, ENDS, OFFSETS, np.int64)
    rows = pointers.rows(0)
    assert rows.dtype == np.int64
    np.testing.assert_array_equal(rows, [[0, 1, 2], [0, 7, 7], [0, 7, 8]])
    np.testing.assert_array_equal(pointers.rows(1), [[0, 1, 2], [9, 1, 2]])


def _dijkstra_steps(A, s):
    """Dijkstra as CLRS-30 records it, written out plainly: before every extraction (and once
    at the start) the distances and predecessors; the next node is the first of
    ``argsort(d + (1 - in_queue) * 1e9)``, and the run stops when it is out of the queue."""
    n = A.shape[0]
    d, mark, in_queue, pi = np.zeros(n), np.zeros(n), np.zeros(n), np.arange(n)
    in_queue[s] = 1
    d_steps, pi_steps = [d.copy()], [pi.copy()]
    for _ in range(n):
        u = int(np.argsort(d + (1.0 - in_queue) * 1e9)[0])
        if in_queue[u] == 0:
            break
        in_queue[u], mark[u] = 0, 1
        for v in range(n):
            if A[u, v] != 0 and mark[v] == 0 and (in_queue[v] == 0 or d[u] + A[u, v] < d[v]):
                pi[v], d[v], in_queue[v] = u, d[u] + A[u, v], 1
        d_steps.append(d.copy())
        pi_steps.append(pi.copy())
    return np.array(d_steps), np.array(pi_steps)


@pytest.mark.parametrize("n, seed", [(5, 0), (16, 1), (40, 2)])
def test_dijkstra_updates_expand_to_the_plain_algorithms_steps(n, seed):
    traces = sample("dijkstra", 6, n=n, seed=seed)
    for i, trace in enumerate(traces):
        d, pi = _dijkstra_steps(np.asarray(trace.inputs["A"]), int(np.argmax(trace.inputs["s"])))
        np.testing.assert_array_equal(trace.hints["d"], d)
        np.testing.assert_array_equal(trace.hints["pi_h"], pi)
        assert trace.hints["pi_h"].dtype == np.int64
    start = int(traces.offsets[2])
    np.testing.assert_array_equal(traces.hint_array("d")[start:start + traces[2].num_steps], traces[2].hints["d"])


def test_tied_keys_rerun_in_python_record_the_same_updates():
    # Integer weights tie everywhere, so the compiled kernel hands this graph to its Python version.
    A = np.array([[0, 1, 1, 2], [1, 0, 1, 1], [1, 1, 0, 2], [2, 1, 2, 0]], dtype=float)
    d, pi = _dijkstra_steps(A, 0)
    trace = run_algorithm("dijkstra", A, 0)
    np.testing.assert_array_equal(trace.hints["d"], d)
    np.testing.assert_array_equal(trace.hints["pi_h"], pi)
