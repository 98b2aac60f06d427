"""The on-disk tile cache: one file per fetched tile, or a marker saying why there is none.

``ROOT/imagery/cache/{source_key}/{z}/{x}/{y}.tile`` holds a tile's bytes as served (other sources' keys
nest the same way: ``{item}/{level}/{row}/{col}.tile`` for a COG block); ``{y}.missing`` a JSON marker
``{"reason", "status", "url"}`` for a tile that is missing, corrupt, blank or failed. Files are written
atomically, so a killed run leaves no partial tile; a rerun skips every key that has a file or a marker, so
nothing is fetched twice (``retry_missing`` refetches the ``failed`` and ``corrupt`` ones, never a 404).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...io.files import atomic_path

TileKey = tuple  # (z, x, y) for XYZ tiles; a source's own tuple of names and numbers otherwise
RETRYABLE = ("failed", "corrupt")


class TileCache:
    """Tiles of one source under ``directory``."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def path(self, key: TileKey) -> Path:
        *folders, name = (str(part) for part in key)
        return self.directory.joinpath(*folders, f"{name}.tile")

    def marker_path(self, key: TileKey) -> Path:
        return self.path(key).with_suffix(".missing")

    def read(self, key: TileKey) -> bytes | None:
        path = self.path(key)
        return path.read_bytes() if path.is_file() else None

    def marker(self, key: TileKey) -> dict[str, Any] | None:
        path = self.marker_path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return {"reason": "failed", "status": None, "url": None, "note": f"unreadable marker {path}"}

    def has(self, key: TileKey, *, retry_missing: bool = False) -> bool:
        """True when ``key`` needs no request: its tile is here, or a marker that is not retried."""
        if self.path(key).is_file():
            return True
        marker = self.marker(key)
        return marker is not None and not (retry_missing and marker.get("reason") in RETRYABLE)

    def write(self, key: TileKey, data: bytes) -> None:
        with atomic_path(self.path(key)) as temporary:
            temporary.write_bytes(data)
        self.marker_path(key).unlink(missing_ok=True)

    def write_marker(self, key: TileKey, reason: str, *, status: int | None = None, url: str | None = None) -> None:
        with atomic_path(self.marker_path(key)) as temporary:
            temporary.write_text(json.dumps({"reason": reason, "status": status, "url": url}), encoding="utf-8")
