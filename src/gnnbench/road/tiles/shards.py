"""Crops in WebDataset-style tar shards, with a Parquet index for random access by node id.

A sample is consecutive tar members sharing a key (``n000012345`` for node 12345, ``e...`` for an edge
midpoint; keys have no dots, as WebDataset splits the key at the first dot): ``KEY.png`` (or ``.jpg``) and
``KEY.json`` (where and when the image was taken). Shards are byte-reproducible: members in key order, mtime,
uid and gid 0, no user names. :func:`write_shard` returns where each image sits, so reading one node is one
seek (:func:`read_member`).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...io.files import atomic_path

IMAGE_EXTENSIONS = ("png", "jpg")


def target_key(kind: str, ident: int) -> str:
    """The sample key of a node (``kind="n"``) or an edge midpoint (``kind="e"``)."""
    if kind not in ("n", "e"):
        raise ValueError(f"target kind must be 'n' (node) or 'e' (edge), got {kind!r}")
    return f"{kind}{int(ident):09d}"


def parse_key(key: str) -> tuple[str, int]:
    """``("n", 12345)`` from ``"n000012345"``."""
    if len(key) < 2 or key[0] not in "ne" or not key[1:].isdigit():
        raise ValueError(f"not a gnnbench crop key: {key!r}")
    return key[0], int(key[1:])


@dataclass(frozen=True)
class ShardEntry:
    """Where one sample's image lies in its shard."""

    key: str
    extension: str
    offset: int  # byte offset of the image data in the tar file
    size: int


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, io.BytesIO(data)


def write_shard(path: str | os.PathLike, samples: Iterable[tuple[str, str, bytes, dict[str, Any]]]) -> list[ShardEntry]:
    """Write ``(key, extension, image_bytes, metadata)`` samples to a tar at ``path`` (atomically).

    Samples are written in key order whatever order they come in; returns one :class:`ShardEntry` per sample.
    """
    ordered = sorted(samples, key=lambda sample: sample[0])
    keys = [sample[0] for sample in ordered]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{path}: duplicate sample keys in one shard")
    entries: list[ShardEntry] = []
    with atomic_path(Path(path)) as temporary:
        with tarfile.open(temporary, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, extension, image, metadata in ordered:
                parse_key(key)
                if extension not in IMAGE_EXTENSIONS:
                    raise ValueError(f"{path}: image extension must be one of {IMAGE_EXTENSIONS}, got {extension!r}")
                info, data = _member(f"{key}.{extension}", image)
                header_at = tar.fileobj.tell()
                tar.addfile(info, data)
                entries.append(ShardEntry(key, extension, header_at + tarfile.BLOCKSIZE, len(image)))
                info, data = _member(f"{key}.json", json.dumps(metadata, sort_keys=True).encode())
                tar.addfile(info, data)
    return entries


def read_member(path: str | os.PathLike, offset: int, size: int) -> bytes:
    """The ``size`` bytes at ``offset`` of shard ``path`` (one image, located through the index)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise OSError(f"{path}: truncated shard (wanted {size} bytes at offset {offset}, got {len(data)})")
    return data


def iter_shard(path: str | os.PathLike) -> Iterator[tuple[str, str, bytes, dict[str, Any]]]:
    """``(key, extension, image_bytes, metadata)`` per sample of a shard, in order."""
    pending: dict[str, Any] = {}
    with tarfile.open(path, "r") as tar:
        for info in tar:
            stem, _, extension = info.name.partition(".")
            if pending and pending["key"] != stem:
                raise ValueError(f"{path}: sample {pending['key']} is incomplete (no image or no metadata)")
            handle = tar.extractfile(info)
            data = handle.read() if handle is not None else b""
            pending["key"] = stem
            if extension == "json":
                pending["meta"] = json.loads(data)
            else:
                pending["ext"], pending["image"] = extension, data
            if "meta" in pending and "image" in pending:
                yield stem, pending["ext"], pending["image"], pending["meta"]
                pending = {}
    if pending:
        raise ValueError(f"{path}: sample {pending['key']} is incomplete (no image or no metadata)")
