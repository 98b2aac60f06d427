"""Where numba caches gnnbench's compiled kernels.

numba invalidates a cached function when its own source file changes, but not when
a function it calls (in another file) changes, so a stale cache can run old code.
We therefore cache under a directory named by a hash of every kernel source file:
any edit, upgrade or downgrade selects a fresh directory. The hash covers every module of
the package that uses numba (the algorithm kernels, road centrality).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numba

from .io.cache import gnnbench_home

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


@contextmanager
def kernel_cache() -> Iterator[None]:
    """Make numba functions decorated inside this block cache into ``kernel_cache_dir()``."""
    previous = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = str(kernel_cache_dir())
    try:
        yield
    finally:
        numba.config.CACHE_DIR = previous
