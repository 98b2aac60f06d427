"""The leaderboard's git history: no result is removed or changed once it is committed.

Compared with a base commit (default ``HEAD``: what a pull request or the working tree changes), and with
``every_commit`` for every commit that touched the submissions against its parent (CI on a clean clone):

* no submission folder is removed (a folder moved because its method was renamed is followed by its prediction
  checksums);
* no seed is removed, and no field of a committed seed changes (metrics, steps, times, Hessian record, prediction
  checksum);
* the result-defining fields stay as committed: benchmark, task, dataset (identity included), metric, parameters,
  hyperparameters, config checksum, gnnbench version, budget, hardware.

The method's metadata (``method``: name, description, authors, contact, code URL, paper, external data) and the
submission date may change; seeds may be added (``num_seeds``, ``summary`` and ``training_seconds`` follow them).
A commit whose message carries a ``Leaderboard-Change: <reason>`` trailer (maintainers only, e.g. a baseline
re-run after a fix, reviewed in its pull request) is reported as a note instead.

Git runs through ``subprocess`` on committed objects only (``ls-tree``, ``cat-file``, ``log``): the working tree
and the index are never touched.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schema import SUBMISSION_NAME

logger = logging.getLogger(__name__)

#: Top-level fields that may change after a submission is committed (the rest are frozen).
MUTABLE = frozenset({"method", "submitted", "summary", "num_seeds", "training_seconds", "seeds"})
TRAILER = "Leaderboard-Change:"
_SHOWN = 3  # differences named per field; the rest are counted


@dataclass
class HistoryResult:
    """Findings as ``(submission folder, message)``; ``notes`` say what could not be checked or was exempt."""

    errors: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class GitError(RuntimeError):
    """A git command failed."""


def check_history(root: str | Path, current: Mapping[str, Any | None], *, base: str | None = "HEAD",
                  every_commit: bool = False, single: bool = False) -> HistoryResult:
    """Compare the submissions under ``root`` (``current``: folder -> parsed ``submission.json``, ``None`` when it
    does not parse) with ``base`` and, with ``every_commit``, every commit that touched ``root`` with its parent.

    ``single``: ``root`` is one submission folder (keyed ``"."``). Outside a git repository: a note."""
    result = HistoryResult()
    root = Path(root).resolve()
    existing = root if root.exists() else next((p for p in root.parents if p.exists()), Path("/"))
    try:
        top = Path(_git(existing, "rev-parse", "--show-toplevel").strip()).resolve()
    except (GitError, OSError) as error:
        result.notes.append(f"history not checked: {root} is not in a git repository ({_first_line(error)})")
        return result
    prefix = root.relative_to(top).as_posix() if root != top else ""
    repo = _Repo(top, prefix, single)
    if base is not None:
        if not repo.has_commit(base):
            result.notes.append(f"history not checked against {base}: no such commit (a repository without commits?)")
        else:
            _compare(repo.snapshot(base), dict(current), f"since {base}", result.errors, result.notes)
    if every_commit:
        _every_commit(repo, result)
    return result


def _every_commit(repo: _Repo, result: HistoryResult) -> None:
    commits = repo.log()
    shallow = repo.shallow_commits()
    for sha, parents, message in commits:
        label = f"in commit {sha[:10]}"
        if sha in shallow or (parents and not repo.has_commit(parents[0])):
            result.notes.append(f"history before commit {sha[:10]} is not in this clone (shallow); fetch the whole "
                                "history (git fetch --unshallow) to check it")
            continue
        if not parents:
            continue  # the first commit only adds
        errors: list[tuple[str, str]] = []
        _compare(repo.snapshot(parents[0]), repo.snapshot(sha), label, errors, result.notes)
        reason = _trailer(message)
        if errors and reason is not None:
            result.notes.append(f"commit {sha[:10]} changes committed results under '{TRAILER} {reason}': "
                                + "; ".join(f"{folder}: {text}" for folder, text in errors))
        else:
            result.errors.extend(errors)
    count = len(commits)
    result.notes.append(f"history: {count} commit{'s' if count != 1 else ''} touching the submissions checked")


def _trailer(message: str) -> str | None:
    for line in message.splitlines():
        if line.startswith(TRAILER):
            return line[len(TRAILER):].strip() or "(no reason given)"
    return None


# ------------------------------------------------------------------------------------------------ comparison


def _compare(old: Mapping[str, Any], new: Mapping[str, Any | None], label: str, errors: list[tuple[str, str]],
             notes: list[str]) -> None:
    """Append ``(folder, message)`` for every committed result of ``old`` that ``new`` removes or changes."""
    for folder, before in sorted(old.items()):
        after = new.get(folder)
        if folder not in new:
            moved = _moved(before, old, new)
            if moved is None:
                errors.append((folder, f"removed {label}; committed results are never removed from the board"))
                continue
            notes.append(f"{folder}: moved to {moved} {label} (same predictions)")
            folder, after = moved, new[moved]
        if not isinstance(before, Mapping) or not isinstance(after, Mapping):
            continue  # a file that does not parse is reported by the schema check
        for key in sorted(set(before) | set(after)):
            if key in MUTABLE:
                continue
            _report(errors, folder, "", key, before.get(key), after.get(key), label)
        old_seeds, new_seeds = _seeds(before), _seeds(after)
        for seed, entry in sorted(old_seeds.items()):
            if seed not in new_seeds:
                errors.append((folder, f"seed {seed}: removed {label}; committed seeds are never removed"))
                continue
            for key in sorted(set(entry) | set(new_seeds[seed])):
                _report(errors, folder, f"seed {seed}: ", key, entry.get(key), new_seeds[seed].get(key), label)


def _report(errors: list[tuple[str, str]], folder: str, prefix: str, key: str, before: Any, after: Any,
            label: str) -> None:
    changes = list(differences(before, after, key))
    for path, old, new in changes[:_SHOWN]:
        errors.append((folder, f"{prefix}{path} changed {label} ({_short(old)} -> {_short(new)})"))
    if len(changes) > _SHOWN:
        errors.append((folder, f"{prefix}{key}: {len(changes) - _SHOWN} more changes {label}"))


def _seeds(data: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    seeds = data.get("seeds")
    if not isinstance(seeds, list):
        return {}
    return {entry["seed"]: entry for entry in seeds
            if isinstance(entry, Mapping) and isinstance(entry.get("seed"), int)}


def _checksums(data: Any) -> set[str]:
    if not isinstance(data, Mapping):
        return set()
    return {entry.get("predictions", {}).get("sha256") for entry in _seeds(data).values()
            if isinstance(entry.get("predictions"), Mapping)} - {None}


def _moved(before: Any, old: Mapping[str, Any], new: Mapping[str, Any | None]) -> str | None:
    """The new folder that holds every prediction of ``before`` (a renamed method), if one does."""
    checksums = _checksums(before)
    if not checksums:
        return None
    for folder, after in sorted(new.items()):
        if folder not in old and checksums <= _checksums(after):
            return folder
    return None


def differences(old: Any, new: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """``(path, old, new)`` for every leaf that differs (``a.b[2].c``; a missing key is ``None``)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for key in sorted(set(old) | set(new), key=str):
            yield from differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new)):
            yield from differences(a, b, f"{path}[{index}]")
    elif not _equal(old, new):
        yield path, old, new


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                             and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def _short(value: Any) -> str:
    text = "absent" if value is None else (repr(value) if not isinstance(value, (dict, list)) else
                                            json.dumps(value, sort_keys=True))
    return text if len(text) <= 70 else text[:67] + "..."


# ------------------------------------------------------------------------------------------------------ git


class _Repo:
    """Read-only access to the committed submissions of one repository."""

    def __init__(self, top: Path, prefix: str, single: bool) -> None:
        self.top, self.prefix, self.single = top, prefix, single
        self._blobs: dict[str, Any] = {}

    def git(self, *args: str) -> str:
        return _git(self.top, *args)

    def has_commit(self, ref: str) -> bool:
        try:
            self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        except GitError:
            return False
        return True

    def shallow_commits(self) -> set[str]:
        """Commits whose parents a shallow clone left out."""
        path = self.top / self.git("rev-parse", "--git-path", "shallow").strip()  # relative to top, or absolute
        return set(path.read_text().split()) if path.is_file() else set()

    def snapshot(self, ref: str) -> dict[str, Any]:
        """Folder (``task/method``, or ``"."`` for a single submission) -> parsed ``submission.json`` at ``ref``."""
        listing = self.git("ls-tree", "-r", "-z", "--full-tree", ref, "--", self.prefix or ".")
        depth = 0 if self.single else 2
        found = {}
        for line in filter(None, listing.split("\0")):
            meta, path = line.split("\t", 1)
            relative = path[len(self.prefix) + 1:] if self.prefix else path
            parts = relative.split("/")
            if len(parts) != depth + 1 or parts[-1] != SUBMISSION_NAME:
                continue
            blob = meta.split()[2]
            found["/".join(parts[:-1]) or "."] = self._blob(blob)
        return found

    def _blob(self, sha: str) -> Any:
        if sha not in self._blobs:
            try:
                self._blobs[sha] = json.loads(self.git("cat-file", "blob", sha), parse_constant=float)
            except ValueError:  # not JSON at that commit: nothing to compare it with
                self._blobs[sha] = None
        return self._blobs[sha]

    def log(self) -> list[tuple[str, list[str], str]]:
        """Commits that touched the submissions, oldest first: ``(sha, parents, message)``."""
        text = self.git("log", "--reverse", "--format=%H%x1f%P%x1f%B%x1e", "--", self.prefix or ".")
        commits = []
        for record in filter(None, (chunk.strip("\n") for chunk in text.split("\x1e"))):
            sha, parents, message = record.split("\x1f", 2)
            commits.append((sha, parents.split(), message))
        return commits


def _git(cwd: Path, *args: str) -> str:
    try:
        completed = subprocess.run(["git", "-c", "core.quotePath=false", *args], cwd=cwd, capture_output=True,
                                   text=True, env=_environment(), check=False)
    except FileNotFoundError as error:
        raise GitError("git is not installed") from error
    if completed.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {completed.stderr.strip() or completed.returncode}")
    return completed.stdout


def _environment() -> dict[str, str]:
    import os

    environment = dict(os.environ)
    environment["GIT_OPTIONAL_LOCKS"] = "0"  # read-only: never refresh the index
    environment.pop("GIT_DIR", None)
    environment.pop("GIT_WORK_TREE", None)
    return environment


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
