"""NAIP sources against the loopback STAC/SAS/blob/ImageServer (road.demo.naip_server): STAC paging and schema
errors, SAS token refresh, Range-only block reads, crop centring at 0.6/1.0/0.3 m, the year choice, exportImage."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
from PIL import Image
from pyproj import Transformer

from gnnbench.io import OfflineError, http, loopback_allowed, offline_mode
from gnnbench.io.http import DownloadError, RetryPolicy
from gnnbench.road.demo.cog_fixture import decode_coordinates
from gnnbench.road.demo.naip_server import BLOB_PREFIX, IMAGE_SERVER_PATH, SEARCH_PATH, NaipServer, make_item
from gnnbench.road.demo.server import Fault, LoopbackPortal
from gnnbench.road.tiles import cog
from gnnbench.road.tiles.sources import naip_pc, naip_usgs, stac
from gnnbench.road.tiles.sources.naip_pc import BlockFetcher, ItemIndex, choose_item, year_rank
from gnnbench.road.tiles.sources.sas import SasError, SasTokens
from gnnbench.road.tiles.sources.stac import NaipItem, StacSchemaError

EPSG = 32618  # UTM 18N (Delaware)
TO_LONLAT = Transformer.from_crs(EPSG, 4326, always_xy=True)
SIZE = (1024, 1024)
ORIGIN_06 = (450000.0, 4400000.0)


def lonlat(easting: float, northing: float) -> tuple[float, float]:
    return TO_LONLAT.transform(easting, northing)


def at_pixel(origin, gsd, col, row) -> tuple[float, float]:
    """lon/lat of continuous (pixel-centre) raster position (col, row)."""
    return lonlat(origin[0] + (col + 0.5) * gsd, origin[1] - (row + 0.5) * gsd)


@pytest.fixture(scope="module")
def served_items():
    """Three overlapping scenes (0.6 m 2018 classic/256 deflate, 1.0 m 2021 BigTIFF/512, 0.3 m 2022) and a far one."""
    return [
        make_item("m_0.6_2018", origin=ORIGIN_06, gsd=0.6, year=2018, shape=SIZE),
        make_item("m_1.0_2021", origin=(449900.0, 4400100.0), gsd=1.0, year=2021, shape=SIZE, tile=512, bigtiff=True),
        make_item("m_0.3_2022", origin=(450060.0, 4399940.0), gsd=0.3, year=2022, shape=SIZE),
        make_item("m_far_2019", origin=(480000.0, 4350000.0), gsd=0.6, year=2019, shape=(512, 512)),
    ]


@pytest.fixture
def naip(served_items, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(http, "_sleep", waits.append)
    with LoopbackPortal() as portal, loopback_allowed(), offline_mode(True):
        server = NaipServer(portal, served_items, default_limit=2)
        server.waits = waits
        yield server


def blob_requests(server):
    return [path for method, path in server.portal.requests if path.startswith(BLOB_PREFIX)]


def search(server, **options):
    return {item.id: item for item in stac.search_items(server.endpoint, bbox=(-75.7, 39.6, -75.5, 39.8), **options)}


# --------------------------------------------------------------------------- STAC


def test_stac_search_follows_next_links_and_parses_items(naip):
    items = search(naip, limit=1)
    assert sorted(items) == ["m_0.3_2022", "m_0.6_2018", "m_1.0_2021"]  # the far scene is outside the bbox
    searches = [path for _, path in naip.portal.requests if path.startswith(SEARCH_PATH)]
    assert len(searches) == 3 and "token=next%3A1" in searches[1] and "token=next%3A2" in searches[2]
    item = items["m_1.0_2021"]
    assert (item.year, item.state, item.gsd, item.epsg, item.shape) == (2021, "de", 1.0, EPSG, SIZE)
    assert item.transform == (1.0, 0.0, 449900.0, 0.0, -1.0, 4400100.0)
    assert item.href == naip.endpoint + naip.item("m_1.0_2021").blob_path and item.datetime.startswith("2021-07")
    assert item.extent == (449900.0, 4400100.0 - 1024, 449900.0 + 1024, 4400100.0)
    assert sorted(search(naip, datetime=(2019, 2021))) == ["m_1.0_2021"]


def test_stac_schema_changes_fail_loudly_naming_item_and_field(naip):
    feature = naip.features[1]
    properties = feature["properties"]
    properties["proj:code"] = f"EPSG:{properties.pop('proj:epsg')}"  # projection extension v2
    assert search(naip)["m_1.0_2021"].epsg == EPSG
    del properties["proj:code"]
    with pytest.raises(StacSchemaError, match=r"m_1\.0_2021.*proj:epsg / proj:code"):
        search(naip)
    properties["proj:epsg"] = EPSG
    properties["naip:year"] = "twenty-twenty"
    with pytest.raises(StacSchemaError, match=r"m_1\.0_2021.*naip:year"):
        search(naip)
    del properties["naip:year"]
    with pytest.raises(StacSchemaError, match=r"'m_1\.0_2021' lacks the field 'naip:year'"):
        search(naip)
    properties["naip:year"] = "2021"
    del feature["assets"]["image"]
    with pytest.raises(StacSchemaError, match=r"m_1\.0_2021.*assets\.image\.href"):
        search(naip)


def test_items_parquet_round_trip(naip, tmp_path):
    items = list(search(naip).values())
    path = stac.write_items(items, tmp_path / "items" / "DE.parquet")
    assert stac.read_items(path) == items


# --------------------------------------------------------------------------- SAS


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_sas_token_refreshed_before_it_expires(naip):
    clock = FakeClock()
    naip.clock, naip.ttl = clock, 2.0
    tokens = SasTokens(naip.endpoint, margin_s=1.0, clock=clock)
    fetcher = BlockFetcher(tokens, header_bytes=4096)
    item = search(naip)["m_0.6_2018"]
    first = tokens.sign(item.href)
    assert "sig=loopback1" in first and first.startswith(item.href + "?st=") and tokens.refreshes == 1
    fetcher.crop(item, *at_pixel(ORIGIN_06, 0.6, 300, 300), 256, 153.6)
    clock.now += 0.5
    assert tokens.token() in first and tokens.refreshes == 1  # 1.5 s left: kept
    clock.now += 0.7  # 0.8 s left < margin
    fetcher.crop(item, *at_pixel(ORIGIN_06, 0.6, 700, 700), 256, 153.6)
    assert tokens.refreshes == 2 and naip.tokens_issued == 2
    assert [entry["status"] for entry in naip.blob_log].count(403) == 0
    assert naip.blob_log[-1]["sig"] == "loopback2"


def test_sas_token_refreshed_once_after_the_store_refuses_it(naip):
    tokens = SasTokens(naip.endpoint)
    fetcher = BlockFetcher(tokens, header_bytes=4096)
    item = search(naip)["m_0.6_2018"]
    fetcher.crop(item, *at_pixel(ORIGIN_06, 0.6, 300, 300), 256, 153.6)
    naip.revoke()
    image, _ = fetcher.crop(item, *at_pixel(ORIGIN_06, 0.6, 700.3, 700.3), 256, 153.6)
    statuses = [entry["status"] for entry in naip.blob_log]
    assert statuses.count(403) == 1 and statuses[statuses.index(403) + 1] == 206
    assert tokens.refreshes == 2 and fetcher.auth_retries == 1
    assert 700 in decode_coordinates(image)[0][126:130, 126:130]


def test_sas_always_expired_tokens_are_a_clear_error(naip):
    naip.issue_expired = True
    tokens = SasTokens(naip.endpoint)
    with pytest.raises(SasError, match=r"/api/sas/v1/token/naip.*already expired twice"):
        tokens.sign("https://example.org/x.tif")
    assert naip.tokens_issued == 2


def test_sas_403_after_a_refresh_is_a_clear_error(naip):
    tokens = SasTokens(naip.endpoint)
    fetcher = BlockFetcher(tokens)
    item = search(naip)["m_0.6_2018"]
    naip.sas_document = {"msft:expiry": "2999-01-01T00:00:00Z", "token": "se=x&sig=unknown"}  # refused by the store
    with pytest.raises(DownloadError, match=r"403 again after a SAS token refresh") as error:
        fetcher.header(item.href)
    assert error.value.status == 403 and tokens.refreshes == 2


def test_sas_response_without_fields_names_the_endpoint(naip):
    naip.sas_document = {"token": "se=x&sig=y"}
    with pytest.raises(SasError, match=r"http://127\.0\.0\.1:\d+/api/sas/v1/token/naip.*msft:expiry"):
        SasTokens(naip.endpoint).token()


def test_sas_threads_share_one_refresh(naip):
    tokens = SasTokens(naip.endpoint)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(tokens.token())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and tokens.refreshes == 1 and naip.tokens_issued == 1


# --------------------------------------------------------------------------- ranged reads


def test_blocks_are_read_with_range_requests_only(naip):
    tokens = SasTokens(naip.endpoint)
    fetcher = BlockFetcher(tokens, header_bytes=4096)
    items = search(naip)
    for name, col in (("m_0.6_2018", 128), ("m_0.6_2018", 600), ("m_1.0_2021", 500), ("m_0.3_2022", 400)):
        item = items[name]
        served = naip.item(name)
        fetcher.crop(item, *at_pixel(served.origin, served.gsd, col, 500), 256, 153.6)
    log = naip.blob_log
    assert len(log) == len(blob_requests(naip)) == fetcher.requests
    assert all(entry["status"] == 206 and entry["range"].startswith("bytes=") for entry in log)
    assert all(entry["served"] < entry["size"] for entry in log)  # never a whole file
    assert fetcher.bytes == sum(entry["served"] for entry in log)


def test_a_server_ignoring_range_is_refused(naip):
    naip.ignore_range = True
    fetcher = BlockFetcher(SasTokens(naip.endpoint), header_bytes=4096)
    with pytest.raises(DownloadError, match=r"ignored the Range header \(HTTP 200, \d+ bytes\)"):
        fetcher.header(search(naip)["m_0.6_2018"].href)


def test_block_faults_are_retried_or_reported(naip):
    tokens = SasTokens(naip.endpoint)
    fetcher = BlockFetcher(tokens, header_bytes=4096)
    item = search(naip)["m_0.6_2018"]
    path = naip.item("m_0.6_2018").blob_path
    naip.portal.inject(path, Fault("status", 500), Fault("status", 429, retry_after=3))
    image, _ = fetcher.crop(item, *at_pixel(ORIGIN_06, 0.6, 500, 500), 256, 153.6)
    assert 500 in decode_coordinates(image)[0][126:130, 126:130]
    assert 3.0 in naip.waits and fetcher.requests == len(blob_requests(naip))
    naip.portal.inject(path, Fault("status", 404))
    before = len(blob_requests(naip))
    with pytest.raises(DownloadError) as error:
        fetcher.read_range(item.href, 5000, 100)
    assert error.value.status == 404 and len(blob_requests(naip)) == before + 1  # not retried
    assert "sig=" not in str(error.value) and item.href in str(error.value)


def test_blocks_for_crop_are_the_blocks_read(naip):
    fetcher = BlockFetcher(SasTokens(naip.endpoint), header_bytes=4096)
    item = search(naip)["m_1.0_2021"]
    level = fetcher.header(item.href).full
    lon, lat = at_pixel((item.transform[2], item.transform[5]), 1.0, 520.0, 300.0)
    planned = naip_pc.blocks_for_crop(item, level, lon, lat, 256, 153.6)
    raw = fetcher.blocks(item.href, level, planned)
    read: list = []

    def get_block(block_row, block_col):
        read.append((block_row, block_col))
        return cog.decode_block(level, raw[(block_row, block_col)])

    image, info = naip_pc.read_crop(item, level, get_block, lon, lat, 256, 153.6)
    assert read == planned == [(0, 0), (0, 1)] and info["mode"] == "bilinear"
    assert image.shape == (256, 256, 3)


def test_adjacent_blocks_share_one_request(naip):
    fetcher = BlockFetcher(SasTokens(naip.endpoint), header_bytes=4096)
    item = search(naip)["m_0.6_2018"]
    level = fetcher.header(item.href).full
    before = fetcher.requests
    raw = fetcher.blocks(item.href, level, [(1, 0), (1, 1), (1, 2), (3, 3)])
    assert fetcher.requests == before + 2  # row 1 blocks lie back to back; (3, 3) apart
    for key, data in raw.items():
        offset, length = level.block_range(*key)
        assert data == naip.item("m_0.6_2018").data[offset:offset + length]


# --------------------------------------------------------------------------- crops


def crop_centre_error(image: np.ndarray, col: float, row: float, step: int = 1) -> tuple[float, float]:
    """Distance (level pixels) between the target and the crop's centre, from the coordinate encoding."""
    cols, rows = decode_coordinates(image)
    size = image.shape[0]
    assert np.all(np.diff(cols, axis=1) == step) and np.all(np.diff(rows, axis=0) == step)  # a clean slice
    # the decoded value of a pixel is its (full-resolution) column; an overview pixel's centre is half a step on
    centre_col = cols[0, 0] + (step - 1) / 2 + step * (size - 1) / 2
    centre_row = rows[0, 0] + (step - 1) / 2 + step * (size - 1) / 2
    return abs(col - centre_col) / step, abs(row - centre_row) / step


@pytest.mark.parametrize("col, row", [(500.0, 500.0), (500.49, 300.51), (333.7, 600.2), (700.5, 128.0)])
def test_native_crops_are_slices_centred_within_half_a_pixel(naip, col, row):
    fetcher = BlockFetcher(SasTokens(naip.endpoint), header_bytes=4096)
    item = search(naip)["m_0.6_2018"]
    lon, lat = at_pixel(ORIGIN_06, 0.6, col, row)
    image, info = fetcher.crop(item, lon, lat, 256, 153.6)
    assert image.shape == (256, 256, 3) and info["mode"] == "slice" and info["year"] == 2018
    error_col, error_row = crop_centre_error(image, col, row)
    assert error_col <= 0.5 + 1e-6 and error_row <= 0.5 + 1e-6
    assert abs(info["dx"]) <= 0.5 and abs(info["dy"]) <= 0.5
    assert np.isclose(info["dx"], col - (info["window"][0] + 127.5), atol=1e-3)
    nir, _ = fetcher.crop(item, lon, lat, 256, 153.6, bands=(3,))
    assert np.all(nir == 18)  # the year marker: this came from the 2018 scene


def test_coarser_and_finer_items_give_the_same_footprint(naip):
    fetcher = BlockFetcher(SasTokens(naip.endpoint), header_bytes=4096)
    items = search(naip)
    easting, northing = 450213.3, 4399786.2
    lon, lat = lonlat(easting, northing)
    for name in ("m_0.6_2018", "m_1.0_2021", "m_0.3_2022"):
        served = naip.item(name)
        col = (easting - served.origin[0]) / served.gsd - 0.5
        row = (served.origin[1] - northing) / served.gsd - 0.5
        assert naip_pc.utm_position(items[name], lon, lat) == pytest.approx((col, row), abs=1e-6)
        image, info = fetcher.crop(items[name], lon, lat, 256, 153.6)
        assert image.shape == (256, 256, 3) and info["m_per_px"] == pytest.approx(0.6)
        if name == "m_0.3_2022":  # the 0.6 m overview serves it as a slice of parent pixels
            assert info["mode"] == "slice" and info["level"] == 1
            error_col, error_row = crop_centre_error(image, col, row, step=2)
            assert error_col <= 0.5 + 1e-6 and error_row <= 0.5 + 1e-6
        elif name == "m_1.0_2021":  # upsampled: the centre pixels interpolate the target's neighbours
            assert info["mode"] == "bilinear"
            cols, rows = decode_coordinates(image[127:129, 127:129])
            assert abs(cols.mean() - col) <= 1.0 and abs(rows.mean() - row) <= 1.0


def blob(col0: float, row0: float, sigma: float):
    def pixels(cols, rows):
        value = 250 * np.exp(-((cols - col0) ** 2 + (rows - row0) ** 2) / (2 * sigma ** 2))
        return np.repeat(np.rint(value).astype(np.uint8)[..., None], 4, axis=-1)

    return pixels


@pytest.mark.parametrize("gsd, level", [(1.0, 0), (0.3, 0), (0.6, 0)])
def test_resampled_crops_are_centred(gsd, level):
    """A bright spot at the target lands in the crop's centre, whatever the resampling (up, down, none)."""
    target = (411.3, 517.8)  # continuous raster position of the target
    sigma = 6.0 * 0.6 / gsd  # about six crop pixels
    served = make_item("spot", origin=ORIGIN_06, gsd=gsd, shape=SIZE, pixels=blob(*target, sigma))
    with LoopbackPortal() as portal, loopback_allowed(), offline_mode(True):
        server = NaipServer(portal, [served])
        item = stac.parse_item(server.features[0])
        image, info = BlockFetcher(SasTokens(server.endpoint)).crop(
            item, *at_pixel(ORIGIN_06, gsd, *target), 128, 76.8, level=level)
    assert info["mode"] == ("slice" if gsd == 0.6 else "bilinear")
    weight = image[..., 0].astype(float)
    weight = np.where(weight > 20, weight, 0)
    rows, cols = np.indices(weight.shape)
    centroid = ((weight * cols).sum() / weight.sum(), (weight * rows).sum() / weight.sum())
    # the spot's centre is the crop's (63.5, 63.5), shifted in a slice by the recorded offset (within half a pixel)
    assert abs(info["dx"]) <= 0.5 and abs(info["dy"]) <= 0.5
    assert np.allclose(centroid, (63.5 + info["dx"], 63.5 + info["dy"]), atol=0.05)


def test_downscaling_is_antialiased():
    """One-pixel stripes read at 2.5 source pixels per crop pixel: an antialiased filter averages them to an even
    grey; plain bilinear sampling would alias them into bands (standard deviation about 90)."""
    item = synthetic_item("fine", 2022, gsd=0.3)
    lon, lat = lonlat(450000.0, 4400000.0)
    crop = naip_pc.crop_window(item, lon, lat, 64, 64 * 0.3 * 2.5)
    assert crop.mode == "bilinear" and crop.scale == pytest.approx(2.5)
    cols = crop.col0 + np.arange(crop.width)
    window = np.repeat(np.where(cols % 2 == 0, 255, 0).astype(np.uint8)[None, :, None], crop.height, axis=0)
    image = naip_pc.resample(window, crop)
    assert image.shape == (64, 64, 1)
    assert abs(image.mean() - 127.5) < 3 and image.std() < 8


# --------------------------------------------------------------------------- item choice


def synthetic_item(ident, year, gsd=0.6, origin=(449000.0, 4401000.0), size=4000, footprint=None):
    transform = (gsd, 0.0, origin[0], 0.0, -gsd, origin[1])
    corners = [lonlat(origin[0] + dx * size * gsd, origin[1] - dy * size * gsd) for dx, dy in ((0, 0), (1, 1))]
    bbox = (corners[0][0], corners[1][1], corners[1][0], corners[0][1])
    return NaipItem(id=ident, year=year, state="de", gsd=gsd, epsg=EPSG, transform=transform, shape=(size, size),
                    bbox=bbox, href=f"https://example.org/{ident}.tif", datetime=f"{year}-07-01T00:00:00Z",
                    footprint=footprint)


def test_year_policy():
    assert year_rank(2019, (2018, 2020)) == (0, 0.0, -2019)
    assert year_rank(2015, (2018, 2020)) == (3, 4.0, -2015)
    assert year_rank(2023, (2018, 2020)) == (3, 4.0, -2023)
    lon, lat = lonlat(450000.0, 4400000.0)
    items = [synthetic_item("a", 2018), synthetic_item("b", 2021, gsd=1.0, size=2400), synthetic_item("c", 2022)]
    choose = lambda years: choose_item(items, lon, lat, 153.6, years).id  # noqa: E731
    assert choose((2019, 2020)) == "b"  # 2018 and 2021 are both one year out, equally far from the middle: later
    assert choose((2017, 2018)) == "a"
    assert choose((2021, 2023)) == "c"  # both inside: nearer the middle (2022)
    assert choose((2010, 2012)) == "a"
    assert choose(None) == "c"  # no preference: the latest
    # the finer gsd wins over a larger margin (the coarse scene reaches 600 m further on every side)
    same_year = [synthetic_item("coarse", 2020, gsd=1.0, origin=(448400.0, 4401600.0), size=3600),
                 synthetic_item("fine", 2020, gsd=0.6)]
    assert choose_item(same_year, lon, lat, 153.6, (2020, 2020)).id == "fine"
    edge = synthetic_item("edge", 2020, origin=(449923.0, 4400077.0), size=1000)  # the crop is 0.2 m inside
    middle = synthetic_item("middle", 2020)
    assert choose_item([edge, middle], lon, lat, 153.6, (2020, 2020)).id == "middle"
    assert choose_item(ItemIndex([edge]), lon, lat, 153.6, (2020, 2020)).id == "edge"


def test_crop_outside_every_item_is_none():
    items = [synthetic_item("a", 2018), synthetic_item("b", 2021)]
    assert choose_item(items, *lonlat(600000.0, 4400000.0), 153.6, (2018, 2021)) is None
    near_edge = lonlat(449000.0 + 50.0, 4400000.0)  # inside the scene, but the 153.6 m square pokes out
    assert items[0].bbox[0] < near_edge[0] and choose_item(items, *near_edge, 153.6, (2018, 2021)) is None
    assert choose_item(items, *near_edge, 80.0, (2018, 2021)) is not None


def test_item_footprint_polygon_is_respected():
    lon, lat = lonlat(450000.0, 4400000.0)
    west_half = {"type": "Polygon", "coordinates": [[[-80, 30], [lon - 0.003, 30], [lon - 0.003, 50], [-80, 50],
                                                     [-80, 30]]]}
    items = [synthetic_item("cut", 2020, footprint=json.dumps(west_half))]
    assert choose_item(items, lon, lat, 153.6, (2020, 2020)) is None
    assert choose_item(items, *lonlat(449500.0, 4400000.0), 153.6, (2020, 2020)).id == "cut"


# --------------------------------------------------------------------------- USGS ImageServer


def test_export_params():
    lon, lat = lonlat(450123.25, 4400456.75)
    params = naip_usgs.export_params(lon, lat, EPSG, 256, 153.6)
    xmin, ymin, xmax, ymax = map(float, params["bbox"].split(","))
    assert (xmax - xmin, ymax - ymin) == (pytest.approx(153.6), pytest.approx(153.6))
    assert ((xmin + xmax) / 2, (ymin + ymax) / 2) == (pytest.approx(450123.25, abs=1e-3),
                                                      pytest.approx(4400456.75, abs=1e-3))
    assert {key: value for key, value in params.items() if key != "bbox"} == {
        "bboxSR": "32618", "imageSR": "32618", "size": "256,256", "format": "png", "bandIds": "0,1,2",
        "adjustAspectRatio": "false", "f": "image"}


@pytest.mark.parametrize("col, row", [(500.2, 500.3), (321.4, 700.8)])
def test_export_image_is_centred(naip, col, row):
    lon, lat = at_pixel(ORIGIN_06, 0.6, col, row)
    png = naip_usgs.fetch_crop(naip.image_server, lon, lat, utm_epsg=EPSG, size_px=256, footprint_m=153.6)
    image = np.asarray(Image.open(io.BytesIO(png)))
    assert image.shape == (256, 256, 3)
    error_col, error_row = crop_centre_error(image, col, row)
    assert error_col <= 0.5 + 1e-6 and error_row <= 0.5 + 1e-6
    assert naip.export_log[-1]["bboxSR"] == naip.export_log[-1]["imageSR"] == "32618"


def test_export_image_errors(naip):
    lon, lat = at_pixel(ORIGIN_06, 0.6, 500, 500)
    naip.export_error = {"code": 400, "message": "Invalid bbox", "details": ["bbox outside the service"]}
    with pytest.raises(DownloadError, match=r"exportImage\?bbox=.*ArcGIS error 400: Invalid bbox"):
        naip_usgs.fetch_crop(naip.image_server, lon, lat, utm_epsg=EPSG)
    naip.export_error = {"code": 500, "message": "Server busy"}
    with pytest.raises(DownloadError, match=r"failed after 2 tries: ArcGIS error 500"):
        naip_usgs.fetch_crop(naip.image_server, lon, lat, utm_epsg=EPSG, retry=RetryPolicy(attempts=2))
    naip.export_error = None
    with pytest.raises(DownloadError, match=r"bboxSR 32618 differs from imageSR 3857"):
        naip_usgs.fetch_crop(naip.image_server, lon, lat, utm_epsg=EPSG, extra_params={"imageSR": "3857"})


def test_export_image_faults(naip):
    lon, lat = at_pixel(ORIGIN_06, 0.6, 500, 500)
    path = IMAGE_SERVER_PATH + "/exportImage"
    naip.portal.inject(path, Fault("status", 500), Fault("status", 429, retry_after=2), Fault("truncate"))
    png = naip_usgs.fetch_crop(naip.image_server, lon, lat, utm_epsg=EPSG)
    assert np.asarray(Image.open(io.BytesIO(png))).shape == (256, 256, 3)
    assert len([p for _, p in naip.portal.requests if p.startswith(path)]) == 4 and 2.0 in naip.waits
    naip.portal.inject(path, Fault("status", 404))
    with pytest.raises(DownloadError) as error:
        naip_usgs.fetch_crop(naip.image_server, lon, lat, utm_epsg=EPSG)
    assert error.value.status == 404


def test_stac_faults(naip):
    naip.portal.inject(SEARCH_PATH, Fault("status", 500), Fault("status", 429, retry_after=1))
    assert len(search(naip)) == 3 and 1.0 in naip.waits
    naip.portal.inject(SEARCH_PATH, Fault("status", 404))
    with pytest.raises(DownloadError):
        search(naip)


def test_offline_without_loopback_refuses():
    with offline_mode(True), pytest.raises(OfflineError, match="offline"):
        BlockFetcher().read_range("https://naipeuwest.blob.core.windows.net/naip/v002/de/x.tif", 0, 10)
