"""The Edge Transformer processor (``edge_transformer``): triangular attention over node pairs.

Müller, Morris et al., "Towards principled graph transformers" (NeurIPS 2024, https://arxiv.org/abs/2401.10119;
code https://github.com/luis-mueller/towards-principled-gts), in the form the branching study's CLRS fork uses it
as its main processor (``ET_Processor`` with ``node_readout = 'diagonal'`` and ``norm_first_att = True`` in
https://github.com/VirtuosoResearch/Multitask-algorithmic-reasoning, ``clrs_experiments/clrs/_src/processors.py``;
there: hidden 192, 12 heads, 5 layers). One call of :class:`EdgeTransformer`, with the processor call of
:mod:`.processors`::

    out, pairs = et(node_fts [B,N,H], edge_fts [B,N,N,H], graph_fts [B,H], adj_mat [B,N,N], hidden [B,N,H])

1. pair states: ``x_ij = W [z_i, g, z_j, g] + b + e_ij`` with ``z = [node_fts, hidden]`` (one linear of
   ``6H`` inputs, laid out as the study's concatenation; computed per node, never as a ``[B,N,N,6H]`` tensor);
2. one Edge Transformer layer (pre-norm, as ``norm_first_att = True``)::

       y   = LN_in(x)
       a   = x + O(concat_heads( sum_l softmax_l(<q(y_il), k(y_lj)> / sqrt(d)) * (v1(y_il) * v2(y_lj)) ))
       x'  = LN_out(LN_att(a) + FFN(LN_att(a)))        FFN = linear(2H), relu, linear(H)

   (``q``, ``k``, ``v1``, ``v2`` and ``O`` without bias, as upstream; ``d = H / nb_heads``); with
   ``norm_first=False`` ``LN_in`` is left out (post-norm);
3. ``out = x'_ii`` (the ``diagonal`` node readout), the next hidden state ``[B,N,H]``; ``pairs = x'`` goes to the
   decoders beside ``edge_fts``, as ``triplet_gmpnn``'s triplet features do (``emits_edge_fts``).

``adj_mat`` is not used: as upstream's ``ET_Processor`` (which never passes a mask), every pair ``(i, j)`` attends
over every intermediate node ``l``; the graph enters through the edge features (the adjacency input and the
pointer and edge hints that the encoders add to ``edge_fts``).

Layers: ``make_processor("edge_transformer", ...)`` is one layer; ``num_layers`` of them are stacked by
:class:`.stack.ProcessorStack`, where layer ``l + 1`` rebuilds its pair states from layer ``l``'s diagonal.
Upstream's ``num_layers`` layers instead pass the whole pair state on; calling a layer with
``pair_state=pairs`` of the previous layer does that (step 1 is skipped), for a stack that threads it.

Memory grows as ``n^3``: the attention weights are ``[B, heads, N, N, N]`` and the value products
``[B, N, N, N, H]``; both are formed for a chunk of rows ``i`` at a time (at most ``chunk_elements`` elements of
the value product, at least one row), so that evaluation at ``n = 64`` fits (``benchmarks/edge_transformer_memory.py``
measures it). Training keeps each chunk's tensors for the backward pass: about ``4 B N^3 (H + heads)`` bytes per
layer per hint step.

Initialisation as the other processors: haiku's default (truncated normal at two standard deviations, scale
``1/sqrt(fan_in)``, zero bias; LayerNorm scale 1, offset 0), drawn from ``generator`` in attribute order. There
is no CLRS-30 haiku counterpart to map weights onto: ``haiku_module`` is ``""`` and ``haiku_names`` is empty.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...arguments import check_int
from ..linear import linear
from .processors import Processor, init_haiku_linear_

#: Elements of the ``[B, heads, rows, d, N, N]`` value product formed at once (64 MiB in float32).
ET_CHUNK = 1 << 24
_LAYER_NORM_EPS = 1e-5  # hk.LayerNorm's default


def _skip_linear(in_features: int, out_features: int, bias: bool) -> nn.Linear:
    return torch.nn.utils.skip_init(nn.Linear, in_features, out_features, bias=bias)


class EdgeTransformer(Processor):
    """One Edge Transformer layer as a CLRS processor (see the module docstring)."""

    haiku_module = ""  # no haiku counterpart: haiku_names stays empty
    threads_pair_state = True  # a stack passes the previous layer's pair state (models/algo/stack.py)
    emits_edge_fts = True

    def __init__(self, hidden: int, *, nb_heads: int = 1, norm_first: bool = True, chunk_elements: int = ET_CHUNK,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        h = check_int("hidden", hidden, minimum=1)
        nb_heads = check_int("nb_heads", nb_heads, minimum=1)
        if h % nb_heads:
            raise ValueError(f"nb_heads ({nb_heads}) must divide hidden ({h})")
        if not isinstance(norm_first, bool):
            raise ValueError(f"norm_first must be a bool, got {norm_first!r}")
        self.hidden, self.nb_heads, self.head_size = h, nb_heads, h // nb_heads
        self.norm_first = norm_first
        self.chunk_elements = check_int("chunk_elements", chunk_elements, minimum=1)
        self.compose = _skip_linear(6 * h, h, True)  # [z_i, g, z_j, g] -> x_ij (minus e_ij)
        self.ln_in = nn.LayerNorm(h, eps=_LAYER_NORM_EPS) if norm_first else None
        self.q = _skip_linear(h, h, False)
        self.k = _skip_linear(h, h, False)
        self.v1 = _skip_linear(h, h, False)
        self.v2 = _skip_linear(h, h, False)
        self.o = _skip_linear(h, h, False)
        self.ln_att = nn.LayerNorm(h, eps=_LAYER_NORM_EPS)
        self.ffn_1 = _skip_linear(h, 2 * h, True)
        self.ffn_2 = _skip_linear(2 * h, h, True)
        self.ln_out = nn.LayerNorm(h, eps=_LAYER_NORM_EPS)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Haiku's default initialisation, drawn from ``generator`` in attribute order."""
        for module in self.children():
            if isinstance(module, nn.Linear):
                init_haiku_linear_(module, generator)
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.fill_(0.0)

    def drop_composition(self) -> None:
        """Remove step 1's weights: a layer after the first of a stack only reads the pair state it is given."""
        self.compose = None

    def compose_pairs(self, node_fts: torch.Tensor, edge_fts: torch.Tensor, graph_fts: torch.Tensor,
                      hidden: torch.Tensor) -> torch.Tensor:
        """Step 1: the pair states ``x_ij = W [z_i, g, z_j, g] + b + e_ij`` ``[B, N, N, H]``."""
        if self.compose is None:
            raise ValueError("this Edge Transformer layer follows another in a stack: give it pair_state=")
        h = self.hidden
        z = torch.cat([node_fts, hidden], dim=-1)
        w = self.compose.weight  # columns: z_i (2H), g (H), z_j (2H), g (H)
        left = linear(z, w[:, :2 * h].contiguous(), self.compose.bias)
        left = left + linear(graph_fts, (w[:, 2 * h:3 * h] + w[:, 5 * h:]).contiguous()).unsqueeze(1)
        right = linear(z, w[:, 3 * h:5 * h].contiguous())
        return edge_fts + left.unsqueeze(2) + right.unsqueeze(1)

    def layer(self, x: torch.Tensor) -> torch.Tensor:
        """Step 2: one Edge Transformer layer on pair states ``[B, N, N, H]``."""
        y = self.ln_in(x) if self.ln_in is not None else x
        weight = torch.cat([self.q.weight, self.k.weight, self.v1.weight, self.v2.weight])
        q, k, v1, v2 = linear(y, weight).split(self.hidden, dim=-1)
        att = triangular_attention(q, k, v1, v2, self.nb_heads, self.chunk_elements)
        x = self.ln_att(x + linear(att, self.o.weight))
        ffn = linear(torch.relu(linear(x, self.ffn_1.weight, self.ffn_1.bias)), self.ffn_2.weight, self.ffn_2.bias)
        return self.ln_out(x + ffn)

    def forward(self, node_fts: torch.Tensor, edge_fts: torch.Tensor, graph_fts: torch.Tensor,
                adj_mat: torch.Tensor, hidden: torch.Tensor, *,
                pair_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x'_ii [B,N,H], x' [B,N,N,H])``; ``adj_mat`` is unused (all pairs attend, as upstream).
        ``pair_state``: a previous layer's ``x'``, taken as this layer's input instead of composing one."""
        x = self.compose_pairs(node_fts, edge_fts, graph_fts, hidden) if pair_state is None else pair_state
        x = self.layer(x)
        return torch.diagonal(x, dim1=1, dim2=2).transpose(1, 2), x


def triangular_attention(q: torch.Tensor, k: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, nb_heads: int,
                         chunk_elements: int = ET_CHUNK) -> torch.Tensor:
    """``out_ij = sum_l softmax_l(<q_il, k_lj> / sqrt(d)) * (v1_il * v2_lj)`` per head, heads concatenated.

    All inputs ``[B, N, N, H]`` with ``H = nb_heads * d`` (head ``h`` is channels ``h*d .. h*d + d - 1``); returns
    ``[B, N, N, H]``. Rows ``i`` run in chunks whose ``[B, heads, rows, d, N, N]`` product has at most
    ``chunk_elements`` elements (at least one row); the chunking does not change the values."""
    b, n, _, h = q.shape
    d = h // nb_heads
    q = q.reshape(b, n, n, nb_heads, d).permute(0, 3, 2, 1, 4)  # [B, heads, l, i, d]
    k = k.reshape(b, n, n, nb_heads, d).permute(0, 3, 1, 4, 2)  # [B, heads, l, d, j]
    v1 = v1.reshape(b, n, n, nb_heads, d).permute(0, 3, 1, 4, 2)  # [B, heads, i, d, l]
    v2 = v2.reshape(b, n, n, nb_heads, d).permute(0, 3, 4, 1, 2)  # [B, heads, d, l, j]
    scale = 1.0 / math.sqrt(d)
    rows = max(1, chunk_elements // max(1, b * h * n * n))
    parts = []
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        scores = torch.matmul(q[:, :, :, start:stop], k) * scale  # [B, heads, l, rows, j]: batched over l
        weights = torch.softmax(scores, dim=2).transpose(2, 3)  # over l; [B, heads, rows, l, j]
        product = weights.unsqueeze(3) * v2.unsqueeze(2)  # [B, heads, rows, d, l, j]
        parts.append(torch.matmul(v1[:, :, start:stop].unsqueeze(-2), product).squeeze(-2))  # [B, heads, rows, d, j]
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)  # [B, heads, i, d, j]
    return out.permute(0, 2, 4, 1, 3).reshape(b, n, n, h)
