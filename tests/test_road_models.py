"""The road baselines' layers: each convolution against hand-computed values or a per-edge reference written from
ML4RoadSafety's formulas (messages over explicit self-loops, no sparse algebra), the encoder stack, the link
predictor's input layout, the sparse product's gradients, and the neighbour sampler."""

from __future__ import annotations

import math

import pytest
import torch

from gnnbench.models.road import (GATConv, GCNConv, GINConv, LinkPredictor, NodeEncoder, RoadGraph, RoadModel,
                                  SAGEConv)
from gnnbench.models.road.graph import Operator
from gnnbench.models.road.sampling import NeighborSubgraphs, TorchNeighborSampler

torch.set_num_threads(1)

# 0 -> 1 (e = 1), 2 -> 1 (e = 2), 1 -> 0 (e = 3), 0 -> 2 (e = 4); x = [1, 2, 3]
EDGES = torch.tensor([[0, 2, 1, 0], [1, 1, 0, 2]])
EDGE_ATTR = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
X = torch.tensor([[1.0], [2.0], [3.0]])


def _set(linear: torch.nn.Linear, weight, bias) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        linear.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def test_sage_layer_hand_computed():
    conv = SAGEConv(1, 1, 2)
    _set(conv.linear_node, [[1.0], [2.0]], [0.0, 1.0])
    _set(conv.linear_edge, [[1.0], [0.0]], [0.5, 0.0])
    out = conv(X, RoadGraph(EDGES, 3, EDGE_ATTR))
    # node 0: from 1 (e=3): [2, 5] + [3.5, 0]; loop: [1, 3] + [0.5, 0]; mean [3.5, 4]
    # node 1: from 0 (e=1): [2.5, 3]; from 2 (e=2): [5.5, 7]; loop: [2.5, 5]; mean [3.5, 5]
    # node 2: from 0 (e=4): [1, 3] + [4.5, 0] = [5.5, 3]; loop: [3, 7] + [0.5, 0]; mean [4.5, 5]
    expected = torch.tensor([[3.5, 4.0], [3.5, 5.0], [4.5, 5.0]])
    expected = expected / expected.norm(dim=1, keepdim=True)
    torch.testing.assert_close(out, expected)


def test_gcn_layer_hand_computed():
    conv = GCNConv(1, 1, 1)
    _set(conv.linear_node, [[2.0]], [1.0])
    _set(conv.linear_edge, [[1.0]], [0.5])
    out = conv(X, RoadGraph(EDGES, 3, EDGE_ATTR))
    # degrees count edges leaving a node plus its loop: d = [3, 2, 2]; message = 2 x_j + 1 + e + 0.5
    expected = torch.tensor([
        [8.5 / math.sqrt(2 * 3) + 3.5 / 3],                       # from 1 (e=3); loop
        [4.5 / math.sqrt(3 * 2) + 9.5 / math.sqrt(2 * 2) + 5.5 / 2],  # from 0 (e=1), from 2 (e=2); loop
        [7.5 / math.sqrt(3 * 2) + 7.5 / 2],                       # from 0 (e=4); loop
    ])
    torch.testing.assert_close(out, expected)


# --- per-edge references of ML4RoadSafety's layers.py -----------------------------------------------------------

def _loops(edge_index, edge_attr, n):
    """Edges plus one self-loop per node with zero edge features (upstream's add_self_loops)."""
    loops = torch.arange(n)
    return (torch.cat([edge_index, torch.stack([loops, loops])], 1),
            torch.cat([edge_attr, torch.zeros(n, edge_attr.shape[1])]))


def _reference_gin(conv, x, edge_index, edge_attr):
    n = x.shape[0]
    index, attr = _loops(edge_index, edge_attr, n)
    h = conv.linear_node(x) if conv.linear_node is not None else x
    out = torch.zeros(n, conv.mlp[0].in_features)
    for k in range(index.shape[1]):
        j, i = index[:, k].tolist()
        out[i] += h[j] + conv.linear_edge(attr[k])
    return conv.mlp(out)


def _reference_gat(conv, x, edge_index, edge_attr):
    n, heads, c = x.shape[0], conv.heads, conv.out_channels
    index, attr = _loops(edge_index, edge_attr, n)
    h = conv.weight_linear(x).view(n, heads, c)
    messages, scores = [], []
    for k in range(index.shape[1]):
        j, i = index[:, k].tolist()
        x_j = h[j] + conv.linear_edge(attr[k]).view(heads, c)
        score = (torch.cat([h[i], x_j], dim=-1) * conv.att[0]).sum(-1)
        messages.append(x_j)
        scores.append(torch.nn.functional.leaky_relu(score, 0.2))
    scores = torch.stack(scores)
    out = torch.zeros(n, heads, c)
    for k in range(index.shape[1]):
        j, i = index[:, k].tolist()
        group = index[0] == j  # upstream's softmax groups by edge_index[0], the source
        alpha = torch.exp(scores[k]) / torch.exp(scores[group]).sum(0)
        out[i] += messages[k] * alpha.unsqueeze(-1)
    return out.mean(1) + conv.bias


def _random_graph(seed, n=7, e=16, node_features=3, edge_features=2):
    generator = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n, (2, e), generator=generator)
    edge_index[:, 0] = torch.tensor([3, 3])  # an existing self-loop and ...
    edge_index[:, 1] = torch.tensor([1, 4])
    edge_index[:, 2] = torch.tensor([1, 4])  # ... a parallel edge: summed like any other message
    return (torch.randn(n, node_features, generator=generator), edge_index,
            torch.randn(e, edge_features, generator=generator))


@pytest.mark.parametrize("width", [3, 4])  # 4: GIN's input already has the output width (no node layer)
def test_gin_layer_against_per_edge_reference(width):
    torch.manual_seed(0)
    x, edge_index, edge_attr = _random_graph(1, node_features=width)
    conv = GINConv(width, 2, 4)
    assert (conv.linear_node is None) == (width == 4)
    torch.testing.assert_close(conv(x, RoadGraph(edge_index, 7, edge_attr)),
                               _reference_gin(conv, x, edge_index, edge_attr), rtol=1e-5, atol=1e-5)


def test_gat_layer_against_per_edge_reference():
    torch.manual_seed(0)
    x, edge_index, edge_attr = _random_graph(2)
    conv = GATConv(3, 2, 4)
    with torch.no_grad():
        conv.bias.uniform_(-1, 1)
    torch.testing.assert_close(conv(x, RoadGraph(edge_index, 7, edge_attr)),
                               _reference_gat(conv, x, edge_index, edge_attr), rtol=1e-5, atol=1e-5)


def test_sage_and_gcn_against_dense_matrices():
    """A second computation: dense adjacency with loops, the layers' weights applied per message."""
    torch.manual_seed(0)
    x, edge_index, edge_attr = _random_graph(3)
    n = x.shape[0]
    graph = RoadGraph(edge_index, n, edge_attr)
    index, attr = _loops(edge_index, edge_attr, n)
    sage, gcn = SAGEConv(3, 2, 5), GCNConv(3, 2, 5)
    adjacency = torch.zeros(n, index.shape[1])  # node x message incidence
    adjacency[index[1], torch.arange(index.shape[1])] = 1.0
    messages = sage.linear_node(x)[index[0]] + sage.linear_edge(attr)
    mean = adjacency @ messages / adjacency.sum(1, keepdim=True)
    torch.testing.assert_close(sage(x, graph), mean / mean.norm(dim=1, keepdim=True), rtol=1e-5, atol=1e-6)
    degree = torch.bincount(index[0], minlength=n).float()
    weight = degree[index[0]].rsqrt() * degree[index[1]].rsqrt()
    messages = (gcn.linear_node(x)[index[0]] + gcn.linear_edge(attr)) * weight.unsqueeze(1)
    torch.testing.assert_close(gcn(x, graph), adjacency @ messages, rtol=1e-5, atol=1e-5)


def test_encoder_stack_is_conv_norm_relu_then_conv_norm():
    torch.manual_seed(0)
    x, edge_index, edge_attr = _random_graph(4)
    graph = RoadGraph(edge_index, 7, edge_attr)
    encoder = NodeEncoder("sage", 3, 2, hidden_channels=6, num_layers=2).eval()
    with torch.no_grad():
        for norm in encoder.norms:
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
    first, second = encoder.convs
    norm1, norm2 = encoder.norms
    manual = norm2(second(torch.relu(norm1(first(x, graph))), graph))
    torch.testing.assert_close(encoder(x, graph), manual)
    assert NodeEncoder("mlp", 3, 2).out_channels == 3
    assert torch.equal(NodeEncoder("mlp", 3, 2)(x, graph), x)


def test_link_predictor_input_layout():
    """With one layer the predictor is a linear map of [h_u, h_v, e]: a one-hot weight reads one position."""
    predictor = LinkPredictor(node_channels=2, edge_channels=3, num_layers=1)
    h_u, h_v = torch.tensor([[10.0, 11.0]]), torch.tensor([[20.0, 21.0]])
    edge = torch.tensor([[30.0, 31.0, 32.0]])
    expected = [10.0, 11.0, 20.0, 21.0, 30.0, 31.0, 32.0]
    for position, value in enumerate(expected):
        weight = [[1.0 if i == position else 0.0 for i in range(7)]]
        _set(predictor.lins[0], weight, [0.0])
        assert predictor(h_u, h_v, edge).item() == value
    with pytest.raises(ValueError, match="edge features have 2 channels, the predictor expects 3"):
        predictor(h_u, h_v, edge[:, :2])


def test_score_edges_equals_forward():
    torch.manual_seed(0)
    predictor = LinkPredictor(4, 3, hidden_channels=8, num_layers=3)
    h = torch.randn(6, 4)
    edge_index = torch.randint(0, 6, (2, 11))
    edge_attr = torch.randn(11, 3)
    direct = predictor(h[edge_index[0]], h[edge_index[1]], edge_attr)
    torch.testing.assert_close(predictor.score_edges(h, edge_index, edge_attr, chunk_size=4), direct)


def test_sparse_product_first_and_second_derivatives():
    generator = torch.Generator().manual_seed(0)
    dense = torch.rand(5, 5, generator=generator, dtype=torch.float64) * (torch.rand(5, 5, generator=generator) < 0.5)
    operator = Operator(dense.to_sparse_csr(), dense.t().contiguous().to_sparse_csr())
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(operator(x), dense @ x)
    assert torch.autograd.gradcheck(lambda v: operator(v).sin(), (x,))
    assert torch.autograd.gradgradcheck(lambda v: operator(v).sin(), (x,))


def test_road_graph_rejects_bad_input():
    with pytest.raises(ValueError, match=r"edge_index must have shape \[2, E\]"):
        RoadGraph(torch.zeros(3, 4, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="edge_attr has 3 rows but edge_index has 4 edges"):
        RoadGraph(EDGES, 3, torch.zeros(3, 1))
    with pytest.raises(ValueError, match="refers to node 2 but num_nodes is 2"):
        RoadGraph(EDGES, 2)
    with pytest.raises(ValueError, match="x has 2 rows but the graph has 3 nodes"):
        NodeEncoder("gcn", 1, 1)(X[:2], RoadGraph(EDGES, 3, EDGE_ATTR))


def test_road_model_heads_score_with_their_own_predictor():
    torch.manual_seed(0)
    x, edge_index, edge_attr = _random_graph(5)
    model = RoadModel("gcn", 3, 2, hidden_channels=8, heads=2).eval()
    from gnnbench.models.road import EdgeBatch

    graph = RoadGraph(edge_index, 7, edge_attr)
    pairs = edge_index[:, :5]
    h = model.encode(x, graph)
    for head in (0, 1):
        batch = EdgeBatch(x, graph, pairs, edge_attr[:5], torch.zeros(5), head)
        torch.testing.assert_close(model(batch), model.predictors[head](h[pairs[0]], h[pairs[1]], edge_attr[:5]))


# --- neighbour sampling ------------------------------------------------------------------------------------------

def _in_edges(edge_index, node):
    return set(torch.nonzero(edge_index[1] == node).flatten().tolist())


def test_sampler_keeps_at_most_k_incoming_edges_per_node_and_maps_edges_back():
    generator = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, 40, (2, 300), generator=generator)
    edge_attr = torch.arange(300.0).unsqueeze(1)
    subgraphs = NeighborSubgraphs(edge_index, 40, edge_attr, [3, 2], torch.Generator().manual_seed(1))
    seeds = torch.tensor([5, 7, 2])
    sub = subgraphs.subgraph(torch.arange(40.0).unsqueeze(1), seeds)
    assert torch.equal(sub.n_id[:3], seeds) and torch.equal(sub.x[:, 0], sub.n_id.float())
    assert torch.equal(edge_index[0, sub.e_id], sub.n_id[sub.edge_index[0]])  # every sampled edge is real
    assert torch.equal(edge_index[1, sub.e_id], sub.n_id[sub.edge_index[1]])
    assert torch.equal(sub.edge_attr[:, 0].long(), sub.e_id)
    for seed in seeds.tolist():  # first hop: min(degree, 3) distinct incoming edges of each seed
        local = int(torch.nonzero(sub.n_id == seed)[0])
        kept = set(sub.e_id[sub.edge_index[1] == local].tolist())
        assert kept <= _in_edges(edge_index, seed) and len(kept) == min(3, len(_in_edges(edge_index, seed)))
    again = NeighborSubgraphs(edge_index, 40, edge_attr, [3, 2], torch.Generator().manual_seed(1))
    repeat = again.subgraph(torch.arange(40.0).unsqueeze(1), seeds)
    assert torch.equal(repeat.e_id, sub.e_id) and torch.equal(repeat.n_id, sub.n_id)


def test_full_neighbourhood_sampling_gives_the_exact_two_hop_subgraph():
    generator = torch.Generator().manual_seed(2)
    edge_index = torch.randint(0, 30, (2, 90), generator=generator)
    sampler = TorchNeighborSampler(__import__("torch_geometric").data.Data(edge_index=edge_index, num_nodes=30),
                                   [-1, -1])
    out = sampler._sample(torch.tensor([4]))
    hop1 = _in_edges(edge_index, 4)
    sources = {int(edge_index[0, e]) for e in hop1}
    new = sorted(sources - {4})
    hop2 = set().union(*(_in_edges(edge_index, node) for node in new)) if new else set()
    edges = set(sampler.perm[out.edge].tolist()) if sampler.perm is not None else set(out.edge.tolist())
    assert edges == hop1 | hop2


def test_sage_on_full_neighbourhoods_equals_the_full_graph():
    """Mean aggregation only reads incoming edges: over complete 2-hop subgraphs (eval mode) the seeds'
    representations are the full graph's."""
    torch.manual_seed(0)
    x, edge_index, edge_attr = _random_graph(6, n=25, e=70)
    encoder = NodeEncoder("sage", 3, 2, hidden_channels=8).eval()
    full = encoder(x, RoadGraph(edge_index, 25, edge_attr))
    subgraphs = NeighborSubgraphs(edge_index, 25, edge_attr, [-1, -1])
    seeds = torch.tensor([0, 9, 17])
    sub = subgraphs.subgraph(x, seeds)
    local = encoder(sub.x, RoadGraph(sub.edge_index, int(sub.num_nodes), sub.edge_attr))[:3]
    torch.testing.assert_close(local, full[seeds])


@pytest.mark.parametrize("encoder", ["gcn", "sage", "gin", "gat"])
def test_gradients_are_bitwise_reproducible_with_two_threads(encoder):
    """Gathers whose gradient accumulates with indexing's index_put are not reproducible on several CPU threads;
    the layers use index_select (an index_add back), so the same step gives the same bits."""
    from gnnbench.models.road import EdgeBatch, batch_loss

    x, edge_index, edge_attr = _random_graph(7, n=96, e=420, node_features=10, edge_features=23)
    graph = RoadGraph(edge_index, 96, edge_attr)
    batch = EdgeBatch(x, graph, edge_index[:, :300], edge_attr[:300], (torch.arange(300) % 2).float())
    torch.manual_seed(0)
    model = RoadModel(encoder, 10, 23, hidden_channels=256)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(3):
            model.zero_grad()
            batch_loss(model, "accident_occurrence", batch).backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(grads[0], other) for other in grads[1:])
