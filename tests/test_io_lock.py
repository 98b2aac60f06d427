"""gnnbench.io.lock.file_lock: an exclusive lock shared between processes."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

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


def hold_until(path: str, acquired, release) -> None:
    with file_lock(path):
        acquired.put(os.getpid())
        release.wait(30)


def _started_then_hold(path: str, started, acquired, release) -> None:
    started.set()
    hold_until(path, acquired, release)


def add_under_lock(path: str, counter: str, times: int) -> None:
    for _ in range(times):
        with file_lock(path):
            value = int(Path(counter).read_text())
            time.sleep(0.002)  # widen the read-modify-write window
            Path(counter).write_text(str(value + 1))


def test_lock_serialises_read_modify_write(tmp_path):
    # without mutual exclusion, concurrent increments get lost and the total falls short of 3 * 25
    counter = tmp_path / "counter"
    counter.write_text("0")
    workers = [CONTEXT.Process(target=add_under_lock, args=(str(tmp_path / "c"), str(counter), 25))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert int(counter.read_text()) == 75


def test_waiter_on_a_released_file_relocks_the_new_one(tmp_path):
    """A waiter blocked on the lock file that its holder deletes on release must not keep a lock on the
    deleted file: it locks the file now at the path, so a newcomer still finds the lock taken."""
    target = str(tmp_path / "shared")
    first_release, second_release = CONTEXT.Event(), CONTEXT.Event()
    acquired, started = CONTEXT.Queue(), CONTEXT.Event()
    holder = CONTEXT.Process(target=hold_until, args=(target, acquired, first_release))
    holder.start()
    waiter = None
    try:
        assert acquired.get(timeout=30) == holder.pid
        waiter = CONTEXT.Process(target=_started_then_hold, args=(target, started, acquired, second_release))
        waiter.start()
        assert started.wait(30)
        time.sleep(0.3)  # the waiter has opened the holder's lock file and blocks in flock on it
        first_release.set()
        assert acquired.get(timeout=30) == waiter.pid
        with pytest.raises(TimeoutError, match=f"held by pid {waiter.pid}"):
            with file_lock(target, timeout=0.2, poll=0.01):
                pass
    finally:
        first_release.set()
        second_release.set()
        for process in (holder, waiter):
            if process is not None:
                process.join(30)
                assert process.exitcode == 0
    assert not (tmp_path / "shared.lock").exists()


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
