"""Annual average daily traffic (AADT) per road edge from FHWA HPMS sections (or a user's GeoJSON of counts).

HPMS publishes, per state and year, the federal-aid road network cut into sections (one ``route_id`` between
``begin_point`` and ``end_point`` milepoints) with a two-way ``aadt`` estimate. The ArcGIS service name
``https://geo.dot.gov/server/rest/services/Hosted/HPMS_FULL_{ST}_{YEAR}/FeatureServer/0`` is a pattern seen in
several public repositories (lower-case fields ``route_id, begin_point, end_point, f_system, aadt``, maxRecordCount
2000) but is **unverified**: some state/year services answered "Service not found" for one reviewer, and field
names may be upper case elsewhere (shapefiles, the NTAD mirror). :func:`fetch_hpms_sections` therefore checks the
layer's field list and fails naming the layer and field.

HPMS covers the federal-aid system (functional classes 1-6 plus the NHS), **not local roads** (``f_system`` 7):
most residential OSM edges have no section, and :func:`match_volume` leaves them out of ``edge_volume`` (the
report counts them). Matching takes, for each edge, the section nearest to the edge's midpoint within
``max_distance_m`` in a projected CRS (shapely ``STRtree.query_nearest``, vectorised); equidistant sections go to
the one listed first.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import requests

from ...io import DownloadError, RetryPolicy, get_json
from ..geo import lines_from_wkb, project_geometries, transform, utm_epsg
from ..tables import conform
from .paging import arcgis_features

logger = logging.getLogger(__name__)

HPMS_BASE_URL = "https://geo.dot.gov/server/rest/services/Hosted"
HPMS_FIELDS = ("aadt", "route_id", "begin_point", "end_point", "f_system")
LOCAL_ROADS_NOTE = ("HPMS sections cover the federal-aid system (F_SYSTEM 1-6 and the NHS), not local roads; "
                    "edges without a section within the distance are absent from edge_volume")

STATE_CODES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH OK OR "
    "PA PR RI SC SD TN TX UT VT VA WA WV WI WY".split())


class VolumeSourceError(ValueError):
    """A traffic-volume source lacks a field or has unusable geometry (names the layer/file and field)."""


class HpmsSection(NamedTuple):
    """One road section with its AADT; ``geometry`` is a shapely (Multi)LineString in WGS84 lon/lat."""

    aadt: float
    geometry: Any
    route_id: str | None = None
    begin_point: float | None = None
    end_point: float | None = None
    f_system: int | None = None


def hpms_layer_url(state: str, year: int, *, base_url: str = HPMS_BASE_URL) -> str:
    """``{base_url}/HPMS_FULL_{ST}_{YEAR}/FeatureServer/0`` (an unverified naming pattern; see the module doc)."""
    code = str(state).strip().upper()
    if code not in STATE_CODES:
        raise ValueError(f"not a US state postal code: {state!r}")
    year = int(year)
    if not 1990 <= year <= 2100:
        raise ValueError(f"implausible HPMS year {year}")
    return f"{base_url.rstrip('/')}/HPMS_FULL_{code}_{year}/FeatureServer/0"


# --------------------------------------------------------------------------- fetching and reading sections


def _folded(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {str(key).lower(): value for key, value in mapping.items()}


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _section(aadt: Any, geometry: Any, attributes: Mapping[str, Any]) -> HpmsSection | None:
    value = _number(aadt)
    if value is None or value < 0 or geometry is None:
        return None
    f_system = _number(attributes.get("f_system"))
    route = attributes.get("route_id")
    return HpmsSection(value, geometry, None if route is None else str(route), _number(attributes.get("begin_point")),
                       _number(attributes.get("end_point")), None if f_system is None else int(f_system))


def _polyline(paths: Any, where: str) -> Any:
    """Shapely line from Esri JSON ``paths`` (None when empty); rejects coordinates that are not lon/lat."""
    import shapely

    parts = []
    for path in paths or []:
        coords = [(float(point[0]), float(point[1])) for point in path if point is not None and len(point) >= 2]
        if len(coords) >= 2:
            parts.append(coords)
    if not parts:
        return None
    flat = np.asarray([xy for part in parts for xy in part])
    if (np.abs(flat[:, 0]) > 180).any() or (np.abs(flat[:, 1]) > 90).any():
        raise VolumeSourceError(f"{where}: geometry is not WGS84 lon/lat (e.g. {parts[0][0]}); was outSR=4326 ignored?")
    return shapely.LineString(parts[0]) if len(parts) == 1 else shapely.MultiLineString(parts)


def fetch_hpms_sections(state: str, year: int, *, base_url: str = HPMS_BASE_URL, layer_url: str | None = None,
                        where: str = "1=1", session: requests.Session | None = None,
                        retry: RetryPolicy | None = None, report: dict[str, Any] | None = None) -> list[HpmsSection]:
    """All HPMS sections of ``state`` and ``year`` with their AADT, geometry in WGS84 (``outSR=4326``).

    ``layer_url`` overrides :func:`hpms_layer_url`. Field names are matched case-insensitively; a layer without
    ``aadt`` raises :class:`VolumeSourceError` naming the layer and its fields (the other fields are optional and
    come back as None). Sections with a null or negative AADT or no geometry are skipped (logged, and counted
    in ``report`` when given).
    """
    url = (layer_url or hpms_layer_url(state, year, base_url=base_url)).rstrip("/")
    retry = retry or RetryPolicy()
    meta = get_json(url, params={"f": "json"}, session=session, retry=retry)
    if not isinstance(meta, dict) or "error" in meta:
        error = meta.get("error") if isinstance(meta, dict) else meta
        raise DownloadError(f"HPMS layer {url} is not available ({error}); the HPMS_FULL_{{ST}}_{{YEAR}} service name "
                            "is unverified for every state and year: check the services list or pass layer_url",
                            url=url)
    geometry_type = meta.get("geometryType")
    if geometry_type not in (None, "esriGeometryPolyline"):
        raise VolumeSourceError(f"HPMS layer {url}: geometryType is {geometry_type}, expected esriGeometryPolyline")
    names = [str(field.get("name")) for field in meta.get("fields") or [] if isinstance(field, dict)]
    if names:
        actual = {name.lower(): name for name in names}
        if "aadt" not in actual:
            raise VolumeSourceError(f"HPMS layer {url} has no 'aadt' field (fields: {', '.join(names)})")
        missing = [name for name in HPMS_FIELDS if name not in actual]
        if missing:
            logger.warning("HPMS layer %s lacks fields %s; they will be None", url, missing)
        out_fields: str | list[str] = [actual[name] for name in HPMS_FIELDS if name in actual]
    else:
        out_fields = "*"
    sections: list[HpmsSection] = []
    skipped = 0
    for batch in arcgis_features(url, where=where, out_fields=out_fields, out_sr=4326, session=session, retry=retry):
        for feature in batch:
            attributes = _folded(feature.get("attributes") or {})
            if "aadt" not in attributes:
                raise VolumeSourceError(f"HPMS layer {url}: features have no 'aadt' attribute "
                                        f"(attributes: {', '.join(sorted(attributes))})")
            geometry = feature.get("geometry") or {}
            line = _polyline(geometry.get("paths"), f"HPMS layer {url}")
            section = _section(attributes["aadt"], line, attributes)
            if section is None:
                skipped += 1
            else:
                sections.append(section)
    if skipped:
        logger.info("HPMS layer %s: skipped %d sections without AADT or geometry", url, skipped)
    if report is not None:  # the caller keeps the count of skipped sections with its records
        report.update(layer=url, sections=len(sections), skipped_without_aadt_or_geometry=skipped)
    logger.info("HPMS layer %s: %d sections", url, len(sections))
    return sections


def _crs_of(collection: Mapping[str, Any], path: str) -> str | None:
    """The source CRS named by a legacy GeoJSON ``crs`` member (None for WGS84 / absent)."""
    crs = collection.get("crs")
    if not crs:
        return None
    name = str((crs.get("properties") or {}).get("name", "")) if isinstance(crs, dict) else ""
    upper = name.upper()
    if upper.endswith("CRS84") or upper.endswith(":4326") or upper.endswith("::4326"):
        return None
    if "EPSG" in upper:
        code = upper.rsplit(":", 1)[-1]
        if code.isdigit():
            return f"EPSG:{code}"
    raise VolumeSourceError(f"{path}: unsupported GeoJSON crs {crs!r}; write RFC 7946 (WGS84) GeoJSON")


def read_aadt_file(path: str | os.PathLike, *, aadt_field: str = "aadt") -> list[HpmsSection]:
    """Sections from a GeoJSON FeatureCollection of (Multi)LineStrings with an AADT property (e.g. state DOT counts).

    The property (default ``aadt``) and the optional ``route_id, begin_point, end_point, f_system`` are matched
    case-insensitively. Coordinates are WGS84 (RFC 7946) unless a legacy ``crs`` member names an EPSG code, which
    is reprojected. Non-line geometries, or no feature with the property, raise :class:`VolumeSourceError`.
    """
    import shapely

    path = Path(path)
    try:
        collection = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise VolumeSourceError(f"{path} is not JSON: {error}") from None
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
        raise VolumeSourceError(f"{path} is not a GeoJSON FeatureCollection")
    source_crs = _crs_of(collection, str(path))
    features = collection.get("features") or []
    field = aadt_field.lower()
    sections: list[HpmsSection] = []
    seen_field = False
    skipped = 0
    for number, feature in enumerate(features):
        properties = _folded(feature.get("properties") or {})
        seen_field = seen_field or field in properties
        geometry = feature.get("geometry")
        if not geometry:
            skipped += 1
            continue
        if geometry.get("type") not in ("LineString", "MultiLineString"):
            raise VolumeSourceError(f"{path}: feature {number} is a {geometry.get('type')}; only LineString and "
                                    "MultiLineString sections can be matched to edges")
        line = shapely.from_geojson(json.dumps(geometry))
        if source_crs is not None:
            line = shapely.transform(line, lambda xy: np.column_stack(transform(xy[:, 0], xy[:, 1], source_crs,
                                                                                "EPSG:4326")))
        section = _section(properties.get(field), line, properties)
        if section is None:
            skipped += 1
        else:
            sections.append(section)
    if features and not seen_field:
        names = sorted({key for feature in features for key in (feature.get("properties") or {})})
        raise VolumeSourceError(f"{path}: no feature has the property {aadt_field!r} (properties: {names})")
    if skipped:
        logger.info("%s: skipped %d features without AADT or geometry", path, skipped)
    return sections


# --------------------------------------------------------------------------- matching


def match_volume(edges: pa.Table, sections: Sequence[tuple[float, Any]] | Iterable[HpmsSection], *, year: int,
                 source: str = "hpms", epsg: int | None = None,
                 max_distance_m: float = 30.0) -> tuple[pa.Table, dict[str, Any]]:
    """The ``edge_volume`` table: for each edge, the AADT of the section nearest to its midpoint.

    ``edges``: the ``edges`` table (``edge_id``, ``geometry`` WKB LineString in WGS84). ``sections``: (aadt,
    WGS84 line) pairs such as :class:`HpmsSection`. Distances are measured in ``epsg`` (default: the UTM zone of the
    edges' centre); sections farther than ``max_distance_m`` from an edge's midpoint are ignored, and edges with no
    section (local roads, which HPMS does not cover) or no geometry are left out and counted in the report.
    """
    import shapely

    if max_distance_m <= 0:
        raise ValueError(f"max_distance_m must be positive, not {max_distance_m}")
    for name in ("edge_id", "geometry"):
        if name not in edges.column_names:
            raise ValueError(f"edges table lacks column {name!r} (has {edges.column_names})")
    edge_ids = edges.column("edge_id").to_numpy(zero_copy_only=False).astype(np.int64)
    geometries = lines_from_wkb(edges.column("geometry").to_pylist())
    has_geometry = ~(shapely.is_missing(geometries) | shapely.is_empty(geometries))
    section_list = list(sections)
    aadt = np.array([float(section[0]) for section in section_list], dtype=np.float64)
    section_geometries = np.empty(len(section_list), dtype=object)
    section_geometries[:] = [section[1] for section in section_list]
    if epsg is None:
        epsg = _default_epsg(geometries[has_geometry], section_geometries)
    report: dict[str, Any] = {
        "year": int(year), "source": source, "epsg": int(epsg) if epsg is not None else None,
        "max_distance_m": float(max_distance_m), "edges": int(len(edge_ids)),
        "edges_without_geometry": int((~has_geometry).sum()), "sections": len(section_list),
    }
    chosen_edge = np.zeros(0, dtype=np.int64)
    chosen_section = np.zeros(0, dtype=np.int64)
    chosen_distance = np.zeros(0, dtype=np.float64)
    ties = 0
    if has_geometry.any() and section_list:
        midpoints = shapely.line_interpolate_point(project_geometries(geometries[has_geometry], epsg), 0.5,
                                                   normalized=True)
        tree = shapely.STRtree(project_geometries(section_geometries, epsg))
        (query, found), distance = tree.query_nearest(midpoints, max_distance=max_distance_m, return_distance=True,
                                                      all_matches=True)
        within = distance <= max_distance_m
        query, found, distance = query[within], found[within], distance[within]
        order = np.lexsort((found, distance, query))  # per edge: nearest first, then lowest section index
        query, found, distance = query[order], found[order], distance[order]
        first = np.flatnonzero(np.r_[True, query[1:] != query[:-1]]) if len(query) else np.zeros(0, dtype=np.int64)
        counts = np.diff(np.r_[first, len(query)])
        ties = int((counts > 1).sum())
        chosen_edge = np.flatnonzero(has_geometry)[query[first]]
        chosen_section = found[first]
        chosen_distance = distance[first]
    table = conform("edge_volume", pa.table({
        "year": pa.array(np.full(len(chosen_edge), year, dtype=np.int16)),
        "edge_id": pa.array(edge_ids[chosen_edge]),
        "aadt": pa.array(aadt[chosen_section].astype(np.float32)),
        "source": pa.array([source] * len(chosen_edge), pa.string()),
        "match_distance_m": pa.array(chosen_distance.astype(np.float32)),
    }))
    matched = len(chosen_edge)
    report.update({
        "matched": matched,
        "unmatched": int(has_geometry.sum()) - matched,
        "ties": ties,
        "sections_used": int(len(np.unique(chosen_section))),
        "distance_m": ({"median": float(np.median(chosen_distance)), "max": float(chosen_distance.max())}
                       if matched else {"median": None, "max": None}),
        "note": LOCAL_ROADS_NOTE,
    })
    logger.info("edge_volume %s %d: %d of %d edges matched within %.0f m", source, year, matched, len(edge_ids),
                max_distance_m)
    return table, report


def _default_epsg(edge_geometries: np.ndarray, section_geometries: np.ndarray) -> int:
    import shapely

    pool = edge_geometries if len(edge_geometries) else section_geometries
    if not len(pool):
        return utm_epsg(0.0, 0.0)
    min_x, min_y, max_x, max_y = shapely.total_bounds(pool)
    return utm_epsg((min_x + max_x) / 2.0, (min_y + max_y) / 2.0)
