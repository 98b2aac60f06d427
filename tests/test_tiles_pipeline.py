"""The imagery pipeline as a whole: reproducible WebDataset shards with a random-access index, resume after a killed
download, shard reuse, Dask (threads and processes) against the single-process path, the CLI, edge midpoints."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gnnbench.cli import _parser, main
from gnnbench.io import offline_mode
from gnnbench.parallel import map_chunks, open_client
from gnnbench.road.tiles.crops import CropSpec
from gnnbench.road.tiles.geometry import global_pixel
from gnnbench.road.tiles.layout import cache_dir
from gnnbench.road.tiles.pipeline import build_tiles, download_tiles, info_tiles
from gnnbench.road.tiles.shards import iter_shard, parse_key, read_member
from gnnbench.road.tiles.sources.xyz import user_source
from tile_fixtures import (centre_pixel, points_near, read_crops, shard_bytes, shard_members, tile_requests,
                           tile_server, wrapped, write_tables)

ZOOM = 18
STATUSES = ("ok", "missing", "out_of_coverage", "corrupt", "blank", "failed")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    import gnnbench.io.http as http

    monkeypatch.setattr(http, "_sleep", lambda seconds: None)
    monkeypatch.setenv("GNNBENCH_PROGRESS", "0")


def _state(root: Path, state: str, count: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = points_near(-75.3, 38.7, ZOOM, count, spread_px=1800, seed=seed)
    write_tables(root, state, lon, lat, node_ids=np.arange(count) * 3 + 1)
    return lon, lat


def _pipeline(root: Path, state: str, template: str, *, scheduler="none", workers=None, chunk_size: int = 8,
              size: int = 96, build_scheduler=None) -> tuple[dict, Path]:
    record = download_tiles(state, source="xyz", template=template, max_zoom=20, spec=CropSpec(size_px=size, zoom=ZOOM),
                            root=root, scheduler=scheduler, workers=workers, rate=0, chunk_size=chunk_size)
    out = build_tiles(state, root=root, scheduler=scheduler if build_scheduler is None else build_scheduler,
                      workers=workers, contact_sheet=6)
    return record, out


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# --------------------------------------------------------------------------- shards and index


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    """The same state built twice from scratch into two roots (each with its own tile cache)."""
    base = tmp_path_factory.mktemp("repro")
    with tile_server(max_zoom=20) as (portal, server):
        template = server.template("coordinate", "zxy")
        outs = []
        for name in ("a", "b"):
            _state(base / name, "RP")
            outs.append(_pipeline(base / name, "RP", template)[1])
        requests = Counter(tile_requests(portal))
    return outs, requests


def test_shards_are_byte_reproducible(two_builds):
    (a, b), requests = two_builds
    assert set(requests.values()) == {2}  # each root fetched every tile itself, once
    assert len(shard_bytes(a)) == 4  # 30 targets in chunks of 8
    assert shard_bytes(a) == shard_bytes(b)
    assert (a / "crops.parquet").read_bytes() == (b / "crops.parquet").read_bytes()
    assert (a / "contact_sheet.png").read_bytes() == (b / "contact_sheet.png").read_bytes()
    for name in shard_bytes(a):
        assert str(a.parent.parent.parent) not in shard_bytes(a)[name].decode("latin-1")  # no local paths
    ma, mb = _manifest(a), _manifest(b)
    assert ma["counts"] == mb["counts"] == {"targets": 30, **{s: 30 * (s == "ok") for s in STATUSES}}
    assert {k: v["sha256"] for k, v in ma["files"].items()} == {k: v["sha256"] for k, v in mb["files"].items()}


def test_shards_follow_the_webdataset_key_rules(two_builds):
    (out, _), _ = two_builds
    index = pd.read_parquet(out / "crops.parquet")
    keys_seen = []
    for shard in sorted((out / "crops").glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            infos = tar.getmembers()
        assert all(info.mtime == 0 and info.uid == info.gid == 0 and info.uname == info.gname == "" for info in infos)
        names = [info.name for info in infos]
        keys = [name.split(".", 1)[0] for name in names[::2]]
        assert names == [f"{key}.{ext}" for key in keys for ext in ("png", "json")]  # image then metadata
        assert keys == sorted(keys) and all("." not in key and "/" not in key for key in keys)
        keys_seen += keys
    ok = index[index["status"] == "ok"]
    assert sorted(keys_seen) == sorted(f"n{node:09d}" for node in ok["node_id"])
    assert [parse_key(key) for key in sorted(keys_seen)] == [("n", int(n)) for n in sorted(ok["node_id"])]
    assert list(index.columns) == ["node_id", "kind", "status", "shard", "offset", "size", "lon", "lat", "year",
                                   "m_per_px", "dx", "dy"]
    assert index["node_id"].is_monotonic_increasing


def test_index_gives_random_access_to_each_crop(two_builds):
    (out, _), _ = two_builds
    index = pd.read_parquet(out / "crops.parquet")
    members = {}
    for shard in (out / "crops").glob("shard-*.tar"):
        members.update({(shard.name, name): data for name, data in shard_members(shard)})
    nodes = pd.read_parquet(out.parents[2] / "tables" / "RP" / "nodes.parquet").set_index("node_id")
    for row in index.itertuples():
        key = f"n{row.node_id:09d}"
        image = read_member(out / "crops" / row.shard, row.offset, row.size)
        assert image == members[(row.shard, f"{key}.png")]
        raw = (out / "crops" / row.shard).read_bytes()[row.offset: row.offset + row.size]
        assert raw == image and image.startswith(b"\x89PNG")
        meta = json.loads(members[(row.shard, f"{key}.json")])
        assert meta["lon"] == row.lon == nodes.loc[row.node_id, "lon"] and meta["zoom"] == ZOOM
        assert meta["dx"] == row.dx and meta["m_per_px"] == row.m_per_px
        rgb = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
        x, y = global_pixel(row.lon, row.lat, ZOOM)
        cx, cy = centre_pixel(rgb)
        assert rgb.shape == (96, 96, 3) and abs(wrapped(x - cx)) <= 0.5 and abs(wrapped(y - cy)) <= 0.5
    samples = [sample for shard in sorted((out / "crops").glob("shard-*.tar")) for sample in iter_shard(shard)]
    assert len(samples) == len(index) == 30
    for key, extension, image, meta in samples:
        row = index[index["node_id"] == parse_key(key)[1]].iloc[0]
        assert extension == "png" and image == members[(row["shard"], f"{key}.png")] and meta["lat"] == row["lat"]


def test_shards_are_readable_by_webdataset(two_builds):
    wds = pytest.importorskip("webdataset")
    (out, _), _ = two_builds
    shards = [str(path) for path in sorted((out / "crops").glob("shard-*.tar"))]
    samples = list(wds.WebDataset(shards, shardshuffle=False))
    index = pd.read_parquet(out / "crops.parquet")
    assert sorted(sample["__key__"] for sample in samples) == sorted(f"n{n:09d}" for n in index["node_id"])
    assert all(set(sample) >= {"png", "json"} for sample in samples)


def test_jpeg_crops(tmp_path):
    _state(tmp_path, "JP", count=6)
    with tile_server(max_zoom=20) as (_, server):
        download_tiles("JP", source="xyz", template=server.template("coordinate", "zxy"), max_zoom=20,
                       spec=CropSpec(size_px=96, zoom=ZOOM, format="jpg"), root=tmp_path, scheduler="none", rate=0)
        out = build_tiles("JP", root=tmp_path, scheduler="none")
    names = [name for shard in (out / "crops").glob("shard-*.tar") for name, _ in shard_members(shard)]
    assert sorted(names) == sorted(f"n{3 * n + 1:09d}.{ext}" for n in range(6) for ext in ("jpg", "json"))
    for row in pd.read_parquet(out / "crops.parquet").itertuples():
        image = read_member(out / "crops" / row.shard, row.offset, row.size)
        assert image[:3] == b"\xff\xd8\xff" and Image.open(io.BytesIO(image)).size == (96, 96)
    assert _manifest(out)["parameters"]["crop"]["format"] == "jpg"


def test_the_contact_sheet_and_manifest_describe_the_build(two_builds):
    (out, _), _ = two_builds
    manifest = _manifest(out)
    assert manifest["kind"] == "road-imagery" and manifest["parameters"]["plan"]["zoom"] == ZOOM
    assert manifest["source"]["id"] == "xyz"
    assert manifest["requests"]["outcomes"] == {"ok": manifest["requests"]["fetched"]}
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[0] == 3 * 128  # 6 thumbnails in 3 columns
    assert sorted(name for name in manifest["files"] if name.startswith("shard-")) == [
        f"shard-{n:05d}" for n in range(4)]


# --------------------------------------------------------------------------- resume and reuse


def test_a_killed_download_resumes_without_fetching_twice(tmp_path):
    """`gnnbench download tiles` in a subprocess, SIGKILLed mid-run; the rerun fetches only what was not stored
    (at most the requests in flight at the kill again), and the crops equal those of an uninterrupted run."""
    run, ref = tmp_path / "run", tmp_path / "ref"
    for root in (run, ref):
        _state(root, "KL", count=40, seed=5)
    concurrency = 4
    with tile_server(max_zoom=20) as (portal, server):
        template = server.template("coordinate", "zxy")
        env = {**os.environ, "GNNBENCH_OFFLINE": "1", "GNNBENCH_LOOPBACK_ONLY": "1", "OMP_NUM_THREADS": "1",
               "GNNBENCH_HOME": str(tmp_path / "home")}
        command = [sys.executable, "-c", "import sys; from gnnbench.cli import main; sys.exit(main(sys.argv[1:]))",
                   "download", "tiles", "--state", "KL", "--source", "xyz", "--template", template, "--max-zoom",
                   "20", "--zoom", str(ZOOM), "--size", "96", "--scheduler", "none", "--rate", "40",
                   "--concurrency", str(concurrency), "--chunk-size", "8", "--root", str(run), "--no-progress"]
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 180
            while sum(server.served.values()) < 15:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the download never started"
                time.sleep(0.002)
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == -signal.SIGKILL
        first = dict(server.served)
        source_key = user_source(template, max_zoom=20).key
        cache = cache_dir(run, source_key)
        stored = {(int(p.parts[-3]), int(p.parts[-2]), int(p.stem)) for p in cache.rglob("*.tile")}
        assert not list(cache.rglob("*.missing"))
        in_flight = {key[1:] for key in first} - stored
        assert stored <= {key[1:] for key in first} and len(in_flight) <= concurrency
        with pytest.raises(FileNotFoundError, match="gnnbench download tiles --state KL"):
            build_tiles("KL", root=run, scheduler="none")  # the killed run wrote no download record

        record = download_tiles("KL", source="xyz", template=template, max_zoom=20,
                                spec=CropSpec(size_px=96, zoom=ZOOM), root=run, scheduler="none", rate=0,
                                chunk_size=8)
        resumed = dict(server.served)
        assert record["requests"]["from_cache"] == len(stored) < record["unique_tiles"]
        assert record["requests"]["fetched"] == record["unique_tiles"] - len(stored)
        twice = {key[1:] for key, count in resumed.items() if count > 1}
        assert twice <= in_flight and max(resumed.values()) <= 2
        assert len(resumed) == record["unique_tiles"]

        _pipeline(ref, "KL", template)
    out = build_tiles("KL", root=run, scheduler="none", contact_sheet=6)
    reference = ref / "imagery" / "KL" / source_key
    assert shard_bytes(out) == shard_bytes(reference) and len(shard_bytes(out)) == 5
    pd.testing.assert_frame_equal(pd.read_parquet(out / "crops.parquet"), pd.read_parquet(reference / "crops.parquet"))


def test_a_deleted_shard_is_rebuilt_and_the_others_reused(tmp_path):
    _state(tmp_path, "RU")
    with tile_server(max_zoom=20) as (_, server):
        _, out = _pipeline(tmp_path, "RU", server.template("coordinate", "zxy"))
    before = shard_bytes(out)
    index_before = pd.read_parquet(out / "crops.parquet")
    old = 1_000_000_000
    for path in (out / "crops").iterdir():
        os.utime(path, (old, old))
    (out / "crops" / "shard-00001.tar").unlink()
    damaged = out / "crops" / "shard-00002.tar"
    damaged.write_bytes(damaged.read_bytes()[:1000])  # a shard that no longer matches its record is rebuilt too
    os.utime(damaged, (old, old))
    build_tiles("RU", root=tmp_path, scheduler="none")
    assert shard_bytes(out) == before
    times = {path.name: path.stat().st_mtime for path in (out / "crops").iterdir()}
    assert times["shard-00000.tar"] == times["shard-00003.tar"] == old
    assert times["shard-00000.json"] == times["shard-00003.json"] == old
    assert times["shard-00001.tar"] > old and times["shard-00002.tar"] > old
    pd.testing.assert_frame_equal(pd.read_parquet(out / "crops.parquet"), index_before)


def test_fewer_chunks_remove_the_stale_shards(tmp_path):
    _state(tmp_path, "ST")
    with tile_server(max_zoom=20) as (portal, server):
        template = server.template("coordinate", "zxy")
        _, out = _pipeline(tmp_path, "ST", template)
        count = len(portal.requests)
        _, out = _pipeline(tmp_path, "ST", template, chunk_size=100)
        assert len(portal.requests) == count  # the plan changed, the tiles did not
    assert sorted(path.name for path in (out / "crops").glob("shard-*")) == ["shard-00000.json", "shard-00000.tar"]
    index = pd.read_parquet(out / "crops.parquet")
    assert set(index["shard"]) == {"shard-00000.tar"} and len(read_crops(out)[1]) == 30
    assert [name for name in _manifest(out)["files"] if name.startswith("shard-")] == ["shard-00000"]


def test_build_before_download_is_a_clear_error(tmp_path):
    _state(tmp_path, "NB", count=5)
    with pytest.raises(FileNotFoundError, match="gnnbench download tiles --state NB"):
        build_tiles("NB", root=tmp_path, scheduler="none")
    with tile_server(max_zoom=20) as (_, server):
        template = server.template("coordinate", "zxy")
        download_tiles("NB", source="xyz", template=template, max_zoom=20, spec=CropSpec(size_px=64, zoom=ZOOM),
                       root=tmp_path, scheduler="none", rate=0)
    cache = cache_dir(tmp_path, user_source(template, max_zoom=20).key)
    next(cache.rglob("*.tile")).unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of \d+ tiles of NB were never fetched.*gnnbench download tiles"):
        build_tiles("NB", root=tmp_path, scheduler="none")


# --------------------------------------------------------------------------- Dask


@pytest.fixture(scope="module")
def threaded_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_threads_give_the_same_files_as_one_process(tmp_path, threaded_client):
    with tile_server(max_zoom=20) as (portal, server):
        template = server.template("coordinate", "zxy")
        _state(tmp_path / "dask", "DK", count=45, seed=9)
        _state(tmp_path / "none", "DK", count=45, seed=9)
        dask_record, dask_out = _pipeline(tmp_path / "dask", "DK", template, scheduler=threaded_client,
                                          chunk_size=20)
        dask_requests = Counter(tile_requests(portal))
        none_record, none_out = _pipeline(tmp_path / "none", "DK", template, chunk_size=20)
    assert set(dask_requests.values()) == {1} and len(dask_requests) == dask_record["unique_tiles"]
    assert dask_record["requests"]["outcomes"] == none_record["requests"]["outcomes"]
    assert len(shard_bytes(dask_out)) == 3 and shard_bytes(dask_out) == shard_bytes(none_out)
    assert (dask_out / "crops.parquet").read_bytes() == (none_out / "crops.parquet").read_bytes()
    assert _manifest(dask_out)["counts"] == _manifest(none_out)["counts"]
    assert _manifest(dask_out)["counts"]["ok"] == 45


@pytest.mark.heavy
def test_dask_worker_processes_fetch_over_loopback_offline(tmp_path):
    """A LocalCluster of 2 processes, offline: the workers may reach only the loopback server (the allowance
    travels as GNNBENCH_LOOPBACK_ONLY), and the result equals the single-process one."""
    pytest.importorskip("distributed")
    with offline_mode(), tile_server(max_zoom=20) as (portal, server):
        template = server.template("coordinate", "zxy")
        _state(tmp_path / "local", "LC", count=24, seed=4)
        _state(tmp_path / "none", "LC", count=24, seed=4)
        record, local_out = _pipeline(tmp_path / "local", "LC", template, scheduler="local", workers=2,
                                      build_scheduler="none")
        assert Counter(tile_requests(portal)) == Counter({key: 1 for key in set(tile_requests(portal))})
        _, none_out = _pipeline(tmp_path / "none", "LC", template)
    assert record["requests"]["outcomes"] == {"ok": record["unique_tiles"]}
    assert shard_bytes(local_out) == shard_bytes(none_out)
    assert (local_out / "crops.parquet").read_bytes() == (none_out / "crops.parquet").read_bytes()


def _double_or_fail(chunk, *, bad):
    if chunk == bad:
        raise ValueError(f"bad chunk {chunk}")
    return chunk * 2


def test_map_chunks_names_the_failing_chunk(threaded_client):
    chunks = [10, 11, 12, 13]
    for client in (None, threaded_client):
        assert dict(map_chunks(_double_or_fail, chunks, client=client, desc="demo", bad=-1)) == {
            0: 20, 1: 22, 2: 24, 3: 26}
        with pytest.raises(RuntimeError, match=r"^demo: chunk 2 failed: ValueError: bad chunk 12"):
            list(map_chunks(_double_or_fail, chunks, client=client, desc="demo", bad=12))
    with open_client("none") as client:
        assert client is None
    with pytest.raises(ValueError, match="tcp://host:8786"):
        with open_client("somewhere"):
            pass


# --------------------------------------------------------------------------- the CLI


def _subcommand(*names: str) -> argparse.ArgumentParser:
    parser = _parser()
    for name in names:
        parser = next(action for action in parser._actions
                      if isinstance(action, argparse._SubParsersAction)).choices[name]
    return parser


@pytest.mark.parametrize(("command", "expected"), [
    ("download", {"--state", "--source", "--endpoint", "--years", "--template", "--max-zoom", "--axis-order",
                  "--attribution", "--licence",
                  "--api-key", "--size", "--footprint", "--zoom", "--edges", "--format", "--concurrency", "--rate",
                  "--retry-missing", "--chunk-size", "--scheduler", "--workers", "--no-progress", "--root"}),
    ("build", {"--state", "--source", "--accept-terms", "--scheduler", "--workers", "--no-progress", "--root"}),
    ("info", {"--state", "--source", "--json", "--root"}),
])
def test_tiles_commands_document_every_option(command, expected, capsys):
    parser = _subcommand(command, "tiles")
    options = [action for action in parser._actions if action.option_strings and "-h" not in action.option_strings
               and action.help != argparse.SUPPRESS]  # deprecated aliases (--home) are hidden on purpose
    assert {action.option_strings[-1] for action in options} == expected
    with pytest.raises(SystemExit) as done:
        main([command, "tiles", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for action in options:
        assert action.help and len(action.help.split()) >= 3, action.option_strings
        assert action.option_strings[-1] in text
    assert parser.description


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    """A GNNBENCH_HOME whose road root has the demo region's tables (built once for this module)."""
    from gnnbench.road.pipeline import build_demo

    home = tmp_path_factory.mktemp("home")
    build_demo(home=home / "road")
    return home


def test_demo_download_build_info_through_the_cli(demo_home, monkeypatch, capsys):
    root = demo_home / "road"
    nodes = len(pd.read_parquet(root / "tables" / "DEMO" / "nodes.parquet"))
    assert main(["download", "tiles", "--state", "DEMO", "--scheduler", "none", "--root", str(root),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"DEMO: {nodes} crops (zoom 18) need" in out and "next: gnnbench build tiles --state DEMO" in out
    assert main(["build", "tiles", "--state", "DEMO", "--scheduler", "none", "--root", str(root),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"DEMO: {nodes} of {nodes} crops ok" in out and "licence" in out
    monkeypatch.setenv("GNNBENCH_HOME", str(demo_home))  # no --root: the default road root under GNNBENCH_HOME
    assert main(["info", "tiles", "--state", "DEMO", "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest == info_tiles("DEMO", root=root)
    assert manifest["counts"] == {"targets": nodes, **{s: nodes * (s == "ok") for s in STATUSES}}
    assert manifest["parameters"]["plan"]["zoom"] == 18 and manifest["parameters"]["crop"]["footprint_m"] == 153.6
    assert manifest["source"]["id"] == "demo" and "contact_sheet" in manifest["files"]
    assert manifest["years"] == {"unknown": nodes}  # a tile basemap does not say when its pictures were taken
    assert manifest["resolution"]["m_per_px_median"] == pytest.approx(0.6, rel=1e-6)
    index, crops = read_crops(root / "imagery" / "DEMO" / "demo")
    assert len(crops) == nodes and all(rgb.shape == (256, 256, 3) for rgb in crops.values())
    assert len({rgb.tobytes() for rgb in crops.values()}) == nodes  # real pictures, each its own
    assert main(["info", "tiles", "--state", "DEMO"]) == 0
    assert f"DEMO: {nodes} of {nodes} crops ok" in capsys.readouterr().out


def test_demo_zoom_beyond_the_source_is_a_one_line_error(demo_home, capsys):
    root = demo_home / "road"
    code = main(["download", "tiles", "--state", "DEMO", "--zoom", "19", "--scheduler", "none", "--root",
                 str(root), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gnnbench: error: ")
    assert "up to zoom 18" in lines[0] and "zoom 19" in lines[0]


def test_the_zoom_error_advises_a_source_the_cli_accepts(demo_home, capsys):
    main(["download", "tiles", "--state", "DEMO", "--zoom", "19", "--scheduler", "none", "--root",
          str(demo_home / "road"), "--no-progress"])
    error = capsys.readouterr().err
    advised = error.split("--source ", 1)[1].split(",")[0].split()[0]
    choices = next(a for a in _subcommand("download", "tiles")._actions if "--source" in a.option_strings).choices
    assert advised in choices


def test_edge_midpoints_get_their_own_crops(tmp_path, capsys):
    import shapely

    zoom, d = 17, 0.004
    lon = np.array([-75.30, -75.30 + d, -75.30 + d, -75.30 + 2 * d])
    lat = np.array([38.70, 38.70, 38.70 + d, 38.70 + d])
    # node 1 -> node 2 (due north) as a U: east, north, west; half way along it is the middle of the north leg
    bent = shapely.to_wkb(shapely.LineString([(lon[1], lat[1]), (lon[1] + d, lat[1]), (lon[1] + d, lat[2]),
                                              (lon[2], lat[2])]))
    straight = shapely.to_wkb(shapely.LineString([(lon[2], lat[2]), (lon[3], lat[3])]))
    edges = pd.DataFrame({"edge_id": np.array([100, 101, 102], dtype=np.int64), "src": [0, 1, 2], "dst": [1, 2, 3],
                          "geometry": [None, bent, straight]})
    write_tables(tmp_path, "EG", lon, lat, edges=edges)
    midpoints = {100: ((lon[0] + lon[1]) / 2, lat[0]), 101: (lon[1] + d, (lat[1] + lat[2]) / 2),
                 102: ((lon[2] + lon[3]) / 2, lat[2])}
    with tile_server(max_zoom=20) as (_, server):
        template = server.template("coordinate", "zyx")
        assert main(["download", "tiles", "--state", "EG", "--source", "xyz", "--template", template, "--max-zoom",
                     "18", "--zoom", str(zoom), "--size", "64", "--edges", "--scheduler", "none", "--rate", "0",
                     "--root", str(tmp_path), "--no-progress"]) == 0
    assert "EG: 7 crops (zoom 17) need" in capsys.readouterr().out
    assert main(["build", "tiles", "--state", "EG", "--scheduler", "none", "--root", str(tmp_path),
                 "--no-progress"]) == 0
    out = tmp_path / "imagery" / "EG" / user_source(template, max_zoom=18).key
    index, crops = read_crops(out)
    assert index[index["kind"] == "e"]["node_id"].tolist() == [100, 101, 102]
    assert index[index["kind"] == "n"]["node_id"].tolist() == [0, 1, 2, 3]
    assert (index["status"] == "ok").all()
    assert sorted(crops) == ["e000000100", "e000000101", "e000000102"] + [f"n{n:09d}" for n in range(4)]
    for edge, (mx, my) in midpoints.items():
        x, y = global_pixel(mx, my, zoom)
        cx, cy = centre_pixel(crops[f"e{edge:09d}"])
        assert abs(wrapped(x - cx)) <= 0.5 and abs(wrapped(y - cy)) <= 0.5, edge
    assert _manifest(out)["counts"]["targets"] == 7
