"""Reading the files of an ML4RoadSafety release state directory: layout, PyTorch and CSV files, the graph."""

from __future__ import annotations

import csv
import logging
import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

log = logging.getLogger("gnnbench.road")

RELEASE_STATES = ("DE", "IA", "IL", "MA", "MD", "MN", "MT", "NV")
ADJACENCY_FILE = "adj_matrix.pt"
ACCIDENTS_FILE = "accidents_monthly.csv"
EDGE_FEATURES_FILE = "Edges/edge_features.pt"
NODE_FILE = re.compile(r"node_features_(\d{4})_(\d{1,2})\.csv")
TRAFFIC_FILE = re.compile(r"edge_features_traffic_(\d{4})\.pt")
_NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"


class ReleaseFormatError(ValueError):
    """A release file is missing, unreadable or laid out differently (names the file and column/key)."""


def check_layout(state_dir: Path) -> None:
    """Raise :class:`ReleaseFormatError` naming every required release file missing under ``state_dir``."""
    missing = [name for name in (ADJACENCY_FILE, ACCIDENTS_FILE, EDGE_FEATURES_FILE)
               if not (state_dir / name).is_file()]
    nodes = state_dir / "Nodes"
    if not nodes.is_dir() or not any(NODE_FILE.fullmatch(path.name) for path in nodes.iterdir()):
        missing.append("Nodes/node_features_{year}_{month}.csv")
    if missing:
        raise ReleaseFormatError(f"{state_dir} is not an ML4RoadSafety state directory: missing {', '.join(missing)}")


def month_files(directory: Path) -> list[tuple[int, int, Path]]:
    """``(year, month, path)`` of every ``node_features_{year}_{month}.csv``, sorted."""
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


def traffic_files(directory: Path) -> list[tuple[int, Path]]:
    """``(year, path)`` of every ``edge_features_traffic_{year}.pt``, sorted."""
    files = []
    for path in directory.iterdir():
        match = TRAFFIC_FILE.fullmatch(path.name)
        if match:
            files.append((int(match.group(1)), path))
    return sorted(files)


# --------------------------------------------------------------------------- PyTorch files


def torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)``, allow-listing only numpy's scalar and dtype reconstructors.

    The published feature dicts are keyed by ``numpy.str_``, which the weights-only unpickler rejects
    by default; nothing else is allowed, so a file holding arbitrary objects still fails.
    """
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


def feature_dict(path: Path) -> dict[str, Any]:
    """A feature file (``edge_features*.pt``) as ``{str key: tensor}``."""
    features = torch_load(path)
    if not isinstance(features, Mapping):
        raise ReleaseFormatError(f"{path}: expected a dict of tensors, got {type(features).__name__}")
    return {str(key): value for key, value in features.items()}


def is_sparse(tensor: Any) -> bool:
    import torch

    return isinstance(tensor, torch.Tensor) and tensor.layout == torch.sparse_coo


def sparse_entries(tensor: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, values as float64) of a sparse COO tensor, uncoalesced, in stored order."""
    import torch

    indices = tensor._indices().numpy().astype(np.int64, copy=False)
    values = tensor._values().detach().to(dtype=torch.float64).numpy()
    return indices[0], indices[1], values


# --------------------------------------------------------------------------- the graph


class PairLookup:
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


def pair_keys(src: np.ndarray, dst: np.ndarray, num_nodes: int) -> np.ndarray:
    """``src * N + dst``; -1 where either index is outside ``[0, N)``."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    valid = (src >= 0) & (src < num_nodes) & (dst >= 0) & (dst < num_nodes)
    return np.where(valid, src * num_nodes + dst, -1)


@dataclass
class ReleaseGraph:
    """The release graph: node count and edges in release order, with a (src, dst) -> edge lookup."""

    num_nodes: int
    src: np.ndarray
    dst: np.ndarray
    adjacency_values: np.ndarray | None  # first adj_matrix.pt value per edge (the segment length), if sparse
    quality: dict[str, Any]

    def __post_init__(self) -> None:
        self.keys = self.src * self.num_nodes + self.dst
        self._lookup = PairLookup(self.keys)

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])

    def find(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Edge id of each (src, dst) pair, -1 where there is no such edge (or an index is out of range)."""
        return self._lookup.find(pair_keys(src, dst, self.num_nodes))

    def degree(self) -> np.ndarray:
        low, high = np.minimum(self.src, self.dst), np.maximum(self.src, self.dst)
        keep = low != high
        pairs = np.unique(low[keep] * self.num_nodes + high[keep])
        counts = np.bincount(pairs // self.num_nodes, minlength=self.num_nodes)
        counts += np.bincount(pairs % self.num_nodes, minlength=self.num_nodes)
        return counts.astype(np.int32)


def read_adjacency(path: Path) -> ReleaseGraph:
    """Edges of ``adj_matrix.pt``: a sparse ``[N, N]`` matrix (published) or a ``[2, E]`` / ``[E, 2]`` edge list."""
    import torch

    adjacency = torch_load(path)
    quality: dict[str, Any] = {}
    if is_sparse(adjacency):
        if adjacency.dim() != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ReleaseFormatError(f"{path}: expected a square sparse [N, N] matrix, "
                                     f"got shape {tuple(adjacency.shape)}")
        num_nodes = int(adjacency.shape[0])
        if num_nodes >= 3_000_000_000:
            raise ReleaseFormatError(f"{path}: {num_nodes} nodes is more than this importer supports")
        rows, cols, values = sparse_entries(adjacency)
        keys = rows * num_nodes + cols
        distinct, first = np.unique(keys, return_index=True)  # sorted = coalesced (row-major) order
        quality["adjacency_entries"] = int(keys.size)
        quality["adjacency_duplicate_entries"] = int(keys.size - distinct.size)
        return ReleaseGraph(num_nodes, distinct // num_nodes, distinct % num_nodes, values[first], quality)
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
        return ReleaseGraph(num_nodes, edges[0, first], edges[1, first], None, quality)
    kind = f"tensor of shape {tuple(adjacency.shape)} ({adjacency.layout}, {adjacency.dtype})" \
        if isinstance(adjacency, torch.Tensor) else type(adjacency).__name__
    raise ReleaseFormatError(f"{path}: expected a sparse COO [N, N] tensor or an integer [2, E] edge list, got {kind}")


# --------------------------------------------------------------------------- CSV files


def csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        try:
            return [name.strip() for name in next(csv.reader(handle))]
        except StopIteration:
            raise ReleaseFormatError(f"{path}: empty file (no header)") from None


def read_csv(path: Path, types: Mapping[str, pa.DataType]) -> pa.Table:
    """Read the named columns of a CSV with the given types; unparsable cells become nulls."""
    header = csv_header(path)
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


def floats(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64 with NaN for nulls."""
    return pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False)
