"""Loopback imitations of the NAIP services, registered on a :class:`~.server.LoopbackPortal`:

- a STAC API search (``/api/stac/v1/search``: GET, ``collections``, ``bbox``, ``datetime``, ``limit``, paged
  with a ``token`` in the ``rel="next"`` link) over items whose COGs are written by :mod:`.cog_fixture`;
- the SAS token endpoint (``/api/sas/v1/token/naip``) issuing ``{"msft:expiry", "token"}`` with a time to live,
  early revocation (:meth:`NaipServer.revoke`) and already-expired tokens (``issue_expired``);
- a blob store (``/blob/naip/...``) serving the COG bytes with Range support, checking the token's ``sig``
  (unknown or expired: HTTP 403 with an Azure-style ``AuthenticationFailed`` XML body);
- the USGS NAIP ImageServer ``exportImage``, rendering the requested UTM box from the same synthetic rasters.

The pixels encode their raster coordinates (:func:`.cog_fixture.coordinate_pixels`), so a client's crops can be
checked for centring. Faults come from ``LoopbackPortal.inject``; the requests from ``portal.requests`` and, with
the byte ranges served, from :attr:`NaipServer.blob_log`.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

import numpy as np

from .cog_fixture import PixelFunction, cog_bytes, coordinate_pixels
from .server import LoopbackPortal, _byte_range

SEARCH_PATH = "/api/stac/v1/search"
SAS_PREFIX = "/api/sas/v1/token/"
BLOB_PREFIX = "/blob/naip/"
IMAGE_SERVER_PATH = "/arcgis/rest/services/USGSNAIPImagery/ImageServer"


@dataclass
class ServedItem:
    """One synthetic NAIP scene: its raster geometry, pixel function and COG bytes."""

    item_id: str
    year: int
    state: str
    epsg: int
    gsd: float
    origin: tuple[float, float]  # upper-left corner (easting, northing)
    shape: tuple[int, int]  # rows, cols
    pixels: PixelFunction = field(repr=False)
    data: bytes = field(repr=False)
    month: int = 7

    @property
    def transform(self) -> list[float]:
        return [self.gsd, 0.0, self.origin[0], 0.0, -self.gsd, self.origin[1]]

    @property
    def blob_path(self) -> str:
        return f"{BLOB_PREFIX}v002/{self.state}/{self.year}/{self.item_id}.tif"

    def contains(self, easting: float, northing: float) -> bool:
        x0, y0 = self.origin
        rows, cols = self.shape
        return x0 <= easting < x0 + cols * self.gsd and y0 - rows * self.gsd < northing <= y0


def make_item(item_id: str, *, lon: float | None = None, lat: float | None = None,
              origin: tuple[float, float] | None = None, year: int = 2020, state: str = "de", epsg: int = 32618,
              gsd: float = 0.6, shape: tuple[int, int] = (1024, 1024), tile: int = 256,
              compression: str = "deflate", bigtiff: bool = False, bands: int = 4,
              pixels: PixelFunction | None = None, month: int = 7) -> ServedItem:
    """A scene of ``shape`` pixels of ``gsd`` metres whose upper-left corner is ``origin`` (easting, northing),
    or centred near (lon, lat) with the origin snapped to the gsd grid."""
    rows, cols = shape
    if origin is None:
        if lon is None or lat is None:
            raise ValueError("make_item needs lon and lat, or origin")
        from pyproj import Transformer

        easting, northing = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
        origin = (round((easting - cols * gsd / 2) / gsd) * gsd, round((northing + rows * gsd / 2) / gsd) * gsd)
    x0, y0 = origin
    pixels = pixels or coordinate_pixels(year, bands)
    data = cog_bytes(width=cols, height=rows, pixels=pixels, bands=bands, epsg=epsg, origin=(x0, y0),
                     pixel_size=gsd, tile=tile, compression=compression, bigtiff=bigtiff)
    return ServedItem(item_id, year, state, epsg, gsd, (x0, y0), shape, pixels, data, month)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str, end: bool) -> float | None:
    text = text.strip()
    if text in ("", ".."):
        return None
    if len(text) == 4 and text.isdigit():
        text = f"{text}-12-31T23:59:59Z" if end else f"{text}-01-01T00:00:00Z"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _json(status: int, document: object) -> tuple[int, str, bytes, dict]:
    return status, "application/json", json.dumps(document).encode(), {}


def _azure_error(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}\n'
            f"RequestId:00000000-0000-0000-0000-000000000000\nTime:{_iso(time.time())}</Message></Error>").encode()


class NaipServer:
    """The STAC, SAS, blob and ImageServer handlers for ``items`` on a running ``portal``."""

    def __init__(self, portal: LoopbackPortal, items: Sequence[ServedItem], *, ttl: float = 3600.0,
                 clock: Callable[[], float] = time.time, default_limit: int = 10) -> None:
        self.portal = portal
        self.items = list(items)
        self.ttl = ttl
        self.clock = clock
        self.default_limit = default_limit
        self.issue_expired = False
        self.ignore_range = False  # serve the whole file with HTTP 200 whatever the Range header says
        self.sas_document: Mapping | None = None  # answer this instead of a token (schema tests)
        self.export_error: Mapping | None = None  # an ArcGIS JSON error answered with HTTP 200
        self.blob_log: list[dict] = []
        self.export_log: list[dict] = []
        self.tokens_issued = 0
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self.features = [self._feature(item) for item in self.items]
        portal.add_handler(SEARCH_PATH, self._search)
        portal.add_handler(SAS_PREFIX, self._sas)
        portal.add_handler(BLOB_PREFIX, self._blob)
        portal.add_handler(IMAGE_SERVER_PATH, self._image_server)

    @property
    def endpoint(self) -> str:
        """The STAC and SAS endpoint (``search_items(endpoint)``, ``SasTokens(endpoint)``)."""
        return self.portal.url

    @property
    def image_server(self) -> str:
        return self.portal.url + IMAGE_SERVER_PATH

    def revoke(self) -> None:
        """Expire every token issued so far (the blob store refuses them from now on)."""
        with self._lock:
            self._tokens = {sig: -math.inf for sig in self._tokens}

    def item(self, item_id: str) -> ServedItem:
        return next(item for item in self.items if item.item_id == item_id)

    # -- STAC -----------------------------------------------------------------------------------
    def _feature(self, item: ServedItem) -> dict:
        from pyproj import Transformer

        rows, cols = item.shape
        x0, y0 = item.origin
        x1, y1 = x0 + cols * item.gsd, y0 - rows * item.gsd
        lons, lats = Transformer.from_crs(item.epsg, 4326, always_xy=True).transform([x0, x1, x1, x0], [y0, y0, y1, y1])
        ring = [[float(lon), float(lat)] for lon, lat in zip(lons, lats)]
        return {
            "type": "Feature", "stac_version": "1.0.0", "id": item.item_id, "collection": "naip",
            "bbox": [min(lons), min(lats), max(lons), max(lats)],
            "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]},
            "properties": {"datetime": f"{item.year}-{item.month:02d}-15T00:00:00Z", "naip:year": str(item.year),
                           "naip:state": item.state, "gsd": item.gsd, "proj:epsg": item.epsg,
                           "proj:shape": [rows, cols], "proj:bbox": [x0, y1, x1, y0],
                           "proj:transform": [*item.transform, 0.0, 0.0, 1.0]},
            "assets": {"image": {"href": self.portal.url + item.blob_path, "roles": ["data"], "title": "RGBIR COG tile",
                                 "type": "image/tiff; application=geotiff; profile=cloud-optimized"}},
            "links": [{"rel": "collection", "href": f"{self.portal.url}/api/stac/v1/collections/naip"}],
        }

    def _search(self, path: str, query: dict, headers: Mapping) -> tuple[int, str, bytes, dict]:
        if path != SEARCH_PATH:
            return _json(404, {"code": "NotFound", "description": path})
        try:
            wanted = set((query.get("collections") or "naip").split(","))
            bbox = [float(v) for v in query["bbox"].split(",")] if query.get("bbox") else None
            start = end = None
            if query.get("datetime"):
                first, _, last = query["datetime"].partition("/")
                start, end = _parse_time(first, False), _parse_time(last or first, True)
            limit = int(query.get("limit") or self.default_limit)
            offset = int(query["token"].split(":", 1)[1]) if query.get("token") else 0
        except (ValueError, KeyError, IndexError) as exc:
            return _json(400, {"code": "BadRequest", "description": str(exc)})
        matches = []
        for feature in self.features:
            if feature.get("collection") not in wanted:
                continue
            w, s, e, n = feature["bbox"]
            if bbox is not None and (e < bbox[0] or w > bbox[2] or n < bbox[1] or s > bbox[3]):
                continue
            when = _parse_time(feature["properties"]["datetime"], False)
            if (start is not None and when < start) or (end is not None and when > end):
                continue
            matches.append(feature)
        page = matches[offset:offset + limit]
        links = [{"rel": "self", "href": f"{self.portal.url}{SEARCH_PATH}?{urlencode(query)}"}]
        if offset + limit < len(matches):
            following = {**query, "token": f"next:{offset + limit}"}
            links.append({"rel": "next", "type": "application/geo+json", "method": "GET",
                          "href": f"{self.portal.url}{SEARCH_PATH}?{urlencode(following)}"})
        return _json(200, {"type": "FeatureCollection", "features": page, "links": links,
                           "context": {"returned": len(page), "limit": limit}})

    # -- SAS ------------------------------------------------------------------------------------
    def _sas(self, path: str, query: dict, headers: Mapping) -> tuple[int, str, bytes, dict]:
        if path[len(SAS_PREFIX):] != "naip":
            return _json(404, {"detail": f"no collection {path[len(SAS_PREFIX):]!r}"})
        if self.sas_document is not None:
            return _json(200, dict(self.sas_document))
        now = self.clock()
        expiry = now - 60.0 if self.issue_expired else now + self.ttl
        with self._lock:
            self.tokens_issued += 1
            sig = f"loopback{self.tokens_issued}"
            self._tokens[sig] = expiry
        token = f"st={quote(_iso(now))}&se={quote(_iso(expiry))}&sp=rl&sv=2024-05-04&sr=c&skoid=loopback&sig={sig}"
        return _json(200, {"msft:expiry": _iso(expiry), "token": token})

    # -- blob store -----------------------------------------------------------------------------
    def _blob(self, path: str, query: dict, headers: Mapping) -> tuple[int, str, bytes, dict]:
        item = next((item for item in self.items if item.blob_path == path), None)
        sig = query.get("sig")
        with self._lock:
            expiry = self._tokens.get(sig or "")
        entry = {"path": path, "range": headers.get("Range"), "sig": sig}
        if expiry is None or expiry <= self.clock():
            entry.update(status=403, served=0)
            self.blob_log.append(entry)
            body = _azure_error("AuthenticationFailed", "Server failed to authenticate the request. Make sure the "
                                "value of Authorization header is formed correctly including the signature.")
            return 403, "application/xml", body, {}
        if item is None:
            entry.update(status=404, served=0)
            self.blob_log.append(entry)
            return 404, "application/xml", _azure_error("BlobNotFound", "The specified blob does not exist."), {}
        span = None if self.ignore_range else _byte_range(headers.get("Range"), len(item.data))
        served = len(item.data) if span is None else span[1] - span[0] + 1
        entry.update(status=200 if span is None else 206, served=served, size=len(item.data))
        self.blob_log.append(entry)
        extra = {} if self.ignore_range else {"Accept-Ranges": "bytes"}
        return 200, "application/octet-stream", item.data, extra

    # -- ImageServer ----------------------------------------------------------------------------
    def _image_server(self, path: str, query: dict, headers: Mapping) -> tuple[int, str, bytes, dict]:
        if path != IMAGE_SERVER_PATH + "/exportImage":
            return _json(200, {"error": {"code": 404, "message": f"no operation at {path}", "details": []}})
        self.export_log.append(dict(query))
        if self.export_error is not None:
            return _json(200, {"error": dict(self.export_error)})

        def error(detail: str) -> tuple[int, str, bytes, dict]:
            return _json(200, {"error": {"code": 400, "message": "Unable to complete operation.",
                                         "details": [detail]}})

        try:
            xmin, ymin, xmax, ymax = (float(v) for v in query["bbox"].split(","))
            width, height = (int(v) for v in query["size"].split(","))
            bands = [int(v) for v in query.get("bandIds", "0,1,2").split(",")]
        except (KeyError, ValueError) as exc:
            return error(f"invalid bbox, size or bandIds: {exc}")
        if query.get("bboxSR") != query.get("imageSR"):
            return error(f"bboxSR {query.get('bboxSR')} differs from imageSR {query.get('imageSR')}")
        if query.get("f") != "image" or query.get("format", "png") != "png":
            return error("this loopback server answers f=image, format=png only")
        if not (0 < width <= 4000 and 0 < height <= 4000):
            return error(f"size {width},{height} out of range")
        stretched = abs((xmax - xmin) * height - (ymax - ymin) * width) > 1e-6
        if query.get("adjustAspectRatio", "true") != "false" and stretched:
            return error("adjustAspectRatio must be false when the box and the size differ in shape")
        epsg = int(query["bboxSR"])
        xs = xmin + (np.arange(width) + 0.5) * (xmax - xmin) / width
        ys = ymax - (np.arange(height) + 0.5) * (ymax - ymin) / height
        image = np.zeros((height, width, len(bands)), dtype=np.uint8)
        cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
        item = next((item for item in self.items if item.epsg == epsg and item.contains(cx, cy)), None)
        if item is not None:
            rows, cols = item.shape
            col = np.floor((xs - item.origin[0]) / item.gsd).astype(np.int64)
            row = np.floor((item.origin[1] - ys) / item.gsd).astype(np.int64)
            grid_rows, grid_cols = np.meshgrid(row, col, indexing="ij")
            inside = (grid_cols >= 0) & (grid_cols < cols) & (grid_rows >= 0) & (grid_rows < rows)
            values = item.pixels(np.clip(grid_cols, 0, cols - 1), np.clip(grid_rows, 0, rows - 1))
            image = np.where(inside[..., None], values[..., bands], 0).astype(np.uint8)
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if len(bands) == 1 else image).save(buffer, "PNG")
        return 200, "image/png", buffer.getvalue(), {}
