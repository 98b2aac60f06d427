"""What a run ran on: package and dependency versions, hardware, the device, the git commit of the source."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from .. import __version__

#: Distributions whose versions are recorded (those not installed are recorded as ``None``).
PACKAGES = ("torch", "torch-geometric", "numpy", "scipy", "numba", "pyarrow", "pandas", "dgl", "dask",
            "distributed", "jax", "dm-clrs")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def git_commit(path: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``path`` (default: this package's source), or ``None``
    when it is not in one (an installed wheel) or git is unavailable."""
    directory = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "."], cwd=directory, capture_output=True,
                                 text=True, timeout=10)  # not some other repository the package happens to sit in
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
                                timeout=10)
        if tracked.returncode != 0 or commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=directory,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def device_info(device: str | torch.device) -> dict[str, Any]:
    """The training device: its type and, for CUDA, name, memory and capability."""
    device = torch.device(device)
    info: dict[str, Any] = {"device": str(device), "type": device.type}
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        properties = torch.cuda.get_device_properties(index)
        info.update(name=properties.name, memory_bytes=int(properties.total_memory),
                    capability=f"{properties.major}.{properties.minor}", cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def collect_environment(device: str | torch.device = "cpu") -> dict[str, Any]:
    """The environment of this process, JSON-ready."""
    return {
        "gnnbench": __version__,
        "git": git_commit(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "packages": {package: _version(package) for package in PACKAGES},
        "hardware": {"machine": platform.machine(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
                     "torch_threads": torch.get_num_threads(), "memory_bytes": _memory_bytes(),
                     "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0},
        "device": device_info(device),
    }
