"""Training processes keep the memory they free, so large tensors do not fault in fresh pages at every step.

glibc's ``malloc`` serves blocks above its mmap threshold (which adapts up to 32 MiB) with ``mmap`` and unmaps
them on ``free``; PyTorch's CPU allocator goes through ``malloc``, so every operation whose output is larger than
that (the edge features of a batch of 32 graphs at n = 64 and hidden 128 are 67 MB) gets new pages, which the
kernel zeroes and maps one fault at a time. :func:`retain_freed_memory` raises the mmap threshold and turns off
trimming (``mallopt``), so freed blocks return to the heap and are reused, as a caching allocator would. PyTorch
asks for 64-byte-aligned blocks, which glibc carves with a little slack: a block of a freed block's exact size is
served from fresh heap until freed neighbours merge, so a loop settles after a few steps on reused memory (a few
blocks of its largest size more than its peak), and the process keeps that memory until it exits. Measured on the
2-core AMD EPYC we test on: evaluating a Triplet-GMPNN on CLRS-30's Dijkstra test split (n = 64) took 13.6 s
instead of 47 s (peak RSS 2.0 instead of 1.5 GB); a 67 MB element-wise ``maximum`` 2.5 instead of 38 ms. It changes
no result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap
_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Have glibc keep freed memory for reuse in this process (once; see the module docstring). Returns whether
    it applies (False elsewhere than glibc: other allocators keep their own caches)."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    logger.debug("glibc keeps freed memory for reuse: %s", ok)
    return ok
