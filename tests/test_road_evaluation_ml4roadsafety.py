"""``Evaluator(task, protocol="ml4roadsafety")`` on hand-computed months and against scikit-learn.

The protocol is ML4RoadSafety's code at commit d8b3d96a8dc9f1323e9595addd705c3c2c96b42c (``evaluators.py``,
``trainers/*.py``, ``data_loaders.py``); nothing of it is imported or copied here."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from gnnbench.road.evaluation import TASKS, Evaluator

OCC = "accident_occurrence"


def occurrence(y_true, y_pred, **extra):
    return Evaluator(OCC).eval({"y_true": y_true, "y_pred": y_pred, **extra})


@pytest.mark.parametrize("task", TASKS)
def test_ml4roadsafety_protocol_attributes(task):
    evaluator = Evaluator(task, protocol="ml4roadsafety")
    assert repr(evaluator) == f"Evaluator({task!r}, protocol='ml4roadsafety')"
    text = evaluator.expected_input_format
    assert "protocol='ml4roadsafety'" in text and "fewer than 10" in text
    if task == OCC:
        assert evaluator.metrics == ("roc_auc", "average_precision", "f1", "recall", "precision")
        assert "y_pred > 0.5" in text and "edge_index" in text
    elif task == "accident_count":
        assert evaluator.metrics == ("mae", "mse") and "edge_index" in text
    else:
        assert evaluator.metrics == ("mae", "mse") and "thousands" in text and "edge_index" not in text
    with pytest.raises(ValueError, match="protocol must be one of 'gnnbench', 'ml4roadsafety'; got 'ML4RS'"):
        Evaluator(task, protocol="ML4RS")


ML4RS = "ml4roadsafety"

# One hand-made month on 24 nodes: 10 crash edges (0,1), (2,3), ..., (18,19), so nodes 0..19 are crash-touched.
# Six crash-free edges leave that node set: ML4RoadSafety's negatives. Four crash-free edges join two touched
# nodes (the reverse of a crash edge among them): ML4RoadSafety scores them neither way.
HAND_POSITIVE = [((2 * i, 2 * i + 1), score) for i, score in enumerate([.9] * 6 + [.6] * 2 + [.4] * 2)]
HAND_NEGATIVE = [((19, 20), .7), ((20, 21), .5), ((21, 22), .5), ((22, 23), .3), ((23, 20), .2), ((5, 21), .1)]
HAND_EXCLUDED = [((1, 0), .99), ((3, 2), .95), ((0, 2), .98), ((19, 18), 0.0)]
HAND_COUNTS = [1, 2, 1, 3, 1, 1, 2, 1, 1, 4]


def hand_month(order_seed=0):
    """(edge_index [2, 20], counts, scores) of the hand-made month, in a shuffled edge order."""
    edges = HAND_POSITIVE + HAND_NEGATIVE + HAND_EXCLUDED
    counts = np.array(HAND_COUNTS + [0] * (len(HAND_NEGATIVE) + len(HAND_EXCLUDED)))
    order = np.random.default_rng(order_seed).permutation(len(edges))
    edge_index = np.array([pair for pair, _ in edges]).T[:, order]
    scores = np.array([score for _, score in edges])[order]
    return edge_index, counts[order], scores


def upstream_occurrence(y_true, y_pred, edge_index):
    return Evaluator(OCC, protocol=ML4RS).eval({"y_true": y_true, "y_pred": y_pred, "edge_index": edge_index})


def test_ml4roadsafety_occurrence_by_hand():
    edge_index, counts, scores = hand_month()
    result = upstream_occurrence(counts, scores, edge_index)
    # positives vs the six negatives: 6 x 0.9 beat all 6, 2 x 0.6 beat 5, 2 x 0.4 beat 3 -> 52 / 60
    # predicted (> 0.5, strict: the two 0.5 negatives are not): TP 8 (0.9 x 6, 0.6 x 2), FP 1 (0.7), FN 2
    # AP: recall 0.6 at precision 1, +0.2 at 8/9, +0.2 at 10/13
    expected = {"roc_auc": 52 / 60, "average_precision": 0.6 + 0.2 * 8 / 9 + 0.2 * 10 / 13,
                "f1": 16 / 19, "recall": 8 / 10, "precision": 8 / 9, "months": 1, "months_skipped": 0}
    assert result == pytest.approx(expected)
    # the same numbers from scikit-learn on the 16 edges ML4RoadSafety scores
    y = np.array([1] * 10 + [0] * 6)
    s = np.array([score for _, score in HAND_POSITIVE + HAND_NEGATIVE])
    assert roc_auc_score(y, s) == pytest.approx(expected["roc_auc"])
    assert average_precision_score(y, s) == pytest.approx(expected["average_precision"])
    assert f1_score(y, s > 0.5) == pytest.approx(expected["f1"])
    assert recall_score(y, s > 0.5) == pytest.approx(expected["recall"])
    assert precision_score(y, s > 0.5) == pytest.approx(expected["precision"])
    # the gnnbench protocol on the same arrays scores all 20 edges, >= 0.5: different numbers
    assert occurrence(counts, scores)["roc_auc"] != pytest.approx(expected["roc_auc"])


def test_ml4roadsafety_excluded_edges_do_not_count():
    edge_index, counts, scores = hand_month()
    base = upstream_occurrence(counts, scores, edge_index)
    excluded = np.isin(np.arange(counts.size), np.flatnonzero(
        [tuple(pair) in {pair for pair, _ in HAND_EXCLUDED} for pair in edge_index.T]))
    assert excluded.sum() == len(HAND_EXCLUDED)
    for value in (0.0, 1.0):
        changed = scores.copy()
        changed[excluded] = value
        assert upstream_occurrence(counts, changed, edge_index) == pytest.approx(base)
    negative = np.isin(np.arange(counts.size), np.flatnonzero(
        [tuple(pair) == (5, 21) for pair in edge_index.T]))
    raised = scores.copy()
    raised[negative] = 0.95  # a scored negative now beats 8 positives: auc (6 x 5 + 2 x 4 + 2 x 2) / 60
    assert upstream_occurrence(counts, raised, edge_index)["roc_auc"] == pytest.approx(42 / 60)


def test_ml4roadsafety_months_below_ten_positives_are_skipped():
    edge_index, counts, scores = hand_month()
    nine = counts.copy()
    nine[np.flatnonzero(nine)[0]] = 0  # nine crash edges: ML4RoadSafety skips the month
    result = upstream_occurrence([counts, nine, counts], [scores, scores, 1 - scores], [edge_index] * 3)
    assert result["months"] == 3 and result["months_skipped"] == 1
    flipped = upstream_occurrence(counts, 1 - scores, edge_index)
    single = upstream_occurrence(counts, scores, edge_index)
    for name in ("roc_auc", "average_precision", "f1", "recall", "precision"):
        assert result[name] == pytest.approx((single[name] + flipped[name]) / 2)  # 10 positives each
    nothing = upstream_occurrence([nine], [scores], edge_index)
    assert nothing["months_skipped"] == 1 and math.isnan(nothing["roc_auc"])


def _reference_negatives(edge_index, positive):
    """ML4RoadSafety's negative rule, written out with Python sets."""
    touched = {int(node) for u, v in edge_index.T[positive] for node in (u, v)}
    return np.array([not p and not (int(u) in touched and int(v) in touched)
                     for (u, v), p in zip(edge_index.T, positive)], dtype=bool)


@pytest.mark.parametrize("seed", range(6))
def test_ml4roadsafety_occurrence_matches_sklearn_weighted(seed):
    rng = np.random.default_rng(seed)
    months, expected, weights = [], [], []
    for rate in (0.01, 0.1, 0.04, 0.15, 0.1):  # the first month has about 3 crash edges: skipped
        num_nodes, num_edges = int(rng.integers(40, 120)), int(rng.integers(200, 400))
        keys = rng.choice(num_nodes * num_nodes, num_edges, replace=False)
        edge_index = np.stack([keys // num_nodes, keys % num_nodes])
        counts = rng.poisson(rate, num_edges)
        scores = np.round(rng.random(num_edges), 1)  # coarse: ties, and scores exactly 0.5
        months.append((counts, scores, edge_index))
        positive = counts > 0
        if positive.sum() < 10:
            continue
        scored = positive | _reference_negatives(edge_index, positive)
        y, s = positive[scored], scores[scored]
        expected.append([roc_auc_score(y, s), average_precision_score(y, s), f1_score(y, s > 0.5),
                         recall_score(y, s > 0.5), precision_score(y, s > 0.5, zero_division=0)])
        weights.append(positive.sum())
    result = upstream_occurrence(*(list(part) for part in zip(*months)))
    assert len(weights) >= 2 and result["months_skipped"] == 5 - len(weights) >= 1
    values = np.dot(weights, expected) / np.sum(weights)
    assert [result[name] for name in ("roc_auc", "average_precision", "f1", "recall", "precision")] == \
        pytest.approx(values.tolist())


def test_ml4roadsafety_count_by_hand():
    edge_index, counts, _ = hand_month()
    predictions = np.zeros(counts.size)
    by_pair = {pair: value for pair, value in zip(
        [pair for pair, _ in HAND_POSITIVE + HAND_NEGATIVE + HAND_EXCLUDED],
        [1.0] * 10 + [0.5, 0, 0, 0, 0, 1.0] + [100.0] * 4)}
    for index, pair in enumerate(edge_index.T):
        predictions[index] = by_pair[tuple(int(node) for node in pair)]
    # positives: |1 - count| = 0,1,0,2,0,0,1,0,0,3 (sum 7, squares 15); negatives 0.5 and 1 (1.5, 1.25)
    evaluator = Evaluator("accident_count", protocol=ML4RS)
    result = evaluator.eval({"y_true": counts, "y_pred": predictions, "edge_index": edge_index})
    assert result == pytest.approx({"mae": 8.5 / 16, "mse": 16.25 / 16, "count": 16, "months": 1,
                                    "months_skipped": 0})
    nine = counts.copy()
    nine[np.flatnonzero(nine)[0]] = 0
    twice = evaluator.eval({"y_true": [counts, nine, counts], "y_pred": [predictions, predictions, predictions + 1],
                            "edge_index": [edge_index] * 3})
    # third month, every prediction + 1: positives |2 - count| = 1,0,1,1,1,1,0,1,1,2 (sum 9, squares 11),
    # negatives 1.5, 1, 1, 1, 1, 2 (sum 7.5, squares 10.25); the middle month (nine crash edges) is skipped
    assert twice == pytest.approx({"mae": (8.5 + 16.5) / 32, "mse": (16.25 + 21.25) / 32, "count": 32, "months": 3,
                                   "months_skipped": 1})


def test_ml4roadsafety_volume_by_hand():
    truth = np.array([1000.0 * k for k in range(1, 11)] + [np.nan, np.nan])
    pred = truth + np.array([1000, 0, 0, 0, 0, 0, 0, 0, 0, -2000, 0, 0])
    pred[10:] = [5e6, -5e6]  # no label: not scored
    few = np.array([1000.0] * 9 + [np.nan] * 3)  # 9 edges with volume: the year is skipped
    many = np.arange(12) * 100.0
    evaluator = Evaluator("traffic_volume", protocol=ML4RS)
    result = evaluator.eval({"y_true": [truth, few, many], "y_pred": [pred, np.zeros(12), many + 500]})
    # in thousands of vehicles/day: year 0 errors 1 and -2 (10 edges), year 2 errors 0.5 (12 edges)
    assert result == pytest.approx({"mae": (3 + 6) / 22, "mse": (5 + 3) / 22, "count": 22, "years": 3,
                                    "years_skipped": 1})
    assert evaluator.eval({"y_true": truth, "y_pred": pred}) == pytest.approx(
        {"mae": 0.3, "mse": 0.5, "count": 10, "years": 1, "years_skipped": 0})


def test_ml4roadsafety_input_errors():
    edge_index, counts, scores = hand_month()
    evaluator = Evaluator(OCC, protocol=ML4RS)
    with pytest.raises(ValueError, match="missing key 'edge_index'"):
        evaluator.eval({"y_true": counts, "y_pred": scores})
    with pytest.raises(ValueError, match="unknown key.*'threshold'"):
        evaluator.eval({"y_true": counts, "y_pred": scores, "edge_index": edge_index, "threshold": 0.3})
    with pytest.raises(ValueError, match=r"'edge_index' must have shape \[2, E\]"):
        evaluator.eval({"y_true": counts, "y_pred": scores, "edge_index": edge_index.T})
    with pytest.raises(ValueError, match="'edge_index' has 19 edges but 'y_true' has 20"):
        evaluator.eval({"y_true": counts, "y_pred": scores, "edge_index": edge_index[:, 1:]})
    with pytest.raises(ValueError, match="non-negative integer node indices"):
        evaluator.eval({"y_true": counts, "y_pred": scores, "edge_index": edge_index + 0.5})
    with pytest.raises(ValueError, match="list of 2 arrays but 'y_true' has 3"):
        evaluator.eval({"y_true": [counts] * 3, "y_pred": [scores] * 3, "edge_index": [edge_index] * 2})
    only_positive = np.array(HAND_POSITIVE_EDGES).T
    with pytest.raises(ValueError, match="month 0 has 10 positive edges and no negative edge"):
        evaluator.eval({"y_true": np.ones(10), "y_pred": np.ones(10), "edge_index": only_positive})
    with pytest.raises(ValueError, match="0/1 labels or non-negative whole accident counts"):
        evaluator.eval({"y_true": counts - 1, "y_pred": scores, "edge_index": edge_index})
    with pytest.raises(ValueError, match="'y_true' in year 1 holds infinite values"):
        Evaluator("traffic_volume", protocol=ML4RS).eval({"y_true": [np.ones(3), np.array([1, np.inf, 1])],
                                                          "y_pred": [np.ones(3), np.ones(3)]})


HAND_POSITIVE_EDGES = [pair for pair, _ in HAND_POSITIVE]
