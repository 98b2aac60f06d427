"""Random graphs for every algorithm, drawn exactly as CLRS-30's samplers draw them.

Each algorithm has a default ``GraphDistribution`` (CLRS-30's: Erdős–Rényi with a
per-algorithm edge probability, symmetrised for undirected algorithms, upper
triangular and permuted for DAGs, uniform weights, perturbed 4-community graphs
for SCC). ``sample`` replays CLRS-30's ``np.random.RandomState`` draw sequence, so
for the same algorithm, size, seed and options it yields the same graphs, sources
and therefore traces as ``clrs.build_sampler(name, num, length=n, seed=seed)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
from numba import njit

from ..arguments import check_float, check_int
from . import memory, rng
from .execution import run_kernels
from .specs import SOURCE_ALGORITHMS, check_algorithm
from .trace import TraceSet

ER, COMMUNITY = 0, 1
GENERATORS = {"er": ER, "community": COMMUNITY}


@dataclass(frozen=True)
class GraphDistribution:
    """Parameters of a random graph family (CLRS-30's sampler arguments)."""

    generator: str = "er"  # "er" (Erdős–Rényi) or "community" (perturbed k-community)
    p: tuple[float, ...] = (0.5,)  # edge probability; one is drawn per graph
    directed: bool = False
    acyclic: bool = False  # directed graphs only: upper-triangular, then randomly permuted
    weighted: bool = False
    low: float = 0.0  # weights ~ U[low, high); undirected: sqrt(w_ij * w_ji + 1e-3)
    high: float = 1.0
    k: int = 4  # community: number of communities
    eps: float = 0.01  # community: probability of an inter-community edge


_ER = GraphDistribution
DISTRIBUTIONS: dict[str, GraphDistribution] = {
    "bfs": _ER(p=(0.5,)),
    "dfs": _ER(p=(0.5,), directed=True),
    "topological_sort": _ER(p=(0.5,), directed=True, acyclic=True),
    "articulation_points": _ER(p=(0.2,)),
    "bridges": _ER(p=(0.2,)),
    "strongly_connected_components": _ER(generator="community", p=(0.5,), directed=True),
    "mst_kruskal": _ER(p=(0.2,), weighted=True),
    "mst_prim": _ER(p=(0.5,), weighted=True),
    "dijkstra": _ER(p=(0.5,), weighted=True),
    "bellman_ford": _ER(p=(0.5,), weighted=True),
    "dag_shortest_paths": _ER(p=(0.5,), directed=True, acyclic=True, weighted=True),
    "floyd_warshall": _ER(p=(0.5,), weighted=True),
}
SAMPLER_OPTIONS = tuple(f.name for f in fields(GraphDistribution))


def distribution(name: str, **options: object) -> GraphDistribution:
    """The default distribution of ``name`` with ``options`` overriding its fields."""
    base = DISTRIBUTIONS[check_algorithm(name)]
    if not options:
        return base  # the defaults are valid (checked when this module is imported)
    unknown = set(options) - set(SAMPLER_OPTIONS)
    if unknown:
        raise ValueError(f"unknown sampler option(s) {sorted(unknown)} for {name}; "
                         f"valid options: {', '.join(SAMPLER_OPTIONS)}")
    if "p" in options:
        p = options["p"]
        values = (np.ravel(p).tolist() if isinstance(p, np.ndarray) else p if isinstance(p, Sequence) else (p,))
        if isinstance(p, (str, bytes)) or not len(values):
            raise ValueError(f"p must be a probability or a non-empty sequence of probabilities, got {p!r}")
        options["p"] = tuple(check_float("p", x, minimum=0.0, maximum=1.0) for x in values)
    for option in ("low", "high", "eps"):  # not ``name``: that is the algorithm, checked below
        if option in options:
            bounds = {"minimum": 0.0, "maximum": 1.0} if option == "eps" else {}
            options[option] = check_float(option, options[option], **bounds)
    if "k" in options:
        options["k"] = check_int("k", options["k"], minimum=1)
    for option in ("directed", "acyclic", "weighted"):
        if option in options and not isinstance(options[option], (bool, np.bool_)):
            raise ValueError(f"{option} must be True or False, got {options[option]!r}")
    dist = replace(base, **options)
    _check_distribution(name, dist)
    return dist


def _check_distribution(name: str, dist: GraphDistribution) -> None:
    if dist.generator not in GENERATORS:
        raise ValueError(f"unknown generator {dist.generator!r}; valid generators: {', '.join(GENERATORS)}")
    if not dist.p or not all(0.0 <= x <= 1.0 for x in dist.p):
        raise ValueError(f"edge probabilities p must be a non-empty sequence of values in [0, 1], got {dist.p}")
    if not 0.0 <= dist.eps <= 1.0:
        raise ValueError(f"eps must lie in [0, 1], got {dist.eps}")
    if dist.weighted and not dist.low <= dist.high:
        raise ValueError(f"weights need low <= high, got low={dist.low}, high={dist.high}")
    if dist.acyclic and not dist.directed:
        raise ValueError("acyclic=True requires directed=True (CLRS-30 only makes directed graphs acyclic)")
    if dist.weighted and not dist.directed and dist.low < 0:
        raise ValueError(f"undirected weighted graphs need low >= 0: CLRS-30 symmetrises weights as "
                         f"sqrt(w_ij * w_ji + 1e-3), which is undefined for low={dist.low}")
    if name in ("dijkstra", "mst_prim") and dist.weighted and dist.low < 0:
        raise ValueError(f"{name} requires non-negative weights, but low={dist.low}")
    if name in ("topological_sort", "dag_shortest_paths") and not (dist.directed and dist.acyclic):
        raise ValueError(f"{name} requires directed acyclic graphs (directed=True, acyclic=True)")
    if name == "bellman_ford" and dist.weighted and dist.low < 0:
        raise ValueError("bellman_ford on randomly weighted graphs requires low >= 0: negative weights "
                         "produce negative cycles, for which shortest paths are undefined")


for _name, _dist in DISTRIBUTIONS.items():
    _check_distribution(_name, _dist)


def sample_graphs(name: str, num: int, n: int = 16, seed: int | None = 0,
                  **options: object) -> tuple[np.ndarray, np.ndarray]:
    """``num`` graphs ``[num, n, n]`` and sources ``[num]`` as CLRS-30's sampler draws them.

    Unweighted Erdős–Rényi graphs are int64, like CLRS-30's; all others float64.
    """
    num, n, seed = _check_counts(num, n, seed)
    dist = distribution(name, **options)
    _, A, sources, _ = _draw(name, num, n, seed, dist, probes=False)
    return A, sources


def sample(name: str, num: int, n: int = 16, seed: int | None = 0, **sampler_options: object) -> TraceSet:
    """``num`` traces of ``name`` on random graphs of ``n`` nodes, deterministic for a seed.

    ``sampler_options`` override the algorithm's ``GraphDistribution`` (``p``,
    ``low``, ``high``, ``k``, ``eps``, ``generator``, ``directed``, ``acyclic``,
    ``weighted``). With defaults this equals CLRS-30's
    ``build_sampler(name, num, length=n, seed=seed)`` sample for sample.
    """
    num, n, seed = _check_counts(num, n, seed)
    dist = distribution(name, **sampler_options)
    graphs, A, sources, probes = _draw(name, num, n, seed, dist, probes=True)
    return run_kernels(name, graphs, A, sources, probes=probes, metadata={"n": n, "seed": seed, "distribution": dist})


def _draw(name: str, num: int, n: int, seed: int | None, dist: GraphDistribution,
          probes: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray] | None]:
    """Graphs in CLRS-30's draw order: float64 ``[num, n, n]``, the same in CLRS-30's dtype
    (int64 for unweighted Erdős–Rényi graphs), the sources ``[num]`` and, if ``probes``, the
    input probes ``adj``, ``pos`` and (for algorithms with a source) ``s``, else None. Each
    graph is converted and probed while it is in cache; everything shares one pooled block."""
    if dist.generator == "community" and dist.k > n:
        raise ValueError(f"cannot split {n} nodes into k={dist.k} communities (need k <= n)")
    if dist.generator == "community" and dist.k < 1:
        raise ValueError(f"community graphs need k >= 1, got k={dist.k}")
    integer = dist.generator == "er" and not dist.weighted
    with_source = name in SOURCE_ALGORITHMS
    graphs, as_int, adj, sources, pos, s = memory.buffers([
        ((num, n, n), np.float64), ((num if integer else 0, n, n), np.int64),
        ((num if probes else 0, n, n), np.float64), ((num,), np.int64),
        ((num if probes else 0, n), np.float64), ((num if probes and with_source else 0, n), np.float64)])
    key, position = rng.seeded_stream(seed)
    _generate(key, position, n, GENERATORS[dist.generator], np.array(dist.p), dist.directed, dist.acyclic,
              dist.weighted, dist.low, dist.high, dist.k, dist.eps, with_source, graphs, sources, as_int, adj, pos, s)
    inputs = None
    if probes:
        inputs = {"adj": adj, "pos": pos, "s": s} if with_source else {"adj": adj, "pos": pos}
    return graphs, as_int if integer else graphs, sources, inputs


def _check_counts(num: object, n: object, seed: object) -> tuple[int, int, int | None]:
    """``num`` >= 0 graphs of ``n`` >= 1 nodes; ``seed`` None or a ``RandomState`` seed in [0, 2**32)."""
    if type(num) is int and type(n) is int and type(seed) is int and num >= 0 and n >= 1 and 0 <= seed < 2**32:
        return num, n, seed  # the common case, without the general checks' cost
    return (check_int("num", num, minimum=0), check_int("n", n, minimum=1),
            None if seed is None else check_int("seed", seed, minimum=0, maximum=2**32 - 1))


# --- compiled generators ---------------------------------------------------------

@njit(cache=True)
def er_graph(key, pos, n, p, directed, acyclic, weighted, low, high):
    """CLRS-30's ``_random_er_graph``, draw for draw."""
    mat = np.empty((n, n))
    er_graph_into(mat, key, pos, p, directed, acyclic, weighted, low, high)
    return mat


@njit(cache=True)
def er_graph_into(mat, key, pos, p, directed, acyclic, weighted, low, high):
    """``er_graph`` written into the C-contiguous ``mat`` ``[n, n]``."""
    n = mat.shape[0]
    if directed and acyclic:
        coin = rng.bernoulli_matrix(key, pos, n, p)
        perm = rng.permutation(key, pos, n)
        for i in range(n):  # np.triu(coin, 1)[perm][:, perm], branch-free
            a = perm[i]
            for j in range(n):
                b = perm[j]
                mat[i, j] = coin[a, b] * (b > a)
    else:
        rng.bernoulli_fill(mat, key, pos, p)
    if weighted:
        w = np.empty((n, n))
        rng.uniform_fill(w, key, pos, low, high)
        if directed:  # mat * w
            for i in range(n):
                row, wrow = mat[i], w[i]
                for j in range(n):
                    row[j] = row[j] * wrow[j]
        else:
            _symmetric_weights(mat, w, np.empty(n * (n + 1) // 2))
    elif not directed:
        _symmetrise(mat)


@njit(cache=True)
def _symmetrise(mat):
    # mat * mat.T: keep i - j only if both coins came up.
    n = mat.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            both = mat[i, j] * mat[j, i]
            mat[i, j] = both
            mat[j, i] = both


@njit(cache=True, _nrt=False)
def _symmetric_weights(mat, w, roots):
    # (mat * mat.T) * sqrt(w * w.T + 1e-3), CLRS-30's arithmetic (both products are symmetric),
    # over the pairs i <= j in row-major order: first the two products (the coin product into
    # mat[i, j], w[i, j] * w[j, i] + 1e-3 into ``roots``, n * (n + 1) / 2 long), then their square
    # roots in one vectorised pass (one at a time, sqrt would dominate), then both halves of mat.
    # Branch-free: random coins would mispredict a branch on every other pair. Flat unsigned
    # indices: no negative-index wraparound per access.
    n = mat.shape[0]
    m, weights = mat.reshape(-1), w.reshape(-1)
    stride = np.uint64(n)
    k = np.uint64(0)
    for i in range(n):
        a = np.uint64(i) * stride + np.uint64(i)  # (i, j), j = i, i + 1, ...
        b = a  # (j, i)
        for _ in range(i, n):
            roots[k] = weights[a] * weights[b] + 1e-3
            m[a] = m[a] * m[b]
            a += np.uint64(1)
            b += stride
            k += np.uint64(1)
    for q in range(roots.shape[0]):
        roots[q] = np.sqrt(roots[q])
    k = np.uint64(0)
    for i in range(n):
        a = np.uint64(i) * stride + np.uint64(i)
        b = a
        for _ in range(i, n):
            value = m[a] * roots[k]
            m[a] = value
            m[b] = value
            a += np.uint64(1)
            b += stride
            k += np.uint64(1)


@njit(cache=True)
def community_graph(key, pos, n, k, p, eps, directed, acyclic, weighted, low, high):
    """CLRS-30's ``_random_community_graph``: k dense blocks, sparse forward links, permuted."""
    mat = np.zeros((n, n))
    bounds = np.empty(k + 1, dtype=np.int64)
    bounds[0] = 0
    for c in range(k):
        lo = bounds[c]
        hi = n if c == k - 1 else lo + n // k
        bounds[c + 1] = hi
        mat[lo:hi, lo:hi] = er_graph(key, pos, hi - lo, p, directed, acyclic, weighted, low, high)
    toggle = er_graph(key, pos, n, eps, directed, acyclic, weighted, low, high)
    for ci in range(k):
        for cj in range(ci):
            toggle[bounds[ci]:bounds[ci + 1], bounds[cj]:bounds[cj + 1]] = 0.0
    for i in range(n):
        for j in range(n):
            if toggle[i, j] > 0.0:
                mat[i, j] = (1.0 - (1.0 if mat[i, j] > 0.0 else 0.0)) * toggle[i, j]
    perm = rng.permutation(key, pos, n)
    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = mat[perm[i], perm[j]]
    return out


@njit(cache=True)
def _generate(key, pos, n, generator, p_choices, directed, acyclic, weighted, low, high, k, eps,
              with_source, graphs, sources, as_int, adj, positions, source_probe):
    """Fill ``graphs`` and ``sources`` (0 without ``with_source``) in CLRS-30's draw order: p,
    graph, source; and, unless they are empty, ``as_int`` (the graphs as int64) and the input
    probes ``adj``, ``positions`` (CLRS ``pos``: node j at j / n) and ``source_probe`` (``s``)."""
    for i in range(graphs.shape[0]):
        p = p_choices[rng.bounded(key, pos, p_choices.shape[0])]
        if generator == ER:
            er_graph_into(graphs[i], key, pos, p, directed, acyclic, weighted, low, high)
        else:
            graphs[i] = community_graph(key, pos, n, k, p, eps, directed, acyclic, weighted, low, high)
        sources[i] = rng.bounded(key, pos, n) if with_source else 0
        if positions.shape[0] > 0:
            for j in range(n):
                positions[i, j] = np.float64(j) / n  # np.arange(n) * 1.0 / n
        if source_probe.shape[0] > 0:
            for j in range(n):
                source_probe[i, j] = 0.0
            source_probe[i, sources[i]] = 1.0
        if as_int.shape[0] > 0:
            for a in range(n):
                for b in range(n):
                    as_int[i, a, b] = np.int64(graphs[i, a, b])
        if adj.shape[0] > 0:
            for a in range(n):
                for b in range(n):
                    adj[i, a, b] = np.float64(graphs[i, a, b] + np.float64(a == b) != 0)
