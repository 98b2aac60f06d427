"""The eight states end to end on loopback portals: raw records in each portal's real shape -> crash_stage.

Fixtures (``road_portal_fixtures``) generate records with the column spellings and value formats of
the portals' documentation, bad rows included; the expected normalised rows and drop counts are
written out by hand. Also: Socrata and ArcGIS paging, retried faults, a schema that lost a column,
offline mode, reuse of a finished download and tampered page files. The other export formats are
tested in ``test_road_formats.py``, the registry in ``test_road_registry.py``.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from road_portal_fixtures import (
    CASES,
    DE,
    DE_COLUMNS,
    DE_DATASET,
    DE_ROWS,
    IA_FEATURES,
    IA_LAYER,
    MD_COLUMNS,
    MD_DATASET,
    MD_ROWS,
    all_drops,
    assert_rows,
    rows_of,
)

from gnnbench.io import DownloadError, OfflineError, http, offline_mode
from gnnbench.road.build import crash_stage
from gnnbench.road.crashes import CRASH_COLUMNS, CrashSchemaError
from gnnbench.road.demo.server import Fault, LoopbackPortal
from gnnbench.road.sources import crash_portals
from gnnbench.road.sources.crash_portals import (
    COMPLETE,
    ManualDownloadRequired,
    crash_files,
    fetch_crashes,
    read_crash_files,
)
from gnnbench.road.states import SEVERITIES, STATES


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
        with pytest.raises(DownloadError, match="503"):
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
    with pytest.raises(ValueError, match=rf"{DE_DATASET}-p00001\.json: does not match the sha256 recorded in "
                                         rf".*{COMPLETE}; delete both; download it again with `gnnbench download "):
        crash_files(tmp_path)
    page.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{DE_DATASET}-p00001\.json: listed in .*{COMPLETE} but missing"):
        crash_files(tmp_path)


def test_loopback_portal_never_prints_when_a_client_hangs_up(capfd, caplog):
    """A client resetting its connection mid-request is logged (debug), not printed (quickstart's output)."""
    import logging
    import socket
    import struct
    import time

    with caplog.at_level(logging.DEBUG, logger="gnnbench.road.demo.server"), LoopbackPortal() as portal:
        host, port = urlsplit(portal.url).hostname, urlsplit(portal.url).port
        client = socket.create_connection((host, port))
        client.sendall(b"GET /resource/x.json HTTP/1.1\r\nHost: x\r\n")  # an unfinished request ...
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # ... then a reset
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
    assert capfd.readouterr().err == ""
    assert [record.levelno for record in caplog.records] == [logging.DEBUG]
    assert "loopback portal" in caplog.records[0].getMessage()
