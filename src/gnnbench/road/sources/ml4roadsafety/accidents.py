"""The release's ``accidents_monthly.csv`` -> the ``accidents`` table (one row per month and directed edge).

A row names the directed pair ``(node_1_idx, node_2_idx)``; it is stored on that directed edge, so the table
keeps ML4RoadSafety's per-directed-pair labels (its loader scores each listed pair, summing repeated rows of
a pair within a month). A pair that is not an edge of the graph is stored on its reverse edge (counted as
``matched_reversed``, with a warning: ML4RoadSafety scores such a pair as listed); a row naming no edge in
either direction, or with a bad date, node index or count, is dropped and counted with its reason.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...tables import SCHEMAS
from .release_files import ReleaseFormatError, ReleaseGraph, csv_header, floats, read_csv

log = logging.getLogger("gnnbench.road")

ACCIDENT_COLUMNS = ("year", "month", "node_1_idx", "node_2_idx", "acc_count")
DROP_REASONS = ("bad_date", "bad_node_index", "missing_count", "non_positive_count", "non_integer_count",
                "no_matching_edge")


def read_accidents(graph: ReleaseGraph, path: Path, osm_ids: np.ndarray | None) -> tuple[pa.Table, dict[str, Any]]:
    """The ``accidents`` table and its quality report (rows read, kept, dropped by reason, merged)."""
    header = csv_header(path)
    for name in ACCIDENT_COLUMNS:
        if name not in header:
            raise ReleaseFormatError(f"{path}: missing column {name!r} (has {', '.join(header)})")
    types = {name: pa.float64() for name in ACCIDENT_COLUMNS} | {"node_1": pa.int64(), "node_2": pa.int64()}
    table = read_csv(path, types)
    year, month = floats(table, "year"), floats(table, "month")
    node_1, node_2 = floats(table, "node_1_idx"), floats(table, "node_2_idx")
    count = floats(table, "acc_count")
    rows = table.num_rows
    n = graph.num_nodes

    reason = np.zeros(rows, dtype=np.int8)  # 0 kept, else 1 + index into DROP_REASONS

    def drop(condition: np.ndarray, name: str) -> None:
        reason[(reason == 0) & condition] = DROP_REASONS.index(name) + 1

    with np.errstate(invalid="ignore"):
        drop(~(np.isfinite(year) & (year == np.round(year)) & (year >= 1900) & (year <= 2100)
               & np.isfinite(month) & (month == np.round(month)) & (month >= 1) & (month <= 12)), "bad_date")
        drop(~(np.isfinite(node_1) & np.isfinite(node_2) & (node_1 == np.round(node_1)) & (node_2 == np.round(node_2))
               & (node_1 >= 0) & (node_1 < n) & (node_2 >= 0) & (node_2 < n)), "bad_node_index")
        drop(~np.isfinite(count), "missing_count")
        drop(count <= 0, "non_positive_count")
        drop(count != np.round(count), "non_integer_count")
    ok = reason == 0
    first = np.where(ok, node_1, 0).astype(np.int64)
    second = np.where(ok, node_2, 0).astype(np.int64)
    edge = graph.find(first, second)
    reverse = graph.find(second, first)
    matched_reverse = ok & (edge < 0) & (reverse >= 0)
    edge = np.where(edge >= 0, edge, reverse)
    drop(ok & (edge < 0), "no_matching_edge")
    kept = reason == 0

    quality: dict[str, Any] = {
        "rows_read": rows, "rows_kept": int(kept.sum()),
        "dropped": {name: int((reason == index + 1).sum()) for index, name in enumerate(DROP_REASONS)},
        "matched_reversed": int(matched_reverse.sum()),
        "crashes_read": float(np.nansum(count)), "crashes_kept": int(count[kept].sum()),
    }
    if "node_1" in table.column_names and "node_2" in table.column_names and osm_ids is not None:
        osm_1 = pc.fill_null(table.column("node_1"), -1).to_numpy()
        osm_2 = pc.fill_null(table.column("node_2"), -1).to_numpy()
        mismatch = ok & ((osm_ids[first] != osm_1) | (osm_ids[second] != osm_2))
        quality["osm_id_mismatch"] = int(mismatch.sum())
        if mismatch.any():
            log.warning("%s: %d rows name OSM nodes (node_1/node_2) other than those at node_1_idx/node_2_idx",
                        path, int(mismatch.sum()))
    dropped = rows - quality["rows_kept"]
    if dropped:
        log.warning("%s: dropped %d of %d accident rows: %s", path, dropped, rows,
                    ", ".join(f"{name} {value}" for name, value in quality["dropped"].items() if value))

    period = (year[kept].astype(np.int64) - 1900) * 12 + month[kept].astype(np.int64) - 1
    group = period * max(graph.num_edges, 1) + edge[kept]
    groups, inverse = np.unique(group, return_inverse=True)
    sums = np.bincount(inverse.reshape(-1), weights=count[kept], minlength=groups.size).astype(np.int64)
    quality["duplicate_rows_merged"] = int(kept.sum() - groups.size)
    quality["output_rows"] = int(groups.size)
    # (month, edge) rows where a reverse-matched pair joined the edge's own pair: ML4RoadSafety scores two pairs
    reversed_groups = np.unique(group[matched_reverse[kept]])
    direct_groups = np.unique(group[~matched_reverse[kept]])
    quality["reversed_sharing_edge"] = int(np.intersect1d(reversed_groups, direct_groups).size)
    if quality["matched_reversed"]:
        log.warning("%s: %d accident rows name a direction that is not an edge; they are labelled on the reverse "
                    "edge (ML4RoadSafety scores the pair as listed); %d (month, edge) rows also hold the edge's own "
                    "direction", path, quality["matched_reversed"], quality["reversed_sharing_edge"])
    if sums.size and sums.max() > np.iinfo(np.int32).max:
        raise ReleaseFormatError(f"{path}: a monthly edge count of {int(sums.max())} does not fit the accidents table")
    period, edge_id = groups // max(graph.num_edges, 1), groups % max(graph.num_edges, 1)
    m = groups.size
    accidents = pa.table({
        "year": (1900 + period // 12).astype(np.int16), "month": (period % 12 + 1).astype(np.int8),
        "edge_id": edge_id.astype(np.int64), "count": sums.astype(np.int32),
        "fatal": pa.nulls(m, pa.int32()), "injury": pa.nulls(m, pa.int32()),
        "property_damage": pa.nulls(m, pa.int32()),
    }, schema=SCHEMAS["accidents"])
    return accidents, quality
