"""The Hessian column of a seed's record (``gnnbench run --hessian``), measured with :func:`gnnbench.hessian.report`.

At the selected weights: the trace of the training loss's Hessian (per layer and total, the mean over the
measured training batches, each with its standard error), the top eigenvalue, both Hessian-based bounds on the
generalisation gap of :mod:`gnnbench.hessian.bounds` beside the measured gap (mean test-batch loss minus mean
training-batch loss of the family's ``loss_fn``) with ``bound_holds`` (whether each bound is at least that gap) and,
when one is not, its ``note``, and the Hessian-vector products spent. The ``[hessian]`` config
section sets the budget; its defaults fit CI-sized models (a few hundred products in all).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch

from .family import HessianInputs

#: The record's headline keys (summarised over seeds): trace, trace_stderr, top_eigenvalue, measured_gap, bounds.


def measure(model: torch.nn.Module, inputs: HessianInputs, settings: Mapping[str, Any]) -> tuple[dict[str, Any],
                                                                                                dict[str, Any]]:
    """``(column, report)``: the compact column for ``record.json`` and the full report of
    :func:`gnnbench.hessian.report` (for ``hessian.json``)."""
    from ..hessian import report

    train = list(itertools.islice(iter(inputs.train_batches), settings["max_train_batches"]))
    test = list(itertools.islice(iter(inputs.test_batches), settings["max_test_batches"]))
    if not train:
        raise ValueError("the family's HessianInputs.train_batches is empty")
    was_training = model.training
    model.eval()  # the loss at the final weights, without dropout noise
    try:
        full = report(model, inputs.loss_fn, data=train, initial=inputs.initial_state, test_data=test or None,
                      n=inputs.num_train_examples, trace_method=settings["trace_method"],
                      num_matvecs=settings["num_matvecs"], probes=settings["probes"], top_k=settings["top_k"],
                      density_runs=settings["density_runs"], density_steps=settings["density_steps"],
                      seed=settings["seed"], parameters=list(settings["parameters"]) or None)
    finally:
        model.train(was_training)
    return column(full, train_batches=len(train), test_batches=len(test)), full


def column(full: Mapping[str, Any], *, train_batches: int, test_batches: int) -> dict[str, Any]:
    """The compact record of a :func:`gnnbench.hessian.report` record."""
    trace = full["trace"]["mean"]
    bounds = {}
    measured_gap = None
    for name, bound in (full.get("bounds") or {}).items():
        bounds[name] = {key: bound[key] for key in ("bound_on_gap", "bound_on_test_loss", "train_loss", "test_loss",
                                                    "measured_gap")}
        # whether the bound is at least the measured gap, and why it can fall below it (older hessian.json lack both)
        bounds[name].update(bound_holds=bound.get("bound_holds"), note=bound.get("note"))
        measured_gap = bound["measured_gap"] if measured_gap is None else measured_gap
    return {
        "trace": trace["total"],
        "trace_stderr": trace["stderr"],
        "per_layer_trace": dict(trace["per_layer"]),
        "per_layer_trace_stderr": dict(trace["per_layer_stderr"]),
        "trace_max_over_batches": full["trace"]["max"]["total"],
        "top_eigenvalue": full["top_eigenvalues"][0],
        "top_eigenvalues": list(full["top_eigenvalues"]),
        "bounds": bounds,
        "measured_gap": measured_gap,
        "num_matvecs": dict(full["matvecs"]),
        "batches": {"train": train_batches, "test": test_batches},
        "settings": dict(full["settings"]),
        "seconds": full["seconds"],
    }
