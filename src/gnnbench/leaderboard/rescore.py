"""Rescoring: each seed's test metrics recomputed from its submitted predictions with the package's own evaluator,
against the test labels this installation builds.

* ``algo``: the CLRS-30 test split (``split_traces(algorithm, "test")``, generated here), the prediction columns
  turned back into :class:`gnnbench.algo.Evaluator` input (:func:`~gnnbench.harness.algo_eval.predictions_from_columns`),
  scored as training scored them (``score`` and one score per output field; ``score_n<n>`` too when the length
  split ``test_<n>`` is the test split itself).
* ``road``: the region's test periods (:class:`gnnbench.models.road.data.RoadRegion` under ``data_root``, default
  ``$GNNBENCH_HOME/road``; the DEMO region builds itself offline), scored under both protocols by
  :func:`gnnbench.models.road.scoring.protocol_metrics` with the submission's ``eval.k`` and ``eval.threshold``.

The dataset identity (:func:`dataset_identity` of the family, from the submission's hyperparameters) is recomputed
from the same data. Results are cached under ``$GNNBENCH_HOME/leaderboard/rescore`` by a key of the submission's and
predictions' SHA-256, the gnnbench version and (road) the data's manifest, so repeated validation is fast.

Predictions are read with pyarrow (Parquet) only: nothing is unpickled or executed (pyarrow >= 14 refuses the
pickled extension types of older writers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .schema import Submission, canonical_json

logger = logging.getLogger(__name__)

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
CACHE_FORMAT = 1


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
        return None, [f"{where}: not a readable Parquet file ({error})"]
    problems = []
    names = list(schema.names)
    if sorted(names) != sorted(expected) or len(set(names)) != len(names):
        problems.append(f"{where}: columns {names}, expected exactly {list(expected)}")
    for name in names:
        if name in expected and str(schema.field(name).type) != expected[name][0]:
            problems.append(f"{where}: column {name!r} is {schema.field(name).type}, expected {expected[name][0]}")
    if problems:
        return None, problems
    if parquet.metadata.num_rows != rows:
        problems.append(f"{where}: {parquet.metadata.num_rows} rows, but submission.json says {rows}")
    try:
        table = parquet.read(columns=list(expected))
    except (pa.ArrowException, OSError, ValueError) as error:
        return None, [f"{where}: unreadable ({error})"]
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


# ------------------------------------------------------------------------------------------------------ data


@dataclass
class SeedScores:
    """One seed rescored: the recomputed test metrics, or the problems that stopped it."""

    metrics: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)  # metrics a submission may leave out (score_n<n> aliases)


@dataclass
class DataCheck:
    """The data-dependent part of validation: the recomputed dataset identity and each seed's rescored metrics.
    ``available`` is False (with ``reason``) when the dataset cannot be built here."""

    available: bool
    reason: str = ""
    identity: dict[str, Any] | None = None
    error: str | None = None  # the hyperparameters or the data are unusable (nothing was rescored)
    seeds: dict[int, SeedScores] = field(default_factory=dict)
    cached: bool = False


class DataUnavailable(Exception):
    """The submission's dataset cannot be built here (a real state that is not downloaded, a read-only home)."""


class Rescorer:
    """Builds each task's test labels once and rescores submissions against them (one per ``validate`` call)."""

    def __init__(self, data_root: str | os.PathLike | None = None, *, cache: bool = True,
                 cache_dir: str | os.PathLike | None = None) -> None:
        from ..io.cache import gnnbench_home

        self.data_root = Path(data_root).expanduser() if data_root is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else gnnbench_home() / "leaderboard" / "rescore"
        self.cache = cache
        self._labels: dict[tuple, Any] = {}

    # -- the entry point ------------------------------------------------------------------------
    def check(self, submission: Submission, submission_sha256: str,
              columns: Mapping[int, Mapping[str, np.ndarray]]) -> DataCheck:
        """Recompute the identity and the metrics of every seed in ``columns`` (seed -> prediction columns)."""
        config = self.config(submission)
        key = self._cache_key(submission, submission_sha256)
        cached = self._cache_read(key)
        if cached is not None:
            return cached
        try:
            result = self._check(submission, config, columns)
        except DataUnavailable as error:
            return DataCheck(False, reason=str(error))
        self._cache_write(self._cache_key(submission, submission_sha256), result, columns)
        return result

    def config(self, submission: Submission) -> dict[str, Any]:
        """The run config of a submission as its family validates it: its hyperparameters with a ``run`` section and
        the data root of this machine (``data.root``)."""
        config = json.loads(json.dumps(submission.hyperparameters))
        config["run"] = {"benchmark": submission.benchmark}
        if submission.benchmark == "road" and isinstance(config.get("data"), dict):
            config["data"]["root"] = str(self.data_root) if self.data_root is not None else ""
        return config

    def _check(self, submission: Submission, config: dict[str, Any],
               columns: Mapping[int, Mapping[str, np.ndarray]]) -> DataCheck:
        from ..harness import algo_family, road_family

        family = algo_family if submission.benchmark == "algo" else road_family
        result = DataCheck(True)
        if submission.benchmark == "road":
            self._road_available(config)
        try:
            family.validate_config(config)
        except ValueError as error:
            result.error = f"hyperparameters: {error}"
            return result
        try:
            if submission.benchmark == "algo":
                labels = self._algo_labels(submission.task)
            else:
                labels = self._road_labels(config)
            result.identity = self._identity(family, config)
        except ValueError as error:
            result.error = f"the {submission.dataset.name} data could not be loaded here: {error}"
            return result
        for seed, table in sorted(columns.items()):
            if submission.benchmark == "algo":
                result.seeds[seed] = _rescore_algo(labels, table)
            else:
                result.seeds[seed] = _rescore_road(labels, table, config["eval"])
        return result

    def _identity(self, family: Any, config: Mapping[str, Any]) -> dict[str, Any]:
        key = ("identity", canonical_json(config["data"]))
        if key not in self._labels:
            self._labels[key] = json.loads(json.dumps(family.dataset_identity(config)))
        return self._labels[key]

    # -- labels -----------------------------------------------------------------------------------
    def _algo_labels(self, algorithm: str) -> _AlgoLabels:
        key = ("algo", algorithm)
        if key not in self._labels:
            from ..algo import Evaluator
            from ..algo.splits import resolve_split
            from ..harness.algo_data import split_traces

            _, test = resolve_split("test")
            aliases = [name for name in ("test_16", "test_32", "test_64", "test_128")
                       if resolve_split(name)[1] == test]
            self._labels[key] = _AlgoLabels(algorithm, split_traces(algorithm, "test"), Evaluator(algorithm),
                                            [f"score_n{resolve_split(name)[1].n}" for name in aliases])
        return self._labels[key]

    def _road_home(self, data: Mapping[str, Any]) -> Path:
        from ..io.cache import gnnbench_home

        root = self.data_root if self.data_root is not None else gnnbench_home() / "road"
        return root / "ml4roadsafety" if data.get("source") == "ml4roadsafety" else root

    def _road_available(self, config: Mapping[str, Any]) -> None:
        """DataUnavailable unless the region is a registry state, DEMO or a region built under the data root."""
        from ..road.states import region_code

        data = config.get("data") or {}
        for state in list(data.get("states") or []) or [data.get("state")]:
            try:
                region_code(state, tables=self._road_home(data) / "tables")
            except ValueError as error:
                raise DataUnavailable(f"{error}; build or import the region, or point --data-root at it") from None

    def _road_labels(self, config: Mapping[str, Any]) -> _RoadLabels:
        data = config["data"]
        state = (list(data["states"]) or [data["state"]])[0]
        key = ("road", str(self._road_home(data)), state, data["task"], data["source"])
        if key not in self._labels:
            from ..models.road.data import RoadRegion

            try:
                region = RoadRegion(data["root"] or None, state, data["task"], source=data["source"])
            except OSError as error:  # tables not downloaded, a read-only home
                raise DataUnavailable(f"the {state} data is not available under {self._road_home(data)} "
                                      f"({error})") from None
            self._labels[key] = _RoadLabels(region)
        return self._labels[key]

    # -- cache --------------------------------------------------------------------------------------
    def _cache_key(self, submission: Submission, submission_sha256: str) -> str | None:
        """The cache key, or None when there is nothing to key the data by yet (road data not built)."""
        from .. import __version__

        material: dict[str, Any] = {"format": CACHE_FORMAT, "submission": submission_sha256, "gnnbench": __version__,
                                    "predictions": sorted(seed.predictions.sha256 for seed in submission.seeds)}
        if submission.benchmark == "road":
            manifest = self._road_manifest(submission)
            if manifest is None:
                return None
            material["manifest"] = hashlib.sha256(manifest.read_bytes()).hexdigest()
            material["root"] = str(manifest.parent)
        return hashlib.sha256(canonical_json(material).encode()).hexdigest()

    def _road_manifest(self, submission: Submission) -> Path | None:
        from ..road.manifest import MANIFEST_NAME

        data = submission.hyperparameters.get("data") or {}
        path = self._road_home(data) / "tables" / submission.dataset.name.upper() / MANIFEST_NAME
        return path if path.is_file() else None

    def _cache_read(self, key: str | None) -> DataCheck | None:
        if not self.cache or key is None:
            return None
        path = self.cache_dir / f"{key}.json"
        try:
            data = json.loads(path.read_text())
            result = DataCheck(True, identity=data["identity"], error=data["error"], cached=True,
                               seeds={int(seed): SeedScores(dict(value["metrics"]), list(value["errors"]),
                                                            list(value["optional"]))
                                      for seed, value in data["seeds"].items()})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.debug("rescoring cache %s unusable: %s", path, error)
            return None
        return result

    def _cache_write(self, key: str | None, result: DataCheck, columns: Mapping[int, Any]) -> None:
        if not self.cache or key is None or not result.available:
            return
        from ..io import atomic_path

        data = {"identity": result.identity, "error": result.error,
                "seeds": {str(seed): {"metrics": scores.metrics, "errors": scores.errors,
                                      "optional": scores.optional}
                          for seed, scores in result.seeds.items()}}
        path = self.cache_dir / f"{key}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as temporary:
                temporary.write_text(json.dumps(data))
        except OSError as error:  # a read-only home: validation works, only slower next time
            logger.debug("rescoring cache %s not written: %s", path, error)


# ---------------------------------------------------------------------------------------------------- algo


@dataclass
class _AlgoLabels:
    algorithm: str
    traces: Any  # TraceSet of the test split
    evaluator: Any
    aliases: list[str]  # score_n<n> keys that are the test split itself


def _rescore_algo(labels: _AlgoLabels, columns: Mapping[str, np.ndarray]) -> SeedScores:
    from ..harness.algo_eval import predictions_from_columns

    result = SeedScores()
    fields = np.asarray(columns["field"]).astype(str)
    outputs = labels.evaluator.outputs
    for name in sorted(set(fields.tolist()) - set(outputs)):
        result.errors.append(f"predictions: field {name!r} is not an output of {labels.algorithm} "
                             f"(outputs: {', '.join(outputs)})")
    for name in outputs:
        truth = np.asarray(labels.traces.outputs[name])
        rows = fields == name
        per_graph = int(np.prod(truth.shape[1:], dtype=np.int64))
        count = int(rows.sum())
        if count != truth.size:
            result.errors.append(f"predictions: field {name!r} has {count} rows, the test split needs "
                                 f"{truth.size} ({truth.shape[0]} graphs x {per_graph} entries)")
            continue
        graph, position = columns["graph"][rows], columns["position"][rows]
        if graph.max() >= truth.shape[0] or position.max() >= per_graph:
            result.errors.append(f"predictions: field {name!r}: graph or position out of range (the test split has "
                                 f"{truth.shape[0]} graphs of {per_graph} entries)")
    if result.errors:
        return result
    predictions = predictions_from_columns(labels.algorithm, columns, labels.traces)
    metrics = labels.evaluator.eval({"y_true": labels.traces.outputs, "y_pred": predictions})
    result.metrics = {key: float(value) for key, value in metrics.items()}
    for alias in labels.aliases:
        result.metrics[alias] = result.metrics["score"]
        result.optional.append(alias)
    return result


# ---------------------------------------------------------------------------------------------------- road


class _RoadLabels:
    """A region's test periods: each period's segment labels, per-directed-edge labels and the edge index."""

    def __init__(self, region: Any) -> None:
        self.state, self.task = region.state, region.task
        self.edge_index = region.edge_index.numpy()
        self.num_edges = int(self.edge_index.shape[1])
        self.periods: list[tuple[int, int]] = []
        self.masks: list[np.ndarray] = []  # each period's eval_mask: the segments the gnnbench protocol scores
        self.segment: list[np.ndarray] = []
        self.upstream: list[np.ndarray] = []
        for period in region.splits["test"]:
            snapshot = region.snapshot(period)
            self.periods.append((int(period[0]), int(period[1]) if len(period) > 1 else 0))
            self.masks.append(snapshot.eval_mask.numpy())
            self.segment.append(snapshot.y.numpy()[self.masks[-1]])
            self.upstream.append(region.ml4roadsafety_labels(period, snapshot).numpy())
        if not self.periods:
            raise ValueError(f"{self.state}: the test split is empty")


def _rescore_road(labels: _RoadLabels, columns: Mapping[str, np.ndarray], evaluation: Mapping[str, Any]
                  ) -> SeedScores:
    from ..models.road.scoring import protocol_metrics

    result = SeedScores()
    year, month = columns["year"].astype(np.int64), columns["month"].astype(np.int64)
    edge, prediction = columns["edge"].astype(np.int64), columns["prediction"]
    present = {(int(code // 13), int(code % 13)) for code in np.unique(year * 13 + month)}
    expected = set(labels.periods)
    if present != expected:
        missing, extra = sorted(expected - present), sorted(present - expected)
        text = []
        if missing:
            text.append(f"test periods {_periods(missing)} are missing")
        if extra:
            text.append(f"periods {_periods(extra)} are not test periods of {labels.state}")
        result.errors.append(f"predictions: {'; '.join(text)}")
        return result
    if edge.max() >= labels.num_edges:
        row = int(np.argmax(edge >= labels.num_edges))
        result.errors.append(f"predictions: row {row}: edge {int(edge[row])} is not an edge of {labels.state} "
                             f"({labels.num_edges} directed edges)")
        return result
    segment_pred, upstream_pred = [], []
    for (y, m), mask in zip(labels.periods, labels.masks):
        rows = (year == y) & (month == m)
        if int(rows.sum()) != labels.num_edges:
            result.errors.append(f"predictions: period {_periods([(y, m)])} has {int(rows.sum())} rows, "
                                 f"{labels.state} has {labels.num_edges} directed edges (one row each)")
            return result
        values = np.empty(labels.num_edges, dtype=prediction.dtype)
        values[edge[rows]] = prediction[rows]
        segment_pred.append(values[mask])
        upstream_pred.append(values)
    metrics = protocol_metrics(labels.task, labels.segment, segment_pred, upstream_true=labels.upstream,
                               upstream_pred=upstream_pred, edge_index=labels.edge_index,
                               k=int(evaluation.get("k", 100)), threshold=float(evaluation.get("threshold", 0.5)))
    result.metrics = {key: float(value) for key, value in metrics.items()}
    return result


def _periods(periods: list[tuple[int, int]]) -> str:
    return ", ".join(f"{y}" if m == 0 else f"{y}-{m:02d}" for y, m in periods)


def matches(claimed: float, rescored: float, *, abs_tol: float = 1e-6, rel_tol: float = 1e-6) -> bool:
    """Equal up to rounding: ``abs_tol`` or ``rel_tol`` (NaN matches nothing)."""
    if math.isnan(claimed) or math.isnan(rescored):
        return False
    return abs(claimed - rescored) <= max(abs_tol, rel_tol * abs(rescored))
