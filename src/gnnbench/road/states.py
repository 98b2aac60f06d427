"""Registry of the eight states: where their crash records come from, how to read them, year splits.

``STATES`` maps the two-letter code to a :class:`StateEntry`. Everything state-specific in the
pipeline is read from here: the crash source (API kind, endpoints, dataset identifiers, years
available), the column mapping into the common crash schema (``gnnbench.road.crashes``), the
coordinate reference system of the raw coordinates, the bounding box used to reject crashes
outside the state, the UTM zone used for metric work, and ML4RoadSafety's default year splits.

Portal details come from ``shared/research/road_sources.md``; the ones marked unverified there
are marked ``verified=False`` here, and the adapters check every column they need, so a portal
whose live schema differs fails with an error naming the missing column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

SEVERITIES = ("fatal", "injury", "property_damage", "unknown")


@dataclass(frozen=True)
class CrashSource:
    """Where a state's crash records are published and how to fetch them.

    ``kind`` is ``"socrata"`` (one dataset, paged through SODA), ``"arcgis"`` (ArcGIS REST
    FeatureServer layers, one per ``layers`` key: a year, or ``"all"``), or ``"manual"``
    (no scriptable bulk API: the user downloads files and passes ``--crashes PATH``).
    """

    kind: str
    portal: str
    years: tuple[int, int]
    base_url: str | None = None
    dataset_id: str | None = None
    layers: Mapping[str, str] = field(default_factory=dict)
    manual_instructions: str | None = None
    verified: bool = False
    licence: str = "no licence statement found; public records, bulk download without login"


@dataclass(frozen=True)
class ColumnMapping:
    """How raw crash columns map to the common schema (each field lists accepted spellings).

    ``date`` names the column(s) holding the crash date and ``date_format`` how to parse it:
    a ``strptime`` pattern, ``"iso"``, ``"epoch_ms"`` (ArcGIS), ``"yyyymmdd"`` (an integer),
    ``"auto"`` (pandas inference), or ``"year+month_name"`` (two columns, month resolution).
    Coordinates are ``lat``/``lon`` in ``crs`` (WGS84 unless stated; ``column_crs`` names the CRS
    of particular columns, e.g. a hub CSV's projected ``X``/``Y``), or the geometry the adapter
    requested in WGS84 (``"geometry"``). ``severity_values`` maps raw severity values
    (compared upper-case, stripped) to ``fatal``/``injury``/``property_damage``; anything else is
    ``unknown``. ``crash_id=()`` means the source has none: a composite id is built from the
    timestamp and coordinates.
    """

    crash_id: tuple[str, ...]
    date: tuple[tuple[str, ...], ...]
    date_format: str
    lat: tuple[str, ...]
    lon: tuple[str, ...]
    crs: str = "EPSG:4326"
    severity: tuple[str, ...] = ()
    severity_values: Mapping[str, str] = field(default_factory=dict)
    day_resolution: bool = True
    column_crs: Mapping[str, str] = field(default_factory=dict)


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
_IL_HOST = "https://services2.arcgis.com/aIrBD8yn1TDTEXoz/arcgis/rest/services/"
_IL_LAYERS = {
    "2016": "Crashes_2016_SDMExtract", "2017": "Crashes_2017_SDMExtract", "2018": "Crashes_2018_SDMExtract",
    "2019": "Crashes2019", "2020": "Crashes_2020", "2021": "CRASHES2021", "2022": "CRASHES_2022",
    "2023": "CRASHES_2023", "2024": "CRASHES__2024",
}
_MA_HOST = "https://gis.crashdata.dot.mass.gov/arcgis/rest/services/MassDOT/"
_MA_CLOSED = "https://gis.massdot.state.ma.us/arcgis/rest/services/CrashClosedYear/"


def _ma_layers() -> dict[str, str]:
    layers = {str(year): f"{_MA_CLOSED}CrashClosedYear{year}/FeatureServer/0" for year in range(2013, 2020)}
    for year in range(2021, 2025):
        suffix = "v" if year == 2023 else ""
        layers[str(year)] = f"{_MA_HOST}MASSDOT_ODP_OPEN_{year}{suffix}/FeatureServer/0"
    return layers


_ENTRIES = [
    StateEntry(
        code="DE", name="Delaware", fips="10", bbox=(-75.79, 38.45, -75.04, 39.84), utm_epsg=32618,
        timezone="America/New_York",
        crash_source=CrashSource(
            kind="socrata", portal="https://data.delaware.gov/Transportation/Public-Crash-Data/827n-m6xc",
            base_url="https://data.delaware.gov", dataset_id="827n-m6xc", years=(2009, 2025), verified=True,
            licence="Delaware Open Data (Del. Code tit. 29 §9144: state geospatial data is public domain); "
                    "no dataset-level licence statement found"),
        columns=ColumnMapping(
            crash_id=(), date=(("CRASH DATETIME", "crash_datetime"),), date_format="auto",
            lat=("LATITUDE", "latitude"), lon=("LONGITUDE", "longitude"),
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
            years=(2015, 2024),
            licence="Iowa DOT terms of use (service may change without notice); no open licence found"),
        columns=ColumnMapping(
            crash_id=("CRASH_KEY", "CASENUMBER"), date=(("CRASH_DATE", "Date of Crash"),), date_format="epoch_ms",
            lat=("geometry", "Latitude", "LATITUDE", "Y"), lon=("geometry", "Longitude", "LONGITUDE", "X"),
            column_crs={"X": "EPSG:3857"},  # the hub CSV's X/Y are Web Mercator (reported; unverified)
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
            years=(2016, 2024)),
        columns=ColumnMapping(
            crash_id=("ICN", "CrashID"), date=(("CrashDate", "Crash Date"),), date_format="epoch_ms",
            lat=("TSCrashLatitude", "geometry"), lon=("TSCrashLongitude", "geometry"),
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
            base_url="https://opendata.maryland.gov", dataset_id="65du-s3qu", years=(2015, 2025)),
        columns=ColumnMapping(
            crash_id=("REPORT_NO", "report_no"), date=(("ACC_DATE", "acc_date"),), date_format="auto",
            lat=("LATITUDE", "latitude"), lon=("LONGITUDE", "longitude"),
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
            layers=_ma_layers(), years=(2013, 2024),
            manual_instructions="2002-2012 and 2020: download the yearly crash-level CSV from the MassDOT IMPACT "
                                "portal and pass it with --crashes."),
        columns=ColumnMapping(
            crash_id=("CRASH_NUMB",), date=(("CRASH_DATETIME", "CRASH_DATE", "CRASH_DATE_TEXT"),),
            date_format="epoch_ms", lat=("LAT", "geometry"), lon=("LON", "geometry"),
            severity=("CRASH_SEVERITY_DESCR",),
            severity_values={"FATAL INJURY": "fatal", "NON-FATAL INJURY": "injury",
                             "PROPERTY DAMAGE ONLY (NONE INJURED)": "property_damage"}),
        _splits=year_splits((2002, 2008), (2009, 2015), (2016, 2022)),
        osm_extract_url=_GEOFABRIK.format("massachusetts"),
        notes="Vehicle- and person-level exports repeat a crash per vehicle/person; duplicates of CRASH_NUMB "
              "are dropped and counted. Open years are revised by MassDOT."),
    StateEntry(
        code="MN", name="Minnesota", fips="27", bbox=(-97.24, 43.50, -89.49, 49.39), utm_epsg=32615,
        timezone="America/Chicago",
        crash_source=CrashSource(
            kind="manual", portal="https://roadsafetyinfocenter.mn.gov/map/information/crashes",
            years=(2016, 2025),
            manual_instructions="Minnesota has no open bulk API (MNCrash and MnCMAT2 are restricted). Export the "
                                "crashes from the Road Safety Information Center map ('Export Data') or the MNCrash "
                                "ad-hoc search, and pass the CSV files with --crashes."),
        columns=ColumnMapping(
            crash_id=(), date=(("DateOfIncident", "Crash Date"),), date_format="auto",
            lat=("LatDec", "Latitude"), lon=("LongDec", "Longitude"), severity=("InjuryLevel",),
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
            years=(2016, 2024),
            manual_instructions="Download MDT's 'Montana Statewide Crash Data' file (a rolling five-year window) "
                                "and pass it with --crashes."),
        columns=ColumnMapping(
            crash_id=(), date=(("Crash_Year",), ("Crash_Month",)), date_format="year+month_name",
            lat=("Latitude", "LATITUDE", "Lat"), lon=("Longitude", "LONGITUDE", "Long", "Lon"),
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
            years=(2016, 2024)),
        columns=ColumnMapping(
            crash_id=("Accident_Rec_Num", "OBJECTID"), date=(("Crash_Date",),), date_format="epoch_ms",
            lat=("geometry",), lon=("geometry",), severity=("Crash_Severity",),
            severity_values={"FATAL CRASH": "fatal", "INJURY CRASH": "injury",
                             "PROPERTY DAMAGE ONLY": "property_damage"}),
        _splits=year_splits((2016, 2017), (2018, 2018), (2019, 2020)),
        osm_extract_url=_GEOFABRIK.format("nevada"),
        notes="Coordinates come from the point geometry requested in WGS84 (the hub CSV's X is longitude; "
              "ML4RoadSafety's x->lat rename swapped them)."),
]

STATES: Mapping[str, StateEntry] = MappingProxyType({entry.code: entry for entry in _ENTRIES})


def get_state(code: str) -> StateEntry:
    """The registry entry of a state code (case-insensitive); unknown codes list the choices."""
    key = str(code).upper()
    if key not in STATES:
        raise ValueError(f"unknown state {code!r}; expected one of {', '.join(STATES)}")
    return STATES[key]
