"""The contract between the harness's runner and a benchmark family's training protocol.

The runner (seeds, run directories, resume, jobs, Dask, the Hessian column) knows nothing about models or data;
each family (``algo``, ``road``) knows nothing about run directories beyond its :class:`SeedContext`. A family
module exposes::

    FAMILY: str                                          # "algo" or "road", the config's ``benchmark``
    def default_config() -> dict                         # every key of its config sections, with defaults
    def validate_config(config: Mapping) -> None         # ValueError naming the key on bad values
    def dataset_identity(config: Mapping) -> dict        # what data the run uses (manifest checksums, sizes)
    def train_seed(context: SeedContext) -> SeedOutcome  # train, select on valid, score on test

``train_seed`` must be deterministic given ``(config, seed)`` on the CPU (bitwise-identical metrics) and resumable:
it saves its whole training state with ``context.save_checkpoint`` every ``config["train"]["checkpoint_every"]``
steps and, when ``context.load_checkpoint()`` returns a state, continues from it to the same result.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class SeedContext:
    """What a family's ``train_seed`` gets from the runner for one seed."""

    config: Mapping[str, Any]  # the resolved config (sections: run, data, model, train, eval)
    seed: int
    directory: Path  # this seed's directory (exists); the family may write extra files here
    device: torch.device
    progress: bool = True  # show progress bars (running loss, validation score)

    @property
    def checkpoint_path(self) -> Path:
        return self.directory / CHECKPOINT_NAME

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Atomically save a training state (tensors, numbers, strings, lists, dicts: ``weights_only``-loadable)."""
        partial = self.checkpoint_path.with_suffix(".partial")
        torch.save(dict(state), partial)
        os.replace(partial, self.checkpoint_path)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last saved training state, or ``None`` when training starts afresh."""
        if not self.checkpoint_path.exists():
            return None
        return torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)


@dataclass
class HessianInputs:
    """What the Hessian column needs: a loss closure over batches, the data, the start weights."""

    loss_fn: Callable[[Any], torch.Tensor]  # loss_fn(batch) -> the batch's mean training loss of ``model``
    train_batches: Iterable[Any]
    test_batches: Iterable[Any]
    initial_state: Mapping[str, torch.Tensor]  # the weights before training (for the bound)
    num_train_examples: int


@dataclass
class SeedOutcome:
    """One trained seed: metrics, curve, predictions for rescoring, the selected model."""

    valid: dict[str, float]  # metrics of the selected model on the validation split (``score`` is the headline)
    test: dict[str, float]  # test metrics (``score`` headline; extra keys e.g. ``score_n128``)
    curve: list[dict[str, float]]  # one row per evaluation: step, loss, valid score, seconds
    predictions: dict[str, np.ndarray]  # equal-length 1-D columns of the test predictions (leaderboard rescoring)
    model: torch.nn.Module  # the selected weights
    steps: int  # optimizer steps taken
    hessian: HessianInputs | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # anything else worth recording (JSON-serialisable)


def check_sections(config: Mapping[str, Any], schema: Mapping[str, Mapping[str, Any]], family: str) -> None:
    """ValueError naming the section or key when ``config`` lacks a section or key of ``schema`` or has another."""
    for section, keys in schema.items():
        values = config.get(section)
        if not isinstance(values, Mapping):
            raise ValueError(f"the {family} config needs a [{section}] section")
        for key in keys:
            if key not in values:
                raise ValueError(f"missing config key {section}.{key}")
        for key in values:
            if key not in keys:
                raise ValueError(f"unknown config key {section}.{key} (keys of [{section}]: {', '.join(keys)})")
