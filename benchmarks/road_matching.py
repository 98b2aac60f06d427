"""Map-matching speed: crashes per minute of ``SegmentIndex.build`` + ``match`` on a state-sized region.

The region is the synthetic state of ``tests/synthetic/state_scale.py`` (300k nodes, 700k directed
edges forming 411,765 road segments, 3M crash rows; generated once into ``--work`` and reused). Every
crash the build hands to map matching (the good ones plus those placed far from every road) is matched.
All methods get the same input: the road segments (one line per two-way pair: the canonical edges of
``gnnbench.road.matching.segment_ids``, the lines gnnbench's build indexes) and the same crash points.
Accuracy is checked against the segment each crash was drawn on.

Measured in the same run, each timed from the same in-memory inputs to a segment per crash:

* gnnbench: ``SegmentIndex.build`` (segment ids, projection to the UTM zone, STRtree) + ``match``
  within the build's ``max_distance_m`` (50 m), on all crashes and on the subset below.
* ``geopandas.sjoin_nearest``: the segment lines (parsed from the same WKB) and crash points as
  GeoDataFrames in WGS84, ``to_crs`` to the UTM zone, joined with the same ``max_distance``; on all
  crashes and on the subset.
* ML4RoadSafety's matcher, re-implemented from ``extract_nearest_street`` and its loop in
  ``datasets/3_extract_nearest_street.py`` of https://github.com/VirtuosoResearch/ML4RoadSafety at
  commit ``d8b3d96a8dc9f1323e9595addd705c3c2c96b42c`` (the file last changed in ``6b560b3``): per
  crash, four pandas columns over every segment (distances in degrees from the point to both end
  nodes, their sum, and its difference from the end-to-end length), the rows at the minimum, and the
  first row's ``node_1``/``node_2`` written back with ``df.loc``. It has no distance limit, so crashes
  far from every road are matched too. Run for real (not extrapolated) on a random subset of
  ``--scan-sample`` crashes, the same subset the other two are timed on.

Target: 1,000,000 crashes per minute (build + match, all crashes), checked at every size
(``--quick``: a 20k-node region with 200k crashes for CI); also checked: at least 99% of the crashes
on their generating segment and every far crash left unmatched.

    python benchmarks/road_matching.py [--quick] [--work DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic generators
from synthetic.state_scale import benchmark_region  # noqa: E402

from gnnbench.road.build import BuildParameters  # noqa: E402
from gnnbench.road.matching import SegmentIndex, segment_ids  # noqa: E402
from gnnbench.road.tables import read_table  # noqa: E402

TARGET_PER_MINUTE = 1_000_000
MIN_ON_SEGMENT = 0.99
UPSTREAM = "https://github.com/VirtuosoResearch/ML4RoadSafety"
UPSTREAM_COMMIT = "d8b3d96a8dc9f1323e9595addd705c3c2c96b42c"


def ml4roadsafety_edges(segments, lon_of_node: np.ndarray, lat_of_node: np.ndarray):
    """Upstream's ``edges_df``: ``node_1``, ``node_2`` merged with their nodes' ``x``/``y`` and ``street_dist``."""
    import pandas as pd

    edges_df = pd.DataFrame({"node_1": segments["src"].to_numpy(), "node_2": segments["dst"].to_numpy()})
    edges_df = edges_df[["node_1", "node_2"]].drop_duplicates()
    nodes_df = pd.DataFrame({"node_id": np.arange(len(lon_of_node)), "x": lon_of_node, "y": lat_of_node})
    edges_df = pd.merge(edges_df, nodes_df, left_on="node_1", right_on="node_id", how="left").drop(columns=["node_id"])
    edges_df = edges_df.rename(columns={"x": "node_1_x", "y": "node_1_y"})
    edges_df = pd.merge(edges_df, nodes_df, left_on="node_2", right_on="node_id", how="left").drop(columns=["node_id"])
    edges_df = edges_df.rename(columns={"x": "node_2_x", "y": "node_2_y"})
    edges_df["street_dist"] = np.sqrt((edges_df["node_2_x"] - edges_df["node_1_x"]) ** 2
                                      + (edges_df["node_2_y"] - edges_df["node_1_y"]) ** 2)
    return edges_df


def ml4roadsafety_nearest_street(edges_df, lat: float, lon: float) -> tuple[int, int]:
    """One crash: the end nodes of the edge whose end-node distance sum exceeds its length least."""
    edges_df["street_dist_node_1"] = np.sqrt((lon - edges_df["node_1_x"]) ** 2 + (lat - edges_df["node_1_y"]) ** 2)
    edges_df["street_dist_node_2"] = np.sqrt((lon - edges_df["node_2_x"]) ** 2 + (lat - edges_df["node_2_y"]) ** 2)
    edges_df["street_dist_node_1_plus_node_2"] = edges_df["street_dist_node_1"] + edges_df["street_dist_node_2"]
    edges_df["street_dist_diff"] = np.abs(edges_df["street_dist_node_1_plus_node_2"] - edges_df["street_dist"])
    nearest = edges_df[edges_df["street_dist_diff"] == edges_df["street_dist_diff"].min()].reset_index(drop=True)
    return nearest.loc[0, "node_1"], nearest.loc[0, "node_2"]


def ml4roadsafety_match(edges_df, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, float]:
    """Upstream's loop over a crash frame (``df.loc`` reads and writes); (node_1, node_2) per crash, seconds."""
    import pandas as pd

    df = pd.DataFrame({"lat": lat, "lon": lon})
    start = time.perf_counter()
    df["node_1"] = 0
    df["node_2"] = 0
    for i in range(df.shape[0]):
        df.loc[i, "node_1"], df.loc[i, "node_2"] = ml4roadsafety_nearest_street(edges_df, df.loc[i, "lat"],
                                                                                df.loc[i, "lon"])
    seconds = time.perf_counter() - start
    return df[["node_1", "node_2"]].to_numpy(np.int64), seconds


def gnnbench_match(segments, lon: np.ndarray, lat: np.ndarray, epsg: int, max_distance: float):
    """``SegmentIndex.build`` + ``match``; (canonical edge per crash, distances, build s, match s)."""
    start = time.perf_counter()
    index = SegmentIndex.build(segments, epsg)
    built = time.perf_counter()
    edge, distance = index.match(lon, lat, max_distance)
    return edge, distance, built - start, time.perf_counter() - built


def geopandas_match(segments, lon: np.ndarray, lat: np.ndarray, epsg: int,
                    max_distance: float) -> tuple[np.ndarray, float]:
    """WKB lines, ``to_crs`` + ``sjoin_nearest`` of the crash points to the segments; (edge per crash, seconds)."""
    import geopandas as gpd
    import pandas as pd

    start = time.perf_counter()
    lines = gpd.GeoSeries.from_wkb(segments["geometry"].to_pylist(), crs="EPSG:4326")
    frame = gpd.GeoDataFrame({"edge_id": segments["edge_id"].to_numpy()}, geometry=lines).to_crs(epsg=epsg)
    points = gpd.GeoDataFrame({"crash": np.arange(len(lon))}, geometry=gpd.points_from_xy(lon, lat),
                              crs="EPSG:4326").to_crs(epsg=epsg)
    joined = gpd.sjoin_nearest(points, frame, how="left", max_distance=max_distance, distance_col="distance")
    first = joined[~joined.index.duplicated(keep="first")]
    edge = pd.to_numeric(first["edge_id"], errors="coerce").fillna(-1).to_numpy(np.int64)
    return edge, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a 20k-node region with 200k crashes (CI; the targets are still checked)")
    parser.add_argument("--work", type=Path, default=None,
                        help="directory caching the generated region (default: a temporary directory)")
    parser.add_argument("--scan-sample", type=int, default=None,
                        help="crashes matched by every method incl. ML4RoadSafety's scan (default 2,000 quick, "
                             "3,000 full)")
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
    import pyarrow as pa

    edges = read_table("edges", region.tables)
    segments = edges.filter(pa.array(segment_ids(edges) == edges["edge_id"].to_numpy()))
    lon, lat, truth = region.crash_points()
    count = len(lon)
    max_distance = BuildParameters().max_distance_m
    epsg = region.region.utm_epsg
    print(f"input: {segments.num_rows:,} road segments (of {edges.num_rows:,} directed edges), {count:,} crashes "
          f"({int((truth < 0).sum()):,} far from every road)", flush=True)

    best = None
    for _ in range(max(1, args.repeats)):
        edge, distance, build_s, match_s = gnnbench_match(segments, lon, lat, epsg, max_distance)
        if best is None or build_s + match_s < best[2] + best[3]:
            best = (edge, distance, build_s, match_s)
    edge, distance, build_s, match_s = best
    ours = count / (build_s + match_s) * 60.0
    far = truth < 0
    correct = float(np.mean(edge[~far] == truth[~far]))
    far_unmatched = float(np.mean(edge[far] < 0)) if far.any() else 1.0
    print(f"gnnbench: index {build_s:.2f} s + match {match_s:.2f} s for {count:,} crashes; "
          f"{correct:.2%} on the generating segment, {far_unmatched:.2%} of far crashes unmatched, "
          f"median distance {np.nanmedian(distance):.1f} m", flush=True)
    rows = [("gnnbench SegmentIndex (build + match)", "all", count, build_s + match_s),
            ("gnnbench SegmentIndex (match only)", "all", count, match_s)]
    if not args.no_geopandas:
        geo_edge, geo_s = geopandas_match(segments, lon, lat, epsg, max_distance)
        matched = geo_edge >= 0
        agree = float(np.mean(geo_edge == edge))
        print(f"geopandas sjoin_nearest: {geo_s:.2f} s; same segment (or both unmatched) as gnnbench for "
              f"{agree:.2%} of the crashes, {float(np.mean(geo_edge[~far] == truth[~far])):.2%} on the generating "
              f"segment, {int(matched.sum()):,} matched", flush=True)
        rows.append(("geopandas sjoin_nearest (to_crs + join)", "all", count, geo_s))

    # The same random subset for all three, ML4RoadSafety's scan included.
    size = min(count, args.scan_sample or (2_000 if args.quick else 3_000))
    subset = np.sort(np.random.default_rng(0).choice(count, size, replace=False))
    s_lon, s_lat, s_truth = lon[subset], lat[subset], truth[subset]
    s_edge, _, s_build, s_match = gnnbench_match(segments, s_lon, s_lat, epsg, max_distance)
    rows.append(("gnnbench SegmentIndex (build + match)", "subset", size, s_build + s_match))
    rows.append(("gnnbench SegmentIndex (match only)", "subset", size, s_match))
    if not args.no_geopandas:
        _, s_geo = geopandas_match(segments, s_lon, s_lat, epsg, max_distance)
        rows.append(("geopandas sjoin_nearest (to_crs + join)", "subset", size, s_geo))
    nodes = read_table("nodes", region.tables, columns=["lon", "lat"])
    edges_df = ml4roadsafety_edges(segments, nodes["lon"].to_numpy(), nodes["lat"].to_numpy())
    pairs, scan_s = ml4roadsafety_match(edges_df, s_lon, s_lat)
    rows.append((f"ML4RoadSafety extract_nearest_street @ {UPSTREAM_COMMIT[:7]}", "subset", size, scan_s))
    scan_edge = _segment_of_pairs(segments, pairs)
    near = s_truth >= 0
    print(f"subset of {size:,} crashes: ML4RoadSafety's scan {scan_s:.1f} s ({scan_s / size * 1000:.1f} ms each), "
          f"{float(np.mean(scan_edge[near] == s_truth[near])):.2%} on the generating segment "
          f"(gnnbench {float(np.mean(s_edge[near] == s_truth[near])):.2%}); it matches all "
          f"{int((~near).sum())} far crashes too", flush=True)

    print()
    print("| method | crashes | seconds | crashes/min | gnnbench build + match, same crashes: speed-up |")
    print("|---|---:|---:|---:|---:|")
    reference = {"all": count / (build_s + match_s), "subset": size / (s_build + s_match)}
    for name, which, n, seconds in rows:
        rate = n / seconds * 60.0
        ratio = "-" if name.startswith("gnnbench") else f"{reference[which] * 60.0 / rate:,.1f}x"
        label = f"{n:,} (all)" if which == "all" else f"{n:,} (subset)"
        print(f"| {name} | {label} | {seconds:,.2f} | {rate:,.0f} | {ratio} |")
    print(f"\ntarget: {TARGET_PER_MINUTE:,} crashes/min; measured {ours:,.0f}/min = "
          f"{ours / TARGET_PER_MINUTE:.2f}x the target")
    failures = []
    if ours < TARGET_PER_MINUTE:
        failures.append(f"{ours:,.0f} crashes/min < {TARGET_PER_MINUTE:,}")
    if correct < MIN_ON_SEGMENT:
        failures.append(f"{correct:.2%} on the generating segment < {MIN_ON_SEGMENT:.0%}")
    if far_unmatched < 1.0:
        failures.append(f"only {far_unmatched:.2%} of the far crashes unmatched")
    for failure in failures:
        print(f"TARGET MISSED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _segment_of_pairs(segments, pairs: np.ndarray) -> np.ndarray:
    """The first segment (in table order, as upstream's ``loc[0]``) with each ``(node_1, node_2)``."""
    import pandas as pd

    table = pd.DataFrame({"src": segments["src"].to_numpy(), "dst": segments["dst"].to_numpy(),
                          "edge_id": segments["edge_id"].to_numpy()}).drop_duplicates(["src", "dst"])
    found = pd.DataFrame({"src": pairs[:, 0], "dst": pairs[:, 1]}).merge(table, how="left", on=["src", "dst"])
    return found["edge_id"].to_numpy(np.int64)


if __name__ == "__main__":
    sys.exit(main())
