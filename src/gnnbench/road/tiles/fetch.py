"""Fetch tiles into the cache: each unique tile once, bounded concurrency, a rate limit, retries via gnnbench.io.

A 404 is ``missing`` (no retry); bytes that do not decode are re-requested once, then ``corrupt``; a uniform
picture is ``blank``; a request that still fails after the retries of :func:`gnnbench.io.http.get` (5xx, 429
with Retry-After, timeouts) is ``failed``. None of these stops the run: each is a marker in the cache and a
count in the report.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from ...io.http import DownloadError, RetryPolicy, make_session
from ...io.throttle import RateLimiter
from .cache import TileCache, TileKey


@dataclass
class FetchReport:
    """What one fetch did: keys asked for, taken from the cache, fetched, and each failure by reason."""

    keys: int = 0
    from_cache: int = 0
    fetched: int = 0
    http_requests: int = 0
    bytes: int = 0
    outcomes: Counter = field(default_factory=Counter)  # ok / missing / corrupt / blank / failed per fetched key
    source: Counter = field(default_factory=Counter)  # the source's own counts (e.g. SAS token refreshes)
    failures: list[dict] = field(default_factory=list)  # first 100 failures: key, reason, status, url

    def merge(self, other: FetchReport) -> FetchReport:
        self.keys += other.keys
        self.from_cache += other.from_cache
        self.fetched += other.fetched
        self.http_requests += other.http_requests
        self.bytes += other.bytes
        self.outcomes.update(other.outcomes)
        self.source.update(other.source)
        self.failures.extend(other.failures[: max(0, 100 - len(self.failures))])
        return self

    def as_dict(self) -> dict:
        return {"keys": self.keys, "from_cache": self.from_cache, "fetched": self.fetched,
                "http_requests": self.http_requests, "bytes": self.bytes,
                "outcomes": dict(sorted(self.outcomes.items())), "source": dict(sorted(self.source.items())),
                "failures": self.failures}


class _Sessions:
    """One requests session per thread, each counting the HTTP responses it receives (retries included)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self.responses = 0
        self._all: list[requests.Session] = []

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = make_session()
            session.hooks["response"].append(self._count)
            self._local.session = session
            with self._lock:
                self._all.append(session)
        return session

    def _count(self, response: requests.Response, *args, **kwargs) -> None:
        with self._lock:
            self.responses += 1

    def close(self) -> None:
        for session in self._all:
            session.close()


def fetch_tiles(source: Any, keys: Iterable[TileKey], cache: TileCache, *, concurrency: int = 8,
                rate: float = 10.0, retry_missing: bool = False, retry: RetryPolicy = RetryPolicy(),
                on_done: Callable[[int], None] | None = None) -> FetchReport:
    """Fetch every key the cache lacks (``concurrency`` threads, at most ``rate`` requests/s); never raises for
    a tile that fails: it gets a marker and a count.

    ``source`` fetches and checks one key: ``source.key_url(key)``, ``source.stats()`` (counts of its own, e.g.
    requests it sends through its own sessions), ``source.fetch_key(key, session, retry) ->
    bytes`` (raising :class:`~gnnbench.io.http.DownloadError`, 404 meaning missing) and ``source.check_key(key,
    data) -> status`` (``ok``, ``corrupt`` or ``blank``).
    """
    keys = list(dict.fromkeys(keys))
    report = FetchReport(keys=len(keys))
    todo = [key for key in keys if not cache.has(key, retry_missing=retry_missing)]
    report.from_cache = len(keys) - len(todo)
    limiter = RateLimiter(rate, burst=max(1, concurrency))
    sessions = _Sessions()
    before = source.stats()
    lock = threading.Lock()

    def one(key: TileKey) -> None:
        url = source.key_url(key)
        outcome, status, size = _fetch_one(source, url, key, cache, sessions, limiter, retry)
        with lock:
            report.fetched += 1
            report.bytes += size
            report.outcomes[outcome] += 1
            if outcome != "ok" and len(report.failures) < 100:
                report.failures.append({"key": list(key), "reason": outcome, "status": status, "url": url})
        if on_done is not None:
            on_done(1)

    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="gnnbench-tiles") as pool:
            for future in [pool.submit(one, key) for key in todo]:
                future.result()
    finally:
        sessions.close()
    after = source.stats()
    report.source.update({name: after[name] - before.get(name, 0) for name in after if name != "requests"})
    report.http_requests = sessions.responses + after.get("requests", 0) - before.get("requests", 0)
    return report


def _fetch_one(source: Any, url: str, key: TileKey, cache: TileCache, sessions: _Sessions, limiter: RateLimiter,
               retry: RetryPolicy) -> tuple[str, int | None, int]:
    """Fetch, check and store one tile; returns (outcome, HTTP status of a failure, bytes received)."""
    received = 0
    for attempt in range(2):  # a corrupt body is asked for once more
        limiter.wait()
        try:
            data = source.fetch_key(key, sessions.get(), retry)
        except DownloadError as error:
            reason = "missing" if error.status == 404 else "failed"
            cache.write_marker(key, reason, status=error.status, url=url)
            return reason, error.status, received
        received += len(data)
        outcome = source.check_key(key, data)
        if outcome == "corrupt" and attempt == 0:
            continue
        if outcome == "ok":
            cache.write(key, data)
        else:
            cache.write_marker(key, outcome, status=200, url=url)
        return outcome, None if outcome == "ok" else 200, received
    raise AssertionError("unreachable")
