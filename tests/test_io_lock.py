"""gnnbench.io.lock.file_lock: an exclusive lock shared between processes."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from gnnbench.io import file_lock

CONTEXT = multiprocessing.get_context("spawn")  # no fork of a threaded test process


def hold(path: str, locked, release) -> None:
    with file_lock(path):
        locked.set()
        release.wait(10)


def wait_for(path: str, started, acquired) -> None:
    started.set()
    with file_lock(path):  # blocks in flock on the file the holder deletes on release
        acquired.put(time.monotonic())


def test_lock_writes_pid_and_cleans_up(tmp_path):
    target = tmp_path / "data" / "file.bin"
    with file_lock(target) as lock_path:
        assert lock_path == tmp_path / "data" / "file.bin.lock"
        assert lock_path.read_text().strip() == str(os.getpid())
        with pytest.raises(TimeoutError) as caught:  # not re-entrant: a second lock waits
            with file_lock(target, timeout=0.05, poll=0.01):
                pass
        assert str(lock_path) in str(caught.value) and str(os.getpid()) in str(caught.value)
    assert not lock_path.exists()
    with file_lock(target, timeout=0):  # free again
        pass


def test_second_process_waits_for_the_first(tmp_path):
    target = str(tmp_path / "shared")
    locked, release, started = CONTEXT.Event(), CONTEXT.Event(), CONTEXT.Event()
    acquired = CONTEXT.Queue()
    holder = CONTEXT.Process(target=hold, args=(target, locked, release))
    holder.start()
    waiter = None
    try:
        assert locked.wait(30), "the holder never got the lock"
        with pytest.raises(TimeoutError) as caught:
            with file_lock(target, timeout=0.05, poll=0.01):
                pass
        assert f"{target}.lock" in str(caught.value) and f"pid {holder.pid}" in str(caught.value)

        waiter = CONTEXT.Process(target=wait_for, args=(target, started, acquired))
        waiter.start()
        assert started.wait(30)
        time.sleep(0.15)
        assert acquired.empty()  # still waiting for the holder
        released_at = time.monotonic()
        release.set()
        assert acquired.get(timeout=30) >= released_at
    finally:
        release.set()
        for process in (holder, waiter):
            if process is not None:
                process.join(30)
                assert process.exitcode == 0
    assert not (tmp_path / "shared.lock").exists()
