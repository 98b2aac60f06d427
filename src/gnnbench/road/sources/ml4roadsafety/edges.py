"""The release's edge feature files -> the ``edges`` and ``edge_volume`` tables.

Each feature tensor holds one entry per row of the OSMnx edge list. An edge takes its own entry
``(src, dst)``, else the entry of its reverse segment ``(dst, src)`` (an edge added only by the two-way
reversal in ``adj_matrix.pt``), and both cases are counted. Where a pair has several entries (parallel OSM
edges between the same two nodes) the edge attributes take the first, and AADT takes their sum, which is the
value ML4RoadSafety's loader reads (``coalesce()`` sums duplicate entries; NaN when any of them is NaN).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ...tables import SCHEMAS
from ..osm import HIGHWAY_CLASSES
from .release_files import (
    ADJACENCY_FILE,
    PairLookup,
    ReleaseFormatError,
    ReleaseGraph,
    feature_dict,
    is_sparse,
    pair_keys,
    sparse_entries,
)

log = logging.getLogger("gnnbench.road")

VOLUME_SOURCE = "ml4roadsafety"
#: ``edge_volume.source`` of an AADT an edge takes from its reverse segment (the release has none for it).
VOLUME_SOURCE_REVERSE = "ml4roadsafety:reverse"
NON_CLASS_KEYS = frozenset({"oneway", "length"})


class _Aligner:
    """Values of per-segment feature tensors for each release edge: entry (src, dst), else (dst, src)."""

    def __init__(self, graph: ReleaseGraph, path: Path) -> None:
        self.graph = graph
        self.path = path
        self._indices = None
        self.duplicates = 0

    def values(self, key: str, tensor: Any, *, reduce: str = "first") -> tuple[np.ndarray, np.ndarray]:
        """(value per edge with NaN where none, how: 0 own entry, 1 reverse entry, 2 none).

        ``reduce`` combines several entries of one pair: ``"first"``, or ``"sum"`` (as ``coalesce()``).
        """
        import torch

        graph = self.graph
        if is_sparse(tensor):
            if tuple(tensor.shape) != (graph.num_nodes, graph.num_nodes):
                raise ReleaseFormatError(f"{self.path}: key {key!r} has shape {tuple(tensor.shape)}, but "
                                         f"{ADJACENCY_FILE} has {graph.num_nodes} nodes")
            indices = tensor._indices()
            if self._indices is None or not (indices is self._indices or (
                    indices.shape == self._indices.shape and torch.equal(indices, self._indices))):
                self._index(tensor)
            entries = tensor._values().detach().to(dtype=torch.float64).numpy()
            if reduce == "first":
                per_pair = entries[self._first]
            else:
                per_pair = np.bincount(self._inverse, weights=entries, minlength=self._first.size)
            per_pair = np.append(per_pair, np.nan)  # position -1 picks the NaN
            direct, reverse = self._positions
            source = np.where(direct >= 0, direct, reverse)
            how = np.where(direct >= 0, 0, np.where(reverse >= 0, 1, 2)).astype(np.int8)
            return per_pair[source], how
        if isinstance(tensor, torch.Tensor) and tensor.dim() == 1 and tensor.shape[0] == graph.num_edges:
            return tensor.detach().to(dtype=torch.float64).numpy(), np.zeros(graph.num_edges, dtype=np.int8)
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ReleaseFormatError(f"{self.path}: key {key!r} is not a sparse [N, N] tensor nor a vector of the "
                                 f"{graph.num_edges} edges (got {shape})")

    def multiplicity(self) -> np.ndarray:
        """Number of entries of each edge's own pair (0 for an edge without one) in the last tensor indexed."""
        counts = np.append(np.bincount(self._inverse, minlength=self._first.size), 0)
        return counts[self._positions[0]]

    def _index(self, tensor: Any) -> None:
        graph = self.graph
        rows, cols, _ = sparse_entries(tensor)
        keys = pair_keys(rows, cols, graph.num_nodes)
        distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        self.duplicates = int(keys.size - first.size)
        lookup = PairLookup(distinct)
        self._indices = tensor._indices()
        self._first, self._inverse = first, inverse.reshape(-1)
        self._positions = (lookup.find(graph.keys), lookup.find(graph.dst * graph.num_nodes + graph.src))


def read_edge_features(graph: ReleaseGraph, path: Path) -> tuple[pa.Table, dict[str, Any]]:
    """The ``edges`` table and its quality report from ``Edges/edge_features.pt``."""
    features = feature_dict(path)
    if "length" not in features:
        raise ReleaseFormatError(f"{path}: missing key 'length' (keys: {', '.join(features)})")
    aligner = _Aligner(graph, path)
    quality: dict[str, Any] = {"edges": graph.num_edges, **graph.quality}

    length, how = aligner.values("length", features["length"])
    quality["feature_duplicate_entries"] = aligner.duplicates
    quality["attributes_from_reverse_segment"] = int((how == 1).sum())
    quality["without_feature_entry"] = int((how == 2).sum())
    missing = ~np.isfinite(length)
    if graph.adjacency_values is not None:
        fallback = missing & np.isfinite(graph.adjacency_values)
        length[fallback] = graph.adjacency_values[fallback]
        quality["length_from_adjacency"] = int(fallback.sum())
    quality["length_missing"] = int((~np.isfinite(length)).sum())

    reverse_exists = graph.find(graph.dst, graph.src) >= 0
    if "oneway" in features:
        values, _ = aligner.values("oneway", features["oneway"])
        known = np.isfinite(values)
        oneway = np.where(known, values != 0, ~reverse_exists)
        quality["oneway_from_adjacency"] = int((~known).sum())
    else:
        log.warning("%s: no 'oneway' key; an edge is one-way when its reverse is not in the graph", path)
        oneway = ~reverse_exists
        quality["oneway_from_adjacency"] = graph.num_edges

    class_names, columns, ignored = [], [], []
    for key in sorted(set(features) - NON_CLASS_KEYS):
        values, _ = aligner.values(key, features[key])
        finite = values[np.isfinite(values)]
        if finite.size and not np.isin(finite, (0.0, 1.0, 2.0)).all():
            ignored.append(key)
            continue
        class_names.append(key)
        columns.append(np.nan_to_num(values, nan=0.0) > 0)
    if ignored:
        log.warning("%s: keys %s are not one-hot highway classes; ignored", path, ", ".join(ignored))
    quality["ignored_keys"] = ignored
    quality["highway_classes"] = class_names
    highway, quality["highway_multiple"], quality["highway_none"] = _highway(class_names, columns, graph.num_edges)
    quality["highway_outside_vocabulary"] = _check_vocabulary(highway, quality["highway_none"], path)

    n = graph.num_edges
    edges = pa.table({
        "edge_id": np.arange(n, dtype=np.int64), "src": graph.src, "dst": graph.dst,
        "osm_way_id": pa.nulls(n, pa.int64()), "length_m": length, "highway": highway,
        "oneway": oneway, "lanes": pa.nulls(n, pa.float32()), "maxspeed_kmh": pa.nulls(n, pa.float32()),
        "bridge": np.zeros(n, dtype=bool), "tunnel": np.zeros(n, dtype=bool), "geometry": pa.nulls(n, pa.binary()),
    }, schema=SCHEMAS["edges"])
    return edges, quality


def _highway(names: list[str], columns: list[np.ndarray], num_edges: int) -> tuple[pa.Array, int, int]:
    """The most specific set class per edge (a set class that is a substring of another set class is implied)."""
    if not names:
        return pa.nulls(num_edges, pa.string()), 0, num_edges
    active = np.stack(columns, axis=1)
    implies = np.array([[a != b and a in b for b in names] for a in names], dtype=np.float32)  # [a, b]: a in b
    implied = (active.astype(np.float32) @ implies.T) > 0
    keep = active & ~implied
    has = keep.any(axis=1)
    choice = np.argmax(keep, axis=1).astype(np.int32)
    indices = pa.array(choice, mask=~has)
    highway = pa.DictionaryArray.from_arrays(indices, pa.array(names, pa.string())).cast(pa.string())
    return highway, int((keep.sum(axis=1) > 1).sum()), int((~has).sum())


def _check_vocabulary(highway: pa.Array, without_class: int, path: Path) -> dict[str, int]:
    """Edges per release class outside gnnbench's highway vocabulary (encoded as ``other``), with a warning."""
    classes, counts = np.unique(np.asarray(highway.drop_null().to_pylist(), dtype=object).astype(str),
                                return_counts=True)
    outside = {str(name): int(count) for name, count in zip(classes, counts) if name not in HIGHWAY_CLASSES}
    if outside:
        log.warning("%s: %d edges have highway classes outside gnnbench's vocabulary (%s); the edges table keeps "
                    "them, the snapshot features encode them as 'other'", path, sum(outside.values()),
                    ", ".join(f"{name} {count}" for name, count in outside.items()))
    if without_class:
        log.warning("%s: %d edges have no highway class set; the snapshot features encode them as 'other'",
                    path, without_class)
    return outside


def read_traffic(graph: ReleaseGraph, files: Sequence[tuple[int, Path]]) -> tuple[pa.Table, dict[str, Any]]:
    """The ``edge_volume`` table from ``Edges/edge_features_traffic_{year}.pt`` (key ``AADT``), with quality.

    ``source`` is ``ml4roadsafety`` where the edge has its own AADT entry (the edges ML4RoadSafety scores),
    ``ml4roadsafety:reverse`` where it takes its reverse segment's.
    """
    parts, quality = [], {}
    for year, path in files:
        features = feature_dict(path)
        key = "AADT" if "AADT" in features else next((name for name in features if name.lower() == "aadt"), None)
        if key is None:
            raise ReleaseFormatError(f"{path}: missing key 'AADT' (keys: {', '.join(features)})")
        aligner = _Aligner(graph, path)
        values, how = aligner.values(key, features[key], reduce="sum")
        summed = aligner.multiplicity() > 1 if is_sparse(features[key]) else np.zeros(graph.num_edges, dtype=bool)
        del features
        finite = np.isfinite(values)
        negative = finite & (values < 0)
        keep = finite & ~negative
        quality[str(year)] = {"edges_with_aadt": int(keep.sum()),
                              "from_reverse_segment": int((keep & (how == 1)).sum()),
                              "summed_duplicate_entries": int((keep & summed).sum()),
                              "negative": int(negative.sum()), "without_value": int((~finite).sum())}
        edge_id = np.flatnonzero(keep)
        source = np.where(how[edge_id] == 1, VOLUME_SOURCE_REVERSE, VOLUME_SOURCE)
        parts.append(pa.table({
            "year": np.full(edge_id.size, year, dtype=np.int16), "edge_id": edge_id.astype(np.int64),
            "aadt": values[keep].astype(np.float32), "source": pa.array(source, pa.string()),
            "match_distance_m": pa.nulls(edge_id.size, pa.float32()),
        }, schema=SCHEMAS["edge_volume"]))
    if not parts:
        return SCHEMAS["edge_volume"].empty_table(), quality
    return pa.concat_tables(parts), quality
