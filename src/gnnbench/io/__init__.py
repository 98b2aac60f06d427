"""Files, caches and downloads shared by every gnnbench component (nothing portal-specific lives here).

``http`` (sessions, retries, JSON requests), ``downloads`` (resumable verified files), ``offline``
(``GNNBENCH_OFFLINE``), ``lock`` (file locks), ``archive`` (safe extraction), ``files`` (atomic
writes, SHA-256). The HTTP layer (``requests``, ``tqdm``) is imported on first use, so that caches
and atomic files work in environments without it (e.g. the CLRS-30 reference environment).
"""

from ..lazy import lazy_exports
from .cache import CacheRebuiltWarning as CacheRebuiltWarning
from .cache import UnwritableHomeError as UnwritableHomeError
from .cache import gnnbench_home as gnnbench_home
from .cache import require_writable as require_writable
from .files import atomic_path as atomic_path
from .files import sha256_file as sha256_file

_LAZY = {
    "UnsafeArchiveError": "archive", "safe_extract": "archive",
    "ChecksumError": "http", "DownloadError": "http", "RetryPolicy": "http", "TransientError": "http",
    "fetch_json": "http", "get": "http", "get_json": "http", "make_session": "http", "session_scope": "http",
    "DownloadRecord": "downloads", "download": "downloads",
    "OfflineError": "offline", "is_offline": "offline", "loopback_allowed": "offline", "network_refused": "offline",
    "offline_mode": "offline", "set_offline": "offline",
    "file_lock": "lock",
}

__all__ = sorted(["CacheRebuiltWarning", "UnwritableHomeError", "atomic_path", "gnnbench_home", "require_writable",
                  "sha256_file", *_LAZY])

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
