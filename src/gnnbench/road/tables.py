"""The tables every road build (and the ML4RoadSafety importer) writes: names, columns, types.

Each state directory holds one Parquet file per table plus ``manifest.json``. Column order
and types are fixed here; writers go through :func:`write_table`, which checks the schema,
sorts by the table's key and writes deterministically, so the same inputs give
byte-identical files.

=============  =====================================================================
table          columns (key columns first; nullable where a source may lack them)
=============  =====================================================================
nodes          node_id, osm_id, lon, lat, degree, betweenness
edges          edge_id, src, dst, osm_way_id, length_m, highway, oneway, lanes,
               maxspeed_kmh, bridge, tunnel, geometry (WKB LineString, WGS84)
accidents      year, month, edge_id, count, fatal, injury, property_damage
node_weather   year, month, node_id, tavg, tmin, tmax, prcp, wspd, pres, filled
edge_volume    year, edge_id, aadt, source, match_distance_m
=============  =====================================================================

``accidents`` has one row per (month, edge) with at least one crash; severity columns
are null when the state publishes no severity, otherwise they count crashes of that
class (``count`` minus their sum is the number of crashes of unknown severity).
``node_weather.filled`` is a bit mask over (tavg, tmin, tmax, prcp, wspd, pres): bit i
set means that value was missing at the station and was filled (see the weather adapter).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..io import atomic_path
from ..io.manifest import ManifestError, verify_files
from .manifest import MANIFEST_NAME, read_manifest, rebuild_command

WEATHER_COLUMNS = ("tavg", "tmin", "tmax", "prcp", "wspd", "pres")
SEVERITY_COLUMNS = ("fatal", "injury", "property_damage")

SCHEMAS: Mapping[str, pa.Schema] = {
    "nodes": pa.schema([
        ("node_id", pa.int64()), ("osm_id", pa.int64()), ("lon", pa.float64()), ("lat", pa.float64()),
        ("degree", pa.int32()), ("betweenness", pa.float64()),
    ]),
    "edges": pa.schema([
        ("edge_id", pa.int64()), ("src", pa.int64()), ("dst", pa.int64()), ("osm_way_id", pa.int64()),
        ("length_m", pa.float64()), ("highway", pa.string()), ("oneway", pa.bool_()), ("lanes", pa.float32()),
        ("maxspeed_kmh", pa.float32()), ("bridge", pa.bool_()), ("tunnel", pa.bool_()), ("geometry", pa.binary()),
    ]),
    "accidents": pa.schema([
        ("year", pa.int16()), ("month", pa.int8()), ("edge_id", pa.int64()), ("count", pa.int32()),
        *[(name, pa.int32()) for name in SEVERITY_COLUMNS],
    ]),
    "node_weather": pa.schema([
        ("year", pa.int16()), ("month", pa.int8()), ("node_id", pa.int64()),
        *[(name, pa.float32()) for name in WEATHER_COLUMNS], ("filled", pa.int8()),
    ]),
    "edge_volume": pa.schema([
        ("year", pa.int16()), ("edge_id", pa.int64()), ("aadt", pa.float32()), ("source", pa.string()),
        ("match_distance_m", pa.float32()),
    ]),
}

#: Sort key of each table: rows are written in this order (also its uniqueness key).
KEYS: Mapping[str, tuple[str, ...]] = {
    "nodes": ("node_id",),
    "edges": ("edge_id",),
    "accidents": ("year", "month", "edge_id"),
    "node_weather": ("year", "month", "node_id"),
    "edge_volume": ("year", "edge_id"),
}

#: Columns that may hold nulls (every other column must be complete).
NULLABLE: Mapping[str, frozenset[str]] = {
    "nodes": frozenset({"osm_id", "betweenness"}),
    "edges": frozenset({"osm_way_id", "lanes", "maxspeed_kmh", "geometry", "highway"}),
    "accidents": frozenset(SEVERITY_COLUMNS),
    "node_weather": frozenset(WEATHER_COLUMNS),
    "edge_volume": frozenset({"source", "match_distance_m"}),
}

TABLES = tuple(SCHEMAS)


class TableError(ValueError):
    """A table does not match its schema (names the table and column)."""


class CorruptTableError(TableError):
    """A table file is missing, truncated, corrupted or not the one its manifest describes (names the file and
    the command that rebuilds it)."""


def conform(name: str, table: pa.Table) -> pa.Table:
    """Return ``table`` with the columns, order and types of ``SCHEMAS[name]``, sorted by its key.

    Raises :class:`TableError` naming the table and column when a column is missing,
    cannot be cast losslessly, holds nulls where none are allowed, or the key repeats.
    """
    if name not in SCHEMAS:
        raise TableError(f"unknown road table {name!r}; expected one of {', '.join(TABLES)}")
    schema = SCHEMAS[name]
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            raise TableError(f"table {name!r} lacks column {field.name!r}")
        column = table.column(field.name)
        try:
            column = column.cast(field.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise TableError(f"table {name!r} column {field.name!r}: cannot store {column.type} as {field.type}: "
                             f"{error}") from None
        if column.null_count and field.name not in NULLABLE[name]:
            raise TableError(f"table {name!r} column {field.name!r} has {column.null_count} null values")
        columns.append(column)
    result = pa.Table.from_arrays(columns, schema=schema)
    key = KEYS[name]
    result = result.sort_by([(column, "ascending") for column in key])
    if result.num_rows > 1:  # after sorting, a repeated key shows up as two equal neighbouring rows
        same = np.ones(result.num_rows - 1, dtype=bool)
        for column in key:
            values = result.column(column).to_numpy()
            same &= values[1:] == values[:-1]
        if same.any():
            raise TableError(f"table {name!r} has {int(same.sum())} rows with a repeated key {key}")
    return result


def write_table(name: str, table: pa.Table, directory: str | os.PathLike) -> Path:
    """Conform ``table`` and write ``directory/{name}.parquet`` atomically and deterministically."""
    table = conform(name, table)
    target = Path(directory) / f"{name}.parquet"
    row_group = _row_group_size(name, table)
    with atomic_path(target) as temporary:
        pq.write_table(table, temporary, compression="zstd", row_group_size=row_group,
                       write_statistics=True, store_schema=False)
    return target


def read_table(name: str, directory: str | os.PathLike, *, filters=None, columns=None) -> pa.Table:
    """Read ``directory/{name}.parquet`` (optionally filtered), checked against its schema and, when the
    directory has its ``manifest.json``, against the size and SHA-256 the manifest records
    (:class:`CorruptTableError` naming the file and the command that rebuilds it otherwise)."""
    directory = Path(directory)
    path = directory / f"{name}.parquet"
    if (directory / MANIFEST_NAME).exists():
        verify_tables(directory, names=[name])
    elif not path.exists():
        raise FileNotFoundError(f"road table {name!r} not found: {path}")
    try:
        table = pq.read_table(path, filters=filters, columns=columns)
    except (pa.ArrowInvalid, OSError) as error:
        raise CorruptTableError(f"{path}: unreadable Parquet ({error}); rebuild the tables with "
                                f"`{rebuild_command(directory)}`") from None
    if columns is None and table.schema.remove_metadata() != SCHEMAS[name]:
        raise TableError(f"{path} does not have the schema of table {name!r}: {table.schema}")
    return table


def verify_tables(directory: str | os.PathLike, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The manifest of the tables in ``directory`` after checking that each table it lists (or each of ``names``)
    has the size and SHA-256 it records; :class:`CorruptTableError` names the file and the rebuild command."""
    manifest = read_manifest(directory)
    names = list(manifest["files"] if names is None else names)
    try:
        verify_files(manifest, directory, names=names)
    except ManifestError as error:
        raise CorruptTableError(f"{error}; rebuild the tables with `{rebuild_command(directory)}`") from None
    return manifest


def _row_group_size(name: str, table: pa.Table) -> int:
    return max(1, min(table.num_rows, 1 << 20))
