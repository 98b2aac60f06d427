"""A synthetic state-sized region for the road benchmarks: 300k nodes, 700k edges, 3M crash records.

Nothing here is real data. :func:`generate_state_scale` draws, with vectorised numpy from one seed,

* a planar-ish road network over a square of about ``extent_km`` (300 km) on a side in UTM zone 19N,
  out in the Atlantic (so no real road is there): a jittered street grid with about a third of the
  minor streets removed and a few diagonals added, highway classes along grid lines (motorway,
  trunk, primary, secondary, tertiary every so many lines, with some ``*_link`` pieces; residential
  and unclassified streets elsewhere), about 30% one-way segments (a two-way segment is two
  directed edges with reversed geometry, as osmnx gives them), straight or three-point LineString
  geometries, lengths in metres from the geometry, lanes/maxspeed per class with gaps, a few
  bridges and tunnels. It is written directly as the ``nodes`` and ``edges`` tables;
* crash records near the roads in Delaware's CSV-export shape (display column names such as
  ``CRASH DATETIME``, ``LATITUDE``, ``LONGITUDE``, ``CRASH CLASSIFICATION DESCRIPTION`` plus a
  dozen attribute columns the pipeline ignores), shuffled and split over a few files, with about
  3% bad rows of every kind the crash accounting counts (missing, zero, swapped and out-of-state
  coordinates, unparseable dates, exact duplicates, crashes far from every road);
* ground-truth ``accidents`` (every good crash on the segment it was drawn on), ``node_weather``
  and ``edge_volume`` tables plus ``manifest.json``: a complete table directory for the datasets;
* the same graph, accidents, weather and traffic volume as an ML4RoadSafety release directory
  (``adj_matrix.pt``, ``accidents_monthly.csv``, ``Nodes/node_features_{y}_{m}.csv``, ``Edges/...``,
  via :func:`synthetic.release.write_release`), whose edge order equals ours;
* optionally the network as an osmnx GraphML file, so the build's ``network_stage`` can be run on it.

Betweenness is left null in the generated ``nodes`` table unless ``betweenness_sources`` is given
(256 sampled sources over the 300k-node graph add about 11 s on two cores); the build-memory
benchmark computes and times it as part of the network stage, which it runs on the GraphML file.

The benchmarks use :func:`benchmark_region`: :data:`FULL_SIZES` (the state scale) or
:data:`QUICK_SIZES` (a CI smoke run), generated once into a work directory and reused.

The output is cached: a directory holding ``state_scale.json`` with the same parameters is reused.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from gnnbench.road.geo import transform
from gnnbench.road.states import STATES, CrashSource, StateEntry

STATE_SCALE_CODE = "ZZ"
STATE_SCALE_EPSG = 32619           # WGS84 / UTM zone 19N (central meridian 69 W)
_ORIGIN_M = (350_000.0, 3_930_000.0)  # south-west corner of the grid (easting, northing): about 36.3 N, 70.7 W
_BBOX_MARGIN_DEG = 0.1
MARKER = "state_scale.json"
FORMAT = 2

_CLASSES = ("motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link", "secondary",
            "secondary_link", "tertiary", "tertiary_link", "unclassified", "residential")
_CODE = {name: code for code, name in enumerate(_CLASSES)}
#: per class: crash weight (per metre), lanes, share of lanes missing, maxspeed tag in mph, share missing
_CLASS_TABLE = {
    "motorway": (6.0, 3, 0.05, 65, 0.05), "motorway_link": (3.0, 1, 0.3, 35, 0.5),
    "trunk": (5.0, 2, 0.1, 55, 0.1), "trunk_link": (3.0, 1, 0.3, 35, 0.5),
    "primary": (4.0, 2, 0.2, 45, 0.2), "primary_link": (2.0, 1, 0.4, 30, 0.6),
    "secondary": (3.0, 2, 0.3, 40, 0.3), "secondary_link": (2.0, 1, 0.5, 30, 0.6),
    "tertiary": (2.0, 2, 0.5, 35, 0.4), "tertiary_link": (1.5, 1, 0.6, 25, 0.7),
    "unclassified": (1.0, 1, 0.9, 35, 0.8), "residential": (1.0, 1, 0.85, 25, 0.7),
}

# Delaware crash classification (code, description) and other attribute vocabularies of the export.
_SEVERITY = (("1", "Non-Reportable"), ("2", "Property Damage Only"), ("3", "Personal Injury Crash"),
             ("4", "Fatality Crash"))
_SEVERITY_WEIGHTS = (0.2, 0.55, 0.235, 0.015)
_WEATHER = ("Clear", "Cloudy", "Rain", "Snow", "Fog, Smog, Smoke", "Sleet, Hail (Freezing Rain or Drizzle)")
_SURFACE = ("Dry", "Wet", "Snow", "Ice/Frost", "Sand", "Other")
_LIGHT = ("Daylight", "Dark-Lighted", "Dark-Not Lighted", "Dawn", "Dusk")
_IMPACT = ("Front to rear", "Angle", "Sideswipe, same direction", "Front to front", "Not a collision between two "
           "vehicles", "Rear to side")
_CIRCUMSTANCE = ("Following too close", "Failed to yield right of way", "Driver inattention, distraction, or "
                 "fatigue", "Speeding", "Improper lane change", "None")
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_YN = ("N", "Y")
DATE_FORMAT = "%m/%d/%Y %I:%M:%S %p"   # Socrata's CSV export of a floating timestamp
BAD_KINDS = ("missing_coordinates", "zero_coordinates", "swapped_lat_lon", "outside_state", "unparseable_date",
             "duplicate", "unmatched")


FULL_SIZES = {"num_nodes": 300_000, "num_edges": 700_000, "num_crashes": 3_000_000}
QUICK_SIZES = {"num_nodes": 20_000, "num_edges": 46_000, "num_crashes": 200_000}


@dataclass
class StateScaleRegion:
    """Where :func:`generate_state_scale` put everything, and what the build must report."""

    directory: Path
    region: StateEntry
    tables: Path                      # nodes, edges, accidents (ground truth), node_weather, edge_volume, manifest
    crash_files: list[Path]
    release: Path                     # ML4RoadSafety layout: release/ZZ/
    points: Path                      # crash_points.npz: lon, lat, canonical edge of every good crash
    network_file: Path | None         # osmnx GraphML, when asked for
    parameters: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)
    expected_quality: dict[str, int] = field(default_factory=dict)

    @property
    def years(self) -> list[int]:
        return list(self.parameters["years"])

    def crash_points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lon, lat, canonical edge it was drawn on) of every crash the build map-matches: the good ones,
        then those placed far from every road (edge -1), which must come out unmatched."""
        with np.load(self.points) as data:
            return (np.concatenate([data["lon"], data["far_lon"]]), np.concatenate([data["lat"], data["far_lat"]]),
                    np.concatenate([data["edge"], np.full(len(data["far_lon"]), -1, dtype=np.int64)]))


def state_scale_entry(bbox: tuple[float, float, float, float], years: tuple[int, ...]) -> StateEntry:
    """A ``StateEntry`` for the synthetic region: Delaware's column mapping, ``bbox``, UTM zone 19N."""
    years = tuple(sorted(int(year) for year in years))
    if len(years) >= 3:
        splits = (("train", years[:-2]), ("valid", (years[-2],)), ("test", (years[-1],)))
    elif len(years) == 2:
        splits = (("train", (years[0],)), ("valid", ()), ("test", (years[1],)))
    else:
        splits = (("train", years), ("valid", ()), ("test", ()))
    return StateEntry(
        code=STATE_SCALE_CODE, name="State-scale benchmark region (synthetic)", fips="00",
        bbox=tuple(round(value, 4) for value in bbox), utm_epsg=STATE_SCALE_EPSG, timezone="America/New_York",
        crash_source=CrashSource(kind="manual", portal="(generated by tests/synthetic/state_scale.py)",
                                 years=(years[0], years[-1]), verified=True,
                                 licence="synthetic data generated by gnnbench (Apache-2.0)",
                                 manual_instructions="generated files; pass them with --crashes"),
        columns=STATES["DE"].columns, _splits=splits, osm_extract_url="(generated)",
        notes="Synthetic: a jittered street grid about 300 km across with Delaware-format crash records.")


def generate_state_scale(directory: str | os.PathLike, *, num_nodes: int = 300_000, num_edges: int = 700_000,
                         num_crashes: int = 3_000_000, years: tuple[int, ...] = (2018, 2019), seed: int = 0,
                         extent_km: float = 300.0, crash_files: int = 6, bad_fraction: float = 0.03,
                         betweenness_sources: int | None = None, release: bool = True, graphml: bool = False,
                         reuse: bool = True) -> StateScaleRegion:
    """Generate (or reuse) the synthetic state-scale region under ``directory`` (see the module docstring).

    ``num_edges`` is the number of directed edges (two-way segments count twice); ``num_crashes`` the
    number of raw crash rows, bad ones included (``bad_fraction`` of them, spread over the seven kinds).
    """
    directory = Path(directory)
    parameters = {"format": FORMAT, "num_nodes": int(num_nodes), "num_edges": int(num_edges),
                  "num_crashes": int(num_crashes), "years": [int(year) for year in years], "seed": int(seed),
                  "extent_km": float(extent_km), "crash_files": int(crash_files), "bad_fraction": float(bad_fraction),
                  "betweenness_sources": betweenness_sources, "release": bool(release), "graphml": bool(graphml)}
    marker = directory / MARKER
    if reuse and marker.exists():
        record = json.loads(marker.read_text())
        if record.get("parameters") == parameters:
            return _from_record(directory, record)
    if directory.exists():
        for name in ("tables", "raw", "release", "crash_points.npz", MARKER):
            path = directory / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    if num_nodes < 16 or num_edges < 16 or num_crashes < 100:
        raise ValueError("the state-scale region needs at least 16 nodes, 16 edges and 100 crashes")
    rng = np.random.default_rng(seed)

    network = _network(rng, num_nodes, num_edges, extent_km * 1000.0)
    lon_min, lat_min = network["lon"].min(), network["lat"].min()
    lon_max, lat_max = network["lon"].max(), network["lat"].max()
    bbox = (lon_min - _BBOX_MARGIN_DEG, lat_min - _BBOX_MARGIN_DEG, lon_max + _BBOX_MARGIN_DEG,
            lat_max + _BBOX_MARGIN_DEG)
    region = state_scale_entry(bbox, tuple(years))

    tables_dir = directory / "tables" / STATE_SCALE_CODE
    tables_dir.mkdir(parents=True, exist_ok=True)
    nodes, edges = _network_tables(network, betweenness_sources, seed)
    from gnnbench.road.tables import write_table

    write_table("nodes", nodes, tables_dir)
    write_table("edges", edges, tables_dir)
    del nodes, edges

    crashes = _crashes(rng, network, num_crashes, tuple(years), bad_fraction)
    crash_dir = directory / "raw" / "crashes"
    paths = _write_crash_files(crash_dir, crashes, crash_files, rng)
    points = directory / "crash_points.npz"
    good = crashes["good"]
    np.savez(points, lon=crashes["lon"], lat=crashes["lat"], edge=network["canonical"][crashes["segment"]],
             far_lon=crashes["far_lon"], far_lat=crashes["far_lat"])

    periods = [(int(year), month) for year in years for month in range(1, 13)]
    weather, missing = _weather(rng, len(network["lon"]), periods)
    aadt = _aadt(rng, network, tuple(years))
    accidents = _truth_accidents(network, crashes)
    _write_other_tables(tables_dir, network, accidents, weather, missing, periods, aadt)
    from gnnbench.road.manifest import write_manifest
    from gnnbench.road.tables import TABLES

    write_manifest(tables_dir, kind="synthetic-state-scale", state=STATE_SCALE_CODE,
                   parameters={"years": list(region.years) or [int(y) for y in years], "splits": region.splits,
                               "seed": int(seed), "generator": "tests/synthetic/state_scale.py"},
                   sources=[], tables=TABLES, quality={"crashes": crashes["expected"]})

    if release:
        _write_release(directory / "release", network, accidents, weather, missing, periods, aadt, tuple(years))
    network_file = None
    if graphml:
        network_file = directory / "raw" / "osm" / "network.graphml"
        _write_graphml(network_file, network)

    stats = {"nodes": int(len(network["lon"])), "edges": int(len(network["src"])),
             "segments": int(len(network["seg_u"])), "one_way_segments": int(network["seg_oneway"].sum()),
             "crash_rows": int(crashes["rows"]), "good_crashes": int(good),
             "accident_rows": int(len(accidents["edge"])), "bbox": [float(value) for value in region.bbox]}
    record = {"parameters": parameters, "bbox": stats["bbox"], "stats": stats,
              "expected_quality": crashes["expected"], "crash_files": [path.name for path in paths],
              "network_file": str(network_file.relative_to(directory)) if network_file else None}
    marker.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return _from_record(directory, record)


def benchmark_region(work: str | os.PathLike, *, quick: bool = False, **options: Any) -> StateScaleRegion:
    """The region the road benchmarks run on, generated into ``work/full`` or ``work/quick`` and reused."""
    sizes = QUICK_SIZES if quick else FULL_SIZES
    options = {**sizes, "graphml": True, "release": True, **options}  # one cache serves all three benchmarks
    return generate_state_scale(Path(work) / ("quick" if quick else "full"), **options)


def _from_record(directory: Path, record: dict[str, Any]) -> StateScaleRegion:
    parameters = record["parameters"]
    region = state_scale_entry(tuple(record["bbox"]), tuple(parameters["years"]))
    network_file = record.get("network_file")
    return StateScaleRegion(
        directory=directory, region=region, tables=directory / "tables" / STATE_SCALE_CODE,
        crash_files=[directory / "raw" / "crashes" / name for name in record["crash_files"]],
        release=directory / "release" / STATE_SCALE_CODE, points=directory / "crash_points.npz",
        network_file=directory / network_file if network_file else None, parameters=parameters,
        stats=record["stats"], expected_quality=record["expected_quality"])


# =========================================================================== network


def _network(rng: np.random.Generator, num_nodes: int, num_edges: int, extent_m: float) -> dict[str, np.ndarray]:
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
    major = klass < _CODE["unclassified"]
    minor = np.flatnonzero(~major)
    if major.sum() >= wanted:
        keep = np.sort(rng.choice(len(cand_u), wanted, replace=False))
    else:
        chosen = rng.choice(minor, wanted - int(major.sum()), replace=False)
        keep = np.sort(np.concatenate([np.flatnonzero(major), chosen]))
    a, b, klass, way = cand_u[keep], cand_v[keep], klass[keep], way[keep]
    num_segments = len(a)
    one_way_count = int(np.clip(2 * num_segments - num_edges, 0, num_segments))
    weight = np.where(np.isin(klass, [_CODE[name] for name in _CLASSES if name.endswith("_link")] +
                              [_CODE["motorway"]]), 4.0, 1.0)
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
    klass = np.full(len(line), _CODE["residential"], dtype=np.int64)
    grid = line >= 0
    for name, modulus, remainder in (("tertiary", 5, 2), ("secondary", 10, 5), ("primary", 20, 10),
                                     ("trunk", 40, 20), ("motorway", 80, 40)):
        klass[grid & (line % modulus == remainder)] = _CODE[name]
    minor = klass == _CODE["residential"]
    klass[minor & (rng.random(len(line)) < 0.15)] = _CODE["unclassified"]
    major = klass < _CODE["unclassified"]
    link = major & (rng.random(len(line)) < 0.01)
    klass[link] = np.minimum(klass[link] // 2 * 2 + 1, _CODE["tertiary_link"])  # the class's *_link
    return klass


def _network_tables(network: dict[str, np.ndarray], betweenness_sources: int | None, seed: int):
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
    classes = np.asarray(_CLASSES, dtype=object)[network["seg_class"]]
    klass = network["seg_class"][segment]
    lanes, _, speed, _ = _class_columns(klass)
    _, lanes_missing, _, speed_missing = _class_columns(network["seg_class"])
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


def _class_columns(klass: np.ndarray):
    table = [_CLASS_TABLE[name] for name in _CLASSES]
    lanes = np.array([row[1] for row in table], dtype=np.float64)[klass]
    lanes_missing = np.array([row[2] for row in table])[klass]
    speed = (np.array([row[3] for row in table], dtype=np.float64) * 1.609344)[klass]  # as osm.parse_maxspeed
    speed_missing = np.array([row[4] for row in table])[klass]
    return lanes, lanes_missing, speed, speed_missing


# =========================================================================== crashes


def _crashes(rng: np.random.Generator, network: dict[str, np.ndarray], num_crashes: int, years: tuple[int, ...],
             bad_fraction: float) -> dict[str, Any]:
    """Good crash rows first (``good`` of them), then the bad rows; coordinates in WGS84 degrees."""
    per_kind = max(1, round(num_crashes * bad_fraction / len(BAD_KINDS)))
    good = num_crashes - per_kind * len(BAD_KINDS)
    if good < per_kind * len(BAD_KINDS):
        raise ValueError(f"too few crashes ({num_crashes}) for bad_fraction={bad_fraction}")
    weights = np.array([_CLASS_TABLE[name][0] for name in _CLASSES])[network["seg_class"]] * network["seg_length"]
    segment = np.searchsorted(np.cumsum(weights) / weights.sum(), rng.random(good), side="right")
    segment = np.minimum(segment, len(weights) - 1)
    t = rng.uniform(0.02, 0.98, good)
    x, y = network["x"], network["y"]
    u, v = network["seg_u"][segment], network["seg_v"][segment]
    ax, ay, bx, by = x[u], y[u], x[v], y[v]
    bent = network["seg_has_mid"][segment]
    mx, my = network["mid_x"][segment], network["mid_y"][segment]
    first = bent & (t < 0.5)
    second = bent & (t >= 0.5)
    px = np.where(first, ax + 2 * t * (mx - ax), np.where(second, mx + (2 * t - 1) * (bx - mx), ax + t * (bx - ax)))
    py = np.where(first, ay + 2 * t * (my - ay), np.where(second, my + (2 * t - 1) * (by - my), ay + t * (by - ay)))
    px += rng.normal(0.0, 7.0, good)
    py += rng.normal(0.0, 7.0, good)

    # Far from every road: a few kilometres west of the grid, still inside the bounding box.
    far_x = x.min() - rng.uniform(2_000.0, 6_000.0, per_kind)
    far_y = rng.uniform(y.min(), y.max(), per_kind)
    lon, lat = transform(np.concatenate([px, far_x]), np.concatenate([py, far_y]), STATE_SCALE_EPSG, "EPSG:4326")
    lon, lat = np.round(lon, 6), np.round(lat, 6)

    start = np.datetime64(f"{min(years)}-01-01T00:00")
    minutes = int((np.datetime64(f"{max(years) + 1}-01-01T00:00") - start).astype(np.int64))
    when = start + rng.integers(0, minutes, good).astype("timedelta64[m]")
    in_years = np.isin(when.astype("datetime64[Y]").astype(np.int64) + 1970, np.asarray(years))
    when = np.where(in_years, when, start)  # non-consecutive years: move stragglers to the first minute
    severity = np.searchsorted(np.cumsum(_SEVERITY_WEIGHTS), rng.random(good), side="right").clip(0, 3)

    # Bad rows copy good ones and break one thing each (duplicates copy everything).
    source = rng.choice(good, per_kind * (len(BAD_KINDS) - 1), replace=False).reshape(len(BAD_KINDS) - 1, per_kind)
    copies = np.concatenate([np.arange(good), source.reshape(-1), rng.integers(0, good, per_kind)])
    rows = len(copies)
    row_lat = np.concatenate([lat[:good], lat[source.reshape(-1)], lat[good:]])
    row_lon = np.concatenate([lon[:good], lon[source.reshape(-1)], lon[good:]])
    kind = np.concatenate([np.full(good, -1), np.repeat(np.arange(len(BAD_KINDS) - 1), per_kind),
                           np.full(per_kind, BAD_KINDS.index("unmatched"))])
    missing = kind == BAD_KINDS.index("missing_coordinates")
    zero = kind == BAD_KINDS.index("zero_coordinates")
    swapped = kind == BAD_KINDS.index("swapped_lat_lon")
    row_lat[zero], row_lon[zero] = 0.0, 0.0
    row_lat[swapped], row_lon[swapped] = row_lon[swapped].copy(), row_lat[swapped].copy()
    row_lat[kind == BAD_KINDS.index("outside_state")] += 3.0
    bad_date = kind == BAD_KINDS.index("unparseable_date")
    expected = {"records_read": rows, "kept": good, **{name: per_kind for name in BAD_KINDS}}
    return {"rows": rows, "good": good, "segment": segment, "lon": lon[:good], "lat": lat[:good],
            "far_lon": lon[good:], "far_lat": lat[good:],
            "row_lat": row_lat, "row_lon": row_lon, "missing": missing, "bad_date": bad_date,
            "when": when[copies], "severity": severity[copies], "copies": copies,
            "county": (px[copies.clip(max=good - 1)] > np.median(px)).astype(np.int64) +
            2 * (py[copies.clip(max=good - 1)] > np.median(py)),
            "expected": expected}


def _write_crash_files(crash_dir: Path, crashes: dict[str, Any], files: int, rng: np.random.Generator) -> list[Path]:
    """Shuffle the rows and write them as ``files`` Delaware-format CSV exports."""
    crash_dir.mkdir(parents=True, exist_ok=True)
    rows = crashes["rows"]
    order = rng.permutation(rows)
    when = crashes["when"][order]
    minute = when.astype("datetime64[m]").astype(np.int64)
    unique, inverse = np.unique(minute, return_inverse=True)
    stamps = pc.strftime(pa.array(unique.astype("datetime64[m]").astype("datetime64[s]")), format=DATE_FORMAT)
    stamp_index = inverse.reshape(-1)
    lat, lon = crashes["row_lat"][order], crashes["row_lon"][order]
    missing, bad_date = crashes["missing"][order], crashes["bad_date"][order]
    severity, county = crashes["severity"][order], crashes["county"][order]
    attributes = np.random.default_rng(int(rng.integers(2**31)))
    paths = []
    bounds = np.linspace(0, rows, files + 1).astype(np.int64)
    for number, (low, high) in enumerate(zip(bounds[:-1], bounds[1:])):
        part = slice(int(low), int(high))
        count = int(high - low)
        stamp = pc.take(stamps, pa.array(stamp_index[part]))
        stamp = pc.if_else(pa.array(bad_date[part]), pa.scalar("not recorded"), stamp)
        lat_text = pa.array(lat[part], mask=missing[part])
        lon_text = pa.array(lon[part], mask=missing[part])
        sev = severity[part]
        when_part = when[part]
        weekday = ((when_part.astype("datetime64[D]").astype(np.int64) + 4) % 7)   # 1970-01-01 was a Thursday
        geom = pc.binary_join_element_wise("POINT (", pc.cast(lon_text, pa.string()), " ",
                                           pc.cast(lat_text, pa.string()), ")", "")
        table = pa.table({
            "CRASH DATETIME": stamp,
            "DAY OF WEEK CODE": pa.array((weekday + 1).astype(str)),
            "DAY OF WEEK DESCRIPTION": _pick(_DAYS, weekday),
            "CRASH CLASSIFICATION CODE": _pick(tuple(code for code, _ in _SEVERITY), sev),
            "CRASH CLASSIFICATION DESCRIPTION": _pick(tuple(text for _, text in _SEVERITY), sev),
            "COLLISION ON PRIVATE PROPERTY": _pick(_YN, attributes.random(count) < 0.03),
            "PEDESTRIAN INVOLVED": _pick(_YN, attributes.random(count) < 0.02),
            "MANNER OF IMPACT DESCRIPTION": _pick(_IMPACT, attributes.integers(0, len(_IMPACT), count)),
            "ALCOHOL INVOLVED": _pick(_YN, attributes.random(count) < 0.04),
            "DRUG INVOLVED": _pick(_YN, attributes.random(count) < 0.01),
            "ROAD SURFACE DESCRIPTION": _pick(_SURFACE, attributes.integers(0, len(_SURFACE), count)),
            "LIGHTING CONDITION DESCRIPTION": _pick(_LIGHT, attributes.integers(0, len(_LIGHT), count)),
            "SEATBELT USED": _pick(_YN, attributes.random(count) < 0.9),
            "MOTORCYCLE INVOLVED": _pick(_YN, attributes.random(count) < 0.02),
            "BICYCLED INVOLVED": _pick(_YN, attributes.random(count) < 0.01),
            "LATITUDE": lat_text,
            "LONGITUDE": lon_text,
            "PRIMARY CONTRIBUTING CIRCUMSTANCE DESCRIPTION": _pick(_CIRCUMSTANCE,
                                                                   attributes.integers(0, len(_CIRCUMSTANCE), count)),
            "COUNTY CODE": pa.array((county[part] + 1).astype(str)),
            "COUNTY NAME": _pick(("Gull", "Tern", "Heron", "Plover"), county[part]),
            "WEATHER 1 DESCRIPTION": _pick(_WEATHER, attributes.integers(0, len(_WEATHER), count)),
            "YEAR": pa.array(when_part.astype("datetime64[Y]").astype(np.int64) + 1970),
            "THE_GEOM": geom,
        })
        path = crash_dir / f"crashes-{number:02d}.csv"
        pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="needed"))
        paths.append(path)
    return paths


def _pick(values: tuple[str, ...], index: np.ndarray) -> pa.Array:
    return pc.take(pa.array(values), pa.array(np.asarray(index, dtype=np.int64)))


def _truth_accidents(network: dict[str, np.ndarray], crashes: dict[str, Any]) -> dict[str, np.ndarray]:
    """Good crashes counted per (year, month, canonical edge) with Delaware's severity classes."""
    good = crashes["good"]
    when = crashes["when"][:good]
    year = when.astype("datetime64[Y]").astype(np.int64) + 1970
    month = when.astype("datetime64[M]").astype(np.int64) % 12 + 1
    edge = network["canonical"][crashes["segment"]]
    severity = crashes["severity"][:good]
    num_edges = len(network["src"])
    key = ((year - 1900) * 13 + month) * num_edges + edge
    unique, inverse = np.unique(key, return_inverse=True)
    count = np.bincount(inverse, minlength=len(unique))
    by_class = {name: np.bincount(inverse, weights=(severity == code), minlength=len(unique)).astype(np.int64)
                for name, code in (("fatal", 3), ("injury", 2), ("property_damage", 1))}
    period = unique // num_edges
    return {"year": period // 13 + 1900, "month": period % 13, "edge": unique % num_edges, "count": count,
            "segment": np.asarray(network["segment"])[unique % num_edges], **by_class}


# =========================================================================== weather, volume, release


def _weather(rng: np.random.Generator, num_nodes: int, periods: list[tuple[int, int]]):
    """Monthly Meteostat-like values per node, 1 decimal, and the mask of values a station lacked."""
    values, missing = {}, {}
    for year, month in periods:
        season = 10.0 - 12.0 * math.cos(2.0 * math.pi * (month - 1) / 12.0)
        tavg = season + rng.normal(0.0, 2.0, num_nodes)
        block = np.stack([tavg, tavg - rng.uniform(2.0, 8.0, num_nodes), tavg + rng.uniform(2.0, 8.0, num_nodes),
                          rng.gamma(1.5, 40.0, num_nodes), rng.uniform(0.0, 30.0, num_nodes),
                          1013.0 + rng.normal(0.0, 8.0, num_nodes)], axis=1)
        values[(year, month)] = np.round(block, 1)
        missing[(year, month)] = rng.random(block.shape) < np.array([0.03, 0.03, 0.03, 0.05, 0.1, 0.2])
    return values, missing


def _aadt(rng: np.random.Generator, network: dict[str, np.ndarray], years: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Yearly AADT per segment (NaN where not counted): counted on most major roads, few minor ones."""
    klass = network["seg_class"]
    coverage = np.where(klass < _CODE["unclassified"], 0.8, 0.05)
    base = np.exp(rng.normal(np.where(klass < _CODE["tertiary"], 9.5, 7.0), 0.6))
    counted = rng.random(len(klass)) < coverage
    return {year: np.where(counted, np.round(base * 1.02 ** step), np.nan).astype(np.float32)
            for step, year in enumerate(years)}


def _write_other_tables(tables_dir: Path, network, accidents, weather, missing, periods, aadt) -> None:
    from gnnbench.road.tables import write_table

    write_table("accidents", pa.table({
        "year": accidents["year"].astype(np.int16), "month": accidents["month"].astype(np.int8),
        "edge_id": accidents["edge"], "count": accidents["count"].astype(np.int32),
        "fatal": accidents["fatal"].astype(np.int32), "injury": accidents["injury"].astype(np.int32),
        "property_damage": accidents["property_damage"].astype(np.int32)}), tables_dir)
    n = len(network["lon"])
    years, months, nodes, columns, filled = [], [], [], [[] for _ in range(6)], []
    for year, month in periods:
        block, gap = weather[(year, month)], missing[(year, month)]
        mean = np.nanmean(np.where(gap, np.nan, block), axis=0)
        block = np.where(gap, np.round(mean, 1), block)  # filled like the weather adapter fills a station gap
        years.append(np.full(n, year, dtype=np.int16))
        months.append(np.full(n, month, dtype=np.int8))
        nodes.append(np.arange(n, dtype=np.int64))
        for index in range(6):
            columns[index].append(block[:, index].astype(np.float32))
        filled.append((gap * (1 << np.arange(6))).sum(axis=1).astype(np.int8))
    from gnnbench.road.tables import WEATHER_COLUMNS

    write_table("node_weather", pa.table({
        "year": np.concatenate(years), "month": np.concatenate(months), "node_id": np.concatenate(nodes),
        **{name: np.concatenate(columns[index]) for index, name in enumerate(WEATHER_COLUMNS)},
        "filled": np.concatenate(filled)}), tables_dir)
    segment = network["segment"]
    parts = []
    for year, values in aadt.items():
        per_edge = values[segment]
        counted = np.flatnonzero(np.isfinite(per_edge))
        parts.append(pa.table({"year": np.full(len(counted), year, dtype=np.int16), "edge_id": counted,
                               "aadt": per_edge[counted], "source": pa.array(["synthetic"] * len(counted)),
                               "match_distance_m": pa.nulls(len(counted), pa.float32())}))
    write_table("edge_volume", pa.concat_tables(parts), tables_dir)


def _write_release(root: Path, network, accidents, weather, missing, periods, aadt, years) -> Path:
    from synthetic.release import ReleaseFixture, write_release

    n = len(network["lon"])
    osm_ids = 1_000_000_000 + 7 * np.arange(n, dtype=np.int64)
    release_weather = {period: np.where(missing[period], np.nan, weather[period]) for period in periods}
    fixture = ReleaseFixture(
        state=STATE_SCALE_CODE, years=tuple(years), months=tuple(range(1, 13)), osm_ids=osm_ids,
        lon=network["lon"], lat=network["lat"], seg_u=network["seg_u"].astype(np.int64),
        seg_v=network["seg_v"].astype(np.int64), seg_oneway=network["seg_oneway"],
        seg_length=network["seg_length"].astype(np.float32),
        seg_highway=np.asarray(_CLASSES, dtype=object)[network["seg_class"]],
        edge_src=network["src"], edge_dst=network["dst"], edge_segment=network["segment"],
        acc_year=accidents["year"], acc_month=accidents["month"], acc_segment=accidents["segment"],
        acc_count=accidents["count"], weather=release_weather, aadt=aadt)
    return write_release(root, fixture)


# =========================================================================== GraphML


def _write_graphml(path: Path, network: dict[str, np.ndarray]) -> None:
    """The network as osmnx saves a simplified drive graph (every attribute a string), for ``network_stage``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    import shapely

    n = len(network["lon"])
    osm_ids = 1_000_000_000 + 7 * np.arange(n, dtype=np.int64)
    src, dst, segment = network["src"], network["dst"], network["segment"]
    degree = np.bincount(src, minlength=n) + np.bincount(dst, minlength=n)
    klass = network["seg_class"]
    lanes, _, speed, _ = _class_columns(klass)
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
        classes = np.asarray(_CLASSES, dtype=object)[klass]
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


def describe(region: StateScaleRegion) -> dict[str, Any]:
    """A JSON-ready summary (sizes, files) for benchmark output."""
    return {"directory": str(region.directory), **region.stats, "crash_files": len(region.crash_files),
            "parameters": {key: value for key, value in region.parameters.items() if key != "format"},
            "region": {key: value for key, value in asdict(region.region).items()
                       if key in ("code", "bbox", "utm_epsg")}}
