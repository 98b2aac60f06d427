"""Imagery of a state in stages: ``download_tiles`` (plan + fetch into the tile cache) and ``build_tiles``
(crops from the cache into shards, the index, a contact sheet and the manifest).

Both run their chunks on Dask (:mod:`gnnbench.parallel`) or in this process; the output depends only on the
plan and the cache, so both paths write identical files. Both resume: fetched tiles and finished shards are
kept, and a rerun does only what is left.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, replace
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
from .crops import CropSpec, encode
from .fetch import FetchReport, fetch_tiles
from .layout import (IMAGERY_MANIFEST_KIND, INDEX_NAME, MANIFEST_NAME, cache_dir, imagery_dir, road_root,
                     shard_dir)
from .plan import read_targets
from .shards import target_key, write_shard
from .sources import ImagerySource, get_source, source_from_description
from .validate import STATUSES

logger = logging.getLogger(__name__)

IMAGERY_LAYOUT = 1
DOWNLOAD_RECORD = "download.json"
INDEX_COLUMNS = ("node_id", "kind", "status", "shard", "offset", "size", "lon", "lat", "year", "m_per_px", "dx", "dy")


def default_source(state: str) -> str:
    """``demo`` for the demo region, else native NAIP from the Planetary Computer."""
    return "demo" if state == "DEMO" else "naip-pc"


def _serve_demo_imagery(stack: ExitStack) -> str:
    """Serve the demo region's synthetic imagery on a loopback server until ``stack`` closes; its URL template."""
    from ..demo.imagery import SceneRenderer, TileServer
    from ..demo.server import LoopbackPortal

    portal = stack.enter_context(LoopbackPortal())
    server = TileServer(portal, scene=SceneRenderer.demo(), image_format="jpg")
    stack.enter_context(loopback_allowed())
    return server.template("scene", "zyx")


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
                   endpoint: str | None = None, years: tuple[int, int] | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """Fetch every tile (or COG block, or exported image) the crops of ``state`` need into the cache; returns the
    report (also written to ``imagery_dir/download.json``, which :func:`build_tiles` reads).

    ``endpoint``: another address for a NAIP service (the STAC/SAS API, or the ImageServer); ``years``: the
    imagery years to prefer (default: the state's crash years).
    """
    state = region_code(state, tables=road_root(root) / "tables")
    root = road_root(root)
    name = source or default_source(state)
    with ExitStack() as stack:
        if name == "demo":
            template = _serve_demo_imagery(stack)
            rate = 0.0  # the loopback server is this process's own: no rate limit
        tile_source = get_source(name, state=state, template=template, max_zoom=max_zoom, axis_order=axis_order,
                                 api_key=api_key, attribution=attribution, licence=licence, endpoint=endpoint,
                                 years=years)
        if tile_source.info.terms:
            logger.warning("%s", tile_source.info.terms)
        if spec.footprint_m is None and tile_source.default_footprint_m is not None:
            spec = replace(spec, footprint_m=tile_source.default_footprint_m)  # recorded as the crops really are
        started = time.perf_counter()
        cache = cache_dir(root, tile_source.key)
        plan = tile_source.plan(read_targets(_tables_dir(root, state), spec.targets), spec,
                                chunk_size=chunk_size, cache=cache, online=True)
        planned = time.perf_counter()
        plan_requests = tile_source.stats().get("requests", 0)  # e.g. the COG headers NAIP reads
        report = FetchReport()
        with open_client(scheduler, workers) as client:
            shares = len(client.scheduler_info()["workers"]) if client is not None else 1
            for _, part in map_chunks(_fetch_chunk, plan.fetch_chunks, client=client, desc="fetch tiles",
                                      progress=progress, source=tile_source, cache=str(cache),
                                      concurrency=concurrency, rate=rate / max(1, shares),
                                      retry_missing=retry_missing, loopback=loopback_only()):
                report.merge(part)
    record = {"state": state, "source": {"name": name, **tile_source.describe()}, "crop": asdict(spec),
              "plan": plan.parameters, "chunk_size": chunk_size, "targets": len(plan.targets),
              "unique_tiles": plan.unique_tiles, "requests": {**report.as_dict(), "plan_requests": plan_requests},
              "timing": {"plan_s": round(planned - started, 3), "fetch_s": round(time.perf_counter() - planned, 3)}}
    out = imagery_dir(root, state, tile_source.key)
    with atomic_path(out / DOWNLOAD_RECORD) as temporary:
        temporary.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return record


def _fetch_chunk(keys: list, *, source: ImagerySource, cache: str, concurrency: int, rate: float, retry_missing: bool,
                 loopback: bool) -> FetchReport:
    with loopback_allowed() if loopback else ExitStack():
        return fetch_tiles(source.bind(Path(cache)), [tuple(key) for key in keys], TileCache(cache),
                           concurrency=concurrency, rate=rate, retry_missing=retry_missing)


def read_download_record(root: str | os.PathLike | None, state: str, source_key: str) -> dict[str, Any]:
    path = imagery_dir(root, state, source_key) / DOWNLOAD_RECORD
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no tiles downloaded for {state} from {source_key}; run "
                                f"`gnnbench download tiles --state {state}` first")
    return json.loads(path.read_text(encoding="utf-8"))


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
    tile_source = source_from_description(record["source"])
    if not tile_source.info.redistributable and tile_source.info.commercial and not accept_terms:
        raise PermissionError(f"{tile_source.info.terms} Pass --accept-terms to write crops for your own use.")
    spec = CropSpec(**record["crop"])
    started = time.perf_counter()
    cache = TileCache(cache_dir(root, tile_source.key))
    plan = tile_source.plan(read_targets(root / "tables" / state, spec.targets), spec,
                            chunk_size=record["chunk_size"], cache=cache.directory, online=False)
    unfetched = sum(not cache.has(tile) for chunk in plan.fetch_chunks for tile in chunk)
    if unfetched:
        raise FileNotFoundError(f"{unfetched} of {plan.unique_tiles} tiles of {state} were never fetched into "
                                f"{cache.directory}; run `gnnbench download tiles --state {state}` again (it resumes)")
    out = imagery_dir(root, state, key)
    shards = shard_dir(root, state, key)
    chunk_of = plan.targets["chunk"].to_numpy()
    chunks = [(index, plan.targets[chunk_of == index].drop(columns="chunk"),
               sorted({key for row in np.flatnonzero(chunk_of == index) for key in plan.tiles[row]}, key=str))
              for index in range(plan.chunks)]
    rows: list[dict[str, Any]] = []
    files: dict[str, dict[str, Any]] = {}
    with open_client(scheduler, workers) as client:
        for number, (part, shard) in map_chunks(_crop_chunk, chunks, client=client, desc="crop tiles",
                                                progress=progress, source=tile_source, parameters=plan.parameters,
                                                spec=spec, cache=str(cache.directory), shards=str(shards)):
            rows.extend(part)
            files[f"shard-{number:05d}"] = shard  # its size and SHA-256, as the chunk wrote and checked it
    cropped = time.perf_counter()
    index = pd.DataFrame(rows, columns=list(INDEX_COLUMNS)).sort_values(["kind", "node_id"], kind="stable")
    _remove_stale_shards(shards, plan.chunks)
    with atomic_path(out / INDEX_NAME) as temporary:
        index.reset_index(drop=True).to_parquet(temporary, index=False)
    files = {"index": file_record(out / INDEX_NAME, rows=len(index)), **dict(sorted(files.items()))}
    if contact_sheet:
        sheet = write_contact_sheet(index, shards, out / "contact_sheet.png", count=contact_sheet,
                                    title=f"{state} · {tile_source.info.name}")
        if sheet is not None:
            files["contact_sheet"] = file_record(sheet)
    write_manifest(out / MANIFEST_NAME, kind=IMAGERY_MANIFEST_KIND, layout=IMAGERY_LAYOUT,
                   parameters={"state": state, "source": record["source"], "crop": record["crop"],
                               "plan": plan.parameters, "chunk_size": record["chunk_size"],
                               "tables": {"nodes_sha256": sha256_file(root / "tables" / state / "nodes.parquet")}},
                   files=files, source=record["source"]["info"], counts=_counts(index),
                   requests=record["requests"], resolution=_resolution(index), years=_years(index),
                   timing={**record["timing"], "crop_s": round(cropped - started, 3)})
    return out


def _source_key(root: Path, state: str, source: str | None) -> str:
    base = road_root(root) / "imagery" / state
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


def _crop_chunk(chunk: tuple[int, pd.DataFrame, list], *, source: ImagerySource, parameters: dict[str, Any],
                spec: CropSpec, cache: str, shards: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Crops of one chunk into its shard: the index rows and the shard's file record (skipped when a finished
    shard with a matching record exists: same targets, plan and crop, and the same state of every tile it reads,
    so a tile fetched again is used)."""
    number, targets, keys = chunk
    shard = Path(shards) / _shard_name(number)
    done = shard.with_suffix(".json")
    fingerprint = {"targets": targets["target_id"].tolist(), "kinds": targets["kind"].tolist(),
                   "plan": parameters, "crop": asdict(spec), "source": source.key,
                   "tiles": _cache_state(TileCache(cache), keys)}
    if shard.is_file() and done.is_file():
        saved = json.loads(done.read_text(encoding="utf-8"))
        if saved.get("fingerprint") == fingerprint and saved.get("sha256") == sha256_file(shard):
            return saved["rows"], _shard_record(shard, saved["sha256"])
    samples, rows = [], []
    crops = source.crops(targets, spec, parameters, Path(cache))
    for target, (status, rgb, meta) in zip(targets.itertuples(index=False), crops):
        row = {"node_id": int(target.target_id), "kind": target.kind, "status": status, "shard": "", "offset": -1,
               "size": 0, "lon": float(target.lon), "lat": float(target.lat), "year": int(meta.get("year", -1)),
               "m_per_px": float(meta.get("m_per_px", float("nan"))), "dx": float(meta.get("dx", 0.0)),
               "dy": float(meta.get("dy", 0.0))}
        if status == "ok":
            key = target_key(target.kind, target.target_id)
            samples.append((key, spec.format, encode(rgb, spec.format),
                            {"lon": row["lon"], "lat": row["lat"], "source": source.key, **meta}))
        rows.append(row)
    entries = {entry.key: entry for entry in write_shard(shard, samples)}
    for row in rows:
        entry = entries.get(target_key(row["kind"], row["node_id"]))
        if entry is not None:
            row.update(shard=shard.name, offset=entry.offset, size=entry.size)
    digest = sha256_file(shard)
    with atomic_path(done) as temporary:
        temporary.write_text(json.dumps({"fingerprint": fingerprint, "sha256": digest, "rows": rows}),
                             encoding="utf-8")
    return rows, _shard_record(shard, digest)


def _shard_record(shard: Path, digest: str) -> dict[str, Any]:
    """The manifest's record of a shard (path relative to the imagery directory)."""
    return {"path": f"crops/{shard.name}", "bytes": shard.stat().st_size, "sha256": digest}


def _cache_state(cache: TileCache, keys: list) -> str:
    """A digest of which of ``keys`` are in the cache and why the others are not."""
    digest = hashlib.sha256()
    for key in keys:
        if cache.path(key).is_file():
            state = "ok"
        else:
            marker = cache.marker(key)
            state = marker.get("reason") if marker else "absent"
        digest.update(f"{key}:{state};".encode())
    return digest.hexdigest()


def _counts(index: pd.DataFrame) -> dict[str, Any]:
    counts = Counter(index["status"].tolist())
    return {"targets": int(len(index)), **{status: int(counts.get(status, 0)) for status in STATUSES}}


def _years(index: pd.DataFrame) -> dict[str, int]:
    """Crops per imagery year (``unknown`` where the source does not say, e.g. a tile basemap)."""
    years = index.loc[index["status"] == "ok", "year"]
    counts = Counter("unknown" if year < 0 else str(year) for year in years.tolist())
    return dict(sorted(counts.items()))


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
    path = imagery_dir(root, state, key) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: tiles of {state} were downloaded but no crops were built; run "
                                f"`gnnbench build tiles --state {state} --source {key}`")
    return read_manifest(path, kinds=(IMAGERY_MANIFEST_KIND,), layout=IMAGERY_LAYOUT)
