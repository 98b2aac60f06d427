"""Registry of the eight states: where their crash records come from, how to read them, year splits.

``STATES`` maps the two-letter code to a :class:`StateEntry`. Everything state-specific in the
pipeline is read from here: the crash source (API kind, endpoints, dataset identifiers, years
available, the export formats the portal offers, and what of it was verified and how), the column
mapping into the common crash schema (``gnnbench.road.crashes``), where coordinates are read from
(latitude/longitude columns, API geometry, projected X/Y, row by row), the bounding box used to
reject crashes outside the state, the UTM zone used for metric work, and ML4RoadSafety's default
year splits.

Portal details come from public documentation and third-party code that downloaded the data; no
state has been built from its live portal by gnnbench. ``CrashSource.verified`` says per state
what was checked and how; the adapters check every column they need, so a portal whose live
schema differs fails with an error naming the missing column.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

SEVERITIES = ("fatal", "injury", "property_damage", "unknown")
WGS84 = "EPSG:4326"
UNVERIFIED = "from documentation only [unverified]"

#: Export formats a crash portal can offer: key -> (``fetch_crashes(format=...)`` that downloads it, or
#: None when it is downloaded by hand and passed with ``--crashes``; what it is).
CRASH_FORMATS: Mapping[str, tuple[str | None, str]] = MappingProxyType({
    "soda-json": ("json", "SODA API JSON pages (/resource/ID.json; field names, mapped to display names)"),
    "soda-geojson": ("geojson", "SODA API GeoJSON pages (/resource/ID.geojson)"),
    "soda-csv": (None, "SODA API CSV (/resource/ID.csv; API field names)"),
    "export-csv": ("csv", "full CSV export (/api/views/ID/rows.csv; display names)"),
    "arcgis-json": ("json", "ArcGIS FeatureServer query pages (f=json, outSR=4326)"),
    "arcgis-geojson": ("geojson", "ArcGIS FeatureServer query pages (f=geojson)"),
    "hub-csv": ("csv", "ArcGIS Hub CSV download (X, Y plus the attributes)"),
    "manual-csv": (None, "CSV exported by hand from the portal"),
})


@dataclass(frozen=True)
class CrashSource:
    """Where a state's crash records are published, how to fetch them, and what of it was verified.

    ``kind`` is ``"socrata"`` (one dataset, paged through SODA), ``"arcgis"`` (ArcGIS REST
    FeatureServer layers, one per ``layers`` key: a year, or ``"all"``), or ``"manual"``
    (no scriptable bulk API: the user downloads files and passes ``--crashes PATH``).
    ``formats`` lists the export formats the portal offers (keys of :data:`CRASH_FORMATS`);
    ``csv_downloads`` maps a layer key to the URL of its CSV download where one is known (Socrata
    datasets derive theirs from ``base_url``). ``verified`` says what was checked and how; ``live_build``
    when gnnbench last built the state from its live portal.
    """

    kind: str
    portal: str
    years: tuple[int, int]
    base_url: str | None = None
    dataset_id: str | None = None
    layers: Mapping[str, str] = field(default_factory=dict)
    manual_instructions: str | None = None
    verified: str = UNVERIFIED
    live_build: str = "not yet"
    licence: str = "no licence statement found; public records, bulk download without login"
    formats: tuple[str, ...] = ()
    csv_downloads: Mapping[str, str] = field(default_factory=dict)

    @property
    def fetchable_years(self) -> list[int]:
        """The years ``gnnbench download road`` can fetch from the portal (none for a manual source)."""
        if self.kind == "manual":
            return []
        if self.kind == "arcgis" and "all" not in self.layers:
            return sorted(int(key) for key in self.layers)
        return list(range(self.years[0], self.years[1] + 1))

    def csv_urls(self) -> dict[str, str]:
        """Layer key -> URL of the portal's CSV download (empty when the CSV is downloaded by hand)."""
        if self.kind == "socrata" and self.base_url and self.dataset_id:
            return {"all": f"{self.base_url}/api/views/{self.dataset_id}/rows.csv?accessType=DOWNLOAD"}
        return dict(self.csv_downloads)


@dataclass(frozen=True)
class Coordinates:
    """One place a crash's position can be read from; a mapping tries its places in order, row by row.

    ``y``/``x`` list spellings of the latitude (northing) and longitude (easting) columns, in ``crs``;
    ``"geometry"`` names the point geometry of an API page or GeoJSON feature (WGS84). ``point`` lists
    spellings of one column holding a point as WKT ``POINT (x y)`` or GeoJSON (WGS84). Values in a
    projected ``crs`` that already look like degrees (|x| <= 180 and |y| <= 180: no projected coordinate
    of a US state is that small) are taken as WGS84 degrees, so that swapped pairs are still recognised.
    """

    y: tuple[str, ...] = ()
    x: tuple[str, ...] = ()
    crs: str = WGS84
    point: tuple[str, ...] = ()

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every column name this place looks for (for error messages)."""
        return self.point or tuple(dict.fromkeys(self.y + self.x))


GEOMETRY = Coordinates(y=("geometry",), x=("geometry",))


@dataclass(frozen=True)
class ColumnMapping:
    """How raw crash columns map to the common schema (each field lists accepted spellings).

    Column names match exactly first, then ignoring case. ``date`` names the column(s) holding the
    crash date and ``date_format`` how to parse it: a ``strptime`` pattern, ``"iso"``,
    ``"epoch_ms"`` (ArcGIS; text dates of CSV exports are recognised too), ``"yyyymmdd"`` (an
    integer), ``"auto"`` (the known portal formats), or ``"year+month_name"`` (two columns, month
    resolution). ``coordinates`` lists where positions are read from (:class:`Coordinates`): each
    row takes the first place whose values are present. ``severity_values`` maps raw severity values
    (compared upper-case, stripped) to ``fatal``/``injury``/``property_damage``; anything else is
    ``unknown``. ``crash_id=()`` means the source has none: a composite id is built from the
    timestamp and coordinates.
    """

    crash_id: tuple[str, ...]
    date: tuple[tuple[str, ...], ...]
    date_format: str
    coordinates: tuple[Coordinates, ...]
    severity: tuple[str, ...] = ()
    severity_values: Mapping[str, str] = field(default_factory=dict)
    day_resolution: bool = True


@dataclass(frozen=True)
class StateEntry:
    """One state: identity, geography, crash source, column mapping and ML4RoadSafety splits."""

    code: str
    name: str
    fips: str
    bbox: tuple[float, float, float, float]  # lon_min, lat_min, lon_max, lat_max (WGS84)
    utm_epsg: int
    timezone: str
    crash_source: CrashSource
    columns: ColumnMapping
    _splits: tuple[tuple[str, tuple[int, ...]], ...]
    osm_extract_url: str
    notes: str = ""

    @property
    def splits(self) -> dict[str, list[int]]:
        """ML4RoadSafety's default year splits: ``{"train": [...], "valid": [...], "test": [...]}``."""
        return {name: list(years) for name, years in self._splits}

    @property
    def years(self) -> list[int]:
        """All years of the default splits, ascending."""
        return sorted(year for _, years in self._splits for year in years)

    @property
    def osm_place(self) -> str:
        """The place name osmnx geocodes for this state."""
        return f"{self.name}, United States"


def _years(first: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1))


def year_splits(train: tuple[int, int], valid: tuple[int, int],
                test: tuple[int, int]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The ``_splits`` of a :class:`StateEntry` from inclusive (first, last) year ranges."""
    return (("train", _years(*train)), ("valid", _years(*valid)), ("test", _years(*test)))


_GEOFABRIK = "https://download.geofabrik.de/north-america/us/{}-latest.osm.pbf"
_SOCRATA_FORMATS = ("soda-json", "soda-geojson", "soda-csv", "export-csv")
_ARCGIS_FORMATS = ("arcgis-json", "arcgis-geojson", "hub-csv")
_HUB_CSV = "{host}/api/download/v1/items/{item}/csv?layers=0"
_IL_HOST = "https://services2.arcgis.com/aIrBD8yn1TDTEXoz/arcgis/rest/services/"
_IL_LAYERS = {
    "2016": "Crashes_2016_SDMExtract", "2017": "Crashes_2017_SDMExtract", "2018": "Crashes_2018_SDMExtract",
    "2019": "Crashes2019", "2020": "Crashes_2020", "2021": "CRASHES2021", "2022": "CRASHES_2022",
    "2023": "CRASHES_2023", "2024": "CRASHES__2024",
}
_IL_HUB_ITEMS = {  # from the IDOT hub's DCAT catalogue, https://gis-idot.opendata.arcgis.com
    "2016": "583e29335ef348c5990ff63dd0acd153", "2017": "3291ad89f44448e0be3b26e7b05ea90f",
    "2018": "5cb42e3eb58c4a2b8066ae1e374c24fc", "2019": "c47903b664164b719cce04a2e7584dac",
    "2020": "c286e23e9bf44af397a5da24aaeff8f8", "2021": "bc11eb27849249c89868d6b4cd178613",
    "2022": "f3a4623c8d14486a9947d29a966bbf9d", "2023": "ae1333c03cca42c8ae2014bf74666f15",
    "2024": "e765e485839f4573b882b06ad84376c9",
}
_MA_HOST = "https://gis.crashdata.dot.mass.gov/arcgis/rest/services/MassDOT/"
_MA_CLOSED = "https://gis.massdot.state.ma.us/arcgis/rest/services/CrashClosedYear/"
_THIRD_PARTY = "from documentation and third-party download code only [unverified]"


def _ma_layers() -> dict[str, str]:
    layers = {str(year): f"{_MA_CLOSED}CrashClosedYear{year}/FeatureServer/0" for year in range(2013, 2020)}
    for year in range(2021, 2025):
        suffix = "v" if year == 2023 else ""
        layers[str(year)] = f"{_MA_HOST}MASSDOT_ODP_OPEN_{year}{suffix}/FeatureServer/0"
    return layers


def _latlon(lat: Iterable[str], lon: Iterable[str]) -> Coordinates:
    return Coordinates(y=tuple(lat), x=tuple(lon))


_ENTRIES = [
    StateEntry(
        code="DE", name="Delaware", fips="10", bbox=(-75.79, 38.45, -75.04, 39.84), utm_epsg=32618,
        timezone="America/New_York",
        crash_source=CrashSource(
            kind="socrata", portal="https://data.delaware.gov/Transportation/Public-Crash-Data/827n-m6xc",
            base_url="https://data.delaware.gov", dataset_id="827n-m6xc", years=(2009, 2025),
            formats=_SOCRATA_FORMATS,
            verified="full CSV export: header and value formats checked against a copy published in a public "
                     "repository (github.com/ecomhub200/Douglas_County_2, 3,546 rows), not a live download; "
                     "SODA field names from documentation [unverified]",
            licence="Delaware Open Data (Del. Code tit. 29 §9144: state geospatial data is public domain); "
                    "no dataset-level licence statement found"),
        columns=ColumnMapping(
            crash_id=(), date=(("CRASH DATETIME", "crash_datetime"),), date_format="auto",
            coordinates=(_latlon(("LATITUDE", "latitude"), ("LONGITUDE", "longitude")),
                         Coordinates(point=("the_geom",)), GEOMETRY),
            severity=("CRASH CLASSIFICATION DESCRIPTION", "crash_class_desc", "CRASH CLASSIFICATION CODE"),
            severity_values={"FATALITY CRASH": "fatal", "FATAL CRASH": "fatal", "4": "fatal",
                             "PERSONAL INJURY CRASH": "injury", "3": "injury",
                             "PROPERTY DAMAGE ONLY": "property_damage", "PROPERTY DAMAGE CRASH": "property_damage",
                             "2": "property_damage"}),
        _splits=year_splits((2009, 2012), (2013, 2017), (2018, 2022)),
        osm_extract_url=_GEOFABRIK.format("delaware"),
        notes="No crash id: a composite of timestamp and coordinates identifies a crash. The SODA JSON field "
              "names are mapped to the export's display names through the dataset metadata."),
    StateEntry(
        code="IA", name="Iowa", fips="19", bbox=(-96.64, 40.37, -90.14, 43.50), utm_epsg=32615,
        timezone="America/Chicago",
        crash_source=CrashSource(
            kind="arcgis", portal="https://public-iowadot.opendata.arcgis.com/datasets/IowaDOT::crash-data-sor",
            layers={"all": "https://gis.iowadot.gov/agshost/rest/services/Traffic_Safety/Crash_Data/FeatureServer/0"},
            years=(2015, 2024), formats=(*_ARCGIS_FORMATS, "manual-csv"),
            csv_downloads={"all": _HUB_CSV.format(host="https://data.iowadot.gov",
                                                  item="7a1f786d55a2439a9bfa8f7a527936e8")},
            manual_instructions="Years the rolling window no longer serves (before about 2015): export them from "
                                "ICAT, the Iowa Crash Analysis Tool (https://icat.iowadot.gov), and pass the CSV "
                                "with --crashes.",
            verified=_THIRD_PARTY + " (field names, CSEV codes, hub CSV X/Y as Web Mercator)",
            licence="Iowa DOT terms of use (service may change without notice); no open licence found"),
        columns=ColumnMapping(
            crash_id=("CRASH_KEY", "CASENUMBER"), date=(("CRASH_DATE", "Date of Crash"),), date_format="epoch_ms",
            coordinates=(GEOMETRY, _latlon(("Latitude", "LATITUDE"), ("Longitude", "LONGITUDE")),
                         Coordinates(y=("Y",), x=("X",), crs="EPSG:3857"),  # hub CSV (reported; unverified)
                         Coordinates(y=("YCOORD",), x=("XCOORD",), crs="EPSG:26915")),  # (reported; unverified)
            severity=("CSEV",),
            severity_values={"1": "fatal", "2": "injury", "3": "injury", "4": "injury", "5": "property_damage"}),
        _splits=year_splits((2013, 2016), (2017, 2019), (2020, 2022)),
        osm_extract_url=_GEOFABRIK.format("iowa"),
        notes="A rolling ten-year window: years before about 2015 are no longer served (ML4RoadSafety used an "
              "ICAT export from 2013); supply older years with --crashes."),
    StateEntry(
        code="IL", name="Illinois", fips="17", bbox=(-91.52, 36.97, -87.01, 42.51), utm_epsg=32616,
        timezone="America/Chicago",
        crash_source=CrashSource(
            kind="arcgis", portal="https://gis-idot.opendata.arcgis.com/search?q=Crashes",
            layers={year: f"{_IL_HOST}{name}/FeatureServer/0" for year, name in _IL_LAYERS.items()},
            years=(2016, 2024), formats=_ARCGIS_FORMATS,
            csv_downloads={year: _HUB_CSV.format(host="https://gis-idot.opendata.arcgis.com", item=item)
                           for year, item in _IL_HUB_ITEMS.items()},
            manual_instructions="2012-2015: the hub's items for these years are not known; download their CSV from "
                                "the IDOT hub by hand and pass them with --crashes.",
            verified=_THIRD_PARTY + " (layer and hub item ids, the 2022 hub CSV header, CrashSeverity values)"),
        columns=ColumnMapping(
            crash_id=("ICN", "CrashID"), date=(("CrashDate", "Crash Date"),), date_format="epoch_ms",
            coordinates=(_latlon(("TSCrashLatitude",), ("TSCrashLongitude",)), GEOMETRY,
                         Coordinates(y=("Y",), x=("X",))),
            severity=("CrashSeverity", "Crash Severity", "CrashInjurySeverity"),
            severity_values={"FATAL CRASH": "fatal", "FATAL": "fatal", "K": "fatal",
                             "INJURY CRASH": "injury", "A INJURY CRASH": "injury", "B INJURY CRASH": "injury",
                             "C INJURY CRASH": "injury", "INJURY": "injury",
                             "PROPERTY DAMAGE CRASH": "property_damage", "NO INJURIES": "property_damage",
                             "PROPERTY DAMAGE ONLY": "property_damage"}),
        _splits=year_splits((2012, 2014), (2015, 2017), (2018, 2021)),
        osm_extract_url=_GEOFABRIK.format("illinois"),
        notes="One layer per year; 2012-2015 layer ids are not known, supply those years with --crashes. "
              "Crashes without a location carry a placeholder point outside the state and are dropped as such."),
    StateEntry(
        code="MD", name="Maryland", fips="24", bbox=(-79.49, 37.89, -75.05, 39.73), utm_epsg=32618,
        timezone="America/New_York",
        crash_source=CrashSource(
            kind="socrata",
            portal="https://opendata.maryland.gov/Public-Safety/Maryland-Statewide-Vehicle-Crashes/65du-s3qu",
            base_url="https://opendata.maryland.gov", dataset_id="65du-s3qu", years=(2015, 2025),
            formats=_SOCRATA_FORMATS,
            verified=_THIRD_PARTY + " (SODA field names; today's ACC_DATE type, REPORT_TYPE spellings)"),
        columns=ColumnMapping(
            crash_id=("REPORT_NO", "report_no"), date=(("ACC_DATE", "acc_date"),), date_format="auto",
            coordinates=(_latlon(("LATITUDE", "latitude"), ("LONGITUDE", "longitude")), GEOMETRY),
            severity=("REPORT_TYPE", "report_type", "ACRS_REPORT_TYPE"),
            severity_values={"FATAL CRASH": "fatal", "INJURY CRASH": "injury",
                             "PROPERTY DAMAGE CRASH": "property_damage"}),
        _splits=year_splits((2015, 2017), (2018, 2019), (2020, 2022)),
        osm_extract_url=_GEOFABRIK.format("maryland"),
        notes="Statewide ACRS crashes (not Montgomery County's export). ACC_DATE is YYYYMMDD in older CSV "
              "exports and a floating timestamp in SODA; both parse."),
    StateEntry(
        code="MA", name="Massachusetts", fips="25", bbox=(-73.51, 41.23, -69.92, 42.89), utm_epsg=32619,
        timezone="America/New_York",
        crash_source=CrashSource(
            kind="arcgis", portal="https://massdot-impact-crashes-vhb.opendata.arcgis.com",
            layers=_ma_layers(), years=(2013, 2024), formats=(*_ARCGIS_FORMATS, "manual-csv"),
            manual_instructions="2002-2012 and 2020: download the yearly crash-level CSV from the MassDOT IMPACT "
                                "portal and pass it with --crashes.",
            verified=_THIRD_PARTY + " (service URLs, field names; EPSG:26986 of the services and hub X/Y)"),
        columns=ColumnMapping(
            crash_id=("CRASH_NUMB",), date=(("CRASH_DATETIME", "CRASH_DATE", "CRASH_DATE_TEXT"),),
            date_format="epoch_ms",
            coordinates=(_latlon(("LAT",), ("LON",)), GEOMETRY,
                         Coordinates(y=("Y",), x=("X",), crs="EPSG:26986")),  # Massachusetts Mainland (metres)
            severity=("CRASH_SEVERITY_DESCR",),
            severity_values={"FATAL INJURY": "fatal", "NON-FATAL INJURY": "injury",
                             "PROPERTY DAMAGE ONLY (NONE INJURED)": "property_damage"}),
        _splits=year_splits((2002, 2008), (2009, 2015), (2016, 2022)),
        osm_extract_url=_GEOFABRIK.format("massachusetts"),
        notes="Vehicle- and person-level exports repeat a crash per vehicle/person; duplicates of CRASH_NUMB "
              "are dropped and counted. Open years are revised by MassDOT. The hub CSV has no item ids here: "
              "download it from the yearly hub page and pass it with --crashes."),
    StateEntry(
        code="MN", name="Minnesota", fips="27", bbox=(-97.24, 43.50, -89.49, 49.39), utm_epsg=32615,
        timezone="America/Chicago",
        crash_source=CrashSource(
            kind="manual", portal="https://roadsafetyinfocenter.mn.gov/map/information/crashes",
            years=(2016, 2025), formats=("manual-csv",),
            manual_instructions="Minnesota has no open bulk API (MNCrash and MnCMAT2 are restricted). Export the "
                                "crashes from the Road Safety Information Center map ('Export Data') or the MNCrash "
                                "ad-hoc search, and pass the CSV files with --crashes.",
            verified="export header from a third party's sample export (August 2025) and ML4RoadSafety's script "
                     "only [unverified] (MNCrash columns, the fatal InjuryLevel spelling)"),
        columns=ColumnMapping(
            crash_id=(), date=(("DateOfIncident", "Crash Date"),), date_format="auto",
            coordinates=(_latlon(("LatDec", "Latitude"), ("LongDec", "Longitude")), Coordinates(point=("geom",))),
            severity=("InjuryLevel",),
            severity_values={"FATAL": "fatal", "FATAL INJURY": "fatal", "SUSPECTED SERIOUS INJURY": "injury",
                             "SUSPECTED MINOR INJURY": "injury", "POSSIBLE INJURY": "injury",
                             "NO APPARENT INJURY": "property_damage"}),
        _splits=year_splits((2015, 2017), (2018, 2019), (2020, 2022)),
        osm_extract_url=_GEOFABRIK.format("minnesota"),
        notes="Manual export only; no crash id (composite id)."),
    StateEntry(
        code="MT", name="Montana", fips="30", bbox=(-116.06, 44.35, -104.03, 49.01), utm_epsg=32612,
        timezone="America/Denver",
        crash_source=CrashSource(
            kind="manual", portal="https://www.mdt.mt.gov/publications/datastats/crashdata.shtml",
            years=(2016, 2024), formats=("manual-csv",),
            manual_instructions="Download MDT's 'Montana Statewide Crash Data' file (a rolling five-year window) "
                                "and pass it with --crashes.",
            verified="from ML4RoadSafety's notes only [unverified] (exact column spellings)"),
        columns=ColumnMapping(
            crash_id=(), date=(("Crash_Year",), ("Crash_Month",)), date_format="year+month_name",
            coordinates=(_latlon(("Latitude", "LATITUDE", "Lat"), ("Longitude", "LONGITUDE", "Long", "Lon")),),
            day_resolution=False),
        _splits=year_splits((2016, 2017), (2018, 2018), (2019, 2020)),
        osm_extract_url=_GEOFABRIK.format("montana"),
        notes="Month resolution only and no severity; about a quarter of the rows have no coordinates."),
    StateEntry(
        code="NV", name="Nevada", fips="32", bbox=(-120.01, 35.00, -114.03, 42.00), utm_epsg=32611,
        timezone="America/Los_Angeles",
        crash_source=CrashSource(
            kind="arcgis", portal="https://data-ndot.opendata.arcgis.com/datasets/NDOT::crashdata-opendata",
            layers={"all": "https://gis.dot.nv.gov/arcgis/rest/services/ArcGISOnline/CrashData_OpenData/"
                           "FeatureServer/0"},
            years=(2016, 2024), formats=_ARCGIS_FORMATS,
            verified=_THIRD_PARTY + " (hub CSV header with X = longitude, Y = latitude; layer fields)"),
        columns=ColumnMapping(
            crash_id=("Accident_Rec_Num", "OBJECTID"), date=(("Crash_Date",),), date_format="epoch_ms",
            coordinates=(GEOMETRY, Coordinates(y=("Y",), x=("X",))),
            severity=("Crash_Severity",),
            severity_values={"FATAL CRASH": "fatal", "INJURY CRASH": "injury",
                             "PROPERTY DAMAGE ONLY": "property_damage"}),
        _splits=year_splits((2016, 2017), (2018, 2018), (2019, 2020)),
        osm_extract_url=_GEOFABRIK.format("nevada"),
        notes="Coordinates come from the point geometry requested in WGS84, or the hub CSV's X (longitude) and "
              "Y (latitude) (ML4RoadSafety's x->lat rename swapped them). The hub CSV has no item id here: "
              "download it from the hub page and pass it with --crashes."),
]

STATES: Mapping[str, StateEntry] = MappingProxyType({entry.code: entry for entry in _ENTRIES})


#: The name of the synthetic demo region (``gnnbench.road.demo``), valid wherever a state code is.
DEMO = "DEMO"


def region_code(code: object, *, demo: bool = True, others: tuple[str, ...] = (),
                tables: str | os.PathLike | None = None) -> str:
    """``code`` upper-cased if it names a registry state (or :data:`DEMO` when ``demo``, or a region with tables in
    ``tables``, a ``ROOT/tables`` directory, such as a synthetic one); an unknown name raises a ValueError listing
    the valid ones (``others``: further names the caller accepts, such as ``"all"``).

    Callers check a name before they create anything for it, so a rejected name leaves no folder behind."""
    key = code.strip().upper() if isinstance(code, str) else None
    if key in STATES or (demo and key == DEMO):
        return key
    built = Path(tables) / key if tables is not None and key and key.isalnum() else None
    if built is not None and built.is_dir() and any(built.iterdir()):
        return key
    where = f" (no tables in {built})" if built is not None else ""
    valid = [*STATES, *([DEMO] if demo else []), *others]
    raise ValueError(f"unknown state {code!r}{where}; valid: {', '.join(valid)}")


def get_state(code: str) -> StateEntry:
    """The registry entry of a state code (case-insensitive); unknown codes list the choices."""
    key = str(code).upper()
    if key not in STATES:
        raise ValueError(f"unknown state {code!r}; expected one of {', '.join(STATES)}")
    return STATES[key]
