"""Is a fetched tile usable? Decode it fully (Pillow), and call it blank when it carries no picture.

Statuses a tile, block or crop can have, counted in the imagery manifest: ``ok``; ``missing`` (the service has
no tile there: HTTP 404); ``out_of_coverage`` (no imagery item covers the crop); ``corrupt`` (bytes that do not
decode, after one re-request); ``blank`` (a uniform or near-uniform picture: no-data fill); ``failed`` (the
request failed for good, e.g. retries exhausted or an expired token).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

STATUSES = ("ok", "missing", "out_of_coverage", "corrupt", "blank", "failed")
#: worst first: a crop needing several tiles takes the status of its worst one
_SEVERITY = {"failed": 0, "corrupt": 1, "missing": 2, "out_of_coverage": 3, "blank": 4, "ok": 5}
MIN_ENTROPY_BITS = 0.5
MAX_MODE_SHARE = 0.98


def worst(statuses: list[str]) -> str:
    """The status that decides a crop made from tiles with ``statuses``."""
    return min(statuses, key=_SEVERITY.__getitem__) if statuses else "ok"


def decode_rgb(data: bytes) -> np.ndarray:
    """``data`` as an H x W x 3 uint8 array; raises :class:`ValueError` when it is not a decodable image."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"not a decodable image ({type(error).__name__}: {error})") from None


def is_blank(rgb: np.ndarray) -> bool:
    """True when the picture is (nearly) uniform: grey-level entropy below 0.5 bit or one value on 98 % of pixels."""
    grey = (rgb[..., 0].astype(np.uint32) * 299 + rgb[..., 1].astype(np.uint32) * 587
            + rgb[..., 2].astype(np.uint32) * 114) // 1000
    counts = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    share = counts / counts.sum()
    entropy = -(share[share > 0] * np.log2(share[share > 0])).sum()
    return bool(entropy < MIN_ENTROPY_BITS or share.max() >= MAX_MODE_SHARE)


def check_tile(data: bytes) -> tuple[str, np.ndarray | None]:
    """``("ok", rgb)``, ``("corrupt", None)`` or ``("blank", rgb)`` for fetched bytes."""
    try:
        rgb = decode_rgb(data)
    except ValueError:
        return "corrupt", None
    return ("blank" if is_blank(rgb) else "ok"), rgb
