"""Measurement specs: a small Python file telling ``gnnbench hessian report`` how to rebuild a model and its data.

A spec file defines

* ``build_model() -> torch.nn.Module`` — the architecture (weights come from the checkpoint);
* ``loss(model, batch) -> torch.Tensor`` — the mean loss of one batch;
* ``train_batches() -> Iterable`` — the batches the Hessian is measured on;
* optionally ``test_batches() -> Iterable`` and ``num_train_examples: int`` (for the bounds).

Checkpoints are ``torch.save(model.state_dict())`` files (or dicts holding one under ``state_dict`` or
``model``), loaded with ``weights_only=True``. With ``--device cuda`` the model is moved to the GPU;
``loss`` must move each batch to ``next(model.parameters()).device`` itself.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

_REQUIRED = ("build_model", "loss", "train_batches")


@dataclass
class MeasurementSpec:
    """A loaded spec file."""

    path: Path
    module: ModuleType

    def model(self, checkpoint: str | os.PathLike, device: str = "cpu") -> torch.nn.Module:
        """The spec's model with the checkpoint's weights, on ``device``."""
        model = self.module.build_model()
        model.load_state_dict(load_state_dict(checkpoint))
        return model.to(device)

    def loss_fn(self, model: torch.nn.Module):
        return lambda batch: self.module.loss(model, batch)

    def train_batches(self) -> list[Any]:
        return list(self.module.train_batches())

    def test_batches(self) -> list[Any] | None:
        return list(self.module.test_batches()) if hasattr(self.module, "test_batches") else None

    @property
    def num_train_examples(self) -> int | None:
        return getattr(self.module, "num_train_examples", None)


def load_spec(path: str | os.PathLike) -> MeasurementSpec:
    """Import a spec file; a missing file or function is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spec file not found: {path}")
    loader = importlib.util.spec_from_file_location(f"gnnbench_spec_{path.stem}", path)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    missing = [name for name in _REQUIRED if not callable(getattr(module, name, None))]
    if missing:
        raise ValueError(f"spec {path} does not define {', '.join(missing)} (see gnnbench.hessian.spec)")
    return MeasurementSpec(path=path, module=module)


def load_state_dict(checkpoint: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a checkpoint file (plain, or under ``state_dict``/``model``), loaded with weights only."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and not all(isinstance(value, torch.Tensor) for value in state.values()):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                return state[key]
        raise ValueError(f"{path} is not a state dict (keys: {sorted(state)[:10]})")
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state
