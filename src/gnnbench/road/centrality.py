"""Length-weighted betweenness centrality of a road graph (Brandes' algorithm, compiled with numba).

Matches ``networkx.betweenness_centrality(G, weight="length", normalized=True)`` on the directed
graph with parallel edges collapsed to the shortest: exact when ``sources`` is None, otherwise the
networkx-style estimate from ``sources`` random source nodes, rescaled by ``n / sources``. Runs
the sources in parallel on all cores.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np

from ..compile_cache import kernel_cache


def betweenness(num_nodes: int, src: np.ndarray, dst: np.ndarray, length: np.ndarray, *,
                sources: int | None = None, seed: int = 0) -> np.ndarray:
    """Normalised betweenness of every node of the directed graph ``src -> dst`` weighted by ``length``."""
    if num_nodes < 3:
        return np.zeros(num_nodes)
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    length = np.asarray(length, dtype=np.float64)
    if len(length) and (not np.isfinite(length).all() or length.min() < 0):
        raise ValueError("edge lengths must be finite and non-negative for betweenness")
    # Collapse parallel edges to the shortest and drop self-loops (they lie on no shortest path).
    keep = src != dst
    order = np.lexsort((length[keep], dst[keep], src[keep]))
    s, d, w = src[keep][order], dst[keep][order], length[keep][order]
    first = np.ones(len(s), dtype=bool)
    first[1:] = (s[1:] != s[:-1]) | (d[1:] != d[:-1])
    s, d, w = s[first], d[first], w[first]
    out_ptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(s, minlength=num_nodes), out=out_ptr[1:])
    reverse = np.lexsort((s, d))
    in_ptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(d, minlength=num_nodes), out=in_ptr[1:])
    if sources is None or sources >= num_nodes:
        chosen = np.arange(num_nodes, dtype=np.int64)
    else:
        chosen = np.sort(np.random.default_rng(seed).choice(num_nodes, size=sources, replace=False)).astype(np.int64)
    with _torch_threads_kept():  # numba starts its OpenMP threads on first use (get_num_threads included)
        chunks = max(1, min(numba.get_num_threads(), len(chosen)))
        partial = _brandes(num_nodes, out_ptr, d, w, in_ptr, s[reverse], w[reverse], chosen, chunks)
    centrality = partial.sum(axis=0)
    scale = 1.0 / ((num_nodes - 1) * (num_nodes - 2))
    if len(chosen) < num_nodes:
        scale *= num_nodes / len(chosen)
    return centrality * scale


def _brandes_source(n, out_ptr, out_dst, out_w, in_ptr, in_src, in_w, sources, chunks):  # pragma: no cover - compiled
    partial = np.zeros((chunks, n))
    per_chunk = (len(sources) + chunks - 1) // chunks
    for chunk in numba.prange(chunks):
        dist = np.full(n, np.inf)
        sigma = np.zeros(n)
        delta = np.zeros(n)
        order = np.empty(n, dtype=np.int64)
        settled = np.zeros(n, dtype=np.bool_)
        heap_d = np.empty(len(out_dst) + n, dtype=np.float64)
        heap_v = np.empty(len(out_dst) + n, dtype=np.int64)
        for position in range(chunk * per_chunk, min(len(sources), (chunk + 1) * per_chunk)):
            source = sources[position]
            dist[:] = np.inf
            sigma[:] = 0.0
            delta[:] = 0.0
            settled[:] = False
            dist[source] = 0.0
            sigma[source] = 1.0
            size = 0
            heap_d[0] = 0.0
            heap_v[0] = source
            size = 1
            count = 0
            while size > 0:
                top_d = heap_d[0]
                top_v = heap_v[0]
                size -= 1
                if size > 0:  # sift the last element down from the root
                    last_d = heap_d[size]
                    last_v = heap_v[size]
                    i = 0
                    while True:
                        child = 2 * i + 1
                        if child >= size:
                            break
                        if child + 1 < size and heap_d[child + 1] < heap_d[child]:
                            child += 1
                        if heap_d[child] < last_d:
                            heap_d[i] = heap_d[child]
                            heap_v[i] = heap_v[child]
                            i = child
                        else:
                            break
                    heap_d[i] = last_d
                    heap_v[i] = last_v
                if settled[top_v] or top_d > dist[top_v]:
                    continue
                settled[top_v] = True
                order[count] = top_v
                count += 1
                for e in range(out_ptr[top_v], out_ptr[top_v + 1]):
                    w = out_dst[e]
                    candidate = top_d + out_w[e]
                    if candidate < dist[w]:
                        dist[w] = candidate
                        i = size  # sift up
                        size += 1
                        while i > 0:
                            parent = (i - 1) // 2
                            if heap_d[parent] > candidate:
                                heap_d[i] = heap_d[parent]
                                heap_v[i] = heap_v[parent]
                                i = parent
                            else:
                                break
                        heap_d[i] = candidate
                        heap_v[i] = w
            # path counts in settling order, then dependencies in reverse
            for k in range(count):
                w = order[k]
                if w == source:
                    continue
                total = 0.0
                for e in range(in_ptr[w], in_ptr[w + 1]):
                    v = in_src[e]
                    if settled[v] and dist[v] + in_w[e] == dist[w]:
                        total += sigma[v]
                sigma[w] = total
            for k in range(count - 1, -1, -1):
                w = order[k]
                coefficient = (1.0 + delta[w]) / sigma[w] if sigma[w] > 0 else 0.0
                for e in range(in_ptr[w], in_ptr[w + 1]):
                    v = in_src[e]
                    if settled[v] and dist[v] + in_w[e] == dist[w]:
                        delta[v] += sigma[v] * coefficient
                if w != source:
                    partial[chunk, w] += delta[w]
    return partial


@contextmanager
def _torch_threads_kept() -> Iterator[None]:
    """Numba's OpenMP layer resets the OpenMP thread count that torch shares: keep torch's (if imported)."""
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if torch is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


with kernel_cache():  # compiled once, cached under $GNNBENCH_HOME/numba
    _brandes = numba.njit(parallel=True, cache=True)(_brandes_source)
