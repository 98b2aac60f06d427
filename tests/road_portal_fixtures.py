"""Raw crash records in each state portal's real shape (as each portal's public export documents it; see the registry's URLs), with bad rows.

Every state has one :class:`PortalCase`: ``serve`` registers its routes on a running
:class:`~gnnbench.road.demo.server.LoopbackPortal` (scriptable portals), ``write_files`` writes the
CSV exports a user would download by hand, and ``expected`` / ``dropped`` are the exact output of
``crash_stage`` over the fetched pages plus those files (written out by hand, not computed).

The column spellings and value formats follow the research notes: Socrata field names mapped to
display names through ``/api/views/{id}.json`` (DE, MD), ArcGIS attributes with epoch-millisecond
dates and point geometry (IA, IL, MA, NV), and CSV exports (DE full export, MD old export, MA
vehicle level, MN RSIC, MT statewide file).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# Known places (lat, lon), WGS84.
WILMINGTON = (39.7391, -75.5398)

# Crash row as crash_stage returns it: (crash_id, year, month, day, lat, lon, severity, source_file, source_row).
Row = tuple[str, int, int, int, float, float, str, str, int]


def ms(text: str) -> int:
    """Epoch milliseconds (UTC) of an ISO timestamp, as the ArcGIS JSON API returns dates."""
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


def feature(attributes: dict[str, Any], lat: float | None = None, lon: float | None = None,
            geometry: Any = "point") -> dict[str, Any]:
    """An ArcGIS JSON feature with a point geometry in WGS84 (the adapter asks for outSR=4326)."""
    if geometry == "point":
        geometry = None if lat is None else {"x": lon, "y": lat}
    return {"attributes": attributes, "geometry": geometry}


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]], *, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@dataclass
class PortalCase:
    """One state's raw records, how to serve them, and the exact normalised result."""

    code: str
    serve: Callable[[Any], None] | None
    fetch_kwargs: dict[str, Any]
    pages: list[tuple[str, int]]  # (page file, number of records) in fetch order; columns.json has -1
    expected: list[Row]
    dropped: dict[str, int]
    write_files: Callable[[Path], list[Path]] = field(default=lambda directory: [])

    @property
    def records_read(self) -> int:
        return len(self.expected) + sum(self.dropped.values())


# --------------------------------------------------------------------------- Delaware (Socrata)

DE_DATASET = "827n-m6xc"
DE_COLUMNS = {  # SODA field name -> display name of the full export (the CSV header)
    "crash_datetime": "CRASH DATETIME", "day_of_week_code": "DAY OF WEEK CODE",
    "day_of_week_desc": "DAY OF WEEK DESCRIPTION", "crash_class": "CRASH CLASSIFICATION CODE",
    "crash_class_desc": "CRASH CLASSIFICATION DESCRIPTION", "ped_involved": "PEDESTRIAN INVOLVED",
    "latitude": "LATITUDE", "longitude": "LONGITUDE", "the_geom": "the_geom", "county": "COUNTY CODE",
    "county_desc": "COUNTY NAME", "year": "YEAR",
}


def _de_row(when: str | None, lat: float | str | None, lon: float | str | None, code: str, desc: str,
            county: str = "N") -> dict[str, Any]:
    """A SODA JSON row: numbers as strings, and null fields omitted (as Socrata does)."""
    row: dict[str, Any] = {"day_of_week_code": "1", "crash_class": code, "crash_class_desc": desc,
                           "ped_involved": "N", "county": county, "county_desc": {"N": "New Castle", "K": "Kent",
                                                                                  "S": "Sussex"}[county]}
    if when is not None:
        row["crash_datetime"] = when
        row["year"] = when[:4]
    if lat is not None:
        row["latitude"], row["longitude"] = str(lat), str(lon)
        row["the_geom"] = {"type": "Point", "coordinates": [float(lon), float(lat)]}
    return row


DE_ROWS = [
    # page 0: four good crashes
    _de_row("2012-04-29T17:32:00.000", 39.66174, -75.73633, "2", "Property Damage Only"),
    _de_row("2015-07-04T09:15:00.000", 38.7746, -75.1393, "3", "Personal Injury Crash", "S"),
    _de_row("2021-11-30T23:59:00.000", *WILMINGTON, "4", "Fatality Crash"),
    _de_row("2019-02-01T08:00:00.000", 39.1582, -75.5244, "1", "Non-Reportable", "K"),
    # page 1: coordinate problems
    _de_row("2016-05-05T10:00:00.000", None, None, "2", "Property Damage Only"),
    _de_row("2016-05-06T10:00:00.000", "0", "0", "2", "Property Damage Only"),
    _de_row("2016-05-07T10:00:00.000", -75.55, 39.70, "2", "Property Damage Only"),  # lat/lon swapped
    _de_row("2016-05-08T10:00:00.000", 40.4406, -79.9959, "3", "Personal Injury Crash"),  # Pittsburgh
    # page 2: years outside the splits, a republished crash, one more good one
    _de_row("2008-06-01T12:00:00.000", 39.70, -75.60, "2", "Property Damage Only"),
    _de_row("2023-03-01T12:00:00.000", 39.70, -75.60, "2", "Property Damage Only"),
    _de_row("2012-04-29T17:32:00.000", 39.66174, -75.73633, "2", "Property Damage Only"),
    _de_row("2010-01-02T03:04:05.000", 38.5618, -75.571, "2", "Property Damage Crash", "S"),
    # page 3 (last, one row): no CRASH DATETIME / YEAR, as in 3 rows of the published sample
    _de_row(None, 39.70, -75.60, "2", "Property Damage Only"),
]


def _serve_de(portal, drop_columns: Sequence[str] = ()) -> None:
    portal.add_socrata(DE_DATASET, DE_ROWS, DE_COLUMNS, drop_columns=drop_columns)


DE_PAGES = [f"{DE_DATASET}-p{n:05d}.json" for n in range(4)]


def _de_expected(pages: Sequence[str]) -> list[Row]:
    return [
        ("2012-04-29T17:32:00@39.661740,-75.736330", 2012, 4, 29, 39.66174, -75.73633, "property_damage",
         pages[0], 0),
        ("2015-07-04T09:15:00@38.774600,-75.139300", 2015, 7, 4, 38.7746, -75.1393, "injury", pages[0], 1),
        ("2021-11-30T23:59:00@39.739100,-75.539800", 2021, 11, 30, 39.7391, -75.5398, "fatal", pages[0], 2),
        ("2019-02-01T08:00:00@39.158200,-75.524400", 2019, 2, 1, 39.1582, -75.5244, "unknown", pages[0], 3),
        ("2010-01-02T03:04:05@38.561800,-75.571000", 2010, 1, 2, 38.5618, -75.571, "property_damage", pages[2], 3),
    ]


DE_DROPPED = {"missing_coordinates": 1, "zero_coordinates": 1, "swapped_lat_lon": 1, "outside_state": 1,
              "unparseable_date": 1, "outside_years": 2, "duplicate": 1}


def _de_full_export() -> tuple[list[str], list[list[str]]]:
    header = ["CRASH DATETIME", "DAY OF WEEK CODE", "CRASH CLASSIFICATION CODE", "CRASH CLASSIFICATION DESCRIPTION",
              "LATITUDE", "LONGITUDE", "the_geom", "COUNTY NAME", "YEAR"]
    rows = []
    for row in DE_ROWS:
        when = row.get("crash_datetime")
        text = datetime.fromisoformat(when[:19]).strftime("%Y %b %d %I:%M:%S %p") if when else ""
        lat, lon = row.get("latitude", "NA"), row.get("longitude", "NA")
        geom = f"POINT ({lon} {lat})" if lat != "NA" else ""
        year = f"{int(when[:4]):,}" if when else ""
        rows.append([text, "1", row["crash_class"], row["crash_class_desc"], lat, lon, geom, row["county_desc"],
                     year])
    return header, rows


def write_de_full_export(directory: Path) -> Path:
    """The same records as ``rows.csv?accessType=DOWNLOAD`` writes them: display names, BOM, "NA", "2,012"."""
    header, rows = _de_full_export()
    return write_csv(directory / "Public_Crash_Data.csv", header, rows, bom=True)


DE = PortalCase(
    code="DE", serve=_serve_de, fetch_kwargs={"page_size": 4},
    pages=[("columns.json", -1)] + list(zip(DE_PAGES, [4, 4, 4, 1])),
    expected=_de_expected(DE_PAGES), dropped=DE_DROPPED)


# --------------------------------------------------------------------------- Maryland (Socrata + old CSV)

MD_DATASET = "65du-s3qu"
MD_COLUMNS = {"report_no": "REPORT_NO", "acc_date": "ACC_DATE", "acc_time": "ACC_TIME", "latitude": "LATITUDE",
              "longitude": "LONGITUDE", "report_type": "REPORT_TYPE", "county_desc": "COUNTY_DESC", "year": "YEAR",
              "quarter": "QUARTER"}


def _md_row(report: str, when: str | None, lat: float | None, lon: float | None, kind: str | None,
            county: str = "Baltimore City") -> dict[str, Any]:
    row: dict[str, Any] = {"report_no": report, "acc_time": "1970-01-01T14:30:00.000", "county_desc": county}
    if when is not None:  # SODA floating timestamp
        row["acc_date"] = f"{when}T00:00:00.000"
        row["year"] = when[:4]
        row["quarter"] = f"Q{(int(when[5:7]) - 1) // 3 + 1}"
    if lat is not None:
        row["latitude"], row["longitude"] = str(lat), str(lon)
    if kind is not None:
        row["report_type"] = kind
    return row


MD_ROWS = [
    _md_row("AB40010001", "2015-01-15", 39.2904, -76.6122, "Property Damage Crash"),
    _md_row("AB40010002", "2018-06-30", 38.9784, -76.4922, "Injury Crash", "Anne Arundel"),
    _md_row("AB40010003", "2022-12-31", 39.6418, -77.72, "Fatal Crash", "Washington"),
    _md_row("AB40010004", "2019-09-09", None, None, "Injury Crash"),
    _md_row("AB40010005", "2020-02-02", 39.9526, -75.1652, "Injury Crash"),  # Philadelphia
    _md_row("AB40010006", "2014-12-31", 39.2904, -76.6122, "Property Damage Crash"),
    _md_row("AB40010007", None, 39.2904, -76.6122, "Property Damage Crash"),
]
MD_PAGES = [f"{MD_DATASET}-p{n:05d}.json" for n in range(3)]
MD_OLD_EXPORT = "Maryland_Statewide_Vehicle_Crashes.csv"


def write_md_files(directory: Path) -> list[Path]:
    """An older full CSV export, where ACC_DATE is an integer YYYYMMDD (it overlaps the SODA pages)."""
    header = ["REPORT_NO", "ACC_DATE", "ACC_TIME", "LATITUDE", "LONGITUDE", "REPORT_TYPE", "COUNTY_DESC", "YEAR",
              "QUARTER"]
    rows = [["AB40010001", "20150115", "14:30:00", "39.2904", "-76.6122", "Property Damage Crash", "Baltimore City",
             "2015", "Q1"],
            ["AB40020001", "20170704", "09:05:00", "39.4143", "-77.4105", "Injury Crash", "Frederick", "2017", "Q3"],
            ["AB40020002", "20190310", "22:40:00", "38.3607", "-75.5994", "", "Wicomico", "2019", "Q1"]]
    return [write_csv(directory / MD_OLD_EXPORT, header, rows)]


MD = PortalCase(
    code="MD", serve=lambda portal: portal.add_socrata(MD_DATASET, MD_ROWS, MD_COLUMNS),
    fetch_kwargs={"page_size": 3}, pages=[("columns.json", -1)] + list(zip(MD_PAGES, [3, 3, 1])),
    expected=[
        ("AB40010001", 2015, 1, 15, 39.2904, -76.6122, "property_damage", MD_PAGES[0], 0),
        ("AB40010002", 2018, 6, 30, 38.9784, -76.4922, "injury", MD_PAGES[0], 1),
        ("AB40010003", 2022, 12, 31, 39.6418, -77.72, "fatal", MD_PAGES[0], 2),
        ("AB40020001", 2017, 7, 4, 39.4143, -77.4105, "injury", MD_OLD_EXPORT, 1),
        ("AB40020002", 2019, 3, 10, 38.3607, -75.5994, "unknown", MD_OLD_EXPORT, 2),
    ],
    dropped={"missing_coordinates": 1, "outside_state": 1, "outside_years": 1, "unparseable_date": 1,
             "duplicate": 1},
    write_files=write_md_files)


# --------------------------------------------------------------------------- Iowa (ArcGIS, one layer)

IA_LAYER = "/agshost/rest/services/Traffic_Safety/Crash_Data/FeatureServer/0"


def _ia(oid: int, key: int, when: str, csev: int | None, lat=None, lon=None, **extra) -> dict[str, Any]:
    attributes = {"OBJECTID": oid, "CRASH_KEY": key, "CASENUMBER": f"C{key}", "CRASH_DATE": ms(when),
                  "CRASH_YEAR": int(when[:4]), "CSEV": csev, "COUNTY_NAME": "POLK", "FATALITIES": int(csev == 1)}
    return feature(attributes, lat, lon, **extra)


IA_FEATURES = [
    _ia(1, 2015000123, "2015-01-18T00:00:00", 5, 41.5868, -93.625),
    _ia(2, 2017000456, "2017-03-04T17:20:00", 1, 41.9779, -91.6656),
    _ia(3, 2020000789, "2020-07-04T21:00:00", 2, 41.6611, -91.5302),
    _ia(4, 2022001011, "2022-12-31T18:00:00", 4, 42.4963, -96.4049),
    _ia(5, 2018000001, "2018-01-01T00:00:00", 3, geometry=None),
    _ia(6, 2018000002, "2018-01-02T00:00:00", 3, -93.6, 41.6),  # x and y swapped
    _ia(7, 2023000003, "2023-01-02T00:00:00", 5, 41.5868, -93.625),
    _ia(8, 2015000123, "2015-01-18T00:00:00", 5, 41.5868, -93.625),  # republished crash
    _ia(9, 2013000004, "2013-03-03T08:00:00", None, 41.5236, -90.5776),
]
IA_PAGES = [f"all-b{n:05d}.json" for n in range(3)]
IA = PortalCase(
    code="IA", serve=lambda portal: portal.add_arcgis_layer(IA_LAYER, IA_FEATURES, max_record_count=4),
    fetch_kwargs={}, pages=list(zip(IA_PAGES, [4, 4, 1])),
    expected=[
        ("2015000123", 2015, 1, 18, 41.5868, -93.625, "property_damage", IA_PAGES[0], 0),
        ("2017000456", 2017, 3, 4, 41.9779, -91.6656, "fatal", IA_PAGES[0], 1),
        ("2020000789", 2020, 7, 4, 41.6611, -91.5302, "injury", IA_PAGES[0], 2),
        ("2022001011", 2022, 12, 31, 42.4963, -96.4049, "injury", IA_PAGES[0], 3),
        ("2013000004", 2013, 3, 3, 41.5236, -90.5776, "unknown", IA_PAGES[2], 0),
    ],
    dropped={"missing_coordinates": 1, "swapped_lat_lon": 1, "outside_years": 1, "duplicate": 1})


# --------------------------------------------------------------------------- Illinois (ArcGIS, per year)

IL_BASE = "/aIrBD8yn1TDTEXoz/arcgis/rest/services"
IL_LAYER = {2016: f"{IL_BASE}/Crashes_2016_SDMExtract/FeatureServer/0", 2020: f"{IL_BASE}/Crashes_2020/FeatureServer/0",
            2021: f"{IL_BASE}/CRASHES2021/FeatureServer/0"}
IL_PLACEHOLDER = (36.41, -97.96)  # IDOT's point for crashes without a location (Oklahoma)


def _il_spaced(oid, icn, date_text, severity, lat=None, lon=None) -> dict[str, Any]:
    """2016-2019 layers: spaced names, two-digit ``Crash Year``, ``Crash Date`` as M/D/YYYY text."""
    month, day, year = date_text.split("/")
    return feature({"OBJECTID": oid, "ICN": icn, "Crash Date": date_text, "Crash Year": int(year) % 100,
                    "Crash Month": int(month), "Crash Day": int(day), "Crash Severity": severity, "Total Fatals": 0,
                    "County Code": 16}, lat, lon)


def _il_camel(oid, icn, crash_date, severity, ts=(None, None), point=None) -> dict[str, Any]:
    """2020+ layers: camel names, ``TSCrashLatitude``/``TSCrashLongitude`` (blank without a location)."""
    attributes = {"OBJECTID": oid, "ICN": icn, "CrashID": 900000 + oid, "CrashYr": icn // 1000000 % 100,
                  "CrashDate": crash_date,
                  "CrashSeverity": severity, "CrashInjurySeverity": "No injuries", "TSCrashCoordinateX": None,
                  "TSCrashCoordinateY": None, "TSCrashLatitude": ts[0], "TSCrashLongitude": ts[1]}
    return feature(attributes, *(point or (None, None)))


IL_FEATURES = {
    2016: [
        _il_spaced(1, 2016000001, "01/05/2016", "Fatal Crash", 41.8781, -87.6298),
        _il_spaced(2, 2016000002, "3/7/2016", "A Injury Crash", 39.7817, -89.6501),
        _il_spaced(3, 2016000003, "4/1/2016", "Property Damage Crash", *IL_PLACEHOLDER),
        _il_spaced(4, 2016000004, "12/31/2016", "No Injuries", 40.6936, -89.589),
    ],
    2020: [  # CrashDate still M/D/YYYY text in 2020
        _il_camel(1, 2020000001, "7/4/2020", "Injury Crash", (41.525, -88.0817), (41.525, -88.0817)),
        _il_camel(2, 2020000002, "7/5/2020", "Injury Crash", (0.0, 0.0), (0.0, 0.0)),
        _il_camel(3, 2020000003, None, "Injury Crash", (41.525, -88.0817), (41.525, -88.0817)),
    ],
    2021: [  # epoch milliseconds
        _il_camel(1, 2021000001, ms("2021-02-14T08:30:00"), "Property Damage Crash", (42.2711, -89.094),
                  (42.2711, -89.094)),
        _il_camel(2, 2021000002, ms("2021-02-15T08:30:00"), "Injury Crash", point=IL_PLACEHOLDER),
        _il_camel(3, 2021000003, ms("2021-06-01T12:00:00"), "Fatal Crash", point=(40.1164, -88.2434)),
        _il_camel(4, 2021000004, ms("2021-06-02T12:00:00"), "Injury Crash"),
        _il_camel(5, 2021000005, ms("2022-01-01T00:30:00"), "Injury Crash", (41.8781, -87.6298),
                  (41.8781, -87.6298)),
    ],
}


def _serve_il(portal) -> None:
    for year, features in IL_FEATURES.items():
        portal.add_arcgis_layer(IL_LAYER[year], features, max_record_count=2 if year == 2021 else 1000)


IL = PortalCase(
    code="IL", serve=_serve_il, fetch_kwargs={"years": [2016, 2020, 2021]},
    pages=[("2016-b00000.json", 4), ("2020-b00000.json", 3), ("2021-b00000.json", 2), ("2021-b00001.json", 2),
           ("2021-b00002.json", 1)],
    expected=[
        ("2016000001", 2016, 1, 5, 41.8781, -87.6298, "fatal", "2016-b00000.json", 0),
        ("2016000002", 2016, 3, 7, 39.7817, -89.6501, "injury", "2016-b00000.json", 1),
        ("2016000004", 2016, 12, 31, 40.6936, -89.589, "property_damage", "2016-b00000.json", 3),
        ("2020000001", 2020, 7, 4, 41.525, -88.0817, "injury", "2020-b00000.json", 0),
        ("2021000001", 2021, 2, 14, 42.2711, -89.094, "property_damage", "2021-b00000.json", 0),
        ("2021000003", 2021, 6, 1, 40.1164, -88.2434, "fatal", "2021-b00001.json", 0),
    ],
    dropped={"outside_state": 2, "zero_coordinates": 1, "unparseable_date": 1, "missing_coordinates": 1,
             "outside_years": 1})


# --------------------------------------------------------------------------- Massachusetts (ArcGIS + CSV)

MA_LAYER = {2015: "/arcgis/rest/services/CrashClosedYear/CrashClosedYear2015/FeatureServer/0",
            2018: "/arcgis/rest/services/CrashClosedYear/CrashClosedYear2018/FeatureServer/0"}
PDO, NONFATAL, FATAL = "Property damage only (none injured)", "Non-fatal injury", "Fatal injury"


def _ma_2015(oid, numb, when, severity, lat=None, lon=None, attribute_coordinates=True) -> dict[str, Any]:
    """2013-2017 layers: ``CRASH_DATETIME`` (ms), ``LAT``/``LON`` attributes (blank when not geocoded)."""
    attributes = {"OBJECTID": oid, "CRASH_NUMB": numb, "CRASH_DATETIME": ms(when), "CRASH_TIME_2": "2:05 PM",
                  "CITY_TOWN_NAME": "BOSTON", "CRASH_SEVERITY_DESCR": severity, "NUMB_VEHC": 2,
                  "LAT": lat if attribute_coordinates else None, "LON": lon if attribute_coordinates else None}
    return feature(attributes, lat, lon)


def _ma_2018(oid, numb, when, severity, lat, lon, vehicle=1) -> dict[str, Any]:
    """2018-2020 layers: ``CRASH_DATE`` (ms) instead of ``CRASH_DATETIME``; vehicle-level rows repeat a crash."""
    attributes = {"OBJECTID": oid, "CRASH_NUMB": numb, "CRASH_DATE": None if when is None else ms(when),
                  "CRASH_SEVERITY_DESCR": severity, "VEHC_UNIT_NUMB": vehicle, "CITY_TOWN_NAME": "CAMBRIDGE"}
    return feature(attributes, lat, lon)


MA_FEATURES = {
    2015: [
        _ma_2015(1, 4012345, "2015-01-27T14:05:00", PDO, 42.3601, -71.0589),
        _ma_2015(2, 4012346, "2015-02-03T07:40:00", NONFATAL, 42.2626, -71.8023),
        _ma_2015(3, 4012347, "2015-03-15T22:10:00", FATAL, 42.1015, -72.5898, attribute_coordinates=False),
        _ma_2015(4, 4012348, "2015-04-01T00:00:00", "Not Reported"),
        _ma_2015(5, 4012349, "2015-05-20T11:11:00", "Unknown", 42.6526, -73.7562),  # Albany, NY
    ],
    2018: [
        _ma_2018(11, 4500001, "2018-08-15T17:45:00", NONFATAL, 42.3736, -71.1097, vehicle=1),
        _ma_2018(12, 4500001, "2018-08-15T17:45:00", NONFATAL, 42.3736, -71.1097, vehicle=2),
        _ma_2018(13, 4500002, "2018-11-03T00:00:00", PDO, 42.6334, -71.3162),
        _ma_2018(14, 4500003, None, PDO, 42.6334, -71.3162),
    ],
}
MA_VEHICLE_CSV = "2002_Vehicle_Level_Crash_Details.csv"


def write_ma_files(directory: Path) -> list[Path]:
    """A vehicle-level IMPACT export for a year without a service (CRASH_DATE_TEXT, LAT/LON)."""
    header = ["CRASH_NUMB", "CRASH_DATE_TEXT", "CRASH_TIME_2", "CITY_TOWN_NAME", "CRASH_SEVERITY_DESCR", "LAT", "LON",
              "VEHC_UNIT_NUMB"]
    rows = [["1000001", "03/09/2002", "8:10 AM", "QUINCY", NONFATAL, "42.2529", "-71.0023", "1"],
            ["1000001", "03/09/2002", "8:10 AM", "QUINCY", NONFATAL, "42.2529", "-71.0023", "2"],
            ["1000002", "03 10 2002", "11:55 PM", "NEW BEDFORD", FATAL, "41.6362", "-70.9342", "1"],
            ["1000003", "03/11/2002", "1:00 PM", "SALEM", PDO, "", "", "1"]]
    return [write_csv(directory / MA_VEHICLE_CSV, header, rows)]


def _serve_ma(portal) -> None:
    for year, features in MA_FEATURES.items():
        portal.add_arcgis_layer(MA_LAYER[year], features, max_record_count=2000)


MA = PortalCase(
    code="MA", serve=_serve_ma, fetch_kwargs={"years": [2015, 2018]},
    pages=[("2015-b00000.json", 5), ("2018-b00000.json", 4)],
    expected=[
        ("4012345", 2015, 1, 27, 42.3601, -71.0589, "property_damage", "2015-b00000.json", 0),
        ("4012346", 2015, 2, 3, 42.2626, -71.8023, "injury", "2015-b00000.json", 1),
        ("4012347", 2015, 3, 15, 42.1015, -72.5898, "fatal", "2015-b00000.json", 2),
        ("4500001", 2018, 8, 15, 42.3736, -71.1097, "injury", "2018-b00000.json", 0),
        ("4500002", 2018, 11, 3, 42.6334, -71.3162, "property_damage", "2018-b00000.json", 2),
        ("1000001", 2002, 3, 9, 42.2529, -71.0023, "injury", MA_VEHICLE_CSV, 0),
        ("1000002", 2002, 3, 10, 41.6362, -70.9342, "fatal", MA_VEHICLE_CSV, 2),
    ],
    dropped={"missing_coordinates": 2, "outside_state": 1, "unparseable_date": 1, "duplicate": 2},
    write_files=write_ma_files)


# --------------------------------------------------------------------------- Nevada (ArcGIS, one layer)

NV_LAYER = "/arcgis/rest/services/ArcGISOnline/CrashData_OpenData/FeatureServer/0"


def _nv(oid, record, when, severity, lat=None, lon=None, geometry="point") -> dict[str, Any]:
    attributes = {"OBJECTID": oid, "Accident_Rec_Num": record, "Crash_Date": ms(when), "Crash_Year": int(when[:4]),
                  "Crash_Time": "10:27:00 AM", "Crash_Severity": severity, "County": "CLARK",
                  "Injury_Type": "O", "Weather": "CLOUDY: RAIN"}
    return feature(attributes, lat, lon, geometry=geometry)


NV_FEATURES = [
    _nv(1, 2224407.0, "2016-01-04T10:27:00", "PROPERTY DAMAGE ONLY", 36.236043, -115.106709),
    _nv(2, 2224408.0, "2018-05-05T16:00:00", "INJURY CRASH", 39.5296, -119.8138),
    _nv(3, 2224409.0, "2020-12-31T23:10:00", "FATAL CRASH", 39.1638, -119.7674),
    _nv(4, 2224410.0, "2017-02-02T02:02:00", "INJURY CRASH", -115.14, 36.17),  # swapped
    _nv(5, 2224411.0, "2017-03-03T03:03:00", "INJURY CRASH", 33.4484, -112.074),  # Phoenix
    _nv(6, None, "2019-07-01T12:00:00", "INJURY CRASH", 36.0395, -114.9817),  # no record number
    _nv(7, 2224413.0, "2021-03-03T00:00:00", "INJURY CRASH", 36.17, -115.14),
    _nv(8, 2224407.0, "2016-01-04T10:27:00", "PROPERTY DAMAGE ONLY", 36.236043, -115.106709),
    _nv(9, 2224414.0, "2018-08-08T08:08:00", "INJURY CRASH", geometry={"x": "NaN", "y": "NaN"}),  # empty point
]
NV_PAGES = [f"all-b{n:05d}.json" for n in range(3)]
NV = PortalCase(
    code="NV", serve=lambda portal: portal.add_arcgis_layer(NV_LAYER, NV_FEATURES), fetch_kwargs={"page_size": 4},
    pages=list(zip(NV_PAGES, [4, 4, 1])),
    expected=[
        ("2224407", 2016, 1, 4, 36.236043, -115.106709, "property_damage", NV_PAGES[0], 0),
        ("2224408", 2018, 5, 5, 39.5296, -119.8138, "injury", NV_PAGES[0], 1),
        ("2224409", 2020, 12, 31, 39.1638, -119.7674, "fatal", NV_PAGES[0], 2),
        ("2019-07-01T12:00:00@36.039500,-114.981700", 2019, 7, 1, 36.0395, -114.9817, "injury", NV_PAGES[1], 1),
    ],
    dropped={"swapped_lat_lon": 1, "outside_state": 1, "outside_years": 1, "duplicate": 1,
             "missing_coordinates": 1})


# --------------------------------------------------------------------------- Minnesota (manual RSIC export)

MN_HEADER = ["geom", "Num_Occupants", "Fatalities_calc", "CountyNameTxt", "InjuryLevel", "DateOfIncident", "LatDec",
             "LongDec", "LocalCodeTxt", "doi_date", "doi_time"]
MN_FILES = ("crashes_export_2016_2020.csv", "crashes_export_2020_2025.csv")


def _mn(when: str, lat: str, lon: str, level: str, case: str, geom: str | None = None) -> list[str]:
    geom = (f"POINT({lon} {lat})" if lat else "") if geom is None else geom
    return [geom, "1", str(int(level == "Fatal")), "Ramsey", level, when, lat, lon, case, "", ""]


def write_mn_files(directory: Path) -> list[Path]:
    first = [
        _mn("2016-03-01 07:45:00", "44.97571102", "-93.07412971", "No Apparent Injury", "16-047077"),
        _mn("2018-08-30 17:31:00", "46.7867", "-92.1005", "Suspected Serious Injury", "RV18027466"),
        _mn("2022-01-15 02:00:00", "44.0121", "-92.4802", "Fatal", "22-000001"),
        _mn("2020-05-05 12:00:00", "45.5579", "-94.1632", "Possible Injury", "20-1"),
        _mn("2019-06-06 06:06:00", "", "", "Suspected Minor Injury", "19-2"),
        _mn("2017-07-07 07:07:00", "41.5868", "-93.625", "Possible Injury", "17-3"),  # Des Moines
    ]
    second = [  # an overlapping second export
        _mn("2025-08-30 17:31:00", "44.97571102", "-93.07412971", "Suspected Minor Injury", "25-247077"),
        _mn("2016-03-01 07:45:00", "44.97571102", "-93.07412971", "No Apparent Injury", "16-047077"),
        _mn("", "44.98", "-93.27", "Possible Injury", "X"),
        # LatDec/LongDec empty, the point only in geom (Rochester): the position comes from geom
        _mn("2021-04-04 16:20:00", "", "", "Possible Injury", "21-9", geom="POINT(-92.4631 44.0234)"),
    ]
    return [write_csv(directory / name, MN_HEADER, rows) for name, rows in zip(MN_FILES, (first, second))]


MN = PortalCase(
    code="MN", serve=None, fetch_kwargs={}, pages=[],
    expected=[
        ("2016-03-01T07:45:00@44.975711,-93.074130", 2016, 3, 1, 44.97571102, -93.07412971, "property_damage",
         MN_FILES[0], 0),
        ("2018-08-30T17:31:00@46.786700,-92.100500", 2018, 8, 30, 46.7867, -92.1005, "injury", MN_FILES[0], 1),
        ("2022-01-15T02:00:00@44.012100,-92.480200", 2022, 1, 15, 44.0121, -92.4802, "fatal", MN_FILES[0], 2),
        ("2020-05-05T12:00:00@45.557900,-94.163200", 2020, 5, 5, 45.5579, -94.1632, "injury", MN_FILES[0], 3),
        ("2021-04-04T16:20:00@44.023400,-92.463100", 2021, 4, 4, 44.0234, -92.4631, "injury", MN_FILES[1], 3),
    ],
    dropped={"missing_coordinates": 1, "outside_state": 1, "outside_years": 1, "duplicate": 1,
             "unparseable_date": 1},
    write_files=write_mn_files)


# --------------------------------------------------------------------------- Montana (manual statewide file)

MT_FILE = "Montana_Statewide_Crash_Data_2016-2020.csv"


def write_mt_files(directory: Path) -> list[Path]:
    header = ["Crash_Year", "Crash_Month", "Day_of_Week", "Latitude", "Longitude"]
    rows = [["2016", "January", "Friday", "46.5891", "-112.0391"],
            ["2018", "July", "Sunday", "45.7833", "-108.5007"],
            ["2020", "December", "Monday", "46.8721", "-113.994"],
            ["2017", "March", "Tuesday", "", ""],
            ["2019", "", "Wednesday", "47.5053", "-111.3008"],
            ["2015", "May", "Thursday", "46.5891", "-112.0391"],
            ["2016", "January", "Saturday", "46.5891", "-112.0391"],  # same month and place: still a crash
            ["2018", "August", "Friday", "0", "0"]]
    return [write_csv(directory / MT_FILE, header, rows)]


MT = PortalCase(
    code="MT", serve=None, fetch_kwargs={}, pages=[],
    expected=[
        ("2016-01@46.589100,-112.039100", 2016, 1, 0, 46.5891, -112.0391, "unknown", MT_FILE, 0),
        ("2018-07@45.783300,-108.500700", 2018, 7, 0, 45.7833, -108.5007, "unknown", MT_FILE, 1),
        ("2020-12@46.872100,-113.994000", 2020, 12, 0, 46.8721, -113.994, "unknown", MT_FILE, 2),
        ("2016-01@46.589100,-112.039100", 2016, 1, 0, 46.5891, -112.0391, "unknown", MT_FILE, 6),
    ],
    dropped={"missing_coordinates": 1, "unparseable_date": 1, "outside_years": 1, "zero_coordinates": 1},
    write_files=write_mt_files)


CASES = {case.code: case for case in (DE, IA, IL, MA, MD, MN, MT, NV)}


# --------------------------------------------------------------------------- comparing results


def rows_of(crashes) -> list[tuple]:
    """The crash table's rows as plain Python tuples (numpy scalars unwrapped)."""
    import numpy as np

    return [tuple(value.item() if isinstance(value, np.generic) else value for value in row)
            for row in crashes.itertuples(index=False, name=None)]


def assert_rows(crashes, expected: Sequence[Row]) -> None:
    """Rows equal, latitude/longitude to 1e-7 degrees (projected coordinates come back through pyproj)."""
    import numpy as np

    rows = rows_of(crashes)
    assert [row[:4] + row[6:] for row in rows] == [row[:4] + row[6:] for row in expected]
    np.testing.assert_allclose(np.array([row[4:6] for row in rows], dtype=float).reshape(-1, 2),
                               np.array([row[4:6] for row in expected], dtype=float).reshape(-1, 2), atol=1e-7)


def all_drops(**counts: int) -> dict[str, int]:
    """Every drop reason with its count (0 unless given)."""
    from gnnbench.road.crashes import DROP_REASONS

    return {reason: counts.get(reason, 0) for reason in DROP_REASONS}
