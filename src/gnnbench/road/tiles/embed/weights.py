"""Which weights an image model runs with: the library's own download, a local file, or a seeded random init.

* ``weights=None``: the library's default weights (:attr:`ImageModelSpec.weights`), from its usual cache or
  download (torchvision: ``torch.hub.get_dir()/checkpoints``; open_clip: its ``pretrained`` tag). Offline
  (``GNNBENCH_OFFLINE``), or when the download fails, :class:`WeightsUnavailableError` says where to get the file
  and how to pass it.
* ``weights=PATH``: that file (a torchvision state dict, or anything open_clip's ``pretrained=PATH`` reads). A
  torch-hub style name (``resnet18-f37072fd.pth``) must match the first hex digits of the file's SHA-256.
* ``weights="random"``: the library's random initialisation under a fixed seed.

The record (manifest ``parameters.weights``) names the origin, the file name and the SHA-256 of the file
actually loaded (or the seed).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ....io.files import sha256_file
from ....io.offline import is_offline
from .models import ImageModelSpec, get_image_model, import_open_clip

log = logging.getLogger("gnnbench.road.tiles")

RANDOM = "random"
DEFAULT_SEED = 0
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.")  # torch hub's convention: NAME-<sha256 prefix>.EXT
_OPEN_CLIP_HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_SEEDED_BUILD = threading.Lock()  # threads building models at once would draw from each other's seeded stream


class WeightsUnavailableError(RuntimeError):
    """The default weights cannot be had here (offline, or the download failed); the message says what to do."""


@dataclass(frozen=True)
class ResolvedWeights:
    """The file to load (``None``: random init) and its record for the manifest."""

    checkpoint: Path | None
    record: dict[str, Any]


def resolve_weights(model: str | ImageModelSpec, weights: str | os.PathLike | None = None, *,
                    seed: int = DEFAULT_SEED, state: str = "MA") -> ResolvedWeights:
    """Find the weights of ``model``: ``None`` (its default), a file path, or ``"random"``.

    ``state`` only appears in the command that :class:`WeightsUnavailableError` suggests.
    """
    spec = get_image_model(model)
    if weights is None:
        if spec.weights is None:
            return ResolvedWeights(None, {"origin": RANDOM, "seed": int(seed),
                                          "reason": f"{spec.name} has no default weights"})
        return _default(spec, state)
    if isinstance(weights, str) and weights.strip().lower() == RANDOM:
        return ResolvedWeights(None, {"origin": RANDOM, "seed": int(seed)})
    return _file(spec, Path(weights).expanduser())


def load_image_model(model: str | ImageModelSpec, weights: str | os.PathLike | None = None, *,
                     seed: int = DEFAULT_SEED, state: str = "MA") -> tuple[nn.Module, dict[str, Any]]:
    """``(encoder in eval mode on the CPU, weights record)``; random parts are drawn from ``seed``."""
    spec = get_image_model(model)
    resolved = resolve_weights(spec, weights, seed=seed, state=state)
    with _SEEDED_BUILD, torch.random.fork_rng(devices=[]):  # one build at a time: the RNG is process-wide
        torch.manual_seed(seed)
        encoder = spec.builder(spec, resolved.checkpoint)
    log.info("image model %s: weights %s", spec.name, resolved.record)
    return encoder.eval(), resolved.record


def check_name_hash(path: Path, digest: str) -> None:
    """A torch-hub style file name (``NAME-<hex>.EXT``) must name the start of the file's SHA-256."""
    match = _HASH_IN_NAME.search(path.name)
    if match and not digest.startswith(match.group(1)):
        raise ValueError(f"{path}: SHA-256 {digest[:16]}... does not start with {match.group(1)}, the hash in "
                         f"its file name (a corrupt, truncated or renamed file)")


def _file(spec: ImageModelSpec, path: Path) -> ResolvedWeights:
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found (--weights takes a file path or 'random')")
    digest = sha256_file(path)
    check_name_hash(path, digest)
    record: dict[str, Any] = {"origin": "file", "file_name": path.name, "sha256": digest}
    if spec.weights is not None:
        record["matches_default"] = digest.startswith(spec.weights.sha256)
        if record["matches_default"]:
            record["id"] = spec.weights.id
    return ResolvedWeights(path, record)


def _default(spec: ImageModelSpec, state: str) -> ResolvedWeights:
    default = spec.weights
    path = _torchvision_default(spec, state) if spec.library == "torchvision" else _open_clip_default(spec, state)
    digest = sha256_file(path)
    if spec.library == "torchvision" and not digest.startswith(default.sha256):
        raise ValueError(f"{path}: SHA-256 does not start with {default.sha256} (a corrupt download: delete it)")
    from_hub = bool(default.hub) and "models--" in path.as_posix()  # the Hugging Face cache layout
    record = {"origin": "download", "id": default.id, "url": default.hub if from_hub else default.url,
              "file_name": path.name, "sha256": digest}
    return ResolvedWeights(path, record)


def unavailable(spec: ImageModelSpec, state: str, reason: str) -> WeightsUnavailableError:
    """The error that says where the default weights of ``spec`` come from and how to pass them."""
    default = spec.weights
    digest = f"SHA-256 {default.sha256}" if len(default.sha256) == 64 else f"SHA-256 starting {default.sha256}"
    hub = f" (open_clip may fetch it from the Hugging Face hub {default.hub} instead)" if default.hub else ""
    return WeightsUnavailableError(
        f"cannot get the default {spec.name} weights ({default.id}): {reason}. Download {default.url}{hub} "
        f"(file {default.file_name}, {digest}) where there is network access, copy it here and run "
        f"`gnnbench embed tiles --state {state} --model {spec.name} --weights /path/to/{default.file_name}` "
        f"(or --weights random for randomly initialised weights)")


def _torchvision_default(spec: ImageModelSpec, state: str) -> Path:
    default = spec.weights
    target = Path(torch.hub.get_dir()) / "checkpoints" / default.file_name
    if not target.is_file():
        if is_offline():
            raise unavailable(spec, state, f"gnnbench is offline (GNNBENCH_OFFLINE) and {target} is not cached")
        target.parent.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s to %s", default.url, target)
        try:
            torch.hub.download_url_to_file(default.url, os.fspath(target), hash_prefix=default.sha256,
                                           progress=False)
        except Exception as error:  # noqa: BLE001 - any failure means: supply the file by hand
            raise unavailable(spec, state, f"the download failed ({type(error).__name__}: {error})") from None
    return target


def _open_clip_default(spec: ImageModelSpec, state: str) -> Path:
    import_open_clip()
    from open_clip import pretrained

    config = pretrained.get_pretrained_cfg(spec.architecture, spec.weights.id)
    if not config:
        raise ValueError(f"open_clip has no weights tagged {spec.weights.id!r} for {spec.architecture}")
    if is_offline():
        cached = _open_clip_cached(spec)
        if cached is None:
            raise unavailable(spec, state, "gnnbench is offline (GNNBENCH_OFFLINE) and open_clip has no cached copy")
        return cached
    try:
        path = pretrained.download_pretrained(config)
    except Exception as error:  # noqa: BLE001 - any failure means: supply the file by hand
        raise unavailable(spec, state, f"the download failed ({type(error).__name__}: {error})") from None
    if not path or not Path(path).is_file():
        raise unavailable(spec, state, "open_clip's download returned no file")
    return Path(path)


def _open_clip_cached(spec: ImageModelSpec) -> Path | None:
    """A copy of the default clip weights already on this machine (open_clip's URL cache or the HF cache)."""
    default = spec.weights
    local = Path("~/.cache/clip").expanduser() / default.file_name
    if local.is_file() and sha256_file(local).startswith(default.sha256):
        return local
    if default.hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        for name in _OPEN_CLIP_HUB_FILES:
            found = try_to_load_from_cache(default.hub, name)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
    return None
