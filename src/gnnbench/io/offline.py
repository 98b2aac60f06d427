"""Offline mode: ``GNNBENCH_OFFLINE`` / :func:`set_offline` refuse the network (loopback allowed on request)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_TRUTHY = {"1", "true", "yes"}


class OfflineError(RuntimeError):
    """Offline mode forbids the network; names the missing local file (if any) and the URL it comes from."""

    def __init__(self, message: str, *, url: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.path = path


_forced_offline = False


def is_offline() -> bool:
    """True when ``GNNBENCH_OFFLINE`` is "1"/"true"/"yes" or :func:`set_offline` enabled offline mode."""
    return _forced_offline or os.environ.get("GNNBENCH_OFFLINE", "").strip().lower() in _TRUTHY


def set_offline(enabled: bool) -> None:
    """Force offline mode on (``True``) or leave it to ``GNNBENCH_OFFLINE`` (``False``)."""
    global _forced_offline
    _forced_offline = bool(enabled)


@contextmanager
def offline_mode(enabled: bool = True) -> Iterator[None]:
    """Temporarily :func:`set_offline` (``GNNBENCH_OFFLINE`` still applies); restores the previous setting."""
    previous = _forced_offline
    set_offline(enabled)
    try:
        yield
    finally:
        set_offline(previous)


_loopback_only = False
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@contextmanager
def loopback_allowed() -> Iterator[None]:
    """Within this block, offline mode still lets requests reach this machine's loopback servers.

    The demo region is served from a loopback server imitating the portals; building it needs no network.
    """
    global _loopback_only
    previous = _loopback_only
    _loopback_only = True
    try:
        yield
    finally:
        _loopback_only = previous


def loopback_only() -> bool:
    """True inside :func:`loopback_allowed`, or in a worker process started with ``GNNBENCH_LOOPBACK_ONLY=1``."""
    return _loopback_only or os.environ.get("GNNBENCH_LOOPBACK_ONLY", "").strip().lower() in _TRUTHY


def network_refused(url: str) -> bool:
    """True when offline mode forbids fetching ``url`` (loopback URLs pass inside :func:`loopback_allowed`)."""
    if not is_offline():
        return False
    if loopback_only():
        from urllib.parse import urlsplit

        return (urlsplit(url).hostname or "") not in _LOOPBACK_HOSTS
    return True


def refuse_offline(url: str) -> None:
    """Raise :class:`OfflineError` when offline mode forbids fetching ``url``."""
    if network_refused(url):
        raise OfflineError(f"gnnbench is offline (GNNBENCH_OFFLINE); refusing to fetch {url}", url=url)
