"""Hessian traces, eigenvalues, spectral densities and quadratic forms of a model, optionally over data.

Public functions take ``(model, loss_fn, ...)`` and build a :class:`~gnnbench.hessian.operator.HessianOperator`;
the ``*_of`` versions take any operator with ``dim``, ``groups`` (each with ``name``, ``start``, ``stop``),
``matmat([k, d]) -> [k, d]``, ``dtype`` and ``device`` (e.g. a ``HessianOperator`` to reuse, or a
:class:`~gnnbench.hessian.matrix.MatrixOperator` wrapping an explicit matrix). All arithmetic on probes and results is
in float64; vectors are cast to the operator's dtype for its products. The estimators live in
:mod:`~gnnbench.hessian.traces`, :mod:`~gnnbench.hessian.spectrum` and :mod:`~gnnbench.hessian.quadratic`.

Per-layer quantities refer to the diagonal blocks ``H_ii`` of the Hessian (``i`` a parameter group):
``Tr(H_ii)`` and ``v_i^T H_ii v_i``; their sum is ``Tr(H)`` (resp. ``v^T H v`` minus the cross terms).

**Budget.** ``num_matvecs`` is always the total number of Hessian-vector products of the call: over all layers
(per-layer traces are read off the same full-length probes by default, see :mod:`~gnnbench.hessian.traces`) and
over all batches of ``data`` (split evenly over the batches, the first ``num_matvecs % B`` batches getting one more).
Results report the number actually performed (``TraceResult.num_matvecs``, ``SpectralDensity.num_matvecs``,
``QuadraticFormResult.num_matvecs``); for :func:`eigenvalues` it is a cap (Lanczos stops when converged).

**Data.** With ``data`` (an iterable of batches; read once, and into a list when it has no ``len``)
``loss_fn(batch)`` is the loss of one batch; each quantity is computed per batch and reduced with
``reduce="mean"`` or ``"max"``, separately for every layer and for the total (the maximum of the totals, not the
sum of per-layer maxima). Standard errors: for the mean, ``sqrt(sum_b se_b^2) / B`` (independent probes per
batch); for the maximum, the standard error of the batch that attained it (the bias of a maximum of noisy
estimates is not corrected). Probes of successive batches are drawn from one generator seeded with ``seed``, so
results are reproducible.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from ..arguments import check_choice, check_int
from .probes import OperatorLike, combine_stderr, make_generator, split_budget
from .progress import CountingOperator, matvec_bar
from .quadratic import flatten_direction, quadratic_form_of
from .results import QuadraticFormResult, SpectralDensity, TraceResult
from .spectrum import DEFAULT_ITERATIONS, check_slq, density, eigen_budget, eigenvalues_of, slq, spectral_density_of
from .traces import METHODS, PROBES, minimum_matvecs, normalise_method, trace_of

__all__ = [
    "METHODS", "PROBES", "REDUCTIONS", "TraceResult", "QuadraticFormResult", "SpectralDensity",
    "trace", "eigenvalues", "spectral_density", "quadratic_form",
    "trace_of", "eigenvalues_of", "spectral_density_of", "quadratic_form_of", "flatten_direction", "OperatorLike",
]

REDUCTIONS = ("mean", "max")


# --------------------------------------------------------------------------------------------------- operators


def _make_operator(model: torch.nn.Module, loss_fn: Callable[[], Tensor], *, parameters: Iterable[str] | None,
                   groups: str, strategy: str) -> OperatorLike:
    from .operator import HessianOperator

    return HessianOperator(model, loss_fn, parameters=parameters, groups=groups, strategy=strategy)


def _plan(data: Iterable[Any] | None) -> tuple[Iterable[Any] | None, int]:
    """``(batches, count)``: ``data`` itself when it has a length, else its batches in a list."""
    if data is None:
        return None, 1
    try:
        count = len(data)  # type: ignore[arg-type]
    except TypeError:  # no length (a generator, an iterable-style loader): read it once
        data = list(data)
        count = len(data)
    if count == 0:
        raise ValueError("data has no batches")
    return data, count


def _operators(model: torch.nn.Module, loss_fn: Callable[..., Tensor], data: Iterable[Any] | None, count: int,
               parameters: Iterable[str] | None, groups: str, strategy: str,
               bar: Any = None) -> Iterator[OperatorLike]:
    """One operator without ``data``, else one per batch (``loss_fn(batch)``), built lazily; with ``bar`` (a
    progress bar) each counts its products there."""
    if bar is not None:
        for op in _operators(model, loss_fn, data, count, parameters, groups, strategy):
            yield CountingOperator(op, bar)
        return
    parameters = list(parameters) if parameters is not None else None
    if data is None:
        yield _make_operator(model, loss_fn, parameters=parameters, groups=groups, strategy=strategy)
        return
    seen = 0
    for batch in data:
        seen += 1
        if seen > count:
            raise ValueError(f"data yielded more batches than its length ({count})")
        yield _make_operator(model, functools.partial(loss_fn, batch), parameters=parameters, groups=groups,
                             strategy=strategy)
    if seen == 0:
        raise ValueError("data has no batches")


def _shares(num_matvecs: int, count: int, lowest: int, what: str) -> list[int]:
    """``num_matvecs`` split over ``count`` batches, each getting at least ``lowest``."""
    if count > 1 and num_matvecs < lowest * count:
        raise ValueError(f"num_matvecs={num_matvecs} is too small for {count} batches: {what} needs at least "
                         f"{lowest} products per batch ({lowest * count} in all); num_matvecs is the total over "
                         "the batches")
    return split_budget(num_matvecs, count)


# --------------------------------------------------------------------------------------------------- reductions


def reduce_traces(results: list[TraceResult], reduce: str) -> TraceResult:
    """Per-batch trace estimates reduced by ``"mean"`` or ``"max"`` (see the module docstring)."""
    count = len(results)
    names = list(results[0].per_layer)

    def pick(values: list[float], errors: list[float | None]) -> tuple[float, float | None]:
        if reduce == "mean":
            error = combine_stderr(errors)
            return math.fsum(values) / count, None if error is None else error / count
        best = max(range(count), key=values.__getitem__)
        return values[best], errors[best]

    total, stderr = pick([r.total for r in results], [r.stderr for r in results])
    layers, layer_errors = {}, {}
    for name in names:
        layers[name], layer_errors[name] = pick([r.per_layer[name] for r in results],
                                                [r.per_layer_stderr[name] for r in results])
    return TraceResult(total=total, per_layer=layers, stderr=stderr, per_layer_stderr=layer_errors,
                       method=results[0].method, num_matvecs=sum(r.num_matvecs for r in results),
                       seed=results[0].seed, reduce=reduce, num_batches=count, probes=results[0].probes)


def _reduce_quadratic(results: list[QuadraticFormResult], reduce: str) -> QuadraticFormResult:
    def pick(values: list[float]) -> float:
        return math.fsum(values) / len(values) if reduce == "mean" else max(values)

    return QuadraticFormResult(total=pick([r.total for r in results]),
                               per_layer={name: pick([r.per_layer[name] for r in results])
                                          for name in results[0].per_layer},
                               num_matvecs=sum(r.num_matvecs for r in results), reduce=reduce,
                               num_batches=len(results))


def _reduce_eigenvalues(results: list[Tensor], reduce: str) -> Tensor:
    stacked = torch.stack(results)
    return stacked.mean(dim=0) if reduce == "mean" else stacked.max(dim=0).values


# --------------------------------------------------------------------------------------------------- public API


def trace_batches(model: torch.nn.Module, loss_fn: Callable[..., Tensor], data: Iterable[Any] | None, *,
                  method: str = "hutchinson", num_matvecs: int = 100, per_layer: bool = True, probes: str = "full",
                  seed: int | None = 0, parameters: Iterable[str] | None = None, groups: str = "module",
                  strategy: str = "auto", chunk_size: int | None | str = "auto",
                  progress: bool = False) -> list[TraceResult]:
    """One trace estimate per batch of ``data`` (one estimate without it), ``num_matvecs`` products in all;
    ``progress`` shows a bar of the products on stderr."""
    method = normalise_method(method)
    check_choice("probes", probes, PROBES)
    num_matvecs = check_int("num_matvecs", num_matvecs, minimum=minimum_matvecs(method, 1))
    data, count = _plan(data)
    shares = _shares(num_matvecs, count, minimum_matvecs(method, 1), method)
    gen: torch.Generator | None = None
    results = []
    with matvec_bar(progress, num_matvecs, f"Hessian trace ({method})") as bar:
        for index, op in enumerate(_operators(model, loss_fn, data, count, parameters, groups, strategy, bar)):
            if gen is None:
                gen = make_generator(op, seed, None)
                if per_layer and probes == "block" and count > 1:
                    _shares(num_matvecs, count, minimum_matvecs(method, len(op.groups), probes),
                            f"{method} with probes='block' on {len(op.groups)} groups")
            result = trace_of(op, method=method, num_matvecs=shares[index], per_layer=per_layer, probes=probes,
                              generator=gen, chunk_size=chunk_size)
            result.seed = gen.initial_seed()
            results.append(result)
    return results


def trace(model: torch.nn.Module, loss_fn: Callable[..., Tensor], *, method: str = "hutchinson",
          num_matvecs: int = 100, per_layer: bool = True, probes: str = "full", seed: int | None = 0,
          parameters: Iterable[str] | None = None, groups: str = "module", data: Iterable[Any] | None = None,
          reduce: str = "mean", strategy: str = "auto", chunk_size: int | None | str = "auto",
          progress: bool = False) -> TraceResult:
    """Estimated trace of the Hessian of ``loss_fn`` at ``model``'s weights, per layer and in total, from
    ``num_matvecs`` Hessian-vector products in all.

    By default (``probes="full"``) every product serves the total and every layer; ``probes="block"`` spends
    separate products on each layer (lower variance per product, the same total budget). See
    :func:`~gnnbench.hessian.traces.trace_of` for the estimators and the module docstring for ``data``/``reduce``.
    ``progress`` shows a bar of the Hessian-vector products on stderr.
    """
    check_choice("reduce", reduce, REDUCTIONS)
    results = trace_batches(model, loss_fn, data, method=method, num_matvecs=num_matvecs, per_layer=per_layer,
                            probes=probes, seed=seed, parameters=parameters, groups=groups, strategy=strategy,
                            chunk_size=chunk_size, progress=progress)
    return results[0] if data is None else reduce_traces(results, reduce)


def eigenvalues(model: torch.nn.Module, loss_fn: Callable[..., Tensor], *, k: int = 1, which: str = "largest",
                tol: float = 1e-4, num_matvecs: int | None = None, block_size: int | None = None,
                seed: int | None = 0, parameters: Iterable[str] | None = None, groups: str = "module",
                data: Iterable[Any] | None = None, reduce: str = "mean", strategy: str = "auto",
                max_iter: int | None = None, progress: bool = False) -> Tensor:
    """The ``k`` extreme Hessian eigenvalues (1-D float64 tensor; see :func:`eigenvalues_of` for ``which`` and the
    order). ``num_matvecs`` caps the products in all (split over the batches of ``data``; default 100 block
    iterations per batch). With ``data``, the per-batch vectors are reduced elementwise (the ``j``-th value is the
    mean or maximum over batches of each batch's ``j``-th eigenvalue; the order is kept). ``max_iter`` is
    deprecated (iterations per batch; use ``num_matvecs``). ``progress`` shows a bar of the products on stderr
    (its total is the cap: Lanczos may converge sooner)."""
    check_choice("reduce", reduce, REDUCTIONS)
    p, _ = eigen_budget(k, block_size, num_matvecs, max_iter)  # validates (and warns about max_iter) once
    data, count = _plan(data)
    if num_matvecs is not None:
        shares: list[int | None] = list(_shares(num_matvecs, count, p, "block Lanczos"))
    else:
        shares = [None if max_iter is None else max_iter * p] * count
    cap = sum(p * DEFAULT_ITERATIONS if share is None else share for share in shares)
    gen: torch.Generator | None = None
    results = []
    with matvec_bar(progress, cap, "Hessian eigenvalues") as bar:
        for index, op in enumerate(_operators(model, loss_fn, data, count, parameters, groups, strategy, bar)):
            gen = make_generator(op, seed, None) if gen is None else gen
            results.append(eigenvalues_of(op, k=k, which=which, tol=tol, num_matvecs=shares[index],
                                          block_size=block_size, generator=gen))
    return results[0] if data is None else _reduce_eigenvalues(results, reduce)


def spectral_density(model: torch.nn.Module, loss_fn: Callable[..., Tensor], *, num_runs: int = 10,
                     num_steps: int = 80, grid_size: int = 1000, sigma: float | None = None,
                     grid_range: tuple[float, float] | None = None, seed: int | None = 0,
                     parameters: Iterable[str] | None = None, groups: str = "module",
                     data: Iterable[Any] | None = None, reduce: str = "mean", strategy: str = "auto",
                     reorthogonalize: bool = True, chunk_size: int | None = None,
                     progress: bool = False) -> SpectralDensity:
    """Stochastic Lanczos quadrature density of the Hessian spectrum (see :func:`spectral_density_of`).

    Cost: at most ``num_runs * num_steps`` products per batch (``SpectralDensity.num_matvecs``: the number
    performed). With ``data`` only ``reduce="mean"`` is defined: the result is the SLQ of the mixture of the
    batches' spectral measures (all batches' quadrature nodes pooled, one density on a common grid).
    ``progress`` shows a bar of the products on stderr.
    """
    check_choice("reduce", reduce, REDUCTIONS)
    if data is not None and reduce != "mean":
        raise ValueError("spectral_density over data supports only reduce='mean' (a mixture of the batches' "
                         "spectral measures); a maximum of densities is not a density")
    check_slq(num_runs, num_steps, grid_size, chunk_size)
    data, count = _plan(data)
    gen: torch.Generator | None = None
    nodes, weights, used, dim = [], [], 0, 0
    with matvec_bar(progress, num_runs * num_steps * count, "Hessian spectral density") as bar:
        for op in _operators(model, loss_fn, data, count, parameters, groups, strategy, bar):
            gen = make_generator(op, seed, None) if gen is None else gen
            theta, tau, performed = slq(op, num_runs, num_steps, gen, reorthogonalize, chunk_size)
            nodes.append(theta)
            weights.append(tau)
            used += performed
            dim = op.dim
    width = max(n.shape[1] for n in nodes)
    nodes = torch.cat([torch.nn.functional.pad(n, (0, width - n.shape[1]), value=float(n[0, 0])) for n in nodes])
    weights = torch.cat([torch.nn.functional.pad(w, (0, width - w.shape[1])) for w in weights])
    grid, values, sigma = density(nodes, weights, grid_size=grid_size, sigma=sigma, grid_range=grid_range)
    return SpectralDensity(grid=grid, density=values, nodes=nodes, weights=weights, sigma=sigma, dim=dim,
                           num_matvecs=used, seed=gen.initial_seed(), num_batches=len(weights) // num_runs)


def quadratic_form(model: torch.nn.Module, loss_fn: Callable[..., Tensor], direction: Mapping[str, Tensor] | Tensor,
                   *, parameters: Iterable[str] | None = None, groups: str = "module",
                   data: Iterable[Any] | None = None, reduce: str = "mean", strategy: str = "auto",
                   chunk_size: int | None = None) -> QuadraticFormResult:
    """Exact ``v^T H v`` and per-layer ``v_i^T H_ii v_i`` for a direction such as ``{name: W - W0}``.

    ``direction``: dict from parameter name to tensor (missing parameters are zero; parameters of ``model`` that are
    not selected by ``parameters`` are ignored; other names are errors) or a flat ``[d]`` tensor in the operator's
    layout. Cost: one product per layer the direction touches, per batch (``num_matvecs`` of the result). With
    ``data``: the mean or maximum over batches, per layer and of the total.
    """
    check_choice("reduce", reduce, REDUCTIONS)
    model_names = [name for name, _ in model.named_parameters()]
    data, count = _plan(data)
    results = [quadratic_form_of(op, direction, ignore=model_names, chunk_size=chunk_size)
               for op in _operators(model, loss_fn, data, count, parameters, groups, strategy)]
    return results[0] if data is None else _reduce_quadratic(results, reduce)
