"""A region's tables laid out for fast monthly snapshots (the processed form behind the datasets).

:func:`write_snapshot_store` turns the Parquet tables into plain ``.npy`` arrays (no pickles):
the static graph, edge and node features, the accidents as a month-indexed sparse layout
(month pointer -> edge ids and counts), the weather as a ``[months, nodes, 6]`` array and the
traffic volume as ``[years, edges]``. :class:`SnapshotStore` memory-maps them, so one month's
labels and node features cost a slice and a scatter, not a re-read of the tables.

Two-way roads are two directed edges forming one segment; accidents are stored on the
segment's canonical edge (``segment[e] == e``). :meth:`SnapshotStore.counts` gives every
directed edge its segment's count, and ``eval_mask`` marks the canonical edges so each
segment is evaluated once. :meth:`SnapshotStore.directed_counts` and
:meth:`SnapshotStore.directed_volume_of` keep the tables' per-directed-edge labels instead (an
imported ML4RoadSafety release: the labels its own protocol scores).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..arguments import check_int
from ..io import atomic_path
from ..io.manifest import file_record, read_manifest as read_store_manifest, verify_files, write_manifest
from .manifest import read_manifest
from .sources.osm import HIGHWAY_CLASSES, edge_classes
from .tables import SEVERITY_COLUMNS, WEATHER_COLUMNS, read_table

STORE_FORMAT = 3  # layout of the arrays' manifest (kind "road-snapshots"); 3: the package-wide manifest
STORE_KIND = "road-snapshots"
STORE_MANIFEST = "manifest.json"
NODE_FEATURES = ("degree", "betweenness", "lon", "lat")
EDGE_FEATURES = ("length_m", "oneway", "lanes", "lanes_missing", "maxspeed_kmh", "maxspeed_missing", "bridge",
                 "tunnel", *(f"highway_{name}" for name in HIGHWAY_CLASSES))
_ARRAYS = ("edge_index", "node_features", "edge_features", "segment", "months", "accident_ptr", "accident_edge",
           "accident_count", "accident_severity", "weather", "weather_filled", "volume_years", "volume",
           "directed_ptr", "directed_edge", "directed_count", "volume_from_reverse")
#: ``edge_volume.source`` suffix of an AADT an edge took from its reverse segment (ML4RoadSafety imports).
REVERSE_SOURCE_SUFFIX = ":reverse"


def write_snapshot_store(tables_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                         months: list[tuple[int, int]] | None = None) -> Path:
    """Convert the tables in ``tables_dir`` into the array layout in ``out_dir`` (written last: ``manifest.json``).

    ``months`` defaults to the months the manifest lists (imports), else every month of its years.
    """
    from .matching import segment_ids

    tables_dir, out_dir = Path(tables_dir), Path(out_dir)
    manifest = read_manifest(tables_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nodes = read_table("nodes", tables_dir)
    edges = read_table("edges", tables_dir)
    num_nodes, num_edges = nodes.num_rows, edges.num_rows
    if not np.array_equal(nodes["node_id"].to_numpy(), np.arange(num_nodes)):
        raise ValueError(f"{tables_dir}/nodes.parquet: node_id must be 0..N-1")
    if not np.array_equal(edges["edge_id"].to_numpy(), np.arange(num_edges)):
        raise ValueError(f"{tables_dir}/edges.parquet: edge_id must be 0..E-1")
    arrays: dict[str, np.ndarray] = {}
    arrays["edge_index"] = np.stack([edges["src"].to_numpy(), edges["dst"].to_numpy()]).astype(np.int64)
    arrays["node_features"] = np.stack([_filled(nodes[name]) for name in NODE_FEATURES], axis=1).astype(np.float32)
    lanes, maxspeed = _filled(edges["lanes"]), _filled(edges["maxspeed_kmh"])
    arrays["edge_features"] = np.concatenate([
        np.stack([_filled(edges["length_m"]), _filled(edges["oneway"]), lanes,
                  edges["lanes"].is_null().to_numpy(zero_copy_only=False).astype(np.float64), maxspeed,
                  edges["maxspeed_kmh"].is_null().to_numpy(zero_copy_only=False).astype(np.float64),
                  _filled(edges["bridge"]), _filled(edges["tunnel"])], axis=1).astype(np.float32),
        edge_classes([name or "other" for name in edges["highway"].to_pylist()])], axis=1)
    has_geometry = edges["geometry"].null_count == 0 and num_edges > 0
    arrays["segment"] = segment_ids(edges) if has_geometry else _reverse_twins(arrays["edge_index"])

    years = sorted(manifest["parameters"].get("years") or [])
    if months is None and manifest["parameters"].get("months"):
        months = [tuple(pair) for pair in manifest["parameters"]["months"]]  # an import lists the months it has
    if months is None:
        months = [(year, month) for year in years for month in range(1, 13)]
    arrays["months"] = np.array(months, dtype=np.int64).reshape(-1, 2)
    month_of = {tuple(pair): i for i, pair in enumerate(months)}

    # Accidents per (month, segment): imports may list either direction of a two-way road, builds the canonical one.
    accidents = read_table("accidents", tables_dir).to_pandas()
    accidents["position"] = [month_of.get((y, m), -1) for y, m in zip(accidents["year"], accidents["month"])]
    accidents = accidents[accidents["position"] >= 0]
    accidents["segment"] = arrays["segment"][accidents["edge_id"].to_numpy()]
    has_severity = bool(len(accidents)) and not accidents["fatal"].isna().any()
    summed = ["count", *SEVERITY_COLUMNS] if has_severity else ["count"]
    per_segment = accidents.groupby(["position", "segment"], sort=True)[summed].sum().reset_index()
    arrays["accident_ptr"] = np.concatenate([[0], np.cumsum(np.bincount(per_segment["position"].to_numpy(),
                                                                          minlength=len(months)))])
    arrays["accident_edge"] = per_segment["segment"].to_numpy(np.int64)
    arrays["accident_count"] = per_segment["count"].to_numpy(np.int32)
    arrays["accident_severity"] = (per_segment[list(SEVERITY_COLUMNS)].to_numpy(np.int32) if has_severity
                                   else np.zeros((0, 3), dtype=np.int32))
    # The same accidents per (month, directed edge) as the table lists them, without the segment merge.
    per_edge = accidents.sort_values(["position", "edge_id"])
    arrays["directed_ptr"] = np.concatenate([[0], np.cumsum(np.bincount(per_edge["position"].to_numpy(),
                                                                          minlength=len(months)))])
    arrays["directed_edge"] = per_edge["edge_id"].to_numpy(np.int64)
    arrays["directed_count"] = per_edge["count"].to_numpy(np.int32)

    weather_table = read_table("node_weather", tables_dir)
    weather = np.zeros((len(months), num_nodes, len(WEATHER_COLUMNS)), dtype=np.float32)
    filled = np.zeros((len(months), num_nodes), dtype=np.int8)
    if weather_table.num_rows:
        slot = np.array([month_of.get((y, m), -1) for y, m in zip(weather_table["year"].to_pylist(),
                                                                   weather_table["month"].to_pylist())])
        keep = slot >= 0
        node = weather_table["node_id"].to_numpy()[keep]
        for column, name in enumerate(WEATHER_COLUMNS):
            weather[slot[keep], node, column] = _filled(weather_table[name])[keep]
        filled[slot[keep], node] = weather_table["filled"].to_numpy()[keep]
    arrays["weather"], arrays["weather_filled"] = weather, filled

    volume_table = read_table("edge_volume", tables_dir)
    volume_years = np.array(sorted(set(years) | set(volume_table["year"].to_pylist())), dtype=np.int64)
    volume = np.full((len(volume_years), num_edges), np.nan, dtype=np.float32)
    from_reverse = np.zeros((len(volume_years), num_edges), dtype=bool)
    if volume_table.num_rows:
        row = np.searchsorted(volume_years, volume_table["year"].to_numpy())
        volume[row, volume_table["edge_id"].to_numpy()] = volume_table["aadt"].to_numpy(zero_copy_only=False)
        sources = volume_table["source"].to_pylist()
        reverse = np.array([str(name or "").endswith(REVERSE_SOURCE_SUFFIX) for name in sources], dtype=bool)
        from_reverse[row[reverse], volume_table["edge_id"].to_numpy()[reverse]] = True
    arrays["volume_years"], arrays["volume"], arrays["volume_from_reverse"] = volume_years, volume, from_reverse

    for name in _ARRAYS:
        with atomic_path(out_dir / f"{name}.npy") as temporary:
            with open(temporary, "wb") as handle:
                np.save(handle, arrays[name], allow_pickle=False)
    write_manifest(out_dir / STORE_MANIFEST, kind=STORE_KIND, layout=STORE_FORMAT,
                   parameters={"tables": manifest["files"], "months": [list(pair) for pair in months]},
                   files={name: file_record(out_dir / f"{name}.npy") for name in _ARRAYS},
                   state=manifest["state"], source_kind=manifest["kind"], node_features=list(NODE_FEATURES),
                   edge_features=list(EDGE_FEATURES), weather_features=list(WEATHER_COLUMNS),
                   has_weather=bool(weather_table.num_rows), has_volume=bool(volume_table.num_rows),
                   has_severity=bool(len(arrays["accident_severity"])), splits=manifest["parameters"].get("splits"))
    return out_dir


def read_store_meta(directory: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the arrays in ``directory``, with every array present at its recorded size and SHA-256
    (``ManifestError`` naming the file otherwise; each file is hashed once per process while unchanged)."""
    meta = read_store_manifest(Path(directory) / STORE_MANIFEST, kinds=(STORE_KIND,), layout=STORE_FORMAT)
    verify_files(meta, directory)
    return meta


class SnapshotStore:
    """Memory-mapped arrays of one region (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        if not (self.directory / STORE_MANIFEST).exists():
            raise FileNotFoundError(f"no processed road arrays at {self.directory} ({STORE_MANIFEST} missing)")
        self.meta: dict[str, Any] = read_store_meta(self.directory)

    def __getattr__(self, name: str) -> np.ndarray:
        if name in _ARRAYS:
            array = np.load(self.directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            setattr(self, name, array)
            return array
        raise AttributeError(name)

    @cached_property
    def month_lookup(self) -> dict[tuple[int, int], int]:
        return {(int(y), int(m)): i for i, (y, m) in enumerate(np.asarray(self.months))}

    def month_position(self, year: int, month: int) -> int:
        """Index of (year, month) in :attr:`months`; a clear error for months outside the build."""
        try:
            return self.month_lookup[(check_int("year", year), check_int("month", month, minimum=1, maximum=12))]
        except KeyError:
            first, last = tuple(self.months[0]), tuple(self.months[-1])
            raise KeyError(f"{year}-{month:02d} is not a month of this dataset ({first[0]}-{first[1]:02d} to "
                           f"{last[0]}-{last[1]:02d})") from None

    @cached_property
    def eval_mask(self) -> np.ndarray:
        """True on each segment's canonical edge (evaluate each road segment once)."""
        return np.asarray(self.segment) == np.arange(len(self.segment))

    def counts(self, year: int, month: int) -> np.ndarray:
        """Crash count of every directed edge in that month (both directions of a segment share it)."""
        position = self.month_position(year, month)
        start, stop = int(self.accident_ptr[position]), int(self.accident_ptr[position + 1])
        per_segment = np.zeros(len(self.segment), dtype=np.float32)
        per_segment[self.accident_edge[start:stop]] = self.accident_count[start:stop]
        return per_segment[self.segment]

    def directed_counts(self, year: int, month: int) -> np.ndarray:
        """Crash count of every directed edge in that month as the tables list it (no segment sharing)."""
        position = self.month_position(year, month)
        start, stop = int(self.directed_ptr[position]), int(self.directed_ptr[position + 1])
        counts = np.zeros(len(self.segment), dtype=np.float32)
        counts[self.directed_edge[start:stop]] = self.directed_count[start:stop]
        return counts

    def directed_volume_of(self, year: int) -> np.ndarray:
        """AADT of every edge in ``year`` from its own source row (NaN where none, or taken from the reverse)."""
        volume = np.array(self.volume_of(year))  # raises a clear KeyError for a year without volume
        row = int(np.flatnonzero(np.asarray(self.volume_years) == int(year))[0])
        volume[np.asarray(self.volume_from_reverse[row])] = np.nan
        return volume

    def weather_of(self, year: int, month: int | None = None) -> np.ndarray:
        """Node weather ``[N, 6]`` of a month, or the mean over a year's months when ``month`` is None."""
        if month is not None:
            return np.asarray(self.weather[self.month_position(year, month)])
        year = check_int("year", year)
        rows = [i for (y, _), i in self.month_lookup.items() if y == year]
        if not rows:
            raise KeyError(f"{year} is not a year of this dataset")
        return np.asarray(self.weather[min(rows): max(rows) + 1]).mean(axis=0)

    def volume_of(self, year: int) -> np.ndarray:
        """AADT of every edge in ``year`` (NaN where no volume was matched)."""
        years = np.asarray(self.volume_years)
        where = np.flatnonzero(years == check_int("year", year))
        if not len(where):
            raise KeyError(f"no traffic volume year {year} in this dataset (years: {years.tolist()})")
        return np.asarray(self.volume[where[0]])


def _filled(column) -> np.ndarray:
    values = column.to_numpy(zero_copy_only=False)
    values = np.asarray(values, dtype=np.float64)
    return np.nan_to_num(values, nan=0.0)


def _reverse_twins(edge_index: np.ndarray) -> np.ndarray:
    """Segments without geometry: an edge and its reverse (first of each, by id) form one segment."""
    src, dst = edge_index
    import pandas as pd

    frame = pd.DataFrame({"a": np.minimum(src, dst), "b": np.maximum(src, dst), "id": np.arange(len(src))})
    frame["k"] = frame.groupby(["a", "b", src > dst]).cumcount()  # pair the k-th forward with the k-th reverse
    return frame.groupby(["a", "b", "k"])["id"].transform("min").to_numpy()
