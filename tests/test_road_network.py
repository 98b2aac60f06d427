"""OSM network parsing, road features, betweenness, map matching and the table schemas."""

from __future__ import annotations

import math

import networkx as nx
import numba
import numpy as np
import pyarrow as pa
import pytest
import shapely

from gnnbench.road.centrality import betweenness
from gnnbench.road.demo.region import generate_network
from gnnbench.road.geo import project, utm_epsg
from gnnbench.road.matching import SegmentIndex, segment_ids
from gnnbench.road.sources.osm import (
    HIGHWAY_CLASSES,
    edge_classes,
    highway_class,
    load_osm_xml,
    network_tables,
    parse_lanes,
    parse_maxspeed,
)
from gnnbench.road.tables import TableError, conform, read_table, write_table


@pytest.mark.parametrize(("value", "expected"), [
    ("50", 50.0), ("30 mph", 30 * 1.609344), ("30mph", 30 * 1.609344), ("50;70", 70.0), ("50|60", 60.0),
    (["40", "25 mph"], 25 * 1.609344), ("10 knots", 18.52), ("60 km/h", 60.0), ("none", math.nan),
    ("signals", math.nan), ("RU:urban", math.nan), (None, math.nan), (float("nan"), math.nan), ("", math.nan)])
def test_maxspeed_is_parsed_to_kmh(value, expected):
    result = parse_maxspeed(value)
    assert (math.isnan(result) and math.isnan(expected)) or result == pytest.approx(expected)


@pytest.mark.parametrize(("value", "expected"), [
    ("2", 2.0), ("2;3", 3.0), (["1", "4"], 4.0), ("two", math.nan), (None, math.nan), ("0", math.nan)])
def test_lanes_are_parsed(value, expected):
    result = parse_lanes(value)
    assert (math.isnan(result) and math.isnan(expected)) or result == expected


def test_highway_class_takes_the_most_important_and_maps_unknown_to_other():
    assert highway_class(["residential", "primary"]) == "primary"
    assert highway_class("motorway_link") == "motorway_link"
    assert highway_class("busway") == "other"
    onehot = edge_classes(["primary", "nonsense"])
    assert onehot.shape == (2, len(HIGHWAY_CLASSES))
    assert onehot[0, HIGHWAY_CLASSES.index("primary")] == 1 and onehot[1, -1] == 1 and onehot.sum() == 2


@pytest.fixture(scope="module")
def demo_graph(tmp_path_factory):
    network = generate_network(seed=3, size=6)
    path = tmp_path_factory.mktemp("osm") / "town.osm"
    path.write_text(network.osm_xml())
    return network, load_osm_xml(path)


def test_osm_extract_keeps_the_drive_network_only(demo_graph):
    network, graph = demo_graph
    highways = {value for _, _, data in graph.edges(data=True)
                for value in (data["highway"] if isinstance(data["highway"], list) else [data["highway"]])}
    assert highways <= {"primary", "secondary", "tertiary", "trunk", "residential"}
    assert nx.is_weakly_connected(graph)  # the two-node island is gone
    island = set(network.node_ids[-2:].tolist())
    assert not island & set(graph.nodes)
    # simplification removed every shape point: all remaining nodes are intersections or corners
    grid = set(network.node_ids[:36].tolist())
    assert set(graph.nodes) <= grid


def test_network_tables_match_the_graph(demo_graph):
    _, graph = demo_graph
    nodes, edges = network_tables(graph)
    nodes, edges = conform("nodes", nodes), conform("edges", edges)
    assert nodes.num_rows == graph.number_of_nodes() and edges.num_rows == graph.number_of_edges()
    osm = nodes["osm_id"].to_numpy()
    assert (np.diff(osm) > 0).all()
    src, dst = edges["src"].to_numpy(), edges["dst"].to_numpy()
    for s, d in zip(src, dst):
        assert graph.has_edge(int(osm[s]), int(osm[d]))
    # geometry runs from src to dst and its geodesic-ish length matches osmnx's length within 1%
    lines = shapely.from_wkb(np.array(edges["geometry"].to_pylist(), dtype=object))
    epsg = utm_epsg(float(nodes["lon"].to_numpy().mean()), float(nodes["lat"].to_numpy().mean()))
    from gnnbench.road.geo import project_geometries
    metres = shapely.length(project_geometries(lines, epsg))
    np.testing.assert_allclose(metres, edges["length_m"].to_numpy(), rtol=0.01)
    start = shapely.get_point(lines, 0)
    np.testing.assert_allclose(shapely.get_x(start), nodes["lon"].to_numpy()[src], atol=1e-7)
    degree = np.bincount(src, minlength=nodes.num_rows) + np.bincount(dst, minlength=nodes.num_rows)
    assert (nodes["degree"].to_numpy() == degree).all()
    two_way = edges.filter(pa.compute.equal(edges["oneway"], False))
    assert two_way.num_rows > 0
    pairs = set(zip(two_way["src"].to_pylist(), two_way["dst"].to_pylist()))
    assert all((v, u) in pairs for u, v in pairs)  # a two-way road is both directions, each marked two-way
    bridge = edges.filter(edges["bridge"]).to_pylist()
    assert bridge and all(row["highway"] == "primary" for row in bridge)
    speeds = {row["highway"]: row["maxspeed_kmh"] for row in edges.to_pylist()}
    assert speeds["trunk"] == pytest.approx(55 * 1.609344, rel=1e-6) and speeds["secondary"] == 60


def test_betweenness_matches_networkx_exactly_and_samples_are_unbiased(monkeypatch):
    rng = np.random.default_rng(0)
    n, m = 60, 200
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    length = rng.integers(1, 6, m).astype(float)  # integer weights: many equal-length shortest paths
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n))
    for s, d, w in zip(src, dst, length):
        if s != d and (not graph.has_edge(s, d) or graph[s][d]["length"] > w):
            graph.add_edge(s, d, length=w)
    expected = nx.betweenness_centrality(graph, weight="length", normalized=True)
    np.testing.assert_allclose(betweenness(n, src, dst, length), [expected[i] for i in range(n)], atol=1e-12)
    # the sources split into one chunk per numba thread whatever this machine has (pytest -n gives each worker one)
    for threads in (1, 3):
        monkeypatch.setattr(numba, "get_num_threads", lambda: threads)
        np.testing.assert_allclose(betweenness(n, src, dst, length), [expected[i] for i in range(n)], atol=1e-12)
    monkeypatch.undo()
    estimates = np.mean([betweenness(n, src, dst, length, sources=20, seed=seed) for seed in range(40)], axis=0)
    assert np.corrcoef(estimates, [expected[i] for i in range(n)])[0, 1] > 0.95


def _edges_table(lines, src, dst):
    return pa.table({"edge_id": np.arange(len(lines)), "src": src, "dst": dst,
                     "geometry": pa.array(list(shapely.to_wkb(np.array(lines, dtype=object))), type=pa.binary())})


def test_two_way_twins_form_one_segment_and_parallel_roads_do_not():
    a = shapely.LineString([(-75.0, 39.0), (-75.001, 39.0)])
    b = shapely.LineString([(-75.0, 39.0), (-75.0005, 39.0003), (-75.001, 39.0)])  # parallel road, same ends
    lines = [a, shapely.reverse(a), b, shapely.reverse(b), a]
    edges = _edges_table(lines, [0, 1, 0, 1, 0], [1, 0, 1, 0, 1])
    assert segment_ids(edges).tolist() == [0, 0, 2, 2, 0]


def test_matching_is_the_exact_nearest_segment_within_the_distance():
    rng = np.random.default_rng(1)
    lon0, lat0 = -75.5, 39.2
    starts = np.column_stack([lon0 + rng.random(80) * 0.05, lat0 + rng.random(80) * 0.05])
    ends = starts + rng.normal(0, 0.003, starts.shape)
    lines = [shapely.LineString([tuple(s), tuple(e)]) for s, e in zip(starts, ends)]
    edges = _edges_table(lines, np.arange(80), np.arange(80) + 100)
    epsg = utm_epsg(lon0, lat0)
    index = SegmentIndex.build(edges, epsg)
    lon = lon0 + rng.random(500) * 0.05
    lat = lat0 + rng.random(500) * 0.05
    edge, distance = index.match(lon, lat, max_distance_m=150.0)
    from gnnbench.road.geo import project_geometries
    projected = project_geometries(np.array(lines, dtype=object), epsg)
    x, y = project(lon, lat, epsg)
    brute = shapely.distance(shapely.points(x, y)[:, None], projected[None, :])
    nearest = brute.argmin(axis=1)
    within = brute.min(axis=1) <= 150.0
    assert (edge[within] == nearest[within]).all()
    assert (edge[~within] == -1).all() and np.isnan(distance[~within]).all()
    np.testing.assert_allclose(distance[within], brute.min(axis=1)[within], rtol=1e-9)
    with pytest.raises(ValueError, match="max_distance_m"):
        index.match(lon, lat, max_distance_m=0)


def test_matching_breaks_exact_ties_by_lowest_edge_id_and_chunks_change_nothing():
    node = (-75.2, 39.1)  # three roads meet here; a crash exactly on the node is 0 m from each
    lines = [shapely.LineString([(-75.21, 39.1), (-75.215, 39.11)]),       # far away: never chosen
             shapely.LineString([node, (-75.19, 39.1)]),
             shapely.LineString([(-75.2, 39.09), node]),
             shapely.LineString([node, (-75.2, 39.11)])]
    edges = _edges_table(lines, [0, 1, 2, 3], [10, 11, 12, 13])
    epsg = utm_epsg(*node)
    index = SegmentIndex.build(edges, epsg)
    edge, distance = index.match(np.array([node[0]] * 3), np.array([node[1]] * 3), max_distance_m=5.0)
    assert edge.tolist() == [1, 1, 1] and distance.tolist() == [0.0, 0.0, 0.0]

    rng = np.random.default_rng(2)
    lon, lat = -75.2 + rng.normal(0, 0.01, 300), 39.1 + rng.normal(0, 0.01, 300)
    whole = index.match(lon, lat, max_distance_m=400.0)
    for chunk_size in (1, 7, 299):
        chunked = index.match(lon, lat, max_distance_m=400.0, chunk_size=chunk_size)
        np.testing.assert_array_equal(chunked[0], whole[0])
        np.testing.assert_array_equal(chunked[1], whole[1])
    assert (whole[0] >= 0).any() and (whole[0] < 0).any()
    with pytest.raises(ValueError, match="chunk_size"):
        index.match(lon, lat, max_distance_m=400.0, chunk_size=0)
    with pytest.raises(ValueError, match="max_distance_m"):
        index.match(lon, lat, max_distance_m=float("nan"))


def test_tables_are_checked_and_written_deterministically(tmp_path):
    good = pa.table({"year": [2020, 2019], "month": [1, 5], "edge_id": [3, 4], "count": [1, 2],
                     "fatal": [None, None], "injury": [None, None], "property_damage": [None, None]})
    first = write_table("accidents", good, tmp_path / "a")
    second = write_table("accidents", good.take([1, 0]), tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    assert read_table("accidents", tmp_path / "a")["year"].to_pylist() == [2019, 2020]
    with pytest.raises(TableError, match="lacks column 'count'"):
        conform("accidents", good.drop(["count"]))
    with pytest.raises(TableError, match="'count' has 1 null"):
        conform("accidents", good.set_column(3, "count", pa.array([1, None])))
    with pytest.raises(TableError, match="repeated key"):
        conform("accidents", pa.concat_tables([good, good]))
    with pytest.raises(TableError, match="unknown road table"):
        conform("crashes", good)


def test_betweenness_leaves_torch_thread_count_alone():
    """Numba's OpenMP layer, started by the first betweenness, reset the thread count torch shares with it: a
    model trained after `gnnbench download tiles --state DEMO` (which builds the region) in the same process
    silently ran on every core. Checked in a fresh process, where numba's threads have not started yet."""
    import subprocess
    import sys

    script = ("import torch, numpy as np\n"
              "from gnnbench.road.centrality import betweenness\n"
              "before = torch.get_num_threads()\n"
              "rng = np.random.default_rng(0)\n"
              "betweenness(40, rng.integers(0, 40, 160), rng.integers(0, 40, 160), np.ones(160))\n"
              "print(before, torch.get_num_threads())\n")
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]
