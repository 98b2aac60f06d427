"""Encoders of the algorithmic baselines: one linear map per input and hint field, routed by CLRS-30's rules.

Mirrors dm-clrs 2.0.3's ``encoders.py`` and ``nets.Net._one_step_pred``
(https://github.com/google-deepmind/clrs/blob/v2.0.3/clrs/_src/encoders.py). Every field gets
``hk.Linear(hidden)`` from its channels (one channel, or ``K`` for a categorical field), an edge
pointer two of them; the encodings are summed into node features ``[B, N, H]``, edge features
``[B, N, N, H]`` or graph features ``[B, H]``:

=====================  ========================================================================
node scalar/mask/m1    node features from ``x[..., None]``
node categorical       node features from the ``K`` class channels
node pointer           edge features from the one-hot (or soft) pointer ``p[b, i, j]``
edge scalar/mask/m1    edge features from ``x[..., None]``
edge categorical       edge features from the ``K`` class channels
edge pointer           edge features ``mean_i enc0(p[b, i, x, y]) + mean_j enc1(p[b, x, j, y])``
graph scalar/mask/m1   graph features from ``x[..., None]``
graph categorical      graph features from the ``K`` class channels
graph pointer          node features from the one-hot pointer ``p[b, i]``
=====================  ========================================================================

Node pointers and edge masks also add edges to the adjacency given to the processor
(``(p + p^T) > 0.5`` and ``(x + x^T) > 0``; it starts as the identity), as ``accum_adj_mat`` does.

Since every encoder is linear, the encodings of one location are one matrix product of the stacked
channels with the concatenated weights plus the summed biases, and the mean over ``i`` of an edge
pointer's encoding is the encoding of the mean (same value up to rounding): no ``[B, N, N, N, H]``
tensor is formed.

Initialisation (``encoder_init``): ``"default"`` is haiku's ``hk.Linear`` (truncated normal at two
standard deviations, sd ``1/sqrt(fan_in)``, zero bias); ``"xavier_on_scalars"`` (CLRS-30's protocol)
gives scalar hints sd ``1/sqrt(hidden)`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...algo.specs import SPECS, Location, Stage, Type, check_algorithm
from ..linear import linear
from .processors import haiku_linear, init_haiku_linear_

ENCODER_INITS = ("default", "xavier_on_scalars")
SIMPLE_TYPES = (Type.SCALAR, Type.MASK, Type.MASK_ONE)  # one channel, one decoder column

# Class counts of the categorical fields (SPECS gives types, not sizes; CLRS reads them from a
# dummy batch): DFS colours white/grey/black, Kruskal's three phases.
_CATEGORICAL_CLASSES = {"color": 3, "phase": 3}


def categorical_classes(algorithm: str, name: str) -> int:
    """Number of classes of the categorical field ``name`` of ``algorithm``."""
    stage_loc_type = SPECS[check_algorithm(algorithm)].get(name)
    if stage_loc_type is None or stage_loc_type[2] != Type.CATEGORICAL:
        raise ValueError(f"{algorithm}.{name} is not a categorical field")
    if name not in _CATEGORICAL_CLASSES:
        raise ValueError(f"no class count known for the categorical field {algorithm}.{name}")
    return _CATEGORICAL_CLASSES[name]


@dataclass(frozen=True)
class LocationFields:
    """Fields at one location, in the order the encoders and decoders stack them: ``simple``
    (scalars, then masks, then mask_ones, each in spec order), ``categorical`` (name, classes),
    ``pointer``."""

    simple: tuple[str, ...] = ()
    simple_types: tuple[str, ...] = ()
    categorical: tuple[tuple[str, int], ...] = ()
    pointer: tuple[str, ...] = ()

    def count(self, kind: str) -> int:
        return sum(t == kind for t in self.simple_types)

    @property
    def names(self) -> tuple[str, ...]:
        return self.simple + tuple(n for n, _ in self.categorical) + self.pointer


@dataclass(frozen=True)
class FieldLayout:
    """One stage's fields of an algorithm (or any ``{name: (location, type)}``), grouped by location."""

    node: LocationFields = field(default_factory=LocationFields)
    edge: LocationFields = field(default_factory=LocationFields)
    graph: LocationFields = field(default_factory=LocationFields)
    types: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # name -> (location, type)

    @classmethod
    def of(cls, fields: Mapping[str, tuple[str, str]], classes: Mapping[str, int] | None = None) -> FieldLayout:
        """Layout of ``fields`` ``{name: (location, type)}``; ``classes`` sizes the categorical ones."""
        classes = classes or {}
        groups = {}
        for loc in (Location.NODE, Location.EDGE, Location.GRAPH):
            here = {n: t for n, (lo, t) in fields.items() if lo == loc}
            simple = tuple(n for kind in SIMPLE_TYPES for n, t in here.items() if t == kind)
            unknown = [n for n, t in here.items() if t not in (*SIMPLE_TYPES, Type.CATEGORICAL, Type.POINTER)]
            if unknown:
                known = SIMPLE_TYPES + (Type.CATEGORICAL, Type.POINTER)
                raise ValueError(f"fields {unknown} have a type outside {known}")
            missing = [n for n, t in here.items() if t == Type.CATEGORICAL and n not in classes]
            if missing:
                raise ValueError(f"categorical fields {missing} need a class count")
            groups[loc] = LocationFields(
                simple=simple, simple_types=tuple(here[n] for n in simple),
                categorical=tuple((n, int(classes[n])) for n, t in here.items() if t == Type.CATEGORICAL),
                pointer=tuple(n for n, t in here.items() if t == Type.POINTER))
        return cls(groups[Location.NODE], groups[Location.EDGE], groups[Location.GRAPH], dict(fields))

    @classmethod
    def for_stage(cls, algorithm: str, stage: str) -> FieldLayout:
        """The layout of ``algorithm``'s fields at ``stage`` (``"input"``, ``"hint"``, ``"output"``)."""
        spec = SPECS[check_algorithm(algorithm)]
        fields = {n: (loc, t) for n, (st, loc, t) in spec.items() if st == stage}
        classes = {n: categorical_classes(algorithm, n) for n, (_, t) in fields.items() if t == Type.CATEGORICAL}
        return cls.of(fields, classes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.types)

    def __bool__(self) -> bool:
        return bool(self.types)


@dataclass
class Groups:
    """Values of one stage's fields grouped as in a :class:`FieldLayout`: simple fields stacked on a
    last axis (``node_simple [B, N, S]``, ``edge_simple [B, N, N, S]``, ``graph_simple [B, S]``), the
    others one tensor per field. Pointers are ``[..., N]`` scores, probabilities or one-hots."""

    node_simple: torch.Tensor | None = None
    node_cat: list[torch.Tensor] = field(default_factory=list)
    node_ptr: list[torch.Tensor] = field(default_factory=list)
    edge_simple: torch.Tensor | None = None
    edge_cat: list[torch.Tensor] = field(default_factory=list)
    edge_ptr: list[torch.Tensor] = field(default_factory=list)
    graph_simple: torch.Tensor | None = None
    graph_cat: list[torch.Tensor] = field(default_factory=list)
    graph_ptr: list[torch.Tensor] = field(default_factory=list)

    def map(self, fn) -> Groups:
        """``fn`` applied to every tensor."""
        one = (lambda x: None if x is None else fn(x))
        return Groups(one(self.node_simple), [fn(x) for x in self.node_cat], [fn(x) for x in self.node_ptr],
                      one(self.edge_simple), [fn(x) for x in self.edge_cat], [fn(x) for x in self.edge_ptr],
                      one(self.graph_simple), [fn(x) for x in self.graph_cat], [fn(x) for x in self.graph_ptr])

    def zip_map(self, other: Groups, fn) -> Groups:
        """``fn(mine, other's)`` for every pair of tensors."""
        def one(a, b):
            return None if a is None else fn(a, b)
        return Groups(one(self.node_simple, other.node_simple), [*map(fn, self.node_cat, other.node_cat)],
                      [*map(fn, self.node_ptr, other.node_ptr)], one(self.edge_simple, other.edge_simple),
                      [*map(fn, self.edge_cat, other.edge_cat)], [*map(fn, self.edge_ptr, other.edge_ptr)],
                      one(self.graph_simple, other.graph_simple), [*map(fn, self.graph_cat, other.graph_cat)],
                      [*map(fn, self.graph_ptr, other.graph_ptr)])

    def fields(self, layout: FieldLayout) -> dict[str, torch.Tensor]:
        """Per-field views ``{name: tensor}`` in CLRS-30's shapes."""
        out: dict[str, torch.Tensor] = {}
        for loc, simple in ((layout.node, self.node_simple), (layout.edge, self.edge_simple),
                            (layout.graph, self.graph_simple)):
            for k, name in enumerate(loc.simple):
                out[name] = simple[..., k]
        for loc, cats, ptrs in ((layout.node, self.node_cat, self.node_ptr),
                                (layout.edge, self.edge_cat, self.edge_ptr),
                                (layout.graph, self.graph_cat, self.graph_ptr)):
            out.update({name: x for (name, _), x in zip(loc.categorical, cats)})
            out.update(dict(zip(loc.pointer, ptrs)))
        return out


def group(layout: FieldLayout, values: Mapping[str, torch.Tensor], num_nodes: int) -> Groups:
    """Ground-truth ``values`` (CLRS-30 layout, pointers as node indices) as encoder-ready
    :class:`Groups` (pointers one-hot, as ``encoders.preprocess``)."""
    def simple(loc: LocationFields) -> torch.Tensor | None:
        return torch.stack([values[n] for n in loc.simple], dim=-1) if loc.simple else None

    def one_hot(name: str) -> torch.Tensor:
        index = values[name]
        return F.one_hot(index.long(), num_nodes).to(index.dtype)

    return Groups(simple(layout.node), [values[n] for n, _ in layout.node.categorical],
                  [one_hot(n) for n in layout.node.pointer],
                  simple(layout.edge), [values[n] for n, _ in layout.edge.categorical],
                  [one_hot(n) for n in layout.edge.pointer],
                  simple(layout.graph), [values[n] for n, _ in layout.graph.categorical],
                  [one_hot(n) for n in layout.graph.pointer])


def construct_encoder(stage: str, location: str, type_: str, hidden: int, classes: int = 1,
                      init: str = "xavier_on_scalars", generator: torch.Generator | None = None) -> nn.ModuleList:
    """The linears of one field's encoder (CLRS ``construct_encoders``): ``Linear(channels, hidden)``,
    twice for an edge pointer; initialised as ``init`` says (see the module docstring)."""
    if init not in ENCODER_INITS:
        raise ValueError(f"encoder_init must be one of {ENCODER_INITS}, got {init!r}")
    width = classes if type_ == Type.CATEGORICAL else 1
    count = 2 if (location == Location.EDGE and type_ == Type.POINTER) else 1
    linears = nn.ModuleList(haiku_linear(width, hidden) for _ in range(count))
    for lin in linears:
        if init == "xavier_on_scalars" and stage == Stage.HINT and type_ == Type.SCALAR:
            std = 1.0 / math.sqrt(hidden)
            with torch.no_grad():
                nn.init.trunc_normal_(lin.weight, 0.0, std, -2.0 * std, 2.0 * std, generator=generator)
                lin.bias.zero_()
        else:
            init_haiku_linear_(lin, generator)
    return linears


def _bucket_weights(parts: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenated weights ``[H, C]`` and summed biases ``[H]`` of the linears of one location."""
    weight = parts[0].weight if len(parts) == 1 else torch.cat([lin.weight for lin in parts], dim=1)
    bias = parts[0].bias
    for lin in parts[1:]:
        bias = bias + lin.bias
    return weight, bias


class EncoderWeights:
    """The encoders of one :class:`FieldLayout` merged per location (built once per forward pass)."""

    def __init__(self, layout: FieldLayout, encoders: Mapping[str, nn.ModuleList]) -> None:
        node = [encoders[n][0] for n in layout.node.simple] + [encoders[n][0] for n, _ in layout.node.categorical]
        node += [encoders[n][0] for n in layout.graph.pointer]
        edge = [encoders[n][0] for n in layout.node.pointer] + [encoders[n][0] for n in layout.edge.simple]
        edge += [encoders[n][0] for n, _ in layout.edge.categorical]
        edge += [lin for n in layout.edge.pointer for lin in encoders[n]]
        graph = [encoders[n][0] for n in layout.graph.simple] + [encoders[n][0] for n, _ in layout.graph.categorical]
        self.node = _bucket_weights(node) if node else None
        self.edge = _bucket_weights(edge) if edge else None
        self.graph = _bucket_weights(graph) if graph else None


def channels(values: Groups) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The encoders' inputs: node ``[B, N, C]``, edge ``[B, N, N, C]`` and graph ``[B, C]`` channels of
    encoder-ready ``values``, in the order of :class:`EncoderWeights` (None where no field lands)."""
    node = [] if values.node_simple is None else [values.node_simple]
    node += values.node_cat + [p.unsqueeze(-1) for p in values.graph_ptr]
    edge = [p.unsqueeze(-1) for p in values.node_ptr]
    edge += ([] if values.edge_simple is None else [values.edge_simple]) + values.edge_cat
    for p in values.edge_ptr:  # mean over senders i of p[b, i, x, y], and over j of p[b, x, j, y]
        edge += [p.mean(dim=1).unsqueeze(-1), p.mean(dim=2).unsqueeze(-1)]
    graph = ([] if values.graph_simple is None else [values.graph_simple]) + values.graph_cat
    return tuple(_cat(parts) if parts else None for parts in (node, edge, graph))


def encode(weights: EncoderWeights, values: Groups) -> tuple[torch.Tensor | None, torch.Tensor | None,
                                                            torch.Tensor | None]:
    """Node ``[B, N, H]``, edge ``[B, N, N, H]`` and graph ``[B, H]`` features of encoder-ready
    ``values`` (None where no field of the layout lands)."""
    return tuple(None if x is None else linear(x, *wb)
                 for x, wb in zip(channels(values), (weights.node, weights.edge, weights.graph)))


_FEW_CHANNELS = 2  # up to this many input channels, a linear is cheaper as fused multiply-adds


def add_linear(base: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``base + x @ weight.T`` (no bias: fold it into ``base``); with few channels in ``x``, one fused
    multiply-add pass per channel forward and matrix-vector products backward (no full-size temporaries)."""
    if x.shape[-1] > _FEW_CHANNELS or torch._C._are_functorch_transforms_active():
        return base + linear(x, weight)
    return _AddFewChannels.apply(base, x, weight)


class _AddFewChannels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, base: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        for c in range(x.shape[-1]):
            base = torch.addcmul(base, x[..., c:c + 1], weight[:, c])
        return base

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, weight = ctx.saved_tensors
        rows, cols = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
        grad_x = torch.stack([rows @ weight[:, c] for c in range(x.shape[-1])], dim=-1).reshape(x.shape)
        grad_w = torch.stack([rows.t() @ cols[:, c] for c in range(x.shape[-1])], dim=-1)
        return grad, grad_x, grad_w


def adjacency(layout: FieldLayout, values: Groups) -> torch.Tensor | None:
    """Edges that ``values`` add to the processor's adjacency (bool ``[B, N, N]``), or None:
    node pointers where ``p + p^T > 0.5``, edge masks where ``x + x^T > 0``."""
    found = [(p + p.transpose(1, 2)) > 0.5 for p in values.node_ptr]
    masks = layout.edge.count(Type.MASK)
    if masks:
        start = layout.edge.count(Type.SCALAR)
        m = values.edge_simple[..., start:start + masks]
        found.append(((m + m.transpose(1, 2)) > 0).any(dim=-1))
    if not found:
        return None
    adj = found[0]
    for more in found[1:]:
        adj = adj | more
    return adj


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
