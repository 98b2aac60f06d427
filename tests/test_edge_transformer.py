"""The Edge Transformer processor: values against a literal loop implementation, chunking, permutation
equivariance, initialisation, gradients, and the encode-process-decode network built on it."""

import math

import pytest
import torch

from gnnbench.algo import Evaluator, sample
from gnnbench.models.algo.batches import to_torch
from gnnbench.models.algo.edge_transformer import EdgeTransformer, triangular_attention
from gnnbench.models.algo.net import EncodeProcessDecode
from gnnbench.models.algo.processors import PROCESSORS, make_processor

torch.set_num_threads(1)


def _inputs(b=2, n=4, h=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, n, h, generator=g, dtype=dtype), torch.randn(b, n, n, h, generator=g, dtype=dtype),
            torch.randn(b, h, generator=g, dtype=dtype), (torch.rand(b, n, n, generator=g) < 0.5).to(dtype),
            torch.randn(b, n, h, generator=g, dtype=dtype))


def _layer(h=8, heads=2, seed=0, **kwargs):
    return EdgeTransformer(h, nb_heads=heads, generator=torch.Generator().manual_seed(seed), **kwargs).double()


def _layer_norm(x, ln):
    mean = sum(x) / len(x)
    var = sum((v - mean) ** 2 for v in x) / len(x)
    return [(v - mean) / math.sqrt(var + ln.eps) * w + b
            for v, w, b in zip(x, ln.weight.tolist(), ln.bias.tolist())]


def _matvec(weight, x, bias=None):
    rows = weight.detach().tolist()
    out = [sum(w * v for w, v in zip(row, x)) for row in rows]
    return out if bias is None else [v + b for v, b in zip(out, bias.detach().tolist())]


def _literal(et, node_fts, edge_fts, graph_fts, hidden):
    """The layer written out element by element (Python lists, loops over i, j, l and the heads), from the
    module's weights: upstream's concatenation [z_i, g, z_j, g], pre-norm attention, FFN, diagonal readout."""
    b, n, h = node_fts.shape
    heads, d = et.nb_heads, h // et.nb_heads
    outs, pairs = [], []
    for s in range(b):
        z = [node_fts[s, i].tolist() + hidden[s, i].tolist() for i in range(n)]
        g = graph_fts[s].tolist()
        x = [[[a + e for a, e in zip(_matvec(et.compose.weight, z[i] + g + z[j] + g, et.compose.bias),
                                      edge_fts[s, i, j].tolist())] for j in range(n)] for i in range(n)]
        y = [[_layer_norm(x[i][j], et.ln_in) if et.norm_first else x[i][j] for j in range(n)] for i in range(n)]
        q = [[_matvec(et.q.weight, y[i][j]) for j in range(n)] for i in range(n)]
        k = [[_matvec(et.k.weight, y[i][j]) for j in range(n)] for i in range(n)]
        v1 = [[_matvec(et.v1.weight, y[i][j]) for j in range(n)] for i in range(n)]
        v2 = [[_matvec(et.v2.weight, y[i][j]) for j in range(n)] for i in range(n)]
        new = [[None] * n for _ in range(n)]
        for i in range(n):
            for j in range(n):
                att = [0.0] * h
                for head in range(heads):
                    channels = range(head * d, head * d + d)
                    scores = [sum(q[i][l][c] * k[l][j][c] for c in channels) / math.sqrt(d) for l in range(n)]
                    top = max(scores)
                    weights = [math.exp(v - top) for v in scores]
                    total = sum(weights)
                    for l in range(n):
                        for c in channels:
                            att[c] += weights[l] / total * v1[i][l][c] * v2[l][j][c]
                a = _layer_norm([u + v for u, v in zip(x[i][j], _matvec(et.o.weight, att))], et.ln_att)
                f = _matvec(et.ffn_2.weight, [max(v, 0.0) for v in _matvec(et.ffn_1.weight, a, et.ffn_1.bias)],
                            et.ffn_2.bias)
                new[i][j] = _layer_norm([u + v for u, v in zip(a, f)], et.ln_out)
        pairs.append(new)
        outs.append([new[i][i] for i in range(n)])
    return torch.tensor(outs, dtype=torch.float64), torch.tensor(pairs, dtype=torch.float64)


@pytest.mark.parametrize("heads,norm_first", [(1, True), (2, True), (2, False)])
def test_matches_a_literal_loop_implementation(heads, norm_first):
    et = _layer(h=8, heads=heads, seed=3, norm_first=norm_first)
    with torch.no_grad():  # non-trivial LayerNorm and bias values, so that each one is checked
        for module in et.children():
            for p in module.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()),
                                         dtype=p.dtype))
    node_fts, edge_fts, graph_fts, adj, hidden = _inputs(b=2, n=4, h=8, seed=1)
    out, pairs = et(node_fts, edge_fts, graph_fts, adj, hidden)
    want_out, want_pairs = _literal(et, node_fts, edge_fts, graph_fts, hidden)
    assert out.shape == (2, 4, 8) and pairs.shape == (2, 4, 4, 8)
    torch.testing.assert_close(pairs, want_pairs, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out, want_out, rtol=1e-9, atol=1e-9)


def test_adjacency_is_not_used():
    et = _layer()
    node_fts, edge_fts, graph_fts, adj, hidden = _inputs()
    out, pairs = et(node_fts, edge_fts, graph_fts, adj, hidden)
    out_2, pairs_2 = et(node_fts, edge_fts, graph_fts, 1.0 - adj, hidden)
    assert torch.equal(out, out_2) and torch.equal(pairs, pairs_2)


def test_pair_state_replaces_the_composed_pairs():
    et_1, et_2 = _layer(seed=1), _layer(seed=2)
    node_fts, edge_fts, graph_fts, adj, hidden = _inputs()
    _, pairs = et_1(node_fts, edge_fts, graph_fts, adj, hidden)
    out, pairs_2 = et_2(node_fts, edge_fts, graph_fts, adj, hidden, pair_state=pairs)
    want = et_2.layer(pairs)  # upstream's next layer: the previous pair states, nothing recomposed
    assert torch.equal(pairs_2, want)
    assert torch.equal(out, torch.stack([want[:, i, i] for i in range(want.shape[1])], dim=1))


@pytest.mark.parametrize("chunk", [1, 2 * 8 * 5 * 5 * 2])  # one row per chunk; two rows per chunk (5 = 2 + 2 + 1)
def test_chunked_rows_equal_one_pass(chunk):
    g = torch.Generator().manual_seed(0)
    q, k, v1, v2 = (torch.randn(2, 5, 5, 8, generator=g, dtype=torch.float64) for _ in range(4))
    whole = triangular_attention(q, k, v1, v2, 2, chunk_elements=1 << 30)
    chunked = triangular_attention(q, k, v1, v2, 2, chunk_elements=chunk)
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-12)
    # and the layer: the same values and gradients with one row per chunk
    et_whole, et_rows = _layer(seed=4), _layer(seed=4, chunk_elements=1)
    inputs = _inputs(n=5)
    outs = [et(*inputs) for et in (et_whole, et_rows)]
    torch.testing.assert_close(outs[1][1], outs[0][1], rtol=1e-12, atol=1e-12)
    for et, (out, pairs) in zip((et_whole, et_rows), outs):
        (out.sum() + (pairs * inputs[1]).sum()).backward()
    for (name, p), p_rows in zip(et_whole.named_parameters(), et_rows.parameters()):
        torch.testing.assert_close(p_rows.grad, p.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_permuting_the_nodes_permutes_the_outputs():
    et = _layer(seed=5)
    node_fts, edge_fts, graph_fts, adj, hidden = _inputs(n=5, seed=2)
    perm = torch.tensor([3, 0, 4, 1, 2])
    out, pairs = et(node_fts, edge_fts, graph_fts, adj, hidden)
    out_p, pairs_p = et(node_fts[:, perm], edge_fts[:, perm][:, :, perm], graph_fts, adj[:, perm][:, :, perm],
                        hidden[:, perm])
    torch.testing.assert_close(out_p, out[:, perm], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pairs_p, pairs[:, perm][:, :, perm], rtol=1e-12, atol=1e-12)


def test_initialisation_is_deterministic_and_haiku_like():
    one, two, other = (EdgeTransformer(16, nb_heads=4, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8))
    state, same, different = one.state_dict(), two.state_dict(), other.state_dict()
    assert state.keys() == same.keys() and all(torch.equal(state[k], same[k]) for k in state)
    assert not torch.equal(state["q.weight"], different["q.weight"])
    for name, module in one.named_children():
        if isinstance(module, torch.nn.Linear):
            bound = 2.0 / math.sqrt(module.in_features)  # truncated at two standard deviations
            assert module.weight.abs().max() <= bound and module.weight.std() > 0.3 / math.sqrt(module.in_features)
            assert module.bias is None or torch.equal(module.bias, torch.zeros_like(module.bias)), name
        elif isinstance(module, torch.nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones(16)) and torch.equal(module.bias, torch.zeros(16))
    # reset_parameters draws the same values again from the same seed
    one.q.weight.data.zero_()
    one.reset_parameters(torch.Generator().manual_seed(8))
    assert all(torch.equal(one.state_dict()[k], different[k]) for k in state)


def test_no_bias_on_the_attention_projections():
    et = EdgeTransformer(8, nb_heads=2)
    assert all(getattr(et, name).bias is None for name in ("q", "k", "v1", "v2", "o"))
    assert et.compose.in_features == 48 and et.ffn_1.out_features == 16
    assert et.haiku_names == {} and et.haiku_module == "" and et.emits_edge_fts


def test_gradients_reach_every_parameter():
    et = _layer(seed=6)
    inputs = [x.requires_grad_() if x.is_floating_point() else x for x in _inputs(n=4, seed=3)]
    out, pairs = et(*inputs)
    g = torch.Generator().manual_seed(9)
    # random weights: a plain sum of a LayerNorm's output has no gradient
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum() + \
        (pairs * torch.randn(pairs.shape, generator=g, dtype=pairs.dtype)).sum()
    loss.backward()
    for name, p in et.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for index in (0, 1, 2, 4):  # node, edge, graph features and hidden state
        assert inputs[index].grad.abs().sum() > 0


def test_per_sample_gradients_by_vmap_match_a_loop_and_double_backward_works():
    """What the task-affinity features (torch.func vmap) and the Hessian column (double backward) need."""
    from torch.func import functional_call, grad, vmap

    et = _layer(seed=7)
    inputs = _inputs(b=3, n=4, seed=4)
    params = {name: p.detach() for name, p in et.named_parameters()}

    def loss(p, *one):
        out, pairs = functional_call(et, p, tuple(x[None] for x in one))
        return (out ** 2).sum() + (pairs ** 3).mean()

    batched = vmap(grad(loss), in_dims=(None, 0, 0, 0, 0, 0))(params, *inputs)
    for i in range(3):
        single = grad(loss)(params, *(x[i] for x in inputs))
        for name in params:
            torch.testing.assert_close(batched[name][i], single[name], rtol=1e-9, atol=1e-12)
    # Hessian-vector product by double backward against a central difference of gradients
    ps = list(et.parameters())
    vec = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i), dtype=p.dtype) for i, p in enumerate(ps)]

    def gradient():
        out, pairs = et(*inputs)
        return torch.autograd.grad((out ** 2).sum() + (pairs ** 3).mean(), ps, create_graph=True)

    hv = torch.autograd.grad(sum((g * v).sum() for g, v in zip(gradient(), vec)), ps)
    eps, diffs = 1e-5, []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for p, v in zip(ps, vec):
                p.add_(sign * eps * v)
        diffs.append([g.detach() for g in gradient()])
        with torch.no_grad():
            for p, v in zip(ps, vec):
                p.sub_(sign * eps * v)
    for h, plus, minus in zip(hv, *diffs):
        torch.testing.assert_close(h, (plus - minus) / (2 * eps), rtol=1e-5, atol=1e-6)


def test_registered_with_make_processor():
    assert "edge_transformer" in PROCESSORS
    et = make_processor("edge_transformer", 12, nb_heads=3, generator=torch.Generator().manual_seed(0))
    assert isinstance(et, EdgeTransformer) and et.nb_heads == 3 and et.head_size == 4
    same = EdgeTransformer(12, nb_heads=3, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(et.parameters(), same.parameters()))


def test_bad_arguments_name_them():
    with pytest.raises(ValueError, match=r"nb_heads.*must divide hidden \(16\), got 5"):
        make_processor("edge_transformer", 16, nb_heads=5)
    with pytest.raises(ValueError, match=r"nb_heads \(3\) must divide hidden \(8\)"):
        EdgeTransformer(8, nb_heads=3)
    with pytest.raises(ValueError, match="nb_heads"):
        EdgeTransformer(8, nb_heads=0)
    with pytest.raises(ValueError, match="use_ln"):
        make_processor("edge_transformer", 8, use_ln=False)
    with pytest.raises(ValueError, match="chunk_elements"):
        EdgeTransformer(8, chunk_elements=0)
    with pytest.raises(ValueError, match="nb_heads"):
        EncodeProcessDecode("bfs", "edge_transformer", 16, nb_heads=6)


def test_encode_process_decode_trains_and_predicts():
    model = EncodeProcessDecode("bfs", "edge_transformer", hidden=16, nb_heads=4, num_layers=2,
                                generator=torch.Generator().manual_seed(0))
    layers = list(model.processor.layers)
    assert len(layers) == 2 and all(isinstance(layer, EdgeTransformer) for layer in layers)
    assert not torch.equal(layers[0].q.weight, layers[1].q.weight)  # two layers, own weights
    assert model.decoders["pi"][2].in_features == 32  # pointer decoders read [edge_fts, pairs]
    traces = sample("bfs", 3, n=6, seed=0)
    batch = to_torch(traces.clrs_batch())
    loss = model.loss(batch)
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.processor.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    pred = model.predict(batch)
    assert pred["pi"].shape == (3, 6) and pred["pi"].dtype == torch.int64
    assert ((pred["pi"] >= 0) & (pred["pi"] < 6)).all()
    scores = Evaluator("bfs").eval({"y_true": traces.outputs, "y_pred": {k: v.numpy() for k, v in pred.items()}})
    assert 0.0 <= scores["score"] <= 1.0


# ---- the single-task harness: model.num_layers


def _algo_spec(*overrides):
    from gnnbench.harness.config import resolve

    (spec,) = resolve("algo", shortcuts={"algorithm": "bfs", "model": "mpnn"}, overrides=overrides)
    return spec


def test_algo_configs_from_before_num_layers_keep_their_hash_and_run_directory(tmp_path):
    """A run directory written before ``model.num_layers`` existed (its config.toml lacks the key) still holds the
    same run: same config hash (its finished seeds verify) and it reopens without --force."""
    from gnnbench.harness.config import config_sha256, default_name, differences, resolve
    from gnnbench.harness.runner import prepare_run_dir
    from gnnbench.harness.values import dumps_toml

    spec = _algo_spec("train.steps=200")
    old = {section: dict(values) for section, values in spec.config.items()}
    del old["model"]["num_layers"]
    assert spec.config["model"]["num_layers"] == 1
    assert config_sha256(old) == config_sha256(spec.config) and differences(old, spec.config) == []
    run_dir = tmp_path / spec.name
    run_dir.mkdir()
    (run_dir / "config.toml").write_text(dumps_toml(old))
    (reopened,) = resolve(run_dir)
    assert config_sha256(reopened.config) == config_sha256(old)
    prepare_run_dir(reopened, run_dir)  # raises when the stored config differs
    two = _algo_spec("train.steps=200", "model.num_layers=2")
    assert config_sha256(two.config) != config_sha256(spec.config)
    assert differences(old, two.config) == [("model.num_layers", None, 2)]
    assert default_name(two.config, spec.config, spec.config, "algo") != spec.name


def test_harness_builds_num_layers_and_validates_it():
    from gnnbench.harness.algo_family import build_model

    spec = _algo_spec("model.processor=edge_transformer", "model.hidden=16", "model.nb_heads=4",
                      "model.num_layers=3")
    model = build_model("bfs", spec.config["model"], torch.Generator().manual_seed(0))
    assert [type(layer) for layer in model.processor.layers] == [EdgeTransformer] * 3
    old = dict(spec.config["model"])
    del old["num_layers"]  # a config resolved before the key existed: one layer
    assert isinstance(build_model("bfs", old, torch.Generator().manual_seed(0)).processor, EdgeTransformer)
    with pytest.raises(ValueError, match="model.num_layers"):
        _algo_spec("model.num_layers=0")
    with pytest.raises(ValueError, match=r"model.nb_heads \(5\) must divide model.hidden \(16\)"):
        _algo_spec("model.processor=edge_transformer", "model.hidden=16", "model.nb_heads=5")
    with pytest.raises(ValueError, match="model.use_ln"):
        _algo_spec("model.processor=edge_transformer", "model.hidden=16", "model.use_ln=false")
