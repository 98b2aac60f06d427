"""The common crash schema, and turning a portal's raw records into it with every drop accounted for.

Common schema (one row per kept crash)::

    crash_id     str     the source's id, or a composite of timestamp and coordinates
    year, month  int     when it happened (local date as published)
    day          int     day of month (0 where the source has month resolution only)
    lat, lon     float   WGS84 degrees
    severity     str     fatal | injury | property_damage | unknown
    source_file  str     raw file it came from (relative to the raw directory)
    source_row   int     0-based record number within that file

:func:`normalise_crashes` checks, in this order, and drops (counting each reason) rows with
missing coordinates, zero coordinates, swapped latitude/longitude (the pair only falls inside
the state when swapped), coordinates outside the state's bounding box, an unparseable or
implausible date, and a repeated crash id (the first occurrence is kept). ``CrashQuality``
keeps the counts and a few example rows per reason; ``records_read == kept + sum(dropped)``
always holds, and map matching later splits ``kept`` into matched and ``unmatched``.

Positions are read row by row from the first place of the state's mapping that has both values
(latitude/longitude columns, the API geometry, a WKT or GeoJSON point column, projected X/Y
reprojected with pyproj); ``CrashQuality.coordinate_sources`` counts the rows taken from each.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .geo import WGS84, transform
from .states import SEVERITIES, ColumnMapping, Coordinates, StateEntry

DROP_REASONS = ("missing_coordinates", "zero_coordinates", "swapped_lat_lon", "outside_state",
                "unparseable_date", "duplicate", "outside_years", "unmatched")
CRASH_COLUMNS = ("crash_id", "year", "month", "day", "lat", "lon", "severity", "source_file", "source_row")
GEOMETRY_X, GEOMETRY_Y = "__geometry_x", "__geometry_y"  # columns adapters add for point geometry
_EXAMPLES = 5
_FIRST_YEAR = 1990
_DATE_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d",
                 "%Y %b %d %I:%M:%S %p", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M", "%m/%d/%Y",
                 "%Y/%m/%d %H:%M:%S%z", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d", "%Y%m%d", "%m %d %Y", "%d-%b-%Y")
_MONTHS = {name: number for number in range(1, 13)
           for name in (pd.Timestamp(2000, number, 1).strftime("%B").upper(),
                        pd.Timestamp(2000, number, 1).strftime("%b").upper(), str(number), f"{number:02d}")}


class CrashSchemaError(ValueError):
    """Raw crash records lack a column the state's mapping needs (names file, field and spellings)."""


@dataclass
class CrashQuality:
    """Accounting of every raw crash record: kept, or dropped with its reason (plus examples)."""

    records_read: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {reason: 0 for reason in DROP_REASONS})
    examples: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    coordinate_sources: dict[str, int] = field(default_factory=dict)  # rows whose position came from each place

    def drop(self, reason: str, frame: pd.DataFrame, mask: np.ndarray) -> None:
        """Count ``frame[mask]`` as dropped for ``reason`` and remember a few examples."""
        count = int(np.count_nonzero(mask))
        if not count:
            return
        self.dropped[reason] += count
        self.kept -= count
        examples = self.examples.setdefault(reason, [])
        if len(examples) < _EXAMPLES:
            rows = frame.loc[mask, ["source_file", "source_row"]].head(_EXAMPLES - len(examples))
            examples.extend(f"{name}:{row}" for name, row in zip(rows["source_file"], rows["source_row"]))

    def merge(self, other: CrashQuality) -> None:
        """Add another file's accounting to this one."""
        self.records_read += other.records_read
        self.kept += other.kept
        for reason, count in other.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + count
        for reason, rows in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(rows[: max(0, _EXAMPLES - len(mine))])
        self.files.update(other.files)
        self.notes.extend(other.notes)
        for label, count in other.coordinate_sources.items():
            self.coordinate_sources[label] = self.coordinate_sources.get(label, 0) + count

    def check(self) -> None:
        """Raise if any record is unaccounted for."""
        if self.records_read != self.kept + sum(self.dropped.values()):
            raise AssertionError(f"crash accounting is off: read {self.records_read}, kept {self.kept}, "
                                 f"dropped {sum(self.dropped.values())}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        self.check()
        return {"records_read": self.records_read, "kept": self.kept,
                "dropped": {reason: count for reason, count in self.dropped.items()},
                "examples": {reason: rows for reason, rows in sorted(self.examples.items())},
                "files": dict(sorted(self.files.items())), "notes": list(self.notes),
                "coordinate_sources": dict(sorted(self.coordinate_sources.items()))}


def normalise_crashes(raw: pd.DataFrame, state: StateEntry, *, source_file: str,
                      years: Sequence[int] | None = None, strict: bool = True) -> tuple[pd.DataFrame, CrashQuality]:
    """Map one raw file's records into the common schema; return the kept crashes and the accounting.

    ``raw`` holds the records with their original column names (and, for sources with point
    geometry, ``__geometry_x``/``__geometry_y`` in WGS84). Rows outside ``years`` (when given)
    are dropped as ``outside_years``. Duplicates are only detected within this file; use
    :func:`drop_duplicates` over the concatenation of all files. ``strict`` (portal downloads)
    requires the id and severity columns; otherwise (files exported by hand) a missing id column
    gives composite ids and a missing severity column unknown severity, each noted in the report.
    """
    mapping = state.columns
    frame = pd.DataFrame({"source_file": np.full(len(raw), source_file, dtype=object),
                          "source_row": np.arange(len(raw), dtype=np.int64)})
    quality = CrashQuality(records_read=len(raw), kept=len(raw), files={source_file: len(raw)})
    if raw.empty:
        return _empty(), quality

    lat, lon = _coordinates(raw, mapping, source_file, quality)
    frame["lat"], frame["lon"] = lat, lon
    keep = np.ones(len(raw), dtype=bool)

    missing = ~(np.isfinite(lat) & np.isfinite(lon))
    quality.drop("missing_coordinates", frame, missing)
    keep &= ~missing
    zero = keep & ((lat == 0) | (lon == 0))
    quality.drop("zero_coordinates", frame, zero)
    keep &= ~zero
    inside = _inside(lat, lon, state.bbox)
    swapped = keep & ~inside & _inside(lon, lat, state.bbox)
    quality.drop("swapped_lat_lon", frame, swapped)
    keep &= ~swapped
    outside = keep & ~inside
    quality.drop("outside_state", frame, outside)
    keep &= ~outside

    year, month, day, stamp = _dates(raw, mapping, source_file, state.timezone)
    bad_date = keep & ((year < _FIRST_YEAR) | (year > pd.Timestamp.now().year + 1))
    quality.drop("unparseable_date", frame, bad_date)
    keep &= ~bad_date
    if years is not None:
        wanted = keep & ~np.isin(year, np.asarray(list(years)))
        quality.drop("outside_years", frame, wanted)
        keep &= ~wanted

    frame["year"], frame["month"], frame["day"] = year, month, day
    frame["severity"] = _severity(raw, mapping, source_file, quality, strict)
    frame["crash_id"] = _crash_ids(raw, mapping, source_file, stamp, lat, lon, quality, strict)
    kept = frame.loc[keep, list(CRASH_COLUMNS)].reset_index(drop=True)
    kept = kept.astype({"year": np.int16, "month": np.int8, "day": np.int8})
    return kept, quality


def drop_duplicates(crashes: pd.DataFrame, quality: CrashQuality, *, month_resolution: bool) -> pd.DataFrame:
    """Drop repeated crash ids (keeping the first by source file and row), counting them as ``duplicate``.

    Sources with ``month_resolution`` (no day or time, hence composite ids of month and place) have no
    unique key, so their records are never deduplicated.
    """
    if crashes.empty or month_resolution:
        return crashes
    repeated = crashes.duplicated("crash_id", keep="first").to_numpy()
    quality.drop("duplicate", crashes, repeated)
    return crashes.loc[~repeated].reset_index(drop=True)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in zip(
        CRASH_COLUMNS, (object, np.int16, np.int8, np.int8, np.float64, np.float64, object, object, np.int64))})


def find_column(raw: pd.DataFrame, spellings: Sequence[str]) -> str | None:
    """The first of ``spellings`` present in ``raw`` (exactly, else ignoring case and outer spaces), or None.

    ``"geometry"`` stands for the point geometry an adapter added (``__geometry_x``/``__geometry_y``).
    """
    folded = {str(name).strip().lower(): name for name in reversed(list(raw.columns))}
    for name in spellings:
        if name == "geometry":
            if GEOMETRY_X in raw.columns:
                return name
            continue
        if name in raw.columns:
            return name
    for name in spellings:
        if name != "geometry" and name.strip().lower() in folded:
            return folded[name.strip().lower()]
    return None


def resolve_column(raw: pd.DataFrame, spellings: Sequence[str], field_name: str, source_file: str) -> str:
    """The first of ``spellings`` present in ``raw`` (see :func:`find_column`); a clear error otherwise."""
    found = find_column(raw, spellings)
    if found is None:
        _schema_error(raw, spellings, field_name, source_file)
    return found


def _schema_error(raw: pd.DataFrame, spellings: Sequence[str], field_name: str, source_file: str):
    available = ", ".join(map(str, [name for name in raw.columns if name not in (GEOMETRY_X, GEOMETRY_Y)][:40]))
    raise CrashSchemaError(f"{source_file}: no column for crash field {field_name!r} (looked for "
                           f"{', '.join(spellings)}); the file has: {available}")


def _numeric(series: pd.Series) -> np.ndarray:
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        series = series.astype(str).str.replace(",", "", regex=False).str.strip()
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


_POINT = r"^\s*POINT\s*(?:Z\s*)?\(\s*([-+0-9.eE]+)[\s,]+([-+0-9.eE]+)"


def _point_xy(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """x, y of WKT ``POINT (x y)`` texts or GeoJSON point objects (NaN where absent or not a point)."""
    x = np.full(len(column), np.nan)
    y = np.full(len(column), np.nan)
    values = column.to_numpy(dtype=object)
    objects = np.fromiter((isinstance(value, dict) for value in values), dtype=bool, count=len(values))
    for i in np.flatnonzero(objects):
        coordinates = values[i].get("coordinates") if values[i].get("type", "Point") == "Point" else None
        if isinstance(coordinates, (list, tuple)) and len(coordinates) >= 2:
            x[i], y[i] = _numeric(pd.Series(list(coordinates[:2]), dtype=object))
    texts = ~objects
    if texts.any():
        found = pd.Series(values[texts], dtype=object).astype(str).str.extract(_POINT, flags=re.IGNORECASE)
        x[texts] = pd.to_numeric(found[0], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        y[texts] = pd.to_numeric(found[1], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return x, y


def _place_values(raw: pd.DataFrame, place: Coordinates, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(latitude, longitude) in WGS84 of ``rows`` read from ``place``, and its label; None if its columns are absent."""
    if len(rows) < len(raw):
        raw = raw.iloc[rows]
    if place.point:
        name = find_column(raw, place.point)
        if name is None:
            return None
        x, y = _point_xy(raw[name])
        return y, x, name
    y_name, x_name = find_column(raw, place.y), find_column(raw, place.x)
    if y_name is None or x_name is None:
        return None
    if y_name == "geometry" or x_name == "geometry":
        return _numeric(raw[GEOMETRY_Y]), _numeric(raw[GEOMETRY_X]), "geometry"
    y, x = _numeric(raw[y_name]), _numeric(raw[x_name])
    label = f"{y_name}/{x_name}"
    if place.crs != WGS84:
        with np.errstate(invalid="ignore"):
            projected = np.isfinite(x) & np.isfinite(y) & ((np.abs(x) > 180) | (np.abs(y) > 180))
        if projected.any():  # values that are degrees (even swapped ones) stay as they are
            x, y = x.copy(), y.copy()
            x[projected], y[projected] = transform(x[projected], y[projected], place.crs, WGS84)
        label += f" ({place.crs})"
    return y, x, label


def _coordinates(raw: pd.DataFrame, mapping: ColumnMapping, source_file: str,
                 quality: CrashQuality) -> tuple[np.ndarray, np.ndarray]:
    """Latitude, longitude (WGS84) per row: each row from the first place of the mapping that has both values."""
    n = len(raw)
    lat, lon = np.full(n, np.nan), np.full(n, np.nan)
    found_any = False
    for place in mapping.coordinates:
        gap = np.flatnonzero(~(np.isfinite(lat) & np.isfinite(lon)))
        if found_any and gap.size == 0:
            break
        values = _place_values(raw, place, gap)
        if values is None:
            continue
        found_any = True
        y, x, label = values
        have = np.isfinite(y) & np.isfinite(x)
        lat[gap[have]], lon[gap[have]] = y[have], x[have]
        if have.any():
            quality.coordinate_sources[label] = quality.coordinate_sources.get(label, 0) + int(have.sum())
    if not found_any:
        spellings = [name for place in mapping.coordinates for name in place.spellings]
        _schema_error(raw, list(dict.fromkeys(spellings)), "latitude", source_file)
    return lat, lon


def _inside(lat: np.ndarray, lon: np.ndarray, bbox: tuple[float, float, float, float]) -> np.ndarray:
    lon_min, lat_min, lon_max, lat_max = bbox
    with np.errstate(invalid="ignore"):
        return (lon >= lon_min) & (lon <= lon_max) & (lat >= lat_min) & (lat <= lat_max)


def _dates(raw: pd.DataFrame, mapping: ColumnMapping, source_file: str, timezone: str):
    """(year, month, day, timestamp text) per row; unparseable dates give year 0."""
    n = len(raw)
    if mapping.date_format == "year+month_name":
        year = _numeric(raw[resolve_column(raw, mapping.date[0], "year", source_file)])
        month_text = raw[resolve_column(raw, mapping.date[1], "month", source_file)].astype(str).str.strip()
        month = month_text.str.upper().map(_MONTHS).to_numpy(dtype=np.float64, na_value=np.nan)
        good = np.isfinite(year) & np.isfinite(month)
        year = np.where(good, year, 0).astype(np.int64)
        month = np.where(good, month, 0).astype(np.int64)
        stamp = pd.Series([f"{y:04d}-{m:02d}" for y, m in zip(year, month)], dtype=object)
        return year, month, np.zeros(n, dtype=np.int64), stamp
    column = raw[resolve_column(raw, mapping.date[0], "date", source_file)]
    parsed = _parse_dates(column, mapping.date_format, timezone)
    good = parsed.notna().to_numpy()
    year = np.where(good, parsed.dt.year.to_numpy(dtype=np.float64, na_value=0), 0).astype(np.int64)
    month = np.where(good, parsed.dt.month.to_numpy(dtype=np.float64, na_value=0), 0).astype(np.int64)
    day = np.where(good, parsed.dt.day.to_numpy(dtype=np.float64, na_value=0), 0).astype(np.int64)
    stamp = parsed.dt.strftime("%Y-%m-%dT%H:%M:%S").astype(object)
    return year, month, day, stamp


def _parse_dates(column: pd.Series, date_format: str, timezone: str) -> pd.Series:
    """Naive local timestamps; NaT where nothing parses.

    Values are taken as the published wall-clock time, except ISO texts ending in ``Z`` (UTC),
    which are converted to the state's ``timezone`` before the date is taken.
    """
    if date_format == "epoch_ms":
        numbers = pd.to_numeric(column, errors="coerce")
        numbers = numbers.where(numbers.abs() >= 1e11)  # smaller numbers are not epoch ms (e.g. 20130105)
        if numbers.notna().any():
            parsed = pd.to_datetime(numbers, unit="ms", errors="coerce")
            rest = numbers.isna() & column.notna()
            if rest.any():
                parsed[rest] = _parse_text_dates(column[rest], timezone)
            return parsed
        return _parse_text_dates(column, timezone)
    if date_format == "yyyymmdd":
        return pd.to_datetime(column.astype(str).str.slice(0, 8), format="%Y%m%d", errors="coerce")
    if date_format in ("auto", "iso"):
        return _parse_text_dates(column, timezone)
    return pd.to_datetime(column.astype(str).str.strip(), format=date_format, errors="coerce")


def _parse_text_dates(column: pd.Series, timezone: str) -> pd.Series:
    """Try the known portal formats one after another, vectorised; numbers like 20150118 are YYYYMMDD."""
    text = column.astype(str).str.strip()
    utc = text.str.fullmatch(r"\d{4}-\d{2}-\d{2}T[\d:.]+Z")
    if utc.any():  # instants in UTC: the local date is what counts
        instants = pd.to_datetime(text[utc], utc=True, errors="coerce", format="ISO8601")
        text = text.copy()
        text[utc] = instants.dt.tz_convert(timezone).dt.strftime("%Y-%m-%dT%H:%M:%S").fillna("NaT")
    text = text.where(~text.str.fullmatch(r"\d{8}(\.0)?"), text.str.slice(0, 8))
    result = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns]")
    todo = column.notna() & (text != "") & ~text.isin(["NA", "nan", "None", "NaT"])
    for date_format in _formats_by_fit(text[todo]):
        if not todo.any():
            break
        parsed = pd.to_datetime(text[todo], format=date_format, errors="coerce")
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_localize(None)
        hit = parsed.notna()
        if hit.any():
            result.loc[hit[hit].index] = parsed[hit].astype("datetime64[ns]")
            todo.loc[hit[hit].index] = False
    return result


def _formats_by_fit(text: pd.Series, sample_size: int = 1000) -> list[str]:
    """The known formats, those that parse most of a sample first (a file usually has one format)."""
    sample = text.head(sample_size)
    hits = {date_format: int(pd.to_datetime(sample, format=date_format, errors="coerce").notna().sum())
            for date_format in _DATE_FORMATS}
    return sorted(_DATE_FORMATS, key=lambda date_format: -hits[date_format])


def _severity(raw: pd.DataFrame, mapping: ColumnMapping, source_file: str, quality: CrashQuality,
              strict: bool) -> np.ndarray:
    present = [name for name in mapping.severity if name in raw.columns]
    if mapping.severity and strict:
        present = [resolve_column(raw, mapping.severity, "severity", source_file)]
    if not present:
        if mapping.severity:  # e.g. a hand-made export without the portal's severity column
            quality.notes.append(f"{source_file}: no severity column ({', '.join(mapping.severity)}); "
                                 f"its crashes count as severity unknown")
        return np.full(len(raw), "unknown", dtype=object)
    column = raw[present[0]]
    values = pd.Series(column.astype(str).str.strip().str.upper().str.removesuffix(".0"), dtype=object)
    codes, uniques = pd.factorize(values)
    table = np.array([mapping.severity_values.get(value, "unknown") for value in uniques] + ["unknown"],
                     dtype=object)
    assert set(table) <= set(SEVERITIES)
    return table[codes]


def _crash_ids(raw, mapping: ColumnMapping, source_file: str, stamp: pd.Series, lat, lon,
               quality: CrashQuality, strict: bool) -> np.ndarray:
    present = [name for name in mapping.crash_id if name in raw.columns]
    if mapping.crash_id and strict:
        present = [resolve_column(raw, mapping.crash_id, "crash id", source_file)]
    elif mapping.crash_id and not present:
        quality.notes.append(f"{source_file}: no crash id column ({', '.join(mapping.crash_id)}); "
                             f"composite ids of time and place are used")
    if present:
        column = raw[present[0]]
        text = column.astype(str).str.strip().str.removesuffix(".0")
        missing = column.isna() | (text == "") | text.isin(["nan", "None", "NA"])
        if missing.any():  # a record without an id gets a composite one
            text = text.where(~missing, _composite(stamp, lat, lon))
        return text.to_numpy(dtype=object)
    return _composite(stamp, lat, lon).to_numpy(dtype=object)


def _composite(stamp: pd.Series, lat: np.ndarray, lon: np.ndarray) -> pd.Series:
    coordinates = pd.Series(np.char.mod("%.6f", lat), dtype=object) + "," + pd.Series(
        np.char.mod("%.6f", lon), dtype=object)
    return stamp.fillna("NaT").astype(str).reset_index(drop=True) + "@" + coordinates
