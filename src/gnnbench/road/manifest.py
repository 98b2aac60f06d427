"""``manifest.json`` of a built (or imported) state: what went in, what came out, what was dropped.

The package's one manifest format (:mod:`gnnbench.io.manifest`) with ``kind`` ``"build"``,
``"ml4roadsafety-import"`` (or a test generator's own kind) and these sections::

    "state": "MA",
    "parameters": {...},                  # build parameters (match distance, years, seeds, ...)
    "files": {"nodes": {"path": "nodes.parquet", "rows": 123, "bytes": ..., "sha256": "..."}, ...},
    "sources": [ {url, path, sha256, size, retrieved_at, role}, ... ],   # every raw file used
    "quality": {...}                      # per-stage reports, e.g. crash accounting

Nothing time-dependent is written except the retrieval times of sources, which come from the
download records, so rebuilding from the same raw files gives the same manifest.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..io.manifest import ManifestError, file_record
from ..io.manifest import read_manifest as read_any_manifest
from ..io.manifest import write_manifest as write_any_manifest

MANIFEST_NAME = "manifest.json"
LAYOUT = 2  # 2: the package-wide manifest envelope; 1 (read, converted): "format": 1 with "tables"


def table_summary(directory: str | os.PathLike, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """File record (path, bytes, SHA-256, rows) of each written table ``directory/{name}.parquet``."""
    import pyarrow.parquet as pq

    summary = {}
    for name in names:
        path = Path(directory) / f"{name}.parquet"
        summary[name] = file_record(path, rows=pq.ParquetFile(path).metadata.num_rows)
    return summary


def write_manifest(directory: str | os.PathLike, *, kind: str, state: str, parameters: Mapping[str, Any],
                   sources: Iterable[Mapping[str, Any]], tables: Iterable[str],
                   quality: Mapping[str, Any]) -> Path:
    """Write ``directory/manifest.json`` (atomically) describing the tables just written there."""
    target = Path(directory) / MANIFEST_NAME
    write_any_manifest(target, kind=kind, layout=LAYOUT, parameters=parameters,
                       files=table_summary(directory, tables), state=state,
                       sources=[dict(source) for source in sources], quality=dict(quality))
    return target


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Read ``directory/manifest.json``; a missing or unreadable manifest names the file and how to rebuild it.

    Manifests of the first layout (``"format": 1``, tables under ``"tables"``) are converted on read.
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.exists():
        if any(Path(directory).glob("*.parquet")):  # tables without their manifest: a damaged build
            raise FileNotFoundError(f"{path}: missing; rebuild the tables with `{rebuild_command(directory)}`")
        raise FileNotFoundError(f"no road build found at {directory}: {path} is missing")
    legacy = _read_legacy(path)
    if legacy is not None:
        return legacy
    try:
        return read_any_manifest(path, layout=LAYOUT)
    except ManifestError as error:
        raise ValueError(f"{error}; rebuild the tables with `{rebuild_command(directory)}`") from None


def rebuild_command(directory: str | os.PathLike) -> str:
    """The command that rebuilds the tables in ``directory`` (``ROOT/tables/STATE`` of a build,
    ``ROOT/ml4roadsafety/tables/STATE`` of an import), with ``--root`` unless ROOT is the default."""
    directory = Path(directory)
    state, root = directory.name, directory.parent.parent
    if root.name == "ml4roadsafety":
        command, root = f"gnnbench import ml4roadsafety --state {state}", root.parent
    else:
        command = f"gnnbench build road --state {state}"
    return command + root_option(root)


def root_option(root: str | os.PathLike) -> str:
    """`` --root ROOT`` (quoted) for a road data directory other than the default ``$GNNBENCH_HOME/road``;
    ``""`` for the default."""
    from ..io.cache import gnnbench_home

    root = Path(root)
    return "" if root.absolute() == (gnnbench_home() / "road").absolute() else f" --root {shlex.quote(str(root))}"


def _read_legacy(path: Path) -> dict[str, Any] | None:
    """A first-layout road manifest in the current shape, or None if ``path`` is not one."""
    import json

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != 1 or not isinstance(record.get("tables"), dict):
        return None
    files = {name: {"path": f"{name}.parquet", **entry} for name, entry in record.pop("tables").items()}
    record.pop("format")
    return {"manifest_format": 1, "layout": LAYOUT, "files": files, **record}
