"""Build stages: raw files -> the road tables of one region (a state or the demo region).

Each stage is a function over tables that can be run and tested alone:

1. :func:`network_stage`   road network file (OSM XML extract or osmnx GraphML) -> ``nodes``, ``edges``
2. :func:`crash_stage`     raw crash files -> crashes in the common schema + accounting
3. :func:`accident_stage`  crashes x edges -> ``accidents`` (map matching, monthly aggregation)
4. weather and volume stages live with their adapters (``sources.weather``, ``sources.traffic_volume``)

:func:`build_region` runs them in order, writes the tables and ``manifest.json`` into the output
directory (atomically: a temporary directory renamed into place) under a file lock.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..io import file_lock, gnnbench_home, sha256_file
from .crashes import CrashQuality, drop_duplicates, normalise_crashes
from .manifest import write_manifest
from .matching import SegmentIndex
from .sources.crash_portals import read_crash_files
from .sources.osm import load_network, network_tables
from .states import SEVERITIES, StateEntry
from .tables import SCHEMAS, SEVERITY_COLUMNS, TABLES, write_table

log = logging.getLogger("gnnbench.road")


@dataclass(frozen=True)
class BuildParameters:
    """Everything that changes a build's output besides the raw files (recorded in the manifest)."""

    max_distance_m: float = 50.0
    years: tuple[int, ...] | None = None
    betweenness_sources: int = 256
    betweenness_exact_below: int = 5000
    seed: int = 0
    weather_max_distance_km: float = 100.0
    volume_max_distance_m: float = 30.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegionPaths:
    """Where a region's raw downloads and built tables live."""

    raw: Path
    tables: Path

    @classmethod
    def for_region(cls, code: str, home: str | os.PathLike | None = None) -> RegionPaths:
        base = Path(home) if home is not None else gnnbench_home() / "road"
        return cls(raw=base / "raw" / code, tables=base / "tables" / code)

    @property
    def crashes(self) -> Path:
        return self.raw / "crashes"

    @property
    def network(self) -> Path:
        return self.raw / "osm"


def network_stage(network_file: str | os.PathLike, parameters: BuildParameters) -> tuple[pa.Table, pa.Table]:
    """The ``nodes`` and ``edges`` tables of a road network file."""
    graph = load_network(network_file)
    tables = network_tables(graph, betweenness_sources=parameters.betweenness_sources, seed=parameters.seed,
                            exact_below=parameters.betweenness_exact_below)
    del graph
    gc.collect()  # networkx graphs hold reference cycles: free the gigabytes of a state graph now
    return tables


def crash_stage(region: StateEntry, files: Sequence[str | os.PathLike], *, root: str | os.PathLike | None = None,
                years: Sequence[int] | None = None) -> tuple[pd.DataFrame, CrashQuality]:
    """Read and normalise every raw crash file; drop (and count) bad rows and duplicates across files."""
    quality = CrashQuality()
    frames = []
    for name, raw in read_crash_files(files, root=root):
        portal_page = name.lower().endswith((".json", ".geojson"))  # API pages keep the portal's full schema
        kept, file_quality = normalise_crashes(raw, region, source_file=name, years=years, strict=portal_page)
        quality.merge(file_quality)
        frames.append(kept)
    if not frames:
        raise ValueError(f"{region.code}: no crash files given")
    crashes = pd.concat(frames, ignore_index=True)
    crashes = drop_duplicates(crashes, quality, month_resolution=not region.columns.day_resolution)
    quality.check()
    return crashes, quality


def accident_stage(crashes: pd.DataFrame, edges: pa.Table, region: StateEntry, parameters: BuildParameters,
                   quality: CrashQuality) -> tuple[pa.Table, dict[str, Any]]:
    """Match crashes to road segments and count them per (year, month, edge); unmatched are counted in ``quality``."""
    index = SegmentIndex.build(edges, region.utm_epsg)
    edge, distance = index.match(crashes["lon"].to_numpy(), crashes["lat"].to_numpy(), parameters.max_distance_m)
    unmatched = edge < 0
    quality.drop("unmatched", crashes, unmatched)
    matched = crashes.loc[~unmatched, ["year", "month", "severity"]].copy()
    matched["edge_id"] = edge[~unmatched]
    has_severity = bool(region.columns.severity)
    counts = matched.groupby(["year", "month", "edge_id"], sort=True).size().rename("count")
    frame = counts.reset_index()
    if has_severity:
        by_class = (matched.groupby(["year", "month", "edge_id", "severity"], sort=True).size()
                    .unstack("severity", fill_value=0).reindex(columns=list(SEVERITIES), fill_value=0))
        for column in SEVERITY_COLUMNS:
            frame[column] = by_class[column].to_numpy()
    accidents = pa.table({
        "year": frame["year"].to_numpy(np.int16), "month": frame["month"].to_numpy(np.int8),
        "edge_id": frame["edge_id"].to_numpy(np.int64), "count": frame["count"].to_numpy(np.int32),
        **{column: (pa.array(frame[column].to_numpy(np.int32)) if has_severity
                    else pa.nulls(len(frame), pa.int32())) for column in SEVERITY_COLUMNS},
    })
    distances = distance[~unmatched]
    report = {"matched": int((~unmatched).sum()), "unmatched": int(unmatched.sum()),
              "max_distance_m": parameters.max_distance_m,
              "distance_m_quantiles": ({str(q): round(float(np.quantile(distances, q)), 3)
                                        for q in (0.5, 0.9, 0.99)} if len(distances) else {}),
              "segments": int(len(index.canonical))}
    return accidents, report


def build_region(region: StateEntry, *, network_file: str | os.PathLike, crash_paths: Sequence[str | os.PathLike],
                 out_dir: str | os.PathLike, crash_root: str | os.PathLike | None = None,
                 parameters: BuildParameters = BuildParameters(), sources: Sequence[dict[str, Any]] = (),
                 weather: Any = None, volume: Any = None) -> Path:
    """Run every stage and write the region's tables and manifest into ``out_dir`` (replacing an older build).

    ``weather`` and ``volume`` are callables ``(nodes, edges, years) -> (table, report)`` (the
    adapters' stages, already bound to their raw files); when None, empty tables are written and
    the manifest says the stage was skipped.
    """
    out_dir = Path(out_dir)
    years = tuple(parameters.years or region.years)
    with file_lock(out_dir):
        nodes, edges = network_stage(network_file, parameters)
        crashes, quality = crash_stage(region, crash_paths, root=crash_root, years=years)
        accidents, matching = accident_stage(crashes, edges, region, parameters, quality)
        tables: dict[str, pa.Table] = {"nodes": nodes, "edges": edges, "accidents": accidents}
        reports: dict[str, Any] = {"crashes": quality.to_dict(), "matching": matching}
        for name, stage in (("node_weather", weather), ("edge_volume", volume)):
            if stage is None:
                tables[name] = SCHEMAS[name].empty_table()
                reports[name] = {"skipped": True}
            else:
                tables[name], reports[name] = stage(nodes, edges, years)
        file_sources = [*sources, _file_source(network_file, "road network")]
        file_sources += [_file_source(path, "crash records") for path in crash_paths]
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent if out_dir.parent.exists() else None,
                                        prefix=f".{out_dir.name}."))
        try:
            for name in TABLES:
                write_table(name, tables[name], staging)
            write_manifest(staging, kind="build", state=region.code,
                           parameters={**_plain(asdict(parameters)), "years": list(years), "splits": region.splits},
                           sources=_dedupe_sources(file_sources), tables=TABLES, quality=reports)
            _replace_dir(staging, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("%s: built %d nodes, %d edges, %d accident rows into %s", region.code, nodes.num_rows,
             edges.num_rows, accidents.num_rows, out_dir)
    return out_dir


def _file_source(path: str | os.PathLike, role: str) -> dict[str, Any]:
    path = Path(path)
    return {"path": path.name, "sha256": sha256_file(path), "size": path.stat().st_size, "role": role}


def _dedupe_sources(sources: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, result = set(), []
    for source in sources:  # the first record of a file wins (raw-directory records carry URLs)
        key = source.get("sha256")
        if key not in seen:
            seen.add(key)
            result.append(dict(source))
    return sorted(result, key=lambda source: (source.get("role", ""), str(source.get("path"))))


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda item: list(item) if isinstance(item, tuple) else str(item)))


def _replace_dir(staging: Path, target: Path) -> None:
    """Move a finished staging directory onto ``target`` (the old build is removed only afterwards)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
