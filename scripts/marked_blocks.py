"""Generated blocks of Markdown files (README tables, data-card tables) between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->``: one reader and one writer for every script that generates them."""

from __future__ import annotations

from collections.abc import Mapping


class MarkerError(ValueError):
    """A file lacks a block's markers, repeats them or has them in the wrong order."""


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of block ``name`` (e.g. ``"reference:road"``)."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def _split(text: str, name: str, where: str) -> tuple[str, str, str]:
    begin, end = markers(name)
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise MarkerError(f"{where}: needs the markers {begin} ... {end} exactly once, in that order (it lacks the "
                          f"markers, repeats them or reverses them)")
    head, rest = text.split(begin, 1)
    body, tail = rest.split(end, 1)
    return head, body, tail


def read_block(text: str, name: str, where: str) -> str:
    """The content of block ``name`` (stripped)."""
    return _split(text, name, where)[1].strip()


def replace_blocks(text: str, blocks: Mapping[str, str], where: str) -> str:
    """``text`` with each block ``name`` holding ``blocks[name]``."""
    for name, body in blocks.items():
        head, _, tail = _split(text, name, where)
        begin, end = markers(name)
        text = f"{head}{begin}\n{body}\n{end}{tail}"
    return text
