"""Steps shared by the commands that train (``gnnbench run``, ``gnnbench branch train``) and those that write data:
the dry run, the writable-directory check and the one-off kernel compilation."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from .io.cache import require_writable


def writable(*directories: Path | None) -> None:
    """Fail at once, in one line, when a directory a command writes cannot be written (None: the gnnbench home)."""
    for directory in directories:
        require_writable(directory)


def compile_kernels(algorithms: Sequence[str], progress: bool) -> None:
    """Compile the kernels of ``algorithms`` that are not compiled yet, saying so first (a one-off pause)."""
    from .algo import compilation

    pending = [name for name in dict.fromkeys(algorithms) if not compilation.kernels_compiled(name)]
    if not pending:
        return
    # durations measured on a fresh 2-core machine (README, "First use compiles"): 10-14 s for the first
    # algorithm (with the shared code), 16 s for the DFS family, under 4 s for any other; 39 s for all twelve
    what, how_long = ((f"the {pending[0]} kernels", "10-30 s") if len(pending) == 1 else
                      (f"the kernels of {len(pending)} algorithms", "under a minute for all twelve"))
    print(f"gnnbench: compiling {what} once ({how_long}; cached for later runs)", file=sys.stderr)
    seconds = compilation.compile_kernels(pending, progress=progress)
    print(f"gnnbench: compiled in {sum(seconds.values()):.0f} s", file=sys.stderr)


def dry_run(specs: list, out: Path | None) -> int:
    """Print each resolved config with the run directory it would train into."""
    from .harness.runner import default_run_dir
    from .harness.values import dumps_toml

    for spec in specs:
        where = default_run_dir(spec.name) if out is None else out if len(specs) == 1 else out / spec.name
        print(f"# run directory: {where}")
        print(dumps_toml(spec.config))
    return 0


def prepare_run(specs: list, out: Path | None, *, progress: bool) -> None:
    """Check the run directory is writable and compile the algorithms' kernels once, before training."""
    from .harness.runner import default_run_dir

    writable(out if out is not None else default_run_dir(specs[0].name).parent)
    compile_kernels([spec.config["data"]["algorithm"] for spec in specs if spec.benchmark == "algo"]
                    + [name for spec in specs if spec.benchmark == "multitask"
                       for name in spec.config["data"]["algorithms"]], progress=progress)
