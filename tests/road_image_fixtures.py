"""Random image embeddings for a built region, stored where ``gnnbench embed tiles`` puts them (tests only)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from gnnbench.io.manifest import write_manifest
from gnnbench.road.manifest import read_manifest
from gnnbench.road.tiles.embed.store import write_embeddings
from gnnbench.road.tiles.layout import IMAGERY_MANIFEST_KIND, MANIFEST_NAME, embeddings_dir, imagery_dir

SOURCE = "usgs-imagery"


def write_region_embeddings(root: Path, state: str = "DEMO", model: str = "clip-vit-b32", *, dim: int = 8,
                            source: str = SOURCE, missing: Iterable[int] = (), seed: int = 0,
                            nodes_sha256: str | None = None, extra_rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Write random ``[N + extra_rows, dim]`` embeddings of ``state``'s nodes (``missing`` nodes unavailable),
    recorded as made for ``nodes_sha256`` (default: the tables' own), and a minimal imagery manifest for
    ``source``; returns the stored values (float16-rounded, zeros where missing) and the availability flags."""
    nodes = read_manifest(Path(root) / "tables" / state)["files"]["nodes"]
    count = int(nodes["rows"]) + extra_rows
    embeddings = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    available = np.ones(count, dtype=bool)
    available[list(missing)] = False
    imagery = imagery_dir(root, state, source)
    imagery.mkdir(parents=True, exist_ok=True)
    write_manifest(imagery / MANIFEST_NAME, kind=IMAGERY_MANIFEST_KIND, layout=1, parameters={"source": source},
                   files={})
    write_embeddings(embeddings_dir(root, state, source, model), embeddings, available,
                     parameters={"model": model, "source": source,
                                 "nodes_sha256": nodes["sha256"] if nodes_sha256 is None else nodes_sha256})
    stored = np.where(available[:, None], embeddings, 0).astype(np.float16).astype(np.float32)
    return stored, available
