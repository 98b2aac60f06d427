"""Resumable, verified, atomic file downloads with a provenance sidecar and an optional progress bar.

:func:`download` streams into ``<dest>.part`` (resuming with HTTP ``Range``), checks the SHA-256, renames the
part onto ``dest`` and writes ``<dest>.download.json`` (URL, digest, size, retrieval time). Retries follow
:mod:`gnnbench.io.http`; the tqdm bar is the only terminal output.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from .files import atomic_path, sha256_file
from .http import ChecksumError, RetryPolicy, TransientError, send, session_scope, with_retries
from .lock import file_lock
from .offline import OfflineError, network_refused

logger = logging.getLogger("gnnbench.io")
_CHUNK = 1 << 16


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
    """One try at completing ``part``: (sha256, size) of the whole file, or :class:`TransientError`."""
    offset = part.stat().st_size if part.exists() else 0
    request_headers = {"Accept-Encoding": "identity", **(headers or {})}
    if offset:
        request_headers["Range"] = f"bytes={offset}-"
    response = send(
        session, "GET", url, retry=retry, params=params, headers=request_headers, stream=True, accept=frozenset({416})
    )
    with response:
        first, total = _content_range(response)
        if response.status_code == 416:
            if offset and total is not None and total == offset:  # the part was already complete
                return sha256_file(part), offset
            part.unlink(missing_ok=True)
            raise TransientError(f"HTTP 416 for bytes={offset}-; restarting from scratch", retry_after=0.0)
        if response.status_code == 206:
            if first != offset:
                part.unlink(missing_ok=True)
                raise TransientError(f"HTTP 206 starts at byte {first}, asked {offset}; restarting", retry_after=0.0)
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
        raise TransientError(f"download interrupted after {size} bytes ({failure}); resuming") from failure
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
        with session_scope(session) as active:
            digest, size = with_retries(
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
