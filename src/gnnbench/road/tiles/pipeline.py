"""Imagery of a state in stages: ``download_tiles`` (plan + fetch into the tile cache) and ``build_tiles``
(crops from the cache into shards, the index, a contact sheet and the manifest).

Both run their chunks on Dask (:mod:`gnnbench.parallel`) or in this process; the output depends only on the
plan and the cache, so both paths write identical files. Both resume: fetched tiles and finished shards are
kept, and a rerun does only what is left.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...io import atomic_path, loopback_allowed
from ...io.files import sha256_file
from ...io.manifest import file_record, read_manifest, write_manifest
from ...io.offline import loopback_only
from ...parallel import map_chunks, open_client
from ..states import region_code
from .cache import TileCache
from .contact_sheet import write_contact_sheet
from .crops import CropSpec, TileReader, assemble, encode
from .fetch import FetchReport, fetch_tiles
from .geometry import metres_per_pixel
from .layout import (IMAGERY_MANIFEST_KIND, INDEX_NAME, MANIFEST_NAME, cache_dir, imagery_dir, road_root,
                     shard_dir)
from .plan import make_plan, read_targets
from .shards import target_key, write_shard
from .sources import get_source
from .sources.xyz import XyzSource

logger = logging.getLogger(__name__)

IMAGERY_LAYOUT = 1
DOWNLOAD_RECORD = "download.json"
INDEX_COLUMNS = ("node_id", "kind", "status", "shard", "offset", "size", "lon", "lat", "year", "m_per_px", "dx", "dy")


def default_source(state: str) -> str:
    return "demo" if state == "DEMO" else "usgs-imagery"


@contextmanager
def _demo_imagery(stack: ExitStack) -> Any:
    """Serve the demo region's synthetic imagery on a loopback server for the duration of the block."""
    from ..demo.imagery import SceneRenderer, TileServer
    from ..demo.server import LoopbackPortal

    portal = stack.enter_context(LoopbackPortal())
    server = TileServer(portal, scene=SceneRenderer.demo(), image_format="jpg")
    stack.enter_context(loopback_allowed())
    yield server.template("scene", "zyx")


def _tables_dir(root: Path, state: str) -> Path:
    tables = root / "tables" / state
    if state == "DEMO" and not (tables / "nodes.parquet").is_file():
        from ..pipeline import build_demo

        build_demo(home=root)
    return tables


def download_tiles(state: str, *, source: str | None = None, spec: CropSpec = CropSpec(),
                   root: str | os.PathLike | None = None, scheduler: Any = "local", workers: int | None = None,
                   concurrency: int = 8, rate: float = 10.0, retry_missing: bool = False, chunk_size: int = 4096,
                   template: str | None = None, max_zoom: int | None = None, axis_order: str | None = None,
                   api_key: str | None = None, attribution: str = "", licence: str | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """Fetch every tile the crops of ``state`` need into the tile cache; returns the report (also written to
    ``imagery_dir/download.json``, which :func:`build_tiles` reads)."""
    state = region_code(state, tables=road_root(root) / "tables")
    root = road_root(root)
    name = source or default_source(state)
    with ExitStack() as stack:
        if name == "demo":
            template = stack.enter_context(_demo_imagery(stack))
            rate = 0.0  # the loopback server is this process's own: no rate limit
        tile_source = get_source(name, template=template, max_zoom=max_zoom, axis_order=axis_order,
                                 api_key=api_key, attribution=attribution, licence=licence)
        if tile_source.info.terms:
            logger.warning("%s", tile_source.info.terms)
        started = time.perf_counter()
        plan = make_plan(read_targets(_tables_dir(root, state), spec.targets), tile_source, spec,
                         chunk_size=chunk_size)
        planned = time.perf_counter()
        cache = cache_dir(root, tile_source.key)
        report = FetchReport()
        with open_client(scheduler, workers) as client:
            shares = len(client.scheduler_info()["workers"]) if client is not None else 1
            for _, part in map_chunks(_fetch_chunk, plan.fetch_chunks, client=client, desc="fetch tiles",
                                      progress=progress, source=tile_source, cache=str(cache),
                                      concurrency=concurrency, rate=rate / max(1, shares),
                                      retry_missing=retry_missing, loopback=loopback_only()):
                report.merge(part)
    record = {"state": state, "source": _source_record(tile_source, name), "crop": asdict(spec),
              "zoom": plan.zoom, "chunk_size": chunk_size, "targets": len(plan.targets),
              "unique_tiles": plan.unique_tiles, "requests": report.as_dict(),
              "timing": {"plan_s": round(planned - started, 3), "fetch_s": round(time.perf_counter() - planned, 3)}}
    out = imagery_dir(root, state, tile_source.key)
    with atomic_path(out / DOWNLOAD_RECORD) as temporary:
        temporary.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return record


def _source_record(source: XyzSource, name: str) -> dict[str, Any]:
    template = source.template.replace(source.api_key, "{key}") if source.api_key else source.template
    return {"name": name, "key": source.key, "template": template, "axis_order": source.axis_order,
            "max_zoom": source.max_zoom, "min_zoom": source.min_zoom, "info": asdict(source.info)}


def _fetch_chunk(keys: list, *, source: XyzSource, cache: str, concurrency: int, rate: float, retry_missing: bool,
                 loopback: bool) -> FetchReport:
    with loopback_allowed() if loopback else ExitStack():
        return fetch_tiles(source, [tuple(key) for key in keys], TileCache(cache), concurrency=concurrency,
                           rate=rate, retry_missing=retry_missing)


def read_download_record(root: str | os.PathLike | None, state: str, source_key: str) -> dict[str, Any]:
    path = imagery_dir(root, state, source_key) / DOWNLOAD_RECORD
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no tiles downloaded for {state} from {source_key}; run "
                                f"`gnnbench download tiles --state {state}` first")
    return json.loads(path.read_text(encoding="utf-8"))


def _recorded_source(record: dict[str, Any]) -> XyzSource:
    info = record["source"]
    from .sources.xyz import SourceInfo

    return XyzSource(template=info["template"], max_zoom=info["max_zoom"], min_zoom=info["min_zoom"],
                     axis_order=info["axis_order"], info=SourceInfo(**info["info"]))


def build_tiles(state: str, *, source: str | None = None, root: str | os.PathLike | None = None,
                scheduler: Any = "local", workers: int | None = None, accept_terms: bool = False,
                contact_sheet: int = 16, progress: bool = False) -> Path:
    """Crops of every target from the tile cache into shards, with the index, contact sheet and manifest.

    Works offline. The crop geometry and source are those of the download (``imagery_dir/download.json``).
    Returns the imagery directory.
    """
    root = road_root(root)
    state = region_code(state, tables=root / "tables")
    key = _source_key(root, state, source)
    record = read_download_record(root, state, key)
    tile_source = _recorded_source(record)
    if not tile_source.info.redistributable and tile_source.info.commercial and not accept_terms:
        raise PermissionError(f"{tile_source.info.terms} Pass --accept-terms to write crops for your own use.")
    spec = CropSpec(**record["crop"])
    started = time.perf_counter()
    plan = make_plan(read_targets(root / "tables" / state, spec.targets), tile_source, spec,
                     chunk_size=record["chunk_size"])
    cache = TileCache(cache_dir(root, tile_source.key))
    unfetched = sum(not cache.has(tile) for chunk in plan.fetch_chunks for tile in chunk)
    if unfetched:
        raise FileNotFoundError(f"{unfetched} of {plan.unique_tiles} tiles of {state} were never fetched into "
                                f"{cache.directory}; run `gnnbench download tiles --state {state}` again (it resumes)")
    out = imagery_dir(root, state, key)
    shards = shard_dir(root, state, key)
    columns = ["target_id", "kind", "lon", "lat", "x", "y", "ratio"]
    chunks = [(index, plan.targets.loc[plan.targets["chunk"] == index, columns]) for index in range(plan.chunks)]
    rows: list[dict[str, Any]] = []
    with open_client(scheduler, workers) as client:
        for _, part in map_chunks(_crop_chunk, chunks, client=client, desc="crop tiles", progress=progress,
                                  zoom=plan.zoom, spec=spec, cache=str(cache.directory), shards=str(shards),
                                  source_id=tile_source.info.id):
            rows.extend(part)
    cropped = time.perf_counter()
    index = pd.DataFrame(rows, columns=list(INDEX_COLUMNS)).sort_values(["kind", "node_id"], kind="stable")
    _remove_stale_shards(shards, plan.chunks)
    with atomic_path(out / INDEX_NAME) as temporary:
        index.reset_index(drop=True).to_parquet(temporary, index=False)
    files = {"index": file_record(out / INDEX_NAME, rows=len(index))}
    for number in range(plan.chunks):
        shard = shards / _shard_name(number)
        files[f"shard-{number:05d}"] = {**file_record(shard), "path": f"crops/{shard.name}"}
    if contact_sheet:
        sheet = write_contact_sheet(index, shards, out / "contact_sheet.png", count=contact_sheet,
                                    title=f"{state} · {tile_source.info.name}")
        if sheet is not None:
            files["contact_sheet"] = file_record(sheet)
    write_manifest(out / MANIFEST_NAME, kind=IMAGERY_MANIFEST_KIND, layout=IMAGERY_LAYOUT,
                   parameters={"state": state, "source": record["source"], "crop": record["crop"],
                               "zoom": plan.zoom, "chunk_size": record["chunk_size"],
                               "tables": {"nodes_sha256": sha256_file(root / "tables" / state / "nodes.parquet")}},
                   files=files, source=record["source"]["info"], counts=_counts(index),
                   requests=record["requests"], resolution=_resolution(index), years={"unknown": int(len(index))},
                   timing={**record["timing"], "crop_s": round(cropped - started, 3)})
    return out


def _source_key(root: Path, state: str, source: str | None) -> str:
    base = imagery_dir(root, state, "x").parent
    keys = sorted(p.name for p in base.iterdir() if (p / DOWNLOAD_RECORD).is_file()) if base.is_dir() else []
    if source is not None:
        matches = [key for key in keys if key == source or key.startswith(f"{source}-")]
        if len(matches) == 1:
            return matches[0]
        keys = matches
    if len(keys) == 1:
        return keys[0]
    if not keys:
        raise FileNotFoundError(f"no tiles downloaded for {state} under {base}"
                                + (f" from {source}" if source else "")
                                + f"; run `gnnbench download tiles --state {state}` first")
    raise ValueError(f"{state} has tiles from several sources ({', '.join(keys)}); choose one with --source")


def _shard_name(number: int) -> str:
    return f"shard-{number:05d}.tar"


def _remove_stale_shards(shards: Path, count: int) -> None:
    for path in shards.glob("shard-*.tar"):
        if int(path.stem.split("-")[1]) >= count:
            path.unlink()
            path.with_suffix(".json").unlink(missing_ok=True)


def _crop_chunk(chunk: tuple[int, pd.DataFrame], *, zoom: int, spec: CropSpec, cache: str, shards: str,
                source_id: str) -> list[dict[str, Any]]:
    """Crops of one chunk into its shard (skipped when a finished shard with a matching record exists)."""
    number, targets = chunk
    shard = Path(shards) / _shard_name(number)
    done = shard.with_suffix(".json")
    fingerprint = {"targets": targets["target_id"].tolist(), "kinds": targets["kind"].tolist(),
                   "zoom": zoom, "crop": asdict(spec), "source": source_id}
    if shard.is_file() and done.is_file():
        saved = json.loads(done.read_text(encoding="utf-8"))
        if saved.get("fingerprint") == fingerprint and saved.get("sha256") == sha256_file(shard):
            return saved["rows"]
    reader = TileReader(TileCache(cache))
    samples, rows = [], []
    for target in targets.itertuples(index=False):
        status, rgb, dx, dy = assemble(target.x, target.y, zoom, spec.size_px, target.ratio, reader.get)
        m_per_px = float(metres_per_pixel(target.lat, zoom)) * target.ratio
        row = {"node_id": int(target.target_id), "kind": target.kind, "status": status, "shard": "", "offset": -1,
               "size": 0, "lon": float(target.lon), "lat": float(target.lat), "year": -1,
               "m_per_px": round(m_per_px, 6), "dx": round(dx, 6), "dy": round(dy, 6)}
        if status == "ok":
            key = target_key(target.kind, target.target_id)
            meta = {"lon": row["lon"], "lat": row["lat"], "zoom": zoom, "m_per_px": row["m_per_px"],
                    "dx": row["dx"], "dy": row["dy"], "source": source_id}
            samples.append((key, spec.format, encode(rgb, spec.format), meta))
        rows.append(row)
    entries = {entry.key: entry for entry in write_shard(shard, samples)}
    for row in rows:
        entry = entries.get(target_key(row["kind"], row["node_id"]))
        if entry is not None:
            row.update(shard=shard.name, offset=entry.offset, size=entry.size)
    with atomic_path(done) as temporary:
        temporary.write_text(json.dumps({"fingerprint": fingerprint, "sha256": sha256_file(shard), "rows": rows}),
                             encoding="utf-8")
    return rows


def _counts(index: pd.DataFrame) -> dict[str, Any]:
    counts = Counter(index["status"].tolist())
    return {"targets": int(len(index)), **{status: int(counts.get(status, 0)) for status in
                                           ("ok", "missing", "out_of_coverage", "corrupt", "blank", "failed")}}


def _resolution(index: pd.DataFrame) -> dict[str, float]:
    values = index.loc[index["status"] == "ok", "m_per_px"].to_numpy()
    if not len(values):
        return {}
    return {"m_per_px_min": float(values.min()), "m_per_px_median": float(np.median(values)),
            "m_per_px_max": float(values.max())}


def info_tiles(state: str, *, source: str | None = None, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The imagery manifest of ``state`` (checked), for ``gnnbench info tiles``."""
    root = road_root(root)
    key = _source_key(root, state, source)
    return read_manifest(imagery_dir(root, state, key) / MANIFEST_NAME, kinds=(IMAGERY_MANIFEST_KIND,),
                         layout=IMAGERY_LAYOUT)
