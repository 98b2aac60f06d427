"""PyTorch Geometric dataset of CLRS-30 algorithmic reasoning traces."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data, Dataset
from torch_geometric.data.collate import collate
from torch_geometric.data.separate import separate
from torch_geometric.io import fs

from ..algo import sample
from ..algo.samplers import distribution
from ..algo.specs import SPECS, Stage, Type, check_algorithm
from ..algo.splits import resolve_split
from ..arguments import check_choice, check_int
from ..io import file_lock
from ..io.cache import CacheRebuiltWarning, gnnbench_home, require_writable, warn_rebuilt
from ..io.files import atomic_path
from . import preprocessing
from .layout import complete_edge_index, trace_tensors
from .storage import Columns, StaleCacheError, read_columns, write_columns

logger = logging.getLogger(__name__)

# Bump when the traces generated for the same settings change, so caches rebuild.
GENERATOR_VERSION = 1

POINTER_FIELDS: frozenset[str] = frozenset(
    name for spec in SPECS.values() for name, (_, _, type_) in spec.items() if type_ == Type.POINTER)
assert not any(name in POINTER_FIELDS and type_ != Type.POINTER
               for spec in SPECS.values() for name, (_, _, type_) in spec.items()), "a field name changes type"

_NO_SINGLE_NUMBER = (
    "{what} is not defined for CLRS-30 traces: an item has no `x`/`y` but several input fields (node, edge and "
    "graph; scalar, mask, pointer) and outputs of different types ({outputs}). Use `dataset.spec` (field -> "
    "(stage, location, type); gnnbench.algo.SPECS) and the shapes of an item's fields, e.g. "
    "`dataset[0].{example}.shape`; categorical fields carry their classes in the last axis and pointers point to "
    "one of the graph's `n` nodes. A pre_transform or transform that sets `x` (or `y`) makes it defined, as in PyG.")


class AlgorithmicReasoningData(Data):
    """One trace as a graph; batching offsets pointer fields like ``edge_index``.

    In a batch, pointer values therefore index the batch's nodes; subtract
    ``batch.ptr[batch.batch]`` to get per-graph indices back.
    """

    def __inc__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key in POINTER_FIELDS:
            return self.num_nodes
        return super().__inc__(key, value, *args, **kwargs)


if hasattr(torch.serialization, "add_safe_globals"):  # torch >= 2.4: PyG-style saves of items load weights-only
    torch.serialization.add_safe_globals([AlgorithmicReasoningData])


class AlgorithmicReasoningDataset(Dataset):
    r"""CLRS-30-compatible traces of one of twelve graph algorithms.

    Each item is an :class:`AlgorithmicReasoningData` holding every field of the
    algorithm's spec (``gnnbench.algo.SPECS[algorithm]``) on the complete directed
    graph over its ``n`` nodes (``edge_index`` lists all ``n * n`` ordered pairs,
    row-major; the real graph is the ``A``/``adj`` input). Node fields are
    ``[n]``, edge fields ``[n * n]``, graph fields ``[1]``; hints add a time axis
    second (``[n, T]``, ``[n * n, T]``, ``[1, T]``). ``num_steps`` is the trace's
    own number of hint steps; hints are zero-padded after it to the dataset's
    ``max_steps`` (the longest generated trace) or ``pad_steps``, so the standard
    :class:`torch_geometric.loader.DataLoader` batches traces of different
    lengths, and models mask steps ``>= num_steps``, as CLRS-30 does. Every item
    is built fresh: changing it never changes the dataset.

    The traces are stored compactly (columns, see ``gnnbench.datasets.storage``) and
    assembled on access, so the class is a :class:`~torch_geometric.data.Dataset`
    rather than an ``InMemoryDataset`` (whose collated storage would hold every padded
    hint densely). ``num_features``, ``num_node_features``, ``num_edge_features`` and
    ``num_classes`` are not single numbers for CLRS traces (several input fields, outputs
    of several types): they raise an ``AttributeError`` that says what to use instead
    (``dataset.spec`` and the item's field shapes), unless a ``pre_transform`` or
    ``transform`` gives the items an ``x``/``y``, in which case PyG's definitions apply.

    Splits (CLRS-30's, and length generalisation at growing sizes):

    .. list-table::
        :header-rows: 1

        * - split
          - #graphs
          - #nodes
          - seed
        * - ``train``
          - 1000
          - 16
          - 1
        * - ``valid``
          - 32
          - 16
          - 2
        * - ``test``
          - 32
          - 64
          - 3
        * - ``test_16``, ``test_32``, ``test_64``, ``test_128``
          - 32
          - 16 / 32 / 64 / 128
          - 3

    Args:
        root: directory for the generated files (``None``: ``$GNNBENCH_HOME/datasets``).
        algorithm: one of ``gnnbench.algo.ALGORITHMS``.
        split: a split name above (CLRS-30's ``val``, and ``validation``, mean ``valid``).
        transform: applied to each item on access.
        pre_transform: applied to each item once, when processing; the result is cached with
            the function's fingerprint (a different function processes again, with a warning).
        pre_filter: keeps the items for which it returns True, decided when processing and
            cached like ``pre_transform`` (applied before it, as in PyG).
        force_reload: regenerate the traces and redo the preprocessing even if cached.
        num_samples, n, seed: override the split's settings.
        sampler_options: graph distribution overrides (``p``, ``low``, ``high``,
            ``k``, ``eps``, ...), see ``gnnbench.algo.GraphDistribution``.
        pad_steps: pad hints to this many steps instead of the longest trace's.
    """

    def __init__(self, root: str | Path | None, algorithm: str, split: str = "train",
                 transform: Callable[[Data], Data] | None = None,
                 pre_transform: Callable[[Data], Data] | None = None,
                 pre_filter: Callable[[Data], bool] | None = None, force_reload: bool = False, *,
                 num_samples: int | None = None, n: int | None = None, seed: int | None = None,
                 sampler_options: Mapping[str, Any] | None = None, pad_steps: int | None = None) -> None:
        self.algorithm = check_algorithm(algorithm)
        self.split, config = resolve_split(split)
        self.num_samples = config.num_samples if num_samples is None else check_int("num_samples", num_samples,
                                                                                     minimum=0)
        self.n = config.n if n is None else check_int("n", n, minimum=1)
        self.seed = config.seed if seed is None else check_int("seed", seed, minimum=0, maximum=2**32 - 1)
        if pad_steps is not None:
            pad_steps = check_int("pad_steps", pad_steps, minimum=0)
        self.sampler_options = dict(sampler_options or {})
        dist = distribution(self.algorithm, **self.sampler_options)  # validates the options
        self.cache_key = {
            "algorithm": self.algorithm, "split": self.split, "num_samples": self.num_samples, "n": self.n,
            "seed": self.seed, "distribution": {k: list(v) if isinstance(v, tuple) else v
                                                for k, v in vars(dist).items()},
            "generator_version": GENERATOR_VERSION,
        }
        root = Path(root) if root is not None else gnnbench_home() / "datasets"
        # PyG's own pre_transform handling only warns and prints; gnnbench applies both functions itself below.
        super().__init__(str(root), transform=transform, log=False, force_reload=force_reload)
        self.pre_transform, self.pre_filter = pre_transform, pre_filter
        self.columns = self._load_columns()
        self.max_steps = int(self.columns.lengths.max()) if len(self.columns) else 0
        if pad_steps is not None and pad_steps < self.max_steps:
            raise ValueError(f"pad_steps={pad_steps} is shorter than the longest trace ({self.max_steps} steps)")
        self.pad_steps = self.max_steps if pad_steps is None else pad_steps
        self._edge_index = complete_edge_index(self.n)
        self._kept = np.arange(len(self.columns))  # trace of each item
        self._stored: tuple[Data, dict] | None = None  # pre-transformed items (collated) and their slices
        if pre_transform is not None or pre_filter is not None:
            self._preprocess(force_reload)

    # --- PyG conventions -----------------------------------------------------------

    @property
    def raw_file_names(self) -> list[str]:
        return []  # generated, nothing to download

    @property
    def processed_dir(self) -> str:
        return str(Path(self.root) / "algorithmic_reasoning" / self.algorithm / "processed")

    @property
    def processed_file_names(self) -> list[str]:
        return [f"{self._stem}.npz", f"{self._stem}.json"]

    @property
    def _stem(self) -> str:
        digest = hashlib.sha256(json.dumps(self.cache_key, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.split}_n{self.n}_num{self.num_samples}_seed{self.seed}_{digest}"

    def _process(self) -> None:
        paths = [Path(path) for path in self.processed_paths]
        present = [path.exists() for path in paths]
        if not self.force_reload and any(present) and not all(present):
            missing = ", ".join(str(path) for path, there in zip(paths, present) if not there)
            warn_rebuilt(f"{missing}: missing; regenerating the {self.algorithm} {self.split} cache", stacklevel=5)
        if self.force_reload or not all(present):
            require_writable(self.processed_dir)  # before PyG creates it
        preprocessing.check_pyg_records(self.processed_dir, data_exists=all(present), force_reload=self.force_reload)
        super()._process()

    def process(self) -> None:
        require_writable(self.processed_dir)
        logger.info("generating %d %s traces on %d nodes (seed %d)", self.num_samples, self.algorithm, self.n,
                    self.seed)
        traces = sample(self.algorithm, self.num_samples, n=self.n, seed=self.seed, **self.sampler_options)
        write_columns(traces, Path(self.processed_paths[0]), self.cache_key)

    def len(self) -> int:
        return len(self._kept)

    def get(self, idx: int) -> AlgorithmicReasoningData:
        if self._stored is not None:
            data, slices = self._stored
            item = separate(cls=type(data), batch=data, idx=idx, slice_dict=slices, decrement=False)
            return item.clone()  # separate() gives views of the stored tensors
        return self._item(int(self._kept[idx]))

    def _item(self, trace: int) -> AlgorithmicReasoningData:
        fields = trace_tensors(self.algorithm, self.columns.sample(trace), self.n, self.pad_steps)
        return AlgorithmicReasoningData(
            edge_index=self._edge_index.clone(), num_nodes=self.n,
            num_steps=torch.tensor([int(self.columns.lengths[trace])]), **fields)

    @property
    def num_node_features(self) -> int:
        return self._pyg_number("num_node_features", "x")

    @property
    def num_features(self) -> int:
        return self._pyg_number("num_features", "x")

    @property
    def num_edge_features(self) -> int:
        return self._pyg_number("num_edge_features", "edge_attr")

    @property
    def num_classes(self) -> int:
        return self._pyg_number("num_classes", "y")

    def _pyg_number(self, what: str, attribute: str) -> int:
        if len(self) and attribute in self[0]:
            return getattr(super(), what)
        outputs = ", ".join(f"{name}: {location} {type_}" for name, (stage, location, type_) in self.spec.items()
                            if stage == Stage.OUTPUT)
        example = next(name for name, (stage, _, _) in self.spec.items() if stage == Stage.INPUT and name != "pos")
        raise AttributeError(_NO_SINGLE_NUMBER.format(what=what, outputs=outputs, example=example))

    # --- gnnbench additions ----------------------------------------------------------

    @property
    def spec(self) -> Mapping[str, tuple[str, str, str]]:
        return SPECS[self.algorithm]

    @property
    def num_steps(self) -> np.ndarray:
        """True number of hint steps of every item (in item order)."""
        return self.columns.lengths[self._kept][self.indices()]

    def targets(self, stage: str = Stage.OUTPUT) -> dict[str, np.ndarray]:
        """Inputs or outputs of every item, ``[len(self), ...]`` in CLRS layout (for ``Evaluator``).

        These are the generated traces' values: a ``pre_transform`` does not change them.
        """
        check_choice("stage", stage, (Stage.INPUT, Stage.OUTPUT))
        rows = self._kept[self.indices()]
        return {name: values[rows] for name, values in self.columns.stacked(stage).items()}

    def _load_columns(self) -> Columns:
        path = Path(self.processed_paths[0])
        try:
            return read_columns(path, self.cache_key)
        except StaleCacheError as problem:
            warnings.warn(f"{problem}; regenerating the {self.algorithm} {self.split} cache", CacheRebuiltWarning,
                          stacklevel=3)
            self.process()
            return read_columns(path, self.cache_key)

    # --- pre_filter / pre_transform ------------------------------------------------------

    def _preprocess(self, force_reload: bool) -> None:
        """Apply pre_filter and pre_transform once and cache the result beside the traces."""
        stem = Path(self.processed_dir) / f"{self._stem}_pad{self.pad_steps}"
        record_path, items_path = stem.with_suffix(".pre.json"), stem.with_suffix(".pre.pt")
        key = self.columns.manifest["files"]["columns"]["sha256"]
        current = preprocessing.record(self.pre_transform, self.pre_filter, key=key)
        require_writable(self.processed_dir)
        with file_lock(stem):
            stored = None
            if not preprocessing.needs_processing(record_path, current, force_reload=force_reload,
                                                  what=f"{self.algorithm} {self.split}", output=items_path):
                stored = self._read_preprocessed(items_path)
            if stored is None:
                stored = self._run_preprocessing()
                with atomic_path(items_path) as temporary:
                    fs.torch_save(stored, str(temporary))
                preprocessing.write_record(record_path, current, items_path, items=len(stored["kept"]))
        self._kept = np.asarray(stored["kept"], dtype=np.int64)
        if stored["data"] is not None:
            self._stored = (_data_class(stored["cls"]).from_dict(stored["data"]), stored["slices"])

    def _run_preprocessing(self) -> dict:
        logger.info("preprocessing %d %s %s traces", len(self.columns), self.algorithm, self.split)
        kept, items = [], []
        for trace in range(len(self.columns)):
            item = self._item(trace)
            if self.pre_filter is not None and not self.pre_filter(item):
                continue
            kept.append(trace)
            if self.pre_transform is not None:
                items.append(self.pre_transform(item))
        if not items:
            return {"kept": kept, "data": None, "slices": None, "cls": None}
        cls = type(items[0])
        data, slices, _ = collate(cls, data_list=items, increment=False, add_batch=False)
        return {"kept": kept, "data": data.to_dict(), "slices": slices, "cls": f"{cls.__module__}:{cls.__qualname__}"}

    @staticmethod
    def _read_preprocessed(path: Path) -> dict | None:
        stored = preprocessing.read_cached(path, {"kept", "data", "slices", "cls"}, "preprocessed items")
        if stored is None:
            return None
        try:
            stored["data"] is None or _data_class(stored["cls"])
        except (ImportError, AttributeError, ValueError) as error:
            logger.debug("%s: the class of the preprocessed items is gone (%s); processing again", path, error)
            return None
        return stored

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(algorithm={self.algorithm!r}, split={self.split!r}, "
                f"graphs={len(self)}, n={self.n}, max_steps={self.max_steps})")


def _data_class(name: str) -> type[Data]:
    """The ``Data`` class named ``module:qualname`` (what a pre_transform returned)."""
    module, _, qualname = name.partition(":")
    value: Any = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    if not (isinstance(value, type) and issubclass(value, Data)):
        raise ValueError(f"{name} is not a torch_geometric Data class")
    return value
