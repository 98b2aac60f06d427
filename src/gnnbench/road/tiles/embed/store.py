"""Embeddings on disk, aligned to node order: ``embeddings.npy`` (float16, N x D), ``available.npy`` (bool, N).

Row ``i`` belongs to node ``i`` of the state's ``nodes.parquet``; a node without a usable crop has zeros and
``available[i] = False`` (never silently: the dataset appends ``image_available`` as a feature). The manifest
(kind ``road-embeddings``) records the model, its weights' sha256, the preprocessing and the node table's hash.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ....io.files import atomic_path
from ....io.manifest import ManifestError, file_record, read_manifest, verify_files, write_manifest
from ..layout import EMBEDDINGS_MANIFEST_KIND, MANIFEST_NAME, embeddings_dir, imagery_sources_of, road_root

EMBEDDINGS_LAYOUT = 1


def write_embeddings(directory: str | os.PathLike, embeddings: np.ndarray, available: np.ndarray, *,
                     parameters: Mapping[str, Any], **sections: Any) -> dict[str, Any]:
    """Write the arrays and their manifest into ``directory``; returns the manifest."""
    directory = Path(directory)
    embeddings = np.asarray(embeddings)
    available = np.asarray(available, dtype=bool)
    if embeddings.ndim != 2 or available.shape != (embeddings.shape[0],):
        raise ValueError(f"{directory}: embeddings must be N x D with N availability flags, got "
                         f"{embeddings.shape} and {available.shape}")
    if not np.isfinite(embeddings[available]).all():
        raise ValueError(f"{directory}: embeddings contain NaN or infinite values")
    stored = np.where(available[:, None], embeddings, 0).astype(np.float16)
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in (("embeddings.npy", stored), ("available.npy", available)):
        with atomic_path(directory / name) as temporary:
            with open(temporary, "wb") as handle:
                np.save(handle, array)
    files = {"embeddings": file_record(directory / "embeddings.npy", rows=len(stored)),
             "available": file_record(directory / "available.npy", rows=len(available))}
    counts = {"nodes": int(len(available)), "embedded": int(available.sum()),
              "unavailable": int((~available).sum())}
    return write_manifest(directory / MANIFEST_NAME, kind=EMBEDDINGS_MANIFEST_KIND, layout=EMBEDDINGS_LAYOUT,
                          parameters=parameters, files=files, dim=int(stored.shape[1]), counts=counts, **sections)


def read_embeddings(directory: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(embeddings float32 N x D, available bool N, manifest)`` from ``directory``, verified."""
    directory = Path(directory)
    manifest = read_manifest(directory / MANIFEST_NAME, kinds=(EMBEDDINGS_MANIFEST_KIND,), layout=EMBEDDINGS_LAYOUT)
    verify_files(manifest, directory)
    embeddings = np.load(directory / "embeddings.npy").astype(np.float32)
    available = np.load(directory / "available.npy").astype(bool)
    return embeddings, available, manifest


def find_embeddings(root: str | os.PathLike | None, state: str, model: str, *,
                    source: str | None = None) -> str:
    """The imagery source whose ``model`` embeddings of ``state`` to use (``source``, or the only one that has
    them); :class:`FileNotFoundError` naming the commands that make them, ValueError when several have them."""
    sources = [source] if source else imagery_sources_of(root, state)
    found = [key for key in sources if (embeddings_dir(root, state, key, model) / MANIFEST_NAME).is_file()]
    if not found:
        where = road_root(root) / "imagery" / state
        raise FileNotFoundError(
            f"no {model} embeddings for {state} under {where}"
            + (f" from source {source!r}" if source else "")
            + f"; make them with `gnnbench download tiles --state {state} && gnnbench build tiles --state {state} "
              f"&& gnnbench embed tiles --state {state} --model {model}`")
    if len(found) > 1:
        raise ValueError(f"{state} has {model} embeddings from several imagery sources ({', '.join(found)}); "
                         f"choose one with image_source=")
    return found[0]


def load_image_features(root: str | os.PathLike | None, state: str, model: str, *,
                        source: str | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The embeddings of ``state`` by ``model`` (from imagery ``source``; needed only when several have them),
    found by :func:`find_embeddings`."""
    key = find_embeddings(root, state, model, source=source)
    try:
        return read_embeddings(embeddings_dir(root, state, key, model))
    except ManifestError as error:
        raise ManifestError(f"{error}; rebuild with `gnnbench embed tiles --state {state} --model {model}`") from None
