"""Training speed of gnnbench's baselines against the reference trainers, like for like, in the same run.

``algo``: training steps per second of gnnbench's encode-process-decode network (``gnnbench.harness.algo_family``:
``TrainStep``, the step the training protocol runs) against DeepMind's JAX reference ``clrs.models.BaselineModel``
(``BaselineModel.feedback``: one training step including the optax update; ``dm-clrs`` 2.0.3 =
https://github.com/google-deepmind/clrs tag v2.0.3, commit fbaa76281e958b2df76c823768908040487328cd, with ``jax``,
``dm-haiku`` and ``optax``), both with the same processor, hidden size 128, Adam 1e-3, gradient clipping 1.0, hints
encoded and decoded with soft re-prediction, layer norm and Xavier-on-scalars, on BFS, Dijkstra and Floyd-Warshall
(whose hint sequences differ: about 7, 17 and 16 steps at n = 16) with the processors mpnn, pgn, gatv2 and
triplet_gmpnn (``--quick``: mpnn and triplet_gmpnn).

Both train on the same batches: 32 graphs drawn with replacement from CLRS-30's train split (1000 graphs, n = 16)
by ``numpy.random.RandomState(0)``, with the same randomised ``pos``. The reference receives them padded to the
split's longest trace, as its own dataset sampler pads every batch; gnnbench receives them padded to each batch's
longest trace (``train.bucket``, its protocol's default; the issue counts this as a fair gain). gnnbench is also
timed on the reference's padded batches (column "padded"). Timed: from the batch's NumPy arrays to the updated
weights (the reference's host-to-device transfer, gnnbench's ``to_torch``). Warm-up: the first two batches,
untimed, for each (the reference's JIT compilation happens there and is excluded). Then ``--repeats`` rounds, each
timing one pass over the batches for every contestant in turn (so load on a shared machine hits them alike),
with a second's pause between them (XLA's threads spin for a while after their work);
the table shows median steps per second. The reference runs in its own Python (``--reference-python``, default
``$GNNBENCH_CLRS_PYTHON`` or this interpreter when it imports jax, haiku, optax and clrs), fed the batches
through a file.

Target: gnnbench at least 2x the reference's steps per second on the CPU for every row (at least parity on a GPU).
``--check`` exits with status 1 when a target is missed.

``road``: one training epoch of the road baseline (GraphSAGE on the state-scale synthetic region) against
ML4RoadSafety's own trainer run from a scratch copy of its code (``--upstream CHECKOUT``); see
``benchmarks/road_train_speed.py``. Target: at least 2x faster on the CPU.

    python benchmarks/train_speed.py [algo] [--quick] [--check] [--markdown] [--reference-python PATH]
    python benchmarks/train_speed.py road [--quick] [--check] [--upstream CHECKOUT] [--road-work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REFERENCE_VERSION = "2.0.3"
REFERENCE_COMMIT = "fbaa76281e958b2df76c823768908040487328cd"  # google-deepmind/clrs tag v2.0.3


# --------------------------------------------------------------------------------------------- shared harness


@dataclass
class Check:
    """One target: what was measured against what, and whether it held."""

    name: str
    value: float
    target: float
    passed: bool


@dataclass(frozen=True)
class Part:
    """One benchmark of this script: its options and its run (printing its table, returning its checks)."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], list[Check]]


def print_table(title: str, headers: list[str], rows: list[list[str]], markdown: bool) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    if markdown:
        print("\n| " + " | ".join(headers) + " |")
        print("|" + "|".join("---" for _ in headers) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")


def machine() -> str:
    import torch

    return (f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} of {os.cpu_count()} CPUs, "
            f"torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


# ------------------------------------------------------------------------------------------------------- algo

ALGO_ALGORITHMS = ("bfs", "dijkstra", "floyd_warshall")
ALGO_PROCESSORS = ("mpnn", "pgn", "gatv2", "triplet_gmpnn")
ALGO_QUICK_PROCESSORS = ("mpnn", "triplet_gmpnn")
ALGO_TARGET = {"cpu": 2.0, "cuda": 1.0}  # minimum ratio of steps per second, gnnbench / reference
BATCH, N, HIDDEN = 32, 16, 128
SEED = 0
WARMUP = 2  # untimed steps before timing (the reference compiles in the first)
SETTLE = 1.0  # seconds between contestants: thread pools that spin after their work (XLA's) go idle first


def algo_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("algo")
    group.add_argument("--algorithms", nargs="+", choices=ALGO_ALGORITHMS, default=None, metavar="NAME")
    group.add_argument("--processors", nargs="+", choices=ALGO_PROCESSORS, default=None, metavar="NAME")
    group.add_argument("--steps", type=int, default=None, help="training steps per timed pass (8; --quick 3)")
    group.add_argument("--repeats", type=int, default=None, help="timed passes per contestant (5; --quick 3)")
    group.add_argument("--device", default="cpu", help="gnnbench's torch device (the reference runs where jax does)")
    group.add_argument("--threads", type=int, default=None,
                       help="pin both trainers to this many CPUs (torch threads = XLA's pool = N); default: every "
                            "CPU, unpinned. On cores others share, torch's OpenMP threads wait for each other at "
                            "every operation: compare pinned to 1 there")
    group.add_argument("--reference-keeps-memory", action="store_true",
                       help="apply gnnbench.harness.allocator's glibc setting (freed memory kept for reuse) to the "
                            "reference's process too: a sensitivity check")
    group.add_argument("--reference-python", default=os.environ.get("GNNBENCH_CLRS_PYTHON"),
                       help="a Python with dm-clrs, jax, dm-haiku and optax (default: $GNNBENCH_CLRS_PYTHON or this)")


def algo_batches(algorithm: str, steps: int):
    """``steps`` training batches of CLRS-30's train split: (padded to the split's longest trace, bucketed)."""
    from gnnbench.harness.algo_data import randomise_pos, split_traces, take

    split = split_traces(algorithm, "train").clrs_batch()
    rng = np.random.RandomState(SEED)
    padded, bucketed = [], []
    for _ in range(steps):
        indices = rng.choice(split.lengths.shape[0], BATCH, replace=True)
        pos = np.sort(rng.uniform(size=(BATCH, N)), axis=-1)
        for bucket, out in ((False, padded), (True, bucketed)):
            batch = take(split, indices, bucket)
            out.append(randomise_pos(batch, _Fixed(pos)))
    return padded, bucketed


class _Fixed:
    """Stands in for a generator whose ``uniform`` returns pre-drawn sorted values (the same ``pos`` twice)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def uniform(self, size):
        assert tuple(size) == self.values.shape
        return self.values


def _save_batches(path: Path, batches) -> None:
    arrays = {}
    for j, batch in enumerate(batches):
        for group, values in (("input", batch.inputs), ("hint", batch.hints), ("output", batch.outputs)):
            for name, value in values.items():
                arrays[f"{j}/{group}/{name}"] = np.ascontiguousarray(value)
        arrays[f"{j}/lengths"] = batch.lengths
    np.savez(path, **arrays)


class ReferenceFailed(RuntimeError):
    """The reference's process died (its log's tail in the message)."""


class ReferenceWorker:
    """The CLRS-30 reference trainer in its own process: built and warmed up on start, then timed on request."""

    def __init__(self, python: str, batches: Path, algorithm: str, processor: str, log: Path,
                 keep_memory: bool = False) -> None:
        self.log = open(log, "w")
        self.process = subprocess.Popen(
            [python, __file__, "--reference-worker", str(batches), algorithm, processor, str(HIDDEN),
             "keep" if keep_memory else "release"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            text=True)
        self.ready = self._reply()

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            self.log.flush()
            self.log.close()
            tail = Path(self.log.name).read_text()[-2000:]
            why = " (SIGKILL: out of memory?)" if code == -9 else ""
            raise ReferenceFailed(f"the reference worker exited with status {code}{why}:\n{tail}")
        return json.loads(line)

    def time_pass(self) -> float:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        reply = self._reply()
        self.peak_rss_bytes = reply.get("peak_rss_bytes")
        return float(reply["seconds"])

    def close(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            self.process.wait(timeout=60)
        self.log.close()


def reference_worker(path: str, algorithm: str, processor: str, hidden: str, memory: str) -> None:
    """Runs in the reference's Python: builds ``BaselineModel`` on the batches in ``path`` and times passes."""
    import importlib
    import logging

    if memory == "keep":
        from gnnbench.harness.allocator import retain_freed_memory

        retain_freed_memory()

    from gnnbench.algo.reference import load_clrs_reference

    logging.getLogger("absl").setLevel(logging.ERROR)
    ref = load_clrs_reference()
    baselines = importlib.import_module("clrs._src.baselines")
    processors = importlib.import_module("clrs._src.processors")
    import jax

    spec = ref.specs.SPECS[algorithm]
    data = np.load(path)
    count = 1 + max(int(key.split("/")[0]) for key in data.files)

    def point(name: str, value: np.ndarray):
        _, location, type_ = spec[name]
        return ref.probing.DataPoint(name=name, location=location, type_=type_, data=value)

    feedbacks = []
    for j in range(count):
        groups: dict[str, list] = {"input": [], "hint": [], "output": []}
        for key in data.files:
            parts = key.split("/")
            if int(parts[0]) == j and len(parts) == 3:
                groups[parts[1]].append(point(parts[2], data[key]))
        features = ref.samplers.Features(groups["input"], groups["hint"], data[f"{j}/lengths"])
        feedbacks.append(ref.samplers.Feedback(features, groups["output"]))
    factory = processors.get_processor_factory(processor, use_ln=True, nb_triplet_fts=8, nb_heads=1)
    model = baselines.BaselineModel(
        spec=spec, dummy_trajectory=feedbacks[0], processor_factory=factory, hidden_dim=int(hidden),
        encode_hints=True, decode_hints=True, encoder_init="xavier_on_scalars", use_lstm=False, learning_rate=1e-3,
        grad_clip_max_norm=1.0, dropout_prob=0.0, hint_teacher_forcing=0.0, hint_repred_mode="soft",
        nb_msg_passing_steps=1)
    model.init(feedbacks[0].features, SEED + 1)
    rng_key = jax.random.PRNGKey(SEED)

    def one_pass(batches=feedbacks) -> float:
        nonlocal rng_key
        start = time.perf_counter()
        for feedback in batches:
            rng_key, step_key = jax.random.split(rng_key)  # as run.py splits a key per step
            loss = model.feedback(step_key, feedback)
        jax.block_until_ready(loss)
        return time.perf_counter() - start

    compile_and_warm = one_pass(feedbacks[:WARMUP])
    print(json.dumps({"ready": True, "warmup_seconds": compile_and_warm, "jax": jax.__version__,
                      "backend": jax.default_backend()}), flush=True)
    for line in sys.stdin:
        if line.strip() == "run":
            import resource

            seconds = one_pass()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes (Linux reports KiB)
            print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak}), flush=True)
        elif line.strip() == "quit":
            break


def _reference_python(args: argparse.Namespace) -> str:
    if args.reference_python:
        return args.reference_python
    try:
        import clrs  # noqa: F401
        import haiku  # noqa: F401
        import jax  # noqa: F401
        import optax  # noqa: F401
    except ImportError:
        sys.exit("the CLRS-30 reference (dm-clrs with jax, dm-haiku, optax) is not importable here: pass "
                 "--reference-python PATH (a Python that has them) or set GNNBENCH_CLRS_PYTHON")
    return sys.executable


def _pin(threads: int) -> None:
    """Restrict this process and the reference worker it starts (affinity is inherited; XLA sizes its thread
    pool by the CPUs it may run on) to the first ``threads`` allowed CPUs, and torch to as many threads."""
    import torch

    allowed = sorted(os.sched_getaffinity(0))
    if not 1 <= threads <= len(allowed):
        sys.exit(f"--threads must be between 1 and {len(allowed)}, got {threads}")
    os.sched_setaffinity(0, allowed[:threads])
    torch.set_num_threads(threads)


def _gnnbench_trainer(algorithm: str, processor: str, device: str):
    """gnnbench's model and training step under the protocol's defaults, as ``train_seed`` builds them."""
    import torch

    from gnnbench.harness.algo_family import TrainStep, build_model, default_config, to_device
    from gnnbench.harness.allocator import retain_freed_memory

    retain_freed_memory()  # as train_seed does
    config = default_config()
    config["model"].update(processor=processor, hidden=HIDDEN)
    model = build_model(algorithm, config["model"], torch.Generator().manual_seed(SEED)).to(device)
    step = TrainStep(model, config["train"]["learning_rate"], config["train"]["grad_clip"])

    def one_pass(batches) -> float:
        start = time.perf_counter()
        for batch in batches:
            loss = step(to_device(batch, device))
        float(loss)  # waits for the device
        return time.perf_counter() - start

    return one_pass


def _time_pair(python: str, path: Path, algorithm: str, processor: str, padded, bucketed, repeats: int,
               device: str, log: Path, keep_memory: bool) -> dict:
    """Seconds per pass of the reference and of gnnbench (bucketed and padded batches), rounds interleaved."""
    worker = ReferenceWorker(python, path, algorithm, processor, log, keep_memory)
    try:
        ours = _gnnbench_trainer(algorithm, processor, device)
        ours(bucketed[:WARMUP])  # the same warm-up steps as the reference's
        ours(padded[:WARMUP])
        times: dict = {"ready": worker.ready, "reference": [], "bucketed": [], "padded": []}
        for _ in range(repeats):
            times["reference"].append(worker.time_pass())
            time.sleep(SETTLE)
            times["bucketed"].append(ours(bucketed))
            time.sleep(SETTLE)
            times["padded"].append(ours(padded))
            time.sleep(SETTLE)
        times["reference_peak_rss_bytes"] = worker.peak_rss_bytes
        return times
    finally:
        worker.close()


def algo_run(args: argparse.Namespace) -> list[Check]:
    algorithms = args.algorithms or ALGO_ALGORITHMS
    processors = args.processors or (ALGO_QUICK_PROCESSORS if args.quick else ALGO_PROCESSORS)
    steps = args.steps or (3 if args.quick else 8)
    repeats = args.repeats or (3 if args.quick else 5)
    device = args.device
    python = _reference_python(args)
    import gnnbench.harness.algo_family  # noqa: F401  (imported now: files edited while this runs stay out)

    if args.threads is not None:
        _pin(args.threads)
    target = ALGO_TARGET["cuda" if device.startswith("cuda") else "cpu"]
    rows, checks = [], []
    reference_info = None
    with tempfile.TemporaryDirectory(prefix="train_speed-") as work:
        for algorithm in algorithms:
            padded, bucketed = algo_batches(algorithm, steps)
            path = Path(work) / f"{algorithm}.npz"
            _save_batches(path, padded)
            for processor in processors:
                try:
                    times = _time_pair(python, path, algorithm, processor, padded, bucketed, repeats, device,
                                       Path(work) / "reference.log", args.reference_keeps_memory)
                except ReferenceFailed as error:
                    print(f"  {algorithm} {processor}: {error}", flush=True)
                    rows.append([algorithm, processor, "", "failed", "", "", "", "", "ERROR"])
                    checks.append(Check(f"algo {algorithm} {processor} (reference failed)", 0.0, target, False))
                    continue
                reference_info = times.pop("ready")
                reference_rss = times.pop("reference_peak_rss_bytes")
                rate = {name: steps / statistics.median(values) for name, values in times.items()}
                ratio = rate["bucketed"] / rate["reference"]
                passed = ratio >= target
                hint_steps = f"{int(max(b.lengths.max() for b in padded))} / " \
                             f"{statistics.mean(int(b.lengths.max()) for b in bucketed):.1f}"
                rows.append([algorithm, processor, hint_steps, f"{rate['reference']:.2f}", f"{rate['padded']:.2f}",
                             f"{rate['bucketed']:.2f}", f"{rate['padded'] / rate['reference']:.2f}x",
                             f"{ratio:.2f}x", "PASS" if passed else "FAIL"])
                checks.append(Check(f"algo {algorithm} {processor}", ratio, target, passed))
                print(f"  {algorithm} {processor}: reference {rate['reference']:.2f}, gnnbench {rate['bucketed']:.2f} "
                      f"steps/s ({ratio:.2f}x); reference peak RSS {reference_rss / 2**30:.1f} GiB", flush=True)
    backend = reference_info.get("backend", "?") if reference_info else "?"
    jax_version = reference_info.get("jax", "?") if reference_info else "?"
    title = (f"Training steps per second, batch {BATCH}, n = {N}, hidden {HIDDEN} (median of {repeats} passes of "
             f"{steps} steps; {machine()}; gnnbench on {device}; reference dm-clrs {REFERENCE_VERSION} "
             f"({REFERENCE_COMMIT[:7]}) on jax {jax_version} {backend}"
             f"{', with gnnbench glibc setting' if args.reference_keeps_memory else ''}; target >= {target:g}x)")
    headers = ["algorithm", "processor", "hint steps (padded / bucketed mean)", "reference", "gnnbench padded",
               "gnnbench", "padded / ref", "gnnbench / ref", "target"]
    print_table(title, headers, rows, args.markdown)
    return checks


PARTS: dict[str, Part] = {"algo": Part(algo_arguments, algo_run)}

# ------------------------------------------------------------------------------------------------------- road

from road_train_speed import road_arguments, road_run  # noqa: E402  (beside this file; see its docstring)

PARTS["road"] = Part(road_arguments, road_run)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--reference-worker":
        reference_worker(*sys.argv[2:7])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", nargs="?", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="fewer cases, steps and repeats (CI)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if any target is missed")
    parser.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    for part in PARTS.values():
        part.add_arguments(parser)
    args = parser.parse_args()
    checks: list[Check] = []
    for name, part in PARTS.items():
        if args.part in (name, "all"):
            checks += part.run(args)
    missed = [c for c in checks if not c.passed]
    for check in missed:
        print(f"MISSED: {check.name}: {check.value:.2f} < {check.target:g}")
    if args.check and missed:
        sys.exit(1)


if __name__ == "__main__":
    main()
