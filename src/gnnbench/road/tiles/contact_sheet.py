"""A contact sheet: a seeded grid of random crops of a state, for the data card."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ...io.files import atomic_path
from .shards import read_member

THUMB = 128


def write_contact_sheet(index: pd.DataFrame, shards: Path, path: Path, *, count: int = 16, seed: int = 0,
                        title: str = "") -> Path | None:
    """A grid of ``count`` random ``ok`` crops (same seed, same picks) with their node ids; None if none is ok."""
    ok = index[(index["status"] == "ok") & (index["kind"] == "n")]
    if ok.empty:
        return None
    picks = ok.iloc[np.sort(np.random.default_rng(seed).choice(len(ok), size=min(count, len(ok)), replace=False))]
    columns = math.ceil(math.sqrt(len(picks)))
    rows = math.ceil(len(picks) / columns)
    header = 18 if title else 0
    sheet = Image.new("RGB", (columns * THUMB, rows * (THUMB + 14) + header), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((4, 3), title, fill="black")
    for number, row in enumerate(picks.itertuples(index=False)):
        image = Image.open(io.BytesIO(read_member(shards / row.shard, row.offset, row.size))).convert("RGB")
        image = image.resize((THUMB, THUMB), Image.Resampling.BILINEAR)
        left, top = (number % columns) * THUMB, header + (number // columns) * (THUMB + 14)
        sheet.paste(image, (left, top))
        draw.text((left + 3, top + THUMB + 1), f"node {row.node_id}", fill="black")
    with atomic_path(path) as temporary:
        sheet.save(temporary, "PNG")
    return path
