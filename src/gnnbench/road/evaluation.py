"""OGB-style ``Evaluator`` for the road-safety tasks, scored as ML4RoadSafety does.

``accident_occurrence`` is scored per month (ROC-AUC, average precision, F1, Recall@k)
and the monthly scores are averaged weighted by each month's number of positive edges;
``accident_count`` and ``traffic_volume`` are scored by MAE and RMSE pooled over all
labelled entries. Everything is plain numpy (no scikit-learn).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

TASKS = ("accident_occurrence", "accident_count", "traffic_volume")
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


class Evaluator:
    """Scores predictions for one road-safety task (modelled on OGB's ``Evaluator``).

    >>> evaluator = Evaluator("accident_occurrence")
    >>> print(evaluator.expected_input_format)
    >>> evaluator.eval({"y_true": counts, "y_pred": scores, "k": 100})
    {'roc_auc': ..., 'average_precision': ..., 'f1': ..., 'recall@100': ..., 'months': 12, 'months_skipped': 0}
    """

    def __init__(self, task: str) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
        self.task = task
        self.metrics: tuple[str, ...] = OCCURRENCE_METRICS if task == "accident_occurrence" else REGRESSION_METRICS

    def __repr__(self) -> str:
        return f"Evaluator({self.task!r})"

    @property
    def expected_input_format(self) -> str:
        if self.task == "accident_occurrence":
            return _OCCURRENCE_FORMAT
        what, shape = {
            "accident_count": ("monthly accident counts per edge", "[M, E]"),
            "traffic_volume": ("annual average daily traffic (AADT) per edge", "[E] or [years, E]"),
        }[self.task]
        return _REGRESSION_FORMAT.format(task=self.task, what=what, shape=shape)

    @property
    def expected_output_format(self) -> str:
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
        if self.task == "accident_occurrence":
            return self._eval_occurrence(input_dict)
        return self._eval_regression(input_dict)

    # --- tasks ------------------------------------------------------------------------------

    def _eval_occurrence(self, input_dict: Mapping[str, Any]) -> dict[str, float]:
        _check_keys(input_dict, self.task, optional=("k", "threshold"))
        k = _parse_k(input_dict.get("k", DEFAULT_K))
        threshold = _parse_threshold(input_dict.get("threshold", DEFAULT_THRESHOLD))
        y_true, y_pred = _paired_months(input_dict, one_dimensional=True)
        for month, (truth, pred) in enumerate(zip(y_true, y_pred)):
            _check_finite_pred(pred, month, len(y_pred), "month")
            bad = ~np.isfinite(truth) | (truth < 0) | (truth != np.round(truth))
            if bad.any():
                where = _where(month, len(y_true), "month")
                raise ValueError(f"'y_true' must hold 0/1 labels or non-negative whole accident counts (anything > 0 "
                                 f"is positive), but{where} it holds {float(truth[bad][0])}")

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


# --- metrics (one month, numpy) ---------------------------------------------------------------

def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` in ascending order; tied values share their average rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse.reshape(-1)]


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC by the Mann-Whitney U statistic with average ranks (a tie counts as half a win)."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = float(average_ranks(np.asarray(scores, dtype=np.float64))[positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def average_precision(positive: np.ndarray, scores: np.ndarray) -> float:
    """Step-wise average precision, sum_n (R_n - R_{n-1}) P_n over distinct score thresholds (as scikit-learn)."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return math.nan
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    last_of_tie = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), ranked.size - 1]
    true_pos = np.cumsum(positive[order])[last_of_tie]
    precision = true_pos / (last_of_tie + 1.0)
    recall_gain = np.diff(true_pos, prepend=0) / n_pos
    return float(np.sum(recall_gain * precision))


def f1(positive: np.ndarray, predicted: np.ndarray) -> float:
    """Binary F1 = 2 TP / (2 TP + FP + FN); 0 when there are neither positives nor predicted positives."""
    positive = np.asarray(positive, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    true_pos = int(np.sum(positive & predicted))
    denominator = int(positive.sum()) + int(predicted.sum())
    return 2.0 * true_pos / denominator if denominator else 0.0


def recall_at_k(positive: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Fraction of the positives among the ``k`` highest scores; ties go to the lower index."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return math.nan
    top = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    return int(positive[top].sum()) / n_pos


# --- input parsing ----------------------------------------------------------------------------

def _check_keys(input_dict: Mapping[str, Any], task: str, optional: Sequence[str]) -> None:
    for key in ("y_true", "y_pred"):
        if key not in input_dict:
            raise ValueError(f"input_dict is missing key {key!r} (Evaluator({task!r}) needs 'y_true' and 'y_pred')")
    allowed = ("y_true", "y_pred", *optional)
    unknown = sorted(str(key) for key in input_dict if key not in allowed)
    if unknown:
        raise ValueError(f"input_dict has unknown key(s) {', '.join(map(repr, unknown))} for "
                         f"Evaluator({task!r}); accepted keys: {', '.join(allowed)}")


def _parse_k(k: Any) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"'k' must be an integer >= 1, got {k!r}")
    return int(k)


def _parse_threshold(threshold: Any) -> float:
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not math.isfinite(threshold):
        raise ValueError(f"'threshold' must be a finite number, got {threshold!r}")
    return float(threshold)


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


def _months(value: Any, key: str, one_dimensional: bool) -> tuple[list[np.ndarray], str]:
    """Split ``value`` into a list of per-month arrays; also returns a description for error messages."""
    if isinstance(value, (list, tuple)) and value and all(np.ndim(item) >= 1 for item in value):
        months = [_to_numpy(item, key) for item in value]
        if one_dimensional:
            for month, array in enumerate(months):
                if array.ndim != 1:
                    raise ValueError(f"{key!r}: month {month} must be a 1-D array of edges, got shape {array.shape}")
        return months, f"a list of {len(months)} arrays"
    if isinstance(value, (list, tuple)) and any(np.ndim(item) >= 1 for item in value):
        raise ValueError(f"{key!r} mixes scalars and arrays; give one array or a list of per-month arrays")
    array = _to_numpy(value, key)
    if array.size == 0:
        raise ValueError(f"{key!r} is empty (shape {array.shape})")
    if not one_dimensional:
        return [array], f"shape {array.shape}"
    if array.ndim == 1:
        return [array], f"shape {array.shape}"
    if array.ndim == 2:
        return list(array), f"shape {array.shape}"
    raise ValueError(f"{key!r} must have shape [M, E] (months, edges) or [E], got shape {array.shape}")


def _paired_months(input_dict: Mapping[str, Any], one_dimensional: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    y_true, true_desc = _months(input_dict["y_true"], "y_true", one_dimensional)
    y_pred, pred_desc = _months(input_dict["y_pred"], "y_pred", one_dimensional)
    if len(y_true) != len(y_pred):
        raise ValueError(f"'y_true' ({true_desc}) has {len(y_true)} month(s) but 'y_pred' ({pred_desc}) has "
                         f"{len(y_pred)}")
    unit = "month" if one_dimensional else "array"
    for month, (truth, pred) in enumerate(zip(y_true, y_pred)):
        if truth.shape != pred.shape:
            raise ValueError(f"shape mismatch{_where(month, len(y_true), unit)}: 'y_true' has shape {truth.shape} but "
                             f"'y_pred' has shape {pred.shape} ('y_true' is {true_desc}, 'y_pred' is {pred_desc})")
    if sum(truth.size for truth in y_true) == 0:
        raise ValueError("'y_true' and 'y_pred' are empty: no entries to score")
    return y_true, y_pred


def _where(index: int, count: int, unit: str) -> str:
    return f" in {unit} {index}" if count > 1 else ""


def _check_finite_pred(pred: np.ndarray, index: int, count: int, unit: str) -> None:
    bad = ~np.isfinite(pred)
    if bad.any():
        raise ValueError(f"'y_pred'{_where(index, count, unit)} holds {int(bad.sum())} non-finite value(s) "
                         f"(NaN or inf), e.g. at index {int(np.flatnonzero(bad.reshape(-1))[0])}")
