"""Road networks from OpenStreetMap with osmnx: Overpass downloads or local OSM XML extracts.

Nodes are intersections (and dead ends), edges are directed road segments of the ``drive``
network (osmnx's definition: public drivable roads, no service roads). A two-way road gives
two edges, one per direction. :func:`network_tables` turns the graph into the ``nodes`` and
``edges`` tables (``gnnbench.road.tables``) with these features:

* edges: length in metres, OSM highway class (one of :data:`HIGHWAY_CLASSES`; a merged
  segment takes its most important class), oneway, lanes, maxspeed in km/h (``"30 mph"``,
  ``"50"``, ``"50;70"``, ``"RU:urban"``-style values handled; unparseable -> null), bridge,
  tunnel, and the segment geometry (WKB, WGS84);
* nodes: degree (in + out), betweenness centrality weighted by length (exact on small graphs,
  sampled sources on large ones; see ``gnnbench.road.centrality``), coordinates.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ...io import OfflineError, atomic_path, network_refused, sha256_file
from ..centrality import betweenness

log = logging.getLogger("gnnbench.road")

HIGHWAY_CLASSES = ("motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link", "secondary",
                   "secondary_link", "tertiary", "tertiary_link", "unclassified", "residential", "living_street",
                   "road", "other")
# osmnx's "drive" filter: highway values and tags that exclude a way (as in osmnx's network filter).
_NOT_DRIVE = frozenset({"abandoned", "bridleway", "bus_guideway", "construction", "corridor", "cycleway",
                        "elevator", "escalator", "footway", "no", "path", "pedestrian", "planned", "platform",
                        "proposed", "raceway", "razed", "service", "steps", "track"})
_MPH = 1.609344
_KNOTS = 1.852
_SPEED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(km/h|kmh|kph|mph|knots)?\s*$", re.IGNORECASE)


def parse_maxspeed(value: Any) -> float:
    """A maxspeed tag in km/h: numbers are km/h, ``mph``/``knots`` converted, lists -> the largest; else NaN."""
    values = value if isinstance(value, (list, tuple)) else [value]
    speeds = []
    for item in values:
        if item is None or (isinstance(item, float) and math.isnan(item)):
            continue
        for part in str(item).replace("|", ";").split(";"):
            match = _SPEED.match(part)
            if not match:
                continue
            number = float(match.group(1))
            unit = (match.group(2) or "km/h").lower()
            speeds.append(number * _MPH if unit == "mph" else number * _KNOTS if unit == "knots" else number)
    return max(speeds) if speeds else math.nan


def parse_lanes(value: Any) -> float:
    """A lanes tag as a number (``"2;3"`` or a list -> the largest); NaN when absent or unparseable."""
    values = value if isinstance(value, (list, tuple)) else [value]
    lanes = []
    for item in values:
        if item is None:
            continue
        for part in str(item).replace("|", ";").split(";"):
            try:
                number = float(part.strip())
            except ValueError:
                continue
            if math.isfinite(number) and number > 0:
                lanes.append(number)
    return max(lanes) if lanes else math.nan


def highway_class(value: Any) -> str:
    """The most important class among a segment's highway values (``other`` if none is in the vocabulary)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    ranks = [HIGHWAY_CLASSES.index(item) for item in map(str, values) if item in HIGHWAY_CLASSES]
    return HIGHWAY_CLASSES[min(ranks)] if ranks else "other"


def _flag(value: Any) -> bool:
    values = value if isinstance(value, (list, tuple)) else [value]
    return any(item is not None and str(item).lower() not in ("no", "false", "0", "nan") for item in values)


def _is_drive(data: dict) -> bool:
    highway = data.get("highway")
    values = highway if isinstance(highway, list) else [highway]
    if highway is None or all(str(item) in _NOT_DRIVE for item in values):
        return False
    if str(data.get("area", "no")) == "yes" or str(data.get("access", "")) == "private":
        return False
    return True


def load_osm_xml(path: str | os.PathLike) -> Any:
    """Drive network from a local OSM XML extract: filter to drivable ways, keep the largest component, simplify."""
    import osmnx as ox

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"OSM extract not found: {path}")
    graph = ox.graph_from_xml(path, simplify=False, retain_all=True)
    graph.remove_edges_from([(u, v, k) for u, v, k, data in graph.edges(keys=True, data=True) if not _is_drive(data)])
    graph.remove_nodes_from([node for node in list(graph.nodes) if graph.degree(node) == 0])
    if graph.number_of_edges() == 0:
        raise ValueError(f"{path} contains no drivable road (highway ways of the drive network)")
    graph = ox.truncate.largest_component(graph, strongly=False)
    return ox.simplify_graph(graph)


def fetch_overpass_network(dest: str | os.PathLike, *, place: str | None = None,
                           bbox: tuple[float, float, float, float] | None = None,
                           overpass_url: str | None = None, cache_dir: str | os.PathLike | None = None) -> dict:
    """Download the drive network of ``place`` (or ``bbox`` = west, south, east, north) via Overpass.

    osmnx does the querying, caching (in ``cache_dir``) and Overpass rate limiting; the graph is
    saved as GraphML at ``dest`` (atomically) and a source record (url, path, sha256) returned.
    In offline mode an existing ``dest`` is reused and a missing one raises ``OfflineError``.
    """
    import osmnx as ox

    dest = Path(dest)
    url = overpass_url or ox.settings.overpass_url
    if dest.exists():
        return {"url": url, "path": str(dest), "sha256": sha256_file(dest), "size": dest.stat().st_size,
                "role": "road network (osmnx GraphML)"}
    if network_refused(url):
        raise OfflineError(f"offline mode: the road network {dest} is missing; it comes from Overpass ({url})")
    if (place is None) == (bbox is None):
        raise ValueError("give exactly one of place or bbox")
    saved = (ox.settings.overpass_url, ox.settings.cache_folder, ox.settings.use_cache)
    try:
        ox.settings.overpass_url = url
        ox.settings.use_cache = True
        if cache_dir is not None:
            ox.settings.cache_folder = str(cache_dir)
        if place is not None:
            graph = ox.graph_from_place(place, network_type="drive", simplify=True)
        else:
            graph = ox.graph_from_bbox(bbox, network_type="drive", simplify=True)
    finally:
        ox.settings.overpass_url, ox.settings.cache_folder, ox.settings.use_cache = saved
    with atomic_path(dest) as temporary:
        ox.save_graphml(graph, temporary)
    from datetime import datetime, timezone

    return {"url": url, "path": str(dest), "sha256": sha256_file(dest), "size": dest.stat().st_size,
            "retrieved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "role": "road network (osmnx GraphML)", "query": place or list(bbox)}


def load_network(path: str | os.PathLike) -> Any:
    """A road graph from an OSM XML extract (``.osm``/``.xml``, optionally compressed) or a saved GraphML."""
    import osmnx as ox

    path = Path(path)
    if path.suffix == ".graphml":
        return ox.load_graphml(path)
    if path.suffix == ".pbf":
        raise ValueError(f"{path}: osmnx reads OSM XML, not PBF; convert it first "
                         f"(e.g. `osmium cat {path.name} -o {path.stem}.osm`)")
    return load_osm_xml(path)


def network_tables(graph: Any, *, betweenness_sources: int | None = None, seed: int = 0,
                   exact_below: int = 5000) -> tuple[pa.Table, pa.Table]:
    """The ``nodes`` and ``edges`` tables of an osmnx graph (ids renumbered: nodes by OSM id, edges by endpoints).

    Betweenness is exact when the graph has fewer than ``exact_below`` nodes, otherwise estimated
    from ``betweenness_sources`` (default 256) random sources drawn with ``seed``.
    """
    import shapely

    osm_ids = np.array(sorted(graph.nodes), dtype=np.int64)
    index = {osm: position for position, osm in enumerate(osm_ids.tolist())}
    node_data = graph.nodes
    lon = np.array([float(node_data[osm]["x"]) for osm in osm_ids.tolist()])
    lat = np.array([float(node_data[osm]["y"]) for osm in osm_ids.tolist()])

    rows = sorted(((index[u], index[v], k, data) for u, v, k, data in graph.edges(keys=True, data=True)),
                  key=lambda row: (row[0], row[1], row[2]))
    src = np.array([row[0] for row in rows], dtype=np.int64)
    dst = np.array([row[1] for row in rows], dtype=np.int64)
    datas = [row[3] for row in rows]
    length = np.array([float(data.get("length", math.nan)) for data in datas])
    geometries = [data.get("geometry") or shapely.LineString([(lon[s], lat[s]), (lon[d], lat[d])])
                  for s, d, data in zip(src.tolist(), dst.tolist(), datas)]
    if np.isnan(length).any():
        raise ValueError("the road graph has edges without a 'length' attribute")
    edges = pa.table({
        "edge_id": np.arange(len(rows), dtype=np.int64), "src": src, "dst": dst,
        "osm_way_id": pa.array([_way_id(data.get("osmid")) for data in datas], type=pa.int64()),
        "length_m": length,
        "highway": [highway_class(data.get("highway")) for data in datas],
        "oneway": np.array([_flag(data.get("oneway", False)) for data in datas], dtype=bool),
        "lanes": np.array([parse_lanes(data.get("lanes")) for data in datas], dtype=np.float32),
        "maxspeed_kmh": np.array([parse_maxspeed(data.get("maxspeed")) for data in datas], dtype=np.float32),
        "bridge": np.array([_flag(data.get("bridge")) for data in datas], dtype=bool),
        "tunnel": np.array([_flag(data.get("tunnel")) for data in datas], dtype=bool),
        "geometry": pa.array(shapely.to_wkb(np.array(geometries, dtype=object)).tolist(), type=pa.binary()),
    })
    edges = edges.set_column(edges.schema.get_field_index("lanes"), "lanes", _nan_to_null(edges["lanes"]))
    edges = edges.set_column(edges.schema.get_field_index("maxspeed_kmh"), "maxspeed_kmh",
                             _nan_to_null(edges["maxspeed_kmh"]))
    nodes = node_table(osm_ids, lon, lat, src, dst, length, betweenness_sources=betweenness_sources, seed=seed,
                       exact_below=exact_below)
    return nodes, edges


def node_table(osm_ids: np.ndarray, lon: np.ndarray, lat: np.ndarray, src: np.ndarray, dst: np.ndarray,
               length: np.ndarray, *, betweenness_sources: int | None = None, seed: int = 0,
               exact_below: int = 5000) -> pa.Table:
    """The ``nodes`` table from coordinates and the directed edge list (degree and betweenness computed here)."""
    num_nodes = len(lon)
    degree = np.bincount(src, minlength=num_nodes) + np.bincount(dst, minlength=num_nodes)
    sources = None if num_nodes < exact_below else (betweenness_sources or 256)
    centrality = betweenness(num_nodes, src, dst, length, sources=sources, seed=seed)
    return pa.table({
        "node_id": np.arange(num_nodes, dtype=np.int64), "osm_id": np.asarray(osm_ids, dtype=np.int64),
        "lon": lon, "lat": lat, "degree": degree.astype(np.int32), "betweenness": centrality,
    })


def _way_id(value: Any) -> int | None:
    values = value if isinstance(value, (list, tuple)) else [value]
    ids = [int(item) for item in values if item is not None]
    return min(ids) if ids else None


def _nan_to_null(column: pa.ChunkedArray) -> pa.Array:
    values = column.to_numpy()
    return pa.array(values, mask=np.isnan(values))


def edge_classes(highway: Iterable[str]) -> np.ndarray:
    """One-hot [E, len(HIGHWAY_CLASSES)] float32 encoding of highway classes (unknown -> ``other``)."""
    lookup = {name: position for position, name in enumerate(HIGHWAY_CLASSES)}
    codes = np.array([lookup.get(name, lookup["other"]) for name in highway], dtype=np.int64)
    onehot = np.zeros((len(codes), len(HIGHWAY_CLASSES)), dtype=np.float32)
    onehot[np.arange(len(codes)), codes] = 1.0
    return onehot
