"""Eigenvalues, spectral densities and quadratic forms against exact answers on explicit matrices and small models
(traces: tests/test_hessian_traces.py).

Matrices have known spectra ``H = U diag(lam) U^T`` with a random orthogonal ``U`` and are split into named
blocks ("layers") by :class:`gnnbench.hessian.matrix.MatrixOperator`.
"""

from __future__ import annotations

import functools
import json
import warnings

import pytest
import torch

from gnnbench.hessian import estimators as est
from gnnbench.hessian.estimators import eigenvalues_of, quadratic_form_of, spectral_density_of
from gnnbench.hessian.lanczos import lanczos_eigsh, lanczos_tridiagonal
from gnnbench.hessian.matrix import MatrixGroup, MatrixOperator
from hessian_references import dense_hessian, spectral_matrix, tiny_mlp

F64 = torch.float64
GROUPS = {"conv.0": 12, "conv.1": 30, "head": 18}


@pytest.fixture(scope="module")
def mixed() -> torch.Tensor:
    """60 x 60, eigenvalues in [1, 3] plus a few negative ones (an indefinite Hessian)."""
    gen = torch.Generator().manual_seed(5)
    lam = torch.cat([torch.tensor([-0.5, -0.2], dtype=F64), 1 + 2 * torch.rand(58, dtype=F64, generator=gen)])
    return spectral_matrix(lam, seed=1)


# ------------------------------------------------------------------------------------------------ MatrixOperator


def test_matrix_operator_groups_and_counting(mixed):
    op = MatrixOperator(mixed, GROUPS)
    assert [(g.name, g.start, g.stop, g.size) for g in op.groups] == [
        ("conv.0", 0, 12, 12), ("conv.1", 12, 42, 30), ("head", 42, 60, 18)]
    v = torch.randn(3, 60, dtype=F64)
    torch.testing.assert_close(op.matmat(v), v @ mixed)
    torch.testing.assert_close(op.matvec(v[0]), mixed @ v[0])
    assert op.num_matvecs == 4 and op.dim == 60 and op.dtype == F64
    assert MatrixOperator(mixed).groups == (MatrixGroup("all", 0, 60),)
    assert MatrixOperator(mixed, [("a", 50), ("b", 10)]).groups[1] == MatrixGroup("b", 50, 60)


@pytest.mark.parametrize("matrix, groups, message", [
    (torch.zeros(3, 4), None, "square"),
    (torch.tensor([[1.0, 2.0], [0.0, 1.0]]), None, "symmetric"),
    (torch.eye(4), {"a": 3}, "cover"),
    (torch.eye(4), {"a": 0, "b": 4}, "positive size"),
    (torch.eye(4), [MatrixGroup("a", 0, 2), MatrixGroup("b", 3, 4)], "consecutive"),
])
def test_matrix_operator_rejects_bad_input(matrix, groups, message):
    with pytest.raises(ValueError, match=message):
        MatrixOperator(matrix, groups)


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "girard"}, "method must be one of"),
    ({"method": "hutch++", "num_matvecs": 2}, "num_matvecs must be an integer >= 3"),
    ({"num_matvecs": 0}, "num_matvecs must be an integer >= 1"),
    ({"num_matvecs": 2.5}, "num_matvecs"),
    ({"per_layer": "yes"}, "per_layer"),
    ({"chunk_size": 0}, "chunk_size"),
])
# ------------------------------------------------------------------------------------------------ eigenvalues


def _eigen_cases() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    d = 300
    return {
        "gaussian": torch.randn(d, dtype=F64, generator=gen),
        "outliers": torch.cat([torch.tensor([50.0, 20, 10, -8, -4], dtype=F64),
                               0.5 * torch.randn(d - 5, dtype=F64, generator=gen)]),
        "clustered": torch.cat([torch.tensor([10, 10.001, 10.002, 9.999, -5, -5.0005, -5.001, -4.999], dtype=F64),
                                4 * torch.rand(d - 8, dtype=F64, generator=gen) - 2]),
        "repeated": torch.cat([torch.tensor([7.0, 7, 7, 3, -6, -6, -6], dtype=F64),
                               4 * torch.rand(d - 7, dtype=F64, generator=gen) - 2]),
    }


@pytest.fixture(scope="module")
def eigen_matrices() -> dict[str, torch.Tensor]:
    return {name: spectral_matrix(lam, seed=3) for name, lam in _eigen_cases().items()}


@pytest.mark.parametrize("case", list(_eigen_cases()))
@pytest.mark.parametrize("which", ["largest", "smallest"])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_eigenvalues_match_eigvalsh(eigen_matrices, case, which, k):
    h = eigen_matrices[case]
    exact = torch.linalg.eigvalsh(h)
    reference = exact.flip(0)[:k] if which == "largest" else exact[:k]
    op = MatrixOperator(h, {"a": 100, "b": 200})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # must converge
        values = eigenvalues_of(op, k=k, which=which, seed=k)
    assert values.dim() == 1 and values.dtype == F64 and values.shape == (k,)
    torch.testing.assert_close(values, reference, rtol=1e-3, atol=0)
    assert op.num_matvecs < 300 * 0.7 * k  # converged before the Krylov space filled up


def test_eigenvalues_order_and_magnitude(eigen_matrices):
    op = MatrixOperator(eigen_matrices["outliers"])
    largest = eigenvalues_of(op, k=4)
    smallest = eigenvalues_of(op, k=4, which="smallest")
    magnitude = eigenvalues_of(op, k=4, which="largest_magnitude")
    assert torch.all(largest[:-1] >= largest[1:]) and torch.all(smallest[:-1] <= smallest[1:])
    torch.testing.assert_close(magnitude, torch.tensor([50.0, 20, 10, -8], dtype=F64), rtol=1e-3, atol=0)


def test_eigenvectors_are_eigenvectors(eigen_matrices):
    h = eigen_matrices["outliers"]
    values, vectors = eigenvalues_of(MatrixOperator(h), k=3, return_eigenvectors=True)
    assert vectors.shape == (3, 300)
    torch.testing.assert_close(vectors @ vectors.T, torch.eye(3, dtype=F64), atol=1e-8, rtol=0)
    residual = (vectors @ h - values[:, None] * vectors).norm(dim=1)
    assert float(residual.max()) <= 1e-4 * float(values.abs().max())


def test_eigenvalues_small_matrix_is_exact():
    lam = torch.tensor([3.0, 3.0, 1.0, -2.0, 0.5], dtype=F64)
    h = spectral_matrix(lam)
    values = eigenvalues_of(MatrixOperator(h), k=5, block_size=1)  # restarts find the repeated 3
    torch.testing.assert_close(values, lam.sort(descending=True).values, atol=1e-10, rtol=0)


def test_eigenvalues_reproducible_and_float32(eigen_matrices):
    h = eigen_matrices["gaussian"]
    a = eigenvalues_of(MatrixOperator(h), k=2, seed=4)
    b = eigenvalues_of(MatrixOperator(h), k=2, seed=4)
    assert torch.equal(a, b)
    single = eigenvalues_of(MatrixOperator(h.float(), check=False), k=2, seed=4)
    torch.testing.assert_close(single, a, rtol=1e-3, atol=0)


def test_eigenvalues_warn_without_convergence_within_the_budget(eigen_matrices):
    op = MatrixOperator(eigen_matrices["gaussian"])
    with pytest.warns(RuntimeWarning, match=r"did not converge.*\(3 matvecs\)"):
        values = eigenvalues_of(op, k=1, num_matvecs=3, tol=1e-10)
    assert values.shape == (1,) and op.num_matvecs == 3


def test_eigenvalue_budget_is_total_products_and_max_iter_is_deprecated(eigen_matrices):
    h = eigen_matrices["outliers"]
    op = MatrixOperator(h)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        eigenvalues_of(op, k=2, num_matvecs=7, tol=1e-12)  # blocks of 2: at most 3 iterations, 6 products
    assert op.num_matvecs == 6
    op = MatrixOperator(h)
    with pytest.warns(DeprecationWarning, match=r"max_iter=4 iterations of 2 products = num_matvecs=8"):
        with pytest.warns(RuntimeWarning, match="did not converge"):
            eigenvalues_of(op, k=2, max_iter=4, tol=1e-12)
    assert op.num_matvecs == 8
    with pytest.raises(ValueError, match="not both"):
        eigenvalues_of(op, k=2, max_iter=4, num_matvecs=8)
    op = MatrixOperator(h)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        top = eigenvalues_of(op, k=2, num_matvecs=300)
    assert op.num_matvecs <= 300
    torch.testing.assert_close(top, torch.tensor([50.0, 20.0], dtype=F64), rtol=1e-3, atol=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 61}, "exceeds the dimension"),
    ({"k": 0}, "k must be"),
    ({"which": "biggest"}, "which must be one of"),
    ({"tol": 0}, "tol must be"),
    ({"max_iter": 0}, "max_iter"),
    ({"num_matvecs": 0}, "num_matvecs must be an integer >= 1"),
    ({"k": 3, "num_matvecs": 2}, "num_matvecs must be an integer >= 3"),
    ({"num_matvecs": 1.5}, "num_matvecs"),
    ({"block_size": 0}, "block_size"),
])
def test_eigenvalues_reject_bad_arguments(mixed, kwargs, message):
    with pytest.raises(ValueError, match=message):
        eigenvalues_of(MatrixOperator(mixed), **kwargs)


# ------------------------------------------------------------------------------------------------ spectral density


def test_lanczos_quadrature_is_exact_for_low_degree_moments(mixed):
    """Gauss quadrature from m Lanczos steps integrates x^p exactly against q^T f(H) q for p < 2m."""
    start = torch.randn(3, 60, dtype=F64, generator=torch.Generator().manual_seed(0))
    tri = lanczos_tridiagonal(lambda v: v @ mixed, start, 6)
    nodes, weights = tri.ritz()
    q = start / start.norm(dim=1, keepdim=True)
    for p in range(12):
        exact = torch.einsum("rd,de,re->r", q, torch.linalg.matrix_power(mixed, p), q)
        torch.testing.assert_close((weights * nodes ** p).sum(dim=1), exact, rtol=1e-9, atol=1e-9)
    assert tri.num_matvecs == 18


def test_lanczos_stops_on_invariant_subspace():
    lam = torch.tensor([2.0] * 10 + [-1.0] * 10 + [0.5] * 10, dtype=F64)
    h = spectral_matrix(lam)
    tri = lanczos_tridiagonal(lambda v: v @ h, torch.randn(2, 30, dtype=F64), 20)
    assert tri.steps.tolist() == [3, 3]
    nodes, weights = tri.ritz()
    live = nodes[weights > 0].reshape(2, 3)
    torch.testing.assert_close(live, torch.tensor([[-1.0, 0.5, 2.0]] * 2, dtype=F64), atol=1e-10, rtol=0)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, dtype=F64))


@pytest.mark.parametrize("reorthogonalize", [True, False])
def test_spectral_density_moments(mixed, reorthogonalize):
    op = MatrixOperator(mixed, GROUPS)
    density = spectral_density_of(op, num_runs=40, num_steps=20, seed=1, reorthogonalize=reorthogonalize)
    assert density.nodes.shape == density.weights.shape == (40, 20)
    assert density.num_matvecs == 800 == op.num_matvecs
    exact = torch.tensor([float(torch.linalg.matrix_power(mixed, p).trace()) / 60 for p in range(5)], dtype=F64)
    moments, stderr = density.moments(4), density.moment_stderr(4)
    assert moments[0] == pytest.approx(1.0, abs=1e-12)
    assert torch.all((moments - exact).abs()[1:] <= 4 * stderr[1:])
    assert torch.allclose(moments, exact, rtol=0.1)
    # the same start vectors with the other orthogonalisation: low moments are exact either way
    other = spectral_density_of(op, num_runs=40, num_steps=20, seed=1, reorthogonalize=not reorthogonalize)
    torch.testing.assert_close(other.run_moments(4), density.run_moments(4), rtol=1e-8, atol=1e-10)


def test_spectral_density_integrates_to_one_and_covers_spectrum(mixed):
    density = spectral_density_of(MatrixOperator(mixed), num_runs=5, num_steps=30, grid_size=500)
    grid, values = density.grid, density.density
    assert grid.shape == values.shape == (500,)
    assert float(torch.trapezoid(values, grid)) == pytest.approx(1.0, abs=1e-9)
    assert torch.all(values >= 0)
    lam = torch.linalg.eigvalsh(mixed)
    assert float(grid[0]) < float(lam[0]) and float(grid[-1]) > float(lam[-1])
    assert density.sigma == pytest.approx(0.01 * float(density.nodes.max() - density.nodes.min()))
    # mass sits where the eigenvalues are: nothing in the gap (-0.2, 1)
    gap = (grid > 0.0) & (grid < 0.8)
    assert float(torch.trapezoid(values[gap], grid[gap])) < 1e-3
    record = json.loads(json.dumps(density.to_dict()))
    assert len(record["density"]) == 500
    fixed = spectral_density_of(MatrixOperator(mixed), num_runs=2, num_steps=10, grid_range=(-5, 5), sigma=0.1)
    assert float(fixed.grid[0]) == -5 and float(fixed.grid[-1]) == 5 and fixed.sigma == 0.1


def test_spectral_density_rejects_bad_arguments(mixed):
    op = MatrixOperator(mixed)
    with pytest.raises(ValueError, match="num_runs"):
        spectral_density_of(op, num_runs=0)
    with pytest.raises(ValueError, match="sigma"):
        spectral_density_of(op, num_runs=2, num_steps=4, sigma=-1.0)
    with pytest.raises(ValueError, match="grid_range"):
        spectral_density_of(op, num_runs=2, num_steps=4, grid_range=(1.0, 0.0))


# ------------------------------------------------------------------------------------------------ quadratic form


def test_quadratic_form_is_exact(mixed):
    op = MatrixOperator(mixed, GROUPS)
    v = torch.randn(60, dtype=F64)
    result = quadratic_form_of(op, v)
    assert result.stderr is None
    assert result.total == pytest.approx(float(v @ mixed @ v), rel=1e-12)
    for g in op.groups:
        block = v[g.start:g.stop]
        assert result.per_layer[g.name] == pytest.approx(float(block @ mixed[g.start:g.stop, g.start:g.stop] @ block),
                                                         rel=1e-12)
    assert result.num_matvecs == 3
    json.dumps(result.to_dict())


def test_quadratic_form_dict_direction(mixed):
    op = MatrixOperator(mixed, GROUPS)
    v = torch.randn(60, dtype=F64)
    direction = {"conv.1": v[12:42], "head": v[42:]}  # conv.0 missing -> zero
    result = quadratic_form_of(op, direction)
    w = v.clone()
    w[:12] = 0
    assert result.total == pytest.approx(float(w @ mixed @ w), rel=1e-12)
    assert result.per_layer["conv.0"] == 0.0
    assert result.num_matvecs == 2
    with pytest.raises(ValueError, match=r"direction\['head'\] has shape \(5,\)"):
        quadratic_form_of(op, {"head": torch.zeros(5)})
    with pytest.raises(KeyError, match="'conv.2'"):
        quadratic_form_of(op, {"conv.2": torch.zeros(5)})
    assert quadratic_form_of(op, {"conv.2": torch.zeros(5)}, ignore=["conv.2"]).total == 0.0
    with pytest.raises(ValueError, match=r"shape \(60,\)"):
        quadratic_form_of(op, torch.zeros(59))
    with pytest.raises(TypeError):
        quadratic_form_of(op, [1.0, 2.0])


# ------------------------------------------------------------------------------------------------ data reduction


@pytest.fixture
def matrix_batches(monkeypatch, mixed):
    """Batches are matrices: the public functions then build MatrixOperator(loss_fn(batch))."""
    monkeypatch.setattr(est, "_make_operator", lambda model, loss_fn, **_: MatrixOperator(loss_fn(), GROUPS))
    return [mixed, 2.0 * mixed, 0.5 * mixed]


def test_quadratic_form_and_eigenvalues_over_data(matrix_batches):
    model = torch.nn.Module()
    v = torch.randn(60, dtype=F64)
    forms = [float(v @ h @ v) for h in matrix_batches]
    mean = est.quadratic_form(model, lambda batch: batch, v, data=matrix_batches, reduce="mean")
    top = est.quadratic_form(model, lambda batch: batch, v, data=matrix_batches, reduce="max")
    assert mean.total == pytest.approx(sum(forms) / 3) and top.total == pytest.approx(max(forms))
    assert top.per_layer["head"] == pytest.approx(max(float(v[42:] @ h[42:, 42:] @ v[42:]) for h in matrix_batches))
    exact = torch.stack([torch.linalg.eigvalsh(h).flip(0)[:2] for h in matrix_batches])
    largest = est.eigenvalues(model, lambda batch: batch, k=2, data=matrix_batches, reduce="max")
    average = est.eigenvalues(model, lambda batch: batch, k=2, data=matrix_batches, reduce="mean")
    torch.testing.assert_close(largest, exact.max(dim=0).values, rtol=1e-3, atol=0)
    torch.testing.assert_close(average, exact.mean(dim=0), rtol=1e-3, atol=0)
    single = est.eigenvalues(model, lambda: matrix_batches[0], k=2)
    torch.testing.assert_close(single, exact[0], rtol=1e-3, atol=0)


def test_spectral_density_over_data_is_the_mixture(matrix_batches):
    model = torch.nn.Module()
    density = est.spectral_density(model, lambda batch: batch, data=matrix_batches, num_runs=10, num_steps=15)
    assert density.nodes.shape == (30, 15) and density.num_batches == 3
    exact = sum(float((h @ h).trace()) for h in matrix_batches) / (3 * 60)
    assert abs(float(density.moments(2)[2]) - exact) <= 4 * float(density.moment_stderr(2)[2])
    assert float(torch.trapezoid(density.density, density.grid)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="only reduce='mean'"):
        est.spectral_density(model, lambda batch: batch, data=matrix_batches, reduce="max")


def test_eigenvalue_budget_over_data_is_split(matrix_batches, monkeypatch):
    operators = []
    monkeypatch.setattr(est, "_make_operator",
                        lambda model, loss_fn, **_: operators.append(MatrixOperator(loss_fn(), GROUPS)) or operators[-1])
    model = torch.nn.Module()
    with pytest.warns(RuntimeWarning, match="did not converge"):
        est.eigenvalues(model, lambda batch: batch, k=2, num_matvecs=13, tol=1e-14, data=matrix_batches)
    assert [op.num_matvecs for op in operators] == [4, 4, 4]  # shares 5, 4, 4: two iterations of 2 products each
    with pytest.raises(ValueError, match=r"num_matvecs=5 is too small for 3 batches"):
        est.eigenvalues(model, lambda batch: batch, k=2, num_matvecs=5, data=matrix_batches)


def test_data_arguments_are_checked(matrix_batches):
    model = torch.nn.Module()
    with pytest.raises(ValueError, match="reduce must be one of"):
        est.eigenvalues(model, lambda batch: batch, data=matrix_batches, reduce="median")
    with pytest.raises(ValueError, match="no batches"):
        est.quadratic_form(model, lambda batch: batch, torch.zeros(60), data=[])
    with pytest.raises(ValueError, match="no batches"):
        est.trace(model, lambda batch: batch, data=iter([]))


# ------------------------------------------------------------------------------------------------ Lanczos core


def test_lanczos_eigsh_info():
    h = spectral_matrix(torch.linspace(-1, 4, 50, dtype=F64))
    values, vectors, info = lanczos_eigsh(lambda v: v @ h, 50, 2, max_iter=200)
    assert info.converged and vectors is None and info.num_matvecs == 2 * info.iterations
    torch.testing.assert_close(values, torch.tensor([4.0, 4 - 5 / 49], dtype=F64), rtol=1e-6, atol=0)


# ------------------------------------------------------------------------------------------------ real models


@pytest.fixture(scope="module")
def mlp():
    return tiny_mlp()


class _Layout:
    """The operator's flat layout for this Sequential: groups "0" (30 entries) and "2" (21), parameters in
    named_parameters order."""

    def __init__(self, model):
        self.parameter_names = [name for name, _ in model.named_parameters()]
        self.groups = [MatrixGroup("0", 0, 30), MatrixGroup("2", 30, 51)]


def _dense(model, loss_fn, batch):
    """The operator layout and the dense Hessian by torch.autograd.functional.hessian (independent of HessianOperator)."""
    return _Layout(model), dense_hessian(model, *batch)


def test_model_eigenvalues_match_dense_hessian(mlp):
    model, loss_fn, batches = mlp
    _, h = _dense(model, loss_fn, batches[0])
    exact = torch.linalg.eigvalsh(h)
    closure = functools.partial(loss_fn, batches[0])
    torch.testing.assert_close(est.eigenvalues(model, closure, k=3), exact.flip(0)[:3], rtol=1e-3, atol=0)
    torch.testing.assert_close(est.eigenvalues(model, closure, k=2, which="smallest"), exact[:2], rtol=1e-3, atol=0)
    tops = torch.stack([torch.linalg.eigvalsh(_dense(model, loss_fn, b)[1])[-1] for b in batches])
    torch.testing.assert_close(est.eigenvalues(model, loss_fn, data=batches, reduce="max"), tops.max()[None],
                               rtol=1e-3, atol=0)


def test_model_quadratic_form_matches_dense_hessian(mlp):
    model, loss_fn, batches = mlp
    gen = torch.Generator().manual_seed(3)
    direction = {name: torch.randn(p.shape, dtype=F64, generator=gen) for name, p in model.named_parameters()}
    op, h = _dense(model, loss_fn, batches[0])
    v = torch.cat([direction[name].reshape(-1) for name in op.parameter_names])
    result = est.quadratic_form(model, functools.partial(loss_fn, batches[0]), direction)
    assert result.total == pytest.approx(float(v @ h @ v), rel=1e-10)
    for g in op.groups:
        block = v[g.start:g.stop]
        assert result.per_layer[g.name] == pytest.approx(float(block @ h[g.start:g.stop, g.start:g.stop] @ block),
                                                         rel=1e-10)
    # restricted to the last layer: the other parameters of the direction are ignored
    last = est.quadratic_form(model, functools.partial(loss_fn, batches[0]), direction, parameters=["2"])
    assert list(last.per_layer) == ["2"] and last.total == pytest.approx(result.per_layer["2"], rel=1e-10)
    with pytest.raises(ValueError, match=r"direction\['2.bias'\] has shape"):
        est.quadratic_form(model, functools.partial(loss_fn, batches[0]), {"2.bias": torch.zeros(4)})
    with pytest.raises(KeyError, match="'3.weight'"):
        est.quadratic_form(model, functools.partial(loss_fn, batches[0]), {"3.weight": torch.zeros(4)})
    largest = est.quadratic_form(model, loss_fn, direction, data=batches, reduce="max")
    forms = []
    for batch in batches:
        _, hb = _dense(model, loss_fn, batch)
        forms.append(float(v @ hb @ v))
    assert largest.total == pytest.approx(max(forms), rel=1e-10)


def test_model_spectral_density_moments(mlp):
    model, loss_fn, batches = mlp
    _, h = _dense(model, loss_fn, batches[0])
    density = est.spectral_density(model, functools.partial(loss_fn, batches[0]), num_runs=30, num_steps=10, seed=0)
    assert density.dim == 51 and density.num_matvecs == 300
    exact = torch.tensor([float(torch.linalg.matrix_power(h, p).trace()) / 51 for p in range(5)], dtype=F64)
    moments, stderr = density.moments(4), density.moment_stderr(4)
    assert torch.all((moments - exact).abs() <= 4 * stderr + 1e-12)
    assert float(torch.trapezoid(density.density, density.grid)) == pytest.approx(1.0)

