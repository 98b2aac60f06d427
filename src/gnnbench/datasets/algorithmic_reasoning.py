"""PyTorch Geometric dataset of CLRS-30 algorithmic reasoning traces."""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from ..algo import sample
from ..algo.samplers import distribution
from ..algo.specs import SPECS, Stage, Type, check_algorithm
from ..algo.splits import resolve_split
from ..io.cache import gnnbench_home
from .layout import complete_edge_index, trace_tensors
from .storage import Columns, StaleCacheError, read_columns, write_columns

logger = logging.getLogger(__name__)

# Bump when the traces generated for the same settings change, so caches rebuild.
GENERATOR_VERSION = 1

POINTER_FIELDS: frozenset[str] = frozenset(
    name for spec in SPECS.values() for name, (_, _, type_) in spec.items() if type_ == Type.POINTER)
assert not any(name in POINTER_FIELDS and type_ != Type.POINTER
               for spec in SPECS.values() for name, (_, _, type_) in spec.items()), "a field name changes type"


class AlgorithmicReasoningData(Data):
    """One trace as a graph; batching offsets pointer fields like ``edge_index``.

    In a batch, pointer values therefore index the batch's nodes; subtract
    ``batch.ptr[batch.batch]`` to get per-graph indices back.
    """

    def __inc__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key in POINTER_FIELDS:
            return self.num_nodes
        return super().__inc__(key, value, *args, **kwargs)


class AlgorithmicReasoningDataset(InMemoryDataset):
    r"""CLRS-30-compatible traces of one of twelve graph algorithms.

    Each item is an :class:`AlgorithmicReasoningData` holding every field of the
    algorithm's spec (``gnnbench.algo.SPECS[algorithm]``) on the complete directed
    graph over its ``n`` nodes (``edge_index`` lists all ``n * n`` ordered pairs,
    row-major; the real graph is the ``A``/``adj`` input). Node fields are
    ``[n]``, edge fields ``[n * n]``, graph fields ``[1]``; hints add a time axis
    second (``[n, T]``, ``[n * n, T]``, ``[1, T]``). ``num_steps`` is the trace's
    own number of hint steps; hints are zero-padded after it to the dataset's
    ``max_steps`` (or ``pad_steps``), so the standard
    :class:`torch_geometric.loader.DataLoader` batches traces of different
    lengths, and models mask steps ``>= num_steps``, as CLRS-30 does.

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
        * - ``val``
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
        split: a split name above (``valid``/``validation`` mean ``val``).
        num_samples, n, seed: override the split's settings.
        sampler_options: graph distribution overrides (``p``, ``low``, ``high``,
            ``k``, ``eps``, ...), see ``gnnbench.algo.GraphDistribution``.
        pad_steps: pad hints to this many steps instead of the longest trace's.
        transform: applied to each item on access.
        force_reload: regenerate even if a valid cache exists.
    """

    def __init__(self, root: str | Path | None, algorithm: str, split: str = "train", *,
                 num_samples: int | None = None, n: int | None = None, seed: int | None = None,
                 sampler_options: Mapping[str, Any] | None = None, pad_steps: int | None = None,
                 transform: Callable[[Data], Data] | None = None, force_reload: bool = False) -> None:
        self.algorithm = check_algorithm(algorithm)
        self.split, config = resolve_split(split)
        self.num_samples = config.num_samples if num_samples is None else int(num_samples)
        self.n = config.n if n is None else int(n)
        self.seed = config.seed if seed is None else int(seed)
        self.sampler_options = dict(sampler_options or {})
        dist = distribution(self.algorithm, **self.sampler_options)  # validates the options
        self.cache_key = {
            "algorithm": self.algorithm, "split": self.split, "num_samples": self.num_samples, "n": self.n,
            "seed": self.seed, "distribution": {k: list(v) if isinstance(v, tuple) else v
                                                for k, v in vars(dist).items()},
            "generator_version": GENERATOR_VERSION,
        }
        root = Path(root) if root is not None else gnnbench_home() / "datasets"
        super().__init__(str(root), transform=transform, log=False, force_reload=force_reload)
        self.columns = self._load_columns()
        self.max_steps = int(self.columns.lengths.max()) if len(self.columns) else 0
        if pad_steps is not None and pad_steps < self.max_steps:
            raise ValueError(f"pad_steps={pad_steps} is shorter than the longest trace ({self.max_steps} steps)")
        self.pad_steps = self.max_steps if pad_steps is None else int(pad_steps)
        self._edge_index = complete_edge_index(self.n)

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

    def process(self) -> None:
        logger.info("generating %d %s traces on %d nodes (seed %d)", self.num_samples, self.algorithm, self.n,
                    self.seed)
        traces = sample(self.algorithm, self.num_samples, n=self.n, seed=self.seed, **self.sampler_options)
        write_columns(traces, Path(self.processed_paths[0]), self.cache_key)

    def len(self) -> int:
        return len(self.columns)

    def get(self, idx: int) -> AlgorithmicReasoningData:
        fields = trace_tensors(self.algorithm, self.columns.sample(idx), self.n, self.pad_steps)
        return AlgorithmicReasoningData(
            edge_index=self._edge_index.clone(), num_nodes=self.n,
            num_steps=torch.tensor([int(self.columns.lengths[idx])]), **fields)

    # --- gnnbench additions ----------------------------------------------------------

    @property
    def spec(self) -> Mapping[str, tuple[str, str, str]]:
        return SPECS[self.algorithm]

    @property
    def num_steps(self) -> np.ndarray:
        """True number of hint steps of every item (in storage order)."""
        return self.columns.lengths[self.indices()]

    def targets(self, stage: str = Stage.OUTPUT) -> dict[str, np.ndarray]:
        """Inputs or outputs of every item, ``[len(self), ...]`` in CLRS layout (for ``Evaluator``)."""
        return {name: values[self.indices()] for name, values in self.columns.stacked(stage).items()}

    def _load_columns(self) -> Columns:
        path = Path(self.processed_paths[0])
        try:
            return read_columns(path, self.cache_key)
        except StaleCacheError as problem:
            warnings.warn(f"regenerating the {self.algorithm} {self.split} cache: {problem}", stacklevel=3)
            self.process()
            return read_columns(path, self.cache_key)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(algorithm={self.algorithm!r}, split={self.split!r}, "
                f"graphs={len(self)}, n={self.n}, max_steps={self.max_steps})")
