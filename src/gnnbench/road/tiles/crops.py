"""Crops centred on a point, stitched from Web-Mercator tiles in the cache.

A crop of ``size_px`` pixels at zoom ``z`` is either a pure slice of the stitched tiles (``ratio == 1``: the
source's native resolution, no interpolation) or resampled so that it covers ``footprint_m`` metres
(Pillow's antialiased bilinear filter over the exact source window). The point lies within half a pixel of
the crop's centre; the offset ``(dx, dy)`` in output pixels is recorded with each crop.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .cache import TileCache, TileKey
from .geometry import TILE_SIZE, tile_span
from .validate import decode_rgb, worst

FORMATS = ("png", "jpg")
TARGETS = ("nodes", "nodes+edges")


@dataclass(frozen=True)
class CropSpec:
    """What each crop is: ``size_px`` square, covering ``footprint_m`` metres (None: the source's default; for an
    XYZ source, its native resolution at ``zoom``), centred on every node (and edge midpoint with
    ``targets="nodes+edges"``), stored as lossless PNG (or JPEG, quality 95)."""

    size_px: int = 256
    footprint_m: float | None = None
    zoom: int | None = None
    targets: str = "nodes"
    format: str = "png"

    def __post_init__(self) -> None:
        if not 16 <= self.size_px <= 2048:
            raise ValueError(f"crop size must be 16..2048 px, got {self.size_px}")
        if self.footprint_m is not None and not 1.0 <= self.footprint_m <= 10_000:
            raise ValueError(f"crop footprint must be 1..10000 m, got {self.footprint_m}")
        if self.targets not in TARGETS:
            raise ValueError(f"crop targets must be one of {TARGETS}, got {self.targets!r}")
        if self.format not in FORMATS:
            raise ValueError(f"crop format must be one of {FORMATS}, got {self.format!r}")


def window(x: float, y: float, size_px: int, ratio: float) -> tuple[float, float, float, float]:
    """The source window ``(x0, y0, x1, y1)`` in global pixels of a crop centred on ``(x, y)``.

    Native crops (``ratio == 1``) snap to whole pixels: the window whose centre is nearest the point, so the
    point lies within half a pixel of the crop's centre (for any size, odd or even).
    """
    if ratio == 1.0:
        x0 = math.floor(x - size_px / 2 + 0.5)
        y0 = math.floor(y - size_px / 2 + 0.5)
        return x0, y0, x0 + size_px, y0 + size_px
    half = ratio * size_px / 2
    return x - half, y - half, x + half, y + half


def tiles_of_window(zoom: int, x0: float, y0: float, x1: float, y1: float, *, pad: int = 0) -> list[TileKey]:
    """Tiles under a source window (``pad`` extra source pixels on each side for the resampling filter)."""
    first, last = tile_span(np.array([x0 - pad, y0 - pad]), np.array([x1 + pad, y1 + pad]))
    (tx0, ty0), (tx1, ty1) = first.tolist(), last.tolist()
    limit = 2 ** zoom - 1
    return [(zoom, tx, ty) for ty in range(max(0, ty0), min(limit, ty1) + 1)
            for tx in range(max(0, tx0), min(limit, tx1) + 1)]


def filter_pad(ratio: float) -> int:
    """Source pixels beyond the window that an antialiased bilinear filter reads."""
    return 0 if ratio == 1.0 else int(math.ceil(max(1.0, ratio))) + 1


def decode_tile(key: TileKey, data: bytes) -> np.ndarray:
    """A Web-Mercator tile's RGB pixels (:class:`ValueError` when undecodable or not 256 px)."""
    rgb = decode_rgb(data)
    if rgb.shape[:2] != (TILE_SIZE, TILE_SIZE):
        raise TileSizeError(f"tile {key}: {rgb.shape[1]} x {rgb.shape[0]} px; gnnbench reads {TILE_SIZE}-px "
                            f"Web-Mercator tiles (use the service's 256-px endpoint, not @2x/512)")
    return rgb


class TileSizeError(RuntimeError):
    """A tile service serves tiles of another size than 256 px: a configuration error, not a bad tile."""


class TileReader:
    """Decoded tiles (or COG blocks) from the cache with a small LRU (targets in Morton order share most)."""

    def __init__(self, cache: TileCache, capacity: int = 256,
                 decode: Callable[[TileKey, bytes], np.ndarray] = decode_tile) -> None:
        self.cache = cache
        self.capacity = capacity
        self.decode = decode
        self._tiles: OrderedDict[TileKey, tuple[str, np.ndarray | None]] = OrderedDict()

    def get(self, key: TileKey) -> tuple[str, np.ndarray | None]:
        """``(status, rgb)`` of a tile: ``ok`` with the pixels, or the reason it has none."""
        if key in self._tiles:
            self._tiles.move_to_end(key)
            return self._tiles[key]
        data = self.cache.read(key)
        if data is not None:
            try:
                entry = ("ok", self.decode(key, data))
            except ValueError:
                entry = ("corrupt", None)
        else:
            marker = self.cache.marker(key)
            entry = (marker.get("reason", "failed") if marker else "not_fetched", None)
        self._tiles[key] = entry
        if len(self._tiles) > self.capacity:
            self._tiles.popitem(last=False)
        return entry


def assemble(x: float, y: float, zoom: int, size_px: int, ratio: float,
             tile: Callable[[TileKey], tuple[str, np.ndarray | None]]) -> tuple[str, np.ndarray | None, float, float]:
    """The crop centred on global pixel ``(x, y)``: ``(status, rgb, dx, dy)``; ``dx, dy`` is the point's offset
    from the crop's centre in output pixels."""
    x0, y0, x1, y1 = window(x, y, size_px, ratio)
    pad = filter_pad(ratio)
    ix0, iy0 = math.floor(x0) - pad, math.floor(y0) - pad
    ix1, iy1 = math.ceil(x1) + pad, math.ceil(y1) + pad
    keys = tiles_of_window(zoom, x0, y0, x1, y1, pad=pad)
    fetched = [(key, *tile(key)) for key in keys]
    status = worst([entry[1] if entry[1] != "not_fetched" else "failed" for entry in fetched])
    if status != "ok":
        return status, None, 0.0, 0.0
    region = np.zeros((iy1 - iy0, ix1 - ix0, 3), dtype=np.uint8)
    for (_, tx, ty), _, pixels in fetched:
        left, top = tx * TILE_SIZE, ty * TILE_SIZE
        sx0, sy0 = max(ix0, left), max(iy0, top)
        sx1, sy1 = min(ix1, left + pixels.shape[1]), min(iy1, top + pixels.shape[0])
        if sx0 < sx1 and sy0 < sy1:
            region[sy0 - iy0:sy1 - iy0, sx0 - ix0:sx1 - ix0] = pixels[sy0 - top:sy1 - top, sx0 - left:sx1 - left]
    if ratio == 1.0:
        rgb = region
    else:
        box = (x0 - ix0, y0 - iy0, x1 - ix0, y1 - iy0)
        rgb = np.asarray(Image.fromarray(region).resize((size_px, size_px), Image.Resampling.BILINEAR, box=box))
    dx = (x - (x0 + x1) / 2) / ratio
    dy = (y - (y0 + y1) / 2) / ratio
    return "ok", rgb, float(dx), float(dy)


def encode(rgb: np.ndarray, fmt: str) -> bytes:
    """PNG (lossless) or JPEG (quality 95) bytes of a crop."""
    if fmt == "png":
        return encode_png(rgb)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(rgb: np.ndarray) -> bytes:
    """A lossless RGB PNG written for speed: the Sub filter on every row and Huffman-only deflate.

    About 3x faster to write than Pillow's fastest level, for files about 1.2x the size
    (``benchmarks/tile_crops.py`` measures both); any PNG decoder reads it.
    """
    height, width, channels = rgb.shape
    if channels != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"encode_png takes H x W x 3 uint8 pixels, got {rgb.shape} {rgb.dtype}")
    rows = np.ascontiguousarray(rgb).reshape(height, width * 3)
    filtered = np.empty((height, width * 3 + 1), dtype=np.uint8)
    filtered[:, 0] = 1  # filter type Sub: each byte minus the same channel of the pixel to its left
    filtered[:, 1:4] = rows[:, :3]
    np.subtract(rows[:, 3:], rows[:, :-3], out=filtered[:, 4:])
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
    data = compressor.compress(filtered.tobytes()) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")
