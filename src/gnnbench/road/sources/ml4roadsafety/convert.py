"""A release state directory -> the five gnnbench road tables, with provenance and a quality report."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ....io import sha256_file
from ...tables import TABLES
from .accidents import read_accidents
from .edges import read_edge_features, read_traffic
from .nodes import read_nodes
from .release_files import (
    ACCIDENTS_FILE,
    ADJACENCY_FILE,
    EDGE_FEATURES_FILE,
    check_layout,
    month_files,
    read_adjacency,
    traffic_files,
)


@dataclass
class ReleaseTables:
    """The five gnnbench tables read from one release state directory, with provenance and quality."""

    state_dir: Path
    nodes: pa.Table
    edges: pa.Table
    accidents: pa.Table
    node_weather: pa.Table
    edge_volume: pa.Table
    sources: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)

    def tables(self) -> dict[str, pa.Table]:
        """``{table name: table}`` in :data:`gnnbench.road.tables.TABLES` order."""
        return {name: getattr(self, name) for name in TABLES}


def read_release(state_dir: str | os.PathLike) -> ReleaseTables:
    """Read a release state directory into the gnnbench tables (see :mod:`gnnbench.road.sources.ml4roadsafety`)."""
    state_dir = Path(state_dir)
    check_layout(state_dir)
    sources: list[dict[str, Any]] = []
    quality: dict[str, Any] = {}

    def source(path: Path, role: str) -> Path:
        sources.append({"path": str(path), "name": path.relative_to(state_dir).as_posix(), "role": role,
                        "sha256": sha256_file(path), "size": path.stat().st_size})
        return path

    graph = read_adjacency(source(state_dir / ADJACENCY_FILE, "adjacency"))
    node_files = month_files(state_dir / "Nodes")
    for _, _, path in node_files:
        source(path, "node_features")
    nodes, node_weather, quality["nodes"], quality["node_weather"] = read_nodes(graph, node_files)
    edges, quality["edges"] = read_edge_features(graph, source(state_dir / EDGE_FEATURES_FILE, "edge_features"))
    osm_ids = None if nodes.column("osm_id").null_count else nodes.column("osm_id").to_numpy()
    accidents, quality["accidents"] = read_accidents(graph, source(state_dir / ACCIDENTS_FILE, "accidents"), osm_ids)
    weather_months = {(year, month) for year, month, _ in node_files}
    accident_months = set(zip(accidents.column("year").to_pylist(), accidents.column("month").to_pylist()))
    # ML4RoadSafety's loader skips a month without its node-features file, whatever its accidents
    quality["accidents"]["months_without_node_file"] = [f"{year}-{month:02d}"
                                                        for year, month in sorted(accident_months - weather_months)]
    traffic = traffic_files(state_dir / "Edges")
    for _, path in traffic:
        source(path, "edge_traffic")
    edge_volume, quality["edge_volume"] = read_traffic(graph, traffic)
    nodes = nodes.set_column(nodes.schema.get_field_index("degree"), "degree", pa.array(graph.degree()))
    quality["accidents"]["file_sha256"] = next(item["sha256"] for item in sources if item["role"] == "accidents")
    quality["checksums"] = {item["name"]: item["sha256"] for item in sources}
    return ReleaseTables(state_dir=state_dir, nodes=nodes, edges=edges, accidents=accidents,
                         node_weather=node_weather, edge_volume=edge_volume, sources=sources, quality=quality)
