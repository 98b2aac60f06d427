"""CLRS-30's processors in PyTorch: ``mpnn``, ``pgn``, ``gatv2`` and ``triplet_gmpnn``; and ``edge_transformer``.

Each processor is one message-passing step with CLRS-30's call (dm-clrs 2.0.3,
https://github.com/google-deepmind/clrs/blob/v2.0.3/clrs/_src/processors.py)::

    out, tri = proc(node_fts [B,N,H], edge_fts [B,N,N,H], graph_fts [B,H], adj_mat [B,N,N], hidden [B,N,H])

``out`` is the next hidden state ``[B,N,H]``; ``tri`` the triplet edge features ``[B,N,N,H]``
(``triplet_gmpnn``) or ``None``. :func:`make_processor` mirrors ``get_processor_factory``:

* ``mpnn``: CLRS's ``MPNN`` = ``PGN`` over a complete adjacency (every pair sends a message);
* ``pgn``: messages ``msg[i, j] = MLP(relu(m_1(z_j) + m_2(z_i) + m_e(e_ij) + m_g(g)))`` (an MLP
  ``[H, H]``: linear, relu, linear), max over the senders ``i`` with ``adj[i, j] != 0`` (-1e6
  elsewhere), then ``relu(o1(z_j) + o2(msg_j))`` and a LayerNorm; ``z = [node_fts, hidden]``;
* ``triplet_gmpnn``: ``mpnn`` plus Dudzik & Velickovic's triplet messages
  ``t[i,j,k] = t_1(z_i) + t_2(z_j) + t_3(z_k) + t_e_1(e_ij) + t_e_2(e_ik) + t_e_3(e_jk) + t_g(g)``
  (``nb_triplet_fts`` features), returned as ``relu(o3(max_i t[i,j,k]))``, and the update gate
  ``out = ret * s + hidden * (1 - s)``, ``s = sigmoid(gate3(relu(gate1(z) + gate2(msg))))``, the
  bias of ``gate3`` initialised to -3;
* ``gatv2``: ``softmax_j(a(leaky_relu(w_1(z_j) + w_2(z_i) + w_e(e_ij) + w_g(g))) - 1e9 (1 - adj[i,j]))``
  weights the values ``m(z_j)`` per head, then ``+ skip(z_i)``, relu and LayerNorm;
* ``edge_transformer``: not CLRS-30's: the Edge Transformer layer (triangular attention over node pairs) of the
  branching study, in :mod:`.edge_transformer` (no haiku names).

Initialisation is haiku's: every ``hk.Linear`` is a truncated normal (at two standard deviations)
of scale ``1/sqrt(fan_in)`` with zero bias; LayerNorm scale 1, offset 0.

Weights map one to one onto CLRS's haiku parameters (``w`` is the transposed ``weight``,
``b`` the ``bias``; LayerNorm ``scale``/``offset`` are ``weight``/``bias``). Haiku names modules by
the order they are built in; each processor lists its mapping in ``haiku_names`` (torch attribute ->
haiku module under ``haiku_module``, itself under ``net/`` in a ``BaselineModel``):

==================  =============================================================================
``mpnn``, ``pgn``   ``m_1``: linear, ``m_2``: linear_1, ``m_e``: linear_2, ``m_g``: linear_3,
(module             ``o1``: linear_4, ``o2``: linear_5, ``mlp_0``/``mlp_1``: mlp/~/linear_0 and
``mpnn_aggr_clrs_   mlp/~/linear_1, ``ln``: layer_norm
processor``)
``triplet_gmpnn``   as ``mpnn``, plus ``t_1``, ``t_2``, ``t_3``, ``t_e_1``, ``t_e_2``, ``t_e_3``, ``t_g``:
                    linear_6 .. linear_12, ``o3``: linear_13, ``gate1``, ``gate2``, ``gate3``:
                    linear_14 .. linear_16
``gatv2`` (module   ``m``: linear, ``skip``: linear_1, ``w_1``: linear_2, ``w_2``: linear_3,
``gatv2_aggr_clrs_  ``w_e``: linear_4, ``w_g``: linear_5, ``a.<h>``: linear_<6+h> (one per head),
processor``)        ``ln``: layer_norm
==================  =============================================================================

Speed: the linears that read the same input run as one matrix product (their weights
concatenated on the fly, so the parameters stay one per haiku linear); the triplet tensor
``[B,N,N,N,F]`` is formed once from the three terms that depend on the reduced index ``i``
(the others are added after the max, which rounding preserves), in chunks of receivers when large.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...arguments import check_choice, check_int
from ..linear import linear

PROCESSORS = ("mpnn", "pgn", "gatv2", "triplet_gmpnn", "edge_transformer")
BIG_NUMBER = 1e6  # CLRS-30's fill value for non-edges under max aggregation
_TRIPLET_CHUNK = 1 << 24  # elements of the [B,i,j,k,F] triplet tensor formed at once


def haiku_linear(in_features: int, out_features: int) -> nn.Linear:
    """An ``nn.Linear`` with uninitialised weights (no RNG draw); initialise with :func:`init_haiku_linear_`."""
    return torch.nn.utils.skip_init(nn.Linear, in_features, out_features)


@torch.no_grad()
def init_haiku_linear_(layer: nn.Linear, generator: torch.Generator | None = None, bias: float = 0.0) -> nn.Linear:
    """Initialise ``layer`` as haiku's default ``hk.Linear``: truncated normal (+-2 sd), sd ``1/sqrt(fan_in)``."""
    std = 1.0 / math.sqrt(layer.in_features)
    nn.init.trunc_normal_(layer.weight, 0.0, std, -2.0 * std, 2.0 * std, generator=generator)
    if layer.bias is not None:
        layer.bias.fill_(bias)
    return layer


def _project(x: torch.Tensor, linears: list[nn.Linear], sizes: list[int]) -> tuple[torch.Tensor, ...]:
    """``tuple(l(x) for l in linears)`` as one matrix product."""
    if len(linears) == 1:
        return (_apply(linears[0], x),)
    weight = torch.cat([lin.weight for lin in linears])
    bias = torch.cat([lin.bias for lin in linears])
    return linear(x, weight, bias).split(sizes, dim=-1)


def _apply(lin: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return linear(x, lin.weight, lin.bias)


class Processor(nn.Module):
    """Base class: the haiku name mapping and initialisation shared by the processors."""

    haiku_module: str = ""
    emits_edge_fts: bool = False  # whether forward's second item is a tensor (triplet edge features)

    def __init__(self) -> None:
        super().__init__()
        self.haiku_names: dict[str, str] = {}  # torch submodule -> haiku module, in haiku's build order
        self._bias_init: dict[str, float] = {}
        self._linear_count = 0

    def _linear(self, attr: str, in_features: int, out_features: int, *, haiku: str | None = None,
                bias: float = 0.0) -> nn.Linear:
        if haiku is None:
            haiku = "linear" if self._linear_count == 0 else f"linear_{self._linear_count}"
            self._linear_count += 1
        self.haiku_names[attr] = haiku
        self._bias_init[attr] = bias
        return haiku_linear(in_features, out_features)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Haiku's default initialisation, drawn in haiku's build order from ``generator``."""
        for attr in self.haiku_names:
            module = self.get_submodule(attr)
            if isinstance(module, nn.Linear):
                init_haiku_linear_(module, generator, self._bias_init[attr])
            else:  # LayerNorm
                module.weight.fill_(1.0)
                module.bias.fill_(0.0)


class MessagePassing(Processor):
    """CLRS-30's ``PGN`` with max aggregation: ``mpnn`` (complete graph), ``pgn``, ``triplet_gmpnn``."""

    haiku_module = "mpnn_aggr_clrs_processor"

    def __init__(self, hidden: int, *, masked: bool, use_ln: bool = True, use_triplets: bool = False,
                 nb_triplet_fts: int = 8, gated: bool = False, generator: torch.Generator | None = None) -> None:
        super().__init__()
        h, f = hidden, nb_triplet_fts
        self.hidden, self.masked, self.use_triplets, self.gated = h, masked, use_triplets, gated
        self.emits_edge_fts = use_triplets
        self.m_1 = self._linear("m_1", 2 * h, h)
        self.m_2 = self._linear("m_2", 2 * h, h)
        self.m_e = self._linear("m_e", h, h)
        self.m_g = self._linear("m_g", h, h)
        self.o1 = self._linear("o1", 2 * h, h)
        self.o2 = self._linear("o2", h, h)
        z_lins, e_lins, g_lins = ["m_1", "m_2", "o1"], ["m_e"], ["m_g"]
        if use_triplets:
            for name in ("t_1", "t_2", "t_3"):
                setattr(self, name, self._linear(name, 2 * h, f))
            for name in ("t_e_1", "t_e_2", "t_e_3"):
                setattr(self, name, self._linear(name, h, f))
            self.t_g = self._linear("t_g", h, f)
            self.o3 = self._linear("o3", f, h)
            z_lins += ["t_1", "t_2", "t_3"]
            e_lins += ["t_e_1", "t_e_2", "t_e_3"]
            g_lins += ["t_g"]
        self.mlp_0 = self._linear("mlp_0", h, h, haiku="mlp/~/linear_0")
        self.mlp_1 = self._linear("mlp_1", h, h, haiku="mlp/~/linear_1")
        msg_lins = ["o2"]
        if use_ln:
            self.ln = nn.LayerNorm(h, eps=1e-5)  # hk.LayerNorm's default epsilon
            self.haiku_names["ln"] = "layer_norm"
        else:
            self.ln = None
        if gated:
            self.gate1 = self._linear("gate1", 2 * h, h)
            self.gate2 = self._linear("gate2", h, h)
            self.gate3 = self._linear("gate3", h, h, bias=-3.0)
            z_lins.append("gate1")
            msg_lins.append("gate2")
        self._groups = {key: names for key, names in
                        (("z", z_lins), ("e", e_lins), ("g", g_lins), ("msg", msg_lins))}
        self.reset_parameters(generator)

    def _proj(self, key: str, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        linears = [getattr(self, name) for name in self._groups[key]]
        return _project(x, linears, [lin.out_features for lin in linears])

    def forward(self, node_fts: torch.Tensor, edge_fts: torch.Tensor, graph_fts: torch.Tensor,
                adj_mat: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = torch.cat([node_fts, hidden], dim=-1)
        zp, ep, gp = self._proj("z", z), self._proj("e", edge_fts), self._proj("g", graph_fts)
        msg_1, msg_2, h_1 = zp[:3]
        # msgs[b, i, j] = m_1(z_j) + m_2(z_i) + m_e(e_ij) + m_g(g): sender i, receiver j
        receiver = msg_1 + gp[0].unsqueeze(1)
        msgs = ep[0] + receiver.unsqueeze(1) + msg_2.unsqueeze(2)
        msgs = _apply(self.mlp_1, torch.relu(_apply(self.mlp_0, torch.relu(msgs))))
        if self.masked:
            msgs = msgs.masked_fill(adj_mat.unsqueeze(-1) == 0, -BIG_NUMBER)
        msgs = msgs.amax(dim=1)  # [B, N, H]; ties share the gradient, as in JAX

        tri_msgs = None
        if self.use_triplets:
            tri = _triplet_max(zp[3], ep[1], ep[2])  # max_i of the i-dependent terms: [B, j, k, F]
            tri = tri + ep[3] + (zp[4] + gp[1].unsqueeze(1)).unsqueeze(2) + zp[5].unsqueeze(1)
            tri_msgs = torch.relu(_apply(self.o3, tri))

        mp = self._proj("msg", msgs)
        ret = torch.relu(h_1 + mp[0])
        if self.ln is not None:
            ret = self.ln(ret)
        if self.gated:
            gate = torch.sigmoid(_apply(self.gate3, torch.relu(zp[-1] + mp[1])))
            ret = ret * gate + hidden * (1.0 - gate)
        return ret, tri_msgs


def _triplet_max(t_1: torch.Tensor, t_e_1: torch.Tensor, t_e_2: torch.Tensor) -> torch.Tensor:
    """``max_i t_1[b,i] + t_e_1[b,i,j] + t_e_2[b,i,k]`` as ``[B, j, k, F]``, in chunks of ``j`` when large."""
    b, n, _, f = t_e_1.shape
    first = t_e_1 + t_1.unsqueeze(2)  # [B, i, j, F]
    second = t_e_2.unsqueeze(2)  # [B, i, 1, k, F]
    step = max(1, _TRIPLET_CHUNK // max(1, b * n * n * f))
    if step >= n:
        return (first.unsqueeze(3) + second).amax(dim=1)
    return torch.cat([(first[:, :, j:j + step].unsqueeze(3) + second).amax(dim=1) for j in range(0, n, step)],
                     dim=1)


class GATv2(Processor):
    """CLRS-30's ``GATv2`` (Brody et al., 2022): attention over ``adj_mat``, residual, relu, LayerNorm."""

    haiku_module = "gatv2_aggr_clrs_processor"

    def __init__(self, hidden: int, *, nb_heads: int = 1, use_ln: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        h = hidden
        if h % nb_heads:
            raise ValueError(f"nb_heads ({nb_heads}) must divide hidden ({h})")
        self.hidden, self.nb_heads, self.head_size = h, nb_heads, h // nb_heads
        self.m = self._linear("m", 2 * h, h)
        self.skip = self._linear("skip", 2 * h, h)
        self.w_1 = self._linear("w_1", 2 * h, h)
        self.w_2 = self._linear("w_2", 2 * h, h)
        self.w_e = self._linear("w_e", h, h)
        self.w_g = self._linear("w_g", h, h)
        self.a = nn.ModuleList([self._linear(f"a.{k}", self.head_size, 1) for k in range(nb_heads)])
        if use_ln:
            self.ln = nn.LayerNorm(h, eps=1e-5)
            self.haiku_names["ln"] = "layer_norm"
        else:
            self.ln = None
        self.reset_parameters(generator)

    def forward(self, node_fts: torch.Tensor, edge_fts: torch.Tensor, graph_fts: torch.Tensor,
                adj_mat: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, None]:
        b, n, h = node_fts.shape
        heads, size = self.nb_heads, self.head_size
        z = torch.cat([node_fts, hidden], dim=-1)
        values, skip, pre_1, pre_2 = _project(z, [self.m, self.skip, self.w_1, self.w_2], [h] * 4)
        # pre_att[b, i, j] = w_1(z_j) + w_2(z_i) + w_e(e_ij) + w_g(g); softmax over j
        receiver = pre_1 + _apply(self.w_g, graph_fts).unsqueeze(1)
        pre_att = _apply(self.w_e, edge_fts) + receiver.unsqueeze(1) + pre_2.unsqueeze(2)
        pre_att = F.leaky_relu(pre_att)  # negative slope 0.01, as jax.nn.leaky_relu
        if heads == 1:
            logits = _apply(self.a[0], pre_att).permute(0, 3, 1, 2)  # [B, 1, N, N]
        else:
            weight = torch.cat([lin.weight for lin in self.a])  # [heads, size]
            bias = torch.cat([lin.bias for lin in self.a])
            logits = torch.einsum("bijhf,hf->bhij", pre_att.view(b, n, n, heads, size), weight)
            logits = logits + bias.view(1, heads, 1, 1)
        bias_mat = (adj_mat - 1.0) * 1e9
        coefs = torch.softmax(logits + bias_mat.unsqueeze(1), dim=-1)  # [B, heads, N, N]
        ret = coefs @ values.view(b, n, heads, size).transpose(1, 2)  # [B, heads, N, size]
        ret = ret.transpose(1, 2).reshape(b, n, h) + skip
        ret = torch.relu(ret)
        if self.ln is not None:
            ret = self.ln(ret)
        return ret, None


def make_processor(kind: str, hidden: int, *, nb_triplet_fts: int = 8, use_ln: bool = True, nb_heads: int = 1,
                   generator: torch.Generator | None = None) -> Processor:
    """The processor ``kind`` of width ``hidden``, as CLRS-30's ``get_processor_factory(kind, ...)(hidden)``.

    ``nb_triplet_fts`` is used by ``triplet_gmpnn`` only, ``nb_heads`` by ``gatv2`` and ``edge_transformer``
    (``use_ln=False`` is refused there: its LayerNorms are part of the layer); parameters are drawn from
    ``generator`` (the global RNG if None).
    """
    kind = check_choice("kind", kind, PROCESSORS)
    hidden = check_int("hidden", hidden, minimum=1)
    nb_triplet_fts = check_int("nb_triplet_fts", nb_triplet_fts, minimum=1)
    nb_heads = check_int("nb_heads", nb_heads, minimum=1)
    if not isinstance(use_ln, bool):
        raise ValueError(f"use_ln must be a bool, got {use_ln!r}")
    if kind in ("gatv2", "edge_transformer") and hidden % nb_heads:
        raise ValueError(f"nb_heads must divide hidden ({hidden}), got {nb_heads}")
    if kind == "edge_transformer":
        from .edge_transformer import EdgeTransformer

        if not use_ln:
            raise ValueError("use_ln=False is not supported by edge_transformer (its LayerNorms are part of the layer)")
        return EdgeTransformer(hidden, nb_heads=nb_heads, generator=generator)
    if kind == "gatv2":
        return GATv2(hidden, nb_heads=nb_heads, use_ln=use_ln, generator=generator)
    if kind == "triplet_gmpnn":
        return MessagePassing(hidden, masked=False, use_ln=use_ln, use_triplets=True,
                              nb_triplet_fts=nb_triplet_fts, gated=True, generator=generator)
    return MessagePassing(hidden, masked=kind == "pgn", use_ln=use_ln, generator=generator)
