"""Lanczos cores for :mod:`gnnbench.hessian.estimators` (float64, full reorthogonalisation).

Both work on a symmetric operator given as ``matmat``: a function mapping a float64 ``[k, d]`` block of row
vectors ``V`` to ``V H`` (= ``(H V^T)^T``, ``[k, d]``, float64).

* :func:`lanczos_tridiagonal` runs ``r`` independent Lanczos recurrences side by side (one ``matmat`` of ``r`` rows
  per step) and returns the tridiagonal matrices ``T = Q^T H Q``; :meth:`LanczosTridiagonal.ritz` turns them into
  Gauss quadrature nodes ``theta_j`` and weights ``tau_j = (e_1^T s_j)^2`` (stochastic Lanczos quadrature).
* :func:`lanczos_eigsh` computes a few extreme eigenvalues with block Lanczos (block size ``p``), restarting with
  fresh random directions when the Krylov space becomes invariant, until the residual bound of each wanted Ritz pair
  ``||H y_j - theta_j y_j|| = ||B_m S_{m,j}||`` drops below ``tol * max(|theta_j|, sqrt(eps) ||H||)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..arguments import check_choice, check_float, check_int

MatMat = Callable[[Tensor], Tensor]

WHICH = ("largest", "smallest", "largest_magnitude")


@dataclass
class LanczosTridiagonal:
    """``r`` Lanczos tridiagonals: ``alpha`` ``[r, m]`` (diagonals), ``beta`` ``[r, m - 1]`` (off-diagonals) and
    ``steps`` ``[r]``, the number of steps each run made before its Krylov space became invariant (``beta = 0``);
    entries past ``steps`` are padding."""

    alpha: Tensor
    beta: Tensor
    steps: Tensor
    num_matvecs: int

    def matrices(self) -> list[Tensor]:
        """The tridiagonal ``T`` of each run, ``[steps_i, steps_i]``."""
        out = []
        for a, b, s in zip(self.alpha, self.beta, self.steps.tolist()):
            out.append(torch.diag(a[:s]) + torch.diag(b[: s - 1], 1) + torch.diag(b[: s - 1], -1))
        return out

    def ritz(self) -> tuple[Tensor, Tensor]:
        """Gauss quadrature nodes and weights, each ``[r, m]``: ``theta`` = eigenvalues of ``T`` and ``tau`` = squared
        first components of its eigenvectors, so ``sum_j tau_j f(theta_j) ~ q_1^T f(H) q_1`` (exact for polynomials
        of degree ``< 2 m``). Padding (runs that stopped early) has weight 0."""
        r, m = self.alpha.shape
        nodes = torch.zeros(r, m, dtype=torch.float64, device=self.alpha.device)
        weights = torch.zeros_like(nodes)
        for i, t in enumerate(self.matrices()):
            theta, vectors = torch.linalg.eigh(t)
            s = theta.shape[0]
            nodes[i, :s], weights[i, :s] = theta, vectors[0] ** 2
            nodes[i, s:] = theta[-1] if s else 0.0
        return nodes, weights


def lanczos_tridiagonal(matmat: MatMat, v0: Tensor, num_steps: int, *, reorthogonalize: bool = True,
                        breakdown_tol: float = 1e-12) -> LanczosTridiagonal:
    """Run ``r = v0.shape[0]`` independent Lanczos recurrences from the rows of ``v0`` (``[r, d]``, normalised here).

    Step ``j``: ``w = H q_j - beta_{j-1} q_{j-1}``, ``alpha_j = q_j^T w``, ``w -= alpha_j q_j`` (then, with
    ``reorthogonalize``, ``w -= Q_j (Q_j^T w)`` twice), ``beta_j = ||w||``, ``q_{j+1} = w / beta_j``. A run stops when
    ``beta_j <= breakdown_tol * ||T||`` (its Krylov space is invariant; its quadrature is then exact).
    Full reorthogonalisation stores the basis: ``r * m * d`` float64 numbers.
    """
    if v0.dim() != 2:
        raise ValueError(f"v0 must be [runs, d], got shape {tuple(v0.shape)}")
    r, d = v0.shape
    m = min(check_int("num_steps", num_steps, minimum=1), max(d, 1))
    v = v0.to(torch.float64)
    norms = v.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError("Lanczos start vectors must be nonzero")
    q = v / norms
    dev = v.device
    alpha = torch.zeros(r, m, dtype=torch.float64, device=dev)
    beta = torch.zeros(r, max(m - 1, 0), dtype=torch.float64, device=dev)
    steps = torch.full((r,), m, dtype=torch.long)
    basis = torch.zeros(r, m, d, dtype=torch.float64, device=dev) if reorthogonalize else None
    if basis is not None:
        basis[:, 0] = q
    q_prev = torch.zeros_like(q)
    b_prev = torch.zeros(r, dtype=torch.float64, device=dev)
    anorm = torch.zeros(r, dtype=torch.float64, device=dev)
    active = torch.ones(r, dtype=torch.bool, device=dev)
    num_matvecs = 0
    for j in range(m):
        rows = active.nonzero().flatten()
        w = torch.zeros_like(q)
        w[rows] = matmat(q[rows])
        num_matvecs += int(rows.numel())
        a = (q * w).sum(dim=1)
        alpha[:, j] = torch.where(active, a, alpha[:, 0])
        if j == m - 1:
            break
        w = w - a[:, None] * q - b_prev[:, None] * q_prev
        if basis is not None:
            known = basis[:, : j + 1]
            for _ in range(2):
                w = w - torch.einsum("rkd,rk->rd", known, torch.einsum("rkd,rd->rk", known, w))
        b = w.norm(dim=1)
        anorm = torch.maximum(anorm, a.abs() + b + b_prev)
        stopped = active & (b <= breakdown_tol * anorm)
        steps[stopped.cpu()] = j + 1
        active = active & ~stopped
        b = torch.where(active, b, torch.zeros_like(b))
        beta[:, j] = b
        q_prev, q = q, torch.where(active[:, None], w / b.clamp_min(torch.finfo(torch.float64).tiny)[:, None],
                                   torch.zeros_like(w))
        b_prev = b
        if basis is not None:
            basis[:, j + 1] = q
        if not bool(active.any()):
            break
    return LanczosTridiagonal(alpha=alpha, beta=beta, steps=steps, num_matvecs=num_matvecs)


@dataclass
class EigshInfo:
    """Diagnostics of :func:`lanczos_eigsh`."""

    converged: bool
    iterations: int
    num_matvecs: int
    basis_size: int
    residuals: list[float] = field(default_factory=list)


def _orthonormal_rows(x: Tensor) -> Tensor:
    """Orthonormal rows spanning the rows of ``x`` (``[p, d]``, ``p <= d``)."""
    return torch.linalg.qr(x.T).Q.T


def _select(theta: Tensor, k: int, which: str) -> Tensor:
    """Indices of the ``k`` wanted Ritz values, in output order."""
    if which == "largest":
        return torch.argsort(theta, descending=True)[:k]
    if which == "smallest":
        return torch.argsort(theta)[:k]
    return torch.argsort(theta.abs(), descending=True)[:k]


def lanczos_eigsh(matmat: MatMat, dim: int, k: int, *, which: str = "largest", tol: float = 1e-4,
                  max_iter: int = 100, block_size: int | None = None, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None, eps: float = torch.finfo(torch.float64).eps,
                  return_eigenvectors: bool = False) -> tuple[Tensor, Tensor | None, EigshInfo]:
    """``k`` extreme eigenvalues of a symmetric ``dim x dim`` operator by block Lanczos with full reorthogonalisation.

    ``which``: ``"largest"`` (algebraically largest, returned in decreasing order), ``"smallest"`` (algebraically
    smallest, increasing) or ``"largest_magnitude"`` (decreasing ``|lambda|``). ``block_size`` ``p`` (default ``k``)
    resolves eigenvalues of multiplicity up to ``p``; each iteration costs ``p`` matvecs. Directions whose new
    Lanczos vector vanishes (an invariant subspace) are replaced by random vectors orthogonal to the basis, so the
    method also finds further copies of repeated eigenvalues. Stops when all wanted Ritz pairs satisfy
    ``||B_m S_{m,j}|| <= tol * max(|theta_j|, sqrt(eps) * ||T||)`` (``eps``: the operator's machine precision), when
    the basis spans the whole space (the Ritz values are then exact), or after ``max_iter`` iterations (with a
    ``RuntimeWarning``). Returns ``(values [k], vectors [k, dim] or None, info)``, float64.
    """
    check_choice("which", which, WHICH)
    k = check_int("k", k, minimum=1, maximum=dim)
    tol = check_float("tol", tol, minimum=0.0, open_min=True)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    p = min(dim, k if block_size is None else check_int("block_size", block_size, minimum=1))
    f64 = torch.float64
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")

    def randn(n: int) -> Tensor:
        source = generator.device if generator is not None else device
        return torch.randn(n, dim, generator=generator, dtype=f64, device=source).to(device)

    capacity = min(dim, max_iter * p)
    basis = torch.zeros(capacity, dim, dtype=f64, device=device)
    tmat = torch.zeros(capacity, capacity, dtype=f64, device=device)
    block = _orthonormal_rows(randn(p))
    n = 0
    anorm = 0.0
    floor = math.sqrt(eps)
    num_matvecs = 0
    converged = False
    iterations = 0
    theta = svec = wanted = resid = None
    while True:
        iterations += 1
        pj = block.shape[0]
        basis[n:n + pj] = block
        w = matmat(block)
        num_matvecs += pj
        a = block @ w.T
        tmat[n:n + pj, n:n + pj] = (a + a.T) / 2
        known = basis[:n + pj]
        for _ in range(2):
            w = w - (w @ known.T) @ known
        n += pj
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        theta, svec = torch.linalg.eigh(tmat[:n, :n])
        anorm = max(anorm, float(theta.abs().max()), float(s.max()) if s.numel() else 0.0)
        keep = s > max(eps, 1e-14) * 10 * max(anorm, torch.finfo(f64).tiny)
        keep[min(int(keep.sum()), dim - n):] = False  # never more directions than room left
        nxt = vh[keep]
        coupling = nxt @ w.T  # B_j: w^T = nxt^T B_j
        wanted = _select(theta, k, which)
        resid = (coupling @ svec[n - pj:n, wanted]).norm(dim=0) if nxt.shape[0] else torch.zeros(k, dtype=f64,
                                                                                                  device=device)
        scale = torch.clamp(theta[wanted].abs(), min=floor * anorm)
        if n >= k and bool((resid <= tol * scale).all()):
            converged = True
            break
        if n >= dim:  # the basis spans the space: the Ritz values are the eigenvalues
            converged = True
            break
        if iterations >= max_iter or n >= capacity:
            break
        fill = min(p - nxt.shape[0], capacity - n - nxt.shape[0])
        if fill > 0:
            extra = randn(fill)
            known = torch.cat([basis[:n], nxt])
            for _ in range(2):
                extra = extra - (extra @ known.T) @ known
            extra = _orthonormal_rows(extra)
            block = torch.cat([nxt, extra])
        else:
            block = nxt
        pk = nxt.shape[0]
        tmat[n:n + pk, n - pj:n] = coupling
        tmat[n - pj:n, n:n + pk] = coupling.T
    if not converged:
        warnings.warn(f"Lanczos did not converge to tol={tol} in {iterations} iterations ({num_matvecs} matvecs); "
                      f"residuals {[round(float(x), 8) for x in resid]}", RuntimeWarning, stacklevel=3)
    values = theta[wanted]
    vectors = svec[:, wanted].T @ basis[:n] if return_eigenvectors else None
    info = EigshInfo(converged=converged, iterations=iterations, num_matvecs=num_matvecs, basis_size=n,
                     residuals=[float(x) for x in resid])
    return values, vectors, info
