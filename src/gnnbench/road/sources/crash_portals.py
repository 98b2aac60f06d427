"""Crash-record adapters, one per kind of portal: Socrata, ArcGIS REST FeatureServer, manual files.

:func:`fetch_crashes` downloads a state's records as the portal serves them, page by page,
into ``raw_dir`` (one JSON file per page, written atomically, plus ``complete.json`` listing
every page with its sha256 once the download finished). :func:`read_crash_files` reads such a
directory, or files the user downloaded by hand (``--crashes PATH``: CSV, or the JSON pages
above), as ``(source_file, DataFrame)`` pairs with the portal's own column names, ready for
``gnnbench.road.crashes.normalise_crashes``.
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

from ...io import OfflineError, atomic_path, file_lock, network_refused, sha256_file
from ..crashes import GEOMETRY_X, GEOMETRY_Y
from ..states import StateEntry
from .paging import arcgis_features, socrata_columns, socrata_rows

log = logging.getLogger("gnnbench.road")
COMPLETE = "complete.json"


class ManualDownloadRequired(RuntimeError):
    """The state's portal cannot be scripted; the message says what to download and how to pass it."""


def fetch_crashes(state: StateEntry, raw_dir: str | os.PathLike, *, years: Sequence[int] | None = None,
                  base_url: str | None = None, session=None, page_size: int | None = None) -> list[dict[str, Any]]:
    """Download ``state``'s crash records into ``raw_dir``; return one source record per page file.

    ``base_url`` replaces the portal's scheme and host (tests point it at a loopback server).
    An existing ``complete.json`` means the download is done and nothing is fetched again.
    """
    raw_dir = Path(raw_dir)
    done = raw_dir / COMPLETE
    if done.exists():
        return json.loads(done.read_text())["files"]
    source = state.crash_source
    if source.kind == "manual":
        raise ManualDownloadRequired(f"{state.code}: {source.manual_instructions} (portal: {source.portal})")
    if network_refused(_rebase(source.base_url or next(iter(source.layers.values()), ""), base_url)):
        raise OfflineError(f"offline mode: the crash records of {state.code} are missing ({done} does not exist); "
                           f"they come from {source.portal}")
    raw_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(raw_dir):  # a second process waits, then finds the finished download
        if done.exists():
            return json.loads(done.read_text())["files"]
        if source.kind == "socrata":
            records = _fetch_socrata(state, raw_dir, base_url=base_url, session=session, page_size=page_size)
        elif source.kind == "arcgis":
            records = _fetch_arcgis(state, raw_dir, years=years, base_url=base_url, session=session,
                                    page_size=page_size)
        else:
            raise ValueError(f"{state.code}: unknown crash source kind {source.kind!r}")
        with atomic_path(done) as temporary:
            temporary.write_text(json.dumps({"state": state.code, "files": records}, indent=1, sort_keys=True))
    return records


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


def _fetch_socrata(state: StateEntry, raw_dir: Path, *, base_url, session, page_size) -> list[dict[str, Any]]:
    source = state.crash_source
    domain = _rebase(source.base_url, base_url)
    columns = socrata_columns(domain, source.dataset_id, session=session)
    records = [_write_page(raw_dir, "columns.json", columns, f"{domain}/api/views/{source.dataset_id}.json")]
    options = {"page_size": page_size} if page_size else {}
    url = f"{domain}/resource/{source.dataset_id}.json"
    for number, page in enumerate(socrata_rows(domain, source.dataset_id, session=session, **options)):
        records.append(_write_page(raw_dir, f"{source.dataset_id}-p{number:05d}.json", page, url))
        log.info("%s: crash page %d (%d rows)", state.code, number, len(page))
    return records


def _fetch_arcgis(state: StateEntry, raw_dir: Path, *, years, base_url, session, page_size) -> list[dict[str, Any]]:
    records = []
    for key, layer in sorted(state.crash_source.layers.items()):
        if key != "all" and years is not None and int(key) not in set(years):
            continue
        url = _rebase(layer, base_url)
        options = {"batch_size": page_size} if page_size else {}
        for number, features in enumerate(arcgis_features(url, out_sr=4326, session=session, **options)):
            records.append(_write_page(raw_dir, f"{key}-b{number:05d}.json", features, url))
        log.info("%s: crash layer %s downloaded", state.code, key)
    return records


def crash_files(raw_dir: str | os.PathLike) -> list[Path]:
    """The page files of a finished download (in order), or a clear error if it is incomplete."""
    raw_dir = Path(raw_dir)
    done = raw_dir / COMPLETE
    if not done.exists():
        raise FileNotFoundError(f"{raw_dir} holds no finished crash download ({COMPLETE} is missing); run "
                                f"`gnnbench download road` or pass the files with --crashes")
    listing = json.loads(done.read_text())["files"]
    files = []
    for record in listing:
        path = raw_dir / record["path"]
        if path.name == "columns.json":
            continue
        if not path.exists():
            raise FileNotFoundError(f"{path} is listed in {done} but missing; delete {done} and download again")
        if sha256_file(path) != record["sha256"]:
            raise ValueError(f"{path} does not match the sha256 recorded in {done}; delete both and download again")
        files.append(path)
    return files


def read_crash_files(paths: Iterable[str | os.PathLike], *, root: str | os.PathLike | None = None
                     ) -> Iterator[tuple[str, pd.DataFrame]]:
    """Yield ``(name, raw records)`` for each CSV or JSON page file, with the portal's column names.

    Socrata pages are renamed from API field names to the export's display names when a
    ``columns.json`` (the dataset metadata) lies beside them; ArcGIS features get their point
    geometry as ``__geometry_x``/``__geometry_y``. ``name`` is the path relative to ``root``.
    """
    for path in map(Path, paths):
        name = os.path.relpath(path, root) if root is not None else path.name
        if path.suffix.lower() in (".csv", ".txt") or path.name.lower().endswith(".csv.gz"):
            yield name, _read_csv(path)
        elif path.suffix.lower() == ".json":
            yield name, _read_json_page(path)
        else:
            raise ValueError(f"{path}: unsupported crash file type (expected .csv, .csv.gz or .json)")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot parse as CSV: {error}") from None


def _read_json_page(path: Path) -> pd.DataFrame:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); the download may be truncated") from None
    if not isinstance(payload, list):
        raise ValueError(f"{path}: expected a JSON list of records or features, got {type(payload).__name__}")
    if payload and isinstance(payload[0], dict) and "attributes" in payload[0]:
        frame = pd.DataFrame.from_records([feature.get("attributes") or {} for feature in payload])
        geometry = [feature.get("geometry") or {} for feature in payload]
        frame[GEOMETRY_X] = [point.get("x") for point in geometry]
        frame[GEOMETRY_Y] = [point.get("y") for point in geometry]
        return frame
    frame = pd.DataFrame.from_records(payload)
    columns = path.parent / "columns.json"
    if columns.exists():
        names = json.loads(columns.read_text())
        frame = frame.rename(columns={key: value for key, value in names.items() if key in frame.columns})
        # SODA JSON omits null fields, so a page whose rows are all null in a column lacks that key:
        # the metadata still lists it, so it is a column of nulls (a column gone from the metadata stays missing).
        for value in names.values():
            if value not in frame.columns:
                frame[value] = None
    return frame
