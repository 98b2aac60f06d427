"""Data of the algorithmic training protocol: the CLRS-30 splits and the training batches.

Training batches follow CLRS-30's ``run.py`` (https://github.com/google-deepmind/clrs/blob/master/clrs/examples/run.py):

* ``"clrs30"``: CLRS-30's train split (1000 graphs, n = 16), each batch ``batch_size`` traces drawn uniformly with
  replacement, as CLRS-30's ``Sampler.next(batch_size)`` draws them from a fixed dataset (``order="random"``), or
  in the split's order, wrapping around at its end (``order="sequential"``: what ``run.py`` does with the dataset
  files, ``train_lengths=-1``: ``tf.data`` ``repeat()`` then ``batch()``, no shuffling);
* ``"online"``: fresh graphs at every step, the size cycling through ``sizes`` (CLRS-30's ``train_lengths``
  4, 7, 11, 13, 16: one size per step, in turn), each graph's edge probability drawn from ``p`` (``run.py``'s
  0.1 .. 0.9, halved for articulation points, bridges and Kruskal). Each step's graphs come from
  ``gnnbench.algo.sample`` with a seed drawn from the seed's generator (CLRS-30 keeps one endless sampler per size;
  the graphs are drawn from the same distribution).

With ``random_pos`` the ``pos`` input of every training batch is replaced by sorted uniform draws, as CLRS-30's
``process_random_pos`` does for graph algorithms. Validation and test data are the fixed splits of
``gnnbench.algo.splits`` (the CLRS-30 ``valid`` and ``test`` splits and the length suite), with their own ``pos``.

Bucketing: CLRS-30 pads every batch to the longest trace of its whole dataset (of all batches so far, online). With
``bucket`` a training batch is padded only to its own longest trace. Steps past a trace's end are masked out of
every loss and never reach its outputs, so this changes no result; it only skips work.

All randomness comes from one ``numpy.random.Generator`` whose state ``TrainBatches.state_dict`` returns.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..algo import sample
from ..algo.splits import CLRS30_SPLITS, resolve_split
from ..algo.trace import ClrsBatch, TraceSet
from ..models.algo.batches import TorchBatch, to_torch

TRAIN_SOURCES = ("clrs30", "online")
TRAIN_ORDERS = ("random", "sequential")  # clrs30: how batches are drawn from the split
ONLINE_SIZES = (4, 7, 11, 13, 16)  # run.py's train_lengths
RUN_PY_P = tuple(0.1 + 0.1 * i for i in range(9))  # run.py's expression: 0.1 .. 0.9 in the same floats
LOW_P_ALGORITHMS = ("articulation_points", "bridges", "mst_kruskal")  # run.py halves p for these


def online_p(algorithm: str, p: Sequence[float] = ()) -> tuple[float, ...]:
    """Edge probabilities of online graphs: ``p``, or when empty CLRS-30 ``run.py``'s (0.1 .. 0.9, halved for
    articulation points, bridges and Kruskal)."""
    if len(p):
        return tuple(float(x) for x in p)
    return tuple(x / 2 for x in RUN_PY_P) if algorithm in LOW_P_ALGORITHMS else RUN_PY_P


def split_traces(algorithm: str, split: str) -> TraceSet:
    """The traces of a named split (``"train"``, ``"valid"``/``"val"``, ``"test"``, ``"test_<n>"``); cached
    by what they are (``"test"`` and ``"test_64"`` are one set)."""
    _, config = resolve_split(split)
    return _generated(algorithm, config.num_samples, config.n, config.seed)


@functools.lru_cache(maxsize=16)
def _generated(algorithm: str, num: int, n: int, seed: int) -> TraceSet:
    return sample(algorithm, num, n=n, seed=seed)


def held_out_batches(algorithm: str, data: Mapping[str, Any], batch_size: int, num_batches: int,
                     rng: np.random.Generator) -> list[ClrsBatch]:
    """``num_batches`` batches of fresh graphs from the training distribution of ``data`` (never trained on):
    CLRS-30's train-split generator (n = 16, its edge probabilities) under ``data["train"] == "clrs30"``, the
    online sizes and probabilities otherwise; ``pos`` randomised as in training when ``data["random_pos"]``."""
    if data["train"] == "clrs30":
        config = CLRS30_SPLITS["train"]
        seeds = {split.seed for split in CLRS30_SPLITS.values()}
        seed = int(rng.integers(0, 2**32))
        while seed in seeds:  # never one of CLRS-30's own splits
            seed = int(rng.integers(0, 2**32))
        traces = sample(algorithm, num_batches * batch_size, n=config.n, seed=seed).clrs_batch()
        batches = chunks(traces, batch_size)
        return [randomise_pos(batch, rng) for batch in batches] if data["random_pos"] else batches
    online = TrainBatches(algorithm, source="online", batch_size=batch_size, rng=rng, random_pos=data["random_pos"],
                          sizes=data["train_sizes"], p=data["online_p"])
    return [online.next() for _ in range(num_batches)]


def take(batch: ClrsBatch, indices: np.ndarray, bucket: bool) -> ClrsBatch:
    """Traces ``indices`` of ``batch``; with ``bucket`` the hints are cut to the longest of them."""
    lengths = batch.lengths[indices]
    steps = int(lengths.max()) if bucket else next(iter(batch.hints.values())).shape[0]
    return ClrsBatch(inputs={k: v[indices] for k, v in batch.inputs.items()},
                     hints={k: v[:steps, indices] for k, v in batch.hints.items()},
                     lengths=lengths, outputs={k: v[indices] for k, v in batch.outputs.items()})


def chunks(batch: ClrsBatch, size: int) -> list[ClrsBatch]:
    """``batch`` in consecutive pieces of ``size`` traces, each padded to its own longest trace."""
    num = batch.lengths.shape[0]
    return [take(batch, np.arange(start, min(start + size, num)), bucket=True) for start in range(0, num, size)]


def randomise_pos(batch: ClrsBatch, rng: np.random.Generator) -> ClrsBatch:
    """``batch`` with ``pos`` replaced by sorted uniform draws per graph (CLRS-30's ``process_random_pos``)."""
    pos = batch.inputs["pos"]
    return ClrsBatch(inputs={**batch.inputs, "pos": np.sort(rng.uniform(size=pos.shape), axis=-1)},
                     hints=batch.hints, lengths=batch.lengths, outputs=batch.outputs)


class TrainBatches:
    """The training batches of one seed, drawn from ``rng`` (whose state is checkpointed)."""

    def __init__(self, algorithm: str, *, source: str, batch_size: int, rng: np.random.Generator,
                 bucket: bool = True, random_pos: bool = True, sizes: Sequence[int] = ONLINE_SIZES,
                 p: Sequence[float] = (), order: str = "random") -> None:
        if source not in TRAIN_SOURCES:
            raise ValueError(f"data.train must be one of {', '.join(TRAIN_SOURCES)}, got {source!r}")
        if order not in TRAIN_ORDERS:
            raise ValueError(f"data.train_order must be one of {', '.join(TRAIN_ORDERS)}, got {order!r}")
        self.order = order
        self.algorithm, self.source, self.batch_size = algorithm, source, batch_size
        self.bucket, self.random_pos, self.rng = bucket, random_pos, rng
        self.sizes, self.p = tuple(int(s) for s in sizes), online_p(algorithm, p)
        self.drawn = 0  # batches drawn so far (online: picks the size; sequential: the position)
        self._split = split_traces(algorithm, "train").clrs_batch() if source == "clrs30" else None

    @property
    def dataset_size(self) -> int | None:
        """Graphs in the fixed training set (``None`` online: every graph is new)."""
        return CLRS30_SPLITS["train"].num_samples if self.source == "clrs30" else None

    def next(self) -> ClrsBatch:
        if self._split is not None:
            num = self._split.lengths.shape[0]
            if self.order == "random":
                indices = self.rng.integers(0, num, size=self.batch_size)
            else:
                indices = (self.drawn * self.batch_size + np.arange(self.batch_size)) % num
            batch = take(self._split, indices, self.bucket)
        else:
            n = self.sizes[self.drawn % len(self.sizes)]
            seed = int(self.rng.integers(0, 2**32))
            batch = sample(self.algorithm, self.batch_size, n=n, seed=seed, p=self.p).clrs_batch()
        self.drawn += 1
        return randomise_pos(batch, self.rng) if self.random_pos else batch

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "drawn": self.drawn}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = dict(state["rng"])
        self.drawn = int(state["drawn"])


def to_device(batch: ClrsBatch, device: torch.device | str) -> TorchBatch:
    """A CLRS-30 batch as the net's tensors on ``device`` (float32)."""
    return to_torch(batch, device=torch.device(device), dtype=torch.float32)


def traces_checksum(traces: TraceSet) -> str:
    """SHA-256 of a split's inputs, outputs and trace lengths (its hints follow from them)."""
    digest = hashlib.sha256()
    for group in (traces.inputs, traces.outputs):
        for name in sorted(group):
            array = np.ascontiguousarray(group[name])
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
    digest.update(np.ascontiguousarray(traces.lengths, dtype=np.int64).tobytes())
    return digest.hexdigest()
