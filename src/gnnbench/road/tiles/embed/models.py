"""The image models that embed crops: one declarative table (:data:`IMAGE_MODELS`) and how each is built.

=============  ===========  ===================================  =====  ==========================================
name           library      architecture                         dim    default weights
=============  ===========  ===================================  =====  ==========================================
clip-vit-b32   open_clip    ``ViT-B-32-quickgelu``, encode_image 512    tag ``openai`` (output L2-normalised)
vit-b16        torchvision  ``vit_b_16``, heads = Identity       768    ``ViT_B_16_Weights.IMAGENET1K_V1``
resnet18       torchvision  ``resnet18``, fc = Identity          512    ``ResNet18_Weights.IMAGENET1K_V1``
resnet50       torchvision  ``resnet50``, fc = Identity          2048   ``ResNet50_Weights.IMAGENET1K_V2``
=============  ===========  ===================================  =====  ==========================================

Every model is an :class:`ImageEncoder`: normalised float images (N x 3 x input x input) in, N x dim features
out. The preprocessing each spec names (resize of the shortest side, centre crop, mean/std) is applied on the
device by :mod:`.run`. open_clip is imported only when a clip model is built.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..layout import IMAGE_MODELS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INTERPOLATIONS = ("bilinear", "bicubic")
IMAGERY_EXTRA = 'pip install "gnnbench[imagery]"'


class MissingLibraryError(RuntimeError):
    """The library a model needs (open_clip, torchvision) is not installed."""


@dataclass(frozen=True)
class DefaultWeights:
    """The weights a library downloads by default: its identifier (tag or enum), URL, file name and hash.

    ``sha256`` is the full hex digest, or a prefix of it where the publisher gives only one (torch hub: the 8 hex
    digits in the file name). ``hub`` is a Hugging Face repository the library may prefer to the URL.
    """

    id: str
    url: str
    file_name: str
    sha256: str
    hub: str | None = None


@dataclass(frozen=True)
class ImageModelSpec:
    """One image model: how to build it, what it outputs, and how its inputs are preprocessed."""

    name: str
    library: str  # "open_clip" | "torchvision" | "custom"
    architecture: str  # open_clip model name, torchvision builder name, or a label of a custom model
    dim: int
    input_size: int  # side of the centre crop fed to the model
    resize_size: int  # the shortest side is resized to this before the crop
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    builder: Callable[[ImageModelSpec, Path | None], nn.Module] = field(repr=False, compare=False)
    head: str | None = None  # torchvision: the classifier attribute replaced by Identity
    normalize: bool = False  # L2-normalise the output features
    weights: DefaultWeights | None = None

    def preprocessing(self) -> dict:
        """The preprocessing as recorded in the embeddings manifest."""
        return {"resize_shortest_side": self.resize_size, "center_crop": self.input_size,
                "interpolation": self.interpolation, "antialias": True, "mean": list(self.mean),
                "std": list(self.std), "scale": "uint8 / 255", "on": "device"}


class ImageEncoder(nn.Module):
    """Wraps a backbone: ``forward`` maps normalised images to features (L2-normalised when asked)."""

    def __init__(self, backbone: nn.Module, *, encode: str | None = None, normalize: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.encode = encode
        self.normalize = normalize

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = getattr(self.backbone, self.encode)(images) if self.encode else self.backbone(images)
        if self.normalize:
            features = nn.functional.normalize(features.float(), dim=-1)
        return features


def _load_checkpoint(model: nn.Module, checkpoint: Path, *, head: str | None = None) -> None:
    """Load a state dict file into ``model``; a file without the classifier head (``head``) is accepted too."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{checkpoint}: not a state dict (a {type(state).__name__})")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if not (head and key.startswith(f"{head}."))]
    if missing or unexpected:
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}" if missing else "",
            f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}" if unexpected else "",
        ) if part)
        raise ValueError(f"{checkpoint}: the state dict does not fit {type(model).__name__} ({detail})")


def _build_torchvision(spec: ImageModelSpec, checkpoint: Path | None) -> nn.Module:
    try:
        import torchvision
    except ImportError:
        raise MissingLibraryError(f"model {spec.name} needs torchvision: {IMAGERY_EXTRA}") from None
    model = getattr(torchvision.models, spec.architecture)(weights=None)
    if checkpoint is not None:
        _load_checkpoint(model, checkpoint, head=spec.head)
    if spec.head:
        setattr(model, spec.head, nn.Identity())
    return ImageEncoder(model, normalize=spec.normalize)


def import_open_clip():
    """The open_clip module, or a :class:`MissingLibraryError` saying how to install it."""
    try:
        import open_clip
    except ImportError as error:
        raise MissingLibraryError(f"the clip models need open_clip ({error}): {IMAGERY_EXTRA} "
                                  f"(or pip install open_clip_torch)") from None
    return open_clip


def is_torchscript_archive(path: Path) -> bool:
    """True for a TorchScript zip (OpenAI's CLIP files): ``torch.load`` then means ``torch.jit.load``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name == "constants.pkl" or name.endswith("/constants.pkl") for name in archive.namelist())


def _build_open_clip(spec: ImageModelSpec, checkpoint: Path | None) -> nn.Module:
    open_clip = import_open_clip()
    # OpenAI's own files (ViT-B-32.pt) are TorchScript archives, which torch.load refuses with weights_only=True;
    # with weights_only=False torch.load hands them to torch.jit.load (no pickled Python objects are loaded).
    scripted = checkpoint is not None and is_torchscript_archive(checkpoint)
    model = open_clip.create_model(spec.architecture, pretrained=os.fspath(checkpoint) if checkpoint else None,
                                   weights_only=not scripted)
    return ImageEncoder(model, encode="encode_image", normalize=spec.normalize)


def _custom_builder(make: Callable[[], nn.Module]) -> Callable[[ImageModelSpec, Path | None], nn.Module]:
    def build(spec: ImageModelSpec, checkpoint: Path | None) -> nn.Module:
        model = make()
        if checkpoint is not None:
            _load_checkpoint(model, checkpoint)
        return ImageEncoder(model, normalize=spec.normalize)

    return build


_TORCHVISION = dict(library="torchvision", resize_size=256, input_size=224, interpolation="bilinear",
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, builder=_build_torchvision)
_TORCH_HUB = "https://download.pytorch.org/models/"

_REGISTRY: dict[str, ImageModelSpec] = {spec.name: spec for spec in (
    ImageModelSpec(
        "clip-vit-b32", "open_clip", "ViT-B-32-quickgelu", dim=512, input_size=224, resize_size=224,
        interpolation="bicubic", mean=CLIP_MEAN, std=CLIP_STD, builder=_build_open_clip, normalize=True,
        weights=DefaultWeights(
            "openai", "https://openaipublic.azureedge.net/clip/models/"
                      "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
            "ViT-B-32.pt", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
            hub="timm/vit_base_patch32_clip_224.openai")),
    ImageModelSpec("vit-b16", architecture="vit_b_16", dim=768, head="heads", **_TORCHVISION,
                   weights=DefaultWeights("ViT_B_16_Weights.IMAGENET1K_V1", _TORCH_HUB + "vit_b_16-c867db91.pth",
                                          "vit_b_16-c867db91.pth", "c867db91")),
    ImageModelSpec("resnet18", architecture="resnet18", dim=512, head="fc", **_TORCHVISION,
                   weights=DefaultWeights("ResNet18_Weights.IMAGENET1K_V1", _TORCH_HUB + "resnet18-f37072fd.pth",
                                          "resnet18-f37072fd.pth", "f37072fd")),
    ImageModelSpec("resnet50", architecture="resnet50", dim=2048, head="fc", **{**_TORCHVISION, "resize_size": 232},
                   weights=DefaultWeights("ResNet50_Weights.IMAGENET1K_V2", _TORCH_HUB + "resnet50-11ad3fa6.pth",
                                          "resnet50-11ad3fa6.pth", "11ad3fa6")),
)}

#: The built-in model names (``gnnbench embed tiles --model``).


def get_image_model(name: str | ImageModelSpec) -> ImageModelSpec:
    """The spec of a model name (built-in or registered); unknown names list the valid ones."""
    if isinstance(name, ImageModelSpec):
        return name
    spec = _REGISTRY.get(str(name).strip().lower())
    if spec is None:
        raise ValueError(f"unknown image model {name!r}; valid: {', '.join(_REGISTRY)}")
    return spec


def registered_models() -> tuple[str, ...]:
    """Every model name known now: the built-ins, then those added with :func:`register_image_model`."""
    return tuple(_REGISTRY)


def register_image_model(name: str, builder: Callable[[], nn.Module] | None = None, *, dim: int, input_size: int,
                         resize_size: int | None = None, mean: tuple[float, float, float] = IMAGENET_MEAN,
                         std: tuple[float, float, float] = IMAGENET_STD, interpolation: str = "bilinear",
                         library: str = "custom", architecture: str | None = None, head: str | None = None,
                         normalize: bool = False, replace_existing: bool = False) -> ImageModelSpec:
    """Add a model (tests register tiny ones); returns its spec.

    ``library="custom"``: ``builder()`` returns a randomly initialised module mapping normalised N x 3 x input x
    input images to N x ``dim`` features (a ``--weights`` file is loaded into it as a state dict).
    ``library="torchvision"`` or ``"open_clip"``: ``architecture`` names the library's model (an open_clip config
    added with ``open_clip.add_model_config``). Registered models have no default weights: random init.
    """
    key = name.strip().lower()
    if key in IMAGE_MODELS or (key in _REGISTRY and not replace_existing):
        raise ValueError(f"image model {name!r} is already registered")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if library == "custom":
        if builder is None:
            raise ValueError(f"custom image model {name!r} needs a builder")
        build = _custom_builder(builder)
    elif library in ("torchvision", "open_clip"):
        if architecture is None:
            raise ValueError(f"{library} image model {name!r} needs an architecture")
        build = _build_torchvision if library == "torchvision" else _build_open_clip
    else:
        raise ValueError(f"library must be custom, torchvision or open_clip, got {library!r}")
    if dim < 1 or input_size < 1 or (resize_size is not None and resize_size < input_size):
        raise ValueError(f"image model {name!r}: dim and input_size must be positive and resize_size >= input_size")
    spec = ImageModelSpec(key, library, architecture or key, dim=int(dim), input_size=int(input_size),
                          resize_size=int(resize_size or input_size), interpolation=interpolation,
                          mean=tuple(mean), std=tuple(std), builder=build, head=head, normalize=normalize)
    _REGISTRY[key] = spec
    return spec


def unregister_image_model(name: str) -> None:
    """Remove a model added with :func:`register_image_model` (the built-ins stay)."""
    key = name.strip().lower()
    if key in IMAGE_MODELS:
        raise ValueError(f"{name!r} is a built-in image model")
    _REGISTRY.pop(key, None)


def library_version(spec: ImageModelSpec) -> str:
    """``"torchvision 0.29.1"``, ``"open_clip 3.3.0"`` or ``"torch 2.x"`` (custom models)."""
    if spec.library == "open_clip":
        return f"open_clip {import_open_clip().__version__}"
    if spec.library == "torchvision":
        import torchvision

        return f"torchvision {torchvision.__version__}"
    return f"torch {torch.__version__}"

