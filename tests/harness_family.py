"""A real, tiny benchmark family for the harness's tests: regression on seeded synthetic data.

A linear model (``model.hidden = 0``) or a one-hidden-layer tanh network trained by SGD with momentum on
``y = x . w* + noise``; selection on the validation split by R^2, scored on the test split. It implements the whole
family contract of :mod:`gnnbench.harness.family`: deterministic given ``(config, seed)`` (its own generators),
checkpoints every ``train.checkpoint_every`` steps with its whole training state, resumes from them.

Test hooks (environment variables, read by this module only): ``GNNBENCH_TOY_FAIL_AT_STEP=k`` raises before step
``k`` (after the checkpoints up to it were saved), ``GNNBENCH_TOY_SLEEP=s`` sleeps ``s`` seconds per step.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from gnnbench.harness.family import HessianInputs, SeedContext, SeedOutcome

FAMILY = "toy"


def default_config() -> dict[str, Any]:
    return {
        "data": {"n_train": 256, "n_valid": 64, "n_test": 64, "features": 4, "noise": 0.1, "seed": 7, "root": "",
                 "ballast_mb": 0},
        "model": {"hidden": 0, "activation": "tanh"},
        "train": {"steps": 40, "batch_size": 32, "lr": 0.05, "momentum": 0.9, "checkpoint_every": 10,
                  "eval_every": 10, "hessian_batch_size": 64},
        "eval": {"metric": "r2"},
    }


def validate_config(config: Mapping[str, Any]) -> None:
    for key in ("n_train", "n_valid", "n_test", "features"):
        if config["data"][key] < 1:
            raise ValueError(f"data.{key} must be >= 1, got {config['data'][key]}")
    for key in ("steps", "batch_size", "checkpoint_every", "eval_every", "hessian_batch_size"):
        if config["train"][key] < 1:
            raise ValueError(f"train.{key} must be >= 1, got {config['train'][key]}")
    if config["model"]["hidden"] < 0:
        raise ValueError(f"model.hidden must be >= 0, got {config['model']['hidden']}")
    if config["model"]["activation"] not in ("tanh", "relu"):
        raise ValueError(f"model.activation must be tanh or relu, got {config['model']['activation']!r}")


def make_data(config: Mapping[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The three splits, drawn from one NumPy generator seeded by ``data.seed`` (fixed across run seeds)."""
    data = config["data"]
    rng = np.random.default_rng(data["seed"])
    weights = rng.normal(size=data["features"])
    splits = {}
    for split in ("train", "valid", "test"):
        x = rng.normal(size=(data[f"n_{split}"], data["features"]))
        y = x @ weights + 0.5 + data["noise"] * rng.normal(size=len(x))
        splits[split] = (torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    return splits


def dataset_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha256()
    sizes = {}
    for split, (x, y) in make_data(config).items():
        digest.update(x.numpy().tobytes())
        digest.update(y.numpy().tobytes())
        sizes[split] = len(y)
    return {"source": "synthetic linear regression", "sizes": sizes, "sha256": digest.hexdigest()}


def build_model(config: Mapping[str, Any], generator: torch.Generator) -> torch.nn.Module:
    features, hidden = config["data"]["features"], config["model"]["hidden"]
    if hidden == 0:
        model = torch.nn.Linear(features, 1)
    else:
        activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[config["model"]["activation"]]
        model = torch.nn.Sequential(torch.nn.Linear(features, hidden), activation(), torch.nn.Linear(hidden, 1))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model


def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).squeeze(-1)


def mse(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return torch.mean((predict(model, x) - y) ** 2)


def metrics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        error = torch.mean((predict(model, x) - y) ** 2).item()
    return {"score": 1.0 - error / torch.var(y, unbiased=False).item(), "mse": error}


def batches(x: torch.Tensor, y: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[start:start + size], y[start:start + size]) for start in range(0, len(y), size)]


def train_seed(context: SeedContext) -> SeedOutcome:
    config = context.config
    train, valid, test = (make_data(config)[split] for split in ("train", "valid", "test"))
    generator = torch.Generator().manual_seed(1000 + context.seed)
    model = build_model(config, generator)
    initial = {key: value.clone() for key, value in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=config["train"]["lr"], momentum=config["train"]["momentum"])
    step, curve, best_score, best_state, resumed_from = 0, [], -float("inf"), None, None
    state = context.load_checkpoint()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, curve, best_score, best_state = state["step"], state["curve"], state["best_score"], state["best_state"]
        resumed_from = step
    # Ballast mapped directly (not through malloc, which harness.allocator may have told to keep freed memory),
    # every page touched, unmapped when training ends.
    ballast = mmap.mmap(-1, config["data"]["ballast_mb"] * 2**20) if config["data"]["ballast_mb"] else None
    if ballast is not None:
        ballast.write(b"\x01" * len(ballast))
    fail_at = int(os.environ.get("GNNBENCH_TOY_FAIL_AT_STEP", "-1"))
    pause = float(os.environ.get("GNNBENCH_TOY_SLEEP", "0"))
    x_train, y_train = train
    from tqdm.auto import tqdm

    bar = tqdm(total=config["train"]["steps"], initial=step, disable=not context.progress, desc="toy", leave=False)
    while step < config["train"]["steps"]:
        if step == fail_at:
            raise RuntimeError(f"simulated failure before step {step}")
        index = torch.randint(len(y_train), (config["train"]["batch_size"],), generator=generator)
        loss = mse(model, (x_train[index], y_train[index]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        time.sleep(pause)
        if step % config["train"]["eval_every"] == 0 or step == config["train"]["steps"]:
            score = metrics(model, *valid)["score"]
            curve.append({"step": step, "loss": loss.item(), "valid_score": score})
            bar.set_postfix(loss=f"{loss.item():.4f}", valid=f"{score:.4f}")
            if score > best_score:
                best_score, best_state = score, {key: value.clone() for key, value in model.state_dict().items()}
        bar.update(1)
        if step % config["train"]["checkpoint_every"] == 0:
            context.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                     "generator": generator.get_state(), "step": step, "curve": curve,
                                     "best_score": best_score, "best_state": best_state})
    bar.close()
    if ballast is not None:
        ballast.close()
    model.load_state_dict(best_state)
    x_test, y_test = test
    with torch.no_grad():
        prediction = predict(model, x_test)
    size = config["train"]["hessian_batch_size"]
    hessian = HessianInputs(loss_fn=lambda batch: mse(model, batch), train_batches=batches(*train, size),
                            test_batches=batches(*test, size), initial_state=initial,
                            num_train_examples=len(y_train))
    return SeedOutcome(valid=metrics(model, *valid), test=metrics(model, *test), curve=curve,
                       predictions={"index": np.arange(len(y_test)), "y_true": y_test.numpy(),
                                    "y_pred": prediction.numpy()},
                       model=model, steps=step, hessian=hessian, extra={"resumed_from_step": resumed_from})
