"""Stochastic and Krylov estimators of Hessian traces, eigenvalues, spectral densities and quadratic forms.

Public functions take ``(model, loss_fn)`` and build a :class:`~gnnbench.hessian.operator.HessianOperator`;
the ``*_of`` versions take any operator with ``dim``, ``groups`` (each with ``name``, ``start``, ``stop``),
``matmat([k, d]) -> [k, d]``, ``dtype`` and ``device`` (e.g. a ``HessianOperator`` to reuse, or a
:class:`~gnnbench.hessian.matrix.MatrixOperator` wrapping an explicit matrix). All arithmetic on probes and results is
in float64; vectors are cast to the operator's dtype for its products.

Per-layer quantities refer to the diagonal blocks ``H_ii`` of the Hessian (``i`` a parameter group):
``Tr(H_ii)`` and ``v_i^T H_ii v_i``; their sum is ``Tr(H)`` (resp. ``v^T H v`` minus the cross terms).

**Budget.** ``num_matvecs`` is the number of Hessian-vector products spent *on each estimated trace*: on each layer's
block when ``per_layer=True`` (so ``len(groups) * num_matvecs`` products in all, batched into ``matmat`` calls of
``chunk_size`` rows), on the full Hessian when ``per_layer=False``. Hutchinson and Hutch++ are therefore compared at
equal cost for the same ``num_matvecs``. ``TraceResult.num_matvecs`` is the number actually used.

**Data.** With ``data`` (an iterable of batches) ``loss_fn(batch)`` is the loss of one batch; each quantity is
computed per batch and reduced with ``reduce="mean"`` or ``"max"``, separately for every layer and for the total
(the maximum of the totals, not the sum of per-layer maxima). Standard errors: for the mean,
``sqrt(sum_b se_b^2) / B`` (independent probes per batch); for the maximum, the standard error of the batch that
attained it (the bias of a maximum of noisy estimates is not corrected). Probes of successive batches are drawn
from one generator seeded with ``seed``, so results are reproducible.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from .lanczos import WHICH, lanczos_eigsh, lanczos_tridiagonal

__all__ = [
    "TraceResult", "QuadraticFormResult", "SpectralDensity",
    "trace", "eigenvalues", "spectral_density", "quadratic_form",
    "trace_of", "eigenvalues_of", "spectral_density_of", "quadratic_form_of", "flatten_direction", "OperatorLike",
]

METHODS = ("hutchinson", "hutch++")
REDUCTIONS = ("mean", "max")
_F64 = torch.float64


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
class _Whole:
    name: str
    start: int
    stop: int


# --------------------------------------------------------------------------------------------------- results


@dataclass
class TraceResult:
    """A trace estimate. ``total ~ Tr(H)``; ``per_layer[name] ~ Tr(H_ii)`` (empty when ``per_layer=False``);
    ``stderr`` / ``per_layer_stderr``: standard errors of the estimates (``None`` when a single probe gives no
    sample variance; 0 for blocks Hutch++ resolved exactly)."""

    total: float
    per_layer: dict[str, float]
    stderr: float | None
    per_layer_stderr: dict[str, float | None]
    method: str
    num_matvecs: int
    seed: int | None
    reduce: str | None = None
    num_batches: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QuadraticFormResult:
    """Exact quadratic forms: ``total = v^T H v`` and ``per_layer[name] = v_i^T H_ii v_i`` (diagonal blocks)."""

    total: float
    per_layer: dict[str, float]
    stderr: None = None
    num_matvecs: int = 0
    reduce: str | None = None
    num_batches: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SpectralDensity:
    """Stochastic Lanczos quadrature of the spectral measure ``mu = (1/d) sum_i delta(lambda_i)``.

    ``nodes`` / ``weights`` (``[runs, steps]``): Ritz values ``theta_rj`` and weights ``tau_rj`` (squared first
    eigenvector components, summing to 1 per run; zero for padding), so that ``(1/R) sum_r sum_j tau_rj f(theta_rj)``
    estimates ``Tr f(H) / d``. ``density`` on ``grid``: ``(1/R) sum_rj tau_rj N(t; theta_rj, sigma^2)``, normalised so
    that its trapezoidal integral over ``grid`` is 1.
    """

    grid: Tensor
    density: Tensor
    nodes: Tensor
    weights: Tensor
    sigma: float
    dim: int
    num_matvecs: int = 0
    seed: int | None = None
    num_batches: int = 1

    def run_moments(self, k: int) -> Tensor:
        """``[runs, k + 1]``: ``sum_j tau_rj theta_rj^p`` for ``p = 0..k`` (each unbiased for ``Tr(H^p) / d``)."""
        powers = torch.arange(k + 1, dtype=_F64, device=self.nodes.device)
        return torch.einsum("rj,rjp->rp", self.weights, self.nodes[..., None] ** powers)

    def moments(self, k: int) -> Tensor:
        """``[k + 1]``: estimates of ``Tr(H^p) / d`` for ``p = 0..k`` (the mean of :meth:`run_moments`)."""
        return self.run_moments(k).mean(dim=0)

    def moment_stderr(self, k: int) -> Tensor:
        """``[k + 1]``: standard errors of :meth:`moments` (sample std over runs / sqrt(runs))."""
        runs = self.run_moments(k)
        if runs.shape[0] < 2:
            return torch.full((k + 1,), float("nan"), dtype=_F64)
        return runs.std(dim=0) / math.sqrt(runs.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {"grid": self.grid.tolist(), "density": self.density.tolist(), "nodes": self.nodes.tolist(),
                "weights": self.weights.tolist(), "sigma": self.sigma, "dim": self.dim,
                "num_matvecs": self.num_matvecs, "seed": self.seed, "num_batches": self.num_batches}


# --------------------------------------------------------------------------------------------------- helpers


def _generator(op: OperatorLike, seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        return generator
    device = torch.device(op.device)
    gen = torch.Generator(device=device) if device.type != "meta" else torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def _rademacher(n: int, d: int, gen: torch.Generator, device: torch.device, dtype: torch.dtype = _F64) -> Tensor:
    """``[n, d]`` independent signs ``+-1`` in ``dtype`` (drawn as bytes: exact in every float type)."""
    bits = torch.randint(0, 2, (n, d), generator=gen, device=gen.device, dtype=torch.int8)
    return (bits.to(device=device, dtype=dtype) * 2 - 1)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class _Probes:
    """The ``total`` Rademacher rows of one block, drawn from ``gen`` one row at a time as they are taken, so that
    the draws do not depend on how rows are later chunked into products (and a row stays in cache)."""

    def __init__(self, gen: torch.Generator, size: int, total: int, device: torch.device, block: int = 1,
                 dtype: torch.dtype = _F64) -> None:
        self.gen, self.size, self.left, self.device, self.block = gen, size, total, device, block
        self.dtype = dtype
        self.buffer = torch.empty(0, size, dtype=dtype, device=device)

    def take(self, n: int) -> Tensor:
        while self.buffer.shape[0] < n:
            count = min(self.block, self.left)
            if count <= 0:
                raise RuntimeError("more probes taken than drawn")
            fresh = _rademacher(count, self.size, self.gen, self.device, self.dtype)
            self.buffer = torch.cat([self.buffer, fresh]) if self.buffer.shape[0] else fresh
            self.left -= count
        rows, self.buffer = self.buffer[:n], self.buffer[n:]
        return rows


RowSource = Callable[[int, int, int], Tensor]  # (group, first row, stop row) -> rows [stop - first, size_g]
RowSink = Callable[[int, int, int, Tensor, Tensor], None]  # (group, first, stop, rows, products) -> None


def _stream_products(op: OperatorLike, groups: Sequence[GroupLike], counts: Sequence[int], source: RowSource,
                     sink: RowSink, chunk_size: int | None, *, full: bool = False) -> int:
    """Products ``H [0 .. z .. 0]`` of block-supported rows, ``counts[g]`` rows for group ``g``.

    Rows are requested from ``source`` group by group, in order, and sent through ``op.matmat`` in chunks of
    ``chunk_size`` rows (possibly mixing groups); ``sink`` receives each group's rows with their products restricted
    to the block (float64, ``[n, size_g]``), or whole (``[n, d]``) with ``full``. Returns the number of products.
    """
    step = chunk_size or sum(counts)
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


def _block_products(op: OperatorLike, groups: Sequence[GroupLike], blocks: Sequence[Tensor | None],
                    chunk_size: int | None, *, full: bool = False) -> tuple[list[Tensor | None], int]:
    """:func:`_stream_products` of given rows ``blocks[g]`` (``[n_g, size_g]`` or None); returns the products."""
    outputs: list[Tensor | None] = [
        None if z is None else torch.empty(z.shape[0], op.dim if full else z.shape[1], dtype=_F64, device=op.device)
        for z in blocks]

    def sink(g: int, first: int, stop: int, rows: Tensor, products: Tensor) -> None:
        outputs[g][first:stop] = products

    counts = [0 if z is None else z.shape[0] for z in blocks]
    used = _stream_products(op, groups, counts, lambda g, a, b: blocks[g][a:b], sink, chunk_size, full=full)
    return outputs, used


def _combine_stderr(values: Iterable[float | None]) -> float | None:
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value * value
    return math.sqrt(total)


# --------------------------------------------------------------------------------------------------- trace


def _sample_stats(samples: Tensor) -> tuple[float, float | None]:
    """Mean and standard error (sample std / sqrt(m); None for one sample)."""
    m = samples.numel()
    return float(samples.mean()), (float(samples.std() / math.sqrt(m)) if m > 1 else None)


def _hutchinson(op: OperatorLike, groups: Sequence[GroupLike], m: int, gen: torch.Generator,
                chunk_size: int | None) -> tuple[list[float], list[float | None], int]:
    """``Tr(A) ~ (1/m) sum_k z_k^T A z_k`` with Rademacher ``z_k``, for each block ``A = H_gg``; probes are drawn as
    they are used (memory ``chunk_size * d``)."""
    streams = [_Probes(gen, g.stop - g.start, m, op.device, dtype=op.dtype) for g in groups]
    samples = [torch.empty(m, dtype=_F64, device=op.device) for _ in groups]

    def sink(g: int, first: int, stop: int, rows: Tensor, products: Tensor) -> None:
        samples[g][first:stop] = (rows * products).sum(dim=1, dtype=_F64)  # rows are +-1: exact products

    used = _stream_products(op, groups, [m] * len(groups), lambda g, a, b: streams[g].take(b - a), sink, chunk_size)
    stats = [_sample_stats(x) for x in samples]
    return [mean for mean, _ in stats], [error for _, error in stats], used


def _hutch_plus_plus(op: OperatorLike, groups: Sequence[GroupLike], m: int, gen: torch.Generator,
                     chunk_size: int | None) -> tuple[list[float], list[float | None], int]:
    """Hutch++ (Meyer, Musco, Musco & Woodruff 2021) on each block ``A = H_gg`` with ``m`` products:
    ``S`` (``s = m // 3`` Rademacher columns), ``Q = orth(A S)``, then
    ``Tr(A) ~ Tr(Q^T A Q) + (1/g) sum_k z_k^T (I - QQ^T) A (I - QQ^T) z_k`` with ``g = m - 2 s`` probes; the stderr is
    that of the second (Hutchinson) term. A block of size ``<= s`` is resolved exactly (``Q`` spans it; stderr 0,
    and its last ``g`` products are not spent)."""
    s = m // 3
    sizes = [g.stop - g.start for g in groups]
    streams = [_Probes(gen, n, m - s, op.device) for n in sizes]
    images: list[Tensor] = [torch.empty(s, n, dtype=_F64, device=op.device) for n in sizes]

    def keep_image(g: int, first: int, stop: int, rows: Tensor, products: Tensor) -> None:
        images[g][first:stop] = products

    used = _stream_products(op, groups, [s] * len(groups), lambda g, a, b: streams[g].take(b - a), keep_image,
                            chunk_size)
    bases = [torch.linalg.qr(y.T).Q.T for y in images]  # [min(s, n), n] orthonormal rows
    images.clear()
    head = [torch.zeros((), dtype=_F64, device=op.device) for _ in groups]

    def add_head(g: int, first: int, stop: int, rows: Tensor, products: Tensor) -> None:
        head[g] = head[g] + (rows * products).sum()

    used += _stream_products(op, groups, [q.shape[0] for q in bases], lambda g, a, b: bases[g][a:b], add_head,
                             chunk_size)
    count = m - 2 * s
    open_blocks = [q.shape[0] < n for q, n in zip(bases, sizes)]
    samples = [torch.empty(count if live else 0, dtype=_F64, device=op.device) for live in open_blocks]

    def deflated(g: int, first: int, stop: int) -> Tensor:
        z = streams[g].take(stop - first)
        return z - (z @ bases[g].T) @ bases[g]

    def tail(g: int, first: int, stop: int, rows: Tensor, products: Tensor) -> None:
        samples[g][first:stop] = (rows * products).sum(dim=1)

    used += _stream_products(op, groups, [count if live else 0 for live in open_blocks], deflated, tail, chunk_size)
    estimates, errors = [], []
    for h, live, x in zip(head, open_blocks, samples):
        mean, error = _sample_stats(x) if live else (0.0, 0.0)
        estimates.append(float(h) + mean)
        errors.append(error)
    return estimates, errors, used


def trace_of(op: OperatorLike, *, method: str = "hutchinson", num_matvecs: int = 100, per_layer: bool = True,
             seed: int | None = 0, generator: torch.Generator | None = None,
             chunk_size: int | None | str = "auto") -> TraceResult:
    """Estimate ``Tr(H)`` and, with ``per_layer``, ``Tr(H_ii)`` of every group.

    ``method="hutchinson"``: ``(1/m) sum_k z_k^T A z_k``, Rademacher ``z_k`` (variance ``2 sum_{a != b} A_ab^2 / m``).
    ``method="hutch++"``: low-rank deflation plus Hutchinson, error ``O(1/m)`` instead of ``O(1/sqrt(m))`` for
    PSD ``A`` (needs ``num_matvecs >= 3``). ``A`` is each block ``H_ii`` (probes supported on block ``i``,
    ``num_matvecs`` products per block) when ``per_layer``, and then ``total = sum_i Tr(H_ii)`` with
    ``stderr = sqrt(sum_i se_i^2)``; otherwise ``A = H`` with ``num_matvecs`` products and ``per_layer == {}``.
    ``seed`` seeds a ``torch.Generator`` on the operator's device (``None``: random; the seed used is recorded);
    ``generator`` overrides it. ``chunk_size``: rows per ``matmat`` call (``None``: all at once; ``"auto"``: one
    row at a time for operators that take probes one by one anyway (double backward on CPU), which keeps each
    probe in cache, else 32).
    """
    if chunk_size == "auto":
        chunk_size = 1 if getattr(op, "batch_probes", None) is False else 32
    method = method.lower() if isinstance(method, str) else method
    if method == "hutchpp":
        method = "hutch++"
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_int("num_matvecs", num_matvecs, 3 if method == "hutch++" else 1)
    if chunk_size is not None:
        _check_int("chunk_size", chunk_size, 1)
    if not isinstance(per_layer, bool):
        raise ValueError(f"per_layer must be True or False, got {per_layer!r}")
    gen = _generator(op, seed, generator)
    groups = list(op.groups) if per_layer else [_Whole("total", 0, op.dim)]
    run = _hutchinson if method == "hutchinson" else _hutch_plus_plus
    estimates, errors, used = run(op, groups, num_matvecs, gen, chunk_size)
    if per_layer:
        layers = {g.name: e for g, e in zip(groups, estimates)}
        layer_errors = {g.name: e for g, e in zip(groups, errors)}
        total, stderr = math.fsum(estimates), _combine_stderr(errors)
    else:
        layers, layer_errors = {}, {}
        total, stderr = estimates[0], errors[0]
    return TraceResult(total=total, per_layer=layers, stderr=stderr, per_layer_stderr=layer_errors, method=method,
                       num_matvecs=used, seed=gen.initial_seed())


# --------------------------------------------------------------------------------------------------- eigenvalues


def _matmat64(op: OperatorLike) -> Callable[[Tensor], Tensor]:
    def apply(vectors: Tensor) -> Tensor:
        return op.matmat(vectors.to(op.dtype)).to(_F64)
    return apply


def _eps(op: OperatorLike) -> float:
    return float(torch.finfo(op.dtype).eps) if op.dtype.is_floating_point else float(torch.finfo(_F64).eps)


def eigenvalues_of(op: OperatorLike, *, k: int = 1, which: str = "largest", tol: float = 1e-4, max_iter: int = 100,
                   block_size: int | None = None, seed: int | None = 0, generator: torch.Generator | None = None,
                   return_eigenvectors: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """The ``k`` extreme eigenvalues of ``H`` by block Lanczos with full reorthogonalisation (float64).

    ``which="largest"``: algebraically largest, sorted decreasingly; ``"smallest"``: algebraically smallest
    (most negative), sorted increasingly; ``"largest_magnitude"``: decreasing ``|lambda|``. Converged when every wanted
    Ritz pair has residual ``||H y - theta y|| <= tol * max(|theta|, sqrt(eps) ||H||)``, which bounds the distance
    from ``theta`` to an eigenvalue by the same amount; otherwise a ``RuntimeWarning`` after ``max_iter`` iterations
    of ``block_size`` (default ``k``) products each. Returns a float64 CPU tensor ``[k]`` (and, with
    ``return_eigenvectors``, unit eigenvectors ``[k, d]`` on the operator's device).
    """
    _check_int("k", k, 1)
    if k > op.dim:
        raise ValueError(f"k={k} exceeds the dimension {op.dim} of the Hessian")
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    _check_int("max_iter", max_iter, 1)
    if block_size is not None:
        _check_int("block_size", block_size, 1)
    gen = _generator(op, seed, generator)
    values, vectors, _ = lanczos_eigsh(_matmat64(op), op.dim, k, which=which, tol=float(tol), max_iter=max_iter,
                                       block_size=block_size, generator=gen, device=op.device, eps=_eps(op),
                                       return_eigenvectors=return_eigenvectors)
    values = values.cpu()
    return (values, vectors) if return_eigenvectors else values


# --------------------------------------------------------------------------------------------------- spectral density


def _density(nodes: Tensor, weights: Tensor, *, grid_size: int, sigma: float | None,
             grid_range: tuple[float, float] | None) -> tuple[Tensor, Tensor, float]:
    """Gaussian-broadened quadrature ``(1/R) sum tau N(t; theta, sigma^2)`` on a grid, trapezoid-normalised to 1."""
    live = nodes[weights > 0]
    if live.numel() == 0:
        live = nodes.flatten()
    lo, hi = float(live.min()), float(live.max())
    if sigma is None:
        width = hi - lo
        sigma = 0.01 * (width if width > 0 else max(abs(lo), abs(hi), 1.0))
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if grid_range is None:
        grid_range = (lo - 5 * sigma, hi + 5 * sigma)
    a, b = (float(x) for x in grid_range)
    if not b > a:
        raise ValueError(f"grid_range must be increasing, got {grid_range}")
    grid = torch.linspace(a, b, grid_size, dtype=_F64)
    t, w = nodes.flatten().cpu(), weights.flatten().cpu() / nodes.shape[0]
    density = torch.zeros(grid_size, dtype=_F64)
    for begin in range(0, t.numel(), 256):  # bounded memory: [grid, 256]
        z = (grid[:, None] - t[None, begin:begin + 256]) / sigma
        density += (torch.exp(-0.5 * z * z) * w[None, begin:begin + 256]).sum(dim=1)
    density /= sigma * math.sqrt(2 * math.pi)
    area = float(torch.trapezoid(density, grid))
    if area > 0:
        density /= area
    return grid, density, float(sigma)


def _slq(op: OperatorLike, num_runs: int, num_steps: int, gen: torch.Generator, reorthogonalize: bool,
         chunk_size: int | None) -> tuple[Tensor, Tensor, int]:
    nodes, weights, used = [], [], 0
    step = num_runs if not chunk_size else chunk_size
    for begin in range(0, num_runs, step):
        count = min(step, num_runs - begin)
        start = _rademacher(count, op.dim, gen, op.device)  # normalised inside: q_1 = z / sqrt(d)
        tri = lanczos_tridiagonal(_matmat64(op), start, num_steps, reorthogonalize=reorthogonalize,
                                  breakdown_tol=10 * _eps(op))
        theta, tau = tri.ritz()
        nodes.append(theta.cpu())
        weights.append(tau.cpu())
        used += tri.num_matvecs
    return torch.cat(nodes), torch.cat(weights), used


def _check_slq(num_runs: int, num_steps: int, grid_size: int, chunk_size: int | None) -> None:
    _check_int("num_runs", num_runs, 1)
    _check_int("num_steps", num_steps, 1)
    _check_int("grid_size", grid_size, 2)
    if chunk_size is not None:
        _check_int("chunk_size", chunk_size, 1)


def spectral_density_of(op: OperatorLike, *, num_runs: int = 10, num_steps: int = 80, grid_size: int = 1000,
                        sigma: float | None = None, grid_range: tuple[float, float] | None = None,
                        seed: int | None = 0, generator: torch.Generator | None = None,
                        reorthogonalize: bool = True, chunk_size: int | None = None) -> SpectralDensity:
    """Stochastic Lanczos quadrature (Lin, Saad & Yang 2016; Ghorbani, Krishnan & Xiao 2019).

    ``num_runs`` Lanczos runs of ``num_steps`` steps (at most ``d``) from normalised Rademacher vectors
    ``q_1 = z / sqrt(d)`` give Gauss quadratures ``sum_j tau_j f(theta_j) = q_1^T f(H) q_1`` (exact for polynomials
    of degree ``< 2 num_steps``), whose mean over runs is unbiased for ``Tr f(H) / d``. The density is their
    Gaussian broadening with width ``sigma`` (default 1% of the Ritz value range) on ``grid_size`` points spanning
    ``grid_range`` (default ``[min theta - 5 sigma, max theta + 5 sigma]``). Cost ``num_runs * num_steps`` products;
    the runs advance together (``chunk_size`` runs per ``matmat``); full reorthogonalisation keeps
    ``chunk_size * num_steps * d`` float64 numbers.
    """
    _check_slq(num_runs, num_steps, grid_size, chunk_size)
    gen = _generator(op, seed, generator)
    nodes, weights, used = _slq(op, num_runs, num_steps, gen, reorthogonalize, chunk_size)
    grid, density, sigma = _density(nodes, weights, grid_size=grid_size, sigma=sigma, grid_range=grid_range)
    return SpectralDensity(grid=grid, density=density, nodes=nodes, weights=weights, sigma=sigma, dim=op.dim,
                           num_matvecs=used, seed=gen.initial_seed())


# --------------------------------------------------------------------------------------------------- quadratic form


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
        return direction.detach().to(device=op.device, dtype=_F64)
    if not isinstance(direction, Mapping):
        raise TypeError(f"direction must be a dict of tensors or a flat tensor, got {type(direction).__name__}")
    layout = _parameter_layout(op)
    skip = set(ignore)
    flat = torch.zeros(op.dim, dtype=_F64, device=op.device)
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
        flat[offset:offset + value.numel()] = value.detach().reshape(-1).to(device=op.device, dtype=_F64)
    return flat


def quadratic_form_of(op: OperatorLike, direction: Mapping[str, Tensor] | Tensor, *,
                      ignore: Iterable[str] = (), chunk_size: int | None = None) -> QuadraticFormResult:
    """Exact ``v^T H v`` and per-layer ``v_i^T H_ii v_i`` (``v_i``: ``v`` restricted to group ``i``).

    One product per group with a nonzero block: ``H [0 .. v_i .. 0]`` gives ``v_i^T H_ii v_i`` and, summed over
    ``i`` against ``v``, ``v^T H v``. See :func:`flatten_direction` for ``direction``.
    """
    v = flatten_direction(op, direction, ignore=ignore)
    groups = list(op.groups)
    blocks = [v[g.start:g.stop][None] if bool(v[g.start:g.stop].any()) else None for g in groups]
    products, used = _block_products(op, groups, blocks, chunk_size, full=True)
    per_layer, cross = {}, []
    for g, block, hv in zip(groups, blocks, products):
        if block is None:
            per_layer[g.name] = 0.0
            continue
        per_layer[g.name] = float(block[0] @ hv[0, g.start:g.stop])
        cross.append(float(v @ hv[0]))
    return QuadraticFormResult(total=math.fsum(cross), per_layer=per_layer, num_matvecs=used)


# --------------------------------------------------------------------------------------------------- data reduction


def _check_reduce(reduce: str) -> str:
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    return reduce


def _reduce_traces(results: list[TraceResult], reduce: str) -> TraceResult:
    count = len(results)
    names = list(results[0].per_layer)

    def pick(values: list[float], errors: list[float | None]) -> tuple[float, float | None]:
        if reduce == "mean":
            error = _combine_stderr(errors)
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
                       seed=results[0].seed, reduce=reduce, num_batches=count)


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


def _make_operator(model: torch.nn.Module, loss_fn: Callable[[], Tensor], *, parameters: Iterable[str] | None,
                   groups: str, strategy: str) -> OperatorLike:
    from .operator import HessianOperator

    return HessianOperator(model, loss_fn, parameters=parameters, groups=groups, strategy=strategy)


def _operators(model: torch.nn.Module, loss_fn: Callable[..., Tensor], data: Iterable[Any] | None,
               parameters: Iterable[str] | None, groups: str, strategy: str) -> Iterable[OperatorLike]:
    """One operator without ``data``, else one per batch (``loss_fn(batch)``), built lazily."""
    parameters = list(parameters) if parameters is not None else None
    if data is None:
        yield _make_operator(model, loss_fn, parameters=parameters, groups=groups, strategy=strategy)
        return
    empty = True
    for batch in data:
        empty = False
        yield _make_operator(model, functools.partial(loss_fn, batch), parameters=parameters, groups=groups,
                             strategy=strategy)
    if empty:
        raise ValueError("data has no batches")


def trace(model: torch.nn.Module, loss_fn: Callable[..., Tensor], *, method: str = "hutchinson",
          num_matvecs: int = 100, per_layer: bool = True, seed: int | None = 0,
          parameters: Iterable[str] | None = None, groups: str = "module", data: Iterable[Any] | None = None,
          reduce: str = "mean", strategy: str = "auto", chunk_size: int | None | str = "auto") -> TraceResult:
    """Estimated trace of the Hessian of ``loss_fn`` at ``model``'s weights, per layer and in total.

    See :func:`trace_of` for the estimators and the module docstring for the budget and ``data``/``reduce``.
    """
    _check_reduce(reduce)
    gen: torch.Generator | None = None
    results = []
    for op in _operators(model, loss_fn, data, parameters, groups, strategy):
        gen = _generator(op, seed, None) if gen is None else gen
        result = trace_of(op, method=method, num_matvecs=num_matvecs, per_layer=per_layer, generator=gen,
                          chunk_size=chunk_size)
        result.seed = gen.initial_seed()
        results.append(result)
    return results[0] if data is None else _reduce_traces(results, reduce)


def eigenvalues(model: torch.nn.Module, loss_fn: Callable[..., Tensor], *, k: int = 1, which: str = "largest",
                tol: float = 1e-4, max_iter: int = 100, block_size: int | None = None, seed: int | None = 0,
                parameters: Iterable[str] | None = None, groups: str = "module", data: Iterable[Any] | None = None,
                reduce: str = "mean", strategy: str = "auto") -> Tensor:
    """The ``k`` extreme Hessian eigenvalues (1-D float64 tensor; see :func:`eigenvalues_of` for ``which`` and the
    order). With ``data``, the per-batch vectors are reduced elementwise (the ``j``-th value is the mean or maximum
    over batches of each batch's ``j``-th eigenvalue; the order is kept)."""
    _check_reduce(reduce)
    gen: torch.Generator | None = None
    results = []
    for op in _operators(model, loss_fn, data, parameters, groups, strategy):
        gen = _generator(op, seed, None) if gen is None else gen
        results.append(eigenvalues_of(op, k=k, which=which, tol=tol, max_iter=max_iter, block_size=block_size,
                                      generator=gen))
    return results[0] if data is None else _reduce_eigenvalues(results, reduce)


def spectral_density(model: torch.nn.Module, loss_fn: Callable[..., Tensor], *, num_runs: int = 10,
                     num_steps: int = 80, grid_size: int = 1000, sigma: float | None = None,
                     grid_range: tuple[float, float] | None = None, seed: int | None = 0,
                     parameters: Iterable[str] | None = None, groups: str = "module",
                     data: Iterable[Any] | None = None, reduce: str = "mean", strategy: str = "auto",
                     reorthogonalize: bool = True, chunk_size: int | None = None) -> SpectralDensity:
    """Stochastic Lanczos quadrature density of the Hessian spectrum (see :func:`spectral_density_of`).

    With ``data`` only ``reduce="mean"`` is defined: the result is the SLQ of the mixture of the batches' spectral
    measures (all batches' quadrature nodes pooled, one density on a common grid).
    """
    _check_reduce(reduce)
    if data is not None and reduce != "mean":
        raise ValueError("spectral_density over data supports only reduce='mean' (a mixture of the batches' "
                         "spectral measures); a maximum of densities is not a density")
    _check_slq(num_runs, num_steps, grid_size, chunk_size)
    gen: torch.Generator | None = None
    nodes, weights, used, dim = [], [], 0, 0
    for op in _operators(model, loss_fn, data, parameters, groups, strategy):
        gen = _generator(op, seed, None) if gen is None else gen
        theta, tau, count = _slq(op, num_runs, num_steps, gen, reorthogonalize, chunk_size)
        nodes.append(theta)
        weights.append(tau)
        used += count
        dim = op.dim
    width = max(n.shape[1] for n in nodes)
    nodes = torch.cat([torch.nn.functional.pad(n, (0, width - n.shape[1]), value=float(n[0, 0])) for n in nodes])
    weights = torch.cat([torch.nn.functional.pad(w, (0, width - w.shape[1])) for w in weights])
    grid, density, sigma = _density(nodes, weights, grid_size=grid_size, sigma=sigma, grid_range=grid_range)
    return SpectralDensity(grid=grid, density=density, nodes=nodes, weights=weights, sigma=sigma, dim=dim,
                           num_matvecs=used, seed=gen.initial_seed(), num_batches=len(weights) // num_runs)


def quadratic_form(model: torch.nn.Module, loss_fn: Callable[..., Tensor], direction: Mapping[str, Tensor] | Tensor,
                   *, parameters: Iterable[str] | None = None, groups: str = "module",
                   data: Iterable[Any] | None = None, reduce: str = "mean", strategy: str = "auto",
                   chunk_size: int | None = None) -> QuadraticFormResult:
    """Exact ``v^T H v`` and per-layer ``v_i^T H_ii v_i`` for a direction such as ``{name: W - W0}``.

    ``direction``: dict from parameter name to tensor (missing parameters are zero; parameters of ``model`` that are
    not selected by ``parameters`` are ignored; other names are errors) or a flat ``[d]`` tensor in the operator's
    layout. With ``data``: the mean or maximum over batches, per layer and of the total.
    """
    _check_reduce(reduce)
    model_names = [name for name, _ in model.named_parameters()]
    results = [quadratic_form_of(op, direction, ignore=model_names, chunk_size=chunk_size)
               for op in _operators(model, loss_fn, data, parameters, groups, strategy)]
    return results[0] if data is None else _reduce_quadratic(results, reduce)

