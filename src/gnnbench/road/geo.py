"""Coordinate handling shared by the road pipeline: UTM zones, projection, WKB line geometry."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

WGS84 = "EPSG:4326"


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 / UTM zone containing (lon, lat) (326xx north, 327xx south)."""
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"not a WGS84 coordinate: lon={lon}, lat={lat}")
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


@lru_cache(maxsize=32)
def _transformer(source: str, target: str):
    from pyproj import Transformer

    return Transformer.from_crs(source, target, always_xy=True)


def transform(x: np.ndarray, y: np.ndarray, source: str | int, target: str | int) -> tuple[np.ndarray, np.ndarray]:
    """Reproject coordinate arrays (x = easting/longitude, y = northing/latitude) between CRSs."""
    source = f"EPSG:{source}" if isinstance(source, int) else source
    target = f"EPSG:{target}" if isinstance(target, int) else target
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if source == target:
        return x.copy(), y.copy()
    return _transformer(source, target).transform(x, y)


def project(lon: np.ndarray, lat: np.ndarray, epsg: int) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 longitude/latitude to metres in ``epsg`` (a projected CRS such as a UTM zone)."""
    return transform(lon, lat, WGS84, epsg)


def lines_from_wkb(wkb: list[bytes | None]) -> np.ndarray:
    """Shapely geometries from a list of WKB blobs (None stays None)."""
    import shapely

    return shapely.from_wkb(np.asarray(wkb, dtype=object))


def project_geometries(geometries: np.ndarray, epsg: int) -> np.ndarray:
    """Reproject shapely geometries from WGS84 to ``epsg`` with one vectorised pyproj call."""
    import shapely

    transformer = _transformer(WGS84, f"EPSG:{epsg}")
    return shapely.transform(geometries, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1])))
