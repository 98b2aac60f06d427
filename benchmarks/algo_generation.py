"""Trace generation speed: gnnbench against the CLRS-30 reference sampler, side by side.

For every algorithm at n = 16 and n = 64 this prints samples per second of

* the baseline: DeepMind's CLRS-30 sampler (``build_sampler``) when ``dm-clrs`` is
  importable (``pip install --no-deps dm-clrs jax chex attrs absl-py`` suffices),
  otherwise gnnbench's own kernels run as plain Python (a straightforward
  pure-Python port, loaded in this process with numba's JIT disabled);
* ``gnnbench.algo.sample`` producing a ``TraceSet`` (every field computed; the
  two edge-mask kinds kept as compact encodings);
* the same plus every trace taken out of the set with all its arrays
  materialised, the strictest comparison with the reference's dense output;

and the ratios against the baseline, measured in the same run. It then times
generating the CLRS-30 train/val/test splits of all twelve algorithms.

    python benchmarks/algo_generation.py [--quick] [--markdown]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import types
from pathlib import Path

import numpy as np

from gnnbench.algo import ALGORITHMS, CLRS30_SPLITS, sample
from gnnbench.algo.reference import load_clrs_reference


def _best_rate(run, count: int, repeats: int) -> float:
    """Samples per second of the fastest of ``repeats`` runs producing ``count`` samples."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def _reference_baseline():
    try:
        ref = load_clrs_reference()
    except ImportError:
        return None

    def run(name, num, n):
        ref.samplers.build_sampler(name, num_samples=num, length=n, seed=0)

    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)
    return f"CLRS-30 reference sampler (dm-clrs {ref.version})", run


def _pure_python_baseline():
    """gnnbench.algo re-imported as plain Python: numba's JIT disabled for that copy."""
    import numba

    source = Path(importlib.import_module("gnnbench").__file__).parent
    package = types.ModuleType("gnnbench_pure_python")
    package.__path__ = [str(source)]
    sys.modules["gnnbench_pure_python"] = package
    previous = numba.config.DISABLE_JIT
    numba.config.DISABLE_JIT = True
    try:
        pure = importlib.import_module("gnnbench_pure_python.algo")
    finally:
        numba.config.DISABLE_JIT = previous

    def run(name, num, n):
        for trace in pure.sample(name, num, n=n, seed=0):
            pass

    return "gnnbench kernels as plain Python (numba JIT disabled)", run


def _materialise(traces) -> None:
    for trace in traces:
        for group in (trace.inputs, trace.hints, trace.outputs):
            for value in group.values():
                np.asarray(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats (for CI smoke runs)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--baseline", choices=("auto", "reference", "python"), default="auto")
    args = parser.parse_args()

    baseline = None if args.baseline == "python" else _reference_baseline()
    if baseline is None:
        if args.baseline == "reference":
            sys.exit("the CLRS-30 reference is not importable: pip install --no-deps dm-clrs jax chex attrs absl-py")
        baseline = _pure_python_baseline()
    baseline_name, baseline_run = baseline
    print(f"baseline: {baseline_name}")

    ours_count = {16: 200 if args.quick else 1000, 64: 16 if args.quick else 64}
    base_count = {16: 10 if args.quick else 50, 64: 2 if args.quick else 5}
    repeats = 1 if args.quick else 5

    rows = []
    for name in ALGORITHMS:
        sample(name, 2, n=8)  # load compiled kernels
        for n in (16, 64):
            base = _best_rate(lambda: baseline_run(name, base_count[n], n), base_count[n], 1)
            ours = _best_rate(lambda: sample(name, ours_count[n], n=n, seed=0), ours_count[n], repeats)
            dense = _best_rate(lambda: _materialise(sample(name, ours_count[n], n=n, seed=0)),
                               ours_count[n], repeats)
            rows.append((name, n, base, ours, ours / base, dense, dense / base))
            print(f"  {name:30s} n={n:3d}  baseline {base:9.1f}/s  gnnbench {ours:10.1f}/s ({ours / base:6.1f}x)"
                  f"  materialised {dense:10.1f}/s ({dense / base:6.1f}x)", flush=True)

    start = time.perf_counter()
    for name in ALGORITHMS:
        for split in CLRS30_SPLITS.values():
            sample(name, split.num_samples, n=split.n, seed=split.seed)
    splits_seconds = time.perf_counter() - start

    if args.markdown:
        print("\n| algorithm | n | baseline samples/s | gnnbench samples/s | speed-up "
              "| materialised samples/s | speed-up |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, n, base, ours, ratio, dense, dense_ratio in rows:
            print(f"| {name} | {n} | {base:,.0f} | {ours:,.0f} | {ratio:,.0f}x | {dense:,.0f} | {dense_ratio:,.0f}x |")
    worst = min(rows, key=lambda r: r[4])
    worst_dense = min(rows, key=lambda r: r[6])
    print(f"\nslowest speed-up: {worst[0]} at n={worst[1]}: {worst[4]:.1f}x "
          f"(materialised: {worst_dense[0]} at n={worst_dense[1]}: {worst_dense[6]:.1f}x)")
    print(f"CLRS-30 train/val/test splits of all {len(ALGORITHMS)} algorithms: {splits_seconds:.2f} s")


if __name__ == "__main__":
    main()
