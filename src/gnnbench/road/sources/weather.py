"""Monthly weather per road node from Meteostat's bulk data (read directly, not via the meteostat package).

:func:`monthly_weather` gives each node the nearest station with data, fills gaps (neighbouring station,
interpolation in time, calendar-month mean, all-station mean; each filled value flagged) and writes the
``node_weather`` table. The Meteostat formats (station catalogue, monthly and daily files) are read by
:mod:`gnnbench.road.sources.meteostat`.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import requests

from ...io import RetryPolicy
from ..geo import project, utm_epsg
from ..tables import SCHEMAS, WEATHER_COLUMNS
from .meteostat import (
    DEFAULT_BASE_URL,
    MAX_MISSING_DAYS,
    MONTHLY_ALIASES,
    MONTHLY_SOURCE_COLUMNS,
    STATIONS_DB_MIRROR,
    StationData,
    WeatherSourceError,
    active_in,
    cache_dir_of,
    expanded_bbox,
    in_bbox,
    knn,
    load_station,
    load_stations,
    lonlat_array,
    nearest_stations,
    read_stations_db,
)

__all__ = ["DEFAULT_BASE_URL", "FILL_METHODS", "MAX_MISSING_DAYS", "MONTHLY_ALIASES", "MONTHLY_SOURCE_COLUMNS",
           "STATIONS_DB_MIRROR", "WeatherSourceError", "load_stations", "monthly_weather", "nearest_stations",
           "read_stations_db"]

logger = logging.getLogger(__name__)

#: Fill methods, in the order they are tried; "missing" means no method applied (value stays null).
FILL_METHODS = ("neighbor", "interpolate", "climatology", "all_stations", "missing")
_OBSERVED, _NEIGHBOR, _INTERP, _CLIM, _ALL, _MISSING = range(6)


# --------------------------------------------------------------------------- gap filling


def _station_fill(raw: np.ndarray, months_per_year: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill each station's own gaps: interpolation in time, then calendar-month mean, then all-station mean.

    ``raw``: [S, T, C] with NaN gaps. Returns (values, method codes) for [S, T, C] and the all-station mean [T, C].
    """
    s_count, t_count, c_count = raw.shape
    observed = ~np.isnan(raw)
    values = raw.copy()
    method = np.where(observed, _OBSERVED, _MISSING).astype(np.int8)
    positions = np.arange(t_count, dtype=np.float64)
    for s in range(s_count):  # loops over stations x columns only (tens x 6), never over nodes
        for c in range(c_count):
            have = observed[s, :, c]
            if have.sum() < 2:
                continue
            first, last = np.flatnonzero(have)[[0, -1]]
            gap = ~have & (positions > first) & (positions < last)
            if gap.any():
                values[s, gap, c] = np.interp(positions[gap], positions[have], raw[s, have, c])
                method[s, gap, c] = _INTERP
    by_month = raw.reshape(s_count, t_count // months_per_year, months_per_year, c_count)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN slices are expected
        climatology = np.nanmean(by_month, axis=1)  # [S, 12, C]
        all_stations = np.nanmean(raw, axis=0) if s_count else np.full((t_count, c_count), np.nan)  # [T, C]
    climate = np.tile(climatology, (1, t_count // months_per_year, 1))
    use = (method == _MISSING) & ~np.isnan(climate)
    values[use] = climate[use]
    method[use] = _CLIM
    broadcast = np.broadcast_to(all_stations, values.shape)
    use = (method == _MISSING) & ~np.isnan(broadcast)
    values[use] = broadcast[use]
    method[use] = _ALL
    return values, method, all_stations


def _combo_fill(combos: np.ndarray, raw: np.ndarray, own: np.ndarray, own_method: np.ndarray,
                all_stations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values and method codes [U, T, C] for each distinct candidate list (primary station first, -1 padded)."""
    u_count = len(combos)
    t_count, c_count = all_stations.shape
    primary = combos[:, 0]
    has = primary >= 0
    safe = np.where(has, primary, 0)
    if len(raw):
        values = np.where(has[:, None, None], raw[safe], np.nan)
    else:
        values = np.full((u_count, t_count, c_count), np.nan)
    method = np.where(np.isnan(values), _MISSING, _OBSERVED).astype(np.int8)
    for j in range(1, combos.shape[1]):
        other = combos[:, j]
        ok = (other >= 0)[:, None, None]
        candidate = raw[np.where(other >= 0, other, 0)] if len(raw) else values
        use = (method == _MISSING) & ok & ~np.isnan(candidate)
        values[use] = candidate[use]
        method[use] = _NEIGHBOR
    if len(raw):
        use = (method == _MISSING) & has[:, None, None]
        fallback, fallback_method = own[safe], own_method[safe]
        values[use] = fallback[use]
        method[use] = fallback_method[use]
    orphan = np.broadcast_to(~has[:, None, None], values.shape)
    broadcast = np.broadcast_to(all_stations, values.shape)
    use = orphan & ~np.isnan(broadcast)
    values[use] = broadcast[use]
    method[use] = _ALL
    return values, method


# --------------------------------------------------------------------------- the node_weather table


def monthly_weather(nodes: pa.Table, years: Iterable[int], *, base_url: str = DEFAULT_BASE_URL,
                    stations: pa.Table | None = None, max_distance_km: float = 100.0, k: int = 3,
                    epsg: int | None = None, session: requests.Session | None = None,
                    cache_dir: str | os.PathLike | None = None,
                    retry: RetryPolicy | None = None) -> tuple[pa.Table, dict[str, Any]]:
    """Build the ``node_weather`` table (one row per node and month of ``years``) and a report.

    Each node takes the nearest station (within ``max_distance_km``, in ``epsg``, default the nodes' UTM zone)
    that has any data in the period; its ``k - 1`` next-nearest stations within the distance are kept as
    neighbours. Each station's monthly file and yearly daily files (``wspd`` = mean of daily values) are fetched
    once into ``cache_dir``. A value missing at the node's station is filled, in order, from: the nearest
    neighbour that has it (``neighbor``); linear interpolation in time at the station between observed months of
    the period (``interpolate``); that station's mean for the calendar month over the period's years
    (``climatology``); the mean over all used stations for that month (``all_stations``). Nodes with no station in
    range get the all-station means. Every filled value sets bit ``i`` of ``filled`` (``i`` = position in
    ``WEATHER_COLUMNS``); values no method can fill stay null. ``stations`` (table of :func:`load_stations`)
    skips the download of the station list.

    The report holds: ``epsg``, ``nodes``, ``months``, ``stations_considered``, ``stations_used`` (ids),
    ``stations_without_data``, ``station_columns_without_data`` ({column: [ids]}), ``nodes_without_station``
    (node ids), ``nodes_per_station``, ``distance_km`` (median/max to the node's station), ``files``
    (found/missing station files) and ``filled`` ({column: {"observed" or method: count of node-month values}}).

    Files already in ``cache_dir`` are reused as they are, so a rebuild is reproducible offline
    (``GNNBENCH_OFFLINE=1``); delete them to pick up Meteostat updates (the current year's files grow daily).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    if max_distance_km <= 0:
        raise ValueError(f"max_distance_km must be positive, not {max_distance_km}")
    year_array = np.array(sorted({int(year) for year in years}), dtype=np.int64)
    if year_array.size == 0:
        raise ValueError("no years given")
    base_url = base_url.rstrip("/")
    retry = retry or RetryPolicy()
    cache = cache_dir_of(cache_dir)
    for name in ("node_id", "lon", "lat"):
        if name not in nodes.column_names:
            raise ValueError(f"nodes table lacks column {name!r} (has {nodes.column_names})")
    node_ids = nodes.column("node_id").to_numpy(zero_copy_only=False).astype(np.int64)
    lonlat = lonlat_array(nodes.select(["lon", "lat"]), "nodes")
    if len(np.unique(node_ids)) != len(node_ids):
        raise ValueError("nodes table has repeated node_id values")
    if not np.isfinite(lonlat).all():
        raise ValueError("nodes table has missing or non-finite lon/lat")
    n_nodes, t_count, c_count = len(node_ids), 12 * len(year_array), len(WEATHER_COLUMNS)
    if n_nodes == 0:
        raise ValueError("nodes table is empty")

    bbox = expanded_bbox(lonlat, max_distance_km)
    if stations is None:
        stations = load_stations(base_url=base_url, cache_dir=cache, bbox=bbox, session=session, retry=retry)
    stations = in_bbox(stations, bbox)
    stations = active_in(stations, year_array)
    station_ids = stations.column("id").to_pylist()
    if epsg is None:
        epsg = utm_epsg(float(np.median(lonlat[:, 0])), float(np.median(lonlat[:, 1])))
    nx, ny = project(lonlat[:, 0], lonlat[:, 1], epsg)
    node_xy = np.column_stack([nx, ny])
    station_lonlat = lonlat_array(stations, "stations")
    sx, sy = project(station_lonlat[:, 0], station_lonlat[:, 1], epsg)
    station_xy = np.column_stack([sx, sy])
    limit = max_distance_km * 1000.0

    loaded: dict[int, StationData] = {}
    alive = np.ones(len(station_ids), dtype=bool)
    while True:
        subset = np.flatnonzero(alive)
        local, distance = knn(node_xy, station_xy[subset], k)
        candidates = np.where((local >= 0) & (distance <= limit), subset[np.maximum(local, 0)], -1)
        needed = [int(s) for s in np.unique(candidates[candidates >= 0]) if int(s) not in loaded]
        if not needed:
            break
        for s in needed:
            loaded[s] = load_station(station_ids[s], year_array, base_url, cache, session, retry)
            if np.isnan(loaded[s].values).all():
                alive[s] = False
        logger.info("weather: fetched %d stations (%d so far)", len(needed), len(loaded))

    used = sorted(s for s in loaded if alive[s])
    column_of = {s: i for i, s in enumerate(used)}
    raw = np.stack([loaded[s].values for s in used]) if used else np.zeros((0, t_count, c_count))
    own, own_method, all_stations = _station_fill(raw)
    remap = np.full(len(station_ids) + 1, -1, dtype=np.int64)
    for s, i in column_of.items():
        remap[s] = i
    compact = remap[candidates]  # -1 stays -1 (remap[-1] is the padding slot)
    combos, inverse = np.unique(compact, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    values, method = _combo_fill(combos, raw, own, own_method, all_stations)

    order = np.argsort(node_ids, kind="stable")
    sorted_ids = node_ids[order]
    row_combo = inverse[order]
    month_index = np.arange(t_count)
    columns: dict[str, Any] = {
        "year": pa.array(np.repeat(year_array[month_index // 12], n_nodes).astype(np.int16)),
        "month": pa.array(np.repeat(month_index % 12 + 1, n_nodes).astype(np.int8)),
        "node_id": pa.array(np.tile(sorted_ids, t_count)),
    }
    filled_codes = (method != _OBSERVED) & (method != _MISSING)
    bits = (filled_codes.astype(np.int16) << np.arange(c_count, dtype=np.int16)).sum(axis=2).astype(np.int8)
    for c, name in enumerate(WEATHER_COLUMNS):
        column = values[:, :, c].astype(np.float32)[row_combo].T.reshape(-1)
        columns[name] = pa.array(column, pa.float32(), mask=np.isnan(column))
    columns["filled"] = pa.array(bits[row_combo].T.reshape(-1), pa.int8())
    # rows are already in key order and unique by construction; write_table() conforms again when writing
    table = pa.Table.from_pydict(columns, schema=SCHEMAS["node_weather"])

    weight = np.bincount(inverse, minlength=len(combos)).astype(np.int64)
    filled: dict[str, dict[str, int]] = {}
    for c, name in enumerate(WEATHER_COLUMNS):
        counts = np.bincount(method[:, :, c].astype(np.int64).reshape(-1), weights=np.repeat(weight, t_count),
                             minlength=_MISSING + 1).astype(np.int64)
        filled[name] = {"observed": int(counts[_OBSERVED]),
                        **{label: int(counts[code]) for code, label in zip(range(1, 6), FILL_METHODS)}}
    primary = compact[:, 0]
    primary_distance = np.where(primary >= 0, np.sqrt(((node_xy - station_xy[np.maximum(candidates[:, 0], 0)]) ** 2)
                                                      .sum(axis=1)), np.nan)
    per_station = np.bincount(primary[primary >= 0], minlength=len(used))
    files = {"found": sum(d.files["found"] for d in loaded.values()),
             "missing": sum(d.files["missing"] for d in loaded.values())}
    report: dict[str, Any] = {
        "epsg": int(epsg),
        "nodes": int(n_nodes),
        "months": int(t_count),
        "years": year_array.tolist(),
        "max_distance_km": float(max_distance_km),
        "k": int(k),
        "stations_considered": int(len(loaded)),
        "stations_used": [station_ids[s] for s in used],
        "stations_without_data": sorted(station_ids[s] for s in loaded if not alive[s]),
        "station_columns_without_data": {
            name: [station_ids[s] for i, s in enumerate(used) if np.isnan(raw[i, :, c]).all()]
            for c, name in enumerate(WEATHER_COLUMNS)},
        "nodes_without_station": sorted(int(n) for n in node_ids[primary < 0]),
        "nodes_per_station": {station_ids[s]: int(per_station[i]) for i, s in enumerate(used)},
        "distance_km": _distance_summary(primary_distance),
        "files": files,
        "filled": filled,
    }
    if report["nodes_without_station"]:
        logger.warning("weather: %d nodes have no station with data within %.0f km; they get all-station means",
                       len(report["nodes_without_station"]), max_distance_km)
    return table, report


def _distance_summary(distance: np.ndarray) -> dict[str, float | None]:
    finite = distance[np.isfinite(distance)] / 1000.0
    if finite.size == 0:
        return {"median": None, "max": None}
    return {"median": float(np.median(finite)), "max": float(finite.max())}
