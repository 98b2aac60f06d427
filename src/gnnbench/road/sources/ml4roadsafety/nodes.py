"""The release's monthly node CSVs -> the ``nodes`` and ``node_weather`` tables.

A weather cell missing in the release is filled as ML4RoadSafety's loader fills it when it builds node
features (``fillna(mean)`` then ``fillna(0)`` in ``TrafficAccidentDataset.load_monthly_data``): with the mean of
its column over that month's rows, or 0.0 when the whole column is missing that month. Every filled cell sets
its bit in ``node_weather.filled`` and is counted per column and method in the quality report.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...tables import SCHEMAS, WEATHER_COLUMNS
from .release_files import ADJACENCY_FILE, PairLookup, ReleaseFormatError, ReleaseGraph, csv_header, floats, read_csv

log = logging.getLogger("gnnbench.road")

#: How a missing weather cell is filled (quality report keys besides "observed").
FILL_METHODS = ("month_mean", "zero")


def read_nodes(graph: ReleaseGraph, node_files: Sequence[tuple[int, int, Path]]):
    """(nodes without degree, node_weather, nodes quality, weather quality) from the monthly node CSVs."""
    types = {"node_id": pa.int64(), "lat": pa.float64(), "lon": pa.float64(),
             **{name: pa.float64() for name in WEATHER_COLUMNS}}
    quality: dict[str, Any] = {"month_files": len(node_files)}
    weather_quality: dict[str, Any] = defaultdict(int)
    first_path = node_files[0][2]
    reference = read_csv(first_path, types)
    for name in WEATHER_COLUMNS:
        if name not in reference.column_names:
            header = ", ".join(csv_header(first_path))
            raise ReleaseFormatError(f"{first_path}: missing column {name!r} (has {header})")
    n = graph.num_nodes
    osm_ids = None
    if "node_id" in reference.column_names:
        ids = reference.column("node_id")
        if ids.null_count:
            raise ReleaseFormatError(f"{first_path}: column 'node_id' has {ids.null_count} empty cells")
        ids = ids.to_numpy()
        _, first = np.unique(ids, return_index=True)
        reference_rows = np.sort(first)
        osm_ids = ids[reference_rows]
        if osm_ids.size != n:
            raise ReleaseFormatError(f"{first_path}: lists {osm_ids.size} distinct node ids but "
                                     f"{ADJACENCY_FILE} has {n} nodes")
        lookup = PairLookup(osm_ids)
    else:
        if reference.num_rows != n:
            raise ReleaseFormatError(f"{first_path}: {reference.num_rows} rows and no 'node_id' column, but "
                                     f"{ADJACENCY_FILE} has {n} nodes")
        reference_rows = np.arange(n)
        lookup = None
    lon, lat = _coordinates(reference, reference_rows, first_path, quality)

    periods = len(node_files)
    weather = np.empty((len(WEATHER_COLUMNS), periods * n), dtype=np.float32)
    filled = np.zeros(periods * n, dtype=np.int16)
    counts = {name: dict.fromkeys(("observed", *FILL_METHODS), 0) for name in WEATHER_COLUMNS}
    month_types = {name: kind for name, kind in types.items() if name not in ("lat", "lon")}
    for index, (year, month, path) in enumerate(node_files):
        table = reference if index == 0 else read_csv(path, month_types)
        missing = [name for name in WEATHER_COLUMNS if name not in table.column_names]
        if missing:
            raise ReleaseFormatError(f"{path}: missing column {missing[0]!r} (has {', '.join(csv_header(path))})")
        rows = _node_rows(table, path, n, osm_ids, lookup, weather_quality)
        have = rows >= 0
        target = slice(index * n, (index + 1) * n)
        for column, name in enumerate(WEATHER_COLUMNS):
            values = floats(table, name)
            block = np.full(n, np.nan)
            block[have] = values[rows[have]]
            gap = np.isnan(block)
            observed = values[np.isfinite(values)]
            fill = float(observed.mean()) if observed.size else 0.0  # the mean over the month's rows, as pandas
            block[gap] = fill
            filled[target] |= gap.astype(np.int16) << column
            counts[name]["observed"] += int(n - gap.sum())
            counts[name]["month_mean" if observed.size else "zero"] += int(gap.sum())
            weather[column, target] = block
    years = np.repeat(np.array([year for year, _, _ in node_files], dtype=np.int16), n)
    months = np.repeat(np.array([month for _, month, _ in node_files], dtype=np.int8), n)
    node_weather = pa.table({
        "year": years, "month": months, "node_id": np.tile(np.arange(n, dtype=np.int64), periods),
        **{name: weather[column] for column, name in enumerate(WEATHER_COLUMNS)},
        "filled": filled.astype(np.int8),
    })
    weather_quality["months"] = [f"{year}-{month:02d}" for year, month, _ in node_files]
    weather_quality["missing_values"] = {name: counts[name]["month_mean"] + counts[name]["zero"]
                                         for name in WEATHER_COLUMNS}
    weather_quality["filled"] = counts
    weather_quality["fill"] = ("a missing cell takes the mean of its column over that month's rows (ML4RoadSafety's "
                               "loader: fillna(mean) then fillna(0)), 0.0 when the column is empty that month; "
                               "bit i of 'filled' marks a filled value of column i")
    total = sum(weather_quality["missing_values"].values())
    if total:
        log.info("ML4RoadSafety node weather: filled %d missing cells (%s), flagged in node_weather.filled", total,
                 ", ".join(f"{name} {count}" for name, count in weather_quality["missing_values"].items() if count))
    nodes = pa.table({
        "node_id": np.arange(n, dtype=np.int64),
        "osm_id": pa.array(osm_ids, type=pa.int64()) if osm_ids is not None else pa.nulls(n, pa.int64()),
        "lon": lon, "lat": lat,
        "degree": np.zeros(n, dtype=np.int32),
        "betweenness": pa.nulls(n, pa.float64()),
    }, schema=SCHEMAS["nodes"])
    return nodes, node_weather, quality, dict(weather_quality)


def _node_rows(table: pa.Table, path: Path, n: int, osm_ids, lookup, quality) -> np.ndarray:
    """Row of ``table`` holding each node (-1: none), counting duplicate and unknown rows in ``quality``."""
    if osm_ids is None or "node_id" not in table.column_names:
        if table.num_rows != n:
            raise ReleaseFormatError(f"{path}: {table.num_rows} rows, expected one per node ({n}), "
                                     "and no 'node_id' column to match them")
        return np.arange(n)
    ids = pc.fill_null(table.column("node_id"), -1).to_numpy()
    if ids.size == n and np.array_equal(ids, osm_ids):
        return np.arange(n)
    node = lookup.find(ids)
    known = node >= 0
    rows = np.full(n, -1, dtype=np.int64)
    known_rows = np.flatnonzero(known)
    rows[node[known_rows][::-1]] = known_rows[::-1]  # the first row of a node wins
    quality["unknown_node_rows"] += int((~known).sum())
    quality["duplicate_node_rows"] += int(known.sum() - (rows >= 0).sum())
    quality["nodes_without_row"] += int((rows < 0).sum())
    return rows


def _coordinates(table: pa.Table, rows: np.ndarray, path: Path, quality: dict[str, Any]):
    """(lon, lat) per node; the published 'lat'/'lon' columns hold x/y, which is detected from the values."""
    n = rows.size
    if "lat" not in table.column_names or "lon" not in table.column_names:
        quality["coordinates"] = "absent (NaN)"
        log.warning("%s: no lat/lon columns; node coordinates are NaN", path)
        return np.full(n, np.nan), np.full(n, np.nan)
    first, second = floats(table, "lat")[rows], floats(table, "lon")[rows]
    finite_first, finite_second = first[np.isfinite(first)], second[np.isfinite(second)]
    swapped = bool(finite_first.size and finite_second.size and (
        np.abs(finite_first).max() > 90.0 and np.abs(finite_second).max() <= 90.0
        or np.median(finite_first) < 0.0 < np.median(finite_second)))
    quality["coordinates"] = "swapped: column 'lat' holds the longitude" if swapped else "as labelled"
    if swapped:
        first, second = second, first
    bad = ~((np.abs(first) <= 90.0) & (np.abs(second) <= 180.0))
    quality["coordinates_invalid"] = int(bad.sum())
    return second, first  # lon, lat
