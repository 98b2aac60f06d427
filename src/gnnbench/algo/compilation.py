"""Compiling the algorithm kernels once, visibly, and stopping cleanly on Ctrl-C.

numba compiles a kernel on its first call and caches the machine code (see :mod:`gnnbench.compile_cache`); on a
fresh machine that takes seconds to tens of seconds per algorithm, on later runs a fraction of a second.
:func:`compile_kernels` does that work up front, one algorithm at a time, with an optional progress bar, and
leaves a marker beside numba's cache files once an algorithm's kernels are all compiled and cached
(:func:`kernels_compiled`), so that a caller can say beforehand that a pause is a one-off compilation.

Ctrl-C during compilation: LLVM calls back into Python through ctypes (llvmlite's object-cache hooks), and
CPython drops a ``KeyboardInterrupt`` raised inside such a callback ("Exception ignored on calling ctypes
callback"), so compilation would carry on; raised inside llvmlite's own Python code, it can leave half-built LLVM
objects whose finalizers print tracebacks at exit. Inside :func:`interruptible` the first Ctrl-C is therefore
only noted, and raised at the next point where stopping is clean: the start of numba's next compile or compiler
pass, or the end of the block (a second Ctrl-C raises at once). numba writes each cache file atomically and the
marker is written last, so an interrupted compilation leaves nothing that looks complete.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numba
from numba.core import event

from ..io.files import atomic_path
from .algorithms import IMPLEMENTATIONS
from .specs import ALGORITHMS

logger = logging.getLogger(__name__)

_MARKERS = "gnnbench-compiled"  # folder of the markers, beside the batch loops' cache files


def _marker(algorithm: str) -> Path | None:
    """The marker file of ``algorithm``'s compiled kernels, or None when numba caches nothing."""
    cache = getattr(IMPLEMENTATIONS[_known(algorithm)].batch, "_cache", None)
    path = getattr(cache, "cache_path", None)
    return Path(path) / _MARKERS / f"{algorithm}.json" if path else None


def _known(algorithm: str) -> str:
    if algorithm not in IMPLEMENTATIONS:
        raise ValueError(f"unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
    return algorithm


def kernels_compiled(algorithm: str) -> bool:
    """Whether ``algorithm``'s kernels were compiled and cached by an earlier :func:`compile_kernels`."""
    marker = _marker(algorithm)
    return marker is not None and marker.is_file()


def _exercise(algorithm: str) -> None:
    """Run every compiled step that dataset generation, dataset items and training batches run, on a few small
    graphs: sampling and the kernels, padded CLRS batches, dense hints, and the dataset's stored columns (written,
    read back memory-mapped, expanded per item), so that no later call compiles anything."""
    import tempfile

    from ..datasets.storage import read_columns, write_columns
    from .samplers import sample

    traces = sample(algorithm, 4, n=8, seed=0)
    traces.clrs_batch()
    traces[0]
    for name in traces.hints:
        traces.hint_array(name)
    with tempfile.TemporaryDirectory(prefix="gnnbench-compile-") as scratch:
        path = Path(scratch) / "traces.npz"
        key = {"algorithm": algorithm, "purpose": "compilation"}
        write_columns(traces, path, key)
        columns = read_columns(path, key)
        for item in range(len(columns)):
            columns.sample(item)


def compile_kernels(algorithms: Iterable[str] = ALGORITHMS, *, progress: bool = False) -> dict[str, float]:
    """Compile (or load from numba's cache) the kernels of ``algorithms`` not yet marked compiled.

    Returns the seconds each of them took. ``progress`` shows a bar on stderr, one step per algorithm. Ctrl-C
    stops at once (see :func:`interruptible`); an interrupted algorithm stays unmarked and compiles again next time.
    """
    from tqdm.auto import tqdm

    names = [_known(name) for name in dict.fromkeys(algorithms)]
    pending = [name for name in names if not kernels_compiled(name)]
    seconds: dict[str, float] = {}
    with interruptible(), tqdm(total=len(pending), desc="compiling kernels (once)", unit="algorithm",
                                disable=not progress or not pending, leave=False) as bar:
        for name in pending:
            _INTERRUPTS.checkpoint()  # between algorithms too (loading cached kernels compiles nothing)
            bar.set_postfix_str(name)
            start = time.perf_counter()
            _exercise(name)
            seconds[name] = round(time.perf_counter() - start, 3)
            _write_marker(name, seconds[name])
            bar.update()
    return seconds


def _write_marker(algorithm: str, seconds: float) -> None:
    marker = _marker(algorithm)
    if marker is None:
        return
    record = {"algorithm": algorithm, "seconds": seconds, "numba": numba.__version__}
    try:
        with atomic_path(marker) as temporary:
            temporary.write_text(json.dumps(record) + "\n")
    except OSError as error:  # an unwritable cache: the kernels still run, the next run compiles again
        logger.debug("could not mark the %s kernels compiled in %s: %s", algorithm, marker.parent, error)


# ------------------------------------------------------------------------------------------- Ctrl-C


class _Interrupts:
    """The Ctrl-Cs noted (or swallowed inside ctypes callbacks) while :func:`interruptible` blocks are active."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.pending = False
        self.previous_hook: Any = None
        self.previous_handler: Any = None

    def handler(self, signum: int, frame: Any) -> None:
        if self.pending:  # a second Ctrl-C: stop now, wherever the code is
            raise KeyboardInterrupt
        self.pending = True

    def hook(self, unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) or unraisable.exc_type is KeyboardInterrupt:
            self.pending = True  # raised at the next checkpoint, instead of printed and lost
            return
        (self.previous_hook or sys.__unraisablehook__)(unraisable)

    def checkpoint(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


_INTERRUPTS = _Interrupts()


class _Checkpoint(event.Listener):
    """Raises a noted interrupt when numba starts its next compile or compiler pass."""

    def on_start(self, event: Any) -> None:
        _INTERRUPTS.checkpoint()

    def on_end(self, event: Any) -> None:
        pass


@contextmanager
def interruptible() -> Iterator[None]:
    """Make Ctrl-C stop numba compilation inside this block (re-entrant; see the module docstring)."""
    state = _INTERRUPTS
    with state.lock:
        state.depth += 1
        if state.depth == 1:
            state.pending = False
            state.previous_hook, sys.unraisablehook = sys.unraisablehook, state.hook
            # Python's own Ctrl-C handler only (not an application's), and only where handlers can be set
            if (threading.current_thread() is threading.main_thread()
                    and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
                state.previous_handler = signal.signal(signal.SIGINT, state.handler)
    try:
        with ExitStack() as listeners:
            for kind in ("numba:compile", "numba:run_pass"):
                listeners.enter_context(event.install_listener(kind, _Checkpoint()))
            yield
        state.checkpoint()
    finally:
        with state.lock:
            state.depth -= 1
            if state.depth == 0:
                sys.unraisablehook, state.previous_hook = state.previous_hook, None
                if state.previous_handler is not None:
                    signal.signal(signal.SIGINT, state.previous_handler)
                    state.previous_handler = None
                state.pending = False
