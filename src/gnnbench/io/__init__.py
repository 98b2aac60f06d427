"""Files, caches and downloads shared by every gnnbench component.

The HTTP layer (``requests``, ``tqdm``) is imported on first use, so that caches and atomic
files work in environments without it (e.g. the CLRS-30 reference environment).
"""

from importlib import import_module
from typing import Any

from .cache import gnnbench_home as gnnbench_home
from .files import atomic_path as atomic_path
from .files import sha256_file as sha256_file

_LAZY = {
    "UnsafeArchiveError": "archive", "safe_extract": "archive",
    "ChecksumError": "http", "DownloadError": "http", "DownloadRecord": "http", "OfflineError": "http",
    "RetryPolicy": "http", "download": "http", "get": "http", "get_json": "http", "is_offline": "http",
    "loopback_allowed": "http", "make_session": "http", "network_refused": "http", "offline_mode": "http",
    "set_offline": "http",
    "file_lock": "lock",
    "arcgis_features": "paginate", "socrata_columns": "paginate", "socrata_rows": "paginate",
}

__all__ = sorted(["atomic_path", "gnnbench_home", "sha256_file", *_LAZY])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
