"""Fresh tensors from ``.npy`` files at the cost of a memory map: private copy-on-write mappings.

Every call maps the file again with ``MAP_PRIVATE`` (``torch.from_file(shared=False)``): the tensor reads
the file's pages from the page cache, and the first write to a page gives this tensor its own copy of
it, so changing the tensor in place never changes the file, the dataset or any other tensor mapped from
it. Mapping costs microseconds where copying a 700k-edge feature matrix costs tens of milliseconds;
no file descriptor stays open. Arrays this cannot map (another byte order, Fortran order, unusual
dtypes) are read into memory instead, which is just as fresh.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64,
                 np.dtype(np.int64): torch.int64, np.dtype(np.int32): torch.int32, np.dtype(np.int16): torch.int16,
                 np.dtype(np.int8): torch.int8, np.dtype(np.uint8): torch.uint8, np.dtype(np.bool_): torch.bool}


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
    torch_dtype = _TORCH_DTYPES.get(dtype.newbyteorder("=")) if dtype.isnative else None
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if fortran or torch_dtype is None or offset % dtype.itemsize or size == 0:
        return _read(path)
    raw = torch.from_file(str(path), shared=False, size=offset + size, dtype=torch.uint8)
    return raw[offset:].view(torch_dtype).reshape(shape)


def _read(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(np.load(path, allow_pickle=False), order="C", copy=True))
