"""Extreme eigenvalues (block Lanczos) and the spectral density (stochastic Lanczos quadrature) of an operator."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from ..arguments import check_choice, check_float, check_int
from .lanczos import WHICH, lanczos_eigsh, lanczos_tridiagonal
from .probes import F64, OperatorLike, make_generator, rademacher
from .results import SpectralDensity

__all__ = ["DEFAULT_ITERATIONS", "eigen_budget", "eigenvalues_of", "spectral_density_of"]

DEFAULT_ITERATIONS = 100  # block iterations when no num_matvecs is given


def matmat64(op: OperatorLike) -> Callable[[Tensor], Tensor]:
    def apply(vectors: Tensor) -> Tensor:
        return op.matmat(vectors.to(op.dtype)).to(F64)
    return apply


def machine_eps(op: OperatorLike) -> float:
    return float(torch.finfo(op.dtype).eps) if op.dtype.is_floating_point else float(torch.finfo(F64).eps)


def eigen_budget(k: int, block_size: int | None, num_matvecs: int | None, max_iter: int | None,
                 dim: int | None = None, *, stacklevel: int = 3) -> tuple[int, int]:
    """``(block size p, iterations)`` for a Lanczos budget of at most ``num_matvecs`` products (default
    ``100 p``); ``max_iter`` (deprecated: iterations of ``p`` products) is converted to ``max_iter * p``."""
    check_int("k", k, minimum=1)
    if block_size is not None:
        check_int("block_size", block_size, minimum=1)
    p = k if block_size is None else block_size
    if dim is not None:
        p = min(p, dim)
    if max_iter is not None:
        if num_matvecs is not None:
            raise ValueError("give num_matvecs (the total number of products) or the deprecated max_iter, not both")
        check_int("max_iter", max_iter, minimum=1)
        warnings.warn("'max_iter' is deprecated and will be removed in the next release; use 'num_matvecs', the "
                      f"total number of products (max_iter={max_iter} iterations of {p} products = "
                      f"num_matvecs={max_iter * p})", DeprecationWarning, stacklevel=stacklevel)
        num_matvecs = max_iter * p
    if num_matvecs is None:
        return p, DEFAULT_ITERATIONS
    check_int("num_matvecs", num_matvecs, minimum=p)
    return p, num_matvecs // p


def eigenvalues_of(op: OperatorLike, *, k: int = 1, which: str = "largest", tol: float = 1e-4,
                   num_matvecs: int | None = None, block_size: int | None = None, seed: int | None = 0,
                   generator: torch.Generator | None = None, return_eigenvectors: bool = False,
                   max_iter: int | None = None) -> Tensor | tuple[Tensor, Tensor]:
    """The ``k`` extreme eigenvalues of ``H`` by block Lanczos with full reorthogonalisation (float64).

    ``which="largest"``: algebraically largest, sorted decreasingly; ``"smallest"``: algebraically smallest
    (most negative), sorted increasingly; ``"largest_magnitude"``: decreasing ``|lambda|``. Converged when every wanted
    Ritz pair has residual ``||H y - theta y|| <= tol * max(|theta|, sqrt(eps) ||H||)``, which bounds the distance
    from ``theta`` to an eigenvalue by the same amount. Each iteration costs at most ``block_size`` (default ``k``)
    products; ``num_matvecs`` caps the total (default ``100 * block_size``; a ``RuntimeWarning`` when it is spent
    before convergence). The products performed are counted by the operator (``op.num_matvecs``). Returns a float64
    CPU tensor ``[k]`` (and, with ``return_eigenvectors``, unit eigenvectors ``[k, d]`` on the operator's device).
    ``max_iter`` (iterations) is deprecated: use ``num_matvecs = max_iter * block_size``.
    """
    p, iterations = eigen_budget(k, block_size, num_matvecs, max_iter, op.dim)
    if k > op.dim:
        raise ValueError(f"k={k} exceeds the dimension {op.dim} of the Hessian")
    check_choice("which", which, WHICH)
    tol = check_float("tol", tol, minimum=0.0, open_min=True)
    gen = make_generator(op, seed, generator)
    values, vectors, _ = lanczos_eigsh(matmat64(op), op.dim, k, which=which, tol=tol, max_iter=iterations,
                                       block_size=p, generator=gen, device=op.device, eps=machine_eps(op),
                                       return_eigenvectors=return_eigenvectors)
    values = values.cpu()
    return (values, vectors) if return_eigenvectors else values


def density(nodes: Tensor, weights: Tensor, *, grid_size: int, sigma: float | None,
            grid_range: tuple[float, float] | None) -> tuple[Tensor, Tensor, float]:
    """Gaussian-broadened quadrature ``(1/R) sum tau N(t; theta, sigma^2)`` on a grid, trapezoid-normalised to 1."""
    live = nodes[weights > 0]
    if live.numel() == 0:
        live = nodes.flatten()
    lo, hi = float(live.min()), float(live.max())
    if sigma is None:
        width = hi - lo
        sigma = 0.01 * (width if width > 0 else max(abs(lo), abs(hi), 1.0))
    sigma = check_float("sigma", sigma, minimum=0.0, open_min=True)
    if grid_range is None:
        grid_range = (lo - 5 * sigma, hi + 5 * sigma)
    a, b = (float(x) for x in grid_range)
    if not b > a:
        raise ValueError(f"grid_range must be increasing, got {grid_range}")
    grid = torch.linspace(a, b, grid_size, dtype=F64)
    t, w = nodes.flatten().cpu(), weights.flatten().cpu() / nodes.shape[0]
    values = torch.zeros(grid_size, dtype=F64)
    for begin in range(0, t.numel(), 256):  # bounded memory: [grid, 256]
        z = (grid[:, None] - t[None, begin:begin + 256]) / sigma
        values += (torch.exp(-0.5 * z * z) * w[None, begin:begin + 256]).sum(dim=1)
    values /= sigma * math.sqrt(2 * math.pi)
    area = float(torch.trapezoid(values, grid))
    if area > 0:
        values /= area
    return grid, values, float(sigma)


def slq(op: OperatorLike, num_runs: int, num_steps: int, gen: torch.Generator, reorthogonalize: bool,
        chunk_size: int | None) -> tuple[Tensor, Tensor, int]:
    """Quadrature nodes and weights of ``num_runs`` Lanczos runs, and the products performed."""
    nodes, weights, used = [], [], 0
    step = num_runs if not chunk_size else chunk_size
    for begin in range(0, num_runs, step):
        count = min(step, num_runs - begin)
        start = rademacher(count, op.dim, gen, op.device)  # normalised inside: q_1 = z / sqrt(d)
        tri = lanczos_tridiagonal(matmat64(op), start, num_steps, reorthogonalize=reorthogonalize,
                                  breakdown_tol=10 * machine_eps(op))
        theta, tau = tri.ritz()
        nodes.append(theta.cpu())
        weights.append(tau.cpu())
        used += tri.num_matvecs
    return torch.cat(nodes), torch.cat(weights), used


def check_slq(num_runs: int, num_steps: int, grid_size: int, chunk_size: int | None) -> None:
    check_int("num_runs", num_runs, minimum=1)
    check_int("num_steps", num_steps, minimum=1)
    check_int("grid_size", grid_size, minimum=2)
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, minimum=1)


def spectral_density_of(op: OperatorLike, *, num_runs: int = 10, num_steps: int = 80, grid_size: int = 1000,
                        sigma: float | None = None, grid_range: tuple[float, float] | None = None,
                        seed: int | None = 0, generator: torch.Generator | None = None,
                        reorthogonalize: bool = True, chunk_size: int | None = None) -> SpectralDensity:
    """Stochastic Lanczos quadrature (Lin, Saad & Yang 2016; Ghorbani, Krishnan & Xiao 2019).

    ``num_runs`` Lanczos runs of ``num_steps`` steps (at most ``d``) from normalised Rademacher vectors
    ``q_1 = z / sqrt(d)`` give Gauss quadratures ``sum_j tau_j f(theta_j) = q_1^T f(H) q_1`` (exact for polynomials
    of degree ``< 2 num_steps``), whose mean over runs is unbiased for ``Tr f(H) / d``. The density is their
    Gaussian broadening with width ``sigma`` (default 1% of the Ritz value range) on ``grid_size`` points spanning
    ``grid_range`` (default ``[min theta - 5 sigma, max theta + 5 sigma]``). Cost: at most ``num_runs * num_steps``
    products (a run whose Krylov space becomes invariant stops early); ``SpectralDensity.num_matvecs`` is the
    number performed. The runs advance together (``chunk_size`` runs per ``matmat``); full reorthogonalisation keeps
    ``chunk_size * num_steps * d`` float64 numbers.
    """
    check_slq(num_runs, num_steps, grid_size, chunk_size)
    gen = make_generator(op, seed, generator)
    nodes, weights, used = slq(op, num_runs, num_steps, gen, reorthogonalize, chunk_size)
    grid, values, sigma = density(nodes, weights, grid_size=grid_size, sigma=sigma, grid_range=grid_range)
    return SpectralDensity(grid=grid, density=values, nodes=nodes, weights=weights, sigma=sigma, dim=op.dim,
                           num_matvecs=used, seed=gen.initial_seed())
