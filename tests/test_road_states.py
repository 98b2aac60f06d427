"""The eight states end to end on loopback portals: raw records in each portal's real shape -> crash_stage.

Fixtures (``road_portal_fixtures``) generate records with the column spellings and value formats of
the portals' documentation, bad rows included; the expected normalised rows and drop counts are
written out by hand. Every export format each portal offers (SODA JSON/GeoJSON/CSV and the full CSV
export; ArcGIS JSON/GeoJSON pages and the hub CSV; files exported by hand) is read from a loopback
server and must give the same rows. Also: Socrata and ArcGIS paging, retried faults, a schema that
lost a column, offline mode, reuse of a finished download, tampered page files, and the registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from road_portal_fixtures import (
    ARCGIS_LAYERS,
    CASES,
    DE,
    DE_COLUMNS,
    DE_DATASET,
    DE_ROWS,
    HUB_CRS,
    IA_FEATURES,
    IA_LAYER,
    MA,
    MANUAL,
    MD_COLUMNS,
    MD_DATASET,
    MD_ROWS,
    NV,
    NV_FEATURES,
    SOCRATA,
    export_csv,
    hub_csv,
    relabel,
)

from gnnbench.io import OfflineError, download, http, offline_mode
from gnnbench.road.build import crash_stage
from gnnbench.road.coverage import (
    coverage_markdown,
    coverage_rows,
    missing_years_message,
    unavailable_years,
    year_ranges,
)
from gnnbench.road.crashes import CRASH_COLUMNS, DROP_REASONS, CrashSchemaError
from gnnbench.road.demo.server import Fault, LoopbackPortal
from gnnbench.road.geo import utm_epsg
from gnnbench.road.sources import crash_portals
from gnnbench.road.sources.crash_portals import (
    COMPLETE,
    ManualDownloadRequired,
    crash_files,
    fetch_crashes,
    read_crash_files,
)
from gnnbench.road.states import CRASH_FORMATS, SEVERITIES, STATES, get_state


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv("GNNBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("SOCRATA_APP_TOKEN", raising=False)


@pytest.fixture(autouse=True)
def waits(monkeypatch) -> list[float]:
    """Retries never sleep here; the waits they asked for are recorded."""
    recorded: list[float] = []
    monkeypatch.setattr(http, "_sleep", recorded.append)
    return recorded


@pytest.fixture
def arcgis_calls(monkeypatch) -> list[dict]:
    """Spy on the ArcGIS pager the adapter calls (to check it asks for WGS84)."""
    calls: list[dict] = []
    real = crash_portals.arcgis_features

    def spy(url, **kwargs):
        calls.append({"url": url, **kwargs})
        return real(url, **kwargs)

    monkeypatch.setattr(crash_portals, "arcgis_features", spy)
    return calls


def rows_of(crashes) -> list[tuple]:
    return [tuple(value.item() if isinstance(value, np.generic) else value for value in row)
            for row in crashes.itertuples(index=False, name=None)]


def assert_rows(crashes, expected) -> None:
    """Rows equal, latitude/longitude to 1e-7 degrees (projected coordinates come back through pyproj)."""
    rows = rows_of(crashes)
    assert [row[:4] + row[6:] for row in rows] == [row[:4] + row[6:] for row in expected]
    np.testing.assert_allclose(np.array([row[4:6] for row in rows], dtype=float).reshape(-1, 2),
                               np.array([row[4:6] for row in expected], dtype=float).reshape(-1, 2), atol=1e-7)


def all_drops(**counts: int) -> dict[str, int]:
    return {reason: counts.get(reason, 0) for reason in DROP_REASONS}


def fetch(case, portal, raw, **overrides):
    return fetch_crashes(STATES[case.code], raw, base_url=portal.url, **{**case.fetch_kwargs, **overrides})


# ------------------------------------------------------------------------------------------ every state


@pytest.mark.parametrize("code", sorted(CASES))
def test_state_portal_to_crash_stage(code, tmp_path, arcgis_calls, waits):
    case, state = CASES[code], STATES[code]
    raw = tmp_path / "raw" / code
    files = []
    if case.serve is None:
        with pytest.raises(ManualDownloadRequired) as caught:
            fetch_crashes(state, raw)
        message = str(caught.value)
        assert message.startswith(f"{code}: ") and "--crashes" in message
        assert state.crash_source.manual_instructions in message and state.crash_source.portal in message
        assert not raw.exists()
    else:
        with LoopbackPortal() as portal:
            case.serve(portal)
            records = fetch(case, portal, raw)
            base = portal.url
        assert [record["path"] for record in records] == [path for path, _ in case.pages]
        for path, count in case.pages:
            if count >= 0:
                assert len(json.loads((raw / path).read_text())) == count, path
        assert all(record["url"].startswith(base) for record in records)
        assert json.loads((raw / COMPLETE).read_text()) == {"state": code, "format": "json", "files": records}
        files = crash_files(raw)
        assert [path.name for path in files] == [path for path, count in case.pages if count >= 0]
        if state.crash_source.kind == "arcgis":
            assert arcgis_calls and all(call["out_sr"] == 4326 for call in arcgis_calls)
    files += case.write_files(tmp_path / "downloads")

    crashes, quality = crash_stage(state, files, years=state.years)

    assert list(crashes.columns) == list(CRASH_COLUMNS)
    assert rows_of(crashes) == case.expected
    assert quality.dropped == all_drops(**case.dropped)
    assert quality.records_read == case.records_read
    assert quality.kept == len(case.expected)
    assert sum(quality.files.values()) == case.records_read
    assert set(crashes["severity"]) <= set(SEVERITIES)
    assert crashes["crash_id"].is_unique or not state.columns.day_resolution
    quality.check()
    assert not waits


# ------------------------------------------------------------------------------------------ every export format

EXPECTED_FORMATS = {  # what each portal offers, from its documentation (written out by hand)
    "DE": {"soda-json", "soda-geojson", "soda-csv", "export-csv"},
    "MD": {"soda-json", "soda-geojson", "soda-csv", "export-csv"},
    "IA": {"arcgis-json", "arcgis-geojson", "hub-csv", "manual-csv"},
    "IL": {"arcgis-json", "arcgis-geojson", "hub-csv"},
    "MA": {"arcgis-json", "arcgis-geojson", "hub-csv", "manual-csv"},
    "NV": {"arcgis-json", "arcgis-geojson", "hub-csv"},
    "MN": {"manual-csv"},
    "MT": {"manual-csv"},
}
FETCHED_CSV = {"DE", "MD", "IA", "IL"}  # states whose CSV download address is known (fetch_crashes(format="csv"))
FORMAT_CASES = sorted((code, name) for code, names in EXPECTED_FORMATS.items() for name in names)


def test_registry_lists_every_export_format():
    assert {code: set(entry.crash_source.formats) for code, entry in STATES.items()} == EXPECTED_FORMATS
    assert set().union(*EXPECTED_FORMATS.values()) == set(CRASH_FORMATS)
    assert {code for code, entry in STATES.items() if entry.crash_source.csv_urls()} == FETCHED_CSV
    assert STATES["DE"].crash_source.csv_urls() == {
        "all": "https://data.delaware.gov/api/views/827n-m6xc/rows.csv?accessType=DOWNLOAD"}
    assert sorted(STATES["IL"].crash_source.csv_urls()) == [str(year) for year in range(2016, 2025)]


def _hand_download(portal, path: str, dest: Path) -> Path:
    """What a user does in the browser: fetch the export from the portal and save it."""
    download(portal.url + path, dest, progress=False)
    return dest


def _layer_file(suffix: str):
    return lambda page: page.split("-b")[0] + suffix


@pytest.mark.parametrize("code,name", FORMAT_CASES)
def test_every_export_format_of_every_state(code, name, tmp_path):
    """The same records in each format the portal offers give the same crashes and the same drops."""
    state, case = STATES[code], CASES[code]
    raw, saved = tmp_path / "raw", tmp_path / "saved"
    fetch_as = CRASH_FORMATS[name][0]
    with LoopbackPortal() as portal:
        if case.serve is not None:
            case.serve(portal)
        for key, url in state.crash_source.csv_urls().items():  # the CSV downloads, at their real paths
            if code in SOCRATA:
                portal.add_file(urlsplit(url).path, export_csv(code), "text/csv")
            elif key in ARCGIS_LAYERS[code]:
                portal.add_file(urlsplit(url).path, hub_csv(ARCGIS_LAYERS[code][key], HUB_CRS.get(code)), "text/csv")
        if name == "manual-csv":
            write, expected, dropped = MANUAL[code]
            files = []
            for exported in write(tmp_path / "exported"):
                portal.add_file(f"/export/{exported.name}", exported.read_bytes(), "text/csv")
                files.append(_hand_download(portal, f"/export/{exported.name}", saved / exported.name))
        else:
            if name == "soda-csv":  # no fetch_crashes format: saved by hand from the API
                files = [_hand_download(portal, f"/resource/{SOCRATA[code][0]}.csv?$limit=50000", saved / "s.csv")]
                rename = lambda page: "s.csv"  # noqa: E731
            elif name == "hub-csv" and code not in FETCHED_CSV:  # no known download address: saved by hand
                with pytest.raises(ManualDownloadRequired, match=rf"^{code}: .*--crashes"):
                    fetch_crashes(state, raw, base_url=portal.url, format="csv")
                files = []
                for key, features in ARCGIS_LAYERS[code].items():
                    portal.add_file(f"/hub/{key}.csv", hub_csv(features, HUB_CRS.get(code)), "text/csv")
                    files.append(_hand_download(portal, f"/hub/{key}.csv", saved / f"{key}-hub.csv"))
                rename = _layer_file("-hub.csv")
            else:
                records = fetch_crashes(state, raw, base_url=portal.url, format=fetch_as, **case.fetch_kwargs)
                assert json.loads((raw / COMPLETE).read_text())["format"] == fetch_as
                assert all(record["url"].startswith(portal.url) for record in records)
                files = crash_files(raw)
                rename = {"json": lambda page: page, "geojson": lambda page: page.replace(".json", ".geojson"),
                          "csv": (lambda page: "all.csv") if code in SOCRATA else _layer_file(".csv")}[fetch_as]
            files += case.write_files(tmp_path / "by-hand")
            expected, dropped = relabel(case, rename), case.dropped

    crashes, quality = crash_stage(state, files, years=state.years)

    assert_rows(crashes, expected)
    assert quality.dropped == all_drops(**dropped)
    assert quality.records_read == len(expected) + sum(dropped.values())
    quality.check()


def test_massachusetts_hub_csv_takes_state_plane_xy_row_by_row(tmp_path):
    """LAT/LON where a row has them, else X/Y in EPSG:26986 (pyproj forward transform of the known points)."""
    files = []
    for key, features in ARCGIS_LAYERS["MA"].items():
        files.append(tmp_path / f"{key}-hub.csv")
        files[-1].write_text(hub_csv(features, "EPSG:26986"))
    header = files[0].read_text().splitlines()[0].split(",")
    assert header[:2] == ["X", "Y"] and {"LAT", "LON"} <= set(header)  # 2015: attributes too
    assert "LAT" not in files[1].read_text().splitlines()[0].split(",")  # 2018: X/Y only
    crashes, quality = crash_stage(STATES["MA"], files + MA.write_files(tmp_path), years=STATES["MA"].years)
    # 2015: rows 0, 1 and 4 (Albany) by LAT/LON, row 2 (LAT/LON empty) by X/Y; 2018: all four rows by X/Y;
    # the vehicle-level CSV: three rows by LAT/LON (the fourth has none)
    assert quality.coordinate_sources == {"LAT/LON": 6, "Y/X (EPSG:26986)": 5}
    fatal = crashes.loc[crashes["crash_id"] == "4012347"]
    assert fatal[["lat", "lon"]].to_numpy().ravel().tolist() == pytest.approx([42.1015, -72.5898], abs=1e-7)


def test_nevada_hub_csv_layout_builds(tmp_path):
    """The reported failure: `build road --state NV --crashes FILE` with the hub CSV (X = longitude, Y = latitude)."""
    path = tmp_path / "CrashData_OpenData.csv"
    path.write_text(hub_csv(NV_FEATURES))
    assert path.read_text().splitlines()[1].startswith("-115.106709,36.236043,1,2224407.0,2016/01/04 10:27:00+00,")
    crashes, quality = crash_stage(STATES["NV"], [path], years=STATES["NV"].years)
    assert_rows(crashes, relabel(NV, lambda page: path.name))
    assert quality.dropped == all_drops(**NV.dropped)
    assert quality.coordinate_sources == {"Y/X": 8}  # row 9 has an empty point


def test_arcgis_response_saved_without_out_sr_is_reprojected(tmp_path):
    """A query response saved by hand in the layer's own spatial reference (here Web Mercator, wkid 102100)."""
    from pyproj import Transformer

    forward = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    features = []
    for item in NV_FEATURES[:3]:
        x, y = forward.transform(item["geometry"]["x"], item["geometry"]["y"])
        features.append({"attributes": item["attributes"], "geometry": {"x": x, "y": y}})
    path = tmp_path / "query.json"
    path.write_text(json.dumps({"spatialReference": {"wkid": 102100, "latestWkid": 3857}, "features": features}))
    crashes, _ = crash_stage(STATES["NV"], [path], years=STATES["NV"].years)
    assert_rows(crashes, [(*row[:7], "query.json", row[8]) for row in NV.expected[:3]])


def test_de_full_export_has_a_bom_and_published_formats():
    text = export_csv("DE")
    assert text.startswith("\ufeffCRASH DATETIME,") and "2012 Apr 29 05:32:00 PM" in text and '"2,012"' in text


def test_a_finished_download_of_another_format_is_not_mixed(tmp_path):
    with LoopbackPortal() as portal:
        DE.serve(portal)
        fetch(DE, portal, tmp_path)
        with pytest.raises(ValueError, match=r"holds a finished json download of DE.*delete that directory"):
            fetch_crashes(STATES["DE"], tmp_path, base_url=portal.url, format="csv")
        with pytest.raises(ValueError, match="format must be one of 'json', 'geojson', 'csv'; got 'xml'"):
            fetch_crashes(STATES["DE"], tmp_path, base_url=portal.url, format="xml")


def test_socrata_pages_are_renamed_to_display_names(tmp_path):
    with LoopbackPortal() as portal:
        DE.serve(portal)
        fetch(DE, portal, tmp_path)
        offsets = [parse_qs(urlsplit(path).query) for method, path in portal.requests if "/resource/" in path]
    assert [(query["$offset"], query["$limit"], query["$order"]) for query in offsets] == [
        (["0"], ["4"], [":id"]), (["4"], ["4"], [":id"]), (["8"], ["4"], [":id"]), (["12"], ["4"], [":id"])]
    assert json.loads((tmp_path / "columns.json").read_text()) == DE_COLUMNS
    (_, first), *_, (_, last) = read_crash_files(crash_files(tmp_path))
    assert {"CRASH DATETIME", "CRASH CLASSIFICATION DESCRIPTION", "LATITUDE", "LONGITUDE"} <= set(first.columns)
    assert "crash_datetime" not in first.columns
    # the last page's only row has no datetime (Socrata omits nulls): the column is there, empty
    assert last["CRASH DATETIME"].isna().all() and len(last) == 1


def test_socrata_exact_multiple_of_page_size(tmp_path):
    rows = DE_ROWS[:8]
    with LoopbackPortal() as portal:
        portal.add_socrata(DE_DATASET, rows, DE_COLUMNS)
        records = fetch_crashes(STATES["DE"], tmp_path, base_url=portal.url, page_size=4)
        resource_requests = [path for _, path in portal.requests if "/resource/" in path]
    assert [record["path"] for record in records] == ["columns.json", f"{DE_DATASET}-p00000.json",
                                                      f"{DE_DATASET}-p00001.json"]
    assert len(resource_requests) == 3  # the third (empty) page ends the paging and writes no file


def test_arcgis_batches_capped_by_max_record_count(tmp_path):
    with LoopbackPortal() as portal:
        portal.add_arcgis_layer(IA_LAYER, IA_FEATURES, max_record_count=3)
        records = fetch_crashes(STATES["IA"], tmp_path, base_url=portal.url, page_size=100)
        posts = [path for method, path in portal.requests if method == "POST"]
    assert [record["path"] for record in records] == ["all-b00000.json", "all-b00001.json", "all-b00002.json"]
    assert len(posts) == 3
    oids = [feature["attributes"]["OBJECTID"] for path in crash_files(tmp_path)
            for feature in json.loads(path.read_text())]
    assert oids == list(range(1, 10))


# ------------------------------------------------------------------------------------------ faults


def test_socrata_500_then_429_retry_after_are_retried(tmp_path, waits):
    with LoopbackPortal() as portal:
        DE.serve(portal)
        portal.inject(f"/resource/{DE_DATASET}.json", Fault("status", 500), Fault("status", 429, retry_after=7))
        fetch(DE, portal, tmp_path)
        statuses = [path for _, path in portal.requests if "/resource/" in path]
    assert len(statuses) == 6  # two failed tries, then the four pages
    assert len(waits) == 2 and waits[1] == 7.0 and 0 < waits[0] <= 1.0
    crashes, quality = crash_stage(STATES["DE"], crash_files(tmp_path), years=STATES["DE"].years)
    assert rows_of(crashes) == DE.expected


def test_arcgis_faults_are_retried(tmp_path, waits):
    with LoopbackPortal() as portal:
        portal.add_arcgis_layer(IA_LAYER, IA_FEATURES, max_record_count=4)
        portal.inject(f"{IA_LAYER}/query", Fault("status", 503), Fault("status", 429, retry_after=0.5))
        fetch_crashes(STATES["IA"], tmp_path, base_url=portal.url)
    assert len(waits) == 2 and waits[1] == 0.5
    crashes, _ = crash_stage(STATES["IA"], crash_files(tmp_path), years=STATES["IA"].years)
    assert rows_of(crashes) == CASES["IA"].expected


def test_persistent_failure_leaves_no_complete_json(tmp_path):
    with LoopbackPortal() as portal:
        DE.serve(portal)
        portal.inject(f"/resource/{DE_DATASET}.json", *[Fault("status", 503)] * 6)
        with pytest.raises(Exception, match="503"):
            fetch(DE, portal, tmp_path)
    assert not (tmp_path / COMPLETE).exists()
    with pytest.raises(FileNotFoundError, match="complete.json is missing"):
        crash_files(tmp_path)


# ------------------------------------------------------------------------------------------ schema drift


def test_socrata_schema_lost_a_column(tmp_path):
    with LoopbackPortal() as portal:
        portal.add_socrata(DE_DATASET, DE_ROWS, DE_COLUMNS, drop_columns=["latitude", "the_geom"])
        fetch(DE, portal, tmp_path)
    with pytest.raises(CrashSchemaError) as caught:
        crash_stage(STATES["DE"], crash_files(tmp_path))
    message = str(caught.value)
    assert f"{DE_DATASET}-p00000.json" in message and "'latitude'" in message
    # what it looked for (every place coordinates can come from), and what the file has
    assert "looked for LATITUDE, latitude, LONGITUDE, longitude, the_geom, geometry)" in message
    assert "the file has: " in message and "LONGITUDE" in message


def test_socrata_lost_latitude_falls_back_to_the_point_column(tmp_path):
    """Without LATITUDE, positions come from the_geom (a GeoJSON point in SODA JSON), row by row, counted."""
    with LoopbackPortal() as portal:
        portal.add_socrata(DE_DATASET, DE_ROWS, DE_COLUMNS, drop_columns=["latitude"])
        fetch(DE, portal, tmp_path)
    crashes, quality = crash_stage(STATES["DE"], crash_files(tmp_path), years=STATES["DE"].years)
    assert_rows(crashes, DE.expected)
    assert quality.dropped == all_drops(**DE.dropped)
    assert quality.coordinate_sources == {"the_geom": 12}  # 13 rows, one without a point


def test_socrata_lost_crash_id_column(tmp_path):
    with LoopbackPortal() as portal:
        portal.add_socrata(MD_DATASET, MD_ROWS, MD_COLUMNS, drop_columns=["report_no"])
        fetch_crashes(STATES["MD"], tmp_path, base_url=portal.url)
    with pytest.raises(CrashSchemaError, match=rf"{MD_DATASET}-p00000\.json: no column for crash field 'crash id' "
                                               r"\(looked for REPORT_NO, report_no\)"):
        crash_stage(STATES["MD"], crash_files(tmp_path))


def test_arcgis_layer_lost_a_column(tmp_path):
    stripped = [{**item, "attributes": {k: v for k, v in item["attributes"].items() if k != "CSEV"}}
                for item in IA_FEATURES]
    with LoopbackPortal() as portal:
        portal.add_arcgis_layer(IA_LAYER, stripped, max_record_count=4)
        fetch_crashes(STATES["IA"], tmp_path, base_url=portal.url)
    with pytest.raises(CrashSchemaError, match=r"all-b00000\.json: no column for crash field 'severity' "
                                               r"\(looked for CSEV\)"):
        crash_stage(STATES["IA"], crash_files(tmp_path))


def test_manual_csv_lost_a_column(tmp_path):
    path = tmp_path / "mt.csv"
    path.write_text("Crash_Year,Day_of_Week,Latitude,Longitude\n2016,Friday,46.5,-112.0\n")
    with pytest.raises(CrashSchemaError, match=r"mt\.csv: no column for crash field 'month'"):
        crash_stage(STATES["MT"], [path])


# ------------------------------------------------------------------------------------------ offline, reuse


@pytest.mark.parametrize("code", ["DE", "IA", "IL"])
def test_offline_mode_refuses_before_any_request(code, tmp_path):
    case = CASES[code]
    with LoopbackPortal() as portal:
        case.serve(portal)
        with offline_mode(), pytest.raises(OfflineError) as caught:
            fetch(case, portal, tmp_path / "raw")
        assert portal.requests == []
    assert STATES[code].crash_source.portal in str(caught.value) and COMPLETE in str(caught.value)
    assert not (tmp_path / "raw").exists()


def test_finished_download_is_reused_without_requests(tmp_path):
    with LoopbackPortal() as portal:
        DE.serve(portal)
        first = fetch(DE, portal, tmp_path)
        count = len(portal.requests)
        second = fetch(DE, portal, tmp_path)
        with offline_mode():
            third = fetch_crashes(STATES["DE"], tmp_path)
        assert len(portal.requests) == count
    assert first == second == third


def test_modified_page_file_fails_its_checksum(tmp_path):
    with LoopbackPortal() as portal:
        DE.serve(portal)
        fetch(DE, portal, tmp_path)
    page = tmp_path / f"{DE_DATASET}-p00001.json"
    rows = json.loads(page.read_text())
    rows[0]["latitude"] = "39.0"
    page.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=rf"{DE_DATASET}-p00001\.json does not match the sha256 recorded in "
                                         rf".*{COMPLETE}; delete both and download again"):
        crash_files(tmp_path)
    page.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{DE_DATASET}-p00001\.json is listed in .*{COMPLETE} but missing"):
        crash_files(tmp_path)


# ------------------------------------------------------------------------------------------ registry

ML4RS_SPLITS = {
    "DE": ((2009, 2012), (2013, 2017), (2018, 2022)),
    "IA": ((2013, 2016), (2017, 2019), (2020, 2022)),
    "IL": ((2012, 2014), (2015, 2017), (2018, 2021)),
    "MA": ((2002, 2008), (2009, 2015), (2016, 2022)),
    "MD": ((2015, 2017), (2018, 2019), (2020, 2022)),
    "MN": ((2015, 2017), (2018, 2019), (2020, 2022)),
    "MT": ((2016, 2017), (2018, 2018), (2019, 2020)),
    "NV": ((2016, 2017), (2018, 2018), (2019, 2020)),
}
CITIES = {  # (lat, lon)
    "DE": ("Wilmington", 39.7391, -75.5398), "IA": ("Des Moines", 41.5868, -93.6250),
    "IL": ("Chicago", 41.8781, -87.6298), "MA": ("Boston", 42.3601, -71.0589),
    "MD": ("Baltimore", 39.2904, -76.6122), "MN": ("Minneapolis", 44.9778, -93.2650),
    "MT": ("Helena", 46.5891, -112.0391), "NV": ("Las Vegas", 36.1699, -115.1398),
}


def test_registry_has_exactly_the_eight_states():
    assert sorted(STATES) == ["DE", "IA", "IL", "MA", "MD", "MN", "MT", "NV"]
    assert all(entry.code == code for code, entry in STATES.items())
    assert get_state("nv") is STATES["NV"]
    with pytest.raises(ValueError, match="unknown state 'XX'; expected one of DE, IA"):
        get_state("XX")


@pytest.mark.parametrize("code", sorted(ML4RS_SPLITS))
def test_splits_are_ml4roadsafety_splits(code):
    spans = ML4RS_SPLITS[code]
    expected = {name: list(range(first, last + 1)) for name, (first, last) in zip(("train", "valid", "test"), spans)}
    splits = STATES[code].splits
    assert type(splits) is dict and all(type(years) is list for years in splits.values())
    assert splits == expected and list(splits) == ["train", "valid", "test"]
    assert STATES[code].years == list(range(spans[0][0], spans[2][1] + 1))
    splits["train"].append(1900)  # a copy: the registry stays unchanged
    assert STATES[code].splits == expected


@pytest.mark.parametrize("code", sorted(CITIES))
def test_bbox_and_utm_zone(code):
    entry = STATES[code]
    lon_min, lat_min, lon_max, lat_max = entry.bbox
    assert -180 < lon_min < lon_max < 0 and 0 < lat_min < lat_max < 90
    _, lat, lon = CITIES[code]
    assert lon_min <= lon <= lon_max and lat_min <= lat <= lat_max
    # Every state's centre lies in the zone the registry names (no adjacent-zone exceptions needed).
    assert entry.utm_epsg == utm_epsg((lon_min + lon_max) / 2, (lat_min + lat_max) / 2)


@pytest.mark.parametrize("code", sorted(STATES))
def test_sources_have_endpoints(code):
    entry = STATES[code]
    source = entry.crash_source
    assert source.kind in ("socrata", "arcgis", "manual")
    assert source.portal.startswith("https://")
    assert source.years[0] <= source.years[1]
    if source.kind == "socrata":
        assert source.base_url.startswith("https://") and source.base_url.count("/") == 2
        assert len(source.dataset_id) == 9 and source.dataset_id[4] == "-"
    elif source.kind == "arcgis":
        assert source.layers
        for key, url in source.layers.items():
            assert key == "all" or source.years[0] <= int(key) <= source.years[1]
            assert url.startswith("https://") and ("/FeatureServer/" in url or "/MapServer/" in url)
    else:
        assert not source.layers and source.base_url is None
        assert "--crashes" in source.manual_instructions
    assert set(entry.columns.severity_values.values()) <= set(SEVERITIES)
    assert all(key == key.strip().upper() for key in entry.columns.severity_values)


# ------------------------------------------------------------------------------------------ years and verification

FETCHABLE = {  # the years each portal serves to `gnnbench download road` (research notes), written out by hand
    "DE": list(range(2009, 2026)), "IA": list(range(2015, 2025)), "IL": list(range(2016, 2025)),
    "MD": list(range(2015, 2026)), "MA": [*range(2013, 2020), *range(2021, 2025)], "MN": [], "MT": [],
    "NV": list(range(2016, 2025)),
}
NOT_FETCHABLE = {  # of the ML4RoadSafety years (ML4RS_SPLITS above)
    "DE": [], "MD": [], "NV": [], "IA": [2013, 2014], "IL": [2012, 2013, 2014, 2015],
    "MA": [*range(2002, 2013), 2020], "MN": list(range(2015, 2023)), "MT": list(range(2016, 2021)),
}


@pytest.mark.parametrize("code", sorted(STATES))
def test_years_the_portal_cannot_supply(code):
    entry = STATES[code]
    assert entry.crash_source.fetchable_years == FETCHABLE[code]
    assert unavailable_years(entry, entry.years) == NOT_FETCHABLE[code]
    message = missing_years_message(entry, entry.years)
    if not NOT_FETCHABLE[code]:
        assert message is None
        return
    assert message.startswith(f"{code}: the crash portal ")
    assert f"--state {code} --crashes FILE" in message and f"import ml4roadsafety --state {code}" in message
    assert entry.crash_source.manual_instructions in message


def test_years_message_names_the_missing_ranges():
    message = missing_years_message(STATES["MA"], range(2002, 2023))
    assert "cannot supply 2002-2012, 2020 of the requested 2002-2022 (it serves 2013-2019, 2021-2024)" in message
    assert missing_years_message(STATES["MA"], [2015, 2016]) is None
    assert "none of the requested years (2016-2017) can be fetched" in missing_years_message(STATES["MT"], [2017, 2016])
    assert year_ranges([2020, 2002, 2003, 2004, 2004]) == "2002-2004, 2020" and year_ranges([]) == "none"


def test_every_state_says_what_was_verified_and_how():
    rows = {row["state"]: row for row in coverage_rows()}
    assert list(rows) == list(STATES)
    for code, row in rows.items():
        assert row["built from the live portal"] == "not yet"
        verified = row["verified"]
        # only Delaware's export was compared with a real file; every other state says it is unverified
        assert ("[unverified]" in verified) and (code == "DE") == verified.startswith("full CSV export")
    assert rows["MA"]["years by hand"] == "2002-2012, 2020" and rows["MA"]["formats by hand"] == "hub-csv, manual-csv"
    assert rows["NV"]["formats fetched"] == "arcgis-json, arcgis-geojson"


@pytest.mark.parametrize("document", ["README.md", "data_cards/road_accidents.md"])
def test_documents_show_the_registry_table(document):
    text = (Path(__file__).parent.parent / document).read_text(encoding="utf-8")
    assert coverage_markdown() in text
