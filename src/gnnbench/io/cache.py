"""Where gnnbench keeps what it generates or downloads."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def gnnbench_home() -> Path:
    """``$GNNBENCH_HOME`` if set, else the user's cache directory (e.g. ``~/.cache/gnnbench``)."""
    configured = os.environ.get("GNNBENCH_HOME")
    return Path(configured).expanduser() if configured else Path(platformdirs.user_cache_dir("gnnbench"))
