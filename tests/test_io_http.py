"""gnnbench.io.http: retries, Retry-After, resumable verified downloads, offline mode (local servers only)."""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import pickle
import socket
import threading
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug import Request, Response

from gnnbench.io import (
    ChecksumError,
    DownloadError,
    DownloadRecord,
    OfflineError,
    RetryPolicy,
    download,
    get,
    get_json,
    http,
    is_offline,
    make_session,
    offline_mode,
    set_offline,
)

PAYLOAD = bytes(range(256)) * 40  # 10 KiB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
FAST = RetryPolicy(attempts=3, backoff=0.001, max_wait=0.01, timeout=5)


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv("GNNBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("GNNBENCH_PROGRESS", raising=False)
    set_offline(False)
    yield
    set_offline(False)


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The waits between retries, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(http, "_sleep", recorded.append)
    return recorded


def range_handler(payload: bytes, ranges: list[str | None]):
    """A handler that honours ``Range: bytes=N-`` and records the Range header of each request."""

    def handle(request: Request) -> Response:
        asked = request.headers.get("Range")
        ranges.append(asked)
        if asked is None:
            return Response(payload, content_type="application/octet-stream")
        start = int(asked.removeprefix("bytes=").rstrip("-"))
        if start >= len(payload):
            return Response(b"", status=416, headers={"Content-Range": f"bytes */{len(payload)}"})
        return Response(
            payload[start:], status=206, headers={"Content-Range": f"bytes {start}-{len(payload) - 1}/{len(payload)}"}
        )

    return handle


class RawServer:
    """Answers each connection with the next scripted raw reply, then closes it (for truly truncated bodies).

    A reply is raw bytes, or a function of the request head returning them.
    """

    def __init__(self, replies: list) -> None:
        self.replies = list(replies)
        self.requests: list[str] = []
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/file.bin"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            with connection:
                head = b""
                while b"\r\n\r\n" not in head and (chunk := connection.recv(65536)):
                    head += chunk
                self.requests.append(head.decode("latin-1"))
                reply = self.replies.pop(0) if self.replies else b"HTTP/1.1 500 Out of replies\r\n\r\n"
                connection.sendall(reply(self.requests[-1]) if callable(reply) else reply)

    def close(self) -> None:
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.socket.close()


@pytest.fixture
def raw_server():
    servers: list[RawServer] = []

    def start(replies: list) -> RawServer:
        servers.append(RawServer(replies))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def raw_reply(status: str, body: bytes, **headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Connection: close", *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ------------------------------------------------------------------ offline switch


def test_offline_switch_env_and_context(monkeypatch):
    assert not is_offline()
    with offline_mode():
        assert is_offline()
        with offline_mode(False):
            assert not is_offline()
        assert is_offline()
    assert not is_offline()
    for value in ("1", "true", "YES"):
        monkeypatch.setenv("GNNBENCH_OFFLINE", value)
        assert is_offline()
    monkeypatch.setenv("GNNBENCH_OFFLINE", "0")
    assert not is_offline()


def test_offline_get_never_touches_the_network(httpserver):
    httpserver.expect_request("/data.json").respond_with_json({"ok": True})
    url = httpserver.url_for("/data.json")
    with offline_mode():
        with pytest.raises(OfflineError, match="data.json"):
            get_json(url)
        with pytest.raises(OfflineError):
            get(url)
    assert httpserver.log == []


# ------------------------------------------------------------------ get / get_json and retries


def test_user_agent_and_json(httpserver):
    httpserver.expect_request("/data.json").respond_with_json({"answer": 42})
    assert get_json(httpserver.url_for("/data.json"), retry=FAST) == {"answer": 42}
    assert httpserver.log[0][0].headers["User-Agent"].startswith("gnnbench/")
    assert make_session(user_agent="custom/1").headers["User-Agent"] == "custom/1"


def test_500_then_success_is_retried(httpserver, waits, caplog):
    httpserver.expect_oneshot_request("/data.json").respond_with_data("boom", status=500)
    httpserver.expect_request("/data.json").respond_with_json([1, 2])
    with caplog.at_level(logging.WARNING, logger="gnnbench.io"):
        assert get_json(httpserver.url_for("/data.json"), retry=FAST) == [1, 2]
    assert len(httpserver.log) == 2 and len(waits) == 1
    assert any("HTTP 500" in record.getMessage() for record in caplog.records)


def test_backoff_grows_exponentially_and_gives_up(httpserver, waits):
    httpserver.expect_request("/down").respond_with_data("unavailable", status=503)
    url = httpserver.url_for("/down")
    with pytest.raises(DownloadError, match=r"after 5 tries: HTTP 503") as caught:
        get(url, retry=RetryPolicy(attempts=5, backoff=1.0, max_wait=3.0))
    assert url in str(caught.value) and caught.value.status == 503
    assert len(httpserver.log) == 5 and len(waits) == 4
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0 and 2.0 <= waits[2] <= 3.0  # jittered
    assert waits[3] == 3.0  # 4 to 8 s, capped by max_wait


def test_429_retry_after_seconds_is_honoured(httpserver, waits):
    httpserver.expect_oneshot_request("/rate").respond_with_data("slow down", status=429, headers={"Retry-After": "7"})
    httpserver.expect_request("/rate").respond_with_json({"ok": 1})
    assert get_json(httpserver.url_for("/rate"), retry=RetryPolicy(attempts=2, backoff=0.001, max_wait=30)) == {"ok": 1}
    assert waits == [7.0]


def test_429_retry_after_http_date_is_capped(httpserver, waits):
    later = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=90), usegmt=True)
    httpserver.expect_oneshot_request("/rate").respond_with_data("", status=429, headers={"Retry-After": later})
    httpserver.expect_request("/rate").respond_with_json({"ok": 1})
    get_json(httpserver.url_for("/rate"), retry=RetryPolicy(attempts=2, max_wait=5.0))
    assert waits == [5.0]
    assert 80 < http._parse_retry_after(later) <= 90
    assert http._parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert http._parse_retry_after("soon") is None


def test_404_raises_at_once(httpserver, waits):
    httpserver.expect_request("/missing").respond_with_data("no such thing", status=404)
    url = httpserver.url_for("/missing")
    with pytest.raises(DownloadError, match="404") as caught:
        get(url, retry=FAST)
    assert url in str(caught.value) and caught.value.status == 404
    assert len(httpserver.log) == 1 and waits == []


def test_non_json_body_raises_without_retry(httpserver, waits):
    httpserver.expect_request("/page").respond_with_data("<html>maintenance</html>", content_type="text/html")
    url = httpserver.url_for("/page")
    with pytest.raises(DownloadError, match="not JSON") as caught:
        get_json(url, retry=FAST)
    assert url in str(caught.value)
    assert len(httpserver.log) == 1 and waits == []


def test_cut_json_body_is_retried(httpserver, waits):
    httpserver.expect_oneshot_request("/rows").respond_with_data(
        '[{"a": 1}, {"a": "tw', content_type="application/json"
    )
    httpserver.expect_request("/rows").respond_with_json([{"a": 1}, {"a": "two"}])
    assert get_json(httpserver.url_for("/rows"), retry=FAST) == [{"a": 1}, {"a": "two"}]
    assert len(waits) == 1


def test_short_json_body_is_retried(raw_server, waits):
    body = json.dumps({"values": list(range(50))}).encode()
    server = raw_server(
        [
            raw_reply("200 OK", body[:20], Content_Length=str(len(body))),
            raw_reply("200 OK", body, Content_Length=str(len(body))),
        ]
    )
    assert get_json(server.url, retry=FAST) == {"values": list(range(50))}
    assert len(server.requests) == 2 and len(waits) == 1


def test_connection_refused_is_retried_then_fails(waits):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match="after 3 tries"):
        get(f"http://127.0.0.1:{port}/x", retry=FAST)
    assert len(waits) == 2


# ------------------------------------------------------------------ download


def test_download_writes_file_sidecar_and_record(httpserver, tmp_path):
    httpserver.expect_request("/file.bin").respond_with_data(PAYLOAD)
    url, dest = httpserver.url_for("/file.bin"), tmp_path / "sub" / "file.bin"
    record = download(url, dest, sha256=PAYLOAD_SHA.upper(), retry=FAST, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert record == DownloadRecord(url, str(dest), PAYLOAD_SHA, len(PAYLOAD), record.retrieved_at)
    assert datetime.fromisoformat(record.retrieved_at).utcoffset() == timedelta(0)
    sidecar = json.loads((tmp_path / "sub" / "file.bin.download.json").read_text())
    assert sidecar == {key: value for key, value in record.to_dict().items() if key != "path"}
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin", "file.bin.download.json"]
    assert download(url, dest, sha256=PAYLOAD_SHA, retry=FAST) == record  # cached: no second request
    assert len(httpserver.log) == 1


def test_existing_file_without_sidecar_needs_no_network(httpserver, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(PAYLOAD)
    record = download(httpserver.url_for("/file.bin"), dest, sha256=PAYLOAD_SHA)
    assert record.sha256 == PAYLOAD_SHA and record.size == len(PAYLOAD)
    assert (tmp_path / "file.bin.download.json").exists()
    assert httpserver.log == []


def test_existing_file_with_wrong_digest_is_downloaded_again(httpserver, tmp_path):
    httpserver.expect_request("/file.bin").respond_with_data(PAYLOAD)
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"stale")
    download(httpserver.url_for("/file.bin"), dest, sha256=PAYLOAD_SHA, retry=FAST, progress=False)
    assert dest.read_bytes() == PAYLOAD and len(httpserver.log) == 1
    with offline_mode():  # offline, a mismatching file cannot be repaired
        with pytest.raises(ChecksumError):
            download(httpserver.url_for("/file.bin"), dest, sha256="0" * 64)


def test_wrong_checksum_leaves_nothing_behind(httpserver, tmp_path, waits):
    httpserver.expect_request("/file.bin").respond_with_data(PAYLOAD)
    dest = tmp_path / "file.bin"
    with pytest.raises(ChecksumError) as caught:
        download(httpserver.url_for("/file.bin"), dest, sha256="ab" * 32, retry=FAST, progress=False)
    message = str(caught.value)
    assert str(dest) in message and "ab" * 32 in message and PAYLOAD_SHA in message
    assert list(tmp_path.iterdir()) == [] and len(httpserver.log) == 1 and waits == []
    assert isinstance(caught.value, DownloadError)
    assert str(pickle.loads(pickle.dumps(caught.value))) == message


def test_offline_download_names_file_and_url(httpserver, tmp_path):
    url, dest = httpserver.url_for("/file.bin"), tmp_path / "file.bin"
    with offline_mode():
        with pytest.raises(OfflineError) as caught:
            download(url, dest)
    assert str(dest) in str(caught.value) and url in str(caught.value)
    dest.write_bytes(PAYLOAD)
    with offline_mode():
        assert download(url, dest, sha256=PAYLOAD_SHA).size == len(PAYLOAD)
    assert httpserver.log == []


def test_resume_from_part_with_range(httpserver, tmp_path):
    ranges: list[str | None] = []
    httpserver.expect_request("/file.bin").respond_with_handler(range_handler(PAYLOAD, ranges))
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:3000])
    record = download(httpserver.url_for("/file.bin"), dest, sha256=PAYLOAD_SHA, retry=FAST, progress=False)
    assert ranges == ["bytes=3000-"]
    assert dest.read_bytes() == PAYLOAD and record.sha256 == PAYLOAD_SHA and record.size == len(PAYLOAD)
    assert not (tmp_path / "file.bin.part").exists()


def test_server_ignoring_range_restarts(httpserver, tmp_path):
    httpserver.expect_request("/file.bin").respond_with_data(PAYLOAD)  # always 200 with the whole body
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(b"x" * 3000)  # wrong bytes: must not survive
    download(httpserver.url_for("/file.bin"), dest, sha256=PAYLOAD_SHA, retry=FAST, progress=False)
    assert httpserver.log[0][0].headers["Range"] == "bytes=3000-"
    assert dest.read_bytes() == PAYLOAD


def test_416_on_oversized_part_restarts(httpserver, tmp_path, waits):
    ranges: list[str | None] = []
    httpserver.expect_request("/file.bin").respond_with_handler(range_handler(PAYLOAD, ranges))
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(b"x" * (len(PAYLOAD) + 10))
    download(httpserver.url_for("/file.bin"), dest, sha256=PAYLOAD_SHA, retry=FAST, progress=False)
    assert ranges == [f"bytes={len(PAYLOAD) + 10}-", None]
    assert dest.read_bytes() == PAYLOAD and waits == [0.0]


def test_416_on_complete_part_finishes_without_body(httpserver, tmp_path):
    ranges: list[str | None] = []
    httpserver.expect_request("/file.bin").respond_with_handler(range_handler(PAYLOAD, ranges))
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD)
    download(httpserver.url_for("/file.bin"), dest, sha256=PAYLOAD_SHA, retry=FAST, progress=False)
    assert ranges == [f"bytes={len(PAYLOAD)}-"] and dest.read_bytes() == PAYLOAD


def test_truncated_body_is_resumed(raw_server, tmp_path, waits):
    size = len(PAYLOAD)
    server = raw_server(
        [
            raw_reply("200 OK", PAYLOAD[:4000], Content_Length=str(size)),  # connection closes after 4000 bytes
            raw_reply(
                "206 Partial Content",
                PAYLOAD[4000:],
                Content_Length=str(size - 4000),
                Content_Range=f"bytes 4000-{size - 1}/{size}",
            ),
        ]
    )
    dest = tmp_path / "file.bin"
    record = download(server.url, dest, sha256=PAYLOAD_SHA, retry=FAST, progress=False)
    assert dest.read_bytes() == PAYLOAD and record.sha256 == PAYLOAD_SHA
    assert "range: bytes=4000-" in server.requests[1].lower() and "range:" not in server.requests[0].lower()
    assert len(waits) == 1


def test_truncated_206_resumes_again(raw_server, tmp_path, waits):
    size = len(PAYLOAD)
    server = raw_server(
        [
            raw_reply(
                "206 Partial Content",
                PAYLOAD[1000:2000],
                Content_Length=str(size - 1000),
                Content_Range=f"bytes 1000-{size - 1}/{size}",
            ),
            raw_reply(
                "206 Partial Content",
                PAYLOAD[2000:],
                Content_Length=str(size - 2000),
                Content_Range=f"bytes 2000-{size - 1}/{size}",
            ),
        ]
    )
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:1000])
    assert download(server.url, dest, sha256=PAYLOAD_SHA, retry=FAST, progress=False).size == size
    assert "bytes=1000-" in server.requests[0] and "bytes=2000-" in server.requests[1]


def test_broken_chunked_body_is_resumed(raw_server, tmp_path, waits):
    chunks = b"".join(b"%x\r\n%s\r\n" % (1000, PAYLOAD[i : i + 1000]) for i in range(0, 5000, 1000))
    cut = raw_reply("200 OK", chunks + b"3e8\r\nonly-a-little", Transfer_Encoding="chunked")

    def rest(head: str) -> bytes:
        start = int(head.lower().split("range: bytes=")[1].split("-")[0])
        size = len(PAYLOAD)
        return raw_reply(
            "206 Partial Content",
            PAYLOAD[start:],
            Content_Length=str(size - start),
            Content_Range=f"bytes {start}-{size - 1}/{size}",
        )

    server = raw_server([cut, rest])
    dest = tmp_path / "file.bin"
    assert download(server.url, dest, sha256=PAYLOAD_SHA, retry=FAST, progress=False).sha256 == PAYLOAD_SHA
    assert "range: bytes=" in server.requests[1].lower() and len(waits) == 1


def test_download_gives_up_and_keeps_part_for_later(raw_server, tmp_path, waits):
    cut = raw_reply("200 OK", PAYLOAD[:100], Content_Length=str(len(PAYLOAD)))
    server = raw_server([cut, cut, cut])
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="after 3 tries") as caught:
        download(server.url, dest, retry=FAST, progress=False)
    assert server.url in str(caught.value)
    assert not dest.exists() and (tmp_path / "file.bin.part").stat().st_size == 100


def test_download_5xx_then_success_and_404(httpserver, tmp_path, waits):
    httpserver.expect_oneshot_request("/file.bin").respond_with_data("", status=502)
    httpserver.expect_request("/file.bin").respond_with_data(PAYLOAD)
    download(httpserver.url_for("/file.bin"), tmp_path / "file.bin", retry=FAST, progress=False)
    assert len(waits) == 1
    httpserver.expect_request("/gone.bin").respond_with_data("", status=404)
    with pytest.raises(DownloadError, match="404"):
        download(httpserver.url_for("/gone.bin"), tmp_path / "gone.bin", retry=FAST, progress=False)
    assert not (tmp_path / "gone.bin").exists() and not (tmp_path / "gone.bin.part").exists()
    assert len(waits) == 1


def test_progress_bar_switches(httpserver, tmp_path, capsys, monkeypatch):
    httpserver.expect_request("/file.bin").respond_with_data(PAYLOAD)
    url = httpserver.url_for("/file.bin")
    download(url, tmp_path / "a.bin", retry=FAST, progress=True, description="fetching-a")
    assert "fetching-a" in capsys.readouterr().err
    download(url, tmp_path / "b.bin", retry=FAST, description="fetching-b")  # None: captured stderr is no tty
    monkeypatch.setenv("GNNBENCH_PROGRESS", "0")
    download(url, tmp_path / "c.bin", retry=FAST, progress=True, description="fetching-c")
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
