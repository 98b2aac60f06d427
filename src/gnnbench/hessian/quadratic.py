"""Exact quadratic forms ``v^T H v`` and per-layer ``v_i^T H_ii v_i`` along a direction (e.g. ``W - W0``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from ..arguments import check_int
from .probes import F64, OperatorLike, block_products
from .results import QuadraticFormResult

__all__ = ["flatten_direction", "quadratic_form_of"]


def _parameter_layout(op: OperatorLike) -> dict[str, tuple[int, tuple[int, ...]]]:
    """``{parameter name: (offset in the flat vector, shape)}`` from the operator's groups and parameter shapes."""
    shapes = getattr(op, "parameter_shapes", None)
    if shapes is None and getattr(op, "model", None) is not None:
        shapes = {name: tuple(p.shape) for name, p in op.model.named_parameters()}
    if shapes is None:
        raise TypeError("a dict direction needs parameter shapes: the operator has neither `parameter_shapes` nor "
                        "`model`; pass a flat [d] tensor instead")
    layout: dict[str, tuple[int, tuple[int, ...]]] = {}
    for group in op.groups:
        offset = group.start
        for name in group.parameter_names:
            shape = tuple(shapes[name])
            layout[name] = (offset, shape)
            offset += math.prod(shape)
        if offset != group.stop:
            raise ValueError(f"parameters of group {group.name!r} fill {offset - group.start} entries, expected "
                             f"{group.stop - group.start}")
    return layout


def flatten_direction(op: OperatorLike, direction: Mapping[str, Tensor] | Tensor, *,
                      ignore: Iterable[str] = ()) -> Tensor:
    """A direction as the operator's flat float64 ``[d]`` vector.

    ``direction``: a flat ``[d]`` tensor, or a dict from parameter name to a tensor of that parameter's shape
    (missing parameters are zero; names in ``ignore``, e.g. parameters of the model that were not selected, are
    skipped; any other unknown name is an error).
    """
    if isinstance(direction, Tensor):
        if direction.shape != (op.dim,):
            raise ValueError(f"a flat direction must have shape ({op.dim},), got {tuple(direction.shape)}")
        return direction.detach().to(device=op.device, dtype=F64)
    if not isinstance(direction, Mapping):
        raise TypeError(f"direction must be a dict of tensors or a flat tensor, got {type(direction).__name__}")
    layout = _parameter_layout(op)
    skip = set(ignore)
    flat = torch.zeros(op.dim, dtype=F64, device=op.device)
    for name, value in direction.items():
        if name not in layout:
            if name in skip:
                continue
            raise KeyError(f"direction has parameter {name!r}, which is not among the Hessian's parameters "
                           f"{sorted(layout)}")
        offset, shape = layout[name]
        value = torch.as_tensor(value)
        if tuple(value.shape) != shape:
            raise ValueError(f"direction[{name!r}] has shape {tuple(value.shape)}, but the parameter has shape "
                             f"{shape}")
        flat[offset:offset + value.numel()] = value.detach().reshape(-1).to(device=op.device, dtype=F64)
    return flat


def quadratic_form_of(op: OperatorLike, direction: Mapping[str, Tensor] | Tensor, *,
                      ignore: Iterable[str] = (), chunk_size: int | None = None) -> QuadraticFormResult:
    """Exact ``v^T H v`` and per-layer ``v_i^T H_ii v_i`` (``v_i``: ``v`` restricted to group ``i``).

    One product per group with a nonzero block: ``H [0 .. v_i .. 0]`` gives ``v_i^T H_ii v_i`` and, summed over
    ``i`` against ``v``, ``v^T H v``. See :func:`flatten_direction` for ``direction``.
    """
    if chunk_size is not None:
        check_int("chunk_size", chunk_size, minimum=1)
    v = flatten_direction(op, direction, ignore=ignore)
    groups = list(op.groups)
    blocks = [v[g.start:g.stop][None] if bool(v[g.start:g.stop].any()) else None for g in groups]
    products, used = block_products(op, groups, blocks, chunk_size, full=True)
    per_layer, cross = {}, []
    for g, block, hv in zip(groups, blocks, products):
        if block is None:
            per_layer[g.name] = 0.0
            continue
        per_layer[g.name] = float(block[0] @ hv[0, g.start:g.stop])
        cross.append(float(v @ hv[0]))
    return QuadraticFormResult(total=math.fsum(cross), per_layer=per_layer, num_matvecs=used)
