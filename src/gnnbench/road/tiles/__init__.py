"""Satellite imagery of every intersection: sources, crops, shard storage and image embeddings.

``download_tiles`` / ``build_tiles`` / ``info_tiles`` (:mod:`.pipeline`), ``embed_tiles`` (:mod:`.embed.run`),
``load_image_features`` (:mod:`.embed.store`), :class:`CropSpec`, the source names and the image models. Imported
on first use, so that ``import gnnbench.road`` stays light.
"""

from importlib import import_module
from typing import Any

_LAZY = {"download_tiles": "pipeline", "build_tiles": "pipeline", "info_tiles": "pipeline", "CropSpec": "crops",
         "embed_tiles": "embed.run", "load_image_features": "embed.store", "SOURCE_NAMES": "sources",
         "IMAGE_MODELS": "layout"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
