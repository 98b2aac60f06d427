"""CLRS-30 scoring: hand-made cases for every scorer, ``Evaluator.eval`` and ``Evaluator.eval_hints``."""

import numpy as np
import pytest
import torch

from gnnbench.algo import ALGORITHMS, SPECS, Evaluator, sample
from gnnbench.algo.evaluation import argmax_score, mask_score, pointer_score, scalar_score
from gnnbench.algo.specs import Stage

# --- scorers --------------------------------------------------------------------------------

def test_scalar_mse():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    truth = np.array([[1.0, 0.0], [0.0, 4.0]])
    assert scalar_score(pred, truth) == pytest.approx((0 + 4 + 9 + 0) / 4)
    assert scalar_score(truth, truth) == 0.0


def test_mask_f1_basic():
    truth = np.array([1, 1, 0, 0, 1])
    pred = np.array([0.9, 0.2, 0.7, 0.1, 0.6])  # tp = 2, fp = 1, fn = 1
    precision, recall = 2 / 3, 2 / 3
    assert mask_score(pred, truth) == pytest.approx(2 * precision * recall / (precision + recall))


def test_mask_f1_unbalanced_precision_recall():
    truth = np.array([1, 1, 1, 1, 0, 0])
    pred = np.array([1, 0, 0, 0, 0, 0])  # tp = 1, fp = 0, fn = 3: precision 1, recall 1/4
    assert mask_score(pred, truth) == pytest.approx(2 * 1 * 0.25 / 1.25)


def test_mask_f1_ignores_masked_entries():
    truth = np.array([1, 0, -1, -1, 1])
    pred = np.array([1, 0, 1, 0, 1])  # the -1 entries would be an fp (index 2) if they counted
    assert mask_score(pred, truth) == 1.0
    truth2 = np.array([[1, -1], [-1, 0]])
    pred2 = np.array([[0.0, 1.0], [0.0, 1.0]])  # only (0, 0) fn and (1, 1) fp count
    assert mask_score(pred2, truth2) == 0.0


def test_mask_f1_empty_denominators():
    # nothing predicted, nothing true: precision and recall are both 1
    assert mask_score(np.zeros(4), np.zeros(4)) == 1.0
    # false positives only: precision 0, recall 1 (empty) -> F1 0
    assert mask_score(np.array([1.0, 0, 0, 0]), np.zeros(4)) == 0.0
    # misses only: precision 1 (empty), recall 0 -> F1 0
    assert mask_score(np.zeros(4), np.array([0, 1, 0, 0])) == 0.0
    # everything masked: both denominators empty
    assert mask_score(np.ones(3), -np.ones(3)) == 1.0


def test_mask_threshold_is_strictly_above_half():
    truth = np.array([1, 0])
    assert mask_score(np.array([0.51, 0.49]), truth) == 1.0
    assert mask_score(np.array([0.49, 0.0]), truth) == 0.0


def test_mask_prediction_of_exactly_half_counts_neither_way():
    # CLRS-30's _mask_fn counts tp/fp on pred > 0.5 and fn on pred < 0.5, so 0.5 is neither a hit nor a miss
    # (https://github.com/google-deepmind/clrs/blob/master/clrs/_src/evaluation.py).
    assert mask_score(np.array([0.5, 0.9]), np.array([1, 1])) == 1.0  # tp 1, fn 0: F1 1 (not 2/3)
    assert mask_score(np.array([0.5, 0.9]), np.array([0, 1])) == 1.0  # tp 1, fp 0: F1 1 (not 2/3)
    assert mask_score(np.array([0.5]), np.array([1])) == 1.0  # tp = fp = fn = 0: both denominators empty


def test_argmax_accuracy_ignores_masked_rows():
    truth = np.array([[0, 1, 0],
                      [1, 0, 0],
                      [-1, -1, -1],
                      [0, 0, 1]])
    pred = np.array([[0.1, 0.8, 0.1],   # right
                     [0.2, 0.7, 0.1],   # wrong
                     [0.9, 0.0, 0.1],   # masked row, ignored
                     [0.0, 0.0, 5.0]])  # right
    assert argmax_score(pred, truth) == pytest.approx(2 / 3)


def test_argmax_accuracy_row_with_any_minus_one_is_masked():
    truth = np.array([[1, -1, 0], [0, 1, 0]])
    pred = np.array([[0, 1.0, 0], [0, 1.0, 0]])
    assert argmax_score(pred, truth) == 1.0


def test_argmax_accuracy_categorical_with_sample_and_node_axes():
    truth = np.zeros((2, 3, 3))
    truth[..., 0] = 1  # every node in class 0
    truth[1, 2] = -1  # masked node
    pred = np.zeros((2, 3, 3))
    pred[..., 0] = 1.0
    pred[0, 1] = [0, 0, 1.0]  # one wrong of 5 valid nodes
    pred[1, 2] = [0, 0, 1.0]  # masked: would be wrong
    assert argmax_score(pred, truth) == pytest.approx(4 / 5)


def test_pointer_exact_match():
    truth = np.array([[0, 0, 1, 2], [3, 3, 3, 3]])
    pred = np.array([[0, 1, 1, 2], [3, 3, 0, 3]])
    assert pointer_score(pred, truth) == pytest.approx(6 / 8)
    assert pointer_score(truth, truth) == 1.0


# --- Evaluator.eval -------------------------------------------------------------------------

def test_eval_bfs_pointer_indices():
    truth = np.array([[0, 0, 1, 2], [3, 3, 3, 3]])
    pred = np.array([[0, 1, 1, 2], [3, 3, 0, 3]])
    result = Evaluator("bfs").eval({"y_true": {"pi": truth}, "y_pred": {"pi": pred}})
    assert result == {"pi": pytest.approx(0.75), "score": pytest.approx(0.75)}


def test_eval_pointer_scores_take_argmax():
    truth = np.array([[0, 0, 1, 2], [3, 3, 3, 3]])
    scores = np.random.default_rng(0).random((2, 4, 4)) * 0.5
    scores[np.arange(2)[:, None], np.arange(4)[None], truth] = 1.0
    assert Evaluator("bfs").eval({"y_true": {"pi": truth}, "y_pred": {"pi": scores}})["pi"] == 1.0
    scores[0, 3] = [5.0, 0, 0, 0]  # node 3 of graph 0 now points at 0 instead of 2
    assert Evaluator("bfs").eval({"y_true": {"pi": truth}, "y_pred": {"pi": scores}})["pi"] == pytest.approx(7 / 8)


def test_eval_edge_pointer_scores_take_argmax():
    truth = np.array([[[0, 0], [1, 1]]])  # floyd_warshall Pi: [1, n, n]
    scores = np.zeros((1, 2, 2, 2))
    scores[0, 0, 0, 0] = scores[0, 0, 1, 0] = scores[0, 1, 0, 1] = 1.0
    scores[0, 1, 1, 0] = 1.0  # wrong
    assert Evaluator("floyd_warshall").eval({"y_true": {"Pi": truth}, "y_pred": {"Pi": scores}})["Pi"] == 0.75


def test_eval_mask_output_with_masked_entries():
    truth = np.array([[1, 0, -1, 0]])
    pred = np.array([[0.8, 0.3, 0.9, 0.2]])
    assert Evaluator("articulation_points").eval({"y_true": {"is_cut": truth},
                                                  "y_pred": {"is_cut": pred}})["is_cut"] == 1.0


def test_eval_score_is_mean_of_output_fields():
    # topological_sort has two outputs: topo (pointer) and topo_head (mask_one over nodes)
    topo = np.array([[1, 2, 2], [0, 0, 1]])
    topo_head = np.array([[1, 0, 0], [0, 0, 1]])
    pred_topo = np.array([[1, 2, 0], [0, 0, 1]])  # 5 / 6
    pred_head = np.array([[0.9, 0.1, 0.0], [0.5, 0.1, 0.2]])  # sample 0 right, sample 1 wrong: 1 / 2
    result = Evaluator("topological_sort").eval({"y_true": {"topo": topo, "topo_head": topo_head},
                                                 "y_pred": {"topo": pred_topo, "topo_head": pred_head}})
    assert result["topo"] == pytest.approx(5 / 6)
    assert result["topo_head"] == pytest.approx(1 / 2)
    assert result["score"] == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert set(result) == {"topo", "topo_head", "score"}


def test_eval_ignores_extra_prediction_fields():
    truth = {"pi": np.array([[0, 0, 1]])}
    pred = {"pi": np.array([[0, 0, 0]]), "extra": np.zeros(3)}  # node 2 wrong: 2 / 3
    result = Evaluator("bfs").eval({"y_true": truth, "y_pred": pred})
    assert result == {"pi": pytest.approx(2 / 3), "score": pytest.approx(2 / 3)}


def test_eval_accepts_torch_tensors():
    truth = np.array([[0, 0, 1, 2], [3, 3, 3, 3]])
    pred = np.array([[0, 1, 1, 2], [3, 3, 0, 3]])
    evaluator = Evaluator("bfs")
    result = evaluator.eval({"y_true": {"pi": torch.from_numpy(truth)}, "y_pred": {"pi": torch.from_numpy(pred)}})
    assert result["pi"] == pytest.approx(0.75)
    scores = torch.nn.functional.one_hot(torch.from_numpy(truth), 4).float().requires_grad_()
    assert evaluator.eval({"y_true": {"pi": truth}, "y_pred": {"pi": scores}})["score"] == 1.0
    assert isinstance(result["pi"], float) and isinstance(result["score"], float)


# --- every algorithm: one known error, score derived by hand ---------------------------------

def _one_wrong(type_: str, truth: np.ndarray, n: int) -> tuple[np.ndarray, float]:
    """A prediction equal to ``truth`` except for its first scored element, and the score that must give.

    The expected score is derived from counts, not from the scorers: a pointer field of ``m`` pointers
    with one wrong scores ``1 - 1/m``; one wrong row among ``r`` valid one-hot rows scores ``1 - 1/r``;
    a mask with ``P`` valid positives scores F1 = 2tp / (2tp + fp + fn), i.e. ``2(P-1) / (2(P-1) + 1)``
    when a positive is missed and ``2P / (2P + 1)`` when a negative is predicted positive; a scalar
    field of ``m`` entries with one entry off by 3 has MSE ``9/m``. Entries the scorer must ignore
    (truth -1) get deliberately wrong values, so counting them would change the score.
    """
    pred = truth.astype(np.float64).copy()
    if type_ == "pointer":
        pred.flat[0] = (truth.flat[0] + 1) % n
        return pred, 1 - 1 / truth.size
    if type_ == "scalar":
        pred.flat[0] += 3.0
        return pred, 9.0 / truth.size
    if type_ == "mask":
        valid = truth != -1
        pred[~valid] = 0.9  # a false positive for every masked entry, if they counted
        i = np.flatnonzero(valid)[0]
        positives = int(np.sum(truth[valid] == 1))
        pred.flat[i] = 0.2 if truth.flat[i] == 1 else 0.8
        if truth.flat[i] == 1:
            return pred, 2 * (positives - 1) / (2 * (positives - 1) + 1)
        return pred, 2 * positives / (2 * positives + 1)
    # mask_one / categorical: argmax over the last axis
    rows = pred.reshape(-1, truth.shape[-1])
    valid = np.all(truth.reshape(rows.shape) != -1, axis=1)
    rows[~valid] = np.arange(rows.shape[1])  # argmax at the last class, wrong for a masked row
    i = np.flatnonzero(valid)[0]
    rows[i] = np.roll(rows[i], 1)  # moves the argmax to another class
    return pred, 1 - 1 / int(valid.sum())


def test_one_wrong_helper_against_sklearn():
    """The hand-derived mask and argmax formulas of ``_one_wrong`` agree with scikit-learn."""
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(0)
    for _ in range(50):
        truth = rng.choice([-1, 0, 1], size=(3, 5), p=[0.2, 0.5, 0.3])
        truth[0, 0] = rng.integers(2)
        pred, expected = _one_wrong("mask", truth, 5)
        valid = truth != -1
        assert expected == pytest.approx(f1_score(truth[valid], pred[valid] > 0.5, zero_division=1.0))
        onehot = np.eye(4)[rng.integers(4, size=(6,))]
        onehot[rng.random(6) < 0.3] = -1
        onehot[0] = np.eye(4)[1]
        pred, expected = _one_wrong("categorical", onehot, 4)
        valid = np.all(onehot != -1, axis=1)
        assert expected == pytest.approx(accuracy_score(onehot[valid].argmax(1), pred[valid].argmax(1)))


def test_mask_score_matches_sklearn_f1_on_random_cases():
    """CLRS's mask F1 over non-masked entries, thresholded strictly above 0.5, is scikit-learn's binary F1."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(1)
    for _ in range(200):
        truth = rng.choice([-1, 0, 1], size=int(rng.integers(1, 30)), p=[0.2, 0.5, 0.3])
        pred = rng.random(truth.shape)
        pred[pred == 0.5] = 0.25  # CLRS counts a prediction of exactly 0.5 neither way
        valid = truth != -1
        expected = f1_score(truth[valid], pred[valid] > 0.5, zero_division=1.0) if valid.any() else 1.0
        assert mask_score(pred, truth) == pytest.approx(expected)


def test_argmax_and_pointer_scores_match_sklearn_accuracy():
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(2)
    for _ in range(100):
        labels = rng.integers(5, size=(4, 6))
        truth = np.eye(5)[labels]
        truth[rng.random((4, 6)) < 0.25] = -1
        scores = rng.random((4, 6, 5))
        valid = np.all(truth != -1, axis=-1)
        if valid.any():
            expected = accuracy_score(labels[valid], scores.argmax(-1)[valid])
            assert argmax_score(scores, truth) == pytest.approx(expected)
        pointers = rng.integers(6, size=(4, 6))
        assert pointer_score(pointers, labels) == pytest.approx(accuracy_score(labels.ravel(), pointers.ravel()))


def _outputs(name):
    traces = sample(name, 12, n=8, seed=3)
    return {k: np.asarray(v) for k, v in traces.outputs.items()}


@pytest.mark.parametrize("name", ALGORITHMS)
def test_outputs_one_wrong_element_per_field(name):
    """Perfect predictions score 1; one wrong element in a field lowers that field (only) by a known amount."""
    y_true = _outputs(name)
    evaluator = Evaluator(name)
    assert set(evaluator.outputs) == set(y_true)
    perfect = evaluator.eval({"y_true": y_true, "y_pred": y_true})
    assert perfect == {**{field: 1.0 for field in y_true}, "score": 1.0}
    corrupted, expected = {}, {}
    for field in y_true:
        _, _, type_ = SPECS[name][field]
        corrupted[field], expected[field] = _one_wrong(type_, y_true[field], 8)
        assert expected[field] < 1.0
        result = evaluator.eval({"y_true": y_true, "y_pred": {**y_true, field: corrupted[field]}})
        for other in y_true:
            assert result[other] == pytest.approx(expected[field] if other == field else 1.0), (field, other)
        assert result["score"] == pytest.approx((expected[field] + len(y_true) - 1) / len(y_true))
    result = evaluator.eval({"y_true": y_true, "y_pred": corrupted})
    assert result["score"] == pytest.approx(np.mean(list(expected.values())))


def _padded_hints(name):
    traces = sample(name, 6, n=6, seed=4)
    lengths = np.asarray(traces.lengths)
    T = int(lengths.max())
    y_true = {}
    for field in Evaluator(name).hints:
        rows = [np.asarray(traces[i].hints[field]) for i in range(len(traces))]
        padded = np.zeros((len(rows), T, *rows[0].shape[1:]), dtype=rows[0].dtype)
        for i, row in enumerate(rows):
            padded[i, :row.shape[0]] = row
        y_true[field] = padded
    return lengths, y_true


def _garbage(type_, x, n):
    """``x`` made wrong everywhere (for entries a scorer must not look at)."""
    if type_ == "pointer":
        return (x + 1) % n
    if type_ == "mask":
        return 1.0 - x
    if type_ == "scalar":
        return x + 5.0
    return np.roll(x, 1, axis=-1)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_hints_one_wrong_element_and_unscored_garbage(name):
    """Step 0 and steps past a sample's length are never scored; one wrong element at step 1 costs a known amount.

    Step t (t = 1 .. T-1) is scored on the w_t = #{i: lengths[i] > t} samples still running, and a field's
    score is sum_t w_t * score_t / sum_i (lengths[i] - 1).
    """
    lengths, y_true = _padded_hints(name)
    T = y_true[next(iter(y_true))].shape[1]
    weights = np.array([np.sum(lengths > t) for t in range(1, T)])
    assert weights.sum() == np.sum(lengths - 1) > 0
    running = lengths > 1
    evaluator = Evaluator(name)
    y_pred = {}
    expected = {}
    for field, truth in y_true.items():
        _, _, type_ = SPECS[name][field]
        pred = truth.astype(np.float64).copy()
        pred[:, 0] = _garbage(type_, truth[:, 0], 6)  # step 0 is the initial state, never scored
        for i, length in enumerate(lengths):
            pred[i, length:] = _garbage(type_, truth[i, length:], 6)  # padding past the end of sample i
        step1, expected[field] = _one_wrong(type_, truth[running, 1], 6)  # step 1 of the running samples
        assert expected[field] != (0.0 if type_ == "scalar" else 1.0), field
        pred[running, 1] = step1
        y_pred[field] = pred
    result = evaluator.eval_hints({"y_true": y_true, "y_pred": y_pred, "lengths": lengths})
    assert set(result) == {key for field in y_true for key in (field, f"{field}_along_time")}
    for field in y_true:
        _, _, type_ = SPECS[name][field]
        perfect = 0.0 if type_ == "scalar" else 1.0
        along_time = np.full(T - 1, perfect)
        along_time[0] = expected[field]
        along_time[weights == 0] = 0.0  # a step no sample reaches scores 0 with weight 0
        np.testing.assert_allclose(result[f"{field}_along_time"], along_time, err_msg=field)
        assert result[field] == pytest.approx(np.dot(weights, along_time) / weights.sum()), field
    for field, pred in y_pred.items():  # the same garbage without the wrong element scores perfectly
        pred[:, 1] = y_true[field][:, 1]
    result = evaluator.eval_hints({"y_true": y_true, "y_pred": y_pred, "lengths": lengths})
    for field in y_true:
        _, _, type_ = SPECS[name][field]
        assert result[field] == (0.0 if type_ == "scalar" else 1.0), field


def test_eval_missing_field_is_named():
    evaluator = Evaluator("topological_sort")
    truth = {"topo": np.zeros((1, 3), int), "topo_head": np.array([[1, 0, 0]])}
    with pytest.raises(ValueError, match="y_pred is missing field 'topo_head'"):
        evaluator.eval({"y_true": truth, "y_pred": {"topo": truth["topo"]}})
    with pytest.raises(ValueError, match="y_true is missing field 'topo'"):
        evaluator.eval({"y_true": {"topo_head": truth["topo_head"]}, "y_pred": truth})


@pytest.mark.parametrize("input_dict", [{}, {"y_true": {}}, {"y_pred": {}}, {"y_true": [1], "y_pred": {}}],
                         ids=["empty", "no-y_pred", "no-y_true", "not-a-mapping"])
def test_eval_missing_keys(input_dict):
    with pytest.raises(ValueError, match="input_dict needs 'y_(true|pred)'"):
        Evaluator("bfs").eval(input_dict)


@pytest.mark.parametrize("shape", [(2, 3), (3, 4), (2, 4, 3), (8,), (2, 4, 4, 4)])
def test_eval_wrong_shape_is_named(shape):
    truth = np.zeros((2, 4), dtype=int)
    with pytest.raises(ValueError, match=r"y_pred\['pi'\] has shape"):
        Evaluator("bfs").eval({"y_true": {"pi": truth}, "y_pred": {"pi": np.zeros(shape)}})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_eval_non_finite_prediction_is_named(bad):
    truth = np.zeros((2, 4), dtype=int)
    scores = np.zeros((2, 4, 4))
    scores[1, 2, 3] = bad
    with pytest.raises(ValueError, match=r"y_pred\['pi'\] contains NaN"):
        Evaluator("bfs").eval({"y_true": {"pi": truth}, "y_pred": {"pi": scores}})
    mask = np.array([[0.1, bad]])
    with pytest.raises(ValueError, match=r"y_pred\['is_cut'\] contains NaN"):
        Evaluator("articulation_points").eval({"y_true": {"is_cut": np.array([[0, 1]])},
                                               "y_pred": {"is_cut": mask}})


def test_eval_nan_in_torch_prediction():
    with pytest.raises(ValueError, match="NaN"):
        Evaluator("bfs").eval({"y_true": {"pi": torch.zeros(1, 3, dtype=torch.long)},
                               "y_pred": {"pi": torch.tensor([[0.0, float("nan"), 1.0]])}})


def test_unknown_algorithm():
    with pytest.raises(ValueError, match="unknown algorithm.*bfs"):
        Evaluator("nope")


@pytest.mark.parametrize("name", ALGORITHMS)
def test_expected_input_format_mentions_every_output_field(name):
    evaluator = Evaluator(name)
    text = evaluator.expected_input_format
    assert name in text
    for field, (stage, location, type_) in SPECS[name].items():
        if stage == Stage.OUTPUT:
            assert f"- {field} ({location} {type_})" in text, field
        if stage == Stage.HINT:
            assert field in text, field
    assert "score" in evaluator.expected_output_format


# --- Evaluator.eval_hints -------------------------------------------------------------------

def _bfs_hint_case():
    """Three samples of 4 nodes with lengths 3, 2, 1 (T = 3)."""
    lengths = np.array([3, 2, 1])
    pi_true = np.zeros((3, 3, 4), dtype=int)
    pi_pred = np.ones((3, 3, 4), dtype=int)  # all wrong unless set below
    pi_pred[0, 1] = 0  # step 1, sample 0: 4 / 4 right
    pi_pred[1, 1, :2] = 0  # step 1, sample 1: 2 / 4 right
    pi_pred[0, 2, 0] = 0  # step 2, sample 0: 1 / 4 right
    pi_pred[2, 0] = 0  # step 0 and sample 2 (length 1) are never scored

    reach_true = np.zeros((3, 3, 4))
    reach_pred = np.ones((3, 3, 4))  # all 1: wrong wherever truth is 0, unless set below
    reach_true[0, 1] = [1, 1, 0, 0]
    reach_pred[0, 1] = [0.9, 0.2, 0.7, 0.1]  # tp 1, fn 1, fp 1
    reach_true[1, 1] = [1, 0, 0, -1]
    reach_pred[1, 1] = [0.8, 0.0, 0.0, 1.0]  # tp 1; the fp at the -1 entry is masked
    reach_pred[0, 2] = 0.0  # step 2: truth all 0, pred all 0 -> F1 = 1 (empty denominators)
    return lengths, {"pi_h": pi_true, "reach_h": reach_true}, {"pi_h": pi_pred, "reach_h": reach_pred}


def test_eval_hints_hand_computed():
    lengths, y_true, y_pred = _bfs_hint_case()
    result = Evaluator("bfs").eval_hints({"y_true": y_true, "y_pred": y_pred, "lengths": lengths})
    # pi_h: step 1 over samples 0 and 1 -> 6 / 8; step 2 over sample 0 -> 1 / 4.
    # weights 2 and 1; total sum(lengths - 1) = 3
    np.testing.assert_allclose(result["pi_h_along_time"], [0.75, 0.25])
    assert result["pi_h"] == pytest.approx((0.75 * 2 + 0.25 * 1) / 3)
    # reach_h: step 1 tp 2, fp 1, fn 1 -> F1 2/3; step 2 -> 1
    np.testing.assert_allclose(result["reach_h_along_time"], [2 / 3, 1.0])
    assert result["reach_h"] == pytest.approx((2 / 3 * 2 + 1.0 * 1) / 3)
    assert set(result) == {"pi_h", "pi_h_along_time", "reach_h", "reach_h_along_time"}
    assert "score" not in result


def test_eval_hints_accepts_torch_and_a_subset_of_fields():
    lengths, y_true, y_pred = _bfs_hint_case()
    result = Evaluator("bfs").eval_hints({
        "y_true": {k: torch.from_numpy(v) for k, v in y_true.items()},
        "y_pred": {"pi_h": torch.from_numpy(y_pred["pi_h"])},
        "lengths": torch.from_numpy(lengths)})
    assert set(result) == {"pi_h", "pi_h_along_time"}
    assert result["pi_h"] == pytest.approx(1.75 / 3)


def test_eval_hints_pointer_scores():
    lengths, y_true, y_pred = _bfs_hint_case()
    scores = np.eye(4)[y_pred["pi_h"]]  # one-hot scores [3, 3, 4, 4]
    result = Evaluator("bfs").eval_hints({"y_true": y_true, "y_pred": {"pi_h": scores}, "lengths": lengths})
    assert result["pi_h"] == pytest.approx(1.75 / 3)


def test_eval_hints_steps_beyond_lengths_and_padding_are_ignored():
    lengths, y_true, y_pred = _bfs_hint_case()
    # pad T from 3 to 5: the extra steps run no sample, score 0 with weight 0
    pad = lambda a: np.concatenate([a, np.full((3, 2, 4), 7, dtype=a.dtype)], axis=1)  # noqa: E731
    result = Evaluator("bfs").eval_hints({"y_true": {k: pad(v) for k, v in y_true.items()},
                                          "y_pred": {k: pad(v) for k, v in y_pred.items()}, "lengths": lengths})
    np.testing.assert_allclose(result["pi_h_along_time"], [0.75, 0.25, 0.0, 0.0])
    assert result["pi_h"] == pytest.approx(1.75 / 3)


def test_eval_hints_scalar_is_weighted_mse():
    # dijkstra's d hint: 2 samples of 2 nodes, lengths 3 and 2
    lengths = np.array([3, 2])
    truth = np.zeros((2, 3, 2))
    pred = np.zeros((2, 3, 2))
    pred[:, 0] = 100.0  # step 0 never scored
    pred[0, 1] = [1.0, 1.0]
    pred[1, 1] = [0.0, 2.0]  # step 1: MSE over 4 entries = (1 + 1 + 0 + 4) / 4 = 1.5
    pred[0, 2] = [3.0, 0.0]  # step 2: sample 0 only: 9 / 2 = 4.5
    pred[1, 2] = [50.0, 50.0]  # sample 1 has ended
    result = Evaluator("dijkstra").eval_hints({"y_true": {"d": truth}, "y_pred": {"d": pred}, "lengths": lengths})
    np.testing.assert_allclose(result["d_along_time"], [1.5, 4.5])
    assert result["d"] == pytest.approx((1.5 * 2 + 4.5 * 1) / 3)


def test_eval_hints_errors():
    lengths, y_true, y_pred = _bfs_hint_case()
    evaluator = Evaluator("bfs")
    with pytest.raises(ValueError, match="no hint field.*reach_h"):
        evaluator.eval_hints({"y_true": y_true, "y_pred": {"pi": y_pred["pi_h"]}, "lengths": lengths})
    with pytest.raises(ValueError, match="lengths"):
        evaluator.eval_hints({"y_true": y_true, "y_pred": y_pred})
    with pytest.raises(ValueError, match="y_true is missing field 'pi_h'"):
        evaluator.eval_hints({"y_true": {"reach_h": y_true["reach_h"]}, "y_pred": y_pred, "lengths": lengths})
    with pytest.raises(ValueError, match="samples but lengths has 2"):
        evaluator.eval_hints({"y_true": y_true, "y_pred": y_pred, "lengths": lengths[:2]})
    with pytest.raises(ValueError, match="lengths go up to 4"):
        evaluator.eval_hints({"y_true": y_true, "y_pred": y_pred, "lengths": np.array([4, 2, 1])})
    with pytest.raises(ValueError, match=r"y_pred\['pi_h'\] has shape"):
        evaluator.eval_hints({"y_true": y_true, "y_pred": {"pi_h": y_pred["pi_h"][:, :2]}, "lengths": lengths})
    bad = y_pred["reach_h"].copy()
    bad[0, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"y_pred\['reach_h'\] contains NaN"):
        evaluator.eval_hints({"y_true": y_true, "y_pred": {"reach_h": bad}, "lengths": lengths})
