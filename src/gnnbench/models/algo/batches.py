"""Batches of algorithm traces as torch tensors, in CLRS-30's batch layout.

``to_torch(trace_set.clrs_batch())`` gives a :class:`TorchBatch`: inputs and outputs ``[B, ...]``,
hints time-first ``[T, B, ...]`` zero-padded after each trace's ``lengths`` steps, pointers as node
indices, everything in one floating dtype (as CLRS-30 feeds its network).

:func:`random_pos` is CLRS-30's ``random_pos`` option (``samplers.process_random_pos``,
https://github.com/google-deepmind/clrs/blob/v2.0.3/clrs/_src/samplers.py, applied by ``run.py`` to
the training and validation samplers, not the test ones): the ``pos`` input, evenly spaced in
``[0, 1)``, is replaced by sorted uniform random numbers per graph (per segment where ``pos`` restarts
at 0, which only the string algorithms have).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ...arguments import check_int


@dataclass
class TorchBatch:
    """``inputs`` ``{name: [B, ...]}``, ``hints`` ``{name: [T, B, ...]}``, ``lengths`` ``[B]`` (float,
    hint steps of each trace) and ``outputs`` ``{name: [B, ...]}``."""

    inputs: dict[str, torch.Tensor]
    hints: dict[str, torch.Tensor]
    lengths: torch.Tensor
    outputs: dict[str, torch.Tensor]

    @property
    def num_graphs(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def num_steps(self) -> int:
        """``T``, the padded number of hint steps (the longest trace's, unless padded further)."""
        return int(next(iter(self.hints.values())).shape[0]) if self.hints else 1

    @property
    def num_nodes(self) -> int:
        for value in self.inputs.values():
            if value.dim() >= 2:
                return int(value.shape[1])
        raise ValueError("the batch has no node or edge input to read the number of nodes from")

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TorchBatch:
        """The batch on ``device`` and/or in ``dtype``."""
        def move(x: torch.Tensor) -> torch.Tensor:
            return x.to(device=device, dtype=dtype)
        return TorchBatch({k: move(v) for k, v in self.inputs.items()}, {k: move(v) for k, v in self.hints.items()},
                          move(self.lengths), {k: move(v) for k, v in self.outputs.items()})

    def pad_steps(self, steps: int) -> TorchBatch:
        """The batch with hints zero-padded to ``steps`` time steps (at least ``num_steps``)."""
        steps = check_int("steps", steps, minimum=self.num_steps)
        hints = {}
        for name, value in self.hints.items():
            padded = value.new_zeros((steps, *value.shape[1:]))
            padded[:value.shape[0]] = value
            hints[name] = padded
        return TorchBatch(dict(self.inputs), hints, self.lengths, dict(self.outputs))

    def select(self, index: torch.Tensor | list[int]) -> TorchBatch:
        """The graphs ``index`` (e.g. one bucket of similar lengths), with hints cut to their longest trace."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.lengths.device)
        if index.numel() == 0:
            raise ValueError("select: index is empty")
        lengths = self.lengths.index_select(0, index)
        steps = max(1, int(lengths.max().item()))
        return TorchBatch({k: v.index_select(0, index) for k, v in self.inputs.items()},
                          {k: v[:steps].index_select(1, index) for k, v in self.hints.items()},
                          lengths, {k: v.index_select(0, index) for k, v in self.outputs.items()})


def to_torch(clrs_batch, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> TorchBatch:
    """A :class:`TorchBatch` from ``TraceSet.clrs_batch()`` (NumPy arrays in CLRS-30's layout)."""
    for part in ("inputs", "hints", "lengths", "outputs"):
        if not hasattr(clrs_batch, part):
            raise ValueError(f"to_torch expects a ClrsBatch (TraceSet.clrs_batch()); {type(clrs_batch).__name__} "
                             f"has no {part!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")

    def convert(stage: str, values: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        out = {}
        for name, value in values.items():
            array = np.asarray(value)
            if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
                raise ValueError(f"{stage} field {name!r} has non-numeric dtype {array.dtype}")
            out[name] = torch.tensor(array, dtype=dtype, device=device)  # a copy: clrs_batch recycles its memory
        return out

    lengths = torch.tensor(np.asarray(clrs_batch.lengths), dtype=dtype, device=device)
    return TorchBatch(convert("input", clrs_batch.inputs), convert("hint", clrs_batch.hints), lengths,
                      convert("output", clrs_batch.outputs))


def random_pos(pos: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """CLRS-30's randomised ``pos``: per graph (row of ``pos`` ``[B, N]``), sorted uniform random
    numbers in ``[0, 1)``, sorted separately within each segment that starts where ``pos`` is 0."""
    if pos.dim() != 2:
        raise ValueError(f"pos must be [num_graphs, num_nodes], got shape {tuple(pos.shape)}")
    uniform = torch.rand(pos.shape, generator=generator, dtype=torch.float64, device=generator.device)
    segment = torch.cumsum((pos == 0).to(torch.long), dim=1).to(uniform.device)  # nondecreasing along a row
    by_value = torch.argsort(uniform, dim=1, stable=True)
    by_segment = torch.argsort(segment.gather(1, by_value), dim=1, stable=True)  # segments in order, values sorted
    return uniform.gather(1, by_value.gather(1, by_segment)).to(device=pos.device, dtype=pos.dtype)


def randomize_pos(batch: TorchBatch, generator: torch.Generator) -> TorchBatch:
    """``batch`` with its ``pos`` input replaced by :func:`random_pos` (CLRS-30's training and validation)."""
    if "pos" not in batch.inputs:
        raise ValueError("randomize_pos: the batch has no 'pos' input")
    inputs = dict(batch.inputs)
    inputs["pos"] = random_pos(inputs["pos"], generator)
    return TorchBatch(inputs, batch.hints, batch.lengths, batch.outputs)
