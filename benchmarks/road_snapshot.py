"""Monthly snapshot loading: ``RoadAccidentDataset.snapshot`` against ML4RoadSafety's loader on the same data.

The region is the synthetic state of ``tests/synthetic/state_scale.py`` (300k nodes, 700k directed
edges, 24 months of accidents, node weather and yearly traffic volume), generated once into ``--work``
both as gnnbench tables and as an ML4RoadSafety release directory holding the same graph (same edge
order), accidents, weather and AADT.

* gnnbench: the dataset is built from the tables (``write_snapshot_store``, timed once) and opened;
  ``dataset.snapshot(year, month)`` is timed ``--repeats`` times for one month (median), then once
  for every month (median).
* baseline: one month re-read from the release files the way ML4RoadSafety's
  ``TrafficAccidentDataset.load_monthly_data`` does it, with its static graph (``adj_matrix.pt``,
  ``Edges/edge_features.pt``) loaded once beforehand and not timed: ``pd.read_csv`` of
  ``accidents_monthly.csv`` filtered to the month and coalesced into positive edges, ``pd.read_csv`` of
  ``Nodes/node_features_{year}_{month}.csv`` with missing weather filled by the column mean, ``torch.load``
  of ``Edges/edge_features_traffic_{year}.pt`` for the AADT, and a cloned ``Data`` with the node
  features concatenated. Its negative-edge sampling is left out (it only makes the baseline slower).

Targets (full scale): a snapshot in at most 50 ms (median) and at least 20x faster than the baseline.

    python benchmarks/road_snapshot.py [--quick] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic generators
from synthetic.state_scale import benchmark_region  # noqa: E402

TARGET_MS = 50.0
TARGET_RATIO = 20.0


class ML4RoadSafetyMonthly:
    """The per-month part of ML4RoadSafety's loader over a release state directory (static part preloaded)."""

    def __init__(self, state_dir: Path) -> None:
        import torch
        from torch_geometric.data import Data

        self.state_dir = state_dir
        adjacency = torch.load(state_dir / "adj_matrix.pt", weights_only=False)
        self.data = Data(edge_index=adjacency.coalesce().indices().long())
        features = torch.load(state_dir / "Edges" / "edge_features.pt", weights_only=False)
        lengths = features["length"].coalesce().values()
        columns = [features["oneway"].coalesce().values()]
        columns += [features[key].coalesce().values() for key in features if key not in ("oneway", "length")]
        columns.append((lengths - lengths.mean()) / lengths.std())
        self.data.edge_attr = torch.stack(columns, dim=1)

    def load(self, year: int, month: int) -> dict:
        import pandas as pd
        import torch
        from torch_geometric.utils import coalesce

        accidents = pd.read_csv(self.state_dir / "accidents_monthly.csv")
        monthly = accidents[accidents["year"] == year]
        monthly = monthly[monthly["month"] == month]
        monthly = monthly[["node_1_idx", "node_2_idx", "acc_count", "year", "month"]].values
        positive = torch.Tensor(monthly[:, :2])
        weights = torch.Tensor(monthly[:, 2])
        positive, weights = coalesce(positive.T, weights)
        positive = positive.type(torch.int64).T

        nodes = pd.read_csv(self.state_dir / "Nodes" / f"node_features_{year}_{month}.csv")
        nodes = nodes[["tavg", "tmin", "tmax", "prcp", "wspd", "pres"]]
        nodes = nodes.fillna(nodes.mean(axis=0)).fillna(0)
        node_features = torch.Tensor(nodes.values)

        traffic = self.state_dir / "Edges" / f"edge_features_traffic_{year}.pt"
        if traffic.exists():
            values = torch.load(traffic, weights_only=False)["AADT"].coalesce().values()
            mean = values[~torch.isnan(values)].mean()
            values[torch.isnan(values)] = 0 if torch.isnan(mean) else mean
            edge_features = values.view(-1, 1)
        else:
            edge_features = torch.zeros(self.data.edge_index.shape[1], 1)
        data = self.data.clone()
        data.x = node_features if data.x is None else torch.cat([data.x, node_features], dim=1)
        return {"data": data, "accidents": positive, "accident_counts": weights, "rows": monthly,
                "temporal_node_features": node_features, "temporal_edge_features": edge_features}


def _timed(function, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args)
    return (time.perf_counter() - start) * 1000.0, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 20k-node region (CI smoke run)")
    parser.add_argument("--work", type=Path, default=None,
                        help="directory caching the generated region (default: a temporary directory)")
    parser.add_argument("--repeats", type=int, default=None, help="snapshot timings (default 10 quick, 50 full)")
    parser.add_argument("--baseline-repeats", type=int, default=None,
                        help="baseline timings (default 2 quick, 5 full)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gnnbench-state-scale-") as scratch:
        work = args.work or Path(scratch)
        start = time.perf_counter()
        region = benchmark_region(work, quick=args.quick)
        print(f"region: {region.stats['nodes']:,} nodes, {region.stats['edges']:,} directed edges, "
              f"{region.stats['accident_rows']:,} accident rows over {12 * len(region.years)} months "
              f"[{time.perf_counter() - start:.1f} s to generate or load, {region.directory}]", flush=True)
        return run(args, region)


def run(args, region) -> int:
    from gnnbench.datasets.road_accidents import RoadAccidentDataset

    repeats = args.repeats or (10 if args.quick else 50)
    baseline_repeats = args.baseline_repeats or (2 if args.quick else 5)
    root = region.directory
    state = region.region.code
    shutil.rmtree(root / "processed" / state, ignore_errors=True)
    build_ms, dataset = _timed(RoadAccidentDataset, root, state, "accident_occurrence")
    open_ms, dataset = _timed(RoadAccidentDataset, root, state, "accident_occurrence")
    year, month = region.years[-1], 6
    first_ms, snapshot = _timed(dataset.snapshot, year, month)
    ours = [_timed(dataset.snapshot, year, month)[0] for _ in range(repeats)]
    every = [_timed(dataset.snapshot, y, m)[0] for y, m in dataset.months]
    count_ms = [_timed(RoadAccidentDataset.snapshot, _with_task(dataset, "accident_count"), year, month)[0]
                for _ in range(max(3, repeats // 5))]
    print(f"gnnbench: dataset built in {build_ms / 1000:.1f} s, opened in {open_ms:.0f} ms; snapshot x "
          f"{tuple(snapshot.x.shape)}, edge_attr {tuple(snapshot.edge_attr.shape)}, "
          f"{int(snapshot.y[snapshot.eval_mask].sum()):,} segments with crashes in {year}-{month:02d}", flush=True)

    prep_start = time.perf_counter()
    baseline = ML4RoadSafetyMonthly(region.release)
    prep_s = time.perf_counter() - prep_start
    theirs, result = [], None
    for _ in range(baseline_repeats):
        elapsed, result = _timed(baseline.load, year, month)
        theirs.append(elapsed)
    positives = result["accidents"]
    print(f"ML4RoadSafety loader: static graph loaded in {prep_s:.1f} s (not timed); month {year}-{month:02d}: "
          f"{len(positives):,} positive edges, x {tuple(result['data'].x.shape)}", flush=True)
    ours_pairs = _unordered(snapshot.edge_index[:, snapshot.eval_mask & (snapshot.y > 0)].T.numpy(),
                            snapshot.num_nodes)
    their_pairs = _unordered(result["rows"][:, :2], snapshot.num_nodes)
    print(f"positive road segments: gnnbench {len(ours_pairs):,}, release file {len(their_pairs):,}, identical "
          f"sets: {np.array_equal(ours_pairs, their_pairs)} (ML4RoadSafety's loader keeps {len(positives):,}: it "
          f"coalesces float32 node indices, which merges distinct edges once N * N > 2**24)")

    ours_ms, theirs_ms = statistics.median(ours), statistics.median(theirs)
    ratio = theirs_ms / ours_ms
    print()
    print("| loader | runs | median ms | min ms | speed-up |")
    print("|---|---:|---:|---:|---:|")
    print(f"| gnnbench snapshot({year}, {month}), occurrence | {len(ours)} | {ours_ms:.1f} | {min(ours):.1f} "
          f"| {ratio:,.0f}x |")
    print(f"| gnnbench snapshot, each of {len(every)} months | {len(every)} | {statistics.median(every):.1f} | "
          f"{min(every):.1f} | {theirs_ms / statistics.median(every):,.0f}x |")
    print(f"| gnnbench snapshot({year}, {month}), count task | {len(count_ms)} | {statistics.median(count_ms):.1f} "
          f"| {min(count_ms):.1f} | {theirs_ms / statistics.median(count_ms):,.0f}x |")
    print(f"| gnnbench first snapshot after opening | 1 | {first_ms:.1f} | {first_ms:.1f} | - |")
    print(f"| ML4RoadSafety load_monthly_data (no negative sampling) | {len(theirs)} | {theirs_ms:.1f} | "
          f"{min(theirs):.1f} | 1x |")
    print(f"\ntargets: <= {TARGET_MS:.0f} ms (measured {ours_ms:.1f} ms), >= {TARGET_RATIO:.0f}x "
          f"(measured {ratio:,.0f}x)")
    if not args.quick and (ours_ms > TARGET_MS or ratio < TARGET_RATIO):
        print("TARGET MISSED", file=sys.stderr)
        return 1
    return 0


def _unordered(pairs: np.ndarray, num_nodes: int) -> np.ndarray:
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return np.unique(pairs.min(axis=1) * num_nodes + pairs.max(axis=1))


def _with_task(dataset, task: str):
    """The same opened dataset answering another task (shares the memory-mapped store)."""
    import copy

    other = copy.copy(dataset)
    other.task = task
    return other


if __name__ == "__main__":
    sys.exit(main())
