"""The state-scale region's road network: a jittered street grid as nodes, segments and directed edges.

Part of :mod:`synthetic.state_scale` (see there): drawn with vectorised numpy, written as the ``nodes`` and
``edges`` tables and, optionally, as the osmnx GraphML file that the build's ``network_stage`` reads.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from gnnbench.road.geo import transform

STATE_SCALE_EPSG = 32619  # WGS84 / UTM zone 19N (central meridian 69 W)
_ORIGIN_M = (350_000.0, 3_930_000.0)  # south-west corner of the grid (easting, northing): about 36.3 N, 70.7 W

CLASSES = ("motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link", "secondary",
            "secondary_link", "tertiary", "tertiary_link", "unclassified", "residential")
CLASS_CODE = {name: code for code, name in enumerate(CLASSES)}
#: per class: crash weight (per metre), lanes, share of lanes missing, maxspeed tag in mph, share missing
CLASS_TABLE = {
    "motorway": (6.0, 3, 0.05, 65, 0.05), "motorway_link": (3.0, 1, 0.3, 35, 0.5),
    "trunk": (5.0, 2, 0.1, 55, 0.1), "trunk_link": (3.0, 1, 0.3, 35, 0.5),
    "primary": (4.0, 2, 0.2, 45, 0.2), "primary_link": (2.0, 1, 0.4, 30, 0.6),
    "secondary": (3.0, 2, 0.3, 40, 0.3), "secondary_link": (2.0, 1, 0.5, 30, 0.6),
    "tertiary": (2.0, 2, 0.5, 35, 0.4), "tertiary_link": (1.5, 1, 0.6, 25, 0.7),
    "unclassified": (1.0, 1, 0.9, 35, 0.8), "residential": (1.0, 1, 0.85, 25, 0.7),
}


def draw_network(rng: np.random.Generator, num_nodes: int, num_edges: int, extent_m: float) -> dict[str, np.ndarray]:
    """Nodes, segments and directed edges of the jittered grid (metres and WGS84)."""
    rows = max(2, int(math.isqrt(num_nodes)))
    cols = -(-num_nodes // rows)
    spacing = extent_m / max(rows, cols)
    index = np.arange(num_nodes, dtype=np.int64)
    r, c = index // cols, index % cols
    x = _ORIGIN_M[0] + c * spacing + rng.normal(0.0, 0.08 * spacing, num_nodes)
    y = _ORIGIN_M[1] + r * spacing + rng.normal(0.0, 0.08 * spacing, num_nodes)

    # Candidate segments: grid rows, grid columns, and a diagonal in 3% of the cells (one per cell: planar).
    horizontal = index[(c < cols - 1) & (index + 1 < num_nodes)]
    vertical = index[index + cols < num_nodes]
    cells = index[(c < cols - 1) & (index + cols + 1 < num_nodes)]
    cells = cells[rng.random(len(cells)) < 0.03]
    anti = rng.random(len(cells)) < 0.5
    cand_u = np.concatenate([horizontal, vertical, np.where(anti, cells + 1, cells)])
    cand_v = np.concatenate([horizontal + 1, vertical + cols, np.where(anti, cells + cols, cells + cols + 1)])
    line = np.concatenate([r[horizontal], c[vertical], np.full(len(cells), -1)])
    way = np.concatenate([100_000_000 + r[horizontal], 200_000_000 + c[vertical], 300_000_000 + cells])
    klass = _line_classes(rng, line)

    # Keep every major road and enough minor streets for the wanted number of directed edges (70% two-way).
    wanted = min(len(cand_u), max(1, round(num_edges / 1.7)))
    major = klass < CLASS_CODE["unclassified"]
    minor = np.flatnonzero(~major)
    if major.sum() >= wanted:
        keep = np.sort(rng.choice(len(cand_u), wanted, replace=False))
    else:
        chosen = rng.choice(minor, wanted - int(major.sum()), replace=False)
        keep = np.sort(np.concatenate([np.flatnonzero(major), chosen]))
    a, b, klass, way = cand_u[keep], cand_v[keep], klass[keep], way[keep]
    num_segments = len(a)
    one_way_count = int(np.clip(2 * num_segments - num_edges, 0, num_segments))
    weight = np.where(np.isin(klass, [CLASS_CODE[name] for name in CLASSES if name.endswith("_link")] +
                              [CLASS_CODE["motorway"]]), 4.0, 1.0)
    priority = rng.random(num_segments) ** (1.0 / weight)       # weighted sampling without replacement
    seg_oneway = np.zeros(num_segments, dtype=bool)
    if one_way_count:
        seg_oneway[np.argpartition(-priority, one_way_count - 1)[:one_way_count]] = True
    flip = rng.random(num_segments) < 0.5
    seg_u, seg_v = np.where(flip, b, a), np.where(flip, a, b)

    # A shape point on 40% of the segments, offset sideways from the middle.
    has_mid = rng.random(num_segments) < 0.4
    dx, dy = x[seg_v] - x[seg_u], y[seg_v] - y[seg_u]
    norm = np.hypot(dx, dy)
    side = rng.normal(0.0, 0.05 * spacing, num_segments)
    mid_x = (x[seg_u] + x[seg_v]) / 2 - dy / norm * side
    mid_y = (y[seg_u] + y[seg_v]) / 2 + dx / norm * side
    straight = np.hypot(dx, dy)
    bent = np.hypot(mid_x - x[seg_u], mid_y - y[seg_u]) + np.hypot(x[seg_v] - mid_x, y[seg_v] - mid_y)
    seg_length = np.round(np.where(has_mid, bent, straight), 3)

    lon, lat = transform(x, y, STATE_SCALE_EPSG, "EPSG:4326")
    mid_lon, mid_lat = transform(mid_x, mid_y, STATE_SCALE_EPSG, "EPSG:4326")

    # Directed edges: (u, v) for every segment, (v, u) for two-way ones; edge id = rank of (src, dst).
    two_way = np.flatnonzero(~seg_oneway)
    src = np.concatenate([seg_u, seg_v[two_way]])
    dst = np.concatenate([seg_v, seg_u[two_way]])
    segment = np.concatenate([np.arange(num_segments), two_way])
    reverse = np.concatenate([np.zeros(num_segments, dtype=bool), np.ones(len(two_way), dtype=bool)])
    order = np.argsort(src * num_nodes + dst, kind="stable")
    src, dst, segment, reverse = src[order], dst[order], segment[order], reverse[order]
    canonical = np.full(num_segments, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(canonical, segment, np.arange(len(src), dtype=np.int64))
    return {"x": x, "y": y, "lon": np.round(lon, 7), "lat": np.round(lat, 7), "spacing": np.array(spacing),
            "seg_u": seg_u, "seg_v": seg_v, "seg_class": klass, "seg_way": way, "seg_oneway": seg_oneway,
            "seg_length": seg_length, "seg_has_mid": has_mid, "mid_x": mid_x, "mid_y": mid_y,
            "mid_lon": np.round(mid_lon, 7), "mid_lat": np.round(mid_lat, 7),
            "src": src, "dst": dst, "segment": segment, "reverse": reverse, "canonical": canonical}


def _line_classes(rng: np.random.Generator, line: np.ndarray) -> np.ndarray:
    """Highway class code per candidate segment from its grid line (-1: a diagonal street)."""
    klass = np.full(len(line), CLASS_CODE["residential"], dtype=np.int64)
    grid = line >= 0
    for name, modulus, remainder in (("tertiary", 5, 2), ("secondary", 10, 5), ("primary", 20, 10),
                                     ("trunk", 40, 20), ("motorway", 80, 40)):
        klass[grid & (line % modulus == remainder)] = CLASS_CODE[name]
    minor = klass == CLASS_CODE["residential"]
    klass[minor & (rng.random(len(line)) < 0.15)] = CLASS_CODE["unclassified"]
    major = klass < CLASS_CODE["unclassified"]
    link = major & (rng.random(len(line)) < 0.01)
    klass[link] = np.minimum(klass[link] // 2 * 2 + 1, CLASS_CODE["tertiary_link"])  # the class's *_link
    return klass


def network_tables(network: dict[str, np.ndarray], betweenness_sources: int | None, seed: int):
    """The ``nodes`` and ``edges`` tables (betweenness null unless ``betweenness_sources``)."""
    import shapely

    n = len(network["lon"])
    src, dst, segment = network["src"], network["dst"], network["segment"]
    osm_ids = 1_000_000_000 + 7 * np.arange(n, dtype=np.int64)
    length = network["seg_length"][segment]
    if betweenness_sources:
        from gnnbench.road.sources.osm import node_table

        nodes = node_table(osm_ids, network["lon"], network["lat"], src, dst, length,
                           betweenness_sources=betweenness_sources, seed=seed)
    else:
        degree = np.bincount(src, minlength=n) + np.bincount(dst, minlength=n)
        nodes = pa.table({"node_id": np.arange(n, dtype=np.int64), "osm_id": osm_ids, "lon": network["lon"],
                          "lat": network["lat"], "degree": degree.astype(np.int32),
                          "betweenness": pa.nulls(n, pa.float64())})

    # Geometry in travel direction: src, [shape point], dst.
    lon, lat = network["lon"], network["lat"]
    mid = network["seg_has_mid"][segment]
    geometry = np.empty(len(src), dtype=object)
    for bent in (False, True):
        where = np.flatnonzero(mid == bent)
        start = np.stack([lon[src[where]], lat[src[where]]], axis=1)
        end = np.stack([lon[dst[where]], lat[dst[where]]], axis=1)
        if bent:
            s = segment[where]
            middle = np.stack([network["mid_lon"][s], network["mid_lat"][s]], axis=1)
            coords = np.stack([start, middle, end], axis=1)
        else:
            coords = np.stack([start, end], axis=1)
        geometry[where] = shapely.to_wkb(shapely.linestrings(coords))
    classes = np.asarray(CLASSES, dtype=object)[network["seg_class"]]
    klass = network["seg_class"][segment]
    lanes, _, speed, _ = class_columns(klass)
    _, lanes_missing, _, speed_missing = class_columns(network["seg_class"])
    rng = np.random.default_rng(seed + 11)
    num_segments = len(network["seg_u"])
    lanes_null = rng.random(num_segments) < lanes_missing       # tags belong to the OSM way: both directions
    speed_null = rng.random(num_segments) < speed_missing
    bridge = rng.random(num_segments) < 0.01
    tunnel = ~bridge & (rng.random(num_segments) < 0.001)
    edges = pa.table({
        "edge_id": np.arange(len(src), dtype=np.int64), "src": src, "dst": dst,
        "osm_way_id": network["seg_way"][segment], "length_m": length, "highway": classes[segment],
        "oneway": network["seg_oneway"][segment],
        "lanes": pa.array(lanes.astype(np.float32), mask=lanes_null[segment]),
        "maxspeed_kmh": pa.array(speed.astype(np.float32), mask=speed_null[segment]),
        "bridge": bridge[segment], "tunnel": tunnel[segment],
        "geometry": pa.array(geometry, type=pa.binary()),
    })
    network["lanes_null"], network["speed_null"] = lanes_null, speed_null
    network["bridge"], network["tunnel"] = bridge, tunnel
    return nodes, edges


def class_columns(klass: np.ndarray):
    table = [CLASS_TABLE[name] for name in CLASSES]
    lanes = np.array([row[1] for row in table], dtype=np.float64)[klass]
    lanes_missing = np.array([row[2] for row in table])[klass]
    speed = (np.array([row[3] for row in table], dtype=np.float64) * 1.609344)[klass]  # as osm.parse_maxspeed
    speed_missing = np.array([row[4] for row in table])[klass]
    return lanes, lanes_missing, speed, speed_missing


def write_graphml(path: Path, network: dict[str, np.ndarray]) -> None:
    """The network as osmnx saves a simplified drive graph (every attribute a string), for ``network_stage``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    import shapely

    n = len(network["lon"])
    osm_ids = 1_000_000_000 + 7 * np.arange(n, dtype=np.int64)
    src, dst, segment = network["src"], network["dst"], network["segment"]
    degree = np.bincount(src, minlength=n) + np.bincount(dst, minlength=n)
    klass = network["seg_class"]
    lanes, _, speed, _ = class_columns(klass)
    lanes_null = network["lanes_null"][segment]
    speed_null = network["speed_null"][segment]
    mph = np.round(speed / 1.609344).astype(np.int64)
    keys = [("d0", "graph", "crs"), ("d1", "graph", "simplified"), ("d2", "node", "y"), ("d3", "node", "x"),
            ("d4", "node", "street_count"), ("d5", "edge", "osmid"), ("d6", "edge", "highway"),
            ("d7", "edge", "oneway"), ("d8", "edge", "reversed"), ("d9", "edge", "length"),
            ("d10", "edge", "geometry"), ("d11", "edge", "lanes"), ("d12", "edge", "maxspeed"),
            ("d13", "edge", "bridge"), ("d14", "edge", "tunnel")]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("<?xml version='1.0' encoding='utf-8'?>\n<graphml xmlns=\"http://graphml.graphdrawing.org/"
                     "xmlns\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\"http://"
                     "graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd\">\n")
        for key, target, name in keys:
            handle.write(f'<key id="{key}" for="{target}" attr.name="{name}" attr.type="string" />\n')
        handle.write('<graph edgedefault="directed"><data key="d0">epsg:4326</data>'
                     '<data key="d1">True</data>\n')
        lon, lat = network["lon"].tolist(), network["lat"].tolist()
        handle.writelines(f'<node id="{osm}"><data key="d2">{y!r}</data><data key="d3">{x!r}</data>'
                          f'<data key="d4">{d}</data></node>\n'
                          for osm, x, y, d in zip(osm_ids.tolist(), lon, lat, degree.tolist()))
        mid = network["seg_has_mid"][segment]
        wkt = np.full(len(src), "", dtype=object)
        where = np.flatnonzero(mid)
        s = segment[where]
        coords = np.stack([np.stack([network["lon"][src[where]], network["lat"][src[where]]], axis=1),
                           np.stack([network["mid_lon"][s], network["mid_lat"][s]], axis=1),
                           np.stack([network["lon"][dst[where]], network["lat"][dst[where]]], axis=1)], axis=1)
        wkt[where] = shapely.to_wkt(shapely.linestrings(coords), rounding_precision=7, trim=True)
        classes = np.asarray(CLASSES, dtype=object)[klass]
        seg_bridge, seg_tunnel = network["bridge"], network["tunnel"]
        columns = zip(osm_ids[src].tolist(), osm_ids[dst].tolist(), network["seg_way"][segment].tolist(),
                      classes[segment].tolist(), network["seg_oneway"][segment].tolist(),
                      network["reverse"].tolist(), network["seg_length"][segment].tolist(), wkt.tolist(),
                      lanes[segment].astype(np.int64).tolist(), lanes_null.tolist(), mph[segment].tolist(),
                      speed_null.tolist(), seg_bridge[segment].tolist(), seg_tunnel[segment].tolist())
        for u, v, way, highway, oneway, rev, length, geometry, lane, no_lane, speed_mph, no_speed, br, tu in columns:
            parts = [f'<edge source="{u}" target="{v}" id="0"><data key="d5">{way}</data>'
                     f'<data key="d6">{highway}</data><data key="d7">{oneway}</data><data key="d8">{rev}</data>'
                     f'<data key="d9">{length!r}</data>']
            if geometry:
                parts.append(f'<data key="d10">{geometry}</data>')
            if not no_lane:
                parts.append(f'<data key="d11">{lane}</data>')
            if not no_speed:
                parts.append(f'<data key="d12">{speed_mph} mph</data>')
            if br:
                parts.append('<data key="d13">yes</data>')
            if tu:
                parts.append('<data key="d14">yes</data>')
            parts.append("</edge>\n")
            handle.write("".join(parts))
        handle.write("</graph></graphml>\n")
