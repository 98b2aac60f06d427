"""A small Harvard Dataverse client (file listing and verified downloads) on top of :mod:`gnnbench.io`.

Endpoints (Dataverse native and data-access APIs; public, unrestricted files need no token):

* ``GET {server}/api/datasets/:persistentId/versions/{version}/files?persistentId={doi}`` lists the
  files of a version (``:latest-published``, ``:latest``, ``:draft``, ``x.y``); newer servers page it with
  ``limit``/``offset`` and report ``totalCount``.
* Fallback for servers without that endpoint: ``GET {server}/api/datasets/:persistentId/?persistentId={doi}``
  (``data.latestVersion.files``), or ``.../versions/{version}?persistentId=`` (``data.files``).
* ``GET {server}/api/access/datafile/{id}`` downloads a file (it may redirect to S3).

Each listed entry looks like ``{"label", "directoryLabel", "restricted", "dataFile": {"id", "filename",
"filesize", "contentType", "md5", "checksum": {"type": "MD5" | "SHA-1" | "SHA-256" | "SHA-512", "value"}}}``.
Downloads are checked against the published checksum after they finish.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ...io import ChecksumError, DownloadError, DownloadRecord, RetryPolicy, download, get_json

log = logging.getLogger("gnnbench.road")

DEFAULT_SERVER = "https://dataverse.harvard.edu"
ML4ROADSAFETY_DOI = "doi:10.7910/DVN/V71K5R"
MMTRACE_DOI = "doi:10.7910/DVN/YDP6KQ"

#: Dataverse checksum types -> :mod:`hashlib` names.
HASH_ALGORITHMS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}


class DataverseError(RuntimeError):
    """A Dataverse answer is not what this client understands (names the URL and what is wrong)."""


class DataverseAccessError(DownloadError):
    """The server refused a file: restricted, or a guestbook / terms must be accepted first."""


class RestrictedFileError(DataverseAccessError):
    """The file is restricted; downloading it needs an API token of an account granted access."""


class GuestbookRequiredError(DataverseAccessError):
    """The dataset asks for a guestbook response (or terms of use) before its files can be downloaded."""


class PublishedChecksumError(ChecksumError):
    """A downloaded file differs from the checksum Dataverse publishes for it (MD5 or SHA-*)."""

    def __init__(self, path: str | os.PathLike, algorithm: str, expected: str, actual: str, *,
                 url: str | None = None) -> None:
        DownloadError.__init__(self, f"checksum mismatch for {path}: Dataverse publishes {algorithm} {expected}, "
                                     f"the downloaded file has {actual}", url=url)
        self.path = str(path)
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual

    def __reduce__(self):
        return _rebuild_published_checksum_error, (self.path, self.algorithm, self.expected, self.actual, self.url)


def _rebuild_published_checksum_error(path, algorithm, expected, actual, url) -> PublishedChecksumError:
    return PublishedChecksumError(path, algorithm, expected, actual, url=url)


@dataclass(frozen=True)
class DataverseFile:
    """One file of a dataset version, as listed by the native API."""

    id: int
    filename: str
    directory: str | None
    size: int | None
    checksum_type: str | None
    checksum_value: str | None
    restricted: bool
    content_type: str | None = None

    @property
    def md5(self) -> str | None:
        """The published MD5, when that is the checksum type."""
        return self.checksum_value if self.checksum_type == "MD5" else None

    @property
    def path(self) -> str:
        """``directory/filename`` inside the dataset (just the filename at its root)."""
        return f"{self.directory.strip('/')}/{self.filename}" if self.directory else self.filename

    @classmethod
    def from_json(cls, entry: Any, *, where: str) -> DataverseFile:
        """Parse one ``files[]`` entry; ``where`` (URL and index) names it in errors."""
        data = entry.get("dataFile") if isinstance(entry, dict) else None
        if not isinstance(data, dict) or "id" not in data or "filename" not in data:
            raise DataverseError(f"{where}: file entry without dataFile.id / dataFile.filename: {str(entry)[:200]}")
        checksum = data.get("checksum") if isinstance(data.get("checksum"), dict) else {}
        checksum_type = checksum.get("type")
        checksum_value = checksum.get("value")
        if not checksum_value and data.get("md5"):
            checksum_type, checksum_value = "MD5", data["md5"]
        size = data.get("filesize")
        return cls(
            id=int(data["id"]),
            filename=str(data["filename"]),
            directory=entry.get("directoryLabel") or data.get("directoryLabel") or None,
            size=int(size) if size is not None else None,
            checksum_type=str(checksum_type).upper() if checksum_type else None,
            checksum_value=str(checksum_value).lower() if checksum_value else None,
            restricted=bool(entry.get("restricted", data.get("restricted", False))),
            content_type=data.get("contentType"),
        )


def dataset_url(doi: str, server: str = DEFAULT_SERVER) -> str:
    """The dataset's landing page (for messages)."""
    return f"{server.rstrip('/')}/dataset.xhtml?persistentId={doi}"


def list_files(doi: str, *, version: str = ":latest-published", server: str = DEFAULT_SERVER, session=None,
               retry: RetryPolicy | None = None, page_size: int = 1000) -> list[DataverseFile]:
    """Files of version ``version`` of dataset ``doi`` (paged when the server reports ``totalCount``).

    Falls back to the dataset (or version) JSON when the files endpoint answers 4xx or an unexpected body.
    Raises :class:`DataverseError` when neither gives a file list, :class:`~gnnbench.io.OfflineError` offline.
    """
    server = server.rstrip("/")
    retry = retry or RetryPolicy()
    url = f"{server}/api/datasets/:persistentId/versions/{quote(version, safe=':.')}/files"
    try:
        return _paged_files(url, doi, session=session, retry=retry, page_size=page_size)
    except (DownloadError, DataverseError) as error:
        status = getattr(error, "status", None)
        if isinstance(error, DownloadError) and not (status is not None and 400 <= status < 500):
            raise
        log.info("%s failed (%s); falling back to the dataset JSON", url, error)
        first_error = error
    if version in (":latest", ":latest-published"):
        fallback = f"{server}/api/datasets/:persistentId/"
        path = ("data", "latestVersion", "files")
    else:
        fallback = f"{server}/api/datasets/:persistentId/versions/{quote(version, safe=':.')}"
        path = ("data", "files")
    try:
        document = get_json(fallback, params={"persistentId": doi}, session=session, retry=retry)
    except DownloadError as error:
        raise DataverseError(f"cannot list the files of {doi}: {url} failed ({first_error}) and so did "
                             f"{fallback} ({error})") from error
    _check_status(document, fallback)
    node = document
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, list):
        raise DataverseError(f"{fallback}?persistentId={doi}: no {'.'.join(path)} list in the answer")
    if version == ":latest-published":
        state = document["data"].get("latestVersion", {}).get("versionState")
        if state not in (None, "RELEASED"):
            log.warning("%s: the latest version of %s is %s, not a published one", fallback, doi, state)
    return [DataverseFile.from_json(entry, where=f"{fallback} files[{index}]") for index, entry in enumerate(node)]


def _check_status(document: Any, url: str) -> None:
    if not isinstance(document, dict):
        raise DataverseError(f"{url}: expected a JSON object, got {type(document).__name__}")
    if document.get("status") not in (None, "OK"):
        raise DataverseError(f"{url}: status {document.get('status')!r}: {document.get('message', '')}")


def _paged_files(url: str, doi: str, *, session, retry: RetryPolicy, page_size: int) -> list[DataverseFile]:
    files: list[DataverseFile] = []
    seen: set[int] = set()
    offset = 0
    while True:
        params = {"persistentId": doi, "limit": page_size, "offset": offset}
        document = get_json(url, params=params, session=session, retry=retry)
        _check_status(document, url)
        page = document.get("data")
        if not isinstance(page, list):
            raise DataverseError(f"{url}?persistentId={doi}: 'data' is not a list of files")
        for index, entry in enumerate(page):
            item = DataverseFile.from_json(entry, where=f"{url} offset {offset} files[{index}]")
            if item.id in seen:
                raise DataverseError(f"{url}: file id {item.id} listed twice (does the server ignore offset?)")
            seen.add(item.id)
            files.append(item)
        total = document.get("totalCount")
        if total is None or len(files) >= int(total):
            return files
        if not page:
            raise DataverseError(f"{url}: totalCount is {total} but the listing stops after {len(files)} files")
        offset += len(page)


def download_file(file: DataverseFile, dest_dir: str | os.PathLike, *, server: str = DEFAULT_SERVER, session=None,
                  retry: RetryPolicy | None = None, progress: bool | None = None) -> DownloadRecord:
    """Download ``file`` into ``dest_dir/{filename}`` and verify it against the published checksum.

    An existing file is reused when it matches. Raises :class:`RestrictedFileError` for restricted files
    (or HTTP 401/403), :class:`GuestbookRequiredError` when the server wants a guestbook response, and
    :class:`PublishedChecksumError` (a :class:`~gnnbench.io.ChecksumError`) when the bytes differ.
    """
    server = server.rstrip("/")
    retry = retry or RetryPolicy()
    if file.restricted:
        raise RestrictedFileError(f"{file.path} (file id {file.id}) is restricted on {server}: it needs an API "
                                  "token of an account granted access; public data needs none")
    if not file.filename or "/" in file.filename or "\\" in file.filename or file.filename in {".", ".."}:
        raise DataverseError(f"file id {file.id}: unusable file name {file.filename!r}")
    url = f"{server}/api/access/datafile/{file.id}"
    dest = Path(dest_dir) / file.filename
    sha256 = file.checksum_value if file.checksum_type == "SHA-256" else None
    for attempt in (1, 2):
        cached = dest.exists()
        try:
            record = download(url, dest, sha256=sha256, session=session, retry=retry, progress=progress,
                              description=file.filename)
        except ChecksumError:
            raise
        except DownloadError as error:
            raise _access_error(error, url, file, session) from error
        problem = _verify(dest, record, file, url)
        if problem is None:
            return record
        dest.unlink(missing_ok=True)
        Path(f"{dest}.download.json").unlink(missing_ok=True)
        if not (cached and attempt == 1):
            raise problem
        log.warning("cached %s does not match Dataverse's checksum; downloading it again", dest)
    raise AssertionError("unreachable")


def _verify(dest: Path, record: DownloadRecord, file: DataverseFile, url: str) -> Exception | None:
    """The error to raise when ``dest`` is not the published file, else None."""
    if file.size is not None and record.size != file.size:
        if _looks_like_html(dest):
            return GuestbookRequiredError(
                f"{url} sent an HTML page ({record.size} bytes) instead of {file.filename} ({file.size} bytes): "
                "the dataset may require a guestbook response or accepting its terms in a browser", url=url)
        return PublishedChecksumError(dest, "size", str(file.size), str(record.size), url=url)
    if not file.checksum_type or not file.checksum_value:
        log.warning("%s: Dataverse publishes no checksum for %s; only its sha256 %s is recorded",
                    url, file.filename, record.sha256)
        return None
    algorithm = HASH_ALGORITHMS.get(file.checksum_type)
    if algorithm is None:
        log.warning("%s: unknown checksum type %s for %s; not verified", url, file.checksum_type, file.filename)
        return None
    actual = record.sha256 if algorithm == "sha256" else _hash(dest, algorithm)
    if actual != file.checksum_value:
        if _looks_like_html(dest):
            return GuestbookRequiredError(
                f"{url} sent an HTML page instead of {file.filename}: the dataset may require a guestbook "
                "response or accepting its terms in a browser", url=url)
        return PublishedChecksumError(dest, file.checksum_type, file.checksum_value, actual, url=url)
    return None


def _access_error(error: DownloadError, url: str, file: DataverseFile, session) -> DownloadError:
    """Turn a 4xx from the access API into a clearer error (reading the server's message once)."""
    status = error.status
    if status not in (400, 401, 403):
        return error
    message = ""
    try:  # ask for 1 KiB only, in case the server now answers with the file itself
        get_json(url, headers={"Range": "bytes=0-1023"}, session=session, retry=RetryPolicy(attempts=1))
    except DownloadError as detail:
        message = str(detail)
    except Exception:  # the message is only a hint; the original error stands
        pass
    if "guestbook" in message.lower() or "terms" in message.lower():
        return GuestbookRequiredError(f"{url} ({file.filename}) needs a guestbook response or accepted terms before "
                                      f"download: HTTP {status}: {message}", url=url, status=status)
    if status in (401, 403):
        return RestrictedFileError(f"{url} ({file.filename}) refused access (HTTP {status}); the file may be "
                                   f"restricted or embargoed: {message or error}", url=url, status=status)
    return error


def _looks_like_html(path: Path) -> bool:
    with open(path, "rb") as handle:
        start = handle.read(512).lstrip().lower()
    return start.startswith(b"<!doctype html") or start.startswith(b"<html")


def _hash(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
