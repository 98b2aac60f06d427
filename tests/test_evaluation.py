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
    result = Evaluator("bfs").eval({"y_true": truth, "y_pred": {"pi": truth["pi"], "extra": np.zeros(3)}})
    assert result == {"pi": 1.0, "score": 1.0}


def test_eval_accepts_torch_tensors():
    truth = np.array([[0, 0, 1, 2], [3, 3, 3, 3]])
    pred = np.array([[0, 1, 1, 2], [3, 3, 0, 3]])
    evaluator = Evaluator("bfs")
    result = evaluator.eval({"y_true": {"pi": torch.from_numpy(truth)}, "y_pred": {"pi": torch.from_numpy(pred)}})
    assert result["pi"] == pytest.approx(0.75)
    scores = torch.nn.functional.one_hot(torch.from_numpy(truth), 4).float().requires_grad_()
    assert evaluator.eval({"y_true": {"pi": truth}, "y_pred": {"pi": scores}})["score"] == 1.0
    assert isinstance(result["pi"], float) and isinstance(result["score"], float)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_perfect_predictions_score_one(name):
    traces = sample(name, 12, n=8, seed=3)
    outputs = {k: np.asarray(v) for k, v in traces.outputs.items()}
    result = Evaluator(name).eval({"y_true": outputs, "y_pred": outputs})
    for field, (stage, _, _) in SPECS[name].items():
        if stage == Stage.OUTPUT:
            assert result[field] == 1.0, field
    assert result["score"] == 1.0


@pytest.mark.parametrize("name", ALGORITHMS)
def test_perfect_hints_score_one(name):
    traces = sample(name, 6, n=6, seed=4)
    lengths = traces.lengths
    T = int(lengths.max())
    y_true = {}
    for field in Evaluator(name).hints:
        rows = [traces[i].hints[field] for i in range(len(traces))]
        padded = np.zeros((len(rows), T, *rows[0].shape[1:]), dtype=rows[0].dtype)
        for i, row in enumerate(rows):
            padded[i, :row.shape[0]] = row
        y_true[field] = padded
    result = Evaluator(name).eval_hints({"y_true": y_true, "y_pred": y_true, "lengths": lengths})
    for field, (stage, _, type_) in SPECS[name].items():
        if stage == Stage.HINT:
            assert result[field] == (0.0 if type_ == "scalar" else 1.0), field
            assert result[f"{field}_along_time"].shape == (T - 1,)


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
