"""Graph-diffusion spectra: P against PyG's layers, sparse sigma_max against a dense SVD, known cases, errors."""

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.data import Data
from torch_geometric.nn import GCNConv, GINConv, MessagePassing, SimpleConv

from gnnbench.hessian.diffusion import (
    DENSE_LIMIT,
    depth_factors,
    diffusion_matrix,
    diffusion_spectrum,
    largest_singular_value,
)

RULES = ("gcn", "mean", "sum")


def random_graph(n: int, m: int, seed: int, *, undirected: bool = False, duplicates: int = 0,
                 self_loops: int = 0, isolated: int = 0) -> np.ndarray:
    """Random edges among the first ``n - isolated`` nodes, plus repeated edges and self-loops."""
    rng = np.random.default_rng(seed)
    active = n - isolated
    edges = rng.integers(0, active, size=(2, m))
    edges = edges[:, edges[0] != edges[1]]
    if duplicates:
        edges = np.concatenate([edges, edges[:, rng.integers(0, edges.shape[1], duplicates)]], axis=1)
    if self_loops:
        loops = rng.integers(0, active, self_loops)
        edges = np.concatenate([edges, np.stack([loops, loops]), np.stack([loops[:2], loops[:2]])], axis=1)
    if undirected:
        edges = np.concatenate([edges, edges[::-1]], axis=1)
    return edges[:, rng.permutation(edges.shape[1])]


GRAPHS = {
    "directed": dict(n=40, m=120, seed=1),
    "undirected": dict(n=40, m=80, seed=2, undirected=True),
    "duplicates+loops": dict(n=35, m=90, seed=3, duplicates=30, self_loops=6),
    "isolated": dict(n=50, m=70, seed=4, isolated=12, duplicates=5),
    "undirected+duplicates+isolated": dict(n=45, m=60, seed=5, undirected=True, duplicates=10, isolated=7),
}


class MeanAggregation(MessagePassing):
    """The neighbour term of SAGEConv: the mean of the in-neighbours' features."""

    def __init__(self) -> None:
        super().__init__(aggr="mean")

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.propagate(edge_index, x=x)

    def message(self, x_j: torch.Tensor) -> torch.Tensor:
        return x_j


def identity_gcn(channels: int, **kwargs) -> GCNConv:
    conv = GCNConv(channels, channels, bias=False, normalize=True, **kwargs).double()
    with torch.no_grad():
        conv.lin.weight.copy_(torch.eye(channels, dtype=torch.float64))
    return conv


def propagate(P: sp.csr_matrix, x: torch.Tensor) -> np.ndarray:
    return P @ x.numpy()


# ----------------------------------------------------------------------------- P against PyG's layers


@pytest.mark.parametrize("name", list(GRAPHS))
def test_gcn_matrix_equals_gcnconv(name):
    edges = random_graph(**GRAPHS[name])
    n = GRAPHS[name]["n"]
    x = torch.randn(n, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    edge_index = torch.from_numpy(edges)
    for loops in (True, False):
        expected = identity_gcn(5, add_self_loops=loops)(x, edge_index).detach().numpy()
        P = diffusion_matrix(edge_index, n, "gcn", add_self_loops=loops)
        np.testing.assert_allclose(propagate(P, x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(GRAPHS))
def test_mean_matrix_equals_mean_aggregation(name):
    edges = random_graph(**GRAPHS[name])
    n = GRAPHS[name]["n"]
    x = torch.randn(n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    edge_index = torch.from_numpy(edges)
    P = diffusion_matrix(edges, n, "mean")
    for layer in (MeanAggregation(), SimpleConv(aggr="mean")):
        np.testing.assert_allclose(propagate(P, x), layer(x, edge_index).numpy(), rtol=1e-12, atol=1e-12)
    with_loops = SimpleConv(aggr="mean", combine_root="self_loop")(x, edge_index).numpy()
    np.testing.assert_allclose(propagate(diffusion_matrix(edges, n, "mean", add_self_loops=True), x),
                               with_loops, rtol=1e-12, atol=1e-12)
    if name == "isolated":  # nodes without in-neighbours: zero rows
        without = np.flatnonzero(np.bincount(edges[1], minlength=n) == 0)
        assert len(without) >= 12 and P[without].nnz == 0


@pytest.mark.parametrize("name", list(GRAPHS))
def test_sum_matrix_equals_gin(name):
    edges = random_graph(**GRAPHS[name])
    n = GRAPHS[name]["n"]
    x = torch.randn(n, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    edge_index = torch.from_numpy(edges)
    gin = GINConv(torch.nn.Identity(), eps=0.0)
    P = diffusion_matrix(edge_index, n, "sum")
    np.testing.assert_allclose(propagate(P, x), gin(x, edge_index).detach().numpy(), rtol=1e-12, atol=1e-12)
    plain = SimpleConv(aggr="sum")(x, edge_index).numpy()
    np.testing.assert_allclose(propagate(diffusion_matrix(edges, n, "sum", add_self_loops=False), x), plain,
                               rtol=1e-12, atol=1e-12)


def test_orientation_and_duplicates():
    # 0 -> 1 twice, 2 -> 1 once: node 1 receives; P[1, 0] is the weight of the message 0 -> 1.
    edges = np.array([[0, 0, 2], [1, 1, 1]])
    A = diffusion_matrix(edges, 3, "sum", add_self_loops=False).toarray()
    np.testing.assert_array_equal(A, [[0, 0, 0], [2, 0, 1], [0, 0, 0]])
    np.testing.assert_allclose(diffusion_matrix(edges, 3, "mean").toarray(), [[0, 0, 0], [2 / 3, 0, 1 / 3], [0, 0, 0]])
    # GCN: the self-loop on node 1 (given twice) is replaced by one of weight 1; in-degree of 1 is 2 + 1 + 1.
    looped = np.array([[0, 0, 2, 1, 1], [1, 1, 1, 1, 1]])
    P = diffusion_matrix(looped, 3, "gcn").toarray()
    degree = np.array([1.0, 4.0, 1.0])
    np.testing.assert_allclose(P[1], [2 / math.sqrt(4 * 1), 1 / 4, 1 / math.sqrt(4 * 1)])
    np.testing.assert_allclose(np.diag(P), 1 / degree)


# ----------------------------------------------------------------------------- sigma_max against dense SVD


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("name", list(GRAPHS))
def test_sparse_sigma_max_matches_dense_svd(name, rule):
    edges = random_graph(**GRAPHS[name])
    P = diffusion_matrix(edges, GRAPHS[name]["n"], rule)
    dense = np.linalg.svd(P.toarray(), compute_uv=False).max()
    symmetric = abs(P - P.T).max() == 0
    methods = ["normal", "svds", "power"] + (["eigsh"] if symmetric else [])
    for method in methods:
        tol = 1e-10 if method == "power" else 1e-6
        assert largest_singular_value(P, method=method, tol=tol) == pytest.approx(dense, rel=1e-6), method
    assert largest_singular_value(P) == pytest.approx(dense, rel=1e-12)  # auto: dense at this size
    assert largest_singular_value(P.toarray(), method="normal") == pytest.approx(dense, rel=1e-6)
    assert largest_singular_value(torch.from_numpy(P.toarray()), method="normal") == pytest.approx(dense, rel=1e-6)


def test_auto_is_sparse_above_the_dense_limit():
    n = 3 * DENSE_LIMIT
    undirected = random_graph(n, 4 * n, seed=7, undirected=True, isolated=20)
    directed = random_graph(n, 4 * n, seed=8, duplicates=50)
    for edges, method in ((undirected, "eigsh"), (directed, "normal")):
        for rule in RULES:
            report = diffusion_spectrum(edges, n, rule)
            P = diffusion_matrix(edges, n, rule)
            expected_method = "normal" if rule == "mean" and method == "eigsh" else method  # D^-1 A: not symmetric
            assert report.method == expected_method
            dense = np.linalg.svd(P.toarray(), compute_uv=False).max()
            assert report.sigma_max == pytest.approx(dense, rel=1e-6)


def test_eigsh_needs_symmetric():
    P = diffusion_matrix(random_graph(30, 80, seed=9), 30, "sum")
    with pytest.raises(ValueError, match="symmetric"):
        largest_singular_value(P, method="eigsh")


# ----------------------------------------------------------------------------- known cases


def complete(n: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(n), np.arange(n))
    keep = i != j
    return np.stack([i[keep], j[keep]])


def cycle(n: int, hops=(1,)) -> np.ndarray:
    nodes = np.arange(n)
    pairs = [np.stack([nodes, (nodes + h) % n]) for h in hops]
    edges = np.concatenate(pairs, axis=1)
    return np.concatenate([edges, edges[::-1]], axis=1)


def star(leaves: int) -> np.ndarray:
    out = np.stack([np.zeros(leaves, dtype=np.int64), np.arange(1, leaves + 1)])
    return np.concatenate([out, out[::-1]], axis=1)


@pytest.mark.parametrize("method", ["auto", "eigsh", "normal", "power"])
def test_known_cases(method):
    tol = 1e-10 if method == "power" else 1e-6
    cases = {
        "complete": (complete(12), 12, {"gcn": 1.0, "mean": 1.0, "sum": 12.0}),
        "cycle": (cycle(500), 500, {"gcn": 1.0, "mean": 1.0, "sum": 3.0}),
        "4-regular circulant": (cycle(400, hops=(1, 2)), 400, {"gcn": 1.0, "mean": 1.0, "sum": 5.0}),
        "star": (star(30), 31, {"gcn": 1.0, "sum": 1.0 + math.sqrt(30)}),
    }
    for name, (edges, n, expected) in cases.items():
        for rule, value in expected.items():
            P = diffusion_matrix(edges, n, rule)
            if method == "eigsh" and abs(P - P.T).max() > 0:
                continue
            got = largest_singular_value(P, method=method, tol=tol)
            assert got == pytest.approx(value, rel=1e-6), (name, rule)


def test_gcn_sigma_is_one_on_large_undirected_graph_and_sum_is_degree_plus_one():
    n = 20_000
    edges = cycle(n, hops=(1, 7, 31))  # 6-regular
    gcn = diffusion_spectrum(edges, n, "gcn")
    assert gcn.method == "eigsh" and gcn.sigma_max == pytest.approx(1.0, rel=1e-6)
    assert gcn.max_degree == 7.0
    total = diffusion_spectrum(edges, n, "sum")
    assert total.sigma_max == pytest.approx(7.0, rel=1e-6) and total.max_degree == 7.0
    mean = diffusion_spectrum(edges, n, "mean")
    assert mean.method == "eigsh" and mean.sigma_max == pytest.approx(1.0, rel=1e-6) and mean.max_degree == 6.0
    # Disconnected, with isolated nodes: still 1 for GCN (every component, self-loops added).
    sparse_edges = random_graph(5000, 3000, seed=11, undirected=True, isolated=500)
    assert diffusion_spectrum(sparse_edges, 5000, "gcn").sigma_max == pytest.approx(1.0, rel=1e-6)


def test_directed_out_star_exceeds_the_degree():
    leaves = 40
    edges = np.stack([np.zeros(leaves, dtype=np.int64), np.arange(1, leaves + 1)])  # centre -> leaves only
    for rule, lower in (("gcn", math.sqrt(1 + leaves / 2)), ("sum", math.sqrt(leaves + 1))):
        report = diffusion_spectrum(edges, leaves + 1, rule)
        assert report.max_degree == 2.0
        assert report.sigma_max >= lower - 1e-9 and report.sigma_max > report.max_degree


def test_empty_and_edgeless_graphs():
    none = np.zeros((2, 0), dtype=np.int64)
    for rule in RULES:
        empty = diffusion_spectrum(none, 0, rule)
        assert empty.sigma_max == 0.0 and empty.max_degree == 0.0 and empty.num_nodes == 0
    assert diffusion_spectrum(none, 5, "gcn").sigma_max == pytest.approx(1.0)  # P = I
    assert diffusion_spectrum(none, 5, "sum").sigma_max == pytest.approx(1.0)
    assert diffusion_spectrum(none, 5, "mean").sigma_max == 0.0  # no neighbours: P = 0
    assert diffusion_spectrum(none, 5, "mean").max_degree == 0.0


def test_max_degree_definitions():
    # Node 1 receives 0 -> 1 twice and 2 -> 1 once, plus a self-loop in the input.
    edges = np.array([[0, 0, 2, 1], [1, 1, 1, 1]])
    assert diffusion_spectrum(edges, 3, "gcn").max_degree == 4.0  # 3 messages + the replacing self-loop
    assert diffusion_spectrum(edges, 3, "mean").max_degree == 4.0  # 4 messages (the input self-loop counts)
    assert diffusion_spectrum(edges, 3, "sum").max_degree == 5.0  # 4 messages + the added self-loop
    assert diffusion_spectrum(edges, 3, "sum", add_self_loops=False).max_degree == 4.0


# ----------------------------------------------------------------------------- factors and report


def test_factors_and_report():
    edges = cycle(300)
    report = diffusion_spectrum(edges, 300, "sum")
    assert report.rule == "sum" and report.num_nodes == 300 and report.num_edges == 600
    assert sorted(report.factors) == [1, 2, 3, 4, 5, 6]
    for depth, values in report.factors.items():
        assert values["sigma_max^(l-1)"] == pytest.approx(report.sigma_max ** (depth - 1))
        assert values["max_degree^(l-1)"] == pytest.approx(3.0 ** (depth - 1))
        assert values["ratio"] == pytest.approx(values["sigma_max^(l-1)"] / values["max_degree^(l-1)"])
    assert report.factors[1] == {"sigma_max^(l-1)": 1.0, "max_degree^(l-1)": 1.0, "ratio": 1.0}
    payload = json.loads(json.dumps(report.to_dict()))
    assert sorted(payload["factors"]) == ["1", "2", "3", "4", "5", "6"]
    gcn = diffusion_spectrum(edges, 300, "gcn", depths=[2, 4])
    assert sorted(gcn.factors) == [2, 4]
    assert gcn.factors[4]["ratio"] == pytest.approx(1 / 27, rel=1e-6)
    assert depth_factors(0.0, 0.0, [1, 2])[2]["ratio"] == 1.0
    with pytest.raises(ValueError, match="depths"):
        depth_factors(1.0, 2.0, [0])


def test_graph_objects_and_torch_input():
    edges = random_graph(30, 60, seed=12, isolated=3)
    data = Data(edge_index=torch.from_numpy(edges), num_nodes=30)
    expected = diffusion_matrix(edges, 30, "gcn")
    assert (diffusion_matrix(data, rule="gcn") != expected).nnz == 0
    assert diffusion_spectrum(data, rule="mean").num_nodes == 30
    assert diffusion_matrix(torch.from_numpy(edges).int(), 30, "sum").shape == (30, 30)
    with pytest.raises(ValueError, match="disagrees"):
        diffusion_matrix(data, 31, "gcn")


# ----------------------------------------------------------------------------- bad input


def test_bad_input():
    edges = np.array([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="rule must be one of"):
        diffusion_matrix(edges, 3, "max")
    with pytest.raises(ValueError, match="rule must be one of"):
        diffusion_spectrum(edges, 3, "attention")
    with pytest.raises(ValueError, match="outside"):
        diffusion_matrix(edges, 2, "gcn")
    with pytest.raises(ValueError, match="outside"):
        diffusion_matrix(np.array([[0, -1], [1, 2]]), 3, "gcn")
    with pytest.raises(ValueError, match="shape"):
        diffusion_matrix(np.zeros((3, 4), dtype=np.int64), 5, "gcn")
    with pytest.raises(ValueError, match="shape"):
        diffusion_matrix(np.array([0, 1, 2]), 5, "gcn")
    with pytest.raises(TypeError, match="integers"):
        diffusion_matrix(edges.astype(float), 3, "gcn")
    with pytest.raises(ValueError, match="num_nodes"):
        diffusion_matrix(edges, -1, "gcn")
    with pytest.raises(ValueError, match="method must be one of"):
        largest_singular_value(sp.identity(3), method="lobpcg")
    with pytest.raises(ValueError, match="2-D"):
        largest_singular_value(np.ones(4))
    with pytest.raises(ValueError, match="tol"):
        largest_singular_value(sp.identity(3), tol=0)
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1"):
        largest_singular_value(sp.identity(3), max_iter=0)
    with pytest.raises(ValueError, match="num_nodes must be an integer >= 0"):
        diffusion_matrix(edges, 2.5, "gcn")
    with pytest.raises(ValueError, match="depths must be an integer >= 1"):
        diffusion_spectrum(edges, 3, "gcn", depths=[1.5])
    with pytest.raises(ValueError, match="tol"):
        diffusion_spectrum(edges, 3, "gcn", tol=-1.0)
