"""Hessian measurements of trained models.

* :class:`HessianOperator` — Hessian-vector products of any ``nn.Module`` and loss closure, per layer;
* :func:`trace`, :func:`eigenvalues`, :func:`spectral_density`, :func:`quadratic_form` — estimators
  (Hutchinson / Hutch++, Lanczos, stochastic Lanczos quadrature), optionally max/mean over batches;
* :mod:`gnnbench.hessian.bounds` — Hessian-based generalization bounds beside the measured gap;
* :func:`diffusion_spectrum` — largest singular value of a graph's diffusion matrix, depth factors;
* :mod:`gnnbench.hessian.nso` — noise stability optimization and a Hessian-trace penalty;
* :func:`report` — one JSON record (and plots) of all of the above.
"""

from . import bounds
from .diffusion import DiffusionReport, diffusion_matrix, diffusion_spectrum, largest_singular_value
from .estimators import (
    QuadraticFormResult,
    SpectralDensity,
    TraceResult,
    eigenvalues,
    quadratic_form,
    spectral_density,
    trace,
)
from .matrix import MatrixOperator
from .nso import NoiseStabilityOptimizer, nso_gradient, trace_penalty
from .operator import HessianError, HessianOperator, ParameterGroup
from .report import report

__all__ = [
    "DiffusionReport", "HessianError", "HessianOperator", "MatrixOperator", "NoiseStabilityOptimizer",
    "ParameterGroup", "QuadraticFormResult", "SpectralDensity", "TraceResult", "bounds", "diffusion_matrix",
    "diffusion_spectrum", "eigenvalues", "largest_singular_value", "nso_gradient", "quadratic_form", "report",
    "spectral_density", "trace", "trace_penalty",
]
