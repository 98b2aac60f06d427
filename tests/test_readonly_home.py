"""An unwritable GNNBENCH_HOME fails at once in one line; compiled kernels never go into the installed package.

A home below a regular file cannot be created by anyone, root included; a ``chmod``-ed read-only home
is tried too where the tests do not run as root (root writes through permission bits).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gnnbench
from gnnbench.io import UnwritableHomeError, require_writable

PACKAGE = Path(gnnbench.__file__).parent
COMMANDS = {
    "quickstart": ["quickstart", "--no-progress"],
    "algo generate": ["algo", "generate", "bfs", "--split", "train", "--num-samples", "2", "-n", "4"],
    "build road": ["build", "road", "--state", "DEMO"],
    "download road": ["download", "road", "--state", "DEMO"],
    "import ml4roadsafety": ["import", "ml4roadsafety", "--state", "MA"],
    "run": ["run", "algo", "--algorithm", "bfs", "--seeds", "0"],
    "hessian diffusion": ["hessian", "diffusion", "--state", "DEMO"],  # a dataset that must build the demo region
}


def gnnbench_cli(arguments, home: Path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "GNNBENCH_HOME": str(home), **env}
    return subprocess.run([sys.executable, "-m", "gnnbench.cli", *arguments], capture_output=True, text=True,
                          env=environment, timeout=300)


@pytest.fixture
def home_below_a_file(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file where the home's parent should be\n")
    return blocker / "home"


def _assert_one_clear_line(result, home: Path, reason: str):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("gnnbench: error: cannot write to ") and str(home) in line, line
    assert f"GNNBENCH_HOME={home}" in line and reason in line, line


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_with_a_home_below_a_file_fails_in_one_line(home_below_a_file, command):
    result = gnnbench_cli(COMMANDS[command], home_below_a_file)
    _assert_one_clear_line(result, home_below_a_file, "is a file, not a directory")
    assert result.stdout == ""  # failed before any work, or any output


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes through permission bits; the home-below-a-file tests cover root")
@pytest.mark.parametrize("command", ["quickstart", "algo generate"])
def test_command_with_a_read_only_home_fails_in_one_line(tmp_path, command):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    try:
        result = gnnbench_cli(COMMANDS[command], home)
    finally:
        home.chmod(0o755)
    _assert_one_clear_line(result, home, "Permission denied")
    assert list(home.iterdir()) == []


def test_datasets_fail_before_work_with_the_same_line(home_below_a_file, monkeypatch):
    from gnnbench.datasets import AlgorithmicReasoningDataset, RoadAccidentDataset

    monkeypatch.setenv("GNNBENCH_HOME", str(home_below_a_file))
    for construct in (lambda: AlgorithmicReasoningDataset(None, "bfs", num_samples=2, n=4),
                      lambda: RoadAccidentDataset(state="DEMO")):
        with pytest.raises(UnwritableHomeError) as raised:
            construct()
        message = str(raised.value)
        assert "\n" not in message and str(home_below_a_file) in message
        assert f"GNNBENCH_HOME={home_below_a_file}" in message and "is a file, not a directory" in message


def test_require_writable_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("GNNBENCH_HOME", raising=False)
    target = tmp_path / "a" / "b"
    assert require_writable(target) == target and not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(UnwritableHomeError, match="GNNBENCH_HOME is not set"):
        require_writable(tmp_path / "file" / "x")


# --- compiled kernels ------------------------------------------------------------------------------------

COMPILE_ONE_KERNEL = textwrap.dedent("""
    import numpy as np
    from gnnbench.algo import rng

    key = np.zeros(2 * rng._N, dtype=np.uint32)
    rng._twist(key)  # compiled now: this cache is empty
    assert rng._twist.stats.cache_misses, "not compiled"
""")


def _numba_files_in_the_package() -> set[str]:
    """Files numba can leave in the package's ``__pycache__`` folders (anything but Python's own bytecode)."""
    return {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("__pycache__/*") if path.suffix != ".pyc"}


@pytest.mark.parametrize("home_kind", ["writable", "below_a_file"])
def test_compiling_kernels_writes_nothing_into_the_package(tmp_path, home_kind):
    if home_kind == "writable":
        home = tmp_path / "home"
    else:
        (tmp_path / "blocker").write_text("")
        home = tmp_path / "blocker" / "home"
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    before = _numba_files_in_the_package()
    environment = {**os.environ, "GNNBENCH_HOME": str(home), "TMPDIR": str(temporary),
                   "PYTHONDONTWRITEBYTECODE": "1"}
    environment.pop("NUMBA_CACHE_DIR", None)
    result = subprocess.run([sys.executable, "-c", COMPILE_ONE_KERNEL], capture_output=True, text=True,
                            env=environment, timeout=300)
    assert result.returncode == 0, result.stderr
    assert _numba_files_in_the_package() == before
    # the compiled kernel went where it belongs: the home's kernel cache, else the user's temporary directory
    where = home / "numba" if home_kind == "writable" else temporary
    assert any(where.rglob("rng._twist-*.nbi")), sorted(map(str, where.rglob("*")))
