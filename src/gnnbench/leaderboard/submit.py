"""``gnnbench submit RUN_DIR``: a harness run directory -> a submission folder under ``leaderboard/submissions/``.

Only verified seeds count (``record.json`` present, checksums right, made with the run's config); every seed's
test predictions are copied beside ``submission.json`` with their SHA-256, and the summary (mean and unbiased
standard deviation over seeds) is recomputed from the seeds' own records, never copied.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..harness.record import (CONFIG_NAME, DATASET_NAME, ENVIRONMENT_NAME, PREDICTIONS_NAME, finished_seeds,
                              mean_std, read_json, seed_directory)
from ..io import atomic_path, sha256_file
from .schema import (MAX_PREDICTION_BYTES, PREDICTIONS_DIR, SUBMISSION_NAME, Submission, SubmissionError,
                     format_errors, identity_checksum, prediction_path, slug)

#: The headline metric of each benchmark's ``score`` when the run record does not name it (algorithms: CLRS-30's
#: score, the mean over output fields of each field type's metric).
ALGO_METRIC = "clrs30_score"
#: Datasets gnnbench generates itself: marked synthetic on the board.
SYNTHETIC_DATASETS = frozenset({"clrs30", "DEMO"})


def default_submissions_dir() -> Path:
    """``leaderboard/submissions`` of the repository the current directory is in (or below)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "leaderboard").is_dir() and (folder / ".git").exists():
            return folder / "leaderboard" / "submissions"
    return here / "leaderboard" / "submissions"


def submission_folder(root: str | os.PathLike, submission: Submission) -> Path:
    """``<root>/<benchmark>-<dataset>-<task>/<method slug>``."""
    task = f"{submission.benchmark}-{submission.dataset.name}-{submission.task}"
    return Path(root) / slug(task) / slug(submission.method.name)


def submit(run_dir: str | os.PathLike, *, method: Mapping[str, Any], out: str | os.PathLike | None = None,
           budget: str = "", seeds: Sequence[int] | None = None, submitted: str | None = None,
           overwrite: bool = False) -> Path:
    """Write the submission of the harness run in ``run_dir`` and return its folder.

    ``method``: the :class:`~gnnbench.leaderboard.schema.Method` fields (name, authors, contact, code_url, paper,
    external_data, ...). ``budget``: say so when the run used less than the benchmark's protocol. ``seeds``: the
    seeds to submit (default: every finished seed). Raises :class:`SubmissionError` naming what is missing."""
    run_dir = Path(run_dir)
    for name in (CONFIG_NAME, ENVIRONMENT_NAME, DATASET_NAME):
        if not (run_dir / name).is_file():
            raise SubmissionError(f"{run_dir}: no {name}; is this a run directory of `gnnbench run`?")
    from ..harness.config import config_sha256
    from ..harness.values import read_toml

    config = read_toml(run_dir / CONFIG_NAME)
    digest = config_sha256(config)
    records = finished_seeds(run_dir, digest)
    if seeds is not None:
        missing = sorted(set(seeds) - set(records))
        if missing:
            raise SubmissionError(f"{run_dir}: seeds {missing} are not finished (finished: {sorted(records)})")
        records = {seed: records[seed] for seed in sorted(set(seeds))}
    if not records:
        raise SubmissionError(f"{run_dir}: no finished seed (a seed is finished when its record.json verifies)")
    benchmark = config["run"]["benchmark"]
    dataset_identity = read_json(run_dir / DATASET_NAME)
    environment = read_json(run_dir / ENVIRONMENT_NAME)
    seed_entries = [_seed_entry(run_dir, seed, record) for seed, record in records.items()]
    first = next(iter(records.values()))
    extra = first.get("extra") or {}
    task, dataset_name = _task(benchmark, config)
    data = {
        "schema_version": 1, "benchmark": benchmark, "task": task,
        "dataset": {"name": dataset_name, "synthetic": dataset_name in SYNTHETIC_DATASETS,
                    "identity": dataset_identity, "identity_sha256": identity_checksum(dataset_identity)},
        "method": dict(method),
        "gnnbench_version": environment.get("gnnbench", "unknown"),
        "metric": extra.get("metric", ALGO_METRIC),
        "higher_is_better": bool(extra.get("higher_is_better", True)),
        "num_seeds": len(seed_entries),
        "parameters": int(extra["parameters"]) if "parameters" in extra else _missing(run_dir, "extra.parameters"),
        "hardware": _hardware(environment, config),
        "training_seconds": sum(entry["training_seconds"] for entry in seed_entries) / len(seed_entries),
        "hyperparameters": hyperparameters(config),
        "config_sha256": digest,
        "budget": budget,
        "seeds": seed_entries,
        "summary": summary_of(seed_entries),
        "submitted": submitted or datetime.date.today().isoformat(),
    }
    try:
        submission = Submission.model_validate(data)
    except ValidationError as error:
        raise SubmissionError(f"{run_dir}: {format_errors(error, data)}") from None
    root = Path(out) if out is not None else default_submissions_dir()
    folder = submission_folder(root, submission)
    if folder.exists():
        if not overwrite:
            raise SubmissionError(f"{folder} exists; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(folder)
    (folder / PREDICTIONS_DIR).mkdir(parents=True)
    for seed in records:
        with atomic_path(folder / prediction_path(seed)) as temporary:
            shutil.copyfile(seed_directory(run_dir, seed) / PREDICTIONS_NAME, temporary)
    with atomic_path(folder / SUBMISSION_NAME) as temporary:
        temporary.write_text(json.dumps(submission.model_dump(mode="json"), indent=1, sort_keys=True) + "\n")
    return folder


def hyperparameters(config: Mapping[str, Any]) -> dict[str, Any]:
    """The run config without its ``run`` section (name, seeds, device) and without the machine's data path
    (``data.root`` becomes ``""``, the default ``$GNNBENCH_HOME/road``: validation builds the data where it runs)."""
    sections = {key: copy.deepcopy(value) for key, value in config.items() if key != "run"}
    data = sections.get("data")
    if isinstance(data, dict) and "root" in data:
        data["root"] = ""
    return sections


def _products(counts: Any) -> int:
    """The Hessian-vector products a column used: its ``total`` (the other entries are its parts)."""
    if isinstance(counts, Mapping):
        total = counts.get("total")
        return int(total) if total else int(sum(value for key, value in counts.items() if key != "total"))
    return int(counts or 0)


def _missing(run_dir: Path, what: str) -> Any:
    raise SubmissionError(f"{run_dir}: the seed records lack {what}")


def _task(benchmark: str, config: Mapping[str, Any]) -> tuple[str, str]:
    """``(task, dataset name)`` of a run config."""
    data = config["data"]
    if benchmark == "algo":
        if data.get("test") != "test":
            raise SubmissionError(f"the leaderboard scores the algorithms on CLRS-30's test split (n = 64); "
                                  f"this run tested on data.test = {data.get('test')!r}")
        return data["algorithm"], "clrs30"
    if benchmark == "road":
        states = list(data.get("states") or []) or [data["state"]]
        if len(states) != 1:
            raise SubmissionError(f"the leaderboard has one table per region; this run trained on {states} "
                                  "(submit a run of one state)")
        return data["task"], str(states[0])
    raise SubmissionError(f"benchmark {benchmark!r} has no leaderboard (algo, road)")


def _seed_entry(run_dir: Path, seed: int, record: Mapping[str, Any]) -> dict[str, Any]:
    where = f"{run_dir}/seed_{seed}"
    path = seed_directory(run_dir, seed) / PREDICTIONS_NAME
    if not path.is_file():
        raise SubmissionError(f"{where}: no {PREDICTIONS_NAME} (the test predictions the board rescores)")
    size = path.stat().st_size
    if size > MAX_PREDICTION_BYTES:
        raise SubmissionError(f"{where}/{PREDICTIONS_NAME}: {size} bytes, more than the board's limit of "
                              f"{MAX_PREDICTION_BYTES} per seed")
    hessian = record.get("hessian")
    if not hessian:
        raise SubmissionError(f"{where}: no Hessian column; every board entry has one: train with "
                              "`gnnbench run ... --hessian`")
    extra = record.get("extra") or {}
    peak = (record.get("peak_memory") or {})
    predictions = record.get("predictions") or {}
    return {
        "seed": seed, "valid": _numbers(record["valid"]), "test": _numbers(record["test"]),
        "steps": int(record["steps"]),
        "training_seconds": float(extra.get("train_seconds", record.get("wall_seconds", 0.0))),
        "peak_memory_bytes": peak.get("cuda_allocated_bytes") or peak.get("rss_bytes"),
        "hessian": {
            "trace": hessian["trace"], "trace_stderr": hessian.get("trace_stderr"),
            "top_eigenvalue": hessian["top_eigenvalue"], "measured_gap": hessian["measured_gap"],
            "bounds": {name: {"bound_on_gap": bound["bound_on_gap"], "measured_gap": bound["measured_gap"],
                              "bound_holds": bound.get("bound_holds")}
                       for name, bound in hessian["bounds"].items()},
            "num_matvecs": _products(hessian.get("num_matvecs"))},
        "predictions": {"path": prediction_path(seed), "sha256": sha256_file(path), "bytes": size,
                        "rows": int(predictions.get("rows", 0)), "columns": dict(predictions.get("columns") or {})},
    }


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric metrics (a NaN metric, e.g. a protocol with no negatives, is left out and not scored)."""
    import math

    return {key: float(value) for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def summary_of(seeds: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and unbiased standard deviation over seeds of every valid and test metric all seeds have, and of the
    Hessian column's trace, top eigenvalue, measured gap and bounds."""
    columns: dict[str, list[float]] = {}
    for split in ("valid", "test"):
        keys = set.intersection(*(set(seed[split]) for seed in seeds))
        for key in sorted(keys):
            columns[f"{split}.{key}"] = [float(seed[split][key]) for seed in seeds]
    hessians = [seed.get("hessian") for seed in seeds]
    if all(hessians):
        for key in ("trace", "top_eigenvalue", "measured_gap"):
            columns[f"hessian.{key}"] = [float(h[key]) for h in hessians]
        for name in set.intersection(*(set(h["bounds"]) for h in hessians)):
            columns[f"hessian.bound.{name}"] = [float(h["bounds"][name]["bound_on_gap"]) for h in hessians]
    summary = {}
    for key, values in sorted(columns.items()):
        mean, std = mean_std(values)
        summary[key] = {"mean": mean, "std": std, "n": len(values)}
    return summary


def _hardware(environment: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    hardware = environment.get("hardware") or {}
    device = (environment.get("device") or {})
    gpu = device.get("name") if device.get("type") == "cuda" else None
    return {"device": str(device.get("device") or config["run"].get("device", "cpu")), "cpu": hardware.get("cpu"),
            "cpu_count": hardware.get("cpu_count"), "gpu": gpu, "memory_bytes": hardware.get("memory_bytes")}
