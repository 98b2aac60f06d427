"""The explicit-stack depth-first search behind six CLRS-30 algorithms.

CLRS-30 runs DFS without recursion: ``s_prev`` links the stack, ``s_last`` is its
top and ``u`` the node being scanned; the scan over ``v`` restarts from 0 every
time a node becomes current again. Depth-first search, topological sort,
articulation points, bridges, Kosaraju's strongly connected components and the
first phase of DAG shortest paths are all this walk with a few extra updates, so
they share one walker here, selected by mode flags.

The walker keeps all per-node state in one float64 matrix ``state`` (one row per
quantity) and all scalars in ``scalars``; every step copies the rows an algorithm
records (``slots``) into the step buffers.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .. import memory
from ..recording import NEVER, Layout, Recording, graph_probe, one_hot
from ..specs import OutputClass
from ..trace import EventMask, RecordedSteps, OneHotSteps, RepeatedSteps

# Rows of the per-node state matrix.
PI, COLOR, D, F, LOW, CHILD, CUT, S_PREV, TOPO, SCC, MARK = range(11)
NUM_ROWS = 11
# Entries of the scalar state vector.
S, U, V, S_LAST, TOPO_HEAD, PHASE, TIME = range(7)
NUM_SCALARS = 7

# Mode flags.
TIMED = 1  # discovery/finishing times (and the d[u] == 0 discovery test)
TREE = 2  # record DFS-tree parents in PI
LOW_LINK = 4  # low values and back-edge steps (articulation points, bridges)
CUT_VERTICES = 8
BRIDGE_EDGES = 16
TOPO_ORDER = 32
SCC_LABEL = 64



@njit(cache=True)
def new_state(n: int) -> tuple[np.ndarray, np.ndarray]:
    state = np.zeros((NUM_ROWS, n))
    ids = np.arange(n) * 1.0
    state[PI] = ids
    state[S_PREV] = ids
    state[TOPO] = ids
    state[SCC] = ids
    return state, np.zeros(NUM_SCALARS)


@njit(cache=True, _nrt=False)
def push(state, scalars, float_rows, int_rows, float_rec, int_rec, scal_rec, t0, t, cap) -> int:
    """Record the current state as step ``t``; return ``t + 1``.

    The state rows ``float_rows`` go to ``float_rec`` ``[cap, len(float_rows), n]`` and
    ``int_rows`` (as int32) to ``int_rec`` ``[cap, len(int_rows), n]``, the scalars to
    ``scal_rec``. Compiled without numba's reference counting (it allocates nothing):
    otherwise every call would add and drop an atomic reference per array argument,
    which cost more than the copying itself.
    """
    row = t0 + t
    if row < cap:
        n = state.shape[1]
        for r in range(float_rows.shape[0]):
            dst, src = float_rec[row, r], state[float_rows[r]]  # row views (free without refcounts)
            for j in range(n):
                dst[j] = src[j]
        for r in range(int_rows.shape[0]):
            dst, src = int_rec[row, r], state[int_rows[r]]
            for j in range(n):
                dst[j] = np.int32(src[j])
        dst = scal_rec[row]
        for j in range(NUM_SCALARS):
            dst[j] = scalars[j]
    return t + 1


@njit(cache=True)
def walk(M, root, mode, state, scalars, slots, node_rec, scal_rec, t0, t, cap, events):
    """One DFS tree from ``root`` over matrix ``M``; returns the updated step count.

    ``events[u, v]`` receives the step at which edge (u, v) is first marked a bridge.
    """
    n = M.shape[0]
    float_rows, int_rows = slots
    float_rec, int_rec = node_rec
    color = state[COLOR]
    pi = state[PI]
    d = state[D]
    f = state[F]
    low = state[LOW]
    s_prev = state[S_PREV]
    timed = (mode & TIMED) != 0
    low_link = (mode & LOW_LINK) != 0

    s_last = root
    u = root
    v = root
    scalars[S] = root
    scalars[U] = u
    scalars[V] = v
    scalars[S_LAST] = s_last
    t = push(state, scalars, float_rows, int_rows, float_rec, int_rec, scal_rec, t0, t, cap)
    while True:
        if mode & SCC_LABEL:
            state[SCC, u] = root
        if color[u] == 0 or (timed and d[u] == 0.0):
            if timed:
                scalars[TIME] += 0.01
                d[u] = scalars[TIME]
                if low_link:
                    low[u] = scalars[TIME]
            color[u] = 1
            t = push(state, scalars, float_rows, int_rows, float_rec, int_rec, scal_rec, t0, t, cap)

        # CLRS-30 scans v = 0, 1, ... (``v`` recording the scan position) until an edge to a
        # white node; in low-link modes every other edge but the one to u's parent updates
        # low[u] and records a step. Jump from one such v to the next with a branch-free
        # minimum (random edges would mispredict a branch per entry).
        start = 0
        while True:
            v = n
            parent = pi[u]
            for w in range(start, n):
                acts = (M[u, w] != 0) & ((color[w] == 0) | (low_link & (w != parent)))
                v = min(v, w if acts else n)
            if v == n:  # scanned to the end
                scalars[V] = n - 1
                break
            scalars[V] = v
            if color[v] == 0:
                if mode & TREE:
                    pi[v] = u
                color[v] = 1
                s_prev[v] = s_last
                s_last = v
                scalars[S_LAST] = s_last
                if mode & CUT_VERTICES:
                    state[CHILD, u] += 0.01
                t = push(state, scalars, float_rows, int_rows, float_rec, int_rec, scal_rec, t0, t, cap)
                break
            low[u] = min(low[u], d[v])
            t = push(state, scalars, float_rows, int_rows, float_rec, int_rec, scal_rec, t0, t, cap)
            start = v + 1

        if s_last == u:
            color[u] = 2
            if timed:
                scalars[TIME] += 0.01
                f[u] = scalars[TIME]
            if mode & TOPO_ORDER:
                head = int(scalars[TOPO_HEAD])
                if color[head] == 2:
                    state[TOPO, u] = head
                scalars[TOPO_HEAD] = u
            if low_link:
                for w in range(n):
                    if pi[w] == u:
                        low[u] = min(low[u], low[w])
                        if (mode & CUT_VERTICES) and pi[u] != u and low[w] >= d[u]:
                            state[CUT, u] = 1.0
                        if (mode & BRIDGE_EDGES) and low[w] > d[u]:
                            if events[u, w] == NEVER:
                                events[u, w] = t
                            if events[w, u] == NEVER:
                                events[w, u] = t
                scalars[V] = n - 1
            if (mode & CUT_VERTICES) and pi[u] == u and state[CHILD, u] > 0.01:
                state[CUT, u] = 1.0
            t = push(state, scalars, float_rows, int_rows, float_rec, int_rec, scal_rec, t0, t, cap)

            if s_prev[u] == u:
                break
            top = int(s_prev[s_last])
            s_prev[s_last] = s_last
            s_last = top
            scalars[S_LAST] = s_last

        u = s_last
        scalars[U] = u
    return t


@njit(cache=True)
def forest(M, mode, state, scalars, slots, node_rec, scal_rec, t0, t, cap, events):
    """DFS from every still-white node in index order."""
    for root in range(M.shape[0]):
        if state[COLOR, root] == 0:
            t = walk(M, root, mode, state, scalars, slots, node_rec, scal_rec, t0, t, cap, events)
    return t


_DFS = TIMED | TREE
_TOPO = TOPO_ORDER
_CUT = TIMED | TREE | LOW_LINK | CUT_VERTICES
_BRIDGE = TIMED | TREE | LOW_LINK | BRIDGE_EDGES

# Node rows each algorithm records: (float rows, integer rows: pointers and colours).
_NONE = np.zeros(0, dtype=np.int64)
DFS_SLOTS = (np.array([D, F]), np.array([PI, COLOR, S_PREV]))
TOPO_SLOTS = (_NONE, np.array([TOPO, COLOR, S_PREV]))
CUT_SLOTS = (np.array([CUT, D, F, LOW, CHILD]), np.array([PI, COLOR, S_PREV]))
BRIDGE_SLOTS = (np.array([D, F, LOW]), np.array([PI, COLOR, S_PREV]))
SCC_SLOTS = (np.array([D, F]), np.array([SCC, COLOR, S_PREV]))
DAG_SLOTS = (np.array([D, MARK]), np.array([PI, TOPO, COLOR, S_PREV]))


@njit(cache=True)
def dfs_kernel(A, s, aux, rec, t0, cap, out, i):
    state, scalars = new_state(A.shape[0])
    return forest(A, _DFS, state, scalars, DFS_SLOTS, (rec[0], rec[1]), rec[2], t0, 0, cap, out[0][i])


@njit(cache=True)
def topological_sort_kernel(A, s, aux, rec, t0, cap, out, i):
    state, scalars = new_state(A.shape[0])
    return forest(A, _TOPO, state, scalars, TOPO_SLOTS, (rec[0], rec[1]), rec[2], t0, 0, cap, out[0][i])


@njit(cache=True)
def articulation_points_kernel(A, s, aux, rec, t0, cap, out, i):
    state, scalars = new_state(A.shape[0])
    return forest(A, _CUT, state, scalars, CUT_SLOTS, (rec[0], rec[1]), rec[2], t0, 0, cap, out[0][i])


@njit(cache=True)
def bridges_kernel(A, s, aux, rec, t0, cap, out, i):
    events = out[0][i]
    events[:, :] = NEVER
    state, scalars = new_state(A.shape[0])
    return forest(A, _BRIDGE, state, scalars, BRIDGE_SLOTS, (rec[0], rec[1]), rec[2], t0, 0, cap, events)


@njit(cache=True)
def strongly_connected_components_kernel(A, s, aux, rec, t0, cap, out, i):
    n = A.shape[0]
    state, scalars = new_state(n)
    events = out[0][i]
    t = forest(A, TIMED, state, scalars, SCC_SLOTS, (rec[0], rec[1]), rec[2], t0, 0, cap, events)
    # Second pass on the transpose, roots in decreasing finishing time (all distinct).
    state[COLOR, :] = 0.0
    state[S_PREV, :] = np.arange(n) * 1.0
    scalars[PHASE] = 1
    order = np.argsort(-state[F])
    A_t = np.ascontiguousarray(A.T)
    for root in order:
        if state[COLOR, root] == 0:
            t = walk(A_t, root, TIMED | SCC_LABEL, state, scalars, SCC_SLOTS, (rec[0], rec[1]), rec[2], t0, t,
                     cap, events)
    return t


@njit(cache=True)
def dag_shortest_paths_kernel(A, s, aux, rec, t0, cap, out, i):
    """Topologically sort what ``s`` reaches (phase 0), then relax in that order (phase 1)."""
    float_rec, int_rec, scal_rec = rec
    float_rows, int_rows = DAG_SLOTS
    n = A.shape[0]
    state, scalars = new_state(n)
    t = walk(A, s, _TOPO, state, scalars, DAG_SLOTS, (float_rec, int_rec), scal_rec, t0, 0, cap, out[0][i])
    pi = state[PI]
    dist = state[D]
    mark = state[MARK]
    topo = state[TOPO]
    head = int(scalars[TOPO_HEAD])  # equals s: the root finishes last
    scalars[PHASE] = 1
    dist[head] = 0.0
    mark[head] = 1.0
    while topo[head] != head:
        mark[head] = 1.0
        t = push(state, scalars, float_rows, int_rows, float_rec, int_rec, scal_rec, t0, t, cap)
        for j in range(n):  # branch-free (random edges would mispredict)
            candidate = dist[head] + A[head, j]
            take = (A[head, j] != 0.0) & ((mark[j] == 0) | (candidate < dist[j]))
            dist[j] = candidate if take else dist[j]
            pi[j] = head if take else pi[j]
            mark[j] = 1.0 if take else mark[j]
        head = int(topo[head])
        scalars[TOPO_HEAD] = head
    return push(state, scalars, float_rows, int_rows, float_rec, int_rec, scal_rec, t0, t, cap)


# --- from recordings to CLRS probes --------------------------------------------

_ROW_NAMES = {PI: "pi", COLOR: "color", D: "d", F: "f", LOW: "low", CHILD: "child_cnt", CUT: "is_cut",
              S_PREV: "s_prev", TOPO: "topo", SCC: "scc_id", MARK: "mark"}
_POINTER_ROWS = {PI, S_PREV, TOPO, SCC}
_NODE_SCALARS = {"s": S, "u": U, "v": V, "s_last": S_LAST, "topo_head": TOPO_HEAD}


def _probes(rec: Recording, slots: tuple[np.ndarray, np.ndarray], n: int,
            scalars: tuple[str, ...]) -> dict[str, np.ndarray | OneHotSteps | RecordedSteps]:
    """The recorded node rows and the named scalars, under their CLRS base names."""
    float_rec, int_rec, scal_rec = rec.steps
    float_rows, int_rows = slots
    probes: dict[str, np.ndarray | OneHotSteps | RecordedSteps] = {}
    for k, row in enumerate(float_rows):
        probes[_ROW_NAMES[int(row)]] = RecordedSteps(float_rec, rec.offsets, np.float64, quantity=k)
    for k, row in enumerate(int_rows):
        probes[_ROW_NAMES[int(row)]] = (OneHotSteps(int_rec[:, k, :], 3, rec.offsets) if row == COLOR
                                        else RecordedSteps(int_rec, rec.offsets, np.int64, quantity=k))
    for name in scalars:
        if name in _NODE_SCALARS:
            probes[name] = OneHotSteps(scal_rec[:, _NODE_SCALARS[name]].astype(np.int64), n, rec.offsets)
        elif name == "time":
            probes[name] = scal_rec[:, TIME]
        else:
            probes[name] = scal_rec[:, PHASE].astype(np.int64)
    return probes


_STACK = ("s", "u", "v", "s_last")


def _last(rec: Recording, values: np.ndarray | RecordedSteps) -> np.ndarray:
    return values.last() if isinstance(values, RecordedSteps) else values[rec.offsets[1:] - 1]


def finalize_dfs(rec: Recording, graphs: np.ndarray, adj: np.ndarray):
    p = _probes(rec, DFS_SLOTS, graphs.shape[1], (*_STACK, "time"))
    p["pi_h"] = p.pop("pi")
    return p, {"pi": _last(rec, p["pi_h"])}


def finalize_topological_sort(rec: Recording, graphs: np.ndarray, adj: np.ndarray):
    p = _probes(rec, TOPO_SLOTS, graphs.shape[1], (*_STACK, "topo_head"))
    p["topo_h"], p["topo_head_h"] = p.pop("topo"), p.pop("topo_head")
    topo_head = rec.steps[2][rec.offsets[1:] - 1, TOPO_HEAD].astype(np.int64)
    return p, {"topo": _last(rec, p["topo_h"]), "topo_head": one_hot(topo_head, graphs.shape[1])}


def finalize_articulation_points(rec: Recording, graphs: np.ndarray, adj: np.ndarray):
    p = _probes(rec, CUT_SLOTS, graphs.shape[1], (*_STACK, "time"))
    p["is_cut_h"], p["pi_h"] = p.pop("is_cut"), p.pop("pi")
    return p, {"is_cut": _last(rec, p["is_cut_h"])}


def finalize_bridges(rec: Recording, graphs: np.ndarray, adj: np.ndarray):
    p = _probes(rec, BRIDGE_SLOTS, graphs.shape[1], (*_STACK, "time"))
    p["pi_h"] = p.pop("pi")
    events = rec.per_sample[0]
    not_bridge = memory.empty(adj.shape)
    np.add(adj, OutputClass.MASKED, out=not_bridge)  # 0 on edges, -1 elsewhere
    is_bridge = memory.empty(adj.shape)
    np.copyto(is_bridge, not_bridge)
    np.copyto(is_bridge, 1.0, where=events < NEVER)
    p["is_bridge_h"] = EventMask(events, not_bridge, rec.offsets)
    return p, {"is_bridge": is_bridge}


def finalize_strongly_connected_components(rec: Recording, graphs: np.ndarray, adj: np.ndarray):
    p = _probes(rec, SCC_SLOTS, graphs.shape[1], (*_STACK, "time", "phase"))
    p["scc_id_h"] = p.pop("scc_id")
    p["A_t"] = RepeatedSteps(graph_probe(np.swapaxes(graphs, 1, 2)), rec.offsets)
    return p, {"scc_id": _last(rec, p["scc_id_h"])}


def finalize_dag_shortest_paths(rec: Recording, graphs: np.ndarray, adj: np.ndarray):
    p = _probes(rec, DAG_SLOTS, graphs.shape[1], ("u", "v", "s_last", "topo_head", "phase"))
    p["pi_h"], p["topo_h"], p["topo_head_h"] = p.pop("pi"), p.pop("topo"), p.pop("topo_head")
    return p, {"pi": _last(rec, p["pi_h"])}


def _layout(slots: tuple[np.ndarray, np.ndarray], events: bool, steps_per_node: int) -> Layout:
    float_rows, int_rows = len(slots[0]), len(slots[1])
    return Layout(
        steps=((np.dtype(np.float64), lambda n: (float_rows, n)),
               (np.dtype(np.int32), lambda n: (int_rows, n)),  # node indices and colours: exact
               (np.dtype(np.float64), lambda n: (NUM_SCALARS,))),
        per_sample=((np.dtype(np.int64), (lambda n: (n, n)) if events else (lambda n: (0, 0))),),
        expected_steps=lambda n: steps_per_node * n + 2,
    )


DFS_LAYOUT = _layout(DFS_SLOTS, False, 3)
TOPO_LAYOUT = _layout(TOPO_SLOTS, False, 3)
CUT_LAYOUT = _layout(CUT_SLOTS, False, 6)
BRIDGE_LAYOUT = _layout(BRIDGE_SLOTS, True, 6)
SCC_LAYOUT = _layout(SCC_SLOTS, False, 6)
DAG_LAYOUT = _layout(DAG_SLOTS, False, 3)
