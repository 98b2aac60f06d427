"""``gnnbench leaderboard validate``: every submission checked, and its test scores recomputed from its predictions.

:func:`validate` runs, for each submission folder (``<task>/<method>/`` under the submissions root, or one folder):

1. contents: exactly ``submission.json`` and ``predictions/seed_<k>.parquet`` of the listed seeds, plain files (no
   symbolic links), each within its size limit; nothing else (:mod:`gnnbench.leaderboard.schema` limits);
2. schema: ``submission.json`` against :class:`~gnnbench.leaderboard.schema.Submission`, every wrong field named;
3. the rules of :mod:`gnnbench.leaderboard.rules`: folder name, versions, seeds, metric names and ranges, the
   Hessian column, the summary;
4. predictions: SHA-256 and size as declared, the family's columns and types, row count, finite values, every key
   once (:func:`gnnbench.leaderboard.rescore.read_predictions`);
5. data (unless ``rescore=False``): the hyperparameters as the family validates them, the dataset identity
   recomputed from the data built here, and every seed's test metrics rescored by the official evaluator
   (:class:`~gnnbench.leaderboard.rescore.Rescorer`);
6. duplicates across submissions (same task and method; identical prediction files);
7. history (:mod:`gnnbench.leaderboard.history`): nothing committed removed or changed since ``base``.

Every error names the submission folder (relative to the submissions root), the seed and the field or metric.
Nothing in a submission is executed or unpickled: JSON is read with ``json``, predictions with pyarrow.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import rules
from .predictions import read_predictions
from .rescore import DataCheck, Rescorer, matches
from .schema import (MAX_PREDICTION_BYTES, MAX_SUBMISSION_BYTES, PREDICTIONS_DIR, SUBMISSION_NAME, Submission,
                     SubmissionError, error_lines, read_submission_json)
from .submit import default_submissions_dir

_SEED_FILE = re.compile(r"seed_(0|[1-9][0-9]{0,18})\.parquet")
#: Test metrics that the test predictions cannot reproduce: the algorithms' length suite (other splits; the one
#: that is the test split itself is rescored). Every other test metric must be rescored.
UNRESCORABLE = {"algo": r"score_n[1-9][0-9]*", "road": r"(?!)"}


@dataclass
class EntryResult:
    """One submission folder's result. ``submission`` is ``None`` when ``submission.json`` does not parse;
    ``rescored``: every seed's test metrics were recomputed from its predictions (``rescored_metrics`` names them)."""

    folder: Path
    name: str  # the folder relative to the submissions root: "<task>/<method>"
    submission: Submission | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rescored: bool = False
    rescored_metrics: list[str] = field(default_factory=list)
    rescored_seeds: int = 0
    sha256: str = ""  # of submission.json (the rescoring cache's key)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, message: str, seed: int | None = None) -> None:
        self.errors.append(f"{self.name}: {'' if seed is None else f'seed {seed}: '}{message}")

    def note(self, message: str) -> None:
        self.notes.append(f"{self.name}: {message}")


@dataclass
class ValidationReport:
    """Every submission's result; ``errors``/``notes`` not tied to a present folder (a removed submission, a stray
    file, history that could not be read)."""

    root: Path
    entries: list[EntryResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(entry.ok for entry in self.entries)

    def all_errors(self) -> list[str]:
        return [*self.errors, *(message for entry in self.entries for message in entry.errors)]


def validate(path: str | os.PathLike | None = None, *, data_root: str | os.PathLike | None = None,
             base: str | None = "HEAD", history: bool = False, rescore: bool = True,
             cache: bool = True) -> ValidationReport:
    """Validate the submissions under ``path`` (a submissions root, default the repository's
    ``leaderboard/submissions``; or one submission folder).

    ``data_root``: where road regions are built or downloaded (default ``$GNNBENCH_HOME/road``). ``base``: the
    commit to compare with (``None``: no history check). ``history``: also check every commit that touched the
    submissions against its parent. ``rescore=False``: skip the data-dependent checks (identity, rescoring).
    ``cache``: reuse rescoring results kept under ``$GNNBENCH_HOME/leaderboard/rescore``."""
    root = Path(path) if path is not None else default_submissions_dir()
    report = ValidationReport(root)
    if path is None and not os.path.lexists(root):
        report.notes.append(f"{root}: no submissions yet (the board is empty)")
        return report
    if not root.is_dir() or root.is_symlink():
        report.errors.append(f"{root}: not a directory of submissions (leaderboard/submissions/<task>/<method>/)")
        return report
    single = os.path.lexists(root / SUBMISSION_NAME) or os.path.lexists(root / PREDICTIONS_DIR)
    if single:
        folders = [(root, f"{root.resolve().parent.name}/{root.resolve().name}")]
    else:
        folders = list(_folders(root, report))
    rescorer = Rescorer(data_root, cache=cache) if rescore else None
    raw: dict[str, Any] = {}
    checksums: dict[str, tuple[str, int]] = {}  # declared prediction sha256 -> (submission, seed), for messages
    entries = []
    for folder, name in folders:
        entry = EntryResult(folder, name)
        files = _contents(entry)
        raw[name] = _load(entry, files)
        entries.append((entry, files))
        if entry.submission is not None:
            for seed in entry.submission.seeds:
                checksums.setdefault(seed.predictions.sha256, (name, seed.seed))
    scores: dict[str, dict[int, dict[str, float]]] = {}
    for entry, files in entries:
        if entry.submission is not None:
            rules.check(entry, entry.submission)
            columns = _predictions(entry, files, checksums)
            if rescorer is None:
                entry.note("not rescored (--no-rescore): the dataset identity and the test metrics were not "
                           "recomputed")
            else:
                scores[entry.name] = _rescore(entry, rescorer, columns)
        report.entries.append(entry)
    _duplicates(report.entries, scores)
    if base is not None or history:
        _history(report, raw, base=base, every_commit=history, single=single)
    return report


# ------------------------------------------------------------------------------------------------- contents


def _folders(root: Path, report: ValidationReport) -> Iterator[tuple[Path, str]]:
    """``(folder, "<task>/<method>")`` of every submission; anything else under the root is an error."""
    for task in sorted(os.scandir(root), key=lambda e: e.name):
        if task.is_symlink() or not task.is_dir(follow_symlinks=False):
            kind = "a symbolic link" if task.is_symlink() else "a stray file"
            report.errors.append(f"{task.name}: {kind}; the submissions directory holds <task>/<method>/ folders only")
            continue
        methods = sorted(os.scandir(task.path), key=lambda e: e.name)
        if not methods:
            report.errors.append(f"{task.name}: an empty task folder")
        for method in methods:
            name = f"{task.name}/{method.name}"
            if method.is_symlink() or not method.is_dir(follow_symlinks=False):
                kind = "a symbolic link" if method.is_symlink() else "a stray file"
                report.errors.append(f"{name}: {kind}; a task folder holds <method>/ submission folders only")
                continue
            yield Path(method.path), name


def _contents(entry: EntryResult) -> dict[int, Path]:
    """Check the folder's files; returns the prediction files found, by seed."""
    found: dict[int, Path] = {}
    for item in sorted(os.scandir(entry.folder), key=lambda e: e.name):
        if item.is_symlink():
            entry.error(f"{item.name} is a symbolic link (a submission holds plain files only)")
        elif item.name == SUBMISSION_NAME and item.is_file(follow_symlinks=False):
            size = item.stat(follow_symlinks=False).st_size
            if size > MAX_SUBMISSION_BYTES:
                entry.error(f"{SUBMISSION_NAME} is {size} bytes, more than the limit of {MAX_SUBMISSION_BYTES}")
        elif item.name == PREDICTIONS_DIR and item.is_dir(follow_symlinks=False):
            for file in sorted(os.scandir(item.path), key=lambda e: e.name):
                where = f"{PREDICTIONS_DIR}/{file.name}"
                match = _SEED_FILE.fullmatch(file.name)
                if file.is_symlink():
                    entry.error(f"{where} is a symbolic link (a submission holds plain files only)",
                                int(match.group(1)) if match else None)
                elif not match or not file.is_file(follow_symlinks=False):
                    entry.error(f"{where}: an extra file (a submission holds {SUBMISSION_NAME} and "
                                f"{PREDICTIONS_DIR}/seed_<k>.parquet only)")
                else:
                    seed = int(match.group(1))
                    size = file.stat(follow_symlinks=False).st_size
                    if size > MAX_PREDICTION_BYTES:
                        entry.error(f"{where} is {size} bytes, more than the limit of {MAX_PREDICTION_BYTES}", seed)
                    else:
                        found[seed] = Path(file.path)
        else:
            entry.error(f"{item.name}: an extra {'folder' if item.is_dir() else 'file'} (a submission holds "
                        f"{SUBMISSION_NAME} and {PREDICTIONS_DIR}/seed_<k>.parquet only)")
    return found


def _load(entry: EntryResult, files: dict[int, Path]) -> Any:
    """Parse ``submission.json`` into ``entry.submission``; returns the parsed JSON (None when unreadable)."""
    path = entry.folder / SUBMISSION_NAME
    if path.is_symlink() or not path.is_file():
        if not path.is_symlink():
            entry.error(f"{SUBMISSION_NAME} is missing")
        return None
    if path.stat().st_size > MAX_SUBMISSION_BYTES:
        return None
    try:
        data = read_submission_json(path)
    except SubmissionError as error:
        entry.error(f"{SUBMISSION_NAME}: {str(error).split(': ', 1)[1]}")
        return None
    try:
        entry.submission = Submission.model_validate(data)
    except ValidationError as error:
        for line in error_lines(error, data):
            entry.error(line)
    entry.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return data


def _predictions(entry: EntryResult, files: dict[int, Path], checksums: dict[str, tuple[str, int]]
                 ) -> dict[int, dict[str, Any]]:
    """Check every seed's predictions file against ``submission.json`` and the family's format; returns the
    columns of the files that passed, by seed."""
    from ..io import sha256_file

    submission = entry.submission
    listed = {seed.seed: seed for seed in submission.seeds}
    for seed in sorted(set(files) - set(listed)):
        entry.error(f"{PREDICTIONS_DIR}/seed_{seed}.parquet: an extra file (seed {seed} is not in {SUBMISSION_NAME})")
    columns = {}
    for number, seed in sorted(listed.items()):
        path = files.get(number)
        declared = seed.predictions
        if path is None:
            if not (entry.folder / declared.path).is_symlink() and not _oversize(entry.folder / declared.path):
                entry.error(f"{declared.path} is missing (the test predictions of every seed are rescored)", number)
            continue
        size, digest = path.stat().st_size, sha256_file(path)
        if digest != declared.sha256:
            owner = checksums.get(digest)
            whose = ""
            if owner is not None:
                whose = (f" (it is seed {owner[1]}'s file)" if owner[0] == entry.name
                         else f" (it is the predictions file of {owner[0]} seed {owner[1]})")
            entry.error(f"{declared.path}: sha256 {digest[:12]}... does not match predictions.sha256 "
                        f"{declared.sha256[:12]}... in {SUBMISSION_NAME}{whose}", number)
            continue
        if size != declared.bytes:
            entry.error(f"{declared.path}: {size} bytes, but predictions.bytes is {declared.bytes}", number)
        problems = rules.declared_columns(submission.benchmark, declared.columns)
        table, read_problems = read_predictions(path, submission.benchmark, declared.rows)
        for problem in problems + read_problems:
            entry.error(problem, number)
        if table is not None and not problems and not read_problems:
            columns[number] = table
    return columns


def _oversize(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > MAX_PREDICTION_BYTES


# ------------------------------------------------------------------------------------------------- rescoring


def _rescore(entry: EntryResult, rescorer: Rescorer, columns: dict[int, dict[str, Any]]
             ) -> dict[int, dict[str, float]]:
    """Compare the identity and every seed's test metrics with the data built here; returns the rescored metrics."""
    submission = entry.submission
    result: DataCheck = rescorer.check(submission, entry.sha256, columns)
    if not result.available:
        entry.note(f"not rescored: {result.reason}. The other checks ran; rescore it where the data is: "
                   f"gnnbench leaderboard validate PATH --data-root DIR")
        return {}
    if result.error is not None:
        entry.error(result.error)
        return {}
    from .history import differences

    changed = list(differences(submission.dataset.identity, result.identity, "dataset.identity"))
    for path, claimed, here in changed[:3]:
        entry.error(f"{path} is {_brief(claimed)} in {SUBMISSION_NAME} but {_brief(here)} in the data built here "
                    "(a different dataset version)")
    if len(changed) > 3:
        entry.error(f"dataset.identity: {len(changed) - 3} more keys differ from the data built here")
    compared: set[str] = set()
    unscored: set[str] = set()
    rescored = {}
    for seed in submission.seeds:
        scores = result.seeds.get(seed.seed)
        if scores is None:
            continue  # its file failed a check above
        for problem in scores.errors:
            entry.error(problem, seed.seed)
        if scores.errors:
            continue
        rescored[seed.seed] = scores.metrics
        for key, claimed in sorted(seed.test.items()):
            if key not in scores.metrics:
                if re.fullmatch(UNRESCORABLE[submission.benchmark], key):
                    unscored.add(f"test.{key}")
                else:
                    entry.error(f"test.{key} is not a metric the evaluator computes from these predictions and "
                                "hyperparameters", seed.seed)
                continue
            compared.add(f"test.{key}")
            if not matches(claimed, scores.metrics[key]):
                entry.error(f"test.{key} is {_pair(claimed, scores.metrics[key])}", seed.seed)
        for key, value in sorted(scores.metrics.items()):
            if key not in seed.test and key not in scores.optional and value == value:  # finite, left out
                entry.error(f"test.{key} is missing from {SUBMISSION_NAME} (the predictions score {value:.6g})",
                            seed.seed)
    entry.rescored = len(rescored) == len(submission.seeds)
    entry.rescored_seeds = len(rescored)
    entry.rescored_metrics = sorted(compared)
    if unscored:
        entry.note(f"not rescorable from the test predictions: {', '.join(sorted(unscored))} (the length suite's "
                   "other splits); valid.* metrics are never rescored (no validation predictions)")
    if result.cached:
        entry.note("rescoring results reused from the cache ($GNNBENCH_HOME/leaderboard/rescore)")
    return rescored


def _pair(claimed: float, rescored: float) -> str:
    digits = 4
    while digits < 17 and f"{claimed:.{digits}g}" == f"{rescored:.{digits}g}":
        digits += 2
    return f"{claimed:.{digits}g} in {SUBMISSION_NAME} but the predictions score {rescored:.{digits}g}"


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ------------------------------------------------------------------------------------------------ duplicates


def _duplicates(entries: list[EntryResult], scores: dict[str, dict[int, dict[str, float]]]) -> None:
    """Two submissions of one task and method; identical prediction files in different submissions or seeds
    (unless the predictions are perfect: a perfect prediction is the same for every method)."""
    from .schema import slug

    by_method: dict[tuple[str, str], list[EntryResult]] = {}
    by_file: dict[str, list[tuple[EntryResult, int]]] = {}
    for entry in entries:
        if entry.submission is None:
            continue
        submission = entry.submission
        by_method.setdefault((submission.task_id, slug(submission.method.name)), []).append(entry)
        for seed in submission.seeds:
            by_file.setdefault(seed.predictions.sha256, []).append((entry, seed.seed))
    for (task, method), group in by_method.items():
        if len(group) > 1:
            for entry in group:
                others = ", ".join(other.name for other in group if other is not entry)
                entry.error(f"a duplicate submission: {others} is also method {method!r} on {task}")
    for checksum, group in by_file.items():
        if len(group) < 2:
            continue
        perfect = all(scores.get(entry.name, {}).get(seed, {}).get("score") == 1.0 and
                      entry.submission.higher_is_better for entry, seed in group)
        for entry, seed in group:
            others = ", ".join(f"seed {s}" if other is entry else f"{other.name} seed {s}"
                               for other, s in group if (other, s) != (entry, seed))
            if perfect:
                entry.note(f"seed {seed}: predictions identical to {others} (perfect predictions: allowed)")
            else:
                entry.error(f"predictions file identical to that of {others} (sha256 {checksum[:12]}...): "
                            "every seed's predictions are its own", seed)


# --------------------------------------------------------------------------------------------------- history


def _history(report: ValidationReport, raw: dict[str, Any], *, base: str | None, every_commit: bool,
             single: bool) -> None:
    from .history import check_history

    names = {entry.name: entry for entry in report.entries}
    if single:
        name = report.entries[0].name if report.entries else "."
        current = {".": raw.get(name)}
    else:
        current = raw
    result = check_history(report.root, current, base=base, every_commit=every_commit, single=single)
    for folder, message in result.errors:
        name = report.entries[0].name if single and report.entries else folder
        entry = names.get(name)
        if entry is not None:
            entry.error(message)
        else:
            report.errors.append(f"{name}: {message}")
    report.notes.extend(result.notes)
