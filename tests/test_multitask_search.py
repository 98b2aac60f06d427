"""The layer-wise tree search end to end on the CLI (tiny), its budgets, and the estimator check's summary."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from gnnbench.cli import main
from gnnbench.models.multitask import Tree
from gnnbench.models.multitask.search import SearchSettings, _complete, _partition, estimator_summary

TASKS = ("bfs", "dfs", "dijkstra", "mst_prim")
TINY = ["--hidden", "8", "--layers", "2", "--base-steps", "2", "--batch-size", "4", "--samples", "6",
        "--projection-dim", "8", "--subsets", "6", "--subset-size", "2", "--no-progress"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("search")
    assert main(["branch", "search", "--algorithms", ",".join(TASKS), *TINY, "--check-subsets", "2",
                 "--check-steps", "1", "--out", str(out)]) == 0
    return out


def test_search_writes_a_tree_that_branch_train_takes(searched, tmp_path, capsys):
    tree = Tree.load(searched / "tree.json")
    assert set(tree.algorithms) == set(TASKS) and tree.num_layers == 2
    log = json.loads((searched / "search.json").read_text())
    root = log["entries"][0]
    assert root["tasks"] == list(TASKS) and root["depth"] == 1
    assert {frozenset(g) for g in root["groups"]} == {frozenset(g) for g in tree.depths[0]}
    for entry in log["entries"]:  # every searched entry left its affinity matrix and heatmap
        if entry["affinity_file"]:
            affinity = json.loads((searched / entry["affinity_file"]).read_text())
            assert affinity["algorithms"] == entry["tasks"]
            assert (searched / entry["affinity_file"]).with_suffix(".png").stat().st_size > 1000
    assert (searched / "tree.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["branch", "train", "--tree", str(searched / "tree.json"), "--set", "train.steps=1",
                 "--set", "model.hidden=8", "--set", "train.batch_size=2", "--set", "data.test=test_16",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert Tree.load(tmp_path / "run" / "tree.json") == tree


def test_the_estimator_check_compares_estimated_and_real_scores(searched):
    check = json.loads((searched / "estimator.json").read_text())
    assert check["num_subsets"] == 2 and check["pairs"] == len(check["rows"]) == 4
    for row in check["rows"]:
        assert 0.0 <= row["estimated"] <= 1.0 and 0.0 <= row["real"] <= 1.0 and row["task"] in row["tasks"]
    assert check["mean_abs_error"] == pytest.approx(np.mean([abs(r["estimated"] - r["real"]) for r in check["rows"]]))


def test_estimator_summary_by_hand():
    rows = [{"estimated": 0.5, "real": 0.5}, {"estimated": 0.6, "real": 0.5}, {"estimated": 0.9, "real": 1.0}]
    summary = estimator_summary(rows)
    assert summary["mean_abs_error"] == pytest.approx(0.2 / 3)
    assert summary["mean_relative_error"] == pytest.approx((0 + 0.2 + 0.1) / 3)
    assert summary["within_5_percent"] == 1
    assert summary["pearson"] == pytest.approx(np.corrcoef([0.5, 0.6, 0.9], [0.5, 0.5, 1.0])[0, 1])
    with pytest.raises(ValueError, match="no .* rows"):
        estimator_summary([])


def _planted(sizes: list[int], high: float = 0.9, low: float = 0.1) -> np.ndarray:
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.where(labels[:, None] == labels[None, :], high, low)


def test_partition_follows_the_planted_affinity_and_the_group_budget():
    tasks = ["bfs", "dfs", "dijkstra", "mst_prim", "floyd_warshall", "mst_kruskal"]
    affinity = types.SimpleNamespace(matrix=_planted([2, 2, 2]))
    groups, _, note = _partition(affinity, tasks, "sdp", None)
    assert {frozenset(g) for g in groups} == {frozenset(tasks[0:2]), frozenset(tasks[2:4]), frozenset(tasks[4:6])}
    assert note == ""
    capped, _, note = _partition(affinity, tasks, "sdp", 2)
    assert len(capped) <= 2 and sorted(a for g in capped for a in g) == sorted(tasks)
    assert "2 groups" in note
    one, value, note = _partition(affinity, tasks, "spectral", 1)  # k = 1 of the sweep fits the budget
    assert one == [tuple(tasks)] and value == 1.0 and "capped at 1 groups" in note


def test_tasks_not_split_further_keep_their_group():
    tasks = ["bfs", "dfs", "dijkstra"]
    tree = _complete(tasks, [[("bfs", "dfs"), ("dijkstra",)], [("bfs",), ("dfs",)], []])
    assert tree.depths[1] == (("bfs",), ("dfs",), ("dijkstra",))
    assert tree.depths[2] == tree.depths[1]
    assert _complete(tasks, [[], []]).depths == ((tuple(tasks),), (tuple(tasks),))


@pytest.mark.parametrize("field, value, message", [
    ("hidden", 0, "hidden"), ("max_depth", 5, "max_depth"), ("clustering", "kmeans", "clustering"),
    ("learning_rate", 0.0, "learning_rate"),
])
def test_bad_settings_are_named(field, value, message):
    with pytest.raises(ValueError, match=message):
        SearchSettings(**{field: value})
