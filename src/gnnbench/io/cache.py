"""Where gnnbench keeps what it generates or downloads, and the checks made before writing there."""

from __future__ import annotations

import errno
import os
import tempfile
import warnings
from pathlib import Path

import platformdirs


class CacheRebuiltWarning(UserWarning):
    """A cached file gnnbench wrote was missing, corrupt or stale and is being rebuilt (the message names it)."""


class UnwritableHomeError(OSError):
    """gnnbench cannot create files in a directory it must write to (a read-only or misplaced ``GNNBENCH_HOME``)."""


def gnnbench_home() -> Path:
    """``$GNNBENCH_HOME`` if set, else the user's cache directory (e.g. ``~/.cache/gnnbench``)."""
    configured = os.environ.get("GNNBENCH_HOME")
    return Path(configured).expanduser() if configured else Path(platformdirs.user_cache_dir("gnnbench"))


def require_writable(directory: str | os.PathLike | None = None) -> Path:
    """Check that files can be written in ``directory`` (default: the gnnbench home), or that it can be created.

    Called before work that writes starts, so that a read-only home fails at once with one line
    (:class:`UnwritableHomeError`) naming the directory, the reason and ``GNNBENCH_HOME``, not with a
    traceback half-way through. Creates nothing: the probe is an anonymous temporary file in ``directory``
    or, when it does not exist yet, in its nearest existing ancestor. Returns ``directory``.
    """
    directory = Path(directory).expanduser() if directory is not None else gnnbench_home()
    existing = directory.absolute()
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file, not a directory")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UnwritableHomeError(unwritable_message(directory, error)) from None
    return directory


def unwritable_message(directory: str | os.PathLike, error: OSError | str) -> str:
    """One line: ``directory`` cannot be written (``error``), and where ``GNNBENCH_HOME`` points."""
    reason = error if isinstance(error, str) else (error.strerror or str(error))
    configured = os.environ.get("GNNBENCH_HOME")
    home = f"GNNBENCH_HOME={configured}" if configured else f"GNNBENCH_HOME is not set (default {gnnbench_home()})"
    return (f"cannot write to {directory} ({reason}); {home}: set GNNBENCH_HOME to a writable directory, or pass "
            f"a writable root")


def warn_rebuilt(message: str, *, stacklevel: int = 3) -> None:
    """Warn (:class:`CacheRebuiltWarning`) that a cached file is rebuilt; ``message`` names the file, the fault and
    what is done about it."""
    warnings.warn(message, CacheRebuiltWarning, stacklevel=stacklevel)
