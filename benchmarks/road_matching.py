"""Map-matching speed: crashes per minute of ``SegmentIndex.build`` + ``match`` on a state-sized region.

The region is the synthetic state of ``tests/synthetic/state_scale.py`` (300k nodes, 700k directed
edges, 3M crash rows; generated once into ``--work`` and reused). Every crash the build hands to
map matching (the good ones plus those placed far from every road) is matched with the build's
``max_distance_m``; the rate counts building the index and matching, against the target of
1,000,000 crashes per minute. Accuracy is checked against the segment each crash was drawn on.

Baselines, measured in the same run:

* ML4RoadSafety's matcher (``datasets/3_Extract_Nearest_Street.py``): for one crash at a time, pandas
  columns over every directed edge of |d(p, a) + d(p, b) - d(a, b)| in degrees, and the first edge
  with the minimum. Timed on a random subsample of ``--naive-sample`` crashes and extrapolated
  linearly to all of them (its cost per crash does not depend on the other crashes).
* ``geopandas.sjoin_nearest`` (when geopandas is installed): lines and points as GeoDataFrames in
  WGS84, projected to the UTM zone with ``to_crs``, joined with the same ``max_distance``, on all
  crashes.

    python benchmarks/road_matching.py [--quick] [--work DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gnnbench.road.build import BuildParameters
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic generators
from synthetic.state_scale import benchmark_region  # noqa: E402
from gnnbench.road.matching import SegmentIndex, segment_ids
from gnnbench.road.tables import read_table

TARGET_PER_MINUTE = 1_000_000


def ml4roadsafety_nearest(edges, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, float]:
    """ML4RoadSafety's per-crash nearest street over a pandas frame of edges; (edge row, seconds)."""
    frame = edges.copy()
    start = time.perf_counter()
    found = np.empty(len(lon), dtype=np.int64)
    for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist())):
        frame["d1"] = np.sqrt((x - frame["x1"]) ** 2 + (y - frame["y1"]) ** 2)
        frame["d2"] = np.sqrt((x - frame["x2"]) ** 2 + (y - frame["y2"]) ** 2)
        frame["d12"] = frame["d1"] + frame["d2"]
        frame["diff"] = np.abs(frame["d12"] - frame["length"])
        best = frame[frame["diff"] == frame["diff"].min()].reset_index(drop=True)
        found[i] = best.loc[0, "edge_id"]
    return found, time.perf_counter() - start


def geopandas_nearest(edges, lon: np.ndarray, lat: np.ndarray, epsg: int, max_distance: float):
    """``sjoin_nearest`` of the crash points to the edge lines in the UTM zone; (edge per crash, seconds)."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    start = time.perf_counter()
    lines = gpd.GeoDataFrame({"edge_id": edges["edge_id"].to_numpy()},
                             geometry=shapely.from_wkb(np.asarray(edges["geometry"].to_pylist(), dtype=object)),
                             crs="EPSG:4326").to_crs(epsg=epsg)
    points = gpd.GeoDataFrame({"crash": np.arange(len(lon))}, geometry=gpd.points_from_xy(lon, lat),
                              crs="EPSG:4326").to_crs(epsg=epsg)
    joined = gpd.sjoin_nearest(points, lines, how="left", max_distance=max_distance, distance_col="distance")
    first = joined[~joined.index.duplicated(keep="first")]
    edge = pd.to_numeric(first["edge_id"], errors="coerce").fillna(-1).to_numpy(np.int64)
    return edge, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 20k-node region with 200k crashes (CI smoke run)")
    parser.add_argument("--work", type=Path, default=None,
                        help="directory caching the generated region (default: a temporary directory)")
    parser.add_argument("--naive-sample", type=int, default=None,
                        help="crashes timed with ML4RoadSafety's matcher (default 20 quick, 100 full)")
    parser.add_argument("--no-geopandas", action="store_true", help="skip the geopandas sjoin_nearest baseline")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs of build + match")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gnnbench-state-scale-") as scratch:
        work = args.work or Path(scratch)
        start = time.perf_counter()
        region = benchmark_region(work, quick=args.quick)
        print(f"region: {region.stats['nodes']:,} nodes, {region.stats['edges']:,} directed edges "
              f"({region.stats['segments']:,} segments), {region.stats['crash_rows']:,} crash rows "
              f"[{time.perf_counter() - start:.1f} s to generate or load, {region.directory}]", flush=True)
        return run(args, region)


def run(args, region) -> int:
    edges = read_table("edges", region.tables)
    lon, lat, truth = region.crash_points()
    count = len(lon)
    max_distance = BuildParameters().max_distance_m
    epsg = region.region.utm_epsg

    best = None
    for _ in range(max(1, args.repeats)):
        start = time.perf_counter()
        index = SegmentIndex.build(edges, epsg)
        built = time.perf_counter()
        edge, distance = index.match(lon, lat, max_distance)
        done = time.perf_counter()
        timing = (built - start, done - built)
        if best is None or sum(timing) < sum(best):
            best = timing
    build_s, match_s = best
    ours = count / (build_s + match_s) * 60.0
    far = truth < 0
    correct = float(np.mean(edge[~far] == truth[~far]))
    unmatched_far = float(np.mean(edge[far] < 0)) if far.any() else 1.0
    print(f"gnnbench: index {build_s:.2f} s + match {match_s:.2f} s for {count:,} crashes; "
          f"{correct:.2%} on the generating segment, {unmatched_far:.2%} of far crashes unmatched, "
          f"median distance {np.nanmedian(distance):.1f} m", flush=True)

    # ML4RoadSafety's matcher on a subsample, extrapolated.
    import pandas as pd

    sample_size = args.naive_sample or (20 if args.quick else 100)
    rng = np.random.default_rng(0)
    sample = rng.choice(count, min(sample_size, count), replace=False)
    nodes = read_table("nodes", region.tables, columns=["lon", "lat"])
    x, y = nodes["lon"].to_numpy(), nodes["lat"].to_numpy()
    src, dst = edges["src"].to_numpy(), edges["dst"].to_numpy()
    frame = pd.DataFrame({"edge_id": edges["edge_id"].to_numpy(), "x1": x[src], "y1": y[src], "x2": x[dst],
                          "y2": y[dst]})
    frame["length"] = np.sqrt((frame["x2"] - frame["x1"]) ** 2 + (frame["y2"] - frame["y1"]) ** 2)
    found, naive_s = ml4roadsafety_nearest(frame, lon[sample], lat[sample])
    naive = len(sample) / naive_s * 60.0
    canonical_of = segment_ids(edges)  # ours reports a segment's canonical edge; the baselines a directed edge
    naive_correct = float(np.mean(canonical_of[found][truth[sample] >= 0] == truth[sample][truth[sample] >= 0]))
    print(f"ML4RoadSafety matcher: {len(sample)} crashes in {naive_s:.2f} s "
          f"({naive_s / len(sample) * 1000:.1f} ms each, {naive_correct:.0%} on the generating segment); "
          f"extrapolated to {count:,}: {count / naive * 60 / 3600:.1f} h", flush=True)

    rows = [("gnnbench SegmentIndex (build + match)", count, build_s + match_s, ours),
            ("gnnbench SegmentIndex (match only)", count, match_s, count / match_s * 60.0),
            (f"ML4RoadSafety per-crash pandas scan ({len(sample)}-crash sample, extrapolated)", count,
             count / naive * 60.0, naive)]
    if not args.no_geopandas:
        try:
            geo_edge, geo_s = geopandas_nearest(edges, lon, lat, epsg, max_distance)
        except ImportError:
            print("geopandas is not installed: sjoin_nearest baseline skipped")
        else:
            agree = float(np.mean(canonical_of[np.maximum(geo_edge, 0)][geo_edge >= 0] == edge[geo_edge >= 0]))
            print(f"geopandas sjoin_nearest: {geo_s:.2f} s; agrees with gnnbench on {agree:.2%} of its matches",
                  flush=True)
            rows.append(("geopandas sjoin_nearest (to_crs + join)", count, geo_s, count / geo_s * 60.0))

    print()
    print("| method | crashes | seconds | crashes/min | gnnbench (build + match) speed-up |")
    print("|---|---:|---:|---:|---:|")
    for name, n, seconds, rate in rows:
        ratio = "-" if name.startswith("gnnbench") else f"{ours / rate:,.1f}x"
        print(f"| {name} | {n:,} | {seconds:,.1f} | {rate:,.0f} | {ratio} |")
    print(f"\ntarget: {TARGET_PER_MINUTE:,} crashes/min; measured {ours:,.0f}/min = "
          f"{ours / TARGET_PER_MINUTE:.2f}x the target")
    if not args.quick and ours < TARGET_PER_MINUTE:
        print("TARGET MISSED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
