"""Where numba caches gnnbench's compiled kernels.

numba invalidates a cached function when its own source file changes, but not when
a function it calls (in another file) changes, so a stale cache can run old code.
We therefore cache under a directory named by a hash of every kernel source file:
any edit, upgrade or downgrade selects a fresh directory. The hash covers every module of
the package that uses numba (the algorithm kernels, road centrality).

Nothing is ever written into the installed package: numba's own fallback, the package's
``__pycache__`` (used when the cache directory cannot be written), is switched off, and when
``$GNNBENCH_HOME`` cannot be written the kernels cache in a per-user directory of the system's
temporary directory instead.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numba

from .io.cache import UnwritableHomeError, gnnbench_home, require_writable

logger = logging.getLogger(__name__)

_SOURCES = Path(__file__).parent


def _source_digest() -> str:
    digest = hashlib.sha256(numba.__version__.encode())
    for path in sorted(_SOURCES.rglob("*.py")):
        source = path.read_bytes()
        if b"numba" not in source:
            continue
        digest.update(path.relative_to(_SOURCES).as_posix().encode())
        digest.update(source)
    return digest.hexdigest()[:16]


def kernel_cache_dir() -> Path:
    return gnnbench_home() / "numba" / _source_digest()


def _writable_cache_dir() -> Path:
    """``kernel_cache_dir()``, or a per-user temporary directory when the gnnbench home cannot be written."""
    preferred = kernel_cache_dir()
    try:
        return require_writable(preferred)
    except UnwritableHomeError as error:
        fallback = _private_temporary_dir() / preferred.name
        logger.info("%s; compiled kernels cache in %s instead", error, fallback)
        return require_writable(fallback)


def _private_temporary_dir() -> Path:
    """``$TMPDIR/gnnbench-numba-<uid>`` if it is this user's alone (cached kernels are pickles: nobody else may
    write there), else a fresh directory for this process, removed at exit."""
    if hasattr(os, "getuid"):
        shared = Path(tempfile.gettempdir()) / f"gnnbench-numba-{os.getuid()}"
        try:
            shared.mkdir(mode=0o700, exist_ok=True)
            status = shared.lstat()
            if stat.S_ISDIR(status.st_mode) and status.st_uid == os.getuid() and not status.st_mode & 0o077:
                return shared
        except OSError:
            pass
    private = Path(tempfile.mkdtemp(prefix="gnnbench-numba-"))
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    return private


@contextmanager
def kernel_cache() -> Iterator[None]:
    """Make numba functions decorated inside this block cache into ``kernel_cache_dir()`` (only there)."""
    previous = numba.config.CACHE_DIR, getattr(numba.config, "CACHE_LOCATOR_CLASSES", "")
    numba.config.CACHE_DIR = str(_writable_cache_dir())
    numba.config.CACHE_LOCATOR_CLASSES = "UserProvidedCacheLocator"  # never the package's __pycache__
    try:
        yield
    finally:
        numba.config.CACHE_DIR, numba.config.CACHE_LOCATOR_CLASSES = previous
