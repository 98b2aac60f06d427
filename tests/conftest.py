"""Shared test configuration (must not import torch: the CLRS reference tests run without it)."""

import os
import shutil
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
# count back to the core count whenever a test built the demo region. OpenMP threads waiting for work sleep
# instead of spinning, so the few tests that use two threads on purpose do not take the core from the other
# worker (test_road_models' two-thread tests: 11-24 s -> 0.4 s under -n 2). A variable the user set is kept.
WORKER_THREADS = _worker_threads()
if WORKER_THREADS is not None:
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_name, str(WORKER_THREADS))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(autouse=True)
def _worker_torch_threads():
    """After each test, torch's intra-op threads are the worker's share again (a test may raise them)."""
    yield
    torch = sys.modules.get("torch")
    if WORKER_THREADS is not None and torch is not None and torch.get_num_threads() != WORKER_THREADS:
        torch.set_num_threads(WORKER_THREADS)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``heavy`` (the longest: 5-45 s each) run first, in their collected order: under ``pytest -n`` the
    long ones start at once on every worker and the run ends with short tests, so no worker finishes alone."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


@pytest.fixture(scope="session")
def demo_region(tmp_path_factory) -> Path:
    """The road demo region (raw files, tables, processed arrays) built once per test run and shared by the
    pytest-xdist workers (the first builds it under a file lock). Read-only: tests copy it (``copy_demo_region``)."""
    from gnnbench.datasets import RoadAccidentDataset
    from gnnbench.io import file_lock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # every worker's base directory lies in the run's own directory
    root = shared / "demo-region"
    with file_lock(root):
        RoadAccidentDataset(root, "DEMO")  # builds the region through the loopback portal; then only verifies it
    return root


@pytest.fixture(scope="session")
def copy_demo_region(demo_region):
    """``copy_demo_region(target)``: a private copy of the built demo region under ``target`` (returned)."""
    def copy(target: Path) -> Path:
        shutil.copytree(demo_region, target, dirs_exist_ok=True)
        return target
    return copy


@pytest.fixture(scope="session")
def leaderboard_runs(tmp_path_factory, demo_region):
    """Tiny finished harness runs for the leaderboard (``synthetic.leaderboard_runs``): BFS 3 seeds and DEMO road
    10 seeds, both with the Hessian column; made once per test run, shared by the workers. Read-only."""
    from gnnbench.io import file_lock
    from synthetic.leaderboard_runs import build_runs

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    root = shared / "leaderboard-runs"
    with file_lock(root):
        return build_runs(root, demo_region)
