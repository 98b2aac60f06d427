"""Downloading and extracting one state of the published release from Harvard Dataverse."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ....io import (
    OfflineError,
    RetryPolicy,
    atomic_path,
    file_lock,
    gnnbench_home,
    is_offline,
    safe_extract,
    sha256_file,
)
from ..dataverse import DEFAULT_SERVER, ML4ROADSAFETY_DOI, DataverseError, dataset_url, download_file, list_files
from .release_files import ADJACENCY_FILE, RELEASE_STATES, ReleaseFormatError, check_layout

log = logging.getLogger("gnnbench.road")

EXTRACTED_SUFFIX = ".extracted.json"


def fetch_release(state: str, *, cache_dir: str | os.PathLike | None = None, doi: str = ML4ROADSAFETY_DOI,
                  server: str = DEFAULT_SERVER, session=None, retry: RetryPolicy | None = None,
                  refresh: bool = False, progress: bool | None = None) -> Path:
    """Download and extract ``{STATE}.zip`` of the release; return the extracted ``{STATE}/`` directory.

    Files live in ``cache_dir`` (default ``$GNNBENCH_HOME/raw/ml4roadsafety``): the zip (with its download
    record), the extracted state directory and ``{STATE}.extracted.json``. A state already extracted is
    returned without touching the network unless ``refresh``; offline, a cached zip is extracted and a
    missing one raises :class:`~gnnbench.io.OfflineError`. Zips nesting ``ML4RoadSafety_graphs_{STATE}/{STATE}``
    are flattened. Concurrent callers are serialised by a file lock per state.
    """
    state = check_state(state)
    root = Path(cache_dir) if cache_dir is not None else gnnbench_home() / "raw" / "ml4roadsafety"
    root.mkdir(parents=True, exist_ok=True)
    state_dir = root / state
    marker = root / f"{state}{EXTRACTED_SUFFIX}"
    zip_path = root / f"{state}.zip"
    with file_lock(root / state):
        if state_dir.is_dir() and marker.exists() and not (refresh and not is_offline()):
            check_layout(state_dir)
            return state_dir
        origin: dict[str, Any] = {"state": state, "doi": doi, "server": server}
        if is_offline() or (zip_path.exists() and not refresh):
            if not zip_path.exists():
                raise OfflineError(
                    f"gnnbench is offline and the ML4RoadSafety release of {state} is not cached: neither "
                    f"{state_dir} nor {zip_path} exists; it comes from {dataset_url(doi, server)}",
                    url=dataset_url(doi, server), path=str(zip_path))
            origin.update(_sidecar_fields(zip_path))
        else:
            files = list_files(doi, server=server, session=session, retry=retry)
            wanted = f"{state}.zip"
            matches = [entry for entry in files if entry.filename == wanted]
            if not matches:
                names = ", ".join(sorted(entry.filename for entry in files)) or "no files"
                raise DataverseError(f"dataset {doi} on {server} has no file named {wanted} (it lists: {names})")
            if len(matches) > 1:
                raise DataverseError(f"dataset {doi} on {server} lists {len(matches)} files named {wanted} "
                                     f"(ids {[entry.id for entry in matches]}); cannot choose one")
            # a cached zip is kept when it still matches the published checksum, else downloaded again
            record = download_file(matches[0], root, server=server, session=session, retry=retry,
                                   progress=progress)
            origin.update(record.to_dict(), file_id=matches[0].id,
                          published_checksum=[matches[0].checksum_type, matches[0].checksum_value])
        _extract_state(zip_path, root, state)
        origin["path"] = str(zip_path)
        origin["zip_sha256"] = origin.get("sha256") or sha256_file(zip_path)
        with atomic_path(marker) as temporary:
            temporary.write_text(json.dumps(origin, indent=2, sort_keys=True, default=str) + "\n")
        return state_dir


def check_state(state: str) -> str:
    """``state`` as an upper-case two-letter code (a warning when it is not one of the release's eight)."""
    state = str(state).strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", state):
        raise ValueError(f"a state is a two-letter code such as 'MA', got {state!r}")
    if state not in RELEASE_STATES:
        log.warning("state %s is not one of the eight ML4RoadSafety states %s", state, ", ".join(RELEASE_STATES))
    return state


def _sidecar_fields(zip_path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(Path(f"{zip_path}.download.json").read_text()))
    except (OSError, ValueError):
        return {"path": str(zip_path)}


def _extract_state(zip_path: Path, root: Path, state: str) -> Path:
    """Extract ``zip_path`` and move its state directory (wherever it is nested) to ``root/{state}``."""
    scratch = root / f".extract-{state}"
    if scratch.exists():
        shutil.rmtree(scratch)
    safe_extract(zip_path, scratch)
    try:
        found = sorted(path.parent for path in scratch.rglob(ADJACENCY_FILE) if "__MACOSX" not in path.parts)
        if not found:
            raise ReleaseFormatError(f"{zip_path} holds no {ADJACENCY_FILE}; is it an ML4RoadSafety state zip?")
        if len(found) > 1:
            named = [path for path in found if path.name == state]
            if len(named) != 1:
                listed = ", ".join(str(path.relative_to(scratch)) for path in found)
                raise ReleaseFormatError(f"{zip_path} holds several state directories ({listed}); expected one")
            found = named
        source = found[0]
        if source.relative_to(scratch).parts not in {(state,), (f"ML4RoadSafety_graphs_{state}", state)}:
            log.warning("%s: state directory found at unexpected place %s", zip_path, source.relative_to(scratch))
        check_layout(source)
        target = root / state
        if target.exists():
            trash = root / f".old-{state}"
            if trash.exists():
                shutil.rmtree(trash)
            os.replace(target, trash)
            shutil.rmtree(trash)
        os.replace(source, target)
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
