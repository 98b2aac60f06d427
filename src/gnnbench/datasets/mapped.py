"""Fresh tensors from ``.npy`` files at the cost of a memory map: private copy-on-write mappings.

Every call maps the file again with ``MAP_PRIVATE``: the tensor reads the file's pages from the page
cache, and the first write to a page gives this tensor its own copy of it, so changing the tensor in
place never changes the file, the dataset or any other tensor mapped from it. Mapping costs
microseconds where copying a 700k-edge feature matrix costs tens of milliseconds. The mapping is made
with ``mmap(2)`` directly (through ``ctypes``) so that no file descriptor stays open (Python's
``mmap`` module before 3.13 keeps one per mapping) and the tensor is an ordinary one for
``torch.multiprocessing`` (a ``torch.from_file`` tensor cannot be sent to another process); it is
unmapped when the tensor is freed. Where this is not available (not POSIX, another byte order,
Fortran order, unusual dtypes, a failing ``mmap``), the array is read into memory instead, which is
just as fresh.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import weakref
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

_SUPPORTED = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.int32),
              np.dtype(np.int16), np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.bool_)}


def _libc() -> ctypes.CDLL | None:
    if os.name != "posix" or not hasattr(mmap, "MAP_PRIVATE"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int64)
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    except (OSError, AttributeError):  # pragma: no cover - exotic platforms
        return None
    return libc if ctypes.sizeof(ctypes.c_void_p) == 8 else None  # off_t is 64-bit on 64-bit POSIX


_LIBC = _libc()
_MAP_FAILED = ctypes.c_void_p(-1).value


def map_private(path: str | os.PathLike) -> torch.Tensor:
    """The array in the ``.npy`` file ``path`` as a tensor of its own (a private copy-on-write mapping)."""
    path = Path(path)
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            return _read(path)
        offset = handle.tell()
    count = int(np.prod(shape, dtype=np.int64))
    if (_LIBC is None or fortran or not dtype.isnative or dtype.newbyteorder("=") not in _SUPPORTED
            or offset % dtype.itemsize or count == 0):
        return _read(path)
    buffer = _private_mapping(path, offset + count * dtype.itemsize)
    if buffer is None:
        return _read(path)
    array = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset).reshape(shape)
    return torch.from_numpy(array)


def _private_mapping(path: Path, length: int) -> ctypes.Array | None:
    """``length`` bytes of ``path`` mapped privately (unmapped when the returned buffer is freed)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        address = _LIBC.mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE, descriptor, 0)
    finally:
        os.close(descriptor)
    if address is None or address == _MAP_FAILED:
        logger.debug("mmap of %s failed (errno %d); reading it instead", path, ctypes.get_errno())
        return None
    buffer = (ctypes.c_ubyte * length).from_address(address)
    weakref.finalize(buffer, _LIBC.munmap, address, length)
    return buffer


def _read(path: Path) -> torch.Tensor:
    array = np.load(path, allow_pickle=False)
    return torch.from_numpy(np.array(array, dtype=array.dtype.newbyteorder("="), order="C", copy=True))
