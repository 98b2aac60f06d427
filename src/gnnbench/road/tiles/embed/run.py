"""Embed every crop of a state: stream the shards, decode on the host, preprocess and infer on the device.

:func:`embed_tiles` reads ``crops.parquet``, and a torch ``DataLoader`` over :class:`CropStream` reads the "ok"
node crops: the shards are cut into runs of consecutive images, each worker reads its own runs sequentially,
decodes the PNG/JPEG bytes (Pillow) into uint8 ``N x H x W x 3`` batches (pinned on CUDA). On the device each
batch is viewed as ``N x 3 x H x W`` (channels-last strides, no copy), converted to float, resized (shortest
side) and centre-cropped to the model's input, normalised, and encoded under ``torch.inference_mode`` (fp16
autocast on CUDA, fp32 on the CPU). The features land in node order; nodes without an "ok" crop get zeros and
``available = False``. :func:`embed_arrays` runs the same :class:`Embedder` on in-memory images.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ....arguments import check_int
from ....io.files import sha256_file
from ....io.manifest import read_manifest
from ...states import region_code
from ..layout import (IMAGERY_MANIFEST_KIND, INDEX_NAME, MANIFEST_NAME, embeddings_dir, imagery_dir,
                      imagery_sources_of, road_root, shard_dir)
from .models import ImageModelSpec, get_image_model, library_version
from .store import write_embeddings
from .weights import load_image_model, resolve_weights

log = logging.getLogger("gnnbench.road.tiles")

INDEX_COLUMNS = ("node_id", "kind", "status", "shard", "offset", "size")
RUN_BATCHES = 4  # a worker's unit of work: this many batches of consecutive images of one shard


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; ``"cuda"`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r}: CUDA is not available here (torch {torch.__version__}); "
                           f"use --device cpu")
    return resolved


def device_name(device: torch.device) -> str:
    """``"cpu"`` or ``"cuda:0 (NVIDIA H200)"``."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def autocast_used(amp: bool, device: torch.device) -> bool:
    """fp16 autocast on CUDA only; the CPU runs fp32."""
    return bool(amp) and device.type == "cuda"


def compute_dtype(autocast: bool) -> str:
    return "float16 (autocast)" if autocast else "float32"


class Embedder:
    """A model on a device: uint8 ``N x H x W x 3`` images in, float32 ``N x D`` features out (on the device)."""

    def __init__(self, encoder: nn.Module, spec: ImageModelSpec, device: torch.device, *, amp: bool = True,
                 channels_last: bool = True, compile: bool = False) -> None:
        self.spec, self.device = spec, device
        self.amp = autocast_used(amp, device)
        self.channels_last = bool(channels_last)
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.encoder = encoder.eval().to(device=device, memory_format=self.memory_format)
        self.forward = torch.compile(self.encoder) if compile else self.encoder
        self._mean = torch.tensor(spec.mean, device=device).mul(255).view(1, 3, 1, 1)
        self._std = torch.tensor(spec.std, device=device).mul(255).view(1, 3, 1, 1)

    @property
    def dtype(self) -> str:
        return compute_dtype(self.amp)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``N x H x W x 3`` on the device -> normalised float ``N x 3 x input x input``.

        As torchvision's ``Resize(resize_size) + CenterCrop(input_size)`` (antialiased), in float (clamped to
        [0, 255] after the resize) instead of on uint8 images."""
        spec = self.spec
        if images.dim() != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 N x H x W x 3, got {images.dtype} {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2).float()
        height, width = x.shape[-2:]
        if min(height, width) != spec.resize_size:
            short, long = spec.resize_size, int(spec.resize_size * max(height, width) / min(height, width))
            size = (short, long) if height <= width else (long, short)
            x = nn.functional.interpolate(x, size=size, mode=spec.interpolation, align_corners=False,
                                          antialias=True).clamp_(0, 255)
        top = int(round((x.shape[-2] - spec.input_size) / 2.0))
        left = int(round((x.shape[-1] - spec.input_size) / 2.0))
        x = x[..., top:top + spec.input_size, left:left + spec.input_size]
        return ((x - self._mean) / self._std).contiguous(memory_format=self.memory_format)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        """Preprocessed inputs -> float32 features (under autocast on CUDA)."""
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            features = self.forward(inputs)
        if features.dim() != 2 or features.shape[1] != self.spec.dim:
            raise ValueError(f"image model {self.spec.name} returned features of shape {tuple(features.shape)}, "
                             f"its spec says N x {self.spec.dim}")
        return features.float()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.encode(self.preprocess(images.to(self.device, non_blocking=True)))


@contextmanager
def _cudnn_autotune(device: torch.device) -> Iterator[None]:
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = previous or device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def decode_crop(data: bytes, where: str) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 ``H x W x 3``; ``where`` (shard and node) names a crop that does not decode."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for bad bytes
        raise ValueError(f"{where}: the crop does not decode ({type(error).__name__}: {error}); "
                         f"rebuild it with `gnnbench build tiles`") from None


class CropStream(IterableDataset):
    """Batches ``(node ids int64 N, uint8 N x H x W x 3)`` of the crops in ``runs``, one DataLoader worker each.

    A crop that cannot be read or decoded ends the worker's stream with ``(None, message)``.

    ``runs``: ``(shard file name, node ids, offsets, sizes)`` with offsets ascending; worker ``k`` of ``W`` takes
    runs ``k, k + W, ...``, so every image is read once, by one worker, sequentially within its shard.
    """

    def __init__(self, directory: Path, runs: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
                 batch_size: int) -> None:
        self.directory, self.runs, self.batch_size = Path(directory), runs, int(batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor | None, torch.Tensor | str]]:
        worker = get_worker_info()
        runs = self.runs[worker.id::worker.num_workers] if worker is not None else self.runs
        try:
            yield from self._batches(runs)
        except (OSError, ValueError) as error:  # one line for the caller, not a worker's wrapped traceback
            yield None, str(error)

    def _batches(self, runs: list) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        nodes: list[int] = []
        images: list[np.ndarray] = []
        for name, ids, offsets, sizes in runs:
            path = self.directory / name
            with open(path, "rb") as handle:
                for node, offset, size in zip(ids.tolist(), offsets.tolist(), sizes.tolist()):
                    handle.seek(offset)
                    data = handle.read(size)
                    if len(data) != size:
                        raise ValueError(f"{path}: truncated shard (node {node}: {size} bytes at offset {offset})")
                    image = decode_crop(data, f"{path} node {node}")
                    if images and image.shape != images[0].shape:  # a batch holds one image size
                        yield _batch(nodes, images)
                        nodes, images = [], []
                    nodes.append(node)
                    images.append(image)
                    if len(images) == self.batch_size:
                        yield _batch(nodes, images)
                        nodes, images = [], []
        if images:
            yield _batch(nodes, images)


def _batch(nodes: list[int], images: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(nodes, dtype=torch.int64), torch.from_numpy(np.stack(images))


def crop_runs(index, batch_size: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Cut the index rows (sorted by shard, offset) into runs of at most ``RUN_BATCHES`` batches."""
    runs = []
    step = RUN_BATCHES * batch_size
    for name, rows in index.groupby("shard", sort=True):
        rows = rows.sort_values("offset")
        ids, offsets, sizes = (rows[column].to_numpy(np.int64) for column in ("node_id", "offset", "size"))
        runs += [(name, ids[i:i + step], offsets[i:i + step], sizes[i:i + step]) for i in range(0, len(ids), step)]
    return runs


def run_stream(embedder: Embedder, runs: list, directory: Path, out: np.ndarray, *, batch_size: int,
               num_workers: int, progress: bool = False) -> int:
    """Embed every crop of ``runs`` into the rows of ``out`` named by node id; returns the images embedded."""
    from tqdm.auto import tqdm

    cuda = embedder.device.type == "cuda"
    loader = DataLoader(CropStream(directory, runs, batch_size), batch_size=None, num_workers=num_workers,
                        pin_memory=cuda, prefetch_factor=2 if num_workers else None)
    done = 0
    with tqdm(total=sum(len(run[1]) for run in runs), unit="img", disable=not progress,
              desc=f"embed {embedder.spec.name}") as bar:
        for nodes, images in loader:
            if nodes is None:  # a worker could not read or decode a crop: ``images`` is its message
                raise ValueError(images)
            out[nodes.numpy()] = embedder(images).cpu().numpy()
            done += len(nodes)
            bar.update(len(nodes))
    return done


def embed_arrays(model: str | ImageModelSpec, images: np.ndarray | torch.Tensor | Iterable, *,
                 weights: str | os.PathLike | None = None, device: str | torch.device = "auto",
                 batch_size: int = 256, amp: bool = True, channels_last: bool = True,
                 compile: bool = False, seed: int = 0) -> np.ndarray:
    """Features (float32 ``N x D``) of uint8 ``N x H x W x 3`` images, or of an iterable of such batches."""
    batch_size = check_int("batch_size", batch_size, minimum=1)
    spec = get_image_model(model)
    encoder, _ = load_image_model(spec, weights, seed=seed)
    target = resolve_device(device)
    embedder = Embedder(encoder, spec, target, amp=amp, channels_last=channels_last, compile=compile)
    if isinstance(images, (np.ndarray, torch.Tensor)):
        batches: Iterable = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    else:
        batches = images
    parts = []
    with _cudnn_autotune(target):
        for batch in batches:
            batch = torch.as_tensor(np.asarray(batch) if not isinstance(batch, torch.Tensor) else batch)
            parts.append(embedder(batch).cpu())
    return torch.cat(parts).numpy() if parts else np.zeros((0, spec.dim), np.float32)


RUNS_PER_TASK = 8
_WORKER_EMBEDDERS: dict[tuple, Embedder] = {}  # per worker process: one model per (name, weights, device, ...)
_WORKER_LOCK = threading.Lock()  # thread workers of one process build each model once


def _run_dask(runs: list, directory: Path, out: np.ndarray, *, scheduler: Any, workers: int | None,
              progress: bool, **options: Any) -> int:
    """Embed groups of ``RUNS_PER_TASK`` runs as Dask tasks into the rows of ``out``; returns the images."""
    from ....parallel import map_chunks, open_client

    groups = [runs[i:i + RUNS_PER_TASK] for i in range(0, len(runs), RUNS_PER_TASK)]
    done = 0
    with open_client(scheduler, workers) as client:
        for _, (nodes, features) in map_chunks(_embed_runs, groups, client=client, desc="embed crops",
                                               progress=progress, directory=str(directory), **options):
            out[nodes] = features
            done += len(nodes)
    return done


def _embed_runs(runs: list, *, directory: str, model: str, weights: Any, state: str, device: str, amp: bool,
                channels_last: bool, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One Dask task: the node ids and features of ``runs``, read and decoded in this worker."""
    key = (model, str(weights), state, device, amp, channels_last)
    with _WORKER_LOCK:
        if key not in _WORKER_EMBEDDERS:
            encoder, _ = load_image_model(get_image_model(model), weights, state=state)
            _WORKER_EMBEDDERS[key] = Embedder(encoder, get_image_model(model), resolve_device(device), amp=amp,
                                              channels_last=channels_last)
        embedder = _WORKER_EMBEDDERS[key]
    ids, features = [], []
    with _cudnn_autotune(embedder.device):
        for nodes, images in CropStream(Path(directory), runs, batch_size):
            if nodes is None:
                raise ValueError(images)
            ids.append(nodes.numpy())
            features.append(embedder(images).cpu().numpy())
    if not ids:
        return np.zeros(0, np.int64), np.zeros((0, embedder.spec.dim), np.float32)
    return np.concatenate(ids), np.concatenate(features)


def _imagery_source(root, state: str, source: str | None) -> str:
    """The imagery source key of ``state``: ``source``, or the only one that has a manifest."""
    found = imagery_sources_of(root, state)
    where = road_root(root) / "imagery" / state
    if source is not None:
        if source not in found:
            raise FileNotFoundError(f"no imagery of {state} from source {source!r} under {where} (found: "
                                    f"{', '.join(found) or 'none'}); make it with `gnnbench build tiles`")
        return source
    if not found:
        raise FileNotFoundError(f"no imagery of {state} under {where}; make it with `gnnbench download tiles "
                                f"--state {state} && gnnbench build tiles --state {state}`")
    if len(found) > 1:
        raise ValueError(f"{state} has imagery from several sources ({', '.join(found)}); choose one with --source")
    return found[0]


def _node_count(path: Path) -> int:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; build the road tables first (`gnnbench build road`)")
    ids = pq.read_table(path, columns=["node_id"]).column("node_id").to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))):
        raise ValueError(f"{path}: node_id must be 0..N-1 in order (embeddings are aligned to it)")
    return len(ids)


def _read_index(path: Path, nodes: int, nodes_path: Path):
    """The "ok" node rows of ``crops.parquet``, checked against the node table."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; make the crops with `gnnbench build tiles`")
    schema = pq.read_schema(path)
    missing = [column for column in INDEX_COLUMNS if column not in schema.names]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)} (not a crops index of this gnnbench)")
    index = pq.read_table(path, columns=list(INDEX_COLUMNS)).to_pandas()
    index = index[(index["kind"] == "n") & (index["status"] == "ok")]
    ids = index["node_id"].to_numpy(np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= nodes):
        raise ValueError(f"{path}: node_id {int(ids.max() if ids.max() >= nodes else ids.min())} is not a node of "
                         f"{nodes_path} ({nodes} nodes): the crops are stale, rebuild them with `gnnbench build tiles`")
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"{path}: a node has several 'ok' crops")
    if ((index["shard"] == "") | (index["size"] <= 0)).any():
        raise ValueError(f"{path}: an 'ok' crop has no shard or no size")
    return index


def embed_tiles(state: str, *, model: str = "clip-vit-b32", weights: str | os.PathLike | None = None,
                source: str | None = None, root: str | os.PathLike | None = None, device: str = "auto",
                batch_size: int = 256, amp: bool = True, channels_last: bool = True,
                num_workers: int | None = None, progress: bool = False, scheduler: Any = None,
                workers: int | None = None) -> Path:
    """Embed the crops of ``state`` with ``model``; returns the embeddings directory (``layout.embeddings_dir``).

    ``weights``: ``None`` (the library's default download), a file path, or ``"random"`` (seeded init).
    ``num_workers``: host decoding processes (default: the CPU count, at most one per run of images).
    ``scheduler``: embed groups of runs as Dask tasks instead (``"local"``, an address or a Client, as in
    :mod:`gnnbench.parallel`; ``workers`` sizes a LocalCluster); each worker loads the model once and decodes in
    its own process; the batches, and so the embeddings, are those of the single-process path.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    spec = get_image_model(model)
    base = road_root(root)
    state = region_code(state, tables=base / "tables")
    key = _imagery_source(root, state, source)
    directory = imagery_dir(root, state, key)
    read_manifest(directory / MANIFEST_NAME, kinds=(IMAGERY_MANIFEST_KIND,))
    nodes_path = base / "tables" / state / "nodes.parquet"
    count = _node_count(nodes_path)
    index = _read_index(directory / INDEX_NAME, count, nodes_path)
    runs = crop_runs(index, batch_size)
    target = resolve_device(device)
    embeddings = np.zeros((count, spec.dim), np.float32)
    if scheduler is not None and scheduler != "none":  # the workers load the model; here only its record
        record = resolve_weights(spec, weights, state=state).record
        decoders = 0
        started = time.perf_counter()
        done = _run_dask(runs, shard_dir(root, state, key), embeddings, scheduler=scheduler, workers=workers,
                         progress=progress, model=spec.name, weights=weights, state=state, device=device,
                         amp=amp, channels_last=channels_last, batch_size=batch_size)
    else:
        decoders = min(os.cpu_count() or 1, len(runs)) if num_workers is None else check_int(
            "num_workers", num_workers, minimum=0)
        decoders = decoders if decoders > 1 or num_workers is not None else 0
        encoder, record = load_image_model(spec, weights, state=state)
        embedder = Embedder(encoder, spec, target, amp=amp, channels_last=channels_last)
        started = time.perf_counter()
        with _cudnn_autotune(target):
            done = run_stream(embedder, runs, shard_dir(root, state, key), embeddings, batch_size=batch_size,
                              num_workers=decoders, progress=progress)
    seconds = time.perf_counter() - started
    available = np.zeros(count, bool)
    available[index["node_id"].to_numpy(np.int64)] = True
    parameters = {
        "model": spec.name, "library": spec.library, "architecture": spec.architecture,
        "library_version": library_version(spec), "torch_version": torch.__version__, "weights": record,
        "preprocessing": spec.preprocessing(), "l2_normalized": spec.normalize,
        "dtype": compute_dtype(autocast_used(amp, target)), "amp": autocast_used(amp, target),
        "channels_last": bool(channels_last), "batch_size": batch_size,
        "device": device_name(target), "imagery_source": key,
        "imagery_manifest_sha256": sha256_file(directory / MANIFEST_NAME), "nodes_sha256": sha256_file(nodes_path),
    }
    throughput = {"images": done, "seconds": round(seconds, 3),
                  "images_per_s": round(done / seconds, 1) if seconds > 0 else None, "decode_workers": decoders}
    out = embeddings_dir(root, state, key, spec.name)
    write_embeddings(out, embeddings, available, parameters=parameters, throughput=throughput)
    log.info("%s: %d of %d nodes embedded with %s (%.0f images/s) -> %s", state, done, count, spec.name,
             throughput["images_per_s"] or 0, out)
    return out
