"""A loopback HTTP server that imitates the public sources: Socrata, ArcGIS REST, Overpass, static files.

Socrata datasets answer ``/resource/{id}.json``, ``.geojson`` and ``.csv`` (paged with ``$limit`` and
``$offset``) and ``/api/views/{id}.json``; ArcGIS layers answer ``?f=json`` metadata and ``/query``
for object ids and id batches, as ``f=json`` or ``f=geojson``.

Used by ``gnnbench quickstart`` (to build the demo region through the real download code,
without network) and by the tests, which also inject faults: HTTP errors, 429 with
Retry-After, truncated bodies and corrupted bytes, consumed one per matching request.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Fault:
    """One injected failure: ``kind`` is ``"status"`` (reply ``status``, with ``retry_after`` if given),
    ``"truncate"`` (announce the full length, send half, close) or ``"corrupt"`` (flip the body's bytes)."""

    kind: str
    status: int = 500
    retry_after: float | None = None


log = logging.getLogger(__name__)

#: ``handler(path, query, request_headers) -> (status, content_type, body, extra_headers)``
Handler = Callable[[str, dict, Mapping[str, str]], tuple[int, str, bytes, dict]]


class _QuietServer(ThreadingHTTPServer):
    """A threading server that logs a failed request instead of printing its traceback to stderr."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):  # the client hung up: expected with keep-alive
            log.debug("loopback portal: %s from %s", error, client_address)
        else:
            log.warning("loopback portal: request from %s failed", client_address, exc_info=True)


_OVERPASS_STATUS = ("Connected as: 1\nCurrent time: 2026-01-01T00:00:00Z\nAnnounced endpoint: none\n"
                    "Rate limit: 2\n2 slots available now.\nCurrently running queries (pid, space limit, "
                    "time limit, start time):\n")


class LoopbackPortal:
    """Routes plus faults behind a ``ThreadingHTTPServer`` on 127.0.0.1 (use as a context manager)."""

    def __init__(self) -> None:
        self._static: dict[str, tuple[bytes, str]] = {}
        self._dynamic: dict[str, Any] = {}
        self._faults: dict[str, list[Fault]] = {}
        self._handlers: list[tuple[str, Handler]] = []
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None

    # -- routes ---------------------------------------------------------------------------
    def add_file(self, path: str, body: bytes | str, content_type: str = "application/octet-stream") -> None:
        """Serve ``body`` at ``path`` (honouring ``Range: bytes=N-``)."""
        self._static[path] = (body.encode() if isinstance(body, str) else body, content_type)

    def add_json(self, path: str, document: Any) -> None:
        """Serve a JSON document at ``path`` (whatever the query string)."""
        self.add_file(path, json.dumps(document), "application/json")

    def add_socrata(self, dataset_id: str, rows: Sequence[dict], columns: dict[str, str],
                    drop_columns: Sequence[str] = ()) -> None:
        """A Socrata dataset: ``/api/views/{id}.json`` metadata and ``/resource/{id}.json|.geojson|.csv``.

        The resources page with ``$limit``/``$offset``. ``drop_columns`` imitates a portal whose schema
        lost columns (from the rows and the metadata).
        """
        gone = set(drop_columns)
        kept_rows = [{key: value for key, value in row.items() if key not in gone} for row in rows]
        fields = [key for key in columns if key not in gone]
        self.add_json(f"/api/views/{dataset_id}.json", {
            "id": dataset_id, "columns": [{"fieldName": key, "name": columns[key]} for key in fields]})
        for suffix in ("json", "geojson", "csv"):
            self._dynamic[f"/resource/{dataset_id}.{suffix}"] = (f"socrata-{suffix}", (kept_rows, fields))

    def add_arcgis_layer(self, path: str, features: Sequence[dict], *, max_record_count: int = 1000,
                         oid_field: str = "OBJECTID", metadata: dict | None = None) -> None:
        """An ArcGIS feature layer at ``path`` (metadata, ``/query`` for ids and for id batches)."""
        by_id = {feature["attributes"][oid_field]: feature for feature in features}
        self._dynamic[path.rstrip("/")] = ("arcgis-meta", {"maxRecordCount": max_record_count,
                                                           "objectIdField": oid_field, "name": path,
                                                           **(metadata or {})})
        self._dynamic[path.rstrip("/") + "/query"] = ("arcgis-query", (by_id, oid_field))

    def add_overpass(self, document: dict, prefix: str = "/api") -> None:
        """An Overpass API answering every query with ``document`` (and a status page osmnx reads)."""
        self.add_file(f"{prefix}/status", _OVERPASS_STATUS, "text/plain")
        self.add_json(f"{prefix}/interpreter", document)

    def add_handler(self, prefix: str, handler: Handler) -> None:
        """Answer every path starting with ``prefix`` with ``handler(path, query, headers)``, which returns
        ``(status, content_type, body, extra_headers)``; faults, the request log and Range apply as elsewhere."""
        self._handlers.append((prefix, handler))

    def inject(self, path: str, *faults: Fault) -> None:
        """Fail the next requests to ``path`` (prefix match) with ``faults``, one per request, in order."""
        with self._lock:
            self._faults.setdefault(path, []).extend(faults)

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the loopback portal is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackPortal:
        portal = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                portal._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                portal._handle(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        # serve_forever's default 0.5 s poll made every shutdown (each demo build, each loopback test) wait 0.5 s
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._server = None

    # -- request handling -----------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(request.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        if method == "POST":
            length = int(request.headers.get("Content-Length") or 0)
            body = request.rfile.read(length).decode() if length else ""
            if "application/x-www-form-urlencoded" in (request.headers.get("Content-Type") or ""):
                query.update({key: values[-1] for key, values in parse_qs(body).items()})
        path = parts.path
        with self._lock:
            self.requests.append((method, request.path))
            fault = next((faults.pop(0) for prefix, faults in self._faults.items()
                          if path.startswith(prefix) and faults), None)
        status, content_type, payload, extra = self._route(path, query, request)
        if fault is not None and fault.kind == "status":
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            return _reply(request, fault.status, "text/plain", b"injected failure", headers)
        if fault is not None and fault.kind == "corrupt":
            payload = bytes(byte ^ 0xFF for byte in payload[:64]) + payload[64:]
        if fault is not None and fault.kind == "truncate":
            request.send_response(status)
            request.send_header("Content-Type", content_type)
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            request.wfile.write(payload[: len(payload) // 2])
            request.wfile.flush()
            request.close_connection = True
            return None
        headers = dict(extra)
        if status == 200 and (path in self._static or extra.get("Accept-Ranges") == "bytes"):
            span = _byte_range(request.headers.get("Range"), len(payload))
            if span is not None:
                start, end = span
                headers["Content-Range"] = f"bytes {start}-{end}/{len(payload)}"
                payload, status = payload[start:end + 1], 206
        return _reply(request, status, content_type, payload, headers)

    def _route(self, path: str, query: dict[str, str], request) -> tuple[int, str, bytes, dict[str, str]]:
        if path in self._static:
            body, content_type = self._static[path]
            return 200, content_type, body, {}
        for prefix, handler in self._handlers:
            if path.startswith(prefix):
                return handler(path, query, request.headers)
        return (*self._route_dynamic(path, query), {})

    def _route_dynamic(self, path: str, query: dict[str, str]) -> tuple[int, str, bytes]:
        kind, data = self._dynamic.get(path, (None, None))
        if kind is not None and kind.startswith("socrata-"):
            rows, fields = data
            limit = int(query.get("$limit", 1000))
            offset = int(query.get("$offset", 0))
            page = rows[offset: offset + limit]
            if kind == "socrata-csv":
                return 200, "text/csv", socrata_csv(page, fields).encode()
            if kind == "socrata-geojson":
                return 200, "application/geo+json", json.dumps(socrata_geojson(page)).encode()
            return 200, "application/json", json.dumps(page).encode()
        if kind == "arcgis-meta":
            return 200, "application/json", json.dumps(data).encode()
        if kind == "arcgis-query":
            by_id, oid_field = data
            if query.get("returnIdsOnly") == "true":
                document = {"objectIdFieldName": oid_field, "objectIds": sorted(by_id)}
            else:
                wanted = [int(item) for item in query.get("objectIds", "").split(",") if item]
                features = [by_id[item] for item in wanted if item in by_id]
                if query.get("f") == "geojson":
                    document = {"type": "FeatureCollection",
                                "features": [arcgis_to_geojson(item, oid_field) for item in features]}
                else:
                    document = {"objectIdFieldName": oid_field, "features": features}
            return 200, "application/json", json.dumps(document).encode()
        return 404, "application/json", json.dumps({"error": f"no route for {path}"}).encode()


def _byte_range(header: str | None, length: int) -> tuple[int, int] | None:
    """``(first, last)`` byte of a ``Range: bytes=a-b`` or ``bytes=a-`` header within ``length`` (None: whole)."""
    if not header or not header.startswith("bytes="):
        return None
    first, _, last = header[len("bytes="):].partition("-")
    try:
        start = int(first)
        end = int(last) if last.strip() else length - 1
    except ValueError:
        return None
    end = min(end, length - 1)
    if not 0 <= start <= end or (start == 0 and end == length - 1):
        return None
    return start, end


def _reply(request: BaseHTTPRequestHandler, status: int, content_type: str, payload: bytes,
           headers: dict[str, str]) -> None:
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(payload)))
    for key, value in headers.items():
        request.send_header(key, value)
    request.end_headers()
    request.wfile.write(payload)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def arcgis_to_geojson(feature: dict, oid_field: str = "OBJECTID") -> dict:
    """An ArcGIS JSON feature as ``f=geojson`` returns it: ``id``, ``properties``, a GeoJSON geometry (or null)."""
    geometry = feature.get("geometry") or {}
    shape = None
    if "x" in geometry:
        x, y = _number(geometry.get("x")), _number(geometry.get("y"))
        shape = None if x is None or y is None else {"type": "Point", "coordinates": [x, y]}
    elif geometry.get("paths"):
        paths = geometry["paths"]
        shape = ({"type": "LineString", "coordinates": paths[0]} if len(paths) == 1
                 else {"type": "MultiLineString", "coordinates": paths})
    attributes = feature.get("attributes") or {}
    return {"type": "Feature", "id": attributes.get(oid_field), "geometry": shape, "properties": dict(attributes)}


def _is_point(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "Point"


def socrata_geojson(rows: Sequence[dict]) -> dict:
    """SODA rows as ``/resource/{id}.geojson`` returns them: the point column becomes the geometry."""
    features = []
    for row in rows:
        point = next((value for value in row.values() if _is_point(value)), None)
        properties = {key: value for key, value in row.items() if not _is_point(value)}
        features.append({"type": "Feature", "geometry": point, "properties": properties})
    return {"type": "FeatureCollection", "features": features}


def socrata_csv(rows: Sequence[dict], fields: Sequence[str]) -> str:
    """SODA rows as ``/resource/{id}.csv`` returns them: API field names, points as WKT, nulls empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    for row in rows:
        values = []
        for name in fields:
            value = row.get(name)
            if _is_point(value):
                x, y = value["coordinates"][:2]
                value = f"POINT ({x} {y})"
            values.append("" if value is None else value)
        writer.writerow(values)
    return buffer.getvalue()

