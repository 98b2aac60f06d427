"""Binary-classification metrics of one month, in plain numpy (no scikit-learn).

Each follows scikit-learn's definition (``roc_auc_score``, ``average_precision_score``, ``f1_score``,
``precision_score``, ``recall_score`` with their default ``zero_division``), so both evaluation protocols
of :class:`gnnbench.road.Evaluator` can be checked against it.
"""

from __future__ import annotations

import math

import numpy as np


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
    precision_at = true_pos / (last_of_tie + 1.0)
    recall_gain = np.diff(true_pos, prepend=0) / n_pos
    return float(np.sum(recall_gain * precision_at))


def f1(positive: np.ndarray, predicted: np.ndarray) -> float:
    """Binary F1 = 2 TP / (2 TP + FP + FN); 0 when there are neither positives nor predicted positives."""
    positive = np.asarray(positive, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    true_pos = int(np.sum(positive & predicted))
    denominator = int(positive.sum()) + int(predicted.sum())
    return 2.0 * true_pos / denominator if denominator else 0.0


def precision(positive: np.ndarray, predicted: np.ndarray) -> float:
    """TP / (TP + FP); 0 when nothing is predicted positive (scikit-learn's default ``zero_division``)."""
    positive = np.asarray(positive, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    count = int(predicted.sum())
    return int(np.sum(positive & predicted)) / count if count else 0.0


def recall(positive: np.ndarray, predicted: np.ndarray) -> float:
    """TP / (TP + FN); 0 when there are no positives (scikit-learn's default ``zero_division``)."""
    positive = np.asarray(positive, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    count = int(positive.sum())
    return int(np.sum(positive & predicted)) / count if count else 0.0


def recall_at_k(positive: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Fraction of the positives among the ``k`` highest scores; ties go to the lower index."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return math.nan
    top = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    return int(positive[top].sum()) / n_pos
