"""Importing DGL for the DGL twins: "DGL missing" and "DGL installed but broken" are different errors.

DGL's newest release on PyPI for Linux, 2.1.0, imports only with torch 2.0.0-2.2.1 (its compiled GraphBolt
library ships for those versions alone), torchdata < 0.8 (0.8 removed ``torchdata.datapipes``, which
``import dgl`` needs) and, through torch 2.2, NumPy < 2. That is the one environment the DGL twins support;
the ``gnnbench[dgl]`` extra pins it and CI tests it (``.ci/run``). Release notes of the removal:
https://github.com/pytorch/data/releases/tag/v0.8.0
"""

from __future__ import annotations

import importlib
import re
from importlib import metadata
from types import ModuleType

#: The supported DGL environment, as a reader sees it (pinned by the ``gnnbench[dgl]`` extra).
SUPPORTED_ENVIRONMENT = "torch 2.0-2.2.1 (tested: 2.2.1), dgl 2.1.0, torchdata < 0.8 (tested: 0.7.1), numpy < 2"
INSTALL_HINT = ('install it in a fresh virtual environment with `pip install "gnnbench[dgl]"` (from a clone: '
                '`pip install ".[dgl]"`), which resolves to that set; see the README section "Installing"')


class DGLMissingError(ModuleNotFoundError):
    """DGL is not installed."""


class DGLBrokenError(ImportError):
    """DGL is installed but ``import dgl`` fails (usually a dependency outside the supported environment)."""


def import_dgl() -> ModuleType:
    """``import dgl`` (and ``dgl.data``), or a :class:`DGLMissingError` / :class:`DGLBrokenError` saying why not."""
    try:
        dgl = importlib.import_module("dgl")
        importlib.import_module("dgl.data")
    except Exception as error:  # DGL's import also fails with OSError, FileNotFoundError, AttributeError, ...
        if isinstance(error, ModuleNotFoundError) and error.name == "dgl":
            raise DGLMissingError(
                f"gnnbench.datasets.dgl needs DGL, which is not installed. Supported environment: "
                f"{SUPPORTED_ENVIRONMENT}; {INSTALL_HINT}.", name="dgl") from error
        causes = _likely_causes()
        raise DGLBrokenError(
            f"DGL {_version('dgl') or '(version unknown)'} is installed but `import dgl` fails: "
            f"{type(error).__name__}: {error}. " + (f"Likely cause: {'; '.join(causes)}. " if causes else "")
            + f"Installed: {_installed()}. Supported environment: {SUPPORTED_ENVIRONMENT}; {INSTALL_HINT}.",
            name="dgl") from error
    return dgl


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    """The leading numeric release of a version string ("2.2.1+cpu" -> (2, 2, 1))."""
    match = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def _installed() -> str:
    return ", ".join(f"{name} {_version(name) or 'not installed'}" for name in ("dgl", "torch", "torchdata", "numpy"))


def _likely_causes() -> list[str]:
    """The installed versions that fall outside the supported environment, each with its consequence."""
    causes = []
    torch, torchdata, numpy = (_version(name) for name in ("torch", "torchdata", "numpy"))
    if torchdata is not None and _release(torchdata) >= (0, 8):
        causes.append(f"torchdata {torchdata} (0.8 removed torchdata.datapipes, which DGL 2.1 imports)")
    if torch is not None and not (2, 0) <= _release(torch) <= (2, 2, 1):
        causes.append(f"torch {torch} (DGL 2.1's GraphBolt library exists for torch 2.0.0-2.2.1 only)")
    if numpy is not None and _release(numpy) >= (2,):
        causes.append(f"numpy {numpy} (torch <= 2.2 was built for NumPy 1)")
    return causes
