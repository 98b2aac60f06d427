"""Per-sample gradient features of a multitask network's output function, projected to a few hundred dimensions.

The first half of the task-affinity estimator of the branching study (Li et al., "Efficiently learning branching
networks for multitask algorithmic reasoning", https://arxiv.org/abs/2512.01113; its code:
``clrs_experiments/clrs/examples/fast_estimation_compute_gradients.py`` and ``clrs/_src/losses.py``'s
``compute_output_function_values`` of https://github.com/VirtuosoResearch/Multitask-algorithmic-reasoning); the
second half, the logistic surrogate and the affinity matrix, is :mod:`.affinity`.

**Samples.** Per algorithm, the first ``num_samples`` graphs of CLRS-30's train split (n = 16,
:func:`gnnbench.harness.algo_data.split_traces`), in the split's order.

**Output function.** Per graph ``s``, ``f_s(W)`` is the mean, over the graph's output entries, of the log-odds that
the entry is predicted correctly, from the output logits of ``net.head(algorithm)(batch, repred=True)`` (evaluation
mode: predicted hints fed back, as at test time):

* pointer, mask_one, categorical entries: ``log(p / (1 - p))`` with ``p`` the softmax probability of the true class
  (the target node; for mask_one and categorical the class axis is the last), clipped to ``[1e-4, 1 - 1e-4]`` as the
  study clips it (no gradient where clipped);
* mask entries: ``(2 y - 1) * logit`` (the log-odds of the true label ``y``), entries marked -1 (not applicable)
  left out; categorical entries without a positive class are left out too;
* scalar fields are skipped (the study leaves regression outputs out as well); :attr:`GradientFeatures.skipped_fields`
  lists them. The entries of all other output fields are pooled into one mean.

**Gradients.** ``grad f_s`` with respect to the processor parameters of depths ``first_depth..L``
(``net.layer_parameters(first_depth)``: every group's layer at those depths, so a branch ``s`` does not run through
gets zeros), one graph at a time by :func:`torch.func.vmap` over :func:`torch.func.grad` of
:func:`torch.func.functional_call`: the network's forward pass plans its steps from the traces' lengths in Python, so
samples are bucketed by trace length, every vmapped call sees one length (passed unbatched) and a batch of one graph.
``torch.nn.functional.one_hot`` (the encoders' pointer one-hots) checks its input's values, which vmap cannot do; while
the gradients are taken, :class:`_VmapOneHot` computes it as a comparison with ``arange`` instead (same values).

**Projection.** ``g_s = P^T grad f_s`` (float32) with ``P`` in ``{+1/sqrt(d), -1/sqrt(d)}^{D x d}``: the rows of the
parameters in sorted name order, each parameter's block drawn from its own ``torch.Generator`` seeded from
``sha256("<seed>/<name>")``, so a block depends only on the seed, the name, the parameter's size and ``d``: never on
batching, chunking or the order parameters are listed in. ``P`` is kept in memory (``4 D d`` bytes). The offsets
``f_s(W0)`` come with the features.

**Cost.** A vmapped chunk costs about what a batched forward and backward pass of its graphs costs, plus the
per-sample weight gradients (``chunk_size x D`` floats per use of a weight). Memory grows with the chunk's graphs
times their trace length, about twice a batched backward pass's (measured at n = 16 on a 3-layer MPNN of hidden 64:
2.5 MB per graph and step for DFS, 4 MB for Floyd-Warshall's edge pointers), so a chunk holds at most ``chunk_size``
graphs (default 16; larger chunks were no faster on the CPU) and at most ``chunk_steps`` graph-steps (default 512:
about 1.3 GB there; strongly connected components' 84-96 steps get 5 graphs a chunk).
``benchmarks/affinity_features.py`` compares the path with a per-sample loop of ``torch.autograd.grad``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.overrides import TorchFunctionMode

from ...algo.specs import SPECS, OutputClass, Stage, Type, check_algorithm
from ...arguments import check_int
from ..algo.batches import TorchBatch, to_torch
from ..algo.net import EncodeProcessDecode

log = logging.getLogger(__name__)

CLIP = 1e-4  # probabilities are clipped to [CLIP, 1 - CLIP] before the log-odds (the study's EPS)
_SCORED = (Type.POINTER, Type.MASK, Type.MASK_ONE, Type.CATEGORICAL)


def scored_fields(algorithm: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(scored, skipped)`` output fields of ``algorithm``: the output function scores all but scalars."""
    spec = SPECS[check_algorithm(algorithm)]
    outputs = [(name, type_) for name, (stage, _, type_) in spec.items() if stage == Stage.OUTPUT]
    return (tuple(n for n, t in outputs if t in _SCORED), tuple(n for n, t in outputs if t not in _SCORED))


def _entries(kind: str, logits: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-entry log-odds of the true label and the entry's weight (1 where it counts), both ``[B, ...]``."""
    if kind == Type.MASK:
        return (2.0 * truth - 1.0) * logits, (truth != OutputClass.MASKED).to(logits.dtype)
    probs = torch.softmax(logits, dim=-1)
    if kind == Type.POINTER:
        p = probs.gather(-1, truth.long().unsqueeze(-1)).squeeze(-1)
        weight = torch.ones_like(p)
    else:  # mask_one, categorical: one-hot truth, class axis last
        positive = (truth == OutputClass.POSITIVE).to(logits.dtype)
        p = (probs * positive).sum(-1)
        weight = positive.amax(-1)
    p = p.clamp(CLIP, 1.0 - CLIP)
    return torch.log(p) - torch.log1p(-p), weight


def output_function(head: EncodeProcessDecode, batch: TorchBatch) -> torch.Tensor:
    """``f_s`` of every graph of ``batch`` (``[B]``): the mean log-odds of its output entries (module docstring)."""
    scored, _ = scored_fields(head.algorithm)
    if not scored:
        raise ValueError(f"{head.algorithm} has no non-scalar output field to score")
    output_preds, _ = head(batch, repred=True)
    spec = SPECS[head.algorithm]
    total, count = None, None
    for name in scored:
        values, weights = _entries(spec[name][2], output_preds[name], batch.outputs[name])
        b = values.shape[0]
        s, c = (values * weights).reshape(b, -1).sum(1), weights.reshape(b, -1).sum(1)
        total, count = (s, c) if total is None else (total + s, count + c)
    return total / count.clamp(min=1.0)


def entry_counts(algorithm: str, batch: TorchBatch) -> np.ndarray:
    """Scored output entries of every graph of ``batch`` (``[B]``, int)."""
    scored, _ = scored_fields(algorithm)
    spec = SPECS[check_algorithm(algorithm)]
    counts = np.zeros(batch.num_graphs, dtype=np.int64)
    for name in scored:
        truth, kind = batch.outputs[name], spec[name][2]
        if kind == Type.MASK:
            weight = truth != OutputClass.MASKED
        elif kind == Type.POINTER:
            weight = torch.ones_like(truth, dtype=torch.bool)
        else:
            weight = (truth == OutputClass.POSITIVE).any(-1)
        counts += weight.reshape(truth.shape[0], -1).sum(1).cpu().numpy().astype(np.int64)
    return counts


class _VmapOneHot(TorchFunctionMode):
    """``F.one_hot(index, num_classes)`` as ``index[..., None] == arange(num_classes)`` (vmap cannot run the
    value checks of ``F.one_hot``); every other function unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.one_hot:
            index = args[0]
            classes = args[1] if len(args) > 1 else kwargs.get("num_classes", -1)
            if classes < 0:
                raise ValueError("one_hot under vmap needs num_classes")
            return (index.unsqueeze(-1) == torch.arange(classes, device=index.device)).long()
        return func(*args, **kwargs)


class _OneGraph(nn.Module):
    """``algorithm``'s output function on one graph (a batch of one), for ``functional_call`` under ``vmap``;
    holds the network as ``net`` so that its layer parameters are addressed as ``net.<name>``."""

    def __init__(self, net: nn.Module, algorithm: str) -> None:
        super().__init__()
        self.net = net
        self.algorithm = algorithm

    def forward(self, inputs: dict[str, torch.Tensor], hints: dict[str, torch.Tensor],
                outputs: dict[str, torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        batch = TorchBatch({k: v.unsqueeze(0) for k, v in inputs.items()},
                           {k: v.unsqueeze(1) for k, v in hints.items()}, lengths,
                           {k: v.unsqueeze(0) for k, v in outputs.items()})
        return output_function(self.net.head(self.algorithm), batch)[0]


def length_chunks(lengths: np.ndarray, chunk_size: int, chunk_steps: int | None = None) -> Iterator[np.ndarray]:
    """Indices of ``lengths`` in pieces that share one length, each of at most ``chunk_size`` graphs and (when
    given) ``chunk_steps`` graph-steps, at least one graph (lengths ascending, indices ascending within a length)."""
    lengths = np.asarray(lengths)
    for value in np.unique(lengths):
        same = np.flatnonzero(lengths == value)
        size = chunk_size if chunk_steps is None else max(1, min(chunk_size, chunk_steps // max(1, int(value))))
        for start in range(0, same.size, size):
            yield same[start:start + size]


def _check_parameters(net: nn.Module, first_depth: int) -> dict[str, torch.Tensor]:
    if not hasattr(net, "layer_parameters") or not hasattr(net, "head"):
        raise ValueError(f"net must be a MultitaskNet (layer_parameters, head), got {type(net).__name__}")
    params = net.layer_parameters(first_depth)
    if not params:
        raise ValueError(f"the network has no processor parameters at depths {first_depth}..")
    return {name: p.detach() for name, p in sorted(params.items())}


def _same_length_gradients(net: nn.Module, algorithm: str, params: Mapping[str, torch.Tensor],
                           batch: TorchBatch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-graph ``grad f_s`` (``{name: [B, ...]}``) and ``f_s`` (``[B]``) of a batch whose traces share one length."""
    module = _OneGraph(net, algorithm)
    lengths = batch.lengths[:1]
    if not bool((batch.lengths == lengths).all()):
        raise ValueError("a vmapped chunk must hold traces of one length")
    hints = {k: v[:int(lengths.item())] for k, v in batch.hints.items()}

    def f(p: dict[str, torch.Tensor], inputs, hints, outputs) -> torch.Tensor:
        return functional_call(module, p, (inputs, hints, outputs, lengths))

    wrapped = {"net." + name: value for name, value in params.items()}
    with torch.no_grad(), _VmapOneHot():
        grads, values = vmap(grad_and_value(f), in_dims=(None, 0, 1, 0))(wrapped, batch.inputs, hints, batch.outputs)
    return {name: grads["net." + name] for name in params}, values


def _chunks(net: nn.Module, algorithm: str, params: Mapping[str, torch.Tensor], batch: TorchBatch,
            chunk_size: int, chunk_steps: int) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor], torch.Tensor]]:
    lengths = batch.lengths.detach().cpu().numpy()
    for index in length_chunks(lengths, chunk_size, chunk_steps):
        grads, values = _same_length_gradients(net, algorithm, params, batch.select(index.tolist()))
        yield index, grads, values


def per_sample_gradients(net: nn.Module, algorithm: str, batch: TorchBatch, first_depth: int, *,
                         chunk_size: int = 16, chunk_steps: int = 512
                         ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``({name: [B, ...]}, [B])``: each graph's ``grad f_s`` with respect to the processor parameters of depths
    ``first_depth..L`` (``net.layer_parameters``) and ``f_s`` itself, by vmap over length buckets (module docstring)."""
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    chunk_steps = check_int("chunk_steps", chunk_steps, minimum=1)
    params = _check_parameters(net, first_depth)
    was_training = net.training
    net.eval()
    try:
        grads = {name: p.new_zeros((batch.num_graphs, *p.shape)) for name, p in params.items()}
        values = next(iter(params.values())).new_zeros(batch.num_graphs)
        for index, chunk_grads, chunk_values in _chunks(net, algorithm, params, batch, chunk_size, chunk_steps):
            rows = torch.as_tensor(index, device=values.device)
            for name, g in chunk_grads.items():
                grads[name].index_copy_(0, rows, g)
            values.index_copy_(0, rows, chunk_values)
    finally:
        net.train(was_training)
    return grads, values


def _block_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little") & (2**63 - 1)


class Projection:
    """The seeded ``{+-1/sqrt(d)}^{D x d}`` matrix ``P`` over named parameters (module docstring): ``project`` maps
    flat gradients ``[B, D]`` to ``[B, d]``, ``lift`` maps ``theta`` ``[d]`` back to ``{name: P_name theta}``."""

    def __init__(self, shapes: Mapping[str, Sequence[int]], dim: int, seed: int,
                 device: torch.device | str = "cpu") -> None:
        self.dim = check_int("projection_dim", dim, minimum=1)
        self.seed = check_int("seed", seed)
        self.names = tuple(sorted(shapes))
        self.shapes = {name: torch.Size(shapes[name]) for name in self.names}
        self.sizes = [self.shapes[name].numel() for name in self.names]
        blocks = []
        for name, size in zip(self.names, self.sizes):
            generator = torch.Generator().manual_seed(_block_seed(self.seed, name))
            blocks.append(torch.randint(0, 2, (size, self.dim), generator=generator, dtype=torch.float32))
        self.matrix = torch.cat(blocks).mul_(2.0).sub_(1.0).mul_(1.0 / math.sqrt(self.dim)).to(device)

    @property
    def num_parameters(self) -> int:
        """``D``, the projected parameters' total size."""
        return int(sum(self.sizes))

    def flatten(self, grads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{name: [B, *shape]}`` as ``[B, D]`` in the projection's row order."""
        missing = [name for name in self.names if name not in grads]
        if missing:
            raise ValueError(f"gradients lack parameter(s) {', '.join(missing)}")
        first = grads[self.names[0]]
        return torch.cat([grads[name].reshape(first.shape[0], -1) for name in self.names], dim=1)

    def project(self, grads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``P^T g`` for every row of the gradients ``{name: [B, *shape]}`` (``[B, d]``)."""
        return self.flatten(grads).to(self.matrix.device, torch.float32) @ self.matrix

    def lift(self, theta: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """``P theta`` as ``{name: tensor of the parameter's shape}`` (float32)."""
        theta = torch.as_tensor(np.asarray(theta, dtype=np.float32) if not isinstance(theta, torch.Tensor)
                                else theta, dtype=torch.float32, device=self.matrix.device)
        if theta.shape != (self.dim,):
            raise ValueError(f"theta must have shape ({self.dim},), got {tuple(theta.shape)}")
        flat = self.matrix @ theta
        return {name: piece.view(self.shapes[name]) for name, piece in zip(self.names, flat.split(self.sizes))}


@dataclass
class GradientFeatures:
    """Projected per-sample gradients: ``features[a]`` ``[n, d]`` and ``offsets[a]`` ``[n]`` (``f_s(W0)``) per
    algorithm ``a``, the projection that made them, and the seconds each algorithm took (``timings``)."""

    algorithms: tuple[str, ...]
    features: dict[str, np.ndarray]
    offsets: dict[str, np.ndarray]
    first_depth: int
    projection: Projection
    num_samples: int
    skipped_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def projection_dim(self) -> int:
        return self.projection.dim

    @property
    def num_parameters(self) -> int:
        """``D``: the size of the gradients before projection."""
        return self.projection.num_parameters

    def stacked(self, algorithms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Features and offsets of ``algorithms``' samples, concatenated in that order."""
        unknown = [a for a in algorithms if a not in self.features]
        if unknown:
            raise ValueError(f"no gradient features for {', '.join(unknown)} (have {', '.join(self.algorithms)})")
        return (np.concatenate([self.features[a] for a in algorithms]),
                np.concatenate([self.offsets[a] for a in algorithms]))


def train_samples(algorithm: str, num_samples: int, device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> TorchBatch:
    """The first ``num_samples`` graphs of CLRS-30's train split of ``algorithm`` as a :class:`TorchBatch`."""
    from ...harness.algo_data import split_traces, take  # the harness imports the models: import on use

    batch = split_traces(algorithm, "train").clrs_batch()
    num_samples = check_int("num_samples", num_samples, minimum=1, maximum=int(batch.lengths.shape[0]))
    return to_torch(take(batch, np.arange(num_samples), bucket=True), device=device, dtype=dtype)


def gradient_features(net: nn.Module, algorithms: Sequence[str], first_depth: int, *, num_samples: int = 1000,
                      projection_dim: int = 400, seed: int = 0, chunk_size: int = 16, chunk_steps: int = 512,
                      device: torch.device | str | None = None) -> GradientFeatures:
    """Projected per-sample gradient features of ``algorithms`` (module docstring) for :mod:`.affinity`.

    ``device``: where the samples go (default: the network's; the network must already be there)."""
    num_samples = check_int("num_samples", num_samples, minimum=1)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    chunk_steps = check_int("chunk_steps", chunk_steps, minimum=1)
    projection_dim = check_int("projection_dim", projection_dim, minimum=1)
    seed = check_int("seed", seed)
    algorithms = tuple(check_algorithm(a) for a in algorithms)
    if not algorithms or len(set(algorithms)) != len(algorithms):
        raise ValueError(f"algorithms must name distinct algorithms, got {list(algorithms)}")
    params = _check_parameters(net, first_depth)
    for algorithm in algorithms:
        net.head(algorithm)  # a ValueError for an algorithm the network lacks
    net_device, dtype = next(iter(params.values())).device, next(iter(params.values())).dtype
    device = net_device if device is None else torch.device(device)
    if device != net_device:
        raise ValueError(f"device {device} differs from the network's ({net_device}); move the network first")
    start = time.perf_counter()
    projection = Projection({name: p.shape for name, p in params.items()}, projection_dim, seed, device)
    timings = {"projection_matrix": time.perf_counter() - start}
    features, offsets, skipped = {}, {}, {}
    was_training = net.training
    net.eval()
    try:
        for algorithm in algorithms:
            begin = time.perf_counter()
            skipped[algorithm] = scored_fields(algorithm)[1]
            if skipped[algorithm]:
                log.info("%s: scalar output field(s) %s left out of the output function", algorithm,
                         ", ".join(skipped[algorithm]))
            batch = train_samples(algorithm, num_samples, device, dtype)
            empty = np.flatnonzero(entry_counts(algorithm, batch) == 0)
            if empty.size:
                raise ValueError(f"{algorithm}: train graph(s) {empty.tolist()} have no scored output entry")
            feats = torch.zeros(num_samples, projection_dim, dtype=torch.float32, device=device)
            values = torch.zeros(num_samples, dtype=torch.float32, device=device)
            for index, grads, chunk_values in _chunks(net, algorithm, params, batch, chunk_size, chunk_steps):
                rows = torch.as_tensor(index, device=device)
                feats.index_copy_(0, rows, projection.project(grads))
                values.index_copy_(0, rows, chunk_values.to(torch.float32))
            features[algorithm] = feats.cpu().numpy()
            offsets[algorithm] = values.cpu().numpy()
            timings[algorithm] = time.perf_counter() - begin
            log.debug("%s: %d gradient features in %.1f s", algorithm, num_samples, timings[algorithm])
    finally:
        net.train(was_training)
    timings["total"] = time.perf_counter() - start
    return GradientFeatures(algorithms, features, offsets, first_depth, projection, num_samples, skipped, timings)


__all__ = ["CLIP", "GradientFeatures", "Projection", "entry_counts", "gradient_features", "length_chunks",
           "output_function", "per_sample_gradients", "scored_fields", "train_samples"]
