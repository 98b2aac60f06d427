"""The single source of truth for every algorithmic-reasoning field.

Each algorithm's spec maps a field name to ``(stage, location, type)`` in the
CLRS-30 vocabulary, in the same order as CLRS-30 lists them. Encoders, decoders,
losses, dataset layouts and scores all follow from this table.
"""

from __future__ import annotations

import functools
from types import MappingProxyType
from typing import Mapping


class Stage:
    INPUT = "input"
    OUTPUT = "output"
    HINT = "hint"


class Location:
    NODE = "node"
    EDGE = "edge"
    GRAPH = "graph"


class Type:
    SCALAR = "scalar"
    CATEGORICAL = "categorical"
    MASK = "mask"
    MASK_ONE = "mask_one"
    POINTER = "pointer"


class OutputClass:
    """Values a mask may take: CLRS marks 'not applicable' entries with -1."""

    POSITIVE = 1
    NEGATIVE = 0
    MASKED = -1


Spec = dict[str, tuple[str, str, str]]

_I, _O, _H = Stage.INPUT, Stage.OUTPUT, Stage.HINT
_N, _E, _G = Location.NODE, Location.EDGE, Location.GRAPH
_SC, _CAT, _M, _M1, _P = Type.SCALAR, Type.CATEGORICAL, Type.MASK, Type.MASK_ONE, Type.POINTER

# Inputs shared by every graph algorithm (plus ``s`` for the single-source ones).
_GRAPH_INPUTS = {"pos": (_I, _N, _SC), "A": (_I, _E, _SC), "adj": (_I, _E, _M)}
_SOURCE_GRAPH_INPUTS = {"pos": (_I, _N, _SC), "s": (_I, _N, _M1), "A": (_I, _E, _SC), "adj": (_I, _E, _M)}
# The explicit-stack DFS state CLRS records for every DFS-based algorithm.
_DFS_STACK = {"s_prev": (_H, _N, _P), "s": (_H, _N, _M1), "u": (_H, _N, _M1), "v": (_H, _N, _M1),
              "s_last": (_H, _N, _M1)}

# As in CLRS-30: a read-only mapping of plain dicts.
SPECS: Mapping[str, Spec] = MappingProxyType({
    "bfs": {
        **_SOURCE_GRAPH_INPUTS,
        "pi": (_O, _N, _P),
        "reach_h": (_H, _N, _M),
        "pi_h": (_H, _N, _P),
    },
    "dfs": {
        **_GRAPH_INPUTS,
        "pi": (_O, _N, _P),
        "pi_h": (_H, _N, _P),
        "color": (_H, _N, _CAT),
        "d": (_H, _N, _SC),
        "f": (_H, _N, _SC),
        **_DFS_STACK,
        "time": (_H, _G, _SC),
    },
    "topological_sort": {
        **_GRAPH_INPUTS,
        "topo": (_O, _N, _P),
        "topo_head": (_O, _N, _M1),
        "topo_h": (_H, _N, _P),
        "topo_head_h": (_H, _N, _M1),
        "color": (_H, _N, _CAT),
        **_DFS_STACK,
    },
    "articulation_points": {
        **_GRAPH_INPUTS,
        "is_cut": (_O, _N, _M),
        "is_cut_h": (_H, _N, _M),
        "pi_h": (_H, _N, _P),
        "color": (_H, _N, _CAT),
        "d": (_H, _N, _SC),
        "f": (_H, _N, _SC),
        "low": (_H, _N, _SC),
        "child_cnt": (_H, _N, _SC),
        **_DFS_STACK,
        "time": (_H, _G, _SC),
    },
    "bridges": {
        **_GRAPH_INPUTS,
        "is_bridge": (_O, _E, _M),
        "is_bridge_h": (_H, _E, _M),
        "pi_h": (_H, _N, _P),
        "color": (_H, _N, _CAT),
        "d": (_H, _N, _SC),
        "f": (_H, _N, _SC),
        "low": (_H, _N, _SC),
        **_DFS_STACK,
        "time": (_H, _G, _SC),
    },
    "strongly_connected_components": {
        **_GRAPH_INPUTS,
        "scc_id": (_O, _N, _P),
        "scc_id_h": (_H, _N, _P),
        "A_t": (_H, _E, _M),
        "color": (_H, _N, _CAT),
        "d": (_H, _N, _SC),
        "f": (_H, _N, _SC),
        **_DFS_STACK,
        "time": (_H, _G, _SC),
        "phase": (_H, _G, _M),
    },
    "mst_kruskal": {
        **_GRAPH_INPUTS,
        "in_mst": (_O, _E, _M),
        "in_mst_h": (_H, _E, _M),
        "pi": (_H, _N, _P),
        "u": (_H, _N, _M1),
        "v": (_H, _N, _M1),
        "root_u": (_H, _N, _M1),
        "root_v": (_H, _N, _M1),
        "mask_u": (_H, _N, _M),
        "mask_v": (_H, _N, _M),
        "phase": (_H, _G, _CAT),
    },
    "mst_prim": {
        **_SOURCE_GRAPH_INPUTS,
        "pi": (_O, _N, _P),
        "pi_h": (_H, _N, _P),
        "key": (_H, _N, _SC),
        "mark": (_H, _N, _M),
        "in_queue": (_H, _N, _M),
        "u": (_H, _N, _M1),
    },
    "dijkstra": {
        **_SOURCE_GRAPH_INPUTS,
        "pi": (_O, _N, _P),
        "pi_h": (_H, _N, _P),
        "d": (_H, _N, _SC),
        "mark": (_H, _N, _M),
        "in_queue": (_H, _N, _M),
        "u": (_H, _N, _M1),
    },
    "bellman_ford": {
        **_SOURCE_GRAPH_INPUTS,
        "pi": (_O, _N, _P),
        "pi_h": (_H, _N, _P),
        "d": (_H, _N, _SC),
        "msk": (_H, _N, _M),
    },
    "dag_shortest_paths": {
        **_SOURCE_GRAPH_INPUTS,
        "pi": (_O, _N, _P),
        "pi_h": (_H, _N, _P),
        "d": (_H, _N, _SC),
        "mark": (_H, _N, _M),
        "topo_h": (_H, _N, _P),
        "topo_head_h": (_H, _N, _M1),
        "color": (_H, _N, _CAT),
        "s_prev": (_H, _N, _P),
        "u": (_H, _N, _M1),
        "v": (_H, _N, _M1),
        "s_last": (_H, _N, _M1),
        "phase": (_H, _G, _M),
    },
    "floyd_warshall": {
        **_GRAPH_INPUTS,
        "Pi": (_O, _E, _P),
        "Pi_h": (_H, _E, _P),
        "D": (_H, _E, _SC),
        "msk": (_H, _E, _M),
        "k": (_H, _N, _M1),
    },
})

ALGORITHMS: tuple[str, ...] = (
    "bfs",
    "dfs",
    "topological_sort",
    "articulation_points",
    "bridges",
    "strongly_connected_components",
    "mst_kruskal",
    "mst_prim",
    "dijkstra",
    "bellman_ford",
    "dag_shortest_paths",
    "floyd_warshall",
)

SOURCE_ALGORITHMS: frozenset[str] = frozenset(
    name for name in ALGORITHMS if SPECS[name].get("s", ("",))[0] == Stage.INPUT)


def check_algorithm(name: str) -> str:
    """Return ``name`` if it is a known algorithm, else raise a ValueError listing them."""
    if name not in SPECS:
        raise ValueError(f"unknown algorithm {name!r}; valid algorithms are: {', '.join(ALGORITHMS)}")
    return name


@functools.lru_cache(maxsize=None)
def fields(name: str, stage: str) -> tuple[str, ...]:
    """The field names of ``name`` at ``stage``, in spec order."""
    return tuple(f for f, (st, _, _) in SPECS[check_algorithm(name)].items() if st == stage)
