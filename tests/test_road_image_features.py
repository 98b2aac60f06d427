"""``RoadAccidentDataset(..., image_features=MODEL)``: each node's image embedding and ``image_available`` appended
to the static node features (before the weather), checked against the build's node table, with clear errors for
stale or missing embeddings, a preprocessing cache per option, and the same columns in the DGL twin."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
import torch
from road_image_fixtures import SOURCE, write_region_embeddings

from gnnbench.datasets import RoadAccidentDataset
from gnnbench.road.tiles.layout import IMAGE_MODELS

DIM = 8
MISSING = (0, 5, 17)  # nodes without a usable image


@pytest.fixture(scope="module")
def region(tmp_path_factory, copy_demo_region):
    """A private demo region with clip-vit-b32 embeddings; ``(root, embeddings, available)``."""
    root = copy_demo_region(tmp_path_factory.mktemp("road-images"))
    embeddings, available = write_region_embeddings(root, dim=DIM, missing=MISSING)
    return root, embeddings, available


@pytest.fixture
def copy(region, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(region[0], target)
    return target


def test_image_columns_follow_the_static_features(region):
    root, embeddings, available = region
    plain = RoadAccidentDataset(root, "DEMO")
    images = RoadAccidentDataset(root, "DEMO", image_features="clip-vit-b32")
    assert images.image_feature_slice == slice(4, 4 + DIM + 1) and images.num_image_features == DIM + 1
    assert plain.image_feature_slice is None and plain.num_image_features == 0 and plain.image_manifest is None
    names = images.node_feature_names
    assert names[:4] == plain.node_feature_names[:4] and names[4 + DIM + 1:] == plain.node_feature_names[4:]
    assert names[images.image_feature_slice] == [f"img_{i}" for i in range(DIM)] + ["image_available"]
    assert images.num_node_features == plain.num_node_features + DIM + 1 == len(names)
    assert images.image_source == SOURCE and images.image_manifest["parameters"]["model"] == "clip-vit-b32"
    for data, base in ((images.snapshot(2019, 7), plain.snapshot(2019, 7)), (images[3], plain[3]),
                       (images.static_graph, plain.static_graph)):
        columns = data.x[:, images.image_feature_slice]
        assert torch.equal(columns[:, :DIM], torch.from_numpy(embeddings))
        assert torch.equal(columns[:, DIM], torch.from_numpy(available.astype(np.float32)))
        rest = torch.cat([data.x[:, :4], data.x[:, 4 + DIM + 1:]], dim=1)
        assert torch.equal(rest, base.x)  # the graph features and the weather are untouched
    assert "image_features='clip-vit-b32'" in repr(images)


def test_nodes_without_an_image_get_zeros_and_flag_zero(region):
    root, _, _ = region
    x = RoadAccidentDataset(root, "DEMO", image_features="clip-vit-b32").static_graph.x
    columns = x[:, 4:4 + DIM + 1]
    assert torch.equal(columns[list(MISSING)], torch.zeros(len(MISSING), DIM + 1))
    others = [node for node in range(x.shape[0]) if node not in MISSING]
    assert bool((columns[others, DIM] == 1).all()) and bool((columns[others, :DIM] != 0).any(dim=1).all())


def test_embeddings_of_another_node_table_are_a_clear_error(copy):
    write_region_embeddings(copy, model="vit-b16", dim=DIM, nodes_sha256="0" * 64)
    with pytest.raises(ValueError, match=r"stale.*sha256 0{64}.*sha256 [0-9a-f]{64}.*"
                                         r"`gnnbench embed tiles --state DEMO --model vit-b16`"):
        RoadAccidentDataset(copy, "DEMO", image_features="vit-b16")
    write_region_embeddings(copy, model="resnet18", dim=DIM, extra_rows=2)  # right hash, wrong node count
    nodes = RoadAccidentDataset(copy, "DEMO").static_graph.num_nodes
    with pytest.raises(ValueError, match=rf"made for {nodes + 2} nodes.*have {nodes} nodes.*"
                                         r"`gnnbench embed tiles --state DEMO --model resnet18`"):
        RoadAccidentDataset(copy, "DEMO", image_features="resnet18")


def test_missing_embeddings_name_the_commands(region, tmp_path):
    root, _, _ = region
    with pytest.raises(FileNotFoundError, match=r"no resnet50 embeddings for DEMO.*gnnbench download tiles --state "
                                                r"DEMO.*gnnbench embed tiles --state DEMO --model resnet50"):
        RoadAccidentDataset(root, "DEMO", image_features="resnet50")
    with pytest.raises(FileNotFoundError, match="from source 'naip-pc'"):
        RoadAccidentDataset(root, "DEMO", image_features="clip-vit-b32", image_source="naip-pc")


def test_bad_image_options_are_clear_errors(region):
    root, _, _ = region
    with pytest.raises(ValueError, match="image_features must be one of 'clip-vit-b32'.*got 'clip'"):
        RoadAccidentDataset(root, "DEMO", image_features="clip")
    with pytest.raises(ValueError, match="image_source='usgs-imagery' needs image_features="):
        RoadAccidentDataset(root, "DEMO", image_source=SOURCE)
    assert IMAGE_MODELS == ("clip-vit-b32", "vit-b16", "resnet18", "resnet50")


def _doubled(data):
    data.x_double = data.x * 2
    return data


def test_the_preprocessing_cache_follows_the_option(copy, monkeypatch):
    calls = []
    original = RoadAccidentDataset._run_preprocessing

    def counted(self):
        calls.append(self.image_features)
        return original(self)

    monkeypatch.setattr(RoadAccidentDataset, "_run_preprocessing", counted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # switching the option never warns nor rebuilds the processed arrays
        for image_features in (None, "clip-vit-b32", None, "clip-vit-b32"):
            dataset = RoadAccidentDataset(copy, "DEMO", pre_transform=_doubled, image_features=image_features)
            static = dataset.static_graph
            assert torch.equal(static.x_double, static.x * 2)
            assert static.x_double.shape[1] == 4 + (DIM + 1 if image_features else 0)
    assert calls == [None, "clip-vit-b32"]  # each option processed once, then read from its own cache
    new, _ = write_region_embeddings(copy, dim=DIM, seed=1)  # remade embeddings: that cache is made again
    dataset = RoadAccidentDataset(copy, "DEMO", pre_transform=_doubled, image_features="clip-vit-b32")
    assert calls == [None, "clip-vit-b32", "clip-vit-b32"]
    assert torch.equal(dataset.static_graph.x_double[:, 4:4 + DIM], torch.from_numpy(new) * 2)


@pytest.mark.dgl
def test_dgl_twin_carries_the_image_columns(region):
    if not os.environ.get("GNNBENCH_REQUIRE_DGL"):
        pytest.importorskip("dgl")
    from gnnbench.datasets.dgl import RoadAccidentDGLDataset

    root, embeddings, available = region
    pyg = RoadAccidentDataset(root, "DEMO", image_features="clip-vit-b32")
    twin = RoadAccidentDGLDataset(root, "DEMO", image_features="clip-vit-b32")
    graph = twin.snapshot(2020, 2)
    assert torch.equal(graph.ndata["feat"], pyg.snapshot(2020, 2).x)
    columns = twin.static_graph.ndata["feat"][:, pyg.image_feature_slice]
    assert torch.equal(columns[:, :DIM], torch.from_numpy(embeddings))
    assert torch.equal(columns[:, DIM], torch.from_numpy(available.astype(np.float32)))
