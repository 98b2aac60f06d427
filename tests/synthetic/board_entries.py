"""Hand-written leaderboard submissions for the rendering tests (schema-valid, no run behind them)."""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gnnbench.leaderboard.board import BOUND, BoardEntry
from gnnbench.leaderboard.schema import Submission, identity_checksum, prediction_path


def submission_data(name: str, *, test: Sequence[float], valid: Sequence[float] | None = None,
                    benchmark: str = "algo", dataset: str = "clrs30", task: str = "bfs", synthetic: bool = True,
                    metric: str = "clrs30_score", higher_is_better: bool = True, parameters: int = 1000,
                    traces: Sequence[float] | None = None, bounds: Sequence[float] | None = None,
                    gaps: Sequence[float] | None = None, seconds: Sequence[float] | None = None,
                    budget: str = "", code_url: str = "https://example.org/code", paper: str | None = None,
                    hardware: dict[str, Any] | None = None, external_data: str | None = None) -> dict[str, Any]:
    """The ``submission.json`` of a method with the given per-seed values (one seed per test score)."""
    n = len(test)
    valid = list(valid) if valid is not None else list(test)
    traces = list(traces) if traces is not None else [100.0] * n
    bounds = list(bounds) if bounds is not None else [0.5] * n
    gaps = list(gaps) if gaps is not None else [0.1] * n
    seconds = list(seconds) if seconds is not None else [10.0] * n
    identity = {"name": dataset, "splits": {"test": "0" * 64}}
    seeds = []
    for seed in range(n):
        seeds.append({
            "seed": seed, "valid": {"score": valid[seed]}, "test": {"score": test[seed]}, "steps": 300,
            "training_seconds": seconds[seed],
            "hessian": {"trace": traces[seed], "top_eigenvalue": 1.0, "measured_gap": gaps[seed], "num_matvecs": 10,
                        "bounds": {BOUND: {"bound_on_gap": bounds[seed], "measured_gap": gaps[seed]}}},
            "predictions": {"path": prediction_path(seed), "bytes": 100, "rows": 10, "columns": {"value": "float"},
                            "sha256": hashlib.sha256(f"{name}{seed}".encode()).hexdigest()},
        })
    summary = {}
    for key, values in (("test.score", test), ("valid.score", valid)):
        summary[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if n > 1 else None, "n": n}
    return {
        "schema_version": 1, "benchmark": benchmark, "task": task,
        "dataset": {"name": dataset, "synthetic": synthetic, "identity": identity,
                    "identity_sha256": identity_checksum(identity)},
        "method": {"name": name, "authors": ["A. Author"], "contact": "a@example.org", "code_url": code_url,
                   "paper": paper, "external_data": external_data is not None,
                   "external_data_description": external_data or ""},
        "gnnbench_version": "0.0.0", "metric": metric, "higher_is_better": higher_is_better, "num_seeds": n,
        "parameters": parameters, "hardware": hardware or {"device": "cpu", "cpu": "Test CPU", "cpu_count": 2},
        "training_seconds": statistics.fmean(seconds), "hyperparameters": {"model": {"hidden": 8}},
        "config_sha256": "0" * 64, "budget": budget, "seeds": seeds, "summary": summary, "submitted": "2025-01-01",
    }


def entry(name: str, *, rescored: bool = True, **fields: Any) -> BoardEntry:
    """A :class:`BoardEntry` of :func:`submission_data`'s submission (folder named after the method)."""
    submission = Submission.model_validate(submission_data(name, **fields))
    return BoardEntry(submission=submission, folder=Path("submissions") / name.encode().hex()[:40], rescored=rescored)
