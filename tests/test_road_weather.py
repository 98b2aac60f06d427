"""Meteostat weather adapter: formats, station choice, wind speed from daily files, gap filling, caching."""

from __future__ import annotations

import calendar
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("pytest_httpserver")
pytest.importorskip("pyproj")
from werkzeug import Response  # noqa: E402

from gnnbench.io import OfflineError, RetryPolicy, offline_mode  # noqa: E402
from gnnbench.road.demo.meteostat_files import (  # noqa: E402
    write_daily_csv,
    write_meteostat_fixture,
    write_monthly_csv,
    write_stations_db,
)
from gnnbench.road.sources.weather import (  # noqa: E402
    WeatherSourceError,
    load_stations,
    monthly_weather,
    nearest_stations,
)
from gnnbench.road.tables import WEATHER_COLUMNS, conform  # noqa: E402

FAST = RetryPolicy(attempts=3, backoff=0.0, max_wait=0.0, timeout=10.0)
BIT = {name: 1 << i for i, name in enumerate(WEATHER_COLUMNS)}


def serve(httpserver, root: Path, fail_once: set[str] = frozenset()) -> Counter:
    """Serve ``root`` at the server's base URL (404 for absent files); ``fail_once`` paths answer 500 first."""
    hits: Counter = Counter()

    def handler(request):
        relative = request.path.lstrip("/")
        hits[relative] += 1
        if relative in fail_once and hits[relative] == 1:
            return Response("boom", status=500)
        path = root / relative
        if path.is_file():
            return Response(path.read_bytes(), status=200, content_type="application/octet-stream")
        return Response("not found", status=404)

    httpserver.expect_request(re.compile(r"^/.*")).respond_with_handler(handler)
    return hits


# ----------------------------------------------------------------------------------------- hand-made example
# Stations near (-75, 40): A, B 11 km north of A, C 5.6 km south of A (no files at all), D far away.
# A: temp(y, m) = m + 20 (y - 2019), tmin = temp - 5 (Jan 2019 missing), tmax = temp + 5, prcp = 10 m, no pres,
#    temp Mar 2019 missing; daily 2019: wspd m + 0.5 every day, Jan days 1-3 missing (kept), Feb days 1-4 missing
#    (dropped), Apr 10 then 20 (mean 15); no daily file for 2020.
# B: temp = m + 0.5 + 20 (y - 2019), tmin/tmax = temp -+ 5, prcp = 20 m, pres = 1000 + m, daily wspd 7 every day.
STATIONS = [
    {"id": "A0001", "latitude": 40.00, "longitude": -75.00},
    {"id": "B0002", "latitude": 40.10, "longitude": -75.00},
    {"id": "C0003", "latitude": 39.95, "longitude": -75.00},
    {"id": "D0004", "latitude": 40.00, "longitude": -70.00},
]
NODES = pa.table({
    "node_id": pa.array([40, 10, 20, 30], pa.int64()),
    "lon": [-75.60, -75.00, -75.00, -75.00],
    "lat": [40.00, 40.01, 40.09, 39.96],
})
YEARS = (2019, 2020)


def _days(year):
    return [(m, d) for m in range(1, 13) for d in range(1, calendar.monthrange(year, m)[1] + 1)]


@pytest.fixture()
def tree(tmp_path) -> Path:
    root = tmp_path / "meteostat"
    write_stations_db(root / "stations.db", STATIONS,
                      [{"station": s["id"], "start": "2010-01-01", "end": "2024-12-31"} for s in STATIONS])
    rows_a, rows_b = [], []
    for year in YEARS:
        for month in range(1, 13):
            temp = month + 20.0 * (year - 2019)
            rows_a.append({"year": year, "month": month, "temp": None if (year, month) == (2019, 3) else temp,
                           "tmin": None if (year, month) == (2019, 1) else temp - 5, "tmax": temp + 5,
                           "prcp": 10.0 * month, "tsun": 100.0})
            rows_b.append({"year": year, "month": month, "temp": temp + 0.5, "tmin": temp + 0.5 - 5,
                           "tmax": temp + 0.5 + 5, "prcp": 20.0 * month, "pres": 1000.0 + month})
    rows_a.append({"year": 2018, "month": 12, "temp": -50.0})  # outside the requested years: ignored
    write_monthly_csv(root / "monthly" / "A0001.csv.gz", rows_a)
    write_monthly_csv(root / "monthly" / "B0002.csv.gz", rows_b)
    wspd_a = {}
    for month, day in _days(2019):
        if (month == 1 and day <= 3) or (month == 2 and day <= 4):
            wspd_a[(month, day)] = None
        elif month == 4:
            wspd_a[(month, day)] = 10.0 if day <= 15 else 20.0
        else:
            wspd_a[(month, day)] = month + 0.5
    write_daily_csv(root / "daily" / "2019" / "A0001.csv.gz", 2019, wspd_a)
    for year in YEARS:
        write_daily_csv(root / "daily" / str(year) / "B0002.csv.gz", year, {key: 7.0 for key in _days(year)})
    return root


def _value(table: pa.Table, node: int, year: int, month: int, column: str):
    rows = table.filter((pa.compute.field("node_id") == node) & (pa.compute.field("year") == year)
                        & (pa.compute.field("month") == month))
    assert rows.num_rows == 1
    return rows.column(column)[0].as_py()


def _run(httpserver, tmp_path, **kwargs):
    return monthly_weather(NODES, YEARS, base_url=httpserver.url_for("").rstrip("/"), max_distance_km=20.0,
                           cache_dir=tmp_path / "cache", retry=FAST, **kwargs)


def test_nearest_stations_order_and_ties():
    stations = np.array([[-75.0, 40.0], [-75.0, 40.1], [-75.0, 39.9]])
    nodes = np.array([[-75.0, 40.01], [-75.0, 40.0], [-75.0, 40.09]])
    indices, distances = nearest_stations(nodes, stations, epsg=32618, k=2)
    assert indices[:, 0].tolist() == [0, 0, 1]
    assert indices[0, 1] == 1 and indices[2, 1] == 0
    assert distances[1, 0] == pytest.approx(0.0, abs=1e-6)
    assert distances[0, 0] == pytest.approx(0.01 * 111_000, rel=0.01)  # 0.01 degree of latitude
    tie_nodes = np.array([[-75.0, 40.0]])  # stations 1 and 2 are (almost exactly) equidistant: lower index first
    indices, _ = nearest_stations(tie_nodes, np.array([[-75.0, 40.1], [-75.0, 40.1]]), epsg=32618, k=2)
    assert indices.tolist() == [[0, 1]]
    indices, distances = nearest_stations(nodes[:1], stations[:1], epsg=32618, k=3)
    assert indices.tolist() == [[0, -1, -1]] and np.isinf(distances[0, 1:]).all()


def test_load_stations_schema(httpserver, tree, tmp_path):
    serve(httpserver, tree)
    stations = load_stations(base_url=httpserver.url_for("").rstrip("/"), cache_dir=tmp_path / "c", retry=FAST,
                             bbox=(-76, 39, -74, 41))
    assert stations.column("id").to_pylist() == ["A0001", "B0002", "C0003"]
    assert stations.column("first_year").to_pylist() == [2010] * 3
    assert stations.column("last_year").to_pylist() == [2024] * 3


def test_hand_checked_single_station(httpserver, tree, tmp_path):
    hits = serve(httpserver, tree)
    table, report = _run(httpserver, tmp_path, k=1)
    assert table.schema == conform("node_weather", table).schema
    assert table.num_rows == 4 * 24
    assert report["stations_used"] == ["A0001", "B0002"]
    assert report["stations_without_data"] == ["C0003"]  # nearest to node 30, but no files
    assert report["nodes_without_station"] == [40]
    assert report["nodes_per_station"] == {"A0001": 2, "B0002": 1}
    assert report["station_columns_without_data"]["pres"] == ["A0001"]
    # every file fetched once; D (outside the nodes' box + 20 km) never
    assert all(count == 1 for count in hits.values())
    assert not any("D0004" in path for path in hits)
    assert hits["daily/2020/A0001.csv.gz"] == 1 and hits["monthly/C0003.csv.gz"] == 1

    for node in (10, 30):  # node 30's nearest station C has no data: it uses A
        # observed
        assert _value(table, node, 2019, 1, "tavg") == 1.0
        assert _value(table, node, 2020, 5, "tmax") == 30.0
        assert _value(table, node, 2019, 1, "wspd") == 1.5  # 3 missing days are tolerated
        assert _value(table, node, 2019, 4, "wspd") == 15.0  # mean of 15 x 10 and 15 x 20
        # linear interpolation in time
        assert _value(table, node, 2019, 3, "tavg") == 3.0
        assert _value(table, node, 2019, 2, "wspd") == pytest.approx(2.5)  # 4 missing days: dropped, interpolated
        # calendar-month mean (no earlier month to interpolate from; no 2020 daily file)
        assert _value(table, node, 2019, 1, "tmin") == 16.0
        assert _value(table, node, 2020, 1, "wspd") == 1.5
        assert _value(table, node, 2020, 4, "wspd") == 15.0
        # all-station mean: A never has pres; Feb has no observed wspd at A in any year
        assert _value(table, node, 2019, 6, "pres") == 1006.0
        assert _value(table, node, 2020, 2, "wspd") == 7.0
        # bit masks
        assert _value(table, node, 2019, 1, "filled") == BIT["tmin"] | BIT["pres"]
        assert _value(table, node, 2019, 3, "filled") == BIT["tavg"] | BIT["pres"]
        assert _value(table, node, 2019, 2, "filled") == BIT["wspd"] | BIT["pres"]
        assert _value(table, node, 2019, 5, "filled") == BIT["pres"]
    # node 20 sits on B: everything observed
    assert _value(table, 20, 2019, 1, "tavg") == 1.5
    assert _value(table, 20, 2020, 2, "wspd") == 7.0
    assert set(table.filter(pa.compute.field("node_id") == 20).column("filled").to_pylist()) == {0}
    # node 40 has no station within 20 km: all-station means, every bit set
    assert _value(table, 40, 2019, 1, "tavg") == 1.25
    assert _value(table, 40, 2019, 1, "tmin") == -3.5
    assert _value(table, 40, 2019, 3, "tavg") == 3.5
    assert set(table.filter(pa.compute.field("node_id") == 40).column("filled").to_pylist()) == {63}

    pres = report["filled"]["pres"]
    assert pres == {"observed": 24, "neighbor": 0, "interpolate": 0, "climatology": 0, "all_stations": 72,
                    "missing": 0}
    tavg = report["filled"]["tavg"]
    assert tavg["interpolate"] == 2 and tavg["all_stations"] == 24 and tavg["observed"] == 70
    wspd = report["filled"]["wspd"]
    # per A-node: interp Feb..Mar? only Feb 2019; climatology 2020 months except Feb; all-station Feb 2020
    assert wspd["interpolate"] == 2 and wspd["climatology"] == 22 and wspd["all_stations"] == 2 + 24


def test_neighbor_fill_before_time_fill(httpserver, tree, tmp_path):
    serve(httpserver, tree)
    table, report = _run(httpserver, tmp_path, k=2)
    for node in (10, 30):  # B is within 20 km of both
        assert _value(table, node, 2019, 3, "tavg") == 3.5
        assert _value(table, node, 2019, 1, "tmin") == -3.5
        assert _value(table, node, 2019, 6, "pres") == 1006.0
        assert _value(table, node, 2020, 1, "wspd") == 7.0
        assert _value(table, node, 2019, 1, "tavg") == 1.0  # observed values stay the node's own station's
        assert _value(table, node, 2019, 1, "filled") == BIT["tmin"] | BIT["pres"]
    assert report["filled"]["pres"]["neighbor"] == 48
    assert report["filled"]["tavg"]["neighbor"] == 2


def test_offline_from_cache_is_identical(httpserver, tree, tmp_path):
    hits = serve(httpserver, tree)
    first, report = _run(httpserver, tmp_path, k=2)
    requests_made = sum(hits.values())
    with offline_mode():
        second, again = _run(httpserver, tmp_path, k=2)
        assert sum(hits.values()) == requests_made  # no network; the 404s were remembered too
        assert second.equals(first) and again == report
        with pytest.raises(OfflineError, match="stations.db"):
            monthly_weather(NODES, YEARS, base_url=httpserver.url_for("").rstrip("/"), cache_dir=tmp_path / "empty")


def test_missing_column_names_url_and_column(httpserver, tree, tmp_path):
    rows = [{"year": 2019, "month": m, "temp": 1.0, "tmin": 0.0, "tmax": 2.0, "prcp": 1.0} for m in range(1, 13)]
    write_monthly_csv(tree / "monthly" / "B0002.csv.gz", rows, drop=("pres",))
    serve(httpserver, tree)
    with pytest.raises(WeatherSourceError, match=r"monthly/B0002\.csv\.gz.*'pres'"):
        _run(httpserver, tmp_path, k=1)


def test_daily_file_without_wspd(httpserver, tree, tmp_path):
    write_daily_csv(tree / "daily" / "2020" / "B0002.csv.gz", 2020, {(1, 1): 3.0}, drop=("wspd",))
    serve(httpserver, tree)
    with pytest.raises(WeatherSourceError, match=r"daily/2020/B0002\.csv\.gz.*'wspd'"):
        _run(httpserver, tmp_path, k=1)


def test_server_error_then_success(httpserver, tree, tmp_path):
    hits = serve(httpserver, tree, fail_once={"monthly/A0001.csv.gz"})
    table, _ = _run(httpserver, tmp_path, k=1)
    assert hits["monthly/A0001.csv.gz"] == 2
    assert _value(table, 10, 2019, 3, "tavg") == 3.0


def test_generated_fixture_is_deterministic(httpserver, tmp_path):
    bbox = (-75.3, 39.8, -74.9, 40.2)
    info = write_meteostat_fixture(tmp_path / "a", bbox=bbox, seed=7)
    write_meteostat_fixture(tmp_path / "b", bbox=bbox, seed=7)
    for relative in info["paths"]:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes(), relative
    serve(httpserver, tmp_path / "a")
    rng = np.random.default_rng(1)
    nodes = pa.table({"node_id": np.arange(500, dtype=np.int64)[::-1].copy(),
                      "lon": rng.uniform(bbox[0], bbox[2], 500), "lat": rng.uniform(bbox[1], bbox[3], 500)})
    base = httpserver.url_for("").rstrip("/")
    one, report = monthly_weather(nodes, [2019, 2020], base_url=base, max_distance_km=200, cache_dir=tmp_path / "c1",
                                  retry=FAST)
    two, _ = monthly_weather(nodes, [2020, 2019], base_url=base, max_distance_km=200, cache_dir=tmp_path / "c2",
                             retry=FAST)
    assert one.equals(two)
    assert one.num_rows == 500 * 24
    assert one.column("node_id").to_pylist()[:3] == [0, 1, 2]
    assert report["stations_without_data"] == [info["stations"][-1]]
    assert all(one.column(name).null_count == 0 for name in WEATHER_COLUMNS)
    wspd = one.column("wspd").to_numpy()
    assert (wspd > 0).all() and (wspd < 40).all()
