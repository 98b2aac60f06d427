"""The encode-process-decode network: a literal CLRS-30 step loop as second implementation, padding and
bucketing invariance, gradients, predictions the Evaluator accepts, the batch container and random_pos."""

import pytest
import torch
import torch.nn.functional as F

from gnnbench.algo import ALGORITHMS, SPECS, Evaluator, sample
from gnnbench.models.algo.batches import TorchBatch, random_pos, randomize_pos, to_torch
from gnnbench.models.algo.losses import hint_loss, output_loss
from gnnbench.models.algo.net import EncodeProcessDecode, clrs_loss

torch.set_num_threads(1)


def _batch(alg, num=4, n=5, seed=0):
    return to_torch(sample(alg, num, n=n, seed=seed).clrs_batch())


def _model(alg, processor="triplet_gmpnn", hidden=8, seed=0, **kwargs):
    return EncodeProcessDecode(alg, processor, hidden, generator=torch.Generator().manual_seed(seed), **kwargs)


# ---- a literal CLRS-30 step loop (nets.Net._msg_passing_step / _one_step_pred, decoders.decode_fts),
# ---- written field by field over the whole batch for max(1, T - 1) steps, using the model's modules.

def _encode_literal(model, name, loc, typ, data, node_fts, edge_fts, graph_fts, adj):
    enc = model.encoders[name]
    if loc == "node" and typ == "pointer":
        adj = ((adj + ((data + data.transpose(1, 2)) > 0.5)) > 0).float()
    elif loc == "edge" and typ == "mask":
        adj = ((adj + ((data + data.transpose(1, 2)) > 0.0)) > 0).float()
    x = data if typ == "categorical" else data.unsqueeze(-1)
    if loc == "node" and typ == "pointer":
        edge_fts = edge_fts + enc[0](x)
    elif loc == "edge":
        if typ == "pointer":  # [B, N, N, N, H] encodings, averaged as CLRS does
            edge_fts = edge_fts + enc[0](x).mean(dim=1) + enc[1](x).mean(dim=2)
        else:
            edge_fts = edge_fts + enc[0](x)
    if (loc == "node" and typ != "pointer") or (loc == "graph" and typ == "pointer"):
        node_fts = node_fts + enc[0](x)
    if loc == "graph" and typ != "pointer":
        graph_fts = graph_fts + enc[0](x)
    return node_fts, edge_fts, graph_fts, adj


def _decode_literal(dec, loc, typ, h, e, g):
    if loc == "node":
        if typ == "pointer":
            p1, p2, p3 = dec[0](h), dec[1](h), dec[2](e)
            p_e = p2.unsqueeze(2) + p3
            return dec[3](torch.maximum(p1.unsqueeze(2), p_e.transpose(1, 2))).squeeze(-1)
        out = dec[0](h)
        return out if typ == "categorical" else out.squeeze(-1)
    if loc == "edge":
        pred = dec[0](h).unsqueeze(2) + dec[1](h).unsqueeze(1) + dec[2](e)
        if typ == "pointer":
            p_m = torch.maximum(pred.unsqueeze(3), dec[3](h)[:, None, None])
            return dec[4](p_m).squeeze(-1)
        return pred if typ == "categorical" else pred.squeeze(-1)
    pred = dec[0](h.amax(dim=1)) + dec[1](g)
    if typ == "pointer":
        return pred + dec[2](h).squeeze(-1)
    return pred if typ == "categorical" else pred.squeeze(-1)


def _post_literal(loc, typ, x, hard):
    if typ == "scalar":
        return x.detach() if hard else x
    if typ == "mask":
        return (x > 0).float() if hard else torch.sigmoid(x)
    return F.one_hot(x.argmax(-1), x.shape[-1]).float() if hard else torch.softmax(x, dim=-1)


def _clrs_forward(model, batch, repred, generator=None):
    spec = SPECS[model.algorithm]
    forcing = 0.0 if repred else model.hint_teacher_forcing
    b, n, steps = batch.num_graphs, batch.num_nodes, batch.num_steps
    hard = model.hint_repred_mode == "hard" or (model.hint_repred_mode == "hard_on_eval" and repred)
    hidden = torch.zeros(b, n, model.hidden)
    outputs, hint_preds, prev = None, [], None
    for i in range(max(1, steps - 1)):
        force = torch.rand(b, generator=generator) < forcing if 0 < forcing < 1 and i > 0 else None
        node_fts, edge_fts = torch.zeros(b, n, model.hidden), torch.zeros(b, n, n, model.hidden)
        graph_fts, adj = torch.zeros(b, model.hidden), torch.eye(n).expand(b, n, n)
        for name, (stage, loc, typ) in spec.items():
            if stage == "input" or (stage == "hint" and model.encode_hints):
                if stage == "input":
                    data = batch.inputs[name]
                elif i == 0 or forcing == 1.0:
                    data = batch.hints[name][i]
                else:
                    data = _post_literal(loc, typ, prev[name], hard)
                if typ == "pointer" and data.dim() == {"node": 2, "edge": 3, "graph": 1}[loc]:
                    data = F.one_hot(data.long(), n).float()
                if force is not None and stage == "hint":  # per trace: the ground truth with probability `forcing`
                    truth = batch.hints[name][i]
                    if typ == "pointer":
                        truth = F.one_hot(truth.long(), n).float()
                    data = torch.where(force.view(-1, *[1] * (data.dim() - 1)), truth, data)
                node_fts, edge_fts, graph_fts, adj = _encode_literal(model, name, loc, typ, data, node_fts, edge_fts,
                                                                     graph_fts, adj)
        nxt, tri = model.processor(node_fts, edge_fts, graph_fts, adj, hidden)
        h = torch.cat([node_fts, hidden, nxt], dim=-1)
        e = edge_fts if tri is None else torch.cat([edge_fts, tri], dim=-1)
        preds = {name: _decode_literal(model.decoders[name], loc, typ, h, e, graph_fts)
                 for name, (stage, loc, typ) in spec.items() if name in model.decoders}
        cand = {k: v for k, v in preds.items() if spec[k][0] == "output"}
        if outputs is None:
            outputs = cand
        else:
            for k, v in cand.items():
                not_done = (batch.lengths > i + 1).float().view(-1, *[1] * (v.dim() - 1))
                outputs[k] = not_done * v + (1.0 - not_done) * outputs[k]
        prev = {k: v for k, v in preds.items() if spec[k][0] == "hint"}
        hint_preds.append(prev)
        hidden = nxt
    return outputs, hint_preds


def _clrs_loss(model, batch, outputs, hint_preds):
    total = 0.0
    for name, (stage, _, typ) in SPECS[model.algorithm].items():
        if stage == "output":
            total = total + output_loss(typ, outputs[name], batch.outputs[name])
    if model.decode_hints:
        for name, (stage, _, typ) in SPECS[model.algorithm].items():
            if stage == "hint":
                preds = torch.stack([p[name] for p in hint_preds])[:batch.num_steps - 1]
                total = total + hint_loss(typ, preds, batch.hints[name], batch.lengths)
    return total


def _close(a, b, tol=2e-5):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("alg,processor,options", [
    ("bfs", "triplet_gmpnn", {}),  # node pointers
    ("floyd_warshall", "triplet_gmpnn", {}),  # edge pointers, edge masks in the adjacency
    ("dfs", "pgn", {}),  # categorical, graph scalar
    ("mst_kruskal", "mpnn", {"hint_repred_mode": "hard"}),  # graph categorical
    ("strongly_connected_components", "gatv2", {"hint_teacher_forcing": 1.0}),  # graph mask
    ("dijkstra", "mpnn", {"hint_mode": "decoded_only"}),
    ("dag_shortest_paths", "pgn", {"hint_teacher_forcing": 0.5}),  # forced per trace by the generator's draws
    ("bellman_ford", "mpnn", {"hint_mode": "none"}),
])
def test_matches_a_literal_clrs_step_loop(alg, processor, options):
    model = _model(alg, processor, **options)
    batch = _batch(alg, num=5, seed=3)
    for repred in (False, True):
        outputs, hints = model(batch, repred=repred, generator=torch.Generator().manual_seed(1))
        ref_outputs, ref_hints = _clrs_forward(model, batch, repred, torch.Generator().manual_seed(1))
        for name, value in ref_outputs.items():
            _close(outputs[name], value)
        assert set(hints) == (set(ref_hints[0]) if model.decode_hints else set())
        for name, value in hints.items():
            assert value.shape[0] == batch.num_steps - 1
            for t in range(batch.num_steps - 1):
                alive = batch.lengths > t + 1  # steps the loss scores
                _close(value[t][alive], ref_hints[t][name][alive])
    loss = model.loss(batch, generator=torch.Generator().manual_seed(2))
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    ref_loss = _clrs_loss(model, batch, *_clrs_forward(model, batch, False, torch.Generator().manual_seed(2)))
    ref_grads = torch.autograd.grad(ref_loss, list(model.parameters()), allow_unused=True)
    _close(loss, ref_loss)
    for g, r in zip(grads, ref_grads):
        _close(g if g is not None else torch.zeros(()), r if r is not None else torch.zeros(()), tol=1e-4)


def test_padding_to_more_steps_changes_nothing():
    model = _model("bfs")
    batch = _batch("bfs", num=6, seed=1)
    padded = batch.pad_steps(batch.num_steps + 3)
    for repred in (False, True):
        out, hints = model(batch, repred=repred)
        out_p, hints_p = model(padded, repred=repred)
        assert all(torch.equal(out[k], out_p[k]) for k in out)
        for k, v in hints.items():
            assert hints_p[k].shape[0] == padded.num_steps - 1
            assert torch.equal(hints_p[k][:v.shape[0]], v)
            assert not hints_p[k][v.shape[0]:].any()
    assert torch.equal(model.loss(batch), model.loss(padded))
    assert all(torch.equal(model.predict(batch)[k], model.predict(padded)[k]) for k in ("pi",))


def test_bucketing_and_reordering_the_graphs_changes_nothing():
    model = _model("dijkstra", "mpnn")
    batch = _batch("dijkstra", num=8, seed=2)
    out, hints = model(batch, repred=True)
    order = torch.tensor([5, 0, 7, 2, 1, 6, 3, 4])
    out_perm, hints_perm = model(batch.select(order), repred=True)
    _close(out_perm["pi"], out["pi"][order], tol=1e-6)
    short = torch.nonzero(batch.lengths < batch.lengths.max()).flatten()
    bucket = batch.select(short)
    assert bucket.num_steps == int(batch.lengths[short].max())
    out_bucket, hints_bucket = model(bucket, repred=True)
    _close(out_bucket["pi"], out["pi"][short], tol=1e-6)
    _close(hints_bucket["d"], hints["d"][:bucket.num_steps - 1, short], tol=1e-6)


def test_outputs_come_from_each_traces_last_step():
    model = _model("bfs", "mpnn")
    batch = _batch("bfs", num=6, seed=1)
    assert len(set(batch.lengths.tolist())) > 1  # traces of different lengths
    out, _ = model(batch, repred=True)
    for i in range(batch.num_graphs):  # one trace alone, cut to its own steps
        alone, _ = model(batch.select([i]), repred=True)
        _close(alone["pi"][0], out["pi"][i], tol=1e-6)


def test_gradients_reach_every_parameter():
    model = _model("dfs", "triplet_gmpnn")  # dfs has node, graph, categorical and pointer fields
    model.loss(_batch("dfs", num=3, n=5)).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_predictions_are_scored_by_the_evaluator(alg):
    model = _model(alg, "mpnn", hidden=8)
    batch = _batch(alg, num=4, n=5)
    pred = model.predict(batch)
    scores = Evaluator(alg).eval({"y_true": batch.outputs, "y_pred": pred})
    assert set(scores) == {*pred, "score"} and all(0.0 <= v <= 1.0 for v in scores.values())
    for name, (stage, loc, typ) in SPECS[alg].items():
        if stage == "output" and typ == "pointer":
            assert pred[name].dtype == torch.int64 and pred[name].shape == batch.outputs[name].shape
            assert 0 <= pred[name].min() and pred[name].max() < batch.num_nodes
    hints = model.predict_hints(batch)
    truth = {k: v.transpose(0, 1) for k, v in batch.hints.items()}
    hint_scores = Evaluator(alg).eval_hints({"y_true": truth, "y_pred": hints, "lengths": batch.lengths})
    assert set(truth) <= set(hint_scores)


def test_predict_is_the_argmax_of_the_scores():
    model = _model("bfs", "mpnn")
    batch = _batch("bfs")
    out, _ = model(batch, repred=True)
    assert torch.equal(model.predict(batch)["pi"], out["pi"].argmax(-1))


def test_haiku_names_cover_every_parameter_with_clrs_names():
    model = _model("bfs", "mpnn", hidden=16)
    names = model.haiku_names()
    covered = {f"{module}.{p}" for module in names for p in ("weight", "bias")}
    assert covered == set(dict(model.named_parameters()))
    # dm-clrs 2.0.3's BaselineModel on BFS (hidden 16), encoders and decoders, as haiku names them
    clrs = {f"net/~_construct_encoders_decoders/algo_0_{m}" for m in (
        "A_enc_linear", "adj_enc_linear", "pi_dec_linear", "pi_dec_linear_1", "pi_dec_linear_2", "pi_dec_linear_3",
        "pi_h_dec_linear", "pi_h_dec_linear_1", "pi_h_dec_linear_2", "pi_h_dec_linear_3", "pi_h_enc_linear",
        "pos_enc_linear", "reach_h_dec_linear", "reach_h_enc_linear", "s_enc_linear")}
    assert {v for v in names.values() if "_construct_encoders_decoders" in v} == clrs
    assert names["decoders.pi.2"].endswith("algo_0_pi_dec_linear_2")
    assert model.decoders["pi"][2].in_features == 16  # mpnn returns no edge features: e is [B, N, N, H]
    assert _model("bfs", "triplet_gmpnn", hidden=16).decoders["pi"][2].in_features == 32


def test_bad_arguments_name_the_argument():
    for kwargs, arg in (({"processor": "gcn"}, "processor"), ({"hidden": 0}, "hidden"),
                        ({"hint_mode": "all"}, "hint_mode"), ({"hint_repred_mode": "x"}, "hint_repred_mode"),
                        ({"encoder_init": "glorot"}, "encoder_init"), ({"dropout": 1.0}, "dropout"),
                        ({"nb_msg_passing_steps": 0}, "nb_msg_passing_steps"),
                        ({"hint_teacher_forcing": 2.0}, "hint_teacher_forcing")):
        with pytest.raises(ValueError, match=arg):
            EncodeProcessDecode("bfs", **kwargs)
    with pytest.raises(ValueError, match="unknown algorithm"):
        EncodeProcessDecode("quicksort")
    batch = _batch("bfs")
    bad = TorchBatch(batch.inputs, batch.hints, batch.lengths + batch.num_steps, batch.outputs)
    with pytest.raises(ValueError, match="lengths"):
        _model("bfs", "mpnn")(bad, repred=True)
    dfs = _batch("dfs")  # another algorithm's batch: its fields are named
    with pytest.raises(ValueError, match="lack s .*fields of bfs"):
        _model("bfs", "mpnn")(dfs, repred=True)
    with pytest.raises(ValueError, match="outputs lack pi"):
        _model("bfs", "mpnn").loss(TorchBatch(batch.inputs, batch.hints, batch.lengths, {}))


def test_double_backward_agrees_with_forward_over_reverse():
    # Hessian-vector products of the training loss both ways (gnnbench.hessian uses either)
    batch = to_torch(sample("bfs", 3, n=5, seed=0).clrs_batch(), dtype=torch.float64)
    model = _model("bfs", "triplet_gmpnn", hidden=4).double()
    names, params = zip(*[(k, p.detach()) for k, p in model.named_parameters()])
    gen = torch.Generator().manual_seed(1)
    v = tuple(torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params)

    def loss(*ps):
        out, hints = torch.func.functional_call(model, dict(zip(names, ps)), (batch,), {"repred": False})
        return clrs_loss("bfs", batch, out, hints)

    forward_over_reverse = torch.func.jvp(torch.func.grad(loss, argnums=tuple(range(len(params)))), params, v)[1]
    leaves = [p.clone().requires_grad_(True) for p in params]
    grads = torch.autograd.grad(loss(*leaves), leaves, create_graph=True)
    double_backward = torch.autograd.grad(sum((g * u).sum() for g, u in zip(grads, v)), leaves)
    for a, b in zip(forward_over_reverse, double_backward):
        torch.testing.assert_close(a, b)


def test_same_generator_seed_gives_the_same_model():
    a, b = _model("bfs", "triplet_gmpnn", seed=4), _model("bfs", "triplet_gmpnn", seed=4)
    c = _model("bfs", "triplet_gmpnn", seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


# ---- batches ------------------------------------------------------------------------------------

def test_to_torch_copies_clrs_batch_arrays_into_one_dtype():
    clrs = sample("floyd_warshall", 3, n=4, seed=0).clrs_batch()
    batch = to_torch(clrs, dtype=torch.float64)
    assert batch.hints["Pi_h"].shape == clrs.hints["Pi_h"].shape and batch.hints["Pi_h"].dtype == torch.float64
    assert batch.lengths.tolist() == clrs.lengths.tolist()
    assert torch.equal(batch.outputs["Pi"], torch.tensor(clrs.outputs["Pi"], dtype=torch.float64))
    assert batch.num_graphs == 3 and batch.num_nodes == 4 and batch.num_steps == clrs.hints["Pi_h"].shape[0]
    assert batch.inputs["A"].data_ptr() != clrs.inputs["A"].ctypes.data  # a copy
    with pytest.raises(ValueError, match="ClrsBatch"):
        to_torch({"inputs": {}})
    with pytest.raises(ValueError, match="floating"):
        to_torch(clrs, dtype=torch.int64)


def test_random_pos_is_sorted_uniform_per_graph_and_segment():
    gen = torch.Generator().manual_seed(0)
    pos = torch.arange(6.0).div(6).expand(3, 6)
    out = random_pos(pos, gen)
    assert out.shape == pos.shape and ((out >= 0) & (out < 1)).all()
    assert (out[:, 1:] >= out[:, :-1]).all()  # sorted in each graph
    assert not torch.equal(out[0], out[1])
    again = random_pos(pos, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    # CLRS: the same uniforms, sorted within each segment that starts where pos is 0
    uniform = torch.rand(3, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64).float()
    split = torch.tensor([[0.0, 0.25, 0.5, 0.0, 0.5, 0.75]])
    out = random_pos(split, torch.Generator().manual_seed(0))
    expected = torch.cat([uniform[0, :3].sort().values, uniform[0, 3:].sort().values])
    assert torch.equal(out[0], expected)


def test_randomize_pos_replaces_only_pos():
    batch = _batch("bfs")
    new = randomize_pos(batch, torch.Generator().manual_seed(1))
    assert not torch.equal(new.inputs["pos"], batch.inputs["pos"])
    assert all(torch.equal(new.inputs[k], batch.inputs[k]) for k in batch.inputs if k != "pos")
    assert new.hints is batch.hints and new.outputs is batch.outputs
