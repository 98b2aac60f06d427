"""Figures of a tree search: affinity heatmaps and the branching tree drawn as a dendrogram (needs matplotlib:
``pip install gnnbench[plots]``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .tree import Tree

_SHORT = {"bfs": "BFS", "dfs": "DFS", "topological_sort": "Topo", "articulation_points": "AP", "bridges": "Bridges",
          "strongly_connected_components": "SCC", "mst_kruskal": "Kruskal", "mst_prim": "Prim",
          "dijkstra": "Dijkstra", "bellman_ford": "B-F", "dag_shortest_paths": "DAG SP", "floyd_warshall": "F-W"}


def short_name(algorithm: str) -> str:
    return _SHORT.get(algorithm, algorithm)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("figures need matplotlib: pip install 'gnnbench[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def affinity_heatmap(T: np.ndarray, algorithms: Sequence[str], path: str | os.PathLike, *, title: str = "") -> Path:
    """``T[i, j]`` (task i's estimated score when trained with j) as an annotated heatmap."""
    plt = _pyplot()
    T = np.asarray(T, dtype=float)
    names = [short_name(a) for a in algorithms]
    size = 1.2 + 0.55 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(T, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("trained with task j")
    ax.set_ylabel("target task i")
    finite = T[np.isfinite(T)]
    middle = float(finite.mean()) if finite.size else 0.0
    for i in range(T.shape[0]):
        for j in range(T.shape[1]):
            if np.isfinite(T[i, j]):
                ax.text(j, i, f"{T[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if T[i, j] < middle else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="estimated score")
    return _save(plt, fig, ax, path, title)


def _save(plt, fig, ax, path: str | os.PathLike, title: str) -> Path:
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def leaf_order(tree: Tree) -> list[str]:
    """The algorithms ordered so that every group of every depth is contiguous."""
    order = list(tree.algorithms)
    for depth in range(tree.num_layers, 0, -1):  # stable sorts, deepest first, give a nested order
        order.sort(key=lambda a, d=depth: tree.group_of(a, d))
    return order


def tree_figure(tree: Tree, path: str | os.PathLike, *, title: str = "") -> Path:
    """The branching tree as a dendrogram: depth 1 at the top, one node per group, the algorithms as leaves."""
    plt = _pyplot()
    leaves = leaf_order(tree)
    x = {a: float(i) for i, a in enumerate(leaves)}

    def centre(group: Sequence[str]) -> float:
        return float(np.mean([x[a] for a in group]))

    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(leaves), 1.2 + 0.8 * tree.num_layers))
    for depth, groups in enumerate(tree.depths, start=1):
        for group in groups:
            cx = centre(group)
            ax.plot([cx], [depth], "o", color="tab:blue", markersize=5 + 1.5 * len(group))
            if depth > 1:
                parent = next(g for g in tree.depths[depth - 2] if group[0] in g)
                ax.plot([centre(parent), cx], [depth - 1, depth], "-", color="tab:gray", linewidth=1.2)
        if depth == tree.num_layers:
            for group in groups:
                for a in group:
                    ax.plot([centre(group), x[a]], [depth, depth + 0.6], "-", color="tab:gray", linewidth=0.8)
    ax.set_xticks(range(len(leaves)), [short_name(a) for a in leaves], rotation=60, ha="right")
    ax.set_yticks(range(1, tree.num_layers + 1), [f"layer {d}" for d in range(1, tree.num_layers + 1)])
    ax.set_ylim(tree.num_layers + 0.8, 0.5)
    ax.set_xlim(-0.6, len(leaves) - 0.4)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _save(plt, fig, ax, path, title)
