"""The multimodal road baselines: the fusion heads of MMTraCE (shapes, gradients, the gate's range, the mixture's
weights), the road model with a head, the config keys and their validation, earlier run hashes kept, and a tiny
``gnnbench run road_multimodal`` with each fusion on the demo region."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch
from road_image_fixtures import write_region_embeddings

from gnnbench.harness import finished_seeds, road_family
from gnnbench.harness.config import config_sha256, resolve
from gnnbench.models.road import RoadModel
from gnnbench.models.road.fusion import FUSIONS, ConcatFusion, GatedFusion, MoEFusion, build_fusion

torch.set_num_threads(1)

N, C, D, HIDDEN = 7, 6, 5, 12
SHIPPED_ROAD_SHA256 = "e942ece07f5ba7b88da83537ff8a349c5e0e91d6918c9a615ee6f8474131d98d"  # before the new keys
REFERENCE_RUNS = Path(__file__).resolve().parents[1] / "results" / "reference" / "road"


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    h = torch.randn(N, C, generator=generator, requires_grad=True)
    v = torch.randn(N, D, generator=generator, requires_grad=True)
    return h, v


# --- the heads ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_heads_give_one_representation_per_node_and_train_every_weight(name):
    torch.manual_seed(0)
    head = build_fusion(name, C, D, HIDDEN, num_layers=3)
    h, v = _inputs()
    z = head(h, v)
    assert z.shape == (N, HIDDEN) == (N, head.out_channels)
    z.pow(2).sum().backward()
    assert h.grad.abs().sum() > 0 and v.grad.abs().sum() > 0  # both modalities reach the output
    for parameter_name, parameter in head.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name
    with pytest.raises(ValueError, match=f"built for {C} node and {D} image channels, got {C} and {D + 1}"):
        head(h, torch.zeros(N, D + 1))
    with pytest.raises(ValueError, match="of the same nodes"):
        head(h, torch.zeros(N + 1, D))


def test_concat_is_an_mlp_of_fusion_layers_over_both_inputs():
    head = ConcatFusion(C, D, HIDDEN, num_layers=5)
    assert [lin.in_features for lin in head.mlp.lins] == [C + D] + [HIDDEN] * 4
    assert [lin.out_features for lin in head.mlp.lins] == [HIDDEN] * 5


@pytest.mark.parametrize("gate, width", [("channel", C), ("node", 1)])
def test_gated_fusion_mixes_the_graph_and_the_projected_image(gate, width):
    torch.manual_seed(1)
    head = GatedFusion(C, D, HIDDEN, num_layers=1, gate=gate)  # no output MLP: z is the mix itself
    h, v = _inputs(1)
    g = head.gate_values(h, v)
    assert g.shape == (N, width) and bool(((g > 0) & (g < 1)).all())
    projected = v @ head.project.weight.T + head.project.bias
    torch.testing.assert_close(head(h, v), g * h + (1 - g) * projected)
    assert head.out_channels == C
    deep = GatedFusion(C, D, HIDDEN, num_layers=5, gate=gate)
    assert len(deep.output.lins) == 4 and deep.out_channels == HIDDEN  # the study's 4-layer output MLP
    with pytest.raises(ValueError, match="gate must be one of 'channel', 'node'"):
        GatedFusion(C, D, HIDDEN, gate="edge")


def test_mixture_weights_are_a_distribution_and_the_output_their_mix():
    torch.manual_seed(2)
    head = MoEFusion(C, D, HIDDEN, experts=4)
    h, v = _inputs(2)
    weights = head.weights(h, v)
    assert weights.shape == (N, 4) and bool((weights >= 0).all())
    torch.testing.assert_close(weights.sum(-1), torch.ones(N))
    joined = torch.cat([h, v], dim=1)
    expected = sum(weights[:, [e]] * expert(joined) for e, expert in enumerate(head.experts))
    torch.testing.assert_close(head(h, v), expected)
    assert all(len(expert.lins) == 3 for expert in head.experts) and len(head.experts) == 4


def test_the_studys_relu_before_the_softmax_is_a_switch():
    torch.manual_seed(3)
    quirk, plain = MoEFusion(C, D, HIDDEN, experts=3), MoEFusion(C, D, HIDDEN, experts=3, gate_relu=False)
    plain.load_state_dict(quirk.state_dict())
    for head in (quirk, plain):
        last = head.gate_mlp.lins[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.tensor([-1.0, -2.0, -3.0]))  # all logits negative
    h, v = _inputs(3)
    torch.testing.assert_close(quirk.weights(h, v), torch.full((N, 3), 1 / 3))  # ReLU: every logit 0
    expected = torch.softmax(torch.tensor([-1.0, -2.0, -3.0]), dim=0).expand(N, 3)
    torch.testing.assert_close(plain.weights(h, v), expected)
    with pytest.raises(ValueError, match="gate_relu must be True or False"):
        MoEFusion(C, D, HIDDEN, gate_relu=1)


def test_unknown_fusion_and_bad_sizes_are_errors():
    with pytest.raises(ValueError, match="fusion must be one of 'concat', 'gated', 'moe'"):
        build_fusion("sum", C, D, HIDDEN)
    with pytest.raises(ValueError, match="num_layers must be an integer >= 1"):
        ConcatFusion(C, D, HIDDEN, num_layers=0)
    with pytest.raises(ValueError, match="experts must be an integer >= 1"):
        MoEFusion(C, D, HIDDEN, experts=0)


# --- the road model ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_road_model_encodes_the_graph_columns_and_fuses_the_image_columns(fusion):
    from gnnbench.models.road import RoadGraph

    torch.manual_seed(4)
    graph_width, images = 10, 9
    model = RoadModel("sage", graph_width + images, 3, hidden_channels=16, image_channels=images, fusion=fusion,
                      fusion_layers=2).eval()
    assert model.encoder.convs[0].linear_node.in_features == graph_width
    assert model.predictors[0].node_channels == model.fusion.out_channels == 16
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    graph = RoadGraph(edge_index, 4, torch.randn(4, 3))
    x = torch.randn(4, graph_width + images)
    z = model.encode(x, graph)
    assert z.shape == (4, 16)
    changed = x.clone()
    changed[:, -images:] += 1.0  # the image columns reach the representation, through the head only
    assert not torch.allclose(model.encode(changed, graph), z)
    h = model.encoder(x[:, :graph_width], graph)
    torch.testing.assert_close(z, model.fusion(h, x[:, graph_width:]))


def test_road_model_needs_image_columns_exactly_with_a_head():
    with pytest.raises(ValueError, match="a fusion head needs image channels"):
        RoadModel("sage", 10, 3, fusion="concat")
    with pytest.raises(ValueError, match="a fusion head needs image channels"):
        RoadModel("sage", 10, 3, image_channels=4)
    with pytest.raises(ValueError, match="fusion must be one of 'none', 'concat'"):
        RoadModel("sage", 10, 3, fusion="early")  # early fusion is the data's business: no head
    plain = RoadModel("sage", 10, 3, hidden_channels=8)
    assert plain.fusion is None and plain.image_channels == 0


# --- the config -------------------------------------------------------------------------------------------------


def _config(**sections):
    config = {"run": {"benchmark": "road"}, **road_family.default_config()}
    for section, values in sections.items():
        config[section].update(values)
    return config


@pytest.mark.parametrize("sections, message", [
    ({"model": {"fusion": "gated"}}, r"model.fusion = 'gated' needs data.image_features .*gnnbench embed tiles"),
    ({"model": {"fusion": "early"}}, "model.fusion = 'early' needs data.image_features"),
    ({"data": {"image_features": "clip-vit-b32"}}, "needs model.fusion: 'early' .* or a fusion head"),
    ({"data": {"image_features": "clip"}, "model": {"fusion": "concat"}}, "data.image_features must be one of"),
    ({"data": {"image_source": "naip-pc"}}, "data.image_source is set but data.image_features is not"),
    ({"model": {"fusion": "sum"}}, "model.fusion must be one of 'none', 'early', 'concat', 'gated', 'moe'"),
    ({"data": {"image_features": "resnet18"}, "model": {"fusion": "moe", "experts": 0}}, "model.experts must be"),
    ({"data": {"image_features": "resnet18"}, "model": {"fusion": "concat", "fusion_layers": 0}},
     "model.fusion_layers must be"),
    ({"data": {"image_features": "resnet18"}, "model": {"fusion": "moe", "moe_gate_relu": "yes"}},
     "model.moe_gate_relu must be true or false"),
])
def test_bad_multimodal_configs_name_the_key(sections, message):
    with pytest.raises(ValueError, match=message):
        road_family.validate_config(_config(**sections))


def test_earlier_road_run_hashes_are_unchanged():
    assert config_sha256(resolve("road")[0].config) == SHIPPED_ROAD_SHA256
    runs = [path for path in sorted(REFERENCE_RUNS.glob("road-DEMO-*")) if (path / "config.toml").exists()]
    if not runs:
        pytest.skip("the committed reference runs are not in this checkout")
    for run in runs:
        stored = tomllib.loads((run / "config.toml").read_text())
        assert "fusion" not in stored["model"]  # written before the multimodal keys existed
        summary = json.loads((run / "summary.json").read_text())
        assert config_sha256(resolve(run)[0].config) == summary["config_sha256"], run.name


def test_shipped_multimodal_config_resolves_for_each_fusion():
    spec = resolve("road_multimodal")[0]
    assert spec.config["data"]["image_features"] == "clip-vit-b32" and spec.config["model"]["fusion"] == "concat"
    assert spec.name == "road_multimodal-DEMO-sage-accident_occurrence"
    names = {resolve("road_multimodal", overrides=[f"model.fusion={fusion}"])[0].name
             for fusion in ("early", "concat", "gated", "moe")}
    assert len(names) == 4  # each fusion its own run directory


# --- runs through the harness ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def road_root(tmp_path_factory, copy_demo_region):
    root = copy_demo_region(tmp_path_factory.mktemp("road-multimodal"))
    write_region_embeddings(root, dim=8, missing=(1, 2))
    return root


def test_region_puts_the_raw_image_columns_last_for_a_head(road_root):
    from gnnbench.models.road.data import RoadRegion

    fused = RoadRegion(road_root, "DEMO", "accident_occurrence", image_features="clip-vit-b32", fuse_images=True)
    early = RoadRegion(road_root, "DEMO", "accident_occurrence", image_features="clip-vit-b32")
    plain = RoadRegion(road_root, "DEMO", "accident_occurrence")
    assert (fused.image_channels, early.image_channels, plain.image_channels) == (9, 0, 0)
    assert fused.node_channels == early.node_channels == plain.node_channels + 9 == 19
    period = fused.splits["test"][0]
    snapshot = fused.snapshot(period)
    columns = fused.dataset.image_feature_slice
    x = fused.features(snapshot)
    assert torch.equal(x[:, -9:], snapshot.x[:, columns])  # as the embedding model made them
    torch.testing.assert_close(x[:, :-9], plain.features(plain.snapshot(period)))  # standardised as before
    standardised = early.features(snapshot)[:, columns]
    assert not torch.allclose(standardised, snapshot.x[:, columns])  # early fusion: plain, standardised features
    with pytest.raises(ValueError, match="fuse_images needs image features"):
        RoadRegion(road_root, "DEMO", "accident_occurrence", fuse_images=True)


TINY = ["--set", "train.epochs=2", "--set", "model.hidden_channels=16", "--set", "eval.every=1",
        "--set", "model.fusion_layers=2"]


@pytest.mark.e2e
@pytest.mark.parametrize("fusion, extra", [("early", []), ("concat", []), ("gated", []), ("moe", []),
                                           ("gated", ["--set", "train.neighbor_sampling=true"])])
def test_multimodal_run(fusion, extra, road_root, tmp_path):
    from gnnbench.cli import main

    out = tmp_path / "run"
    assert main(["run", "road_multimodal", "--state", "DEMO", "--seeds", "0", "--root", str(road_root), *TINY,
                 "--set", f"model.fusion={fusion}", *extra, "--out", str(out), "--no-progress"]) == 0
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["model"]["fusion"] == fusion and config["data"]["image_features"] == "clip-vit-b32"
    record = finished_seeds(out, config_sha256(config))[0]
    assert 0.0 <= record["test"]["roc_auc"] <= 1.0 and record["steps"] > 0
    width = 10 + 8 + 1  # graph features, 8 embedding columns, image_available
    expected = RoadModel("sage", width, 23, hidden_channels=16, image_channels=0 if fusion == "early" else 9,
                         fusion="none" if fusion == "early" else fusion, fusion_layers=2)
    assert record["extra"]["parameters"] == sum(p.numel() for p in expected.parameters())
    images = json.loads((out / "dataset.json").read_text())["states"][0]["images"]
    assert images["model"] == "clip-vit-b32" and images["features"] == 9 and images["counts"]["unavailable"] == 2
