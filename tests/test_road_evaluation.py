"""Road-safety ``Evaluator``: metrics against scikit-learn, hand-made aggregation and recall@k, every error path."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from gnnbench.road.evaluation import TASKS, Evaluator, average_precision, average_ranks, f1, recall_at_k, roc_auc
from gnnbench.road.metrics import precision, recall

OCC = "accident_occurrence"


def occurrence(y_true, y_pred, **extra):
    return Evaluator(OCC).eval({"y_true": y_true, "y_pred": y_pred, **extra})


def random_month(rng, n, levels=None):
    """Labels with both classes and scores, coarse (many ties) when ``levels`` is given."""
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    scores = rng.integers(0, levels, n) / (levels - 1) if levels else rng.random(n)
    return y, scores


# --- construction and formats -----------------------------------------------------------------

def test_unknown_task_lists_choices():
    with pytest.raises(ValueError, match="unknown task 'accident_severity'") as info:
        Evaluator("accident_severity")
    for task in TASKS:
        assert task in str(info.value)


@pytest.mark.parametrize("task", TASKS)
def test_attributes_and_formats(task):
    evaluator = Evaluator(task)
    assert evaluator.task == task and evaluator.protocol == "gnnbench"
    assert repr(evaluator) == f"Evaluator({task!r})"
    text = evaluator.expected_input_format
    assert task in text and "y_true" in text and "y_pred" in text
    if task == OCC:
        assert evaluator.metrics == ("roc_auc", "average_precision", "f1", "recall@k")
        for word in ("[M, E]", "'k'", "threshold", "ties", "weighted", "skipped", "list"):
            assert word in text
        assert "months_skipped" in evaluator.expected_output_format
    else:
        assert evaluator.metrics == ("mae", "rmse")
        assert "NaN" in text
        assert "'rmse'" in evaluator.expected_output_format and "count" in evaluator.expected_output_format


def test_core_module_does_not_import_sklearn():
    code = "import sys, gnnbench.road.evaluation; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- per-month metrics against scikit-learn -----------------------------------------------------

@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("levels", [None, 2, 5])
def test_metrics_match_sklearn(seed, levels):
    rng = np.random.default_rng(seed)
    y, scores = random_month(rng, int(rng.integers(2, 300)), levels)
    assert roc_auc(y > 0, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert average_precision(y > 0, scores) == pytest.approx(average_precision_score(y, scores), abs=1e-12)
    for threshold in (0.25, 0.5, 0.9, 1.5):
        predicted = scores >= threshold
        assert f1(y > 0, predicted) == pytest.approx(f1_score(y, predicted, zero_division=0), abs=1e-12)
        assert precision(y > 0, predicted) == pytest.approx(precision_score(y, predicted, zero_division=0), abs=1e-12)
        assert recall(y > 0, predicted) == pytest.approx(recall_score(y, predicted), abs=1e-12)


def test_metrics_all_scores_tied():
    y = np.array([0, 1, 1, 0, 1])
    scores = np.full(5, 0.3)
    assert roc_auc(y > 0, scores) == 0.5 == roc_auc_score(y, scores)
    assert average_precision(y > 0, scores) == pytest.approx(0.6) and average_precision_score(y, scores) == 0.6
    assert f1(y > 0, scores >= 0.5) == 0.0 == f1_score(y, scores >= 0.5)


def test_average_ranks_with_ties():
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])), [4.0, 1.0, 4.0, 2.0, 4.0])


def test_metrics_undefined_without_both_classes():
    assert math.isnan(roc_auc(np.array([True, True]), np.array([0.1, 0.2])))
    assert math.isnan(roc_auc(np.array([False, False]), np.array([0.1, 0.2])))
    assert math.isnan(average_precision(np.array([False, False]), np.array([0.1, 0.2])))
    assert math.isnan(recall_at_k(np.array([False, False]), np.array([0.1, 0.2]), 1))
    assert f1(np.array([False, False]), np.array([False, False])) == 0.0


def test_single_month_evaluator_matches_sklearn():
    rng = np.random.default_rng(7)
    y, scores = random_month(rng, 500, levels=11)
    result = occurrence(y, scores, threshold=0.4)
    assert set(result) == {"roc_auc", "average_precision", "f1", "recall@100", "months", "months_skipped"}
    assert result["roc_auc"] == pytest.approx(roc_auc_score(y, scores))
    assert result["average_precision"] == pytest.approx(average_precision_score(y, scores))
    assert result["f1"] == pytest.approx(f1_score(y, scores >= 0.4))
    assert result["months"] == 1 and result["months_skipped"] == 0


def test_f1_threshold_default_and_inclusive():
    y = np.array([1, 1, 0, 0])
    scores = np.array([0.5, 0.4, 0.6, 0.1])  # >= 0.5: edges 0 and 2 -> tp 1, fp 1, fn 1
    assert occurrence(y, scores)["f1"] == pytest.approx(0.5)
    logits = np.array([2.0, 0.3, -1.0, -3.0])
    assert occurrence(y, logits, threshold=0.0)["f1"] == 1.0
    assert occurrence(y, logits)["f1"] == pytest.approx(2 / 3)  # only edge 0 is >= 0.5


# --- recall@k -------------------------------------------------------------------------------------

def test_recall_at_k_by_hand():
    y = np.array([1, 0, 1, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.3])  # ranking: 0, 1, 3, 5, 4, 2
    assert [occurrence(y, scores, k=k)[f"recall@{k}"] for k in (1, 2, 3, 4, 5, 6, 1000)] == \
        pytest.approx([1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1.0, 1.0])
    assert "recall@100" in occurrence(y, scores) and occurrence(y, scores)["recall@100"] == 1.0


def test_recall_at_k_ties_go_to_lower_index():
    scores = np.array([0.5, 0.5, 0.5, 0.5])
    assert occurrence(np.array([1, 0, 0, 1]), scores, k=1)["recall@1"] == 0.5   # edge 0 wins the tie
    assert occurrence(np.array([0, 1, 1, 0]), scores, k=1)["recall@1"] == 0.0
    assert occurrence(np.array([0, 1, 1, 0]), scores, k=2)["recall@2"] == 0.5   # edges 0 and 1
    assert occurrence(np.array([0, 0, 1, 1]), np.array([0.2, 0.5, 0.5, 0.5]), k=2)["recall@2"] == 0.5  # edges 1, 2


def test_k_accepts_numpy_integer():
    assert "recall@3" in occurrence(np.array([1, 0, 1]), np.array([0.2, 0.1, 0.3]), k=np.int64(3))


# --- aggregation over months ----------------------------------------------------------------------

def test_three_month_weighted_aggregation_by_hand():
    y_true = np.array([
        [1, 0, 0, 0],   # 1 positive
        [1, 1, 0, 0],   # 2 positives
        [1, 1, 1, 0],   # 3 positives
    ])
    y_pred = np.array([
        [0.9, 0.1, 0.2, 0.3],  # auc 1, ap 1, f1: tp 1 fp 0 -> 1, recall@2 = 1
        [0.2, 0.8, 0.6, 0.1],  # auc 3/4, ap (1 + 2/3) / 2 = 5/6, f1: tp 1 fp 1 fn 1 -> 1/2, recall@2 = 1/2
        [0.1, 0.7, 0.6, 0.4],  # auc 2/3, ap (1 + 1 + 3/4) / 3 = 11/12, f1: tp 2 fp 0 fn 1 -> 4/5, recall@2 = 2/3
    ])
    result = occurrence(y_true, y_pred, k=2)
    expected = {
        "roc_auc": (1 * 1 + 2 * 3 / 4 + 3 * 2 / 3) / 6,
        "average_precision": (1 * 1 + 2 * 5 / 6 + 3 * 11 / 12) / 6,
        "f1": (1 * 1 + 2 * 1 / 2 + 3 * 4 / 5) / 6,
        "recall@2": (1 * 1 + 2 * 1 / 2 + 3 * 2 / 3) / 6,
    }
    assert result == pytest.approx({**expected, "months": 3, "months_skipped": 0})
    for month in range(3):
        assert roc_auc_score(y_true[month], y_pred[month]) == pytest.approx(
            [1, 3 / 4, 2 / 3][month])
        assert average_precision_score(y_true[month], y_pred[month]) == pytest.approx([1, 5 / 6, 11 / 12][month])


def test_many_months_match_weighted_sklearn():
    rng = np.random.default_rng(3)
    months = [random_month(rng, n, levels=6) for n in (50, 80, 120, 33)]
    result = occurrence([y for y, _ in months], [s for _, s in months], k=10)
    weights = np.array([y.sum() for y, _ in months])
    for name, metric in (("roc_auc", roc_auc_score), ("average_precision", average_precision_score),
                         ("f1", lambda y, s: f1_score(y, s >= 0.5))):
        per_month = np.array([metric(y, s) for y, s in months])
        assert result[name] == pytest.approx(np.sum(weights * per_month) / weights.sum())


def test_months_without_both_classes_are_skipped():
    y_true = [np.array([1, 0, 0]), np.array([0, 0, 0]), np.array([1, 1]), np.array([]), np.array([0, 1])]
    y_pred = [np.array([0.9, 0.1, 0.2]), np.array([0.5, 0.4, 0.3]), np.array([0.1, 0.2]), np.array([]),
              np.array([0.8, 0.3])]
    result = occurrence(y_true, y_pred)
    assert result["months"] == 5 and result["months_skipped"] == 3
    assert result["roc_auc"] == pytest.approx((1 * 1.0 + 1 * 0.0) / 2)
    assert result["average_precision"] == pytest.approx((1 * 1.0 + 1 * 0.5) / 2)


def test_all_months_skipped_gives_nan():
    result = occurrence(np.zeros((2, 3)), np.ones((2, 3)))
    assert result["months"] == 2 and result["months_skipped"] == 2
    assert all(math.isnan(result[name]) for name in ("roc_auc", "average_precision", "f1", "recall@100"))


def test_counts_and_bools_as_labels():
    counts = np.array([[0, 3, 0, 1], [2, 0, 0, 0]])
    scores = np.array([[0.1, 0.9, 0.3, 0.6], [0.4, 0.2, 0.5, 0.1]])
    # month 0: positives 1, 3 above both negatives (auc 1, ap 1); f1 (>= 0.5): edges 1, 3 -> 1.
    # month 1: positive 0 scores 0.4, below 0.5 only -> auc 2/3, ap 1/2; f1: edge 2 predicted, edge 0 missed -> 0.
    expected = {"roc_auc": (2 * 1 + 1 * 2 / 3) / 3, "average_precision": (2 * 1 + 1 * 0.5) / 3,
                "f1": (2 * 1 + 1 * 0) / 3, "recall@100": 1.0, "months": 2, "months_skipped": 0}
    for labels in (counts, counts > 0, (counts > 0).astype(int), counts.astype(float)):
        assert occurrence(labels, scores) == pytest.approx(expected)


# --- input types ------------------------------------------------------------------------------------

def test_torch_input_matches_numpy():
    rng = np.random.default_rng(11)
    y = rng.integers(0, 3, (4, 60))
    scores = rng.random((4, 60)).astype(np.float32)
    weights = (y > 0).sum(axis=1)
    expected_auc = np.dot(weights, [roc_auc_score(y[m] > 0, scores[m]) for m in range(4)]) / weights.sum()
    expected = occurrence(y, scores, k=5)
    assert expected["roc_auc"] == pytest.approx(expected_auc)
    assert occurrence(torch.from_numpy(y), torch.from_numpy(scores), k=5) == pytest.approx(expected)
    with_grad = torch.from_numpy(scores).requires_grad_()
    assert occurrence(torch.from_numpy(y > 0), with_grad, k=5) == pytest.approx(expected)
    half = occurrence(torch.from_numpy(y), torch.from_numpy(scores).to(torch.bfloat16), k=5)
    assert half["roc_auc"] == pytest.approx(expected_auc, abs=0.05)


def test_list_of_months_with_different_lengths():
    rng = np.random.default_rng(5)
    months = [random_month(rng, n, levels=4) for n in (7, 19, 12)]
    as_lists = occurrence([y.tolist() for y, _ in months], [s.tolist() for _, s in months], k=3)
    as_arrays = occurrence([y for y, _ in months], [s for _, s in months], k=3)
    as_tensors = occurrence([torch.from_numpy(y) for y, _ in months], [torch.from_numpy(s) for _, s in months], k=3)
    assert as_lists == as_arrays == pytest.approx(as_tensors)
    assert as_arrays["months"] == 3
    weights = np.array([y.sum() for y, _ in months])
    per_month = [recall_at_k(y > 0, s, 3) for y, s in months]
    assert as_arrays["recall@3"] == pytest.approx(np.dot(weights, per_month) / weights.sum())


def test_array_and_list_forms_agree():
    y = np.array([[1, 0, 1], [0, 1, 0]])
    s = np.array([[0.3, 0.2, 0.1], [0.4, 0.6, 0.5]])
    # month 0: positives 0.3, 0.1 vs negative 0.2 -> auc 1/2, ap (1 + 2/3) / 2; month 1: auc 1, ap 1
    expected = {"roc_auc": (2 * 0.5 + 1) / 3, "average_precision": (2 * 5 / 6 + 1) / 3}
    for y_true, y_pred in ((y, s), (list(y), list(s)), (y.tolist(), s.tolist())):
        result = occurrence(y_true, y_pred)
        assert {name: result[name] for name in expected} == pytest.approx(expected)


# --- regression tasks -------------------------------------------------------------------------------

@pytest.mark.parametrize("task", ["accident_count", "traffic_volume"])
def test_regression_metrics(task):
    y_true = np.array([[1.0, 0.0, 2.0], [4.0, 0.0, 1.0]])
    y_pred = np.array([[2.0, 0.0, 0.0], [4.0, 3.0, 1.0]])  # errors 1, 0, -2, 0, 3, 0
    result = Evaluator(task).eval({"y_true": y_true, "y_pred": y_pred})
    assert result == pytest.approx({"mae": 6 / 6, "rmse": math.sqrt(14 / 6), "count": 6})
    assert Evaluator(task).eval({"y_true": torch.from_numpy(y_true), "y_pred": torch.from_numpy(y_pred)}) == result
    assert Evaluator(task).eval({"y_true": y_true.reshape(-1), "y_pred": y_pred.reshape(-1).tolist()}) == result
    ragged = Evaluator(task).eval({"y_true": [y_true[0], y_true[1, :2], y_true[1, 2:]],
                                   "y_pred": [y_pred[0], y_pred[1, :2], y_pred[1, 2:]]})
    assert ragged == pytest.approx(result)


def test_regression_nan_labels_are_excluded():
    y_true = np.array([10.0, np.nan, 30.0, np.nan])
    y_pred = np.array([12.0, 99.0, 27.0, -5.0])
    result = Evaluator("traffic_volume").eval({"y_true": y_true, "y_pred": y_pred})
    assert result == pytest.approx({"mae": 2.5, "rmse": math.sqrt((4 + 9) / 2), "count": 2})


def test_regression_any_matching_shape():
    y = np.arange(24, dtype=float).reshape(2, 3, 4)
    assert Evaluator("accident_count").eval({"y_true": y, "y_pred": y + 1}) == {"mae": 1.0, "rmse": 1.0, "count": 24}


# --- errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("missing", ["y_true", "y_pred"])
def test_missing_key(task, missing):
    data = {"y_true": np.array([0, 1]), "y_pred": np.array([0.1, 0.2])}
    del data[missing]
    with pytest.raises(ValueError, match=f"missing key '{missing}'"):
        Evaluator(task).eval(data)


def test_unknown_key_and_non_mapping():
    with pytest.raises(ValueError, match="unknown key.*'treshold'"):
        occurrence(np.array([0, 1]), np.array([0.1, 0.2]), treshold=0.3)
    with pytest.raises(ValueError, match="unknown key.*'k'"):
        Evaluator("accident_count").eval({"y_true": [1.0], "y_pred": [1.0], "k": 3})
    with pytest.raises(ValueError, match="must be a dict"):
        Evaluator(OCC).eval([np.array([0, 1]), np.array([0.1, 0.2])])


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"month 0: 'y_true' has shape \(3,\) but 'y_pred' has shape \(4,\)"):
        occurrence(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"'y_true' \(shape \(2, 3\)\) has 2 month\(s\) but 'y_pred' \(shape \(3, 3\)"):
        occurrence(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"month 2: 'y_true' has shape \(5,\) but 'y_pred' has shape \(6,\)"):
        occurrence([np.zeros(3), np.zeros(4), np.zeros(5)], [np.zeros(3), np.zeros(4), np.zeros(6)])
    with pytest.raises(ValueError, match=r"shape mismatch: 'y_true' has shape \(3,\) but 'y_pred' has shape \(2,\)"):
        occurrence(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match=r"'y_true' has shape \(2, 3\) but 'y_pred' has shape \(3, 2\)"):
        Evaluator("accident_count").eval({"y_true": np.zeros((2, 3)), "y_pred": np.zeros((3, 2))})


def test_occurrence_rejects_bad_dimensions():
    with pytest.raises(ValueError, match=r"'y_true' must have shape \[M, E\].*\(2, 3, 4\)"):
        occurrence(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="'y_pred': month 1 must be a 1-D array"):
        occurrence([np.zeros(3), np.zeros(2)], [np.zeros(3), np.zeros((1, 2))])
    with pytest.raises(ValueError, match="mixes scalars and arrays"):
        occurrence([np.zeros(3), 0.0], [np.zeros(3), 0.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_predictions(bad):
    pred = np.array([[0.1, 0.2], [0.3, bad]])
    with pytest.raises(ValueError, match=r"'y_pred' in month 1 holds 1 non-finite value\(s\).*index 1"):
        occurrence(np.array([[0, 1], [1, 0]]), pred)
    with pytest.raises(ValueError, match=r"'y_pred' in array 1 holds 1 non-finite"):
        Evaluator("accident_count").eval({"y_true": [np.zeros(2), np.zeros(2)], "y_pred": list(pred)})
    with pytest.raises(ValueError, match="'y_pred' holds 1 non-finite"):
        Evaluator("traffic_volume").eval({"y_true": np.zeros((2, 2)), "y_pred": pred})
    with pytest.raises(ValueError, match="non-finite"):
        occurrence(torch.tensor([0, 1]), torch.tensor([0.1, bad]))


@pytest.mark.parametrize("bad", [-1, 0.5, np.nan, np.inf])
def test_occurrence_labels_must_be_binary_like(bad):
    with pytest.raises(ValueError, match="'y_true' must hold 0/1 labels or non-negative whole accident counts"):
        occurrence(np.array([0.0, 1.0, bad]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="in month 1 it holds"):
        occurrence(np.array([[0.0, 1.0, 0.0], [0.0, 1.0, bad]]), np.zeros((2, 3)))


def test_regression_label_errors():
    with pytest.raises(ValueError, match="'y_true' holds infinite values"):
        Evaluator("traffic_volume").eval({"y_true": np.array([1.0, np.inf]), "y_pred": np.array([1.0, 2.0])})
    with pytest.raises(ValueError, match="no labelled entries"):
        Evaluator("traffic_volume").eval({"y_true": np.array([np.nan, np.nan]), "y_pred": np.array([1.0, 2.0])})


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("empty", [[], np.zeros(0), np.zeros((0, 5)), np.zeros((3, 0)), torch.zeros(0)])
def test_empty_input(task, empty):
    with pytest.raises(ValueError, match="empty"):
        Evaluator(task).eval({"y_true": empty, "y_pred": empty})


@pytest.mark.parametrize("task", TASKS)
def test_empty_list_of_months(task):
    with pytest.raises(ValueError, match="are empty: no entries to score"):
        Evaluator(task).eval({"y_true": [np.zeros(0), np.zeros(0)], "y_pred": [np.zeros(0), np.zeros(0)]})


def test_non_numeric_input():
    with pytest.raises(ValueError, match="'y_pred' must be numeric"):
        occurrence(np.array([0, 1]), ["high", "low"])


@pytest.mark.parametrize("k", [0, -3, 1.5, True, "10", None])
def test_bad_k(k):
    with pytest.raises(ValueError, match="'k' must be an integer >= 1"):
        occurrence(np.array([0, 1]), np.array([0.1, 0.2]), k=k)


@pytest.mark.parametrize("threshold", [np.nan, np.inf, "0.5", None, False])
def test_bad_threshold(threshold):
    with pytest.raises(ValueError, match="'threshold' must be a (finite )?number"):
        occurrence(np.array([0, 1]), np.array([0.1, 0.2]), threshold=threshold)

