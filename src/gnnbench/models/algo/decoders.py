"""Decoders of the algorithmic baselines: one per output and hint field, as CLRS-30 builds them.

Mirrors dm-clrs 2.0.3's ``decoders.py`` (``construct_decoders``, ``decode_fts``, ``postprocess``;
https://github.com/google-deepmind/clrs/blob/v2.0.3/clrs/_src/decoders.py). They read
``h = [node_fts, hidden, next_hidden]`` ``[B, N, 3H]``, the edge features ``e`` ``[B, N, N, E]``
(the encoded edge features, with the processor's triplet edge features concatenated when it
returns them, so ``E`` is ``H`` or ``2H``), the encoded graph features ``g`` ``[B, H]`` and
``r = max_i h[:, i]``. Linears in the order of CLRS's tuple (``decoders[name][k]`` is haiku's
``..._dec_linear`` for k = 0 and ``..._dec_linear_<k>`` after):

=====================  ========================================================================
node scalar/mask/m1    ``l0(h)`` ``[B, N]``; categorical ``l0(h)`` ``[B, N, K]``
node pointer           ``score[b, i, j] = l3(max(l0(h)[b, i], l1(h)[b, j] + l2(e)[b, j, i]))``
edge scalar/mask/m1    ``l0(h)[b, i] + l1(h)[b, j] + l2(e)[b, i, j]``; categorical with ``K`` outputs
edge pointer           ``score[b, i, j, k] = l4(max(l0(h)[b, i] + l1(h)[b, j] + l2(e)[b, i, j], l3(h)[b, k]))``
graph scalar/mask/m1   ``l0(r) + l1(g)`` ``[B]``; categorical with ``K`` outputs
graph pointer          ``score[b, j] = l0(r)[b] + l1(g)[b] + l2(h)[b, j]``
=====================  ========================================================================

A processor with ``inf_bias`` (``inf_bias_edge``) sets the node-pointer (edge mask/mask_one) scores
of non-edges to ``min(-1, min_b - 1)`` (``min_b`` the smallest score of the graph); none of
``mpnn``, ``pgn``, ``gatv2``, ``triplet_gmpnn`` does.

Speed: the linears that read the same tensor run as one matrix product (weights concatenated once
per forward pass), and all the single-column fields of a location are decoded together.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ...algo.specs import Location, Type
from .encoders import FieldLayout, Groups, LocationFields
from ..linear import linear
from .processors import haiku_linear, init_haiku_linear_

# Which tensor each linear of a decoder reads: h (node states), e (edge features), g (graph
# features), r (max of h over nodes), m (the max of earlier projections: applied separately).
_SOURCES = {
    (Location.NODE, "simple"): "h", (Location.NODE, Type.CATEGORICAL): "h",
    (Location.NODE, Type.POINTER): "hhem",
    (Location.EDGE, "simple"): "hhe", (Location.EDGE, Type.CATEGORICAL): "hhe",
    (Location.EDGE, Type.POINTER): "hhehm",
    (Location.GRAPH, "simple"): "rg", (Location.GRAPH, Type.CATEGORICAL): "rg",
    (Location.GRAPH, Type.POINTER): "rgh",
}


def construct_decoder(location: str, type_: str, hidden: int, edge_width: int, classes: int = 1,
                      generator: torch.Generator | None = None) -> nn.ModuleList:
    """The linears of one field's decoder (CLRS ``construct_decoders``), haiku-initialised.

    ``edge_width`` is the width of the edge features the decoders read (``hidden``, or ``2 * hidden``
    with a processor returning triplet edge features)."""
    kind = "simple" if type_ in (Type.SCALAR, Type.MASK, Type.MASK_ONE) else type_
    if (location, kind) not in _SOURCES:
        raise ValueError(f"no decoder for a {location} {type_} field")
    widths = {"h": 3 * hidden, "e": edge_width, "g": hidden, "r": 3 * hidden, "m": hidden}
    if kind == Type.POINTER:
        outs = [hidden] * (len(_SOURCES[location, kind]) - 1) + [1]
        if location == Location.GRAPH:
            outs = [1, 1, 1]
    else:
        outs = [classes if kind == Type.CATEGORICAL else 1] * len(_SOURCES[location, kind])
    linears = nn.ModuleList(haiku_linear(widths[src], out) for src, out in zip(_SOURCES[location, kind], outs))
    for lin in linears:
        init_haiku_linear_(lin, generator)
    return linears


class DecoderWeights:
    """The decoders of one :class:`FieldLayout` with the linears that read the same tensor merged
    into one product (built once per forward pass). ``blocks[key]`` is ``(source, start, stop)``."""

    def __init__(self, layout: FieldLayout, decoders: Mapping[str, nn.ModuleList]) -> None:
        self.layout = layout
        parts: dict[str, list[nn.Linear]] = {src: [] for src in "hegr"}
        self.blocks: dict[str, tuple[str, int, int]] = {}

        def add(key: str, src: str, linears: list[nn.Linear]) -> None:
            start = sum(lin.out_features for lin in parts[src])
            parts[src].extend(linears)
            self.blocks[key] = (src, start, start + sum(lin.out_features for lin in linears))

        node, edge, graph = layout.node, layout.edge, layout.graph
        if node.simple:
            add("ns", "h", [decoders[n][0] for n in node.simple])
        for n, _ in node.categorical:
            add(f"nc:{n}", "h", [decoders[n][0]])
        for n in node.pointer:
            for k, src in enumerate("hhe"):
                add(f"np{k}:{n}", src, [decoders[n][k]])
        if edge.simple:
            for k, src in enumerate("hhe"):
                add(f"es{k}", src, [decoders[n][k] for n in edge.simple])
        for n, _ in edge.categorical:
            for k, src in enumerate("hhe"):
                add(f"ec{k}:{n}", src, [decoders[n][k]])
        for n in edge.pointer:
            for k, src in enumerate("hheh"):
                add(f"ep{k}:{n}", src, [decoders[n][k]])
        if graph.simple:
            for k, src in enumerate("rg"):
                add(f"gs{k}", src, [decoders[n][k] for n in graph.simple])
        for n, _ in graph.categorical:
            for k, src in enumerate("rg"):
                add(f"gc{k}:{n}", src, [decoders[n][k]])
        for n in graph.pointer:
            for k, src in enumerate("rgh"):
                add(f"gp{k}:{n}", src, [decoders[n][k]])
        self.weights = {}
        for src, linears in parts.items():
            if linears:
                weight = linears[0].weight if len(linears) == 1 else torch.cat([lin.weight for lin in linears])
                bias = linears[0].bias if len(linears) == 1 else torch.cat([lin.bias for lin in linears])
                self.weights[src] = (weight, bias)
        self.final = {n: decoders[n][-1] for n in node.pointer + edge.pointer}  # the linears after the max


def decode(weights: DecoderWeights, h: torch.Tensor, e: torch.Tensor, g: torch.Tensor, adj: torch.Tensor,
           inf_bias: bool = False, inf_bias_edge: bool = False) -> Groups:
    """Scores (logits, or values for scalars) of every field of the layout, as :class:`Groups`."""
    layout = weights.layout
    inputs = {"h": h, "e": e, "g": g}
    if "r" in weights.weights:
        inputs["r"] = h.amax(dim=-2)
    projected = {src: linear(inputs[src], *wb) for src, wb in weights.weights.items()}

    def block(key: str) -> torch.Tensor:
        src, start, stop = weights.blocks[key]
        return projected[src][..., start:stop]

    out = Groups()
    node, edge, graph = layout.node, layout.edge, layout.graph
    if node.simple:
        out.node_simple = block("ns")
    out.node_cat = [block(f"nc:{n}") for n, _ in node.categorical]
    for n in node.pointer:
        # max(l0(h)[b, i], l1(h)[b, j] + l2(e)[b, j, i]): candidate j, with the edge j -> i
        p_m = torch.maximum(block(f"np0:{n}").unsqueeze(2),
                            block(f"np1:{n}").unsqueeze(1) + block(f"np2:{n}").transpose(1, 2))
        scores = _apply(weights.final[n], p_m).squeeze(-1)
        out.node_ptr.append(_inf_bias(scores, adj) if inf_bias else scores)
    if edge.simple:
        scores = block("es0").unsqueeze(2) + block("es1").unsqueeze(1) + block("es2")
        if inf_bias_edge:
            start = edge.count(Type.SCALAR)
            if start < len(edge.simple):
                scores = torch.cat([scores[..., :start], _inf_bias(scores[..., start:], adj.unsqueeze(-1),
                                                                    dims=(1, 2))], dim=-1)
        out.edge_simple = scores
    out.edge_cat = [block(f"ec0:{n}").unsqueeze(2) + block(f"ec1:{n}").unsqueeze(1) + block(f"ec2:{n}")
                    for n, _ in edge.categorical]
    for n in edge.pointer:
        pred = block(f"ep0:{n}").unsqueeze(2) + block(f"ep1:{n}").unsqueeze(1) + block(f"ep2:{n}")  # [B, i, j, H]
        p_m = torch.maximum(pred.unsqueeze(3), block(f"ep3:{n}")[:, None, None])  # [B, i, j, k, H]
        out.edge_ptr.append(_apply(weights.final[n], p_m).squeeze(-1))
    if graph.simple:
        out.graph_simple = block("gs0") + block("gs1")
    out.graph_cat = [block(f"gc0:{n}") + block(f"gc1:{n}") for n, _ in graph.categorical]
    out.graph_ptr = [block(f"gp0:{n}") + block(f"gp1:{n}") + block(f"gp2:{n}").squeeze(-1) for n in graph.pointer]
    return out


def _apply(lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return linear(x, lin.weight, lin.bias)


def _inf_bias(scores: torch.Tensor, adj: torch.Tensor, dims: tuple[int, ...] | None = None) -> torch.Tensor:
    """CLRS's ``inf_bias``: scores off the adjacency become ``min(-1, smallest score of the graph - 1)``."""
    dims = tuple(range(1, scores.dim())) if dims is None else dims
    fill = torch.clamp(scores.amin(dim=dims, keepdim=True) - 1.0, max=-1.0)
    return torch.where(adj > 0.5, scores, fill)


def postprocess(layout: FieldLayout, scores: Groups, hard: bool) -> Groups:
    """CLRS's ``postprocess``: soft (sigmoid for masks, softmax for mask_one, categorical and pointers,
    scalars unchanged) or hard (0/1 masks, one-hot argmaxes, scalars without gradient). Pointers stay
    ``[..., N]`` probabilities or one-hots, ready for the encoders."""
    def simple(x: torch.Tensor | None, loc: LocationFields, over: int | None) -> torch.Tensor | None:
        if x is None:
            return None
        s, m = loc.count(Type.SCALAR), loc.count(Type.MASK)
        parts = []
        if s:
            parts.append(x[..., :s].detach() if hard else x[..., :s])
        if m:
            parts.append((x[..., s:s + m] > 0).to(x.dtype) if hard else torch.sigmoid(x[..., s:s + m]))
        if s + m < x.shape[-1]:
            if over is None:
                raise ValueError("a graph-level mask_one hint cannot be fed back (CLRS would softmax over the batch)")
            parts.append(_one_hot_max(x[..., s + m:], over) if hard else torch.softmax(x[..., s + m:], dim=over))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def dist(x: torch.Tensor) -> torch.Tensor:
        return _one_hot_max(x, -1) if hard else torch.softmax(x, dim=-1)

    return Groups(simple(scores.node_simple, layout.node, 1), [*map(dist, scores.node_cat)],
                  [*map(dist, scores.node_ptr)], simple(scores.edge_simple, layout.edge, 2),
                  [*map(dist, scores.edge_cat)], [*map(dist, scores.edge_ptr)],
                  simple(scores.graph_simple, layout.graph, None), [*map(dist, scores.graph_cat)],
                  [*map(dist, scores.graph_ptr)])


def _one_hot_max(x: torch.Tensor, dim: int) -> torch.Tensor:
    """One-hot of the argmax along ``dim`` (first maximum, as ``jnp.argmax``)."""
    index = x.argmax(dim=dim, keepdim=True)
    return torch.zeros_like(x).scatter_(dim, index, 1.0)


def hard_predictions(types: Mapping[str, tuple[str, str]],
                     scores: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLRS's hard ``postprocess`` of ``scores`` (fields ``{name: (location, type)}``), in the format
    ``gnnbench.algo.Evaluator`` scores: scalars as values, masks 0/1, mask_one and categorical
    one-hot, pointers as node indices (int64)."""
    out = {}
    for name, x in scores.items():
        type_ = types[name][1]
        if type_ == Type.SCALAR:
            out[name] = x
        elif type_ == Type.MASK:
            out[name] = (x > 0).to(x.dtype)
        elif type_ == Type.POINTER:
            out[name] = x.argmax(dim=-1)
        else:
            out[name] = _one_hot_max(x, -1)
    return out
