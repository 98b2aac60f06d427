"""Meteostat 2.x bulk data: the station catalogue, nearest stations, and the monthly/daily station files.

Formats (confirmed by reading the meteostat 2.1.5 wheel: ``api/config.py``, ``api/stations.py``,
``providers/meteostat/{monthly,daily,monthly_derived}.py``, ``providers/index.py``, ``parameters.py``;
documentation: https://dev.meteostat.net/python/):

* Stations: SQLite ``{base}/stations.db`` (mirror
  ``https://raw.githubusercontent.com/meteostat/weather-stations/master/stations.db``). Table ``stations``
  (``id, country, region, latitude, longitude, elevation, timezone``), ``names`` (``station, language, name``),
  ``identifiers`` (``station, key, value``) and ``inventory`` (``station, provider, parameter, start, end,
  completeness``; dates ``YYYY-MM-DD``). Only ``stations.id/latitude/longitude`` are required here.
* Monthly: ``{base}/monthly/{station}.csv.gz``, a header row, ``year, month`` then one column per parameter
  (``temp, tmin, tmax, prcp, pres, tsun``; °C, °C, °C, mm, hPa, min) plus ``<parameter>_source`` columns.
  ``temp`` is the mean temperature (1.x called it ``tavg``; accepted as an alias). There is no monthly ``wspd``.
* Daily: ``{base}/daily/{year}/{station}.csv.gz``: ``year, month, day``, then ``temp, tmin, tmax, rhum, prcp,
  snwd, wspd, wpgt, pres, tsun, cldc`` (``wspd`` in km/h) plus ``*_source`` columns. Monthly ``wspd`` is the mean
  of the daily values, kept only when at most 3 days of the month are missing (Meteostat's own
  ``monthly_derived.monthly_mean`` rule; it also interpolates the daily series first, which we do not) and
  rounded to 0.1 km/h like Meteostat's derived monthly values.
* A station without a file answers HTTP 404; that is recorded beside the cache (``<file>.missing.json``) so that
  offline runs reproduce it.

Data licence: CC BY 4.0 (Meteostat 2.x). Stations are chosen in a projected CRS by brute-force k-nearest search
(numpy, chunked, exact, ties broken by station id); the candidate stations are first cut to the nodes' bounding box
plus the search distance, which keeps the search ``O(nodes x tens of stations)``. The monthly aggregation to road
nodes (station choice, gap filling) is :mod:`gnnbench.road.sources.weather`.
"""

from __future__ import annotations

import calendar
import json
import logging
import math
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import requests

from ...io import DownloadError, RetryPolicy, download, gnnbench_home
from ..geo import project
from ..tables import WEATHER_COLUMNS

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://data.meteostat.net"
STATIONS_DB_MIRROR = "https://raw.githubusercontent.com/meteostat/weather-stations/master/stations.db"

#: Monthly CSV column for each node_weather column (``wspd`` comes from the daily files).
MONTHLY_SOURCE_COLUMNS = {"tavg": "temp", "tmin": "tmin", "tmax": "tmax", "prcp": "prcp", "pres": "pres"}
MONTHLY_ALIASES = {"temp": ("tavg",)}
#: Daily months with more missing days than this have no monthly wind speed (Meteostat's rule).
MAX_MISSING_DAYS = 3
_WSPD = WEATHER_COLUMNS.index("wspd")


class WeatherSourceError(ValueError):
    """A Meteostat file does not have the expected format (the message names the URL/file and column)."""


# --------------------------------------------------------------------------- stations


def read_stations_db(path: str | os.PathLike, *, bbox: Sequence[float] | None = None,
                     source: str | None = None) -> pa.Table:
    """Stations from a Meteostat ``stations.db`` file, sorted by id.

    Columns: ``id`` (string), ``latitude``, ``longitude``, ``elevation`` (float64, nullable), ``country``,
    ``region`` (string, nullable), ``first_year``, ``last_year`` (int32 from the ``inventory`` table, null where the
    station has no inventory rows or the table is absent). ``bbox`` = (min_lon, min_lat, max_lon, max_lat) keeps
    the stations inside it. ``source`` names the file's URL in error messages.
    """
    where = source or str(path)
    if not Path(path).exists():
        raise FileNotFoundError(f"Meteostat stations database not found: {path}")
    connection = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as error:
            raise WeatherSourceError(f"{where} is not a SQLite database: {error}") from None
        if "stations" not in tables:
            raise WeatherSourceError(f"{where}: no table 'stations' (tables: {sorted(tables)})")
        columns = [row[1] for row in connection.execute("PRAGMA table_info(stations)")]
        for required in ("id", "latitude", "longitude"):
            if required not in columns:
                raise WeatherSourceError(f"{where}: table 'stations' lacks column {required!r} (columns: {columns})")
        optional = [name for name in ("elevation", "country", "region") if name in columns]
        select = ", ".join(f"`{name}`" for name in ("id", "latitude", "longitude", *optional))
        sql = f"SELECT {select} FROM stations WHERE latitude IS NOT NULL AND longitude IS NOT NULL"
        params: tuple = ()
        if bbox is not None:
            min_lon, min_lat, max_lon, max_lat = map(float, bbox)
            sql += " AND longitude >= ? AND longitude <= ? AND latitude >= ? AND latitude <= ?"
            params = (min_lon, max_lon, min_lat, max_lat)
        rows = connection.execute(sql + " ORDER BY id", params).fetchall()
        years: dict[str, tuple[int | None, int | None]] = {}
        if "inventory" in tables:
            inventory_columns = [row[1] for row in connection.execute("PRAGMA table_info(inventory)")]
            if {"station", "start", "end"} <= set(inventory_columns):
                for station, start, end in connection.execute(
                        "SELECT station, MIN(start), MAX(end) FROM inventory GROUP BY station"):
                    years[str(station)] = (_year_of(start), _year_of(end))
            else:
                logger.warning("%s: table 'inventory' lacks station/start/end (columns %s); inventory ignored",
                               where, inventory_columns)
    finally:
        connection.close()
    ids = [str(row[0]) for row in rows]
    data: dict[str, Any] = {
        "id": pa.array(ids, pa.string()),
        "latitude": pa.array([row[1] for row in rows], pa.float64()),
        "longitude": pa.array([row[2] for row in rows], pa.float64()),
    }
    for name in ("elevation", "country", "region"):
        kind = pa.float64() if name == "elevation" else pa.string()
        if name in optional:
            index = 3 + optional.index(name)
            values = [row[index] for row in rows]
            if name != "elevation":
                values = [None if value is None else str(value) for value in values]
            data[name] = pa.array(values, kind)
        else:
            data[name] = pa.nulls(len(rows), kind)
    data["first_year"] = pa.array([years.get(i, (None, None))[0] for i in ids], pa.int32())
    data["last_year"] = pa.array([years.get(i, (None, None))[1] for i in ids], pa.int32())
    return pa.table(data)


def _year_of(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value)[:4])
    except ValueError:
        return None


def load_stations(*, base_url: str = DEFAULT_BASE_URL, url: str | None = None,
                  cache_dir: str | os.PathLike | None = None, bbox: Sequence[float] | None = None,
                  session: requests.Session | None = None,
                  retry: RetryPolicy | None = None) -> pa.Table:
    """Download (once; cached as ``<cache_dir>/stations.db``) and read Meteostat's station list.

    ``url`` defaults to ``{base_url}/stations.db``; with the default base URL the GitHub mirror is tried when the
    main endpoint fails. The cached file is reused as is (delete it to refresh; Meteostat updates it weekly).
    See :func:`read_stations_db` for the columns.
    """
    cache = cache_dir_of(cache_dir)
    dest = cache / "stations.db"
    urls = [url] if url else [f"{base_url.rstrip('/')}/stations.db"]
    if url is None and base_url.rstrip("/") == DEFAULT_BASE_URL:
        urls.append(STATIONS_DB_MIRROR)
    error: Exception | None = None
    for candidate in urls:
        try:
            download(candidate, dest, session=session, retry=retry or RetryPolicy(), progress=False,
                     description="meteostat stations.db")
            return read_stations_db(dest, bbox=bbox, source=candidate)
        except DownloadError as failure:
            logger.warning("could not download the Meteostat station list from %s: %s", candidate, failure)
            error = failure
    assert error is not None
    raise error


# --------------------------------------------------------------------------- nearest stations


def lonlat_array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, pa.Table):
        lon = "longitude" if "longitude" in value.column_names else "lon"
        lat = "latitude" if "latitude" in value.column_names else "lat"
        if lon not in value.column_names or lat not in value.column_names:
            raise ValueError(f"{what} table needs lon/lat (or longitude/latitude) columns, has {value.column_names}")
        return np.column_stack([value.column(lon).to_numpy(zero_copy_only=False),
                                value.column(lat).to_numpy(zero_copy_only=False)]).astype(np.float64)
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{what} must be an (n, 2) array of lon, lat; got shape {array.shape}")
    return array


def knn(points: np.ndarray, targets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest ``targets`` of each point (projected x, y): indices (-1 padded) and distances (inf)."""
    n, s = len(points), len(targets)
    indices = np.full((n, k), -1, dtype=np.int64)
    distances = np.full((n, k), np.inf, dtype=np.float64)
    if n == 0 or s == 0:
        return indices, distances
    kk = min(k, s)
    rows = max(1, 4_000_000 // s)
    for start in range(0, n, rows):
        block = points[start:start + rows]
        d2 = (block[:, :1] - targets[None, :, 0]) ** 2 + (block[:, 1:] - targets[None, :, 1]) ** 2
        if kk < s:
            part = np.argpartition(d2, kk - 1, axis=1)[:, :kk]
            part.sort(axis=1)  # restore station order so that the stable sort breaks ties by index
        else:
            part = np.broadcast_to(np.arange(s), d2.shape)
        part_d2 = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(part_d2, axis=1, kind="stable")
        indices[start:start + rows, :kk] = np.take_along_axis(part, order, axis=1)
        distances[start:start + rows, :kk] = np.sqrt(np.take_along_axis(part_d2, order, axis=1))
    return indices, distances


def nearest_stations(nodes_lonlat: Any, stations: Any, *, epsg: int, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest stations of each node, measured in the projected CRS ``epsg``.

    ``nodes_lonlat``: (n, 2) lon/lat array or a table with lon/lat columns; ``stations``: likewise or the table of
    :func:`load_stations`. Returns ``indices`` (n, k) int64 into ``stations`` (-1 when there are fewer than ``k``
    stations) and ``distances`` (n, k) metres (inf for padding), nearest first; ties go to the lower index. Exact
    brute force in chunks (numpy only), meant for the tens-to-hundreds of stations around one state.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    nodes = lonlat_array(nodes_lonlat, "nodes")
    targets = lonlat_array(stations, "stations")
    nx, ny = project(nodes[:, 0], nodes[:, 1], epsg)
    sx, sy = project(targets[:, 0], targets[:, 1], epsg)
    return knn(np.column_stack([nx, ny]), np.column_stack([sx, sy]), k)


# --------------------------------------------------------------------------- station files


def cache_dir_of(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else gnnbench_home() / "sources" / "meteostat"


def _missing_marker(dest: Path) -> Path:
    return Path(f"{dest}.missing.json")


def _fetch_optional(url: str, dest: Path, *, session: requests.Session | None, retry: RetryPolicy) -> Path | None:
    """``dest`` (downloading it when absent) or None when the server has no such file (404/410, remembered)."""
    marker = _missing_marker(dest)
    if not dest.exists() and marker.exists():
        return None
    try:
        download(url, dest, session=session, retry=retry, progress=False)
    except DownloadError as error:
        if getattr(error, "status", None) in (404, 410):
            logger.info("no Meteostat file at %s (HTTP %s)", url, error.status)
            marker.parent.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            marker.write_text(json.dumps({"url": url, "status": error.status, "checked_at": stamp}) + "\n",
                              encoding="utf-8")
            return None
        raise
    return dest


def _read_csv(path: Path, url: str) -> pa.Table:
    import pyarrow.csv as pacsv

    try:
        return pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError, EOFError) as error:
        raise WeatherSourceError(f"{url} (cached as {path}) is not a readable gzip CSV: {error}") from None


def _column(table: pa.Table, name: str, url: str, aliases: Sequence[str] = ()) -> np.ndarray:
    for candidate in (name, *aliases):
        if candidate in table.column_names:
            try:
                values = pc.cast(table.column(candidate), pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise WeatherSourceError(f"{url}: column {candidate!r} is not numeric: {error}") from None
            return values.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
    raise WeatherSourceError(f"{url}: column {name!r} is missing (columns: {table.column_names})")


def _read_monthly(path: Path, url: str, years: np.ndarray) -> np.ndarray:
    """[months, 6] values (NaN where missing; wspd column all NaN) for the requested years."""
    table = _read_csv(path, url)
    year = _column(table, "year", url)
    month = _column(table, "month", url)
    out = np.full((12 * len(years), len(WEATHER_COLUMNS)), np.nan)
    slots = _slots(year, month, years, url)
    keep = slots >= 0
    for name, source in MONTHLY_SOURCE_COLUMNS.items():
        values = _column(table, source, url, MONTHLY_ALIASES.get(source, ()))
        out[slots[keep], WEATHER_COLUMNS.index(name)] = values[keep]
    return out


def _slots(year: np.ndarray, month: np.ndarray, years: np.ndarray, url: str) -> np.ndarray:
    """Month slot (0 .. 12*len(years)-1) of each row, -1 outside the requested years; rejects repeated months."""
    if np.isnan(year).any() or np.isnan(month).any() or ((month < 1) | (month > 12)).any():
        raise WeatherSourceError(f"{url}: invalid or missing year/month values")
    position = np.searchsorted(years, year)
    position = np.minimum(position, len(years) - 1)
    inside = years[position] == year
    slots = np.where(inside, position * 12 + month.astype(np.int64) - 1, -1)
    kept = slots[slots >= 0]
    if len(np.unique(kept)) != len(kept):
        raise WeatherSourceError(f"{url}: a (year, month) appears more than once")
    return slots


def _read_daily_wspd(path: Path, url: str, year: int) -> np.ndarray:
    """Monthly mean daily wind speed (12,) for ``year`` (NaN where more than 3 days are missing)."""
    table = _read_csv(path, url)
    y, m, d = (_column(table, name, url) for name in ("year", "month", "day"))
    wspd = _column(table, "wspd", url)
    if np.isnan(m).any() or np.isnan(d).any() or ((m < 1) | (m > 12) | (d < 1) | (d > 31)).any():
        raise WeatherSourceError(f"{url}: invalid or missing month/day values")
    keep = (y == year) & ~np.isnan(wspd)
    day_key = m[keep].astype(np.int64) * 32 + d[keep].astype(np.int64)
    if len(np.unique(day_key)) != len(day_key):
        raise WeatherSourceError(f"{url}: a date appears more than once")
    months = m[keep].astype(np.int64) - 1
    count = np.bincount(months, minlength=12)
    total = np.bincount(months, weights=wspd[keep], minlength=12)
    days = np.array([calendar.monthrange(year, month)[1] for month in range(1, 13)])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.round(total / count, 1)
    mean[(days - count > MAX_MISSING_DAYS) | (count == 0)] = np.nan
    return mean


@dataclass
class StationData:
    values: np.ndarray  # [months, 6]
    files: dict[str, int]


def load_station(station: str, years: np.ndarray, base_url: str, cache: Path, session: requests.Session | None,
                  retry: RetryPolicy) -> StationData:
    values = np.full((12 * len(years), len(WEATHER_COLUMNS)), np.nan)
    files = {"found": 0, "missing": 0}
    url = f"{base_url}/monthly/{station}.csv.gz"
    path = _fetch_optional(url, cache / "monthly" / f"{station}.csv.gz", session=session, retry=retry)
    if path is None:
        files["missing"] += 1
    else:
        files["found"] += 1
        values = _read_monthly(path, url, years)
    for position, year in enumerate(years.tolist()):
        url = f"{base_url}/daily/{year}/{station}.csv.gz"
        path = _fetch_optional(url, cache / "daily" / str(year) / f"{station}.csv.gz", session=session, retry=retry)
        if path is None:
            files["missing"] += 1
            continue
        files["found"] += 1
        values[position * 12:(position + 1) * 12, _WSPD] = _read_daily_wspd(path, url, year)
    return StationData(values, files)


def expanded_bbox(lonlat: np.ndarray, max_distance_km: float) -> tuple[float, float, float, float]:
    """Nodes' lon/lat bounding box grown by ``max_distance_km`` (a superset of every station in range)."""
    min_lon, min_lat = lonlat.min(axis=0)
    max_lon, max_lat = lonlat.max(axis=0)
    dlat = max_distance_km / 110.574 * 1.01  # km per degree of latitude (minimum), 1% margin
    widest = min(89.0, max(abs(min_lat), abs(max_lat)) + dlat)
    dlon = max_distance_km / (111.320 * math.cos(math.radians(widest))) * 1.01
    return (max(-180.0, min_lon - dlon), max(-90.0, min_lat - dlat),
            min(180.0, max_lon + dlon), min(90.0, max_lat + dlat))


def in_bbox(stations: pa.Table, bbox: Sequence[float]) -> pa.Table:
    lon = stations.column("longitude")
    lat = stations.column("latitude")
    mask = pc.and_(pc.and_(pc.greater_equal(lon, bbox[0]), pc.less_equal(lon, bbox[2])),
                   pc.and_(pc.greater_equal(lat, bbox[1]), pc.less_equal(lat, bbox[3])))
    return stations.filter(pc.fill_null(mask, False)).sort_by("id")


def active_in(stations: pa.Table, years: np.ndarray) -> pa.Table:
    """Drop stations whose inventory years (when known) do not overlap the requested years."""
    if "first_year" not in stations.column_names or "last_year" not in stations.column_names:
        return stations
    first = pc.fill_null(stations.column("first_year"), int(years[0]))
    last = pc.fill_null(stations.column("last_year"), int(years[-1]))
    keep = pc.and_(pc.less_equal(first, int(years[-1])), pc.greater_equal(last, int(years[0])))
    dropped = stations.num_rows - pc.sum(pc.cast(keep, pa.int64())).as_py()
    if dropped:
        logger.info("weather: %d stations have no inventory in %d-%d", dropped, years[0], years[-1])
    return stations.filter(keep)
