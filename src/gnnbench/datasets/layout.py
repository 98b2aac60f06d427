"""From CLRS-layout arrays (one trace) to graph-learning tensors.

Every item is a graph over all n nodes with every ordered pair (i, j), self-pairs
included, as an edge, numbered row-major (edge ``i * n + j``), because CLRS
processors see every pair; the real adjacency is the ``adj``/``A`` input.

* node fields: ``[n]``; edge fields: ``[n * n]``; graph fields: ``[1]``;
  categorical fields add a trailing class axis.
* hints put time second: ``[n, T]``, ``[n * n, T]``, ``[1, T]``, zero-padded after
  the trace's own ``num_steps`` up to the dataset's step count.
* pointers are int64 node indices; everything else float32.
* every tensor is a fresh copy: changing an item never changes the dataset.
"""

from __future__ import annotations

import numpy as np
import torch

from ..algo.specs import SPECS, Location, Stage, Type


def field_tensor(location: str, stage: str, type_: str, value: np.ndarray, n: int, pad_steps: int) -> torch.Tensor:
    """One field of one trace in item layout."""
    value = np.asarray(value)
    if stage == Stage.HINT:
        steps = value.shape[0]
        if location == Location.EDGE:
            value = value.reshape(steps, n * n, *value.shape[3:])
        elif location == Location.GRAPH:
            value = value.reshape(steps, 1, *value.shape[1:])
        value = np.swapaxes(value, 0, 1)
        if pad_steps > steps:
            padded = np.zeros((value.shape[0], pad_steps, *value.shape[2:]), dtype=value.dtype)
            padded[:, :steps] = value
            value = padded
    elif location == Location.EDGE:
        value = value.reshape(n * n, *value.shape[2:])
    elif location == Location.GRAPH:
        value = value.reshape(1, *value.shape)
    dtype = np.int64 if type_ == Type.POINTER else np.float32
    return torch.from_numpy(np.array(value, dtype=dtype, order="C", copy=True))  # never a view of the cache


def trace_tensors(algorithm: str, sample: dict[str, np.ndarray], n: int, pad_steps: int) -> dict[str, torch.Tensor]:
    """All spec fields of one trace in item layout."""
    return {name: field_tensor(loc, stage, type_, sample[name], n, pad_steps)
            for name, (stage, loc, type_) in SPECS[algorithm].items()}


def complete_edge_index(n: int) -> torch.Tensor:
    """``[2, n * n]``: every ordered pair (i, j), row-major."""
    ids = torch.arange(n)
    return torch.stack([ids.repeat_interleave(n), ids.repeat(n)])
