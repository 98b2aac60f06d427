"""Hessian-vector products of a loss with respect to (a subset of) a module's parameters.

:class:`HessianOperator` wraps ``model`` and a closure ``loss_fn()`` that computes a scalar loss through
``model`` and exposes ``H = d^2 loss / d theta^2`` as a linear operator on the flat vector ``theta`` of the
selected parameters, laid out group by group (layers; see :mod:`gnnbench.hessian.params`).

Strategies
----------
* ``"forward-over-reverse"``: ``jvp(grad(f))`` with :mod:`torch.func`, ``f`` being ``loss_fn()`` evaluated by
  :func:`torch.func.functional_call` with the selected parameters swapped in; ``k`` probes at once with
  :func:`torch.func.vmap` (``chunk_size`` probes per pass). Forward and backward are recomputed per chunk.
* ``"double-backward"``: ``g = autograd.grad(loss, theta, create_graph=True)`` once (cached while the
  parameters are unchanged), then ``autograd.grad(g, theta, V)`` for ``chunk_size`` probes at once
  (``is_grads_batched=True``) or probe by probe (attribute ``batch_probes``: default False on CPU, where the
  loop was as fast as batching for an MLP and 3.6x faster for a GCN on 2 cores; None elsewhere: time both on
  the first product with >= 4 probes and keep the faster). Batching is switched off where an op does not
  support it (e.g. sparse matrix products).
* ``"auto"``: double backward on CPU (measured faster on 2 CPU cores: vmap was 1.8x slower than PyHessian on an
  MLP and 5x on a GCN), forward-over-reverse elsewhere (GPU). If it cannot be used for this model (an op
  without forward-mode or batching rule, a guarded op below, or a disagreement with double backward in the
  check), it falls back to double backward, logs a warning naming the operation, and records
  ``fallback_reason``.

Correctness of message passing (torch 2.14, PyG 2.8, CPU, no torch_scatter; checked against central finite
differences of gradients in float64, see tests/test_hessian_operator.py)
-----------------------------------------------------------------------------------------------------------
PyG's ``scatter`` uses ``Tensor.scatter_add_`` for sum and mean (mean divides by clamped counts),
``scatter_reduce_(reduce="amax"/"amin", include_self=False)`` for max/min, ``scatter_reduce_(reduce="prod")``
for mul, and ``softmax`` subtracts a detached group max (shift invariance makes that exact) and normalises
with ``scatter_add_``. Results (relative error of H v vs finite differences):

* ``scatter_add_``, ``index_add``, ``scatter_reduce`` sum/mean/amax/amin (both ``include_self``), PyG
  ``scatter`` sum/mean/max/min and ``softmax`` (with ``index``): correct (~1e-9) with double backward,
  batched double backward, forward-over-reverse and vmapped forward-over-reverse; GCNConv, GINConv,
  SAGEConv (mean, max) and GATConv too. Max/min are piecewise linear: at ties the derivative is a
  subgradient (reverse mode splits it evenly) and finite differences are meaningless.
* ``scatter_reduce(reduce="prod")`` (PyG ``aggr="mul"``, MulAggregation): forward-mode AD is **silently
  wrong**, already to first order (relative error 0.6-0.8; upstream pytorch/pytorch#196702); double backward
  is correct. Guard: the ops are recorded on first evaluation; when this op is present and a tiny self-test
  (:func:`forward_ad_scatter_prod_is_wrong`) confirms the torch bug, "auto" uses double backward and an
  explicit forward-over-reverse raises :class:`HessianError` naming the layer.
* ``torch._segment_reduce`` (PyG ``segment``/``softmax`` with ``ptr``, without torch_scatter):
  no double backward ("derivative for aten::_segment_reduce_backward is not implemented") and no forward AD:
  :class:`HessianError` naming the op and layer.
* Sparse adjacency (``torch.sparse.mm``, PyG ``spmm`` with sum): double backward correct but not batched
  (``is_grads_batched`` fails: "expand is unsupported for Sparse tensors"; the probe loop is used), no
  forward AD. ``spmm`` with mean/max (``_sparse_mm_reduce_impl``): no double backward -> error.
* torch_scatter (not installed here): its ``segment_csr``/``segment_coo``/``gather_*`` autograd functions
  are not twice differentiable: their backward is not recorded, so second derivatives silently vanish
  (upstream rusty1s/pytorch_scatter#299). PyG uses them for ``segment`` (and ``scatter`` max on CUDA uses
  ``torch_scatter.scatter``). Guard: such autograd nodes in the loss graph raise :class:`HessianError`.

Anything else can be verified with :meth:`HessianOperator.finite_difference_error`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from .params import ROOT_GROUP, ParameterGroup, make_groups, select_parameters

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

STRATEGIES = ("auto", "forward-over-reverse", "double-backward")
DEFAULT_CHUNK_SIZE = 32
LOSS_FN_SCOPE = "<loss_fn>"  # where an op ran outside any module of the model

# Autograd nodes of functions whose backward is not differentiable (second derivatives silently vanish).
_NOT_TWICE_DIFFERENTIABLE = re.compile(r"Segment\w*(CSR|COO)|Gather\w*(CSR|COO)")


class HessianError(RuntimeError):
    """Hessian-vector products cannot be computed (correctly) for this model and loss."""


@dataclass(frozen=True)
class _OpRecord:
    op: str  # dispatcher name, e.g. "aten::scatter_reduce_.two"
    layer: str  # innermost module path running the op ("<root>", or "<loss_fn>" outside the model)
    reduce: str | None  # first string argument (the reduction of scatter/segment ops)
    sparse: bool  # a sparse tensor among the arguments


class _OpRecorder(TorchDispatchMode):
    """Records the dispatched ops together with the module that ran them."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.records: dict[_OpRecord, None] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        values = list(args) + list(kwargs.values())
        reduce = next((a for a in values if isinstance(a, str)), None)
        sparse = any(isinstance(a, Tensor) and a.layout != torch.strided for a in values)
        layer = self.stack[-1] if self.stack else LOSS_FN_SCOPE
        self.records.setdefault(_OpRecord(func.name(), layer, reduce, sparse), None)
        return func(*args, **kwargs)


class _ClosureModule(torch.nn.Module):
    """``forward()`` = ``loss_fn()``; lets :func:`torch.func.functional_call` swap the parameters of ``model``."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[], Tensor]) -> None:
        super().__init__()
        self.model = model
        object.__setattr__(self, "_closure", loss_fn)  # not registered, even if it is a Module

    def forward(self) -> Tensor:
        return self._closure()


@functools.cache
def forward_ad_scatter_prod_is_wrong() -> bool:
    """Whether this torch's forward-mode derivative of ``scatter_reduce(reduce="prod")`` is wrong.

    pytorch/pytorch#196702: the JVP is wrong (not only at zeros). Checked on a 3-element example.
    """
    src = torch.tensor([2.0, 3.0, 5.0], dtype=torch.float64)
    tangent = torch.tensor([1.0, 0.5, -1.0], dtype=torch.float64)
    index = torch.tensor([0, 0, 1])

    def prod(s: Tensor) -> Tensor:
        return torch.ones(2, dtype=s.dtype).scatter_reduce(0, index, s, reduce="prod", include_self=True)

    try:
        jvp = torch.func.jvp(prod, (src,), (tangent,))[1]
    except Exception:  # noqa: BLE001 - unsupported counts as unusable, the caller falls back
        return True
    expected = torch.tensor([1.0 * 3.0 + 2.0 * 0.5, -1.0], dtype=torch.float64)  # d(s0 s1), d(s2)
    return not torch.allclose(jvp, expected)


def preferred_strategy(device: torch.device) -> str:
    """The strategy "auto" tries first: double backward on CPU, forward-over-reverse on accelerators."""
    return "double-backward" if torch.device(device).type == "cpu" else "forward-over-reverse"


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


_OP_PATTERNS = (
    re.compile(r"derivative for (?:aten::)?'?([\w.]+)'? is not implemented"),
    re.compile(r"forward AD with ([\w.]+)"),
    re.compile(r"[Bb]atching rule not implemented for (?:aten::)?([\w.]+)"),
    re.compile(r"(once_differentiable)"),
    re.compile(r"aten::([\w.]+)"),
    re.compile(r"(\w+) is unsupported for Sparse"),
)


def _op_from_message(message: str) -> str | None:
    for pattern in _OP_PATTERNS:
        match = pattern.search(message)
        if match:
            return match.group(1)
    return None


def _normalise_op(name: str) -> str:
    name = name.split("::")[-1].split(".")[0].lower()
    name = re.sub(r"_?backward\d*$", "", name)
    return name.replace("_", "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _mode_dependent_modules(model: torch.nn.Module) -> list[str]:
    """Modules in training mode whose output depends on the mode (batch norm, dropout)."""
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.dropout import _DropoutNd
    from torch.nn.modules.instancenorm import _InstanceNorm

    found = []
    for name, module in model.named_modules():
        if not module.training:
            continue
        rate = getattr(module, "dropout", None)
        if (
            isinstance(module, (_BatchNorm, _DropoutNd))
            or (isinstance(module, _InstanceNorm) and module.track_running_stats)
            or (isinstance(rate, float) and rate > 0)
        ):
            found.append(f"{name or ROOT_GROUP} ({type(module).__name__})")
    return found


def _graph_nodes(loss: Tensor) -> list[Any]:
    """All autograd nodes reachable from ``loss``."""
    seen: set[int] = set()
    nodes = []
    stack = [loss.grad_fn] if loss.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        nodes.append(node)
        stack.extend(n for n, _ in node.next_functions)
    return nodes


def _custom_function_names(nodes: Iterable[Any]) -> list[str]:
    names = []
    for node in nodes:
        name = node.name()
        if isinstance(node, torch.autograd.function.BackwardCFunction) or name.startswith("CppNode<"):
            names.append(name)
    return sorted(set(names))


class HessianOperator:
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
        check: validate the inputs and try one product (scalar finite loss, gradients exist, determinism; for
            forward-over-reverse a cross-check with double backward). The correctness guards for known
            bad ops run either way.
        chunk_size: probes per vmap / batched-backward pass (bounds memory); default 32.

    Modules in training mode whose output depends on the mode (BatchNorm, Dropout, layers with a ``dropout``
    rate) make the model switch to eval mode during every computation (with a warning); the modes are
    restored afterwards.
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
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(map(repr, STRATEGIES))}, got {strategy!r}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
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

        self._wrapper = _ClosureModule(model, loss_fn)
        self._layer_names = {id(m): (n or ROOT_GROUP) for n, m in model.named_modules()}
        self._cache: tuple[tuple, tuple[Tensor | None, ...], Tensor] | None = None
        self._forward_verified = False
        self._graph_checked = False
        self._mode_modules = _mode_dependent_modules(model)
        if self._mode_modules:
            message = (
                "model has modules in training mode whose output depends on the mode: "
                f"{', '.join(self._mode_modules)}; switching the model to eval() for the Hessian computations "
                "(the modes are restored afterwards). Call model.eval() to silence this warning."
            )
            log.warning(message)
            warnings.warn(message, UserWarning, stacklevel=2)

        loss, records, nodes = self._first_evaluation()
        self._records = records
        self._custom_functions = _custom_function_names(nodes)
        if check:
            self._validate(loss)
        self._guard(nodes)
        if self.strategy == "double-backward":
            self._cache_graph(loss)
        del loss, nodes
        if check:
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
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        return tuple((t.data_ptr(), t._version) for t in tensors)

    def _first_evaluation(self) -> tuple[Any, dict[_OpRecord, None] | None, list[Any]]:
        """Evaluate the loss once, recording the ops per layer and the autograd graph."""
        stack: list[str] = []
        handles = []
        for name, module in self.model.named_modules():
            layer = name or ROOT_GROUP

            def push(_module: torch.nn.Module, *_: Any, layer: str = layer) -> None:
                stack.append(layer)

            def pop(_module: torch.nn.Module, *_: Any) -> None:
                if stack:
                    stack.pop()

            handles.append(module.register_forward_pre_hook(push))
            handles.append(module.register_forward_hook(pop, always_call=True))
        recorder = _OpRecorder(stack)
        records: dict[_OpRecord, None] | None = None
        try:
            with self._computation_mode():
                try:
                    with recorder:
                        loss = self._call_loss()
                    records = recorder.records
                except Exception as exc:  # noqa: BLE001 - the scan is best effort; evaluate plainly
                    log.debug("op recording failed (%s); evaluating the loss without it", _first_line(exc))
                    loss = self._call_loss()
        finally:
            for handle in handles:
                handle.remove()
        nodes = _graph_nodes(loss) if isinstance(loss, Tensor) else []
        return loss, records, nodes

    def _validate(self, loss: Any) -> None:
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
        try:
            grads = torch.autograd.grad(loss, self._params, allow_unused=True, retain_graph=True)
        except RuntimeError as exc:
            if _is_oom(exc):
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

    def _layers_running(self, predicate: Callable[[_OpRecord], bool]) -> list[str]:
        if not self._records:
            return []
        return sorted({r.layer for r in self._records if predicate(r)})

    def _guard(self, nodes: list[Any]) -> None:
        """Refuse or reroute known-wrong derivatives before they give silently wrong numbers."""
        broken = sorted({n.name() for n in nodes if _NOT_TWICE_DIFFERENTIABLE.search(n.name())})
        if broken:
            raise HessianError(
                f"the loss uses {', '.join(broken)} (torch_scatter segment/gather), whose backward is not "
                "differentiable: second derivatives would silently be zero (rusty1s/pytorch_scatter#299). Use "
                "index-based aggregation (torch_geometric.utils.scatter with an index instead of ptr) or uninstall "
                "torch_scatter"
            )
        if self.strategy != "forward-over-reverse":
            return
        uses_prod = any(
            n.name().startswith("ScatterReduceBackward") and getattr(n, "_saved_reduce", None) == "prod" for n in nodes
        )
        if uses_prod and forward_ad_scatter_prod_is_wrong():
            layers = self._layers_running(lambda r: "scatter_reduce" in r.op and r.reduce == "prod")
            where = f" in layer(s) {', '.join(layers)}" if layers else ""
            reason = (
                f"operation scatter_reduce(reduce='prod'){where} has a wrong forward-mode derivative in torch "
                f"{torch.__version__} (pytorch/pytorch#196702; PyG aggr='mul' uses it)"
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
        """One product (two probes) to catch unsupported operations now rather than in the first estimate."""
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

    # ------------------------------------------------------------------ products
    def _products(self, V: Tensor) -> Tensor:
        if V.shape[0] == 0:
            return V.clone()
        if self.strategy == "forward-over-reverse":
            try:
                out = self._forward_over_reverse(V)
                self._forward_verified = True
                return out
            except (RuntimeError, NotImplementedError, TypeError) as exc:
                if self._forward_verified or _is_oom(exc):
                    raise
                self._fall_back_or_raise(self._describe(exc), exc)
        return self._double_backward(V)

    def _forward_over_reverse(self, V: Tensor) -> Tensor:
        names = ["model." + n for n in self.parameter_names]
        primals = tuple(p.detach() for p in self._params)
        wrapper = self._wrapper

        def f(*params: Tensor) -> Tensor:
            return torch.func.functional_call(wrapper, dict(zip(names, params)), ()).reshape(())

        grad_f = torch.func.grad(f, argnums=tuple(range(len(primals))))

        def hvp(*tangents: Tensor) -> tuple[Tensor, ...]:
            return torch.func.jvp(grad_f, primals, tangents)[1]

        with self._computation_mode(), torch.no_grad():
            out = torch.func.vmap(hvp, chunk_size=self.chunk_size)(*self._split(V))
        return self._flatten_batched(out, V.shape[0])

    def _cache_graph(self, loss: Tensor) -> None:
        grads = torch.autograd.grad(loss, self._params, create_graph=True, allow_unused=True)
        if not self._graph_checked:
            self._graph_checked = True
            errors = {n.name() for g in grads if g is not None for n in _graph_nodes(g) if "Error" in n.name()}
            if errors:
                names = ", ".join(n.removesuffix("Backward") for n in self._custom_functions)
                raise HessianError(
                    f"double backward failed: custom autograd.Function {names or '(unknown)'} is marked "
                    "@once_differentiable (or its backward is not differentiable): its second-order terms would "
                    "silently be dropped. Implement a differentiable backward, or a jvp and use "
                    "strategy='forward-over-reverse'"
                )
        self._cache = (self._state_key(), grads, loss.detach())

    def _graph(self) -> tuple[Tensor | None, ...]:
        key = self._state_key()
        if self._cache is None or self._cache[0] != key:
            self._cache = None
            with self._computation_mode():
                loss = self._call_loss()
            if self.check and not bool(torch.isfinite(loss.detach()).all()):
                raise ValueError(f"loss_fn() returned a non-finite loss ({float(loss)}) at the current parameters")
            self._cache_graph(loss)
        assert self._cache is not None
        return self._cache[1]

    def _double_backward(self, V: Tensor) -> Tensor:
        k = V.shape[0]
        grads = self._graph()
        live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        if not live:  # the gradient is constant: H = 0
            return torch.zeros_like(V)
        outputs = [grads[i] for i in live]
        parts = self._split(V)

        def loop(a: int, b: int) -> Tensor:
            rows = []
            for j in range(a, b):
                res = torch.autograd.grad(
                    outputs, self._params, [parts[i][j] for i in live], retain_graph=True, allow_unused=True
                )
                rows.append(self._flatten_list(res))
            return torch.stack(rows)

        def batched(a: int, b: int) -> Tensor | None:  # None where batched backward is unsupported
            try:
                res = torch.autograd.grad(
                    outputs, self._params, [parts[i][a:b] for i in live], retain_graph=True, allow_unused=True,
                    is_grads_batched=True,
                )
            except (RuntimeError, NotImplementedError) as exc:
                if _is_oom(exc):
                    raise
                self.batch_probes = False
                self.batch_fallback_reason = self._describe(exc)
                log.info("batched double backward unsupported (%s); using one backward per probe",
                         self.batch_fallback_reason)
                return None
            return self._flatten_batched(res, b - a)

        results: list[Tensor] = []
        pos = 0
        try:
            if self.batch_probes is None and k >= 4:  # time both ways on the first probes, keep the faster
                times = []
                for j in range(2):
                    t0 = self._clock()
                    results.append(loop(j, j + 1))
                    times.append(self._clock() - t0)
                pos = 2
                n = min(self.chunk_size, k - pos)
                t0 = self._clock()
                out = batched(pos, pos + n)
                if out is not None:
                    per_probe = (self._clock() - t0) / n
                    results.append(out)
                    pos += n
                    self.batch_probes = per_probe < min(times)
                    self.batch_timing = (min(times), per_probe)
                    log.debug("double backward per probe: loop %.3g s, batched %.3g s -> batch_probes=%s",
                              min(times), per_probe, self.batch_probes)
            while pos < k:
                n = min(self.chunk_size, k - pos)
                out = batched(pos, pos + n) if self.batch_probes is not False and n > 1 else None
                results.append(out if out is not None else loop(pos, pos + n))
                pos += n
        except (RuntimeError, NotImplementedError) as exc:
            if _is_oom(exc):
                raise
            raise HessianError(f"double backward failed: {self._describe(exc)}") from exc
        return torch.cat(results)

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    # ------------------------------------------------------------------ diagnostics
    def _describe(self, exc: BaseException) -> str:
        """Name the failing operation and the layer(s) running it."""
        message = str(exc)
        op = _op_from_message(message)
        layers: list[str] = []
        seen: set[int] = set()
        cause: BaseException | None = exc
        while cause is not None and id(cause) not in seen and not layers:  # raised inside a module's forward?
            seen.add(id(cause))
            tb = cause.__traceback__
            while tb is not None:  # keep the innermost module frame
                owner = tb.tb_frame.f_locals.get("self")
                if isinstance(owner, torch.nn.Module) and id(owner) in self._layer_names:
                    layers = [self._layer_names[id(owner)]]
                tb = tb.tb_next
            cause = cause.__cause__ or cause.__context__
        if op == "once_differentiable" or "autograd.Function" in message:
            names = ", ".join(n.removesuffix("Backward") for n in self._custom_functions)
            op = f"custom autograd.Function {names}" if names else "a custom autograd.Function"
        elif op is not None and not layers:
            target = _normalise_op(op)
            layers = self._layers_running(
                lambda r: len(_normalise_op(r.op)) > 3
                and (target in _normalise_op(r.op) or _normalise_op(r.op) in target)
            )
        if (op is None or op == "expand") and "Sparse" in message:
            sparse_ops = sorted({r.op for r in self._records or () if r.sparse})
            op = f"on sparse tensors ({', '.join(sparse_ops[:4])})" if sparse_ops else "on sparse tensors"
            layers = self._layers_running(lambda r: r.sparse) or layers
        parts = [f"operation {op}" if op else "an operation"]
        if layers:
            parts.append(f"in layer(s) {', '.join(layers[:5])}")
        parts.append(f"is not supported ({_first_line(exc)})")
        return " ".join(parts)
