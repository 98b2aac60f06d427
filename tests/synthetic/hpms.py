"""ArcGIS REST responses of an HPMS-like polyline layer (AADT sections), for the tests (test tree only).

The layer is what ``gnnbench.road.sources.traffic_volume.fetch_hpms_sections`` reads. The demo region
(``gnnbench quickstart``) serves its own HPMS layers from ``gnnbench.road.demo.fixtures``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _esri_fields(case: str, oid: str, include_aadt: bool) -> list[dict[str, Any]]:
    kinds = {"route_id": "esriFieldTypeString", "begin_point": "esriFieldTypeDouble",
             "end_point": "esriFieldTypeDouble", "f_system": "esriFieldTypeInteger", "aadt": "esriFieldTypeInteger"}
    names = [name for name in ("route_id", "begin_point", "end_point", "f_system", "aadt")
             if include_aadt or name != "aadt"]
    fields = [{"name": oid, "type": "esriFieldTypeOID", "alias": oid}]
    for name in names:
        label = name.upper() if case == "upper" else name
        fields.append({"name": label, "type": kinds[name], "alias": label})
    return fields


def write_hpms_fixture(directory: str | os.PathLike, sections: Sequence[Mapping[str, Any]] | None = None, *,
                       bbox: Sequence[float] = (-75.2, 39.9, -75.0, 40.1), n_sections: int = 20, seed: int = 0,
                       max_record_count: int = 2000, field_case: str = "lower", include_aadt: bool = True
                       ) -> dict[str, Any]:
    """Write ArcGIS REST responses of an HPMS-like polyline layer into ``directory``.

    ``sections``: dicts with ``paths`` (list of [[lon, lat], ...]) and ``aadt`` (optional ``route_id``,
    ``begin_point``, ``end_point``, ``f_system``); without them ``n_sections`` random straight sections inside
    ``bbox`` are generated from ``seed``. Files: ``layer.json`` (``?f=json``: fields, objectIdField,
    maxRecordCount, geometryType), ``ids.json`` (``returnIdsOnly``), ``features.json`` (every feature) and
    ``batch_NNNN.json`` (the feature batches a client asks for, ``max_record_count`` ids each). ``field_case``
    "upper" writes upper-case field names (and ``OBJECTID``); ``include_aadt=False`` leaves the field out. Serve
    them with :func:`hpms_fixture_response`.
    """
    if field_case not in ("lower", "upper"):
        raise ValueError(f"field_case must be 'lower' or 'upper', not {field_case!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if sections is None:
        rng = np.random.default_rng(seed)
        min_lon, min_lat, max_lon, max_lat = map(float, bbox)
        sections = []
        for number in range(n_sections):
            start = [rng.uniform(min_lon, max_lon), rng.uniform(min_lat, max_lat)]
            angle = rng.uniform(0, 2 * math.pi)
            end = [start[0] + 0.01 * math.cos(angle), start[1] + 0.01 * math.sin(angle)]
            sections.append({"paths": [[[round(v, 6) for v in start], [round(v, 6) for v in end]]],
                             "aadt": int(rng.integers(500, 60000)), "route_id": f"R{number % 5:03d}",
                             "begin_point": 0.0, "end_point": 0.7, "f_system": int(rng.integers(1, 7))})
    oid = "OBJECTID" if field_case == "upper" else "objectid"
    fields = _esri_fields(field_case, oid, include_aadt)
    names = {field["name"].lower(): field["name"] for field in fields}
    features = []
    for number, section in enumerate(sections, start=1):
        attributes = {oid: number}
        for key in ("route_id", "begin_point", "end_point", "f_system", "aadt"):
            if key in names:
                attributes[names[key]] = section.get(key)
        features.append({"attributes": attributes, "geometry": {"paths": section["paths"]}})
    layer = {"currentVersion": 11.1, "id": 0, "name": "hpms_fixture", "type": "Feature Layer",
             "geometryType": "esriGeometryPolyline", "objectIdField": oid, "maxRecordCount": int(max_record_count),
             "fields": fields, "extent": {"spatialReference": {"wkid": 4326}}}
    ids = {"objectIdFieldName": oid, "objectIds": [feature["attributes"][oid] for feature in features]}
    spatial = {"wkid": 4326, "latestWkid": 4326}
    written = []

    def dump(name: str, document: Any) -> None:
        (directory / name).write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        written.append(name)

    dump("layer.json", layer)
    dump("ids.json", ids)
    dump("features.json", {"objectIdFieldName": oid, "geometryType": "esriGeometryPolyline",
                           "spatialReference": spatial, "fields": fields, "features": features})
    for start in range(0, len(features), max(1, int(max_record_count))):
        batch = features[start:start + int(max_record_count)]
        dump(f"batch_{start // int(max_record_count):04d}.json",
             {"objectIdFieldName": oid, "geometryType": "esriGeometryPolyline", "spatialReference": spatial,
              "fields": fields, "features": batch})
    return {"files": written, "object_id_field": oid, "count": len(features)}


def hpms_fixture_response(directory: str | os.PathLike, params: Mapping[str, str], *, query: bool) -> dict[str, Any]:
    """The JSON an ArcGIS server would answer from a :func:`write_hpms_fixture` directory.

    ``query``: the request path ends in ``/query``; ``params``: its query/form parameters. Layer metadata for the
    layer URL, ``ids.json`` for ``returnIdsOnly=true``, else the features whose ids are in ``objectIds``.
    """
    directory = Path(directory)
    if not query:
        return json.loads((directory / "layer.json").read_text(encoding="utf-8"))
    if str(params.get("returnIdsOnly", "")).lower() == "true":
        return json.loads((directory / "ids.json").read_text(encoding="utf-8"))
    document = json.loads((directory / "features.json").read_text(encoding="utf-8"))
    oid = document["objectIdFieldName"]
    wanted = {int(value) for value in str(params.get("objectIds", "")).split(",") if value.strip()}
    document["features"] = [feature for feature in document["features"] if feature["attributes"][oid] in wanted]
    return document
