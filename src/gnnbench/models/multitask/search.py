"""Layer-wise tree search (the branching study's AutoBRANE, https://arxiv.org/abs/2512.01113, Section 4).

A FIFO queue of entries ``(task set S, depth l)`` starts at ``(all tasks, 1)``. For each entry:

1. a base network over ``S`` (one shared stack, every layer) starts from its parent's weights (the root from a fresh
   initialisation), its layers above ``l`` (depths ``1..l-1``, which ``S`` already shares) frozen, and trains
   ``base_steps`` steps on ``S``;
2. the task affinity of ``S`` at depth ``l`` (:mod:`.affinity`: projected per-sample gradients of depths ``l..L``,
   logistic-regression estimates over random subsets) is clustered (:mod:`.clustering`: SDP, spectral fallback);
3. the partition is ``S``'s groups at depth ``l``; each group ``C`` with more than one task becomes the entry
   ``(C, l + 1)`` while ``l < max_depth``, starting from this entry's base network.

A task keeps its group at the depths below where the search stopped for it. Budgets: ``max_depth`` (the deepest
depth at which tasks are split) and ``max_groups`` (the most groups at one depth: an entry whose best partition would
exceed it takes the best-scoring partition of the sweep that fits, or stays one group; recorded in the log).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...algo.specs import check_algorithm
from ...arguments import check_float, check_int
from .net import MultitaskNet, inherit
from .tree import Tree

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchSettings:
    """The search's model, training and estimation budget (the study's values in comments)."""

    processor: str = "mpnn"  # the study: edge_transformer
    hidden: int = 64  # the study: 192
    num_layers: int = 3  # the study: 5
    nb_heads: int = 1  # the study: 12 (edge_transformer)
    base_steps: int = 200  # base-network training steps per entry
    batch_size: int = 32  # the study: 4
    learning_rate: float = 1e-3  # the study: 2.5e-4
    grad_clip: float = 1.0
    num_samples: int = 1000  # per-task samples for the gradient features
    projection_dim: int = 400
    num_subsets: int = 200
    subset_size: int = 3
    regularization: float = 1e3  # the logistic regression's lambda (C = 1 / lambda)
    eval_batch_size: int = 32  # graphs per evaluation batch (estimated scores on the validation split)
    clustering: str = "sdp"  # or "spectral"
    max_depth: int | None = None  # default: num_layers
    max_groups: int | None = None  # default: no cap
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("hidden", "num_layers", "nb_heads", "base_steps", "batch_size", "num_samples", "projection_dim",
                     "num_subsets", "subset_size", "eval_batch_size"):
            check_int(name, getattr(self, name), minimum=1)
        check_float("learning_rate", self.learning_rate, minimum=0.0, open_min=True)
        check_float("grad_clip", self.grad_clip, minimum=0.0)
        check_float("regularization", self.regularization, minimum=0.0, open_min=True)
        if self.max_depth is not None:
            check_int("max_depth", self.max_depth, minimum=1, maximum=self.num_layers)
        if self.max_groups is not None:
            check_int("max_groups", self.max_groups, minimum=1)
        check_int("seed", self.seed, minimum=0)
        if self.clustering not in ("sdp", "spectral"):
            raise ValueError(f"clustering must be 'sdp' or 'spectral', got {self.clustering!r}")


@dataclass
class Entry:
    """One search step: the tasks, the depth, what the clustering made of them."""

    tasks: list[str]
    depth: int
    groups: list[list[str]] = field(default_factory=list)
    affinity_file: str | None = None
    lam: float | None = None
    note: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class SearchResult:
    tree: Tree
    entries: list[Entry]
    settings: SearchSettings
    seconds: float
    check: dict[str, Any] | None = None  # the estimator check (:func:`check_estimator`), when asked for

    def to_dict(self) -> dict[str, Any]:
        return {"tree": self.tree.to_dict(), "entries": [asdict(e) for e in self.entries],
                "settings": asdict(self.settings), "seconds": self.seconds,
                "check": None if self.check is None else {k: v for k, v in self.check.items() if k != "rows"}}


def search_tree(algorithms: Sequence[str], settings: SearchSettings, out_dir: str | os.PathLike, *,
                progress: bool = False, check_subsets: int = 0, check_steps: int | None = None,
                figures: bool = False) -> SearchResult:
    """Search a branching tree over ``algorithms``; writes ``tree.json``, ``search.json`` and each entry's affinity
    (``affinity/depth<l>-<k>.json``, with a heatmap and ``tree.png`` when ``figures``) under ``out_dir``.

    ``check_subsets``: also train that many of the root's sampled subsets for real (``check_steps`` steps each,
    default ``settings.base_steps``) and compare with their estimated scores (:func:`check_estimator`;
    ``estimator.json``)."""
    from ...harness.multitask_family import fit
    from .affinity import task_affinity

    algorithms = [check_algorithm(a) for a in algorithms]
    if len(set(algorithms)) != len(algorithms) or not algorithms:
        raise ValueError(f"algorithms must be distinct and non-empty, got {algorithms}")
    out = Path(out_dir)
    (out / "affinity").mkdir(parents=True, exist_ok=True)
    max_depth = settings.max_depth or settings.num_layers
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    groups_at: list[list[tuple[str, ...]]] = [[] for _ in range(settings.num_layers)]
    entries: list[Entry] = []
    queue: deque[tuple[tuple[str, ...], int, MultitaskNet | None]] = deque([(tuple(algorithms), 1, None)])
    check_subsets = check_int("check_subsets", check_subsets, minimum=0)
    check = None
    while queue:
        tasks, depth, parent = queue.popleft()
        entry = Entry(list(tasks), depth)
        entries.append(entry)
        if len(tasks) == 1:
            groups_at[depth - 1].append(tasks)
            entry.groups, entry.note = [list(tasks)], "one task: nothing to split"
            continue
        t0 = time.perf_counter()
        net = _base_network(tasks, settings, generator)
        if parent is not None:
            inherit(net, parent)
        net.freeze_below(depth)
        fit(net, steps=settings.base_steps, batch_size=settings.batch_size, learning_rate=settings.learning_rate,
            grad_clip=settings.grad_clip, rng=rng, device=settings.device, progress=progress)
        t1 = time.perf_counter()
        affinity = task_affinity(net, list(tasks), depth, num_samples=settings.num_samples,
                                 projection_dim=settings.projection_dim, num_subsets=settings.num_subsets,
                                 subset_size=min(settings.subset_size, len(tasks)), seed=settings.seed,
                                 lam=settings.regularization, batch_size=settings.eval_batch_size,
                                 device=settings.device)
        t2 = time.perf_counter()
        name = f"depth{depth}-{sum(1 for e in entries if e.depth == depth)}.json"
        (out / "affinity" / name).write_text(json.dumps(affinity.to_dict(), indent=1) + "\n")
        entry.affinity_file = f"affinity/{name}"
        if figures:
            from .figures import affinity_heatmap

            affinity_heatmap(affinity.matrix, affinity.algorithms, (out / "affinity" / name).with_suffix(".png"),
                             title=f"task affinity at layer {depth} ({settings.processor}, hidden {settings.hidden})")
        if check_subsets and parent is None:
            check = check_estimator(net, affinity, depth, settings, check_subsets, check_steps or settings.base_steps,
                                    progress=progress)
            (out / "estimator.json").write_text(json.dumps(check, indent=1) + "\n")
        budget = None
        if settings.max_groups is not None:
            used = len(groups_at[depth - 1]) + sum(1 for t, d, _ in queue if d == depth)
            budget = max(1, settings.max_groups - used)
        groups, entry.lam, entry.note = _partition(affinity, list(tasks), settings.clustering, budget)
        entry.groups = [list(g) for g in groups]
        entry.seconds = {"train": t1 - t0, "affinity": t2 - t1, "clustering": time.perf_counter() - t2}
        logger.info("depth %d: %s -> %s", depth, tasks, groups)
        groups_at[depth - 1].extend(groups)
        for group in groups:
            if depth < max_depth and depth < settings.num_layers:
                queue.append((group, depth + 1, net))
    tree = _complete(algorithms, groups_at)
    result = SearchResult(tree, entries, settings, time.perf_counter() - start, check)
    tree.save(out / "tree.json")
    if figures:
        from .figures import tree_figure

        tree_figure(tree, out / "tree.png", title=f"searched tree ({settings.processor}, hidden {settings.hidden}, "
                                                  f"{settings.base_steps} base steps)")
    (out / "search.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    return result


def _base_network(tasks: Sequence[str], settings: SearchSettings, generator: torch.Generator) -> MultitaskNet:
    return MultitaskNet(tasks, settings.processor, settings.hidden, settings.num_layers, variant="mtn",
                        nb_heads=settings.nb_heads, generator=generator).to(settings.device)


def _partition(affinity: Any, tasks: list[str], method: str, budget: int | None
               ) -> tuple[list[tuple[str, ...]], float | None, str]:
    """The clustering's partition of ``tasks`` (names), its lambda (or k), and a note (fallbacks, budgets)."""
    from .clustering import cluster_tasks

    result = cluster_tasks(np.asarray(affinity.matrix, dtype=float), method=method, names=tasks)
    notes = [f"spectral fallback: {result.fallback}"] if result.fallback else []
    partition, value = result.partition, result.lam if result.lam is not None else result.k
    if budget is not None and len(partition) > budget:
        fitting = [(result.objectives[v], -len(p), -float(v), v, p) for v, p in result.partitions.items()
                   if len(p) <= budget]
        if fitting:
            *_, value, partition = max(fitting)
            notes.append(f"capped at {budget} groups (swept value {value})")
        else:
            partition, value = (tuple(range(len(tasks))),), None
            notes.append(f"kept as one group: no partition within the budget of {budget} groups")
    groups = [tuple(tasks[i] for i in part) for part in partition]
    return groups, (float(value) if value is not None else None), "; ".join(notes)


def _complete(algorithms: list[str], groups_at: list[list[tuple[str, ...]]]) -> Tree:
    """Per-depth partitions: a task not split at some depth keeps its group from the depth above."""
    partitions: list[list[tuple[str, ...]]] = []
    for depth, groups in enumerate(groups_at):
        placed = {a for g in groups for a in g}
        carried = []
        if depth == 0:
            missing = [a for a in algorithms if a not in placed]
            if missing:
                carried.append(tuple(missing))
        else:
            for group in partitions[-1]:
                rest = tuple(a for a in group if a not in placed)
                if rest:
                    carried.append(rest)
        partitions.append(list(groups) + carried)
    return Tree.from_partitions(algorithms, partitions)


def check_estimator(base: MultitaskNet, affinity: Any, depth: int, settings: SearchSettings, num_subsets: int,
                    steps: int, *, progress: bool = False) -> dict[str, Any]:
    """Train ``num_subsets`` of the affinity's distinct subsets for real and compare with their estimates.

    Each subset's network starts from ``base`` (a shared network over the subset's tasks, the layers above ``depth``
    frozen, as its estimate assumed) and trains ``steps`` steps on the subset; its validation score per task is the
    real score. Returns every (subset, task) row and the summary: mean absolute and relative error, how many are
    within 5% of the real score (the study's claim), Pearson and Spearman correlations."""
    from ...harness.multitask_family import fit, score

    num_subsets = check_int("num_subsets", num_subsets, minimum=1)
    steps = check_int("steps", steps, minimum=1)
    seen, chosen = set(), []
    for estimate in affinity.subsets:
        key = frozenset(estimate.tasks)
        if key not in seen:
            seen.add(key)
            chosen.append(estimate)
        if len(chosen) == num_subsets:
            break
    rows, start = [], time.perf_counter()
    for number, estimate in enumerate(chosen):
        generator = torch.Generator().manual_seed(settings.seed + 1 + number)
        net = _base_network(estimate.tasks, settings, generator)
        inherit(net, base)
        net.freeze_below(depth)
        fit(net, steps=steps, batch_size=settings.batch_size, learning_rate=settings.learning_rate,
            grad_clip=settings.grad_clip, rng=np.random.default_rng([settings.seed, 1 + number]),
            device=settings.device, progress=progress)
        real = score(net, affinity.settings.get("split", "valid"), batch_size=settings.eval_batch_size,
                     device=settings.device)
        for task in estimate.tasks:
            rows.append({"subset": number, "tasks": list(estimate.tasks), "task": task,
                         "base": float(affinity.base_scores[task]), "estimated": float(estimate.scores[task]),
                         "real": float(real[task])})
    return {"num_subsets": len(chosen), "steps": steps, "depth": depth, "seconds": time.perf_counter() - start,
            **estimator_summary(rows), "rows": rows}


def estimator_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Errors and correlations of ``rows`` (``estimated`` vs ``real`` scores)."""
    from scipy import stats

    est = np.array([r["estimated"] for r in rows], dtype=float)
    real = np.array([r["real"] for r in rows], dtype=float)
    if est.size == 0:
        raise ValueError("no (subset, task) rows to summarise")
    error = np.abs(est - real)
    relative = error / np.maximum(np.abs(real), 1e-12)
    varied = est.size > 1 and np.ptp(est) > 0 and np.ptp(real) > 0
    return {"pairs": int(est.size), "mean_abs_error": float(error.mean()),
            "mean_relative_error": float(relative.mean()), "within_5_percent": int((relative <= 0.05).sum()),
            "pearson": float(stats.pearsonr(est, real)[0]) if varied else None,
            "spearman": float(stats.spearmanr(est, real)[0]) if varied else None}
