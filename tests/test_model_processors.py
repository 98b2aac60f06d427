"""CLRS-30 processors against hand-computed messages and explicit NumPy loops (no call into the code under test).

The loops below restate CLRS-30's processors (dm-clrs 2.0.3, clrs/_src/processors.py) one sender,
receiver and triplet at a time: messages ``m_1(z_j) + m_2(z_i) + m_e(e_ij) + m_g(g)`` from sender
``i`` to receiver ``j``, max over senders (``adj[i, j] != 0`` for pgn), GATv2's softmax over ``j``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gnnbench.models.algo import processors as P
from gnnbench.models.algo.processors import make_processor


def set_linear(lin: torch.nn.Linear, w, b) -> None:
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(np.asarray(w, dtype=np.float64)))
        lin.bias.copy_(torch.as_tensor(np.asarray(b, dtype=np.float64)))


def randomise(proc: torch.nn.Module, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Give every parameter random values (biases and LayerNorm included); return them as NumPy (w, b)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, module in proc.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm)):
            w = rng.normal(size=tuple(module.weight.shape)) * (0.5 if module.weight.dim() == 2 else 1.0)
            b = rng.normal(size=tuple(module.bias.shape)) * 0.3
            set_linear(module, w, b)  # rounded to the module's float32
            weights[name] = (module.weight.detach().double().numpy(), module.bias.detach().double().numpy())
    return weights


def lin(weights, name, x):
    w, b = weights[name]
    return w @ x + b


def relu(x):
    return np.maximum(x, 0.0)


def layer_norm(weights, x):
    scale, offset = weights["ln"]
    return (x - x.mean()) / math.sqrt(x.var() + 1e-5) * scale + offset


def graph(seed: int, b: int = 2, n: int = 3, h: int = 4):
    rng = np.random.default_rng(seed)
    adj = (rng.random((b, n, n)) < 0.5).astype(np.float64)
    adj[:, np.arange(n), np.arange(n)] = 1.0  # self-loops, as CLRS-30's nets add them
    return (rng.normal(size=(b, n, h)), rng.normal(size=(b, n, n, h)), rng.normal(size=(b, h)), adj,
            rng.normal(size=(b, n, h)))


def run(proc, arrays, dtype=torch.float64):
    out, tri = proc.to(dtype)(*(torch.as_tensor(a, dtype=dtype) for a in arrays))
    return out.detach().numpy(), None if tri is None else tri.detach().numpy()


# ----------------------------------------------------------------------------- NumPy loop references
def mpnn_loops(weights, node, edge, graph_fts, adj, hidden, *, masked, triplets=False, gated=False):
    b, n, h = node.shape
    out = np.zeros((b, n, h))
    tri_out = np.zeros((b, n, n, h)) if triplets else None
    for bi in range(b):
        z = [np.concatenate([node[bi, v], hidden[bi, v]]) for v in range(n)]
        g = graph_fts[bi]
        for j in range(n):
            best = None
            for i in range(n):
                if masked and adj[bi, i, j] == 0:
                    continue
                pre = lin(weights, "m_1", z[j]) + lin(weights, "m_2", z[i]) + lin(weights, "m_e", edge[bi, i, j]) \
                    + lin(weights, "m_g", g)
                msg = lin(weights, "mlp_1", relu(lin(weights, "mlp_0", relu(pre))))
                best = msg if best is None else np.maximum(best, msg)
            ret = layer_norm(weights, relu(lin(weights, "o1", z[j]) + lin(weights, "o2", best)))
            if gated:
                gate = 1 / (1 + np.exp(-lin(weights, "gate3", relu(lin(weights, "gate1", z[j])
                                                                   + lin(weights, "gate2", best)))))
                ret = ret * gate + hidden[bi, j] * (1 - gate)
            out[bi, j] = ret
        if triplets:
            for j in range(n):
                for k in range(n):
                    best = None
                    for i in range(n):
                        t = (lin(weights, "t_1", z[i]) + lin(weights, "t_2", z[j]) + lin(weights, "t_3", z[k])
                             + lin(weights, "t_e_1", edge[bi, i, j]) + lin(weights, "t_e_2", edge[bi, i, k])
                             + lin(weights, "t_e_3", edge[bi, j, k]) + lin(weights, "t_g", g))
                        best = t if best is None else np.maximum(best, t)
                    tri_out[bi, j, k] = relu(lin(weights, "o3", best))
    return out, tri_out


def gatv2_loops(weights, node, edge, graph_fts, adj, hidden, nb_heads):
    b, n, h = node.shape
    size = h // nb_heads
    out = np.zeros((b, n, h))
    for bi in range(b):
        z = [np.concatenate([node[bi, v], hidden[bi, v]]) for v in range(n)]
        g = graph_fts[bi]
        for i in range(n):
            ret = np.zeros(h)
            for head in range(nb_heads):
                cols = slice(head * size, (head + 1) * size)
                logits = []
                for j in range(n):
                    pre = lin(weights, "w_1", z[j]) + lin(weights, "w_2", z[i]) + lin(weights, "w_e", edge[bi, i, j]) \
                        + lin(weights, "w_g", g)
                    act = np.where(pre > 0, pre, 0.01 * pre)[cols]
                    logit = lin(weights, f"a.{head}", act)[0]
                    logits.append(logit + (adj[bi, i, j] - 1.0) * 1e9)
                coefs = np.exp(np.array(logits) - max(logits))
                coefs /= coefs.sum()
                ret[cols] = sum(coefs[j] * lin(weights, "m", z[j])[cols] for j in range(n))
            out[bi, i] = layer_norm(weights, relu(ret + lin(weights, "skip", z[i])))
    return out


# ----------------------------------------------------------------------------- hand-computed messages
def hand_graph():
    """One graph of 3 nodes, width 1: the cycle 0 -> 1 -> 2 -> 0 with self-loops; non-edges carry 5."""
    node = np.array([[[1.0], [-2.0], [0.5]]])
    hidden = np.array([[[0.0], [1.0], [-1.0]]])
    edge = np.full((1, 3, 3, 1), 5.0)
    adj = np.eye(3)[None].copy()
    for i, j, e in ((0, 1, 1.0), (1, 2, 3.0), (2, 0, 2.0)):
        edge[0, i, j, 0] = e
        adj[0, i, j] = 1.0
    for v in range(3):
        edge[0, v, v, 0] = 0.0
    return node, edge, np.zeros((1, 1)), adj, hidden


def hand_weights(proc):
    # m_1(z_j) = node_j, m_2(z_i) = hidden_i, m_e = e_ij, m_g = 0; message MLP: 2 relu(relu(x)) + 0.5;
    # update relu(node_j + hidden_j + msg_j)
    for name, w, b in (("m_1", [[1.0, 0.0]], [0.0]), ("m_2", [[0.0, 1.0]], [0.0]), ("m_e", [[1.0]], [0.0]),
                       ("m_g", [[0.0]], [0.0]), ("mlp_0", [[1.0]], [0.0]), ("mlp_1", [[2.0]], [0.5]),
                       ("o1", [[1.0, 1.0]], [0.0]), ("o2", [[1.0]], [0.0])):
        set_linear(getattr(proc, name), w, b)


def test_pgn_hand_computed_messages_over_edges_only():
    proc = make_processor("pgn", 1, use_ln=False)
    hand_weights(proc)
    out, tri = run(proc, hand_graph())
    # receiver 0: self 2 relu(1 + 0 + 0) + .5 = 2.5, from 2: 2 relu(1 - 1 + 2) + .5 = 4.5 -> relu(1 + 0 + 4.5)
    # receiver 1: self 2 relu(-2 + 1) + .5 = .5, from 0: 2 relu(-2 + 0 + 1) + .5 = .5 -> relu(-2 + 1 + .5) = 0
    # receiver 2: self 2 relu(.5 - 1) + .5 = .5, from 1: 2 relu(.5 + 1 + 3) + .5 = 9.5 -> relu(.5 - 1 + 9.5)
    np.testing.assert_allclose(out[0, :, 0], [5.5, 0.0, 9.0], atol=1e-12)
    assert tri is None


def test_mpnn_hand_computed_messages_from_every_node():
    proc = make_processor("mpnn", 1, use_ln=False)
    hand_weights(proc)
    out, _ = run(proc, hand_graph())
    # the non-edges (e = 5) now send too: receiver 0 from 1: 2 relu(1 + 1 + 5) + .5 = 14.5 -> 1 + 0 + 14.5;
    # receiver 1 from 2: 2 relu(-2 - 1 + 5) + .5 = 4.5 -> relu(-2 + 1 + 4.5);
    # receiver 2 from 0: 2 relu(.5 + 0 + 5) + .5 = 11.5 -> relu(.5 - 1 + 11.5)
    np.testing.assert_allclose(out[0, :, 0], [15.5, 3.5, 11.0], atol=1e-12)


@pytest.mark.parametrize("kind", ["mpnn", "pgn"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_message_passing_matches_numpy_loops(kind, dtype):
    proc = make_processor(kind, 4)
    weights = randomise(proc, seed=1)
    arrays = graph(seed=2)
    out, tri = run(proc, arrays, dtype)
    expected, _ = mpnn_loops(weights, *arrays, masked=kind == "pgn")
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    assert tri is None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_triplet_gmpnn_matches_numpy_loops(dtype):
    proc = make_processor("triplet_gmpnn", 4, nb_triplet_fts=3)
    weights = randomise(proc, seed=3)
    arrays = graph(seed=4, n=4)
    out, tri = run(proc, arrays, dtype)
    expected, expected_tri = mpnn_loops(weights, *arrays, masked=False, triplets=True, gated=True)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(tri, expected_tri, rtol=tol, atol=tol)


@pytest.mark.parametrize("nb_heads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gatv2_matches_numpy_loops(nb_heads, dtype):
    proc = make_processor("gatv2", 4, nb_heads=nb_heads)
    weights = randomise(proc, seed=5)
    arrays = graph(seed=6)
    out, tri = run(proc, arrays, dtype)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    np.testing.assert_allclose(out, gatv2_loops(weights, *arrays, nb_heads), rtol=tol, atol=tol)
    assert tri is None


def test_triplet_max_against_brute_force_in_chunks(monkeypatch):
    rng = np.random.default_rng(7)
    b, n, f = 2, 5, 3
    t_1, t_e_1, t_e_2 = rng.normal(size=(b, n, f)), rng.normal(size=(b, n, n, f)), rng.normal(size=(b, n, n, f))
    expected = np.full((b, n, n, f), -np.inf)
    for bi in range(b):
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    expected[bi, j, k] = np.maximum(expected[bi, j, k], t_1[bi, i] + t_e_1[bi, i, j] + t_e_2[bi, i, k])
    args = [torch.as_tensor(a) for a in (t_1, t_e_1, t_e_2)]
    np.testing.assert_allclose(P._triplet_max(*args).numpy(), expected, atol=1e-12)
    monkeypatch.setattr(P, "_TRIPLET_CHUNK", 2 * n * n * f)  # two receivers j at a time (chunks 2, 2, 1)
    np.testing.assert_allclose(P._triplet_max(*args).numpy(), expected, atol=1e-12)


# ----------------------------------------------------------------------------- masking
def perturbed_non_edge(seed: int):
    node, edge, graph_fts, adj, hidden = graph(seed, b=1, n=4)
    adj[0] = np.eye(4)
    adj[0, 0, 1] = adj[0, 2, 1] = 1.0  # receiver 1 hears 0 and 2, not 3
    changed = edge.copy()
    changed[0, 3, 1] += 50.0  # the message 3 -> 1 only
    return (node, edge, graph_fts, adj, hidden), (node, changed, graph_fts, adj, hidden)


def test_pgn_ignores_messages_along_non_edges_and_mpnn_does_not():
    base, changed = perturbed_non_edge(seed=8)
    pgn = make_processor("pgn", 4)
    randomise(pgn, seed=9)
    np.testing.assert_array_equal(run(pgn, base)[0], run(pgn, changed)[0])
    mpnn = make_processor("mpnn", 4)
    randomise(mpnn, seed=9)
    diff = np.abs(run(mpnn, base)[0] - run(mpnn, changed)[0])
    assert diff[0, 1].max() > 1e-3  # receiver 1 hears node 3 through the changed edge
    assert diff[0, [0, 2, 3]].max() == 0.0  # nobody else reads edge (3, 1)


def test_mpnn_reads_no_adjacency_and_gatv2_attends_only_to_it():
    arrays = graph(seed=10)
    other = list(arrays)
    other[3] = np.ones_like(arrays[3])
    mpnn = make_processor("mpnn", 4)
    randomise(mpnn, seed=11)
    np.testing.assert_array_equal(run(mpnn, arrays)[0], run(mpnn, other)[0])
    base, changed = perturbed_non_edge(seed=12)
    gat = make_processor("gatv2", 4)
    randomise(gat, seed=13)
    # GATv2 attends over j for node i: edge (1, 3) is a non-edge of node 1's row
    changed = list(base)
    changed[1] = base[1].copy()
    changed[1][0, 1, 3] += 50.0
    np.testing.assert_array_equal(run(gat, base)[0], run(gat, changed)[0])


# ----------------------------------------------------------------------------- initialisation
def test_gate_bias_starts_at_minus_three_and_other_biases_at_zero():
    proc = make_processor("triplet_gmpnn", 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(proc.gate3.bias, torch.full((16,), -3.0))
    for name, module in proc.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "gate3":
            assert torch.equal(module.bias, torch.zeros_like(module.bias)), name
    assert torch.equal(proc.ln.weight, torch.ones(16)) and torch.equal(proc.ln.bias, torch.zeros(16))


def test_a_fresh_gate_mostly_keeps_the_hidden_state():
    proc = make_processor("triplet_gmpnn", 8, generator=torch.Generator().manual_seed(1))
    torch.nn.init.zeros_(proc.gate3.weight)  # isolate the bias: gate = sigmoid(-3) = 0.0474
    arrays = [torch.as_tensor(a, dtype=torch.float32) for a in graph(seed=14, h=8)]
    out, _ = proc(*arrays)
    z = torch.cat([arrays[0], arrays[4]], -1)
    pre = torch.relu(proc.o1(z) + proc.o2(_reference_max_message(proc, arrays)))
    ln = torch.nn.functional.layer_norm(pre, (8,))
    gate = 1 / (1 + math.exp(3))
    torch.testing.assert_close(out, ln * gate + arrays[4] * (1 - gate), rtol=1e-5, atol=1e-5)


def _reference_max_message(proc, arrays):
    node, edge, graph_fts, _, hidden = arrays
    z = torch.cat([node, hidden], -1)
    pre = proc.m_1(z)[:, None] + proc.m_2(z)[:, :, None] + proc.m_e(edge) + proc.m_g(graph_fts)[:, None, None]
    return proc.mlp_1(torch.relu(proc.mlp_0(torch.relu(pre)))).max(dim=1).values


TRUNCATED_STD = 0.8796256610342398  # standard deviation of a standard normal truncated to [-2, 2]


@pytest.mark.parametrize("kind", ["mpnn", "gatv2", "triplet_gmpnn"])
def test_weights_are_haikus_truncated_normal(kind):
    proc = make_processor(kind, 128, generator=torch.Generator().manual_seed(2))
    for name, module in proc.named_modules():
        if not isinstance(module, torch.nn.Linear) or module.weight.numel() < 10_000:
            continue
        w = module.weight.detach().double()
        scale = 1 / math.sqrt(module.in_features)
        std_error = TRUNCATED_STD * scale * math.sqrt(2 / w.numel())  # ~1% at 16k entries
        assert abs(w.std().item() - TRUNCATED_STD * scale) < 4 * std_error, name
        assert abs(w.mean().item()) < 4 * TRUNCATED_STD * scale / math.sqrt(w.numel()), name
        assert w.abs().max().item() <= 2 * scale + 1e-7, name
        assert w.abs().max().item() > 1.9 * scale, name  # truncated at 2 sd, not narrower


def test_initialisation_follows_the_generator():
    a = make_processor("triplet_gmpnn", 8, generator=torch.Generator().manual_seed(3))
    b = make_processor("triplet_gmpnn", 8, generator=torch.Generator().manual_seed(3))
    c = make_processor("triplet_gmpnn", 8, generator=torch.Generator().manual_seed(4))
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
        if name.endswith("weight") and pa.dim() == 2:
            assert not torch.equal(pa, pc), name
    state = torch.random.get_rng_state()
    make_processor("mpnn", 8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched


# ----------------------------------------------------------------------------- haiku names
# The parameter names of dm-clrs 2.0.3's processors with hidden 4 (printed by haiku's init), in order.
HAIKU_TRIPLET_GMPNN = ["linear", "linear_1", "linear_2", "linear_3", "linear_4", "linear_5", "linear_6",
                       "linear_7", "linear_8", "linear_9", "linear_10", "linear_11", "linear_12", "linear_13",
                       "mlp/~/linear_0", "mlp/~/linear_1", "layer_norm", "linear_14", "linear_15", "linear_16"]
HAIKU_SHAPES_TRIPLET = {"linear": (8, 4), "linear_2": (4, 4), "linear_6": (8, 8), "linear_9": (4, 8),
                        "linear_13": (8, 4), "linear_14": (8, 4), "linear_15": (4, 4), "linear_16": (4, 4)}
HAIKU_GATV2 = ["linear", "linear_1", "linear_2", "linear_3", "linear_4", "linear_5", "linear_6", "layer_norm"]


def test_haiku_names_cover_every_parameter_once():
    for kind, expected in (("triplet_gmpnn", HAIKU_TRIPLET_GMPNN), ("gatv2", HAIKU_GATV2),
                           ("mpnn", HAIKU_TRIPLET_GMPNN[:6] + HAIKU_TRIPLET_GMPNN[14:17])):
        proc = make_processor(kind, 4)
        assert sorted(proc.haiku_names.values()) == sorted(expected), kind
        covered = {f"{attr}.{p}" for attr in proc.haiku_names for p in ("weight", "bias")}
        assert covered == {name for name, _ in proc.named_parameters()}, kind
    proc = make_processor("triplet_gmpnn", 4)
    by_haiku = {v: k for k, v in proc.haiku_names.items()}
    for haiku, (fan_in, fan_out) in HAIKU_SHAPES_TRIPLET.items():
        assert tuple(proc.get_submodule(by_haiku[haiku]).weight.shape) == (fan_out, fan_in), haiku
    assert by_haiku["linear_16"] == "gate3"


# ----------------------------------------------------------------------------- autograd and arguments
@pytest.mark.parametrize("kind, weight", [("mpnn", "mlp_0.weight"), ("pgn", "m_e.weight"), ("gatv2", "w_e.weight"),
                                          ("triplet_gmpnn", "t_e_2.weight")])
def test_gradients_and_second_derivatives_are_exact(kind, weight):
    proc = make_processor(kind, 3, nb_triplet_fts=2).double()
    randomise(proc, seed=15)
    arrays = [torch.as_tensor(a) for a in graph(seed=16, b=1, n=3, h=3)]
    params = dict(proc.named_parameters())

    def f(node, w):
        out, tri = torch.func.functional_call(proc, {**params, weight: w}, (node, *arrays[1:]))
        return out.sum() + (0 if tri is None else (tri ** 2).sum())

    inputs = (arrays[0].clone().requires_grad_(True), params[weight].detach().clone().requires_grad_(True))
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="gcn", hidden=4), "kind must be one of"),
    (dict(kind="mpnn", hidden=0), "hidden must be"),
    (dict(kind="mpnn", hidden=4.0), "hidden must be"),
    (dict(kind="triplet_gmpnn", hidden=4, nb_triplet_fts=0), "nb_triplet_fts must be"),
    (dict(kind="gatv2", hidden=6, nb_heads=4), "nb_heads must divide hidden"),
    (dict(kind="mpnn", hidden=4, use_ln=1), "use_ln must be a bool"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_processor(**kwargs)
