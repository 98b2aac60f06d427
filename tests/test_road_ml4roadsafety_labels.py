"""An imported ML4RoadSafety release as a dataset: gnnbench's per-segment labels, ML4RoadSafety's per-directed-pair
labels (``snapshot(..., labels="ml4roadsafety")``) and ``Evaluator(protocol="ml4roadsafety")`` on them, every
expected value derived from the synthetic release's ground truth (and scikit-learn), not from the code under test."""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from sklearn.metrics import (  # noqa: E402
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from synthetic.release import generate_release, write_release  # noqa: E402

from gnnbench.road import Evaluator  # noqa: E402
from gnnbench.road.manifest import read_manifest  # noqa: E402
from gnnbench.road.sources.ml4roadsafety import import_release  # noqa: E402

YEARS, MONTHS = (2019, 2020), (1, 2, 3)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(fixture, road root, extra accident rows) of an imported synthetic release.

    Two rows are added to ``accidents_monthly.csv``: one listed against a one-way street's direction (the pair
    is no edge; it is labelled on the street's edge) and one repeating a listed pair (its counts add up).
    """
    fixture = generate_release("MA", num_nodes=60, num_edges=200, years=YEARS, months=MONTHS, seed=11,
                               accident_rate=0.1, aadt_coverage=0.5, clipped_rate=0.25)
    root = tmp_path_factory.mktemp("labels")
    state_dir = write_release(root / "raw", fixture)
    edges = set(zip(fixture.edge_src.tolist(), fixture.edge_dst.tolist()))
    oneway = next(s for s in np.flatnonzero(fixture.seg_oneway)
                  if (int(fixture.seg_v[s]), int(fixture.seg_u[s])) not in edges)
    u, v = int(fixture.seg_u[oneway]), int(fixture.seg_v[oneway])
    first = int(fixture.acc_segment[0])
    a, b = int(fixture.seg_u[first]), int(fixture.seg_v[first])
    year, month = int(fixture.acc_year[0]), int(fixture.acc_month[0])
    osm = fixture.osm_ids
    extra = [(2019, 2, v, u, 2), (year, month, a, b, 3)]  # (year, month, node_1_idx, node_2_idx, count)
    path = state_dir / "accidents_monthly.csv"
    rows = [f"{y},{m},{osm[p]},{osm[q]},{c},{p},{q}" for y, m, p, q, c in extra]
    path.write_text(path.read_text() + "\n".join(rows) + "\n")
    import_release("MA", state_dir, root / "road" / "ml4roadsafety" / "tables" / "MA")
    return fixture, root / "road", extra, (u, v)


def dataset(release, task):
    from gnnbench.datasets import RoadAccidentDataset

    return RoadAccidentDataset(release[1], "MA", task=task, source="ml4roadsafety")


def listed_pairs(release, year, month) -> dict[tuple[int, int], int]:
    """Crashes per directed pair as the release lists them (its OSM edge rows plus the extra rows)."""
    fixture, _, extra, _ = release
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for y, m, seg, count in zip(fixture.acc_year, fixture.acc_month, fixture.acc_segment, fixture.acc_count):
        if (y, m) == (year, month):
            counts[(int(fixture.seg_u[seg]), int(fixture.seg_v[seg]))] += int(count)
    for y, m, p, q, count in extra:
        if (y, m) == (year, month):
            counts[(p, q)] += count
    return counts


def edge_pairs(release) -> list[tuple[int, int]]:
    fixture = release[0]
    return list(zip(fixture.edge_src.tolist(), fixture.edge_dst.tolist()))


def directed_truth(release, year, month) -> np.ndarray:
    """Each edge's label under ML4RoadSafety: its listed pair, or, for a pair that is no edge, the reverse edge."""
    pairs = edge_pairs(release)
    index = {pair: i for i, pair in enumerate(pairs)}
    truth = np.zeros(len(pairs))
    for (p, q), count in listed_pairs(release, year, month).items():
        truth[index[(p, q)] if (p, q) in index else index[(q, p)]] += count
    return truth


def reference_negatives(pairs, positive) -> np.ndarray:
    """ML4RoadSafety's negatives (data_loaders.py: np.isin(all_edges, pos_edges).all(axis=1)), with Python sets."""
    touched = {node for pair, p in zip(pairs, positive) if p for node in pair}
    return np.array([not p and not (u in touched and v in touched) for (u, v), p in zip(pairs, positive)])


def test_segment_labels_share_a_two_way_roads_count(release):
    data = dataset(release, "accident_count")
    pairs = edge_pairs(release)
    assert data.get_split() == {"train": [], "valid": [],  # MA's ML4RoadSafety test years are 2016-2022
                                "test": [(year, month) for year in YEARS for month in MONTHS]}
    for year in YEARS:
        for month in MONTHS:
            per_road: dict[frozenset, int] = defaultdict(int)
            for (p, q), count in listed_pairs(release, year, month).items():
                per_road[frozenset((p, q))] += count
            expected = [per_road.get(frozenset(pair), 0) for pair in pairs]
            snap = data.snapshot(year, month)
            assert snap.y.tolist() == expected
            roads = {frozenset(pair) for pair in pairs}
            assert int(snap.eval_mask.sum()) == len(roads)  # each road once
            assert {frozenset(pair) for pair, m in zip(pairs, snap.eval_mask.tolist()) if m} == roads


@pytest.mark.parametrize("task", ["accident_count", "accident_occurrence"])
def test_ml4roadsafety_labels_are_per_directed_pair(release, task):
    data = dataset(release, task)
    pairs = edge_pairs(release)
    two_way_split = 0
    for year in YEARS:
        for month in MONTHS:
            truth = directed_truth(release, year, month)
            snap = data.snapshot(year, month, labels="ml4roadsafety")
            expected = truth if task == "accident_count" else (truth > 0).astype(float)
            assert snap.y.tolist() == expected.tolist()
            positive = truth > 0
            assert snap.eval_mask.tolist() == (positive | reference_negatives(pairs, positive)).tolist()
            default = data.snapshot(year, month)
            two_way_split += int((default.y.numpy() != expected).sum())
    assert two_way_split > 0  # the two label modes differ on this release (two-way roads with crashes)
    assert read_manifest(release[1] / "ml4roadsafety" / "tables" / "MA")["quality"]["accidents"][
        "matched_reversed"] == 1


def test_ml4roadsafety_volume_labels_are_the_edges_own(release):
    fixture = release[0]
    data = dataset(release, "traffic_volume")
    segment = fixture.edge_segment
    own = (fixture.seg_u[segment] == fixture.edge_src) & (fixture.seg_v[segment] == fixture.edge_dst)
    for year in YEARS:
        values = fixture.aadt[year][segment].astype(np.float64)
        upstream = np.where(own, values, np.nan)
        snap = data.snapshot(year, labels="ml4roadsafety")
        np.testing.assert_array_equal(snap.y.numpy(), upstream.astype(np.float32))
        assert snap.eval_mask.tolist() == np.isfinite(upstream).tolist()
        shared = data.snapshot(year)  # gnnbench: a reverse-only edge takes its twin's AADT
        np.testing.assert_array_equal(shared.y.numpy(), values.astype(np.float32))
        assert (np.isfinite(values) & ~own).any()


def score_of(pairs) -> np.ndarray:
    """A fixed 'model': a score per directed pair, with ties and values at exactly 0.5."""
    return np.array([round((u * 7 + v * 13) % 21 / 20, 2) for u, v in pairs])


def test_ml4roadsafety_protocol_on_the_dataset_matches_sklearn(release):
    data = dataset(release, "accident_occurrence")
    pairs = edge_pairs(release)
    scores = score_of(pairs)
    truth, preds, edges = [], [], []
    expected, weights, skipped = [], [], 0
    for year in YEARS:
        for month in MONTHS:
            snap = data.snapshot(year, month, labels="ml4roadsafety")
            mask = snap.eval_mask.numpy()
            truth.append(snap.y.numpy()[mask])
            preds.append(scores[mask])
            edges.append(snap.edge_index.numpy()[:, mask])
            positive = directed_truth(release, year, month) > 0
            if positive.sum() < 10:
                skipped += 1
                continue
            scored = positive | reference_negatives(pairs, positive)
            y, s = positive[scored], scores[scored]
            expected.append([roc_auc_score(y, s), average_precision_score(y, s), f1_score(y, s > 0.5),
                             recall_score(y, s > 0.5), precision_score(y, s > 0.5, zero_division=0)])
            weights.append(positive.sum())
    result = Evaluator("accident_occurrence", protocol="ml4roadsafety").eval(
        {"y_true": truth, "y_pred": preds, "edge_index": edges})
    assert result["months"] == len(YEARS) * len(MONTHS) and result["months_skipped"] == skipped
    assert len(weights) >= 3
    values = np.dot(weights, expected) / np.sum(weights)
    assert [result[name] for name in ("roc_auc", "average_precision", "f1", "recall", "precision")] == \
        pytest.approx(values.tolist())


def test_label_mode_errors(release):
    data = dataset(release, "accident_count")
    with pytest.raises(ValueError, match="labels must be one of 'segment', 'ml4roadsafety'; got 'directed'"):
        data.snapshot(2019, 1, labels="directed")
    data.store.meta["source_kind"] = "build"  # as a gnnbench build: its accidents sit on one edge per segment
    with pytest.raises(ValueError, match="labels='ml4roadsafety' needs an imported ML4RoadSafety release"):
        data.snapshot(2019, 1, labels="ml4roadsafety")


def test_reversed_accident_rows_are_warned(release, tmp_path, caplog):
    fixture = release[0]
    state_dir = write_release(tmp_path / "raw", fixture)
    u, v = release[3]
    path = state_dir / "accidents_monthly.csv"
    osm = fixture.osm_ids
    path.write_text(path.read_text() + f"2019,2,{osm[v]},{osm[u]},2,{v},{u}\n")
    with caplog.at_level(logging.WARNING, logger="gnnbench.road"):
        out = import_release("MA", state_dir, tmp_path / "out" / "MA")
    assert "1 accident rows name a direction that is not an edge" in caplog.text
    assert read_manifest(out)["quality"]["accidents"]["matched_reversed"] == 1
