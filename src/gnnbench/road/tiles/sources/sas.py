"""Anonymous SAS tokens of the Microsoft Planetary Computer, refreshed during long runs.

``GET {endpoint}/api/sas/v1/token/{collection}`` answers ``{"msft:expiry": "2021-04-08T18:49:29Z",
"token": "se=...&sp=rl&...&sig=..."}``; a blob URL is signed as ``f"{href}?{token}"``
(https://planetarycomputer.microsoft.com/docs/concepts/sas). A token is refreshed before it runs out (fewer
than ``margin_s`` seconds left, as the Planetary Computer SDK does with 60 s) and after the blob store refused it
(:meth:`SasTokens.invalidate`, called on an HTTP 403 ``AuthenticationFailed``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

import requests

from ....io.http import RetryPolicy, get_json

log = logging.getLogger(__name__)

PC_ENDPOINT = "https://planetarycomputer.microsoft.com"


class SasError(RuntimeError):
    """The token endpoint answered something unusable; the message names the endpoint."""


def _parse_expiry(text: object, url: str) -> float:
    if not isinstance(text, str):
        raise SasError(f"{url}: 'msft:expiry' is {text!r}, expected an ISO 8601 timestamp")
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise SasError(f"{url}: 'msft:expiry' {text!r} is not an ISO 8601 timestamp") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


class SasTokens:
    """One collection's SAS token: :meth:`sign` hrefs with a valid token, fetched and refreshed as needed.

    Thread-safe (one lock; a thread that finds the token stale refreshes it while the others wait).
    ``refreshes`` counts the token requests that returned a token.
    """

    def __init__(self, endpoint: str = PC_ENDPOINT, collection: str = "naip", *, margin_s: float = 60.0,
                 clock: Callable[[], float] = time.time, session: requests.Session | None = None,
                 retry: RetryPolicy = RetryPolicy(), headers: Mapping[str, str] | None = None) -> None:
        self.url = f"{endpoint.rstrip('/')}/api/sas/v1/token/{collection}"
        self.margin_s = float(margin_s)
        self._clock = clock
        self._session = session
        self._retry = retry
        self._headers = dict(headers or {})  # e.g. Ocp-Apim-Subscription-Key for registered users
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expiry = 0.0
        self._lifetime = 0.0
        self.refreshes = 0

    @property
    def expiry(self) -> float | None:
        """When the current token expires (seconds since the epoch), None before the first fetch."""
        return self._expiry if self._token is not None else None

    def _stale(self, now: float) -> bool:
        if self._token is None:
            return True
        # a token issued with less than twice the margin to live is kept for half its life (no refresh loop)
        margin = min(self.margin_s, self._lifetime / 2)
        return self._expiry - now < margin

    def _fetch(self) -> None:
        for _ in range(2):
            document = get_json(self.url, headers=self._headers or None, session=self._session, retry=self._retry)
            if not isinstance(document, dict) or "token" not in document or "msft:expiry" not in document:
                keys = sorted(document) if isinstance(document, dict) else type(document).__name__
                raise SasError(f"{self.url}: the SAS response lacks 'msft:expiry' or 'token' (got {keys})")
            token = document["token"]
            if not isinstance(token, str) or not token:
                raise SasError(f"{self.url}: 'token' is {token!r}, expected a non-empty string")
            expiry = _parse_expiry(document["msft:expiry"], self.url)
            now = self._clock()
            if expiry > now:
                self._token, self._expiry, self._lifetime = token.lstrip("?"), expiry, expiry - now
                self.refreshes += 1
                log.debug("%s: new SAS token, %.0f s to live", self.url, expiry - now)
                return
            log.warning("%s: the SAS token arrived already expired (%s); asking again", self.url,
                        document["msft:expiry"])
        raise SasError(f"{self.url}: the SAS token endpoint issued tokens that had already expired twice in a row "
                       "(is this machine's clock right?)")

    def token(self) -> str:
        """A token with more than the margin left to live (fetched or refreshed if needed)."""
        with self._lock:
            if self._stale(self._clock()):
                self._fetch()
            assert self._token is not None
            return self._token

    def sign(self, href: str, token: str | None = None) -> str:
        """``href`` with the SAS token as its query (``token``: this one instead of the current one)."""
        token = token or self.token()
        return f"{href}{'&' if '?' in href else '?'}{token}"

    def invalidate(self, failed_token: str | None = None) -> None:
        """Forget the token (the blob store refused it), so the next use fetches a new one. With
        ``failed_token``, only if it is still the current token (another thread may have refreshed it)."""
        with self._lock:
            if failed_token is None or failed_token == self._token:
                self._token = None
