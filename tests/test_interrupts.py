"""Compiling the kernels once, visibly, and Ctrl-C: the first one stops the command cleanly, with nothing
half-written that looks complete, and the next run compiles and works."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gnnbench.algo import compilation
from gnnbench.algo.compilation import compile_kernels, interruptible, kernels_compiled

ANNOUNCEMENT = "gnnbench: compiling the bfs kernels once"


def _swallowed_interrupt() -> None:
    """Raise KeyboardInterrupt inside a ctypes callback, as a Ctrl-C landing in llvmlite's hooks does:
    ctypes reports it as "Exception ignored on calling ctypes callback" and carries on."""

    def callback() -> None:
        raise KeyboardInterrupt

    ctypes.CFUNCTYPE(None)(callback)()


def test_an_interrupt_swallowed_by_a_ctypes_callback_is_raised_when_the_block_ends(capfd):
    reached = False
    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            _swallowed_interrupt()
            reached = True  # the callback itself could not stop the code ...
    assert reached  # ... so the block raises it when it ends
    assert "Exception ignored" not in capfd.readouterr().err
    with interruptible():  # nothing pending any more: a later block runs through
        pass


def test_a_swallowed_interrupt_stops_numba_at_its_next_compiler_pass():
    from numba import njit

    @njit(cache=False)
    def add_one(x):
        return x + 1

    with pytest.raises(KeyboardInterrupt), interruptible():
        _swallowed_interrupt()
        add_one(1)  # compiles: the first compiler pass raises the interrupt
    assert add_one.signatures == []  # stopped before anything was compiled
    assert add_one(1) == 2  # and numba still works afterwards


def test_ctrl_c_in_the_block_waits_for_a_clean_point_and_a_second_one_does_not():
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("Python's own SIGINT handler is not installed here")
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("carried on to a clean point")  # noted, not raised in the middle of this
    assert steps == ["carried on to a clean point"]
    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            os.kill(os.getpid(), signal.SIGINT)
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.5)
            except KeyboardInterrupt:
                steps.append("the second stopped at once")
                raise
    assert steps[-1] == "the second stopped at once"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_compile_kernels_marks_each_algorithm_once_compiled(tmp_path, monkeypatch):
    monkeypatch.setattr(compilation, "_marker", lambda name: tmp_path / "markers" / f"{name}.json")
    assert not kernels_compiled("bfs")
    seconds = compile_kernels(["bfs", "bfs"])
    assert list(seconds) == ["bfs"] and seconds["bfs"] > 0
    record = json.loads((tmp_path / "markers" / "bfs.json").read_text())
    assert record["algorithm"] == "bfs" and record["seconds"] == seconds["bfs"]
    assert kernels_compiled("bfs") and compile_kernels(["bfs"]) == {}  # done once
    assert [path.name for path in (tmp_path / "markers").iterdir()] == ["bfs.json"]  # no temporary left
    with pytest.raises(ValueError, match="unknown algorithm 'nope'.*dijkstra"):
        compile_kernels(["nope"])


def test_the_marker_lies_beside_numbas_cache_of_the_algorithm(tmp_path):
    from gnnbench.algo.algorithms import IMPLEMENTATIONS

    marker = compilation._marker("dfs")
    assert marker.parent.parent == Path(IMPLEMENTATIONS["dfs"].batch._cache.cache_path)


class _Reader(threading.Thread):
    """Collects a pipe's bytes as they come."""

    def __init__(self, pipe) -> None:
        super().__init__(daemon=True)
        self.pipe, self.chunks = pipe, []

    def run(self) -> None:
        for chunk in iter(lambda: self.pipe.read1(4096), b""):
            self.chunks.append(chunk)

    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")


@pytest.mark.heavy
def test_ctrl_c_during_compilation_stops_cleanly_and_the_next_run_works(tmp_path):
    """A fresh GNNBENCH_HOME (so the kernels compile), SIGINT two seconds into the compilation."""
    env = {**os.environ, "GNNBENCH_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    env.pop("PYTEST_CURRENT_TEST", None)
    data = tmp_path / "data"
    argv = [sys.executable, "-m", "gnnbench.cli", "algo", "generate", "bfs", "--split", "valid",
            "--num-samples", "5", "--root", str(data)]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader = _Reader(process.stderr)
    reader.start()
    deadline = time.monotonic() + 120
    while ANNOUNCEMENT not in reader.text():
        assert process.poll() is None, reader.text()
        assert time.monotonic() < deadline, reader.text()
        time.sleep(0.05)
    time.sleep(2.0)  # inside the compilation (it takes seconds)
    assert process.poll() is None, "compiled too fast for the test: " + reader.text()
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    stdout = process.stdout.read()
    reader.join(timeout=10)
    err = reader.text()
    assert process.returncode == 130, err
    assert err.rstrip().splitlines()[-1] == "gnnbench: interrupted", err
    for noise in ("Exception ignored", "Traceback", "KeyboardInterrupt"):
        assert noise not in err, err
    assert stdout == b""
    assert not list(data.rglob("*.npz")) and not list(data.rglob("*.json"))  # no dataset written
    assert not list((tmp_path / "home").rglob("gnnbench-compiled/*"))  # the kernels are not marked compiled

    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert ANNOUNCEMENT in second.stderr and "gnnbench: compiled in" in second.stderr  # compiles again, says so
    record = json.loads(second.stdout.strip().splitlines()[-1])
    assert record["graphs"] == 5 and record["split"] == "valid"
    assert [path.name for path in (tmp_path / "home").rglob("gnnbench-compiled/*")] == ["bfs.json"]

    from gnnbench.algo import Evaluator, sample
    from gnnbench.datasets import AlgorithmicReasoningDataset

    dataset = AlgorithmicReasoningDataset(data, "bfs", "valid", num_samples=5)  # the cache the second run wrote
    expected = sample("bfs", 5, n=16, seed=2)  # CLRS-30's valid split: n = 16, seed 2
    truth = dataset.targets()
    np.testing.assert_array_equal(truth["pi"], expected.outputs["pi"])
    assert Evaluator("bfs").eval({"y_true": truth, "y_pred": truth})["score"] == 1.0

    third = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and "compiling" not in third.stderr, third.stderr  # compiled once, cached
