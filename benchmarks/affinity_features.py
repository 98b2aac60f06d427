"""Per-sample gradient features of task affinity: the torch.func vmap path against a per-sample loop, and the
full-size figure (issue 12, item 7).

Model (stated in the output): ``MultitaskNet`` over the twelve CLRS-30 graph algorithms, fully shared (``mtn``),
``mpnn`` processor, hidden 64, 3 layers, initialised from seed 0 (untrained: the time does not depend on the
weights); gradients with respect to processor depths 1..3 (``first_depth`` 1), projected to d = 400.

Part 1, the ratio: for each algorithm of the set, ``m`` CLRS-30 train graphs (n = 16): the first ``m`` of the
trace length most common among the first 1,000 (what a vmapped chunk of the full run holds: samples are bucketed by
length, and most fall in large buckets), three ways:

* ``vmap``: :func:`gnnbench.models.multitask.gradients.per_sample_gradients` (samples bucketed by trace length,
  ``torch.func.vmap`` over ``grad`` of ``functional_call``, chunks of at most ``--chunk-size`` graphs and
  ``--chunk-steps`` graph-steps) then the projection;
* ``loop`` (the baseline): ``tests/affinity_reference.py``'s ``loop_gradients``, each graph alone (a batch of one)
  differentiated by ``torch.autograd.grad``, then the same projection: same samples, parameters and projection;
* ``bound``: one batched forward and backward pass of the same graphs (their summed output function, no per-sample
  gradients): what any batching of the per-sample gradients can at best reach.

One warm-up of each; the vmap and loop features of each row's first 4 graphs, cut to 12 hint steps, are checked
equal in float64 (relative error below 1e-6; along long traces the untrained recurrence amplifies rounding until two
summation orders differ by O(1), see ``_float64_error``; the tests compare the paths to 1e-9). Then ``--repeats``
rounds with the three interleaved (load on a shared machine hits them alike); medians. It prints the loop / vmap
ratio per algorithm and over the set (sums of medians) against the target (10x), and the loop / bound ratio beside
it.

Part 2, the full-size figure: ``gradient_features`` for the twelve algorithms x ``--num-samples`` train graphs, then
the surrogate fitted (Newton, float64, lam = 1e3) for 200 subsets of 3 (``draw_subsets``, seed 0): wall times, per
algorithm too, and the Newton iterations; plus one subset's three evaluations on the valid split (``estimate_scores``)
to size ``task_affinity``'s evaluation part (200 subsets x 3 of them).

    python benchmarks/affinity_features.py [--quick] [--check] [--threads 1] [--part ratio|full|all]

``--quick``: part 1 on four algorithms x 16 graphs with one repeat; part 2 with 100 samples per algorithm (labelled
as scaled down).
"""

from __future__ import annotations

import argparse
import copy
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from affinity_reference import loop_gradients  # noqa: E402

from gnnbench.algo.specs import ALGORITHMS  # noqa: E402
from gnnbench.models.algo.batches import TorchBatch  # noqa: E402
from gnnbench.models.multitask import MultitaskNet  # noqa: E402
from gnnbench.models.multitask.affinity import draw_subsets, estimate_scores, fit_subset  # noqa: E402
from gnnbench.models.multitask.gradients import (Projection, gradient_features, output_function,  # noqa: E402
                                                 per_sample_gradients, train_samples)

TARGET = 10.0
MAX_ERROR = 1e-6  # relative Frobenius error allowed between the vmap and loop features (float64, see _float64_error)
CHECK_GRAPHS, CHECK_STEPS = 4, 12  # graphs per row and hint steps per trace in the float64 check
HIDDEN, NUM_LAYERS, PROCESSOR, FIRST_DEPTH, DIM = 64, 3, "mpnn", 1, 400
RATIO_SETS = {"full": (ALGORITHMS, 16, 3), "quick": (("bfs", "dfs", "floyd_warshall", "articulation_points"), 16, 1)}


def _model() -> MultitaskNet:
    return MultitaskNet(ALGORITHMS, PROCESSOR, hidden=HIDDEN, num_layers=NUM_LAYERS, variant="mtn",
                        generator=torch.Generator().manual_seed(0))


def _seconds(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def _float64_error(net64: MultitaskNet, algorithm: str, ids: list[int], projection: Projection) -> float:
    """Relative error between the vmap and the loop features of the row's first ``CHECK_GRAPHS`` graphs, in
    float64, their traces cut to ``CHECK_STEPS`` hint steps.

    Not the timed batch itself: along long traces the untrained recurrence amplifies rounding (measured at
    strongly connected components' 84 steps in float64: a batched forward pass of four graphs and each graph alone
    differ by 3e-4 in the output function, the gradients by 26%; in float32 by O(1) from bridges' 52 steps on), so
    no comparison of two summation orders can tell a bug from chaos there. Both paths get the same cut batch."""
    batch = train_samples(algorithm, 1000, dtype=torch.float64).select(ids[:CHECK_GRAPHS])
    batch = TorchBatch(batch.inputs, {name: hint[:CHECK_STEPS] for name, hint in batch.hints.items()},
                       torch.clamp(batch.lengths, max=CHECK_STEPS), batch.outputs)
    fast, _ = per_sample_gradients(net64, algorithm, batch, FIRST_DEPTH)
    slow, _ = loop_gradients(net64, algorithm, batch, FIRST_DEPTH)
    fast, slow = projection.flatten(fast), projection.flatten(slow)  # the raw gradients, float64
    return float(torch.linalg.norm(fast - slow) / torch.linalg.norm(slow))


def ratio_part(net: MultitaskNet, mode: str, chunk_size: int, chunk_steps: int, repeats: int | None) -> float:
    algorithms, m, default_repeats = RATIO_SETS[mode]
    repeats = repeats or default_repeats
    params = net.layer_parameters(FIRST_DEPTH)
    projection = Projection({name: p.shape for name, p in params.items()}, DIM, seed=0)
    print(f"\nPart 1: per-sample gradient features, vmap vs a per-sample loop ({m} train graphs of one length per "
          f"algorithm, chunk_size {chunk_size}, chunk_steps {chunk_steps}, 1 warm-up + {repeats} repeat(s), medians)")
    print(f"{'algorithm':<30}{'length (share)':>15}{'loop s':>9}{'vmap s':>9}{'bound s':>9}{'loop/vmap':>11}"
          f"{'loop/bound':>12}")
    totals = {"loop": 0.0, "vmap": 0.0, "bound": 0.0}
    errors = []
    net64 = copy.deepcopy(net).double()
    for algorithm in algorithms:
        pool = train_samples(algorithm, 1000)
        lengths = pool.lengths.numpy()
        values, counts = np.unique(lengths, return_counts=True)
        common = values[np.argmax(counts)]
        batch_ids = np.flatnonzero(lengths == common)[:m].tolist()
        batch = pool.select(batch_ids)

        def vmap_features():
            grads, _ = per_sample_gradients(net, algorithm, batch, FIRST_DEPTH, chunk_size=chunk_size,
                                            chunk_steps=chunk_steps)
            return projection.project(grads)

        def loop_features():
            grads, _ = loop_gradients(net, algorithm, batch, FIRST_DEPTH)
            return projection.project(grads)

        def bound():
            total = output_function(net.head(algorithm), batch).sum()
            return torch.autograd.grad(total, list(params.values()))

        vmap_features(), loop_features(), bound()  # warm-up
        error = _float64_error(net64, algorithm, batch_ids, projection)
        if not error < MAX_ERROR:  # a bug gives O(1)
            raise SystemExit(f"{algorithm}: vmap and loop features differ in float64 (relative error {error:.3g})")
        errors.append(error)
        times: dict[str, list[float]] = {"loop": [], "vmap": [], "bound": []}
        for _ in range(repeats):
            for name, fn in (("loop", loop_features), ("vmap", vmap_features), ("bound", bound)):
                times[name].append(_seconds(fn)[0])
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name in totals:
            totals[name] += medians[name]
        share = f"{int(common)} ({counts.max() / lengths.size:.0%})"
        print(f"{algorithm:<30}{share:>15}{medians['loop']:>9.2f}"
              f"{medians['vmap']:>9.2f}{medians['bound']:>9.2f}{medians['loop'] / medians['vmap']:>10.1f}x"
              f"{medians['loop'] / medians['bound']:>11.1f}x")
    ratio = totals["loop"] / totals["vmap"]
    print(f"{'all':<30}{'':>15}{totals['loop']:>9.2f}{totals['vmap']:>9.2f}{totals['bound']:>9.2f}{ratio:>10.1f}x"
          f"{totals['loop'] / totals['bound']:>11.1f}x")
    print(f"vmap vs loop features: largest relative error (Frobenius) {max(errors):.2g} (float64, each row's first "
          f"{CHECK_GRAPHS} graphs cut to {CHECK_STEPS} hint steps)")
    verdict = "PASS" if ratio >= TARGET else "MISSED"
    print(f"{verdict}: vmap features {ratio:.1f}x the per-sample loop (target {TARGET:g}x); a batched forward and "
          f"backward pass without per-sample gradients is {totals['loop'] / totals['bound']:.1f}x the loop")
    return ratio


def full_part(net: MultitaskNet, mode: str, chunk_size: int, chunk_steps: int, num_samples: int | None) -> None:
    num_samples = num_samples or (100 if mode == "quick" else 1000)
    label = "" if num_samples == 1000 else f" (SCALED DOWN: {num_samples} samples per algorithm, not 1,000)"
    print(f"\nPart 2: the full-size figure{label}: 12 algorithms x {num_samples} train graphs, d = {DIM}, "
          f"chunk_size {chunk_size}, chunk_steps {chunk_steps}; 200 subsets of 3, lam = 1e3")
    seconds, features = _seconds(lambda: gradient_features(net, ALGORITHMS, FIRST_DEPTH, num_samples=num_samples,
                                                           projection_dim=DIM, seed=0, chunk_size=chunk_size,
                                                           chunk_steps=chunk_steps))
    print(f"gradient features: {seconds:.1f} s ({seconds / 60:.1f} min) for {len(ALGORITHMS) * num_samples} samples, "
          f"D = {features.num_parameters} parameters; projection matrix {features.timings['projection_matrix']:.1f} s")
    for algorithm in ALGORITHMS:
        print(f"  {algorithm:<30}{features.timings[algorithm]:>8.1f} s")
    subsets = draw_subsets(len(ALGORITHMS), 200, 3, seed=0)
    start = time.perf_counter()
    fits = [fit_subset(features, [ALGORITHMS[i] for i in subset], 1e3) for subset in subsets]
    regressions = time.perf_counter() - start
    iterations = [fit.iterations for fit in fits]
    print(f"200 subset regressions: {regressions:.1f} s (Newton iterations: median {statistics.median(iterations):g}, "
          f"max {max(iterations)}; all converged: {all(fit.converged for fit in fits)})")
    tasks = [ALGORITHMS[i] for i in subsets[0]]
    evaluation, _ = _seconds(lambda: estimate_scores(net, features, tasks, fits[0].theta))
    print(f"one subset's evaluations ({', '.join(tasks)}, valid split): {evaluation:.1f} s "
          f"(200 subsets: about {200 * evaluation / 60:.0f} min)")
    print(f"features + regressions: {(seconds + regressions) / 60:.1f} min; peak memory {_peak_gb():.1f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["ratio", "full", "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="fewer algorithms, graphs and repeats")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if the ratio target is missed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one core)")
    parser.add_argument("--chunk-size", type=int, default=16, help="most graphs per vmapped call")
    parser.add_argument("--chunk-steps", type=int, default=512, help="most graph-steps per vmapped call")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--num-samples", type=int, default=None, help="part 2's samples per algorithm")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "full"
    print(f"model: MultitaskNet(12 algorithms, {PROCESSOR!r}, hidden={HIDDEN}, num_layers={NUM_LAYERS}, "
          f"variant='mtn'), untrained (seed 0), first_depth={FIRST_DEPTH}; torch {torch.__version__}, "
          f"{args.threads} thread(s), {platform.processor() or platform.machine()}")
    net = _model()
    ratio = None
    if args.part in ("ratio", "all"):
        ratio = ratio_part(net, mode, args.chunk_size, args.chunk_steps, args.repeats)
    if args.part in ("full", "all"):
        full_part(net, mode, args.chunk_size, args.chunk_steps, args.num_samples)
    if args.check and ratio is not None and ratio < TARGET:
        sys.exit(1)


if __name__ == "__main__":
    main()
