"""Branching trees: which algorithms share the processor module at each depth of a multitask network.

A tree over ``algorithms`` and ``L`` depths lists, for every depth ``1..L``, a partition of the algorithms into
groups; at depth ``l`` one module serves each group, and an algorithm runs only through its groups' modules. Each
depth refines the one above it (a group never spans two groups of the depth above), so the network is a tree that
branches on the way up: the single-task network (STN) is the tree of singletons, the fully shared network (MTN) the
tree of one group at every depth.

On disk a tree is JSON::

    {"format": 1, "algorithms": ["bfs", "dfs", ...],
     "depths": {"1": [["bfs", "dfs", ...]], "2": [["bfs", "dfs"], ["dijkstra"]], ...}}

:data:`PUBLISHED_TREE` is the branching study's final tree (Li et al., https://arxiv.org/abs/2512.01113;
``clrs_experiments/tree_configs/tree_structure_final.txt`` of
https://github.com/VirtuosoResearch/Multitask-algorithmic-reasoning at d426c27). Its file lists depths 1-4 and the
study's loader (``run.py``'s ``load_branching_structure``) indexes processor layers from 0 with layer 0 shared by
every algorithm, so in its 5-layer Edge Transformer the file's depth ``d`` is layer ``d + 1``: here depth 1 is
shared by all twelve and depths 2-5 are the file's 1-4.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...algo.specs import ALGORITHMS

FORMAT = 1


@dataclass(frozen=True)
class Tree:
    """``depths[l - 1]``: the groups (tuples of algorithm names) of depth ``l``."""

    algorithms: tuple[str, ...]
    depths: tuple[tuple[tuple[str, ...], ...], ...]

    def __post_init__(self) -> None:
        _check_tree(self.algorithms, self.depths, "tree")

    @property
    def num_layers(self) -> int:
        return len(self.depths)

    def group_of(self, algorithm: str, depth: int) -> int:
        """Index of ``algorithm``'s group at ``depth`` (1-based)."""
        if not 1 <= depth <= self.num_layers:
            raise ValueError(f"depth must be in 1..{self.num_layers}, got {depth}")
        for index, group in enumerate(self.depths[depth - 1]):
            if algorithm in group:
                return index
        raise ValueError(f"{algorithm!r} is not one of the tree's algorithms ({', '.join(self.algorithms)})")

    def route(self, algorithm: str) -> tuple[int, ...]:
        """``algorithm``'s group index at every depth."""
        return tuple(self.group_of(algorithm, depth) for depth in range(1, self.num_layers + 1))

    def num_groups(self) -> tuple[int, ...]:
        """Modules per depth."""
        return tuple(len(groups) for groups in self.depths)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "algorithms": list(self.algorithms),
                "depths": {str(depth): [list(group) for group in groups]
                           for depth, groups in enumerate(self.depths, start=1)}}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tree as JSON (atomically)."""
        path = Path(path)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(partial, path)
        return path

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "tree") -> Tree:
        """A tree from its JSON form; ValueError naming ``source`` and the field on anything malformed."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: a tree is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"format", "algorithms", "depths"})
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {', '.join(unknown)} (fields: format, algorithms, depths)")
        if data.get("format") != FORMAT:
            raise ValueError(f"{source}: format must be {FORMAT}, got {data.get('format')!r}")
        algorithms = data.get("algorithms")
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise ValueError(f"{source}: algorithms must be a list of algorithm names")
        depths = data.get("depths")
        if not isinstance(depths, Mapping) or not depths:
            raise ValueError(f"{source}: depths must be an object {{\"1\": [[...], ...], ...}}")
        expected = [str(d) for d in range(1, len(depths) + 1)]
        if sorted(depths, key=lambda k: (len(k), k)) != expected:
            raise ValueError(f"{source}: depths must be numbered 1..{len(depths)}, got {', '.join(depths)}")
        parsed = []
        for key in expected:
            groups = depths[key]
            if not isinstance(groups, list) or not all(
                    isinstance(g, list) and all(isinstance(a, str) for a in g) for g in groups):
                raise ValueError(f"{source}: depths.{key} must be a list of groups (lists of algorithm names)")
            parsed.append(tuple(tuple(group) for group in groups))
        _check_tree(tuple(algorithms), tuple(parsed), source)
        return cls(tuple(algorithms), tuple(parsed))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tree:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{path}: no such tree file") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not JSON ({error})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def single_task(cls, algorithms: Sequence[str], num_layers: int) -> Tree:
        """STN: every algorithm alone at every depth."""
        algorithms = tuple(algorithms)
        return cls(algorithms, tuple(tuple((a,) for a in algorithms) for _ in range(num_layers)))

    @classmethod
    def shared(cls, algorithms: Sequence[str], num_layers: int) -> Tree:
        """MTN: one group of all algorithms at every depth."""
        algorithms = tuple(algorithms)
        return cls(algorithms, tuple((algorithms,) for _ in range(num_layers)))

    @classmethod
    def from_partitions(cls, algorithms: Sequence[str], partitions: Sequence[Sequence[Sequence[str]]]) -> Tree:
        """A tree from per-depth partitions, each group's algorithms and the groups in ``algorithms``' order."""
        order = {a: i for i, a in enumerate(algorithms)}
        depths = []
        for groups in partitions:
            ordered = sorted((tuple(sorted(g, key=order.__getitem__)) for g in groups), key=lambda g: order[g[0]])
            depths.append(tuple(ordered))
        return cls(tuple(algorithms), tuple(depths))


def _check_tree(algorithms: tuple[str, ...], depths: tuple[tuple[tuple[str, ...], ...], ...], source: str) -> None:
    if not algorithms:
        raise ValueError(f"{source}: no algorithms")
    for algorithm in algorithms:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"{source}: unknown algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")
    if len(set(algorithms)) != len(algorithms):
        raise ValueError(f"{source}: an algorithm is listed twice in algorithms")
    if not depths:
        raise ValueError(f"{source}: no depths (a tree needs at least one processor layer)")
    everyone = set(algorithms)
    parent: dict[str, int] | None = None
    for depth, groups in enumerate(depths, start=1):
        seen: dict[str, int] = {}
        for index, group in enumerate(groups):
            if not group:
                raise ValueError(f"{source}: depth {depth}, group {index + 1} is empty")
            for algorithm in group:
                if algorithm not in everyone:
                    raise ValueError(f"{source}: depth {depth}, group {index + 1}: {algorithm!r} is not one of "
                                     f"the tree's algorithms")
                if algorithm in seen:
                    raise ValueError(f"{source}: depth {depth}: {algorithm!r} is in two groups")
                seen[algorithm] = index
        missing = everyone - set(seen)
        if missing:
            raise ValueError(f"{source}: depth {depth} leaves out {', '.join(sorted(missing))}")
        if parent is not None:
            for index, group in enumerate(groups):
                above = {parent[a] for a in group}
                if len(above) > 1:
                    raise ValueError(f"{source}: depth {depth}, group {index + 1} ({', '.join(group)}) spans "
                                     f"{len(above)} groups of depth {depth - 1}: a tree only branches")
        parent = seen


_FINAL = (  # tree_structure_final.txt, depths 1-4 of the file
    (("bfs", "dfs", "topological_sort", "strongly_connected_components", "dag_shortest_paths", "bellman_ford",
      "articulation_points", "bridges"), ("dijkstra", "mst_prim"), ("floyd_warshall", "mst_kruskal")),
    (("dfs", "topological_sort", "strongly_connected_components", "dag_shortest_paths", "articulation_points",
      "bridges"), ("bfs", "bellman_ford"), ("dijkstra",), ("mst_prim",), ("floyd_warshall",), ("mst_kruskal",)),
    (("dfs", "topological_sort", "dag_shortest_paths"), ("strongly_connected_components",),
     ("articulation_points", "bridges"), ("bfs",), ("bellman_ford",), ("dijkstra",), ("mst_prim",),
     ("floyd_warshall",), ("mst_kruskal",)),
    (("dfs", "topological_sort"), ("dag_shortest_paths",), ("strongly_connected_components",),
     ("articulation_points", "bridges"), ("bfs",), ("bellman_ford",), ("dijkstra",), ("mst_prim",),
     ("floyd_warshall",), ("mst_kruskal",)),
)
#: The study's published tree for its 5-layer Edge Transformer (see the module docstring).
PUBLISHED_TREE = Tree.from_partitions(ALGORITHMS, ((tuple(ALGORITHMS),), *_FINAL))
