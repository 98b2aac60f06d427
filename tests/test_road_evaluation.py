"""Road-safety ``Evaluator``: metrics against scikit-learn, hand-made aggregation and recall@k, every error path."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from gnnbench.road.evaluation import TASKS, Evaluator, average_precision, average_ranks, f1, recall_at_k, roc_auc

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
    for threshold in (0.25, 0.5, 0.9):
        assert f1(y > 0, scores >= threshold) == pytest.approx(f1_score(y, scores >= threshold), abs=1e-12)


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


# --- protocol="ml4roadsafety" (ML4RoadSafety d8b3d96: evaluators.py, trainers/*.py, data_loaders.py) ----------

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
