"""HTTP requests shared by every gnnbench adapter: sessions, the retry policy, JSON documents.

Retries (connection errors, timeouts, HTTP 408/429/5xx, truncated bodies) use exponential backoff with
jitter and honour ``Retry-After``; they are logged on the ``gnnbench.io`` logger. The library never prints.
File downloads (resume, checksum, progress) live in :mod:`gnnbench.io.downloads`, offline mode in
:mod:`gnnbench.io.offline`.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

import requests

from .. import __version__
from .offline import refuse_offline

logger = logging.getLogger("gnnbench.io")
logger.addHandler(logging.NullHandler())  # a library never prints; applications configure logging

USER_AGENT = f"gnnbench/{__version__} (+https://pypi.org/project/gnnbench/)"
_RETRY_STATUS = {408, 429}
_T = TypeVar("_T")
_sleep = time.sleep  # tests replace this to record waits without waiting


class DownloadError(RuntimeError):
    """A request failed for good; the message names the URL and the HTTP status / reason."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class ChecksumError(DownloadError):
    """A file's SHA-256 differs from the expected one; names the file, expected and actual digests."""

    def __init__(self, path: str | os.PathLike, expected: str, actual: str, *, url: str | None = None) -> None:
        super().__init__(f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}", url=url)
        self.path = str(path)
        self.expected = expected
        self.actual = actual

    def __reduce__(self):  # keep picklable (multiprocessing) despite the custom signature
        return _rebuild_checksum_error, (self.path, self.expected, self.actual, self.url)


def _rebuild_checksum_error(path: str, expected: str, actual: str, url: str | None) -> ChecksumError:
    return ChecksumError(path, expected, actual, url=url)


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry one request."""

    attempts: int = 6  # total tries per request
    backoff: float = 1.0  # seconds; wait = backoff * 2**(try-1), jittered, capped by max_wait
    max_wait: float = 120.0  # also caps Retry-After
    timeout: float = 60.0  # per-request socket timeout


class TransientError(Exception):
    """One try failed in a way worth retrying; raise it from an ``attempt`` or a ``check`` to retry."""

    def __init__(self, reason: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status = status


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _wait_before_retry(failed_try: int, retry: RetryPolicy, retry_after: float | None) -> float:
    if retry_after is not None:
        return min(retry_after, retry.max_wait)
    base = retry.backoff * 2 ** (failed_try - 1)
    return min(base * random.uniform(0.5, 1.0), retry.max_wait)


def with_retries(what: str, url: str, retry: RetryPolicy, attempt: Callable[[], _T]) -> _T:
    """Run ``attempt`` until it returns, retrying :class:`TransientError` failures per ``retry``."""
    tries = max(1, retry.attempts)
    for number in range(1, tries + 1):
        try:
            return attempt()
        except TransientError as exc:
            if number == tries:
                raise DownloadError(
                    f"{what} failed after {tries} tries: {exc.reason}", url=url, status=exc.status
                ) from exc
            wait = _wait_before_retry(number, retry, exc.retry_after)
            logger.warning("%s: %s; retry %d of %d in %.1f s", what, exc.reason, number, tries - 1, wait)
            _sleep(wait)
    raise AssertionError("unreachable")


def make_session(*, user_agent: str | None = None) -> requests.Session:
    """A :class:`requests.Session` sending the gnnbench User-Agent (or ``user_agent``)."""
    session = requests.Session()
    session.headers["User-Agent"] = user_agent or USER_AGENT
    return session


@contextmanager
def session_scope(session: requests.Session | None) -> Iterator[requests.Session]:
    """``session`` itself, or a new gnnbench session closed when the block ends."""
    if session is not None:
        yield session
        return
    owned = make_session()
    try:
        yield owned
    finally:
        owned.close()


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    retry: RetryPolicy,
    params: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    stream: bool = False,
    accept: frozenset[int] = frozenset(),
) -> requests.Response:
    """One try: the response, or :class:`TransientError` (retry) / :class:`DownloadError` (give up now).

    Statuses in ``accept`` are returned as they are (e.g. 416 for a download that resumes).
    """
    try:
        response = session.request(
            method, url, params=params, data=data, headers=headers, timeout=retry.timeout, stream=stream
        )
    except (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
    ) as exc:
        raise TransientError(f"{type(exc).__name__}: {exc}") from exc
    except requests.RequestException as exc:
        raise DownloadError(f"{method} {url} failed: {exc}", url=url) from exc
    status = response.status_code
    if status in accept or status < 400:
        return response
    reason = f"HTTP {status} {response.reason or ''}".rstrip()
    if status in _RETRY_STATUS or status >= 500:
        retry_after = _parse_retry_after(response.headers.get("Retry-After"))
        response.close()
        raise TransientError(reason, retry_after=retry_after, status=status)
    detail = "" if stream else f": {response.text[:200]!r}" if response.content else ""
    response.close()
    raise DownloadError(f"{method} {response.url} failed: {reason}{detail}", url=url, status=status)


def get(
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    session: requests.Session | None = None,
    retry: RetryPolicy = RetryPolicy(),
    stream: bool = False,
) -> requests.Response:
    """GET with retries on connection errors, timeouts, 5xx and 429 (honouring ``Retry-After``).

    Raises :class:`DownloadError` after the last try, or at once on other 4xx; :class:`OfflineError`
    in offline mode. With ``stream=True`` the body is left unread (the caller closes the response).
    """
    refuse_offline(url)
    if session is None and stream:
        session = make_session()  # must outlive this call; freed with the response
    with session_scope(session) as active:
        return with_retries(
            f"GET {url}",
            url,
            retry,
            lambda: send(active, "GET", url, retry=retry, params=params, headers=headers, stream=stream),
        )


def _decode_json(response: requests.Response, what: str) -> Any:
    """Parse a JSON body: :class:`TransientError` when it looks cut short, :class:`DownloadError` when not JSON."""
    try:
        return json.loads(response.content)
    except ValueError as exc:
        text = response.content.decode(response.encoding or "utf-8", errors="replace")
        stripped = text.strip()
        truncated = not stripped or (
            stripped[0] in "[{"
            and isinstance(exc, json.JSONDecodeError)
            and (exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated string"))
        )
        if truncated:
            raise TransientError(f"truncated JSON body ({len(response.content)} bytes)") from exc
        content_type = response.headers.get("Content-Type", "unknown content type")
        raise DownloadError(
            f"{what}: response is not JSON ({content_type}): {stripped[:120]!r}", url=response.url
        ) from exc


def fetch_json(
    method: str,
    url: str,
    *,
    session: requests.Session | None,
    retry: RetryPolicy,
    params: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    check: Callable[[Any], None] | None = None,
) -> Any:
    """GET/POST a JSON document with retries; ``check`` may raise :class:`TransientError` to retry a bad body."""
    refuse_offline(url)
    what = f"{method} {url}"

    def attempt() -> Any:
        response = send(active, method, url, retry=retry, params=params, data=data, headers=headers)
        document = _decode_json(response, what)
        if check is not None:
            check(document)
        return document

    with session_scope(session) as active:
        return with_retries(what, url, retry, attempt)


def get_json(
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    session: requests.Session | None = None,
    retry: RetryPolicy = RetryPolicy(),
) -> Any:
    """As :func:`get`, returning the parsed JSON body.

    A body that is not JSON raises :class:`DownloadError` naming the URL; a truncated one is retried.
    """
    return fetch_json("GET", url, session=session, retry=retry, params=params, headers=headers)
