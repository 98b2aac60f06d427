"""Native-resolution NAIP from the Planetary Computer: crop geometry in UTM, the item (year) choice, windows read
from COG blocks, and the ranged HTTP reads that fetch those blocks with SAS-signed URLs.

Positions follow the pixel-centre convention: the centre of raster pixel (col, row) is at integer (col, row),
so a point at easting E lies at ``col = (E - c0) / a - 0.5`` for ``proj:transform`` [a, 0, c0, 0, e, f0]. A crop
of ``size_px`` pixels covering ``footprint_m`` metres is centred on the target: when the footprint equals
``size_px`` native pixels it is a pure slice snapped to the nearest pixel (the target then lies within half a pixel
of the crop's centre; the offset is recorded), otherwise the window is resampled bilinearly (antialiased when
downscaling) so that every crop has the same ground footprint whatever the item's gsd (0.3, 0.6 or 1 m).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import requests

from ....io.http import DownloadError, RetryPolicy, TransientError, make_session, send, with_retries
from ....io.offline import refuse_offline
from ..cog import (HEADER_BYTES, CogError, CogInfo, CogLevel, GetBlock, blocks_for_window, decode_block, parse_cog,
                   read_window)
from .sas import SasTokens
from .stac import NaipItem

log = logging.getLogger(__name__)

_local = threading.local()


def utm_transformer(epsg: int, inverse: bool = False):
    """A cached (per thread: pyproj transformers are not thread-safe) lon/lat <-> ``epsg`` transformer."""
    from pyproj import Transformer

    cache = getattr(_local, "transformers", None)
    if cache is None:
        cache = _local.transformers = {}
    key = (epsg, inverse)
    if key not in cache:
        source, target = (epsg, 4326) if inverse else (4326, epsg)
        cache[key] = Transformer.from_crs(source, target, always_xy=True)
    return cache[key]


def _pixel_size(item: NaipItem) -> float:
    a, b, _c, d, e, _f = item.transform
    return math.hypot(a, d) if b == 0 and d == 0 else math.sqrt(abs(a * e - b * d))


def utm_position(item: NaipItem, lon: float, lat: float) -> tuple[float, float]:
    """The continuous (col, row) of (lon, lat) in the item's full-resolution raster, pixel-centre convention."""
    easting, northing = utm_transformer(item.epsg).transform(lon, lat)
    a, b, c, d, e, f = item.transform
    det = a * e - b * d
    x, y = easting - c, northing - f
    return (e * x - b * y) / det - 0.5, (a * y - d * x) / det - 0.5


@dataclass(frozen=True)
class CropWindow:
    """The pixels to read for one crop, and how to turn them into the crop."""

    col0: int  # window of the level to read: columns [col0, col0 + width), rows [row0, row0 + height)
    row0: int
    width: int
    height: int
    mode: str  # "slice" (the window is the crop) or "bilinear"
    scale: float  # source pixels per crop pixel
    col: float  # the target, continuous (pixel-centre) coordinates in the level
    row: float
    dx: float  # slice: target minus crop centre in pixels (east/south positive, |dx|, |dy| <= 0.5); else 0
    dy: float
    size: int


def crop_window(item: NaipItem, lon: float, lat: float, size_px: int, footprint_m: float,
                level_shape: tuple[int, int] | None = None) -> CropWindow:
    """The window of the raster (the full resolution, or the level of ``level_shape`` (rows, cols)) that a crop
    of ``size_px`` pixels and ``footprint_m`` metres centred on (lon, lat) needs."""
    if size_px <= 0 or footprint_m <= 0:
        raise ValueError(f"crop size and footprint must be positive, got {size_px} px, {footprint_m} m")
    col, row = utm_position(item, lon, lat)
    rows, cols = item.shape
    level_rows, level_cols = level_shape or item.shape
    sx, sy = level_cols / cols, level_rows / rows
    col, row = (col + 0.5) * sx - 0.5, (row + 0.5) * sy - 0.5
    pixel = _pixel_size(item) / sx
    scale = footprint_m / (size_px * pixel)
    if abs(scale - 1.0) <= 1e-6 and abs(sx - sy) <= 1e-9:
        col0 = math.floor(col + 0.5 - size_px / 2 + 0.5)
        row0 = math.floor(row + 0.5 - size_px / 2 + 0.5)
        return CropWindow(col0, row0, size_px, size_px, "slice", 1.0, col, row,
                          col + 0.5 - (col0 + size_px / 2), row + 0.5 - (row0 + size_px / 2), size_px)
    support = max(scale, 1.0)
    first = (0.5 - size_px / 2) * scale
    last = (size_px - 0.5 - size_px / 2) * scale
    col0 = math.floor(col + first - support) + 1
    row0 = math.floor(row + first - support) + 1
    col1 = math.ceil(col + last + support) - 1
    row1 = math.ceil(row + last + support) - 1
    return CropWindow(col0, row0, col1 - col0 + 1, row1 - row0 + 1, "bilinear", scale, col, row, 0.0, 0.0, size_px)


def _weights(centre: float, start: int, count: int, size: int, scale: float, valid: tuple[int, int]) -> np.ndarray:
    """``(size, count)`` triangle-filter weights (bilinear; widened to ``scale`` pixels when downscaling) of the
    source pixels start..start+count-1 for each output pixel; pixels outside ``valid`` get no weight."""
    support = max(scale, 1.0)
    positions = centre + (np.arange(size) + 0.5 - size / 2) * scale
    sources = start + np.arange(count)
    weights = np.clip(1.0 - np.abs(sources[None, :] - positions[:, None]) / support, 0.0, None)
    weights[:, (sources < valid[0]) | (sources >= valid[1])] = 0.0
    total = weights.sum(axis=1, keepdims=True)
    return weights / np.where(total > 0, total, 1.0)


def resample(window: np.ndarray, crop: CropWindow, raster_shape: tuple[int, int] | None = None) -> np.ndarray:
    """The ``(size, size, bands)`` uint8 crop from the pixels of ``crop``'s window (``raster_shape`` (rows, cols):
    the level's size, so that pixels beyond the raster's edge are left out of the filter)."""
    if crop.mode == "slice":
        return window
    rows, cols = raster_shape or (1 << 62, 1 << 62)
    wx = _weights(crop.col, crop.col0, crop.width, crop.size, crop.scale, (0, cols))
    wy = _weights(crop.row, crop.row0, crop.height, crop.size, crop.scale, (0, rows))
    out = np.einsum("ij,jkc,lk->ilc", wy.astype(np.float32), window.astype(np.float32), wx.astype(np.float32),
                    optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def choose_level(info: CogInfo, item: NaipItem, size_px: int, footprint_m: float) -> int:
    """The coarsest level (index into ``info.levels``) whose pixels are still no larger than the crop's."""
    wanted = footprint_m / size_px
    best = 0
    for index, level in enumerate(info.levels):
        if _pixel_size(item) * item.shape[1] / level.width <= wanted * (1 + 1e-6):
            best = index
    return best


def blocks_for_crop(item: NaipItem, level: CogLevel, lon: float, lat: float, size_px: int,
                    footprint_m: float) -> list[tuple[int, int]]:
    """The ``(block_row, block_col)`` of ``level`` that the crop centred on (lon, lat) reads (for planning)."""
    crop = crop_window(item, lon, lat, size_px, footprint_m, (level.height, level.width))
    return blocks_for_window(level, crop.col0, crop.row0, crop.col0 + crop.width, crop.row0 + crop.height)


def read_crop(item: NaipItem, level: CogLevel, get_block: GetBlock, lon: float, lat: float, size_px: int,
              footprint_m: float, *, bands: Sequence[int] = (0, 1, 2)) -> tuple[np.ndarray, dict[str, Any]]:
    """The crop centred on (lon, lat), ``(size_px, size_px, len(bands))`` uint8 (RGB by default), read from
    ``level`` of the item's COG through ``get_block``, and what it is (item, year, mode, offsets)."""
    if max(bands) >= level.samples:
        raise CogError(f"{item.href}: bands {tuple(bands)} requested, the COG has {level.samples} samples")
    crop = crop_window(item, lon, lat, size_px, footprint_m, (level.height, level.width))
    window = read_window(level, get_block, crop.col0, crop.row0, crop.width, crop.height)[..., list(bands)]
    image = resample(window, crop, (level.height, level.width))
    info = {"item_id": item.id, "year": item.year, "acquired": item.datetime, "gsd": item.gsd,
            "m_per_px": footprint_m / size_px, "mode": crop.mode, "dx": round(crop.dx, 4), "dy": round(crop.dy, 4),
            "level": level.ifd, "window": [crop.col0, crop.row0, crop.width, crop.height]}
    return image, info


# --------------------------------------------------------------------------- item choice


def year_rank(year: int, years: tuple[int, int] | None) -> tuple[int, float, int]:
    """The year policy's sort key (smaller is better): distance to [y0, y1] (0 inside), then distance to the
    middle of the range, then the later year."""
    if years is None:
        return 0, 0.0, -year
    first, last = years
    distance = 0 if first <= year <= last else min(abs(year - first), abs(year - last))
    return distance, abs(year - (first + last) / 2), -year


class ItemIndex:
    """Items with their lon/lat boxes as arrays (a fast first filter) and their footprints parsed once."""

    def __init__(self, items: Iterable[NaipItem]) -> None:
        self.items = list(items)
        self._boxes = np.array([item.bbox for item in self.items], dtype=np.float64).reshape(-1, 4)
        self._footprints: dict[str, Any] = {}

    def footprint(self, item: NaipItem):
        if item.id not in self._footprints:
            from shapely.geometry import shape

            self._footprints[item.id] = shape(json.loads(item.footprint)) if item.footprint else None
        return self._footprints[item.id]

    def near(self, lon: float, lat: float) -> list[NaipItem]:
        boxes = self._boxes
        hit = (boxes[:, 0] <= lon) & (lon <= boxes[:, 2]) & (boxes[:, 1] <= lat) & (lat <= boxes[:, 3])
        return [self.items[i] for i in np.flatnonzero(hit)]


def coverage_margin(item: NaipItem, lon: float, lat: float, footprint_m: float, footprint=None) -> float | None:
    """Metres from the crop square around (lon, lat) to the raster's edge, or None when the square is not
    inside the raster (or, when given, inside the item's lon/lat ``footprint`` polygon)."""
    easting, northing = utm_transformer(item.epsg).transform(lon, lat)
    half = footprint_m / 2
    xmin, ymin, xmax, ymax = item.extent
    margin = min(easting - half - xmin, xmax - easting - half, northing - half - ymin, ymax - northing - half)
    if margin < 0:
        return None
    if footprint is not None:
        from shapely.geometry import Polygon

        xs = [easting - half, easting + half, easting + half, easting - half]
        ys = [northing - half, northing - half, northing + half, northing + half]
        lons, lats = utm_transformer(item.epsg, inverse=True).transform(xs, ys)
        if not footprint.covers(Polygon(zip(lons, lats))):
            return None
    return margin


def choose_item(items: Sequence[NaipItem] | ItemIndex, lon: float, lat: float, footprint_m: float,
                years: tuple[int, int] | None = None) -> NaipItem | None:
    """The item for a crop: among the items containing the whole crop square, the best by the year policy
    (:func:`year_rank`), then the finer gsd, then the larger margin to the edge; None when none covers it."""
    index = items if isinstance(items, ItemIndex) else ItemIndex(items)
    best, best_key = None, None
    for item in index.near(lon, lat):
        margin = coverage_margin(item, lon, lat, footprint_m, index.footprint(item))
        if margin is None:
            continue
        key = (*year_rank(item.year, years), item.gsd, -margin)
        if best_key is None or key < best_key:
            best, best_key = item, key
    return best


# --------------------------------------------------------------------------- ranged reads


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``(first byte, total size)`` of a ``Content-Range: bytes a-b/total`` header (None where unknown)."""
    if not value or not value.startswith("bytes ") or "/" not in value:
        return None, None
    span, total = value[len("bytes "):].split("/", 1)
    first = span.split("-", 1)[0].strip()
    return (int(first) if first.isdigit() else None), (int(total) if total.strip().isdigit() else None)


class BlockFetcher:
    """Raw COG bytes by HTTP Range requests (``Range: bytes=o-(o+n-1)``, 206 required) through
    :mod:`gnnbench.io.http` (retries, offline mode), with SAS-signed URLs: on HTTP 403 the token is invalidated
    and the request tried once more. Headers are parsed with :mod:`..cog` and kept per href.
    Thread-safe; ``requests``, ``bytes`` and ``auth_retries`` count the traffic."""

    def __init__(self, tokens: SasTokens | None = None, *, session: requests.Session | None = None,
                 retry: RetryPolicy = RetryPolicy(), header_bytes: int = HEADER_BYTES,
                 max_request_bytes: int = 8 << 20) -> None:
        self.tokens = tokens
        self.retry = retry
        self.header_bytes = header_bytes
        self.max_request_bytes = max_request_bytes
        self._session = session
        self._local = threading.local()
        self._owned: list[requests.Session] = []
        self._lock = threading.Lock()
        self._headers: dict[str, CogInfo] = {}
        self.requests = 0
        self.bytes = 0
        self.auth_retries = 0

    def _active_session(self) -> requests.Session:
        if self._session is not None:
            return self._session
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = make_session()
            with self._lock:
                self._owned.append(session)
        return session

    def close(self) -> None:
        """Close the sessions this fetcher opened."""
        with self._lock:
            for session in self._owned:
                session.close()
            self._owned.clear()

    def _ranged_get(self, url: str, href: str, offset: int, length: int) -> bytes:
        last = offset + length - 1
        what = f"GET {href} bytes={offset}-{last}"

        def attempt() -> bytes:
            with self._lock:
                self.requests += 1
            response = send(self._active_session(), "GET", url, retry=self.retry,
                            headers={"Range": f"bytes={offset}-{last}"}, stream=True)
            try:
                status = response.status_code
                if status == 206:
                    first, total = _content_range(response.headers.get("Content-Range"))
                    if first is not None and first != offset:
                        raise DownloadError(f"{what}: the server sent bytes from {first}", url=href, status=206)
                    expected = min(length, total - offset) if total is not None else length
                elif status == 200:
                    size = int(response.headers.get("Content-Length") or -1)
                    if offset != 0 or not 0 <= size <= length:
                        raise DownloadError(
                            f"{what}: the server ignored the Range header (HTTP 200, "
                            f"{size if size >= 0 else 'unknown'} bytes); refusing to download the whole file",
                            url=href, status=200)
                    expected = size
                else:
                    raise DownloadError(f"{what}: HTTP {status}, expected 206 Partial Content", url=href, status=status)
                try:
                    body = response.content
                except requests.RequestException as exc:
                    raise TransientError(f"body cut short: {type(exc).__name__}") from exc
                if len(body) != expected:
                    raise TransientError(f"body has {len(body)} bytes, expected {expected}")
            finally:
                response.close()
            with self._lock:
                self.bytes += len(body)
            return body

        return with_retries(what, href, self.retry, attempt)

    def read_range(self, href: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``href`` from ``offset`` (fewer at the end of the file)."""
        if length <= 0:
            return b""
        refuse_offline(href)
        token = self.tokens.token() if self.tokens is not None else None
        for attempt in range(2):
            url = self.tokens.sign(href, token) if token else href
            try:
                return self._ranged_get(url, href, offset, length)
            except DownloadError as exc:
                if exc.status != 403 or self.tokens is None:
                    if url == href:
                        raise
                    # name the file, not the signed URL (keep the token out of messages and logs)
                    raise DownloadError(str(exc).replace(url, href), url=href, status=exc.status) from exc
                if attempt == 1:
                    raise DownloadError(f"GET {href}: HTTP 403 again after a SAS token refresh "
                                        f"({self.tokens.url}); the blob store refuses the new token",
                                        url=href, status=403) from exc
                log.info("%s: HTTP 403 (expired or revoked SAS token?); refreshing the token", href)
                with self._lock:
                    self.auth_retries += 1
                self.tokens.invalidate(token)
                token = self.tokens.token()
        raise AssertionError("unreachable")

    def header(self, href: str) -> CogInfo:
        """The parsed COG header of ``href`` (fetched once per fetcher)."""
        with self._lock:
            info = self._headers.get(href)
        if info is None:
            info = parse_cog(lambda offset, length: self.read_range(href, offset, length), source=href,
                             first_bytes=self.header_bytes)
            with self._lock:
                self._headers[href] = info
        return info

    def blocks(self, href: str, level: CogLevel, keys: Iterable[tuple[int, int]],
               max_gap: int = 0) -> dict[tuple[int, int], bytes | None]:
        """The raw bytes of blocks ``keys`` ((block_row, block_col)) of ``level``; blocks lying back to back
        in the file (at most ``max_gap`` bytes apart) are read with one request. Sparse blocks give None."""
        spans = sorted((level.block_range(*key), key) for key in set(keys))
        out: dict[tuple[int, int], bytes | None] = {key: None for (_, length), key in spans if length == 0}
        run: list[tuple[tuple[int, int], tuple[int, int]]] = []

        def flush() -> None:
            if not run:
                return
            start = run[0][0][0]
            end = run[-1][0][0] + run[-1][0][1]
            data = self.read_range(href, start, end - start)
            if len(data) < end - start:
                raise CogError(f"{href}: blocks end at byte {end}, beyond the end of the file ({start + len(data)})")
            for (offset, length), key in run:
                out[key] = data[offset - start: offset - start + length]
            run.clear()

        for (offset, length), key in spans:
            if length == 0:
                continue
            if run:
                run_start, run_end = run[0][0][0], run[-1][0][0] + run[-1][0][1]
                if not 0 <= offset - run_end <= max_gap or offset + length - run_start > self.max_request_bytes:
                    flush()
            run.append(((offset, length), key))
        flush()
        return out

    def crop(self, item: NaipItem, lon: float, lat: float, size_px: int, footprint_m: float, *,
             level: int | None = None, bands: Sequence[int] = (0, 1, 2)) -> tuple[np.ndarray, dict[str, Any]]:
        """One crop straight from the item's COG (header, the blocks it needs, :func:`read_crop`)."""
        info = self.header(item.href)
        check_header(item, info)
        chosen = info.levels[choose_level(info, item, size_px, footprint_m) if level is None else level]
        raw = self.blocks(item.href, chosen, blocks_for_crop(item, chosen, lon, lat, size_px, footprint_m))

        def get_block(block_row: int, block_col: int) -> np.ndarray | None:
            data = raw[(block_row, block_col)]
            return None if data is None else decode_block(
                chosen, data, where=f"{item.href} (IFD {chosen.ifd}, block {block_row},{block_col})")

        return read_crop(item, chosen, get_block, lon, lat, size_px, footprint_m, bands=bands)


def check_header(item: NaipItem, info: CogInfo) -> None:
    """Fail when the COG disagrees with its STAC item (size, EPSG, origin): the positions would be wrong."""
    full = info.full
    if (full.height, full.width) != tuple(item.shape):
        raise CogError(f"{item.href}: the COG is {full.height} x {full.width} pixels, its STAC item {item.id!r} says "
                       f"proj:shape {list(item.shape)}")
    if info.epsg is not None and info.epsg != item.epsg:
        raise CogError(f"{item.href}: the COG's GeoKeyDirectory (34735) says EPSG:{info.epsg}, its STAC item "
                       f"{item.id!r} says proj:epsg {item.epsg}")
    if info.transform is not None:
        pixel = _pixel_size(item)
        if max(abs(p - q) for p, q in zip(info.transform, item.transform)) > 0.01 * pixel:
            raise CogError(f"{item.href}: the COG's geotransform {info.transform} differs from its STAC item "
                           f"{item.id!r} proj:transform {list(item.transform)}")
