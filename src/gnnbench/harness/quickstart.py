"""The training part of ``gnnbench quickstart``: two small baselines through the harness, with the Hessian column.

A small MPNN learns BFS (CLRS-30's splits, a short budget) and a GraphSAGE learns accident occurrence on the
synthetic demo region; each run is an ordinary harness run directory (resumable, recorded), so the quickstart's
numbers are reproducible with ``gnnbench run`` and the same ``--set`` overrides, printed by
:func:`quickstart_commands`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Shortcut flags and ``--set`` overrides of the two quickstart runs (budgets sized for 2 CPU cores).
QUICK_RUNS: dict[str, dict[str, Any]] = {
    "algo": {"shortcuts": {"algorithm": "bfs", "model": "mpnn"},
             "overrides": ["model.hidden=32", "train.steps=150", "train.eval_every=25", "data.length_splits=[]",
                           "hessian.parameters=processor", "hessian.num_matvecs=20", "hessian.density_steps=5",
                           "hessian.max_train_batches=1", "hessian.max_test_batches=1"]},
    "road": {"shortcuts": {"state": "DEMO", "model": "sage", "task": "accident_occurrence"},
             "overrides": ["model.hidden_channels=64", "train.epochs=10", "eval.every=5"]},
}


def quickstart_specs(*, road_root: str | os.PathLike | None = None, algorithm: str = "bfs") -> list:
    """The run specs of the quickstart (seed 0, Hessian column on); the algorithmic data are generated in memory."""
    from .config import resolve

    specs = []
    for benchmark, settings in QUICK_RUNS.items():
        shortcuts = dict(settings["shortcuts"], hessian=True)
        if benchmark == "road" and road_root is not None:
            shortcuts["root"] = str(road_root)
        if benchmark == "algo":
            shortcuts["algorithm"] = algorithm
        specs += resolve(benchmark, shortcuts=shortcuts, overrides=settings["overrides"], seeds="0")
    return specs


#: The bound the summary table shows (``gnnbench.hessian.bounds``' Ju, Li & Zhang 2022 form).
BOUND = "ju_li_zhang_2022"


def quickstart_commands(specs: Sequence) -> list[str]:
    """The ``gnnbench run`` command that reproduces each quickstart run."""
    commands = []
    for spec in specs:
        settings = QUICK_RUNS[spec.benchmark]
        flags = dict(settings["shortcuts"])
        if spec.benchmark == "algo":
            flags["algorithm"] = spec.config["data"]["algorithm"]
        words = ["gnnbench", "run", spec.benchmark, *(f"--{key} {value}" for key, value in flags.items()),
                 *(f"--set {override}" for override in settings["overrides"]), "--seeds 0", "--hessian"]
        commands.append(" ".join(words))
    return commands


def summary_table(records: Mapping[str, Mapping[str, Any]]) -> str:
    """One table: per run, the valid and test score, training time, and the Hessian column; under it, for every run
    whose bound falls below its measured gap, that fact and the approximations that can cause it."""
    header = ("run", "valid", "test", "train s", "Hessian trace", "top eigenvalue", "bound on gap", "measured gap",
              "bound holds")
    rows, notes = [header], []
    for name, record in records.items():
        hessian = record.get("hessian") or {}
        holds = _get(hessian, "bounds", BOUND, "bound_holds")
        if holds is False:
            notes.append(f"{name}: the bound on the gap is below the measured gap. "
                         f"{_get(hessian, 'bounds', BOUND, 'note') or ''}".rstrip())
        rows.append((name, _fmt(record["valid"].get("score")), _fmt(record["test"].get("score")),
                     _fmt(record.get("wall_seconds"), 1), _fmt(_get(hessian, "trace")),
                     _fmt(_get(hessian, "top_eigenvalue")),
                     _fmt(_get(hessian, "bounds", BOUND, "bound_on_gap")),
                     _fmt(_get(hessian, "measured_gap")),
                     "-" if holds is None else ("yes" if holds else "NO (below)")))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join([*lines, *notes])


def _get(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.{digits}f}"
    return str(value)


def seed_record(run_dir: Path, seed: int = 0) -> dict[str, Any]:
    """The record of one finished seed of a run directory."""
    from .record import read_json, seed_directory

    return read_json(seed_directory(run_dir, seed) / "record.json")
