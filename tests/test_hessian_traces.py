"""Trace estimators (Hutchinson, Hutch++; full-length and block-supported probes) against exact traces.

Exact traces come from explicit matrices with known spectra (``H = U diag(lam) U^T``, random orthogonal ``U``,
split into named blocks by :class:`~gnnbench.hessian.matrix.MatrixOperator`) or from dense Hessians of small models
computed with ``torch.autograd.functional.hessian`` (independently of the operator). The budget is the total
number of products, and the standard errors are checked for calibration over many seeds.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from gnnbench.hessian import HessianOperator, trace
from gnnbench.hessian import estimators as est
from gnnbench.hessian.estimators import trace_of
from gnnbench.hessian.matrix import MatrixOperator
from hessian_references import dense_hessian, spectral_matrix, tiny_mlp

F64 = torch.float64
GROUPS = {"conv.0": 12, "conv.1": 30, "head": 18}
COMBINATIONS = [("hutchinson", "full"), ("hutchinson", "block"), ("hutch++", "full"), ("hutch++", "block")]


def block_traces(h: torch.Tensor, groups: dict[str, int]) -> dict[str, float]:
    result, start = {}, 0
    for name, size in groups.items():
        result[name] = float(h[start:start + size, start:start + size].trace())
        start += size
    return result


@pytest.fixture(scope="module")
def mixed() -> torch.Tensor:
    """60 x 60, eigenvalues in [1, 3] plus a few negative ones (an indefinite Hessian)."""
    gen = torch.Generator().manual_seed(5)
    lam = torch.cat([torch.tensor([-0.5, -0.2], dtype=F64), 1 + 2 * torch.rand(58, dtype=F64, generator=gen)])
    return spectral_matrix(lam, seed=1)


@pytest.fixture(scope="module")
def coupled() -> torch.Tensor:
    """60 x 60 with strong off-diagonal blocks: full-length probes' per-layer samples then carry most of their
    variance from the other blocks, so a standard error computed as for block probes would be far too small."""
    gen = torch.Generator().manual_seed(7)
    a = torch.randn(60, 60, dtype=F64, generator=gen)
    return (a + a.T) / 4 + torch.diag(torch.linspace(1, 3, 60, dtype=F64))


@pytest.fixture(scope="module")
def decaying() -> torch.Tensor:
    """200 x 200 with eigenvalues i^-2 (a decaying spectrum: Hutch++ territory)."""
    return spectral_matrix(torch.arange(1, 201, dtype=F64) ** -2.0, seed=2)


# ------------------------------------------------------------------------------------------------ budget


@pytest.mark.parametrize("method, probes", COMBINATIONS)
def test_num_matvecs_is_the_total_number_of_products(mixed, method, probes):
    op = MatrixOperator(mixed, GROUPS)
    result = trace_of(op, method=method, num_matvecs=61, probes=probes, seed=0)
    assert op.num_matvecs == result.num_matvecs == 61  # nothing resolved exactly here: all 61 are spent
    assert result.probes == probes and set(result.per_layer) == set(GROUPS)


def test_public_trace_at_defaults_spends_num_matvecs_products_in_all():
    """The default (per-layer, full-length probes) costs num_matvecs products however many layers there are:
    counted at the autograd level (one backward with graph for the gradient, then one backward per product)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 6), torch.nn.Tanh(),
                                torch.nn.Linear(6, 3)).double()
    x, y = torch.randn(20, 5, dtype=F64), torch.randint(0, 3, (20,))
    calls = []
    original = torch.autograd.grad

    def counting(*args, **kwargs):
        calls.append(kwargs.get("create_graph", False))
        return original(*args, **kwargs)

    torch.autograd.grad = counting
    try:
        result = trace(model, lambda: torch.nn.functional.cross_entropy(model(x), y), num_matvecs=40)
    finally:
        torch.autograd.grad = original
    assert len(result.per_layer) == 3 and result.num_matvecs == 40
    assert calls.count(True) == 1 and calls.count(False) == 40  # gradient with graph once, then 40 products


def test_block_probes_split_the_budget(mixed):
    op = MatrixOperator(mixed, GROUPS)
    exact = block_traces(mixed, GROUPS)
    # 3 groups, 100 products: 34, 33, 33 probes; with a single group each, the same probes give the same number
    result = trace_of(op, num_matvecs=100, probes="block", seed=4, chunk_size=None)
    assert result.num_matvecs == 100
    for name in GROUPS:
        assert abs(result.per_layer[name] - exact[name]) <= 4 * result.per_layer_stderr[name]
    assert result.stderr == pytest.approx(math.sqrt(sum(e * e for e in result.per_layer_stderr.values())))
    assert result.total == pytest.approx(sum(result.per_layer.values()))
    with pytest.raises(ValueError, match=r"num_matvecs must be an integer >= 3 with probes='block'"):
        trace_of(op, num_matvecs=2, probes="block")
    with pytest.raises(ValueError, match=r"num_matvecs must be an integer >= 9 with probes='block'"):
        trace_of(op, method="hutch++", num_matvecs=8, probes="block")


@pytest.mark.parametrize("method, probes", COMBINATIONS)
def test_trace_within_stated_standard_error(mixed, method, probes):
    op = MatrixOperator(mixed, GROUPS)
    exact = block_traces(mixed, GROUPS)
    result = trace_of(op, method=method, num_matvecs=150, probes=probes, seed=3)
    assert result.method == method and set(result.per_layer) == set(GROUPS) == set(result.per_layer_stderr)
    for name, value in result.per_layer.items():
        assert abs(value - exact[name]) <= 4 * result.per_layer_stderr[name] + 1e-9, name
    assert abs(result.total - float(mixed.trace())) <= 4 * result.stderr + 1e-9
    assert result.total == pytest.approx(sum(result.per_layer.values()))


def _z_scores(matrix, groups, method, probes, m, seeds):
    """{quantity: (errors, z-scores)} over seeds: error = estimate - exact, z = error / stderr. Estimates with
    stderr 0 (resolved by Hutch++) must equal the exact value and give no z-score."""
    op = MatrixOperator(matrix, groups)
    exact = {**block_traces(matrix, groups), "total": float(matrix.trace())}
    found = {name: ([], []) for name in exact}
    for seed in range(seeds):
        result = trace_of(op, method=method, num_matvecs=m, probes=probes, seed=seed, chunk_size=None)
        values = {**result.per_layer, "total": result.total}
        errors = {**result.per_layer_stderr, "total": result.stderr}
        for name in exact:
            found[name][0].append(values[name] - exact[name])
            if errors[name] == 0:
                assert values[name] == pytest.approx(exact[name], abs=1e-9), (name, seed)
                continue
            found[name][1].append((values[name] - exact[name]) / errors[name])
    return found


@pytest.mark.parametrize("method, probes", COMBINATIONS)
def test_per_layer_standard_errors_are_calibrated(coupled, method, probes):
    """Over 300 seeds, each per-layer estimate (and the total) misses the exact block trace by about its reported
    standard error: about 95% of the z-scores lie within +-2 and their standard deviation is near 1. Hutch++ keeps
    few probes (t-distributed z-scores), and with block probes the "head" block (18) is barely larger than its
    sketch (16 rows): the residual has rank 2, its samples are skewed and the z-scores heavy-tailed (measured std
    1.27 at 93% coverage), hence the wider bound there."""
    widest = 1.35 if (method, probes) == ("hutch++", "block") else 1.2
    for name, (errors, scores) in _z_scores(coupled, GROUPS, method, probes, 150, 300).items():
        errors = torch.tensor(errors, dtype=F64)
        assert abs(float(errors.mean())) <= 4 * float(errors.std()) / math.sqrt(300) + 1e-12, name  # unbiased
        if not scores:  # resolved exactly in every run (checked inside)
            continue
        z = torch.tensor(scores, dtype=F64)
        coverage = float((z.abs() <= 2).double().mean())
        assert 0.85 <= float(z.std()) <= widest, (name, float(z.std()))
        assert 0.9 <= coverage <= 0.985, (name, coverage)


def test_full_probe_per_layer_variance_includes_the_other_blocks(coupled):
    """Full-length probes: Var(z_i^T (Hz)_i) = 2 sum_{a != b in i} H_ab^2 + sum_{j != i} ||H_ij||_F^2 (hand formula),
    checked against the spread of 400 single-seed estimates with m = 50 probes each."""
    m, seeds = 50, 400
    op = MatrixOperator(coupled, GROUPS)
    estimates = {name: [] for name in GROUPS}
    for seed in range(seeds):
        result = trace_of(op, num_matvecs=m, seed=seed, chunk_size=None)
        for name in GROUPS:
            estimates[name].append(result.per_layer[name])
    start = 0
    for name, size in GROUPS.items():
        rows = coupled[start:start + size]
        inside = rows[:, start:start + size]
        within = float((inside ** 2).sum() - (inside.diagonal() ** 2).sum())
        across = float((rows ** 2).sum() - (inside ** 2).sum())
        predicted = (2 * within + across) / m
        observed = float(torch.tensor(estimates[name], dtype=F64).var())
        assert observed == pytest.approx(predicted, rel=0.2), name  # 400 draws: ~7% sampling error
        start += size


def test_model_per_layer_standard_errors_are_calibrated():
    """The same calibration on a real operator: a tanh MLP whose Hessian comes from torch.autograd.functional."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    x, y = torch.randn(32, 4, dtype=F64), torch.randint(0, 3, (32,))
    h = dense_hessian(model, x, y)
    exact = {"0": float(h[:30, :30].trace()), "2": float(h[30:, 30:].trace()), "total": float(h.trace())}
    op = HessianOperator(model, lambda: torch.nn.functional.cross_entropy(model(x), y))
    z = {name: [] for name in exact}
    for seed in range(200):
        result = trace_of(op, num_matvecs=20, seed=seed)
        for name, value, error in [(n, result.per_layer[n], result.per_layer_stderr[n]) for n in ("0", "2")] + [
                ("total", result.total, result.stderr)]:
            z[name].append((value - exact[name]) / error)
    for name, scores in z.items():
        scores = torch.tensor(scores, dtype=F64)
        assert 0.85 <= float(scores.std()) <= 1.2, name
        assert 0.89 <= float((scores.abs() <= 2).double().mean()) <= 0.985, name


# ------------------------------------------------------------------------------------------------ accuracy


@pytest.mark.parametrize("method, probes, m", [("hutchinson", "full", 40000), ("hutchinson", "block", 40000),
                                               ("hutch++", "full", 3000), ("hutch++", "block", 3000)])
def test_trace_within_one_percent_with_many_probes(mixed, method, probes, m):
    op = MatrixOperator(mixed, GROUPS)
    exact = block_traces(mixed, GROUPS)
    result = trace_of(op, method=method, num_matvecs=m, probes=probes, seed=0, chunk_size=None)
    assert result.total == pytest.approx(float(mixed.trace()), rel=0.01)
    for name, value in result.per_layer.items():
        assert value == pytest.approx(exact[name], rel=0.01), name


def test_trace_total_only(mixed):
    op = MatrixOperator(mixed, GROUPS)
    result = trace_of(op, num_matvecs=40, per_layer=False, seed=1)
    assert result.per_layer == {} and result.per_layer_stderr == {}
    assert result.num_matvecs == 40
    assert abs(result.total - float(mixed.trace())) <= 4 * result.stderr
    # per_layer=False is one group: block and full probes are the same draws
    assert trace_of(op, num_matvecs=40, per_layer=False, seed=1, probes="block").total == result.total


def test_hutch_plus_plus_resolves_what_its_sketch_spans(mixed):
    exact = block_traces(mixed, {"small": 5, "rest": 55})
    # block probes, 30 products: 15 per block, a sketch of 5 rows spans the 5-dim block exactly
    op = MatrixOperator(mixed, {"small": 5, "rest": 55})
    result = trace_of(op, method="hutch++", num_matvecs=30, probes="block", seed=0)
    assert result.per_layer["small"] == pytest.approx(exact["small"], abs=1e-10)
    assert result.per_layer_stderr["small"] == 0.0 and result.per_layer_stderr["rest"] > 0
    assert result.num_matvecs == op.num_matvecs == 5 + 5 + 15  # sketch + basis, then the other block's 15
    # full probes, 180 products: a sketch of 60 rows spans the space; 60 + 60 products, the probes are not spent
    op = MatrixOperator(mixed, {"small": 5, "rest": 55})
    full = trace_of(op, method="hutch++", num_matvecs=180, seed=0)
    assert full.total == pytest.approx(float(mixed.trace()), abs=1e-9) and full.stderr == 0.0
    assert full.per_layer == pytest.approx(exact, abs=1e-9)
    assert full.num_matvecs == op.num_matvecs == 120


@pytest.mark.parametrize("per_layer, probes", [(False, "full"), (True, "full"), (True, "block")])
def test_hutch_plus_plus_beats_hutchinson_at_equal_matvecs(decaying, per_layer, probes):
    op = MatrixOperator(decaying, {"a": 80, "b": 120})
    exact = float(decaying.trace())

    def rms(method: str) -> float:
        errors = [trace_of(op, method=method, num_matvecs=60, per_layer=per_layer, probes=probes, seed=s).total
                  - exact for s in range(20)]
        return math.sqrt(sum(e * e for e in errors) / len(errors))

    assert rms("hutch++") < 0.25 * rms("hutchinson")


def test_hutch_plus_plus_needs_at_most_half_the_matvecs_for_one_percent(decaying):
    """Smallest budget (grid 3 * 2^j) with RMS relative error <= 1% over 10 seeds: Hutch++ at m*; Hutchinson still
    misses 1% at 2 m* (it needs about 10^4 probes on this spectrum)."""
    op = MatrixOperator(decaying)
    exact = float(decaying.trace())

    def rms(method: str, m: int) -> float:
        errors = [(trace_of(op, method=method, num_matvecs=m, per_layer=False, seed=s, chunk_size=None).total
                   - exact) / exact for s in range(10)]
        return math.sqrt(sum(e * e for e in errors) / len(errors))

    m_star = next(m for m in (3 * 2 ** j for j in range(8)) if rms("hutch++", m) <= 0.01)
    assert m_star <= 48
    assert rms("hutchinson", 2 * m_star) > 0.01
    assert rms("hutchinson", 10 * m_star) > 0.01


@pytest.mark.parametrize("method, probes", COMBINATIONS)
def test_trace_reproducible_by_seed(mixed, method, probes):
    op = MatrixOperator(mixed, GROUPS)
    a = trace_of(op, method=method, num_matvecs=12, probes=probes, seed=7)
    b = trace_of(op, method=method, num_matvecs=12, probes=probes, seed=7)
    chunked = trace_of(op, method=method, num_matvecs=12, probes=probes, seed=7, chunk_size=5)  # same draws
    c = trace_of(op, method=method, num_matvecs=12, probes=probes, seed=8)
    assert a.to_dict() == b.to_dict()
    assert chunked.per_layer == pytest.approx(a.per_layer, rel=1e-12)
    assert a.total != c.total
    random = trace_of(op, method=method, num_matvecs=12, probes=probes, seed=None)
    assert random.seed is not None
    assert trace_of(op, method=method, num_matvecs=12, probes=probes, seed=random.seed).total == random.total


def test_trace_result_is_json_ready(mixed):
    result = trace_of(MatrixOperator(mixed, GROUPS), method="hutch++", num_matvecs=9)
    record = json.loads(json.dumps(result.to_dict()))
    assert record["per_layer"] == result.per_layer and record["method"] == "hutch++" and record["probes"] == "full"
    single = trace_of(MatrixOperator(mixed, GROUPS), num_matvecs=1)
    assert single.stderr is None and all(v is None for v in single.per_layer_stderr.values())
    assert single.num_matvecs == 1
    json.dumps(single.to_dict())


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "girard"}, "method must be one of"),
    ({"method": "hutch++", "num_matvecs": 2}, "num_matvecs must be an integer >= 3"),
    ({"num_matvecs": 0}, "num_matvecs must be an integer >= 1"),
    ({"num_matvecs": 2.5}, "num_matvecs"),
    ({"num_matvecs": True}, "num_matvecs"),
    ({"per_layer": "yes"}, "per_layer"),
    ({"probes": "layer"}, "probes must be one of"),
    ({"chunk_size": 0}, "chunk_size"),
])
def test_trace_rejects_bad_arguments(mixed, kwargs, message):
    with pytest.raises(ValueError, match=message):
        trace_of(MatrixOperator(mixed), **kwargs)


def test_trace_on_float32_operator(mixed):
    op = MatrixOperator(mixed.float(), GROUPS, check=False)
    exact = block_traces(mixed, GROUPS)
    result = trace_of(op, method="hutch++", num_matvecs=60, seed=0)
    assert abs(result.total - float(mixed.trace())) <= 4 * result.stderr + 1e-3
    for name in GROUPS:
        assert abs(result.per_layer[name] - exact[name]) <= 4 * result.per_layer_stderr[name] + 1e-3


# ------------------------------------------------------------------------------------------------ data


@pytest.fixture
def matrix_batches(monkeypatch, mixed):
    """Batches are matrices: the public functions then build MatrixOperator(loss_fn(batch))."""
    monkeypatch.setattr(est, "_make_operator", lambda model, loss_fn, **_: MatrixOperator(loss_fn(), GROUPS))
    return [mixed, 2.0 * mixed, 0.5 * mixed]


def test_trace_over_data_splits_the_budget(matrix_batches):
    model = torch.nn.Module()
    results = {reduce: est.trace(model, lambda batch: batch, method="hutch++", num_matvecs=91, data=matrix_batches,
                                 reduce=reduce, seed=2) for reduce in ("mean", "max")}
    singles = []
    gen = torch.Generator().manual_seed(2)
    for batch, share in zip(matrix_batches, (31, 30, 30)):  # 91 products: 31 + 30 + 30, from one generator
        singles.append(trace_of(MatrixOperator(batch, GROUPS), method="hutch++", num_matvecs=share, generator=gen))
    mean, largest = results["mean"], results["max"]
    assert mean.num_batches == 3 and mean.reduce == "mean" and mean.num_matvecs == 91
    assert mean.total == pytest.approx(sum(s.total for s in singles) / 3)
    assert mean.stderr == pytest.approx(math.sqrt(sum(s.stderr ** 2 for s in singles)) / 3)
    assert largest.total == pytest.approx(singles[1].total) and largest.stderr == pytest.approx(singles[1].stderr)
    for name in GROUPS:
        assert mean.per_layer[name] == pytest.approx(sum(s.per_layer[name] for s in singles) / 3)
        assert largest.per_layer[name] == max(s.per_layer[name] for s in singles)
    exact = float(matrix_batches[1].trace())
    assert abs(largest.total - exact) <= 4 * largest.stderr
    with pytest.raises(ValueError, match=r"num_matvecs=8 is too small for 3 batches.*at least 3 products per batch"):
        est.trace(model, lambda batch: batch, method="hutch++", num_matvecs=8, data=matrix_batches)
    with pytest.raises(ValueError, match=r"too small for 3 batches.*probes='block' on 3 groups"):
        est.trace(model, lambda batch: batch, num_matvecs=8, probes="block", data=matrix_batches)
    with pytest.raises(ValueError, match="reduce must be one of"):
        est.trace(model, lambda batch: batch, data=matrix_batches, reduce="median")


def test_trace_over_a_generator_of_batches(matrix_batches):
    model = torch.nn.Module()
    listed = est.trace(model, lambda batch: batch, num_matvecs=30, data=matrix_batches, seed=1)
    generated = est.trace(model, lambda batch: batch, num_matvecs=30, data=(b for b in matrix_batches), seed=1)
    assert generated.to_dict() == listed.to_dict() and generated.num_matvecs == 30


# ------------------------------------------------------------------------------------------------ real models


@pytest.fixture(scope="module")
def mlp():
    return tiny_mlp()


def _layer_traces(h: torch.Tensor) -> dict[str, float]:
    return {"0": float(h[:30, :30].trace()), "2": float(h[30:, 30:].trace())}


def test_model_trace_matches_dense_hessian(mlp):
    model, loss_fn, batches = mlp
    h = dense_hessian(model, *batches[0])
    exact = _layer_traces(h)
    # Hutch++ with 153 = 3 * 51 products: the sketch spans all 51 dimensions, 51 + 51 products resolve it exactly
    resolved = trace(model, lambda: loss_fn(batches[0]), method="hutch++", num_matvecs=153)
    assert resolved.per_layer == pytest.approx(exact, abs=1e-10) and resolved.stderr == 0.0
    assert resolved.num_matvecs == 102
    sampled = trace(model, lambda: loss_fn(batches[0]), num_matvecs=100, seed=1)
    for name, value in sampled.per_layer.items():
        assert abs(value - exact[name]) <= 4 * sampled.per_layer_stderr[name]
    assert abs(sampled.total - float(h.trace())) <= 4 * sampled.stderr
    assert sampled.num_matvecs == 100
    block = trace(model, lambda: loss_fn(batches[0]), num_matvecs=100, probes="block", seed=1)
    for name, value in block.per_layer.items():
        assert abs(value - exact[name]) <= 4 * block.per_layer_stderr[name]
    assert block.num_matvecs == 100


def test_model_trace_over_data(mlp):
    model, loss_fn, batches = mlp
    exact = [_layer_traces(dense_hessian(model, *batch)) for batch in batches]
    for reduce, pick in (("max", max), ("mean", lambda v: sum(v) / len(v))):
        result = trace(model, loss_fn, method="hutch++", num_matvecs=3 * 153, data=batches, reduce=reduce)
        assert result.num_batches == 3 and result.num_matvecs == 3 * 102
        for name in ("0", "2"):
            assert result.per_layer[name] == pytest.approx(pick([e[name] for e in exact]), abs=1e-10)
        assert result.total == pytest.approx(pick([sum(e.values()) for e in exact]), abs=1e-10)


def test_model_with_decaying_spectrum_hutch_plus_plus_halves_the_matvecs():
    """Least squares on rotated features with scales j^-1: the Hessian 2 X^T X / n has eigenvalues ~ j^-2."""
    gen = torch.Generator().manual_seed(4)
    d, n = 120, 1000
    rotation = torch.linalg.qr(torch.randn(d, d, dtype=F64, generator=gen)).Q
    x = torch.randn(n, d, dtype=F64, generator=gen) * torch.arange(1, d + 1, dtype=F64) ** -1.0 @ rotation
    y = torch.randn(n, dtype=F64, generator=gen)
    model = torch.nn.Linear(d, 1, bias=False).double()
    op = HessianOperator(model, lambda: ((model(x)[:, 0] - y) ** 2).mean())
    exact = float(2 * (x.T @ x).trace() / n)  # Hessian of the mean squared error: 2 X^T X / n

    def rms(method: str, m: int) -> float:
        errors = [(trace_of(op, method=method, num_matvecs=m, per_layer=False, seed=s).total - exact) / exact
                  for s in range(10)]
        return math.sqrt(sum(e * e for e in errors) / len(errors))

    m_star = next(m for m in (3 * 2 ** j for j in range(6)) if rms("hutch++", m) <= 0.01)
    assert rms("hutchinson", 2 * m_star) > 0.01
