"""Web-Mercator geometry of the imagery pipeline against independent references: pyproj's EPSG:3857, mercantile's
tile arithmetic (note its (lng, lat) argument order), spherical distances, and brute-force pixel enumeration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Transformer

from gnnbench.road.tiles.crops import tiles_of_window, window
from gnnbench.road.tiles.geometry import (MAX_LATITUDE, global_pixel, lonlat_of_pixel, metres_per_pixel, morton,
                                          zoom_for)
from tile_fixtures import native_cover

mercantile = pytest.importorskip("mercantile")

LATITUDES = (0.0, 25.0, 38.6, 47.0, 60.0, 70.0)
ZOOMS = (1, 12, 16, 18, 20)
LONGITUDES = (-122.4194, -71.0589, -0.1278, 13.405, 151.2093)
HALF_WORLD_M = math.pi * 6378137.0
TO_MERCATOR = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)


def _pyproj_pixel(lon: np.ndarray, lat: np.ndarray, zoom: int) -> tuple[np.ndarray, np.ndarray]:
    mx, my = TO_MERCATOR.transform(lon, lat)
    world = 256 * 2.0 ** zoom
    return (np.asarray(mx) + HALF_WORLD_M) / (2 * HALF_WORLD_M) * world, \
        (HALF_WORLD_M - np.asarray(my)) / (2 * HALF_WORLD_M) * world


@pytest.mark.parametrize("zoom", ZOOMS)
@pytest.mark.parametrize("lat", LATITUDES)
def test_global_pixel_matches_pyproj_epsg3857(lat, zoom):
    rng = np.random.default_rng(zoom)
    lon = np.array(LONGITUDES + tuple(rng.uniform(-179, 179, 5)))
    lats = np.concatenate([[lat, -lat], lat + rng.uniform(-0.01, 0.01, len(lon) - 2)])
    x, y = global_pixel(lon, lats, zoom)
    px, py = _pyproj_pixel(lon, lats, zoom)
    np.testing.assert_allclose(x, px, rtol=0, atol=1e-4)
    np.testing.assert_allclose(y, py, rtol=0, atol=1e-4)


@pytest.mark.parametrize("zoom", ZOOMS)
@pytest.mark.parametrize("lat", LATITUDES)
def test_tile_of_a_point_matches_mercantile(lat, zoom):
    rng = np.random.default_rng(int(lat * 10) + zoom)
    for lon in LONGITUDES + tuple(rng.uniform(-179.9, 179.9, 8)):
        for la in (lat, -lat, lat + float(rng.uniform(-0.2, 0.2))):
            x, y = global_pixel(lon, la, zoom)
            tile = mercantile.tile(lon, la, zoom)  # mercantile takes (lng, lat)
            assert (int(x // 256), int(y // 256)) == (tile.x, tile.y), (lon, la, zoom)


def test_swapped_coordinates_are_caught():
    """The geometry is (lon, lat): Boston given as (lat, lon) lands in another tile (the check above can fail)."""
    x, y = global_pixel(-71.0589, 42.3601, 16)
    swapped = mercantile.tile(42.3601, -71.0589, 16)
    assert (int(x // 256), int(y // 256)) != (swapped.x, swapped.y)
    assert (int(x // 256), int(y // 256)) == tuple(mercantile.tile(-71.0589, 42.3601, 16)[:2])


@pytest.mark.parametrize("zoom", ZOOMS)
def test_points_exactly_on_tile_edges(zoom):
    rng = np.random.default_rng(100 + zoom)
    for tx, ty in rng.integers(0, 2 ** zoom, (12, 2)).tolist():
        # meridians of tile edges are exact binary fractions of 360: the pixel is exactly the edge
        lon = tx * 360.0 / 2 ** zoom - 180.0
        x, _ = global_pixel(lon, 10.0, zoom)
        assert x == 256 * tx
        assert int(x // 256) == mercantile.tile(lon, 10.0, zoom).x == tx
        # the upper-left corner of a tile (mercantile.ul) maps onto the tile's corner pixel
        corner = mercantile.ul(tx, ty, zoom)
        x, y = global_pixel(corner.lng, corner.lat, zoom)
        assert abs(x - 256 * tx) < 1e-6 and abs(y - 256 * ty) < 1e-6
        # a thousandth of a pixel inside the corner is in that tile for both
        lon_in, lat_in = lonlat_of_pixel(256 * tx + 1e-3, 256 * ty + 1e-3, zoom)
        x, y = global_pixel(lon_in, lat_in, zoom)
        assert (int(x // 256), int(y // 256)) == (tx, ty)
        assert tuple(mercantile.tile(float(lon_in), float(lat_in), zoom)[:2]) == (tx, ty)
        # and a thousandth of a pixel outside is in the neighbours above and to the left
        if tx and ty:
            lon_out, lat_out = lonlat_of_pixel(256 * tx - 1e-3, 256 * ty - 1e-3, zoom)
            x, y = global_pixel(lon_out, lat_out, zoom)
            assert (int(x // 256), int(y // 256)) == (tx - 1, ty - 1)
    # the equator is the middle row edge, exactly
    _, y = global_pixel(5.0, 0.0, zoom)
    assert y == 256 * 2 ** (zoom - 1) and int(y // 256) == mercantile.tile(5.0, 0.0, zoom).y


@pytest.mark.parametrize("zoom", (1, 16, 20))
def test_latitude_is_clamped_to_the_square_world(zoom):
    world = 256 * 2.0 ** zoom
    _, top = global_pixel(-75.0, MAX_LATITUDE, zoom)
    _, bottom = global_pixel(-75.0, -MAX_LATITUDE, zoom)
    assert abs(top) < 1e-6 and abs(bottom - world) < 1e-6
    for lat in (85.06, 88.0, 90.0):
        assert global_pixel(-75.0, lat, zoom)[1] == top
        assert global_pixel(-75.0, -lat, zoom)[1] == bottom
    assert abs(MAX_LATITUDE - mercantile.ul(0, 0, zoom).lat) < 1e-9
    # just inside the clamp the point is in the top row, like mercantile; crops near the pole stay inside the world
    _, y = global_pixel(-75.0, 85.0511, zoom)
    assert 0 < y < 256 and mercantile.tile(-75.0, 85.0511, zoom).y == 0
    x, y = global_pixel(-75.0, 89.0, zoom)
    keys = tiles_of_window(zoom, *window(float(x), float(y), 256, 1.0))
    assert keys and all(0 <= ty < 2 ** zoom and 0 <= tx < 2 ** zoom for _, tx, ty in keys)
    assert {ty for _, _, ty in keys} == {0}


@pytest.mark.parametrize("zoom", ZOOMS)
def test_lonlat_of_pixel_inverts_global_pixel(zoom):
    rng = np.random.default_rng(zoom)
    lon = rng.uniform(-179.9, 179.9, 200)
    lat = rng.uniform(-80, 80, 200)
    back_lon, back_lat = lonlat_of_pixel(*global_pixel(lon, lat, zoom), zoom)
    np.testing.assert_allclose(back_lon, lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(back_lat, lat, rtol=0, atol=1e-9)
    for tx, ty in rng.integers(0, 2 ** zoom, (10, 2)).tolist():
        corner = mercantile.ul(tx, ty, zoom)
        lon_c, lat_c = lonlat_of_pixel(256 * tx, 256 * ty, zoom)
        assert abs(lon_c - corner.lng) < 1e-9 and abs(lat_c - corner.lat) < 1e-9


def test_metres_per_pixel_table():
    assert float(metres_per_pixel(39.0, 16)) == pytest.approx(1.86, abs=0.005)  # ~1.856
    assert float(metres_per_pixel(42.0, 16)) == pytest.approx(1.775, abs=0.002)  # ~1.775, the "1.77" of the issue
    assert float(metres_per_pixel(0.0, 0)) == pytest.approx(156543.034, abs=1e-3)
    table = [float(metres_per_pixel(39.0, zoom)) for zoom in range(16, 21)]
    assert table == pytest.approx([1.856, 0.928, 0.464, 0.232, 0.116], abs=0.001)
    assert all(a / b == pytest.approx(2.0) for a, b in zip(table, table[1:]))
    assert float(metres_per_pixel(39.0, 16, tile_size=512)) == pytest.approx(table[0] / 2)
    np.testing.assert_allclose(metres_per_pixel(np.array([0.0, 60.0]), 10),
                               [152.874, 76.437], rtol=1e-4)


@pytest.mark.parametrize("lat", LATITUDES)
def test_metres_per_pixel_is_the_ground_size_of_a_pixel(lat):
    """On the Web-Mercator sphere one pixel east spans R cos(lat) dlon, and one pixel south R dlat (locally)."""
    zoom = 17
    x, y = global_pixel(-90.0, lat, zoom)
    lon0, lat0 = lonlat_of_pixel(x, y, zoom)
    lon1, _ = lonlat_of_pixel(x + 1, y, zoom)
    _, lat1 = lonlat_of_pixel(x, y + 1, zoom)
    east = 6378137.0 * math.cos(math.radians(float(lat0))) * math.radians(float(lon1 - lon0))
    south = 6378137.0 * math.radians(float(lat0 - lat1))
    res = float(metres_per_pixel(lat, zoom))
    assert east == pytest.approx(res, rel=1e-6)
    assert south == pytest.approx(res, rel=1e-4)


def test_zoom_for_picks_the_coarsest_fine_enough_zoom():
    assert zoom_for(39.0, 256, 150.0, 24) == 18
    assert zoom_for(39.0, 256, 150.0, 16) == 16  # capped at the source's highest zoom
    assert zoom_for(39.0, 256, 600.0, 24) == 16
    # a footprint that is exactly the native resolution of zoom 17 gives 17, not 18
    assert zoom_for(39.0, 256, 256 * float(metres_per_pixel(39.0, 17)), 24) == 17
    rng = np.random.default_rng(3)
    for _ in range(200):
        lat, size, footprint = rng.uniform(0, 70), int(rng.integers(16, 1024)), rng.uniform(5, 5000)
        zoom = zoom_for(lat, size, footprint, 24)
        wanted = footprint / size
        assert float(metres_per_pixel(lat, zoom)) <= wanted * (1 + 1e-9)
        if zoom > 0:
            assert float(metres_per_pixel(lat, zoom - 1)) > wanted


def _interleave(x: int, y: int) -> int:
    code = 0
    for bit in range(32):
        code |= ((x >> bit) & 1) << (2 * bit) | ((y >> bit) & 1) << (2 * bit + 1)
    return code


def test_morton_is_bit_interleaving():
    rng = np.random.default_rng(0)
    tx = np.concatenate([rng.integers(0, 2 ** 20, 300), [0, 1, 2 ** 31 - 1, 2 ** 24 + 5]])
    ty = np.concatenate([rng.integers(0, 2 ** 20, 300), [1, 0, 2 ** 31 - 2, 7]])
    codes = morton(tx, ty)
    assert codes.tolist() == [_interleave(int(a), int(b)) for a, b in zip(tx, ty)]


def test_morton_keeps_2x2_blocks_contiguous():
    base_x, base_y = 37_000 * 8, 49_000 * 8  # an aligned 8 x 8 block of tiles somewhere at zoom 18
    tx, ty = np.meshgrid(np.arange(base_x, base_x + 8), np.arange(base_y, base_y + 8))
    tx, ty = tx.ravel(), ty.ravel()
    shuffle = np.random.default_rng(1).permutation(len(tx))
    order = np.argsort(morton(tx[shuffle], ty[shuffle]), kind="stable")
    sx, sy = tx[shuffle][order], ty[shuffle][order]
    assert len(set(morton(tx, ty).tolist())) == 64
    for block in range(16):  # every run of 4 is an aligned 2 x 2 block
        xs, ys = sx[4 * block: 4 * block + 4], sy[4 * block: 4 * block + 4]
        assert len({(a // 2, b // 2) for a, b in zip(xs, ys)}) == 1
        assert len(set(zip(xs.tolist(), ys.tolist()))) == 4
    for block in range(4):  # and every run of 16 an aligned 4 x 4 block
        xs, ys = sx[16 * block: 16 * block + 16], sy[16 * block: 16 * block + 16]
        assert len({(a // 4, b // 4) for a, b in zip(xs, ys)}) == 1


def _count_cases(zoom: int, tx: int, ty: int) -> list[tuple[float, float]]:
    return [(256 * tx + 128.2, 256 * ty + 128.3),  # centred in a tile: exactly that tile
            (256 * tx + 128.2, 256 * ty + 40.0),  # straddles a row edge: 2
            (256 * tx + 3.0, 256 * ty + 128.1),  # straddles a column edge: 2
            (256 * tx + 3.0, 256 * ty + 250.0)]  # a corner: 4


@pytest.mark.parametrize("zoom", (5, 12, 16, 17))
def test_a_native_crop_needs_one_two_or_four_tiles(zoom):
    size = 256
    tx, ty = (int(v // 256) for v in global_pixel(-75.2, 38.6, zoom))  # Delaware
    rng = np.random.default_rng(5)
    seen = set()
    points = _count_cases(zoom, tx, ty)
    points += [tuple(v) for v in rng.uniform(256 * (tx - 3), 256 * (tx + 3), (200, 2))]
    for x, y in points:
        x0, y0, x1, y1 = window(x, y, size, 1.0)
        keys = tiles_of_window(zoom, x0, y0, x1, y1)
        cover = native_cover(x, y, size)
        assert {(tx, ty) for _, tx, ty in keys} == cover
        assert len(keys) == len(cover) and all(z == zoom for z, _, _ in keys)
        aligned = (x0 % 256 == 0) + (y0 % 256 == 0)
        assert len(keys) == {2: 1, 1: 2, 0: 4}[aligned]
        seen.add(len(keys))
    assert seen == {1, 2, 4}


def test_random_native_crops_at_high_zoom_need_the_tiles_under_their_pixels():
    for zoom in (16, 18, 20):
        x0, y0 = global_pixel(-75.2, 38.6, zoom)
        rng = np.random.default_rng(zoom)
        for x, y in rng.uniform(-2000, 2000, (100, 2)) + (x0, y0):
            keys = tiles_of_window(zoom, *window(x, y, 256, 1.0))
            assert {(tx, ty) for _, tx, ty in keys} == native_cover(x, y, 256)


@pytest.mark.parametrize("zoom", (18, 19, 20))
def test_a_native_crop_aligned_on_a_tile_needs_only_that_tile_at_high_zoom(zoom):
    tx, ty = (int(v // 256) for v in global_pixel(-75.2, 38.6, zoom))
    for x, y in _count_cases(zoom, tx, ty):
        keys = tiles_of_window(zoom, *window(x, y, 256, 1.0))
        assert {(kx, ky) for _, kx, ky in keys} == native_cover(x, y, 256), (x, y)


def test_native_window_is_centred_within_half_a_pixel():
    rng = np.random.default_rng(8)
    for x, y in rng.uniform(0, 2 ** 26, (300, 2)):
        x0, y0, x1, y1 = window(x, y, 256, 1.0)
        assert x1 - x0 == 256 and y1 - y0 == 256 and float(x0).is_integer() and float(y0).is_integer()
        assert abs((x0 + x1) / 2 - x) <= 0.5 and abs((y0 + y1) / 2 - y) <= 0.5


def test_odd_sized_native_window_is_centred_within_half_a_pixel():
    for x in (1000.1, 1000.4, 1000.6, 1000.9):
        x0, _, x1, _ = window(x, 500.2, 255, 1.0)
        assert abs((x0 + x1) / 2 - x) <= 0.5, (x, x0, x1)


def test_resampled_window_and_filter_pad():
    x0, y0, x1, y1 = window(1000.3, 2000.7, 256, 1.25)
    assert (x0 + x1) / 2 == pytest.approx(1000.3) and (y0 + y1) / 2 == pytest.approx(2000.7)
    assert x1 - x0 == pytest.approx(320.0) and y1 - y0 == pytest.approx(320.0)
    plain = tiles_of_window(18, 255.5, 255.5, 300.0, 300.0)
    padded = tiles_of_window(18, 258.5, 258.5, 300.0, 300.0, pad=3)
    assert {(x, y) for _, x, y in plain} == {(0, 0), (1, 0), (0, 1), (1, 1)}
    assert {(x, y) for _, x, y in padded} == {(0, 0), (1, 0), (0, 1), (1, 1)}  # 3 px of filter reach tile 0
    assert {(x, y) for _, x, y in tiles_of_window(18, 259.5, 259.5, 300.0, 300.0, pad=3)} == {(1, 1)}


def test_windows_are_clipped_to_the_world():
    assert tiles_of_window(1, -100, -100, 100, 100) == [(1, 0, 0)]
    assert tiles_of_window(1, 400, 400, 700, 700) == [(1, 1, 1)]
    assert len(tiles_of_window(2, -5000, -5000, 5000, 5000)) == 16
