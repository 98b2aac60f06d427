"""Rescoring: each seed's test metrics recomputed from its submitted predictions with the package's own evaluator,
against the test labels this installation builds.

* ``algo``: the CLRS-30 test split (``split_traces(algorithm, "test")``, generated here), the prediction columns
  turned back into :class:`gnnbench.algo.Evaluator` input
  (:func:`~gnnbench.harness.algo_eval.predictions_from_columns`),
  scored as training scored them (``score`` and one score per output field; ``score_n<n>`` too when the length
  split ``test_<n>`` is the test split itself).
* ``road``: the region's test periods (:class:`gnnbench.models.road.data.RoadRegion` under ``data_root``, default
  ``$GNNBENCH_HOME/road``; the DEMO region builds itself offline), scored under both protocols by
  :func:`gnnbench.models.road.scoring.protocol_metrics` with the submission's ``eval.k`` and ``eval.threshold``.

The dataset identity (:func:`dataset_identity` of the family, from the submission's hyperparameters) is recomputed
from the same data. Results are cached under ``$GNNBENCH_HOME/leaderboard/rescore`` by a key of the submission's and
predictions' SHA-256, the gnnbench version and (road) the data's manifest, so repeated validation is fast.

The prediction files themselves are checked by :mod:`gnnbench.leaderboard.predictions` before they are rescored.
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

CACHE_FORMAT = 1


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
        if cached is not None and set(cached.seeds) >= set(columns):
            return cached
        try:
            result = self._check(submission, config, columns)
        except DataUnavailable as error:
            return DataCheck(False, reason=str(error))
        if set(columns) == {seed.seed for seed in submission.seeds}:  # a complete result: worth keeping
            self._cache_write(self._cache_key(submission, submission_sha256), result)
        return result

    def config(self, submission: Submission) -> dict[str, Any]:
        """The config the benchmark's family validates and builds the data from: its defaults with the submission's
        ``data`` section (and, for road, ``eval``: ``k`` and ``threshold`` are part of the scoring) laid over them,
        ``data.root`` set to this machine's data root. The ``model`` and ``train`` sections are the method's own and
        are not checked, except road's ``model.fusion``, which decides how the image features enter the data."""
        from ..harness import algo_family, road_family

        family = algo_family if submission.benchmark == "algo" else road_family
        config: dict[str, Any] = {name: dict(section) for name, section in family.default_config().items()}
        sections = ("data", "eval") if submission.benchmark == "road" else ("data",)
        for name in sections:
            given = submission.hyperparameters.get(name)
            if isinstance(given, Mapping):
                config[name].update(json.loads(json.dumps(given)))
        config["run"] = {"benchmark": submission.benchmark}
        if submission.benchmark == "road":
            config["data"]["root"] = str(self.data_root) if self.data_root is not None else ""
            model = submission.hyperparameters.get("model")
            if isinstance(model, Mapping) and "fusion" in model:  # image features are fused or plain columns
                config["model"]["fusion"] = model["fusion"]
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

    def _cache_write(self, key: str | None, result: DataCheck) -> None:
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
    try:
        predictions = predictions_from_columns(labels.algorithm, columns, labels.traces)
        metrics = labels.evaluator.eval({"y_true": labels.traces.outputs, "y_pred": predictions})
    except ValueError as error:  # the evaluator refuses the predictions: name why
        result.errors.append(f"predictions: the evaluator cannot score them: {error}")
        return result
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
    try:
        metrics = protocol_metrics(labels.task, labels.segment, segment_pred, upstream_true=labels.upstream,
                                   upstream_pred=upstream_pred, edge_index=labels.edge_index,
                                   k=int(evaluation["k"]), threshold=float(evaluation["threshold"]))
    except ValueError as error:  # the evaluator refuses the predictions: name why
        result.errors.append(f"predictions: the evaluator cannot score them: {error}")
        return result
    result.metrics = {key: float(value) for key, value in metrics.items()}
    return result


def _periods(periods: list[tuple[int, int]]) -> str:
    return ", ".join(f"{y}" if m == 0 else f"{y}-{m:02d}" for y, m in periods)


def matches(claimed: float, rescored: float, *, abs_tol: float = 1e-6, rel_tol: float = 1e-6) -> bool:
    """Equal up to rounding: ``abs_tol`` or ``rel_tol`` (NaN matches nothing)."""
    if math.isnan(claimed) or math.isnan(rescored):
        return False
    return abs(claimed - rescored) <= max(abs_tol, rel_tol * abs(rescored))
