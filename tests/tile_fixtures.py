"""Helpers for the imagery tests: a loopback tile server, synthetic road tables, request parsing, crop decoding.

The oracles here are deliberately independent of :mod:`gnnbench.road.tiles`: tiles under a crop are found by
enumerating its pixels, tile paths are parsed from the server's request log, and crops are read back from the
tar shards with :mod:`tarfile`.
"""

from __future__ import annotations

import io
import math
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from gnnbench.io import loopback_allowed
from gnnbench.road.demo.imagery import TileServer, decode_coordinates
from gnnbench.road.demo.server import LoopbackPortal
from gnnbench.road.tiles.geometry import global_pixel, lonlat_of_pixel

TILE = 256
WRAP = 4096  # coordinate tiles encode global pixels modulo 4096


@contextmanager
def tile_server(max_zoom: int = 20, coverage: tuple[float, float, float, float] | None = None,
                image_format: str = "png") -> Iterator[tuple[LoopbackPortal, TileServer]]:
    """A running loopback portal with a :class:`TileServer` on it, loopback requests allowed in this block."""
    with LoopbackPortal() as portal, loopback_allowed():
        yield portal, TileServer(portal, max_zoom=max_zoom, coverage=coverage, image_format=image_format)


def parse_tile_path(path: str) -> tuple[str, str, tuple[int, int, int]] | None:
    """``(route, style, (z, x, y))`` of a tile request path (``/tiles/`` is z/y/x, ``/xyz/`` is z/x/y)."""
    path = path.split("?", 1)[0]
    parts = path.strip("/").split("/")
    if len(parts) != 5 or parts[0] not in ("tiles", "xyz"):
        return None
    route, style, z, first, last = parts
    z, first, last = int(z), int(first), int(last.rsplit(".", 1)[0])
    return route, style, ((z, last, first) if route == "tiles" else (z, first, last))


def tile_requests(portal: LoopbackPortal) -> list[tuple[int, int, int]]:
    """Every tile request the portal received, as ``(z, x, y)``, in arrival order (repeats kept)."""
    found = [parse_tile_path(path) for _, path in list(portal.requests)]
    return [entry[2] for entry in found if entry is not None]


def tile_path(template: str, key: tuple[int, int, int]) -> str:
    """The request path of tile ``key`` under a TileServer ``template`` (without scheme and host)."""
    z, x, y = key
    url = template.replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))
    return "/" + url.split("/", 3)[3]


def native_cover(x: float, y: float, size: int) -> set[tuple[int, int]]:
    """Brute force: the tiles holding the ``size`` x ``size`` source pixels of a native crop whose centre is the
    pixel corner nearest ``(x, y)`` (enumerating the crop's pixels, no tile arithmetic)."""
    cx, cy = round(x), round(y)
    xs = range(cx - size // 2, cx - size // 2 + size)
    ys = range(cy - size // 2, cy - size // 2 + size)
    columns, rows = {px // TILE for px in xs}, {py // TILE for py in ys}
    return {(tx, ty) for tx in columns for ty in rows}


def points_near(lon: float, lat: float, zoom: int, count: int, spread_px: float, seed: int = 0,
                margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random points within ``spread_px`` global pixels of ``(lon, lat)`` at ``zoom``; with ``margin``
    every point keeps at least that many pixels from a multiple of 256 in both axes."""
    rng = np.random.default_rng(seed)
    x0, y0 = global_pixel(lon, lat, zoom)
    xs, ys = [], []
    while len(xs) < count:
        x, y = x0 + rng.uniform(-spread_px, spread_px), y0 + rng.uniform(-spread_px, spread_px)
        if margin and min(x % TILE, TILE - x % TILE, y % TILE, TILE - y % TILE) < margin:
            continue
        xs.append(x)
        ys.append(y)
    return lonlat_of_pixel(np.array(xs), np.array(ys), zoom)


def wrapped(delta: np.ndarray | float) -> np.ndarray:
    """A difference of coordinates taken modulo 4096, in ``[-2048, 2048)``."""
    return (np.asarray(delta) + WRAP // 2) % WRAP - WRAP // 2


def centre_pixel(rgb: np.ndarray) -> tuple[int, int]:
    """Decoded global pixel (mod 4096) of the crop's pixel ``size // 2`` in both axes."""
    gx, gy = decode_coordinates(rgb)
    half = rgb.shape[0] // 2
    return int(gx[half, half]), int(gy[half, half])


def write_tables(root: Path, state: str, lon: Iterable[float], lat: Iterable[float], *,
                 node_ids: Iterable[int] | None = None, edges: pd.DataFrame | None = None) -> Path:
    """``root/tables/STATE/nodes.parquet`` (node_id, lon, lat) and optionally ``edges.parquet``; returns the
    tables directory."""
    lon, lat = np.asarray(list(lon), dtype=np.float64), np.asarray(list(lat), dtype=np.float64)
    ids = np.arange(len(lon), dtype=np.int64) if node_ids is None else np.asarray(list(node_ids), dtype=np.int64)
    tables = Path(root) / "tables" / state
    tables.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"node_id": ids, "lon": lon, "lat": lat}).to_parquet(tables / "nodes.parquet", index=False)
    if edges is not None:
        edges.to_parquet(tables / "edges.parquet", index=False)
    return tables


def shard_members(path: Path) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of every member of a tar shard, in archive order (read with :mod:`tarfile`)."""
    with tarfile.open(path, "r") as tar:
        return [(info.name, tar.extractfile(info).read()) for info in tar.getmembers()]


def read_crops(out: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The index of a built imagery directory and every stored crop decoded, by sample key."""
    index = pd.read_parquet(out / "crops.parquet")
    crops = {}
    for shard in sorted((out / "crops").glob("shard-*.tar")):
        for name, data in shard_members(shard):
            key, _, extension = name.partition(".")
            if extension in ("png", "jpg"):
                crops[key] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return index, crops


def shard_bytes(out: Path) -> dict[str, bytes]:
    """Every shard file of a built imagery directory, by name."""
    return {path.name: path.read_bytes() for path in sorted((out / "crops").glob("shard-*.tar"))}


def tile_centre_lonlat(zoom: int, tiles: Iterable[tuple[int, int]], offset: float = 128.25) -> tuple[np.ndarray,
                                                                                                     np.ndarray]:
    """Points ``offset`` pixels into each tile: a native 256-px crop there needs exactly that one tile."""
    tiles = list(tiles)
    x = np.array([TILE * tx + offset for tx, _ in tiles], dtype=np.float64)
    y = np.array([TILE * ty + offset for _, ty in tiles], dtype=np.float64)
    return lonlat_of_pixel(x, y, zoom)


def metres(lat: float, zoom: int) -> float:
    """Metres per pixel, written out (the Web-Mercator scale at ``lat``)."""
    return 2 * math.pi * 6378137.0 * math.cos(math.radians(lat)) / (TILE * 2 ** zoom)
