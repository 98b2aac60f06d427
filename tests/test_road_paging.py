"""gnnbench.road.sources.paging: Socrata and ArcGIS paging against local fake APIs."""

from __future__ import annotations

import json

import pytest
from werkzeug import Request, Response

from gnnbench.io import DownloadError, RetryPolicy, http
from gnnbench.road.sources.paging import arcgis_features, socrata_columns, socrata_rows

FAST = RetryPolicy(attempts=3, backoff=0.001, max_wait=0.01, timeout=5)


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv("GNNBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("SOCRATA_APP_TOKEN", raising=False)


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(http, "_sleep", recorded.append)
    return recorded


# ------------------------------------------------------------------ Socrata


def socrata_handler(rows: list[dict], seen: list[dict]):
    def handle(request: Request) -> Response:
        args = dict(request.args)
        seen.append({**args, "token": request.headers.get("X-App-Token")})
        start, limit = int(args["$offset"]), int(args["$limit"])
        return Response(json.dumps(rows[start : start + limit]), content_type="application/json")

    return handle


def test_socrata_rows_pages_until_short_page(httpserver):
    rows = [{"id": str(i), "value": i * i} for i in range(5)]
    seen: list[dict] = []
    httpserver.expect_request("/resource/abcd-1234.json").respond_with_handler(socrata_handler(rows, seen))
    pages = list(
        socrata_rows(
            httpserver.url_for("/"),
            "abcd-1234",
            select=["id", "value"],
            where="value > 0",
            page_size=2,
            app_token="secret",
            retry=FAST,
        )
    )
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [row for page in pages for row in page] == rows
    assert [query["$offset"] for query in seen] == ["0", "2", "4"]
    assert seen[0] == {
        "$limit": "2",
        "$offset": "0",
        "$order": ":id",
        "$select": "id,value",
        "$where": "value > 0",
        "token": "secret",
    }


def test_socrata_rows_exact_multiple_and_env_token(httpserver, monkeypatch):
    monkeypatch.setenv("SOCRATA_APP_TOKEN", "from-env")
    rows = [{"id": str(i)} for i in range(4)]
    seen: list[dict] = []
    httpserver.expect_request("/resource/abcd-1234.json").respond_with_handler(socrata_handler(rows, seen))
    pages = list(socrata_rows(httpserver.url_for(""), "abcd-1234", page_size=2, order="id", retry=FAST))
    assert [len(page) for page in pages] == [2, 2]  # the final empty page is asked for but not yielded
    assert len(seen) == 3 and {query["token"] for query in seen} == {"from-env"}
    assert "$select" not in seen[0] and "$where" not in seen[0] and seen[0]["$order"] == "id"


def test_socrata_rows_retries_and_rejects_non_lists(httpserver, waits):
    httpserver.expect_oneshot_request("/resource/x.json").respond_with_data("busy", status=503)
    httpserver.expect_request("/resource/x.json").respond_with_json({"error": True, "message": "bad query"})
    with pytest.raises(DownloadError, match="expected a JSON list"):
        list(socrata_rows(httpserver.url_for("/"), "x", retry=FAST))
    assert len(waits) == 1


def test_socrata_geojson_pages(httpserver):
    features = [{"type": "Feature", "properties": {"id": str(i)}, "geometry": None} for i in range(3)]
    seen: list[dict] = []

    def handle(request: Request) -> Response:
        seen.append(dict(request.args))
        start, limit = int(request.args["$offset"]), int(request.args["$limit"])
        return Response(json.dumps({"type": "FeatureCollection", "features": features[start:start + limit]}))

    httpserver.expect_request("/resource/abcd-1234.geojson").respond_with_handler(handle)
    pages = list(socrata_rows(httpserver.url_for("/"), "abcd-1234", page_size=2, geojson=True, retry=FAST))
    assert pages == [features[:2], features[2:]]
    assert [query["$offset"] for query in seen] == ["0", "2"]
    httpserver.expect_request("/resource/bad.geojson").respond_with_json([{"id": "1"}])
    with pytest.raises(DownloadError, match="expected a GeoJSON FeatureCollection"):
        list(socrata_rows(httpserver.url_for("/"), "bad", geojson=True, retry=FAST))
    with pytest.raises(ValueError, match="page_size must be an integer >= 1, got 0"):
        list(socrata_rows(httpserver.url_for("/"), "abcd-1234", page_size=0))


def test_socrata_columns(httpserver):
    view = {"columns": [{"fieldName": "crash_date", "name": "Crash Date"}, {"fieldName": "lat"}]}
    httpserver.expect_request("/api/views/abcd-1234.json").respond_with_json(view)
    assert socrata_columns(httpserver.url_for("/"), "abcd-1234") == {"crash_date": "Crash Date", "lat": "lat"}
    httpserver.expect_request("/api/views/none.json").respond_with_json({"id": "none"})
    with pytest.raises(DownloadError, match="columns"):
        socrata_columns(httpserver.url_for("/"), "none")


# ------------------------------------------------------------------ ArcGIS


class FakeLayer:
    """A feature layer at /layer: metadata, id query (GET) and objectIds query (POST form)."""

    def __init__(self, ids: list[int], max_records: int = 3) -> None:
        self.ids, self.max_records = ids, max_records
        self.queries: list[dict] = []
        self.drop: set[int] = set()
        self.errors: list[dict] = []  # ArcGIS error bodies to answer the next queries with

    def metadata(self, request: Request) -> Response:
        assert request.args["f"] == "json"
        return Response(json.dumps({"maxRecordCount": self.max_records, "objectIdField": "FID"}))

    def query(self, request: Request) -> Response:
        if self.errors:
            return Response(json.dumps({"error": self.errors.pop(0)}), content_type="application/json")
        if request.method == "GET":
            assert request.args["returnIdsOnly"] == "true" and request.args["f"] == "json"
            return Response(json.dumps({"objectIdFieldName": "FID", "objectIds": self.ids}))
        form = dict(request.form)
        self.queries.append(form)
        asked = [int(i) for i in form["objectIds"].split(",")]
        if form["f"] == "geojson":  # ids in "id" only (outFields without the id field)
            features = [{"type": "Feature", "id": i, "properties": {"name": f"road {i}"},
                         "geometry": {"type": "Point", "coordinates": [float(i), -float(i)]}}
                        for i in asked if i not in self.drop]
            return Response(json.dumps({"type": "FeatureCollection", "features": features}))
        features = [
            {"attributes": {"FID": i, "name": f"road {i}"}, "geometry": {"x": float(i), "y": -float(i)}}
            for i in asked
            if i not in self.drop
        ]
        return Response(json.dumps({"objectIdFieldName": "FID", "features": features}))

    def serve(self, httpserver) -> str:
        httpserver.expect_request("/layer", method="GET").respond_with_handler(self.metadata)
        httpserver.expect_request("/layer/query").respond_with_handler(self.query)
        return httpserver.url_for("/layer")


def test_arcgis_geojson_batches_are_checked_by_feature_id(httpserver):
    layer = FakeLayer([7, 3, 1, 6, 2], max_records=3)
    url = layer.serve(httpserver)
    batches = list(arcgis_features(url, out_fields="name", geojson=True, retry=FAST))
    assert [[f["id"] for f in batch] for batch in batches] == [[1, 2, 3], [6, 7]]
    assert batches[0][0]["geometry"] == {"type": "Point", "coordinates": [1.0, -1.0]}
    assert {query["f"] for query in layer.queries} == {"geojson"}
    layer.drop = {6}
    with pytest.raises(DownloadError, match="1 ids missing"):
        list(arcgis_features(url, geojson=True, retry=FAST))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        list(arcgis_features(url, batch_size=0))


def test_arcgis_batches_by_max_record_count(httpserver):
    layer = FakeLayer([7, 3, 1, 6, 2, 5, 4], max_records=3)
    url = layer.serve(httpserver)
    batches = list(arcgis_features(url, out_fields=["name"], out_sr=3857, retry=FAST))
    assert [[f["attributes"]["FID"] for f in batch] for batch in batches] == [[1, 2, 3], [4, 5, 6], [7]]
    assert batches[0][0]["geometry"] == {"x": 1.0, "y": -1.0}
    assert layer.queries[0] == {
        "objectIds": "1,2,3",
        "outFields": "name,FID",
        "outSR": "3857",
        "returnGeometry": "true",
        "f": "json",
    }
    assert [request.method for request, _ in httpserver.log] == ["GET", "GET", "POST", "POST", "POST"]


def test_arcgis_batch_size_is_capped(httpserver):
    layer = FakeLayer(list(range(1, 8)), max_records=3)
    url = layer.serve(httpserver)
    assert [len(b) for b in arcgis_features(url, batch_size=2, retry=FAST)] == [2, 2, 2, 1]
    assert [len(b) for b in arcgis_features(url, batch_size=50, retry=FAST)] == [3, 3, 1]
    assert layer.queries[-1]["outFields"] == "*"


def test_arcgis_empty_layer(httpserver):
    url = FakeLayer([]).serve(httpserver)
    assert list(arcgis_features(url, retry=FAST)) == []


def test_arcgis_error_body_raises_naming_layer(httpserver, waits):
    layer = FakeLayer([1, 2])
    layer.errors.append({"code": 400, "message": "Unable to complete operation.", "details": ["Invalid where"]})
    url = layer.serve(httpserver)
    with pytest.raises(DownloadError, match="Unable to complete operation") as caught:
        list(arcgis_features(url, where="nonsense", retry=FAST))
    assert url in str(caught.value) and "Invalid where" in str(caught.value) and waits == []


def test_arcgis_metadata_error_raises(httpserver):
    httpserver.expect_request("/layer").respond_with_json({"error": {"code": 499, "message": "Token Required"}})
    with pytest.raises(DownloadError, match="Token Required"):
        list(arcgis_features(httpserver.url_for("/layer"), retry=FAST))


def test_arcgis_transient_error_codes_are_retried(httpserver, waits):
    layer = FakeLayer([1, 2, 3, 4])
    layer.errors += [{"code": 503, "message": "busy"}, {"code": 429, "message": "slow"}]  # both hit the id query
    url = layer.serve(httpserver)
    assert [len(b) for b in arcgis_features(url, retry=FAST)] == [3, 1]
    assert len(waits) == 2


def test_arcgis_missing_ids_raise(httpserver):
    layer = FakeLayer([1, 2, 3, 4, 5])
    layer.drop = {5}
    url = layer.serve(httpserver)
    features = arcgis_features(url, retry=FAST)
    assert len(next(features)) == 3
    with pytest.raises(DownloadError, match="1 ids missing") as caught:
        next(features)
    assert url in str(caught.value)
