"""Web-Mercator tile geometry, vectorised: global pixels, tiles, ground resolution, zoom choice, Morton order.

Coordinates are **(lon, lat)** everywhere, as mercantile and GeoJSON order them. At zoom ``z`` with 256-px tiles
the world is ``256 * 2**z`` pixels wide; the global pixel of a point is continuous, pixel ``k`` spanning
``[k, k + 1)``, so the point lies in pixel ``floor(X)`` of tile ``floor(X / 256)``.
"""

from __future__ import annotations

import math

import numpy as np

TILE_SIZE = 256
EARTH_RADIUS_M = 6378137.0
#: metres per pixel at the equator, zoom 0, 256-px tiles (2 pi R / 256)
EQUATOR_M_PER_PX = 2 * math.pi * EARTH_RADIUS_M / TILE_SIZE
MAX_LATITUDE = 85.0511287798066  # Web Mercator's square world


def global_pixel(lon: np.ndarray | float, lat: np.ndarray | float, zoom: int,
                 tile_size: int = TILE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Continuous global pixel ``(X, Y)`` of ``(lon, lat)`` at ``zoom`` (y grows southwards)."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.clip(np.asarray(lat, dtype=np.float64), -MAX_LATITUDE, MAX_LATITUDE)
    world = tile_size * 2.0 ** zoom
    x = (lon / 360.0 + 0.5) * world
    sin = np.sin(np.radians(lat))
    y = (0.5 - np.log((1 + sin) / (1 - sin)) / (4 * math.pi)) * world
    return x, y


def lonlat_of_pixel(x: np.ndarray | float, y: np.ndarray | float, zoom: int,
                    tile_size: int = TILE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`global_pixel`."""
    world = tile_size * 2.0 ** zoom
    lon = (np.asarray(x, dtype=np.float64) / world - 0.5) * 360.0
    merc = (0.5 - np.asarray(y, dtype=np.float64) / world) * 2 * math.pi
    return lon, np.degrees(np.arctan(np.sinh(merc)))


def metres_per_pixel(lat: np.ndarray | float, zoom: int, tile_size: int = TILE_SIZE) -> np.ndarray:
    """Ground size of one pixel at latitude ``lat`` (the Mercator scale is sec(lat))."""
    return EQUATOR_M_PER_PX * (TILE_SIZE / tile_size) * np.cos(np.radians(np.asarray(lat, dtype=np.float64))) \
        / 2.0 ** zoom


def zoom_for(lat: float, size_px: int, footprint_m: float, max_zoom: int) -> int:
    """The coarsest zoom whose pixels are at least as fine as ``footprint_m / size_px`` (capped at ``max_zoom``)."""
    wanted = footprint_m / size_px
    zoom = math.ceil(math.log2(EQUATOR_M_PER_PX * math.cos(math.radians(lat)) / wanted) - 1e-9)
    return max(0, min(max_zoom, zoom))


def tile_span(start: np.ndarray, stop: np.ndarray, tile_size: int = TILE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """First and last tile index covering global pixels ``[start, stop)`` (per axis)."""
    first = np.floor(np.asarray(start) / tile_size).astype(np.int64)
    last = np.ceil(np.asarray(stop) / tile_size).astype(np.int64) - 1  # dividing by 256 is exact: no epsilon
    return first, last


def morton(tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """Z-order code of tile indices (up to 2**31 each), so that sorting by it keeps neighbours together."""
    def spread(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.uint64) & np.uint64(0xFFFFFFFF)
        for shift, mask in ((16, 0x0000FFFF0000FFFF), (8, 0x00FF00FF00FF00FF), (4, 0x0F0F0F0F0F0F0F0F),
                            (2, 0x3333333333333333), (1, 0x5555555555555555)):
            v = (v | (v << np.uint64(shift))) & np.uint64(mask)
        return v
    return spread(tx) | (spread(ty) << np.uint64(1))
