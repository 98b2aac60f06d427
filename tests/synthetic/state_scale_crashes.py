"""The state-scale region's crash records: Delaware-format CSV rows near the roads, with planted bad rows.

Part of :mod:`synthetic.state_scale` (see there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from gnnbench.road.geo import transform
from synthetic.state_scale_network import CLASS_TABLE, CLASSES, STATE_SCALE_EPSG

# Delaware crash classification (code, description) and other attribute vocabularies of the export.
_SEVERITY = (("1", "Non-Reportable"), ("2", "Property Damage Only"), ("3", "Personal Injury Crash"),
             ("4", "Fatality Crash"))
_SEVERITY_WEIGHTS = (0.2, 0.55, 0.235, 0.015)
_WEATHER = ("Clear", "Cloudy", "Rain", "Snow", "Fog, Smog, Smoke", "Sleet, Hail (Freezing Rain or Drizzle)")
_SURFACE = ("Dry", "Wet", "Snow", "Ice/Frost", "Sand", "Other")
_LIGHT = ("Daylight", "Dark-Lighted", "Dark-Not Lighted", "Dawn", "Dusk")
_IMPACT = ("Front to rear", "Angle", "Sideswipe, same direction", "Front to front", "Not a collision between two "
           "vehicles", "Rear to side")
_CIRCUMSTANCE = ("Following too close", "Failed to yield right of way", "Driver inattention, distraction, or "
                 "fatigue", "Speeding", "Improper lane change", "None")
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_YN = ("N", "Y")
DATE_FORMAT = "%m/%d/%Y %I:%M:%S %p"   # Socrata's CSV export of a floating timestamp
BAD_KINDS = ("missing_coordinates", "zero_coordinates", "swapped_lat_lon", "outside_state", "unparseable_date",
             "duplicate", "unmatched")



def draw_crashes(rng: np.random.Generator, network: dict[str, np.ndarray], num_crashes: int, years: tuple[int, ...],
             bad_fraction: float) -> dict[str, Any]:
    """Good crash rows first (``good`` of them), then the bad rows; coordinates in WGS84 degrees."""
    per_kind = max(1, round(num_crashes * bad_fraction / len(BAD_KINDS)))
    good = num_crashes - per_kind * len(BAD_KINDS)
    if good < per_kind * len(BAD_KINDS):
        raise ValueError(f"too few crashes ({num_crashes}) for bad_fraction={bad_fraction}")
    weights = np.array([CLASS_TABLE[name][0] for name in CLASSES])[network["seg_class"]] * network["seg_length"]
    segment = np.searchsorted(np.cumsum(weights) / weights.sum(), rng.random(good), side="right")
    segment = np.minimum(segment, len(weights) - 1)
    t = rng.uniform(0.02, 0.98, good)
    x, y = network["x"], network["y"]
    u, v = network["seg_u"][segment], network["seg_v"][segment]
    ax, ay, bx, by = x[u], y[u], x[v], y[v]
    bent = network["seg_has_mid"][segment]
    mx, my = network["mid_x"][segment], network["mid_y"][segment]
    first = bent & (t < 0.5)
    second = bent & (t >= 0.5)
    px = np.where(first, ax + 2 * t * (mx - ax), np.where(second, mx + (2 * t - 1) * (bx - mx), ax + t * (bx - ax)))
    py = np.where(first, ay + 2 * t * (my - ay), np.where(second, my + (2 * t - 1) * (by - my), ay + t * (by - ay)))
    px += rng.normal(0.0, 7.0, good)
    py += rng.normal(0.0, 7.0, good)

    # Far from every road: a few kilometres west of the grid, still inside the bounding box.
    far_x = x.min() - rng.uniform(2_000.0, 6_000.0, per_kind)
    far_y = rng.uniform(y.min(), y.max(), per_kind)
    lon, lat = transform(np.concatenate([px, far_x]), np.concatenate([py, far_y]), STATE_SCALE_EPSG, "EPSG:4326")
    lon, lat = np.round(lon, 6), np.round(lat, 6)

    start = np.datetime64(f"{min(years)}-01-01T00:00")
    minutes = int((np.datetime64(f"{max(years) + 1}-01-01T00:00") - start).astype(np.int64))
    when = start + rng.integers(0, minutes, good).astype("timedelta64[m]")
    in_years = np.isin(when.astype("datetime64[Y]").astype(np.int64) + 1970, np.asarray(years))
    when = np.where(in_years, when, start)  # non-consecutive years: move stragglers to the first minute
    severity = np.searchsorted(np.cumsum(_SEVERITY_WEIGHTS), rng.random(good), side="right").clip(0, 3)

    # Bad rows copy good ones and break one thing each (duplicates copy everything).
    source = rng.choice(good, per_kind * (len(BAD_KINDS) - 1), replace=False).reshape(len(BAD_KINDS) - 1, per_kind)
    copies = np.concatenate([np.arange(good), source.reshape(-1), rng.integers(0, good, per_kind)])
    rows = len(copies)
    row_lat = np.concatenate([lat[:good], lat[source.reshape(-1)], lat[good:]])
    row_lon = np.concatenate([lon[:good], lon[source.reshape(-1)], lon[good:]])
    kind = np.concatenate([np.full(good, -1), np.repeat(np.arange(len(BAD_KINDS) - 1), per_kind),
                           np.full(per_kind, BAD_KINDS.index("unmatched"))])
    missing = kind == BAD_KINDS.index("missing_coordinates")
    zero = kind == BAD_KINDS.index("zero_coordinates")
    swapped = kind == BAD_KINDS.index("swapped_lat_lon")
    row_lat[zero], row_lon[zero] = 0.0, 0.0
    row_lat[swapped], row_lon[swapped] = row_lon[swapped].copy(), row_lat[swapped].copy()
    row_lat[kind == BAD_KINDS.index("outside_state")] += 3.0
    bad_date = kind == BAD_KINDS.index("unparseable_date")
    expected = {"records_read": rows, "kept": good, **{name: per_kind for name in BAD_KINDS}}
    return {"rows": rows, "good": good, "segment": segment, "lon": lon[:good], "lat": lat[:good],
            "far_lon": lon[good:], "far_lat": lat[good:],
            "row_lat": row_lat, "row_lon": row_lon, "missing": missing, "bad_date": bad_date,
            "when": when[copies], "severity": severity[copies], "copies": copies,
            "county": (px[copies.clip(max=good - 1)] > np.median(px)).astype(np.int64) +
            2 * (py[copies.clip(max=good - 1)] > np.median(py)),
            "expected": expected}


def write_crash_files(crash_dir: Path, crashes: dict[str, Any], files: int, rng: np.random.Generator) -> list[Path]:
    """Shuffle the rows and write them as ``files`` Delaware-format CSV exports."""
    crash_dir.mkdir(parents=True, exist_ok=True)
    rows = crashes["rows"]
    order = rng.permutation(rows)
    when = crashes["when"][order]
    minute = when.astype("datetime64[m]").astype(np.int64)
    unique, inverse = np.unique(minute, return_inverse=True)
    stamps = pc.strftime(pa.array(unique.astype("datetime64[m]").astype("datetime64[s]")), format=DATE_FORMAT)
    stamp_index = inverse.reshape(-1)
    lat, lon = crashes["row_lat"][order], crashes["row_lon"][order]
    missing, bad_date = crashes["missing"][order], crashes["bad_date"][order]
    severity, county = crashes["severity"][order], crashes["county"][order]
    attributes = np.random.default_rng(int(rng.integers(2**31)))
    paths = []
    bounds = np.linspace(0, rows, files + 1).astype(np.int64)
    for number, (low, high) in enumerate(zip(bounds[:-1], bounds[1:])):
        part = slice(int(low), int(high))
        count = int(high - low)
        stamp = pc.take(stamps, pa.array(stamp_index[part]))
        stamp = pc.if_else(pa.array(bad_date[part]), pa.scalar("not recorded"), stamp)
        lat_text = pa.array(lat[part], mask=missing[part])
        lon_text = pa.array(lon[part], mask=missing[part])
        sev = severity[part]
        when_part = when[part]
        weekday = ((when_part.astype("datetime64[D]").astype(np.int64) + 4) % 7)   # 1970-01-01 was a Thursday
        geom = pc.binary_join_element_wise("POINT (", pc.cast(lon_text, pa.string()), " ",
                                           pc.cast(lat_text, pa.string()), ")", "")
        table = pa.table({
            "CRASH DATETIME": stamp,
            "DAY OF WEEK CODE": pa.array((weekday + 1).astype(str)),
            "DAY OF WEEK DESCRIPTION": _pick(_DAYS, weekday),
            "CRASH CLASSIFICATION CODE": _pick(tuple(code for code, _ in _SEVERITY), sev),
            "CRASH CLASSIFICATION DESCRIPTION": _pick(tuple(text for _, text in _SEVERITY), sev),
            "COLLISION ON PRIVATE PROPERTY": _pick(_YN, attributes.random(count) < 0.03),
            "PEDESTRIAN INVOLVED": _pick(_YN, attributes.random(count) < 0.02),
            "MANNER OF IMPACT DESCRIPTION": _pick(_IMPACT, attributes.integers(0, len(_IMPACT), count)),
            "ALCOHOL INVOLVED": _pick(_YN, attributes.random(count) < 0.04),
            "DRUG INVOLVED": _pick(_YN, attributes.random(count) < 0.01),
            "ROAD SURFACE DESCRIPTION": _pick(_SURFACE, attributes.integers(0, len(_SURFACE), count)),
            "LIGHTING CONDITION DESCRIPTION": _pick(_LIGHT, attributes.integers(0, len(_LIGHT), count)),
            "SEATBELT USED": _pick(_YN, attributes.random(count) < 0.9),
            "MOTORCYCLE INVOLVED": _pick(_YN, attributes.random(count) < 0.02),
            "BICYCLED INVOLVED": _pick(_YN, attributes.random(count) < 0.01),
            "LATITUDE": lat_text,
            "LONGITUDE": lon_text,
            "PRIMARY CONTRIBUTING CIRCUMSTANCE DESCRIPTION": _pick(_CIRCUMSTANCE,
                                                                   attributes.integers(0, len(_CIRCUMSTANCE), count)),
            "COUNTY CODE": pa.array((county[part] + 1).astype(str)),
            "COUNTY NAME": _pick(("Gull", "Tern", "Heron", "Plover"), county[part]),
            "WEATHER 1 DESCRIPTION": _pick(_WEATHER, attributes.integers(0, len(_WEATHER), count)),
            "YEAR": pa.array(when_part.astype("datetime64[Y]").astype(np.int64) + 1970),
            "THE_GEOM": geom,
        })
        path = crash_dir / f"crashes-{number:02d}.csv"
        pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="needed"))
        paths.append(path)
    return paths


def _pick(values: tuple[str, ...], index: np.ndarray) -> pa.Array:
    return pc.take(pa.array(values), pa.array(np.asarray(index, dtype=np.int64)))


def truth_accidents(network: dict[str, np.ndarray], crashes: dict[str, Any]) -> dict[str, np.ndarray]:
    """Good crashes counted per (year, month, canonical edge) with Delaware's severity classes."""
    good = crashes["good"]
    when = crashes["when"][:good]
    year = when.astype("datetime64[Y]").astype(np.int64) + 1970
    month = when.astype("datetime64[M]").astype(np.int64) % 12 + 1
    edge = network["canonical"][crashes["segment"]]
    severity = crashes["severity"][:good]
    num_edges = len(network["src"])
    key = ((year - 1900) * 13 + month) * num_edges + edge
    unique, inverse = np.unique(key, return_inverse=True)
    count = np.bincount(inverse, minlength=len(unique))
    by_class = {name: np.bincount(inverse, weights=(severity == code), minlength=len(unique)).astype(np.int64)
                for name, code in (("fatal", 3), ("injury", 2), ("property_damage", 1))}
    period = unique // num_edges
    return {"year": period // 13 + 1900, "month": period % 13, "edge": unique % num_edges, "count": count,
            "segment": np.asarray(network["segment"])[unique % num_edges], **by_class}
