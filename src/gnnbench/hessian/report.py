"""One JSON record (and optional plots) of a model's Hessian measurements, for harness runs and leaderboards.

``report(model, loss_fn, data=...)`` measures per-layer traces, the top eigenvalues and the spectral
density on the given batches and, when the starting weights and held-out data are given, the
Hessian-based bounds next to the measured generalization gap; each bound records ``bound_holds`` (whether it is at
least the measured gap) and, when it is not, a ``note`` naming the approximations that can cause it (see
:mod:`gnnbench.hessian.bounds`). Every setting and seed is recorded, with
the number of Hessian-vector products each measurement performed, so the record can be recomputed. Plots (per-layer trace bars, eigenvalue density) need matplotlib
(``pip install "gnnbench[plots]"``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..arguments import check_int

REPORT_FORMAT = 1


def report(model: torch.nn.Module, loss_fn: Callable[[Any], torch.Tensor], *, data: Iterable[Any],
           initial: Mapping[str, torch.Tensor] | torch.nn.Module | None = None,
           test_data: Iterable[Any] | None = None, n: int | None = None, parameters: Iterable[str] | None = None,
           trace_method: str = "hutch++", num_matvecs: int = 99, probes: str = "full", top_k: int = 5,
           density_runs: int = 5, density_steps: int = 40, seed: int = 0, strategy: str = "auto",
           path: str | os.PathLike | None = None, plots_dir: str | os.PathLike | None = None,
           progress: bool = False) -> dict[str, Any]:
    """Measure ``model`` on ``data`` (batches; ``loss_fn(batch)`` is a batch's mean loss) and return a JSON record.

    Per-layer traces use ``num_matvecs`` Hessian-vector products in all (split over the batches; ``probes`` as in
    :func:`~gnnbench.hessian.trace`), estimated once per batch and reported as the mean and the maximum over the
    batches. The top ``top_k`` eigenvalues (at most 100 block iterations) and the density (``density_runs`` x
    ``density_steps`` products) are of the **first** batch. With ``initial`` (the starting weights), ``test_data``
    and ``n`` (training examples) the record also holds both bounds of :mod:`gnnbench.hessian.bounds` (the trace
    bound reuses the maximum traces; the quadratic bound costs one product per layer and batch), each with
    ``bound_holds`` and, when the bound is below the measured gap, a ``note`` saying why it can be. ``matvecs`` in
    the record counts the products each measurement performed. ``path`` writes the JSON; ``plots_dir`` the figures.
    ``progress`` shows a bar of the Hessian-vector products of each measurement on stderr.
    """
    from .bounds import hessian_bound, trace_radius_bound
    from .estimators import _make_operator, reduce_traces, trace_batches
    from .progress import CountingOperator, matvec_bar
    from .spectrum import eigenvalues_of, spectral_density_of

    batches = list(data)
    if not batches:
        raise ValueError("report needs at least one batch of data")
    check_int("top_k", top_k, minimum=1)
    check_int("density_runs", density_runs, minimum=1)
    check_int("density_steps", density_steps, minimum=1)
    check_int("seed", seed)
    if n is not None:
        check_int("n", n, minimum=1)
    parameters = list(parameters) if parameters is not None else None
    first = batches[0]
    start = time.perf_counter()
    settings = {"trace_method": trace_method, "num_matvecs": num_matvecs, "probes": probes, "top_k": top_k,
                "density_runs": density_runs, "density_steps": density_steps, "seed": seed, "strategy": strategy,
                "parameters": parameters, "batches": len(batches)}
    per_batch = trace_batches(model, loss_fn, batches, method=trace_method, num_matvecs=num_matvecs, probes=probes,
                              seed=seed, parameters=parameters, strategy=strategy, progress=progress)
    traces = {reduce: reduce_traces(per_batch, reduce) for reduce in ("mean", "max")}
    op = _make_operator(model, lambda: loss_fn(first), parameters=parameters, groups="module", strategy=strategy)
    with matvec_bar(progress, 100 * top_k, "Hessian eigenvalues") as bar:  # at most 100 block iterations
        top = eigenvalues_of(CountingOperator(op, bar), k=top_k, which="largest", seed=seed)
    eigen_matvecs = op.num_matvecs
    with matvec_bar(progress, density_runs * density_steps, "Hessian spectral density") as bar:
        density = spectral_density_of(CountingOperator(op, bar), num_runs=density_runs, num_steps=density_steps,
                                      seed=seed)
    matvecs = {"trace": traces["mean"].num_matvecs, "eigenvalues": eigen_matvecs,
               "spectral_density": density.num_matvecs}
    record: dict[str, Any] = {
        "format": REPORT_FORMAT, "gnnbench_version": __version__, "torch_version": torch.__version__,
        "device": str(next(model.parameters()).device), "python": platform.python_version(),
        "model": type(model).__name__, "settings": settings,
        "trace": {reduce: result.to_dict() for reduce, result in traces.items()},
        "top_eigenvalues": [float(value) for value in top],
        "spectral_density": {"grid": density.grid.tolist(), "density": density.density.tolist()},
    }
    if initial is not None and test_data is not None and n is not None:
        test_batches = list(test_data)
        quadratic = hessian_bound(model, loss_fn, initial, train_data=batches, test_data=test_batches, n=n,
                                  parameters=parameters, strategy=strategy)
        radius = trace_radius_bound(model, loss_fn, initial, train_data=batches, test_data=test_batches, n=n,
                                    parameters=parameters, traces=traces["max"])
        record["bounds"] = {"ju_li_zhang_2022": quadratic.to_dict(), "trace_radius": radius.to_dict()}
        matvecs["bounds"] = quadratic.terms["num_matvecs"]  # the trace bound reused the traces above
    matvecs["total"] = sum(matvecs.values())
    record["matvecs"] = matvecs
    record["seconds"] = round(time.perf_counter() - start, 3)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(record, indent=1, sort_keys=True, default=float) + "\n")
    if plots_dir is not None:
        plot(record, plots_dir)
    return record


def plot(record: Mapping[str, Any], directory: str | os.PathLike) -> list[Path]:
    """Write ``per_layer_trace.png`` and ``eigenvalue_density.png`` for a report record."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError('Hessian report plots need matplotlib: pip install "gnnbench[plots]"') from error
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    per_layer = record["trace"]["mean"]["per_layer"]
    stderr = record["trace"]["mean"].get("per_layer_stderr") or {}
    figure, axis = plt.subplots(figsize=(max(4.0, 0.6 * len(per_layer) + 2), 3.5))
    names = list(per_layer)
    axis.bar(range(len(names)), [per_layer[name] for name in names],
             yerr=[stderr.get(name) or 0.0 for name in names], capsize=3)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    axis.set_ylabel("Hessian trace (mean over batches)")
    axis.set_title("Per-layer Hessian trace")
    written.append(_save(plt, figure, directory / "per_layer_trace.png"))
    figure, axis = plt.subplots(figsize=(5, 3.5))
    density = record["spectral_density"]
    axis.semilogy(density["grid"], [max(value, 1e-12) for value in density["density"]])
    axis.set_xlabel("eigenvalue")
    axis.set_ylabel("density")
    axis.set_title("Hessian eigenvalue density (SLQ)")
    written.append(_save(plt, figure, directory / "eigenvalue_density.png"))
    return written


def _save(plt: Any, figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
