"""HPMS traffic-volume adapter: layer URL, ArcGIS fetch (field case, missing field), matching sections to edges."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pytest

shapely = pytest.importorskip("shapely")
pytest.importorskip("pyproj")
pytest.importorskip("pytest_httpserver")
from werkzeug import Response  # noqa: E402

from gnnbench.io import DownloadError, RetryPolicy  # noqa: E402
from gnnbench.road.sources.traffic_volume import (  # noqa: E402
    HpmsSection,
    VolumeSourceError,
    fetch_hpms_sections,
    hpms_layer_url,
    match_volume,
    read_aadt_file,
)
from gnnbench.road.tables import conform  # noqa: E402
from synthetic.hpms import hpms_fixture_response, write_hpms_fixture  # noqa: E402

FAST = RetryPolicy(attempts=3, backoff=0.0, max_wait=0.0, timeout=10.0)
M = 1.0 / 111_000.0  # about one metre of latitude near 40 N, in degrees

# Sections near (-75, 40) (the central meridian of UTM 18N, where projected and true distances agree to 0.04%).
SECTIONS = [
    {"paths": [[[-75.01, 40.0], [-74.99, 40.0]]], "aadt": 10000, "route_id": "I95", "begin_point": 1.0,
     "end_point": 2.7, "f_system": 1},
    {"paths": [[[-75.01, 40.0 + 200 * M], [-74.99, 40.0 + 200 * M]]], "aadt": 2000, "route_id": "US1",
     "begin_point": 0.0, "end_point": 1.7, "f_system": 3},
    {"paths": [[[-75.01, 40.01], [-74.99, 40.01]]], "aadt": 700, "route_id": "SR2", "begin_point": 0.0,
     "end_point": 1.7, "f_system": 5},
    {"paths": [[[-75.01, 40.01], [-74.99, 40.01]]], "aadt": 800, "route_id": "SR3", "begin_point": 0.0,
     "end_point": 1.7, "f_system": 5},  # same line as SR2: equidistant, the first listed wins
    {"paths": [[[-75.10, 40.05], [-75.09, 40.05]], [[-75.09, 40.05], [-75.08, 40.06]]], "aadt": 150,
     "route_id": "MULTI", "begin_point": 0.0, "end_point": 2.0, "f_system": 6},
]


def _edge(lon0, lat0, lon1, lat1):
    return shapely.to_wkb(shapely.LineString([(lon0, lat0), (lon1, lat1)]))


EDGES = pa.table({
    "edge_id": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
    "geometry": pa.array([
        _edge(-75.005, 40.0 + 10 * M, -75.0, 40.0 + 10 * M),  # 10 m north of I95
        _edge(-75.005, 40.0 + 180 * M, -75.0, 40.0 + 180 * M),  # 20 m south of US1, 180 m from I95
        _edge(-75.005, 40.0 + 250 * M, -75.0, 40.0 + 250 * M),  # 50 m north of US1
        _edge(-74.995, 40.0, -74.995, 40.0 + 400 * M),  # starts on I95; midpoint 200 m away, on US1
        None,
        _edge(-75.005, 40.01 - 5 * M, -75.0, 40.01 - 5 * M),  # 5 m from SR2 and SR3
    ], pa.binary()),
})


def _sections():
    return [HpmsSection(float(s["aadt"]), shapely.MultiLineString(s["paths"]) if len(s["paths"]) > 1
                        else shapely.LineString(s["paths"][0])) for s in SECTIONS]


def test_layer_url_pattern():
    assert hpms_layer_url("pa", 2020) == ("https://geo.dot.gov/server/rest/services/Hosted/HPMS_FULL_PA_2020/"
                                          "FeatureServer/0")
    assert hpms_layer_url("MD", 2019, base_url="http://x/y/").startswith("http://x/y/HPMS_FULL_MD_2019/")
    with pytest.raises(ValueError, match="postal code"):
        hpms_layer_url("Pennsylvania", 2020)


def test_match_volume_hand_checked():
    table, report = match_volume(EDGES, _sections(), year=2020, epsg=32618)
    assert table.equals(conform("edge_volume", table))
    assert table.column("edge_id").to_pylist() == [1, 2, 4, 6]
    assert table.column("aadt").to_pylist() == [10000.0, 2000.0, 2000.0, 700.0]
    assert table.column("year").to_pylist() == [2020] * 4
    assert table.column("source").to_pylist() == ["hpms"] * 4
    np.testing.assert_allclose(table.column("match_distance_m").to_numpy(), [10, 20, 0, 5], atol=0.1)
    assert report["matched"] == 4 and report["unmatched"] == 1 and report["edges_without_geometry"] == 1
    assert report["ties"] == 1 and report["sections_used"] == 3 and report["edges"] == 6
    assert "local roads" in report["note"]


def test_match_volume_distance_threshold_and_default_crs():
    table, report = match_volume(EDGES, _sections(), year=2021, max_distance_m=60.0, source="dot")
    assert report["epsg"] == 32618
    assert table.column("edge_id").to_pylist() == [1, 2, 3, 4, 6]
    assert table.column("aadt").to_pylist()[2] == 2000.0  # edge 3 now reaches US1 at 50 m
    table, report = match_volume(EDGES, _sections(), year=2021, max_distance_m=15.0)
    assert table.column("edge_id").to_pylist() == [1, 4, 6] and report["unmatched"] == 2
    table, report = match_volume(EDGES, [], year=2021)
    assert table.num_rows == 0 and report["matched"] == 0


def _serve_layer(httpserver, directory, service="HPMS_FULL_PA_2020"):
    hits = []

    def handler(request):
        hits.append(request.path)
        params = {**request.args.to_dict(), **request.form.to_dict()}
        if not request.path.startswith(f"/{service}/FeatureServer/0"):
            return Response(json.dumps({"error": {"code": 404, "message": "Service not found"}}),
                            content_type="application/json")
        body = hpms_fixture_response(directory, params, query=request.path.endswith("/query"))
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request(re.compile(r"^/.*")).respond_with_handler(handler)
    return httpserver.url_for("/").rstrip("/"), hits


@pytest.mark.parametrize("case", ["lower", "upper"])
def test_fetch_sections_field_case_and_batches(httpserver, tmp_path, case):
    write_hpms_fixture(tmp_path, SECTIONS, max_record_count=2, field_case=case)
    base, hits = _serve_layer(httpserver, tmp_path)
    sections = fetch_hpms_sections("PA", 2020, base_url=base, retry=FAST)
    assert hits.count("/HPMS_FULL_PA_2020/FeatureServer/0/query") == 1 + 3  # ids, then 3 batches of <= 2
    assert [s.aadt for s in sections] == [10000.0, 2000.0, 700.0, 800.0, 150.0]
    assert [s.route_id for s in sections] == ["I95", "US1", "SR2", "SR3", "MULTI"]
    assert [s.f_system for s in sections] == [1, 3, 5, 5, 6]
    assert sections[0].begin_point == 1.0 and sections[0].end_point == 2.7
    assert sections[0].geometry.geom_type == "LineString"
    assert sections[4].geometry.geom_type == "MultiLineString"
    table, _ = match_volume(EDGES, sections, year=2020)
    assert table.column("aadt").to_pylist() == [10000.0, 2000.0, 2000.0, 700.0]


def test_fetch_sections_missing_aadt_field(httpserver, tmp_path):
    write_hpms_fixture(tmp_path, SECTIONS, include_aadt=False)
    base, _ = _serve_layer(httpserver, tmp_path)
    with pytest.raises(VolumeSourceError, match=r"HPMS_FULL_PA_2020/FeatureServer/0 has no 'aadt' field"):
        fetch_hpms_sections("PA", 2020, base_url=base, retry=FAST)


def test_fetch_sections_unknown_service(httpserver, tmp_path):
    write_hpms_fixture(tmp_path, SECTIONS)
    base, _ = _serve_layer(httpserver, tmp_path)
    with pytest.raises(DownloadError, match=r"HPMS_FULL_WA_2023.*not available.*unverified"):
        fetch_hpms_sections("WA", 2023, base_url=base, retry=FAST)


def test_generated_fixture_deterministic(tmp_path):
    one = write_hpms_fixture(tmp_path / "a", seed=3, n_sections=7, max_record_count=3)
    write_hpms_fixture(tmp_path / "b", seed=3, n_sections=7, max_record_count=3)
    assert one["files"] == ["layer.json", "ids.json", "features.json", "batch_0000.json", "batch_0001.json",
                            "batch_0002.json"]
    for name in one["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    layer = json.loads((tmp_path / "a" / "layer.json").read_text())
    assert layer["maxRecordCount"] == 3 and layer["objectIdField"] == "objectid"
    batch = hpms_fixture_response(tmp_path / "a", {"objectIds": "2,5"}, query=True)
    assert [f["attributes"]["objectid"] for f in batch["features"]] == [2, 5]
    assert "paths" in batch["features"][0]["geometry"]


def _geojson(path, features, crs=None):
    document = {"type": "FeatureCollection", "features": features}
    if crs:
        document["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(document))
    return path


def test_read_aadt_file(tmp_path):
    features = [{"type": "Feature", "properties": {"AADT": s["aadt"], "Route_ID": s["route_id"]},
                 "geometry": {"type": "LineString", "coordinates": s["paths"][0]}} for s in SECTIONS[:4]]
    features.append({"type": "Feature", "properties": {"AADT": None}, "geometry": features[0]["geometry"]})
    sections = read_aadt_file(_geojson(tmp_path / "counts.geojson", features))
    assert [s.aadt for s in sections] == [10000.0, 2000.0, 700.0, 800.0]  # the null AADT is skipped
    assert sections[0].route_id == "I95"
    table, _ = match_volume(EDGES, sections, year=2020, source="state_dot")
    assert table.column("aadt").to_pylist() == [10000.0, 2000.0, 2000.0, 700.0]
    assert set(table.column("source").to_pylist()) == {"state_dot"}

    with pytest.raises(VolumeSourceError, match=r"counts\.geojson.*'volume'"):
        read_aadt_file(tmp_path / "counts.geojson", aadt_field="volume")
    point = [{"type": "Feature", "properties": {"aadt": 5}, "geometry": {"type": "Point", "coordinates": [0, 0]}}]
    with pytest.raises(VolumeSourceError, match="Point"):
        read_aadt_file(_geojson(tmp_path / "points.geojson", point))


def test_read_aadt_file_legacy_crs(tmp_path):
    from pyproj import Transformer

    to_mercator = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    coordinates = [list(to_mercator.transform(x, y)) for x, y in SECTIONS[0]["paths"][0]]
    features = [{"type": "Feature", "properties": {"aadt": 123},
                 "geometry": {"type": "LineString", "coordinates": coordinates}}]
    sections = read_aadt_file(_geojson(tmp_path / "m.geojson", features, crs="urn:ogc:def:crs:EPSG::3857"))
    np.testing.assert_allclose(np.asarray(sections[0].geometry.coords), SECTIONS[0]["paths"][0], atol=1e-9)
