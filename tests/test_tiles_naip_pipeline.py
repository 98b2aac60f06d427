"""NAIP through the imagery pipeline (download tiles -> build tiles) against the loopback STAC/SAS/blob and
ImageServer: centring decoded from coordinate-encoded rasters, one request per unique COG block, resume, the
year choice, out-of-coverage targets, token refresh in the middle of a run, the offline build, Dask identity."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pyproj import Transformer

from gnnbench.io import http, loopback_allowed, offline_mode
from gnnbench.road.demo.cog_fixture import decode_coordinates
from gnnbench.road.demo.naip_server import NaipServer, make_item
from gnnbench.road.demo.server import LoopbackPortal
from gnnbench.road.tiles import pipeline
from gnnbench.road.tiles.crops import CropSpec
from gnnbench.road.tiles.layout import imagery_dir
from gnnbench.road.tiles.shards import read_member
from gnnbench.road.tiles.sources.sas import SasError

EPSG = 32618  # the demo region's UTM zone
ORIGIN = (513000.0, 4273000.0)  # upper-left corner of the 0.6 m scene (UTM 18N, inside the demo region)
SHAPE = (2048, 2048)
TO_UTM = Transformer.from_crs(4326, EPSG, always_xy=True)
TO_LONLAT = Transformer.from_crs(EPSG, 4326, always_xy=True)


def lonlat_at(col: float, row: float, origin=ORIGIN, gsd: float = 0.6) -> tuple[float, float]:
    """lon/lat of continuous (pixel-centre) raster position (col, row) of a scene."""
    return TO_LONLAT.transform(origin[0] + (col + 0.5) * gsd, origin[1] - (row + 0.5) * gsd)


@pytest.fixture(scope="module")
def items():
    return [make_item("m_2019_06", origin=ORIGIN, gsd=0.6, year=2019, shape=SHAPE, tile=512),
            # the same place two years earlier at 1 m (JPEG tiles): further from the crash years 2018-2021
            make_item("m_2015_10", origin=(ORIGIN[0] - 100, ORIGIN[1] + 100), gsd=1.0, year=2015, shape=(1500, 1500),
                      tile=256, compression="jpeg")]


def write_nodes(root, points) -> pd.DataFrame:
    """A DEMO tables directory holding only ``nodes.parquet`` at ``points`` (lon, lat)."""
    tables = root / "tables" / "DEMO"
    tables.mkdir(parents=True, exist_ok=True)
    lon, lat = np.array(points, dtype=float).T
    nodes = pd.DataFrame({"node_id": np.arange(len(lon), dtype=np.int64), "lon": lon, "lat": lat})
    nodes.to_parquet(tables / "nodes.parquet", index=False)
    return nodes


@pytest.fixture
def scene_nodes(tmp_path):
    rng = np.random.default_rng(3)
    cols, rows = rng.uniform(300, 1700, 14), rng.uniform(300, 1700, 14)
    points = [lonlat_at(c, r) for c, r in zip(cols, rows)]
    points.append(lonlat_at(5000, 5000))  # outside every scene
    return write_nodes(tmp_path / "road", points), np.stack([cols, rows], axis=1)


@pytest.fixture
def server(items, monkeypatch):
    monkeypatch.setattr(http, "_sleep", lambda seconds: None)
    with LoopbackPortal() as portal, loopback_allowed(), offline_mode(True):
        yield NaipServer(portal, items)


def crops_of(out) -> dict[int, np.ndarray]:
    index = pd.read_parquet(out / "crops.parquet")
    return {row.node_id: np.asarray(Image.open(io.BytesIO(read_member(out / "crops" / row.shard, row.offset, row.size))))
            for row in index.itertuples() if row.status == "ok"}


def test_naip_pc_crops_are_centred_fetched_once_and_resumable(tmp_path, server, scene_nodes):
    nodes, positions = scene_nodes
    root = tmp_path / "road"
    record = pipeline.download_tiles("DEMO", source="naip-pc", root=root, scheduler="none", rate=0,
                                     endpoint=server.endpoint, chunk_size=5)
    requests = record["requests"]
    assert requests["outcomes"] == {"ok": record["unique_tiles"]} and requests["fetched"] == record["unique_tiles"]
    blocks = [entry for entry in server.blob_log if entry["status"] == 206]
    headers = len(blocks) - record["unique_tiles"]
    assert headers == 1  # only the chosen 2019 scene's header is read
    assert all(entry["served"] < entry["size"] for entry in blocks)  # ranges, never a whole file
    # a rerun asks for nothing: items, headers and blocks all come from the cache
    served = len(server.blob_log)
    again = pipeline.download_tiles("DEMO", source="naip-pc", root=root, scheduler="none", rate=0,
                                    endpoint=server.endpoint, chunk_size=5)
    assert len(server.blob_log) == served and again["requests"]["from_cache"] == record["unique_tiles"]
    with offline_mode(True):  # no loopback allowance: the build reads the cache only
        out = pipeline.build_tiles("DEMO", source="naip-pc", root=root, scheduler="none")
    manifest = pipeline.info_tiles("DEMO", source="naip-pc", root=root)
    assert manifest["counts"]["ok"] == 14 and manifest["counts"]["out_of_coverage"] == 1
    assert manifest["years"] == {"2019": 14}  # the covering year nearest the crash years 2018-2021
    assert manifest["source"]["licence"].startswith("public domain")
    index = pd.read_parquet(out / "crops.parquet").set_index("node_id")
    for node, crop in crops_of(out).items():
        cols, rows = decode_coordinates(crop)
        col, row = positions[node]
        # the crop's centre (between pixels 127 and 128) is the node within half a pixel; dx/dy say where
        centre_col = (cols[128, 128] + cols[127, 127]) / 2 + 0.5
        centre_row = (rows[128, 128] + rows[127, 127]) / 2 + 0.5
        assert abs(centre_col - (col + 0.5)) <= 0.5 + 1e-6 and abs(centre_row - (row + 0.5)) <= 0.5 + 1e-6
        assert abs((col + 0.5) - centre_col - index.loc[node, "dx"]) < 1e-3
        assert index.loc[node, "year"] == 2019 and index.loc[node, "m_per_px"] == pytest.approx(0.6)


def test_naip_pc_refreshes_a_revoked_token_in_the_middle_of_a_run(tmp_path, server, scene_nodes, monkeypatch):
    root = tmp_path / "road"
    original = pipeline.fetch_tiles
    calls = []

    def revoke_before_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            server.revoke()  # the blob store now refuses the token every request still carries
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "fetch_tiles", revoke_before_second_chunk)
    record = pipeline.download_tiles("DEMO", source="naip-pc", root=root, scheduler="none", rate=0,
                                     endpoint=server.endpoint, chunk_size=5)
    assert len(calls) >= 2
    requests = record["requests"]
    assert requests["outcomes"] == {"ok": record["unique_tiles"]}
    # the requests in flight with the revoked token get a 403 each and are retried once; one refresh serves them all
    refused = sum(entry["status"] == 403 for entry in server.blob_log)
    assert requests["source"]["auth_retries"] == refused >= 1
    assert server.tokens_issued == 2


def test_naip_pc_with_tokens_that_never_work_fails_loudly(tmp_path, server, scene_nodes):
    server.issue_expired = True
    with pytest.raises(SasError, match="expired"):
        pipeline.download_tiles("DEMO", source="naip-pc", root=tmp_path / "road", scheduler="none", rate=0,
                                endpoint=server.endpoint)


def test_naip_usgs_exports_one_centred_image_per_crop(tmp_path, server, scene_nodes):
    nodes, positions = scene_nodes
    root = tmp_path / "road"
    record = pipeline.download_tiles("DEMO", source="naip-usgs", root=root, scheduler="none", rate=0,
                                     endpoint=server.image_server, spec=CropSpec(size_px=64, footprint_m=38.4))
    assert len(server.export_log) == len(nodes) == record["unique_tiles"]
    out = pipeline.build_tiles("DEMO", source="naip-usgs", root=root, scheduler="none")
    manifest = pipeline.info_tiles("DEMO", source="naip-usgs", root=root)
    assert manifest["counts"]["targets"] == len(nodes)
    crops = crops_of(out)
    assert len(crops) == manifest["counts"]["ok"] >= 14
    for node, crop in crops.items():
        if node >= len(positions):
            continue
        cols, rows = decode_coordinates(crop)
        col, row = positions[node]
        assert abs((cols[32, 32] + cols[31, 31]) / 2 + 0.5 - (col + 0.5)) <= 1.0
        assert abs((rows[32, 32] + rows[31, 31]) / 2 + 0.5 - (row + 0.5)) <= 1.0


def test_naip_pc_on_dask_writes_the_same_files(tmp_path, server, scene_nodes):
    distributed = pytest.importorskip("distributed")
    outputs = []
    for name, scheduler in (("none", "none"), ("dask", "client")):
        root = tmp_path / name / "road"
        write_nodes(root, pd.read_parquet(tmp_path / "road" / "tables" / "DEMO" / "nodes.parquet")[["lon", "lat"]]
                    .to_numpy().tolist())
        if scheduler == "client":
            cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                               dashboard_address=":0")
            client = distributed.Client(cluster)
            try:
                pipeline.download_tiles("DEMO", source="naip-pc", root=root, scheduler=client, rate=0,
                                        endpoint=server.endpoint, chunk_size=4)
                out = pipeline.build_tiles("DEMO", source="naip-pc", root=root, scheduler=client)
            finally:
                client.close()
                cluster.close()
        else:
            pipeline.download_tiles("DEMO", source="naip-pc", root=root, scheduler="none", rate=0,
                                    endpoint=server.endpoint, chunk_size=4)
            out = pipeline.build_tiles("DEMO", source="naip-pc", root=root, scheduler="none")
        outputs.append(out)
    first, second = outputs
    assert pd.read_parquet(first / "crops.parquet").equals(pd.read_parquet(second / "crops.parquet"))
    shards = sorted(path.name for path in (first / "crops").glob("*.tar"))
    assert len(shards) == 4
    for name in shards:
        assert (first / "crops" / name).read_bytes() == (second / "crops" / name).read_bytes()
    assert imagery_dir(tmp_path / "none" / "road", "DEMO", "naip-pc") == first
