"""The same crash records in every other export format the portals offer (test tree only).

The API pages of ``road_portal_fixtures`` rendered as the hub CSV download, the Socrata full CSV
export, and the files users export by hand (ICAT, IMPACT, MNCrash, MDT), with the expected rows and
drops of the hand exports written out by hand. Projected X/Y are computed with pyproj directly (not
through gnnbench), from the known longitude/latitude.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from road_portal_fixtures import (
    DE_COLUMNS,
    DE_DATASET,
    DE_ROWS,
    IA_FEATURES,
    IL_FEATURES,
    MA_FEATURES,
    MA_VEHICLE_CSV,
    MD_COLUMNS,
    MD_DATASET,
    MD_ROWS,
    MN,
    MT,
    NV_FEATURES,
    PortalCase,
    Row,
    _de_full_export,
    write_csv,
    write_ma_files,
    write_mn_files,
    write_mt_files,
)

HUB_CRS = {"IA": "EPSG:3857", "MA": "EPSG:26986"}  # hub CSV X/Y: Web Mercator, Massachusetts Mainland (metres)
ARCGIS_LAYERS = {  # layer key -> features, as served
    "IA": {"all": IA_FEATURES}, "IL": {str(year): features for year, features in IL_FEATURES.items()},
    "MA": {str(year): features for year, features in MA_FEATURES.items()}, "NV": {"all": NV_FEATURES},
}
SOCRATA = {"DE": (DE_DATASET, DE_ROWS, DE_COLUMNS), "MD": (MD_DATASET, MD_ROWS, MD_COLUMNS)}


def _text(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def hub_csv(features: Sequence[dict[str, Any]], crs: str | None = None) -> str:
    """ArcGIS features as the hub's CSV download writes them.

    ``X``, ``Y`` first (the point geometry; projected to ``crs`` when given, except points that are
    no coordinate at all, e.g. swapped ones with |latitude| > 90, which stay as they are), then every
    attribute; epoch-millisecond ``*DATE*`` fields become ``YYYY/MM/DD HH:MM:SS+00``; nulls are empty.
    """
    from pyproj import Transformer

    forward = Transformer.from_crs("EPSG:4326", crs, always_xy=True) if crs else None
    names: list[str] = []
    for item in features:
        names += [name for name in item["attributes"] if name not in names]
    rows = []
    for item in features:
        geometry = item.get("geometry") or {}
        x, y = _finite(geometry.get("x")), _finite(geometry.get("y"))
        if forward is not None and x is not None and y is not None and abs(y) <= 90:
            x, y = forward.transform(x, y)
        values = []
        for name in names:
            value = item["attributes"].get(name)
            if "DATE" in name.upper() and isinstance(value, int) and value >= 10 ** 11:
                value = datetime.fromtimestamp(value / 1000, timezone.utc).strftime("%Y/%m/%d %H:%M:%S+00")
            values.append("" if value is None else value)
        rows.append(["" if x is None else repr(x), "" if y is None else repr(y), *values])
    return _text(rows, ["X", "Y", *names])


def socrata_export_csv(rows: Sequence[dict[str, Any]], columns: dict[str, str]) -> str:
    """SODA rows as a full export (``rows.csv``) writes them: display names, floating timestamps as
    ``MM/DD/YYYY hh:mm:ss AM``, points as WKT, nulls empty (Socrata's generic export format)."""
    body = []
    for row in rows:
        values = []
        for field_name in columns:
            value = row.get(field_name)
            if isinstance(value, dict):
                value = "POINT ({} {})".format(*value["coordinates"])
            elif isinstance(value, str) and len(value) == 23 and value[10] == "T":
                value = datetime.fromisoformat(value).strftime("%m/%d/%Y %I:%M:%S %p")
            values.append("" if value is None else value)
        body.append(values)
    return _text(body, list(columns.values()))


def export_csv(code: str) -> str:
    """The full CSV export of a Socrata state (Delaware's in its own published formatting, with a BOM)."""
    if code == "DE":
        header, rows = _de_full_export()
        return "\ufeff" + _text(rows, header)
    _, rows, columns = SOCRATA[code]
    return socrata_export_csv(rows, columns)


def relabel(case: PortalCase, rename: Callable[[str], str]) -> list[Row]:
    """``case.expected`` with API-page rows moved to the file ``rename(page)`` names, numbered on from the
    earlier pages that go to the same file (rows of the case's own written files are unchanged)."""
    offset: dict[str, int] = {}
    start: dict[str, tuple[str, int]] = {}
    for page, count in case.pages:
        if count < 0:
            continue
        target = rename(page)
        start[page] = (target, offset.get(target, 0))
        offset[target] = offset.get(target, 0) + count
    return [(*row[:7], *((start[row[7]][0], start[row[7]][1] + row[8]) if row[7] in start else row[7:]))
            for row in case.expected]


# Files exported by hand (``manual-csv``) from IA's ICAT, MA's IMPACT portal, MN's MNCrash ad-hoc search.
ICAT_FILE = "icat_export_2013_2014.csv"
MNCRASH_FILE = "mncrash_adhoc_2015.csv"


def write_icat(directory: Path) -> list[Path]:
    """ICAT export (the columns ML4RoadSafety's script reads: Date of Crash as YYYYMMDD, Latitude, Longitude)."""
    rows = [["20130105", "41.6", "-93.6"], ["20140707", "42.5", "-92.34"], ["20140708", "", ""],
            ["20130105", "41.6", "-93.6"]]
    return [write_csv(directory / ICAT_FILE, ["Date of Crash", "Latitude", "Longitude"], rows)]


def write_mncrash(directory: Path) -> list[Path]:
    """MNCrash ad-hoc search export: Crash Date as ``%m/%d/%Y %I:%M:%S %p``, Latitude, Longitude, InjuryLevel."""
    rows = [["12/31/2015 11:59:00 PM", "44.9778", "-93.265", "Fatal"],
            ["06/15/2016 08:00:00 AM", "46.8721", "-113.994", "Possible Injury"]]  # Missoula, MT
    return [write_csv(directory / MNCRASH_FILE, ["Crash Date", "Latitude", "Longitude", "InjuryLevel"], rows)]


MANUAL = {  # state -> (write files, expected rows, drops), written out by hand
    "IA": (write_icat, [
        ("2013-01-05T00:00:00@41.600000,-93.600000", 2013, 1, 5, 41.6, -93.6, "unknown", ICAT_FILE, 0),
        ("2014-07-07T00:00:00@42.500000,-92.340000", 2014, 7, 7, 42.5, -92.34, "unknown", ICAT_FILE, 1),
    ], {"missing_coordinates": 1, "duplicate": 1}),
    "MA": (write_ma_files, [
        ("1000001", 2002, 3, 9, 42.2529, -71.0023, "injury", MA_VEHICLE_CSV, 0),
        ("1000002", 2002, 3, 10, 41.6362, -70.9342, "fatal", MA_VEHICLE_CSV, 2),
    ], {"missing_coordinates": 1, "duplicate": 1}),
    "MN": (lambda directory: write_mn_files(directory) + write_mncrash(directory), MN.expected + [
        ("2015-12-31T23:59:00@44.977800,-93.265000", 2015, 12, 31, 44.9778, -93.265, "fatal", MNCRASH_FILE, 0),
    ], {**MN.dropped, "outside_state": MN.dropped["outside_state"] + 1}),
    "MT": (write_mt_files, MT.expected, MT.dropped),
}

