"""HTTP downloads shared by every gnnbench adapter: retries, resumable files, checksums, offline mode.

Retries (connection errors, timeouts, HTTP 408/429/5xx, truncated bodies) use exponential backoff with
jitter and honour ``Retry-After``; they are logged on the ``gnnbench.io`` logger. The library never prints;
the only terminal output is the optional tqdm progress bar of :func:`download`.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import requests
from tqdm import tqdm

from .. import __version__
from .files import atomic_path, sha256_file
from .lock import file_lock

logger = logging.getLogger("gnnbench.io")
logger.addHandler(logging.NullHandler())  # a library never prints; applications configure logging

USER_AGENT = f"gnnbench/{__version__} (+https://pypi.org/project/gnnbench/)"
_CHUNK = 1 << 16
_TRUTHY = {"1", "true", "yes"}
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


class OfflineError(RuntimeError):
    """Offline mode forbids the network; names the missing local file (if any) and the URL it comes from."""

    def __init__(self, message: str, *, url: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.path = path


# --------------------------------------------------------------------------- offline mode

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


def network_refused(url: str) -> bool:
    """True when offline mode forbids fetching ``url`` (loopback URLs pass inside :func:`loopback_allowed`)."""
    if not is_offline():
        return False
    if _loopback_only:
        from urllib.parse import urlsplit

        return (urlsplit(url).hostname or "") not in _LOOPBACK_HOSTS
    return True


def _refuse_offline(url: str) -> None:
    if network_refused(url):
        raise OfflineError(f"gnnbench is offline (GNNBENCH_OFFLINE); refusing to fetch {url}", url=url)


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry one request."""

    attempts: int = 6  # total tries per request
    backoff: float = 1.0  # seconds; wait = backoff * 2**(try-1), jittered, capped by max_wait
    max_wait: float = 120.0  # also caps Retry-After
    timeout: float = 60.0  # per-request socket timeout


class _Transient(Exception):
    """One try failed in a way worth retrying (internal)."""

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


def _with_retries(what: str, url: str, retry: RetryPolicy, attempt: Callable[[], _T]) -> _T:
    """Run ``attempt`` until it returns, retrying :class:`_Transient` failures per ``retry``."""
    tries = max(1, retry.attempts)
    for number in range(1, tries + 1):
        try:
            return attempt()
        except _Transient as exc:
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
def _session_scope(session: requests.Session | None) -> Iterator[requests.Session]:
    if session is not None:
        yield session
        return
    owned = make_session()
    try:
        yield owned
    finally:
        owned.close()


def _send(
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
    """One try: the response, or :class:`_Transient` (retry) / :class:`DownloadError` (give up now)."""
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
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc
    except requests.RequestException as exc:
        raise DownloadError(f"{method} {url} failed: {exc}", url=url) from exc
    status = response.status_code
    if status in accept or status < 400:
        return response
    reason = f"HTTP {status} {response.reason or ''}".rstrip()
    if status in _RETRY_STATUS or status >= 500:
        retry_after = _parse_retry_after(response.headers.get("Retry-After"))
        response.close()
        raise _Transient(reason, retry_after=retry_after, status=status)
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
    _refuse_offline(url)
    if session is None and stream:
        session = make_session()  # must outlive this call; freed with the response
    with _session_scope(session) as active:
        return _with_retries(
            f"GET {url}",
            url,
            retry,
            lambda: _send(active, "GET", url, retry=retry, params=params, headers=headers, stream=stream),
        )


def _decode_json(response: requests.Response, what: str) -> Any:
    """Parse a JSON body: :class:`_Transient` when it looks cut short, :class:`DownloadError` when not JSON."""
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
            raise _Transient(f"truncated JSON body ({len(response.content)} bytes)") from exc
        content_type = response.headers.get("Content-Type", "unknown content type")
        raise DownloadError(
            f"{what}: response is not JSON ({content_type}): {stripped[:120]!r}", url=response.url
        ) from exc


def _fetch_json(
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
    """GET/POST a JSON document with retries; ``check`` may raise :class:`_Transient` to retry a bad body."""
    _refuse_offline(url)
    what = f"{method} {url}"

    def attempt() -> Any:
        response = _send(active, method, url, retry=retry, params=params, data=data, headers=headers)
        document = _decode_json(response, what)
        if check is not None:
            check(document)
        return document

    with _session_scope(session) as active:
        return _with_retries(what, url, retry, attempt)


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
    return _fetch_json("GET", url, session=session, retry=retry, params=params, headers=headers)


# --------------------------------------------------------------------------- file downloads


@dataclass(frozen=True)
class DownloadRecord:
    """Where a downloaded file came from and what it is (also stored as ``<dest>.download.json``)."""

    url: str
    path: str
    sha256: str
    size: int
    retrieved_at: str  # ISO 8601 UTC

    def to_dict(self) -> dict:
        """The record as a plain dict (JSON-serialisable)."""
        return asdict(self)


def _sidecar(dest: Path) -> Path:
    return Path(f"{dest}.download.json")


def _utc_iso(timestamp: float | None = None) -> str:
    moment = datetime.now(timezone.utc) if timestamp is None else datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _write_sidecar(record: DownloadRecord) -> None:
    fields = {key: value for key, value in record.to_dict().items() if key != "path"}
    with atomic_path(_sidecar(Path(record.path))) as temporary:
        temporary.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _read_sidecar(dest: Path) -> DownloadRecord | None:
    try:
        fields = json.loads(_sidecar(dest).read_text(encoding="utf-8"))
        return DownloadRecord(
            url=str(fields["url"]),
            path=str(dest),
            sha256=str(fields["sha256"]).lower(),
            size=int(fields["size"]),
            retrieved_at=str(fields["retrieved_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _existing_record(url: str, dest: Path, sha256: str | None) -> DownloadRecord | None:
    """The record of an already-present ``dest`` when it is acceptable, else None.

    A sidecar whose size matches the file is trusted for the digest; otherwise the digest is recomputed
    (and the sidecar rewritten, best effort). A digest differing from ``sha256`` raises
    :class:`ChecksumError` in offline mode and returns None (download again) otherwise.
    """
    try:
        stat = dest.stat()
    except FileNotFoundError:
        return None
    record = _read_sidecar(dest)
    if record is None or record.size != stat.st_size:
        record = DownloadRecord(url, str(dest), sha256_file(dest), stat.st_size, _utc_iso(stat.st_mtime))
        try:
            _write_sidecar(record)
        except OSError:  # read-only cache: the record is still valid
            pass
    if sha256 is None or record.sha256 == sha256.lower():
        return record
    if network_refused(url):
        raise ChecksumError(dest, sha256.lower(), record.sha256, url=url)
    logger.warning("%s does not match its expected sha256; downloading it again from %s", dest, url)
    return None


def _show_progress(progress: bool | None) -> bool:
    if os.environ.get("GNNBENCH_PROGRESS", "").strip().lower() in {"0", "false", "no", "off"}:
        return False
    if progress is None:
        return sys.stderr.isatty()
    return bool(progress)


def _content_length(response: requests.Response) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)


def _content_range(response: requests.Response) -> tuple[int | None, int | None]:
    """(first byte, complete size) from ``Content-Range``; None where unknown."""
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "").strip())
    if not match:
        return None, None
    first = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return first, total


def _hash_prefix(path: Path) -> Any:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest


def _download_once(
    session: requests.Session,
    url: str,
    part: Path,
    *,
    params: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
    retry: RetryPolicy,
    show_progress: bool,
    description: str,
) -> tuple[str, int]:
    """One try at completing ``part``: (sha256, size) of the whole file, or :class:`_Transient`."""
    offset = part.stat().st_size if part.exists() else 0
    request_headers = {"Accept-Encoding": "identity", **(headers or {})}
    if offset:
        request_headers["Range"] = f"bytes={offset}-"
    response = _send(
        session, "GET", url, retry=retry, params=params, headers=request_headers, stream=True, accept=frozenset({416})
    )
    with response:
        first, total = _content_range(response)
        if response.status_code == 416:
            if offset and total is not None and total == offset:  # the part was already complete
                return sha256_file(part), offset
            part.unlink(missing_ok=True)
            raise _Transient(f"HTTP 416 for bytes={offset}-; restarting from scratch", retry_after=0.0)
        if response.status_code == 206:
            if first != offset:
                part.unlink(missing_ok=True)
                raise _Transient(f"HTTP 206 starts at byte {first}, asked {offset}; restarting", retry_after=0.0)
        else:
            if offset:
                logger.info("%s ignored the Range header (HTTP %d); restarting", url, response.status_code)
            offset, total = 0, _content_length(response)
        if hasattr(response.raw, "enforce_content_length"):
            # urllib3 would raise on a short body and drop its buffered tail; keep every byte and check below
            response.raw.enforce_content_length = False
        encoded = response.headers.get("Content-Encoding", "identity").lower() not in {"", "identity"}
        expected_body = None if encoded else _content_length(response)
        digest = _hash_prefix(part) if offset else hashlib.sha256()
        received = 0
        failure: Exception | None = None
        with (
            open(part, "ab" if offset else "wb") as handle,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=description,
                disable=not show_progress,
                leave=False,
                file=sys.stderr,
            ) as bar,
        ):
            try:
                for chunk in response.iter_content(_CHUNK):
                    handle.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                failure = exc
            handle.flush()
            os.fsync(handle.fileno())
    size = offset + received
    if failure is None and expected_body is not None and received != expected_body:
        failure = EOFError(f"body has {received} of {expected_body} bytes")
    if failure is None and total is not None and size != total:
        failure = EOFError(f"file has {size} of {total} bytes")
    if failure is not None:
        if encoded:  # decoded bytes cannot be resumed with a byte Range
            part.unlink(missing_ok=True)
        raise _Transient(f"download interrupted after {size} bytes ({failure}); resuming") from failure
    return digest.hexdigest(), size


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    session: requests.Session | None = None,
    retry: RetryPolicy = RetryPolicy(),
    progress: bool | None = None,
    description: str | None = None,
) -> DownloadRecord:
    """Download ``url`` to ``dest`` (resumable, verified, atomic) and return its :class:`DownloadRecord`.

    An existing ``dest`` (matching ``sha256`` when given) is returned without touching the network, from
    the sidecar ``<dest>.download.json`` (or a recomputed digest). Otherwise the body streams into
    ``<dest>.part`` under :func:`~gnnbench.io.lock.file_lock` (resuming with ``Range`` when the part
    exists; truncated bodies are retried and resumed), is checked against ``sha256`` (mismatch:
    :class:`ChecksumError`, the part is deleted) and renamed onto ``dest``; then the sidecar is written.
    Offline with ``dest`` missing raises :class:`OfflineError`. ``progress``: tqdm bar on/off; None shows
    it only on a terminal; ``GNNBENCH_PROGRESS=0`` always hides it.
    """
    dest = Path(dest)
    record = _existing_record(url, dest, sha256)
    if record is not None:
        return record
    if network_refused(url):
        raise OfflineError(
            f"gnnbench is offline (GNNBENCH_OFFLINE) and {dest} is missing; it comes from {url}",
            url=url,
            path=str(dest),
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = Path(f"{dest}.part")
    with file_lock(part):
        record = _existing_record(url, dest, sha256)  # another process may have finished meanwhile
        if record is not None:
            return record
        show = _show_progress(progress)
        with _session_scope(session) as active:
            digest, size = _with_retries(
                f"GET {url}",
                url,
                retry,
                lambda: _download_once(
                    active,
                    url,
                    part,
                    params=params,
                    headers=headers,
                    retry=retry,
                    show_progress=show,
                    description=description or dest.name,
                ),
            )
        if sha256 is not None and digest != sha256.lower():
            part.unlink(missing_ok=True)
            raise ChecksumError(dest, sha256.lower(), digest, url=url)
        _sidecar(dest).unlink(missing_ok=True)  # never pair a new file with a stale record
        os.replace(part, dest)  # the part was fsynced while writing
        record = DownloadRecord(url, str(dest), digest, size, _utc_iso())
        _write_sidecar(record)
        return record
