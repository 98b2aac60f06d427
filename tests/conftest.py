"""Shared test configuration (must not import torch: the CLRS reference tests run without it)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # helper modules such as clrs_parity


def _worker_threads() -> int | None:
    """Threads per pytest-xdist worker (the cores shared out among the workers), or None outside xdist."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, int(workers)))


# Under `pytest -n auto` every worker gets its share of the cores for its OpenMP, BLAS and numba threads, set
# before torch, numpy or numba are imported (test modules import them after this file). Two workers with two
# threads each on two cores made OpenMP's spinning barriers cost 10-40x the CPU time (measured: the
# algorithmic training tests took 663 s of CPU instead of 11 s); numba's OpenMP pool also set torch's thread
# count back to the core count whenever a test built the demo region. A variable the user set is kept.
WORKER_THREADS = _worker_threads()
if WORKER_THREADS is not None:
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_name, str(WORKER_THREADS))


@pytest.fixture(autouse=True)
def _worker_torch_threads():
    """After each test, torch's intra-op threads are the worker's share again (a test may raise them)."""
    yield
    torch = sys.modules.get("torch")
    if WORKER_THREADS is not None and torch is not None and torch.get_num_threads() != WORKER_THREADS:
        torch.set_num_threads(WORKER_THREADS)
