"""The run record: one format for every run directory, read by the summaries, the README tables and the leaderboard.

Layout of a run directory::

    config.toml        the resolved config (every key; ``run.seeds``: every seed run into this directory)
    environment.json   package and dependency versions, hardware, device, git commit (of the submitting machine)
    dataset.json       the family's dataset identity (manifest checksums, sizes)
    seed_<k>/
        record.json          valid and test metrics, curve, steps, wall time (of the invocation that finished
                             the seed: a resumed seed's counts from its resume), peak memory, device,
                             environment, the Hessian column when asked, the SHA-256 of every file below
        checkpoint.pt        the family's last training state (``torch.load(..., weights_only=True)``)
        model.pt             the selected weights: a state dict (``weights_only=True``)
        predictions.parquet  the test predictions, one column per array the family returned
        hessian.json         the full Hessian report (with ``--hessian``)
        config.sha256        the hash of the config that owns this directory and its checkpoint
    summary.json       mean and unbiased standard deviation (n - 1) over the finished seeds of every metric
    summary.md         the same as a short table

Every file is written to a temporary name and renamed. ``record.json`` is written last, so a seed is finished
exactly when its record exists and verifies (:func:`verify_seed`): the format, the seed, the config hash and the
checksums of the files it lists.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_path, sha256_file

RECORD_FORMAT = 1
RECORD_NAME = "record.json"
MODEL_NAME = "model.pt"
PREDICTIONS_NAME = "predictions.parquet"
HESSIAN_NAME = "hessian.json"
SUMMARY_NAME = "summary.json"
SUMMARY_TABLE_NAME = "summary.md"
CONFIG_NAME = "config.toml"
CONFIG_MARKER = "config.sha256"
ENVIRONMENT_NAME = "environment.json"
DATASET_NAME = "dataset.json"

logger = logging.getLogger(__name__)


def seed_directory(run_dir: str | os.PathLike, seed: int) -> Path:
    return Path(run_dir) / f"seed_{seed}"


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically (temporary file, then rename)."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically; non-finite floats become ``null`` (JSON has no NaN)."""
    write_text(path, json.dumps(_finite(data), indent=1, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as handle:
        return json.load(handle)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


def write_predictions(path: str | os.PathLike, columns: Mapping[str, Any]) -> dict[str, Any]:
    """Write equal-length 1-D columns as Parquet (atomically); returns their description (rows, columns, dtypes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not columns:
        raise ValueError("the family returned no prediction columns")
    arrays = {}
    length = None
    for name, values in columns.items():
        array = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)
        if array.ndim != 1:
            raise ValueError(f"prediction column {name!r} must be 1-D, got shape {array.shape}")
        if length is not None and len(array) != length:
            raise ValueError(f"prediction column {name!r} has {len(array)} rows, the others {length}")
        length = len(array)
        arrays[str(name)] = array
    table = pa.table(arrays)
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)
    return {"rows": int(length or 0), "columns": {name: str(array.dtype) for name, array in arrays.items()}}


def file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def verify_seed(seed_dir: str | os.PathLike, *, seed: int, config_sha256: str,
                missing_ok: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The seed's record if it is finished: ``record.json`` exists, parses, has this format, seed and config hash,
    and every file it lists has its checksum. ``None`` otherwise (the reason is logged at debug level).
    ``missing_ok``: name suffixes of listed files that may be absent (``(".pt",)`` for committed results, whose
    weights git does not hold); a present file is always checked."""
    seed_dir = Path(seed_dir)
    path = seed_dir / RECORD_NAME
    if not path.exists():
        return None
    try:
        record = read_json(path)
    except (OSError, ValueError) as error:
        logger.debug("%s does not parse: %s", path, error)
        return None
    problems = []
    if record.get("format") != RECORD_FORMAT:
        problems.append(f"format {record.get('format')!r} is not {RECORD_FORMAT}")
    if record.get("seed") != seed:
        problems.append(f"seed {record.get('seed')!r} is not {seed}")
    if record.get("config_sha256") != config_sha256:
        problems.append("it was made with another config")
    for name, entry in (record.get("files") or {}).items():
        file = seed_dir / name
        if not file.exists():
            if not name.endswith(missing_ok):  # endswith(()) is False
                problems.append(f"{name} is missing")
        elif sha256_file(file) != entry.get("sha256"):
            problems.append(f"{name} does not match its checksum")
    if problems:
        logger.debug("%s does not verify: %s", path, "; ".join(problems))
        return None
    return record


def finished_seeds(run_dir: str | os.PathLike, config_sha256: str,
                   missing_ok: tuple[str, ...] = ()) -> dict[int, dict[str, Any]]:
    """Verified records of every ``seed_<k>`` directory of a run, by seed (``missing_ok``: see
    :func:`verify_seed`)."""
    records = {}
    for directory in Path(run_dir).glob("seed_*"):
        suffix = directory.name[len("seed_"):]
        if directory.is_dir() and suffix.isdigit():
            record = verify_seed(directory, seed=int(suffix), config_sha256=config_sha256, missing_ok=missing_ok)
            if record is not None:
                records[int(suffix)] = record
    return dict(sorted(records.items()))


# ------------------------------------------------------------------------------------------------------ summary


def scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a seed record that are summarised over seeds: every valid and test metric, steps, wall
    time, peak memory and the Hessian column's headline values."""
    values: dict[str, float] = {}
    for split in ("valid", "test"):
        for key, value in (record.get(split) or {}).items():
            if _number(value):
                values[f"{split}.{key}"] = float(value)
    for key in ("steps", "wall_seconds"):
        if _number(record.get(key)):
            values[key] = float(record[key])
    for key, value in (record.get("peak_memory") or {}).items():
        if key.endswith("_bytes") and _number(value):
            values[f"peak_memory.{key}"] = float(value)
    hessian = record.get("hessian") or {}
    for key in ("trace", "trace_stderr", "top_eigenvalue", "measured_gap"):
        if _number(hessian.get(key)):
            values[f"hessian.{key}"] = float(hessian[key])
    for name, bound in (hessian.get("bounds") or {}).items():
        if _number(bound.get("bound_on_gap")):
            values[f"hessian.bound.{name}"] = float(bound["bound_on_gap"])
    return values


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mean_std(values: Iterable[float]) -> tuple[float, float | None]:
    """Mean and unbiased standard deviation (divisor n - 1, as ``torch.std``); the deviation is ``None`` for one
    value."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        raise ValueError("mean_std needs at least one value")
    return float(array.mean()), (float(array.std(ddof=1)) if array.size > 1 else None)


def summarize(records: Mapping[int, Mapping[str, Any]], *, name: str, config_sha256: str) -> dict[str, Any]:
    """Mean and unbiased standard deviation over seeds of every metric the records share."""
    per_metric: dict[str, dict[int, float]] = {}
    for seed, record in records.items():
        for key, value in scalars(record).items():
            per_metric.setdefault(key, {})[seed] = value
    metrics = {}
    for key, by_seed in sorted(per_metric.items()):
        mean, std = mean_std(by_seed.values())
        metrics[key] = {"mean": mean, "std": std, "n": len(by_seed), "values": {str(s): v for s, v in by_seed.items()}}
    return {"format": RECORD_FORMAT, "name": name, "config_sha256": config_sha256, "seeds": sorted(records),
            "std": "unbiased (n - 1), as torch.std and OGB's leaderboards", "metrics": metrics}


def summary_table(summary: Mapping[str, Any]) -> str:
    """A short Markdown table of a summary."""
    seeds = summary["seeds"]
    lines = [f"# {summary['name']}", "", f"Seeds: {', '.join(map(str, seeds)) or 'none finished'} "
             f"(mean ± unbiased standard deviation over {len(seeds)} seeds)", "",
             "| metric | mean | std | seeds |", "|---|---|---|---|"]
    order = ("test.", "valid.", "hessian.")
    keys = sorted(summary["metrics"], key=lambda key: (next((i for i, p in enumerate(order) if key.startswith(p)),
                                                             len(order)), key))
    for key in keys:
        entry = summary["metrics"][key]
        std = "" if entry["std"] is None else f"{entry['std']:.4g}"
        lines.append(f"| {key} | {entry['mean']:.4g} | {std} | {entry['n']} |")
    return "\n".join(lines) + "\n"


def write_summary(run_dir: str | os.PathLike, summary: Mapping[str, Any]) -> None:
    write_json(Path(run_dir) / SUMMARY_NAME, summary)
    write_text(Path(run_dir) / SUMMARY_TABLE_NAME, summary_table(summary))
