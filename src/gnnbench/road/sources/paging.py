"""Page through the crash and traffic portals' APIs: Socrata (SODA) datasets and ArcGIS REST feature layers.

Portal-specific paging lives here, with the road sources; the generic HTTP layer (sessions, retries,
JSON requests) is :mod:`gnnbench.io.http`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import requests

from ...arguments import check_int
from ...io.http import DownloadError, RetryPolicy, TransientError, fetch_json, session_scope

# ArcGIS reports failures as HTTP 200 {"error": {"code": .., "message": ..}}; these codes are worth retrying.
_ARCGIS_RETRY_CODES = {429, 500, 502, 503, 504}


def _fields(value: str | Sequence[str] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return ",".join(value)


def socrata_rows(
    domain_url: str,
    dataset_id: str,
    *,
    select: str | Sequence[str] | None = None,
    where: str | None = None,
    order: str = ":id",
    page_size: int = 50_000,
    app_token: str | None = None,
    session: requests.Session | None = None,
    retry: RetryPolicy = RetryPolicy(),
    geojson: bool = False,
) -> Iterator[list[dict]]:
    """Yield pages of rows from ``{domain_url}/resource/{dataset_id}.json`` until a short page.

    Uses ``$limit``/``$offset``/``$order`` (plus ``$select``/``$where`` when given) and the
    ``X-App-Token`` header from ``app_token`` or ``$SOCRATA_APP_TOKEN``. Empty pages are not yielded.
    ``geojson=True`` pages ``/resource/{dataset_id}.geojson`` instead and yields its GeoJSON features.
    """
    page_size = check_int("page_size", page_size, minimum=1)
    url = f"{domain_url.rstrip('/')}/resource/{dataset_id}.{'geojson' if geojson else 'json'}"
    token = app_token or os.environ.get("SOCRATA_APP_TOKEN")
    headers = {"X-App-Token": token} if token else None
    query: dict[str, Any] = {"$limit": page_size, "$order": order}
    if select is not None:
        query["$select"] = _fields(select)
    if where is not None:
        query["$where"] = where
    offset = 0
    with session_scope(session) as active:
        while True:
            page = fetch_json(
                "GET", url, session=active, retry=retry, params={**query, "$offset": offset}, headers=headers
            )
            if geojson:
                features = page.get("features") if isinstance(page, dict) else None
                if not isinstance(features, list):
                    raise DownloadError(f"GET {url} (offset {offset}): expected a GeoJSON FeatureCollection, "
                                        f"got {page!r:.200}", url=url)
                page = features
            if not isinstance(page, list):
                raise DownloadError(f"GET {url} (offset {offset}): expected a JSON list of rows, got {page!r:.200}",
                                    url=url)
            if page:
                yield page
            if len(page) < page_size:
                return
            offset += len(page)


def socrata_columns(domain_url: str, dataset_id: str, *, session: requests.Session | None = None) -> dict[str, str]:
    """``{fieldName: display name}`` from the ``columns`` of ``{domain_url}/api/views/{dataset_id}.json``."""
    url = f"{domain_url.rstrip('/')}/api/views/{dataset_id}.json"
    view = fetch_json("GET", url, session=session, retry=RetryPolicy())
    columns = view.get("columns") if isinstance(view, dict) else None
    if not isinstance(columns, list):
        raise DownloadError(f"GET {url}: no 'columns' list in the dataset metadata", url=url)
    return {column["fieldName"]: column.get("name") or column["fieldName"] for column in columns}


def _arcgis_check(url: str) -> Any:
    """A ``check`` for :func:`~gnnbench.io.http.fetch_json` turning ArcGIS ``{"error": ...}`` bodies into retries or errors."""

    def check(document: Any) -> None:
        if not isinstance(document, dict):
            raise DownloadError(f"{url}: expected a JSON object, got {document!r:.200}", url=url)
        error = document.get("error")
        if error is None:
            return
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message", "") if isinstance(error, dict) else str(error)
        details = error.get("details") if isinstance(error, dict) else None
        if details:
            message = f"{message} ({'; '.join(map(str, details))})"
        if code in _ARCGIS_RETRY_CODES:
            raise TransientError(f"ArcGIS error {code}: {message}", status=code)
        raise DownloadError(f"ArcGIS layer {url} returned error {code}: {message}", url=url, status=code)

    return check


def _oid_of(feature: dict, field: str) -> Any:
    """The object id of an ArcGIS JSON feature (``attributes``) or GeoJSON feature (``properties``, ``id``)."""
    attributes = feature.get("attributes") or feature.get("properties") or {}
    if field in attributes:
        return attributes[field]
    folded = field.lower()
    for key, value in attributes.items():
        if key.lower() == folded:
            return value
    return feature.get("id")


def arcgis_features(
    layer_url: str,
    *,
    where: str = "1=1",
    out_fields: str | Sequence[str] = "*",
    out_sr: int = 4326,
    batch_size: int | None = None,
    session: requests.Session | None = None,
    retry: RetryPolicy = RetryPolicy(),
    geojson: bool = False,
) -> Iterator[list[dict]]:
    """Yield batches of features (``{"attributes": {...}, "geometry": {...}}``) from an ArcGIS feature layer.

    ``geojson=True`` asks for ``f=geojson`` (ArcGIS Server 10.4+) and yields GeoJSON features
    (``properties``, ``geometry``, ``id``) in WGS84 instead.

    Reads ``maxRecordCount`` and ``objectIdField`` from ``{layer_url}?f=json``, the sorted object ids
    matching ``where`` from ``{layer_url}/query?returnIdsOnly=true``, then POSTs (form-encoded) one
    ``objectIds`` query per batch of ``min(batch_size or maxRecordCount, maxRecordCount)`` ids, checking
    that each batch returns exactly the ids asked for. ArcGIS errors (HTTP 200 ``{"error": ...}``) are
    retried for codes 429/500/502/503/504 and otherwise raise :class:`DownloadError` naming the layer URL.
    """
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    layer_url = layer_url.rstrip("/")
    query_url = f"{layer_url}/query"
    check = _arcgis_check(layer_url)
    with session_scope(session) as active:
        meta = fetch_json("GET", layer_url, session=active, retry=retry, params={"f": "json"}, check=check)
        max_records = int(meta.get("maxRecordCount") or 1000)
        batch = max(1, min(batch_size or max_records, max_records))
        oid_field = meta.get("objectIdField") or next(
            (f["name"] for f in meta.get("fields") or [] if f.get("type") == "esriFieldTypeOID"), None
        )
        found = fetch_json(
            "GET",
            query_url,
            session=active,
            retry=retry,
            params={"where": where, "returnIdsOnly": "true", "f": "json"},
            check=check,
        )
        oid_field = oid_field or found.get("objectIdFieldName") or "OBJECTID"
        ids = sorted(found.get("objectIds") or [])
        fields = _fields(out_fields) or "*"
        if fields != "*" and oid_field.lower() not in {name.strip().lower() for name in fields.split(",")}:
            fields = f"{fields},{oid_field}"  # needed to verify the batches
        for start in range(0, len(ids), batch):
            asked = ids[start : start + batch]
            form = {
                "objectIds": ",".join(map(str, asked)),
                "outFields": fields,
                "outSR": out_sr,
                "returnGeometry": "true",
                "f": "geojson" if geojson else "json",
            }
            result = fetch_json("POST", query_url, session=active, retry=retry, data=form, check=check)
            features = result.get("features") or []
            returned = [_oid_of(feature, oid_field) for feature in features]
            missing = set(asked) - set(returned)
            if missing or len(returned) != len(asked):
                raise DownloadError(
                    f"ArcGIS layer {layer_url}: a batch of {len(asked)} object ids returned {len(features)} "
                    f"features; {len(missing)} ids missing (e.g. {sorted(missing)[:5]}), "
                    f"{len(returned) - len(asked) + len(missing)} unexpected",
                    url=layer_url,
                )
            yield features
