"""The keyless USGS NAIP ImageServer: one ``exportImage`` request per crop, centred exactly by construction.

The crop square (``footprint_m`` on a side around the target) is given in the state's UTM zone with
``bboxSR = imageSR = EPSG``, ``size = S,S`` and ``adjustAspectRatio=false``, so output pixel (i, j) covers
``[xmin + i*F/S, xmin + (i+1)*F/S]`` and the target is the image's centre point
(https://developers.arcgis.com/rest/services-reference/enterprise/export-image.htm). ArcGIS reports errors as a
JSON body with HTTP 200; those fail naming the URL (retried when the embedded code is 429 or 5xx). The year shown
is the service's default mosaic.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import requests

from ....io.http import DownloadError, RetryPolicy, TransientError, session_scope, send, with_retries
from ....io.offline import refuse_offline
from .naip_pc import utm_transformer

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://imagery.nationalmap.gov/arcgis/rest/services/USGSNAIPImagery/ImageServer"


def export_params(lon: float, lat: float, utm_epsg: int, size_px: int = 256, footprint_m: float = 153.6,
                  *, image_format: str = "png") -> dict[str, str]:
    """The ``exportImage`` query of the crop square centred on (lon, lat), in UTM ``utm_epsg``."""
    if size_px <= 0 or footprint_m <= 0:
        raise ValueError(f"crop size and footprint must be positive, got {size_px} px, {footprint_m} m")
    easting, northing = utm_transformer(int(utm_epsg)).transform(lon, lat)
    half = footprint_m / 2
    bbox = (easting - half, northing - half, easting + half, northing + half)
    return {
        "bbox": ",".join(f"{value:.4f}" for value in bbox),
        "bboxSR": str(int(utm_epsg)),
        "imageSR": str(int(utm_epsg)),
        "size": f"{int(size_px)},{int(size_px)}",
        "format": image_format,
        "bandIds": "0,1,2",
        "adjustAspectRatio": "false",
        "f": "image",
    }


def _arcgis_error(body: bytes, url: str) -> Exception:
    """The error an ArcGIS JSON body describes (retryable when its code is 429 or 5xx)."""
    try:
        document = json.loads(body)
    except ValueError:
        return DownloadError(f"GET {url}: expected an image, got a non-image body: {body[:120]!r}", url=url)
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return DownloadError(f"GET {url}: expected an image, got JSON: {json.dumps(document)[:200]}", url=url)
    code = error.get("code")
    message = f"ArcGIS error {code}: {error.get('message')} {error.get('details') or ''}".rstrip()
    if isinstance(code, int) and (code == 429 or code >= 500):
        return TransientError(message, status=code)
    return DownloadError(f"GET {url}: {message}", url=url, status=code if isinstance(code, int) else None)


def fetch_crop(endpoint: str, lon: float, lat: float, *, utm_epsg: int,
               size_px: int = 256, footprint_m: float = 153.6, session: requests.Session | None = None,
               retry: RetryPolicy = RetryPolicy(), extra_params: Mapping[str, str] | None = None) -> bytes:
    """The PNG bytes of the crop centred on (lon, lat) from ``{endpoint}/exportImage`` (:data:`DEFAULT_ENDPOINT`).

    A body that is not an image (an ArcGIS JSON error with HTTP 200, an HTML page) raises
    :class:`~gnnbench.io.http.DownloadError` naming the URL.
    """
    url = f"{endpoint.rstrip('/')}/exportImage"
    params = {**export_params(lon, lat, utm_epsg, size_px, footprint_m), **(extra_params or {})}
    refuse_offline(url)

    def attempt() -> bytes:
        response = send(active, "GET", url, retry=retry, params=params)
        content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        body = response.content
        if content_type.startswith("image/") and body:
            return body
        raise _arcgis_error(body, response.url)

    with session_scope(session) as active:
        return with_retries(f"GET {url}", url, retry, attempt)
