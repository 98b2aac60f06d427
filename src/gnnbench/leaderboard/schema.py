"""The leaderboard's submission format (version 1): one ``submission.json`` plus the test predictions of every seed.

A submission folder (``leaderboard/submissions/<task id>/<method slug>/``) holds::

    submission.json            a :class:`Submission` (this schema; ``schema_version`` = 1)
    predictions/seed_<k>.parquet  the test predictions of seed ``k``, the run record's own columns
                                  (algo: ``graph``, ``field``, ``position``, ``value``; road: ``state``, ``year``,
                                  ``month``, ``edge``, ``prediction``); their SHA-256 is in ``submission.json``

Submissions are data only: JSON and Parquet, nothing executed or unpickled. The rules (seed counts, ranges) are
checked by :mod:`gnnbench.leaderboard.validate`; this module fixes the shape and the field-level ranges.

The task of a submission is ``<benchmark>/<dataset>/<task>``: ``algo/clrs30/bfs`` (CLRS-30's splits, scored at
n = 64) or ``road/DEMO/accident_occurrence`` (a region's code, then the road task).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEMA_VERSION = 1
SUBMISSION_NAME = "submission.json"
PREDICTIONS_DIR = "predictions"
BENCHMARKS = ("algo", "road")
#: At least this many seeds per benchmark (OGB's rule for road; CLRS-30's three seeds for the algorithms).
MIN_SEEDS = {"algo": 3, "road": 10}
MAX_SUBMISSION_BYTES = 2 * 1024 * 1024  # submission.json
MAX_PREDICTION_BYTES = 16 * 1024 * 1024  # one seed's predictions file
#: Rows of one seed's predictions file (a compressed Parquet file can hold far more rows than its bytes suggest).
MAX_PREDICTION_ROWS = 2 ** 24
MAX_SEEDS = 100

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SLUG = re.compile(r"[a-z0-9][a-z0-9_.-]{0,79}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_URL = re.compile(r"https?://[^\s/$.?#][^\s]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def prediction_path(seed: int) -> str:
    """The path of seed ``seed``'s predictions inside a submission folder."""
    return f"{PREDICTIONS_DIR}/seed_{seed}.parquet"


def slug(text: str) -> str:
    """A folder name for ``text``: lower case, runs of other characters as ``-`` (``"GCN (ours)"`` -> ``gcn-ours``)."""
    value = re.sub(r"[^a-z0-9_.]+", "-", text.lower()).strip("-.")
    if not value:
        raise ValueError(f"{text!r} has no letter or digit to name a folder after")
    return value[:80]


class Method(_Strict):
    """Who submits what: the method, its authors and where its code and paper are."""

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)
    authors: list[str] = Field(min_length=1, max_length=50)
    contact: str = Field(max_length=200)  # an e-mail address, or a URL where questions are answered
    code_url: str = Field(max_length=500)
    paper: str | None = Field(default=None, max_length=500)  # a URL, or "" when there is none
    external_data: bool = False  # any data beyond the benchmark's own (say so in ``name`` too, as OGB asks)
    external_data_description: str = Field(default="", max_length=2000)

    @field_validator("authors")
    @classmethod
    def _authors(cls, value: list[str]) -> list[str]:
        for i, author in enumerate(value):
            if not author.strip():
                raise ValueError(f"authors[{i}] is empty")
        return value

    @field_validator("contact")
    @classmethod
    def _contact(cls, value: str) -> str:
        if not (_EMAIL.fullmatch(value) or _URL.fullmatch(value)):
            raise ValueError(f"contact must be an e-mail address or an http(s) URL (an issue tracker), got {value!r}")
        return value

    @field_validator("code_url")
    @classmethod
    def _code_url(cls, value: str) -> str:
        if not _URL.fullmatch(value):
            raise ValueError(f"code_url must be an http(s) URL, got {value!r}")
        return value

    @field_validator("paper")
    @classmethod
    def _paper(cls, value: str | None) -> str | None:
        if value and not _URL.fullmatch(value):
            raise ValueError(f"paper must be an http(s) URL (or empty), got {value!r}")
        return value or None

    @model_validator(mode="after")
    def _external(self) -> Method:
        if self.external_data and not self.external_data_description.strip():
            raise ValueError("external_data is true: say which data in external_data_description")
        return self


class Dataset(_Strict):
    """The data the submission was trained and scored on, with the identity the harness recorded
    (``dataset.json``: manifest checksums and row counts for road, the splits' checksums for the algorithms)."""

    name: str = Field(min_length=1, max_length=40)  # "clrs30", or a road region's code ("MA", "DEMO")
    synthetic: bool  # generated by gnnbench, not real data (the demo region, CLRS-30's Erdős–Rényi graphs)
    identity: dict[str, Any]
    identity_sha256: str

    @model_validator(mode="after")
    def _identity_checksum(self) -> Dataset:
        expected = identity_checksum(self.identity)
        if self.identity_sha256 != expected:
            raise ValueError(f"identity_sha256 {self.identity_sha256!r} is not the SHA-256 of identity ({expected})")
        return self


class PredictionFile(_Strict):
    """One seed's test predictions beside ``submission.json``."""

    path: str
    sha256: str
    bytes: int = Field(ge=1, le=MAX_PREDICTION_BYTES)
    rows: int = Field(ge=1, le=MAX_PREDICTION_ROWS)
    columns: dict[str, str] = Field(min_length=1)

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, value: str) -> str:
        if not _SHA256.fullmatch(value):
            raise ValueError(f"sha256 must be 64 lower-case hex digits, got {value!r}")
        return value


class Bound(_Strict):
    """One Hessian-based bound on the generalisation gap, beside the gap it was measured against."""

    bound_on_gap: float
    measured_gap: float
    bound_holds: bool | None = None


class HessianRecord(_Strict):
    """A seed's Hessian column (``gnnbench run --hessian``): trace, top eigenvalue, bounds, measured gap."""

    trace: float
    trace_stderr: float | None = Field(default=None, ge=0)
    top_eigenvalue: float
    measured_gap: float
    bounds: dict[str, Bound] = Field(min_length=1)
    num_matvecs: int = Field(ge=1)


class SeedResult(_Strict):
    """One seed: its metrics on the validation and test splits, its Hessian column and its predictions."""

    seed: int = Field(ge=0, le=2**63 - 1)
    valid: dict[str, float] = Field(min_length=1)
    test: dict[str, float] = Field(min_length=1)
    steps: int = Field(ge=1)
    training_seconds: float = Field(ge=0)
    peak_memory_bytes: int | None = Field(default=None, ge=0)
    hessian: HessianRecord | None = None
    predictions: PredictionFile

    @model_validator(mode="after")
    def _headline(self) -> SeedResult:
        for split in ("valid", "test"):
            if "score" not in getattr(self, split):
                raise ValueError(f"{split} has no 'score' (the headline metric)")
        if self.predictions.path != prediction_path(self.seed):
            raise ValueError(f"predictions.path must be {prediction_path(self.seed)!r}, got {self.predictions.path!r}")
        return self


class Summary(_Strict):
    """Mean and unbiased standard deviation (divisor n - 1, as ``torch.std``) of one metric over the seeds."""

    mean: float
    std: float | None = Field(ge=0)
    n: int = Field(ge=1)


class Hardware(_Strict):
    device: str = Field(max_length=100)  # "cpu", "cuda" ...
    cpu: str | None = Field(default=None, max_length=200)
    cpu_count: int | None = Field(default=None, ge=1)
    gpu: str | None = Field(default=None, max_length=200)
    memory_bytes: int | None = Field(default=None, ge=0)


class Submission(_Strict):
    """A leaderboard entry: a method's results on one task over several seeds."""

    schema_version: Literal[1]
    benchmark: Literal["algo", "road"]
    task: str = Field(min_length=1, max_length=60)  # algo: the algorithm; road: the road task
    dataset: Dataset
    method: Method
    gnnbench_version: str = Field(min_length=1, max_length=40)
    metric: str = Field(min_length=1, max_length=60)  # what ``score`` is (micro_f1, roc_auc, mae)
    higher_is_better: bool
    seeds_tuned: Literal[False] = False  # seeds are never tuned: the rules forbid it
    num_seeds: int = Field(ge=1, le=MAX_SEEDS)
    parameters: int = Field(ge=1)
    hardware: Hardware
    training_seconds: float = Field(ge=0)  # mean training time per seed
    hyperparameters: dict[str, Any]  # the resolved run config (its model, train, eval and data sections)
    config_sha256: str
    budget: str = Field(default="", max_length=300)  # a reduced budget says so here ("300 steps, CPU"); "" = full
    seeds: list[SeedResult] = Field(min_length=1, max_length=MAX_SEEDS)
    summary: dict[str, Summary]  # "valid.<metric>" / "test.<metric>" / "hessian.<key>" -> mean, std, n
    submitted: str = Field(max_length=40)  # ISO date

    @property
    def task_id(self) -> str:
        return task_id(self.benchmark, self.dataset.name, self.task)

    @model_validator(mode="after")
    def _consistent(self) -> Submission:
        seeds = [entry.seed for entry in self.seeds]
        if len(set(seeds)) != len(seeds):
            repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
            raise ValueError(f"seeds are repeated: {repeated}")
        if self.num_seeds != len(self.seeds):
            raise ValueError(f"num_seeds is {self.num_seeds} but {len(self.seeds)} seeds are listed")
        return self


def task_id(benchmark: str, dataset: str, task: str) -> str:
    return f"{benchmark}/{dataset}/{task}"


def canonical_json(value: Any) -> str:
    """The JSON text that checksums are taken of: sorted keys, no spaces, non-finite floats refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def identity_checksum(identity: Any) -> str:
    import hashlib

    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


class SubmissionError(ValueError):
    """A submission breaks the format or a rule; the message names the submission and the field."""


def load_submission(folder: str | Path) -> Submission:
    """Parse ``folder/submission.json`` (a plain file, size-bounded, JSON only) into a :class:`Submission`.

    Raises :class:`SubmissionError` naming the file and every field that is wrong (a seed by its number)."""
    path = Path(folder) / SUBMISSION_NAME
    if path.is_symlink():
        raise SubmissionError(f"{path}: a symbolic link (a submission holds plain files only)")
    if not path.is_file():
        raise SubmissionError(f"{path}: missing (a submission folder holds {SUBMISSION_NAME} and {PREDICTIONS_DIR}/)")
    size = path.stat().st_size
    if size > MAX_SUBMISSION_BYTES:
        raise SubmissionError(f"{path}: {size} bytes, more than the limit of {MAX_SUBMISSION_BYTES}")
    data = read_submission_json(path)
    try:
        return Submission.model_validate(data)
    except ValidationError as error:
        raise SubmissionError(f"{path}: {format_errors(error, data)}") from None


def read_submission_json(path: str | Path) -> Any:
    """The JSON of ``path`` (``json`` only, nothing else parses it). ``NaN`` and ``Infinity`` parse as floats, so
    that the schema names the field that holds them (it accepts finite numbers only)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=float)
    except (UnicodeDecodeError, ValueError) as error:
        raise SubmissionError(f"{path}: not valid JSON: {error}") from None


def format_errors(error: ValidationError, data: Any = None) -> str:
    """Pydantic's errors as ``field.path: message`` (``seeds[3].test.score``) joined by ``; ``; given the parsed
    JSON ``data``, a seed's fields are named by its number: ``seed 7: test.score: ...``."""
    return "; ".join(error_lines(error, data))


def error_lines(error: ValidationError, data: Any = None) -> list[str]:
    """One line per error of :func:`format_errors`."""
    lines = []
    for item in error.errors():
        parts = list(item["loc"])
        prefix = ""
        if len(parts) >= 2 and parts[0] == "seeds" and isinstance(parts[1], int):
            number = _seed_number(data, parts[1])
            if number is not None:
                prefix, parts = f"seed {number}: ", parts[2:]
        location = ""
        for part in parts:
            location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        if item["type"] == "finite_number" and isinstance(value, float):
            message += f" (got {value})"
        if prefix and not location:  # a rule over the whole seed: its message names the field
            lines.append(f"{prefix}{message}")
        else:
            lines.append(f"{prefix}{location or 'submission'}: {message}")
    return lines


def _seed_number(data: Any, index: int) -> int | None:
    try:
        seed = data["seeds"][index]["seed"]
    except (KeyError, IndexError, TypeError):
        return None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
