"""An explicit symmetric matrix behind the operator protocol of :mod:`gnnbench.hessian.estimators`.

``MatrixOperator(H, groups={"a": 10, "b": 5})`` splits the rows/columns of ``H`` into named contiguous blocks (the
"layers"), so every estimator can be run, and checked, on a matrix with a known spectrum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..arguments import check_float


@dataclass(frozen=True)
class MatrixGroup:
    """A named block ``[start, stop)`` of the flat vector (the counterpart of ``operator.ParameterGroup``)."""

    name: str
    start: int
    stop: int

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return (self.name,)

    @property
    def size(self) -> int:
        return self.stop - self.start


GroupSpec = Mapping[str, int] | Sequence[tuple[str, int]] | Sequence[MatrixGroup] | None


class MatrixOperator:
    """The linear operator ``V -> V H`` of an explicit symmetric matrix ``H`` (``[d, d]``).

    ``groups``: ``{name: size}`` or ``[(name, size), ...]`` (consecutive blocks covering ``0..d``), a sequence of
    :class:`MatrixGroup`, or ``None`` for one group ``"all"``. ``num_matvecs`` counts products (a ``[k, d]``
    :meth:`matmat` counts ``k``). A direction for ``quadratic_form_of`` may be a dict from group name to a ``[size]``
    tensor (each group is one "parameter" of shape ``(size,)``).
    """

    def __init__(self, matrix: Tensor, groups: GroupSpec = None, *, check: bool = True, atol: float = 1e-8) -> None:
        atol = check_float("atol", atol, minimum=0.0)
        matrix = torch.as_tensor(matrix)
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square, got shape {tuple(matrix.shape)}")
        if not matrix.is_floating_point():
            matrix = matrix.to(torch.get_default_dtype())
        if check and not torch.allclose(matrix, matrix.T, atol=atol, rtol=1e-6):
            raise ValueError("matrix must be symmetric")
        self.matrix = matrix
        self.dim = int(matrix.shape[0])
        self.groups: tuple[MatrixGroup, ...] = _make_groups(groups, self.dim)
        self.num_matvecs = 0

    @property
    def dtype(self) -> torch.dtype:
        return self.matrix.dtype

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    @property
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        return {group.name: (group.size,) for group in self.groups}

    def matmat(self, vectors: Tensor) -> Tensor:
        """``[k, d] -> [k, d]``: rows ``H v``."""
        if vectors.dim() != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected [k, {self.dim}] vectors, got shape {tuple(vectors.shape)}")
        self.num_matvecs += int(vectors.shape[0])
        return vectors.to(self.dtype) @ self.matrix

    def matvec(self, vector: Tensor) -> Tensor:
        """``[d] -> [d]``: ``H v``."""
        return self.matmat(vector.reshape(1, -1))[0]

    def dense(self) -> Tensor:
        return self.matrix.clone()


def _make_groups(spec: GroupSpec, dim: int) -> tuple[MatrixGroup, ...]:
    if spec is None:
        return (MatrixGroup("all", 0, dim),)
    items = list(spec.items()) if isinstance(spec, Mapping) else list(spec)
    if items and all(isinstance(item, MatrixGroup) for item in items):
        groups = tuple(items)
    else:
        groups, start = [], 0
        for name, size in items:
            if int(size) < 1:
                raise ValueError(f"group {name!r} must have a positive size, got {size}")
            groups.append(MatrixGroup(str(name), start, start + int(size)))
            start += int(size)
        groups = tuple(groups)
    position = 0
    for group in groups:
        if group.start != position or group.stop <= group.start:
            raise ValueError(f"groups must be consecutive nonempty blocks covering 0..{dim}; {group} does not "
                             f"start at {position}")
        position = group.stop
    if position != dim:
        raise ValueError(f"groups cover 0..{position} but the matrix has dimension {dim}")
    names = [group.name for group in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"group names must be unique, got {names}")
    return groups
