"""Hutchinson and Hutch++ estimates of ``Tr(H)`` and of the per-layer traces ``Tr(H_ii)`` (diagonal blocks).

**Budget.** ``num_matvecs`` is the total number of Hessian-vector products an estimate may spend, whatever
``per_layer`` and ``probes`` are; :attr:`TraceResult.num_matvecs` is the number actually performed (Hutch++
skips products that cannot change an exact answer, so it can be smaller, never larger).

**Per-layer traces from full-length probes** (``probes="full"``, the default; no extra products): for a Rademacher
probe ``z`` (``E z z^T = I``) and a group ``i`` with coordinates ``D_i`` (the diagonal 0/1 projector),
``z^T D_i H z = z_i^T (H z)_i`` has expectation ``Tr(D_i H) = Tr(H_ii)``, so every product ``H z`` gives one
sample of every layer's trace, and the samples of a layer over independent probes are i.i.d.: their mean is the
estimate and their sample standard deviation over ``sqrt(m)`` its standard error. The total's samples are
``z^T H z``, the per-probe sums, so its standard error accounts for the correlation between layers. The
variance of a layer's sample is ``2 sum_{a != b in i} H_ab^2 + sum_{j != i} ||H_ij||_F^2``: larger than with
probes supported on the block (below), by the off-diagonal blocks' mass.

**Block-supported probes** (``probes="block"``): probes ``[0 .. z_i .. 0]`` estimate each block alone (variance
``2 sum_{a != b in i} H_ab^2`` per sample), at one product per sample *per layer*: the budget is split evenly
over the groups (the first ``num_matvecs % G`` get one more), so each layer gets about ``num_matvecs / G``
samples; ``total = sum_i Tr(H_ii)`` with ``stderr = sqrt(sum_i se_i^2)`` (independent probes).

**Hutch++** (Meyer, Musco, Musco & Woodruff, SOSA 2021, https://arxiv.org/abs/2010.09649) with ``m`` products:
``s = m // 3`` Rademacher sketch rows ``S``, ``Q = orth(H S)`` (``s' = min(s, d)`` columns), the products
``H Q`` (``s'``), then ``g = m - 2 s`` Rademacher probes ``z`` deflated to ``w = (I - Q Q^T) z``. With full-length
probes the estimate of layer ``i`` is

    Tr(Q^T D_i H Q)  +  (1/g) sum_z  w_i^T (H w)_i,

unbiased for ``Tr(H_ii)`` because ``Tr(D_i H) = Tr(D_i H Q Q^T) + Tr(D_i H (I - Q Q^T))`` and
``E[w^T D_i H w] = Tr((I - Q Q^T) D_i H (I - Q Q^T)) = Tr(D_i H (I - Q Q^T))`` for any ``Q`` independent of ``z``;
the first term is exact given ``Q``, the standard error is that of the second. Summed over layers these are
exactly Hutch++'s ``Tr(Q^T H Q) + (1/g) sum w^T H w``. When ``Q`` spans the whole space (``s >= d``) the answer is
exact (stderr 0) and the ``g`` probe products are not spent. ``probes="block"`` runs Hutch++ on each block
``H_ii`` with its share of the budget (a block no larger than its sketch is resolved exactly).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..arguments import check_choice, check_int
from .probes import (
    F64,
    GroupLike,
    OperatorLike,
    Probes,
    WholeGroup,
    combine_stderr,
    full_products,
    group_dots,
    make_generator,
    sample_stats,
    split_budget,
    stream_products,
)
from .results import TraceResult

__all__ = ["METHODS", "PROBES", "minimum_matvecs", "trace_of"]

METHODS = ("hutchinson", "hutch++")
PROBES = ("full", "block")

Estimate = tuple[list[float], list[float | None], float, float | None, int]  # per group, total, stderr, products


def _from_samples(samples: Tensor, heads: Sequence[float] | None = None) -> Estimate:
    """Estimates from ``[G, m]`` per-group samples of the same probes (plus exact ``heads``)."""
    heads = list(heads) if heads is not None else [0.0] * samples.shape[0]
    if samples.shape[1] == 0:  # resolved exactly
        return heads, [0.0] * len(heads), math.fsum(heads), 0.0, 0
    stats = [sample_stats(row) for row in samples]
    total_mean, total_error = sample_stats(samples.sum(dim=0))
    estimates = [h + mean for h, (mean, _) in zip(heads, stats)]
    return estimates, [error for _, error in stats], math.fsum(heads) + total_mean, total_error, 0


def _hutchinson_full(op: OperatorLike, groups: Sequence[GroupLike], m: int, gen: torch.Generator,
                     chunk_size: int | None) -> Estimate:
    """``m`` full-length probes; every product gives one sample of every group's trace."""
    stream = Probes(gen, op.dim, m, op.device, dtype=op.dtype)
    samples = torch.empty(len(groups), m, dtype=F64, device=op.device)

    def sink(first: int, rows: Tensor, products: Tensor) -> None:
        samples[:, first:first + rows.shape[0]] = group_dots(groups, rows, products)  # rows are +-1: exact

    used = full_products(op, stream.take, m, chunk_size, sink)
    estimates, errors, total, total_error, _ = _from_samples(samples)
    return estimates, errors, total, total_error, used


def _hutch_plus_plus_full(op: OperatorLike, groups: Sequence[GroupLike], m: int, gen: torch.Generator,
                          chunk_size: int | None) -> Estimate:
    """Hutch++ on ``H`` with full-length sketches and probes; per-group terms as in the module docstring."""
    s = m // 3
    stream = Probes(gen, op.dim, m - s, op.device, dtype=op.dtype)  # s sketch rows, then m - 2s probes
    images: list[Tensor] = []
    used = full_products(op, stream.take, s, chunk_size, lambda first, rows, products: images.append(products))
    basis = torch.linalg.qr(torch.cat(images).to(F64).T).Q.T  # [s', d] orthonormal rows, s' = min(s, d)
    images.clear()
    heads = torch.zeros(len(groups), dtype=F64, device=op.device)

    def add_head(first: int, rows: Tensor, products: Tensor) -> None:
        heads.add_(group_dots(groups, rows, products.to(F64)).sum(dim=1))

    position = 0

    def basis_rows(n: int) -> Tensor:
        nonlocal position
        rows = basis[position:position + n]
        position += n
        return rows

    used += full_products(op, basis_rows, basis.shape[0], chunk_size, add_head)
    count = m - 2 * s if basis.shape[0] < op.dim else 0  # Q spans the space: exact, no probes needed
    samples = torch.empty(len(groups), count, dtype=F64, device=op.device)

    def deflated(n: int) -> Tensor:
        z = stream.take(n).to(F64)
        return z - (z @ basis.T) @ basis

    def tail(first: int, rows: Tensor, products: Tensor) -> None:
        samples[:, first:first + rows.shape[0]] = group_dots(groups, rows, products.to(F64))

    used += full_products(op, deflated, count, chunk_size, tail)
    estimates, errors, total, total_error, _ = _from_samples(samples, heads.tolist())
    return estimates, errors, total, total_error, used


def _hutchinson_block(op: OperatorLike, groups: Sequence[GroupLike], counts: Sequence[int], gen: torch.Generator,
                      chunk_size: int | None) -> Estimate:
    """``counts[g]`` probes supported on block ``g`` each (``Tr(H_gg)`` alone); probes drawn as they are used."""
    streams = [Probes(gen, g.stop - g.start, c, op.device, dtype=op.dtype) for g, c in zip(groups, counts)]
    samples = [torch.empty(c, dtype=F64, device=op.device) for c in counts]

    def sink(g: int, first: int, stop: int, rows: Tensor, products: Tensor) -> None:
        samples[g][first:stop] = (rows * products).sum(dim=1, dtype=F64)  # rows are +-1: exact products

    used = stream_products(op, groups, counts, lambda g, a, b: streams[g].take(b - a), sink, chunk_size)
    stats = [sample_stats(x) for x in samples]
    estimates, errors = [mean for mean, _ in stats], [error for _, error in stats]
    return estimates, errors, math.fsum(estimates), combine_stderr(errors), used


def _hutch_plus_plus_block(op: OperatorLike, groups: Sequence[GroupLike], counts: Sequence[int],
                           gen: torch.Generator, chunk_size: int | None) -> Estimate:
    """Hutch++ on each block ``H_gg`` with ``counts[g]`` products (a block of size ``<= s_g`` is resolved
    exactly: stderr 0, its probe products not spent)."""
    sketches = [c // 3 for c in counts]
    sizes = [g.stop - g.start for g in groups]
    streams = [Probes(gen, n, c - s, op.device) for n, c, s in zip(sizes, counts, sketches)]
    images: list[Tensor] = [torch.empty(s, n, dtype=F64, device=op.device) for s, n in zip(sketches, sizes)]

    def keep_image(g: int, first: int, stop: int, rows: Tensor, products: Tensor) -> None:
        images[g][first:stop] = products

    used = stream_products(op, groups, sketches, lambda g, a, b: streams[g].take(b - a), keep_image, chunk_size)
    bases = [torch.linalg.qr(y.T).Q.T for y in images]  # [min(s, n), n] orthonormal rows
    images.clear()
    head = [torch.zeros((), dtype=F64, device=op.device) for _ in groups]

    def add_head(g: int, first: int, stop: int, rows: Tensor, products: Tensor) -> None:
        head[g] = head[g] + (rows * products).sum()

    used += stream_products(op, groups, [q.shape[0] for q in bases], lambda g, a, b: bases[g][a:b], add_head,
                            chunk_size)
    tails = [c - 2 * s if q.shape[0] < n else 0 for c, s, q, n in zip(counts, sketches, bases, sizes)]
    samples = [torch.empty(t, dtype=F64, device=op.device) for t in tails]

    def deflated(g: int, first: int, stop: int) -> Tensor:
        z = streams[g].take(stop - first)
        return z - (z @ bases[g].T) @ bases[g]

    def tail(g: int, first: int, stop: int, rows: Tensor, products: Tensor) -> None:
        samples[g][first:stop] = (rows * products).sum(dim=1)

    used += stream_products(op, groups, tails, deflated, tail, chunk_size)
    estimates, errors = [], []
    for h, x in zip(head, samples):
        mean, error = sample_stats(x) if x.numel() else (0.0, 0.0)
        estimates.append(float(h) + mean)
        errors.append(error)
    return estimates, errors, math.fsum(estimates), combine_stderr(errors), used


CHUNK_BYTES = 1 << 20  # rows per matmat for operators that take probes one by one: about 1 MiB of probes


def auto_chunk_size(op: OperatorLike) -> int:
    """Rows per ``matmat``: for operators that take probes one by one anyway (double backward on CPU), as many
    as fit in about 1 MiB (one row for large models: the probe stays in cache; up to 32 for small ones, where
    per-call overhead matters more); 32 otherwise (batched products)."""
    if getattr(op, "batch_probes", None) is not False:
        return 32
    row = op.dim * torch.empty((), dtype=op.dtype).element_size()
    return max(1, min(32, CHUNK_BYTES // max(row, 1)))


def minimum_matvecs(method: str, groups: int, probes: str = "full") -> int:
    """The smallest budget an estimate accepts: 1 product (3 for Hutch++), per group with block probes."""
    return (3 if method == "hutch++" else 1) * (groups if probes == "block" else 1)


def normalise_method(method: str) -> str:
    method = method.lower() if isinstance(method, str) else method
    return check_choice("method", "hutch++" if method == "hutchpp" else method, METHODS)


def trace_of(op: OperatorLike, *, method: str = "hutchinson", num_matvecs: int = 100, per_layer: bool = True,
             probes: str = "full", seed: int | None = 0, generator: torch.Generator | None = None,
             chunk_size: int | None | str = "auto") -> TraceResult:
    """Estimate ``Tr(H)`` and, with ``per_layer``, ``Tr(H_ii)`` of every group, with ``num_matvecs`` products in all.

    ``method="hutchinson"``: ``(1/m) sum_k z_k^T A z_k``, Rademacher ``z_k`` (variance ``2 sum_{a != b} A_ab^2 / m``).
    ``method="hutch++"``: low-rank deflation plus Hutchinson, error ``O(1/m)`` instead of ``O(1/sqrt(m))`` for
    PSD ``A`` with a decaying spectrum (needs ``num_matvecs >= 3``). ``probes``: ``"full"`` (default: every product
    serves every layer) or ``"block"`` (probes supported on one group; the budget is split over the groups, so it
    must be at least the number of groups, three times that for Hutch++); see the module docstring. Without
    ``per_layer`` only ``Tr(H)`` is estimated and ``per_layer == {}``. ``seed`` seeds a ``torch.Generator`` on the
    operator's device (``None``: random; the seed used is recorded); ``generator`` overrides it. ``chunk_size``:
    rows per ``matmat`` call (``None``: all at once; ``"auto"``: see :func:`auto_chunk_size`).
    """
    if chunk_size == "auto":
        chunk_size = auto_chunk_size(op)
    elif chunk_size is not None:
        check_int("chunk_size", chunk_size, minimum=1)
    method = normalise_method(method)
    check_choice("probes", probes, PROBES)
    if not isinstance(per_layer, bool):
        raise ValueError(f"per_layer must be True or False, got {per_layer!r}")
    groups = list(op.groups) if per_layer else [WholeGroup("total", 0, op.dim)]
    num_matvecs = check_int("num_matvecs", num_matvecs, minimum=minimum_matvecs(method, 1))
    lowest = minimum_matvecs(method, len(groups), probes)
    if num_matvecs < lowest:
        raise ValueError(f"num_matvecs must be an integer >= {lowest} with probes='block' (at least "
                         f"{lowest // len(groups)} products for each of {len(groups)} groups), got {num_matvecs!r}")
    gen = make_generator(op, seed, generator)
    if probes == "block":
        counts = split_budget(num_matvecs, len(groups))
        run = _hutchinson_block if method == "hutchinson" else _hutch_plus_plus_block
        estimates, errors, total, stderr, used = run(op, groups, counts, gen, chunk_size)
    else:
        run = _hutchinson_full if method == "hutchinson" else _hutch_plus_plus_full
        estimates, errors, total, stderr, used = run(op, groups, num_matvecs, gen, chunk_size)
    if per_layer:
        layers = {g.name: e for g, e in zip(groups, estimates)}
        layer_errors = {g.name: e for g, e in zip(groups, errors)}
    else:
        layers, layer_errors = {}, {}
    return TraceResult(total=total, per_layer=layers, stderr=stderr, per_layer_stderr=layer_errors, method=method,
                       num_matvecs=used, seed=gen.initial_seed(), probes=probes)
