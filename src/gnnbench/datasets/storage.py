"""On-disk columns of a trace set: one ``.npz`` of arrays plus a JSON manifest.

Arrays are stored in compact dtypes (float32 scalars, int8 masks and one-hots,
int16 pointers up to 32768 nodes, else int32), hints concatenated over time with
``offsets``; event-mask and repeated hints keep their encodings. The manifest (the
package's one format, :mod:`gnnbench.io.manifest`, kind ``"trace-set"``) records the
cache key as its parameters, the SHA-256 and size of the ``.npz``, sizes and field
layout, so a corrupted or stale file is recognised before it is used.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..algo.recording import expand_events
from ..algo.specs import SPECS, Stage, Type
from ..algo.trace import EventMask, RepeatedSteps, TraceSet
from ..io.files import atomic_path
from ..io.manifest import ManifestError, file_record, read_manifest, verify_files, write_manifest

FORMAT_VERSION = 2  # 2: the package-wide manifest envelope
KIND = "trace-set"
_NEVER = np.iinfo(np.int32).max
_REST_DTYPES = {Type.SCALAR: np.float32, Type.MASK: np.int8, Type.MASK_ONE: np.int8,
                Type.CATEGORICAL: np.int8, Type.POINTER: np.int32}


_MANIFEST_FIELDS = frozenset({"algorithm", "num_samples", "n", "fields"})


class StaleCacheError(Exception):
    """A cached file is missing, corrupted or was built from different settings."""


@dataclass(frozen=True)
class Columns:
    """A trace set as loaded from disk."""

    algorithm: str
    arrays: dict[str, np.ndarray]
    offsets: np.ndarray
    manifest: dict

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    @property
    def num_nodes(self) -> int:
        return int(self.manifest["n"])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sample(self, i: int) -> dict[str, np.ndarray]:
        """Every field of trace i in CLRS layout (hints time-first), at-rest dtypes."""
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        out = {}
        for name, (stage, _, _) in SPECS[self.algorithm].items():
            encoding = self.manifest["fields"][name]["encoding"]
            if stage != Stage.HINT:
                out[name] = self.arrays[f"{stage}__{name}"][i]
            elif encoding == "dense":
                out[name] = self.arrays[f"hint__{name}"][start:stop]
            elif encoding == "events":
                events = self.arrays[f"hint__{name}__events"][i:i + 1].astype(np.int64)
                base = self.arrays[f"hint__{name}__base"][i:i + 1].astype(np.float64)
                out[name] = expand_events(events, np.array([0, stop - start]), base)
            else:  # repeated
                values = self.arrays[f"hint__{name}__values"][i]
                out[name] = np.broadcast_to(values, (stop - start, *values.shape))
        return out

    def stacked(self, stage: str) -> dict[str, np.ndarray]:
        """Inputs or outputs of all traces, ``[num_samples, ...]``."""
        return {name: self.arrays[f"{stage}__{name}"] for name, (st, _, _) in SPECS[self.algorithm].items()
                if st == stage}


def write_columns(traces: TraceSet, path: Path, key: dict) -> dict:
    """Store ``traces`` at ``path`` (``.npz``) with its manifest beside it; return the manifest."""
    spec = SPECS[traces.algorithm]
    arrays: dict[str, np.ndarray] = {"offsets": np.asarray(traces.offsets, dtype=np.int64)}
    fields = {}
    for name, (stage, location, type_) in spec.items():
        rest = np.int16 if type_ == Type.POINTER and traces.num_nodes <= 2**15 else _REST_DTYPES[type_]
        value = traces.stage(stage)[name]
        encoding = "dense"
        if isinstance(value, EventMask):
            encoding = "events"
            arrays[f"hint__{name}__events"] = np.minimum(value.events, _NEVER).astype(np.int32)
            arrays[f"hint__{name}__base"] = value.base.astype(rest)
        elif isinstance(value, RepeatedSteps):
            encoding = "repeated"
            arrays[f"hint__{name}__values"] = value.values.astype(rest)
        else:
            dense = value if isinstance(value, np.ndarray) else traces.hint_array(name)
            arrays[f"{stage}__{name}"] = dense.astype(rest)
        fields[name] = {"stage": stage, "location": location, "type": type_,
                        "dtype": np.dtype(rest).name, "encoding": encoding}
    lengths = np.diff(traces.offsets)
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
    return write_manifest(_manifest_path(path), kind=KIND, layout=FORMAT_VERSION, parameters=key,
                          files={"columns": file_record(path)}, algorithm=traces.algorithm,
                          num_samples=len(traces), n=traces.num_nodes, total_steps=int(traces.offsets[-1]),
                          max_steps=int(lengths.max()) if len(lengths) else 0, fields=fields)


def read_columns(path: Path, key: dict) -> Columns:
    """Load columns written by ``write_columns`` for ``key``; ``StaleCacheError`` if unusable."""
    manifest_path = _manifest_path(path)
    if not path.exists() or not manifest_path.exists():
        raise StaleCacheError(f"{path if not path.exists() else manifest_path}: missing")
    try:
        manifest = read_manifest(manifest_path, kinds=(KIND,))
    except ManifestError as error:
        raise StaleCacheError(str(error)) from None
    missing = _MANIFEST_FIELDS - set(manifest)
    if missing:
        raise StaleCacheError(f"{manifest_path}: not a trace-set manifest (missing {', '.join(sorted(missing))})")
    if manifest["layout"] != FORMAT_VERSION or manifest["parameters"] != key:
        raise StaleCacheError(f"{manifest_path}: built with different settings or an older format")
    try:
        verify_files(manifest, path.parent)
    except ManifestError as error:
        raise StaleCacheError(f"{error}") from None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise StaleCacheError(f"{path}: unreadable ({error})") from None
    offsets = arrays.pop("offsets", None)
    if offsets is None or offsets.shape[0] != manifest["num_samples"] + 1:
        raise StaleCacheError(f"{path}: offsets do not match the manifest's {manifest['num_samples']} samples")
    absent = _expected_arrays(manifest) - set(arrays)
    if absent:
        raise StaleCacheError(f"{path}: arrays missing: {', '.join(sorted(absent))}")
    return Columns(algorithm=manifest["algorithm"], arrays=arrays, offsets=offsets, manifest=manifest)


def _expected_arrays(manifest: dict) -> set[str]:
    names = set()
    for name, (stage, _, _) in SPECS.get(manifest["algorithm"], {}).items():
        encoding = manifest["fields"].get(name, {}).get("encoding") if isinstance(manifest["fields"], dict) else None
        suffixes = {"dense": ("",), "events": ("__events", "__base"), "repeated": ("__values",)}.get(
            encoding, ("__missing_encoding",))
        names.update(f"{stage}__{name}{suffix}" for suffix in suffixes)
    if manifest["algorithm"] not in SPECS:
        names.add("__unknown_algorithm")
    return names


def _manifest_path(path: Path) -> Path:
    return path.with_suffix(".json")
