"""Tiny real harness runs for the leaderboard's tests, made once per test session (``leaderboard_runs`` in
tests/conftest.py) and read-only afterwards: an algorithmic run (BFS, MPNN, 3 seeds, ``--hessian``) and a road run
(the DEMO region, SAGE, accident occurrence, 10 seeds, ``--hessian``), both with budgets of seconds.

Tests submit them into their own folders: ``submit_runs(runs, out)``; the road submission rescores against
``runs.road_root`` (``validate(..., data_root=runs.road_root)``).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALGO_SEEDS = 3
ROAD_SEEDS = 10
ALGO_ARGS = ["run", "algo", "--algorithm", "bfs", "--model", "mpnn", "--seeds", f"0-{ALGO_SEEDS - 1}",
             "--set", "train.steps=2", "--set", "model.hidden=8", "--set", "data.length_splits=[\"test_16\"]",
             "--set", "train.batch_size=1", "--set", "hessian.max_train_batches=1",
             "--set", "hessian.max_test_batches=1", "--set", "hessian.num_matvecs=6",
             "--set", "hessian.density_steps=4", "--set", "hessian.parameters=processor", "--hessian", "--no-progress"]
ROAD_ARGS = ["run", "road", "--state", "DEMO", "--model", "sage", "--task", "accident_occurrence",
             "--seeds", f"0-{ROAD_SEEDS - 1}", "--set", "train.epochs=1", "--set", "model.hidden_channels=8",
             "--set", "eval.every=1", "--set", "hessian.num_matvecs=6", "--set", "hessian.density_steps=2",
             "--set", "hessian.max_train_batches=1", "--set", "hessian.max_test_batches=1", "--hessian",
             "--no-progress"]
#: The method fields of the test submissions (``submit(..., method=dict(METHOD, name=...))``).
METHOD: dict[str, Any] = {"name": "Tiny baseline", "authors": ["Ada Lovelace"], "contact": "ada@example.org",
                          "code_url": "https://example.org/tiny", "description": "a seconds-long test run"}


@dataclass(frozen=True)
class LeaderboardRuns:
    algo: Path  # run directory: bfs, mpnn, seeds 0-2, with the Hessian column
    road: Path  # run directory: DEMO, sage, accident_occurrence, seeds 0-9, with the Hessian column
    road_root: Path  # the road data the road run used (validation's data_root)


def build_runs(directory: Path, demo_region: Path) -> LeaderboardRuns:
    """The two runs under ``directory`` (made when not already finished there); ``demo_region``: a built DEMO
    region, copied beside them."""
    from gnnbench.cli import main

    directory.mkdir(parents=True, exist_ok=True)
    road_root = directory / "road"
    if not (road_root / "tables" / "DEMO").is_dir():
        shutil.copytree(demo_region, road_root, dirs_exist_ok=True)
    runs = LeaderboardRuns(directory / "algo", directory / "road-run", road_root)
    if not _finished(runs.algo, ALGO_SEEDS):
        shutil.rmtree(runs.algo, ignore_errors=True)
        if main([*ALGO_ARGS, "--out", str(runs.algo)]) != 0:
            raise RuntimeError("the tiny algorithmic run failed")
    if not _finished(runs.road, ROAD_SEEDS):
        shutil.rmtree(runs.road, ignore_errors=True)
        if main([*ROAD_ARGS, "--root", str(road_root), "--out", str(runs.road)]) != 0:
            raise RuntimeError("the tiny road run failed")
    return runs


def _finished(run: Path, seeds: int) -> bool:
    from gnnbench.harness import finished_seeds
    from gnnbench.harness.config import config_sha256

    if not (run / "config.toml").is_file():
        return False
    config = tomllib.loads((run / "config.toml").read_text())
    return sorted(finished_seeds(run, config_sha256(config))) == list(range(seeds))


def submit_runs(runs: LeaderboardRuns, out: Path, **method: Any) -> dict[str, Path]:
    """Submit both runs into ``out`` (a submissions root); ``method`` overrides fields of :data:`METHOD`.
    Returns ``{"algo": folder, "road": folder}``."""
    from gnnbench.leaderboard.submit import submit

    fields = {**METHOD, **method}
    return {"algo": submit(runs.algo, method=fields, out=out, submitted="2026-01-15"),
            "road": submit(runs.road, method=fields, out=out, submitted="2026-01-15")}


# ------------------------------------------------------------------ editing submission.json (tampering tests)


def load(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "submission.json").read_text())


def save(folder: Path, data: dict[str, Any]) -> None:
    (folder / "submission.json").write_text(json.dumps(data, indent=1))  # NaN is written as NaN


def resummarise(data: dict[str, Any]) -> None:
    """What a careful tamperer does after editing seeds: the summary recomputed (statistics module)."""
    for key, entry in data["summary"].items():
        split, _, metric = key.partition(".")
        if split in ("valid", "test"):
            values = [seed[split][metric] for seed in data["seeds"]]
        elif metric in ("trace", "top_eigenvalue", "measured_gap"):
            values = [seed["hessian"][metric] for seed in data["seeds"]]
        else:
            values = [seed["hessian"]["bounds"][metric.removeprefix("bound.")]["bound_on_gap"]
                      for seed in data["seeds"]]
        entry.update(mean=statistics.mean(values), std=statistics.stdev(values), n=len(values))
    data["training_seconds"] = statistics.mean(seed["training_seconds"] for seed in data["seeds"])
