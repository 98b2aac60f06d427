"""The submitted prediction files: the columns and types each benchmark's files hold, and the checks on one file
that need no data (exactly those columns, no nulls, finite values, keys in range and each key once).

Read with pyarrow only: nothing is unpickled or executed (pyarrow >= 14 refuses the pickled extension types of
older writers).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .schema import MAX_PREDICTION_ROWS

#: The prediction columns of each benchmark: name -> (Parquet/Arrow type, NumPy dtype the run record declares;
#: ``"str"``: any NumPy unicode dtype). Their order is the harness's (algo_eval, models.road.scoring).
COLUMNS: dict[str, dict[str, tuple[str, str]]] = {
    "algo": {"graph": ("int64", "int64"), "field": ("string", "str"), "position": ("int64", "int64"),
             "value": ("double", "float64")},
    "road": {"state": ("int16", "int16"), "year": ("int16", "int16"), "month": ("int8", "int8"),
             "edge": ("int32", "int32"), "prediction": ("float", "float32")},
}
KEYS = {"algo": ("graph", "field", "position"), "road": ("state", "year", "month", "edge")}
VALUE = {"algo": "value", "road": "prediction"}
_MAX_GRAPH = 2 ** 20  # algo keys beyond these bounds are not a CLRS-30 test split (and would overflow a key)
_MAX_POSITION = 2 ** 24


def declared_dtype_ok(declared: str, expected: str) -> bool:
    """Whether a NumPy dtype name from ``submission.json`` is the one the family writes."""
    try:
        dtype = np.dtype(declared)
    except (TypeError, ValueError):
        return False
    return dtype.kind == "U" if expected == "str" else dtype == np.dtype(expected)


def read_predictions(path: Path, benchmark: str, rows: int) -> tuple[dict[str, np.ndarray] | None, list[str]]:
    """The prediction columns of ``path`` and the problems found: exactly the family's columns and types, ``rows``
    rows, no nulls, finite values, keys in range and each key once. Columns are ``None`` when unusable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    expected = COLUMNS[benchmark]
    where = path.parent.name + "/" + path.name
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as error:
        return None, [f"{where}: not a readable Parquet file ({_one_line(error)})"]
    problems = []
    names = list(schema.names)
    if sorted(names) != sorted(expected) or len(set(names)) != len(names):
        problems.append(f"{where}: columns {names}, expected exactly {list(expected)}")
    for name in names:
        if name in expected and str(schema.field(name).type) != expected[name][0]:
            problems.append(f"{where}: column {name!r} is {schema.field(name).type}, expected {expected[name][0]}")
    if problems:
        return None, problems
    if parquet.metadata.num_rows > MAX_PREDICTION_ROWS:  # checked before reading: nothing is decompressed
        return None, [f"{where}: {parquet.metadata.num_rows} rows, more than the limit of {MAX_PREDICTION_ROWS}"]
    if parquet.metadata.num_rows != rows:
        problems.append(f"{where}: {parquet.metadata.num_rows} rows, but submission.json says {rows}")
    try:
        table = parquet.read(columns=list(expected))
    except (pa.ArrowException, OSError, ValueError) as error:
        return None, [f"{where}: unreadable ({_one_line(error)})"]
    columns = {}
    for name in expected:
        column = table.column(name)
        if column.null_count:
            problems.append(f"{where}: column {name!r} has {column.null_count} null values")
            return None, problems
        columns[name] = column.to_numpy()
    value = columns[VALUE[benchmark]]
    bad = ~np.isfinite(value)
    if bad.any():
        problems.append(f"{where}: {int(bad.sum())} {VALUE[benchmark]} values are NaN or infinite "
                        f"(first at row {int(np.argmax(bad))})")
    problems += _key_problems(where, benchmark, columns)
    return columns, problems


def _key_problems(where: str, benchmark: str, columns: Mapping[str, np.ndarray]) -> list[str]:
    """Keys in range and each exactly once."""
    names = KEYS[benchmark]
    if benchmark == "algo":
        fields, code = np.unique(columns["field"].astype(str), return_inverse=True)
        graph, position = columns["graph"], columns["position"]
        for name, values, limit in (("graph", graph, _MAX_GRAPH), ("position", position, _MAX_POSITION)):
            if values.size and (values.min() < 0 or values.max() >= limit):
                return [f"{where}: column {name!r} holds {int(values.min() if values.min() < 0 else values.max())}, "
                        f"outside 0..{limit - 1}"]
        key = (code.astype(np.int64) * _MAX_GRAPH + graph) * _MAX_POSITION + position

        def describe(row: int) -> str:
            return f"({int(graph[row])}, {str(fields[code[row]])!r}, {int(position[row])})"
    else:
        state, year, month, edge = (columns[name].astype(np.int64) for name in names)
        for name, values, low, high in (("state", state, 0, 0), ("month", month, 0, 12), ("year", year, 1, 32767),
                                        ("edge", edge, 0, 2 ** 31 - 1)):
            outside = (values < low) | (values > high)
            if outside.any():
                row = int(np.argmax(outside))
                rule = "0 (a submission holds one region)" if name == "state" else f"{low}..{high}"
                return [f"{where}: row {row}: {name} is {int(values[row])}, expected {rule}"]
        key = (year * 13 + month) * 2 ** 31 + edge

        def describe(row: int) -> str:
            return f"(year {int(year[row])}, month {int(month[row])}, edge {int(edge[row])})"
    order = np.argsort(key, kind="stable")
    repeated = np.nonzero(key[order][1:] == key[order][:-1])[0]
    if repeated.size:
        label = "(" + ", ".join(name for name in names if name != "state") + ")"
        rows = f"{repeated.size} rows repeat" if repeated.size > 1 else "1 row repeats"
        return [f"{where}: {rows} a {label} key, e.g. {describe(int(order[repeated[0] + 1]))} "
                "(every key appears exactly once)"]
    return []


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
