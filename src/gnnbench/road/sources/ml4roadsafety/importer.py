"""Writing an imported release as gnnbench tables plus manifest, and the cross-state duplicate check."""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from ....io import sha256_file
from ...manifest import read_manifest, write_manifest
from ...states import STATES
from ...tables import TABLES, write_table
from .convert import read_release
from .edges import VOLUME_SOURCE_REVERSE
from .fetch import EXTRACTED_SUFFIX, check_state
from .release_files import ACCIDENTS_FILE

log = logging.getLogger("gnnbench.road")

IMPORT_KIND = "ml4roadsafety-import"
#: Groups of states whose published ``accidents_monthly.csv`` are byte-identical (ML4RoadSafety issue #8).
KNOWN_IDENTICAL_ACCIDENT_FILES = (("DE", "MA"),)


def import_release(state: str, state_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                   check_duplicates: bool = True) -> Path:
    """Convert a release state directory into ``out_dir/{table}.parquet`` plus ``manifest.json``; return ``out_dir``.

    The manifest (kind ``ml4roadsafety-import``) lists every release file read with its sha256, and the
    quality report counts dropped accident rows by reason, filled weather cells and highway classes outside
    gnnbench's vocabulary. With ``check_duplicates`` the other imports beside ``out_dir`` are compared
    (:func:`check_imported_duplicates`) and identical accident files logged.
    """
    state = check_state(state)
    state_dir = Path(state_dir)
    out_dir = Path(out_dir)
    release = read_release(state_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # tables being replaced are not a finished import
    tables = release.tables()
    for name, table in tables.items():
        write_table(name, table, out_dir)
    sources = list(release.sources)
    marker = state_dir.parent / f"{state_dir.name}{EXTRACTED_SUFFIX}"
    if marker.exists():
        origin = json.loads(marker.read_text())
        sources.insert(0, {"role": "release-archive", "url": origin.get("url"), "path": origin.get("path"),
                           "sha256": origin.get("zip_sha256"), "size": origin.get("size"),
                           "retrieved_at": origin.get("retrieved_at"), "doi": origin.get("doi"),
                           "file_id": origin.get("file_id")})
    parameters = {
        "release": "ML4RoadSafety",
        "edge_order": "distinct (row, col) pairs of adj_matrix.pt in row-major order (= coalesce().indices())",
        "edge_attributes": "edge_features.pt entry (src, dst), else the segment's entry (dst, src)",
        "accident_matching": "directed edge (node_1_idx, node_2_idx), else its reverse; one row per directed edge",
        "highway": "most specific one-hot class set (not a substring of another set class), ties alphabetical",
        "weather_fill": "missing cell -> mean of its column over the month's rows, else 0.0; flagged in 'filled'",
        "aadt": f"sum of the pair's entries (as coalesce()); source {VOLUME_SOURCE_REVERSE!r} where taken from "
                "the reverse segment",
        "degree": "distinct neighbours, ignoring direction and self-loops",
        "length_unit": "m",
    }
    years = sorted({int(year) for name in ("accidents", "node_weather")
                    for year in tables[name].column("year").to_pylist()})
    parameters["years"] = years
    parameters["months"] = sorted({(int(y), int(m)) for name in ("accidents", "node_weather")
                                   for y, m in zip(tables[name].column("year").to_pylist(),
                                                   tables[name].column("month").to_pylist())})
    parameters["splits"] = STATES[state].splits if state in STATES else None
    write_manifest(out_dir, kind=IMPORT_KIND, state=state, parameters=parameters, sources=sources,
                   tables=TABLES, quality=release.quality)
    log.info("imported ML4RoadSafety %s from %s into %s (%d nodes, %d edges, %d accident rows)", state, state_dir,
             out_dir, release.nodes.num_rows, release.edges.num_rows, release.accidents.num_rows)
    if check_duplicates:
        check_imported_duplicates(out_dir.parent)
    return out_dir


def identical_accident_files(states_dirs: Mapping[str, str | os.PathLike]) -> list[tuple[str, ...]]:
    """Groups (sorted tuples, >= 2 states) of states whose ``accidents_monthly.csv`` are byte-identical.

    Only files of equal size are hashed. States without the file are skipped with a warning.
    """
    by_size: dict[int, list[tuple[str, Path]]] = defaultdict(list)
    for state, directory in states_dirs.items():
        path = Path(directory) / ACCIDENTS_FILE
        if not path.is_file():
            log.warning("%s: %s not found; skipped in the identical-file check", state, path)
            continue
        by_size[path.stat().st_size].append((state, path))
    groups = []
    for candidates in by_size.values():
        if len(candidates) < 2:
            continue
        by_digest: dict[str, list[str]] = defaultdict(list)
        for state, path in candidates:
            by_digest[sha256_file(path)].append(state)
        groups.extend(tuple(sorted(states)) for states in by_digest.values() if len(states) > 1)
    return sorted(groups)


def check_imported_duplicates(out_root: str | os.PathLike) -> list[tuple[str, ...]]:
    """Compare the accident-file checksums recorded by the imports under ``out_root/*/manifest.json``.

    Returns the groups of states whose release ``accidents_monthly.csv`` were identical and logs a warning
    naming them (a known defect of the published release: MA and DE ship the same file).
    """
    by_digest: dict[str, list[str]] = defaultdict(list)
    root = Path(out_root)
    for manifest in sorted(root.glob("*/manifest.json")):
        try:
            record = read_manifest(manifest.parent)
        except (OSError, ValueError):
            continue
        if record.get("kind") != IMPORT_KIND:
            continue
        digest = (record.get("quality", {}).get("checksums") or {}).get(ACCIDENTS_FILE)
        if digest:
            by_digest[digest].append(str(record.get("state") or manifest.parent.name))
    groups = sorted(tuple(sorted(states)) for states in by_digest.values() if len(states) > 1)
    for group in groups:
        known = " (known defect of the published release, ML4RoadSafety issue #8)" \
            if group in KNOWN_IDENTICAL_ACCIDENT_FILES else ""
        log.warning("ML4RoadSafety imports %s in %s have byte-identical %s%s: their accident labels are not "
                    "independent", ", ".join(group), root, ACCIDENTS_FILE, known)
    return groups
