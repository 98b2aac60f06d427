"""ML4RoadSafety release import: synthetic fixture round trip, what the importer fills and counts, defects, bad inputs.

Downloading (the Dataverse client, ``fetch_release``, ``gnnbench import``) is in test_road_ml4roadsafety_fetch.py."""

from __future__ import annotations

import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")

from gnnbench.io import sha256_file  # noqa: E402
from synthetic.release import (  # noqa: E402
    expected_highway,
    generate_release,
    write_release,
    write_release_fixture,
)
from gnnbench.road.manifest import read_manifest  # noqa: E402
from gnnbench.road.sources.ml4roadsafety import (  # noqa: E402
    ReleaseFormatError,
    check_imported_duplicates,
    identical_accident_files,
    import_release,
    read_release,
)
from gnnbench.road.tables import WEATHER_COLUMNS  # noqa: E402


@pytest.fixture(scope="module")
def fixture():
    return generate_release("MA", num_nodes=40, num_edges=90, years=(2019, 2020), months=(1, 2, 3), seed=7,
                            accident_rate=0.2, aadt_coverage=0.5, clipped_rate=0.25)


@pytest.fixture(scope="module")
def imported(fixture, tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    state_dir = write_release(root / "raw", fixture)
    out = import_release("MA", state_dir, root / "out" / "MA")
    return state_dir, out


def _table(out: Path, name: str):
    return pq.read_table(out / f"{name}.parquet")


def _edge_of(fixture, src, dst) -> int:
    match = np.flatnonzero((fixture.edge_src == src) & (fixture.edge_dst == dst))
    assert match.size == 1
    return int(match[0])


# --------------------------------------------------------------------------- round trip


def test_nodes_round_trip(fixture, imported):
    nodes = _table(imported[1], "nodes").to_pydict()
    n = fixture.num_nodes
    assert nodes["node_id"] == list(range(n))
    assert nodes["osm_id"] == fixture.osm_ids.tolist()
    np.testing.assert_array_equal(nodes["lon"], fixture.lon)  # the release's 'lat' column holds the longitude
    np.testing.assert_array_equal(nodes["lat"], fixture.lat)
    neighbours = [set() for _ in range(n)]
    for u, v in zip(fixture.seg_u, fixture.seg_v):
        neighbours[u].add(v)
        neighbours[v].add(u)
    assert nodes["degree"] == [len(items) for items in neighbours]
    assert set(nodes["betweenness"]) == {None}


def test_edges_round_trip(fixture, imported):
    edges = _table(imported[1], "edges").to_pydict()
    segment = fixture.edge_segment
    assert edges["edge_id"] == list(range(fixture.num_edges))
    assert edges["src"] == fixture.edge_src.tolist() and edges["dst"] == fixture.edge_dst.tolist()
    np.testing.assert_array_equal(edges["length_m"], fixture.seg_length[segment].astype(np.float64))
    assert edges["oneway"] == fixture.seg_oneway[segment].tolist()
    assert edges["highway"] == [expected_highway(text) for text in fixture.seg_highway[segment]]
    for name in ("osm_way_id", "lanes", "maxspeed_kmh", "geometry"):
        assert set(edges[name]) == {None}
    assert not any(edges["bridge"]) and not any(edges["tunnel"])


@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")
def test_edge_order_is_the_loaders(imported):
    """edge_id follows ``adj.coalesce().indices()`` as ml_for_road_safety/data_loaders.py builds edge_index."""
    edge_index = torch.load(imported[0] / "adj_matrix.pt", weights_only=True).coalesce().indices()
    edges = _table(imported[1], "edges")
    assert edges.column("src").to_pylist() == edge_index[0].tolist()
    assert edges.column("dst").to_pylist() == edge_index[1].tolist()


def test_highway_prefers_the_most_specific_class(tmp_path):
    bigger = generate_release("NV", num_nodes=300, num_edges=2000, years=[2020], months=[1], seed=11)
    edges = read_release(write_release(tmp_path, bigger)).edges.to_pydict()
    strings = bigger.seg_highway[bigger.edge_segment]
    links = [i for i, text in enumerate(strings) if text.endswith("_link")]
    assert len(links) > 20  # one-hot by substring: a 'primary_link' segment has 'primary' set too
    assert all(edges["highway"][i] == strings[i] for i in links)
    lists = [i for i, text in enumerate(strings) if text.startswith("[")]
    assert lists and all(edges["highway"][i] == expected_highway(strings[i]) for i in lists)


def test_accidents_round_trip(fixture, imported):
    expected = {}
    for year, month, seg, count in zip(fixture.acc_year, fixture.acc_month, fixture.acc_segment, fixture.acc_count):
        key = (int(year), int(month), _edge_of(fixture, fixture.seg_u[seg], fixture.seg_v[seg]))
        expected[key] = expected.get(key, 0) + int(count)
    table = _table(imported[1], "accidents").to_pydict()
    got = {(y, m, e): c for y, m, e, c in zip(table["year"], table["month"], table["edge_id"], table["count"])}
    assert got == expected and len(got) > 10
    assert set(table["fatal"]) == set(table["injury"]) == set(table["property_damage"]) == {None}


def test_node_weather_round_trip(fixture, imported):
    """Missing cells take the month's column mean (ML4RoadSafety's fillna(mean)), flagged bit by bit in 'filled'."""
    weather = _table(imported[1], "node_weather")
    assert weather.num_rows == fixture.num_nodes * len(fixture.weather)
    expected_missing = dict.fromkeys(WEATHER_COLUMNS, 0)
    for (year, month), values in fixture.weather.items():
        rows = weather.filter(pc.and_(pc.equal(weather["year"], year), pc.equal(weather["month"], month))).to_pydict()
        assert rows["node_id"] == list(range(fixture.num_nodes))
        expected_bits = np.zeros(fixture.num_nodes, dtype=np.int64)
        for index, name in enumerate(WEATHER_COLUMNS):
            column = values[:, index]
            gap = np.isnan(column)
            mean = column[~gap].sum() / (~gap).sum()
            expected = np.where(gap, mean, column).astype(np.float32)
            np.testing.assert_array_equal(np.asarray(rows[name], dtype=np.float32), expected,
                                          err_msg=f"{year}-{month} {name}")
            expected_bits |= gap.astype(np.int64) << index
            expected_missing[name] += int(gap.sum())
        assert rows["filled"] == expected_bits.tolist()
    assert all(expected_missing.values())  # the fixture leaves gaps in every column: the fill is exercised
    quality = read_manifest(imported[1])["quality"]["node_weather"]
    assert quality["missing_values"] == expected_missing
    assert {name: counts["month_mean"] for name, counts in quality["filled"].items()} == expected_missing
    assert all(counts["zero"] == 0 for counts in quality["filled"].values())


def test_edge_volume_round_trip(fixture, imported):
    volume = _table(imported[1], "edge_volume").to_pydict()
    got = {(y, e): (a, s) for y, e, a, s in zip(volume["year"], volume["edge_id"], volume["aadt"], volume["source"])}
    # an edge without an OSM row of its own (the reverse of a clipped two-way street) shares its twin's AADT
    segment = fixture.edge_segment
    own = (fixture.seg_u[segment] == fixture.edge_src) & (fixture.seg_v[segment] == fixture.edge_dst)
    assert 0 < int((~own).sum()) < own.size
    expected = {}
    for year, values in fixture.aadt.items():
        per_edge = values[fixture.edge_segment]
        for edge in np.flatnonzero(np.isfinite(per_edge)):
            source = "ml4roadsafety" if own[edge] else "ml4roadsafety:reverse"
            expected[(year, int(edge))] = (float(per_edge[edge]), source)
    assert got == expected and expected
    assert {source for _, source in expected.values()} == {"ml4roadsafety", "ml4roadsafety:reverse"}
    assert set(volume["match_distance_m"]) == {None}


def test_manifest_records_sources_and_quality(fixture, imported):
    state_dir, out = imported
    manifest = read_manifest(out)
    assert manifest["kind"] == "ml4roadsafety-import" and manifest["state"] == "MA"
    accidents = manifest["quality"]["accidents"]
    assert accidents["rows_read"] == accidents["rows_kept"] == len(fixture.acc_count)
    assert not any(accidents["dropped"].values())
    digest = sha256_file(state_dir / "accidents_monthly.csv")
    assert manifest["quality"]["checksums"]["accidents_monthly.csv"] == digest == accidents["file_sha256"]
    names = {source["name"]: source for source in manifest["sources"]}
    assert {"adj_matrix.pt", "Edges/edge_features.pt", "Edges/edge_features_traffic_2019.pt",
            "Nodes/node_features_2020_3.csv"} <= set(names)
    assert names["adj_matrix.pt"]["sha256"] == sha256_file(state_dir / "adj_matrix.pt")
    assert manifest["quality"]["nodes"]["coordinates"].startswith("swapped")
    edges = manifest["quality"]["edges"]
    clipped = fixture.num_edges - len(fixture.seg_u)  # two-way streets listed in one direction only
    assert clipped > 0 and edges["attributes_from_reverse_segment"] == clipped
    assert edges["without_feature_entry"] == 0 and edges["length_missing"] == 0
    both_ways = int((~fixture.seg_oneway).sum()) - clipped  # OSM edges whose reversal duplicates an entry
    assert edges["adjacency_duplicate_entries"] == both_ways
    assert set(manifest["files"]) == {"nodes", "edges", "accidents", "node_weather", "edge_volume"}


def test_import_is_deterministic(imported, tmp_path):
    again = import_release("MA", imported[0], tmp_path / "MA")
    assert read_manifest(again)["files"] == read_manifest(imported[1])["files"]


def test_fixture_is_deterministic_and_uses_numpy_str_keys(tmp_path):
    first = write_release_fixture(tmp_path / "a", "DE", num_nodes=20, num_edges=30, years=[2021], seed=3, months=[5])
    second = write_release_fixture(tmp_path / "b", "DE", num_nodes=20, num_edges=30, years=[2021], seed=3, months=[5])
    for path in sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file()):
        assert sha256_file(first / path) == sha256_file(second / path), path
    with pytest.raises(pickle.UnpicklingError, match="numpy.*multiarray.scalar"):  # numpy.str_ keys, as published
        torch.load(first / "Edges" / "edge_features.pt", weights_only=True)
    assert read_release(first).edges.num_rows == 30


# --------------------------------------------------------------------------- defects and bad inputs


def test_identical_accident_files_and_imported_duplicates(tmp_path, caplog):
    dirs = {state: write_release_fixture(tmp_path / "raw", state, num_nodes=25, num_edges=40, years=[2020],
                                         seed=seed, months=[1, 2])
            for state, seed in (("MA", 1), ("DE", 2), ("IA", 3))}
    assert identical_accident_files(dirs) == []
    # Make DE's accident file MA's (the published defect); give both graphs the same shape so it imports.
    shutil.rmtree(dirs["DE"])
    shutil.copytree(dirs["MA"], dirs["DE"])
    assert identical_accident_files(dirs) == [("DE", "MA")]
    for state, directory in dirs.items():
        import_release(state, directory, tmp_path / "out" / state, check_duplicates=False)
    with caplog.at_level(logging.WARNING, logger="gnnbench.road"):
        assert check_imported_duplicates(tmp_path / "out") == [("DE", "MA")]
    assert "DE, MA" in caplog.text and "issue #8" in caplog.text


def test_weather_column_missing_for_a_whole_month_is_zero_filled_and_counted(fixture, tmp_path):
    state_dir = write_release(tmp_path, fixture)
    month = state_dir / "Nodes" / "node_features_2020_2.csv"
    table = pacsv.read_csv(month)
    empty = pa.nulls(table.num_rows, pa.float64())
    pacsv.write_csv(table.set_column(table.schema.get_field_index("pres"), "pres", empty), month)
    release = read_release(state_dir)
    weather = release.node_weather.filter(pc.and_(pc.equal(release.node_weather["year"], 2020),
                                                  pc.equal(release.node_weather["month"], 2)))
    pres = WEATHER_COLUMNS.index("pres")
    assert weather.column("pres").to_pylist() == [0.0] * fixture.num_nodes
    assert all(bits & (1 << pres) for bits in weather.column("filled").to_pylist())
    counts = release.quality["node_weather"]["filled"]["pres"]
    other_months = [values for period, values in fixture.weather.items() if period != (2020, 2)]
    assert counts["zero"] == fixture.num_nodes
    assert counts["month_mean"] == sum(int(np.isnan(values[:, pres]).sum()) for values in other_months)
    assert counts["observed"] == sum(int((~np.isnan(values[:, pres])).sum()) for values in other_months)


def test_highway_classes_outside_the_vocabulary_are_warned_and_counted(tmp_path, caplog):
    from gnnbench.road.sources.osm import HIGHWAY_CLASSES as VOCABULARY

    bigger = generate_release("NV", num_nodes=300, num_edges=2000, years=[2020], months=[1], seed=11)
    expected: dict[str, int] = {}
    for text in bigger.seg_highway[bigger.edge_segment]:
        name = expected_highway(str(text))
        if name not in VOCABULARY:
            expected[name] = expected.get(name, 0) + 1
    assert sum(expected.values()) > 20  # e.g. bus_stop, crossing, rest_area: not OSM drive classes gnnbench encodes
    with caplog.at_level(logging.WARNING, logger="gnnbench.road"):
        release = read_release(write_release(tmp_path, bigger))
    assert release.quality["edges"]["highway_outside_vocabulary"] == expected
    assert f"{sum(expected.values())} edges have highway classes outside gnnbench's vocabulary" in caplog.text
    kept = release.edges.column("highway").to_pylist()  # the table keeps the release's class
    assert sum(name in expected for name in kept) == sum(expected.values())


def test_aadt_of_parallel_entries_is_their_sum(fixture, tmp_path):
    """Two OSM rows for one node pair: the loader's coalesce() sums their AADT (NaN if either is NaN)."""
    state_dir = write_release(tmp_path, fixture)
    path = state_dir / "Edges" / "edge_features_traffic_2019.pt"
    features = torch.load(path, weights_only=False)  # our own fixture file
    aadt = features["AADT"]
    indices, values = aadt._indices(), aadt._values()
    finite = np.flatnonzero(np.isfinite(values.numpy()))
    missing = np.flatnonzero(np.isnan(values.numpy()))
    doubled = torch.from_numpy(np.concatenate([finite[:3], missing[:1]]))
    extra = torch.tensor([100.0, 200.0, np.nan, 300.0])  # third: a known value plus NaN; fourth: NaN plus 300
    features["AADT"] = torch.sparse_coo_tensor(torch.cat([indices, indices[:, doubled]], 1),
                                               torch.cat([values, extra]), aadt.shape, check_invariants=False)
    torch.save(features, path)
    release = read_release(state_dir)
    volume = release.edge_volume.filter(pc.equal(release.edge_volume["year"], 2019)).to_pydict()
    got = dict(zip(volume["edge_id"], volume["aadt"]))
    for position, added in zip(doubled.tolist(), extra.tolist()):
        u, v = (int(node) for node in indices[:, position])
        edge = _edge_of(fixture, u, v)
        total = float(values[position]) + added
        assert got.get(edge) == (None if np.isnan(total) else pytest.approx(total)), (u, v)
    assert release.quality["edge_volume"]["2019"]["summed_duplicate_entries"] == 2


def test_dropped_accident_rows_are_counted(fixture, tmp_path):
    state_dir = write_release(tmp_path, fixture)
    path = state_dir / "accidents_monthly.csv"
    lines = path.read_text().splitlines()
    n = fixture.num_nodes
    u, v = int(fixture.seg_u[0]), int(fixture.seg_v[0])
    linked = set(zip(fixture.edge_src.tolist(), fixture.edge_dst.tolist()))
    absent = next((a, b) for a in range(n) for b in range(n)
                  if a != b and (a, b) not in linked and (b, a) not in linked)
    osm = fixture.osm_ids
    extra = [
        f"2020,1,{osm[absent[0]]},{osm[absent[1]]},2,{absent[0]},{absent[1]}",  # no such edge
        f"2020,13,{osm[u]},{osm[v]},1,{u},{v}",                                # bad month
        f"abc,1,{osm[u]},{osm[v]},1,{u},{v}",                                  # unparsable year
        f"2020,2,{osm[u]},{osm[v]},0,{u},{v}",                                 # non-positive count
        f"2020,2,{osm[u]},{osm[v]},1,{u},{n + 5}",                             # node index out of range
        f"2020,3,{osm[v]},{osm[u]},4,{v},{u}",                                 # reversed: matched, not dropped
    ]
    path.write_text("\n".join(lines + extra) + "\n")
    release = read_release(state_dir)
    quality = release.quality["accidents"]
    assert quality["rows_read"] == len(fixture.acc_count) + 6
    assert quality["rows_kept"] == len(fixture.acc_count) + 1
    assert quality["dropped"] == {"bad_date": 2, "bad_node_index": 1, "missing_count": 0, "non_positive_count": 1,
                                  "non_integer_count": 0, "no_matching_edge": 1}
    assert quality["matched_reversed"] == int(fixture.seg_oneway[0])  # a two-way segment has the reverse edge


def test_reversed_row_sharing_an_edge_month_is_counted(fixture, tmp_path):
    """A row against a one-way street's direction joins that street's own row of the same month (counted)."""
    state_dir = write_release(tmp_path, fixture)
    linked = set(zip(fixture.edge_src.tolist(), fixture.edge_dst.tolist()))
    seg = next(int(s) for s in np.flatnonzero(fixture.seg_oneway)
               if (int(fixture.seg_v[s]), int(fixture.seg_u[s])) not in linked)
    u, v = int(fixture.seg_u[seg]), int(fixture.seg_v[seg])
    osm = fixture.osm_ids
    path = state_dir / "accidents_monthly.csv"
    listed = sum(int(c) for y, m, a, c in zip(fixture.acc_year, fixture.acc_month, fixture.acc_segment,
                                             fixture.acc_count) if (y, m, a) == (2020, 1, seg))
    rows = [f"2020,1,{osm[v]},{osm[u]},3,{v},{u}"] + ([] if listed else [f"2020,1,{osm[u]},{osm[v]},1,{u},{v}"])
    path.write_text(path.read_text() + "\n".join(rows) + "\n")
    release = read_release(state_dir)
    quality = release.quality["accidents"]
    assert quality["matched_reversed"] == 1 and quality["reversed_sharing_edge"] == 1
    table = release.accidents.to_pydict()
    edge = _edge_of(fixture, u, v)
    counts = {(y, m, e): c for y, m, e, c in zip(table["year"], table["month"], table["edge_id"], table["count"])}
    assert counts[(2020, 1, edge)] == (listed or 1) + 3


def test_months_without_a_node_file_are_listed(fixture, tmp_path):
    """ML4RoadSafety's loader skips a month whose node-features file is missing; the import report names it."""
    state_dir = write_release(tmp_path, fixture)
    (state_dir / "Nodes" / "node_features_2020_3.csv").unlink()
    release = read_release(state_dir)
    has_crashes = any((int(y), int(m)) == (2020, 3) for y, m in zip(fixture.acc_year, fixture.acc_month))
    assert has_crashes and release.quality["accidents"]["months_without_node_file"] == ["2020-03"]
    assert read_release(write_release(tmp_path / "full", fixture)).quality["accidents"][
        "months_without_node_file"] == []


def test_missing_file_is_named(fixture, tmp_path):
    state_dir = write_release(tmp_path, fixture)
    (state_dir / "Edges" / "edge_features.pt").unlink()
    with pytest.raises(ReleaseFormatError, match="Edges/edge_features.pt"):
        read_release(state_dir)


def test_missing_columns_and_keys_are_named(fixture, tmp_path):
    state_dir = write_release(tmp_path, fixture)
    accidents = state_dir / "accidents_monthly.csv"
    table = pacsv.read_csv(accidents)
    pacsv.write_csv(table.drop_columns(["acc_count"]), accidents)
    with pytest.raises(ReleaseFormatError, match=r"accidents_monthly\.csv.*'acc_count'"):
        read_release(state_dir)

    state_dir = write_release(tmp_path / "again", fixture)
    month = state_dir / "Nodes" / "node_features_2020_2.csv"
    pacsv.write_csv(pacsv.read_csv(month).drop_columns(["wspd"]), month)
    with pytest.raises(ReleaseFormatError, match=r"node_features_2020_2\.csv.*'wspd'"):
        read_release(state_dir)

    state_dir = write_release(tmp_path / "third", fixture)
    features_path = state_dir / "Edges" / "edge_features.pt"
    loaded = torch.load(features_path, weights_only=False)  # our own fixture file
    features = {str(key): value for key, value in loaded.items() if key != "length"}
    torch.save(features, features_path)
    with pytest.raises(ReleaseFormatError, match=r"edge_features\.pt.*'length'"):
        read_release(state_dir)


@pytest.mark.parametrize("orientation", ["2xE", "Ex2"])
def test_dense_edge_list_adjacency(fixture, tmp_path, orientation):
    state_dir = write_release(tmp_path, fixture)
    edge_index = torch.stack([torch.from_numpy(fixture.edge_src), torch.from_numpy(fixture.edge_dst)])
    torch.save(edge_index if orientation == "2xE" else edge_index.T.contiguous(), state_dir / "adj_matrix.pt")
    edges = read_release(state_dir).edges
    assert edges.column("src").to_pylist() == fixture.edge_src.tolist()
    torch.save(torch.zeros((3, 5), dtype=torch.long), state_dir / "adj_matrix.pt")
    with pytest.raises(ReleaseFormatError, match=r"adj_matrix\.pt.*\[2, E\] or \[E, 2\]"):
        read_release(state_dir)
