"""NAIP items from a STAC API (the Planetary Computer's collection ``naip``): search, parse, Parquet index.

``GET {endpoint}/api/stac/v1/search?collections=naip&bbox=w,s,e,n&datetime=...&limit=...`` returns a
FeatureCollection; the next page is the link with ``rel == "next"`` (its href carries the paging token). The
item fields read here follow the Planetary Computer's NAIP items (``naip:year`` is a string such as ``"2019"``,
``proj:transform`` has 6 or 9 numbers); a feature lacking one fails loudly, naming the item and the field, since
the live schema may change (``proj:code`` "EPSG:n" of projection extension v2 is read when ``proj:epsg`` is gone).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from ....io.files import atomic_path
from ....io.http import RetryPolicy, get_json, session_scope
from .sas import PC_ENDPOINT

log = logging.getLogger(__name__)

SEARCH_PATH = "/api/stac/v1/search"
IMAGE_ASSET = "image"


class StacSchemaError(ValueError):
    """A STAC item lacks a field the NAIP reader needs (or has it in an unexpected shape)."""


@dataclass(frozen=True)
class NaipItem:
    """One NAIP scene (a DOQQ) as the STAC catalogue describes it."""

    id: str
    year: int
    state: str
    gsd: float  # metres per pixel
    epsg: int
    transform: tuple[float, float, float, float, float, float]  # a, b, c, d, e, f: x = a*col + b*row + c, ...
    shape: tuple[int, int]  # rows, cols
    bbox: tuple[float, float, float, float]  # lon/lat: west, south, east, north
    href: str  # the COG (unsigned)
    datetime: str
    footprint: str | None = None  # GeoJSON geometry (lon/lat) of the item, as text

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the raster in the item's CRS (north-up transforms)."""
        a, _b, c, _d, e, f = self.transform
        rows, cols = self.shape
        xs = (c, c + a * cols)
        ys = (f, f + e * rows)
        return min(xs), min(ys), max(xs), max(ys)


def _field(item: Mapping[str, Any], ident: str, *names: str) -> Any:
    """The first of ``names`` present in the image asset or the item's properties."""
    properties = item.get("properties") or {}
    asset = (item.get("assets") or {}).get(IMAGE_ASSET) or {}
    for name in names:
        for where in (asset, properties):
            if where.get(name) is not None:
                return where[name]
    raise StacSchemaError(f"STAC item {ident!r} lacks the field {' / '.join(names)!r}")


def parse_item(feature: Mapping[str, Any]) -> NaipItem:
    """A :class:`NaipItem` from one STAC feature; :class:`StacSchemaError` names the item and the field."""
    ident = feature.get("id")
    if not isinstance(ident, str) or not ident:
        raise StacSchemaError(f"STAC feature without an 'id': {json.dumps(feature)[:200]}")

    def fail(name: str, value: Any, expected: str) -> StacSchemaError:
        return StacSchemaError(f"STAC item {ident!r}: field {name!r} is {value!r}, expected {expected}")

    year_text = _field(feature, ident, "naip:year")
    try:
        year = int(str(year_text).strip())
    except ValueError:
        raise fail("naip:year", year_text, "a year such as \"2019\"") from None
    try:
        epsg = int(_field(feature, ident, "proj:epsg"))
    except StacSchemaError:
        code = str(_field(feature, ident, "proj:epsg", "proj:code"))
        if not code.upper().startswith("EPSG:") or not code[5:].isdigit():
            raise fail("proj:code", code, "'EPSG:<number>'") from None
        epsg = int(code[5:])
    transform = _field(feature, ident, "proj:transform")
    if not isinstance(transform, Sequence) or len(transform) not in (6, 9):
        raise fail("proj:transform", transform, "6 or 9 numbers")
    shape = _field(feature, ident, "proj:shape")
    if not isinstance(shape, Sequence) or len(shape) != 2:
        raise fail("proj:shape", shape, "[rows, cols]")
    bbox = feature.get("bbox")
    if not isinstance(bbox, Sequence) or len(bbox) != 4:
        raise fail("bbox", bbox, "[west, south, east, north]")
    asset = (feature.get("assets") or {}).get(IMAGE_ASSET) or {}
    if not asset.get("href"):
        raise StacSchemaError(f"STAC item {ident!r} lacks the field 'assets.{IMAGE_ASSET}.href'")
    properties = feature.get("properties") or {}
    when = properties.get("datetime") or properties.get("start_datetime")
    if not when:
        raise StacSchemaError(f"STAC item {ident!r} lacks the field 'datetime'")
    try:
        return NaipItem(
            id=ident, year=year, state=str(_field(feature, ident, "naip:state")).lower(),
            gsd=float(_field(feature, ident, "gsd")), epsg=epsg,
            transform=tuple(float(v) for v in transform[:6]), shape=(int(shape[0]), int(shape[1])),
            bbox=tuple(float(v) for v in bbox), href=str(asset["href"]), datetime=str(when),
            footprint=json.dumps(feature["geometry"]) if feature.get("geometry") else None)
    except (TypeError, ValueError) as exc:
        raise StacSchemaError(f"STAC item {ident!r}: a numeric field is not a number ({exc})") from None


def _datetime_param(datetime: str | tuple[int, int] | None) -> str | None:
    if datetime is None or isinstance(datetime, str):
        return datetime
    first, last = datetime
    return f"{int(first):04d}-01-01T00:00:00Z/{int(last):04d}-12-31T23:59:59Z"


def search_items(endpoint: str = PC_ENDPOINT, *, collection: str = "naip",
                 bbox: tuple[float, float, float, float], datetime: str | tuple[int, int] | None = None,
                 limit: int = 1000, session: requests.Session | None = None, retry: RetryPolicy = RetryPolicy(),
                 max_pages: int = 10_000) -> list[NaipItem]:
    """Every item of ``collection`` intersecting ``bbox`` (lon/lat), following ``rel="next"`` links.

    ``datetime`` is a STAC interval ("2018-01-01T00:00:00Z/2022-12-31T23:59:59Z") or a pair of years.
    """
    url = f"{endpoint.rstrip('/')}{SEARCH_PATH}"
    params: dict[str, Any] | None = {"collections": collection, "bbox": ",".join(f"{v:.6f}" for v in bbox),
                                     "limit": int(limit)}
    interval = _datetime_param(datetime)
    if interval:
        params["datetime"] = interval
    items: dict[str, NaipItem] = {}
    seen: set[str] = set()
    with session_scope(session) as active:
        for page in range(max_pages):
            document = get_json(url, params=params, session=active, retry=retry)
            if not isinstance(document, dict) or not isinstance(document.get("features"), list):
                raise StacSchemaError(f"{url}: page {page} is not a FeatureCollection with 'features'")
            for feature in document["features"]:
                item = parse_item(feature)
                items.setdefault(item.id, item)
            following = [link for link in document.get("links") or [] if link.get("rel") == "next"]
            if not following:
                log.debug("%s: %d items in %d pages", url, len(items), page + 1)
                return list(items.values())
            link = following[0]
            if str(link.get("method", "GET")).upper() != "GET":
                raise StacSchemaError(f"{url}: the next-page link asks for {link.get('method')} (only GET paging is "
                                      "supported)")
            url, params = str(link["href"]), None
            if url in seen:
                raise StacSchemaError(f"{url}: the next-page link repeats itself (paging loop)")
            seen.add(url)
    raise StacSchemaError(f"{endpoint}: more than {max_pages} pages of search results")


_COLUMNS = ("id", "year", "state", "gsd", "epsg", "transform", "shape", "bbox", "href", "datetime", "footprint")


def write_items(items: Sequence[NaipItem], path: str | os.PathLike) -> Path:
    """Write items to a Parquet table (atomically), so a state's index is searched once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: [getattr(item, name) for item in items] for name in _COLUMNS}
    for name in ("transform", "shape", "bbox"):
        columns[name] = [list(value) for value in columns[name]]
    schema = pa.schema([("id", pa.string()), ("year", pa.int32()), ("state", pa.string()), ("gsd", pa.float64()),
                        ("epsg", pa.int32()), ("transform", pa.list_(pa.float64())), ("shape", pa.list_(pa.int64())),
                        ("bbox", pa.list_(pa.float64())), ("href", pa.string()), ("datetime", pa.string()),
                        ("footprint", pa.string())])
    table = pa.table(columns, schema=schema)
    path = Path(path)
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)
    return path


def read_items(path: str | os.PathLike) -> list[NaipItem]:
    """Items written by :func:`write_items`."""
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    return [NaipItem(**{**row, "transform": tuple(row["transform"]), "shape": tuple(row["shape"]),
                        "bbox": tuple(row["bbox"])}) for row in rows]
