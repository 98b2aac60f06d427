"""CLRS-30 scoring of output and hint predictions, and an OGB-style ``Evaluator``.

Per field type (as CLRS-30's ``evaluate``):

* scalar: mean squared error (lower is better);
* mask: binary F1 over entries whose truth is not -1, predicting 1 where the
  prediction is > 0.5 (precision or recall with an empty denominator count as 1);
* mask_one, categorical: accuracy of the argmax over the last axis, over entries
  whose truth has no -1;
* pointer: exact-match accuracy of the pointed-to node.

The output score is the mean over output fields. Hint scores follow CLRS-30's
``evaluate_hints``: step t is scored on the samples still running at t, for
t = 1 .. T-1 (step 0 is the initial state models receive), and a field's score is
the average over steps weighted by how many samples reach each step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .specs import SPECS, Location, OutputClass, Stage, Type, check_algorithm


def scalar_score(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((pred - truth) ** 2))


def mask_score(pred: np.ndarray, truth: np.ndarray) -> float:
    valid = truth != OutputClass.MASKED
    predicted, actual = pred > 0.5, truth > 0.5
    tp = np.sum(predicted & actual & valid)
    fp = np.sum(predicted & (truth < 0.5) & valid)
    fn = np.sum((pred < 0.5) & actual & valid)
    precision = tp / (tp + fp) if tp + fp > 0 else 1.0
    recall = tp / (tp + fn) if tp + fn > 0 else 1.0
    return float(2 * precision * recall / (precision + recall)) if precision + recall > 0 else 0.0


def argmax_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Argmax accuracy over rows without -1; NaN when every row is masked (as CLRS-30)."""
    valid = np.all(truth != OutputClass.MASKED, axis=-1)
    hits = (np.argmax(pred, axis=-1) == np.argmax(truth, axis=-1)) & valid
    return float(np.sum(hits) / np.sum(valid)) if valid.any() else float("nan")


def pointer_score(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(pred == truth))


SCORERS = {Type.SCALAR: scalar_score, Type.MASK: mask_score, Type.MASK_ONE: argmax_score,
           Type.CATEGORICAL: argmax_score, Type.POINTER: pointer_score}


def _field_shape(location: str, type_: str, n: str = "n") -> str:
    shape = {Location.NODE: f"[num_samples, {n}]", Location.EDGE: f"[num_samples, {n}, {n}]",
             Location.GRAPH: "[num_samples]"}[location]
    if type_ == Type.CATEGORICAL:
        shape = shape[:-1] + ", num_classes]"
    return shape


class Evaluator:
    """Scores predictions for one algorithm exactly as CLRS-30 does.

    >>> evaluator = Evaluator("bfs")
    >>> print(evaluator.expected_input_format)
    >>> evaluator.eval({"y_true": dataset.targets(), "y_pred": {"pi": predicted_parents}})
    """

    def __init__(self, algorithm: str) -> None:
        self.algorithm = check_algorithm(algorithm)
        self.spec = SPECS[algorithm]
        self.outputs = tuple(f for f, (st, _, _) in self.spec.items() if st == Stage.OUTPUT)
        self.hints = tuple(f for f, (st, _, _) in self.spec.items() if st == Stage.HINT)

    @property
    def expected_input_format(self) -> str:
        lines = [
            f"==== Expected input format of Evaluator({self.algorithm!r}) ====",
            "eval({'y_true': {field: array}, 'y_pred': {field: array}}): output fields, one array per field with",
            "a leading sample axis, as numpy arrays or torch tensors (CLRS layout: edge fields [n, n], not [n*n]).",
            "y_true is what AlgorithmicReasoningDataset.targets() or a TraceSet's outputs give.",
        ]
        for name in self.outputs:
            _, loc, type_ = self.spec[name]
            lines.append(f"- {name} ({loc} {type_}): y_true {_field_shape(loc, type_)}; "
                         f"y_pred {_pred_doc(loc, type_)}")
        lines += [
            "eval_hints({'y_true': {field: [num_samples, T, ...]}, 'y_pred': {field: [num_samples, T, ...]},",
            "            'lengths': [num_samples]}): hint fields with a time axis after the sample axis, padded to",
            "a common T; step t of y_pred predicts step t of the trace (step 0 is not scored).",
            f"Hint fields: {', '.join(self.hints)}.",
            "Returns: {field: score, ..., 'score': mean over output fields}; scalar fields score by MSE (lower is",
            "better), all others in [0, 1] (higher is better).",
        ]
        return "\n".join(lines)

    @property
    def expected_output_format(self) -> str:
        return ("{field: float for each output field, 'score': mean of the output fields' scores}; "
                "eval_hints adds '<field>_along_time' arrays of per-step scores")

    def eval(self, input_dict: Mapping[str, Any]) -> dict[str, float]:
        """Score output predictions; returns per-field scores and their mean as ``score``."""
        y_true, y_pred = self._parse(input_dict, self.outputs)
        scores = {}
        for name in self.outputs:
            _, loc, type_ = self.spec[name]
            truth = y_true[name]
            pred = _as_prediction(name, type_, y_pred[name], truth.shape)
            scores[name] = SCORERS[type_](pred, truth)
        scores["score"] = float(np.mean([scores[name] for name in self.outputs]))
        return scores

    def eval_hints(self, input_dict: Mapping[str, Any]) -> dict[str, Any]:
        """Score hint predictions per field, overall and along time (CLRS-30's ``evaluate_hints``)."""
        fields = tuple(f for f in self.hints if f in input_dict.get("y_pred", {}))
        if not fields:
            raise ValueError(f"y_pred holds no hint field of {self.algorithm}; hint fields: {', '.join(self.hints)}")
        y_true, y_pred = self._parse(input_dict, fields)
        if "lengths" not in input_dict:
            raise ValueError("eval_hints needs 'lengths': the number of hint steps of each sample")
        lengths = _to_numpy(input_dict["lengths"]).astype(np.int64).reshape(-1)
        if (lengths < 1).any():
            raise ValueError(f"lengths must be >= 1 (every trace has at least one hint step), got {lengths.min()}")
        scores: dict[str, Any] = {}
        for name in fields:
            _, _, type_ = self.spec[name]
            truth = y_true[name]
            if truth.shape[0] != lengths.shape[0]:
                raise ValueError(f"y_true[{name!r}] has {truth.shape[0]} samples but lengths has {lengths.shape[0]}")
            if lengths.max(initial=0) > truth.shape[1]:
                raise ValueError(f"lengths go up to {lengths.max()} but y_true[{name!r}] has only "
                                 f"{truth.shape[1]} steps")
            pred = _as_prediction(name, type_, y_pred[name], truth.shape)
            along_time = []
            weights = []
            for t in range(1, truth.shape[1]):
                running = t < lengths
                along_time.append(SCORERS[type_](pred[running, t], truth[running, t]) if running.any() else 0.0)
                weights.append(int(running.sum()))
            total = int(np.sum(lengths - 1))
            scores[name] = float(np.dot(along_time, weights) / total) if total > 0 else 0.0
            scores[f"{name}_along_time"] = np.array(along_time)
        return scores

    def _parse(self, input_dict: Mapping[str, Any], fields: tuple[str, ...]):
        for key in ("y_true", "y_pred"):
            if key not in input_dict or not isinstance(input_dict[key], Mapping):
                raise ValueError(f"input_dict needs {key!r}: a mapping from field name to array; "
                                 f"see Evaluator({self.algorithm!r}).expected_input_format")
        y_true, y_pred = {}, {}
        for name in fields:
            for key, target in (("y_true", y_true), ("y_pred", y_pred)):
                if name not in input_dict[key]:
                    raise ValueError(f"{key} is missing field {name!r}; {self.algorithm} needs "
                                     f"{', '.join(fields)}")
                value = _to_numpy(input_dict[key][name])
                if key == "y_pred" and np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                    raise ValueError(f"y_pred[{name!r}] contains NaN or infinite values")
                target[name] = value
        return y_true, y_pred


def _pred_doc(location: str, type_: str) -> str:
    base = _field_shape(location, type_)
    if type_ == Type.POINTER:
        return f"{base} node indices (int), or {base[:-1]}, n] scores (argmax taken)"
    if type_ == Type.MASK:
        return f"{base} probabilities or 0/1 (> 0.5 means 1)"
    if type_ == Type.MASK_ONE:
        return f"{base} scores or one-hot (argmax over the last axis)"
    if type_ == Type.CATEGORICAL:
        return f"{base} class scores (argmax over the last axis)"
    return f"{base} values"


def _as_prediction(name: str, type_: str, pred: np.ndarray, truth_shape: tuple[int, ...]) -> np.ndarray:
    if type_ == Type.POINTER and pred.shape == (*truth_shape, truth_shape[-1]):
        pred = np.argmax(pred, axis=-1)  # pointer scores over nodes
    if pred.shape != truth_shape:
        raise ValueError(f"y_pred[{name!r}] has shape {pred.shape}, expected {truth_shape} like y_true")
    return pred


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)
