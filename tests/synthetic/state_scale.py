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

The network and the crash records are drawn in :mod:`synthetic.state_scale_network` and
:mod:`synthetic.state_scale_crashes`; this module puts the region together and writes the rest.
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

from gnnbench.road.states import STATES, CrashSource, StateEntry
from synthetic.state_scale_crashes import BAD_KINDS, DATE_FORMAT, draw_crashes, truth_accidents, write_crash_files  # noqa: F401
from synthetic.state_scale_network import (CLASS_CODE, CLASSES, STATE_SCALE_EPSG, draw_network, network_tables,
                                          write_graphml)

STATE_SCALE_CODE = "ZZ"
_BBOX_MARGIN_DEG = 0.1
MARKER = "state_scale.json"
FORMAT = 3  # 3: the release lists both directions of a two-way segment as OSM edges (as the real one)


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

    network = draw_network(rng, num_nodes, num_edges, extent_km * 1000.0)
    lon_min, lat_min = network["lon"].min(), network["lat"].min()
    lon_max, lat_max = network["lon"].max(), network["lat"].max()
    bbox = (lon_min - _BBOX_MARGIN_DEG, lat_min - _BBOX_MARGIN_DEG, lon_max + _BBOX_MARGIN_DEG,
            lat_max + _BBOX_MARGIN_DEG)
    region = state_scale_entry(bbox, tuple(years))

    tables_dir = directory / "tables" / STATE_SCALE_CODE
    tables_dir.mkdir(parents=True, exist_ok=True)
    nodes, edges = network_tables(network, betweenness_sources, seed)
    from gnnbench.road.tables import write_table

    write_table("nodes", nodes, tables_dir)
    write_table("edges", edges, tables_dir)
    del nodes, edges

    crashes = draw_crashes(rng, network, num_crashes, tuple(years), bad_fraction)
    crash_dir = directory / "raw" / "crashes"
    paths = write_crash_files(crash_dir, crashes, crash_files, rng)
    points = directory / "crash_points.npz"
    good = crashes["good"]
    np.savez(points, lon=crashes["lon"], lat=crashes["lat"], edge=network["canonical"][crashes["segment"]],
             far_lon=crashes["far_lon"], far_lat=crashes["far_lat"])

    periods = [(int(year), month) for year in years for month in range(1, 13)]
    weather, missing = _weather(rng, len(network["lon"]), periods)
    aadt = _aadt(rng, network, tuple(years))
    accidents = truth_accidents(network, crashes)
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
        write_graphml(network_file, network)

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
    coverage = np.where(klass < CLASS_CODE["unclassified"], 0.8, 0.05)
    base = np.exp(rng.normal(np.where(klass < CLASS_CODE["tertiary"], 9.5, 7.0), 0.6))
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
    # The release's OSM edge list has one row per direction of travel (as OSMnx gives it): every segment as
    # (u, v), then the reverse (v, u) of each two-way segment, so Edges/*.pt hold one entry per directed edge.
    seg_u, seg_v = network["seg_u"].astype(np.int64), network["seg_v"].astype(np.int64)
    two_way = np.flatnonzero(~network["seg_oneway"])
    reverse_row = np.full(len(seg_u), -1, dtype=np.int64)
    reverse_row[two_way] = len(seg_u) + np.arange(len(two_way))
    segment = network["segment"]
    forward = (network["src"] == seg_u[segment]) & (network["dst"] == seg_v[segment])
    fixture = ReleaseFixture(
        state=STATE_SCALE_CODE, years=tuple(years), months=tuple(range(1, 13)), osm_ids=osm_ids,
        lon=network["lon"], lat=network["lat"], seg_u=np.concatenate([seg_u, seg_v[two_way]]),
        seg_v=np.concatenate([seg_v, seg_u[two_way]]),
        seg_oneway=np.concatenate([network["seg_oneway"], network["seg_oneway"][two_way]]),
        seg_length=np.concatenate([network["seg_length"], network["seg_length"][two_way]]).astype(np.float32),
        seg_highway=np.asarray(CLASSES, dtype=object)[np.concatenate([network["seg_class"],
                                                                      network["seg_class"][two_way]])],
        edge_src=network["src"], edge_dst=network["dst"],
        edge_segment=np.where(forward, segment, reverse_row[segment]),
        acc_year=accidents["year"], acc_month=accidents["month"], acc_segment=accidents["segment"],
        acc_count=accidents["count"], weather=release_weather,
        aadt={year: np.concatenate([values, values[two_way]]) for year, values in aadt.items()})
    return write_release(root, fixture)




def describe(region: StateScaleRegion) -> dict[str, Any]:
    """A JSON-ready summary (sizes, files) for benchmark output."""
    return {"directory": str(region.directory), **region.stats, "crash_files": len(region.crash_files),
            "parameters": {key: value for key, value in region.parameters.items() if key != "format"},
            "region": {key: value for key, value in asdict(region.region).items()
                       if key in ("code", "bbox", "utm_epsg")}}
