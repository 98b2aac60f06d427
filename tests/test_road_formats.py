"""Every export format each state's portal offers, read from a loopback server: the same crashes, the same drops.

SODA JSON/GeoJSON/CSV and the full CSV export (DE, MD); ArcGIS JSON/GeoJSON pages and the hub CSV
(IA, IL, MA, NV); files exported by hand (IA ICAT, MA IMPACT, MN RSIC and MNCrash, MT). Formats
gnnbench fetches go through ``fetch_crashes(format=...)``; the others are downloaded from the loopback
server as a browser would. Positions come row by row from latitude/longitude, the API geometry or
projected X/Y (Massachusetts state plane, Iowa Web Mercator), computed here with pyproj directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from road_portal_exports import ARCGIS_LAYERS, HUB_CRS, MANUAL, SOCRATA, export_csv, hub_csv, relabel
from road_portal_fixtures import CASES, DE, MA, NV, NV_FEATURES, all_drops, assert_rows

from gnnbench.io import download, http
from gnnbench.road.build import crash_stage
from gnnbench.road.demo.server import LoopbackPortal
from gnnbench.road.sources.crash_portals import COMPLETE, ManualDownloadRequired, crash_files, fetch_crashes
from gnnbench.road.states import CRASH_FORMATS, STATES


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv("GNNBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("SOCRATA_APP_TOKEN", raising=False)
    monkeypatch.setattr(http, "_sleep", lambda seconds: None)


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
        fetch_crashes(STATES["DE"], tmp_path, base_url=portal.url, **DE.fetch_kwargs)
        with pytest.raises(ValueError, match=r"holds a finished json download of DE.*delete that directory"):
            fetch_crashes(STATES["DE"], tmp_path, base_url=portal.url, format="csv")
        with pytest.raises(ValueError, match="format must be one of 'json', 'geojson', 'csv'; got 'xml'"):
            fetch_crashes(STATES["DE"], tmp_path, base_url=portal.url, format="xml")


def test_build_road_nevada_from_the_hub_csv(tmp_path):
    """The reported command, end to end: `gnnbench build road --state NV --crashes FILE` with the hub CSV."""
    from gnnbench.cli import main
    from gnnbench.road.manifest import read_manifest
    from gnnbench.road.tables import read_table

    crashes = tmp_path / "CrashData_OpenData.csv"
    crashes.write_text(hub_csv(NV_FEATURES))
    road = tmp_path / "road.osm"  # one primary road through the first (Las Vegas) crash; the others are far off
    nodes = "".join(f'<node id="{i}" lat="36.236043" lon="{lon:.6f}" version="1"/>'
                    for i, lon in enumerate((-115.108709, -115.106709, -115.104709), start=1))
    road.write_text(f'<?xml version="1.0" encoding="UTF-8"?><osm version="0.6">{nodes}<way id="10" version="1">'
                    '<nd ref="1"/><nd ref="2"/><nd ref="3"/><tag k="highway" v="primary"/></way></osm>')
    assert main(["build", "road", "--state", "NV", "--crashes", str(crashes), "--osm", str(road),
                 "--root", str(tmp_path / "data")]) == 0
    tables = tmp_path / "data" / "tables" / "NV"
    quality = read_manifest(tables)["quality"]["crashes"]
    assert quality["records_read"] == 9 and quality["kept"] == 1
    assert quality["dropped"] == all_drops(**NV.dropped, unmatched=3)  # Reno, Carson City, Henderson: no road
    assert quality["coordinate_sources"] == {"Y/X": 8}
    accidents = read_table("accidents", tables).to_pylist()
    assert [(row["year"], row["month"], row["count"], row["property_damage"]) for row in accidents] == [
        (2016, 1, 1, 1)]
