"""Files, caches and downloads shared by every gnnbench component."""

from .archive import UnsafeArchiveError, safe_extract
from .cache import gnnbench_home
from .files import atomic_path, sha256_file
from .http import (
    ChecksumError,
    DownloadError,
    DownloadRecord,
    OfflineError,
    RetryPolicy,
    download,
    get,
    get_json,
    is_offline,
    loopback_allowed,
    make_session,
    network_refused,
    offline_mode,
    set_offline,
)
from .lock import file_lock
from .paginate import arcgis_features, socrata_columns, socrata_rows

__all__ = [
    "ChecksumError",
    "DownloadError",
    "DownloadRecord",
    "OfflineError",
    "RetryPolicy",
    "UnsafeArchiveError",
    "arcgis_features",
    "atomic_path",
    "download",
    "file_lock",
    "get",
    "get_json",
    "gnnbench_home",
    "is_offline",
    "loopback_allowed",
    "make_session",
    "network_refused",
    "offline_mode",
    "safe_extract",
    "set_offline",
    "sha256_file",
    "socrata_columns",
    "socrata_rows",
]
