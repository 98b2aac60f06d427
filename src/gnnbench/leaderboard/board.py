"""The board's content, shared by the Markdown and the HTML renderings: one ranked table per task.

Every number is computed here from the submissions' per-seed values (the values the validator rescored), and every
cell is formatted here once, so the two renderings show the same text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .schema import BENCHMARKS, Submission

#: The Hessian bound the board shows beside the measured generalisation gap (Ju, Li & Zhang 2022, quadratic form).
BOUND = "ju_li_zhang_2022"
RESCORED_MARK = "✓"
BENCHMARK_TITLES = {"algo": "Algorithmic reasoning (algo)", "road": "Road accidents (road)"}


@dataclass(frozen=True)
class BoardEntry:
    """One submission on the board: its parsed ``submission.json``, its folder, and whether the validator recomputed
    its test scores from its predictions."""

    submission: Submission
    folder: Path
    rescored: bool


@dataclass(frozen=True)
class Stat:
    """Mean and unbiased standard deviation of one value over seeds (``std`` is None for one seed)."""

    mean: float
    std: float | None


@dataclass(frozen=True)
class Cell:
    """One table cell: the value it sorts (and is plotted) by, ``None`` when missing, and the text shown."""

    value: float | str | None
    text: str


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    numeric: bool


@dataclass(frozen=True)
class Row:
    rank: int
    entry: BoardEntry
    test: Stat
    valid: Stat
    trace: Stat | None  # the Hessian trace over seeds; None when a seed has no Hessian record
    bound: Stat | None  # the bound BOUND over seeds
    gap: Stat | None  # the measured generalisation gap over seeds
    seconds: float  # mean training time per seed

    @property
    def submission(self) -> Submission:
        return self.entry.submission


@dataclass(frozen=True)
class TaskTable:
    """The ranked submissions of one task (``benchmark/dataset/task``)."""

    task_id: str
    benchmark: str
    dataset: str
    task: str
    synthetic: bool
    metric: str
    higher_is_better: bool
    rows: tuple[Row, ...]

    @property
    def direction(self) -> str:
        return _direction(self.higher_is_better)

    def columns(self) -> tuple[Column, ...]:
        return (
            Column("rank", "Rank", True), Column("method", "Method", False),
            Column("test", f"Test {self.metric}", True), Column("valid", f"Valid {self.metric}", True),
            Column("seeds", "Seeds", True), Column("parameters", "Parameters", True),
            Column("trace", "Hessian trace", True), Column("bound", "Bound vs gap", True),
            Column("seconds", "Time per seed", True), Column("hardware", "Hardware", False),
            Column("budget", "Budget", False), Column("rescored", "Rescored", True),
        )


def tables(entries: Iterable[BoardEntry]) -> list[TaskTable]:
    """One :class:`TaskTable` per task, ordered by benchmark (algo, road), dataset and task.

    Raises ValueError when the submissions of one task disagree on the metric or its direction."""
    by_task: dict[str, list[BoardEntry]] = {}
    for entry in entries:
        by_task.setdefault(entry.submission.task_id, []).append(entry)
    result = []
    for task_entries in by_task.values():
        first = task_entries[0].submission
        for entry in task_entries[1:]:
            other = entry.submission
            if (other.metric, other.higher_is_better) != (first.metric, first.higher_is_better):
                raise ValueError(
                    f"task {first.task_id}: {entry.folder} scores {other.metric!r} "
                    f"({_direction(other.higher_is_better)}) but {task_entries[0].folder} scores {first.metric!r} "
                    f"({_direction(first.higher_is_better)})")
        result.append(TaskTable(
            task_id=first.task_id, benchmark=first.benchmark, dataset=first.dataset.name, task=first.task,
            synthetic=any(entry.submission.dataset.synthetic for entry in task_entries), metric=first.metric,
            higher_is_better=first.higher_is_better, rows=ranked(task_entries)))
    order = {name: i for i, name in enumerate(BENCHMARKS)}
    return sorted(result, key=lambda table: (order.get(table.benchmark, len(order)), table.benchmark,
                                             table.dataset, table.task))


def ranked(entries: Sequence[BoardEntry]) -> tuple[Row, ...]:
    """The rows of one task, best test mean first (the submissions' own direction); ties by the validation mean,
    then by method name. Entries equal in both means share a rank (1, 2, 2, 4)."""
    rows = [_row(entry) for entry in entries]
    if not rows:
        return ()
    sign = -1.0 if entries[0].submission.higher_is_better else 1.0
    rows.sort(key=lambda row: (sign * row.test.mean, sign * row.valid.mean, row.submission.method.name.casefold(),
                               row.submission.method.name, str(row.entry.folder)))
    result: list[Row] = []
    for i, row in enumerate(rows):
        tied = result and (result[-1].test.mean, result[-1].valid.mean) == (row.test.mean, row.valid.mean)
        result.append(_with_rank(row, result[-1].rank if tied else i + 1))
    return tuple(result)


def _with_rank(row: Row, rank: int) -> Row:
    return Row(rank, row.entry, row.test, row.valid, row.trace, row.bound, row.gap, row.seconds)


def _row(entry: BoardEntry) -> Row:
    seeds = entry.submission.seeds
    hessians = [seed.hessian for seed in seeds]
    complete = all(hessian is not None for hessian in hessians)
    bounds = [hessian.bounds.get(BOUND) for hessian in hessians] if complete else []
    return Row(
        rank=0, entry=entry,
        test=stat(seed.test["score"] for seed in seeds), valid=stat(seed.valid["score"] for seed in seeds),
        trace=stat(hessian.trace for hessian in hessians) if complete else None,
        bound=stat(bound.bound_on_gap for bound in bounds) if complete and all(bounds) else None,
        gap=stat(hessian.measured_gap for hessian in hessians) if complete else None,
        seconds=math.fsum(seed.training_seconds for seed in seeds) / len(seeds))


def stat(values: Iterable[float]) -> Stat:
    """Mean and unbiased standard deviation (divisor n - 1, as the harness's summaries)."""
    from ..harness.record import mean_std

    mean, std = mean_std(values)
    return Stat(mean, std)


# ---------------------------------------------------------------------------------------------------- cells


def cells(row: Row) -> dict[str, Cell]:
    """The cells of a row by column key (the method cell's text is the method name; links are the renderer's)."""
    submission = row.submission
    bound = None if row.bound is None or row.gap is None else row.bound.mean
    return {
        "rank": Cell(row.rank, str(row.rank)),
        "method": Cell(submission.method.name, submission.method.name),
        "test": Cell(row.test.mean, format_score(row.test)),
        "valid": Cell(row.valid.mean, format_score(row.valid)),
        "seeds": Cell(submission.num_seeds, str(submission.num_seeds)),
        "parameters": Cell(submission.parameters, f"{submission.parameters:,}"),
        "trace": Cell(None if row.trace is None else row.trace.mean,
                      "–" if row.trace is None else format_quantity(row.trace.mean)),
        "bound": Cell(bound, format_bound(row.bound, row.gap)),
        "seconds": Cell(row.seconds, format_seconds(row.seconds)),
        "hardware": Cell(format_hardware(submission), format_hardware(submission)),
        "budget": Cell(submission.budget or "full", format_budget(submission.budget)),
        "rescored": Cell(1 if row.entry.rescored else 0, RESCORED_MARK if row.entry.rescored else ""),
    }


def format_score(value: Stat) -> str:
    """``0.7937 ± 0.0012`` (four decimals; two from 100 up); the mean alone for one seed."""
    decimals = 4 if abs(value.mean) < 100 else 2
    text = f"{value.mean:.{decimals}f}"
    return text if value.std is None else f"{text} ± {value.std:.{decimals}f}"


def format_quantity(value: float) -> str:
    """Three significant digits, exponents written short: ``0.0123``, ``456``, ``1.23e4``, ``-5e-5``."""
    text = f"{value:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def format_bound(bound: Stat | None, gap: Stat | None) -> str:
    """``0.12 vs 0.0314`` (bound vs measured gap, means over seeds), saying so when the bound is below the gap."""
    if bound is None or gap is None:
        return "–"
    text = f"{format_quantity(bound.mean)} vs {format_quantity(gap.mean)}"
    return f"{text} (below gap)" if bound.mean < gap.mean else text


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_hardware(submission: Submission) -> str:
    """``cuda: NVIDIA H200``, ``cpu: AMD EPYC 7B13 (16 cores)`` or the device alone."""
    hardware = submission.hardware
    if hardware.gpu:
        return f"{hardware.device}: {hardware.gpu}"
    if hardware.cpu:
        cores = f" ({hardware.cpu_count} cores)" if hardware.cpu_count else ""
        return f"{hardware.device}: {hardware.cpu}{cores}"
    return hardware.device


def format_budget(budget: str) -> str:
    """``full``, or the submission's own description of a reduced budget marked ``(reduced)``."""
    return f"{budget} (reduced)" if budget.strip() else "full"


def _direction(higher_is_better: bool) -> str:
    return "higher is better" if higher_is_better else "lower is better"
