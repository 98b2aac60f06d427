"""gnnbench.models.linear (oneDNN products on the CPU) against float64 matrix products, to first and second order."""

from __future__ import annotations

import pytest
import torch

from gnnbench.models import linear as L

pytestmark = pytest.mark.skipif(not L.onednn_available(), reason="this torch build has no oneDNN")


def data(seed: int, shape=(3, 5, 6), out=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    w = torch.randn(out, shape[-1], generator=g)
    b = torch.randn(out, generator=g)
    return x, w, b


def graph_names(y: torch.Tensor) -> set[str]:
    names, stack = set(), [y.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None:
            names.add(type(node).__name__)
            stack.extend(next_fn for next_fn, _ in node.next_functions)
    return names


def loss64(x, w, b):
    """The same loss in float64 with explicit products (the reference)."""
    y = x.double() @ w.double().t() + (0 if b is None else b.double())
    return torch.sin(y).sum()


@pytest.mark.parametrize("with_bias", [True, False])
def test_values_and_gradients_match_float64_products(with_bias):
    x, w, b = data(0)
    b = b if with_bias else None
    leaves = [t.clone().requires_grad_(True) for t in (x, w) + ((b,) if with_bias else ())]
    y = L.linear(*leaves, *([] if with_bias else [None]))
    assert "_OneDnnLinearBackward" in graph_names(y)  # the fast path ran
    expected = x.double() @ w.double().t() + (0 if b is None else b.double())
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(torch.sin(y).sum(), leaves)
    ref_leaves = [t.double().requires_grad_(True) for t in (x, w) + ((b,) if with_bias else ())]
    ref = torch.autograd.grad(loss64(*ref_leaves, *([] if with_bias else [None])), ref_leaves)
    for got, want in zip(grads, ref):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)


def test_second_derivatives_and_batched_probes_match():
    x, w, b = data(1)
    leaves = [t.clone().requires_grad_(True) for t in (x, w, b)]
    grads = torch.autograd.grad(torch.sin(L.linear(*leaves)).sum(), leaves, create_graph=True)
    probes = [torch.randn(t.shape, generator=torch.Generator().manual_seed(2)) for t in leaves]
    hvp = torch.autograd.grad(grads, leaves, probes, retain_graph=True)
    ref_leaves = [t.double().requires_grad_(True) for t in (x, w, b)]
    ref_grads = torch.autograd.grad(loss64(*ref_leaves), ref_leaves, create_graph=True)
    ref_hvp = torch.autograd.grad(ref_grads, ref_leaves, [p.double() for p in probes], retain_graph=True)
    for got, want in zip(hvp, ref_hvp):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
    # several probes at once (autograd's vmap over the backward), for the weight
    stacked = torch.randn(4, *w.shape, generator=torch.Generator().manual_seed(3))
    batched = torch.autograd.grad(grads[1], leaves[1], stacked, is_grads_batched=True)[0]
    for k in range(4):
        one = torch.autograd.grad(ref_grads[1], ref_leaves[1], stacked[k].double(), retain_graph=True)[0]
        torch.testing.assert_close(batched[k].double(), one, rtol=1e-4, atol=1e-4)


def test_forward_mode_and_vmap_use_plain_products():
    x, w, b = data(4)
    tangent = torch.randn(w.shape, generator=torch.Generator().manual_seed(5))

    def f(weight):
        return torch.sin(L.linear(x, weight, b)).sum()

    value, jvp = torch.func.jvp(torch.func.grad(f), (w,), (tangent,))
    ref_w = w.double().requires_grad_(True)
    ref_grad = torch.autograd.grad(loss64(x, ref_w, b), ref_w, create_graph=True)[0]
    ref_hvp = torch.autograd.grad(ref_grad, ref_w, tangent.double())[0]
    torch.testing.assert_close(jvp.double(), ref_hvp, rtol=1e-4, atol=1e-4)
    per_row = torch.func.vmap(lambda row: L.linear(row, w, b))(x[0])
    torch.testing.assert_close(per_row, x[0] @ w.t() + b, rtol=1e-5, atol=1e-5)


def test_strided_inputs_and_empty_batches():
    x, w, b = data(6, shape=(7, 12))
    view = x[:, 3:9]  # a non-contiguous slice
    torch.testing.assert_close(L.linear(view, w[:, :6].contiguous(), b), view @ w[:, :6].t() + b,
                               rtol=1e-5, atol=1e-5)
    assert L.linear(torch.zeros(0, 6), w[:, :6], b).shape == (0, 4)


def test_other_dtypes_and_plain_mode_are_f_linear():
    x, w, b = data(7)
    xd = x.double().requires_grad_(True)
    y = L.linear(xd, w.double(), b.double())
    assert not any("OneDnn" in name for name in graph_names(y))
    assert torch.equal(y, torch.nn.functional.linear(xd, w.double(), b.double()))
    with L.plain_linear():
        y = L.linear(x.requires_grad_(True), w, b)
        assert torch.equal(y, torch.nn.functional.linear(x, w, b))
        assert "_OneDnnLinearBackward" not in graph_names(y)
    y = L.linear(x, w, b)
    assert "_OneDnnLinearBackward" in graph_names(y)  # switched back on after the block
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert L.linear(x, w, b).dtype == torch.bfloat16  # autocast applies, as to F.linear
