"""XYZ / WMTS tile services: the keyless USGS imagery basemap, any template a user supplies, and the commercial
basemaps (only with the user's own key, their terms printed before use)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from ....io.http import RetryPolicy, get
from ..cache import TileCache, TileKey
from ..crops import CropSpec, TileReader, assemble
from ..geometry import metres_per_pixel
from ..plan import Plan, make_plan
from ..validate import check_tile

_FIELDS = re.compile(r"\{(z|x|y|s|TileMatrix|TileRow|TileCol|key)\}")
AXIS_ORDERS = ("zyx", "zxy")


@dataclass(frozen=True)
class SourceInfo:
    """What a user must know about an imagery source: who provides it and under which terms."""

    id: str
    name: str
    provider: str
    url: str
    licence: str
    licence_url: str
    attribution: str
    redistributable: bool
    commercial: bool = False
    terms: str = ""  # printed before the first request when not empty


class TileZoomError(ValueError):
    """A zoom beyond the tiles a source really has (the service would answer with a stream of 404s)."""


@dataclass(frozen=True)
class XyzSource:
    """A Web-Mercator tile service described by a URL template with ``{z}``, ``{x}``, ``{y}``.

    WMTS names ``{TileMatrix}``/``{TileCol}``/``{TileRow}`` are accepted for ``{z}``/``{x}``/``{y}``;
    ``{key}`` is replaced by ``api_key``. ``axis_order`` records the path order the service expects
    (ArcGIS services put the row before the column: ``.../tile/{z}/{y}/{x}``); it is checked against the template.
    """

    template: str
    max_zoom: int
    info: SourceInfo
    min_zoom: int = 0
    axis_order: str = "zxy"
    tile_size: int = 256
    api_key: str | None = field(default=None, repr=False, compare=False)
    requires_key: bool = False
    default_footprint_m: float | None = None  # a crop's footprint when none is asked for (None: native)

    def __post_init__(self) -> None:
        names = _FIELDS.findall(self.template)
        canonical = [{"TileMatrix": "z", "TileCol": "x", "TileRow": "y"}.get(name, name) for name in names]
        if not {"z", "x", "y"} <= set(canonical):
            raise ValueError(f"tile URL template {self.template!r} must contain {{z}}, {{x}} and {{y}}")
        order = "".join(name for name in canonical if name in "zxy")
        if self.axis_order not in AXIS_ORDERS:
            raise ValueError(f"axis order must be one of {AXIS_ORDERS}, got {self.axis_order!r}")
        if order != self.axis_order:
            raise ValueError(f"tile URL template {self.template!r} has axis order {order}, the source says "
                             f"{self.axis_order}")
        if not 0 <= self.min_zoom <= self.max_zoom <= 24:
            raise ValueError(f"{self.info.id}: zoom range {self.min_zoom}..{self.max_zoom} is not within 0..24")

    @property
    def key(self) -> str:
        """The cache directory name: the source id, plus a hash of the template for user templates."""
        if self.info.id != "xyz":
            return self.info.id
        return "xyz-" + hashlib.sha256(self.template.encode()).hexdigest()[:10]

    def with_key(self, api_key: str | None) -> XyzSource:
        """This source with the user's API key; a source that needs one refuses to go without."""
        if self.requires_key and not api_key:
            raise ValueError(f"{self.info.name} needs your own API key (--api-key or GNNBENCH_IMAGERY_KEY)")
        return replace(self, api_key=api_key)

    def check_zoom(self, zoom: int, lat: float) -> None:
        """Raise :class:`TileZoomError` before any request when ``zoom`` is beyond the source's real tiles."""
        if zoom > self.max_zoom:
            res = float(metres_per_pixel(lat, self.max_zoom))
            raise TileZoomError(
                f"{self.info.name} has real tiles only up to zoom {self.max_zoom} ({res:.2f} m/px at "
                f"{lat:.0f}°N); zoom {zoom} would be a stream of 404s. Use zoom {self.max_zoom} or a source "
                f"with finer imagery (--source naip-pc, 0.6 m)")
        if zoom < self.min_zoom:
            raise TileZoomError(f"{self.info.name} has tiles only from zoom {self.min_zoom}; zoom {zoom} is below")

    def url(self, z: int, x: int, y: int) -> str:
        """The URL of tile column ``x``, row ``y`` at zoom ``z``."""
        values = {"z": z, "x": x, "y": y, "TileMatrix": z, "TileCol": x, "TileRow": y, "s": "abc"[(x + y) % 3],
                  "key": self.api_key or ""}
        return _FIELDS.sub(lambda match: str(values[match.group(1)]), self.template)

    # -- the imagery pipeline's interface (gnnbench.road.tiles.pipeline) -------------------------------------
    def describe(self) -> dict[str, Any]:
        """What rebuilds this source offline (:func:`from_description`); never the API key."""
        return {"kind": "xyz", "key": self.key, "template": self.template, "axis_order": self.axis_order,
                "max_zoom": self.max_zoom, "min_zoom": self.min_zoom, "default_footprint_m": self.default_footprint_m,
                "info": asdict(self.info)}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> XyzSource:
        return cls(template=description["template"], max_zoom=description["max_zoom"],
                   min_zoom=description["min_zoom"], axis_order=description["axis_order"],
                   default_footprint_m=description.get("default_footprint_m"), info=SourceInfo(**description["info"]))

    def plan(self, targets: pd.DataFrame, spec: CropSpec, *, chunk_size: int, cache: Path, online: bool) -> Plan:
        """Tiles per target at one zoom, in Morton order (needs no request); ``spec.footprint_m`` None is the
        native resolution (the pipeline has already put :attr:`default_footprint_m` in the spec)."""
        return make_plan(targets, self, spec, chunk_size=chunk_size)

    def bind(self, cache: Path) -> XyzSource:
        """Nothing to remember: a tile's URL is all it needs."""
        return self

    def key_url(self, key: TileKey) -> str:
        """The tile's URL as reports and markers record it: an API key shows as ``{key}``."""
        url = self.url(*key)
        return url.replace(self.api_key, "{key}") if self.api_key else url

    def stats(self) -> dict[str, int]:
        return {}

    def fetch_key(self, key: TileKey, session: requests.Session, retry: RetryPolicy) -> bytes:
        return get(self.url(*key), session=session, retry=retry).content

    def check_key(self, key: TileKey, data: bytes) -> str:
        return check_tile(data)[0]

    def crops(self, targets: pd.DataFrame, spec: CropSpec, parameters: dict[str, Any],
              cache: Path) -> Iterator[tuple[str, np.ndarray | None, dict[str, Any]]]:
        """``(status, rgb, metadata)`` per target row, stitched from the cached tiles."""
        reader = TileReader(TileCache(cache))
        zoom = parameters["zoom"]  # each target's ratio (footprint) is a column of the plan
        for target in targets.itertuples(index=False):
            status, rgb, dx, dy = assemble(target.x, target.y, zoom, spec.size_px, target.ratio, reader.get)
            m_per_px = float(metres_per_pixel(target.lat, zoom)) * target.ratio
            yield status, rgb, {"zoom": zoom, "year": -1, "m_per_px": round(m_per_px, 6), "dx": round(dx, 6),
                                "dy": round(dy, 6)}


USGS_IMAGERY = XyzSource(
    template="https://basemap.nationalmap.gov/arcgis/rest/services/USGSImageryOnly/MapServer/tile/{z}/{y}/{x}",
    max_zoom=16, min_zoom=0, axis_order="zyx",
    info=SourceInfo(
        id="usgs-imagery", name="USGS National Map imagery basemap (USGSImageryOnly)",
        provider="U.S. Geological Survey",
        url="https://basemap.nationalmap.gov/arcgis/rest/services/USGSImageryOnly/MapServer",
        licence="public domain (no restrictions; acknowledgment requested)",
        licence_url="https://www.usgs.gov/information-policies-and-instructions/copyrights-and-credits",
        attribution="Map services and data available from U.S. Geological Survey, National Geospatial Program.",
        redistributable=True))

_NO_STORAGE = ("{name}: the provider's terms forbid scraping, bulk download and storing tiles beyond a "
               "temporary single-user cache, and forbid redistributing them. gnnbench keeps them in your "
               "local cache only and will not write shards without --accept-terms. Terms: {url}")

ESRI_WORLD_IMAGERY = XyzSource(
    template="https://ibasemaps-api.arcgis.com/arcgis/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}"
             "?token={key}",
    max_zoom=19, axis_order="zyx", requires_key=True,
    info=SourceInfo(
        id="esri-world-imagery", name="Esri World Imagery", provider="Esri, Maxar, Earthstar Geographics",
        url="https://www.arcgis.com/home/item.html?id=10df2279f9684e4a9f6a7f08febac2a9",
        licence="Esri Master Agreement (commercial; no scraping, downloading or storing)",
        licence_url="https://www.esri.com/en-us/legal/terms/full-master-agreement",
        attribution="Source: Esri, Maxar, Earthstar Geographics, and the GIS User Community",
        redistributable=False, commercial=True,
        terms=_NO_STORAGE.format(name="Esri World Imagery",
                                 url="https://www.esri.com/en-us/legal/terms/full-master-agreement")))

MAPBOX_SATELLITE = XyzSource(
    template="https://api.mapbox.com/v4/mapbox.satellite/{z}/{x}/{y}.jpg90?access_token={key}",
    max_zoom=22, axis_order="zxy", requires_key=True,
    info=SourceInfo(
        id="mapbox-satellite", name="Mapbox Satellite", provider="Mapbox, Maxar",
        url="https://docs.mapbox.com/data/tilesets/reference/mapbox-satellite/",
        licence="Mapbox Terms of Service (commercial; no scraping, caching only per end-user device)",
        licence_url="https://www.mapbox.com/legal/tos", attribution="© Mapbox © Maxar",
        redistributable=False, commercial=True,
        terms=_NO_STORAGE.format(name="Mapbox Satellite", url="https://www.mapbox.com/legal/tos")))

#: the commercial presets need the user's key
COMMERCIAL = {source.info.id: source for source in (ESRI_WORLD_IMAGERY, MAPBOX_SATELLITE)}


def user_source(template: str, *, max_zoom: int, axis_order: str | None = None, attribution: str = "",
                licence: str = "as stated by the provider (not checked by gnnbench)", min_zoom: int = 0,
                api_key: str | None = None) -> XyzSource:
    """An XYZ/WMTS service given by its URL template; ``max_zoom`` is required (no silent overzoom)."""
    names = [{"TileMatrix": "z", "TileCol": "x", "TileRow": "y"}.get(n, n) for n in _FIELDS.findall(template)]
    order = axis_order or "".join(name for name in names if name in "zxy")
    return XyzSource(template=template, max_zoom=max_zoom, min_zoom=min_zoom, axis_order=order, api_key=api_key,
                     info=SourceInfo(id="xyz", name=f"user tile service {template}", provider="(user supplied)",
                                     url=template, licence=licence, licence_url="", attribution=attribution,
                                     redistributable=False))
