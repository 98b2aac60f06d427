"""An exclusive inter-process lock on a file path (so two processes never build or download the same thing)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None
    import msvcrt


def _try_lock(fd: int, blocking: bool) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    try:  # pragma: no cover - Windows
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:  # pragma: no cover - Windows
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _holder(lock_path: Path) -> str | None:
    try:
        text = lock_path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return text or None


def _is_current(fd: int, lock_path: Path) -> bool:
    """Whether ``fd`` is still the file at ``lock_path`` (a releasing holder deletes it)."""
    try:
        on_disk = os.stat(lock_path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)


@contextmanager
def file_lock(path: str | os.PathLike, *, timeout: float | None = None, poll: float = 0.1) -> Iterator[Path]:
    """Hold an exclusive inter-process lock on ``<path>.lock`` (``fcntl.flock`` on POSIX); yield the lock file.

    Waits forever when ``timeout`` is None, else polls every ``poll`` seconds and raises
    :class:`TimeoutError` naming the lock file and the pid written into it by the holder. The holder's pid
    is written into the lock file, which is removed on release. Not re-entrant: locking the same path
    twice in one process deadlocks (or times out).
    """
    lock_path = Path(f"{os.fspath(path)}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            while not _try_lock(fd, blocking=deadline is None and fcntl is not None):
                if deadline is not None and time.monotonic() >= deadline:
                    holder = _holder(lock_path)
                    held_by = f"; it is held by pid {holder}" if holder else ""
                    raise TimeoutError(f"could not lock {lock_path} within {timeout} s{held_by}")
                remaining = float("inf") if deadline is None else deadline - time.monotonic()
                time.sleep(max(0.0, min(poll, remaining)))
        except BaseException:
            os.close(fd)
            raise
        if _is_current(fd, lock_path):
            break
        os.close(fd)  # we locked a file its holder has just deleted: lock the new one instead
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield lock_path
    finally:
        try:
            lock_path.unlink(missing_ok=True)  # while still holding it, so waiters notice (see _is_current)
        except OSError:  # pragma: no cover - e.g. Windows cannot delete an open file; it is reused
            pass
        _unlock(fd)
        os.close(fd)
