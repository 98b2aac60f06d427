"""One manifest format for everything gnnbench writes: a JSON file beside the files it describes.

Every build, import, processed array store, trace cache and preprocessing record has one::

    {
      "manifest_format": 1,            # this envelope's version
      "kind": "road-build",            # what it describes (see each writer)
      "layout": 2,                     # version of that kind's file layout
      "gnnbench_version": "0.1.0",
      "parameters": {...},             # everything that determines the content (a cache's key)
      "files": {"edges": {"path": "edges.parquet", "bytes": 1234, "sha256": "...", "rows": 10}},
      ...                              # the kind's own sections (quality, sources, fields, ...)
    }

:func:`read_manifest` checks the envelope (and the kind and layout a reader expects) and
:func:`verify_files` the described files, each failure a :class:`ManifestError` naming the path and
the problem, so that callers can rebuild a stale cache or tell the user which command rebuilds it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .files import atomic_path, sha256_file

MANIFEST_FORMAT = 1
ENVELOPE = ("manifest_format", "kind", "layout", "gnnbench_version", "parameters", "files")


class ManifestError(ValueError):
    """A manifest, or a file it describes, is missing, unreadable, of another kind or layout, or corrupt."""


def file_record(path: str | os.PathLike, *, rows: int | None = None, checksum: bool = True) -> dict[str, Any]:
    """``{"path", "bytes", "sha256"[, "rows"]}`` of one file (``path`` is stored as its name)."""
    path = Path(path)
    record: dict[str, Any] = {"path": path.name, "bytes": path.stat().st_size}
    if checksum:
        record["sha256"] = sha256_file(path)
    if rows is not None:
        record["rows"] = int(rows)
    return record


def write_manifest(path: str | os.PathLike, *, kind: str, layout: int, parameters: Mapping[str, Any],
                   files: Mapping[str, Mapping[str, Any]], **sections: Any) -> dict[str, Any]:
    """Write the manifest at ``path`` atomically and return it; ``sections`` are the kind's own keys."""
    from .. import __version__

    clash = set(sections) & set(ENVELOPE)
    if clash:
        raise ValueError(f"manifest sections may not be named {', '.join(sorted(clash))}")
    record = {"manifest_format": MANIFEST_FORMAT, "kind": kind, "layout": int(layout),
              "gnnbench_version": __version__, "parameters": dict(parameters),
              "files": {name: dict(entry) for name, entry in files.items()}, **sections}
    with atomic_path(Path(path)) as temporary:
        temporary.write_text(json.dumps(record, indent=1, sort_keys=True, default=_jsonable) + "\n",
                             encoding="utf-8")
    return record


def _jsonable(value: Any) -> Any:
    """NumPy scalars, sets, tuples and paths as JSON values; anything else is an error."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write {type(value).__name__} to a manifest")


def read_manifest(path: str | os.PathLike, *, kinds: Iterable[str] | None = None,
                  layout: int | None = None) -> dict[str, Any]:
    """The manifest at ``path``, checked: the envelope, one of ``kinds``, and ``layout`` when given."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest missing")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ManifestError(f"{path}: unreadable manifest ({error})") from None
    if not isinstance(record, dict):
        raise ManifestError(f"{path}: not a gnnbench manifest (a JSON {type(record).__name__}, not an object)")
    missing = [key for key in ENVELOPE if key not in record]
    if missing:
        raise ManifestError(f"{path}: not a gnnbench manifest (no {', '.join(missing)})")
    if record["manifest_format"] != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: manifest format {record['manifest_format']!r}, this gnnbench reads "
                            f"{MANIFEST_FORMAT}")
    if not isinstance(record["files"], dict) or not all(isinstance(v, dict) and "path" in v
                                                         for v in record["files"].values()):
        raise ManifestError(f"{path}: 'files' must map names to records with a 'path'")
    kinds = tuple(kinds) if kinds is not None else None
    if kinds is not None and record["kind"] not in kinds:
        raise ManifestError(f"{path}: a {record['kind']!r} manifest, expected {' or '.join(map(repr, kinds))}")
    if layout is not None and record["layout"] != layout:
        raise ManifestError(f"{path}: layout {record['layout']!r} of {record['kind']!r}, this gnnbench "
                            f"reads {layout}")
    return record


def verify_files(manifest: Mapping[str, Any], directory: str | os.PathLike, *, names: Iterable[str] | None = None,
                 checksum: bool = True) -> None:
    """Check that the described files exist with their sizes (and, with ``checksum``, their SHA-256)."""
    directory = Path(directory)
    for name in (names if names is not None else manifest["files"]):
        entry = manifest["files"].get(name)
        if entry is None:
            raise ManifestError(f"{directory}: the manifest lists no file {name!r}")
        path = directory / entry["path"]
        if not path.is_file():
            raise ManifestError(f"{path}: missing")
        status = path.stat()
        if "bytes" in entry and status.st_size != entry["bytes"]:
            raise ManifestError(f"{path}: {status.st_size} bytes, the manifest says {entry['bytes']} "
                                f"(truncated or replaced)")
        if checksum and "sha256" in entry and _sha256(path, status) != entry["sha256"]:
            raise ManifestError(f"{path}: SHA-256 differs from the manifest's (corrupted or replaced)")


_HASHED: dict[tuple, str] = {}  # (path, size, inode, mtime, ctime) -> SHA-256 hashed by this process


def _sha256(path: Path, status: os.stat_result) -> str:
    """SHA-256 of ``path``, hashed once per process while the file is unchanged (a rewrite changes its ctime)."""
    key = (os.fspath(path.absolute()), status.st_size, status.st_ino, status.st_mtime_ns, status.st_ctime_ns)
    if key not in _HASHED:
        try:
            _HASHED[key] = sha256_file(path)
        except OSError as error:
            raise ManifestError(f"{path}: unreadable ({error.strerror or error})") from None
    return _HASHED[key]
