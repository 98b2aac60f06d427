"""Outputs of all twelve algorithms checked against networkx on many random graphs.

Every algorithm runs on two families of graphs:

* CLRS-30's own random graphs from ``gnnbench.algo.sample`` with various sizes,
  edge probabilities, seeds and distribution options;
* graphs generated here with ``np.random.default_rng``: symmetric graphs for the
  undirected algorithms, DAGs for the DAG algorithms, general digraphs for DFS
  and SCC, with 0/1, float, integer (tied) and mixed-sign weights as they apply.

Each (algorithm, graph) pair is a separate test whose id names both, so a failure
points at the exact graph: ``sample-n<n>-seed<seed>-<options>-#<index>`` or
``rng-<kind>-n<n>-p<p>-seed<seed>`` (regenerate with ``own_graph``).

The checks verify what the output means rather than one particular tie-breaking:
BFS and DFS trees are valid trees of the right kind, topological orders respect
every edge, cut vertices / bridges / SCCs equal networkx's, spanning trees have
minimum weight, and predecessor pointers encode shortest paths.
"""

from __future__ import annotations

import functools

import networkx as nx
import numpy as np
import pytest

from gnnbench.algo import ALGORITHMS, SPECS, run_algorithm, sample

SOURCE_ALGORITHMS = frozenset({"bfs", "mst_prim", "dijkstra", "bellman_ford", "dag_shortest_paths"})
GRAPHS_PER_SAMPLE_BATCH = 15
OWN_GRAPHS_PER_ALGORITHM = 100

# --- graphs -----------------------------------------------------------------------

# (n, seed, sampler options) for every algorithm: CLRS-30's default and variations.
COMMON_BATCHES = (
    (16, 0, ()),
    (1, 1, ()),
    (2, 2, (("p", 0.9),)),
    (5, 3, (("p", (0.05, 0.5, 0.9)),)),
    (9, 4, (("p", 0.3),)),
    (23, 5, (("p", 0.1),)),
    (32, 6, (("p", (0.2, 0.6)),)),
    (40, 7, (("p", 0.05),)),
)
EXTRA_BATCHES = {
    "bfs": ((20, 8, (("directed", True), ("p", 0.15))),),
    "dfs": ((20, 8, (("generator", "community"), ("directed", True), ("k", 3), ("eps", 0.05))),),
    "topological_sort": ((30, 8, (("p", 0.8),)),),
    "articulation_points": ((30, 8, (("p", 0.07),)),),
    "bridges": ((30, 8, (("p", 0.07),)),),
    "strongly_connected_components": ((20, 8, (("generator", "er"), ("directed", True), ("p", 0.12))),
                                      (12, 9, (("k", 2), ("eps", 0.2)))),
    "mst_kruskal": ((20, 8, (("low", 0.5), ("high", 1.5), ("p", 0.4))),),
    "mst_prim": ((20, 8, (("low", 0.5), ("high", 1.5), ("p", 0.1))),),
    "dijkstra": ((15, 8, (("directed", True),)), (10, 9, (("low", 1.0), ("high", 2.0)))),
    "bellman_ford": ((15, 8, (("directed", True),)), (10, 9, (("low", 1.0), ("high", 2.0)))),
    "dag_shortest_paths": ((15, 8, (("low", -1.0), ("high", 1.0))),
                           (30, 9, (("low", -2.0), ("high", 0.5), ("p", 0.3)))),
    "floyd_warshall": ((15, 8, (("directed", True),)), (10, 9, (("low", 1.0), ("high", 2.0)))),
}

# Kinds of graphs generated here: "<shape>_<weights>".
OWN_KINDS = {
    "bfs": ("sym_01", "sym_w", "sym_mixed", "dir_01"),
    "dfs": ("dir_01", "dir_w", "dir_mixed", "dag_01", "sym_01"),
    "topological_sort": ("dag_01", "dag_w", "dag_mixed", "dag_int"),
    "articulation_points": ("sym_01", "sym_w", "sym_int"),
    "bridges": ("sym_01", "sym_w", "sym_int"),
    "strongly_connected_components": ("dir_01", "dir_w", "dir_mixed", "dag_01"),
    "mst_kruskal": ("sym_w", "sym_int", "sym_intf", "sym_01"),
    "mst_prim": ("sym_w", "sym_int", "sym_intf", "sym_01"),
    "dijkstra": ("sym_w", "sym_int", "sym_intf", "dir_w", "dir_int"),
    "bellman_ford": ("sym_w", "sym_int", "sym_intf", "dir_w", "dag_mixed"),
    "dag_shortest_paths": ("dag_w", "dag_int", "dag_mixed", "dag_01"),
    "floyd_warshall": ("sym_w", "sym_int", "sym_intf", "dir_w", "dag_mixed"),
}


def own_graph(kind: str, n: int, p: float, seed: int) -> tuple[np.ndarray, int]:
    """A random graph of ``kind`` (see ``OWN_KINDS``) and a random source node.

    ``sym`` graphs are symmetric (self-loops possible), ``dir`` graphs arbitrary
    digraphs (self-loops possible), ``dag`` graphs randomly relabelled upper
    triangles. Weights: ``01`` int64 ones, ``w`` floats in [0.05, 1), ``int``
    int64 in 1..3 (many ties), ``intf`` the same as floats, ``mixed`` floats of
    either sign with magnitude in [0.05, 1).
    """
    shape, weights = kind.split("_")
    rng = np.random.default_rng(seed)
    source = int(rng.integers(n))
    coin = rng.random((n, n)) < p
    if shape == "sym":
        coin = np.triu(coin)
        coin = coin | coin.T
    elif shape == "dag":
        perm = rng.permutation(n)
        coin = np.triu(coin, k=1)[np.ix_(perm, perm)]
    if weights == "01":
        W = np.ones((n, n), dtype=np.int64)
    elif weights == "w":
        W = rng.uniform(0.05, 1.0, (n, n))
    elif weights in ("int", "intf"):
        W = rng.integers(1, 4, (n, n))
        W = W.astype(np.float64) if weights == "intf" else W.astype(np.int64)
    elif weights == "mixed":
        W = rng.uniform(0.05, 1.0, (n, n)) * rng.choice([-1.0, 1.0], (n, n))
    else:
        raise ValueError(kind)
    if shape == "sym":
        W = np.triu(W) + np.triu(W, k=1).T
    A = np.where(coin, W, 0).astype(W.dtype)
    return A, source


@functools.lru_cache(maxsize=None)
def sampled(name: str, n: int, seed: int, options: tuple) -> object:
    return sample(name, GRAPHS_PER_SAMPLE_BATCH, n=n, seed=seed, **dict(options))


def _sample_options(name: str, n: int, options: tuple) -> tuple:
    opts = dict(options)
    # CLRS-30 samples SCC graphs from k = 4 communities, which needs n >= 4 nodes.
    generator = opts.get("generator", "community" if name == "strongly_connected_components" else "er")
    if generator == "community" and n < opts.get("k", 4):
        opts["k"] = n
    return tuple(sorted(opts.items()))


def _options_id(options: tuple) -> str:
    return ",".join(f"{k}={v}" for k, v in options) or "default"


def _cases() -> list:
    params = []
    master = np.random.default_rng(20240601)
    for name in ALGORITHMS:
        for n, seed, options in COMMON_BATCHES + EXTRA_BATCHES.get(name, ()):
            options = _sample_options(name, n, options)
            for index in range(GRAPHS_PER_SAMPLE_BATCH):
                case = ("sample", n, seed, options, index)
                params.append(pytest.param(
                    name, case, id=f"{name}/sample-n{n}-seed{seed}-{_options_id(options)}-#{index}"))
        kinds = OWN_KINDS[name]
        for j in range(OWN_GRAPHS_PER_ALGORITHM):
            kind = kinds[j % len(kinds)]
            n = int(master.integers(1, 41)) if j % 10 else int(master.integers(1, 5))  # some tiny graphs
            p = round(float(master.uniform(0.05, 0.9)), 3)
            seed = int(master.integers(2**31))
            params.append(pytest.param(name, ("rng", kind, n, p, seed),
                                       id=f"{name}/rng-{kind}-n{n}-p{p}-seed{seed}"))
    return params


CASES = _cases()


def graph_and_trace(name: str, case: tuple):
    """``(A, s, trace)`` of one case."""
    if case[0] == "sample":
        _, n, seed, options, index = case
        trace = sampled(name, n, seed, options)[index]
        A = np.asarray(trace.inputs["A"]).reshape(n, n)
        s = int(np.asarray(trace.inputs["s"]).reshape(n).argmax()) if name in SOURCE_ALGORITHMS else None
    else:
        _, kind, n, p, seed = case
        A, s = own_graph(kind, n, p, seed)
        if name not in SOURCE_ALGORITHMS:
            s = None
        trace = run_algorithm(name, A, s)
    return A, s, trace


def check_trace(name: str, A, s, trace) -> None:
    """Check ``trace`` of ``name`` on ``(A, s)`` against networkx (also used by test_validation)."""
    A = np.asarray(A)
    n = A.shape[0]
    outputs = {}
    for key, value in trace.outputs.items():
        location = SPECS[name][key][1]
        outputs[key] = np.asarray(value).reshape((n, n) if location == "edge" else (n,))
    last_hints = {key: np.asarray(value)[-1] for key, value in trace.hints.items()}
    CHECKS[name](A, s, outputs, last_hints)


# --- networkx views of a weight matrix -------------------------------------------

def digraph(A: np.ndarray, edges: np.ndarray) -> nx.DiGraph:
    """Directed graph on 0..n-1 with edge (i, j, weight=A[i, j]) wherever ``edges[i, j]``.

    Edges are added in row-major order, so networkx scans successors in index
    order, exactly as CLRS-30's loops do.
    """
    G = nx.DiGraph()
    G.add_nodes_from(range(A.shape[0]))
    for i, j in zip(*np.nonzero(edges)):
        G.add_edge(int(i), int(j), weight=float(A[i, j]))
    return G


def undirected(A: np.ndarray, edges: np.ndarray) -> nx.Graph:
    """Undirected simple graph (self-loops dropped) from the symmetric mask ``edges``."""
    G = nx.Graph()
    G.add_nodes_from(range(A.shape[0]))
    for i, j in zip(*np.nonzero(np.triu(edges, k=1))):
        G.add_edge(int(i), int(j), weight=float(A[i, j]))
    return G


def as_node(x) -> int:
    value = float(x)
    assert value == int(value), f"pointer value {value} is not a node index"
    return int(value)


def path_length_to(pi, A: np.ndarray, s: int, v: int) -> float:
    """Sum of weights walking ``pi`` from ``v`` back to ``s`` (asserting each step is an edge)."""
    n = A.shape[0]
    total, node = 0.0, v
    for _ in range(n):
        if node == s:
            return total
        parent = as_node(pi[node])
        assert parent != node, f"predecessor walk from {v} stops at {node} before reaching source {s}"
        assert A[parent, node] != 0, f"pointer {parent} -> {node} on the path to {v} is not an edge"
        total += float(A[parent, node])
        node = parent
    assert node == s, f"predecessor walk from {v} does not reach {s} within {n} steps (cycle)"
    return total


def reached_by_pointers(pi, s: int) -> set[int]:
    return {s} | {v for v in range(len(pi)) if as_node(pi[v]) != v}


def assert_forest(pi, A: np.ndarray, roots: set[int]) -> None:
    """Every node reaches a root along ``pi`` and every non-root pointer is an edge."""
    n = A.shape[0]
    for v in range(n):
        node = v
        for _ in range(n + 1):
            if as_node(pi[node]) == node:
                break
            assert A[as_node(pi[node]), node] != 0, f"pi[{node}] = {pi[node]} but there is no edge into {node}"
            node = as_node(pi[node])
        else:
            raise AssertionError(f"following pi from {v} never reaches a root (pointer cycle)")
        assert node in roots, f"node {v} hangs off {node}, which is not a root"


# --- checks, one per algorithm ---------------------------------------------------

def check_bfs(A, s, out, last):
    pi = out["pi"]
    n = A.shape[0]
    G = digraph(A, A > 0)
    levels = nx.single_source_shortest_path_length(G, s)
    reached = reached_by_pointers(pi, s)
    assert as_node(pi[s]) == s
    assert reached == set(levels), f"BFS reached {sorted(reached)}, networkx reaches {sorted(levels)}"
    for v in reached - {s}:
        u = as_node(pi[v])
        assert A[u, v] > 0, f"pi[{v}] = {u} but A[{u}, {v}] = {A[u, v]} is not a positive edge"
        assert levels[u] == levels[v] - 1, f"pi[{v}] = {u} at BFS level {levels[u]}, {v} at level {levels[v]}"
    assert np.array_equal(last["reach_h"], np.isin(np.arange(n), list(reached)).astype(float))


def dfs_intervals(last, n):
    d = np.rint(np.asarray(last["d"]) * 100).astype(int)
    f = np.rint(np.asarray(last["f"]) * 100).astype(int)
    assert np.allclose(last["d"], d / 100) and np.allclose(last["f"], f / 100), "times are not multiples of 0.01"
    times = np.concatenate([d, f])
    assert sorted(times) == list(range(1, 2 * n + 1)), f"d, f are not a permutation of 1..2n: d={d}, f={f}"
    return d, f


def check_dfs(A, s, out, last):
    pi = out["pi"]
    n = A.shape[0]
    assert np.array_equal(last["pi_h"], pi)
    roots = {v for v in range(n) if as_node(pi[v]) == v}
    assert_forest(pi, A, roots)
    d, f = dfs_intervals(last, n)
    assert np.all(d < f)
    # Ancestors along pi are exactly the nodes whose interval encloses v's (parenthesis theorem).
    for v in range(n):
        ancestors, node = set(), v
        while as_node(pi[node]) != node:
            node = as_node(pi[node])
            ancestors.add(node)
        for u in range(n):
            if u == v:
                continue
            nested = d[u] < d[v] < f[v] < f[u]
            disjoint = f[u] < d[v] or f[v] < d[u]
            inside = d[v] < d[u] < f[u] < f[v]
            assert nested or disjoint or inside, f"intervals of {u} and {v} overlap without nesting"
            assert nested == (u in ancestors), f"{u} encloses {v} but is not its DFS ancestor (or vice versa)"
    # Every edge u -> v is a back edge (v an ancestor of u, or a self-loop) or v finishes before u.
    for u, v in zip(*np.nonzero(A)):
        assert f[v] < f[u] or (d[v] <= d[u] and f[u] <= f[v]), f"edge {u}->{v} is a DFS cross edge into the future"
    # Roots visited in index order and successors in index order: the forest networkx builds.
    expected = np.arange(n)
    for u, v in nx.dfs_edges(digraph(A, A != 0)):
        expected[v] = u
    assert np.array_equal(pi, expected), f"DFS forest {pi} != networkx's {expected}"


def check_topological_sort(A, s, out, last):
    n = A.shape[0]
    topo, head = out["topo"], out["topo_head"]
    assert sorted(head.tolist()) == [0.0] * (n - 1) + [1.0], f"topo_head {head} is not one-hot"
    order = [int(np.argmax(head))]
    for _ in range(n):
        nxt = as_node(topo[order[-1]])
        if nxt == order[-1]:
            break
        order.append(nxt)
    assert sorted(order) == list(range(n)), f"topo chain from the head visits {order}, not every node once"
    position = {v: k for k, v in enumerate(order)}
    for u, v in zip(*np.nonzero(A)):
        assert position[u] < position[v], f"edge {u}->{v} points backwards in the order {order}"
    expected = list(reversed(list(nx.dfs_postorder_nodes(digraph(A, A != 0)))))
    assert order == expected, f"order {order} != reverse DFS finishing order {expected}"
    assert np.array_equal(last["topo_h"], topo)


def check_articulation_points(A, s, out, last):
    is_cut = out["is_cut"]
    assert set(np.unique(is_cut)) <= {0.0, 1.0}
    got = {int(v) for v in np.flatnonzero(is_cut == 1)}
    expected = set(nx.articulation_points(undirected(A, A != 0)))
    assert got == expected, f"cut vertices {sorted(got)} != networkx {sorted(expected)}"


def check_bridges(A, s, out, last):
    is_bridge = out["is_bridge"]
    n = A.shape[0]
    assert np.array_equal(is_bridge, is_bridge.T), "is_bridge is not symmetric"
    no_edge = (A + np.eye(n)) == 0
    assert np.array_equal(is_bridge == -1, no_edge), "is_bridge is -1 exactly where there is no edge"
    assert set(np.unique(is_bridge)) <= {-1.0, 0.0, 1.0}
    assert np.all(np.diag(is_bridge) == 0), "a self-loop / the diagonal is never a bridge"
    got = {frozenset((int(i), int(j))) for i, j in zip(*np.nonzero(is_bridge == 1))}
    expected = {frozenset(e) for e in nx.bridges(undirected(A, A != 0))}
    assert got == expected, f"bridges {sorted(map(sorted, got))} != networkx {sorted(map(sorted, expected))}"


def check_strongly_connected_components(A, s, out, last):
    scc_id = out["scc_id"]
    n = A.shape[0]
    groups: dict[int, set[int]] = {}
    for v in range(n):
        groups.setdefault(as_node(scc_id[v]), set()).add(v)
    for root, members in groups.items():
        assert root in members, f"scc_id points at {root}, outside its component {sorted(members)}"
    got = {frozenset(g) for g in groups.values()}
    expected = {frozenset(c) for c in nx.strongly_connected_components(digraph(A, A != 0))}
    assert got == expected, f"SCCs {sorted(map(sorted, got))} != networkx {sorted(map(sorted, expected))}"


def check_mst_kruskal(A, s, out, last):
    in_mst = out["in_mst"]
    n = A.shape[0]
    assert set(np.unique(in_mst)) <= {0.0, 1.0}
    assert np.array_equal(in_mst, in_mst.T), "in_mst is not symmetric"
    assert np.all(np.diag(in_mst) == 0), "a self-loop is in the tree"
    edges = np.triu(A > 0, k=1)
    chosen = np.triu(in_mst == 1, k=1)
    assert not np.any(chosen & ~edges), "in_mst holds a non-edge"
    G = undirected(A, edges | edges.T)
    T = undirected(A, chosen | chosen.T)
    assert nx.is_forest(T), "in_mst has a cycle"
    assert T.number_of_edges() == n - nx.number_connected_components(G), "in_mst does not span every component"
    weight = float(A[chosen].sum())
    expected = nx.minimum_spanning_tree(G).size(weight="weight")
    assert np.isclose(weight, expected), f"spanning forest weight {weight} != minimum {expected}"
    assert np.array_equal(last["in_mst_h"], in_mst)


def check_mst_prim(A, s, out, last):
    pi = out["pi"]
    G = undirected(A, A != 0)
    component = nx.node_connected_component(G, s)
    reached = reached_by_pointers(pi, s)
    assert as_node(pi[s]) == s
    assert reached == component, f"Prim's tree spans {sorted(reached)}, s's component is {sorted(component)}"
    assert_forest(pi, A, {s} | (set(range(A.shape[0])) - reached))
    weight = sum(float(A[as_node(pi[v]), v]) for v in reached - {s})
    expected = nx.minimum_spanning_tree(G.subgraph(component)).size(weight="weight")
    assert np.isclose(weight, expected), f"Prim's tree weight {weight} != MST weight {expected}"


def _check_single_source(A, s, out):
    pi = out["pi"]
    G = digraph(A, A != 0)
    expected = nx.single_source_bellman_ford_path_length(G, s)
    reached = reached_by_pointers(pi, s)
    assert as_node(pi[s]) == s
    assert reached == set(expected), f"pointers reach {sorted(reached)}, networkx reaches {sorted(expected)}"
    for v in sorted(reached):
        got = path_length_to(pi, A, s, v)
        assert np.isclose(got, expected[v]), f"distance to {v} along pi is {got}, shortest is {expected[v]}"


def check_dijkstra(A, s, out, last):
    _check_single_source(A, s, out)


def check_bellman_ford(A, s, out, last):
    _check_single_source(A, s, out)


def check_dag_shortest_paths(A, s, out, last):
    _check_single_source(A, s, out)


def check_floyd_warshall(A, s, out, last):
    Pi = out["Pi"]
    n = A.shape[0]
    G = digraph(A, A != 0)
    for i, lengths in nx.all_pairs_bellman_ford_path_length(G):  # negative weights (on DAGs) too
        for j in range(n):
            if j == i:
                continue
            if j not in lengths:
                assert as_node(Pi[i, j]) == i, f"Pi[{i}, {j}] = {Pi[i, j]} though {j} is unreachable from {i}"
                continue
            got = path_length_to(Pi[i], A, i, j)
            assert np.isclose(got, lengths[j]), f"path {i}->{j} along Pi has length {got}, shortest is {lengths[j]}"


CHECKS = {name: globals()[f"check_{name}"] for name in ALGORITHMS}


# --- tests -------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "case"), CASES)
def test_matches_networkx(name, case):
    check_trace(name, *graph_and_trace(name, case))


@pytest.mark.parametrize("name", ALGORITHMS)
def test_enough_varied_graphs(name):
    """The suite covers >= 200 graphs per algorithm, sizes 1..40 and sparse to dense."""
    cases = [p.values[1] for p in CASES if p.values[0] == name]
    sizes = {c[1] if c[0] == "sample" else c[2] for c in cases}
    own_p = [c[3] for c in cases if c[0] == "rng"]
    assert len(cases) >= 200
    assert min(sizes) == 1 and max(sizes) == 40
    assert min(own_p) < 0.1 and max(own_p) > 0.8
