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


def decode(weights: DecoderWeights, h: torch.Tensor, e: torch.Tensor | None, g: torch.Tensor, adj: torch.Tensor,
           inf_bias: bool = False, inf_bias_edge: bool = False, e_proj: torch.Tensor | None = None) -> Groups:
    """Scores (logits, or values for scalars) of every field of the layout, as :class:`Groups`.

    ``e_proj``: the merged linears of ``e`` (``weights.weights["e"]``) already applied (then ``e`` is unused)."""
    layout = weights.layout
    inputs = {"h": h, "e": e, "g": g}
    if "r" in weights.weights:
        inputs["r"] = h.amax(dim=-2)
    projected = {src: e_proj if src == "e" and e_proj is not None else linear(inputs[src], *wb)
                 for src, wb in weights.weights.items()}

    def block(key: str) -> torch.Tensor:
        src, start, stop = weights.blocks[key]
        return projected[src][..., start:stop]

    out = Groups()
    node, edge, graph = layout.node, layout.edge, layout.graph
    if node.simple:
        out.node_simple = block("ns")
    out.node_cat = [block(f"nc:{n}") for n, _ in node.categorical]
    for n in node.pointer:
        # max(l0(h)[b, i], l1(h)[b, j] + l2(e)[b, j, i]): candidate j, with the edge j -> i; formed as
        # [b, j, i] (contiguous, as e is) and transposed once scored
        scores = max_linear(block(f"np0:{n}").unsqueeze(1), block(f"np1:{n}").unsqueeze(2) + block(f"np2:{n}"),
                            weights.final[n])
        scores = scores.squeeze(-1).transpose(1, 2)
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
        p_m = (pred.unsqueeze(3), block(f"ep3:{n}")[:, None, None])  # max of these: [B, i, j, k, H]
        out.edge_ptr.append(max_linear(*p_m, weights.final[n]).squeeze(-1))
    if graph.simple:
        out.graph_simple = block("gs0") + block("gs1")
    out.graph_cat = [block(f"gc0:{n}") + block(f"gc1:{n}") for n, _ in graph.categorical]
    out.graph_ptr = [block(f"gp0:{n}") + block(f"gp1:{n}") + block(f"gp2:{n}").squeeze(-1) for n in graph.pointer]
    return out


def _apply(lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return linear(x, lin.weight, lin.bias)


_MAX_CHUNK = 1 << 19  # elements of the [..., H] maximum formed at once on the CPU (2 MB: stays in cache)
_MAX_CHUNK_DEVICE = 1 << 28  # on an accelerator, large pieces (few kernel launches)


def max_linear(x: torch.Tensor, y: torch.Tensor, lin: nn.Linear) -> torch.Tensor:
    """``lin(torch.maximum(x, y))`` for broadcastable ``x``, ``y`` of equal rank (leading batch axis) and
    ``lin`` with one output, without keeping the broadcast maximum (``[B, N, N, N, H]`` for an edge
    pointer): it is formed in cache-sized pieces, and again in the backward pass, which needs a few passes
    over it (see ``_MaxLinear``). Ties share the gradient equally, as ``jnp.maximum``; twice
    differentiable; plain under ``torch.func`` transforms."""
    if lin.out_features != 1:
        raise ValueError(f"max_linear needs a linear with one output, got {lin.out_features}")
    if torch._C._are_functorch_transforms_active():
        return _apply(lin, torch.maximum(x, y))
    return _MaxLinear.apply(x, y, lin.weight, lin.bias)


def _pieces(shape: torch.Size, device: torch.device):
    """Slices (graphs, rows) covering a tensor of ``shape`` in pieces of about ``_MAX_CHUNK`` elements."""
    limit = _MAX_CHUNK if device.type == "cpu" else _MAX_CHUNK_DEVICE
    per_graph = shape[1:].numel()
    if per_graph <= limit:
        step = max(1, limit // per_graph)
        for start in range(0, shape[0], step):
            yield slice(start, start + step), slice(None)
        return
    step = max(1, limit * shape[1] // per_graph)
    for g in range(shape[0]):
        for start in range(0, shape[1], step):
            yield slice(g, g + 1), slice(start, start + step)


def _take(t: torch.Tensor, graphs: slice, rows: slice) -> torch.Tensor:
    return t[graphs, rows] if t.shape[1] > 1 else t[graphs]


def _reduce_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum ``grad`` over the axes that ``shape`` broadcasts (size 1 there)."""
    dims = [d for d in range(1, grad.dim()) if shape[d] == 1 and grad.shape[d] != 1]
    return grad.sum(dim=dims, keepdim=True) if dims else grad


class _MaxLinear(torch.autograd.Function):
    """``out = w . max(x, y) + b`` (one output). With ``s`` = 1 where x > y, 1/2 on ties, 0 else and
    ``T = g s``: ``dx = w sum T``, ``dy = w sum (g - T)`` (each summed over the axes it broadcasts) and,
    as ``max(x, y) = y + s (x - y)``, ``dw = sum g y + sum x T - sum y T``: three passes form
    ``2 T - g = sign(x - y) g``, two sum it; nothing of the broadcast size is kept."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, y, weight, bias)
        shape = torch.broadcast_shapes(x.shape, y.shape)
        out = x.new_empty(*shape[:-1], 1)
        for graphs, rows in _pieces(shape, x.device):
            out[graphs, rows] = linear(torch.maximum(_take(x, graphs, rows), _take(y, graphs, rows)), weight, bias)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, y, weight, bias = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: the same gradients as differentiable expressions
            share = (torch.sign(x - y) + 1.0) * 0.5  # piecewise constant
            gm = grad * weight[0]
            return (_reduce_to(gm * share, x.shape), _reduce_to(gm * (1.0 - share), y.shape),
                    _sum_rows(grad * torch.maximum(x, y)).unsqueeze(0), grad.sum().reshape(1))
        w = weight[0]
        pieces = list(_pieces(torch.broadcast_shapes(x.shape, y.shape), x.device))
        whole = all(rows == slice(None) for _, rows in pieces)  # pieces of whole graphs: written in place
        make = torch.empty_like if whole else torch.zeros_like
        grad_x, grad_y = make(x), make(y)
        grad_w = 0.0
        for graphs, rows in pieces:
            xs, ys, gs = _take(x, graphs, rows), _take(y, graphs, rows), grad[graphs, rows]
            signed = (xs - ys).sign_().mul_(gs)  # 2 T - g
            tx = _reduce_to(signed, xs.shape) + _reduce_to(gs, xs.shape[:-1] + (1,))  # sum 2 T
            gy = _reduce_to(gs, ys.shape[:-1] + (1,))
            sy = gy - 0.5 * (_reduce_to(signed, ys.shape) + gy)  # sum (g - T)
            grad_w = grad_w + _sum_rows(ys * sy) + 0.5 * _sum_rows(xs * tx)
            if whole:
                torch.mul(tx, 0.5 * w, out=grad_x[graphs])
                torch.mul(sy, w, out=grad_y[graphs])
            else:
                _take(grad_x, graphs, rows).add_(tx * (0.5 * w))
                _take(grad_y, graphs, rows).add_(sy.mul_(w))
        return grad_x, grad_y, grad_w.unsqueeze(0), grad.sum().reshape(1)


def _sum_rows(t: torch.Tensor) -> torch.Tensor:
    """Sum over every axis but the last."""
    return t.sum(dim=tuple(range(t.dim() - 1)))


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
