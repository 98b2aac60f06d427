"""Crash-record adapters, one per kind of portal: Socrata, ArcGIS REST FeatureServer, manual files.

:func:`fetch_crashes` downloads a state's records as the portal serves them into ``raw_dir``, in
one of the portal's export formats: ``"json"`` (SODA JSON or ArcGIS ``f=json`` pages, one file per
page), ``"geojson"`` (the same pages as GeoJSON) or ``"csv"`` (the portal's CSV download, one file
per layer, resumable and checksummed). Files are written atomically, then ``complete.json`` lists
every file with its sha256 once the download finished. :func:`read_crash_files` reads such a
directory, or files the user downloaded by hand (``--crashes PATH``: CSV, JSON pages, GeoJSON, an
ArcGIS query response), as ``(source_file, DataFrame)`` pairs with the portal's own column names,
ready for ``gnnbench.road.crashes.normalise_crashes``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ...arguments import check_choice
from ...io import OfflineError, atomic_path, download, file_lock, network_refused, sha256_file
from ..crashes import GEOMETRY_X, GEOMETRY_Y
from ..geo import WGS84, transform
from ..states import StateEntry
from .paging import arcgis_features, socrata_columns, socrata_rows

log = logging.getLogger("gnnbench.road")
COMPLETE = "complete.json"
FETCH_FORMATS = ("json", "geojson", "csv")


class ManualDownloadRequired(RuntimeError):
    """The state's portal cannot be scripted; the message says what to download and how to pass it."""


def fetch_crashes(state: StateEntry, raw_dir: str | os.PathLike, *, years: Sequence[int] | None = None,
                  base_url: str | None = None, session=None, page_size: int | None = None,
                  format: str | None = None) -> list[dict[str, Any]]:
    """Download ``state``'s crash records into ``raw_dir``; return one source record per file.

    ``format`` is one of :data:`FETCH_FORMATS` (default ``"json"``); ``years`` limits per-year layers
    and CSV downloads. ``base_url`` replaces the portal's scheme and host (tests point it at a loopback
    server). An existing ``complete.json`` means the download is done and nothing is fetched again
    (asking for another format than the finished one is an error).
    """
    if format is not None:
        check_choice("format", format, FETCH_FORMATS)
    raw_dir = Path(raw_dir)
    done = raw_dir / COMPLETE
    if done.exists():
        return _finished(done, state, format)
    source = state.crash_source
    format = format or "json"
    if source.kind == "manual":
        raise ManualDownloadRequired(f"{state.code}: {source.manual_instructions} (portal: {source.portal})")
    if format == "csv" and not source.csv_urls():
        raise ManualDownloadRequired(
            f"{state.code}: no download address of the portal's CSV export is known; download it from "
            f"{source.portal} and pass it with --crashes, or fetch the {' or '.join(FETCH_FORMATS[:2])} pages")
    first = source.base_url or next(iter(source.csv_urls().values() if format == "csv" else source.layers.values()))
    if network_refused(_rebase(first, base_url)):
        raise OfflineError(f"offline mode: the crash records of {state.code} are missing ({done} does not exist); "
                           f"they come from {source.portal}")
    raw_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(raw_dir):  # a second process waits, then finds the finished download
        if done.exists():
            return _finished(done, state, format)
        if format == "csv":
            records = _fetch_csv(state, raw_dir, years=years, base_url=base_url, session=session)
        elif source.kind == "socrata":
            records = _fetch_socrata(state, raw_dir, base_url=base_url, session=session, page_size=page_size,
                                     geojson=format == "geojson")
        elif source.kind == "arcgis":
            records = _fetch_arcgis(state, raw_dir, years=years, base_url=base_url, session=session,
                                    page_size=page_size, geojson=format == "geojson")
        else:
            raise ValueError(f"{state.code}: unknown crash source kind {source.kind!r}")
        with atomic_path(done) as temporary:
            temporary.write_text(json.dumps({"state": state.code, "format": format, "files": records}, indent=1,
                                            sort_keys=True))
    return records


def _finished(done: Path, state: StateEntry, format: str | None) -> list[dict[str, Any]]:
    listing = json.loads(done.read_text())
    have = listing.get("format", "json")
    if format is not None and format != have:
        raise ValueError(f"{done.parent} holds a finished {have} download of {state.code}'s crash records; "
                         f"delete that directory to download the {format} export instead")
    return listing["files"]


def _rebase(url: str, base_url: str | None) -> str:
    if not base_url:
        return url
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return base_url.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def _write_page(raw_dir: Path, name: str, payload: Any, url: str) -> dict[str, Any]:
    target = raw_dir / name
    with atomic_path(target) as temporary:
        temporary.write_text(json.dumps(payload, separators=(",", ":"), sort_keys=True))
    return {"url": url, "path": name, "sha256": sha256_file(target), "size": target.stat().st_size,
            "retrieved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "role": "crash records"}


def _feature_collection(features: list[dict]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features}


def _fetch_socrata(state: StateEntry, raw_dir: Path, *, base_url, session, page_size,
                   geojson: bool) -> list[dict[str, Any]]:
    source = state.crash_source
    domain = _rebase(source.base_url, base_url)
    columns = socrata_columns(domain, source.dataset_id, session=session)
    records = [_write_page(raw_dir, "columns.json", columns, f"{domain}/api/views/{source.dataset_id}.json")]
    options = {"page_size": page_size} if page_size else {}
    suffix = "geojson" if geojson else "json"
    url = f"{domain}/resource/{source.dataset_id}.{suffix}"
    pages = socrata_rows(domain, source.dataset_id, session=session, geojson=geojson, **options)
    for number, page in enumerate(pages):
        payload = _feature_collection(page) if geojson else page
        records.append(_write_page(raw_dir, f"{source.dataset_id}-p{number:05d}.{suffix}", payload, url))
        log.info("%s: crash page %d (%d rows)", state.code, number, len(page))
    return records


def _wanted(key: str, years: Sequence[int] | None) -> bool:
    return key == "all" or years is None or int(key) in {int(year) for year in years}


def _fetch_arcgis(state: StateEntry, raw_dir: Path, *, years, base_url, session, page_size,
                  geojson: bool) -> list[dict[str, Any]]:
    records = []
    suffix = "geojson" if geojson else "json"
    for key, layer in sorted(state.crash_source.layers.items()):
        if not _wanted(key, years):
            continue
        url = _rebase(layer, base_url)
        options = {"batch_size": page_size} if page_size else {}
        batches = arcgis_features(url, out_sr=4326, session=session, geojson=geojson, **options)
        for number, features in enumerate(batches):
            payload = _feature_collection(features) if geojson else features
            records.append(_write_page(raw_dir, f"{key}-b{number:05d}.{suffix}", payload, url))
        log.info("%s: crash layer %s downloaded", state.code, key)
    return records


def _fetch_csv(state: StateEntry, raw_dir: Path, *, years, base_url, session) -> list[dict[str, Any]]:
    """The portal's CSV download of each wanted layer (resumable, checksummed, with a provenance sidecar)."""
    records = []
    for key, address in sorted(state.crash_source.csv_urls().items()):
        if not _wanted(key, years):
            continue
        url = _rebase(address, base_url)
        record = download(url, raw_dir / f"{key}.csv", session=session, description=f"{state.code} crashes {key}")
        records.append({"url": url, "path": f"{key}.csv", "sha256": record.sha256, "size": record.size,
                        "retrieved_at": record.retrieved_at, "role": "crash records"})
        log.info("%s: crash CSV %s downloaded (%d bytes)", state.code, key, record.size)
    return records


def crash_files(raw_dir: str | os.PathLike) -> list[Path]:
    """The page files of a finished download (in order), or a clear error if it is incomplete."""
    from ..raw_files import corrupt, message

    raw_dir = Path(raw_dir)
    done = raw_dir / COMPLETE
    if not done.exists():
        raise FileNotFoundError(message(raw_dir, f"no finished crash download ({COMPLETE} is missing; or pass the "
                                                 "files with --crashes)", raw_dir))

    try:
        listing = json.loads(done.read_text())["files"]
        pages = [(raw_dir / record["path"], record["sha256"]) for record in listing]
    except (ValueError, KeyError, TypeError) as error:
        raise corrupt(done, f"not a readable download listing ({type(error).__name__}: {error}); delete it",
                      raw_dir) from None
    files = []
    for path, sha256 in pages:
        if path.name == "columns.json":
            continue
        if not path.exists():
            raise FileNotFoundError(message(path, f"listed in {done} but missing; delete {done}", raw_dir))
        if sha256_file(path) != sha256:
            raise corrupt(path, f"does not match the sha256 recorded in {done}; delete both", raw_dir)
        files.append(path)
    return files


def read_crash_files(paths: Iterable[str | os.PathLike], *, root: str | os.PathLike | None = None
                     ) -> Iterator[tuple[str, pd.DataFrame]]:
    """Yield ``(name, raw records)`` for each crash file, with the portal's column names.

    CSV (``.csv``, ``.csv.gz``, ``.txt``; a BOM is ignored); JSON (``.json``): a list of SODA rows or
    ArcGIS features, an ArcGIS query response (``{"features": [...], "spatialReference": ...}``) or a
    GeoJSON FeatureCollection; GeoJSON (``.geojson``). Socrata pages are renamed from API field names
    to the export's display names when a ``columns.json`` (the dataset metadata) lies beside them;
    point geometry becomes ``__geometry_x``/``__geometry_y`` in WGS84 (reprojected from the response's
    spatial reference when it is not WGS84). ``name`` is the path relative to ``root``.
    """
    for path in map(Path, paths):
        name = os.path.relpath(path, root) if root is not None else path.name
        suffix = path.suffix.lower()
        if suffix in (".csv", ".txt") or path.name.lower().endswith(".csv.gz"):
            yield name, _read_csv(path)
        elif suffix in (".json", ".geojson"):
            yield name, _read_json_file(path)
        else:
            raise ValueError(f"{path}: unsupported crash file type (expected .csv, .csv.gz, .json or .geojson)")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot parse as CSV: {error}") from None


def _read_json_file(path: Path) -> pd.DataFrame:
    try:
        payload = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); the download may be truncated") from None
    crs = WGS84
    if isinstance(payload, dict) and payload.get("type") == "FeatureCollection":
        crs = _geojson_crs(payload, path)
        frame = _from_geojson(payload.get("features") or [], path)
    elif isinstance(payload, dict) and isinstance(payload.get("features"), list):  # an ArcGIS query response
        crs = _arcgis_crs(payload.get("spatialReference"), path)
        frame = _from_arcgis(payload["features"])
    elif isinstance(payload, list):
        if payload and isinstance(payload[0], dict) and "attributes" in payload[0]:
            frame = _from_arcgis(payload)
        elif payload and isinstance(payload[0], dict) and payload[0].get("type") == "Feature":
            frame = _from_geojson(payload, path)
        else:
            frame = pd.DataFrame.from_records(payload)
    else:
        raise ValueError(f"{path}: expected a JSON list of records or features, a GeoJSON FeatureCollection or "
                         f"an ArcGIS query response, got {type(payload).__name__}")
    if crs != WGS84 and GEOMETRY_X in frame.columns:
        x = pd.to_numeric(frame[GEOMETRY_X], errors="coerce").to_numpy(dtype=float)
        y = pd.to_numeric(frame[GEOMETRY_Y], errors="coerce").to_numpy(dtype=float)
        frame[GEOMETRY_X], frame[GEOMETRY_Y] = transform(x, y, crs, WGS84)
    return _display_names(frame, path)


def _from_arcgis(features: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records([feature.get("attributes") or {} for feature in features])
    geometry = [feature.get("geometry") or {} for feature in features]
    frame[GEOMETRY_X] = [point.get("x") for point in geometry]
    frame[GEOMETRY_Y] = [point.get("y") for point in geometry]
    return frame


def _from_geojson(features: list[dict], path: Path) -> pd.DataFrame:
    frame = pd.DataFrame.from_records([feature.get("properties") or {} for feature in features])
    xs, ys = [], []
    for feature in features:
        geometry = feature.get("geometry") or {}
        coordinates = geometry.get("coordinates") if geometry.get("type") == "Point" else None
        if geometry and geometry.get("type") not in ("Point", None):
            raise ValueError(f"{path}: crash features must be points, found a {geometry.get('type')}")
        xs.append(coordinates[0] if coordinates else None)
        ys.append(coordinates[1] if coordinates else None)
    frame[GEOMETRY_X], frame[GEOMETRY_Y] = xs, ys
    return frame


def _arcgis_crs(reference: Any, path: Path) -> str:
    """The CRS of an ArcGIS response's geometry (``spatialReference``; WGS84 when absent)."""
    if not isinstance(reference, dict):
        return WGS84
    wkid = reference.get("latestWkid") or reference.get("wkid")
    if wkid is None:
        raise ValueError(f"{path}: the response's spatialReference has no wkid ({reference}); request outSR=4326")
    return "EPSG:3857" if int(wkid) in (102100, 102113) else f"EPSG:{int(wkid)}"


def _geojson_crs(payload: dict, path: Path) -> str:
    """WGS84 (RFC 7946), unless an old-style ``crs`` member names another EPSG code."""
    name = ((payload.get("crs") or {}).get("properties") or {}).get("name")
    if not name or name.upper().endswith(("CRS84", "4326")):
        return WGS84
    code = name.rsplit(":", 1)[-1]
    if not code.isdigit():
        raise ValueError(f"{path}: unsupported GeoJSON crs {name!r}")
    return f"EPSG:{code}"


def _display_names(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Socrata pages: API field names -> the export's display names, from ``columns.json`` beside them."""
    columns = path.parent / "columns.json"
    if not columns.exists() or path.name == "columns.json":
        return frame
    names = json.loads(columns.read_text())
    frame = frame.rename(columns={key: value for key, value in names.items() if key in frame.columns})
    # SODA JSON omits null fields, so a page whose rows are all null in a column lacks that key:
    # the metadata still lists it, so it is a column of nulls (a column gone from the metadata stays missing).
    for value in names.values():
        if value not in frame.columns:
            frame[value] = None
    return frame
