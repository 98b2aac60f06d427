"""gnnbench's encode-process-decode network against DeepMind's CLRS-30 ``BaselineModel`` (dm-clrs 2.0.3, haiku).

For each processor (mpnn, pgn, gatv2, triplet_gmpnn) on BFS, Dijkstra and Floyd-Warshall, the reference
is built at ``run.py``'s protocol (hints encoded and decoded, soft re-prediction, no teacher forcing, no
LSTM, layer norm, ``xavier_on_scalars``, 8 triplet features, no dropout) on a batch of gnnbench's own
samples (CLRS-30's layout field for field: see test_clrs_reference.py; ``pos`` as sampled on both sides,
i.e. without ``random_pos``, so that both see the same inputs), its initial parameters are copied into
gnnbench's model with ``load_clrs_params``, and on that batch we compare the training loss, the global
gradient norm and every parameter's gradient, and the evaluation predictions (``repred=True``: output
scores, hard outputs as ``BaselineModel.predict`` post-processes them, hint scores at every scored step).

gnnbench runs each trace only for the steps it needs (CLRS runs the padded batch and discards the
rest), so hint scores after a trace's last scored step are 0 instead of unused numbers; the tests check
that this, padding the hints to more steps, and splitting a batch by length (bucketing) leave the
loss, the gradients and the predictions unchanged.

Skipped without dm-clrs, jax, haiku and optax, unless GNNBENCH_REQUIRE_CLRS=1 (CI's reference environment).
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

pytestmark = pytest.mark.reference

try:
    from gnnbench.algo.reference import load_clrs_reference

    REF = load_clrs_reference()
    importlib.import_module("haiku")  # BaselineModel's own dependency
    import jax
    import jax.numpy as jnp
    import optax
except ImportError as missing:
    if os.environ.get("GNNBENCH_REQUIRE_CLRS"):
        raise
    pytest.skip(f"CLRS-30 reference (dm-clrs, jax, haiku, optax) not installed ({missing})", allow_module_level=True)

import torch  # noqa: E402

from gnnbench.algo import sample  # noqa: E402
from gnnbench.models.algo.batches import to_torch  # noqa: E402
from gnnbench.models.algo.clrs_params import load_clrs_params  # noqa: E402
from gnnbench.models.algo.net import EncodeProcessDecode  # noqa: E402

baselines = importlib.import_module("clrs._src.baselines")
decoders = importlib.import_module("clrs._src.decoders")
probing = importlib.import_module("clrs._src.probing")
processors = importlib.import_module("clrs._src.processors")
samplers = importlib.import_module("clrs._src.samplers")

ALGORITHMS = ("bfs", "dijkstra", "floyd_warshall")
PROCESSORS = ("mpnn", "pgn", "gatv2", "triplet_gmpnn")
HIDDEN, BATCH, NODES = 16, 6, 6
RTOL = 1e-4  # float32: relative to the largest magnitude of the compared quantity


def feedback(algorithm: str, num: int, n: int, seed: int):
    """gnnbench's samples as CLRS-30's ``Feedback`` and as gnnbench's ``TorchBatch``."""
    batch = sample(algorithm, num, n=n, seed=seed).clrs_batch()
    spec = REF.specs.SPECS[algorithm]

    def points(values):
        return [probing.DataPoint(name=name, location=spec[name][1], type_=spec[name][2], data=np.array(value))
                for name, value in values.items()]

    fb = samplers.Feedback(samplers.Features(points(batch.inputs), points(batch.hints), np.array(batch.lengths)),
                           points(batch.outputs))
    return fb, to_torch(batch)


class Reference:
    """CLRS-30's ``BaselineModel`` at ``run.py``'s protocol and its parameters. Its computations run op by op
    (``jax.disable_jit``): on these tiny batches compiling the whole step costs far more than running it."""

    def __init__(self, algorithm: str, processor: str, fb, seed: int = 7) -> None:
        with jax.disable_jit():
            self._build(algorithm, processor, fb, seed)

    def _build(self, algorithm: str, processor: str, fb, seed: int) -> None:
        factory = processors.get_processor_factory(processor, use_ln=True, nb_triplet_fts=8, nb_heads=1)
        self.model = baselines.BaselineModel(
            spec=[REF.specs.SPECS[algorithm]], dummy_trajectory=[fb], processor_factory=factory, hidden_dim=HIDDEN,
            encode_hints=True, decode_hints=True, encoder_init="xavier_on_scalars", use_lstm=False,
            learning_rate=1e-3, grad_clip_max_norm=1.0, checkpoint_path="/nonexistent", freeze_processor=False,
            dropout_prob=0.0, hint_teacher_forcing=0.0, hint_repred_mode="soft", nb_msg_passing_steps=1)
        self.model.init([fb.features], seed)
        self.params = self.model.params
        self.spec = REF.specs.SPECS[algorithm]

    def loss_and_grads(self, fb):
        """``BaselineModel.compute_grad``'s loss and gradients (its ``_loss`` differentiated)."""
        with jax.disable_jit():
            loss, grads = jax.value_and_grad(self.model._loss)(self.params, jax.random.PRNGKey(0), fb, 0)
        return float(loss), grads

    def predict(self, fb):
        """Raw output scores, hard outputs (``BaselineModel._predict``'s post-processing) and hint scores."""
        with jax.disable_jit():
            outs, hints = self.model.net_fn.apply(self.params, jax.random.PRNGKey(0), [fb.features], repred=True,
                                                  algorithm_index=0, return_hints=True, return_all_outputs=False)
            hard = decoders.postprocess(self.spec, outs, sinkhorn_temperature=0.1, sinkhorn_steps=50, hard=True)
        hint_scores = {name: np.stack([np.asarray(step[name]) for step in hints]) for name in hints[0]}
        return ({k: np.asarray(v) for k, v in outs.items()}, {k: np.asarray(v.data) for k, v in hard.items()},
                hint_scores)


def gnnbench_model(algorithm: str, processor: str, reference: Reference) -> EncodeProcessDecode:
    model = EncodeProcessDecode(algorithm, processor, HIDDEN, generator=torch.Generator().manual_seed(0))
    load_clrs_params(model, reference.params)
    return model


def loss_and_grads(model: EncodeProcessDecode, batch):
    model.zero_grad()
    loss = model.loss(batch)
    loss.backward()
    return loss.item(), {name: p.grad.detach().numpy().copy() for name, p in model.named_parameters()}


def torch_grad_of(grads: dict, haiku_grads, model: EncodeProcessDecode):
    """Pairs (torch gradient, reference gradient in torch's layout) for every parameter."""
    pairs = {}
    for torch_path, haiku_path in model.haiku_names().items():
        module = model.get_submodule(torch_path)
        entry = haiku_grads[haiku_path]
        if isinstance(module, torch.nn.Linear):
            pairs[f"{torch_path}.weight"] = (grads[f"{torch_path}.weight"], np.asarray(entry["w"]).T)
            pairs[f"{torch_path}.bias"] = (grads[f"{torch_path}.bias"], np.asarray(entry["b"]))
        else:
            pairs[f"{torch_path}.weight"] = (grads[f"{torch_path}.weight"], np.asarray(entry["scale"]))
            pairs[f"{torch_path}.bias"] = (grads[f"{torch_path}.bias"], np.asarray(entry["offset"]))
    assert set(pairs) == set(grads)
    return pairs


def rel_diff(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-6))


def scored_steps(lengths: np.ndarray, steps: int) -> np.ndarray:
    """``[steps, B]``: hint score t (predicting hint t + 1) is scored while t + 1 < length."""
    return (np.arange(steps)[:, None] + 1) < lengths[None, :]


CASES = [(a, p) for a in ALGORITHMS for p in PROCESSORS]


@pytest.fixture(scope="module")
def batches():
    # Seeds picked only for varied hint lengths within the batch (so that traces stop at different steps).
    return {algorithm: feedback(algorithm, BATCH, NODES, seed=3) for algorithm in ALGORITHMS}


def compare(algorithm: str, processor: str, fb, batch) -> dict:
    """Build both models on ``fb``/``batch`` and measure their differences (relative to the reference's scale):
    ``loss``, ``grad_norm``, ``grad`` (largest gradient entry difference / global gradient norm, and ``grad_at``
    its parameter), ``scores`` (largest output or scored hint score difference / that field's largest
    magnitude, ``scores_at`` the field), ``abs`` (the largest absolute difference of any compared number),
    ``hard_mismatches`` (output fields whose hard predictions differ), ``late_hints`` (fields with nonzero
    gnnbench hint scores after a trace's last step)."""
    torch.manual_seed(0)
    lengths = np.asarray(fb.features.lengths)
    reference = Reference(algorithm, processor, fb)
    model = gnnbench_model(algorithm, processor, reference)

    # (a) the training loss, (b) the global gradient norm and every gradient
    ref_loss, ref_grads = reference.loss_and_grads(fb)
    loss, grads = loss_and_grads(model, batch)
    pairs = torch_grad_of(grads, ref_grads, model)
    ref_norm = float(optax.global_norm(ref_grads))
    norm = float(np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g, _ in pairs.values())))
    grad_abs = {name: float(np.abs(g - r).max()) for name, (g, r) in pairs.items()}
    worst_grad = max(grad_abs, key=grad_abs.get)

    # (c) evaluation predictions (repred=True)
    ref_scores, ref_hard, ref_hints = reference.predict(fb)
    with torch.no_grad():
        scores, hint_scores = model(batch, repred=True)
    hard = model.predict(batch)
    score_diffs, abs_diffs, hard_mismatches, late = {}, [], [], []
    for name, ref in ref_scores.items():
        score_diffs[name] = rel_diff(scores[name].numpy(), ref)
        abs_diffs.append(float(np.abs(scores[name].numpy() - ref).max()))
        if not np.array_equal(hard[name].numpy().astype(np.float64), ref_hard[name].astype(np.float64)):
            hard_mismatches.append(name)
    mask = scored_steps(lengths, next(iter(ref_hints.values())).shape[0])
    ran = mask.copy()
    ran[0] = True  # every trace runs step 0 (its outputs come from there when length <= 2)
    for name, ref in ref_hints.items():
        ours = hint_scores[name].numpy()
        assert ours.shape == ref.shape, name
        score_diffs[f"hint {name}"] = rel_diff(ours[mask], ref[mask])
        abs_diffs.append(float(np.abs(ours[mask] - ref[mask]).max()))
        if ours[~ran].any():
            late.append(name)
    worst_score = max(score_diffs, key=score_diffs.get)
    return dict(loss=abs(loss - ref_loss) / abs(ref_loss), grad_norm=abs(norm - ref_norm) / ref_norm,
                grad=grad_abs[worst_grad] / ref_norm, grad_at=worst_grad, scores=score_diffs[worst_score],
                scores_at=worst_score,
                abs=max([abs(loss - ref_loss), abs(norm - ref_norm), *grad_abs.values(), *abs_diffs]),
                hard_mismatches=hard_mismatches, late_hints=late)


@pytest.mark.parametrize("algorithm, processor", CASES)
def test_loss_gradients_and_predictions_match_the_reference(algorithm, processor, batches, record_property):
    diff = compare(algorithm, processor, *batches[algorithm])
    record_property("fidelity", diff)
    assert diff["loss"] < RTOL and diff["grad_norm"] < RTOL, diff
    assert diff["grad"] < RTOL, diff  # every gradient entry, relative to the global norm
    assert diff["scores"] < RTOL, diff  # outputs and every scored hint step
    assert diff["hard_mismatches"] == [], diff  # BaselineModel.predict's hard outputs, exactly
    assert diff["late_hints"] == [], diff  # gnnbench's documented zeros after a trace's last step


@pytest.mark.parametrize("processor", ["mpnn", "triplet_gmpnn"])
def test_padding_and_bucketing_change_nothing(processor, batches):
    """gnnbench's deliberate differences from CLRS-30: hints padded to more steps, a batch split into
    buckets of similar lengths (each cut to its longest trace), and traces stopped at their own length."""
    fb, batch = batches["bfs"]
    assert len(set(np.asarray(fb.features.lengths).tolist())) > 2, "the batch should mix hint lengths"
    reference = Reference("bfs", processor, fb)
    model = gnnbench_model("bfs", processor, reference)
    loss, grads = loss_and_grads(model, batch)

    padded = batch.pad_steps(batch.num_steps + 3)
    padded_loss, padded_grads = loss_and_grads(model, padded)
    assert padded_loss == pytest.approx(loss, rel=1e-6)
    for name, g in grads.items():
        np.testing.assert_allclose(padded_grads[name], g, rtol=1e-5, atol=1e-7, err_msg=name)
    # the reference agrees on the padded batch too (CLRS-30 masks the padded steps)
    ref_padded = feedback_padded(fb, 3)
    assert reference.loss_and_grads(ref_padded)[0] == pytest.approx(loss, rel=RTOL)

    with torch.no_grad():
        scores, hint_scores = model(batch, repred=True)
        order = np.argsort(batch.lengths.numpy(), kind="stable")
        for bucket in (order[: BATCH // 2], order[BATCH // 2:]):
            part = batch.select(torch.as_tensor(bucket))
            part_scores, part_hints = model(part, repred=True)
            for name, value in part_scores.items():
                np.testing.assert_allclose(value.numpy(), scores[name].numpy()[bucket], rtol=1e-5, atol=1e-6,
                                           err_msg=name)
            for name, value in part_hints.items():
                steps = value.shape[0]
                np.testing.assert_allclose(value.numpy(), hint_scores[name].numpy()[:steps, bucket], rtol=1e-5,
                                           atol=1e-6, err_msg=name)
                assert not hint_scores[name].numpy()[steps:, bucket].any()


def feedback_padded(fb, extra: int):
    """``fb`` with every hint zero-padded by ``extra`` steps (CLRS-30's layout for a longer batch)."""
    hints = [probing.DataPoint(name=h.name, location=h.location, type_=h.type_,
                               data=np.concatenate([h.data, np.zeros((extra, *h.data.shape[1:]))]))
             for h in fb.features.hints]
    return samplers.Feedback(samplers.Features(fb.features.inputs, hints, fb.features.lengths), fb.outputs)


def test_mismatched_params_are_named(batches):
    reference = Reference("bfs", "mpnn", batches["bfs"][0])
    model = EncodeProcessDecode("bfs", "mpnn", HIDDEN)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = {k: dict(v) for k, v in reference.params.items()}
    enc = "net/~_construct_encoders_decoders/algo_0_pos_enc_linear"
    params[enc]["w"] = np.zeros((2, HIDDEN), np.float32)
    del params["net/mpnn_aggr_clrs_processor/layer_norm"]
    params["net/extra_module"] = {"w": np.zeros((1, 1))}
    with pytest.raises(ValueError) as error:
        load_clrs_params(model, params)
    message = str(error.value)
    assert f"{enc}/w: shape (2, {HIDDEN}), expected (1, {HIDDEN})" in message
    assert "net/mpnn_aggr_clrs_processor/layer_norm: missing from params (needed by processor.ln)" in message
    assert "net/extra_module: unexpected" in message
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # nothing copied
    wider = EncodeProcessDecode("bfs", "mpnn", 2 * HIDDEN)
    with pytest.raises(ValueError, match="parameter"):
        load_clrs_params(wider, reference.params)


def test_jax_runs_in_float32():
    assert jnp.zeros(1).dtype == jnp.float32  # the comparison is float32 against float32
