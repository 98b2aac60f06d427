"""ML4RoadSafety's evaluation protocol, reproduced for ``Evaluator(task, protocol="ml4roadsafety")``.

Read from https://github.com/VirtuosoResearch/ML4RoadSafety at commit
d8b3d96a8dc9f1323e9595addd705c3c2c96b42c: ``ml_for_road_safety/evaluators.py``, ``trainers/trainer.py``
(occurrence), ``trainers/regression_trainer.py`` (count), ``trainers/traffic_volume_trainer.py`` (volume) and
``TrafficAccidentDataset.load_monthly_data`` / ``load_yearly_data`` in ``data_loaders.py``.

* **Positives** of a month are the directed pairs ``(node_1_idx, node_2_idx)`` listed in
  ``accidents_monthly.csv`` (repeated rows of a pair summed); each direction of a two-way road is its own pair.
* **Negatives** are the graph's directed edges *unless both endpoints are endpoints of some positive*
  (``np.isin(all_edges, pos_edges).all(axis=1)`` tests node membership, not edge membership), so the reverse
  of a crash edge, and any edge between two crash-touched nodes, is scored neither way. With the default
  ``num_negative_edges`` (1e8) every such edge is used; their order does not change the metrics.
* **Months with fewer than 10 positives are skipped** (``pos_edges.size(0) < 10``), for every task.
* ``accident_occurrence``: scikit-learn's ROC-AUC, average precision, and F1, recall and precision of
  ``y_pred > 0.5`` (strict; the model outputs probabilities) on positives + negatives; the monthly values are
  averaged weighted by the month's number of positives.
* ``accident_count``: MAE and MSE of the predictions against the counts (0 for negatives) on positives +
  negatives, averaged weighted by the month's number of scored edges (i.e. pooled over the months).
* ``traffic_volume``: per year, MAE and MSE on the edges with an AADT, in thousands of vehicles per day (the
  loader divides AADT by 1000); years with fewer than 10 such edges are skipped; weighted by edge count.

Upstream's logger prints every metric multiplied by 100 (MAE and MSE too); these functions return them
unscaled. A month whose positives are all there is (no negative) makes scikit-learn's ROC-AUC fail upstream;
here it is a ``ValueError`` naming the month.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .metrics import average_precision, f1, precision, recall, roc_auc

UPSTREAM_URL = "https://github.com/VirtuosoResearch/ML4RoadSafety"
UPSTREAM_COMMIT = "d8b3d96a8dc9f1323e9595addd705c3c2c96b42c"
MIN_POSITIVES = 10
THRESHOLD = 0.5
VOLUME_UNIT = 1000.0  # AADT is scored in thousands of vehicles per day
OCCURRENCE_METRICS = ("roc_auc", "average_precision", "f1", "recall", "precision")
REGRESSION_METRICS = ("mae", "mse")


def scored_negatives(edge_index: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """The edges ML4RoadSafety scores as negatives in a month: no crash, and not both endpoints crash-touched.

    ``edge_index`` is ``[2, E]``, ``positive`` a boolean ``[E]`` (the month's crash edges).
    """
    edge_index = np.asarray(edge_index)
    positive = np.asarray(positive, dtype=bool)
    touched = np.unique(edge_index[:, positive])
    both = np.isin(edge_index[0], touched) & np.isin(edge_index[1], touched)
    return ~positive & ~both


def score_occurrence(months: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """``[(labels, probabilities, edge_index)]`` per month -> the metrics, weighted by positives."""
    totals = dict.fromkeys(OCCURRENCE_METRICS, 0.0)
    weight = skipped = 0
    for index, (truth, pred, edge_index) in enumerate(months):
        positive = truth > 0
        n_pos = int(positive.sum())
        if n_pos < MIN_POSITIVES:
            skipped += 1
            continue
        negative = scored_negatives(edge_index, positive)
        if not negative.any():
            raise ValueError(f"month {index} has {n_pos} positive edges and no negative edge ML4RoadSafety would "
                             "score; its ROC-AUC is undefined (scikit-learn raises there)")
        scored = positive | negative
        label, score = positive[scored], pred[scored]
        predicted = score > THRESHOLD
        values = (roc_auc(label, score), average_precision(label, score), f1(label, predicted),
                  recall(label, predicted), precision(label, predicted))
        for name, value in zip(OCCURRENCE_METRICS, values):
            totals[name] += n_pos * value
        weight += n_pos
    result: dict[str, float] = {name: totals[name] / weight if weight else math.nan for name in OCCURRENCE_METRICS}
    result["months"] = len(months)
    result["months_skipped"] = skipped
    return result


def score_count(months: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """``[(counts, predictions, edge_index)]`` per month -> MAE and MSE, weighted by scored edges."""
    total_abs = total_sq = 0.0
    count = skipped = 0
    for truth, pred, edge_index in months:
        positive = truth > 0
        if int(positive.sum()) < MIN_POSITIVES:
            skipped += 1
            continue
        scored = positive | scored_negatives(edge_index, positive)
        error = pred[scored] - truth[scored]
        total_abs += float(np.abs(error).sum())
        total_sq += float((error ** 2).sum())
        count += int(scored.sum())
    return {"mae": total_abs / count if count else math.nan, "mse": total_sq / count if count else math.nan,
            "count": count, "months": len(months), "months_skipped": skipped}


def score_volume(years: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """``[(AADT with NaN = no label, predictions)]`` per year (vehicles/day) -> MAE and MSE in thousands."""
    total_abs = total_sq = 0.0
    count = skipped = 0
    for truth, pred in years:
        labelled = np.isfinite(truth)
        if int(labelled.sum()) < MIN_POSITIVES:
            skipped += 1
            continue
        error = (pred[labelled] - truth[labelled]) / VOLUME_UNIT
        total_abs += float(np.abs(error).sum())
        total_sq += float((error ** 2).sum())
        count += int(labelled.sum())
    return {"mae": total_abs / count if count else math.nan, "mse": total_sq / count if count else math.nan,
            "count": count, "years": len(years), "years_skipped": skipped}
