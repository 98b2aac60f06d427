"""Shared machinery of the estimators: the operator protocol, seeded Rademacher probes, chunked products.

An operator is anything with ``dim``, ``groups`` (each with ``name``, ``start``, ``stop``),
``matmat([k, d]) -> [k, d]``, ``dtype`` and ``device``: a :class:`~gnnbench.hessian.operator.HessianOperator`, or a
:class:`~gnnbench.hessian.matrix.MatrixOperator` wrapping an explicit matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

F64 = torch.float64


class GroupLike(Protocol):
    name: str
    start: int
    stop: int


class OperatorLike(Protocol):
    dim: int
    groups: Sequence[Any]
    dtype: torch.dtype
    device: torch.device

    def matmat(self, vectors: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class WholeGroup:
    """The whole flat vector as one group (``per_layer=False``)."""

    name: str
    start: int
    stop: int


def make_generator(op: OperatorLike, seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """``generator``, else a generator on the operator's device seeded with ``seed`` (None: a random seed)."""
    if generator is not None:
        return generator
    device = torch.device(op.device)
    gen = torch.Generator(device=device) if device.type != "meta" else torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def rademacher(n: int, d: int, gen: torch.Generator, device: torch.device, dtype: torch.dtype = F64) -> Tensor:
    """``[n, d]`` independent signs ``+-1`` in ``dtype`` (exact in every float type); the same numbers whatever
    ``dtype`` is, as long as the generator is on ``device``."""
    if torch.device(device) == gen.device:  # 0/1 drawn straight into the dtype, then 2b - 1 in place
        return torch.randint(0, 2, (n, d), generator=gen, device=device, dtype=dtype).mul_(2).sub_(1)
    bits = torch.randint(0, 2, (n, d), generator=gen, device=gen.device, dtype=torch.int8)
    return bits.to(device=device, dtype=dtype).mul_(2).sub_(1)


class Probes:
    """The ``total`` Rademacher rows of size ``size``, drawn from ``gen`` as they are taken, row by row (on CPU,
    whose generator's stream is sequential, ``n`` rows at once give the same numbers), so that the draws do not
    depend on how rows are later chunked into products."""

    def __init__(self, gen: torch.Generator, size: int, total: int, device: torch.device,
                 dtype: torch.dtype = F64) -> None:
        self.gen, self.size, self.left, self.device, self.dtype = gen, size, total, device, dtype

    def take(self, n: int) -> Tensor:
        if n > self.left:
            raise RuntimeError("more probes taken than drawn")
        self.left -= n
        if n == 1 or self.gen.device.type == "cpu":  # the CPU generator's stream is sequential: one draw is the same
            return rademacher(n, self.size, self.gen, self.device, self.dtype)
        return torch.cat([rademacher(1, self.size, self.gen, self.device, self.dtype) for _ in range(n)])


def split_budget(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal counts (the first ``total % parts`` get one more)."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


RowSource = Callable[[int, int, int], Tensor]  # (group, first row, stop row) -> rows [stop - first, size_g]
RowSink = Callable[[int, int, int, Tensor, Tensor], None]  # (group, first, stop, rows, products) -> None


def stream_products(op: OperatorLike, groups: Sequence[GroupLike], counts: Sequence[int], source: RowSource,
                    sink: RowSink, chunk_size: int | None, *, full: bool = False) -> int:
    """Products ``H [0 .. z .. 0]`` of block-supported rows, ``counts[g]`` rows for group ``g``.

    Rows are requested from ``source`` group by group, in order, and sent through ``op.matmat`` in chunks of
    ``chunk_size`` rows (possibly mixing groups); ``sink`` receives each group's rows with their products restricted
    to the block (``[n, size_g]``), or whole (``[n, d]``) with ``full``. Returns the number of products.
    """
    step = chunk_size or max(sum(counts), 1)
    pending: list[tuple[int, int, int]] = []
    filled = 0

    def flush() -> None:
        nonlocal pending, filled
        if not pending:
            return
        vectors = torch.zeros(filled, op.dim, dtype=op.dtype, device=op.device)
        placed, offset = [], 0
        for g, first, stop in pending:
            rows = source(g, first, stop)
            vectors[offset:offset + stop - first, groups[g].start:groups[g].stop] = rows.to(op.dtype)
            placed.append((g, first, stop, offset, rows))
            offset += stop - first
        products = op.matmat(vectors)  # the operator's dtype; consumers accumulate in float64
        for g, first, stop, offset, rows in placed:
            block = products[offset:offset + stop - first]
            sink(g, first, stop, rows, block if full else block[:, groups[g].start:groups[g].stop])
        pending, filled = [], 0

    for g, stop in enumerate(counts):
        first = 0
        while first < stop:  # the group's rows, split at chunk boundaries
            take = min(stop - first, step - filled)
            pending.append((g, first, first + take))
            filled += take
            first += take
            if filled == step:
                flush()
    flush()
    return sum(counts)


def block_products(op: OperatorLike, groups: Sequence[GroupLike], blocks: Sequence[Tensor | None],
                   chunk_size: int | None, *, full: bool = False) -> tuple[list[Tensor | None], int]:
    """:func:`stream_products` of given rows ``blocks[g]`` (``[n_g, size_g]`` or None); returns the products."""
    outputs: list[Tensor | None] = [
        None if z is None else torch.empty(z.shape[0], op.dim if full else z.shape[1], dtype=F64, device=op.device)
        for z in blocks]

    def sink(g: int, first: int, stop: int, rows: Tensor, products: Tensor) -> None:
        outputs[g][first:stop] = products

    counts = [0 if z is None else z.shape[0] for z in blocks]
    used = stream_products(op, groups, counts, lambda g, a, b: blocks[g][a:b], sink, chunk_size, full=full)
    return outputs, used


def full_products(op: OperatorLike, rows: Callable[[int], Tensor], count: int, chunk_size: int | None,
                  sink: Callable[[int, Tensor, Tensor], None]) -> int:
    """``count`` products of full-length rows: ``rows(n)`` gives the next ``n`` rows (``[n, d]``), sent through
    ``op.matmat`` ``chunk_size`` at a time; ``sink(first, rows, products)`` receives each chunk. Returns ``count``."""
    step = chunk_size or max(count, 1)
    for first in range(0, count, step):
        vectors = rows(min(step, count - first))
        sink(first, vectors, op.matmat(vectors.to(op.dtype)))
    return count


def group_dots(groups: Sequence[GroupLike], left: Tensor, right: Tensor) -> Tensor:
    """``[G, n]`` float64: ``left_g . right_g`` for every group ``g`` and row (``left``, ``right``: ``[n, d]``)."""
    prod = left * right
    return torch.stack([prod[:, g.start:g.stop].sum(dim=1, dtype=F64) for g in groups])


def combine_stderr(values: Iterable[float | None]) -> float | None:
    """``sqrt(sum se_i^2)`` of independent estimates (None if any is None)."""
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value * value
    return math.sqrt(total)


def sample_stats(samples: Tensor) -> tuple[float, float | None]:
    """Mean and standard error (sample std / sqrt(m); None for one sample)."""
    m = samples.numel()
    return float(samples.mean()), (float(samples.std() / math.sqrt(m)) if m > 1 else None)
