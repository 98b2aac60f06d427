"""Satellite imagery of every intersection: sources, crops, shard storage and image embeddings.

``download_tiles`` / ``build_tiles`` / ``info_tiles`` (:mod:`.pipeline`), ``embed_tiles`` (:mod:`.embed.run`),
``load_image_features`` (:mod:`.embed.store`), :class:`CropSpec`, the source names and the image models. Imported
on first use, so that ``import gnnbench.road`` stays light.
"""

from ...lazy import lazy_exports
_LAZY = {"download_tiles": "pipeline", "build_tiles": "pipeline", "info_tiles": "pipeline", "CropSpec": "crops",
         "embed_tiles": "embed.run", "load_image_features": "embed.store", "SOURCE_NAMES": "sources",
         "IMAGE_MODELS": "layout"}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
