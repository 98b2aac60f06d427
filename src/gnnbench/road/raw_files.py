"""Errors for damaged raw downloads: the file's path, what is wrong, and the command that downloads it again."""

from __future__ import annotations

import os
from pathlib import Path


class CorruptRawFileError(ValueError):
    """A downloaded raw file (crash pages, their listing, the road network, an HPMS layer) is missing or damaged."""


def download_command(raw_dir: str | os.PathLike) -> str:
    """``gnnbench download road --state CODE`` for the raw files under ``raw_dir`` (``ROOT/raw/CODE``, or any
    folder below it), with ``--root`` unless ROOT is the default."""
    from .manifest import root_option

    path = Path(raw_dir).absolute()
    parts = path.parts
    if "raw" not in parts:
        raise ValueError(f"{raw_dir} is not under a road data directory's raw/ folder")
    index = len(parts) - 1 - parts[::-1].index("raw")  # the innermost raw/ folder: ROOT/raw/CODE/...
    if index + 1 >= len(parts):
        raise ValueError(f"{raw_dir} names no state below raw/")
    root, code = Path(*parts[:index]), parts[index + 1]
    return f"gnnbench download road --state {code}" + root_option(root)


def message(path: str | os.PathLike, reason: str, raw_dir: str | os.PathLike) -> str:
    """``path``: ``reason``; then how to download it again (the exact command when ``raw_dir`` lies under a road
    data directory's ``raw/CODE``, else the command's form)."""
    try:
        command = download_command(raw_dir)
    except ValueError:
        command = "gnnbench download road --state STATE --root ROOT"
    return f"{path}: {reason}; download it again with `{command}`"


def corrupt(path: str | os.PathLike, reason: str, raw_dir: str | os.PathLike) -> CorruptRawFileError:
    """The error for a damaged ``path`` (under ``raw_dir``): ``reason``, then how to download it again."""
    return CorruptRawFileError(message(path, reason, raw_dir))
