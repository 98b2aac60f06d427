"""CLRS-30 losses against values computed by hand (closed forms, no call into the code under test)."""

import math

import pytest
import torch

from gnnbench.models import hint_loss, output_loss


def _bce(logit: float, y: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def _ce(logits: list[float], k: int) -> float:
    return -(logits[k] - math.log(sum(math.exp(v) for v in logits)))


def test_scalar_output_is_the_mean_squared_error():
    pred, truth = torch.tensor([[1.0, 2.0], [0.5, -1.0]]), torch.tensor([[0.0, 2.0], [1.5, 1.0]])
    assert output_loss("scalar", pred, truth).item() == pytest.approx((1 + 0 + 1 + 4) / 4)


def test_mask_output_is_binary_cross_entropy_over_unmasked_entries():
    pred = torch.tensor([[2.0, -1.0, 0.3]])
    truth = torch.tensor([[1.0, 0.0, -1.0]])  # the third entry is masked out
    expected = (_bce(2.0, 1) + _bce(-1.0, 0)) / 2
    assert output_loss("mask", pred, truth).item() == pytest.approx(expected, rel=1e-6)


def test_mask_loss_gradient_at_a_zero_logit_follows_jax():
    # CLRS-30's max(x, 0) - x y + log1p(exp(-|x|)) differentiated by JAX at x = 0: jnp.maximum splits the
    # tie (1/2) and d|x|/dx = 1, so d/dx = 1/2 - y - 1/2 = -y (zero logits occur at haiku's zero-bias
    # initialisation for nodes whose features are all 0)
    pred = torch.zeros(1, 2, requires_grad=True)
    output_loss("mask", pred, torch.tensor([[0.0, 1.0]])).backward()
    assert pred.grad.tolist() == [[0.0, -0.5]]
    pred = torch.tensor([[0.0, -0.0]], requires_grad=True)  # the sign of zero does not matter
    output_loss("mask", pred, torch.tensor([[1.0, 1.0]])).backward()
    assert pred.grad.tolist() == [[-0.5, -0.5]]


def test_mask_loss_is_stable_for_large_logits():
    value = output_loss("mask", torch.tensor([80.0, -80.0]), torch.tensor([0.0, 1.0]))
    assert value.item() == pytest.approx(80.0, rel=1e-6)


def test_mask_one_output_is_softmax_cross_entropy_per_positive():
    pred = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, -1.0]])
    truth = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    expected = (_ce([0, 1, 2], 2) + _ce([1, 1, -1], 0)) / 2
    assert output_loss("mask_one", pred, truth).item() == pytest.approx(expected, rel=1e-6)


def test_categorical_output_ignores_masked_classes_and_divides_by_positives():
    pred = torch.tensor([[[0.5, -0.5], [2.0, 0.0]]])
    truth = torch.tensor([[[0.0, 1.0], [-1.0, -1.0]]])  # the second node is masked entirely
    assert output_loss("categorical", pred, truth).item() == pytest.approx(_ce([0.5, -0.5], 1), rel=1e-6)


def test_pointer_output_scores_every_candidate_node():
    pred = torch.tensor([[[0.0, 1.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    truth = torch.tensor([[1.0, 0.0, 2.0]])
    expected = (_ce([0, 1, 0], 1) + _ce([3, 0, 0], 0) + _ce([0, 0, 0], 2)) / 3
    assert output_loss("pointer", pred, truth).item() == pytest.approx(expected, rel=1e-6)


def test_pointer_target_outside_the_graph_is_an_error():
    with pytest.raises(ValueError, match="outside 0..1"):
        output_loss("pointer", torch.zeros(1, 2, 2), torch.tensor([[0.0, 5.0]]))


def test_unknown_type_is_named():
    with pytest.raises(ValueError, match="'permutation'"):
        output_loss("permutation", torch.zeros(2), torch.zeros(2))


def test_hint_loss_scores_only_steps_before_each_trace_ends():
    # two traces of lengths 3 and 2, padded to T = 3; scalar node hints on 2 nodes
    truth = torch.tensor([[[9.0, 9.0], [9.0, 9.0]],      # step 0: never scored
                          [[1.0, 0.0], [2.0, 2.0]],      # step 1: both traces alive
                          [[0.0, 1.0], [0.0, 0.0]]])     # step 2: only trace 0 (trace 1 is padding)
    preds = torch.tensor([[[0.0, 0.0], [2.0, 1.0]],
                          [[0.0, 3.0], [100.0, 100.0]]])
    lengths = torch.tensor([3, 2])
    # scored entries: step 1 trace 0 (1, 0), step 1 trace 1 (0, 1), step 2 trace 0 (0, 4)
    expected = (1 + 0 + 0 + 1 + 0 + 4) / 6
    assert hint_loss("scalar", preds, truth, lengths).item() == pytest.approx(expected)


def test_mask_one_hint_counts_each_live_step_and_trace_once():
    truth = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 0.0]]])  # [T=3, B=1, n=2]
    preds = torch.tensor([[[0.0, 2.0]], [[1.0, -1.0]]])
    expected = (_ce([0, 2], 1) + _ce([1, -1], 0)) / 2
    assert hint_loss("mask_one", preds, truth, torch.tensor([3])).item() == pytest.approx(expected, rel=1e-6)


def test_categorical_hint_skips_nodes_without_a_positive_class():
    truth = torch.zeros(2, 1, 2, 3)
    truth[1, 0, 0, 2] = 1.0  # node 0 has class 2 at step 1; node 1 has no class (all zero)
    preds = torch.tensor([[[[0.0, 0.0, 1.0], [5.0, 0.0, 0.0]]]])
    expected = _ce([0, 0, 1], 2)
    assert hint_loss("categorical", preds, truth, torch.tensor([2])).item() == pytest.approx(expected, rel=1e-6)


def test_hint_loss_of_a_single_step_trace_is_zero_not_nan():
    truth, preds = torch.zeros(2, 1, 3), torch.ones(1, 1, 3)
    assert hint_loss("scalar", preds, truth, torch.tensor([1])).item() == 0.0


def test_hint_loss_rejects_misaligned_steps():
    with pytest.raises(ValueError, match="expected 2"):
        hint_loss("scalar", torch.zeros(3, 1, 2), torch.zeros(3, 1, 2), torch.tensor([3]))


def test_losses_have_gradients():
    pred = torch.zeros(2, 3, requires_grad=True)
    output_loss("mask_one", pred, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])).backward()
    expected = torch.tensor([[1 / 3, -2 / 3, 1 / 3], [-2 / 3, 1 / 3, 1 / 3]]) / 2
    torch.testing.assert_close(pred.grad, expected)
