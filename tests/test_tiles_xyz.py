"""XYZ imagery against a loopback tile server whose pixels encode their global pixel: centring, seams, axis order,
deduplication, zoom limits, faults (404, 429, 500, corrupt, blank), retries, and the sources' terms and keys."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import gnnbench.io.http as http
from gnnbench.io import loopback_allowed, offline_mode
from gnnbench.io.throttle import RateLimiter
from gnnbench.road.demo.imagery import coordinate_tile, decode_coordinates
from gnnbench.road.demo.server import Fault, LoopbackPortal
from gnnbench.road.tiles.cache import TileCache
from gnnbench.road.tiles.crops import CropSpec, TileReader, assemble, filter_pad, tiles_of_window, window
from gnnbench.road.tiles.fetch import fetch_tiles
from gnnbench.road.tiles.geometry import global_pixel, lonlat_of_pixel
from gnnbench.road.tiles.layout import cache_dir, imagery_dir
from gnnbench.road.tiles.pipeline import build_tiles, download_tiles
from gnnbench.road.tiles.plan import make_plan, read_targets
from gnnbench.road.tiles.sources import TileZoomError, XyzSource, get_source
from gnnbench.road.tiles.sources.xyz import USGS_IMAGERY, SourceInfo, user_source
from tile_fixtures import (centre_pixel, native_cover, points_near, read_crops, tile_centre_lonlat, tile_path,
                           tile_requests, tile_server, wrapped, write_tables)

LATITUDES = (0.0, 25.0, 38.6, 47.0, 60.0, 70.0)
LON = -100.3


@pytest.fixture(autouse=True)
def sleeps(monkeypatch):
    """Retry waits are recorded, not slept."""
    recorded: list[float] = []
    monkeypatch.setattr(http, "_sleep", recorded.append)
    monkeypatch.delenv("GNNBENCH_IMAGERY_KEY", raising=False)
    return recorded


@pytest.fixture(scope="module")
def shared_server():
    with tile_server(max_zoom=20) as (portal, server):
        yield portal, server


def _crops(source: XyzSource, points: list[tuple[float, float]], zoom: int, size: int, ratio: float, cache: Path):
    """Fetch the tiles under the crops at global pixels ``points`` into ``cache`` and assemble the crops."""
    keys = [key for x, y in points for key in tiles_of_window(zoom, *window(x, y, size, ratio), pad=filter_pad(ratio))]
    report = fetch_tiles(source, keys, TileCache(cache), rate=0, concurrency=4)
    assert report.outcomes == Counter(ok=report.fetched)
    reader = TileReader(TileCache(cache))
    return [assemble(x, y, zoom, size, ratio, reader.get) for x, y in points]


def _assert_seamless(rgb: np.ndarray) -> None:
    """Inside a native crop X grows by exactly 1 along every row and Y along every column, and nothing else moves."""
    gx, gy = decode_coordinates(rgb)
    assert (wrapped(np.diff(gx, axis=1)) == 1).all()
    assert (wrapped(np.diff(gy, axis=0)) == 1).all()
    assert (np.diff(gx, axis=0) == 0).all() and (np.diff(gy, axis=1) == 0).all()


def _run(root: Path, state: str, template: str, spec: CropSpec, *, max_zoom: int = 20, build: bool = True, **kw):
    record = download_tiles(state, source="xyz", template=template, max_zoom=max_zoom, spec=spec, root=root,
                            scheduler="none", rate=0, **kw)
    out = build_tiles(state, root=root, scheduler="none", contact_sheet=4) if build else None
    return record, out


# --------------------------------------------------------------------------- centring and seams


@pytest.mark.parametrize("zoom", (12, 16, 18, 20))
@pytest.mark.parametrize("lat", LATITUDES)
def test_native_crops_are_centred_within_half_a_pixel(shared_server, tmp_path, lat, zoom):
    _, server = shared_server
    source = user_source(server.template("coordinate", "zxy"), max_zoom=20)
    lon, lats = points_near(LON, lat, zoom, 3, spread_px=700, seed=zoom)
    x, y = global_pixel(lon, lats, zoom)
    results = _crops(source, list(zip(x.tolist(), y.tolist())), zoom, 256, 1.0, tmp_path)
    for px, py, (status, rgb, dx, dy) in zip(x, y, results):
        assert status == "ok" and rgb.shape == (256, 256, 3)
        cx, cy = centre_pixel(rgb)  # the crop's centre is the corner between pixels 127 and 128: (cx, cy)
        assert abs(wrapped(px - cx)) <= 0.5 and abs(wrapped(py - cy)) <= 0.5
        assert abs(wrapped(px - cx) - dx) < 1e-6 and abs(wrapped(py - cy) - dy) < 1e-6
        _assert_seamless(rgb)


@pytest.mark.parametrize("zoom", (16, 18))
def test_native_crops_across_four_tiles_have_no_seams(shared_server, tmp_path, zoom):
    _, server = shared_server
    source = user_source(server.template("coordinate", "zyx"), max_zoom=20)
    x0, y0 = (v // 256 * 256 for v in global_pixel(-75.2, 38.6, zoom))
    points = [(x0 + 256 * i + offset, y0 + 256 * j + offset) for i, j, offset in
              ((0, 0, 3.3), (1, 0, 250.6), (2, 1, 127.9 - 128), (1, 2, 64.2))]
    for (x, y), (status, rgb, _, _) in zip(points, _crops(source, points, zoom, 256, 1.0, tmp_path)):
        assert status == "ok"
        assert len(native_cover(x, y, 256)) == 4
        gx, gy = decode_coordinates(rgb)
        assert len(set((gx // 256).ravel().tolist())) == 2 and len(set((gy // 256).ravel().tolist())) == 2
        _assert_seamless(rgb)


@pytest.mark.parametrize(("lat", "zoom", "ratio"), [(38.6, 17, 1.26), (25.0, 16, 0.8), (60.0, 18, 2.0),
                                                    (47.0, 20, 1.5)])
def test_resampled_crops_are_centred(shared_server, tmp_path, lat, zoom, ratio):
    _, server = shared_server
    source = user_source(server.template("coordinate", "zxy"), max_zoom=20)
    lon, lats = points_near(LON, lat, zoom, 4, spread_px=900, seed=3, margin=24)  # no 255 -> 0 wrap near the centre
    x, y = global_pixel(lon, lats, zoom)
    for px, py, (status, rgb, dx, dy) in zip(x, y, _crops(source, list(zip(x, y)), zoom, 128, ratio, tmp_path)):
        assert status == "ok" and rgb.shape == (128, 128, 3)
        cx, cy = centre_pixel(rgb)
        # output pixel 64 samples the source around x + ratio / 2, whose coordinate value is that minus half a pixel
        assert abs(wrapped(cx - px)) <= ratio and abs(wrapped(cy - py)) <= ratio
        assert abs(wrapped(cx - (px + ratio / 2 - 0.5))) <= 1.0 and abs(wrapped(cy - (py + ratio / 2 - 0.5))) <= 1.0
        assert abs(dx) < 1e-9 and abs(dy) < 1e-9  # the window is centred exactly on the point
        gx, _ = decode_coordinates(rgb)
        step = np.median(wrapped(np.diff(gx[64].astype(np.int64))))
        assert step == pytest.approx(ratio, abs=1.0)  # one output pixel covers `ratio` source pixels


def test_pipeline_crops_from_a_nodes_table_are_centred(tmp_path):
    """The whole path: nodes.parquet (lon, lat) -> plan -> fetch -> crops in shards; each stored crop's centre
    decodes to the node's own global pixel, and the index records the offset."""
    with tile_server(max_zoom=20) as (_, server):
        template = server.template("coordinate", "zyx")
        for number, (lat, zoom) in enumerate(((25.0, 16), (47.0, 19), (70.0, 20))):
            state = f"CT{number}"
            lon, lats = points_near(LON, lat, zoom, 12, spread_px=1500, seed=number)
            write_tables(tmp_path, state, lon, lats, node_ids=np.arange(12) * 7 + 3)
            record, out = _run(tmp_path, state, template, CropSpec(size_px=64, zoom=zoom), chunk_size=5)
            assert record["plan"]["zoom"] == zoom and record["targets"] == 12
            index, crops = read_crops(out)
            assert (index["status"] == "ok").all() and len(crops) == 12
            expected = dict(zip((np.arange(12) * 7 + 3).tolist(), zip(*global_pixel(lon, lats, zoom))))
            for row in index.itertuples():
                rgb = crops[f"n{row.node_id:09d}"]
                px, py = expected[row.node_id]
                cx, cy = centre_pixel(rgb)
                assert abs(wrapped(px - cx)) <= 0.5 and abs(wrapped(py - cy)) <= 0.5
                assert row.dx == pytest.approx(float(wrapped(px - cx)), abs=1e-5)
                assert row.dy == pytest.approx(float(wrapped(py - cy)), abs=1e-5)
                _assert_seamless(rgb)


def test_pipeline_resampled_crops_cover_the_footprint(tmp_path):
    with tile_server(max_zoom=18) as (_, server):
        lon, lat = points_near(-75.0, 38.6, 17, 10, spread_px=1000, seed=4, margin=24)
        write_tables(tmp_path, "RS", lon, lat)
        record, out = _run(tmp_path, "RS", server.template("coordinate", "zxy"),
                           CropSpec(size_px=128, footprint_m=150.0), max_zoom=18)
    assert record["plan"]["zoom"] == 17  # 1.17 m/px wanted: zoom 17 (0.93 m/px) is the coarsest fine enough
    index, crops = read_crops(out)
    assert (index["status"] == "ok").all()
    np.testing.assert_allclose(index["m_per_px"], 150.0 / 128, rtol=1e-5)
    ratio = 150.0 / 128 / (2 * np.pi * 6378137.0 * np.cos(np.radians(lat)) / (256 * 2 ** 17))
    x, y = global_pixel(lon, lat, 17)
    for node, (px, py, r) in enumerate(zip(x, y, ratio)):
        cx, cy = centre_pixel(crops[f"n{node:09d}"])
        assert abs(wrapped(cx - px)) <= r and abs(wrapped(cy - py)) <= r


# --------------------------------------------------------------------------- axis order


def test_axis_orders_zxy_and_zyx_both_give_the_right_pixels(shared_server, tmp_path):
    portal, server = shared_server
    key = (17, 37001, 49006)  # column and row differ modulo 16, so a swap shows in the decoded pixels
    for order, route in (("zxy", "xyz"), ("zyx", "tiles")):
        template = server.template("coordinate", order)
        assert f"/{route}/" in template
        source = user_source(template, max_zoom=20)
        assert source.axis_order == order
        before = len(portal.requests)
        cache = TileCache(tmp_path / order)
        assert fetch_tiles(source, [key], cache, rate=0).outcomes == Counter(ok=1)
        assert portal.requests[before:] == [("GET", tile_path(template, key))]
        gx, gy = decode_coordinates(TileReader(cache).get(key)[1])
        assert gx[0, 0] == (256 * 37001) % 4096 and gy[0, 0] == (256 * 49006) % 4096
        assert gx[5, 200] == (256 * 37001 + 200) % 4096 and gy[5, 200] == (256 * 49006 + 5) % 4096
    assert USGS_IMAGERY.axis_order == "zyx" and USGS_IMAGERY.url(16, 1, 2).endswith("/tile/16/2/1")
    wmts = user_source("http://h/{TileMatrix}/{TileRow}/{TileCol}.png", max_zoom=18)
    assert wmts.axis_order == "zyx" and wmts.url(5, 3, 4) == "http://h/5/4/3.png"


def test_a_template_that_disagrees_with_axis_order_is_refused(shared_server):
    _, server = shared_server
    info = SourceInfo(id="xyz", name="t", provider="p", url="u", licence="l", licence_url="", attribution="",
                      redistributable=False)
    with pytest.raises(ValueError, match="axis order"):
        XyzSource(template=server.template("coordinate", "zxy"), max_zoom=18, axis_order="zyx", info=info)
    with pytest.raises(ValueError, match="axis order"):
        user_source(server.template("coordinate", "zyx"), max_zoom=18, axis_order="zxy")
    with pytest.raises(ValueError, match="axis order"):
        get_source("xyz", template=server.template("coordinate", "zyx"), max_zoom=18, axis_order="zxy")
    with pytest.raises(ValueError, match=r"\{z\}, \{x\} and \{y\}"):
        user_source("http://h/{z}/{x}.png", max_zoom=18)


# --------------------------------------------------------------------------- deduplication and resume


def test_each_unique_tile_is_requested_once_and_a_rerun_requests_nothing(tmp_path):
    zoom = 18
    lon, lat = points_near(-75.0, 38.6, zoom, 40, spread_px=600, seed=11)  # clustered: crops share most tiles
    write_tables(tmp_path, "DD", lon, lat)
    x, y = global_pixel(lon, lat, zoom)
    cover = set().union(*(native_cover(px, py, 256) for px, py in zip(x, y)))
    with tile_server(max_zoom=20) as (portal, server):
        record, _ = _run(tmp_path, "DD", server.template("coordinate", "zxy"), CropSpec(zoom=zoom), build=False,
                         chunk_size=7)
        requested = tile_requests(portal)
        assert Counter(requested).most_common(1)[0][1] == 1  # no tile twice
        assert {(tx, ty) for _, tx, ty in requested} == cover and all(z == zoom for z, _, _ in requested)
        assert record["unique_tiles"] == len(cover) < 40 * 4
        assert record["requests"]["fetched"] == record["requests"]["http_requests"] == len(cover)
        assert record["requests"]["outcomes"] == {"ok": len(cover)}
        count = len(portal.requests)
        again, _ = _run(tmp_path, "DD", server.template("coordinate", "zxy"), CropSpec(zoom=zoom), build=False,
                        chunk_size=7)
        assert len(portal.requests) == count
        assert again["requests"]["from_cache"] == len(cover) and again["requests"]["fetched"] == 0


def test_resampled_crops_fetch_each_tile_once(tmp_path):
    lon, lat = points_near(-75.0, 38.6, 17, 30, spread_px=800, seed=12)
    write_tables(tmp_path, "DR", lon, lat)
    with tile_server(max_zoom=18) as (portal, server):
        source = user_source(server.template("coordinate", "zxy"), max_zoom=18)
        plan = make_plan(read_targets(tmp_path / "tables" / "DR"), source, CropSpec(size_px=128, footprint_m=150.0),
                         chunk_size=4)
        record, _ = _run(tmp_path, "DR", server.template("coordinate", "zxy"), CropSpec(size_px=128, footprint_m=150.0),
                         max_zoom=18, build=False, chunk_size=4)
        requested = tile_requests(portal)
    assert len(requested) == len(set(requested)) == record["unique_tiles"] == plan.unique_tiles
    assert set(requested) == {key for keys in plan.tiles for key in keys}
    assert sorted(key for chunk in plan.fetch_chunks for key in chunk) == sorted(set(requested))  # disjoint chunks
    x, y = global_pixel(lon, lat, 17)  # every pixel under every exact window is among them
    for px, py, ratio in zip(x, y, plan.targets.sort_values("target_id")["ratio"]):
        half = 64 * ratio
        xs, ys = range(int(np.floor(px - half)), int(np.ceil(px + half))), range(int(np.floor(py - half)),
                                                                                   int(np.ceil(py + half)))
        assert {(17, a, b) for a in {v // 256 for v in xs} for b in {v // 256 for v in ys}} <= set(requested)


def test_a_zoom_beyond_the_source_fails_before_any_request(tmp_path):
    lon, lat = points_near(-75.0, 38.6, 16, 5, spread_px=300)
    write_tables(tmp_path, "ZM", lon, lat)
    with offline_mode(), pytest.raises(TileZoomError, match="zoom 16") as error:
        download_tiles("ZM", source="usgs-imagery", spec=CropSpec(zoom=17), root=tmp_path, scheduler="none")
    assert "zoom 17" in str(error.value) and "404" in str(error.value)
    with tile_server(max_zoom=16) as (portal, server):
        with pytest.raises(TileZoomError, match="up to zoom 16"):
            _run(tmp_path, "ZM", server.template("coordinate", "zxy"), CropSpec(zoom=17), max_zoom=16, build=False)
        assert portal.requests == []
    assert not (tmp_path / "imagery").exists()
    # a footprint finer than the source can give is refused too (no silent upsampling)
    with offline_mode(), pytest.raises(ValueError, match="upsampling"):
        download_tiles("ZM", source="usgs-imagery", spec=CropSpec(footprint_m=50.0), root=tmp_path,
                       scheduler="none")


# --------------------------------------------------------------------------- faults

ZOOM = 18
CASES = {  # node -> (faults on its tile, crop status, requests for its tile)
    0: ((), "ok", 1),
    1: ((Fault("status", 404),), "missing", 1),
    2: ((Fault("status", 429, retry_after=7),), "ok", 2),
    3: ((Fault("status", 500),), "ok", 2),
    4: ((Fault("status", 500),) * 6, "failed", 6),  # RetryPolicy().attempts == 6
    5: ((Fault("corrupt"),), "ok", 2),
    6: ((Fault("corrupt"), Fault("corrupt")), "corrupt", 2),
    7: ((), "ok", 1),
    9: ((Fault("truncate"),), "ok", 2),  # a body cut short is retried
}


def _fault_layout():
    """Nodes 0-7 and 9 each centred in a tile of their own (a 128-px crop there needs that one tile); node 8
    straddles node 1's tile and the plain tile to its left, so its crop takes the worse status (missing)."""
    x0, y0 = (int(v // 256) for v in global_pixel(-75.2, 38.6, ZOOM))
    tiles = {node: (x0 + 3 * node, y0) for node in CASES}
    lon, lat = tile_centre_lonlat(ZOOM, tiles.values())
    lon8, lat8 = lonlat_of_pixel(256 * tiles[1][0] + 10.2, 256 * y0 + 128.25, ZOOM)
    ids = [*tiles, 8]
    order = np.argsort(ids)
    return tiles, np.append(lon, lon8)[order], np.append(lat, lat8)[order]


def _inject(portal, template, tiles):
    for node, (faults, _, _) in CASES.items():
        if faults:
            portal.inject(tile_path(template, (ZOOM, *tiles[node])), *faults)


def test_faults_are_recorded_and_counted_never_raised(tmp_path, sleeps):
    tiles, lon, lat = _fault_layout()
    write_tables(tmp_path, "FT", lon, lat)
    with tile_server(max_zoom=20) as (portal, server):
        template = server.template("coordinate", "zyx")
        _inject(portal, template, tiles)
        record, out = _run(tmp_path, "FT", template, CropSpec(size_px=128, zoom=ZOOM), concurrency=3)
        requested = Counter(tile_requests(portal))
    for node, (_, _, count) in CASES.items():
        assert requested[(ZOOM, *tiles[node])] == count, node
    left = (ZOOM, tiles[1][0] - 1, tiles[1][1])
    assert requested[left] == 1 and len(requested) == len(CASES) + 1
    assert sleeps.count(7.0) == 1  # the 429's Retry-After, honoured exactly
    assert len(sleeps) == 1 + 1 + 5 + 1  # a wait each for the 429, the 500, the truncated body; 5 for the 500s
    assert all(0 < s <= 60 for s in sleeps)
    report = record["requests"]
    assert report["http_requests"] == sum(requested.values())
    assert report["outcomes"] == {"ok": 7, "missing": 1, "failed": 1, "corrupt": 1}
    assert {tuple(f["key"]): f["reason"] for f in report["failures"]} == {
        (ZOOM, *tiles[1]): "missing", (ZOOM, *tiles[4]): "failed", (ZOOM, *tiles[6]): "corrupt"}
    cache = TileCache(cache_dir(tmp_path, user_source(template, max_zoom=20).key))
    assert cache.marker((ZOOM, *tiles[1]))["status"] == 404
    assert cache.marker((ZOOM, *tiles[4]))["reason"] == "failed"
    assert cache.read((ZOOM, *tiles[2])) is not None and cache.read((ZOOM, *tiles[4])) is None
    index, crops = read_crops(out)
    statuses = dict(zip(index["node_id"], index["status"]))
    assert statuses == {**{node: status for node, (_, status, _) in CASES.items()}, 8: "missing"}
    assert set(crops) == {f"n{node:09d}" for node, status in statuses.items() if status == "ok"}
    assert (index.loc[index["status"] != "ok", "offset"] == -1).all()
    manifest = json.loads((out / "manifest.json").read_text())
    counts = Counter(index["status"])
    assert manifest["counts"] == {"targets": 10, **{s: counts.get(s, 0) for s in
                                                   ("ok", "missing", "out_of_coverage", "corrupt", "blank", "failed")}}
    assert manifest["counts"]["ok"] == 6 and manifest["counts"]["missing"] == 2
    assert manifest["requests"]["outcomes"] == report["outcomes"]


def test_retry_missing_refetches_failed_and_corrupt_but_not_404(tmp_path):
    tiles, lon, lat = _fault_layout()
    write_tables(tmp_path, "RT", lon, lat)
    with tile_server(max_zoom=20) as (portal, server):
        template = server.template("coordinate", "zxy")
        _inject(portal, template, tiles)
        _run(tmp_path, "RT", template, CropSpec(size_px=128, zoom=ZOOM), build=False)
        count = len(portal.requests)
        plain, _ = _run(tmp_path, "RT", template, CropSpec(size_px=128, zoom=ZOOM), build=False)  # no flag: nothing
        assert len(portal.requests) == count and plain["requests"]["fetched"] == 0
        record, out = _run(tmp_path, "RT", template, CropSpec(size_px=128, zoom=ZOOM), retry_missing=True)
        again = tile_requests(portal)[len(tile_requests(portal)) - (len(portal.requests) - count):]
    assert sorted(again) == sorted([(ZOOM, *tiles[4]), (ZOOM, *tiles[6])])
    assert record["requests"]["from_cache"] == len(CASES) + 1 - 2 and record["requests"]["outcomes"] == {"ok": 2}
    index, _ = read_crops(out)
    statuses = dict(zip(index["node_id"], index["status"]))
    assert (statuses[4], statuses[6], statuses[1], statuses[8]) == ("ok", "ok", "missing", "missing")


def test_a_rebuild_after_retry_missing_picks_up_the_refetched_tiles(tmp_path):
    tiles, lon, lat = _fault_layout()
    write_tables(tmp_path, "RB", lon, lat)
    with tile_server(max_zoom=20) as (portal, server):
        template = server.template("coordinate", "zxy")
        _inject(portal, template, tiles)
        _, out = _run(tmp_path, "RB", template, CropSpec(size_px=128, zoom=ZOOM))
        first = pd.read_parquet(out / "crops.parquet").set_index("node_id")["status"]
        assert first[4] == "failed" and first[6] == "corrupt"
        _, out = _run(tmp_path, "RB", template, CropSpec(size_px=128, zoom=ZOOM), retry_missing=True)
    index, crops = read_crops(out)
    statuses = dict(zip(index["node_id"], index["status"]))
    assert (statuses[4], statuses[6]) == ("ok", "ok") and "n000000004" in crops
    assert json.loads((out / "manifest.json").read_text())["counts"]["failed"] == 0


def test_blank_tiles_are_blank_crops(tmp_path):
    lon, lat = points_near(-75.0, 38.6, 18, 6, spread_px=400, seed=2)
    write_tables(tmp_path, "BL", lon, lat)
    with tile_server(max_zoom=20) as (portal, server):
        template = server.template("blank", "zxy")
        record, out = _run(tmp_path, "BL", template, CropSpec(zoom=18))
        count = len(portal.requests)
        _run(tmp_path, "BL", template, CropSpec(zoom=18), retry_missing=True, build=False)
        assert len(portal.requests) == count  # blank is not retried
    assert record["requests"]["outcomes"] == {"blank": record["unique_tiles"]}
    index, crops = read_crops(out)
    assert (index["status"] == "blank").all() and crops == {}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["blank"] == 6 and manifest["counts"]["ok"] == 0
    assert "contact_sheet" not in manifest["files"]


def test_tiles_outside_coverage_are_missing(tmp_path):
    zoom = 17
    x0, y0 = (int(v // 256) for v in global_pixel(-75.2, 38.6, zoom))
    lon, lat = tile_centre_lonlat(zoom, [(x0, y0), (x0 + 40, y0)])
    west, north = lonlat_of_pixel(256 * x0 - 300, 256 * y0 - 300, zoom)
    east, south = lonlat_of_pixel(256 * x0 + 600, 256 * y0 + 600, zoom)
    write_tables(tmp_path, "CV", lon, lat)
    with tile_server(max_zoom=20, coverage=(float(west), float(south), float(east), float(north))) as (_, server):
        record, out = _run(tmp_path, "CV", server.template("coordinate", "zyx"), CropSpec(size_px=128, zoom=zoom))
    index = pd.read_parquet(out / "crops.parquet").set_index("node_id")
    assert index.loc[0, "status"] == "ok" and index.loc[1, "status"] == "missing"
    assert record["requests"]["outcomes"] == {"ok": 1, "missing": 1}


def test_a_crop_that_fills_one_tile_does_not_depend_on_its_neighbours(tmp_path):
    zoom = 18
    x0, y0 = (int(v // 256) for v in global_pixel(-75.2, 38.6, zoom))
    lon, lat = tile_centre_lonlat(zoom, [(x0, y0)], offset=128.25)  # window = exactly tile (x0, y0)
    write_tables(tmp_path, "AL", lon, lat)
    with tile_server(max_zoom=20) as (portal, server):
        template = server.template("coordinate", "zxy")
        for key in ((zoom, x0 + 1, y0), (zoom, x0, y0 + 1), (zoom, x0 + 1, y0 + 1)):
            portal.inject(tile_path(template, key), Fault("status", 404))
        record, out = _run(tmp_path, "AL", template, CropSpec(zoom=zoom))
        assert tile_requests(portal) == [(zoom, x0, y0)]
    assert pd.read_parquet(out / "crops.parquet")["status"].tolist() == ["ok"]


def test_an_unreachable_server_marks_tiles_failed(tmp_path):
    lon, lat = points_near(-75.0, 38.6, 18, 3, spread_px=300)
    write_tables(tmp_path, "UR", lon, lat)
    with LoopbackPortal() as portal:
        template = portal.url + "/xyz/coordinate/{z}/{x}/{y}.png"
    with loopback_allowed():  # the port is closed now: every request is refused
        record, out = _run(tmp_path, "UR", template, CropSpec(size_px=64, zoom=18))
    assert record["requests"]["outcomes"] == {"failed": record["unique_tiles"]}
    assert set(pd.read_parquet(out / "crops.parquet")["status"]) == {"failed"}


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def test_fetch_concurrency_and_rate_are_bounded(tmp_path):
    """A slow tile server sees at most `concurrency` requests at once, and a rate limit spaces them out."""
    lock, state, times = threading.Lock(), {"now": 0, "max": 0}, []

    def slow(path, query, headers):
        z, x, y = (int(part) for part in path.rsplit(".", 1)[0].split("/")[-3:])
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            times.append(time.monotonic())
        time.sleep(0.03)
        body = _png(coordinate_tile(z, x, y))
        with lock:
            state["now"] -= 1
        return 200, "image/png", body, {}

    keys = [(18, 76000 + i, 100000) for i in range(24)]
    with LoopbackPortal() as portal, loopback_allowed():
        portal.add_handler("/slow/", slow)
        source = user_source(portal.url + "/slow/{z}/{x}/{y}.png", max_zoom=20)
        report = fetch_tiles(source, keys, TileCache(tmp_path / "a"), concurrency=3, rate=0)
        assert report.outcomes == Counter(ok=24) and report.http_requests == 24
        assert 2 <= state["max"] <= 3
        times.clear()
        started = time.monotonic()
        fetch_tiles(source, keys, TileCache(tmp_path / "b"), concurrency=4, rate=40.0)
        elapsed = time.monotonic() - started
    assert elapsed >= (24 - 4) / 40 * 0.9  # a burst of 4, then 40 per second
    times.sort()
    for number, when in enumerate(times, start=1):
        assert number <= 4 + 40 * (when - times[0]) + 1


def test_tiles_of_another_size_are_a_configuration_error(tmp_path):
    """A service serving 512-px tiles is not 'corrupt tiles': the build stops with an error naming the fix."""
    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    lon, lat = points_near(-75.0, 38.6, 18, 2, spread_px=100)
    write_tables(tmp_path, "BG", lon, lat)
    with LoopbackPortal() as portal, loopback_allowed():
        portal.add_handler("/big/", lambda path, query, headers: (200, "image/png", _png(noise), {}))
        record = download_tiles("BG", source="xyz", template=portal.url + "/big/{z}/{x}/{y}.png", max_zoom=20,
                                spec=CropSpec(size_px=64, zoom=18), root=tmp_path, scheduler="none", rate=0)
    assert record["requests"]["outcomes"] == {"ok": record["unique_tiles"]}
    with pytest.raises(RuntimeError, match="256-px"):
        build_tiles("BG", root=tmp_path, scheduler="none")


def test_rate_limiter_spaces_requests():
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(10.0, burst=2, clock=lambda: now[0], sleep=sleep)
    delays = [limiter.wait() for _ in range(6)]
    assert delays[:2] == [0.0, 0.0] and delays[2:] == pytest.approx([0.1] * 4)
    assert now[0] == pytest.approx(0.4)  # 6 requests, 2 at once, then 10/s
    assert RateLimiter(0.0).wait() == 0.0


# --------------------------------------------------------------------------- sources, terms and keys


def test_commercial_presets_carry_their_terms_and_need_a_key(monkeypatch):
    for name, label in (("esri-world-imagery", "Esri World Imagery"), ("mapbox-satellite", "Mapbox Satellite")):
        with pytest.raises(ValueError, match="needs your own API key"):
            get_source(name)
        source = get_source(name, api_key="k-123")
        assert source.info.commercial and not source.info.redistributable
        assert label in source.info.terms and "forbid" in source.info.terms and "--accept-terms" in source.info.terms
        assert "k-123" in source.url(16, 1, 2) and "k-123" not in repr(source)
        monkeypatch.setenv("GNNBENCH_IMAGERY_KEY", "env-key")
        assert "env-key" in get_source(name).url(3, 1, 2)
        monkeypatch.delenv("GNNBENCH_IMAGERY_KEY")
    usgs = get_source("usgs-imagery")
    assert usgs.info.terms == "" and usgs.info.redistributable and usgs.max_zoom == 16
    with pytest.raises(ValueError, match="needs your own API key"):
        USGS_IMAGERY.__class__.with_key(get_source("mapbox-satellite", api_key="x"), None)


def test_terms_are_logged_before_anything_is_fetched(tmp_path, caplog):
    lon, lat = points_near(-75.0, 38.6, 19, 3, spread_px=100)
    write_tables(tmp_path, "TM", lon, lat)
    with offline_mode(), caplog.at_level("WARNING"), pytest.raises(TileZoomError, match="up to zoom 19"):
        download_tiles("TM", source="esri-world-imagery", api_key="k", spec=CropSpec(zoom=20), root=tmp_path,
                       scheduler="none")
    assert any("Esri World Imagery" in r.getMessage() and "forbid" in r.getMessage() for r in caplog.records)


def test_xyz_source_needs_template_and_max_zoom():
    with pytest.raises(ValueError, match="--template") as error:
        get_source("xyz")
    assert "--max-zoom" in str(error.value)
    with pytest.raises(ValueError, match="--max-zoom"):
        get_source("xyz", template="http://h/{z}/{x}/{y}.png")
    with pytest.raises(ValueError, match="usgs-imagery"):
        get_source("nope")
    with pytest.raises(ValueError, match="--state DEMO"):
        get_source("demo")
    with pytest.raises(ValueError, match="within 0..24"):
        user_source("http://h/{z}/{x}/{y}.png", max_zoom=25)


def test_commercial_crops_need_accept_terms(tmp_path):
    lon, lat = points_near(-75.0, 38.6, 18, 4, spread_px=200)
    write_tables(tmp_path, "AT", lon, lat)
    with tile_server(max_zoom=20) as (_, server):
        template = server.template("coordinate", "zxy")
        _run(tmp_path, "AT", template, CropSpec(zoom=18), build=False)
    record_path = imagery_dir(tmp_path, "AT", user_source(template, max_zoom=20).key) / "download.json"
    record = json.loads(record_path.read_text())
    record["source"]["info"].update(commercial=True, redistributable=False, terms="Vendor terms forbid storage.")
    record_path.write_text(json.dumps(record))
    with pytest.raises(PermissionError, match="Vendor terms forbid storage.*--accept-terms"):
        build_tiles("AT", root=tmp_path, scheduler="none")
    assert not (record_path.parent / "crops").exists()
    out = build_tiles("AT", root=tmp_path, scheduler="none", accept_terms=True)
    assert json.loads((out / "manifest.json").read_text())["counts"]["ok"] == 4


def test_an_api_key_is_never_written_to_disk(tmp_path):
    lon, lat = tile_centre_lonlat(18, [(75000, 100000), (75003, 100000)])
    write_tables(tmp_path, "KY", lon, lat)
    secret = "SECRET-KEY-5f3a"
    with tile_server(max_zoom=20) as (portal, server):
        template = server.template("coordinate", "zxy") + "?token={key}"
        portal.inject(tile_path(server.template("coordinate", "zxy"), (18, 75003, 100000)), Fault("status", 404))
        download_tiles("KY", source="xyz", template=template, max_zoom=20, api_key=secret, spec=CropSpec(zoom=18),
                       root=tmp_path, scheduler="none", rate=0)
        assert any(secret in path for _, path in portal.requests)  # the key was used
    build_tiles("KY", root=tmp_path, scheduler="none")
    leaks = [path for path in (tmp_path / "imagery").rglob("*") if path.is_file() and secret.encode() in
             path.read_bytes()]
    assert leaks == []
