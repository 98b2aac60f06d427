"""``linear(x, weight, bias)``: ``torch.nn.functional.linear`` through oneDNN's matrix products on the CPU.

PyTorch's CPU ``F.linear`` calls MKL's sgemm, which on AMD processors takes a slower code path:
on the 2-core AMD EPYC we test on, ``[8192, 128] @ [128, 128]`` (one processor message linear at
batch 32, n = 16) took 2.6 ms through MKL and 1.1 ms through oneDNN (the library XLA's CPU
matrix products match), and the weight-gradient product 2.8 ms against 1.7 ms. :func:`linear`
uses oneDNN (``torch.ops.mkldnn._linear_pointwise``, the kernel TorchInductor emits for CPU
linears) for float32 CPU tensors, forward and backward, and ``F.linear`` everywhere else
(other dtypes and devices, under ``torch.func`` transforms or CPU autocast, or when switched off
with :func:`plain_linear`). The backward is written with :func:`linear` itself, so the result is
twice differentiable (Hessian-vector products by double backward). Same products, same
results up to float32 rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

_kernel = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", None)
_enabled = bool(_kernel is not None and _transforms_active is not None and torch.backends.mkldnn.is_available())


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def onednn_available() -> bool:
    """Whether :func:`linear` can use oneDNN here (CPU build with oneDNN)."""
    return bool(_kernel is not None and _transforms_active is not None and torch.backends.mkldnn.is_available())


@contextlib.contextmanager
def plain_linear() -> Iterator[None]:
    """Within the block, :func:`linear` is exactly ``F.linear`` (MKL or the device's own library)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def _use_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (_enabled and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.device.type == "cpu" and weight.device.type == "cpu" and x.dim() >= 2
            and not x.is_mkldnn and not _transforms_active() and not _cpu_autocast())


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` (``F.linear``), through oneDNN for float32 CPU tensors (see the module docstring)."""
    if not _use_onednn(x, weight):
        return F.linear(x, weight, bias)
    out = _OneDnnLinear.apply(x.reshape(-1, x.shape[-1]), weight, bias)
    return out.view(*x.shape[:-1], weight.shape[0])


def _matmul_t(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b.T`` for 2-D ``a``, ``b``, differentiably."""
    if _use_onednn(a, b):
        return _OneDnnLinear.apply(a, b, None)
    return a @ b.t()


class _OneDnnLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _kernel(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = _matmul_t(grad, weight.t()) if ctx.needs_input_grad[0] else None
        # the kernel copies a transposed input itself, more slowly than .contiguous() (2.5 vs 2.2 ms at 8192 x 128)
        grad_w = _matmul_t(grad.t().contiguous(), x.t()) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b
