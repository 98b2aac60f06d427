"""Which second derivatives can be trusted: op recording, known-wrong derivatives, and error messages naming the op.

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
  wrong**, already to first order (relative error 0.6-0.8; upstream
  https://github.com/pytorch/pytorch/issues/196702); double backward is correct. Guard: the ops are recorded
  when forward-over-reverse is to be used; when this op is present and a tiny self-test
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
  (https://github.com/rusty1s/pytorch_scatter/issues/299). PyG uses them for ``segment`` (and ``scatter`` max
  on CUDA uses ``torch_scatter.scatter``). Guard: such autograd nodes in the loss graph raise
  :class:`HessianError`.

Anything else can be verified with :meth:`HessianOperator.finite_difference_error`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from .params import ROOT_GROUP

log = logging.getLogger(__name__)

LOSS_FN_SCOPE = "<loss_fn>"  # where an op ran outside any module of the model

# Autograd nodes of functions whose backward is not differentiable (second derivatives silently vanish).
NOT_TWICE_DIFFERENTIABLE = re.compile(r"Segment\w*(CSR|COO)|Gather\w*(CSR|COO)")


class HessianError(RuntimeError):
    """Hessian-vector products cannot be computed (correctly) for this model and loss."""


@dataclass(frozen=True)
class OpRecord:
    op: str  # dispatcher name, e.g. "aten::scatter_reduce_.two"
    layer: str  # innermost module path running the op ("<root>", or "<loss_fn>" outside the model)
    reduce: str | None  # first string argument (the reduction of scatter/segment ops)
    sparse: bool  # a sparse tensor among the arguments


class _OpRecorder(TorchDispatchMode):
    """Records the dispatched ops together with the module that ran them."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.records: dict[OpRecord, None] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        values = list(args) + list(kwargs.values())
        reduce = next((a for a in values if isinstance(a, str)), None)
        sparse = any(isinstance(a, Tensor) and a.layout != torch.strided for a in values)
        layer = self.stack[-1] if self.stack else LOSS_FN_SCOPE
        self.records.setdefault(OpRecord(func.name(), layer, reduce, sparse), None)
        return func(*args, **kwargs)


def run_recording_ops(model: torch.nn.Module, call: Callable[[], Any]) -> tuple[Any, dict[OpRecord, None] | None]:
    """``call()`` with every dispatched op recorded with the module running it; records are None where recording
    failed (``call()`` is then evaluated plainly)."""
    stack: list[str] = []
    handles = []
    for name, module in model.named_modules():
        layer = name or ROOT_GROUP

        def push(_module: torch.nn.Module, *_: Any, layer: str = layer) -> None:
            stack.append(layer)

        def pop(_module: torch.nn.Module, *_: Any) -> None:
            if stack:
                stack.pop()

        handles.append(module.register_forward_pre_hook(push))
        handles.append(module.register_forward_hook(pop, always_call=True))
    recorder = _OpRecorder(stack)
    try:
        try:
            with recorder:
                result = call()
            return result, recorder.records
        except Exception as exc:  # noqa: BLE001 - the scan is best effort; evaluate plainly
            log.debug("op recording failed (%s); evaluating the loss without it", first_line(exc))
            return call(), None
    finally:
        for handle in handles:
            handle.remove()


@functools.cache
def forward_ad_scatter_prod_is_wrong() -> bool:
    """Whether this torch's forward-mode derivative of ``scatter_reduce(reduce="prod")`` is wrong.

    https://github.com/pytorch/pytorch/issues/196702: the JVP is wrong (not only at zeros). Checked on a
    3-element example.
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


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


_OP_PATTERNS = (
    re.compile(r"derivative for (?:aten::)?'?([\w.]+)'? is not implemented"),
    re.compile(r"forward AD with ([\w.]+)"),
    re.compile(r"[Bb]atching rule not implemented for (?:aten::)?([\w.]+)"),
    re.compile(r"(once_differentiable)"),
    re.compile(r"aten::([\w.]+)"),
    re.compile(r"(\w+) is unsupported for Sparse"),
)


def op_from_message(message: str) -> str | None:
    for pattern in _OP_PATTERNS:
        match = pattern.search(message)
        if match:
            return match.group(1)
    return None


def normalise_op(name: str) -> str:
    name = name.split("::")[-1].split(".")[0].lower()
    name = re.sub(r"_?backward\d*$", "", name)
    return name.replace("_", "")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def mode_dependent_modules(model: torch.nn.Module) -> list[str]:
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


def graph_nodes(loss: Tensor) -> list[Any]:
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


def custom_function_names(nodes: Iterable[Any]) -> list[str]:
    names = []
    for node in nodes:
        name = node.name()
        if isinstance(node, torch.autograd.function.BackwardCFunction) or name.startswith("CppNode<"):
            names.append(name)
    return sorted(set(names))


def layers_running(records: dict[OpRecord, None] | None, predicate: Callable[[OpRecord], bool]) -> list[str]:
    if not records:
        return []
    return sorted({r.layer for r in records if predicate(r)})


def refuse_not_twice_differentiable(nodes: Iterable[Any]) -> None:
    """:class:`HessianError` when the loss graph holds torch_scatter's segment/gather functions."""
    broken = sorted({n.name() for n in nodes if NOT_TWICE_DIFFERENTIABLE.search(n.name())})
    if broken:
        raise HessianError(
            f"the loss uses {', '.join(broken)} (torch_scatter segment/gather), whose backward is not "
            "differentiable: second derivatives would silently be zero "
            "(https://github.com/rusty1s/pytorch_scatter/issues/299). Use index-based aggregation "
            "(torch_geometric.utils.scatter with an index instead of ptr) or uninstall torch_scatter"
        )


def uses_scatter_prod(nodes: Iterable[Any]) -> bool:
    return any(n.name().startswith("ScatterReduceBackward") and getattr(n, "_saved_reduce", None) == "prod"
               for n in nodes)


def describe_failure(exc: BaseException, layer_names: dict[int, str], records: dict[OpRecord, None] | None,
                     custom_functions: Sequence[str]) -> str:
    """Name the failing operation and the layer(s) running it (``layer_names``: ``id(module) -> path``)."""
    message = str(exc)
    op = op_from_message(message)
    layers: list[str] = []
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen and not layers:  # raised inside a module's forward?
        seen.add(id(cause))
        tb = cause.__traceback__
        while tb is not None:  # keep the innermost module frame
            owner = tb.tb_frame.f_locals.get("self")
            if isinstance(owner, torch.nn.Module) and id(owner) in layer_names:
                layers = [layer_names[id(owner)]]
            tb = tb.tb_next
        cause = cause.__cause__ or cause.__context__
    if op == "once_differentiable" or "autograd.Function" in message:
        names = ", ".join(n.removesuffix("Backward") for n in custom_functions)
        op = f"custom autograd.Function {names}" if names else "a custom autograd.Function"
    elif op is not None and not layers:
        target = normalise_op(op)
        layers = layers_running(
            records,
            lambda r: len(normalise_op(r.op)) > 3 and (target in normalise_op(r.op) or normalise_op(r.op) in target),
        )
    if (op is None or op == "expand") and "Sparse" in message:
        sparse_ops = sorted({r.op for r in records or () if r.sparse})
        op = f"on sparse tensors ({', '.join(sparse_ops[:4])})" if sparse_ops else "on sparse tensors"
        layers = layers_running(records, lambda r: r.sparse) or layers
    parts = [f"operation {op}" if op else "an operation"]
    if layers:
        parts.append(f"in layer(s) {', '.join(layers[:5])}")
    parts.append(f"is not supported ({first_line(exc)})")
    return " ".join(parts)
