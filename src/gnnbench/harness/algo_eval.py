"""Evaluation of the algorithmic baselines as CLRS-30 scores them, and their predictions as flat columns.

:func:`evaluate` scores a model on a named split (or any ``TraceSet``) with :class:`gnnbench.algo.Evaluator`,
from the model's hard predictions (``model.predict``: CLRS-30's post-processing).

Predictions (``SeedOutcome.predictions``): the test split's output predictions as equal-length 1-D columns, one row
per entry of each output field of each graph:

* ``graph`` (int64): the graph's index in the test split;
* ``field`` (str): the output field (``pi``, ``Pi``, ``is_bridge``, ...);
* ``position`` (int64): the entry's row-major index in the field's per-graph array of :class:`Evaluator`'s layout
  (node fields ``[n]``: the node; edge fields ``[n, n]``: ``i * n + j``; graph fields: 0; categorical fields with
  their class axis last);
* ``value`` (float64): the hard prediction as CLRS-30 post-processes it: a pointer's node, a mask's 0 or 1, a
  mask_one's or categorical's one-hot entry, a scalar's value.

:func:`predictions_from_columns` turns the columns back into :class:`Evaluator` input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..algo import Evaluator
from ..algo.specs import SPECS, Location, Type
from ..algo.trace import TraceSet
from ..arguments import check_int
from .algo_data import chunks, split_traces, to_device


@dataclass
class Evaluation:
    """Scores of one split and the hard predictions behind them (``Evaluator`` layout, ``[num, ...]``)."""

    metrics: dict[str, float]
    predictions: dict[str, np.ndarray]


def eval_batch_size(batch_size: int, n: int) -> int:
    """Graphs per evaluation batch: ``batch_size`` up to n = 64, scaled by (64 / n)^2 beyond (memory)."""
    return max(1, batch_size * 64 * 64 // (n * n)) if n > 64 else batch_size


@torch.no_grad()
def evaluate(model: torch.nn.Module, algorithm: str, split: str | TraceSet, *, batch_size: int = 32,
             device: torch.device | str | None = None) -> Evaluation:
    """Score ``model`` on a split (a name such as ``"test"``/``"test_128"``, or a ``TraceSet``) as CLRS-30 does.

    Graphs are predicted independently, so batching does not change a prediction.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    traces = split_traces(algorithm, split) if isinstance(split, str) else split
    if traces.algorithm != algorithm:
        raise ValueError(f"split holds {traces.algorithm} traces, not {algorithm}")
    device = next(model.parameters()).device if device is None else torch.device(device)
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    try:
        for piece in chunks(traces.clrs_batch(), eval_batch_size(batch_size, traces.num_nodes)):
            for name, value in model.predict(to_device(piece, device)).items():
                parts.setdefault(name, []).append(_to_numpy(value))
    finally:
        model.train(was_training)
    evaluator = Evaluator(algorithm)
    predictions = {name: _hard(algorithm, name, np.concatenate(parts[name])) for name in evaluator.outputs}
    metrics = evaluator.eval({"y_true": traces.outputs, "y_pred": predictions})
    return Evaluation(metrics=metrics, predictions=predictions)


def _to_numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _hard(algorithm: str, name: str, pred: np.ndarray) -> np.ndarray:
    """A prediction in CLRS-30's hard form (pointer: node; mask: 0/1; mask_one/categorical: one-hot)."""
    _, location, type_ = SPECS[algorithm][name]
    truth_rank = {Location.NODE: 2, Location.EDGE: 3, Location.GRAPH: 1}[location]
    if type_ == Type.POINTER:
        return (np.argmax(pred, axis=-1) if pred.ndim == truth_rank + 1 else pred).astype(np.float64)
    if type_ in (Type.MASK_ONE, Type.CATEGORICAL):
        return np.eye(pred.shape[-1])[np.argmax(pred, axis=-1)]
    if type_ == Type.MASK:
        is_binary = np.isin(pred, (0.0, 1.0)).all()
        return pred.astype(np.float64) if is_binary else (pred > 0.5).astype(np.float64)
    return pred.astype(np.float64)


def prediction_columns(predictions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Hard predictions ``{field: [num, ...]}`` as the flat columns of the module docstring."""
    graph, field, position, value = [], [], [], []
    for name in sorted(predictions):
        array = np.asarray(predictions[name], dtype=np.float64)
        num = array.shape[0]
        per_graph = int(np.prod(array.shape[1:], dtype=np.int64))
        graph.append(np.repeat(np.arange(num, dtype=np.int64), per_graph))
        position.append(np.tile(np.arange(per_graph, dtype=np.int64), num))
        field.append(np.full(num * per_graph, name, dtype=object))
        value.append(array.reshape(-1))
    if not graph:
        return {"graph": np.zeros(0, np.int64), "field": np.zeros(0, object), "position": np.zeros(0, np.int64),
                "value": np.zeros(0)}
    return {"graph": np.concatenate(graph), "field": np.concatenate(field).astype(str),
            "position": np.concatenate(position), "value": np.concatenate(value)}


def predictions_from_columns(algorithm: str, columns: Mapping[str, np.ndarray], traces: TraceSet
                             ) -> dict[str, np.ndarray]:
    """:class:`Evaluator` input (``{field: [num, ...]}``) from prediction columns of the split ``traces``;
    ValueError when a field's entries are missing or repeated."""
    graph, field = np.asarray(columns["graph"]), np.asarray(columns["field"]).astype(str)
    position, value = np.asarray(columns["position"]), np.asarray(columns["value"], dtype=np.float64)
    predictions = {}
    for name in Evaluator(algorithm).outputs:
        truth = np.asarray(traces.outputs[name])
        rows = field == name
        per_graph = int(np.prod(truth.shape[1:], dtype=np.int64))
        if rows.sum() != truth.size:
            raise ValueError(f"predictions of {name!r}: {int(rows.sum())} rows, expected {truth.size} "
                             f"({truth.shape[0]} graphs x {per_graph} entries)")
        flat = np.full(truth.size, np.nan)
        index = graph[rows] * per_graph + position[rows]
        if index.min() < 0 or index.max() >= truth.size or np.unique(index).size != index.size:
            raise ValueError(f"predictions of {name!r}: graph/position out of range or repeated")
        flat[index] = value[rows]
        predictions[name] = flat.reshape(truth.shape)
    return predictions


