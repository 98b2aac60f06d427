"""OGB-style ``Evaluator`` for the road-safety tasks, with two protocols side by side.

``protocol="gnnbench"`` (the default) scores every road segment once per month (``eval_mask``: one edge per
two-way road, both directions sharing the segment's label): ``accident_occurrence`` by ROC-AUC, average
precision, F1 at a threshold and Recall@k per month, averaged weighted by each month's positives (a month
without positives or without negatives is skipped); ``accident_count`` and ``traffic_volume`` by MAE and
RMSE pooled over all labelled entries.

``protocol="ml4roadsafety"`` reproduces ML4RoadSafety's numbers (https://github.com/VirtuosoResearch/ML4RoadSafety
at commit d8b3d96a8dc9f1323e9595addd705c3c2c96b42c): directed edges with per-directed-pair labels, its
negatives, months with fewer than 10 positives skipped, F1 / recall / precision of ``y_pred > 0.5``, MAE and
MSE (see :mod:`gnnbench.road.ml4roadsafety_protocol`). Everything is plain numpy (no scikit-learn).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..arguments import check_choice, check_float, check_int
from . import ml4roadsafety_protocol as upstream
from .metrics import average_precision, average_ranks, f1, precision, recall, recall_at_k, roc_auc

__all__ = ["Evaluator", "PROTOCOLS", "TASKS", "average_precision", "average_ranks", "f1", "precision", "recall",
           "recall_at_k", "roc_auc"]

TASKS = ("accident_occurrence", "accident_count", "traffic_volume")
PROTOCOLS = ("gnnbench", "ml4roadsafety")
OCCURRENCE_METRICS = ("roc_auc", "average_precision", "f1", "recall@k")
REGRESSION_METRICS = ("mae", "rmse")
DEFAULT_K = 100
DEFAULT_THRESHOLD = 0.5

_OCCURRENCE_FORMAT = """\
==== Expected input format of Evaluator('accident_occurrence') ====
eval({'y_true': ..., 'y_pred': ..., 'k': 100, 'threshold': 0.5}):
- y_true: per-edge labels, array [M, E] (M months, E evaluated edges per month) or [E] (one month),
  or a list of M 1-D arrays of possibly different lengths (months may evaluate different edge subsets).
  Values are 0/1 (bool works) or non-negative whole accident counts; anything > 0 is positive.
- y_pred: real-valued scores of the same structure and shapes (higher = more likely an accident).
  Must be finite. numpy arrays, torch tensors (any device) and lists are accepted for both.
- k (optional int >= 1, default 100): Recall@k is the fraction of the month's positive edges among
  its k highest-scored edges (all edges if the month has fewer than k); ties in score are broken by
  edge index (the lower index ranks first).
- threshold (optional float, default 0.5): F1 predicts positive where y_pred >= threshold, so the
  default suits probabilities; pass threshold=0.0 for logits.
Per month: roc_auc (tie-aware Mann-Whitney), average_precision (step-wise, as scikit-learn), f1,
recall@k. A month without positive or without negative edges is skipped for every metric; the others
are averaged weighted by their number of positive edges."""

_REGRESSION_FORMAT = """\
==== Expected input format of Evaluator({task!r}) ====
eval({{'y_true': ..., 'y_pred': ...}}):
- y_true: {what}, an array of any shape (e.g. {shape}) or a list of arrays (e.g. one per month);
  NaN means "no label" and the entry is left out of every metric.
- y_pred: real-valued predictions of exactly the same structure and shapes; must be finite.
numpy arrays, torch tensors (any device) and lists are accepted. Errors are pooled over all labelled
entries (not averaged per month)."""

_UPSTREAM_ACCIDENT_FORMAT = """\
==== Expected input format of Evaluator({task!r}, protocol='ml4roadsafety') ====
eval({{'y_true': ..., 'y_pred': ..., 'edge_index': ...}}):
- y_true: per-directed-edge crash counts (0/1 works for occurrence), array [M, E] (M months) or [E], or a
  list of M 1-D arrays; each direction of a two-way road has its own label, as in ML4RoadSafety. Give every
  edge of the graph, or the edges that RoadAccidentDataset(..., source='ml4roadsafety')
  .snapshot(y, m, labels='ml4roadsafety').eval_mask marks (the rule below, applied again, keeps them all).
- y_pred: {pred}, same structure and shapes; must be finite.
- edge_index: the directed edges of those entries, [2, E] (shared by every month) or a list of M [2, E_m].
Per month, as ML4RoadSafety: positives are the edges with y_true > 0, months with fewer than 10 of them are
skipped; negatives are the edges with y_true == 0 unless both endpoints are endpoints of a positive edge
(those are not scored). {rule}"""

_UPSTREAM_VOLUME_FORMAT = """\
==== Expected input format of Evaluator('traffic_volume', protocol='ml4roadsafety') ====
eval({'y_true': ..., 'y_pred': ...}):
- y_true: AADT (vehicles per day) per directed edge, NaN where the edge has no volume of its own, array
  [Y, E] (Y years) or [E], or a list of Y 1-D arrays.
- y_pred: predicted AADT in vehicles per day, same structure and shapes; must be finite.
Per year, as ML4RoadSafety: the edges with an AADT are scored, years with fewer than 10 are skipped; MAE and
MSE are in thousands of vehicles per day (ML4RoadSafety divides AADT by 1000), weighted by edge count."""


class Evaluator:
    """Scores predictions for one road-safety task (modelled on OGB's ``Evaluator``).

    ``protocol`` is ``"gnnbench"`` (default: each road segment once, Recall@k, RMSE) or ``"ml4roadsafety"``
    (ML4RoadSafety's numbers at commit d8b3d96a8dc9f1323e9595addd705c3c2c96b42c: directed pairs, its negatives,
    months with < 10 positives skipped, F1/recall/precision at 0.5, MSE). See :attr:`expected_input_format`.

    >>> evaluator = Evaluator("accident_occurrence")
    >>> print(evaluator.expected_input_format)
    >>> evaluator.eval({"y_true": counts, "y_pred": scores, "k": 100})
    {'roc_auc': ..., 'average_precision': ..., 'f1': ..., 'recall@100': ..., 'months': 12, 'months_skipped': 0}
    """

    def __init__(self, task: str, protocol: str = "gnnbench") -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
        self.task = task
        self.protocol = check_choice("protocol", protocol, PROTOCOLS)
        if protocol == "ml4roadsafety":
            occurrence, regression = upstream.OCCURRENCE_METRICS, upstream.REGRESSION_METRICS
        else:
            occurrence, regression = OCCURRENCE_METRICS, REGRESSION_METRICS
        self.metrics: tuple[str, ...] = occurrence if task == "accident_occurrence" else regression

    def __repr__(self) -> str:
        if self.protocol == "gnnbench":
            return f"Evaluator({self.task!r})"
        return f"Evaluator({self.task!r}, protocol={self.protocol!r})"

    @property
    def expected_input_format(self) -> str:
        if self.protocol == "ml4roadsafety":
            if self.task == "traffic_volume":
                return _UPSTREAM_VOLUME_FORMAT
            if self.task == "accident_occurrence":
                pred = "predicted probabilities of a crash"
                rule = ("Metrics (scikit-learn's): roc_auc, average_precision, and f1, recall, precision of "
                        "y_pred > 0.5;\naveraged over months weighted by their number of positives.")
            else:
                pred = "predicted crash counts"
                rule = "Metrics: mae, mse over positives and negatives (target 0), pooled over the scored months."
            return _UPSTREAM_ACCIDENT_FORMAT.format(task=self.task, pred=pred, rule=rule)
        if self.task == "accident_occurrence":
            return _OCCURRENCE_FORMAT
        what, shape = {
            "accident_count": ("monthly accident counts per edge", "[M, E]"),
            "traffic_volume": ("annual average daily traffic (AADT) per edge", "[E] or [years, E]"),
        }[self.task]
        return _REGRESSION_FORMAT.format(task=self.task, what=what, shape=shape)

    @property
    def expected_output_format(self) -> str:
        if self.protocol == "ml4roadsafety":
            if self.task == "accident_occurrence":
                return ("{'roc_auc', 'average_precision', 'f1', 'recall', 'precision': float (averages over the "
                        "scored months weighted by their positives; NaN when every month is skipped), 'months': int, "
                        "'months_skipped': int (months with fewer than 10 positives)}; ML4RoadSafety's logger "
                        "prints these x100")
            if self.task == "accident_count":
                return ("{'mae': float, 'mse': float, 'count': int (edges scored), 'months': int, 'months_skipped': "
                        "int (fewer than 10 positives)}; lower is better")
            return ("{'mae': float, 'mse': float, 'count': int (edges scored), 'years': int, 'years_skipped': int "
                    "(fewer than 10 edges with an AADT)}; in thousands of vehicles per day; lower is better")
        if self.task == "accident_occurrence":
            return ("{'roc_auc': float, 'average_precision': float, 'f1': float, 'recall@<k>': float, "
                    "'months': int (months given), 'months_skipped': int (months without positives or without "
                    "negatives)}; metrics are averages over the scored months weighted by their number of positive "
                    "edges, NaN when every month is skipped")
        return ("{'mae': float, 'rmse': float, 'count': int (labelled entries scored)}; lower is better")

    def eval(self, input_dict: Mapping[str, Any]) -> dict[str, float]:
        """Score ``input_dict`` (see :attr:`expected_input_format`); raises ``ValueError`` on bad input."""
        if not isinstance(input_dict, Mapping):
            raise ValueError(f"input_dict must be a dict, got {type(input_dict).__name__}")
        if self.protocol == "ml4roadsafety":
            return self._eval_upstream(input_dict)
        if self.task == "accident_occurrence":
            return self._eval_occurrence(input_dict)
        return self._eval_regression(input_dict)

    # --- gnnbench protocol --------------------------------------------------------------------

    def _eval_occurrence(self, input_dict: Mapping[str, Any]) -> dict[str, float]:
        _check_keys(input_dict, self.task, optional=("k", "threshold"))
        k = check_int("'k'", input_dict.get("k", DEFAULT_K), minimum=1)
        threshold = check_float("'threshold'", input_dict.get("threshold", DEFAULT_THRESHOLD))
        y_true, y_pred = _paired_months(input_dict, one_dimensional=True)
        _check_counts(y_true, y_pred)

        names = ("roc_auc", "average_precision", "f1", f"recall@{k}")
        totals = dict.fromkeys(names, 0.0)
        weight = 0
        skipped = 0
        for truth, pred in zip(y_true, y_pred):
            positive = truth > 0
            n_pos = int(positive.sum())
            if n_pos == 0 or n_pos == positive.size:
                skipped += 1
                continue
            scores = (roc_auc(positive, pred), average_precision(positive, pred),
                      f1(positive, pred >= threshold), recall_at_k(positive, pred, k))
            for name, score in zip(names, scores):
                totals[name] += n_pos * score
            weight += n_pos
        result: dict[str, float] = {name: totals[name] / weight if weight else math.nan for name in names}
        result["months"] = len(y_true)
        result["months_skipped"] = skipped
        return result

    def _eval_regression(self, input_dict: Mapping[str, Any]) -> dict[str, float]:
        _check_keys(input_dict, self.task, optional=())
        y_true, y_pred = _paired_months(input_dict, one_dimensional=False)
        for month, (truth, pred) in enumerate(zip(y_true, y_pred)):
            _check_finite_pred(pred, month, len(y_pred), "array")
            if np.isinf(truth).any():
                raise ValueError(f"'y_true'{_where(month, len(y_true), 'array')} holds infinite values "
                                 "(use NaN to mark entries without a label)")
        truth = np.concatenate([t.reshape(-1) for t in y_true])
        pred = np.concatenate([p.reshape(-1) for p in y_pred])
        labelled = ~np.isnan(truth)
        count = int(labelled.sum())
        if count == 0:
            raise ValueError("'y_true' has no labelled entries: every value is NaN (NaN means 'no label')")
        error = pred[labelled] - truth[labelled]
        return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error ** 2))), "count": count}

    # --- ML4RoadSafety protocol ---------------------------------------------------------------

    def _eval_upstream(self, input_dict: Mapping[str, Any]) -> dict[str, float]:
        if self.task == "traffic_volume":
            _check_keys(input_dict, self.task, optional=(), protocol=self.protocol)
            y_true, y_pred = _paired_months(input_dict, one_dimensional=True, unit="year")
            for year, (truth, pred) in enumerate(zip(y_true, y_pred)):
                _check_finite_pred(pred, year, len(y_pred), "year")
                if np.isinf(truth).any():
                    raise ValueError(f"'y_true'{_where(year, len(y_true), 'year')} holds infinite values "
                                     "(use NaN to mark edges without a volume)")
            return upstream.score_volume(list(zip(y_true, y_pred)))
        _check_keys(input_dict, self.task, optional=(), protocol=self.protocol, required=("edge_index",))
        y_true, y_pred = _paired_months(input_dict, one_dimensional=True)
        _check_counts(y_true, y_pred)
        edge_index = _edge_indices(input_dict["edge_index"], y_true)
        months = list(zip(y_true, y_pred, edge_index))
        if self.task == "accident_occurrence":
            return upstream.score_occurrence(months)
        return upstream.score_count(months)


# --- input parsing ----------------------------------------------------------------------------

def _check_keys(input_dict: Mapping[str, Any], task: str, optional: Sequence[str], *, protocol: str = "gnnbench",
                required: Sequence[str] = ()) -> None:
    name = f"Evaluator({task!r})" if protocol == "gnnbench" else f"Evaluator({task!r}, protocol={protocol!r})"
    needed = ("y_true", "y_pred", *required)
    for key in needed:
        if key not in input_dict:
            raise ValueError(f"input_dict is missing key {key!r} ({name} needs {', '.join(map(repr, needed))})")
    allowed = (*needed, *optional)
    unknown = sorted(str(key) for key in input_dict if key not in allowed)
    if unknown:
        raise ValueError(f"input_dict has unknown key(s) {', '.join(map(repr, unknown))} for "
                         f"{name}; accepted keys: {', '.join(allowed)}")


def _to_numpy(value: Any, key: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor, without importing torch
        value = value.detach().cpu()
        if value.is_floating_point() and value.element_size() < 4:  # float16 / bfloat16
            value = value.float()
        value = value.numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{key!r} must be numeric (numpy array, torch tensor or list): {error}") from None
    return array


def _months(value: Any, key: str, one_dimensional: bool, unit: str = "month") -> tuple[list[np.ndarray], str]:
    """Split ``value`` into a list of per-month arrays; also returns a description for error messages."""
    if isinstance(value, (list, tuple)) and value and all(np.ndim(item) >= 1 for item in value):
        months = [_to_numpy(item, key) for item in value]
        if one_dimensional:
            for month, array in enumerate(months):
                if array.ndim != 1:
                    raise ValueError(f"{key!r}: {unit} {month} must be a 1-D array of edges, got shape {array.shape}")
        return months, f"a list of {len(months)} arrays"
    if isinstance(value, (list, tuple)) and any(np.ndim(item) >= 1 for item in value):
        raise ValueError(f"{key!r} mixes scalars and arrays; give one array or a list of per-{unit} arrays")
    array = _to_numpy(value, key)
    if array.size == 0:
        raise ValueError(f"{key!r} is empty (shape {array.shape})")
    if not one_dimensional:
        return [array], f"shape {array.shape}"
    if array.ndim == 1:
        return [array], f"shape {array.shape}"
    if array.ndim == 2:
        return list(array), f"shape {array.shape}"
    raise ValueError(f"{key!r} must have shape [{unit[0].upper()}, E] ({unit}s, edges) or [E], got shape {array.shape}")


def _paired_months(input_dict: Mapping[str, Any], one_dimensional: bool,
                   unit: str = "month") -> tuple[list[np.ndarray], list[np.ndarray]]:
    y_true, true_desc = _months(input_dict["y_true"], "y_true", one_dimensional, unit)
    y_pred, pred_desc = _months(input_dict["y_pred"], "y_pred", one_dimensional, unit)
    if len(y_true) != len(y_pred):
        raise ValueError(f"'y_true' ({true_desc}) has {len(y_true)} {unit}(s) but 'y_pred' ({pred_desc}) has "
                         f"{len(y_pred)}")
    unit = unit if one_dimensional else "array"
    for month, (truth, pred) in enumerate(zip(y_true, y_pred)):
        if truth.shape != pred.shape:
            raise ValueError(f"shape mismatch{_where(month, len(y_true), unit)}: 'y_true' has shape {truth.shape} but "
                             f"'y_pred' has shape {pred.shape} ('y_true' is {true_desc}, 'y_pred' is {pred_desc})")
    if sum(truth.size for truth in y_true) == 0:
        raise ValueError("'y_true' and 'y_pred' are empty: no entries to score")
    return y_true, y_pred


def _check_counts(y_true: list[np.ndarray], y_pred: list[np.ndarray]) -> None:
    """Finite predictions and 0/1 or non-negative whole-count labels, month by month."""
    for month, (truth, pred) in enumerate(zip(y_true, y_pred)):
        _check_finite_pred(pred, month, len(y_pred), "month")
        bad = ~np.isfinite(truth) | (truth < 0) | (truth != np.round(truth))
        if bad.any():
            where = _where(month, len(y_true), "month")
            raise ValueError(f"'y_true' must hold 0/1 labels or non-negative whole accident counts (anything > 0 "
                             f"is positive), but{where} it holds {float(truth[bad][0])}")


def _edge_indices(value: Any, y_true: list[np.ndarray]) -> list[np.ndarray]:
    """``edge_index`` per month: one ``[2, E]`` shared by every month, or a list of ``[2, E_m]``."""
    shared = not (isinstance(value, (list, tuple)) and value and all(np.ndim(item) == 2 for item in value))
    arrays = [_to_numpy(value, "edge_index")] if shared else [_to_numpy(item, "edge_index") for item in value]
    if not shared and len(arrays) != len(y_true):
        raise ValueError(f"'edge_index' is a list of {len(arrays)} arrays but 'y_true' has {len(y_true)} month(s)")
    for index, array in enumerate(arrays):
        where = "" if shared else f" (month {index})"
        if array.ndim != 2 or array.shape[0] != 2:
            raise ValueError(f"'edge_index'{where} must have shape [2, E], got shape {array.shape}")
        if not (np.isfinite(array).all() and (array == np.round(array)).all() and (array >= 0).all()):
            raise ValueError(f"'edge_index'{where} must hold non-negative integer node indices")
    months = [arrays[0]] * len(y_true) if shared else arrays
    for month, (edges, truth) in enumerate(zip(months, y_true)):
        if edges.shape[1] != truth.shape[0]:
            where = _where(month, len(y_true), "month")
            raise ValueError(f"'edge_index' has {edges.shape[1]} edges but 'y_true'{where} has {truth.shape[0]} "
                             "entries: give the edges of exactly the scored entries")
    return [edges.astype(np.int64) for edges in months]


def _where(index: int, count: int, unit: str) -> str:
    return f" in {unit} {index}" if count > 1 else ""


def _check_finite_pred(pred: np.ndarray, index: int, count: int, unit: str) -> None:
    bad = ~np.isfinite(pred)
    if bad.any():
        raise ValueError(f"'y_pred'{_where(index, count, unit)} holds {int(bad.sum())} non-finite value(s) "
                         f"(NaN or inf), e.g. at index {int(np.flatnonzero(bad.reshape(-1))[0])}")
