"""The demo region end to end: loopback download (with faults), offline build, accounting, reproducibility."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gnnbench.io import OfflineError, offline_mode
from gnnbench.road.build import BuildParameters, RegionPaths
from gnnbench.road.crashes import CrashSchemaError
from gnnbench.road.demo.fixtures import DemoFixtures
from gnnbench.road.demo.region import DEMO_DATASET_ID, DEMO_REGION
from gnnbench.road.demo.server import Fault, LoopbackPortal
from gnnbench.road.manifest import read_manifest
from gnnbench.road.pipeline import build_demo, build_region_from_raw, download_region
from gnnbench.road.tables import TABLES, read_table


@pytest.fixture(scope="module")
def fixtures():
    return DemoFixtures.generate(seed=0)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("road")
    build_demo(home=home)
    return home


def test_every_crash_record_is_accounted_for(demo_home, fixtures):
    manifest = read_manifest(RegionPaths.for_region("DEMO", demo_home).tables)
    crashes = manifest["quality"]["crashes"]
    expected = fixtures.crashes.expected_quality
    assert crashes["records_read"] == len(fixtures.crashes.rows)
    assert crashes["records_read"] == crashes["kept"] + sum(crashes["dropped"].values())
    for reason, count in expected.items():
        if reason != "good":
            assert crashes["dropped"][reason] == count, reason
    assert crashes["kept"] == expected["good"]
    assert manifest["quality"]["matching"]["matched"] == expected["good"]
    accidents = read_table("accidents", RegionPaths.for_region("DEMO", demo_home).tables)
    assert sum(accidents["count"].to_pylist()) == expected["good"]
    counts = accidents.to_pandas()
    assert (counts[["fatal", "injury", "property_damage"]].sum(axis=1) <= counts["count"]).all()
    for reason, rows in crashes["examples"].items():
        assert rows and all(":" in row for row in rows)


def test_manifest_records_sources_parameters_and_tables(demo_home):
    manifest = read_manifest(RegionPaths.for_region("DEMO", demo_home).tables)
    assert manifest["kind"] == "build" and manifest["state"] == "DEMO"
    assert set(manifest["files"]) == set(TABLES)
    assert manifest["files"]["node_weather"]["rows"] == 96 * 48
    assert manifest["files"]["edge_volume"]["rows"] == len(_edges_near_arterials(demo_home)) * 4  # 4 years
    assert manifest["parameters"]["max_distance_m"] == 50.0
    assert manifest["parameters"]["splits"] == DEMO_REGION.splits
    roles = {source["role"] for source in manifest["sources"]}
    assert {"crashes", "osm", "weather", "volume"} <= roles
    crash_pages = [source for source in manifest["sources"] if source["path"].endswith("-p00000.json")]
    assert crash_pages and crash_pages[0]["url"].endswith(f"/resource/{DEMO_DATASET_ID}.json")
    assert all(len(source["sha256"]) == 64 for source in manifest["sources"])
    volume = manifest["quality"]["edge_volume"]["2018"]
    assert volume["download"]["skipped_without_aadt_or_geometry"] == 0 and volume["download"]["sections"] == 7
    weather = manifest["quality"]["node_weather"]
    assert sum(weather["filled"]["tavg"].values()) == 96 * 48  # every node-month observed or filled


def _edges_near_arterials(demo_home) -> set[int]:
    """Edges whose midpoint lies within 30 m of an arterial way of the generated network (the HPMS sections
    follow those ways), computed here with pyproj and shapely directly."""
    import shapely
    from pyproj import Transformer

    network = DemoFixtures.generate(seed=0).network
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{DEMO_REGION.utm_epsg}", always_xy=True)
    position = {node: i for i, node in enumerate(network.node_ids.tolist())}
    arterials = [shapely.LineString([to_utm.transform(network.lon[position[ref]], network.lat[position[ref]])
                                     for ref in refs])
                 for _, refs, tags in network.ways if tags["highway"] in ("trunk", "primary", "secondary", "tertiary")]
    arterial = shapely.union_all(arterials)
    edges = read_table("edges", RegionPaths.for_region("DEMO", demo_home).tables).to_pylist()
    near = set()
    for edge in edges:
        line = shapely.from_wkb(edge["geometry"])
        projected = shapely.LineString([to_utm.transform(x, y) for x, y in line.coords])
        if projected.interpolate(0.5, normalized=True).distance(arterial) <= 30.0:
            near.add(edge["edge_id"])
    return near


def test_volume_goes_to_the_edges_along_the_hpms_sections(demo_home):
    volume = read_table("edge_volume", RegionPaths.for_region("DEMO", demo_home).tables).to_pandas()
    near = _edges_near_arterials(demo_home)
    assert len(near) > 80  # the 7 arterial ways carry 86 directed edges, plus crossings within 30 m
    for year, rows in volume.groupby("year"):
        assert set(rows["edge_id"]) == near, year
        assert (rows["match_distance_m"] <= 30.0).all()


def test_rebuilding_from_the_same_raw_files_gives_identical_tables(demo_home, tmp_path):
    paths = RegionPaths.for_region("DEMO", demo_home)
    first = {name: (paths.tables / f"{name}.parquet").read_bytes() for name in TABLES}
    copy = RegionPaths(raw=paths.raw, tables=tmp_path / "again")
    with offline_mode():
        build_region_from_raw(DEMO_REGION, copy)
    for name in TABLES:
        assert (copy.tables / f"{name}.parquet").read_bytes() == first[name], name


def test_an_osm_xml_extract_gives_the_same_network_as_overpass(demo_home, fixtures, tmp_path):
    extract = tmp_path / "demo.osm"
    extract.write_text(fixtures.network.osm_xml())
    paths = RegionPaths.for_region("DEMO", demo_home)
    out = RegionPaths(raw=paths.raw, tables=tmp_path / "from-xml")
    with offline_mode():
        build_region_from_raw(DEMO_REGION, out, osm_file=extract)
    for name in ("nodes", "edges", "accidents"):
        assert (out.tables / f"{name}.parquet").read_bytes() == (paths.tables / f"{name}.parquet").read_bytes()


def test_build_parameters_change_the_output(demo_home, fixtures, tmp_path):
    import shapely
    from pyproj import Transformer

    paths = RegionPaths.for_region("DEMO", demo_home)
    out = RegionPaths(raw=paths.raw, tables=tmp_path / "tight")
    with offline_mode():
        build_region_from_raw(DEMO_REGION, out, parameters=BuildParameters(max_distance_m=5.0, years=(2019,)))
    crashes = read_manifest(out.tables)["quality"]["crashes"]

    # The expected drops, from the generated rows: rows with a plausible place and date are kept until the
    # year filter; of those in 2019 (repeats removed), the ones farther than 5 m from every road are unmatched.
    lon_min, lat_min, lon_max, lat_max = DEMO_REGION.bbox

    def plausible(row) -> bool:
        try:
            lat, lon = float(row["latitude"]), float(row["longitude"])
        except (KeyError, ValueError):
            return False
        return lat_min <= lat <= lat_max and lon_min <= lon <= lon_max and row["crash_datetime"][:4].isdigit()

    kept = [row for row in fixtures.crashes.rows if plausible(row)]
    in_2019 = {(row["crash_datetime"], row["latitude"], row["longitude"]) for row in kept
               if row["crash_datetime"].startswith("2019-")}
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{DEMO_REGION.utm_epsg}", always_xy=True)
    roads = shapely.union_all([shapely.LineString([to_utm.transform(x, y) for x, y in
                                                   shapely.from_wkb(edge["geometry"]).coords])
                               for edge in read_table("edges", out.tables).to_pylist()])
    far = sum(shapely.Point(to_utm.transform(float(lon), float(lat))).distance(roads) > 5.0
              for _, lat, lon in in_2019)
    assert crashes["dropped"]["outside_years"] == sum(not row["crash_datetime"].startswith("2019-") for row in kept)
    assert crashes["dropped"]["unmatched"] == far and far > 20
    assert crashes["kept"] == len(in_2019) - far
    assert set(read_table("accidents", out.tables)["year"].to_pylist()) == {2019}


def _serve_and_download(fixtures, home: Path, *, faults=(), drop_columns=(), parts=("crashes",)):
    paths = RegionPaths.for_region("DEMO", home)
    with LoopbackPortal() as portal:
        endpoints = fixtures.serve(portal, home / "scratch", drop_columns=drop_columns)
        for path, fault in faults:
            portal.inject(path, fault)
        from gnnbench.io import loopback_allowed

        with loopback_allowed():
            download_region(DEMO_REGION, paths, endpoints=endpoints, parts=parts)
        return paths, list(portal.requests)


def test_downloads_survive_server_errors_rate_limits_and_truncated_pages(fixtures, tmp_path, monkeypatch):
    import gnnbench.io.http as http

    waits = []
    monkeypatch.setattr(http, "_sleep", waits.append)
    resource = f"/resource/{DEMO_DATASET_ID}.json"
    paths, requests = _serve_and_download(fixtures, tmp_path, faults=[
        (resource, Fault("status", 500)), (resource, Fault("status", 429, retry_after=2)),
        (resource, Fault("truncate"))])
    assert 2.0 in waits
    hits = [path for method, path in requests if path.startswith(resource)]
    assert len(hits) == 4  # three failures, then the single page
    pages = json.loads((paths.crashes / "complete.json").read_text())["files"]
    rows = json.loads((paths.crashes / pages[1]["path"]).read_text())
    assert len(rows) == len(fixtures.crashes.rows)


def test_a_portal_that_lost_a_column_fails_naming_it(fixtures, tmp_path):
    paths, _ = _serve_and_download(fixtures, tmp_path, drop_columns=("latitude",), parts=("crashes", "network"))
    with offline_mode(), pytest.raises(CrashSchemaError, match="latitude") as error:
        build_region_from_raw(DEMO_REGION, paths)
    assert "demo-c7sh-p00000.json" in str(error.value)


def test_offline_mode_names_the_missing_raw_file(tmp_path):
    paths = RegionPaths.for_region("DEMO", tmp_path)
    with offline_mode(), pytest.raises(OfflineError, match="crash records of DEMO are missing"):
        download_region(DEMO_REGION, paths, parts=("crashes",))
    with pytest.raises(FileNotFoundError, match="road network .* is missing"):
        build_region_from_raw(DEMO_REGION, paths)


def test_a_finished_download_is_not_fetched_again(fixtures, tmp_path):
    paths, first = _serve_and_download(fixtures, tmp_path, parts=("crashes",))
    _, second = _serve_and_download(fixtures, tmp_path, parts=("crashes",))
    assert first and not second


def test_a_corrupted_raw_page_is_detected(demo_home, tmp_path):
    paths = RegionPaths.for_region("DEMO", demo_home)
    raw = tmp_path / "raw"
    shutil.copytree(paths.raw, raw)
    page = next(raw.glob("crashes/*-p00000.json"))
    page.write_text(page.read_text().replace("Clear", "Clean", 1))
    with offline_mode(), pytest.raises(ValueError, match="does not match the sha256"):
        build_region_from_raw(DEMO_REGION, RegionPaths(raw=raw, tables=tmp_path / "t"))


def test_manual_crash_files_build_the_same_accidents(demo_home, fixtures, tmp_path):
    import csv

    columns = fixtures.crashes.columns
    export = tmp_path / "export.csv"
    with export.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns.values()))
        writer.writeheader()
        for row in fixtures.crashes.rows:
            writer.writerow({columns[key]: value for key, value in row.items()})
    paths = RegionPaths.for_region("DEMO", demo_home)
    out = RegionPaths(raw=paths.raw, tables=tmp_path / "manual")
    with offline_mode():
        build_region_from_raw(DEMO_REGION, out, crashes=[export])
    assert (out.tables / "accidents.parquet").read_bytes() == (paths.tables / "accidents.parquet").read_bytes()


def test_weather_needs_the_network_first(tmp_path):
    paths = RegionPaths.for_region("DEMO", tmp_path)
    with pytest.raises(FileNotFoundError, match="download the network first"):
        download_region(DEMO_REGION, paths, parts=("weather",))


def test_state_dot_counts_replace_a_years_hpms_volume(demo_home, tmp_path):
    import json as _json

    network = read_table("edges", RegionPaths.for_region("DEMO", demo_home).tables).to_pylist()
    import shapely

    first = shapely.from_wkb(network[0]["geometry"])
    counts = tmp_path / "dot-2019.geojson"
    counts.write_text(_json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": _json.loads(shapely.to_geojson(first)), "properties": {"AADT": 1234}}]}))
    paths = RegionPaths(raw=RegionPaths.for_region("DEMO", demo_home).raw, tables=tmp_path / "dot")
    with offline_mode():
        build_region_from_raw(DEMO_REGION, paths, volume_files={2019: counts})
    volume = read_table("edge_volume", paths.tables).to_pandas()
    in_2019 = volume[volume.year == 2019]
    assert set(in_2019.source) == {"dot-2019.geojson 2019"} and 1234.0 in set(in_2019.aadt)
    assert set(volume[volume.year == 2018].source) == {"HPMS 2018"}
    with pytest.raises(ValueError, match="YEAR=GEOJSON"):
        from gnnbench.cli import _aadt_files
        _aadt_files(["2019:x.geojson"])


def test_download_lists_the_years_the_portal_cannot_supply(tmp_path):
    """Massachusetts serves 2013-2019 and 2021-2024: of 2011, 2012, 2015, 2018 and 2020 only two are fetched."""
    from road_portal_fixtures import MA

    from gnnbench.road.endpoints import Endpoints
    from gnnbench.road.states import STATES

    paths = RegionPaths.for_region("MA", tmp_path)
    with LoopbackPortal() as portal:
        MA.serve(portal)
        report = download_region(STATES["MA"], paths, endpoints=Endpoints(crash_portal=portal.url),
                                 years=[2011, 2012, 2015, 2018, 2020], parts=("crashes",))
    assert report["crashes"] == {"files": 2, "unavailable_years": [2011, 2012, 2020]}
    listing = json.loads((paths.crashes / "complete.json").read_text())
    assert [record["path"] for record in listing["files"]] == ["2015-b00000.json", "2018-b00000.json"]
    manual = download_region(STATES["MT"], RegionPaths.for_region("MT", tmp_path), parts=("crashes",))
    assert manual["crashes"]["unavailable_years"] == [2016, 2017, 2018, 2019, 2020]


def test_download_road_says_which_years_it_cannot_fetch_before_it_starts(tmp_path, capsys, monkeypatch):
    from gnnbench.cli import main

    monkeypatch.setenv("GNNBENCH_OFFLINE", "1")  # the download itself fails: the message must come first
    root = str(tmp_path / "road")
    assert main(["download", "road", "--state", "MA", "--only", "crashes", "--years", "2011", "2015",
                 "--root", root]) == 2
    first, second = capsys.readouterr().err.splitlines()
    assert first.startswith("gnnbench: MA: the crash portal cannot supply 2011 of the requested 2011, 2015 (it "
                            "serves 2013-2019, 2021-2024). 2002-2012 and 2020: download the yearly crash-level CSV")
    assert "`gnnbench import ml4roadsafety --state MA`" in first
    assert second.startswith("gnnbench: error: offline mode: the crash records of MA are missing")

    assert main(["download", "road", "--state", "MA", "--only", "crashes", "--years", "2015", "--root", root]) == 2
    assert not capsys.readouterr().err.startswith("gnnbench: MA: the crash portal")  # nothing missing

    assert main(["download", "road", "--state", "MN", "--only", "crashes", "--root", root]) == 0
    captured = capsys.readouterr()
    assert "MN: the crash portal has no scriptable download, so none of the requested years (2015-2022)" in captured.err
    report = json.loads(captured.out)
    assert report["crashes"]["unavailable_years"] == list(range(2015, 2023)) and "manual" in report["crashes"]
