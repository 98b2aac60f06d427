"""Files in Meteostat's bulk formats (stations database, monthly and daily CSV.gz), for the demo and tests.

The formats are those ``gnnbench.road.sources.weather`` reads (see its module docstring).
"""

from __future__ import annotations

import calendar
import gzip
import math
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def write_stations_db(path: str | os.PathLike, stations: Sequence[Mapping[str, Any]],
                      inventory: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write a Meteostat-format ``stations.db``: ``stations`` rows need id, latitude, longitude (optional
    name, country, region, elevation, timezone); ``inventory`` rows need station, start, end (provider, parameter,
    completeness optional)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    try:
        connection.executescript(
            "CREATE TABLE stations (id TEXT PRIMARY KEY, country TEXT, region TEXT, latitude REAL, longitude REAL,"
            " elevation INTEGER, timezone TEXT);"
            "CREATE TABLE names (station TEXT, language TEXT, name TEXT);"
            "CREATE TABLE identifiers (station TEXT, key TEXT, value TEXT);"
            "CREATE TABLE inventory (station TEXT, provider TEXT, parameter TEXT, start TEXT, end TEXT,"
            " completeness REAL);")
        for row in stations:
            connection.execute("INSERT INTO stations VALUES (?, ?, ?, ?, ?, ?, ?)", (
                row["id"], row.get("country", "US"), row.get("region"), row["latitude"], row["longitude"],
                row.get("elevation"), row.get("timezone", "America/New_York")))
            connection.execute("INSERT INTO names VALUES (?, 'en', ?)", (row["id"], row.get("name", row["id"])))
        for row in inventory:
            connection.execute("INSERT INTO inventory VALUES (?, ?, ?, ?, ?, ?)", (
                row["station"], row.get("provider", "daily"), row.get("parameter", "temp"), row["start"], row["end"],
                row.get("completeness", 1.0)))
        connection.commit()
    finally:
        connection.close()
    return path


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def write_csv_gz(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a gzip CSV (deterministic bytes: gzip mtime 0); None/NaN become empty fields."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(_format(value) for value in row) for row in rows]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    return path


MONTHLY_HEADER = ("year", "month", "temp", "tmin", "tmax", "prcp", "pres", "tsun")
DAILY_HEADER = ("year", "month", "day", "temp", "tmin", "tmax", "rhum", "prcp", "snwd", "wspd", "wpgt", "pres", "tsun",
                "cldc")


def write_monthly_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], *, source: str = "ghcnd",
                      drop: Sequence[str] = ()) -> Path:
    """A Meteostat monthly file: rows are dicts with year, month and any of temp/tmin/tmax/prcp/pres/tsun.

    Each parameter gets a ``<name>_source`` column; ``drop`` removes columns (to test schema errors)."""
    params = [name for name in MONTHLY_HEADER[2:] if name not in drop]
    header = [name for name in ("year", "month") if name not in drop] + params + [f"{p}_source" for p in params]
    out = []
    for row in rows:
        values = [row.get(name) for name in header if not name.endswith("_source")]
        sources = [source if _format(row.get(p)) else "" for p in params]
        out.append(values + sources)
    return write_csv_gz(path, header, out)


def write_daily_csv(path: str | os.PathLike, year: int, wspd: Mapping[tuple[int, int], float | None], *,
                    source: str = "isd_lite", drop: Sequence[str] = ()) -> Path:
    """A Meteostat daily file for ``year`` with ``wspd`` per (month, day) (other parameters empty)."""
    params = [name for name in DAILY_HEADER[3:] if name not in drop]
    header = [name for name in ("year", "month", "day") if name not in drop] + params + [f"{p}_source"
                                                                                        for p in params]
    rows = []
    for (month, day), value in sorted(wspd.items()):
        record = {"year": year, "month": month, "day": day, "wspd": value}
        values = [record.get(name) for name in header if not name.endswith("_source")]
        sources = [source if name == "wspd" and _format(value) else "" for name in params]
        rows.append(values + sources)
    return write_csv_gz(path, header, rows)


def write_meteostat_fixture(directory: str | os.PathLike, *, bbox: Sequence[float], years: Sequence[int] = (2019, 2020),
                            n_stations: int = 4, seed: int = 0, gap_fraction: float = 0.1) -> dict[str, Any]:
    """Write a small Meteostat-format tree (``stations.db``, ``monthly/{id}.csv.gz``, ``daily/{year}/{id}.csv.gz``)
    with stations scattered in and around ``bbox`` (min_lon, min_lat, max_lon, max_lat), deterministic from ``seed``.

    About ``gap_fraction`` of the monthly values and daily wind speeds are blank; the last station has no files at
    all (a 404 for every request) and, with 3+ stations, the second-last has no daily file for the last year.
    Serve ``directory`` as the ``base_url``. Returns {"stations": [ids], "paths": [relative paths], "bbox": ...}.
    """
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    min_lon, min_lat, max_lon, max_lat = map(float, bbox)
    pad_lon, pad_lat = 0.1 * (max_lon - min_lon), 0.1 * (max_lat - min_lat)
    lon = rng.uniform(min_lon - pad_lon, max_lon + pad_lon, n_stations).round(4)
    lat = rng.uniform(min_lat - pad_lat, max_lat + pad_lat, n_stations).round(4)
    ids = [f"X{i:04d}" for i in range(n_stations)]
    years = sorted(int(year) for year in years)
    write_stations_db(directory / "stations.db",
                      [{"id": i, "latitude": float(y), "longitude": float(x), "elevation": int(rng.integers(0, 500))}
                       for i, x, y in zip(ids, lon, lat)],
                      [{"station": i, "start": f"{years[0] - 5}-01-01", "end": f"{years[-1]}-12-31"} for i in ids])
    paths = ["stations.db"]
    for number, station in enumerate(ids):
        if number == n_stations - 1:
            continue  # no data at all
        rows = []
        offset = rng.normal(0.0, 2.0)
        for year in range(years[0] - 2, years[-1] + 1):
            for month in range(1, 13):
                temp = 11.0 + offset - 12.0 * math.cos(2 * math.pi * (month - 1) / 12) + rng.normal(0, 1.5)
                values = {"temp": temp, "tmin": temp - 5.5 + rng.normal(0, 0.5), "tmax": temp + 6.0 + rng.normal(0, .5),
                          "prcp": float(rng.gamma(2.0, 40.0)), "pres": 1015.0 + rng.normal(0, 3),
                          "tsun": float(rng.uniform(100, 300))}
                values = {key: (None if rng.random() < gap_fraction else round(value, 1))
                          for key, value in values.items()}
                rows.append({"year": year, "month": month, **values})
        write_monthly_csv(directory / "monthly" / f"{station}.csv.gz", rows)
        paths.append(f"monthly/{station}.csv.gz")
        for year in years:
            if n_stations >= 3 and number == n_stations - 2 and year == years[-1]:
                continue
            base = rng.uniform(8.0, 18.0)
            wspd = {}
            for month in range(1, 13):
                for day in range(1, calendar.monthrange(year, month)[1] + 1):
                    wspd[(month, day)] = None if rng.random() < gap_fraction else round(base + rng.normal(0, 3), 1)
            write_daily_csv(directory / "daily" / str(year) / f"{station}.csv.gz", year, wspd)
            paths.append(f"daily/{year}/{station}.csv.gz")
    return {"stations": ids, "paths": paths, "bbox": tuple(bbox)}
