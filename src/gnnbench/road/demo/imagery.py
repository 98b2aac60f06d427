"""Loopback tile services for the tests and the demo region: tiles rendered on demand, deterministic.

Style ``coordinate``: pixel ``(i, j)`` of tile ``(z, x, y)`` encodes its global pixel ``X = 256 x + i``,
``Y = 256 y + j`` as ``R = X & 255``, ``G = Y & 255``, ``B = ((X >> 8) & 15) << 4 | ((Y >> 8) & 15)`` (the COG
fixtures' encoding of raster columns and rows), so a crop's pixels tell exactly where they came from
(:func:`decode_coordinates`). Style ``scene``: the demo
region seen from above: sandy ground with seeded noise and the demo network's roads drawn in grey, wider
for bigger roads, so that images carry some signal about road type. Tiles are served at
``/tiles/{style}/{z}/{y}/{x}.png`` (ArcGIS row-before-column order, like the USGS basemap) and
``/xyz/{style}/{z}/{x}/{y}.png``; zooms above ``max_zoom`` and tiles outside ``coverage`` are 404.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Mapping
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from ..tiles.geometry import TILE_SIZE, global_pixel
from .cog_fixture import coordinate_pixels
from .cog_fixture import decode_coordinates as decode_coordinates  # one encoding for tiles and COG fixtures
from .server import LoopbackPortal

_ROAD_WIDTH_M = {"motorway": 22.0, "trunk": 18.0, "primary": 14.0, "secondary": 11.0, "tertiary": 9.0,
                 "residential": 7.0, "unclassified": 6.0, "service": 4.0, "footway": 2.0}


def coordinate_tile(z: int, x: int, y: int) -> np.ndarray:
    """The coordinate-encoded pixels of one tile (256 x 256 x 3 uint8): the COG fixtures' encoding
    (:func:`~gnnbench.road.demo.cog_fixture.coordinate_pixels`) of the global pixel; decode with
    :func:`decode_coordinates`."""
    cols, rows = np.meshgrid(TILE_SIZE * x + np.arange(TILE_SIZE), TILE_SIZE * y + np.arange(TILE_SIZE))
    return coordinate_pixels(bands=3)(cols, rows)


class SceneRenderer:
    """Top-down pictures of a road network: ground noise from ``seed``, roads as grey polylines."""

    def __init__(self, lines: list[tuple[np.ndarray, np.ndarray, str]], seed: int = 0) -> None:
        self.lines = lines  # (lon array, lat array, highway class)
        self.seed = seed

    @classmethod
    def demo(cls, seed: int = 0) -> SceneRenderer:
        from .region import generate_network

        network = generate_network(seed)
        position = {node: i for i, node in enumerate(network.node_ids.tolist())}
        lines = []
        for _, refs, tags in network.ways:
            index = np.array([position[ref] for ref in refs])
            lines.append((network.lon[index], network.lat[index], tags.get("highway", "residential")))
        return cls(lines, seed)

    def tile(self, z: int, x: int, y: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, z, x, y])
        ground = np.array([196, 178, 140], dtype=np.int16) + rng.integers(-24, 25, (TILE_SIZE, TILE_SIZE, 1))
        ground = ground + rng.integers(-6, 7, (TILE_SIZE, TILE_SIZE, 3))
        image = Image.fromarray(np.clip(ground, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        left, top = TILE_SIZE * x, TILE_SIZE * y
        for lon, lat, highway in self.lines:
            px, py = global_pixel(lon, lat, z)
            metres = 156543.03392804097 * math.cos(math.radians(float(lat.mean()))) / 2 ** z
            width = max(1, round(_ROAD_WIDTH_M.get(highway, 6.0) / metres))
            points = list(zip((px - left).tolist(), (py - top).tolist()))
            if max(p[0] for p in points) < -width or min(p[0] for p in points) > TILE_SIZE + width:
                continue
            if max(p[1] for p in points) < -width or min(p[1] for p in points) > TILE_SIZE + width:
                continue
            shade = 70 if highway in ("motorway", "trunk", "primary") else 105
            draw.line(points, fill=(shade, shade, shade + 5), width=width, joint="curve")
        return np.asarray(image)


class TileServer:
    """Serves rendered tiles on a :class:`LoopbackPortal` (faults via ``portal.inject`` on the tile paths)."""

    def __init__(self, portal: LoopbackPortal, *, max_zoom: int = 18, scene: SceneRenderer | None = None,
                 coverage: tuple[float, float, float, float] | None = None, image_format: str = "png") -> None:
        self.portal, self.max_zoom, self.coverage, self.image_format = portal, max_zoom, coverage, image_format
        self.scene = scene
        self.served: dict[tuple[str, int, int, int], int] = {}  # tiles rendered for a request, and how often
        self._lock = threading.Lock()
        portal.add_handler("/tiles/", self._handle)
        portal.add_handler("/xyz/", self._handle)
        self._encode = lru_cache(maxsize=512)(self._render)

    def template(self, style: str = "coordinate", axis_order: str = "zyx") -> str:
        """The URL template of ``style`` tiles in ``axis_order`` (``zyx``: ArcGIS, ``zxy``: OSM/XYZ)."""
        path = "tiles/{style}/{{z}}/{{y}}/{{x}}" if axis_order == "zyx" else "xyz/{style}/{{z}}/{{x}}/{{y}}"
        return f"{self.portal.url}/{path.format(style=style)}.{self.image_format}"

    def _render(self, style: str, z: int, x: int, y: int) -> bytes:
        if style == "coordinate":
            pixels = coordinate_tile(z, x, y)
        elif style == "scene" and self.scene is not None:
            pixels = self.scene.tile(z, x, y)
        elif style == "blank":
            pixels = np.full((TILE_SIZE, TILE_SIZE, 3), 250, dtype=np.uint8)
        else:
            raise KeyError(style)
        buffer = io.BytesIO()
        if self.image_format == "png":
            Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
        else:
            Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
        return buffer.getvalue()

    def _covered(self, z: int, x: int, y: int) -> bool:
        if self.coverage is None:
            return True
        west, south, east, north = self.coverage
        (x0, x1), (y0, y1) = [np.floor(v / TILE_SIZE) for v in global_pixel([west, east], [north, south], z)]
        return x0 <= x <= x1 and y0 <= y <= y1

    def _handle(self, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> tuple:
        parts = path.strip("/").split("/")
        not_found = (404, "text/plain", b"tile not found", {})
        if len(parts) != 5:
            return not_found
        kind, style, z, first, last = parts
        last = last.rsplit(".", 1)[0]
        try:
            z, first, last = int(z), int(first), int(last)
        except ValueError:
            return not_found
        x, y = (last, first) if kind == "tiles" else (first, last)
        if z > self.max_zoom or not (0 <= x < 2 ** z and 0 <= y < 2 ** z) or not self._covered(z, x, y):
            return not_found
        try:
            body = self._encode(style, z, x, y)
        except KeyError:
            return not_found
        key = (style, z, x, y)
        with self._lock:
            self.served[key] = self.served.get(key, 0) + 1
        return 200, "image/png" if self.image_format == "png" else "image/jpeg", body, {}
