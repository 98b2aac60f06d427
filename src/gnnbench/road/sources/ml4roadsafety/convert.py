"""Fetch the published ML4RoadSafety release (doi:10.7910/DVN/V71K5R) and import it as gnnbench road tables.

What the release holds, per state ``{STATE}/`` (from ``datasets/7_dataset_creation.py`` and
``ml_for_road_safety/data_loaders.py`` of VirtuosoResearch/ML4RoadSafety):

* ``adj_matrix.pt``: sparse COO float ``[N, N]``, values = length, uncoalesced: one entry ``(u, v)`` per row
  of the OSMnx edge list plus ``(v, u)`` when that row is two-way. OSMnx already lists a two-way street in
  both directions, so most pairs appear twice (``coalesce()`` would sum their lengths). The loader's
  ``edge_index`` is ``adj.coalesce().indices()``, i.e. the distinct pairs in row-major order: that order
  is our ``edge_id``.
* ``Edges/edge_features.pt``: dict of sparse ``[N, N]`` tensors with one entry per OSMnx edge-list row:
  ``oneway``, ``length`` (OSMnx, metres) and one-hot highway classes. Class keys are ``numpy.str_``, which
  ``torch.load(weights_only=True)`` refuses unless numpy's scalar/dtype reconstructors are allow-listed
  (done here, nothing else is). The one-hot encoding used substring matching, so a ``primary_link`` edge
  also has ``primary`` set; we report the most specific class.
* ``Edges/edge_features_traffic_{year}.pt``: the same dict plus ``AADT`` (NaN where no count).
* ``Nodes/node_features_{year}_{month}.csv``: ``node_id`` (OSM id), ``lat``, ``lon``, ``tavg, tmin, tmax,
  prcp, wspd, pres`` in node order. The creation script renamed OSMnx's ``x, y`` to ``lat, lon``, so the
  columns are swapped; we detect that from the values and record it.
* ``accidents_monthly.csv``: ``year, month, node_1, node_2`` (OSM ids), ``acc_count``, ``node_1_idx``,
  ``node_2_idx``.

An edge ``(v, u)`` added only by the two-way reversal (its street was listed in one direction, e.g. clipped
at a boundary; probably why the loader pads NV's features with two zero rows) has no feature entry of its
own and takes the attributes (and AADT) of its twin ``(u, v)``; the manifest counts these edges. Accidents
are matched to the directed edge ``(node_1_idx, node_2_idx)`` first, then to its reverse; anything else is
counted as dropped, never silently lost.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ...io import (
    OfflineError,
    RetryPolicy,
    atomic_path,
    file_lock,
    gnnbench_home,
    is_offline,
    safe_extract,
    sha256_file,
)
from ..manifest import read_manifest, write_manifest
from ..states import STATES
from ..tables import SCHEMAS, TABLES, WEATHER_COLUMNS, write_table
from .dataverse import DEFAULT_SERVER, ML4ROADSAFETY_DOI, DataverseError, dataset_url, download_file, list_files

log = logging.getLogger("gnnbench.road")

IMPORT_KIND = "ml4roadsafety-import"
VOLUME_SOURCE = "ml4roadsafety"
RELEASE_STATES = ("DE", "IA", "IL", "MA", "MD", "MN", "MT", "NV")
#: Groups of states whose published ``accidents_monthly.csv`` are byte-identical (ML4RoadSafety issue #8).
KNOWN_IDENTICAL_ACCIDENT_FILES = (("DE", "MA"),)

ADJACENCY_FILE = "adj_matrix.pt"
ACCIDENTS_FILE = "accidents_monthly.csv"
EDGE_FEATURES_FILE = "Edges/edge_features.pt"
ACCIDENT_COLUMNS = ("year", "month", "node_1_idx", "node_2_idx", "acc_count")
NODE_FILE = re.compile(r"node_features_(\d{4})_(\d{1,2})\.csv")
TRAFFIC_FILE = re.compile(r"edge_features_traffic_(\d{4})\.pt")
NON_CLASS_KEYS = frozenset({"oneway", "length"})
DROP_REASONS = ("bad_date", "bad_node_index", "missing_count", "non_positive_count", "non_integer_count",
                "no_matching_edge")
_EXTRACTED_SUFFIX = ".extracted.json"
_NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"


class ReleaseFormatError(ValueError):
    """A release file is missing, unreadable or laid out differently (names the file and column/key)."""


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


# =========================================================================== fetching


def fetch_release(state: str, *, cache_dir: str | os.PathLike | None = None, doi: str = ML4ROADSAFETY_DOI,
                  server: str = DEFAULT_SERVER, session=None, retry: RetryPolicy | None = None,
                  refresh: bool = False, progress: bool | None = None) -> Path:
    """Download and extract ``{STATE}.zip`` of the release; return the extracted ``{STATE}/`` directory.

    Files live in ``cache_dir`` (default ``$GNNBENCH_HOME/raw/ml4roadsafety``): the zip (with its download
    record), the extracted state directory and ``{STATE}.extracted.json``. A state already extracted is
    returned without touching the network unless ``refresh``; offline, a cached zip is extracted and a
    missing one raises :class:`~gnnbench.io.OfflineError`. Zips nesting ``ML4RoadSafety_graphs_{STATE}/{STATE}``
    are flattened. Concurrent callers are serialised by a file lock per state.
    """
    state = _check_state(state)
    root = Path(cache_dir) if cache_dir is not None else gnnbench_home() / "raw" / "ml4roadsafety"
    root.mkdir(parents=True, exist_ok=True)
    state_dir = root / state
    marker = root / f"{state}{_EXTRACTED_SUFFIX}"
    zip_path = root / f"{state}.zip"
    with file_lock(root / state):
        if state_dir.is_dir() and marker.exists() and not (refresh and not is_offline()):
            _check_layout(state_dir)
            return state_dir
        origin: dict[str, Any] = {"state": state, "doi": doi, "server": server}
        if is_offline() or (zip_path.exists() and not refresh):
            if not zip_path.exists():
                raise OfflineError(
                    f"gnnbench is offline and the ML4RoadSafety release of {state} is not cached: neither "
                    f"{state_dir} nor {zip_path} exists; it comes from {dataset_url(doi, server)}",
                    url=dataset_url(doi, server), path=str(zip_path))
            origin.update(_sidecar_fields(zip_path))
        else:
            files = list_files(doi, server=server, session=session, retry=retry)
            wanted = f"{state}.zip"
            matches = [entry for entry in files if entry.filename == wanted]
            if not matches:
                names = ", ".join(sorted(entry.filename for entry in files)) or "no files"
                raise DataverseError(f"dataset {doi} on {server} has no file named {wanted} (it lists: {names})")
            if len(matches) > 1:
                raise DataverseError(f"dataset {doi} on {server} lists {len(matches)} files named {wanted} "
                                     f"(ids {[entry.id for entry in matches]}); cannot choose one")
            # a cached zip is kept when it still matches the published checksum, else downloaded again
            record = download_file(matches[0], root, server=server, session=session, retry=retry,
                                   progress=progress)
            origin.update(record.to_dict(), file_id=matches[0].id,
                          published_checksum=[matches[0].checksum_type, matches[0].checksum_value])
        _extract_state(zip_path, root, state)
        origin["path"] = str(zip_path)
        origin["zip_sha256"] = origin.get("sha256") or sha256_file(zip_path)
        with atomic_path(marker) as temporary:
            temporary.write_text(json.dumps(origin, indent=2, sort_keys=True, default=str) + "\n")
        return state_dir


def _check_state(state: str) -> str:
    state = str(state).strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", state):
        raise ValueError(f"a state is a two-letter code such as 'MA', got {state!r}")
    if state not in RELEASE_STATES:
        log.warning("state %s is not one of the eight ML4RoadSafety states %s", state, ", ".join(RELEASE_STATES))
    return state


def _sidecar_fields(zip_path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(Path(f"{zip_path}.download.json").read_text()))
    except (OSError, ValueError):
        return {"path": str(zip_path)}


def _extract_state(zip_path: Path, root: Path, state: str) -> Path:
    """Extract ``zip_path`` and move its state directory (wherever it is nested) to ``root/{state}``."""
    scratch = root / f".extract-{state}"
    if scratch.exists():
        shutil.rmtree(scratch)
    safe_extract(zip_path, scratch)
    try:
        found = sorted(path.parent for path in scratch.rglob(ADJACENCY_FILE) if "__MACOSX" not in path.parts)
        if not found:
            raise ReleaseFormatError(f"{zip_path} holds no {ADJACENCY_FILE}; is it an ML4RoadSafety state zip?")
        if len(found) > 1:
            named = [path for path in found if path.name == state]
            if len(named) != 1:
                listed = ", ".join(str(path.relative_to(scratch)) for path in found)
                raise ReleaseFormatError(f"{zip_path} holds several state directories ({listed}); expected one")
            found = named
        source = found[0]
        if source.relative_to(scratch).parts not in {(state,), (f"ML4RoadSafety_graphs_{state}", state)}:
            log.warning("%s: state directory found at unexpected place %s", zip_path, source.relative_to(scratch))
        _check_layout(source)
        target = root / state
        if target.exists():
            trash = root / f".old-{state}"
            if trash.exists():
                shutil.rmtree(trash)
            os.replace(target, trash)
            shutil.rmtree(trash)
        os.replace(source, target)
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _check_layout(state_dir: Path) -> None:
    """Raise :class:`ReleaseFormatError` naming every required release file missing under ``state_dir``."""
    missing = [name for name in (ADJACENCY_FILE, ACCIDENTS_FILE, EDGE_FEATURES_FILE)
               if not (state_dir / name).is_file()]
    nodes = state_dir / "Nodes"
    if not nodes.is_dir() or not any(NODE_FILE.fullmatch(path.name) for path in nodes.iterdir()):
        missing.append("Nodes/node_features_{year}_{month}.csv")
    if missing:
        raise ReleaseFormatError(f"{state_dir} is not an ML4RoadSafety state directory: missing {', '.join(missing)}")


# =========================================================================== reading


def read_release(state_dir: str | os.PathLike) -> ReleaseTables:
    """Read a release state directory into the gnnbench tables (see the module docstring for the mapping)."""
    state_dir = Path(state_dir)
    _check_layout(state_dir)
    sources: list[dict[str, Any]] = []
    quality: dict[str, Any] = {}

    def source(path: Path, role: str) -> Path:
        sources.append({"path": str(path), "name": path.relative_to(state_dir).as_posix(), "role": role,
                        "sha256": sha256_file(path), "size": path.stat().st_size})
        return path

    graph = _read_adjacency(source(state_dir / ADJACENCY_FILE, "adjacency"))
    node_files = _month_files(state_dir / "Nodes")
    for _, _, path in node_files:
        source(path, "node_features")
    nodes, node_weather, quality["nodes"], quality["node_weather"] = _read_nodes(graph, node_files)
    edges, quality["edges"] = _read_edge_features(graph, source(state_dir / EDGE_FEATURES_FILE, "edge_features"))
    osm_ids = None if nodes.column("osm_id").null_count else nodes.column("osm_id").to_numpy()
    accidents, quality["accidents"] = _read_accidents(graph, source(state_dir / ACCIDENTS_FILE, "accidents"), osm_ids)
    traffic_files = _traffic_files(state_dir / "Edges")
    for _, path in traffic_files:
        source(path, "edge_traffic")
    edge_volume, quality["edge_volume"] = _read_traffic(graph, traffic_files)
    nodes = nodes.set_column(nodes.schema.get_field_index("degree"), "degree", pa.array(graph.degree()))
    quality["accidents"]["file_sha256"] = next(item["sha256"] for item in sources if item["role"] == "accidents")
    quality["checksums"] = {item["name"]: item["sha256"] for item in sources}
    return ReleaseTables(state_dir=state_dir, nodes=nodes, edges=edges, accidents=accidents,
                         node_weather=node_weather, edge_volume=edge_volume, sources=sources, quality=quality)


def import_release(state: str, state_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                   check_duplicates: bool = True) -> Path:
    """Convert a release state directory into ``out_dir/{table}.parquet`` plus ``manifest.json``; return ``out_dir``.

    The manifest (kind ``ml4roadsafety-import``) lists every release file read with its sha256, and the
    quality report counts dropped accident rows by reason. With ``check_duplicates`` the other imports
    beside ``out_dir`` are compared (:func:`check_imported_duplicates`) and identical accident files logged.
    """
    state = _check_state(state)
    state_dir = Path(state_dir)
    out_dir = Path(out_dir)
    release = read_release(state_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # tables being replaced are not a finished import
    tables = release.tables()
    for name, table in tables.items():
        write_table(name, table, out_dir)
    sources = list(release.sources)
    marker = state_dir.parent / f"{state_dir.name}{_EXTRACTED_SUFFIX}"
    if marker.exists():
        origin = json.loads(marker.read_text())
        sources.insert(0, {"role": "release-archive", "url": origin.get("url"), "path": origin.get("path"),
                           "sha256": origin.get("zip_sha256"), "size": origin.get("size"),
                           "retrieved_at": origin.get("retrieved_at"), "doi": origin.get("doi"),
                           "file_id": origin.get("file_id")})
    parameters = {
        "release": "ML4RoadSafety",
        "edge_order": "distinct (row, col) pairs of adj_matrix.pt in row-major order (= coalesce().indices())",
        "edge_attributes": "edge_features.pt entry (src, dst), else the segment's entry (dst, src)",
        "accident_matching": "directed edge (node_1_idx, node_2_idx), else its reverse",
        "highway": "most specific one-hot class set (not a substring of another set class), ties alphabetical",
        "degree": "distinct neighbours, ignoring direction and self-loops",
        "length_unit": "m",
    }
    years = sorted({int(year) for name in ("accidents", "node_weather")
                    for year in tables[name].column("year").to_pylist()})
    parameters["years"] = years
    parameters["months"] = sorted({(int(y), int(m)) for name in ("accidents", "node_weather")
                                   for y, m in zip(tables[name].column("year").to_pylist(),
                                                   tables[name].column("month").to_pylist())})
    parameters["splits"] = STATES[state].splits if state in STATES else None
    write_manifest(out_dir, kind=IMPORT_KIND, state=state, parameters=parameters, sources=sources,
                   tables=TABLES, quality=release.quality)
    log.info("imported ML4RoadSafety %s from %s into %s (%d nodes, %d edges, %d accident rows)", state, state_dir,
             out_dir, release.nodes.num_rows, release.edges.num_rows, release.accidents.num_rows)
    if check_duplicates:
        check_imported_duplicates(out_dir.parent)
    return out_dir


# --------------------------------------------------------------------------- duplicate accident files


def identical_accident_files(states_dirs: Mapping[str, str | os.PathLike]) -> list[tuple[str, ...]]:
    """Groups (sorted tuples, >= 2 states) of states whose ``accidents_monthly.csv`` are byte-identical.

    Only files of equal size are hashed. States without the file are skipped with a warning.
    """
    by_size: dict[int, list[tuple[str, Path]]] = defaultdict(list)
    for state, directory in states_dirs.items():
        path = Path(directory) / ACCIDENTS_FILE
        if not path.is_file():
            log.warning("%s: %s not found; skipped in the identical-file check", state, path)
            continue
        by_size[path.stat().st_size].append((state, path))
    groups = []
    for candidates in by_size.values():
        if len(candidates) < 2:
            continue
        by_digest: dict[str, list[str]] = defaultdict(list)
        for state, path in candidates:
            by_digest[sha256_file(path)].append(state)
        groups.extend(tuple(sorted(states)) for states in by_digest.values() if len(states) > 1)
    return sorted(groups)


def check_imported_duplicates(out_root: str | os.PathLike) -> list[tuple[str, ...]]:
    """Compare the accident-file checksums recorded by the imports under ``out_root/*/manifest.json``.

    Returns the groups of states whose release ``accidents_monthly.csv`` were identical and logs a warning
    naming them (a known defect of the published release: MA and DE ship the same file).
    """
    by_digest: dict[str, list[str]] = defaultdict(list)
    root = Path(out_root)
    for manifest in sorted(root.glob("*/manifest.json")):
        try:
            record = read_manifest(manifest.parent)
        except (OSError, ValueError):
            continue
        if record.get("kind") != IMPORT_KIND:
            continue
        digest = (record.get("quality", {}).get("checksums") or {}).get(ACCIDENTS_FILE)
        if digest:
            by_digest[digest].append(str(record.get("state") or manifest.parent.name))
    groups = sorted(tuple(sorted(states)) for states in by_digest.values() if len(states) > 1)
    for group in groups:
        known = " (known defect of the published release, ML4RoadSafety issue #8)" \
            if group in KNOWN_IDENTICAL_ACCIDENT_FILES else ""
        log.warning("ML4RoadSafety imports %s in %s have byte-identical %s%s: their accident labels are not "
                    "independent", ", ".join(group), root, ACCIDENTS_FILE, known)
    return groups


# =========================================================================== release files


@dataclass
class _Graph:
    """The release graph: node count and edges in release order, with a (src, dst) -> edge lookup."""

    num_nodes: int
    src: np.ndarray
    dst: np.ndarray
    adjacency_values: np.ndarray | None  # first adj_matrix.pt value per edge (the segment length), if sparse
    quality: dict[str, Any]

    def __post_init__(self) -> None:
        self.keys = self.src * self.num_nodes + self.dst
        self._lookup = _PairLookup(self.keys)

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])

    def find(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Edge id of each (src, dst) pair, -1 where there is no such edge (or an index is out of range)."""
        return self._lookup.find(_pair_keys(src, dst, self.num_nodes))

    def degree(self) -> np.ndarray:
        low, high = np.minimum(self.src, self.dst), np.maximum(self.src, self.dst)
        keep = low != high
        pairs = np.unique(low[keep] * self.num_nodes + high[keep])
        counts = np.bincount(pairs // self.num_nodes, minlength=self.num_nodes)
        counts += np.bincount(pairs % self.num_nodes, minlength=self.num_nodes)
        return counts.astype(np.int32)


class _PairLookup:
    """Position of int64 keys in an array of distinct keys (sorted or not)."""

    def __init__(self, keys: np.ndarray) -> None:
        self.order = None if keys.size < 2 or bool(np.all(keys[1:] > keys[:-1])) else np.argsort(keys, kind="stable")
        self.sorted = keys if self.order is None else keys[self.order]

    def find(self, query: np.ndarray) -> np.ndarray:
        if self.sorted.size == 0:
            return np.full(query.shape, -1, dtype=np.int64)
        position = np.searchsorted(self.sorted, query)
        position = np.minimum(position, self.sorted.size - 1)
        hit = (self.sorted[position] == query) & (query >= 0)
        found = position if self.order is None else self.order[position]
        return np.where(hit, found, -1).astype(np.int64)


def _pair_keys(src: np.ndarray, dst: np.ndarray, num_nodes: int) -> np.ndarray:
    """``src * N + dst``; -1 where either index is outside ``[0, N)``."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    valid = (src >= 0) & (src < num_nodes) & (dst >= 0) & (dst < num_nodes)
    return np.where(valid, src * num_nodes + dst, -1)


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``, allow-listing only numpy's scalar and dtype reconstructors.

    The published feature dicts are keyed by ``numpy.str_``, which the weights-only unpickler rejects
    by default; nothing else is allowed, so a file holding arbitrary objects still fails.
    """
    import pickle

    import torch

    allowed: list[Any] = [np.dtype]
    allowed += [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    scalar = getattr(getattr(np, "_core", np.core), "multiarray").scalar
    allowed += [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    try:
        with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
            # weights-only loading validates sparse tensors (wanted) and warns that it does so
            warnings.filterwarnings("ignore", message="Validating sparse tensor invariants")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ReleaseFormatError(f"{path}: not loadable with torch.load(weights_only=True): {error}") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ReleaseFormatError(f"{path}: unreadable PyTorch file: {error}") from None


def _is_sparse(tensor: Any) -> bool:
    import torch

    return isinstance(tensor, torch.Tensor) and tensor.layout == torch.sparse_coo


def _sparse_entries(tensor: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, values as float64) of a sparse COO tensor, uncoalesced, in stored order."""
    import torch

    indices = tensor._indices().numpy().astype(np.int64, copy=False)
    values = tensor._values().detach().to(dtype=torch.float64).numpy()
    return indices[0], indices[1], values


def _read_adjacency(path: Path) -> _Graph:
    """Edges of ``adj_matrix.pt``: a sparse ``[N, N]`` matrix (published) or a ``[2, E]`` / ``[E, 2]`` edge list."""
    import torch

    adjacency = _torch_load(path)
    quality: dict[str, Any] = {}
    if _is_sparse(adjacency):
        if adjacency.dim() != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ReleaseFormatError(f"{path}: expected a square sparse [N, N] matrix, "
                                     f"got shape {tuple(adjacency.shape)}")
        num_nodes = int(adjacency.shape[0])
        if num_nodes >= 3_000_000_000:
            raise ReleaseFormatError(f"{path}: {num_nodes} nodes is more than this importer supports")
        rows, cols, values = _sparse_entries(adjacency)
        keys = rows * num_nodes + cols
        distinct, first = np.unique(keys, return_index=True)  # sorted = coalesced (row-major) order
        quality["adjacency_entries"] = int(keys.size)
        quality["adjacency_duplicate_entries"] = int(keys.size - distinct.size)
        return _Graph(num_nodes, distinct // num_nodes, distinct % num_nodes, values[first], quality)
    if isinstance(adjacency, torch.Tensor) and adjacency.dim() == 2 and not adjacency.is_floating_point():
        edges = adjacency.numpy().astype(np.int64)
        if edges.shape[0] == 2:
            if edges.shape[1] == 2:
                log.warning("%s: a 2x2 edge list is ambiguous; reading it as [2, E]", path)
        elif edges.shape[1] == 2:
            edges = edges.T
        else:
            raise ReleaseFormatError(f"{path}: an edge list must be [2, E] or [E, 2], got {tuple(edges.shape)}")
        if edges.size and edges.min() < 0:
            raise ReleaseFormatError(f"{path}: negative node index {int(edges.min())}")
        num_nodes = int(edges.max()) + 1 if edges.size else 0
        keys = edges[0] * num_nodes + edges[1]
        _, first = np.unique(keys, return_index=True)
        first = np.sort(first)  # keep the given order, first occurrence of each pair
        quality["adjacency_entries"] = int(keys.size)
        quality["adjacency_duplicate_entries"] = int(keys.size - first.size)
        quality["adjacency_format"] = "edge list"
        return _Graph(num_nodes, edges[0, first], edges[1, first], None, quality)
    kind = f"tensor of shape {tuple(adjacency.shape)} ({adjacency.layout}, {adjacency.dtype})" \
        if isinstance(adjacency, torch.Tensor) else type(adjacency).__name__
    raise ReleaseFormatError(f"{path}: expected a sparse COO [N, N] tensor or an integer [2, E] edge list, got {kind}")


def _month_files(directory: Path) -> list[tuple[int, int, Path]]:
    files = []
    for path in directory.iterdir():
        match = NODE_FILE.fullmatch(path.name)
        if match:
            year, month = int(match.group(1)), int(match.group(2))
            if not 1 <= month <= 12:
                raise ReleaseFormatError(f"{path}: month {month} is not within 1..12")
            files.append((year, month, path))
        elif path.is_file():
            log.warning("%s: unexpected file in Nodes/, ignored", path)
    return sorted(files)


def _traffic_files(directory: Path) -> list[tuple[int, Path]]:
    files = []
    for path in directory.iterdir():
        match = TRAFFIC_FILE.fullmatch(path.name)
        if match:
            files.append((int(match.group(1)), path))
    return sorted(files)


def _csv_header(path: Path) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as handle:
        try:
            return [name.strip() for name in next(csv.reader(handle))]
        except StopIteration:
            raise ReleaseFormatError(f"{path}: empty file (no header)") from None


def _read_csv(path: Path, types: Mapping[str, pa.DataType]) -> pa.Table:
    """Read the named columns of a CSV with the given types; unparsable cells become nulls."""
    header = _csv_header(path)
    names = [name for name in types if name in header]
    convert = pacsv.ConvertOptions(include_columns=names, column_types={name: types[name] for name in names})
    try:
        return pacsv.read_csv(path, convert_options=convert)
    except pa.ArrowInvalid:
        pass  # some cell does not parse: read as text and null what is not a number
    text = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        include_columns=names, column_types={name: pa.string() for name in names}))
    columns = {}
    for name in names:
        column = pc.utf8_trim_whitespace(text.column(name))
        numeric = pc.match_substring_regex(column, _NUMBER)
        column = pc.if_else(numeric, column, pa.scalar(None, pa.string()))
        if pa.types.is_integer(types[name]):
            columns[name] = pc.cast(pc.cast(column, pa.float64()), types[name], safe=False)
        else:
            columns[name] = pc.cast(column, types[name])
    return pa.table(columns)


def _floats(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64 with NaN for nulls."""
    return pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False)


def _read_nodes(graph: _Graph, node_files: Sequence[tuple[int, int, Path]]):
    """nodes (without degree) and node_weather from the monthly node CSVs."""
    types = {"node_id": pa.int64(), "lat": pa.float64(), "lon": pa.float64(),
             **{name: pa.float64() for name in WEATHER_COLUMNS}}
    quality: dict[str, Any] = {"month_files": len(node_files)}
    weather_quality: dict[str, Any] = defaultdict(int)
    first_path = node_files[0][2]
    reference = _read_csv(first_path, types)
    for name in WEATHER_COLUMNS:
        if name not in reference.column_names:
            header = ", ".join(_csv_header(first_path))
            raise ReleaseFormatError(f"{first_path}: missing column {name!r} (has {header})")
    n = graph.num_nodes
    osm_ids = None
    if "node_id" in reference.column_names:
        ids = reference.column("node_id")
        if ids.null_count:
            raise ReleaseFormatError(f"{first_path}: column 'node_id' has {ids.null_count} empty cells")
        ids = ids.to_numpy()
        _, first = np.unique(ids, return_index=True)
        reference_rows = np.sort(first)
        osm_ids = ids[reference_rows]
        if osm_ids.size != n:
            raise ReleaseFormatError(f"{first_path}: lists {osm_ids.size} distinct node ids but "
                                     f"{ADJACENCY_FILE} has {n} nodes")
        lookup = _PairLookup(osm_ids)
    else:
        if reference.num_rows != n:
            raise ReleaseFormatError(f"{first_path}: {reference.num_rows} rows and no 'node_id' column, but "
                                     f"{ADJACENCY_FILE} has {n} nodes")
        reference_rows = np.arange(n)
        lookup = None
    lon, lat = _coordinates(reference, reference_rows, first_path, quality)

    periods = len(node_files)
    weather = np.full((len(WEATHER_COLUMNS), periods * n), np.nan, dtype=np.float32)
    month_types = {name: kind for name, kind in types.items() if name not in ("lat", "lon")}
    for index, (year, month, path) in enumerate(node_files):
        table = reference if index == 0 else _read_csv(path, month_types)
        missing = [name for name in WEATHER_COLUMNS if name not in table.column_names]
        if missing:
            raise ReleaseFormatError(f"{path}: missing column {missing[0]!r} (has {', '.join(_csv_header(path))})")
        rows = _node_rows(table, path, n, osm_ids, lookup, weather_quality)
        have = rows >= 0
        target = slice(index * n, (index + 1) * n)
        for column, name in enumerate(WEATHER_COLUMNS):
            values = _floats(table, name)
            block = np.full(n, np.nan, dtype=np.float32)
            block[have] = values[rows[have]]
            weather[column, target] = block
    years = np.repeat(np.array([year for year, _, _ in node_files], dtype=np.int16), n)
    months = np.repeat(np.array([month for _, month, _ in node_files], dtype=np.int8), n)
    node_weather = pa.table({
        "year": years, "month": months, "node_id": np.tile(np.arange(n, dtype=np.int64), periods),
        **{name: pa.array(weather[column], mask=np.isnan(weather[column]))
           for column, name in enumerate(WEATHER_COLUMNS)},
        "filled": np.zeros(periods * n, dtype=np.int8),
    })
    weather_quality["months"] = [f"{year}-{month:02d}" for year, month, _ in node_files]
    weather_quality["missing_values"] = {name: int(np.isnan(weather[column]).sum())
                                         for column, name in enumerate(WEATHER_COLUMNS)}
    nodes = pa.table({
        "node_id": np.arange(n, dtype=np.int64),
        "osm_id": pa.array(osm_ids, type=pa.int64()) if osm_ids is not None else pa.nulls(n, pa.int64()),
        "lon": lon, "lat": lat,
        "degree": np.zeros(n, dtype=np.int32),
        "betweenness": pa.nulls(n, pa.float64()),
    }, schema=SCHEMAS["nodes"])
    return nodes, node_weather, quality, dict(weather_quality)


def _node_rows(table: pa.Table, path: Path, n: int, osm_ids, lookup, quality) -> np.ndarray:
    """Row of ``table`` holding each node (-1: none), counting duplicate and unknown rows in ``quality``."""
    if osm_ids is None or "node_id" not in table.column_names:
        if table.num_rows != n:
            raise ReleaseFormatError(f"{path}: {table.num_rows} rows, expected one per node ({n}), "
                                     "and no 'node_id' column to match them")
        return np.arange(n)
    ids = pc.fill_null(table.column("node_id"), -1).to_numpy()
    if ids.size == n and np.array_equal(ids, osm_ids):
        return np.arange(n)
    node = lookup.find(ids)
    known = node >= 0
    rows = np.full(n, -1, dtype=np.int64)
    known_rows = np.flatnonzero(known)
    rows[node[known_rows][::-1]] = known_rows[::-1]  # the first row of a node wins
    quality["unknown_node_rows"] += int((~known).sum())
    quality["duplicate_node_rows"] += int(known.sum() - (rows >= 0).sum())
    quality["nodes_without_row"] += int((rows < 0).sum())
    return rows


def _coordinates(table: pa.Table, rows: np.ndarray, path: Path, quality: dict[str, Any]):
    """(lon, lat) per node; the published 'lat'/'lon' columns hold x/y, which is detected from the values."""
    n = rows.size
    if "lat" not in table.column_names or "lon" not in table.column_names:
        quality["coordinates"] = "absent (NaN)"
        log.warning("%s: no lat/lon columns; node coordinates are NaN", path)
        return np.full(n, np.nan), np.full(n, np.nan)
    first, second = _floats(table, "lat")[rows], _floats(table, "lon")[rows]
    finite_first, finite_second = first[np.isfinite(first)], second[np.isfinite(second)]
    swapped = bool(finite_first.size and finite_second.size and (
        np.abs(finite_first).max() > 90.0 and np.abs(finite_second).max() <= 90.0
        or np.median(finite_first) < 0.0 < np.median(finite_second)))
    quality["coordinates"] = "swapped: column 'lat' holds the longitude" if swapped else "as labelled"
    if swapped:
        first, second = second, first
    bad = ~((np.abs(first) <= 90.0) & (np.abs(second) <= 180.0))
    quality["coordinates_invalid"] = int(bad.sum())
    return second, first  # lon, lat


def _feature_dict(path: Path) -> dict[str, Any]:
    features = _torch_load(path)
    if not isinstance(features, Mapping):
        raise ReleaseFormatError(f"{path}: expected a dict of tensors, got {type(features).__name__}")
    return {str(key): value for key, value in features.items()}


class _Aligner:
    """Values of per-segment feature tensors for each release edge: entry (src, dst), else (dst, src)."""

    def __init__(self, graph: _Graph, path: Path) -> None:
        self.graph = graph
        self.path = path
        self._indices = None
        self._positions: tuple[np.ndarray, np.ndarray] | None = None
        self.duplicates = 0

    def values(self, key: str, tensor: Any) -> tuple[np.ndarray, np.ndarray]:
        """(value per edge with NaN where none, how: 0 own entry, 1 reverse entry, 2 none)."""
        import torch

        graph = self.graph
        if _is_sparse(tensor):
            if tuple(tensor.shape) != (graph.num_nodes, graph.num_nodes):
                raise ReleaseFormatError(f"{self.path}: key {key!r} has shape {tuple(tensor.shape)}, but "
                                         f"{ADJACENCY_FILE} has {graph.num_nodes} nodes")
            indices = tensor._indices()
            if self._indices is None or not (indices is self._indices or (
                    indices.shape == self._indices.shape and torch.equal(indices, self._indices))):
                rows, cols, _ = _sparse_entries(tensor)
                keys = _pair_keys(rows, cols, graph.num_nodes)
                _, first = np.unique(keys, return_index=True)
                self.duplicates = int(keys.size - first.size)
                lookup = _PairLookup(keys[first])
                direct = lookup.find(graph.keys)
                reverse = lookup.find(graph.dst * graph.num_nodes + graph.src)
                self._indices = indices
                self._positions = (np.where(direct >= 0, first[np.maximum(direct, 0)], -1),
                                   np.where(reverse >= 0, first[np.maximum(reverse, 0)], -1))
            direct, reverse = self._positions
            values = np.append(tensor._values().detach().to(dtype=torch.float64).numpy(), np.nan)
            source = np.where(direct >= 0, direct, reverse)  # -1 picks the appended NaN
            how = np.where(direct >= 0, 0, np.where(reverse >= 0, 1, 2)).astype(np.int8)
            return values[source], how
        if isinstance(tensor, torch.Tensor) and tensor.dim() == 1 and tensor.shape[0] == graph.num_edges:
            return tensor.detach().to(dtype=torch.float64).numpy(), np.zeros(graph.num_edges, dtype=np.int8)
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ReleaseFormatError(f"{self.path}: key {key!r} is not a sparse [N, N] tensor nor a vector of the "
                                 f"{graph.num_edges} edges (got {shape})")


def _read_edge_features(graph: _Graph, path: Path) -> tuple[pa.Table, dict[str, Any]]:
    features = _feature_dict(path)
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


def _read_accidents(graph: _Graph, path: Path, osm_ids: np.ndarray | None) -> tuple[pa.Table, dict[str, Any]]:
    header = _csv_header(path)
    for name in ACCIDENT_COLUMNS:
        if name not in header:
            raise ReleaseFormatError(f"{path}: missing column {name!r} (has {', '.join(header)})")
    types = {name: pa.float64() for name in ACCIDENT_COLUMNS} | {"node_1": pa.int64(), "node_2": pa.int64()}
    table = _read_csv(path, types)
    year, month = _floats(table, "year"), _floats(table, "month")
    node_1, node_2 = _floats(table, "node_1_idx"), _floats(table, "node_2_idx")
    count = _floats(table, "acc_count")
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


def _read_traffic(graph: _Graph, files: Sequence[tuple[int, Path]]) -> tuple[pa.Table, dict[str, Any]]:
    parts, quality = [], {}
    for year, path in files:
        features = _feature_dict(path)
        key = "AADT" if "AADT" in features else next((name for name in features if name.lower() == "aadt"), None)
        if key is None:
            raise ReleaseFormatError(f"{path}: missing key 'AADT' (keys: {', '.join(features)})")
        values, how = _Aligner(graph, path).values(key, features[key])
        del features
        finite = np.isfinite(values)
        negative = finite & (values < 0)
        keep = finite & ~negative
        quality[str(year)] = {"edges_with_aadt": int(keep.sum()),
                              "from_reverse_segment": int((keep & (how == 1)).sum()),
                              "negative": int(negative.sum()), "without_value": int((~finite).sum())}
        edge_id = np.flatnonzero(keep)
        parts.append(pa.table({
            "year": np.full(edge_id.size, year, dtype=np.int16), "edge_id": edge_id.astype(np.int64),
            "aadt": values[keep].astype(np.float32), "source": pa.repeat(pa.scalar(VOLUME_SOURCE), edge_id.size),
            "match_distance_m": pa.nulls(edge_id.size, pa.float32()),
        }, schema=SCHEMAS["edge_volume"]))
    if not parts:
        return SCHEMAS["edge_volume"].empty_table(), quality
    return pa.concat_tables(parts), quality

