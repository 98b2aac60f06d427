"""Monthly snapshot loading: ``RoadAccidentDataset.snapshot`` against ML4RoadSafety's loader on the same data.

The region is the synthetic state of ``tests/synthetic/state_scale.py`` (300k nodes, 700k directed
edges, 24 months of accidents, node weather and yearly traffic volume), generated once into ``--work``
both as gnnbench tables and as an ML4RoadSafety release directory holding the same graph (same edge
order), accidents, weather and AADT.

* gnnbench: the dataset is built from the tables (``write_snapshot_store``, timed once) and opened;
  ``dataset.snapshot(year, month)`` is timed ``--repeats`` times for one month (median), then once
  for every month (median).
* Every timing of either loader runs until its output is in memory: one element per 4 KiB page of
  every returned tensor is read (gnnbench maps its edge arrays copy-on-write, so their page faults
  are counted; upstream's tensors are already in memory). Both run with one torch thread unless
  ``--threads`` says otherwise (on cores that other jobs share, torch's thread pool waits on them and
  both timings spread tenfold).
* baseline: :class:`ML4RoadSafetyLoader`, a re-implementation of ``TrafficAccidentDataset`` in
  ``ml_for_road_safety/data_loaders.py`` of https://github.com/VirtuosoResearch/ML4RoadSafety at
  commit ``d8b3d96a8dc9f1323e9595addd705c3c2c96b42c`` (the file last changed in ``0caf148``), with the
  constructor defaults that ``train.py`` passes: the static graph (``adj_matrix.pt``,
  ``Edges/edge_features.pt``) is loaded once, not timed; ``load_monthly_data(year, month)`` is timed
  ``--baseline-repeats`` times. It performs upstream's operations in upstream's order on the same file
  layout: ``pd.read_csv`` of ``accidents_monthly.csv``, filtered to the month; positive edges through
  ``torch.Tensor`` (float32), ``.long()`` and ``torch_geometric.utils.coalesce``; negative edges (every
  edge with an endpoint outside the month's positive node set, drawn without replacement,
  ``num_negative_edges=100000000`` as in ``train.py``: all of them); ``pd.read_csv`` of
  ``Nodes/node_features_{year}_{month}.csv`` with missing weather filled by the column mean then 0;
  ``torch.load`` of ``Edges/edge_features_traffic_{year}.pt`` with missing AADT filled by the mean; a
  cloned ``Data`` with the weather as ``x``. Upstream ran torch 1.10, whose ``torch.load`` unpickles
  freely: the re-implementation passes ``weights_only=False`` to keep that behaviour on torch >= 2.6.
  Without node2vec/centrality embeddings (there are none for a synthetic state) upstream's ``x`` is the
  weather alone; gnnbench's ``x`` also carries degree, betweenness, lon and lat.
  The same loader without its negative-sampling step is timed too (a lower bound on upstream's cost).

Both sides produce the same information: gnnbench labels every edge (``y``, ``eval_mask``);
upstream returns the positive edges and all the others as negatives. The positive road segments of
the month must be identical (checked; upstream's current loader casts the node indices to int64
before coalescing, so it merges no distinct edges while node ids stay below 2**24, the float32 range
its ``torch.Tensor`` round trip keeps exactly).

Targets: a snapshot in at most 50 ms (median) and at least 20x faster than upstream's loader, checked
at every size (``--quick``: a 20k-node region for CI, a few seconds).

    python benchmarks/road_snapshot.py [--quick] [--work DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import os
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
UPSTREAM = "https://github.com/VirtuosoResearch/ML4RoadSafety"
UPSTREAM_COMMIT = "d8b3d96a8dc9f1323e9595addd705c3c2c96b42c"
WEATHER = ["tavg", "tmin", "tmax", "prcp", "wspd", "pres"]
STATIC_KEYS = ["oneway", "access_ramp", "bus_stop", "crossing", "disused", "elevator", "escape", "living_street",
               "motorway", "motorway_link", "primary", "primary_link", "residential", "rest_area", "road",
               "secondary", "secondary_link", "stairs", "tertiary", "tertiary_link", "trunk", "trunk_link",
               "unclassified", "unsurfaced"]


class ML4RoadSafetyLoader:
    """``TrafficAccidentDataset`` of ML4RoadSafety's ``data_loaders.py`` (commit above), re-implemented.

    Defaults as ``train.py`` passes them: static edge features and monthly node weather on, monthly
    edge features off, no embeddings file, ``train_years`` empty (no normalisation statistics; with
    them upstream only adds a subtraction and a division per month). ``negatives=False`` skips the
    negative-edge step (not an upstream option: the lower bound printed next to the full loader).
    """

    def __init__(self, data_dir: Path, state_name: str, *, num_negative_edges: int = 100_000_000,
                 negatives: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.state_name = state_name
        self.num_negative_edges = num_negative_edges
        self.negatives = negatives
        self.data = self.load_static_network()
        self.data.edge_attr = self.load_static_edge_features()

    def _path(self, relative: str) -> str:
        return os.path.join(self.data_dir, self.state_name, relative)

    def load_static_network(self):
        import torch
        from torch_geometric.data import Data

        adjacency = torch.load(self._path("adj_matrix.pt"), weights_only=False)
        return Data(edge_index=adjacency.coalesce().indices().long())  # no embeddings file: x stays None

    def load_static_edge_features(self):
        import torch

        stored = torch.load(self._path("Edges/edge_features.pt"), weights_only=False)
        lengths = stored["length"].coalesce().values()
        mean = lengths[~torch.isnan(lengths)].mean()
        lengths[torch.isnan(lengths)] = mean
        scaled = (lengths - mean) / torch.std(lengths)
        columns = []
        for key in STATIC_KEYS:
            if key in stored:
                column = stored[key].coalesce().values()
                column[torch.isnan(column)] = 0
            else:
                column = torch.zeros(lengths.shape)
            columns.append(column)
        columns.append(scaled)
        features = torch.stack(columns, dim=1)
        if self.state_name == "NV":  # upstream pads Nevada's features by two rows
            features = torch.concat([features, torch.zeros(2, features.shape[1])], dim=0)
        return features

    def load_monthly_data(self, year: int, month: int) -> dict:
        import pandas as pd
        import torch
        from torch_geometric.utils import coalesce

        out = {}
        accidents = pd.read_csv(self._path("accidents_monthly.csv"))
        rows = accidents[accidents["year"] == year]
        rows = rows[rows["month"] == month]
        rows = rows[["node_1_idx", "node_2_idx", "acc_count", "year", "month"]].values
        positive = torch.Tensor(rows[:, :2])
        counts = torch.Tensor(rows[:, 2])
        positive = positive.long()
        positive, counts = coalesce(positive.T, counts)
        positive = positive.type(torch.int64).T

        negative = None
        if self.negatives:
            every = self.data.edge_index.cpu().T.numpy()
            keep = np.logical_not(np.isin(every, positive.numpy()).all(axis=1))
            pool = every[keep]
            generator = np.random.default_rng(year * 12 + month)
            wanted = min(max(self.num_negative_edges, positive.shape[0]), pool.shape[0])
            negative = torch.Tensor(pool[generator.choice(pool.shape[0], wanted, replace=False)]).type(torch.int64)

        weather = pd.read_csv(self._path(f"Nodes/node_features_{year}_{month}.csv"))
        weather = weather[WEATHER]
        weather = weather.fillna(weather.mean(axis=0))
        weather = weather.fillna(0)
        node_features = torch.Tensor(weather.values)

        traffic = self._path(f"Edges/edge_features_traffic_{year}.pt")
        if os.path.exists(traffic):
            values = torch.load(traffic, weights_only=False)["AADT"].coalesce().values()
            mean = values[~torch.isnan(values)].mean()
            values[torch.isnan(values)] = 0 if torch.isnan(mean) else mean
            edge_features = values.view(-1, 1)
        else:
            edge_features = torch.zeros(self.data.edge_index.shape[1], 1)

        data = self.data.clone()
        data.x = node_features if data.x is None else torch.cat([data.x, node_features], dim=1)
        out.update(data=data, x=data.x, edge_index=data.edge_index, edge_attr=data.edge_attr, accidents=positive,
                   accident_counts=counts, neg_edges=negative, temporal_node_features=node_features,
                   temporal_edge_features=edge_features)
        return out


def _timed_call(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return (time.perf_counter() - start) * 1000.0, result


def _timed(function, *args) -> tuple[float, object]:
    """Milliseconds to call ``function`` and then read every memory page of every tensor it returned."""
    start = time.perf_counter()
    result = function(*args)
    _touch(result)
    return (time.perf_counter() - start) * 1000.0, result


def _touch(result) -> int:
    """Read one element per 4 KiB page of each tensor in ``result`` (a ``Data`` or a dict of tensors and
    ``Data``): lazily mapped arrays (gnnbench maps its edge arrays copy-on-write) are faulted in here, so
    both loaders are timed until their output is in memory."""
    import torch
    from torch_geometric.data import Data

    values = result.to_dict().values() if isinstance(result, Data) else result.values()
    total = 0
    for value in values:
        if isinstance(value, Data):
            total += _touch(value)
        elif isinstance(value, torch.Tensor) and value.numel():
            flat = value.reshape(-1)
            total += int(flat[::max(1, 4096 // flat.element_size())].to(torch.int64).sum())
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 20k-node region (CI; the targets are still checked)")
    parser.add_argument("--work", type=Path, default=None,
                        help="directory caching the generated region (default: a temporary directory)")
    parser.add_argument("--repeats", type=int, default=None, help="snapshot timings (default 10 quick, 50 full)")
    parser.add_argument("--baseline-repeats", type=int, default=None,
                        help="timings of each baseline (default 3 quick, 5 full)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for both loaders (default 1; 0: torch's default). With more "
                             "threads than free cores torch's thread pool waits on busy cores and both timings "
                             "spread tenfold")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="gnnbench-state-scale-") as scratch:
        work = args.work or Path(scratch)
        start = time.perf_counter()
        region = benchmark_region(work, quick=args.quick)
        print(f"region: {region.stats['nodes']:,} nodes, {region.stats['edges']:,} directed edges, "
              f"{region.stats['accident_rows']:,} accident rows over {12 * len(region.years)} months "
              f"[{time.perf_counter() - start:.1f} s to generate or load, {region.directory}]", flush=True)
        import torch

        print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s) for both loaders", flush=True)
        return run(args, region)


def run(args, region) -> int:
    from gnnbench.datasets.road_accidents import RoadAccidentDataset

    repeats = args.repeats or (10 if args.quick else 50)
    baseline_repeats = args.baseline_repeats or (3 if args.quick else 5)
    root = region.directory
    state = region.region.code
    shutil.rmtree(root / "processed" / state, ignore_errors=True)
    build_ms, dataset = _timed_call(lambda: RoadAccidentDataset(root, state=state, task="accident_occurrence"))
    open_ms, dataset = _timed_call(lambda: RoadAccidentDataset(root, state=state, task="accident_occurrence"))
    count_dataset = RoadAccidentDataset(root, state=state, task="accident_count")
    year, month = region.years[-1], 6
    first_ms, snapshot = _timed(dataset.snapshot, year, month)
    ours = [_timed(dataset.snapshot, year, month)[0] for _ in range(repeats)]
    months = [(int(y), int(m)) for y in region.years for m in range(1, 13)]
    every = [_timed(dataset.snapshot, y, m)[0] for y, m in months]
    count_ms = [_timed(count_dataset.snapshot, year, month)[0] for _ in range(max(3, repeats // 5))]
    print(f"gnnbench: dataset built in {build_ms / 1000:.1f} s, opened in {open_ms:.0f} ms; snapshot x "
          f"{tuple(snapshot.x.shape)}, edge_attr {tuple(snapshot.edge_attr.shape)}, "
          f"{int(snapshot.y[snapshot.eval_mask].sum()):,} segments with crashes in {year}-{month:02d}", flush=True)

    prep_start = time.perf_counter()
    full = ML4RoadSafetyLoader(region.release.parent, state)
    prep_s = time.perf_counter() - prep_start
    lower = ML4RoadSafetyLoader(region.release.parent, state, negatives=False)
    theirs, result = [], None
    for _ in range(baseline_repeats):
        elapsed, result = _timed(full.load_monthly_data, year, month)
        theirs.append(elapsed)
    without = [_timed(lower.load_monthly_data, year, month)[0] for _ in range(baseline_repeats)]
    positives, negatives = result["accidents"], result["neg_edges"]
    print(f"ML4RoadSafety TrafficAccidentDataset ({UPSTREAM} @ {UPSTREAM_COMMIT[:7]}): static graph loaded in "
          f"{prep_s:.1f} s (not timed); month {year}-{month:02d}: {len(positives):,} positive and "
          f"{len(negatives):,} negative edges, x {tuple(result['data'].x.shape)}, edge_attr "
          f"{tuple(result['data'].edge_attr.shape)}", flush=True)

    num_nodes = snapshot.num_nodes
    ours_pairs = _unordered(snapshot.edge_index[:, snapshot.eval_mask & (snapshot.y > 0)].T.numpy(), num_nodes)
    their_pairs = _unordered(positives.numpy(), num_nodes)
    file_pairs = _unordered(_release_rows(region.release, year, month), num_nodes)
    same = np.array_equal(ours_pairs, their_pairs) and np.array_equal(their_pairs, file_pairs)
    print(f"positive road segments: gnnbench {len(ours_pairs):,}, ML4RoadSafety loader {len(their_pairs):,}, "
          f"release file {len(file_pairs):,}: {'identical' if same else 'DIFFERENT'} sets", flush=True)

    ours_ms, theirs_ms, without_ms = statistics.median(ours), statistics.median(theirs), statistics.median(without)
    ratio, lower_ratio = theirs_ms / ours_ms, without_ms / ours_ms
    print()
    print("| loader | runs | median ms | min ms | ML4RoadSafety loader / this |")
    print("|---|---:|---:|---:|---:|")
    print(f"| gnnbench snapshot({year}, {month}), occurrence | {len(ours)} | {ours_ms:.1f} | {min(ours):.1f} "
          f"| {ratio:,.0f}x |")
    print(f"| gnnbench snapshot, each of {len(every)} months | {len(every)} | {statistics.median(every):.1f} | "
          f"{min(every):.1f} | {theirs_ms / statistics.median(every):,.0f}x |")
    print(f"| gnnbench snapshot({year}, {month}), count task | {len(count_ms)} | {statistics.median(count_ms):.1f} "
          f"| {min(count_ms):.1f} | {theirs_ms / statistics.median(count_ms):,.0f}x |")
    print(f"| gnnbench first snapshot after opening | 1 | {first_ms:.1f} | {first_ms:.1f} | - |")
    print(f"| ML4RoadSafety load_monthly_data @ {UPSTREAM_COMMIT[:7]} | {len(theirs)} | {theirs_ms:.1f} | "
          f"{min(theirs):.1f} | 1x |")
    print(f"| the same without its negative-edge step | {len(without)} | {without_ms:.1f} | {min(without):.1f} | "
          f"{theirs_ms / without_ms:.1f}x |")
    print(f"\ntargets: <= {TARGET_MS:.0f} ms (measured {ours_ms:.1f} ms), >= {TARGET_RATIO:.0f}x upstream's loader "
          f"(measured {ratio:,.0f}x; {lower_ratio:,.0f}x without its negative-edge step)")
    failures = []
    if not same:
        failures.append("the positive road segments differ")
    if ours_ms > TARGET_MS:
        failures.append(f"snapshot median {ours_ms:.1f} ms > {TARGET_MS:.0f} ms")
    if ratio < TARGET_RATIO:
        failures.append(f"speed-up {ratio:.1f}x < {TARGET_RATIO:.0f}x")
    for failure in failures:
        print(f"TARGET MISSED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _release_rows(state_dir: Path, year: int, month: int) -> np.ndarray:
    """The month's ``(node_1_idx, node_2_idx)`` rows of the release file, read with pyarrow (independent check)."""
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(state_dir / "accidents_monthly.csv")
    table = table.filter(pc.and_(pc.equal(table["year"], year), pc.equal(table["month"], month)))
    return np.stack([table["node_1_idx"].to_numpy(), table["node_2_idx"].to_numpy()], axis=1)


def _unordered(pairs: np.ndarray, num_nodes: int) -> np.ndarray:
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return np.unique(pairs.min(axis=1) * num_nodes + pairs.max(axis=1))


if __name__ == "__main__":
    sys.exit(main())
