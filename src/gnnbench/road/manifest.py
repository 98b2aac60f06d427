"""``manifest.json`` of a built (or imported) state: what went in, what came out, what was dropped.

Layout::

    {
      "format": 1,
      "kind": "build" | "ml4roadsafety-import",
      "state": "MA",
      "gnnbench_version": "0.1.0",
      "parameters": {...},                  # build parameters (match distance, years, seeds, ...)
      "sources": [ {url, path, sha256, size, retrieved_at, role}, ... ],   # every raw file used
      "tables": {"nodes": {"rows": 123, "sha256": "..."} , ...},
      "quality": {...}                      # per-stage reports, e.g. crash accounting
    }

Nothing time-dependent is written except the retrieval times of sources, which come from the
download records, so rebuilding from the same raw files gives the same manifest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..io import atomic_path, sha256_file

MANIFEST_NAME = "manifest.json"
FORMAT = 1


def table_summary(directory: str | os.PathLike, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Row count and sha256 of each written table ``directory/{name}.parquet``."""
    import pyarrow.parquet as pq

    summary = {}
    for name in names:
        path = Path(directory) / f"{name}.parquet"
        summary[name] = {"rows": pq.ParquetFile(path).metadata.num_rows, "sha256": sha256_file(path)}
    return summary


def write_manifest(directory: str | os.PathLike, *, kind: str, state: str, parameters: Mapping[str, Any],
                   sources: Iterable[Mapping[str, Any]], tables: Iterable[str],
                   quality: Mapping[str, Any]) -> Path:
    """Write ``directory/manifest.json`` (atomically) describing the tables just written there."""
    record = {
        "format": FORMAT,
        "kind": kind,
        "state": state,
        "gnnbench_version": __version__,
        "parameters": dict(parameters),
        "sources": [dict(source) for source in sources],
        "tables": table_summary(directory, tables),
        "quality": dict(quality),
    }
    target = Path(directory) / MANIFEST_NAME
    with atomic_path(target) as temporary:
        temporary.write_text(json.dumps(record, indent=2, sort_keys=True, default=_jsonable) + "\n")
    return target


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Read ``directory/manifest.json``; a missing or unreadable manifest names the file."""
    path = Path(directory) / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(f"no road build found at {directory}: {path} is missing")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if record.get("format") != FORMAT:
        raise ValueError(f"{path} has manifest format {record.get('format')!r}; this gnnbench reads format {FORMAT}")
    return record


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write {type(value).__name__} to a manifest")
