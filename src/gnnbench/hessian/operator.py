"""Hessian-vector products of a loss with respect to (a subset of) a module's parameters.

:class:`HessianOperator` wraps ``model`` and a closure ``loss_fn()`` that computes a scalar loss through
``model`` and exposes ``H = d^2 loss / d theta^2`` as a linear operator on the flat vector ``theta`` of the
selected parameters, laid out group by group (layers; see :mod:`gnnbench.hessian.params`). The products come
from one of two strategies (:mod:`gnnbench.hessian.strategies`); operations with wrong or missing second
derivatives are refused or rerouted (:mod:`gnnbench.hessian.guards`, which records what was checked).

``"auto"`` uses double backward on CPU and forward-over-reverse elsewhere. If forward-over-reverse cannot be
used for this model (an op without forward-mode or batching rule, a guarded op, or a disagreement with double
backward in the check), it falls back to double backward, logs a warning naming the operation, and records
``fallback_reason``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from ..arguments import check_choice, check_int
from .guards import (
    HessianError,
    OpRecord,
    custom_function_names,
    describe_failure,
    forward_ad_scatter_prod_is_wrong,
    graph_nodes,
    is_oom,
    layers_running,
    mode_dependent_modules,
    refuse_not_twice_differentiable,
    run_recording_ops,
    uses_scatter_prod,
)
from .params import ROOT_GROUP, ParameterGroup, make_groups, select_parameters
from .strategies import DEFAULT_CHUNK_SIZE, STRATEGIES, ClosureModule, ProductStrategies, preferred_strategy

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "STRATEGIES",
    "HessianError",
    "HessianOperator",
    "ParameterGroup",
    "forward_ad_scatter_prod_is_wrong",
    "preferred_strategy",
]

log = logging.getLogger(__name__)


class HessianOperator(ProductStrategies):
    """H = d^2 loss / d theta^2 for the selected parameters theta, flattened group by group (in group order,
    parameters in named_parameters order within a group).

    Args:
        model: the module whose parameters are differentiated.
        loss_fn: closure computing a scalar loss through ``model`` (no arguments). It must be deterministic and
            use the parameters through ``model``'s modules (as ``model(x)`` does); the double-backward graph is
            cached while the parameters are unchanged, so call :meth:`refresh` after changing what ``loss_fn``
            reads (its data).
        parameters: names or module-path prefixes from ``named_parameters()``; default all requiring grad.
        groups: ``"module"`` (one group per module that directly owns parameters), ``"parameter"``, ``"all"``.
        strategy: ``"auto"``, ``"forward-over-reverse"`` or ``"double-backward"`` (see the module docstring).
        check: validate the inputs (scalar finite loss, gradients exist, determinism: one more forward pass
            without gradients) and, for forward-over-reverse, cross-check one product (two probes) with double
            backward. Double backward spends no trial product: an unsupported second derivative raises
            :class:`HessianError` (naming the operation and layer) at the first product. The correctness
            guards for known bad ops run either way.
        chunk_size: probes per vmap / batched-backward pass (bounds memory); default 32.

    Modules in training mode whose output depends on the mode (BatchNorm, Dropout, layers with a ``dropout``
    rate) make the model switch to eval mode during every computation (with a warning); the modes are
    restored afterwards. ``num_matvecs`` counts the products requested through :meth:`matmat` / :meth:`matvec`
    (the forward-over-reverse cross-check is not counted).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[], Tensor],
        *,
        parameters: Iterable[str] | None = None,
        groups: str = "module",
        strategy: str = "auto",
        check: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be a callable returning the loss, got {type(loss_fn).__name__}")
        check_choice("strategy", strategy, STRATEGIES)
        if chunk_size is not None:
            check_int("chunk_size", chunk_size, minimum=1)
        self.model = model
        self.loss_fn = loss_fn
        self.check = check
        self.chunk_size = chunk_size or DEFAULT_CHUNK_SIZE

        selected = select_parameters(model, parameters)
        self.groups: tuple[ParameterGroup, ...] = make_groups([(n, p.numel()) for n, p in selected], groups)
        by_name = dict(selected)
        self.parameter_names: tuple[str, ...] = tuple(n for g in self.groups for n in g.parameter_names)
        self._params: list[torch.nn.Parameter] = [by_name[n] for n in self.parameter_names]
        self._shapes = [p.shape for p in self._params]
        self._offsets = [0]
        for p in self._params:
            self._offsets.append(self._offsets[-1] + p.numel())
        self.dim: int = self._offsets[-1]
        dtypes = {p.dtype for p in self._params}
        devices = {p.device for p in self._params}
        if len(dtypes) > 1 or len(devices) > 1:
            mixed = ", ".join(f"{n}: {p.dtype} on {p.device}" for n, p in zip(self.parameter_names, self._params))
            raise ValueError(f"selected parameters must share one dtype and device; got {mixed}")
        self.dtype: torch.dtype = self._params[0].dtype
        self.device: torch.device = self._params[0].device
        if not self.dtype.is_floating_point:
            raise ValueError(f"parameters must be floating point, got {self.dtype}")

        self.requested_strategy = strategy
        if strategy == "auto":
            strategy = preferred_strategy(self.device)
        self.strategy: str = strategy
        self.fallback_reason: str | None = None
        # double backward: probes batched with is_grads_batched (True), one backward per probe (False), or
        # None: decided on the first product with >= 4 probes by timing both (False where batching fails)
        self.batch_probes: bool | None = False if self.device.type == "cpu" else None
        self.batch_fallback_reason: str | None = None
        self.batch_timing: tuple[float, float] | None = None  # seconds per probe: (loop, batched)
        self.num_matvecs: int = 0

        self._wrapper = ClosureModule(model, loss_fn)
        self._layer_names = {id(m): (n or ROOT_GROUP) for n, m in model.named_modules()}
        self._modules_list = list(model.modules())
        self._cache: tuple[tuple, tuple[Tensor | None, ...], Tensor] | None = None
        self._forward_verified = False
        self._graph_checked = False
        self._records: dict[OpRecord, None] | None = None
        self._records_tried = False
        self._mode_modules = mode_dependent_modules(model)
        if self._mode_modules:
            message = (
                "model has modules in training mode whose output depends on the mode: "
                f"{', '.join(self._mode_modules)}; switching the model to eval() for the Hessian computations "
                "(the modes are restored afterwards). Call model.eval() to silence this warning."
            )
            log.warning(message)
            warnings.warn(message, UserWarning, stacklevel=2)

        # Ops are recorded (per layer) up front only where forward-over-reverse needs the guards; for double
        # backward they are recorded when an error message needs them.
        loss, nodes = self._first_evaluation(record=self.strategy == "forward-over-reverse")
        self._custom_functions = custom_function_names(nodes)
        grads = self._validate(loss) if check else None
        self._guard(nodes)
        if self.strategy == "double-backward":
            self._cache_graph(loss, grads if self._validated_with_graph else None)
        del loss, nodes, grads
        if check and self.strategy == "forward-over-reverse":
            self._trial()

    # ------------------------------------------------------------------ public API
    def matvec(self, v: Tensor) -> Tensor:
        """H v for a flat vector ``v`` of shape ``[dim]``."""
        if v.dim() != 1 or v.shape[0] != self.dim:
            raise ValueError(f"matvec expects a vector of shape [{self.dim}], got {list(v.shape)}")
        return self.matmat(v.unsqueeze(0))[0]

    def matmat(self, V: Tensor) -> Tensor:
        """H V^T as rows: ``[k, dim] -> [k, dim]``, k probes at once."""
        if V.dim() != 2 or V.shape[1] != self.dim:
            raise ValueError(f"matmat expects probes of shape [k, {self.dim}], got {list(V.shape)}")
        V = V.to(device=self.device, dtype=self.dtype)
        out = self._products(V)
        self.num_matvecs += V.shape[0]
        return out

    @property
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{name: shape}`` of the selected parameters, in flat-vector order."""
        return {n: tuple(s) for n, s in zip(self.parameter_names, self._shapes)}

    def flat_parameters(self) -> Tensor:
        """Current values of the selected parameters, flattened (detached copy)."""
        return torch.cat([p.detach().reshape(-1) for p in self._params])

    def gradient(self) -> Tensor:
        """Flat gradient of the loss with respect to the selected parameters."""
        if self._cache is not None and self._cache[0] == self._state_key():
            grads = self._cache[1]
        else:
            with self._computation_mode():
                loss = self._call_loss()
                grads = torch.autograd.grad(loss, self._params, allow_unused=True)
        return self._flatten_list([g.detach() if g is not None else None for g in grads])

    def loss(self) -> float:
        """The loss at the current parameters."""
        if self._cache is not None and self._cache[0] == self._state_key():
            return float(self._cache[2])
        with self._computation_mode(), torch.no_grad():
            return float(self._call_loss())

    def dense(self) -> Tensor:
        """Exact Hessian ``[dim, dim]`` from ``dim`` products with unit vectors (small models and tests)."""
        H = torch.empty(self.dim, self.dim, dtype=self.dtype, device=self.device)
        for start in range(0, self.dim, self.chunk_size):
            stop = min(start + self.chunk_size, self.dim)
            E = torch.zeros(stop - start, self.dim, dtype=self.dtype, device=self.device)
            E[torch.arange(stop - start), torch.arange(start, stop)] = 1
            H[start:stop] = self.matmat(E)
        return H

    def refresh(self) -> None:
        """Forget the cached double-backward graph (after changing the data ``loss_fn`` reads)."""
        self._cache = None

    release = refresh

    def __enter__(self) -> HessianOperator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def finite_difference_error(self, v: Tensor | None = None, eps: float | None = None, seed: int = 0) -> float:
        """Relative error ``|Hv - FD| / |FD|`` of one product against central differences of the gradient.

        ``FD = (g(theta + eps v) - g(theta - eps v)) / (2 eps)``; use float64 for a meaningful check (float32
        finite differences are only accurate to ~1e-3). Does not count towards ``num_matvecs``. The parameters
        are restored afterwards.
        """
        if v is None:
            gen = torch.Generator().manual_seed(seed)
            v = torch.randn(self.dim, generator=gen, dtype=torch.float64).to(self.device, self.dtype)
        v = v.to(self.device, self.dtype)
        if eps is None:
            eps = torch.finfo(self.dtype).eps ** (1 / 3) * max(1.0, float(self.flat_parameters().abs().max()))
        count = self.num_matvecs
        hv = self.matvec(v)
        self.num_matvecs = count
        theta = self.flat_parameters()
        grads = []
        try:
            for sign in (1.0, -1.0):
                self._assign(theta + sign * eps * v)
                grads.append(self.gradient())
        finally:
            self._assign(theta)
        fd = (grads[0] - grads[1]) / (2 * eps)
        return float((hv - fd).norm() / fd.norm().clamp_min(torch.finfo(self.dtype).tiny))

    def __repr__(self) -> str:
        return (
            f"HessianOperator(dim={self.dim}, groups={len(self.groups)}, strategy={self.strategy!r}, "
            f"dtype={self.dtype}, device={self.device}, num_matvecs={self.num_matvecs})"
        )


    # ------------------------------------------------------------------ evaluation helpers
    @contextlib.contextmanager
    def _computation_mode(self) -> Iterator[None]:
        if not self._mode_modules:
            yield
            return
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            yield
        finally:
            for module, training in modes:
                module.training = training

    def _call_loss(self) -> Tensor:
        return self.loss_fn()

    def _state_key(self) -> tuple:
        """Storage and version of every parameter and buffer (read from the modules' own dicts each time, so a
        reassigned tensor changes the key too)."""
        return tuple((t.data_ptr(), t._version) for m in self._modules_list
                     for t in (*m._parameters.values(), *m._buffers.values()) if t is not None)

    def _first_evaluation(self, record: bool) -> tuple[Any, list[Any]]:
        """Evaluate the loss once (recording the ops per layer with ``record``); the loss and its autograd nodes."""
        with self._computation_mode():
            if record:
                self._records_tried = True
                loss, self._records = run_recording_ops(self.model, self._call_loss)
            else:
                loss = self._call_loss()
        nodes = graph_nodes(loss) if isinstance(loss, Tensor) else []
        return loss, nodes

    def _validate(self, loss: Any) -> tuple[Tensor | None, ...]:
        """Check the loss and its gradient; returns the gradient (with its graph for double backward)."""
        if not isinstance(loss, Tensor):
            raise TypeError(f"loss_fn() must return a torch.Tensor, got {type(loss).__name__}")
        if loss.numel() != 1:
            raise ValueError(
                f"loss_fn() must return a scalar loss, got a tensor of shape {tuple(loss.shape)}; "
                "reduce it (e.g. .mean() or .sum())"
            )
        if not loss.dtype.is_floating_point:
            raise ValueError(f"loss_fn() must return a floating-point loss, got {loss.dtype}")
        value = float(loss.detach())
        if not math.isfinite(value):
            raise ValueError(f"loss_fn() returned a non-finite loss ({value}); the Hessian is undefined there")
        if not loss.requires_grad:
            raise ValueError(
                "the loss does not require grad: it does not depend on the selected parameters, or loss_fn runs "
                "under torch.no_grad() / torch.inference_mode()"
            )
        self._validated_with_graph = self.strategy == "double-backward"  # one backward serves both
        try:
            grads = torch.autograd.grad(loss, self._params, allow_unused=True, retain_graph=True,
                                        create_graph=self._validated_with_graph)
        except RuntimeError as exc:
            if is_oom(exc):
                raise
            raise HessianError(f"the gradient of the loss cannot be computed: {self._describe(exc)}") from exc
        unused = [n for n, g in zip(self.parameter_names, grads) if g is None]
        if unused:
            raise ValueError(
                f"selected parameters do not affect the loss (their gradient is None): {', '.join(unused)}; "
                "leave them out with parameters=[...]"
            )
        bad = [n for n, g in zip(self.parameter_names, grads) if not bool(torch.isfinite(g).all())]
        if bad:
            raise ValueError(f"the gradient has non-finite entries for parameters: {', '.join(bad)}")
        with self._computation_mode(), torch.no_grad():
            again = float(self._call_loss())
        tol = math.sqrt(torch.finfo(loss.dtype).eps) * max(1.0, abs(value))
        if abs(again - value) > tol:
            training = [f"{n or ROOT_GROUP} ({type(m).__name__})" for n, m in self.model.named_modules() if m.training]
            raise ValueError(
                f"loss_fn() is not deterministic: two evaluations gave {value!r} and {again!r}. Hessian "
                "estimates need a fixed loss: call model.eval(), or fix the randomness (dropout, sampling) "
                f"inside loss_fn. Modules in training mode: {', '.join(training[:10]) or 'none'}"
            )
        return grads

    _validated_with_graph = False

    def _guard(self, nodes: list[Any]) -> None:
        """Refuse or reroute known-wrong derivatives before they give silently wrong numbers."""
        refuse_not_twice_differentiable(nodes)
        if self.strategy != "forward-over-reverse":
            return
        if uses_scatter_prod(nodes) and forward_ad_scatter_prod_is_wrong():
            layers = layers_running(self._records, lambda r: "scatter_reduce" in r.op and r.reduce == "prod")
            where = f" in layer(s) {', '.join(layers)}" if layers else ""
            reason = (
                f"operation scatter_reduce(reduce='prod'){where} has a wrong forward-mode derivative in torch "
                f"{torch.__version__} (https://github.com/pytorch/pytorch/issues/196702; PyG aggr='mul' uses it)"
            )
            self._fall_back_or_raise(reason)

    def _fall_back_or_raise(self, reason: str, exc: BaseException | None = None) -> None:
        if self.requested_strategy != "auto":
            raise HessianError(
                f"forward-over-reverse cannot be used: {reason}; use strategy='double-backward'"
            ) from exc
        self.strategy = "double-backward"
        self.fallback_reason = reason
        log.warning("forward-over-reverse Hessian-vector products unavailable, using double backward: %s", reason)

    def _trial(self) -> None:
        """Forward-over-reverse: one product (two probes) checked against double backward, before any estimate."""
        gen = torch.Generator().manual_seed(0)
        V = torch.randn(2, self.dim, generator=gen, dtype=torch.float64).to(self.device, self.dtype)
        out = self._products(V)
        if self.strategy == "forward-over-reverse":
            try:
                reference = self._double_backward(V)
            except HessianError as exc:  # double backward unsupported: nothing to compare with
                log.info("cross-check of forward-over-reverse skipped: %s", exc)
                self._cache = None
                return
            diff = float((out - reference).norm() / reference.norm().clamp_min(torch.finfo(self.dtype).tiny))
            tol = 1e-6 if self.dtype == torch.float64 else 1e-2
            if diff > tol:
                self._fall_back_or_raise(
                    f"forward-over-reverse and double backward disagree (relative difference {diff:.2e}): loss_fn "
                    "may use parameters outside the model's modules, or an op has a wrong forward-mode derivative"
                )
            elif self.strategy == "forward-over-reverse":
                self._cache = None  # the reference graph is not needed any more
        log.debug("Hessian operator ready: dim=%d strategy=%s batch_probes=%s", self.dim, self.strategy,
                  self.batch_probes)

    def _describe(self, exc: BaseException) -> str:
        """Name the failing operation and the layer(s) running it (records the ops now if not done yet)."""
        if not self._records_tried:
            self._records_tried = True
            try:
                with self._computation_mode(), torch.no_grad():
                    _, self._records = run_recording_ops(self.model, self._call_loss)
            except Exception as error:  # noqa: BLE001 - best effort: the message then names no layer
                log.debug("op recording for the error message failed: %s", error)
        return describe_failure(exc, self._layer_names, self._records, self._custom_functions)

    # ------------------------------------------------------------------ layout helpers
    def _split(self, V: Tensor) -> list[Tensor]:
        k = V.shape[0]
        return [V[:, a:b].reshape(k, *shape) for a, b, shape in zip(self._offsets, self._offsets[1:], self._shapes)]

    def _flatten_batched(self, parts: Sequence[Tensor | None], k: int) -> Tensor:
        return torch.cat(
            [
                p.reshape(k, -1) if p is not None else torch.zeros(k, b - a, dtype=self.dtype, device=self.device)
                for p, a, b in zip(parts, self._offsets, self._offsets[1:])
            ],
            dim=1,
        )

    def _flatten_list(self, parts: Sequence[Tensor | None]) -> Tensor:
        return self._flatten_batched([p.unsqueeze(0) if p is not None else None for p in parts], 1)[0]

    def _assign(self, flat: Tensor) -> None:
        with torch.no_grad():
            for p, a, b in zip(self._params, self._offsets, self._offsets[1:]):
                p.copy_(flat[a:b].view_as(p))
