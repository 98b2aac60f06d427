"""What the estimators return: trace estimates, exact quadratic forms and spectral densities (JSON-ready)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["QuadraticFormResult", "SpectralDensity", "TraceResult"]

_F64 = torch.float64


@dataclass
class TraceResult:
    """A trace estimate. ``total ~ Tr(H)``; ``per_layer[name] ~ Tr(H_ii)`` (empty when ``per_layer=False``);
    ``stderr`` / ``per_layer_stderr``: standard errors of the estimates (``None`` when a single probe gives no
    sample variance; 0 where Hutch++ resolved the trace exactly). ``num_matvecs``: the Hessian-vector products
    performed (all groups and batches together); ``probes``: ``"full"`` (per-layer traces read off full-length
    probes) or ``"block"`` (probes supported on one group each)."""

    total: float
    per_layer: dict[str, float]
    stderr: float | None
    per_layer_stderr: dict[str, float | None]
    method: str
    num_matvecs: int
    seed: int | None
    reduce: str | None = None
    num_batches: int = 1
    probes: str = "full"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QuadraticFormResult:
    """Exact quadratic forms: ``total = v^T H v`` and ``per_layer[name] = v_i^T H_ii v_i`` (diagonal blocks)."""

    total: float
    per_layer: dict[str, float]
    stderr: None = None
    num_matvecs: int = 0
    reduce: str | None = None
    num_batches: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SpectralDensity:
    """Stochastic Lanczos quadrature of the spectral measure ``mu = (1/d) sum_i delta(lambda_i)``.

    ``nodes`` / ``weights`` (``[runs, steps]``): Ritz values ``theta_rj`` and weights ``tau_rj`` (squared first
    eigenvector components, summing to 1 per run; zero for padding), so that ``(1/R) sum_r sum_j tau_rj f(theta_rj)``
    estimates ``Tr f(H) / d``. ``density`` on ``grid``: ``(1/R) sum_rj tau_rj N(t; theta_rj, sigma^2)``, normalised so
    that its trapezoidal integral over ``grid`` is 1. ``num_matvecs``: the products performed.
    """

    grid: Tensor
    density: Tensor
    nodes: Tensor
    weights: Tensor
    sigma: float
    dim: int
    num_matvecs: int = 0
    seed: int | None = None
    num_batches: int = 1

    def run_moments(self, k: int) -> Tensor:
        """``[runs, k + 1]``: ``sum_j tau_rj theta_rj^p`` for ``p = 0..k`` (each unbiased for ``Tr(H^p) / d``)."""
        powers = torch.arange(k + 1, dtype=_F64, device=self.nodes.device)
        return torch.einsum("rj,rjp->rp", self.weights, self.nodes[..., None] ** powers)

    def moments(self, k: int) -> Tensor:
        """``[k + 1]``: estimates of ``Tr(H^p) / d`` for ``p = 0..k`` (the mean of :meth:`run_moments`)."""
        return self.run_moments(k).mean(dim=0)

    def moment_stderr(self, k: int) -> Tensor:
        """``[k + 1]``: standard errors of :meth:`moments` (sample std over runs / sqrt(runs))."""
        runs = self.run_moments(k)
        if runs.shape[0] < 2:
            return torch.full((k + 1,), float("nan"), dtype=_F64)
        return runs.std(dim=0) / math.sqrt(runs.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {"grid": self.grid.tolist(), "density": self.density.tolist(), "nodes": self.nodes.tolist(),
                "weights": self.weights.tolist(), "sigma": self.sigma, "dim": self.dim,
                "num_matvecs": self.num_matvecs, "seed": self.seed, "num_batches": self.num_batches}
