"""Noise stability optimization (gnnbench.hessian.nso): the two-point gradient, restoration, optimizers, penalty."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from gnnbench.hessian.nso import NoiseStabilityOptimizer, nso_gradient, trace_penalty

DT = torch.float64


def _data(seed=0, n=16, d=3, out=2, dtype=DT):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, out, generator=g, dtype=dtype)


def _mlp(seed=0, d=3, hidden=5, out=2, dtype=DT):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, out)).to(dtype)


def _mse(output, target):
    return ((output - target) ** 2).mean()


def _value(tensor):
    return float(tensor.detach())


def _snapshot(model):
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def _assert_bitwise(model, snapshot):
    for name, value in model.state_dict().items():
        assert torch.equal(value, snapshot[name]), name


def _hand_nso(model, X, Y, *, sigma, k, lam, seed, perturb=None, scale="absolute"):
    """The formula, computed without touching the model: functional calls at W, W + U_j and W - U_j."""
    trainable = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    perturb = list(trainable) if perturb is None else perturb

    def grad_at(delta):
        params = {name: (w + delta[name] if name in delta else w.clone()).requires_grad_()
                  for name, w in trainable.items()}
        loss = _mse(functional_call(model, {**params, **frozen}, (X,)), Y)
        return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))

    generator = torch.Generator().manual_seed(seed)
    total = {name: lam * g for name, g in grad_at({}).items()}
    for _ in range(k):
        noise = {}
        for name in perturb:  # named_parameters order, one draw per perturbed tensor
            w = trainable[name]
            std = sigma if scale == "absolute" else sigma * float(w.norm()) / math.sqrt(w.numel())
            noise[name] = torch.randn(w.shape, generator=generator, dtype=w.dtype) * std
        plus = grad_at(noise)
        minus = grad_at({name: -u for name, u in noise.items()})
        for name in total:
            total[name] = total[name] + (1 - lam) / (2 * k) * (plus[name] + minus[name])
    return total


@pytest.mark.parametrize("scale", ["absolute", "relative"])
@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_gradient_matches_hand_formula(scale, lam):
    X, Y = _data()
    model = _mlp()
    expected = _hand_nso(model, X, Y, sigma=0.2, k=3, lam=lam, seed=7, scale=scale)
    before = _snapshot(model)
    loss = nso_gradient(model, lambda: _mse(model(X), Y), sigma=0.2, num_samples=3, lam=lam, scale=scale,
                        generator=torch.Generator().manual_seed(7))
    _assert_bitwise(model, before)
    assert loss == pytest.approx(_value(_mse(model(X), Y)), rel=1e-12)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-10, atol=1e-12)


def test_lam_one_is_plain_gradient_and_gradients_accumulate():
    X, Y = _data()
    model, plain = _mlp(), _mlp()
    _mse(plain(X), Y).backward()
    nso_gradient(model, lambda: _mse(model(X), Y), sigma=0.5, num_samples=2, lam=1.0)
    for p, q in zip(model.parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-13, atol=0)
    # like backward(), a second call adds to .grad
    nso_gradient(model, lambda: _mse(model(X), Y), sigma=0.5, num_samples=2, lam=1.0)
    for p, q in zip(model.parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, 2 * q.grad, rtol=1e-13, atol=0)


def test_weights_restored_bitwise_in_float32_and_after_an_error():
    X, Y = _data(dtype=torch.float32)
    model = _mlp(dtype=torch.float32)
    before = _snapshot(model)
    nso_gradient(model, lambda: _mse(model(X), Y), sigma=1.3, num_samples=4, lam=0.5,
                 generator=torch.Generator().manual_seed(0))
    _assert_bitwise(model, before)  # (w + u) - u would drift in float32; the saved copy does not
    calls = []

    def failing():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return _mse(model(X), Y)

    with pytest.raises(RuntimeError, match="boom"):
        nso_gradient(model, failing, sigma=1.3, num_samples=2)
    _assert_bitwise(model, before)


def test_requires_grad_false_untouched_and_parameter_selection():
    X, Y = _data()
    model = _mlp()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    expected = _hand_nso(model, X, Y, sigma=0.3, k=2, lam=0.0, seed=3)
    nso_gradient(model, lambda: _mse(model(X), Y), sigma=0.3, num_samples=2,
                 generator=torch.Generator().manual_seed(3))
    assert model[0].weight.grad is None and torch.equal(model[0].weight, frozen)
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, expected[name], rtol=1e-10, atol=1e-12)
    # noise on the last layer only; every trainable parameter still gets the smoothed gradient
    model.zero_grad()
    expected = _hand_nso(model, X, Y, sigma=0.3, k=2, lam=0.2, seed=4, perturb=["2.weight", "2.bias"])
    nso_gradient(model, lambda: _mse(model(X), Y), sigma=0.3, num_samples=2, lam=0.2, parameters=["2"],
                 generator=torch.Generator().manual_seed(4))
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, expected[name], rtol=1e-10, atol=1e-12)


def test_sgd_and_adam_steps():
    X, Y = _data()
    kwargs = dict(sigma=0.25, num_samples=2, lam=0.1)
    expected = _hand_nso(_mlp(), X, Y, k=2, sigma=0.25, lam=0.1, seed=5)
    for make in (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), lambda ps: torch.optim.Adam(ps, lr=0.01)):
        # function API + optimizer.step()
        model, reference = _mlp(), _mlp()
        start = _snapshot(model)
        optimizer, ref_optimizer = make(model.parameters()), make(reference.parameters())
        optimizer.zero_grad()
        nso_gradient(model, lambda: _mse(model(X), Y), generator=torch.Generator().manual_seed(5), **kwargs)
        optimizer.step()
        for name, q in reference.named_parameters():
            q.grad = expected[name].clone()
        ref_optimizer.step()
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            assert not torch.equal(p, start[name]), name
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)
        # closure API: the wrapper sets .grad (stale gradients are discarded) and steps the base optimizer
        model = _mlp()
        wrapper = NoiseStabilityOptimizer(make(model.parameters()), model,
                                          generator=torch.Generator().manual_seed(5), **kwargs)
        for p in model.parameters():
            p.grad = torch.full_like(p, 100.0)

        def closure():
            wrapper.zero_grad()
            loss = _mse(model(X), Y)
            loss.backward()
            return loss

        loss = wrapper.step(closure)
        assert _value(loss) == pytest.approx(_value(_mse(_mlp()(X), Y)), rel=1e-12)
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, expected[name], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_batchnorm_running_stats_only_from_unperturbed_pass(lam):
    X, Y = _data(n=32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 2)).to(DT).train()
    reference = copy.deepcopy(model)
    with torch.no_grad():
        reference(X)  # one ordinary training-mode pass
    nso_gradient(model, lambda: _mse(model(X), Y), sigma=0.5, num_samples=3, lam=lam)
    for name, buffer in reference.named_buffers():
        assert torch.equal(dict(model.named_buffers())[name], buffer), name
    assert int(model[1].num_batches_tracked) == 1
    wrapper = NoiseStabilityOptimizer(torch.optim.SGD(model.parameters(), lr=0.0), model, sigma=0.5, num_samples=2,
                                      lam=lam)

    def closure():
        loss = _mse(model(X), Y)
        loss.backward()
        return loss

    wrapper.step(closure)
    with torch.no_grad():
        reference(X)
    for name, buffer in reference.named_buffers():
        assert torch.equal(dict(model.named_buffers())[name], buffer), name


def test_bad_arguments():
    X, Y = _data()
    model = _mlp()

    def loss_fn():
        return _mse(model(X), Y)

    for bad in (dict(sigma=-0.1), dict(sigma=float("nan")), dict(sigma=float("inf")), dict(sigma="0.1")):
        with pytest.raises(ValueError, match="sigma"):
            nso_gradient(model, loss_fn, **bad)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="num_samples"):
            nso_gradient(model, loss_fn, sigma=0.1, num_samples=bad)
    for bad in (-0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="lam"):
            nso_gradient(model, loss_fn, sigma=0.1, lam=bad)
    with pytest.raises(ValueError, match="scale"):
        nso_gradient(model, loss_fn, sigma=0.1, scale="layerwise")
    with pytest.raises(KeyError, match="nope"):
        nso_gradient(model, loss_fn, sigma=0.1, parameters=["nope"])
    with pytest.raises(ValueError, match="scalar"):
        nso_gradient(model, lambda: (model(X) - Y) ** 2, sigma=0.1)
    with pytest.raises(ValueError, match="lam"):
        NoiseStabilityOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), model, sigma=0.1, lam=2)
    wrapper = NoiseStabilityOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), model, sigma=0.1)
    with pytest.raises(TypeError, match="closure"):
        wrapper.step(None)
    before = _snapshot(model)
    with pytest.raises(RuntimeError, match="backward"):
        wrapper.step(loss_fn)  # returns the loss but never calls backward
    _assert_bitwise(model, before)
    with pytest.raises(ValueError, match="weight"):
        trace_penalty(model, loss_fn, weight=-1.0)
    with pytest.raises(ValueError, match="num_matvecs must be an integer >= 1"):
        trace_penalty(model, loss_fn, weight=1.0, num_matvecs=0)
    with pytest.raises(ValueError, match="num_matvecs"):
        trace_penalty(model, loss_fn, weight=1.0, num_matvecs=1.5)
    with pytest.raises(ValueError, match="give only 'num_matvecs'"):
        trace_penalty(model, loss_fn, weight=1.0, num_matvecs=2, num_probes=3)
    model[0].weight.requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        nso_gradient(model, loss_fn, sigma=0.1, parameters="0.weight")


def _tiny():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).to(DT)
    X, Y = _data(seed=2, n=8, d=2, out=1)
    return model, (lambda: _mse(model(X), Y)), X, Y


def _flat_hessian(model, X, Y):
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(vector):
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            params[name] = vector[start:start + shape.numel()].reshape(shape)
            start += shape.numel()
        return _mse(functional_call(model, params, (X,)), Y)

    return torch.autograd.functional.hessian(loss, flat)


def test_trace_penalty_estimate_matches_exact_quadratic_forms():
    model, loss_fn, X, Y = _tiny()
    result = trace_penalty(model, loss_fn, weight=0.0, num_matvecs=3, generator=torch.Generator().manual_seed(9))
    assert result.num_matvecs == 3
    assert result.loss == pytest.approx(_value(loss_fn()), rel=1e-12)
    assert all(p.grad is None for p in model.parameters())  # weight 0 adds nothing
    H = _flat_hessian(model, X, Y)
    generator = torch.Generator().manual_seed(9)
    quads = []
    for _ in range(3):
        v = torch.cat([(torch.randint(0, 2, p.shape, generator=generator) * 2 - 1).to(DT).reshape(-1)
                       for p in model.parameters()])
        quads.append(float(v @ H @ v))
    assert result.trace == pytest.approx(sum(quads) / 3, rel=1e-10)


def test_trace_penalty_gradient_matches_finite_differences():
    model, loss_fn, X, Y = _tiny()
    weight, seed = 2.5, 11
    trace_penalty(model, loss_fn, weight=weight, num_matvecs=2, generator=torch.Generator().manual_seed(seed))
    analytic = torch.cat([p.grad.reshape(-1) for p in model.parameters()])

    def penalty():  # same probes: T(W) is a deterministic function of W
        return weight * trace_penalty(model, loss_fn, weight=0.0, num_matvecs=2,
                                      generator=torch.Generator().manual_seed(seed)).trace

    eps, numeric = 1e-5, []
    with torch.no_grad():
        for p in model.parameters():
            flat = p.view(-1)
            for i in range(flat.numel()):
                original = flat[i].item()
                flat[i] = original + eps
                up = penalty()
                flat[i] = original - eps
                down = penalty()
                flat[i] = original
                numeric.append((up - down) / (2 * eps))
    torch.testing.assert_close(analytic, torch.tensor(numeric, dtype=DT), rtol=1e-6, atol=1e-8)
    # include_loss adds exactly the plain gradient on top
    model.zero_grad()
    trace_penalty(model, loss_fn, weight=weight, num_matvecs=2, include_loss=True,
                  generator=torch.Generator().manual_seed(seed))
    combined = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad()
    loss_fn().backward()
    plain = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(combined, analytic + plain, rtol=1e-10, atol=1e-12)


def _train_deep_linear(seed, use_nso):
    """A 3 -> 6 -> 1 linear network started unbalanced (large first layer, tiny second layer). Its minima form a
    manifold whose Hessian trace grows with the imbalance; plain gradient descent keeps the imbalance (it conserves
    W1 W1^T - W2^T W2 under gradient flow), NSO's trace penalty removes it."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(32, 3, generator=g, dtype=DT)
    Y = X @ torch.randn(3, 1, generator=g, dtype=DT)
    model = nn.Sequential(nn.Linear(3, 6, bias=False), nn.Linear(6, 1, bias=False)).to(DT)
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(6, 3, generator=g, dtype=DT) * 1.5)
        model[1].weight.copy_(torch.randn(1, 6, generator=g, dtype=DT) * 0.05)
    initial_loss = _value(_mse(model(X), Y))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.03)
    noise = torch.Generator().manual_seed(100 + seed)
    for _ in range(100):
        optimizer.zero_grad()
        if use_nso:
            nso_gradient(model, lambda: _mse(model(X), Y), sigma=0.3, num_samples=1, generator=noise)
        else:
            _mse(model(X), Y).backward()
        optimizer.step()
    with torch.no_grad():
        final_loss = _value(_mse(model(X), Y))
    return initial_loss, final_loss, float(_flat_hessian(model, X, Y).diagonal().sum())


def test_nso_training_reaches_flatter_minimum():
    plain_traces, nso_traces = [], []
    for seed in (0, 1, 2):
        initial, plain_loss, plain_trace = _train_deep_linear(seed, use_nso=False)
        _, nso_loss, nso_trace = _train_deep_linear(seed, use_nso=True)
        assert plain_loss < 1e-3 * initial and nso_loss < 0.1 * initial  # both fit the data
        assert nso_trace < 0.7 * plain_trace, (seed, nso_trace, plain_trace)
        plain_traces.append(plain_trace)
        nso_traces.append(nso_trace)
    assert sum(nso_traces) < 0.6 * sum(plain_traces)


def test_trace_penalty_old_budget_name_still_works():
    model, loss_fn, _, _ = _tiny()
    new = trace_penalty(model, loss_fn, weight=0.0, num_matvecs=2, generator=torch.Generator().manual_seed(1))
    with pytest.warns(DeprecationWarning, match="'num_probes' is deprecated.*'num_matvecs'"):
        old = trace_penalty(model, loss_fn, weight=0.0, num_probes=2, generator=torch.Generator().manual_seed(1))
    assert old == new and old.num_matvecs == 2
