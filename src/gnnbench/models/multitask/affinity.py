"""Task affinity without retraining: a logistic surrogate of training on a subset of tasks, scored for real.

The branching study's estimator (Li et al., "Efficiently learning branching networks for multitask algorithmic
reasoning", https://arxiv.org/abs/2512.01113; its code ``clrs_experiments/clrs/examples/
fast_estimation_linear_regression.py`` of https://github.com/VirtuosoResearch/Multitask-algorithmic-reasoning), in
gnnbench's formulation:

1. :func:`~.gradients.gradient_features`: per algorithm, ``num_samples`` train graphs, each with its output function's
   value ``f_s(W0)`` and projected gradient ``g_s = P^T grad f_s`` with respect to the processor layers of depths
   ``first_depth..L`` (see :mod:`.gradients`).
2. ``num_subsets`` subsets of ``subset_size`` tasks, each drawn without replacement from
   ``numpy.random.default_rng(seed)`` (``rng.choice(k, subset_size, replace=False)``, kept in the algorithms' order).
3. Per subset ``S`` (:func:`fit_subset`): the L2-regularised logistic regression of the first-order expansion of the
   output functions around ``W0``, every sample labelled "correct",
   ``theta_S = argmin_theta sum_{s in S's tasks} softplus(-(f_s + g_s . theta)) + (lam / 2) |theta|^2``
   (the study fits sklearn's ``LogisticRegression(C=1/lam)`` on the projected gradients; ``lam`` = 1e3 as there),
   solved by Newton's method in float64 on the ``d x d`` system (from the SVD of the weighted features when their
   scales span too much for the normal equations) with an exact line search, until half the Newton decrement (the
   predicted distance to the optimum) is at most ``tol`` times the objective (deterministic; the iterations and
   whether it converged are reported per subset).
4. :func:`estimate_scores`: the real network with the processor weights of depths ``first_depth..L`` shifted by
   ``P theta_S`` (reshaped per parameter; restored bitwise afterwards) scored by
   :func:`gnnbench.harness.algo_eval.evaluate` on each task of ``S`` (``split``, CLRS-30's ``valid`` by default):
   the estimated score of the task when trained with ``S``.
5. :func:`affinity_from_subsets`: ``T[i, j]`` = mean estimated score of task ``i`` over the subsets holding both ``i``
   and ``j``; ``T[i, i]`` over the subsets holding ``i``. A pair never drawn together has no value (NaN); with
   ``fill="row_mean"`` (the default, for clustering, which needs a full matrix) it gets the mean of the row's values
   (the mean of every value when the row has none), and :attr:`AffinityResult.filled` counts the entries filled.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import scipy.linalg
from scipy.special import expit, log_expit
from torch import nn

from ...algo.specs import check_algorithm
from ...arguments import check_choice, check_float, check_int
from .gradients import GradientFeatures, gradient_features

log = logging.getLogger(__name__)

FILLS = ("row_mean", "none")
FORMAT = 1


class ConvergenceWarning(RuntimeWarning):
    """Newton's method stopped at ``max_iter`` before reaching its tolerance."""


@dataclass
class LogisticFit:
    """The surrogate's solution ``theta`` (float64 ``[d]``), the Newton steps taken, the final objective and gradient
    norm, the Newton decrement before the last step (``g^T H^-1 g``: twice the predicted distance to the optimum, in
    objective units), and whether it met the tolerance."""

    theta: np.ndarray
    iterations: int
    objective: float
    decrement: float
    gradient_norm: float
    converged: bool


_WELL_CONDITIONED = 1e7  # largest curvature / lam up to which the Newton system is solved from its normal equations


def _newton_step(g: np.ndarray, weights: np.ndarray, grad: np.ndarray, lam: float) -> np.ndarray:
    """``-(g^T diag(weights) g + lam I)^-1 grad``: by Cholesky when well conditioned, else from the SVD of
    ``sqrt(weights) g`` (never squaring its range of scales: features of very different sizes stay exact enough)."""
    n, d = g.shape
    if float((weights[:, None] * g * g).sum(0).max()) <= _WELL_CONDITIONED * lam:
        hessian = (g.T * weights) @ g
        hessian[np.diag_indices(d)] += lam
        return -scipy.linalg.cho_solve(scipy.linalg.cho_factor(hessian), grad)
    _, singular, vt = np.linalg.svd(np.sqrt(weights)[:, None] * g, full_matrices=n < d)
    curvature = np.full(d, lam)
    curvature[:singular.size] += singular ** 2
    return -(vt.T @ ((vt @ grad) / curvature))


def _line_search(z: np.ndarray, direction_z: np.ndarray, theta_dot: float, step_dot: float, lam: float,
                 slope: float) -> float:
    """The minimiser ``t > 0`` of the convex ``phi(t) = sum softplus(-(z + t dz)) + lam/2 |theta + t step|^2`` (exact
    line search: bisection on ``phi'``, ``phi'(0) = slope < 0``)."""
    def derivative(t: float) -> float:
        return float(-(expit(-(z + t * direction_z)) * direction_z).sum() + lam * (theta_dot + t * step_dot))

    low, high = 0.0, 1.0
    while derivative(high) < 0.0 and high < 1e12:
        low, high = high, 2.0 * high
    for _ in range(200):
        if high - low <= 1e-13 * high:
            break
        middle = 0.5 * (low + high)
        if derivative(middle) < 0.0:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def fit_logistic(features: np.ndarray, offsets: np.ndarray, lam: float = 1e3, *, tol: float = 1e-9,
                 max_iter: int = 100) -> LogisticFit:
    """``argmin_theta sum_s softplus(-(offsets_s + features_s . theta)) + lam / 2 |theta|^2`` by Newton's method with
    an exact line search; the last step is the one taken when half the Newton decrement is at most
    ``tol * max(1, objective)``."""
    lam = check_float("lam", lam, minimum=0.0, open_min=True)
    tol = check_float("tol", tol, minimum=0.0, open_min=True)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    g = np.asarray(features, dtype=np.float64)
    f = np.asarray(offsets, dtype=np.float64)
    if g.ndim != 2 or f.shape != (g.shape[0],):
        raise ValueError(f"features must be [n, d] and offsets [n], got {g.shape} and {f.shape}")
    if not (np.isfinite(g).all() and np.isfinite(f).all()):
        raise ValueError("features and offsets must be finite")
    theta = np.zeros(g.shape[1])
    iterations, converged = 0, False
    while iterations < max_iter and not converged:
        z = f + g @ theta
        value = float(-log_expit(z).sum() + 0.5 * lam * theta @ theta)
        s = expit(-z)  # sigma(-z): d softplus(-z) / dz = -sigma(-z)
        grad = -g.T @ s + lam * theta
        step = _newton_step(g, s * (1.0 - s), grad, lam)
        decrement = max(0.0, -float(grad @ step))
        converged = decrement / 2 <= tol * max(1.0, abs(value))  # this step is the last (quadratic convergence)
        if decrement > 0.0:
            theta = theta + _line_search(z, g @ step, float(theta @ step), float(step @ step), lam, -decrement) * step
        iterations += 1
    z = f + g @ theta
    value = float(-log_expit(z).sum() + 0.5 * lam * theta @ theta)
    grad = -g.T @ expit(-z) + lam * theta
    norm = float(np.linalg.norm(grad))
    if not converged:
        warnings.warn(f"Newton's method stopped after {iterations} iterations with Newton decrement {decrement:.3g} "
                      f"(objective {value:.6g}, tolerance {tol:g})", ConvergenceWarning, stacklevel=2)
    return LogisticFit(theta, iterations, value, decrement, norm, converged)


def fit_subset(features: GradientFeatures, subset: Sequence[str], lam: float = 1e3, *, tol: float = 1e-9,
               max_iter: int = 100) -> LogisticFit:
    """The surrogate fitted on the samples of ``subset``'s tasks (``.theta``: the ``d`` coefficients)."""
    if not subset:
        raise ValueError("subset is empty")
    g, f = features.stacked(list(subset))
    return fit_logistic(g, f, lam, tol=tol, max_iter=max_iter)


@contextlib.contextmanager
def shifted_weights(net: nn.Module, features: GradientFeatures, theta: np.ndarray | torch.Tensor) -> Iterator[None]:
    """Within the block, the processor weights of depths ``features.first_depth..L`` are ``W0 + P theta``; they are
    restored bitwise on leaving it (also on an exception)."""
    params = net.layer_parameters(features.first_depth)
    if sorted(params) != list(features.projection.names):
        raise ValueError(f"the network's parameters at depths {features.first_depth}.. differ from those the "
                         f"features were projected from ({len(params)} vs {len(features.projection.names)} tensors)")
    shift = features.projection.lift(theta)
    saved = {name: p.detach().clone() for name, p in params.items()}
    try:
        with torch.no_grad():
            for name, p in params.items():
                if shift[name].shape != p.shape:
                    raise ValueError(f"parameter {name} has shape {tuple(p.shape)}, the projection "
                                     f"{tuple(shift[name].shape)}")
                p.add_(shift[name].to(p.device, p.dtype))
        yield
    finally:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name])


def estimate_scores(net: nn.Module, features: GradientFeatures, subset: Sequence[str],
                    theta: np.ndarray | torch.Tensor, *, split: str = "valid", batch_size: int = 32,
                    device: torch.device | str | None = None) -> dict[str, float]:
    """``{task: score}``: each task of ``subset`` scored (CLRS-30's ``score`` on ``split``) by the network with its
    processor weights shifted by ``P theta`` (:func:`shifted_weights`); the network is left as it was."""
    from ...harness.algo_eval import evaluate  # the harness imports the models: import on use

    batch_size = check_int("batch_size", batch_size, minimum=1)
    scores = {}
    with shifted_weights(net, features, theta):
        for algorithm in subset:
            scores[algorithm] = float(evaluate(net.head(algorithm), algorithm, split, batch_size=batch_size,
                                               device=device).metrics["score"])
    return scores


def draw_subsets(num_tasks: int, num_subsets: int, subset_size: int, seed: int) -> list[tuple[int, ...]]:
    """``num_subsets`` subsets of ``range(num_tasks)``, each ``subset_size`` distinct indices (ascending) drawn with
    ``numpy.random.default_rng(seed).choice(num_tasks, subset_size, replace=False)``."""
    num_tasks = check_int("num_tasks", num_tasks, minimum=1)
    num_subsets = check_int("num_subsets", num_subsets, minimum=1)
    subset_size = check_int("subset_size", subset_size, minimum=1)
    if subset_size > num_tasks:
        raise ValueError(f"subset_size ({subset_size}) exceeds the number of tasks ({num_tasks})")
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    return [tuple(sorted(int(i) for i in rng.choice(num_tasks, subset_size, replace=False)))
            for _ in range(num_subsets)]


@dataclass
class SubsetEstimate:
    """One subset: its tasks, each task's estimated score, the Newton iterations of its fit and whether it converged."""

    tasks: tuple[str, ...]
    scores: dict[str, float]
    iterations: int = 0
    converged: bool = True


def affinity_from_subsets(algorithms: Sequence[str], subsets: Sequence[SubsetEstimate], fill: str = "row_mean"
                          ) -> tuple[np.ndarray, np.ndarray, int]:
    """``(T, counts, missing)``: ``T[i, j]`` the mean score of task ``i`` over the subsets holding ``i`` and ``j``
    (``counts[i, j]`` of them); the ``missing`` entries without such a subset are NaN, or filled with
    ``fill="row_mean"`` (module docstring)."""
    check_choice("fill", fill, FILLS)
    index = {a: i for i, a in enumerate(algorithms)}
    k = len(index)
    total, counts = np.zeros((k, k)), np.zeros((k, k), dtype=np.int64)
    for estimate in subsets:
        unknown = [a for a in estimate.tasks if a not in index]
        if unknown:
            raise ValueError(f"subset {estimate.tasks} holds {', '.join(unknown)}, not among the algorithms")
        members = [index[a] for a in estimate.tasks]
        for a in estimate.tasks:
            if a not in estimate.scores:
                raise ValueError(f"subset {estimate.tasks} has no score for {a}")
            i = index[a]
            for j in members:
                total[i, j] += estimate.scores[a]
                counts[i, j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(counts > 0, total / np.maximum(counts, 1), np.nan)
    missing = np.isnan(matrix)
    filled = int(missing.sum())
    if fill == "row_mean" and filled:
        overall = float(np.nanmean(matrix)) if (~missing).any() else math.nan
        for i in range(k):
            row = matrix[i][~missing[i]]
            matrix[i, missing[i]] = float(row.mean()) if row.size else overall
    return matrix, counts, filled


@dataclass
class AffinityResult:
    """The affinity matrix ``matrix`` (``[k, k]`` over ``algorithms``; its ``filled`` entries had no subset holding
    both tasks: NaN, or filled as ``fill`` says), the pair ``counts``, every subset with its estimated scores, each
    task's ``base_scores`` (the unshifted network), the settings, and the seconds spent on features, regressions and
    evaluations (``timings``)."""

    algorithms: tuple[str, ...]
    matrix: np.ndarray
    counts: np.ndarray
    subsets: list[SubsetEstimate]
    base_scores: dict[str, float]
    fill: str = "row_mean"
    filled: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN as None)."""
        return {"format": FORMAT, "algorithms": list(self.algorithms),
                "matrix": [[None if math.isnan(x) else float(x) for x in row] for row in self.matrix],
                "counts": self.counts.astype(int).tolist(),
                "subsets": [{"tasks": list(s.tasks), "scores": dict(s.scores), "iterations": s.iterations,
                             "converged": s.converged} for s in self.subsets],
                "base_scores": dict(self.base_scores), "fill": self.fill, "filled": self.filled,
                "settings": dict(self.settings), "timings": dict(self.timings)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AffinityResult:
        """The result :meth:`to_dict` wrote."""
        if data.get("format") != FORMAT:
            raise ValueError(f"affinity result format {data.get('format')!r} is not {FORMAT}")
        algorithms = tuple(data["algorithms"])
        matrix = np.array([[math.nan if x is None else float(x) for x in row] for row in data["matrix"]],
                          dtype=np.float64).reshape(len(algorithms), len(algorithms))
        counts = np.array(data["counts"], dtype=np.int64).reshape(len(algorithms), len(algorithms))
        subsets = [SubsetEstimate(tuple(s["tasks"]), {k: float(v) for k, v in s["scores"].items()},
                                  int(s.get("iterations", 0)), bool(s.get("converged", True))) for s in data["subsets"]]
        return cls(algorithms, matrix, counts, subsets, {k: float(v) for k, v in data["base_scores"].items()},
                   data.get("fill", "row_mean"), int(data.get("filled", 0)), dict(data.get("settings", {})),
                   {k: float(v) for k, v in data.get("timings", {}).items()})


def task_affinity(net: nn.Module, algorithms: Sequence[str], first_depth: int, *, num_subsets: int = 200,
                  subset_size: int = 3, seed: int = 0, lam: float = 1e3, num_samples: int = 1000,
                  projection_dim: int = 400, chunk_size: int = 16, chunk_steps: int = 512, split: str = "valid",
                  batch_size: int = 32, fill: str = "row_mean", device: torch.device | str | None = None,
                  features: GradientFeatures | None = None) -> AffinityResult:
    """Task affinities among ``algorithms`` at processor depth ``first_depth`` without retraining (module docstring).

    ``seed`` seeds the projection and the subsets; ``num_samples``, ``projection_dim``, ``chunk_size``, ``chunk_steps``:
    see :func:`~.gradients.gradient_features`; ``features``: gradient features computed before (of these algorithms at
    ``first_depth``), else computed here."""
    algorithms = tuple(check_algorithm(a) for a in algorithms)
    num_subsets = check_int("num_subsets", num_subsets, minimum=1)
    subset_size = check_int("subset_size", subset_size, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    lam = check_float("lam", lam, minimum=0.0, open_min=True)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    check_choice("fill", fill, FILLS)
    if len(set(algorithms)) != len(algorithms):
        raise ValueError(f"algorithms lists an algorithm twice: {', '.join(algorithms)}")
    if subset_size > len(algorithms):
        raise ValueError(f"subset_size ({subset_size}) exceeds the number of algorithms ({len(algorithms)})")
    if features is None:
        features = gradient_features(net, algorithms, first_depth, num_samples=num_samples,
                                     projection_dim=projection_dim, seed=seed, chunk_size=chunk_size,
                                     chunk_steps=chunk_steps, device=device)
    elif features.first_depth != first_depth or set(features.algorithms) != set(algorithms):
        raise ValueError(f"features are of {', '.join(features.algorithms)} at depth {features.first_depth}, not of "
                         f"{', '.join(algorithms)} at depth {first_depth}")
    timings = {"features": float(features.timings.get("total", 0.0)), "regressions": 0.0, "evaluations": 0.0}
    start = time.perf_counter()
    base = estimate_scores(net, features, algorithms, np.zeros(features.projection_dim), split=split,
                           batch_size=batch_size, device=device)
    timings["evaluations"] += time.perf_counter() - start
    estimates = []
    for number, members in enumerate(draw_subsets(len(algorithms), num_subsets, subset_size, seed)):
        tasks = tuple(algorithms[i] for i in members)
        start = time.perf_counter()
        with warnings.catch_warnings():  # one warning for all the subsets, below
            warnings.simplefilter("ignore", ConvergenceWarning)
            fit = fit_subset(features, tasks, lam)
        middle = time.perf_counter()
        scores = estimate_scores(net, features, tasks, fit.theta, split=split, batch_size=batch_size, device=device)
        timings["regressions"] += middle - start
        timings["evaluations"] += time.perf_counter() - middle
        estimates.append(SubsetEstimate(tasks, scores, fit.iterations, fit.converged))
        log.debug("subset %d/%d %s: %s (%d Newton iterations)", number + 1, num_subsets, ", ".join(tasks),
                  scores, fit.iterations)
    unconverged = [e.tasks for e in estimates if not e.converged]
    if unconverged:
        warnings.warn(f"{len(unconverged)} of {num_subsets} subset fits stopped before Newton's tolerance (first: "
                      f"{', '.join(unconverged[0])}); their estimates are kept, marked converged=False",
                      ConvergenceWarning, stacklevel=2)
    matrix, counts, filled = affinity_from_subsets(algorithms, estimates, fill)
    if filled:
        log.info("%d affinity entries had no subset holding both tasks (fill: %s)", filled, fill)
    settings = {"first_depth": first_depth, "num_subsets": num_subsets, "subset_size": subset_size, "seed": seed,
                "lam": lam, "num_samples": features.num_samples, "projection_dim": features.projection_dim,
                "projection_seed": features.projection.seed, "num_parameters": features.num_parameters,
                "split": split}
    return AffinityResult(algorithms, matrix, counts, estimates, base, fill, filled, settings, timings)


__all__ = ["AffinityResult", "ConvergenceWarning", "FILLS", "LogisticFit", "SubsetEstimate", "affinity_from_subsets",
           "draw_subsets", "estimate_scores", "fit_logistic", "fit_subset", "shifted_weights", "task_affinity"]
