"""The plan of an imagery build: targets (nodes, edge midpoints), their tiles, chunks in Morton order.

Targets are sorted by the Morton code of their tile so that a chunk's crops share tiles. Every unique tile
belongs to exactly one fetch chunk (the first crop chunk that needs it), so fetch chunks are disjoint and the
requests equal the unique tiles, however many crops share each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import numpy as np
import pandas as pd

from .cache import TileKey
from .crops import CropSpec, filter_pad, tiles_of_window, window
from .geometry import global_pixel, metres_per_pixel, morton, zoom_for

MAX_UPSAMPLING = 1.5


@dataclass
class Plan:
    """Targets in chunks with what their crops need (the source's columns), the keys (tiles, blocks) each
    target needs, the disjoint fetch chunks, and the parameters that the crops depend on (e.g. the zoom)."""

    targets: pd.DataFrame  # target_id, kind, lon, lat, chunk, + the source's columns (sorted by chunk)
    tiles: list[list[TileKey]]  # per target row
    fetch_chunks: list[list[TileKey]]
    parameters: dict = field(default_factory=dict)

    @property
    def chunks(self) -> int:
        return int(self.targets["chunk"].max()) + 1 if len(self.targets) else 0

    @property
    def unique_tiles(self) -> int:
        return sum(len(chunk) for chunk in self.fetch_chunks)


def read_targets(tables: str | Path, targets: str = "nodes") -> pd.DataFrame:
    """``target_id, kind, lon, lat`` of every node (and edge midpoint) of a built state's tables."""
    tables = Path(tables)
    path = tables / "nodes.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no road tables; build them first (`gnnbench build road --state ...`)")
    nodes = pd.read_parquet(path, columns=["node_id", "lon", "lat"])
    bad = ~(np.isfinite(nodes["lon"]) & np.isfinite(nodes["lat"]))
    if bad.any():
        raise ValueError(f"{path}: node {int(nodes['node_id'][bad].iloc[0])} (row {int(np.flatnonzero(bad)[0])}) "
                         f"has no finite lon/lat ({int(bad.sum())} rows)")
    frame = pd.DataFrame({"target_id": nodes["node_id"].astype(np.int64), "kind": "n",
                          "lon": nodes["lon"].astype(np.float64), "lat": nodes["lat"].astype(np.float64)})
    if targets == "nodes+edges":
        frame = pd.concat([frame, _edge_midpoints(tables, nodes)], ignore_index=True)
    return frame


def _edge_midpoints(tables: Path, nodes: pd.DataFrame) -> pd.DataFrame:
    import shapely

    edges = pd.read_parquet(tables / "edges.parquet", columns=["edge_id", "src", "dst", "geometry"])
    lon = nodes.set_index("node_id")["lon"]
    lat = nodes.set_index("node_id")["lat"]
    mid_lon = (lon.loc[edges["src"]].to_numpy() + lon.loc[edges["dst"]].to_numpy()) / 2
    mid_lat = (lat.loc[edges["src"]].to_numpy() + lat.loc[edges["dst"]].to_numpy()) / 2
    has = edges["geometry"].notna().to_numpy()
    if has.any():
        lines = shapely.from_wkb(edges["geometry"][has].to_numpy())
        points = shapely.line_interpolate_point(lines, 0.5, normalized=True)
        mid_lon[has], mid_lat[has] = shapely.get_x(points), shapely.get_y(points)
    return pd.DataFrame({"target_id": edges["edge_id"].astype(np.int64), "kind": "e", "lon": mid_lon,
                         "lat": mid_lat})


def make_plan(targets: pd.DataFrame, source: Any, spec: CropSpec, *, chunk_size: int = 4096) -> Plan:
    """Choose the zoom, place every target's crop, and split the work into chunks."""
    if chunk_size < 1:
        raise ValueError(f"chunk size must be positive, got {chunk_size}")
    lat_mean = float(targets["lat"].mean()) if len(targets) else 0.0
    if spec.zoom is not None:
        zoom = spec.zoom
    elif spec.footprint_m is not None:
        zoom = zoom_for(lat_mean, spec.size_px, spec.footprint_m, source.max_zoom)
    else:
        zoom = source.max_zoom
    source.check_zoom(zoom, lat_mean)
    lon, lat = targets["lon"].to_numpy(), targets["lat"].to_numpy()
    x, y = global_pixel(lon, lat, zoom)
    if spec.footprint_m is None:
        ratio = np.ones(len(targets))
    else:
        ratio = spec.footprint_m / (spec.size_px * metres_per_pixel(lat, zoom))
        if len(ratio) and ratio.min() < 1 / MAX_UPSAMPLING:
            res = float(metres_per_pixel(lat_mean, zoom))
            raise ValueError(
                f"{source.info.name}: a {spec.footprint_m:g} m footprint at {spec.size_px} px needs "
                f"{spec.footprint_m / spec.size_px:.2f} m/px, but zoom {zoom} has {res:.2f} m/px here "
                f"(upsampling {1 / ratio.min():.1f}x); use a larger footprint (at least "
                f"{spec.size_px * res / MAX_UPSAMPLING:.0f} m), no footprint (native), or a finer source")
    order = np.argsort(morton(np.floor(x / 256).astype(np.int64), np.floor(y / 256).astype(np.int64)),
                       kind="stable")
    frame = targets.iloc[order].reset_index(drop=True).copy()
    frame["x"], frame["y"], frame["ratio"] = x[order], y[order], ratio[order]
    frame["chunk"] = np.arange(len(frame)) // chunk_size
    tiles = [tiles_of_window(zoom, *window(px, py, spec.size_px, r), pad=filter_pad(r))
             for px, py, r in zip(frame["x"].tolist(), frame["y"].tolist(), frame["ratio"].tolist())]
    return Plan(targets=frame, tiles=tiles, fetch_chunks=disjoint_fetch_chunks(frame["chunk"].tolist(), tiles),
                parameters={"zoom": zoom})


def disjoint_fetch_chunks(chunks: list[int], keys_per_target: list[list[TileKey]]) -> list[list[TileKey]]:
    """Each unique key in the fetch chunk of the first crop chunk that needs it (so no key is fetched twice)."""
    seen: set[TileKey] = set()
    fetch_chunks: list[list[TileKey]] = [[] for _ in range(max(chunks) + 1 if chunks else 0)]
    for chunk, keys in zip(chunks, keys_per_target):
        for key in keys:
            if key not in seen:
                seen.add(key)
                fetch_chunks[chunk].append(key)
    return fetch_chunks
