"""The branching study's Edge Transformer panel on a GPU, in one prepared run (issue 12, item 6).

    python3 scripts/branch_gpu.py --out "$OUT" [--deadline SECONDS] [--steps N] [--device cuda]

Trains STN, MTN, MMoE and the branched network (the study's published tree) with the study's Edge Transformer
(hidden 192, 12 heads, 5 layers, batch 4, Adam 2.5e-4, fresh graphs of n = 16 every step) on all twelve algorithms,
seeds 0-2, tested at n = 64. It first times each variant's step alone on the GPU and its peak memory
(``calibration.json``), then runs the variants one after another, each variant's seeds at once as far as they fit
in the GPU's memory (``gnnbench branch train --jobs``). Without ``--steps`` every run gets the same number of steps
that fits ``--deadline`` (``train.steps`` is in each run's config, hash and README row, so a budget is always
labelled); runs still going at the deadline are stopped and reported.

Measured on one H200 (results/gpu/2026-11-29): a step (one update per algorithm) takes 10.6-11.0 s for STN, MTN
and the branched network and 31.8 s for MMoE, with 12.3-12.5 GB (MMoE 36.7 GB) at the peak. The study's 10,000
steps are therefore about 30 GPU hours per run (MMoE about 88): `--steps 10000` needs a long lease, not minutes.

Writes into ``--out``: ``machine.txt`` (GPU, torch), ``calibration.json``, ``log.txt``, ``train_<variant>.txt``
and ``et_runs.tar.gz`` (the run directories without checkpoints or model weights), which
``scripts/branch_results.py --gpu-archive`` unpacks under ``results/branch/gpu``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = {"model.hidden": 192, "model.num_layers": 5, "model.nb_heads": 12}
TRAIN = {"train.batch_size": 4, "train.learning_rate": 0.00025}
SEEDS = 3  # seeds 0..SEEDS-1 of every variant
SLOWDOWN = 1.5  # assumed slowdown of a run's step while its seeds share the GPU (each alone is launch-bound)
OVERHEAD_S = 75.0  # start-up (numba compilation, the splits), validations and the test at n = 64 of one run


def calibrate(device: str, steps: int = 3) -> dict:
    """Each variant alone on ``device``: seconds per training step (after two warm-up steps), peak memory
    allocated by torch, parameters. The panel's step budget is sized on the costliest."""
    import numpy as np
    import torch

    from gnnbench.harness import multitask_family as family
    from gnnbench.models.multitask import PUBLISHED_TREE

    cuda = device.startswith("cuda")
    variants = {}
    for variant in ("stn", "mtn", "mmoe", "branched"):
        config = family.default_config()
        config["model"].update(variant=variant, processor="edge_transformer",
                               **{key.split(".")[1]: value for key, value in MODEL.items()})
        if variant == "branched":
            config["data"]["algorithms"] = list(PUBLISHED_TREE.algorithms)
            config["model"]["tree"] = [[list(group) for group in groups] for groups in PUBLISHED_TREE.depths]
        net = family.build_net(config, torch.Generator().manual_seed(0)).to(device)
        step = family.MultitaskStep(net, TRAIN["train.learning_rate"], 1.0)
        batches = family._train_batches(net.algorithms, config["data"], TRAIN["train.batch_size"],
                                        np.random.default_rng(0).spawn(len(net.algorithms)))
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        for _ in range(2):
            step(family._next(batches, device))
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step(family._next(batches, device))
        if cuda:
            torch.cuda.synchronize()
        variants[variant] = {"seconds_per_step": (time.perf_counter() - start) / steps,
                             "cuda_peak_bytes": torch.cuda.max_memory_allocated() if cuda else None,
                             "parameters": sum(p.numel() for p in net.parameters())}
        del net, step, batches
        if cuda:
            torch.cuda.empty_cache()
    return {"timed_steps": steps, "batch_size": TRAIN["train.batch_size"], "model": MODEL, "variants": variants}


def _command(out: Path, device: str, steps: int, smoke: bool, *variant_args: str) -> list[str]:
    model = {"model.hidden": 8, "model.num_layers": 5, "model.nb_heads": 2, "data.test": "valid"} if smoke else MODEL
    overrides = {**model, **TRAIN, "train.steps": steps, "train.eval_every": max(5, steps // 4),
                 "train.checkpoint_every": steps}
    sets = [part for key, value in overrides.items() for part in ("--set", f"{key}={value}")]
    return [sys.executable, "-m", "gnnbench.cli", "branch", "train", *variant_args, "--processor", "edge_transformer",
            "--seeds", f"0-{SEEDS - 1}", "--device", device, "--no-progress", "--out", str(out), *sets]


#: Each variant's ``gnnbench branch train`` arguments (the seeds of one variant train at once).
VARIANT_ARGS = {"stn": ("--variant", "stn"), "mtn": ("--variant", "mtn"), "mmoe": ("--variant", "mmoe"),
                "branched": ("--tree", "published")}


def _plan(calibration: dict | None, args: argparse.Namespace, elapsed: float) -> dict:
    """Seeds at once per variant (as many of the three as fit in 85% of the GPU's memory by the calibration's
    peaks) and the steps of every run: ``--steps``, else what fits the deadline with the variants one after
    another (a run's step ``SLOWDOWN`` times its time alone while its seeds share the GPU)."""
    import torch

    jobs, seconds = {}, 0.0
    total = torch.cuda.get_device_properties(0).total_memory if args.device.startswith("cuda") else None
    for variant in VARIANT_ARGS:
        if calibration is None or total is None:
            jobs[variant] = SEEDS
            continue
        cost = calibration["variants"][variant]
        jobs[variant] = max(1, min(SEEDS, math.floor(0.85 * total / cost["cuda_peak_bytes"])))
        waves = math.ceil(SEEDS / jobs[variant])
        seconds += waves * cost["seconds_per_step"] * (SLOWDOWN if jobs[variant] > 1 else 1.0)
    steps = args.steps
    if steps is None:
        if calibration is None:
            raise SystemExit("--smoke needs --steps")
        left = args.deadline - elapsed - OVERHEAD_S * len(VARIANT_ARGS)
        steps = max(1, min(10000, math.floor(left / seconds)))
    return {"jobs": jobs, "steps": steps, "slowdown_assumed": SLOWDOWN, "overhead_s": OVERHEAD_S}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--deadline", type=float, default=480.0, help="seconds from start to stop every run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: from the calibration)")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/branch-gpu-runs"))
    parser.add_argument("--smoke", action="store_true",
                        help="check this script on the CPU: hidden 8, 2 heads, tested on valid (needs --steps)")
    args = parser.parse_args(argv)
    begin = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    log = open(args.out / "log.txt", "a", buffering=1)

    def say(message: str) -> None:
        line = f"[{time.monotonic() - begin:6.1f}s] {message}"
        print(line, flush=True)
        log.write(line + "\n")

    import torch

    machine = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
               "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
               "cpu_count": os.cpu_count()}
    (args.out / "machine.txt").write_text(json.dumps(machine, indent=1) + "\n")
    say(f"machine {machine}")
    calibration = calibrate(args.device) if not args.smoke else None
    if calibration is not None:
        (args.out / "calibration.json").write_text(json.dumps(calibration, indent=1) + "\n")
        say(f"calibration {calibration}")
    plan = _plan(calibration, args, time.monotonic() - begin)
    say(f"plan {plan}")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    codes = []
    for variant, variant_args in VARIANT_ARGS.items():
        command = _command(args.runs / variant, args.device, plan["steps"], args.smoke, *variant_args, "--jobs",
                           str(plan["jobs"][variant]))
        say("run " + " ".join(command[1:]))
        with open(args.out / f"train_{variant}.txt", "w") as output:
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            while process.poll() is None and time.monotonic() - begin < args.deadline:
                time.sleep(2)
            if process.poll() is None:
                say(f"deadline: stopping {variant}")
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        codes.append(process.returncode)
        say(f"{variant}: exit code {process.returncode}")
    with tarfile.open(args.out / "et_runs.tar.gz", "w:gz") as archive:
        archive.add(args.runs, arcname="gpu", filter=lambda info: None if info.name.endswith((".pt", ".lock")) else info)
    say("archived")
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
