"""The minimal COG reader (gnnbench.road.tiles.cog) against GeoTIFFs from our own writer (road.demo.cog_fixture)."""

from __future__ import annotations

import io
import sys
import types
from dataclasses import replace

import numpy as np
import pytest

from gnnbench.road.demo.cog_fixture import cog_bytes, coordinate_pixels, decode_coordinates
from gnnbench.road.tiles import cog
from gnnbench.road.tiles.cog import CogError


def reader(data: bytes, log: list | None = None):
    def read_range(offset: int, length: int) -> bytes:
        if log is not None:
            log.append((offset, length))
        return data[offset:offset + length]

    return read_range


def block_getter(level: cog.CogLevel, data: bytes, calls: list | None = None):
    def get_block(block_row: int, block_col: int) -> np.ndarray:
        if calls is not None:
            calls.append((block_row, block_col))
        offset, length = level.block_range(block_row, block_col)
        return cog.decode_block(level, data[offset:offset + length])

    return get_block


def expected_pixels(col0: int, row0: int, width: int, height: int, bands: int = 4, step: int = 1,
                    raster: tuple[int, int] | None = None, pixels=None) -> np.ndarray:
    """The fixture's pixels over a window (zero outside ``raster`` (rows, cols))."""
    rows, cols = np.meshgrid(np.arange(row0, row0 + height), np.arange(col0, col0 + width), indexing="ij")
    values = (pixels or coordinate_pixels(bands=bands))(cols * step, rows * step)
    if raster is not None:
        outside = (rows < 0) | (cols < 0) | (rows >= raster[0]) | (cols >= raster[1])
        values = np.where(outside[..., None], 0, values)
    return values.astype(np.uint8)


@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize("tile, compression", [(256, "deflate"), (512, "deflate"), (256, "none")])
def test_header_and_full_read(bigtiff, byte_order, tile, compression):
    data = cog_bytes(width=1000, height=700, tile=tile, compression=compression, bigtiff=bigtiff,
                     byte_order=byte_order, epsg=32616, origin=(400000.0, 4500000.0), pixel_size=1.0)
    info = cog.parse_cog(reader(data), source="fixture.tif")
    assert (info.bigtiff, info.byte_order, info.epsg) == (bigtiff, byte_order, 32616)
    assert info.transform == (1.0, 0.0, 400000.0, 0.0, -1.0, 4500000.0)
    full, overview = info.levels
    assert (full.width, full.height, overview.width, overview.height) == (1000, 700, 500, 350)
    assert (full.tile_width, full.tile_length, full.samples, full.planar) == (tile, tile, 4, 1)
    assert full.bits_per_sample == (8, 8, 8, 8)
    assert full.compression == {"deflate": 8, "none": 1}[compression]
    assert full.predictor == (2 if compression == "deflate" else 1)
    assert overview.subfile_type == 1 and full.subfile_type == 0
    assert len(full.offsets) == full.blocks_across * full.blocks_down == -(-1000 // tile) * -(-700 // tile)
    assert full.offsets.dtype == np.uint64 and np.all(full.byte_counts > 0)
    assert info.level_transform(1) == (2.0, 0.0, 400000.0, 0.0, -2.0, 4500000.0)
    window = cog.read_window(full, block_getter(full, data), 0, 0, 1000, 700)
    np.testing.assert_array_equal(window, expected_pixels(0, 0, 1000, 700))


def test_header_beyond_the_first_read_is_fetched_in_ranges():
    data = cog_bytes(width=2048, height=2048, tile=256, bigtiff=True)
    log: list = []
    info = cog.parse_cog(reader(data, log), source="big.tif", first_bytes=200)
    reference = cog.parse_cog_bytes(data)
    assert log[0] == (0, 200) and len(log) > 1  # the IFDs and tag arrays lie beyond the first 200 bytes
    assert all(offset + length < len(data) for offset, length in log)  # never the whole file
    for ours, theirs in zip(info.levels, reference.levels, strict=True):
        np.testing.assert_array_equal(ours.offsets, theirs.offsets)
        np.testing.assert_array_equal(ours.byte_counts, theirs.byte_counts)


@pytest.mark.parametrize("options", [dict(model_transformation=True), dict(raster_type=2),
                                     dict(raster_type=2, byte_order=">", bigtiff=True)])
def test_geotransform_variants(options):
    data = cog_bytes(width=512, height=512, origin=(300000.0, 5000000.0), pixel_size=0.3, epsg=32619, **options)
    info = cog.parse_cog_bytes(data)
    assert info.epsg == 32619
    np.testing.assert_allclose(info.transform, (0.3, 0.0, 300000.0, 0.0, -0.3, 5000000.0), atol=1e-9)


def test_geographic_epsg():
    info = cog.parse_cog_bytes(cog_bytes(width=256, height=256, epsg=4269, pixel_size=1e-5, origin=(-75.0, 40.0)))
    assert info.epsg == 4269


def test_overview_pixels_are_the_parents():
    data = cog_bytes(width=1024, height=768, tile=256)
    info = cog.parse_cog_bytes(data)
    overview = info.levels[1]
    window = cog.read_window(overview, block_getter(overview, data), 100, 50, 300, 200)
    np.testing.assert_array_equal(window, expected_pixels(100, 50, 300, 200, step=2))
    cols, rows = decode_coordinates(window)
    assert cols[0, 0] == 200 and rows[0, 0] == 100 and np.all(np.diff(cols, axis=1) == 2)


def brute_force_blocks(level, col0, row0, col1, row1):
    out = []
    for br in range(level.blocks_down):
        for bc in range(level.blocks_across):
            x0, y0 = bc * level.tile_width, br * level.tile_length
            x1, y1 = min(x0 + level.tile_width, level.width), min(y0 + level.tile_length, level.height)
            if max(x0, col0) < min(x1, col1) and max(y0, row0) < min(y1, row1):
                out.append((br, bc))
    return out


def test_blocks_for_window_matches_brute_force():
    info = cog.parse_cog_bytes(cog_bytes(width=1000, height=700, tile=256, overview=False))
    level = info.full
    rng = np.random.default_rng(0)
    windows = [(0, 0, 1000, 700), (255, 255, 257, 257), (256, 256, 512, 512), (-50, -20, 10, 5),
               (990, 690, 1100, 900), (1000, 0, 1200, 10), (-10, -10, 0, 0), (300, 300, 300, 400)]
    for _ in range(200):
        col0, row0 = rng.integers(-300, 1100, size=2)
        windows.append((col0, row0, col0 + rng.integers(0, 600), row0 + rng.integers(0, 600)))
    for window in windows:
        assert cog.blocks_for_window(level, *map(int, window)) == brute_force_blocks(level, *map(int, window))
    assert cog.blocks_for_window(level, 255, 255, 257, 257) == [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.mark.parametrize("col0, row0, width, height", [(250, 250, 20, 20), (200, 500, 600, 150),
                                                       (-30, -40, 100, 90), (950, 650, 100, 100)])
def test_read_window_stitches_blocks_across_seams_and_fills_outside(col0, row0, width, height):
    data = cog_bytes(width=1000, height=700, tile=256)
    level = cog.parse_cog_bytes(data).full
    calls: list = []
    window = cog.read_window(level, block_getter(level, data, calls), col0, row0, width, height, fill=0)
    assert window.shape == (height, width, 4)
    np.testing.assert_array_equal(window, expected_pixels(col0, row0, width, height, raster=(700, 1000)))
    assert calls == cog.blocks_for_window(level, col0, row0, col0 + width, row0 + height)
    inside = window[max(0, -row0):, max(0, -col0):]
    cols, rows = decode_coordinates(inside[: 700 - max(row0, 0), : 1000 - max(col0, 0)])
    assert np.all(np.diff(cols, axis=1) == 1) and np.all(np.diff(rows, axis=0) == 1)  # seamless


def test_sparse_blocks_are_fill():
    data = cog_bytes(width=512, height=512, tile=256, overview=False)
    level = cog.parse_cog_bytes(data).full
    window = cog.read_window(level, lambda br, bc: None, 0, 0, 10, 10, fill=7)
    assert np.all(window == 7)


def smooth_pixels(cols, rows):
    cols, rows = np.asarray(cols, dtype=np.float64), np.asarray(rows, dtype=np.float64)
    out = np.stack([100 + 60 * np.sin(cols / 40), 120 + 50 * np.cos(rows / 35), 80 + 0.05 * (cols + rows),
                    90 + 40 * np.sin((cols - rows) / 50)], axis=-1)
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("bands, photometric", [(4, "rgb"), (3, "ycbcr"), (3, "rgb")])
def test_jpeg_tiles_with_shared_tables(bands, photometric):
    pixels = lambda c, r: smooth_pixels(c, r)[..., :bands]  # noqa: E731
    data = cog_bytes(width=512, height=512, tile=256, compression="jpeg", bands=bands, photometric=photometric,
                     pixels=pixels, jpeg_quality=92)
    info = cog.parse_cog_bytes(data, source="jpeg.tif")
    level = info.full
    assert level.compression == 7 and level.photometric == (6 if photometric == "ycbcr" else 2)
    assert level.jpeg_tables[:2] == b"\xff\xd8" and b"\xff\xdb" in level.jpeg_tables
    offset, length = level.block_range(0, 1)
    raw = data[offset:offset + length]
    assert b"\xff\xdb" not in raw[:raw.find(b"\xff\xda")]  # the block relies on JPEGTables
    window = cog.read_window(level, block_getter(level, data), 0, 0, 512, 512)
    error = np.abs(window.astype(int) - expected_pixels(0, 0, 512, 512, bands=bands, pixels=pixels).astype(int))
    assert error.mean() < 1.5 and error.max() < 20
    if photometric == "rgb" and bands == 3:
        # without the Adobe marker the reader inserts, libjpeg would take the RGB samples for YCbCr
        from PIL import Image

        naive = np.asarray(Image.open(io.BytesIO(level.jpeg_tables[:-2] + raw[2:])))
        truth = expected_pixels(0, 256, 256, 256, bands=3, pixels=pixels)
        assert np.abs(naive.astype(int) - truth.astype(int)).mean() > 10


def test_unsupported_compression_names_the_code(monkeypatch):
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # as if not installed
    data = cog_bytes(width=256, height=256, compression="none", compression_code=5, overview=False)
    level = cog.parse_cog_bytes(data, source="lzw.tif").full
    offset, length = level.block_range(0, 0)
    with pytest.raises(CogError, match=r"lzw\.tif.*Compression \(259\) = 5 \(LZW\).*pip install imagecodecs"):
        cog.decode_block(level, data[offset:offset + length])
    # with imagecodecs present its decoder is used (here a stand-in: the block is stored uncompressed)
    fake = types.ModuleType("imagecodecs")
    fake.lzw_decode = lambda raw: bytes(raw)
    monkeypatch.setitem(sys.modules, "imagecodecs", fake)
    np.testing.assert_array_equal(cog.decode_block(level, data[offset:offset + length]),
                                  expected_pixels(0, 0, 256, 256))


def test_planar_configuration_other_than_chunky_is_a_clear_error():
    data = cog_bytes(width=256, height=256, planar=2, overview=False)
    with pytest.raises(CogError, match=r"planar\.tif.*PlanarConfiguration \(284\) = 2"):
        cog.parse_cog_bytes(data, source="planar.tif")


def test_pixel_format_errors_name_the_tag():
    data = cog_bytes(width=256, height=256, overview=False)
    level = cog.parse_cog_bytes(data, source="x.tif").full
    offset, length = level.block_range(0, 0)
    raw = data[offset:offset + length]
    with pytest.raises(CogError, match=r"x\.tif.*Predictor \(317\) = 3"):
        cog.decode_block(replace(level, predictor=3), raw)
    with pytest.raises(CogError, match=r"BitsPerSample \(258\)"):
        cog.decode_block(replace(level, bits_per_sample=(16, 16, 16, 16)), raw)
    with pytest.raises(CogError, match=r"x\.tif.*does not inflate"):
        cog.decode_block(level, b"garbage" + raw[7:])
    with pytest.raises(CogError, match="outside"):
        level.block_range(1, 0)


def test_broken_files_are_clear_errors():
    with pytest.raises(CogError, match=r"a\.png: not a TIFF"):
        cog.parse_cog_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100), source="a.png")
    data = cog_bytes(width=512, height=512, tile=256)
    with pytest.raises(CogError, match=r"cut\.tif.*beyond the end of the file"):
        cog.parse_cog_bytes(data[:40], source="cut.tif", first_bytes=40)


def test_header_cache_round_trip(tmp_path):
    data = cog_bytes(width=512, height=512, tile=256, compression="jpeg", bands=3, photometric="ycbcr",
                     pixels=lambda c, r: smooth_pixels(c, r)[..., :3])
    info = cog.parse_cog_bytes(data, source="https://example.org/x.tif")
    cog.save_info(info, tmp_path / "header.npz")
    again = cog.load_info(tmp_path / "header.npz")
    assert (again.source, again.transform, again.epsg, again.bigtiff) == (info.source, info.transform, info.epsg, False)
    for ours, theirs in zip(again.levels, info.levels, strict=True):
        assert (ours.width, ours.jpeg_tables, ours.photometric, ours.ifd) == (theirs.width, theirs.jpeg_tables,
                                                                                theirs.photometric, theirs.ifd)
        np.testing.assert_array_equal(ours.offsets, theirs.offsets)
