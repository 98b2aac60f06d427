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


def mismatches(ref, name: str, A: np.ndarray, s: int | None) -> list[str]:
    """Human-readable differences between gnnbench and the reference on one graph."""
    expected = reference_probes(ref, name, A, s)
    trace = run_algorithm(name, A, s)
    problems = []
    for field, want in expected.items():
        got = trace.field(field)
        want = np.asarray(want)
        if got.shape != want.shape:
            problems.append(f"{field}: shape {got.shape} != reference {want.shape}")
        elif not np.array_equal(got, want):
            where = np.argwhere(got != want)[0]
            problems.append(f"{field}: first difference at {tuple(where)}: {got[tuple(where)]} != {want[tuple(where)]}")
    return problems


def sampler_mismatches(ref, name: str, num: int, n: int, seed: int, **options) -> list[str]:
    """Differences between ``gnnbench.algo.sample`` and the reference sampler's batch."""
    from gnnbench.algo import sample

    sampler, _ = ref.samplers.build_sampler(name, num_samples=num, length=n, seed=seed, **options)
    feedback = sampler.next()
    reference = {dp.name: dp.data for dp in feedback.features.inputs}
    reference.update({dp.name: dp.data for dp in feedback.outputs})
    reference_hints = {dp.name: dp.data for dp in feedback.features.hints}
    lengths = np.asarray(feedback.features.lengths).astype(int)
    traces = sample(name, num, n=n, seed=seed, **options)
    problems = []
    if not np.array_equal(traces.lengths, lengths):
        problems.append(f"hint lengths {traces.lengths.tolist()} != reference {lengths.tolist()}")
        return problems
    for i, trace in enumerate(traces):
        for field, data in reference.items():
            got = trace.field(field)
            if not np.array_equal(got, data[i]):
                problems.append(f"sample {i} {field} differs")
        for field, data in reference_hints.items():
            if not np.array_equal(trace.hints[field], data[: lengths[i], i]):
                problems.append(f"sample {i} hint {field} differs")
    return problems
