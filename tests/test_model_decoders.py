"""Encoders and decoders of the algorithmic baselines against values computed by hand on tiny weights.

Each case sets the weights of one field's linears by hand (hidden size 1 or 2, two or three nodes)
and compares with the CLRS-30 formula written out with plain Python numbers.
"""

import math

import pytest
import torch

from gnnbench.algo import ALGORITHMS, SPECS, sample
from gnnbench.models.algo.decoders import (DecoderWeights, construct_decoder, decode, hard_predictions,
                                           postprocess)
from gnnbench.models.algo.encoders import (EncoderWeights, FieldLayout, Groups, adjacency, categorical_classes,
                                           construct_encoder, encode, group)

torch.set_num_threads(1)


def _set(linear, weight, bias):
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        linear.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def _decoder(fields, hidden=1, edge_width=1, classes=None):
    """``{name: (location, type)}`` -> (layout, {name: ModuleList})."""
    classes = classes or {}
    layout = FieldLayout.of(fields, classes)
    mods = {name: construct_decoder(loc, t, hidden, edge_width, classes.get(name, 1))
            for name, (loc, t) in fields.items()}
    return layout, mods


# Node states h [1, 2, 3] (3H with H = 1), edge features e [1, 2, 2, 1], graph features g [1, 1].
H = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])
E = torch.tensor([[[[0.5], [1.0]], [[-1.0], [2.0]]]])
G = torch.tensor([[3.0]])
ADJ = torch.ones(1, 2, 2)


def _close(actual, expected):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), rtol=1e-6, atol=1e-6)


def _l(w, x, b):  # a hand linear: sum_k w_k x_k + b
    return sum(wk * xk for wk, xk in zip(w, x)) + b


def test_node_simple_fields_are_one_linear_of_h_each():
    layout, mods = _decoder({"s": ("node", "scalar"), "m": ("node", "mask"), "o": ("node", "mask_one")})
    _set(mods["s"][0], [[1.0, 2.0, 3.0]], [0.5])
    _set(mods["m"][0], [[-1.0, 0.0, 1.0]], [0.0])
    _set(mods["o"][0], [[0.0, 0.0, 2.0]], [-1.0])
    out = decode(DecoderWeights(layout, mods), H, E, G, ADJ).fields(layout)
    h = H[0].tolist()
    for name, (w, b) in {"s": ([1, 2, 3], 0.5), "m": ([-1, 0, 1], 0.0), "o": ([0, 0, 2], -1.0)}.items():
        assert out[name].shape == (1, 2)
        assert out[name][0].tolist() == pytest.approx([_l(w, h[i], b) for i in range(2)])


def test_node_categorical_has_one_output_per_class():
    layout, mods = _decoder({"c": ("node", "categorical")}, classes={"c": 2})
    _set(mods["c"][0], [[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]], [0.0, 2.0])
    out = decode(DecoderWeights(layout, mods), H, E, G, ADJ).fields(layout)["c"]
    assert out.shape == (1, 2, 2)
    assert out[0].tolist() == [[1.0, 2.0], [0.0, 2.0]]


def test_node_pointer_scores_every_candidate_through_the_reverse_edge():
    layout, mods = _decoder({"p": ("node", "pointer")})
    l0, l1, l2, l3 = mods["p"]
    _set(l0, [[1.0, 0.0, 1.0]], [0.0])
    _set(l1, [[0.0, 2.0, 0.0]], [-1.0])
    _set(l2, [[1.0]], [0.0])
    _set(l3, [[2.0]], [0.5])
    out = decode(DecoderWeights(layout, mods), H, E, G, ADJ).fields(layout)["p"]
    h, e = H[0].tolist(), E[0, :, :, 0].tolist()
    expected = [[2.0 * max(_l([1, 0, 1], h[i], 0), _l([0, 2, 0], h[j], -1) + e[j][i]) + 0.5 for j in range(2)]
                for i in range(2)]
    assert out.shape == (1, 2, 2)
    _close(out[0], expected)


def test_node_pointer_inf_bias_fills_non_edges_below_every_score():
    layout, mods = _decoder({"p": ("node", "pointer")})
    l0, l1, l2, l3 = mods["p"]
    for lin in (l0, l1):
        _set(lin, [[1.0, 1.0, 1.0]], [0.0])
    _set(l2, [[0.0]], [0.0])
    _set(l3, [[1.0]], [0.0])  # score[i, j] = max(sum h_i, sum h_j) = [[1, 2], [2, 2]]
    adj = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    out = decode(DecoderWeights(layout, mods), H, E, G, adj, inf_bias=True).fields(layout)["p"]
    assert out[0].tolist() == [[1.0, -1.0], [2.0, 2.0]]  # min(-1, 1 - 1) = -1
    negative = decode(DecoderWeights(layout, mods), -H, E, G, adj, inf_bias=True).fields(layout)["p"]
    # scores [[-1, -1], [-1, -2]]: the non-edge gets min(-1, -2 - 1) = -3
    assert negative[0].tolist() == [[-1.0, -3.0], [-1.0, -2.0]]


def test_edge_simple_fields_sum_sender_receiver_and_edge_terms():
    layout, mods = _decoder({"s": ("edge", "scalar"), "m": ("edge", "mask")})
    for name, scale in (("s", 1.0), ("m", -2.0)):
        l0, l1, l2 = mods[name]
        _set(l0, [[scale, 0.0, 0.0]], [0.0])
        _set(l1, [[0.0, 0.0, 3.0]], [1.0])
        _set(l2, [[scale]], [0.0])
    out = decode(DecoderWeights(layout, mods), H, E, G, ADJ).fields(layout)
    h, e = H[0].tolist(), E[0, :, :, 0].tolist()
    for name, scale in (("s", 1.0), ("m", -2.0)):
        expected = [[scale * h[i][0] + 3.0 * h[j][2] + 1.0 + scale * e[i][j] for j in range(2)] for i in range(2)]
        assert out[name].shape == (1, 2, 2)
        _close(out[name][0], expected)


def test_edge_inf_bias_applies_to_masks_not_scalars():
    layout, mods = _decoder({"s": ("edge", "scalar"), "m": ("edge", "mask")})
    for name in ("s", "m"):
        l0, l1, l2 = mods[name]
        _set(l0, [[0.0, 0.0, 0.0]], [0.0])
        _set(l1, [[0.0, 0.0, 0.0]], [0.0])
        _set(l2, [[1.0]], [0.0])  # scores = e = [[0.5, 1], [-1, 2]]
    adj = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    out = decode(DecoderWeights(layout, mods), H, E, G, adj, inf_bias_edge=True).fields(layout)
    assert out["s"][0].tolist() == [[0.5, 1.0], [-1.0, 2.0]]
    assert out["m"][0].tolist() == [[0.5, -2.0], [-1.0, 2.0]]  # min(-1, -1 - 1)


def test_edge_categorical_has_one_output_per_class():
    layout, mods = _decoder({"c": ("edge", "categorical")}, classes={"c": 2})
    l0, l1, l2 = mods["c"]
    _set(l0, [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [0.0, 0.0])
    _set(l1, [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [0.0, 0.0])
    _set(l2, [[0.0], [1.0]], [5.0, 0.0])
    out = decode(DecoderWeights(layout, mods), H, E, G, ADJ).fields(layout)["c"]
    h, e = H[0].tolist(), E[0, :, :, 0].tolist()
    expected = [[[h[i][0] + 5.0, h[j][1] + e[i][j]] for j in range(2)] for i in range(2)]
    assert out.shape == (1, 2, 2, 2)
    _close(out[0], expected)


def test_edge_pointer_scores_every_node_for_every_edge():
    layout, mods = _decoder({"P": ("edge", "pointer")})
    l0, l1, l2, l3, l4 = mods["P"]
    _set(l0, [[1.0, 0.0, 0.0]], [0.0])
    _set(l1, [[0.0, 1.0, 0.0]], [0.0])
    _set(l2, [[1.0]], [-0.5])
    _set(l3, [[0.0, 0.0, 2.0]], [0.25])
    _set(l4, [[-1.0]], [1.0])
    out = decode(DecoderWeights(layout, mods), H, E, G, ADJ).fields(layout)["P"]
    h, e = H[0].tolist(), E[0, :, :, 0].tolist()
    expected = [[[-1.0 * max(h[i][0] + h[j][1] + e[i][j] - 0.5, 2.0 * h[k][2] + 0.25) + 1.0 for k in range(2)]
                 for j in range(2)] for i in range(2)]
    assert out.shape == (1, 2, 2, 2)
    _close(out[0], expected)


def test_graph_fields_read_the_max_over_nodes_and_the_graph_features():
    layout, mods = _decoder({"s": ("graph", "scalar"), "c": ("graph", "categorical"), "p": ("graph", "pointer")},
                            classes={"c": 2})
    _set(mods["s"][0], [[1.0, 2.0, 3.0]], [0.0])
    _set(mods["s"][1], [[2.0]], [1.0])
    _set(mods["c"][0], [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [0.0, 0.0])
    _set(mods["c"][1], [[0.0], [-1.0]], [0.0, 0.5])
    _set(mods["p"][0], [[0.0, 1.0, 0.0]], [0.0])
    _set(mods["p"][1], [[1.0]], [0.0])
    _set(mods["p"][2], [[4.0, 0.0, 0.0]], [0.0])
    out = decode(DecoderWeights(layout, mods), H, E, G, ADJ).fields(layout)
    r = [max(H[0, 0, k].item(), H[0, 1, k].item()) for k in range(3)]  # [1, 1, 1]
    g = G[0, 0].item()
    assert out["s"].shape == (1,)
    assert out["s"].item() == pytest.approx(r[0] + 2 * r[1] + 3 * r[2] + 2 * g + 1)
    assert out["c"][0].tolist() == pytest.approx([r[0], r[2] - g + 0.5])
    assert out["p"][0].tolist() == pytest.approx([r[1] + g + 4.0 * H[0, j, 0].item() for j in range(2)])


def test_decoder_shapes_match_clrs_haiku_parameters():
    # Haiku shapes (w: [in, out]) of dm-clrs 2.0.3's BaselineModel at hidden 16 with triplet_gmpnn
    # (edge features 2 x 16), read from the reference's parameters.
    clrs = {("node", "pointer"): [(48, 16), (48, 16), (32, 16), (16, 1)],
            ("node", "mask"): [(48, 1)],
            ("edge", "scalar"): [(48, 1), (48, 1), (32, 1)],
            ("edge", "pointer"): [(48, 16), (48, 16), (32, 16), (48, 16), (16, 1)]}
    for (loc, t), shapes in clrs.items():
        mods = construct_decoder(loc, t, 16, 32)
        assert [(lin.in_features, lin.out_features) for lin in mods] == shapes
        assert all((lin.bias == 0).all() for lin in mods)


def test_soft_postprocess_is_sigmoid_and_softmax_over_the_right_axis():
    layout = FieldLayout.of({"s": ("node", "scalar"), "m": ("node", "mask"), "o": ("node", "mask_one"),
                             "p": ("node", "pointer"), "em": ("edge", "mask_one")})
    node = torch.tensor([[[3.0, 0.0, 1.0], [-2.0, 2.0, 2.0]]])  # [B, N, (s, m, o)]
    ptr = torch.tensor([[[0.0, 1.0], [2.0, 2.0]]])
    edge = torch.tensor([[[[0.0], [1.0]], [[3.0], [3.0]]]])
    soft = postprocess(layout, Groups(node_simple=node, node_ptr=[ptr], edge_simple=edge), hard=False)
    s = 1 / (1 + math.exp(-0.0))
    assert soft.node_simple[0, :, 0].tolist() == [3.0, -2.0]
    assert soft.node_simple[0, :, 1].tolist() == pytest.approx([s, 1 / (1 + math.exp(-2.0))])
    z = math.exp(1.0) + math.exp(2.0)  # mask_one: softmax over the nodes
    assert soft.node_simple[0, :, 2].tolist() == pytest.approx([math.exp(1.0) / z, math.exp(2.0) / z])
    _close(soft.node_ptr[0][0], [[1 / (1 + math.e), math.e / (1 + math.e)], [0.5, 0.5]])
    _close(soft.edge_simple[0, :, :, 0], [[1 / (1 + math.e), math.e / (1 + math.e)], [0.5, 0.5]])  # over j
    hard = postprocess(layout, Groups(node_simple=node, node_ptr=[ptr], edge_simple=edge), hard=True)
    assert hard.node_simple[0].tolist() == [[3.0, 0.0, 0.0], [-2.0, 1.0, 1.0]]
    assert hard.node_ptr[0][0].tolist() == [[0.0, 1.0], [1.0, 0.0]]  # first maximum on ties, as jnp.argmax


def test_hard_scalar_repredictions_carry_no_gradient():
    layout = FieldLayout.of({"s": ("node", "scalar")})
    x = torch.ones(1, 2, 1, requires_grad=True)
    assert not postprocess(layout, Groups(node_simple=x), hard=True).node_simple.requires_grad
    assert postprocess(layout, Groups(node_simple=x), hard=False).node_simple.requires_grad


def test_hard_predictions_are_what_the_evaluator_reads():
    types = {"p": ("node", "pointer"), "m": ("node", "mask"), "o": ("node", "mask_one"), "c": ("node", "categorical"),
             "s": ("graph", "scalar")}
    scores = {"p": torch.tensor([[[0.0, 3.0], [1.0, -1.0]]]), "m": torch.tensor([[0.5, -0.1]]),
              "o": torch.tensor([[-1.0, 2.0]]), "c": torch.tensor([[[1.0, 0.0, 2.0], [0.0, 0.0, -1.0]]]),
              "s": torch.tensor([1.5])}
    out = hard_predictions(types, scores)
    assert out["p"].tolist() == [[1, 0]] and out["p"].dtype == torch.int64
    assert out["m"].tolist() == [[1.0, 0.0]]
    assert out["o"].tolist() == [[0.0, 1.0]]
    assert out["c"].tolist() == [[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]]
    assert out["s"].tolist() == [1.5]


# ---- encoders -------------------------------------------------------------------------------------

def _encoders(stage, fields, hidden=2, classes=None):
    classes = classes or {}
    layout = FieldLayout.of(fields, classes)
    mods = {name: construct_encoder(stage, loc, t, hidden, classes.get(name, 1)) for name, (loc, t) in fields.items()}
    return layout, mods


def test_node_and_graph_fields_encode_into_their_location_and_sum():
    fields = {"x": ("node", "scalar"), "c": ("node", "categorical"), "g": ("graph", "mask"),
              "gp": ("graph", "pointer")}
    layout, mods = _encoders("input", fields, classes={"c": 2})
    _set(mods["x"][0], [[1.0], [2.0]], [0.5, -1.0])
    _set(mods["c"][0], [[1.0, 0.0], [0.0, 3.0]], [0.0, 1.0])
    _set(mods["g"][0], [[2.0], [-2.0]], [0.1, 0.2])
    _set(mods["gp"][0], [[1.0], [1.0]], [0.0, 0.0])
    values = {"x": torch.tensor([[2.0, -1.0]]), "c": torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]),
              "g": torch.tensor([1.0]), "gp": torch.tensor([1.0])}
    node, edge, graph = encode(EncoderWeights(layout, mods), group(layout, values, 2))
    assert edge is None
    # node i: x_i * [1, 2] + [0.5, -1] + c_i @ [[1, 0], [0, 3]] + [0, 1] + onehot(gp)_i * [1, 1]
    _close(node[0], [[2 + 0.5 + 1, 4 - 1 + 1], [-1 + 0.5 + 1, -2 - 1 + 3 + 1 + 1]])
    assert graph[0].tolist() == pytest.approx([2.1, -1.8])


def test_node_pointer_encodes_edges_and_joins_the_adjacency():
    layout, mods = _encoders("hint", {"p": ("node", "pointer")})
    _set(mods["p"][0], [[1.0], [-1.0]], [0.5, 0.0])
    values = group(layout, {"p": torch.tensor([[1.0, 1.0, 0.0]])}, 3)  # 0 -> 1, 1 -> 1, 2 -> 0
    node, edge, graph = encode(EncoderWeights(layout, mods), values)
    assert node is None and graph is None
    one_hot = [[0, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert edge[0].tolist() == [[[0.5 + v, -v] for v in row] for row in one_hot]
    adj = adjacency(layout, values)[0].tolist()
    assert adj == [[one_hot[i][j] + one_hot[j][i] > 0.5 for j in range(3)] for i in range(3)]


def test_soft_pointers_join_the_adjacency_above_one_half():
    layout = FieldLayout.of({"p": ("node", "pointer")})
    soft = torch.tensor([[[0.6, 0.4], [0.2, 0.8]]])
    assert adjacency(layout, Groups(node_ptr=[soft]))[0].tolist() == [[True, True], [True, True]]  # 0.4 + 0.2 > .5
    soft = torch.tensor([[[0.9, 0.1], [0.3, 0.7]]])
    assert adjacency(layout, Groups(node_ptr=[soft]))[0].tolist() == [[True, False], [False, True]]


def test_edge_masks_join_the_adjacency_symmetrically_scalars_do_not():
    layout = FieldLayout.of({"w": ("edge", "scalar"), "adj": ("edge", "mask")})
    values = group(layout, {"w": torch.ones(1, 2, 2), "adj": torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])}, 2)
    assert adjacency(layout, values)[0].tolist() == [[False, True], [True, False]]


def test_edge_pointer_encoding_is_the_mean_over_senders_and_middles():
    layout, mods = _encoders("hint", {"P": ("edge", "pointer")}, hidden=1)
    _set(mods["P"][0], [[2.0]], [0.5])
    _set(mods["P"][1], [[-1.0]], [0.25])
    index = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])  # P[x, y] = node
    _, edge, _ = encode(EncoderWeights(layout, mods), group(layout, {"P": index}, 2))
    # CLRS: edge[x, y] = mean_i enc0(onehot[i, x, y]) + mean_j enc1(onehot[x, j, y]), onehot[a, b, c] = P[a, b] == c
    oh = [[[float(index[0, a, b].item() == c) for c in range(2)] for b in range(2)] for a in range(2)]
    expected = [[sum(2.0 * oh[i][x][y] + 0.5 for i in range(2)) / 2 + sum(-oh[x][j][y] + 0.25 for j in range(2)) / 2
                 for y in range(2)] for x in range(2)]
    _close(edge[0, :, :, 0], expected)


def test_xavier_on_scalars_narrows_only_the_scalar_hint_encoders():
    gen = torch.Generator().manual_seed(0)
    hidden = 4096
    hint = construct_encoder("hint", "node", "scalar", hidden, init="xavier_on_scalars", generator=gen)[0]
    inp = construct_encoder("input", "node", "scalar", hidden, init="xavier_on_scalars", generator=gen)[0]
    default = construct_encoder("hint", "node", "scalar", hidden, init="default", generator=gen)[0]
    truncated_sd = 0.8796  # sd of a standard normal truncated at +-2
    assert hint.weight.abs().max() <= 2 / math.sqrt(hidden)
    assert hint.weight.std().item() == pytest.approx(truncated_sd / math.sqrt(hidden), rel=0.05)
    for lin in (inp, default):  # haiku's default: sd 1 / sqrt(fan_in) = 1
        assert lin.weight.abs().max() <= 2.0
        assert lin.weight.std().item() == pytest.approx(truncated_sd, rel=0.05)
    assert all((lin.bias == 0).all() for lin in (hint, inp, default))
    with pytest.raises(ValueError, match="encoder_init"):
        construct_encoder("hint", "node", "scalar", 4, init="xavier")


def test_layout_stacks_scalars_then_masks_then_mask_ones():
    layout = FieldLayout.for_stage("dijkstra", "hint")
    assert layout.node.simple == ("d", "mark", "in_queue", "u")
    assert layout.node.pointer == ("pi_h",)
    with pytest.raises(ValueError, match="class count"):
        FieldLayout.of({"c": ("node", "categorical")})


def test_categorical_class_counts_match_the_generated_traces():
    for alg in ALGORITHMS:
        batch = sample(alg, 2, n=5, seed=0).clrs_batch()
        for name, (stage, _, t) in SPECS[alg].items():
            if t == "categorical":
                data = {"input": batch.inputs, "hint": batch.hints, "output": batch.outputs}[stage][name]
                assert categorical_classes(alg, name) == data.shape[-1], (alg, name)
    with pytest.raises(ValueError, match="not a categorical"):
        categorical_classes("bfs", "pi")


@pytest.mark.parametrize("chunk", [1 << 18, 7])  # one piece; pieces of graphs and of rows
def test_max_linear_matches_plain_autograd_with_ties_and_second_order(monkeypatch, chunk):
    import gnnbench.models.algo.decoders as decoders

    monkeypatch.setattr(decoders, "_MAX_CHUNK", chunk)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 4, 1, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(3, 1, 1, 4, 2, generator=gen, dtype=torch.float64)
    x[0, 0, 0, 0, 0] = y[0, 0, 0, 1, 0]  # a tie: the gradient is shared, as jnp.maximum shares it
    lin = torch.nn.Linear(2, 1).double()
    for t in (x, y):
        t.requires_grad_(True)
    params = (x, y, lin.weight, lin.bias)
    plain = torch.nn.functional.linear(torch.maximum(x, y), lin.weight, lin.bias)
    fused = decoders.max_linear(x, y, lin)
    torch.testing.assert_close(fused, plain)
    probe = torch.randn(plain.shape, generator=gen, dtype=torch.float64)
    for got, want in zip(torch.autograd.grad(fused, params, probe, retain_graph=True),  # the fast backward
                         torch.autograd.grad(plain, params, probe, retain_graph=True)):
        torch.testing.assert_close(got, want)
    # Hessian-vector products by double backward: d/dw of (dL/dx . v), L = probe . out
    v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    hv = [torch.autograd.grad((torch.autograd.grad(f, x, probe, create_graph=True)[0] * v).sum(), lin.weight)[0]
          for f in (decoders.max_linear(x, y, lin), torch.nn.functional.linear(torch.maximum(x, y), lin.weight,
                                                                                lin.bias))]
    torch.testing.assert_close(hv[0], hv[1])
    with torch.no_grad():
        torch.testing.assert_close(decoders.max_linear(x, y, lin), plain)


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_add_linear_matches_plain_autograd_to_second_order(channels):
    from gnnbench.models.algo.encoders import add_linear

    gen = torch.Generator().manual_seed(channels)
    base = torch.randn(2, 3, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 3, 3, channels, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, channels, generator=gen, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(2, 3, 3, 4, generator=gen, dtype=torch.float64)
    got, want = add_linear(base, x, w), base + x @ w.t()
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got, (base, x, w), probe), torch.autograd.grad(want, (base, x, w), probe)):
        torch.testing.assert_close(a, b)
    v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    hv = [torch.autograd.grad((torch.autograd.grad((out * out).sum(), x, create_graph=True)[0] * v).sum(), w)[0]
          for out in (add_linear(base, x, w), base + x @ w.t())]
    torch.testing.assert_close(hv[0], hv[1])


def test_max_linear_second_order_through_a_chain_sharing_its_weight():
    # the weight reaches the later call both directly and through the earlier one's output
    import gnnbench.models.algo.decoders as decoders

    gen = torch.Generator().manual_seed(3)
    h = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    e = torch.randn(2, 3, 3, 4, generator=gen, dtype=torch.float64)
    proj = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    lin = torch.nn.Linear(4, 1).double()
    params = (proj, lin.weight, lin.bias)
    vs = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]

    def hvp(step):
        leaves = [p.detach().clone().requires_grad_(True) for p in params]
        w_proj, weight, bias = leaves
        lin_ = torch.nn.Linear(4, 1).double()
        loss, state, edges = 0.0, h, e
        for _ in range(3):
            p = torch.nn.functional.linear(state, w_proj)
            scores = step(p[..., :4].unsqueeze(1), p[..., 4:].unsqueeze(2) + edges, lin_, weight, bias)
            probs = torch.softmax(scores.squeeze(-1).transpose(1, 2), dim=-1)
            loss = loss + (probs ** 2).sum()
            edges = edges + probs.unsqueeze(-1)
            state = torch.tanh(state + probs.sum(-1, keepdim=True))
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
        return torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vs)), leaves)

    def fused(x, y, lin_, weight, bias):
        return decoders._MaxLinear.apply(x, y, weight, bias)

    def plain(x, y, lin_, weight, bias):
        return torch.nn.functional.linear(torch.maximum(x, y), weight, bias)

    for got, want in zip(hvp(fused), hvp(plain)):
        torch.testing.assert_close(got, want)
