"""The leaderboard's commands: ``gnnbench submit`` and ``gnnbench leaderboard validate|render`` (thin: they call
:mod:`gnnbench.leaderboard`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_options import usage


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add ``submit`` and ``leaderboard`` to the ``gnnbench`` command."""
    _submit_parser(commands)
    board = commands.add_parser(
        "leaderboard", help="validate, rescore and render the leaderboard's submissions",
        description="The leaderboard lives in this repository (leaderboard/submissions/). `validate` checks every "
                    "submission and recomputes its test scores from its predictions; `render` writes the board.")
    board_commands = board.add_subparsers(title="leaderboard commands", metavar="COMMAND")
    board.set_defaults(handler=lambda args, parser=board: usage(parser))
    _validate_parser(board_commands)
    _render_parser(board_commands)


# ----------------------------------------------------------------------------------------------------- submit


def _submit_parser(commands: argparse._SubParsersAction) -> None:
    submit = commands.add_parser(
        "submit", help="turn a harness run directory into a leaderboard submission",
        description="Write a submission folder (submission.json and every seed's test predictions with their "
                    "SHA-256) from a run directory of `gnnbench run ... --hessian`. Then run `gnnbench leaderboard "
                    "validate` and open a pull request (CONTRIBUTING.md).")
    submit.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory of `gnnbench run`")
    submit.add_argument("--method", required=True, help="method name as the board shows it (say 'external data' "
                                                        "in it when the method uses any)")
    submit.add_argument("--author", action="append", dest="authors", required=True, metavar="NAME",
                        help="an author (repeatable)")
    submit.add_argument("--contact", required=True, metavar="EMAIL", help="contact e-mail address")
    submit.add_argument("--code-url", required=True, metavar="URL", help="public code (a README with the command)")
    submit.add_argument("--paper", default=None, metavar="URL", help="paper or technical report")
    submit.add_argument("--description", default="", help="one or two sentences on the method")
    submit.add_argument("--external-data", default=None, metavar="WHAT",
                        help="data used beyond the benchmark's own (default: none)")
    submit.add_argument("--budget", default="", metavar="TEXT",
                        help="say so when the run used less than the benchmark's protocol, e.g. '300 steps, CPU'")
    submit.add_argument("--seeds", default=None, metavar="SEEDS", help="seeds to submit (default: every finished)")
    submit.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="submissions directory (default: leaderboard/submissions of this repository)")
    submit.add_argument("--overwrite", action="store_true", help="replace an existing submission folder")
    submit.set_defaults(handler=_submit)


def _submit(args: argparse.Namespace) -> int:
    from .harness.values import parse_seeds
    from .leaderboard.submit import submit

    method = {"name": args.method, "authors": args.authors, "contact": args.contact, "code_url": args.code_url,
              "paper": args.paper, "description": args.description,
              "external_data": args.external_data is not None,
              "external_data_description": args.external_data or ""}
    folder = submit(args.run_dir, method=method, out=args.out, budget=args.budget,
                    seeds=parse_seeds(args.seeds) if args.seeds else None, overwrite=args.overwrite)
    print(f"submission written to {folder}; next: gnnbench leaderboard validate {folder}")
    return 0


# --------------------------------------------------------------------------------------------------- validate


def _validate_parser(board_commands: argparse._SubParsersAction) -> None:
    """``gnnbench leaderboard validate [PATH] [--data-root DIR] [--base REF] [--history] [--no-rescore]``."""
    validate = board_commands.add_parser(
        "validate", help="check every submission and recompute its test scores from its predictions",
        description="Check each submission folder: its files (submission.json and predictions/seed_<k>.parquet "
                    "only, plain files within their size limits), the schema, the rules (seeds 0..n-1, at least "
                    "10 for road and 3 for algo tasks; metric ranges; versions; the summary's mean and unbiased "
                    "std), the predictions (sha256, columns, one row per key), duplicates, and that nothing "
                    "committed was removed or changed (git). Then RESCORE: every seed's test metrics are "
                    "recomputed from its predictions with gnnbench's evaluator against the test labels built "
                    "here, and the dataset identity is recomputed; any mismatch beyond rounding is an error. "
                    "Prints one line per submission; exits 1 on any error. See CONTRIBUTING.md.")
    validate.add_argument("path", type=Path, nargs="?", default=None, metavar="PATH",
                          help="a submissions directory (<task>/<method>/ folders) or one submission folder "
                               "(default: leaderboard/submissions of the repository you are in)")
    validate.add_argument("--data-root", "--root", dest="data_root", type=Path, default=None, metavar="DIR",
                          help="where road regions are built or downloaded (default: $GNNBENCH_HOME/road; the "
                               "DEMO region builds itself there offline). A real state's submission is rescored "
                               "only where its data is; elsewhere it is reported as not rescored")
    validate.add_argument("--base", default="HEAD", metavar="REF",
                          help="git commit to compare with: no committed submission, seed, metric, prediction "
                               "checksum or dataset identity may change (default: HEAD, i.e. what your working tree "
                               "changes; in a pull request's CI, e.g. origin/main)")
    validate.add_argument("--history", action="store_true",
                          help="also check every commit that touched the submissions against its parent (CI on a "
                               "clean clone with its whole history)")
    validate.add_argument("--no-rescore", dest="rescore", action="store_false",
                          help="skip the checks that need the data: dataset identity and rescoring")
    validate.add_argument("--no-cache", dest="cache", action="store_false",
                          help="rescore even when $GNNBENCH_HOME/leaderboard/rescore holds this submission's result")
    validate.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    from .leaderboard.validate import validate

    report = validate(args.path, data_root=args.data_root, base=args.base or None, history=args.history,
                      rescore=args.rescore, cache=args.cache)
    for message in report.errors:
        print(f"error: {message}")
    for entry in report.entries:
        if entry.rescored:
            done = f"rescored {entry.rescored_seeds} seeds x {len(entry.rescored_metrics)} metrics"
        elif entry.submission is not None and args.rescore and not entry.errors:
            done = "not rescored (its data is not here: see the note)"
        else:
            done = "not rescored"
        status = "" if entry.ok else f"{len(entry.errors)} error{'s' if len(entry.errors) != 1 else ''}; "
        print(f"{'ok    ' if entry.ok else 'FAILED'}  {entry.name}: {status}{done}")
        for message in entry.errors:
            print(f"    {message}")
        for message in entry.notes:
            print(f"    note: {message.removeprefix(entry.name + ': ')}")
    for message in report.notes:
        print(f"note: {message}")
    failed = sum(not entry.ok for entry in report.entries)
    others = len(report.errors)
    print(f"{len(report.entries)} submissions in {report.root}: {len(report.entries) - failed} ok, {failed} with "
          f"errors{'' if not others else f', {others} other error' + ('s' if others != 1 else '')}")
    return 0 if report.ok else 1


# ----------------------------------------------------------------------------------------------------- render


def _render_parser(board_commands: argparse._SubParsersAction) -> None:
    """``gnnbench leaderboard render [PATH] [--out DIR] [--check] [--data-root DIR] [--no-rescore]``."""
    render = board_commands.add_parser(
        "render", help="validate every submission, then write the board (README.md and index.html)",
        description="Validate and rescore every submission (as `gnnbench leaderboard validate`); when all are "
                    "valid, write the board: README.md (one ranked table per task) and index.html (sortable tables "
                    "and plots, one self-contained file that works offline). Nothing is written when a submission "
                    "is invalid.")
    render.add_argument("path", type=Path, nargs="?", default=None, metavar="PATH",
                        help="the submissions directory (default: leaderboard/submissions of this repository)")
    render.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where to write README.md and index.html (default: the parent of PATH, leaderboard/)")
    render.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the files in --out differ from a fresh render (for CI)")
    render.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                        help="where the rescoring finds or builds the road regions (default: $GNNBENCH_HOME/road)")
    render.add_argument("--no-rescore", action="store_true",
                        help="skip recomputing the test scores from the predictions (entries are then not marked "
                             "rescored)")
    render.set_defaults(handler=_render)


def _render(args: argparse.Namespace) -> int:
    from .leaderboard.render import BoardEntry, render, stale_files
    from .leaderboard.schema import SUBMISSION_NAME
    from .leaderboard.submit import default_submissions_dir
    from .leaderboard.validate import validate

    path = args.path if args.path is not None else default_submissions_dir()
    if (path / SUBMISSION_NAME).exists():
        raise ValueError(f"{path} is one submission; render takes the submissions directory (leaderboard/submissions)")
    if not path.is_dir():
        raise ValueError(f"{path}: no submissions directory; run inside a clone of the gnnbench repository (its "
                         "leaderboard/submissions) or give the submissions directory as PATH")
    report = validate(path, data_root=args.data_root, rescore=not args.no_rescore)
    if not report.ok:
        for message in report.all_errors():
            print(message, file=sys.stderr)
        invalid = sum(not entry.ok for entry in report.entries)
        print(f"gnnbench leaderboard render: nothing written: {invalid} of {len(report.entries)} submissions are "
              f"invalid{f', {len(report.errors)} other errors' if report.errors else ''} (see above; `gnnbench "
              "leaderboard validate` explains)", file=sys.stderr)
        return 1
    entries = [BoardEntry(entry.submission, entry.folder, entry.rescored) for entry in report.entries]
    out = args.out if args.out is not None else path.resolve().parent
    if args.check:
        stale = stale_files(entries, out)
        for file in stale:
            print(f"{file} is {'out of date' if file.exists() else 'missing'}: run `gnnbench leaderboard render` and "
                  "commit it", file=sys.stderr)
        if not stale:
            print(f"the board in {out} is up to date ({len(entries)} submissions)")
        return 1 if stale else 0
    markdown, page = render(entries, out)
    print(f"wrote {markdown} and {page} ({len(entries)} submissions)")
    return 0
