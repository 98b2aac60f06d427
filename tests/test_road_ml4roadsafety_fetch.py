"""Downloading the ML4RoadSafety release: the Dataverse client and ``fetch_release`` against loopback servers
(faults included), and ``gnnbench import ml4roadsafety`` end to end."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from gnnbench.io import ChecksumError, OfflineError, RetryPolicy, offline_mode  # noqa: E402
from gnnbench.road.manifest import read_manifest  # noqa: E402
from gnnbench.road.sources.dataverse import (  # noqa: E402
    ML4ROADSAFETY_DOI,
    DataverseError,
    DataverseFile,
    GuestbookRequiredError,
    PublishedChecksumError,
    RestrictedFileError,
    download_file,
    list_files,
)
from gnnbench.road.sources.ml4roadsafety import fetch_release, import_release  # noqa: E402
from synthetic.release import generate_release, write_release, zip_release  # noqa: E402

FAST = RetryPolicy(attempts=3, backoff=0.001, max_wait=0.01, timeout=5.0)
FILES_PATH = "/api/datasets/:persistentId/versions/:latest-published/files"
DATASET_PATH = "/api/datasets/:persistentId/"


@pytest.fixture(autouse=True)
def _online(monkeypatch):
    monkeypatch.delenv("GNNBENCH_OFFLINE", raising=False)
    monkeypatch.setenv("GNNBENCH_PROGRESS", "0")


@pytest.fixture(scope="module")
def fixture():
    return generate_release("MA", num_nodes=40, num_edges=90, years=(2019, 2020), months=(1, 2, 3), seed=7,
                            accident_rate=0.2, aadt_coverage=0.5, clipped_rate=0.25)


# --------------------------------------------------------------------------- Dataverse client


def _entry(file_id: int, name: str, payload: bytes, *, checksum: str = "MD5", restricted: bool = False) -> dict:
    algorithm = {"MD5": "md5", "SHA-256": "sha256"}[checksum]
    return {"label": name, "restricted": restricted, "version": 1, "dataFile": {
        "id": file_id, "filename": name, "filesize": len(payload), "contentType": "application/zip",
        "md5": hashlib.md5(payload).hexdigest(),
        "checksum": {"type": checksum, "value": hashlib.new(algorithm, payload).hexdigest()}}}


def _serve_listing(httpserver, entries: list[dict]) -> None:
    httpserver.expect_request(FILES_PATH, query_string={"persistentId": ML4ROADSAFETY_DOI, "limit": "1000",
                                                        "offset": "0"}).respond_with_json(
        {"status": "OK", "totalCount": len(entries), "data": entries})


def test_list_files_pages(httpserver):
    entries = [_entry(10 + i, f"S{i}.zip", bytes([i]) * 10) for i in range(5)]
    for offset in (0, 2, 4):
        httpserver.expect_request(FILES_PATH, query_string={"persistentId": ML4ROADSAFETY_DOI, "limit": "2",
                                                            "offset": str(offset)}).respond_with_json(
            {"status": "OK", "totalCount": 5, "data": entries[offset:offset + 2]})
    files = list_files(ML4ROADSAFETY_DOI, server=httpserver.url_for(""), retry=FAST, page_size=2)
    assert [item.id for item in files] == [10, 11, 12, 13, 14]
    first = files[0]
    assert (first.filename, first.size, first.checksum_type, first.restricted) == ("S0.zip", 10, "MD5", False)
    assert first.md5 == hashlib.md5(bytes([0]) * 10).hexdigest()


def test_list_files_falls_back_to_dataset_json(httpserver):
    httpserver.expect_request(FILES_PATH).respond_with_json({"status": "ERROR", "message": "nope"}, status=404)
    entries = [_entry(7, "MA.zip", b"abc")]
    httpserver.expect_request(DATASET_PATH, query_string={"persistentId": ML4ROADSAFETY_DOI}).respond_with_json(
        {"status": "OK", "data": {"latestVersion": {"versionState": "RELEASED", "files": entries}}})
    files = list_files(ML4ROADSAFETY_DOI, server=httpserver.url_for(""), retry=FAST)
    assert [(item.id, item.filename) for item in files] == [(7, "MA.zip")]


def test_download_verifies_the_published_checksum(httpserver, tmp_path):
    payload = b"release bytes" * 100
    good = DataverseFile.from_json(_entry(5, "MA.zip", payload), where="test")
    httpserver.expect_request("/api/access/datafile/5").respond_with_data(payload)
    record = download_file(good, tmp_path, server=httpserver.url_for(""), retry=FAST)
    assert Path(record.path).read_bytes() == payload and record.sha256 == hashlib.sha256(payload).hexdigest()

    wrong = DataverseFile(id=6, filename="DE.zip", directory=None, size=len(payload), checksum_type="MD5",
                          checksum_value="0" * 32, restricted=False)
    httpserver.expect_request("/api/access/datafile/6").respond_with_data(payload)
    with pytest.raises(PublishedChecksumError, match="MD5") as error:
        download_file(wrong, tmp_path, server=httpserver.url_for(""), retry=FAST)
    assert isinstance(error.value, ChecksumError) and not (tmp_path / "DE.zip").exists()

    sha = DataverseFile.from_json(_entry(8, "IA.zip", b"other", checksum="SHA-256"), where="test")
    httpserver.expect_request("/api/access/datafile/8").respond_with_data(b"tampered")
    with pytest.raises(ChecksumError):
        download_file(sha, tmp_path, server=httpserver.url_for(""), retry=FAST)


def test_download_retries_a_server_error(httpserver, tmp_path):
    payload = b"x" * 1000
    item = DataverseFile.from_json(_entry(9, "NV.zip", payload), where="test")
    httpserver.expect_ordered_request("/api/access/datafile/9").respond_with_data("busy", status=500)
    httpserver.expect_ordered_request("/api/access/datafile/9").respond_with_data(payload)
    record = download_file(item, tmp_path, server=httpserver.url_for(""), retry=FAST)
    assert record.size == len(payload) and len(httpserver.log) == 2


def test_restricted_and_guestbook_files(httpserver, tmp_path):
    restricted = DataverseFile.from_json(_entry(3, "MD.zip", b"x", restricted=True), where="test")
    with pytest.raises(RestrictedFileError, match="restricted"):
        download_file(restricted, tmp_path, server=httpserver.url_for(""), retry=FAST)
    assert len(httpserver.log) == 0
    guarded = DataverseFile.from_json(_entry(4, "MN.zip", b"x"), where="test")
    httpserver.expect_request("/api/access/datafile/4").respond_with_json(
        {"status": "ERROR", "message": "You may not download this file without a Guestbook response."}, status=400)
    with pytest.raises(GuestbookRequiredError, match="guestbook"):
        download_file(guarded, tmp_path, server=httpserver.url_for(""), retry=FAST)
    forbidden = DataverseFile.from_json(_entry(2, "MT.zip", b"x"), where="test")
    httpserver.expect_request("/api/access/datafile/2").respond_with_json({"status": "ERROR"}, status=403)
    with pytest.raises(RestrictedFileError, match="403"):
        download_file(forbidden, tmp_path, server=httpserver.url_for(""), retry=FAST)


def test_fetch_release_nested_zip_then_offline_cache(fixture, httpserver, tmp_path, monkeypatch):
    monkeypatch.setenv("GNNBENCH_HOME", str(tmp_path / "home"))
    zipped = zip_release(write_release(tmp_path / "src", fixture), tmp_path / "MA.zip", nested=True)
    payload = zipped.read_bytes()
    _serve_listing(httpserver, [_entry(1, "DE.zip", b"other"), _entry(2, "MA.zip", payload)])
    httpserver.expect_request("/api/access/datafile/2").respond_with_data(payload)
    state_dir = fetch_release("ma", server=httpserver.url_for(""), retry=FAST)
    assert state_dir == tmp_path / "home" / "raw" / "ml4roadsafety" / "MA"
    assert (state_dir / "adj_matrix.pt").is_file() and (state_dir / "Nodes").is_dir()
    assert not (state_dir.parent / "ML4RoadSafety_graphs_MA").exists()
    requests_made = len(httpserver.log)

    out = import_release("MA", state_dir, tmp_path / "out" / "MA")
    archive = read_manifest(out)["sources"][0]
    assert archive["role"] == "release-archive" and archive["sha256"] == hashlib.sha256(payload).hexdigest()
    assert archive["url"].endswith("/api/access/datafile/2")

    with offline_mode():
        assert fetch_release("MA", server=httpserver.url_for("")) == state_dir
        shutil.rmtree(state_dir)  # the zip is still cached: extracted again without the network
        assert (fetch_release("MA", server=httpserver.url_for("")) / "adj_matrix.pt").is_file()
        with pytest.raises(OfflineError, match="DE"):
            fetch_release("DE", server=httpserver.url_for(""))
    assert len(httpserver.log) == requests_made


def test_fetch_release_flat_zip_and_missing_state(fixture, httpserver, tmp_path):
    zipped = zip_release(write_release(tmp_path / "src", fixture), tmp_path / "MA.zip")
    payload = zipped.read_bytes()
    _serve_listing(httpserver, [_entry(2, "MA.zip", payload)])
    httpserver.expect_request("/api/access/datafile/2").respond_with_data(payload)
    cache = tmp_path / "cache"
    state_dir = fetch_release("MA", cache_dir=cache, server=httpserver.url_for(""), retry=FAST)
    assert state_dir == cache / "MA" and json.loads((cache / "MA.extracted.json").read_text())["file_id"] == 2
    before = len(httpserver.log)
    assert fetch_release("MA", cache_dir=cache, server=httpserver.url_for(""), retry=FAST, refresh=True) == state_dir
    assert len(httpserver.log) == before + 1  # listed again; the cached zip still matches, so not re-downloaded
    with pytest.raises(DataverseError, match="IL.zip"):
        fetch_release("IL", cache_dir=cache, server=httpserver.url_for(""), retry=FAST)


def test_import_command_through_a_loopback_dataverse_with_faults(fixture, tmp_path, monkeypatch, capsys):
    """`gnnbench import ml4roadsafety` against the loopback portal imitating Dataverse: a 500, a truncated
    body (resumed), then `gnnbench info road --source ml4roadsafety` on the result."""
    import gnnbench.io.http as http
    from gnnbench.cli import main
    from gnnbench.io import loopback_allowed
    from gnnbench.road.demo.server import Fault, LoopbackPortal

    monkeypatch.setattr(http, "_sleep", lambda seconds: None)
    payload = zip_release(write_release(tmp_path / "src", fixture), tmp_path / "MA.zip").read_bytes()
    listing = {"status": "OK", "totalCount": 1, "data": [_entry(42, "MA.zip", payload)]}
    home = tmp_path / "road"
    with LoopbackPortal() as portal, loopback_allowed():
        portal.add_json(FILES_PATH, listing)
        portal.add_file("/api/access/datafile/42", payload, "application/zip")
        portal.inject("/api/access/datafile/42", Fault("status", 500), Fault("truncate"))
        assert main(["import", "ml4roadsafety", "--state", "MA", "--server", portal.url, "--root", str(home)]) == 0
        ranges = [path for method, path in portal.requests if path.startswith("/api/access/datafile/42")]
    assert len(ranges) == 3  # the 500, the truncated body, then the resumed rest
    assert main(["info", "road", "--state", "MA", "--source", "ml4roadsafety", "--root", str(home)]) == 0
    out = capsys.readouterr().out
    assert "MA (ml4roadsafety-import" in out and "accidents" in out


def test_a_corrupted_release_download_is_refused(fixture, tmp_path, monkeypatch):
    import gnnbench.io.http as http
    from gnnbench.io import loopback_allowed
    from gnnbench.road.demo.server import Fault, LoopbackPortal

    monkeypatch.setattr(http, "_sleep", lambda seconds: None)
    payload = zip_release(write_release(tmp_path / "src", fixture), tmp_path / "MA.zip").read_bytes()
    with LoopbackPortal() as portal, loopback_allowed():
        portal.add_json(FILES_PATH, {"status": "OK", "totalCount": 1, "data": [_entry(7, "MA.zip", payload)]})
        portal.add_file("/api/access/datafile/7", payload, "application/zip")
        portal.inject("/api/access/datafile/7", Fault("corrupt"), Fault("corrupt"))
        with pytest.raises(ChecksumError, match="MA.zip"):
            fetch_release("MA", cache_dir=tmp_path / "cache", server=portal.url, retry=FAST)
    assert not (tmp_path / "cache" / "MA").exists() and not (tmp_path / "cache" / "MA.zip").exists()
