"""Helpers comparing gnnbench traces with the CLRS-30 reference (used by tests)."""

from __future__ import annotations

import numpy as np

from gnnbench.algo import SPECS, run_algorithm
from gnnbench.algo.specs import SOURCE_ALGORITHMS


def reference_probes(ref, name: str, A: np.ndarray, s: int | None):
    """``{field: array}`` of the reference trace of ``name`` on ``(A, s)``."""
    fn = getattr(ref.algorithms, name)
    args = (A.copy(), s) if name in SOURCE_ALGORITHMS else (A.copy(),)
    _, probes = fn(*args)
    flat = {}
    for field, (stage, loc, _) in SPECS[name].items():
        flat[field] = probes[stage][loc][field]["data"]
    return flat


def differences(got: np.ndarray, want: np.ndarray, what: str, dtype: bool = True) -> list[str]:
    """``[]`` if ``got`` equals ``want`` in shape, dtype (unless ``dtype=False``) and every value,
    else what differs."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return [f"{what}: shape {got.shape} != reference {want.shape}"]
    if dtype and got.dtype != want.dtype:
        return [f"{what}: dtype {got.dtype} != reference {want.dtype}"]
    if not np.array_equal(got, want):
        where = tuple(np.argwhere(got != want)[0])
        return [f"{what}: first difference at {where}: {got[where]} != {want[where]}"]
    return []


def mismatches(ref, name: str, A: np.ndarray, s: int | None) -> list[str]:
    """Human-readable differences between gnnbench and the reference on one graph.

    gnnbench runs first: where it raises (a Bellman-Ford negative cycle) the reference would
    never return."""
    trace = run_algorithm(name, A, s)
    expected = reference_probes(ref, name, A, s)
    problems = []
    for field, want in expected.items():
        problems += differences(trace.field(field), want, field)
    return problems


def sampler_mismatches(ref, name: str, num: int, n: int, seed: int, **options) -> list[str]:
    """Differences between ``gnnbench.algo.sample`` and the reference sampler's batch: the
    whole batch as ``TraceSet.clrs_batch()`` lays it out (padding included), and every
    trace taken out of the set against its slice of the reference batch."""
    from gnnbench.algo import sample

    sampler, _ = ref.samplers.build_sampler(name, num_samples=num, length=n, seed=seed, **options)
    feedback = sampler.next()
    traces = sample(name, num, n=n, seed=seed, **options)
    batch = traces.clrs_batch()
    problems = differences(batch.lengths, feedback.features.lengths, "lengths")
    groups = ((feedback.features.inputs, batch.inputs), (feedback.features.hints, batch.hints),
              (feedback.outputs, batch.outputs))
    for points, ours in groups:
        for point in points:
            problems += differences(ours[point.name], point.data, f"batch {point.name}")
    if problems:
        return problems
    lengths = feedback.features.lengths.astype(int)
    for i, trace in enumerate(traces):
        for fields, points in ((trace.inputs, feedback.features.inputs), (trace.outputs, feedback.outputs)):
            for point in points:
                problems += differences(fields[point.name], point.data[i], f"sample {i} {point.name}")
        for point in feedback.features.hints:
            # The batch stores every hint as float64; a trace keeps CLRS-30's per-trace dtypes.
            problems += differences(trace.hints[point.name], point.data[:lengths[i], i],
                                    f"sample {i} hint {point.name}", dtype=False)
    return problems


class StillRunning(Exception):
    """The reference had not finished after the allowed number of hint steps."""


def reference_bellman_ford_steps(ref, A: np.ndarray, s: int, limit: int) -> int | None:
    """Hint steps of CLRS-30's ``bellman_ford`` on ``(A, s)``, or None if it was still running
    after ``limit`` steps (its loop only ends when a round changes no distance)."""
    push = ref.probing.push
    steps = 0

    def counting_push(probes, stage, next_probe):
        nonlocal steps
        if stage == ref.specs.Stage.HINT:
            steps += 1
            if steps > limit:
                raise StillRunning
        return push(probes, stage, next_probe)

    ref.probing.push = counting_push  # the reference looks ``probing.push`` up at every call
    try:
        ref.algorithms.bellman_ford(A.copy(), s)
    except StillRunning:
        return None
    finally:
        ref.probing.push = push
    return steps


def reachable_negative_cycle(A: np.ndarray, s: int) -> bool:
    """Whether a cycle of negative total weight is reachable from ``s`` (networkx, independent)."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(range(A.shape[0]))
    graph.add_weighted_edges_from((int(u), int(v), float(A[u, v])) for u, v in zip(*np.nonzero(A)))
    reachable = graph.subgraph(nx.descendants(graph, s) | {s}).copy()
    return nx.negative_edge_cycle(reachable)
