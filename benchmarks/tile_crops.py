"""Crops assembled per second from the tile cache (issue 13, item 8): ``gnnbench build tiles`` against a naive
per-crop assembly, on the same cache, targets and output.

Inputs (generated, seeded): a tile cache of 256-px JPEG tiles (quality 85, about the size of the USGS basemap's)
at zoom 16 over a square of ``--tiles`` x ``--tiles`` tiles near 42°N, and ``--nodes`` intersections drawn
uniformly inside it (about three per tile, as in a state's network); native 256-px crops (the USGS default).

* ``gnnbench``: :func:`gnnbench.road.tiles.pipeline.build_tiles` end to end (plan, crops in Morton order with a
  decoded-tile LRU, encoding, WebDataset shards, index, manifest, contact sheet), on ``scheduler="none"`` (one
  process) and on a Dask ``LocalCluster`` of ``--workers`` processes; PNG (lossless, the default) and JPEG q95.
* ``naive`` (the baseline): for each crop, open and decode every tile it needs from the cache, paste them into a
  canvas with Pillow, cut the crop and encode it the same way (the same encoder); no shard, index or manifest
  (less work than the measured path). The first crops of both are checked pixel-equal.

It also times gnnbench's PNG writer against Pillow's fastest PNG level (``compress_level=1``) on the same 200
crops, interleaved, and compares their sizes. The LocalCluster is started once, outside the timings; one warm-up
build on it, then ``--repeats`` timed runs each (medians). Prints crops/s per path, the
ratio to the naive loop, and the target: at least 500 crops/s at 256 px on 2 cores.

    python benchmarks/tile_crops.py [--quick] [--workers 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from gnnbench.parallel import open_client
from gnnbench.road.tiles.cache import TileCache
from gnnbench.road.tiles.crops import encode, window
from gnnbench.road.tiles.geometry import TILE_SIZE, global_pixel, lonlat_of_pixel
from gnnbench.road.tiles.layout import cache_dir, imagery_dir
from gnnbench.road.tiles.pipeline import DOWNLOAD_RECORD, build_tiles
from gnnbench.road.tiles.shards import iter_shard

TARGET = 500.0
ZOOM = 16
SOURCE_KEY = "bench-tiles"


def make_inputs(root: Path, tiles: int, nodes: int, seed: int = 0) -> None:
    """A tile cache, a tables dir with ``nodes.parquet`` and a download record, all generated."""
    rng = np.random.default_rng(seed)
    x0, y0 = (int(v) // TILE_SIZE for v in global_pixel(-71.8, 42.3, ZOOM))
    cache = TileCache(cache_dir(root, SOURCE_KEY))
    yy, xx = np.mgrid[0:TILE_SIZE, 0:TILE_SIZE]
    for tx in range(x0, x0 + tiles):
        for ty in range(y0, y0 + tiles):
            base = rng.integers(60, 200, 3)
            texture = (np.sin((xx + tx * 7) / 9.0) + np.cos((yy + ty * 5) / 13.0)) * 25
            pixels = np.clip(base + texture[..., None] + rng.normal(0, 12, (TILE_SIZE, TILE_SIZE, 3)), 0, 255)
            buffer = io.BytesIO()
            Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=85)
            cache.write((ZOOM, tx, ty), buffer.getvalue())
    # nodes at least half a crop inside the tiled square, so every crop's tiles exist
    margin = TILE_SIZE
    px = rng.uniform(x0 * TILE_SIZE + margin, (x0 + tiles) * TILE_SIZE - margin, nodes)
    py = rng.uniform(y0 * TILE_SIZE + margin, (y0 + tiles) * TILE_SIZE - margin, nodes)
    lon, lat = lonlat_of_pixel(px, py, ZOOM)
    tables = root / "tables" / "DEMO"
    tables.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"node_id": np.arange(nodes, dtype=np.int64), "lon": lon, "lat": lat}).to_parquet(
        tables / "nodes.parquet", index=False)


def write_record(root: Path, fmt: str, chunk_size: int) -> None:
    info = {"id": SOURCE_KEY, "name": "benchmark tiles (synthetic)", "provider": "benchmark", "url": "",
            "licence": "synthetic", "licence_url": "", "attribution": "", "redistributable": True,
            "commercial": False, "terms": ""}
    record = {"state": "DEMO", "plan": {"zoom": ZOOM}, "chunk_size": chunk_size,
              "crop": {"size_px": 256, "footprint_m": None, "zoom": ZOOM, "targets": "nodes", "format": fmt},
              "source": {"kind": "xyz", "name": "xyz", "key": SOURCE_KEY, "template": "http://127.0.0.1/{z}/{y}/{x}",
                         "axis_order": "zyx", "max_zoom": ZOOM, "min_zoom": 0, "info": info},
              "requests": {}, "timing": {}, "targets": 0, "unique_tiles": 0}
    out = imagery_dir(root, "DEMO", SOURCE_KEY)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / DOWNLOAD_RECORD).write_text(json.dumps(record))


def naive(root: Path, fmt: str, limit: int | None = None) -> list[np.ndarray]:
    """The baseline: every crop decodes its tiles from disk and pastes them with Pillow."""
    nodes = pd.read_parquet(root / "tables" / "DEMO" / "nodes.parquet")
    cache = TileCache(cache_dir(root, SOURCE_KEY))
    xs, ys = global_pixel(nodes["lon"].to_numpy(), nodes["lat"].to_numpy(), ZOOM)
    crops = []
    for x, y in list(zip(xs.tolist(), ys.tolist()))[:limit]:
        left, top, right, bottom = (int(v) for v in window(x, y, 256, 1.0))
        canvas = Image.new("RGB", (right - left, bottom - top))
        for tx in range(left // TILE_SIZE, (right - 1) // TILE_SIZE + 1):
            for ty in range(top // TILE_SIZE, (bottom - 1) // TILE_SIZE + 1):
                tile = Image.open(io.BytesIO(cache.read((ZOOM, tx, ty)))).convert("RGB")
                canvas.paste(tile, (tx * TILE_SIZE - left, ty * TILE_SIZE - top))
        encode(np.asarray(canvas), fmt)
        if limit is not None:
            crops.append(np.asarray(canvas))
    return crops


def measured(root: Path, fmt: str, scheduler: Any, workers: int, chunk_size: int) -> float:
    write_record(root, fmt, chunk_size)
    started = time.perf_counter()
    build_tiles("DEMO", source=SOURCE_KEY, root=root, scheduler=scheduler, workers=workers)
    return time.perf_counter() - started


def check_equal(root: Path) -> None:
    write_record(root, "png", 64)
    build_tiles("DEMO", source=SOURCE_KEY, root=root, scheduler="none")
    expected = naive(root, "png", limit=64)
    index = pd.read_parquet(imagery_dir(root, "DEMO", SOURCE_KEY) / "crops.parquet")
    shard = imagery_dir(root, "DEMO", SOURCE_KEY) / "crops" / index.loc[index["node_id"] == 0, "shard"].iloc[0]
    got = {key: np.asarray(Image.open(io.BytesIO(image)).convert("RGB")) for key, _, image, _ in iter_shard(shard)}
    for node in range(min(64, len(expected))):
        key = f"n{node:09d}"
        if key in got and not np.array_equal(got[key], expected[node]):
            raise SystemExit(f"crop of node {node} differs between gnnbench and the naive assembly")


def compare_encoders(root: Path, count: int = 200, repeats: int = 5) -> None:
    """gnnbench's PNG writer against Pillow's fastest PNG level on the same crops, interleaved: time and size."""
    crops = naive(root, "png", limit=count)

    def pillow(rgb: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, "PNG", compress_level=1)
        return buffer.getvalue()

    times: dict[str, list[float]] = {"gnnbench": [], "pillow": []}
    for _ in range(repeats):
        for name, writer in (("gnnbench", lambda rgb: encode(rgb, "png")), ("pillow", pillow)):
            begin = time.perf_counter()
            for rgb in crops:
                writer(rgb)
            times[name].append((time.perf_counter() - begin) / len(crops))
    ours, theirs = (statistics.median(times[name]) * 1e3 for name in ("gnnbench", "pillow"))
    size = sum(len(encode(rgb, "png")) for rgb in crops) / sum(len(pillow(rgb)) for rgb in crops)
    print(f"PNG writer, {len(crops)} crops: gnnbench {ours:.2f} ms, Pillow compress_level=1 {theirs:.2f} ms per crop "
          f"({theirs / ours:.2f}x faster); files {size:.2f}x Pillow's size (both lossless)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 nodes over 26 x 26 tiles, one repeat")
    parser.add_argument("--nodes", type=int, default=20_000)
    parser.add_argument("--tiles", type=int, default=80)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=2048)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gnnbench-tile-crops"))
    parser.add_argument("--no-target", action="store_true", help="report only (a loaded machine)")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.tiles, args.repeats, args.chunk_size = 2_000, 26, 1, 512
    shutil.rmtree(args.work, ignore_errors=True)
    started = time.perf_counter()
    make_inputs(args.work, args.tiles, args.nodes)
    print(f"inputs: {args.nodes} nodes over {args.tiles}x{args.tiles} JPEG tiles at z{ZOOM} "
          f"({time.perf_counter() - started:.1f} s to generate); crops 256 px native; {os.cpu_count()} cores")
    check_equal(args.work)
    compare_encoders(args.work, repeats=1 if args.quick else 5)
    results = {}
    with open_client("local", args.workers) as client:  # started once, outside the timings
        measured(args.work, "png", client, args.workers, args.chunk_size)  # warm-up: imports on every worker
        for fmt in ("png", "jpg"):
            rows = {"naive": [], "none": [], "local": []}
            for _ in range(args.repeats):
                begin = time.perf_counter()
                naive(args.work, fmt)
                rows["naive"].append(time.perf_counter() - begin)
                rows["none"].append(measured(args.work, fmt, "none", 1, args.chunk_size))
                rows["local"].append(measured(args.work, fmt, client, args.workers, args.chunk_size))
            rates = {name: args.nodes / statistics.median(times) for name, times in rows.items()}
            results[fmt] = rates
            print(f"{fmt}: naive {rates['naive']:7.0f} crops/s | gnnbench 1 process {rates['none']:7.0f} crops/s "
                  f"({rates['none'] / rates['naive']:.2f}x naive) | Dask LocalCluster {args.workers} workers "
                  f"{rates['local']:7.0f} crops/s ({rates['local'] / rates['naive']:.2f}x naive)")
    best = results["png"]["local"]
    verdict = "MET" if best >= TARGET else "NOT MET"
    print(f"target: >= {TARGET:.0f} crops/s at 256 px on {args.workers} workers, PNG end to end: "
          f"{best:.0f} crops/s ({best / TARGET:.2f}x target) {verdict}; JPEG {results['jpg']['local']:.0f} crops/s")
    shutil.rmtree(args.work, ignore_errors=True)
    return 0 if args.no_target or best >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
