"""The runner: seeds into run directories, resumably, one after another, in local processes, or on Dask.

One function, :func:`run_seed`, trains and records one seed; :func:`run` prepares run directories (refusing one
made with another config), skips finished seeds and hands the rest to :func:`run_seed` sequentially
(``jobs=1``), in a pool of ``jobs`` spawned processes (a fresh process per seed, torch threads split so the jobs
do not oversubscribe the cores), or to a Dask distributed scheduler (``scheduler``: its address, ``"local"`` for a LocalCluster, or a
``distributed.Client``, as in :mod:`gnnbench.parallel`; the run directory must be on a filesystem the workers share). A killed run resumes:
finished seeds are skipped, and an unfinished seed's family continues from its last checkpoint
(``SeedContext.load_checkpoint``).
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..arguments import check_int
from .config import RunSpec, config_sha256, differences, import_family, load_family
from .values import dumps_toml, flatten, parse_seeds, read_toml
from .environment import collect_environment
from .family import SeedContext, SeedOutcome
from .record import (
    CONFIG_MARKER,
    CONFIG_NAME,
    DATASET_NAME,
    ENVIRONMENT_NAME,
    HESSIAN_NAME,
    MODEL_NAME,
    PREDICTIONS_NAME,
    RECORD_FORMAT,
    RECORD_NAME,
    SUMMARY_NAME,
    SUMMARY_TABLE_NAME,
    file_entry,
    finished_seeds,
    read_json,
    seed_directory,
    summarize,
    verify_seed,
    write_json,
    write_predictions,
    write_summary,
    write_text,
)

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------------ one seed


class _PeakMemory:
    """Peak resident memory and peak CUDA memory allocated by torch on ``device``.

    A seed run in a process's main thread (sequential runs, ``jobs``) gets its own peak: Linux resets it through
    ``/proc/self/clear_refs``. Elsewhere (a Dask worker's thread pool, where seeds may share the process, or
    without that file) the peak is the process's (``rss_scope: "process"``)."""

    def __init__(self, device: torch.device) -> None:
        import threading

        self.device = device
        self.scope = "process"
        if threading.current_thread() is threading.main_thread():
            try:
                with open("/proc/self/clear_refs", "w") as handle:
                    handle.write("5")  # resets VmHWM, the peak resident set size
                self.scope = "seed"
            except OSError:
                pass
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def read(self) -> dict[str, Any]:
        rss = None
        try:
            with open("/proc/self/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        rss = int(line.split()[1]) * 1024
        except OSError:
            pass
        if rss is None:
            import resource
            import sys

            maximum = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            rss = maximum if sys.platform == "darwin" else maximum * 1024
            self.scope = "process"
        cuda = int(torch.cuda.max_memory_allocated(self.device)) if self.device.type == "cuda" else None
        return {"rss_bytes": rss, "rss_scope": self.scope, "cuda_allocated_bytes": cuda}


def resolve_device(name: str) -> torch.device:
    """``run.device`` as a torch device; CUDA without a usable GPU is an error, not a silent CPU run."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"run.device must be a torch device such as 'cpu' or 'cuda', got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"run.device is {name!r} but torch.cuda.is_available() is False "
                           "(no GPU here, or a CPU-only build of torch)")
    return device


def _save_state_dict(model: torch.nn.Module, path: Path) -> None:
    from ..io import atomic_path

    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def run_seed(config: Mapping[str, Any], seed: int, run_dir: str | os.PathLike, *, family: str | None = None,
             progress: bool = True, threads: int | None = None) -> dict[str, Any]:
    """Train seed ``seed`` of ``config`` into ``run_dir/seed_<seed>`` and return its record.

    A seed whose record already verifies is not trained again (its record is returned). ``family``: the family
    module's import name (default: the one of ``run.benchmark``). ``threads``: torch's intra-op threads in this
    process (``None`` leaves them). The same function runs seeds sequentially, in worker processes and on Dask.
    """
    seed = check_int("seed", seed, minimum=0)
    run_dir = Path(run_dir)
    seed_dir = seed_directory(run_dir, seed)
    digest = config_sha256(config)
    record = verify_seed(seed_dir, seed=seed, config_sha256=digest)
    if record is not None:
        return record
    module = import_family(family) if family else load_family(config["run"]["benchmark"])
    if threads is not None:
        torch.set_num_threads(check_int("threads", threads, minimum=1))
    device = resolve_device(config["run"]["device"])
    _claim(seed_dir, digest)
    context = SeedContext(config=config, seed=seed, directory=seed_dir, device=device, progress=progress)
    resumed = context.checkpoint_path.exists()
    memory = _PeakMemory(device)
    start = time.perf_counter()
    outcome = module.train_seed(context)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall_seconds = time.perf_counter() - start
    peak_memory = memory.read()
    if not isinstance(outcome, SeedOutcome):
        raise TypeError(f"{module.__name__}.train_seed returned {type(outcome).__name__}, not a SeedOutcome")
    _save_state_dict(outcome.model, seed_dir / MODEL_NAME)
    predictions = write_predictions(seed_dir / PREDICTIONS_NAME, outcome.predictions)
    files = {MODEL_NAME: file_entry(seed_dir / MODEL_NAME), PREDICTIONS_NAME: file_entry(seed_dir / PREDICTIONS_NAME)}
    hessian = None
    if config["hessian"]["enabled"]:
        from .hessian_column import measure

        if outcome.hessian is None:
            raise ValueError(f"{module.__name__}.train_seed returned no HessianInputs, which --hessian needs")
        hessian, full = measure(outcome.model, outcome.hessian, config["hessian"])
        write_json(seed_dir / HESSIAN_NAME, full)
        files[HESSIAN_NAME] = file_entry(seed_dir / HESSIAN_NAME)
    record = {
        "format": RECORD_FORMAT, "name": config["run"]["name"], "benchmark": config["run"]["benchmark"],
        "seed": seed, "config_sha256": digest,
        "valid": _floats(outcome.valid, "valid"), "test": _floats(outcome.test, "test"),
        "curve": [_floats(row, "curve") for row in outcome.curve], "steps": int(outcome.steps),
        "wall_seconds": wall_seconds, "resumed": resumed, "peak_memory": peak_memory, "device": str(device),
        "predictions": predictions, "hessian": hessian, "extra": dict(outcome.extra), "files": files,
        "environment": collect_environment(device),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(seed_dir / RECORD_NAME, record)  # last: the seed is finished from here on
    return verify_seed(seed_dir, seed=seed, config_sha256=digest) or record


def _claim(seed_dir: Path, digest: str) -> None:
    """Make ``seed_dir`` this config's: a directory left by another config (its checkpoint would resume the wrong
    training) moves to ``superseded/<time>/`` first. ``config.sha256`` inside names the config."""
    marker = seed_dir / CONFIG_MARKER
    if seed_dir.exists() and any(seed_dir.iterdir()):
        if marker.exists() and marker.read_text().strip() == digest:
            return
        target = seed_dir.parent / "superseded" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        target.mkdir(parents=True)
        shutil.move(str(seed_dir), target / seed_dir.name)
        logger.warning("%s was made with another config; moved to %s", seed_dir, target)
    seed_dir.mkdir(parents=True, exist_ok=True)
    write_text(marker, digest + "\n")


def _floats(values: Mapping[str, Any], what: str) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) and value is not None:
            raise TypeError(f"the family's {what} metric {key!r} must be a number, got {type(value).__name__}")
        out[str(key)] = value
    return out


# ------------------------------------------------------------------------------------------------------ run dirs


@dataclass
class RunResult:
    """A run directory after :func:`run`: its summary and the seeds that failed (seed -> error)."""

    name: str
    directory: Path
    summary: dict[str, Any]
    failures: dict[int, str] = field(default_factory=dict)


def default_run_dir(name: str) -> Path:
    """``$GNNBENCH_HOME/runs/<name>``."""
    from ..io import gnnbench_home

    return gnnbench_home() / "runs" / name


def _json_normal(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def prepare_run_dir(spec: RunSpec, run_dir: Path, *, force: bool = False) -> None:
    """Create or reopen a run directory for ``spec``: refuse one holding another config or dataset (unless
    ``force``, which moves the old contents into ``superseded/<time>/``); write the resolved config (its
    ``run.seeds`` the union of all seeds run there), the environment and the dataset identity."""
    module = import_family(spec.family)
    dataset = _json_normal(module.dataset_identity(spec.config))
    run_dir.mkdir(parents=True, exist_ok=True)
    config = spec.config
    stored_path = run_dir / CONFIG_NAME
    if stored_path.exists():
        stored = read_toml(stored_path)
        problems = [f"  {key}: {old!r} there, {new!r} now" for key, old, new in differences(stored, config)]
        if (run_dir / DATASET_NAME).exists():
            old_data = flatten(read_json(run_dir / DATASET_NAME))
            new_data = flatten(dataset)
            problems += [f"  dataset {key}: {old_data.get(key)!r} there, {new_data.get(key)!r} now"
                         for key in sorted(set(old_data) | set(new_data)) if old_data.get(key) != new_data.get(key)]
        if problems and not force:
            raise ValueError(f"run directory {run_dir} holds a run of another config or dataset:\n"
                             + "\n".join(problems)
                             + "\nchoose another --out, or pass --force to move its contents into "
                               f"{run_dir / 'superseded'} and start again")
        if problems:
            _supersede(run_dir)
        else:
            seeds = sorted(set(parse_seeds(stored.get("run", {}).get("seeds", []) or [0]) + spec.seeds))
            config = {**config, "run": {**config["run"], "seeds": seeds}}
    write_text(stored_path, dumps_toml(config))
    write_json(run_dir / ENVIRONMENT_NAME, collect_environment(config["run"]["device"]))
    write_json(run_dir / DATASET_NAME, dataset)


def _supersede(run_dir: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = run_dir / "superseded" / stamp
    target.mkdir(parents=True)
    for path in run_dir.iterdir():
        if path.name in (CONFIG_NAME, ENVIRONMENT_NAME, DATASET_NAME, SUMMARY_NAME, SUMMARY_TABLE_NAME) or (
                path.is_dir() and path.name.startswith("seed_")):
            shutil.move(str(path), target / path.name)
    logger.info("moved the previous contents of %s into %s", run_dir, target)
    return target


def _lock(stack: ExitStack, run_dir: Path) -> None:
    from ..io import file_lock

    try:
        stack.enter_context(file_lock(run_dir / ".run", timeout=0))
    except TimeoutError as error:
        raise RuntimeError(f"run directory {run_dir} is in use by another gnnbench run ({error})") from None


# ------------------------------------------------------------------------------------------------------ run


def run(specs: RunSpec | Sequence[RunSpec], *, out: str | os.PathLike | None = None, jobs: int = 1,
        scheduler: Any = None, progress: bool = True, force: bool = False) -> list[RunResult]:
    """Run every seed of every spec; returns one :class:`RunResult` per spec, after writing its summary.

    ``out``: the run directory (several specs: one sub-directory per run name under it); default
    ``$GNNBENCH_HOME/runs/<run.name>``. ``jobs``: seeds (of all specs) trained at once in spawned processes.
    ``scheduler``: a Dask scheduler address or ``distributed.Client`` to send the seeds to instead. Seeds that
    raise are reported in ``RunResult.failures`` and by a ``RuntimeError`` after all others finished.
    """
    specs = [specs] if isinstance(specs, RunSpec) else list(specs)
    if not specs:
        raise ValueError("run needs at least one run spec")
    jobs = check_int("jobs", jobs, minimum=1)
    if scheduler is not None and jobs != 1:
        raise ValueError("give either jobs (local processes) or scheduler (Dask), not both")
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"two runs share a name: {sorted(name for name in names if names.count(name) > 1)}")
    if out is None:
        directories = [default_run_dir(spec.name) for spec in specs]
    elif len(specs) == 1:
        directories = [Path(out)]
    else:
        directories = [Path(out) / spec.name for spec in specs]
    with ExitStack() as stack:
        tasks = []
        finished_counts = []
        for index, (spec, run_dir) in enumerate(zip(specs, directories)):
            run_dir.mkdir(parents=True, exist_ok=True)
            _lock(stack, run_dir)
            prepare_run_dir(spec, run_dir, force=force)
            done = finished_seeds(run_dir, config_sha256(spec.config))
            todo = [seed for seed in spec.seeds if seed not in done]
            for seed in spec.seeds:
                if seed in done:
                    logger.info("%s: seed %d is finished, skipped", spec.name, seed)
            tasks += [(index, seed) for seed in todo]
            finished_counts.append(len(spec.seeds) - len(todo))
        bars = [_bar(spec, count, position, progress) for position, (spec, count)
                in enumerate(zip(specs, finished_counts))]
        failures: list[dict[int, str]] = [{} for _ in specs]
        remaining = collections.Counter(index for index, _ in tasks)

        def seed_done(index: int) -> None:
            """A run's summary is written as soon as its last seed ends, not when every run has ended."""
            remaining[index] -= 1
            if remaining[index] == 0:
                digest = config_sha256(specs[index].config)
                write_summary(directories[index], summarize(finished_seeds(directories[index], digest),
                                                            name=specs[index].name, config_sha256=digest))

        try:
            if scheduler is not None:
                _run_dask(specs, directories, tasks, scheduler, bars, failures, seed_done)
            elif jobs > 1 and len(tasks) > 1:
                _run_processes(specs, directories, tasks, jobs, bars, failures, seed_done)
            else:
                for index, seed in tasks:
                    _attempt(lambda: run_seed(specs[index].config, seed, directories[index],
                                              family=specs[index].family, progress=progress),
                             specs[index], seed, bars[index], failures[index])
                    seed_done(index)
        finally:
            for bar in bars:
                bar.close()
        results = []
        for spec, run_dir, failed in zip(specs, directories, failures):
            digest = config_sha256(spec.config)
            records = finished_seeds(run_dir, digest)
            for seed in spec.seeds:
                if seed not in records and seed not in failed:
                    failed[seed] = (f"its record is not in {run_dir} (with a Dask scheduler the run directory "
                                    "must be on a filesystem every worker shares)")
            summary = summarize(records, name=spec.name, config_sha256=digest)
            write_summary(run_dir, summary)
            results.append(RunResult(spec.name, run_dir, summary, dict(sorted(failed.items()))))
    failed_runs = [f"{result.name} seed {seed}: {error}" for result in results for seed, error
                   in result.failures.items()]
    if failed_runs:
        raise RuntimeError("seeds failed (re-run the same command to resume them):\n  " + "\n  ".join(failed_runs))
    return results


def _bar(spec: RunSpec, finished: int, position: int, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=len(spec.seeds), initial=finished, desc=f"{spec.name} seeds", unit="seed",
                position=position, leave=True, disable=not progress)


def _attempt(call: Any, spec: RunSpec, seed: int, bar: Any, failures: dict[int, str]) -> None:
    try:
        record = call()
    except Exception as error:  # one failed seed must not lose the others; reported after all of them
        logger.error("%s seed %d failed: %s: %s", spec.name, seed, type(error).__name__, error)
        failures[seed] = f"{type(error).__name__}: {error}"
        return
    bar.update(1)
    test = record.get("test", {}).get("score")
    if test is not None:
        bar.set_postfix(last_test_score=f"{test:.4g}")


def worker_threads(jobs: int, cores: int | None = None) -> int:
    """Torch threads per worker so that ``jobs`` workers share the cores without oversubscribing them."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def _run_processes(specs: list[RunSpec], directories: list[Path], tasks: list[tuple[int, int]], jobs: int,
                   bars: list[Any], failures: list[dict[int, str]], seed_done: Callable[[int], None]) -> None:
    threads = worker_threads(jobs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context) as pool:
        futures = {pool.submit(run_seed, specs[index].config, seed, str(directories[index]),
                               family=specs[index].family, progress=False, threads=threads): (index, seed)
                   for index, seed in tasks}
        for future in as_completed(futures):
            index, seed = futures[future]
            _attempt(future.result, specs[index], seed, bars[index], failures[index])
            seed_done(index)


def _run_dask(specs: list[RunSpec], directories: list[Path], tasks: list[tuple[int, int]], scheduler: Any,
              bars: list[Any], failures: list[dict[int, str]], seed_done: Callable[[int], None]) -> None:
    from ..parallel import open_client

    if not tasks:
        return
    with open_client(scheduler) as client:
        from distributed import as_completed as dask_completed

        futures = {}
        for index, seed in tasks:
            future = client.submit(run_seed, specs[index].config, seed, str(directories[index]),
                                   family=specs[index].family, progress=False, pure=False,
                                   key=f"gnnbench-run-{specs[index].name}-seed{seed}-{time.time_ns()}")
            futures[future] = (index, seed)
        for future in dask_completed(list(futures)):
            index, seed = futures[future]
            _attempt(future.result, specs[index], seed, bars[index], failures[index])
            seed_done(index)
