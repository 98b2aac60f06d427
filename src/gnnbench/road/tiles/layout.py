"""Where the imagery of a state lives under the road root (one place for every imagery path).

::

    ROOT/imagery/cache/{source_key}/...                 fetched tiles / COG blocks, shared by every state
    ROOT/imagery/{STATE}/{source_key}/crops/shard-00000.tar   WebDataset shards of the crops
    ROOT/imagery/{STATE}/{source_key}/crops.parquet      index: one row per target (node id), its status and
                                                         where its image sits in which shard
    ROOT/imagery/{STATE}/{source_key}/manifest.json      kind "road-imagery"
    ROOT/imagery/{STATE}/{source_key}/embeddings/{model}/  embeddings.npy, available.npy, manifest.json

``ROOT`` is the road root of :class:`~gnnbench.datasets.RoadAccidentDataset` (``$GNNBENCH_HOME/road``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ...io.cache import gnnbench_home

IMAGERY_MANIFEST_KIND = "road-imagery"
EMBEDDINGS_MANIFEST_KIND = "road-embeddings"
INDEX_NAME = "crops.parquet"
MANIFEST_NAME = "manifest.json"
#: The image models ``gnnbench embed tiles --model`` offers (``RoadAccidentDataset(image_features=...)``'s choices).
IMAGE_MODELS = ("clip-vit-b32", "vit-b16", "resnet18", "resnet50")


def road_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, or the default road root ``$GNNBENCH_HOME/road``."""
    return Path(root).expanduser() if root is not None else gnnbench_home() / "road"


def cache_dir(root: str | os.PathLike | None, source_key: str) -> Path:
    """The tile/block cache of one source (shared by all states)."""
    return road_root(root) / "imagery" / "cache" / source_key


def imagery_dir(root: str | os.PathLike | None, state: str, source_key: str) -> Path:
    """The crops, index and manifest of ``state`` from one source."""
    return road_root(root) / "imagery" / state / source_key


def shard_dir(root: str | os.PathLike | None, state: str, source_key: str) -> Path:
    return imagery_dir(root, state, source_key) / "crops"


def embeddings_dir(root: str | os.PathLike | None, state: str, source_key: str, model: str) -> Path:
    """The embeddings of ``state``'s crops by ``model``."""
    return imagery_dir(root, state, source_key) / "embeddings" / model


def imagery_sources_of(root: str | os.PathLike | None, state: str) -> list[str]:
    """The source keys that have imagery for ``state`` (sorted)."""
    base = road_root(root) / "imagery" / state
    return sorted(p.name for p in base.iterdir() if (p / MANIFEST_NAME).is_file()) if base.is_dir() else []
