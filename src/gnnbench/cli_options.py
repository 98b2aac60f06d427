"""Option helpers of the ``gnnbench`` command: one data-directory option, checked numbers, deprecated names."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .arguments import check_float, check_int


class DeprecatedOption(argparse.Action):
    """An old option name kept for one release: says so on stderr and stores into the new option's value."""

    def __init__(self, option_strings: list[str], dest: str, replacement: str, **kwargs: object) -> None:
        self.replacement = replacement
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(f"gnnbench: warning: {option_string} is deprecated and will be removed in the next release; "
              f"use {self.replacement}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def usage(parser: argparse.ArgumentParser) -> int:
    """A command group called without its sub-command: print its help, exit 2."""
    parser.print_help()
    return 2


def root_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--root DIR`` (every command that takes a data directory), and the deprecated ``--home`` alias."""
    parser.add_argument("--root", type=Path, default=None, metavar="DIR", help=help)
    parser.add_argument("--home", type=Path, dest="root", action=DeprecatedOption, replacement="--root",
                        help=argparse.SUPPRESS)


def number(kind: type, name: str, **bounds: float) -> Callable[[str], int | float]:
    """An argparse ``type`` that parses ``kind`` and checks it with gnnbench.arguments (the error names ``name``)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__} value: {text!r}") from None
        try:
            return check_int(name, value, **bounds) if kind is int else check_float(name, value, **bounds)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = kind.__name__
    return parse
