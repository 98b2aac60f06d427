"""Image embeddings of the crops: models, weights, the batched run, the manifest and ``gnnbench embed tiles``."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from gnnbench.io.files import sha256_file
from gnnbench.io.manifest import write_manifest
from gnnbench.io.offline import offline_mode
from gnnbench.road.tiles.embed import models as embed_models
from gnnbench.road.tiles.embed.models import (CLIP_MEAN, CLIP_STD, IMAGE_MODELS, get_image_model,
                                              register_image_model, unregister_image_model)
from gnnbench.road.tiles.embed.run import Embedder, embed_arrays, embed_tiles
from gnnbench.road.tiles.embed.store import read_embeddings
from gnnbench.road.tiles.embed.weights import WeightsUnavailableError, load_image_model, resolve_weights
from gnnbench.road.tiles.layout import imagery_dir
from gnnbench.road.tiles.shards import target_key, write_shard

STATE, SOURCE, SIZE = "TEST", "fixture-src", 20
NODES = 12
# node -> status; nodes 10 and 11 have no row at all; node 0 also has an edge-midpoint crop (never used)
STATUSES = {0: "ok", 1: "ok", 2: "missing", 3: "ok", 4: "out_of_coverage", 5: "ok", 6: "corrupt", 7: "ok",
            8: "blank", 9: "ok"}
OK = sorted(node for node, status in STATUSES.items() if status == "ok")


class TinyCNN(nn.Module):
    """Conv + batch norm (eval mode matters for batch-size invariance) + pooled linear head: 6-d output."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
    spec = register_image_model("tiny-cnn", TinyCNN, dim=6, input_size=16, resize_size=18, replace_existing=True)
    yield spec
    unregister_image_model("tiny-cnn")


def _image(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def make_crops(root, *, seed: int = 0) -> dict[int, np.ndarray]:
    """A road root with tables/TEST/nodes.parquet and imagery/TEST/fixture-src (2 shards, index, manifest)."""
    rng = np.random.default_rng(seed)
    tables = root / "tables" / STATE
    tables.mkdir(parents=True)
    pd.DataFrame({"node_id": np.arange(NODES, dtype=np.int64), "lon": rng.uniform(-71, -70, NODES),
                  "lat": rng.uniform(42, 43, NODES)}).to_parquet(tables / "nodes.parquet")
    directory = imagery_dir(root, STATE, SOURCE)
    images = {node: _image(rng) for node in OK}
    edge_image = _image(rng)
    rows = []
    shards = {"shard-00000.tar": [node for node in OK if node < 5], "shard-00001.tar": [n for n in OK if n >= 5]}
    for name, nodes in shards.items():
        samples = [(target_key("n", node), "png", _png(images[node]), {"lon": 0.0, "lat": 0.0}) for node in nodes]
        if name == "shard-00000.tar":
            samples.append((target_key("e", 0), "png", _png(edge_image), {}))
        for entry in write_shard(directory / "crops" / name, samples):
            kind, ident = entry.key[0], int(entry.key[1:])
            rows.append({"node_id": ident, "kind": kind, "status": "ok", "shard": name, "offset": entry.offset,
                         "size": entry.size})
    rows += [{"node_id": node, "kind": "n", "status": status, "shard": "", "offset": -1, "size": 0}
             for node, status in STATUSES.items() if status != "ok"]
    index = pd.DataFrame(rows).assign(lon=0.0, lat=0.0, year=-1, m_per_px=0.6)
    index.sort_values(["kind", "node_id"]).to_parquet(directory / "crops.parquet")
    write_manifest(directory / "manifest.json", kind="road-imagery", layout=1, parameters={"state": STATE},
                   files={})
    return images


@pytest.fixture()
def crops(tmp_path):
    return tmp_path, make_crops(tmp_path)


def _reference(images: dict[int, np.ndarray], weights=None) -> np.ndarray:
    """Each ok crop embedded alone (batch size 1), in node order, rows of the other nodes zero."""
    expected = np.zeros((NODES, 6), np.float32)
    for node, image in images.items():
        expected[node] = embed_arrays("tiny-cnn", image[None], weights=weights or "random", device="cpu",
                                      batch_size=1)[0]
    return expected


@pytest.mark.parametrize("batch_size, workers", [(1, 0), (5, 0), (3, 2)])
def test_embeddings_are_in_node_order_whatever_the_batching(crops, batch_size, workers):
    root, images = crops
    out = embed_tiles(STATE, model="tiny-cnn", weights="random", root=root, device="cpu", batch_size=batch_size,
                      num_workers=workers)
    embeddings, available, manifest = read_embeddings(out)
    assert out == imagery_dir(root, STATE, SOURCE) / "embeddings" / "tiny-cnn"
    assert available.tolist() == [node in OK for node in range(NODES)]
    assert not embeddings[~available].any()
    # float16 storage: equal to the one-image-at-a-time features within half precision
    np.testing.assert_allclose(embeddings, _reference(images), rtol=2e-3, atol=2e-3)
    assert len(np.unique(embeddings[available].round(2), axis=0)) == len(OK)  # the crops are not mixed up
    assert manifest["counts"] == {"nodes": NODES, "embedded": len(OK), "unavailable": NODES - len(OK)}
    assert manifest["throughput"]["images"] == len(OK) and manifest["throughput"]["decode_workers"] == workers
    parameters = manifest["parameters"]
    assert parameters["batch_size"] == batch_size and parameters["device"] == "cpu"
    assert parameters["dtype"] == "float32" and parameters["amp"] is False  # fp32 on the CPU even with amp=True


def test_embeddings_on_dask_equal_the_single_process_ones(crops, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from gnnbench.road.tiles.embed import run

    root, images = crops
    single = read_embeddings(embed_tiles(STATE, model="tiny-cnn", weights="random", root=root, device="cpu",
                                         batch_size=2, num_workers=0))
    monkeypatch.setattr(run, "RUNS_PER_TASK", 1)  # several tasks even on these few crops
    run._WORKER_EMBEDDERS.clear()
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster)
    try:
        out = embed_tiles(STATE, model="tiny-cnn", weights="random", root=root, device="cpu", batch_size=2,
                          scheduler=client)
    finally:
        client.close()
        cluster.close()
    dask = read_embeddings(out)
    assert np.array_equal(dask[0], single[0]) and np.array_equal(dask[1], single[1])
    assert dask[2]["parameters"] == single[2]["parameters"]
    assert len(run.crop_runs(pd.read_parquet(imagery_dir(root, STATE, SOURCE) / "crops.parquet")
                             .query("status == 'ok' and kind == 'n'"), 2)) > 1


def test_manifest_records_model_weights_and_inputs(crops):
    root, _ = crops
    out = embed_tiles(STATE, model="tiny-cnn", weights="random", root=root, device="cpu", num_workers=0)
    parameters = read_embeddings(out)[2]["parameters"]
    assert parameters["model"] == "tiny-cnn" and parameters["library"] == "custom"
    assert parameters["weights"] == {"origin": "random", "seed": 0}
    assert parameters["preprocessing"]["resize_shortest_side"] == 18
    assert parameters["preprocessing"]["center_crop"] == 16
    directory = imagery_dir(root, STATE, SOURCE)
    assert parameters["imagery_manifest_sha256"] == sha256_file(directory / "manifest.json")
    assert parameters["nodes_sha256"] == sha256_file(root / "tables" / STATE / "nodes.parquet")
    assert parameters["imagery_source"] == SOURCE


def test_weights_file_is_loaded_and_its_sha256_recorded(crops, tmp_path_factory):
    root, images = crops
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(TinyCNN().state_dict(), path)
    digest = sha256_file(path)
    named = path.with_name(f"tiny-{digest[:8]}.pth")
    path.rename(named)
    out = embed_tiles(STATE, model="tiny-cnn", weights=named, root=root, device="cpu", num_workers=0)
    embeddings, _, manifest = read_embeddings(out)
    assert manifest["parameters"]["weights"] == {"origin": "file", "file_name": named.name, "sha256": digest}
    np.testing.assert_allclose(embeddings, _reference(images, weights=named), rtol=2e-3, atol=2e-3)
    assert not np.allclose(embeddings, _reference(images), atol=1e-2)  # not the random init
    wrong = named.with_name("tiny-deadbeef.pth")
    wrong.write_bytes(named.read_bytes())
    with pytest.raises(ValueError, match="deadbeef"):
        resolve_weights("tiny-cnn", wrong)
    with pytest.raises(FileNotFoundError, match="no-such.pth"):
        resolve_weights("tiny-cnn", named.with_name("no-such.pth"))


def test_weights_file_that_does_not_fit_names_the_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(ValueError, match=r"other\.pth.*does not fit.*(missing|unexpected)"):
        load_image_model("tiny-cnn", path)


def test_default_weights_offline_say_how_to_supply_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with offline_mode(), pytest.raises(WeightsUnavailableError) as caught:
        resolve_weights("resnet18", state="MA")
    message = str(caught.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert "resnet18-f37072fd.pth" in message and "SHA-256 starting f37072fd" in message
    assert "`gnnbench embed tiles --state MA --model resnet18 --weights /path/to/resnet18-f37072fd.pth`" in message
    assert "\n" not in message
    assert not (tmp_path / "hub").exists()  # nothing was attempted
    # a cached copy that fails its hash is named, not loaded
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not weights")
    with offline_mode(), pytest.raises(ValueError, match="resnet18-f37072fd.pth.*corrupt"):
        resolve_weights("resnet18")


def test_default_download_is_hashed_and_recorded(tmp_path, monkeypatch):
    """The library's download path (torch hub), with the network replaced by a copy of a local file."""
    import dataclasses

    import torchvision

    from gnnbench.road.tiles.embed.models import DefaultWeights

    torch.manual_seed(5)
    source = tmp_path / "source.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), source)
    digest = sha256_file(source)
    name = f"mobilenet-{digest[:8]}.pth"
    spec = dataclasses.replace(get_image_model("resnet18"), name="mobilenet-test", architecture="mobilenet_v3_small",
                               head="classifier", dim=576, weights=DefaultWeights(
                                   "TEST_V1", f"https://example.invalid/{name}", name, digest[:8]))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        Path(dst).write_bytes(source.read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    encoder, record = load_image_model(spec)
    assert calls == [(f"https://example.invalid/{name}", digest[:8])]
    assert record == {"origin": "download", "id": "TEST_V1", "url": f"https://example.invalid/{name}",
                      "file_name": name, "sha256": digest}
    assert (tmp_path / "hub" / "checkpoints" / name).is_file()
    with torch.inference_mode():
        assert encoder(torch.zeros(1, 3, 64, 64)).shape == (1, 576)
    load_image_model(spec)  # cached now: no second download
    assert len(calls) == 1

    def failing_download(url, dst, hash_prefix=None, progress=True):
        raise OSError("connection refused")

    (tmp_path / "hub" / "checkpoints" / name).unlink()
    monkeypatch.setattr(torch.hub, "download_url_to_file", failing_download)
    with pytest.raises(WeightsUnavailableError,
                       match=f"download failed .*connection refused.*--weights /path/to/{name}"):
        load_image_model(spec, state="IA")


def test_builtin_specs_match_torchvision():
    from torchvision.models import ResNet18_Weights, ResNet50_Weights, ViT_B_16_Weights

    assert IMAGE_MODELS == ("clip-vit-b32", "vit-b16", "resnet18", "resnet50")
    for name, enum in (("resnet18", ResNet18_Weights.IMAGENET1K_V1), ("resnet50", ResNet50_Weights.IMAGENET1K_V2),
                       ("vit-b16", ViT_B_16_Weights.IMAGENET1K_V1)):
        spec = get_image_model(name)
        transforms = enum.transforms()
        assert spec.weights.url == enum.url and spec.weights.id.endswith(enum.name)
        assert spec.weights.url.endswith(spec.weights.file_name) and spec.weights.sha256 in spec.weights.file_name
        assert [spec.resize_size] == transforms.resize_size and [spec.input_size] == transforms.crop_size
        assert list(spec.mean) == transforms.mean and list(spec.std) == transforms.std
        assert spec.interpolation == transforms.interpolation.value
    with pytest.raises(ValueError, match="unknown image model 'resnet34'.*resnet18"):
        get_image_model("resnet34")


@pytest.mark.parametrize("shape", [(2, 30, 30), (2, 24, 40), (1, 480, 300)])
def test_device_preprocessing_matches_torchvision_transforms(shape):
    from torchvision.transforms import v2

    spec = get_image_model("resnet50")  # resize 232, crop 224
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8))
    embedder = Embedder(nn.Identity(), spec, torch.device("cpu"))
    ours = embedder.preprocess(images)
    reference = v2.Compose([v2.Resize(spec.resize_size, antialias=True), v2.CenterCrop(spec.input_size),
                            v2.Normalize(spec.mean, spec.std)])(images.permute(0, 3, 1, 2).float() / 255)
    assert ours.shape == (shape[0], 3, 224, 224) and ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)


def test_torchvision_resnet18_random_on_two_tiny_crops():
    images = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    features = embed_arrays("resnet18", images, weights="random", device="cpu", batch_size=2)
    assert features.shape == (2, 512) and np.isfinite(features).all() and features.dtype == np.float32
    again = embed_arrays("resnet18", iter([images[:1], images[1:]]), weights="random", device="cpu",
                         channels_last=False)
    np.testing.assert_allclose(again, features, rtol=1e-4, atol=1e-4)  # seeded init, batching-independent


TINY_CLIP = {"embed_dim": 16, "quick_gelu": True,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}


@pytest.fixture()
def tiny_clip(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    (tmp_path / "tiny-clip-test.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(tmp_path / "tiny-clip-test.json")
    spec = register_image_model("tiny-clip", library="open_clip", architecture="tiny-clip-test", dim=16,
                                input_size=32, resize_size=32, mean=CLIP_MEAN, std=CLIP_STD,
                                interpolation="bicubic", normalize=True, replace_existing=True)
    yield open_clip, spec
    unregister_image_model("tiny-clip")


def test_open_clip_tiny_config_random_and_from_file(tiny_clip, tmp_path):
    open_clip, spec = tiny_clip
    images = np.random.default_rng(3).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    features = embed_arrays(spec, images, weights="random", device="cpu")
    assert features.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)  # L2-normalised like MMTraCE
    torch.manual_seed(7)
    model = open_clip.create_model("tiny-clip-test")
    path = tmp_path / "tiny-clip.pt"
    torch.save(model.state_dict(), path)
    encoder, record = load_image_model(spec, path)
    assert record == {"origin": "file", "file_name": "tiny-clip.pt", "sha256": sha256_file(path)}
    inputs = Embedder(nn.Identity(), spec, torch.device("cpu")).preprocess(torch.from_numpy(images))
    with torch.inference_mode():
        expected = nn.functional.normalize(model.eval().encode_image(inputs), dim=-1).numpy()
    np.testing.assert_allclose(embed_arrays(spec, images, weights=path, device="cpu"), expected, atol=1e-5)


@pytest.mark.filterwarnings("ignore:.*torch.jit:FutureWarning", "ignore:.*TorchScript archive:UserWarning")
def test_open_clip_torchscript_file_like_openais(tiny_clip, tmp_path):
    """OpenAI's ViT-B-32.pt is a TorchScript archive: loaded through open_clip's state-dict conversion."""
    open_clip, spec = tiny_clip
    torch.manual_seed(11)
    model = open_clip.create_model("tiny-clip-test").eval()
    state = {**model.state_dict(), "input_resolution": torch.tensor(32), "context_length": torch.tensor(8),
             "vocab_size": torch.tensor(64)}  # the extra entries of OpenAI's archives
    holder = nn.Module()  # a TorchScript module whose state dict is exactly ``state``
    for key, value in state.items():
        *parents, leaf = key.split(".")
        node = holder
        for part in parents:
            if not hasattr(node, part):
                node.add_module(part, nn.Module())
            node = getattr(node, part)
        node.register_buffer(leaf, value.clone())
    path = tmp_path / "tiny-openai.pt"
    torch.jit.save(torch.jit.script(holder), path)
    images = np.random.default_rng(4).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    inputs = Embedder(nn.Identity(), spec, torch.device("cpu")).preprocess(torch.from_numpy(images))
    with torch.inference_mode():
        expected = nn.functional.normalize(model.encode_image(inputs), dim=-1).numpy()
    np.testing.assert_allclose(embed_arrays(spec, images, weights=path, device="cpu"), expected, atol=1e-5)


def test_clip_vit_b32_spec_matches_open_clip():
    pytest.importorskip("open_clip")
    from open_clip import get_model_config
    from open_clip.pretrained import get_pretrained_cfg

    spec = get_image_model("clip-vit-b32")
    config = get_pretrained_cfg(spec.architecture, spec.weights.id)
    assert get_model_config(spec.architecture)["embed_dim"] == spec.dim == 512
    assert config["url"] == spec.weights.url and config["quick_gelu"] is True
    assert tuple(config["mean"]) == spec.mean and tuple(config["std"]) == spec.std
    assert config["interpolation"] == spec.interpolation and spec.weights.sha256 in spec.weights.url


def test_clip_default_weights_offline(monkeypatch, tmp_path):
    pytest.importorskip("open_clip")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("gnnbench.road.tiles.embed.weights._OPEN_CLIP_HUB_FILES", ())
    with offline_mode(), pytest.raises(WeightsUnavailableError, match=r"40d36571.*ViT-B-32\.pt.*--model clip-vit-b32"):
        resolve_weights("clip-vit-b32", state="DE")


def test_missing_open_clip_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "open_clip", None)
    with pytest.raises(embed_models.MissingLibraryError, match=r'pip install "gnnbench\[imagery\]"'):
        load_image_model("clip-vit-b32", "random")


def _cli(argv: list[str]) -> int:
    from gnnbench import cli_embed

    parser = argparse.ArgumentParser(prog="gnnbench")
    cli_embed.add_parsers(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_embed_tiles_end_to_end(crops, capsys):
    root, images = crops
    argv = ["embed", "tiles", "--state", "test", "--model", "tiny-cnn", "--weights", "random", "--root", str(root),
            "--device", "cpu", "--batch-size", "4", "--decode-workers", "0", "--no-progress"]
    assert _cli(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    directory = imagery_dir(root, STATE, SOURCE) / "embeddings" / "tiny-cnn"
    assert lines[-1] == str(directory)
    assert f"{len(OK)} of {NODES} nodes embedded ({NODES - len(OK)} without a usable crop)" in lines[0]
    assert "weights random (seed 0)" in lines[0]
    np.testing.assert_allclose(read_embeddings(directory)[0], _reference(images), rtol=2e-3, atol=2e-3)


def test_cli_options_all_have_help():
    from gnnbench import cli_embed

    parser = argparse.ArgumentParser(prog="gnnbench")
    commands = parser.add_subparsers()
    cli_embed.add_parsers(commands)
    tiles = commands.choices["embed"]._subparsers._group_actions[0].choices["tiles"]
    options = [action for action in tiles._actions if action.option_strings and action.dest != "help"]
    assert {"--state", "--model", "--weights", "--source", "--root", "--device", "--batch-size", "--no-amp",
            "--no-channels-last", "--decode-workers", "--scheduler", "--workers"} <= {
        name for action in options for name in action.option_strings}
    assert all(action.help for action in options)


def test_errors_name_the_missing_piece(tmp_path, crops):
    root, _ = crops
    with pytest.raises(FileNotFoundError, match="no imagery of TEST from source 'other'.*fixture-src"):
        embed_tiles(STATE, model="tiny-cnn", weights="random", root=root, source="other", device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        embed_tiles(STATE, model="tiny-cnn", weights="random", root=root, batch_size=0)
    index = imagery_dir(root, STATE, SOURCE) / "crops.parquet"
    frame = pd.read_parquet(index)
    frame.loc[frame["node_id"] == 9, "node_id"] = 40
    frame.to_parquet(index)
    with pytest.raises(ValueError, match=r"crops\.parquet: node_id 40 is not a node.*stale"):
        embed_tiles(STATE, model="tiny-cnn", weights="random", root=root, device="cpu", num_workers=0)
    empty = tmp_path / "empty"
    (empty / "tables" / STATE).mkdir(parents=True)
    (empty / "tables" / STATE / "nodes.parquet").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="no imagery of TEST.*gnnbench build tiles --state TEST"):
        embed_tiles(STATE, model="tiny-cnn", weights="random", root=empty)


def test_corrupt_crop_names_shard_and_node(crops):
    root, _ = crops
    directory = imagery_dir(root, STATE, SOURCE)
    index = pd.read_parquet(directory / "crops.parquet")
    row = index[(index["node_id"] == 7) & (index["kind"] == "n")].iloc[0]
    with open(directory / "crops" / row["shard"], "r+b") as handle:
        handle.seek(int(row["offset"]))
        handle.write(b"\0" * 8)  # break the PNG signature
    for workers in (0, 2):
        with pytest.raises(ValueError, match=r"shard-00001\.tar node 7: the crop does not decode") as caught:
            embed_tiles(STATE, model="tiny-cnn", weights="random", root=root, device="cpu", num_workers=workers)
        assert "\n" not in str(caught.value)  # one line, also from a DataLoader worker

