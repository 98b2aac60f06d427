"""Hessian-based generalization bounds, each reported with every term next to the measured gap.

Two bounds, both for a model ``W`` fine-tuned (or trained) from a starting point ``W0``:

**Ju, Li and Zhang (ICML 2022)**, "Robust fine-tuning of deep neural networks with Hessian-based
generalization bounds", Theorem 2.1: with probability at least 1 - delta, for any eps > 0,

    L(W) <= (1 + eps) * L_train(W) + (1 + eps) * sqrt(C) * sum_i sqrt(H_i) / sqrt(n) + xi,

    H_i = max over the data of  v_i^T H_i(x, y) v_i,   v_i = vec(W_i - W0_i),

where ``H_i(x, y)`` is the Hessian of the loss on example (x, y) with respect to layer i's
weights (the i-th diagonal block), ``C`` bounds the loss, ``n`` is the number of training
examples and ``xi`` a lower-order term (O(n^-3/4)) that is not computed. Its trace form uses
``v_i^T H_i v_i <= ||W_i - W0_i||_F^2 * Tr(H_i^+)`` (the positive part of H_i).

**Trace-radius form** (used for GNNs, Ju, Li, Sharma and Zhang, AISTATS 2023):

    gap <= max loss * sqrt( (sum_i T_i) * (sum_i r_i^2) / n ),
    T_i = max over the data of Tr(H_i),  r_i = ||W_i - W0_i||_F.

:func:`hessian_bound` and :func:`trace_radius_bound` take ``(model, loss_fn, initial, ...)`` like every Hessian
function (the order ``(model, initial, loss_fn)`` of earlier releases is recognised, warned about and swapped for
one release); ``num_matvecs`` is the total number of Hessian-vector products of a trace estimate.

Approximations made here (also listed in every report's ``approximations``):

* the maximum over the data is taken over **batches** (the loss of a batch is its mean loss), not
  over single examples; pass batches of one example for the per-example maximum;
* ``H_i`` is used in place of its positive part ``H_i^+`` (``Tr(H_i) <= Tr(H_i^+)``, and a quadratic
  form can be negative, in which case its square root is taken as 0 and the report says how many);
* traces are Hutchinson/Hutch++ estimates (their standard errors are reported);
* ``C`` (the loss bound) defaults to the largest batch loss measured on the training data;
* the lower-order term ``xi`` is omitted.

Because of these, a computed bound can fall below the measured gap. Every report says whether it holds on the data
it was given (``bound_holds``: ``bound_on_gap >= measured_gap``; ``None`` without test data) and, when it does not,
``note`` names the approximations that can cause it, with the figures measured on that data (a test loss above the
assumed loss bound, the trace estimates' standard errors, the test loss's standard error over the test batches,
negative curvature set to zero).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..arguments import check_choice, check_float, check_int
from .results import TraceResult


@dataclass
class BoundReport:
    """A bound, its terms, and the measured generalization gap beside it."""

    name: str
    formula: str
    bound_on_gap: float            # the bound on test loss - train loss (without the (1 + eps) factor on train)
    bound_on_test_loss: float      # the bound on the test loss
    train_loss: float
    test_loss: float | None
    measured_gap: float | None     # test loss - train loss, measured
    terms: dict[str, Any] = field(default_factory=dict)
    approximations: list[str] = field(default_factory=list)
    bound_holds: bool | None = None  # bound_on_gap >= measured_gap; None without a measured gap
    note: str | None = None          # when the bound is below the measured gap: the approximations that can cause it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_APPROXIMATIONS = [
    "maximum over batches in place of over single examples",
    "H_i in place of its positive part H_i^+",
    "loss bound C = largest training batch loss unless given",
    "lower-order term xi omitted",
]


def ju_li_zhang(train_loss: float, quadratic_forms: Mapping[str, float], n: int, loss_bound: float,
                epsilon: float = 0.1) -> tuple[float, float, int]:
    """(bound on the test loss, its gap term, number of negative H_i set to 0) of the ICML 2022 bound."""
    n = check_int("n", n, minimum=1)
    loss_bound = check_float("loss_bound", loss_bound, minimum=0.0, open_min=True)
    epsilon = check_float("epsilon", epsilon, minimum=0.0)
    negative = sum(1 for value in quadratic_forms.values() if value < 0)
    root_sum = sum(math.sqrt(max(value, 0.0)) for value in quadratic_forms.values())
    gap_term = (1 + epsilon) * math.sqrt(loss_bound) * root_sum / math.sqrt(n)
    return (1 + epsilon) * train_loss + gap_term, gap_term, negative


def trace_radius(max_loss: float, traces: Mapping[str, float], radii: Mapping[str, float], n: int) -> float:
    """max loss * sqrt((sum_i T_i) * (sum_i r_i^2) / n); negative trace sums are clipped at 0."""
    n = check_int("n", n, minimum=1)
    max_loss = check_float("max_loss", max_loss, minimum=0.0)
    if set(traces) != set(radii):
        raise ValueError(f"traces and radii name different layers: {sorted(set(traces) ^ set(radii))}")
    total_trace = max(sum(traces.values()), 0.0)
    return max_loss * math.sqrt(total_trace * sum(r * r for r in radii.values()) / n)


Weights = Mapping[str, torch.Tensor] | torch.nn.Module


def _order(function: str, loss_fn: Any, initial: Any) -> tuple[Callable[[Any], torch.Tensor], Weights]:
    """``(loss_fn, initial)``: the order before this release, ``(model, initial, loss_fn)``, is recognised by the
    types (a state dict or module where the loss closure belongs, a plain callable after it), warned about and
    swapped."""
    def weights(value: Any) -> bool:
        return isinstance(value, (Mapping, torch.nn.Module))

    if weights(loss_fn) and callable(initial) and not weights(initial):
        warnings.warn(f"{function}(model, initial, loss_fn, ...) is deprecated and will stop working in the next "
                      f"release; call {function}(model, loss_fn, initial, ...)", DeprecationWarning, stacklevel=3)
        return initial, loss_fn
    if not callable(loss_fn):
        raise TypeError(f"{function}: loss_fn must be a callable returning a batch's loss, got "
                        f"{type(loss_fn).__name__}")
    if not weights(initial):
        raise TypeError(f"{function}: initial must be a state dict or a module (the starting weights), got "
                        f"{type(initial).__name__}")
    return loss_fn, initial


def _batches(name: str, data: Iterable[Any] | None) -> list[Any] | None:
    if data is None:
        return None
    batches = list(data)
    if not batches:
        raise ValueError(f"{name} has no batches")
    return batches


def hessian_bound(model: torch.nn.Module, loss_fn: Callable[[Any], torch.Tensor], initial: Weights, *,
                  train_data: Iterable[Any], n: int, test_data: Iterable[Any] | None = None, epsilon: float = 0.1,
                  loss_bound: float | None = None, form: str = "quadratic", parameters: Iterable[str] | None = None,
                  num_matvecs: int = 100, method: str = "hutch++", seed: int = 0,
                  strategy: str = "auto") -> BoundReport:
    """The Ju-Li-Zhang bound of ``model`` against its start ``initial`` (a state dict or a model).

    ``form="quadratic"`` uses H_i = max over batches of v_i^T H_i v_i (exact quadratic forms: one product per layer
    and batch); ``form="trace"`` uses ||W_i - W0_i||_F^2 * max over batches of Tr(H_i), estimated with
    ``num_matvecs`` Hessian-vector products in all (split over the batches). ``loss_fn(batch)`` returns a batch's
    mean loss; ``n`` is the number of training examples. ``terms["num_matvecs"]`` is the number of products
    performed. The order ``(model, initial, loss_fn)`` of earlier releases still works (deprecated).
    """
    from .estimators import quadratic_form, trace

    loss_fn, initial = _order("hessian_bound", loss_fn, initial)
    check_choice("form", form, ("quadratic", "trace"))
    n = check_int("n", n, minimum=1)
    epsilon = check_float("epsilon", epsilon, minimum=0.0)
    if loss_bound is not None:
        loss_bound = check_float("loss_bound", loss_bound, minimum=0.0, open_min=True)
    train_data, test_data = _batches("train_data", train_data), _batches("test_data", test_data)
    direction = displacement(model, initial, parameters)
    train_losses = _batch_losses(model, loss_fn, train_data)
    train_loss = sum(train_losses) / len(train_losses)
    bound_c = loss_bound if loss_bound is not None else max(train_losses)
    terms: dict[str, Any] = {"n": n, "epsilon": epsilon, "loss_bound_C": bound_c, "form": form}
    if form == "quadratic":
        result = quadratic_form(model, loss_fn, direction, parameters=parameters, data=train_data, reduce="max",
                                strategy=strategy)
        per_layer = dict(result.per_layer)
        terms["H_i"] = per_layer
    else:
        result = trace(model, loss_fn, method=method, num_matvecs=num_matvecs, per_layer=True, seed=seed,
                       parameters=parameters, data=train_data, reduce="max", strategy=strategy)
        radii = radii_squared(model, initial, result.per_layer)
        per_layer = {name: radii[name] * value for name, value in result.per_layer.items()}
        terms.update(max_trace_i=dict(result.per_layer), trace_stderr_i=dict(result.per_layer_stderr),
                     radius_squared_i=radii, H_i=per_layer)
    terms["num_matvecs"] = result.num_matvecs
    bound, gap_term, negative = ju_li_zhang(train_loss, per_layer, n, bound_c, epsilon)
    terms.update(gap_term=gap_term, negative_H_i_set_to_zero=negative)
    test_losses = _batch_losses(model, loss_fn, test_data) if test_data else None
    test_loss = _mean(test_losses) if test_losses else None
    widened = None
    if form == "trace":  # the bound at two standard errors above each layer's trace estimate
        upper = _two_stderr_above(result.per_layer, result.per_layer_stderr)
        widened = (None if upper is None else
                   ju_li_zhang(train_loss, {name: radii[name] * value for name, value in upper.items()}, n, bound_c,
                               epsilon)[0] - train_loss, _no_stderr(result.per_layer_stderr))
    report = BoundReport(
        name="ju_li_zhang_2022" + ("_trace" if form == "trace" else ""),
        formula="L(W) <= (1+eps) L_train(W) + (1+eps) sqrt(C) sum_i sqrt(H_i) / sqrt(n)",
        bound_on_gap=bound - train_loss, bound_on_test_loss=bound, train_loss=train_loss, test_loss=test_loss,
        measured_gap=None if test_loss is None else test_loss - train_loss, terms=terms,
        approximations=list(_APPROXIMATIONS) + (["traces estimated stochastically"] if form == "trace" else []))
    curvature = (f"{negative} of the quadratic forms v_i^T H_i v_i {'is' if negative == 1 else 'are'} negative and "
                 "set to 0 (H_i stands in for its positive part H_i^+)") if negative else None
    return _verdict(report, train_batches=len(train_data), test_losses=test_losses, loss_bound=bound_c,
                    loss_bound_name="C", loss_bound_argument="loss_bound", given=loss_bound is not None,
                    curvature=curvature, widened=widened,
                    theorem="the lower-order term xi (of order n^-3/4) is omitted; the theorem holds with probability "
                            "1 - delta over the training sample, under smoothness assumptions on the activations and "
                            "the loss that are not checked")


def trace_radius_bound(model: torch.nn.Module, loss_fn: Callable[[Any], torch.Tensor], initial: Weights, *,
                       train_data: Iterable[Any], n: int, test_data: Iterable[Any] | None = None,
                       max_loss: float | None = None, parameters: Iterable[str] | None = None,
                       num_matvecs: int = 100, method: str = "hutch++", seed: int = 0,
                       strategy: str = "auto", traces: TraceResult | None = None) -> BoundReport:
    """max loss * sqrt((sum_i T_i)(sum_i r_i^2) / n), with T_i = max over batches of Tr(H_i), estimated with
    ``num_matvecs`` Hessian-vector products in all (split over the batches; ``terms["num_matvecs"]``: the number
    performed). ``traces``: per-layer maxima over the training batches already measured (``trace(...,
    data=train_data, reduce="max")``), used instead of measuring them again. The order ``(model, initial,
    loss_fn)`` of earlier releases still works (deprecated)."""
    from .estimators import trace

    loss_fn, initial = _order("trace_radius_bound", loss_fn, initial)
    n = check_int("n", n, minimum=1)
    if max_loss is not None:
        max_loss = check_float("max_loss", max_loss, minimum=0.0)
    train_data, test_data = _batches("train_data", train_data), _batches("test_data", test_data)
    train_losses = _batch_losses(model, loss_fn, train_data)
    train_loss = _mean(train_losses)
    if traces is None:
        traces = trace(model, loss_fn, method=method, num_matvecs=num_matvecs, per_layer=True, seed=seed,
                       parameters=parameters, data=train_data, reduce="max", strategy=strategy)
    elif traces.reduce != "max" or traces.num_batches != len(train_data):
        raise ValueError(f"traces must be the maximum over the {len(train_data)} training batches (reduce='max'), "
                         f"got reduce={traces.reduce!r} over {traces.num_batches} batches")
    radii2 = radii_squared(model, initial, traces.per_layer)
    largest = max_loss if max_loss is not None else max(train_losses)
    radii = {name: math.sqrt(value) for name, value in radii2.items()}
    gap = trace_radius(largest, traces.per_layer, radii, n)
    test_losses = _batch_losses(model, loss_fn, test_data) if test_data else None
    test_loss = _mean(test_losses) if test_losses else None
    upper = _two_stderr_above(traces.per_layer, traces.per_layer_stderr)
    widened = (None if upper is None else trace_radius(largest, upper, radii, n),
               _no_stderr(traces.per_layer_stderr))
    total_trace = sum(traces.per_layer.values())
    curvature = (f"the layers' traces sum to {total_trace:.4g} < 0, clipped at 0 (Tr(H_i) stands in for "
                 "Tr(H_i^+))") if total_trace < 0 else None
    report = BoundReport(
        name="trace_radius", formula="gap <= max loss * sqrt((sum_i T_i) (sum_i r_i^2) / n)",
        bound_on_gap=gap, bound_on_test_loss=train_loss + gap, train_loss=train_loss, test_loss=test_loss,
        measured_gap=None if test_loss is None else test_loss - train_loss,
        terms={"n": n, "max_loss": largest, "T_i": dict(traces.per_layer),
               "T_i_stderr": dict(traces.per_layer_stderr), "r_i_squared": radii2,
               "num_matvecs": traces.num_matvecs},
        approximations=["maximum over batches in place of over single examples",
                        "max loss = largest training batch loss unless given", "traces estimated stochastically"])
    return _verdict(report, train_batches=len(train_data), test_losses=test_losses, loss_bound=largest,
                    loss_bound_name="max loss", loss_bound_argument="max_loss", given=max_loss is not None,
                    curvature=curvature, widened=widened,
                    theorem="the theorem's lower-order terms are omitted; it holds with probability 1 - delta over "
                            "the training sample, under assumptions on the activations and the loss that are not "
                            "checked")


def _two_stderr_above(values: Mapping[str, float], stderr: Mapping[str, float | None]) -> dict[str, float] | None:
    """Each layer's estimate plus two of its standard errors (those without one unchanged); ``None`` when no
    layer has a positive standard error (exact or single-probe estimates)."""
    if not any(stderr.get(name) for name in values):
        return None
    return {name: value + 2.0 * (stderr.get(name) or 0.0) for name, value in values.items()}


def _no_stderr(stderr: Mapping[str, float | None]) -> list[str]:
    return [name for name, value in stderr.items() if value is None]


def _verdict(report: BoundReport, *, train_batches: int, test_losses: list[float] | None, loss_bound: float,
             loss_bound_name: str, loss_bound_argument: str, given: bool, curvature: str | None,
             widened: tuple[float | None, list[str]] | None, theorem: str) -> BoundReport:
    """Set ``bound_holds`` and, when the bound is below the measured gap, a ``note`` naming the approximations of
    this computation that can cause it, with the figures measured on this data first."""
    gap, bound = report.measured_gap, report.bound_on_gap
    if gap is None or test_losses is None or not (math.isfinite(gap) and math.isfinite(bound)):
        return report
    report.bound_holds = bound >= gap
    if report.bound_holds:
        return report
    measured = []
    top = max(test_losses)
    if top > loss_bound:
        origin = "as given" if given else "the largest training batch loss"
        measured.append(f"a test batch's loss reaches {top:.4g}, above {loss_bound_name} = {loss_bound:.4g} "
                        f"({origin}), which the bound assumes to bound the loss (set {loss_bound_argument}= to a "
                        "bound that holds)")
    if len(test_losses) > 1:
        mean = sum(test_losses) / len(test_losses)
        stderr = math.sqrt(sum((loss - mean) ** 2 for loss in test_losses) / (len(test_losses) - 1)
                           / len(test_losses))
        within = " (the gap is within two standard errors of the bound)" if gap - 2 * stderr <= bound else ""
        measured.append(f"the measured gap is an estimate from {len(test_losses)} test batches, with standard "
                        f"error {stderr:.2g}{within}")
    else:
        measured.append("the measured gap comes from a single test batch, so its noise is unknown (use more test "
                        "batches)")
    if widened is not None:
        upper, unknown = widened
        if upper is not None:
            measured.append(f"the traces are stochastic estimates: at two standard errors above them the bound on "
                            f"the gap would be {upper:.4g}")
        if unknown:
            measured.append(f"the traces of {', '.join(unknown)} have no standard error (a single probe; a larger "
                            "num_matvecs gives one)")
    if curvature:
        measured.append(curvature)
    standing = [f"the maximum over the data is taken over {train_batches} training batch"
                f"{'' if train_batches == 1 else 'es'}, not over single examples (a per-example maximum is larger)",
                theorem]
    report.note = (f"the bound on the gap ({bound:.4g}) is below the measured gap ({gap:.4g}), so it does not bound "
                   "it here. Measured on this data: " + "; ".join(measured) + ". Approximations of this bound: "
                   + "; ".join(standing) + ".")
    return report


def displacement(model: torch.nn.Module, initial: Mapping[str, torch.Tensor] | torch.nn.Module,
                 parameters: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """``{name: W - W0}`` for the model's parameters (restricted to ``parameters`` names/prefixes)."""
    start = dict(initial.named_parameters()) if isinstance(initial, torch.nn.Module) else dict(initial)
    wanted = list(parameters) if parameters is not None else None
    result = {}
    for name, value in model.named_parameters():
        if not value.requires_grad or (wanted is not None and not any(
                name == item or name.startswith(item + ".") for item in wanted)):
            continue
        if name not in start:
            raise KeyError(f"the initial weights have no parameter {name!r}")
        if start[name].shape != value.shape:
            raise ValueError(f"parameter {name!r}: initial shape {tuple(start[name].shape)} != "
                             f"{tuple(value.shape)}")
        result[name] = (value.detach() - start[name].detach().to(value.device, value.dtype))
    return result


def radii_squared(model: torch.nn.Module, initial: Mapping[str, torch.Tensor] | torch.nn.Module,
                  layers: Iterable[str]) -> dict[str, float]:
    """||W_i - W0_i||_F^2 per layer, with the operator's layer names: a module path (the parameters that
    module owns directly; ``<root>`` for the model's own), a parameter name, or ``all``."""
    moved = displacement(model, initial)
    result = {}
    for layer in layers:
        members = [tensor for name, tensor in moved.items()
                   if layer in ("all", name) or _owner(name) == layer]
        if not members:
            raise KeyError(f"no parameter belongs to layer {layer!r}")
        result[layer] = float(sum(float(tensor.pow(2).sum()) for tensor in members))
    return result


def _owner(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else "<root>"


def _batch_losses(model: torch.nn.Module, loss_fn: Callable[[Any], torch.Tensor], batches) -> list[float]:
    if not batches:
        raise ValueError("no batches given")
    with torch.no_grad():
        return [float(loss_fn(batch)) for batch in batches]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)
