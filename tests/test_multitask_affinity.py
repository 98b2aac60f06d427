"""Task affinity without retraining: per-sample gradients (vmap against a loop), the output function by hand, the
projection, the logistic surrogate against scipy, weight shifts that leave the network as it was, and the affinity
matrix's definition and determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from affinity_reference import loop_gradients
from scipy.optimize import minimize

from gnnbench.algo import sample
from gnnbench.algo.specs import SPECS, Stage
from gnnbench.harness.algo_eval import evaluate
from gnnbench.models.algo import to_torch
from gnnbench.models.multitask import MultitaskNet, Tree, affinity
from gnnbench.models.multitask.affinity import (AffinityResult, SubsetEstimate, affinity_from_subsets, draw_subsets,
                                                estimate_scores, fit_logistic, fit_subset, shifted_weights,
                                                task_affinity)
from gnnbench.models.multitask.gradients import (Projection, gradient_features, length_chunks, output_function,
                                                 per_sample_gradients, train_samples)

# pointer (bfs), mask_one + pointer (topological_sort), edge pointer (floyd_warshall), mask (articulation_points)
GRAD_ALGOS = ("bfs", "topological_sort", "floyd_warshall", "articulation_points")
AFFINITY_ALGOS = ("bfs", "dijkstra", "floyd_warshall")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _net(algorithms=GRAD_ALGOS, variant: str = "mtn", tree: Tree | None = None, seed: int = 0,
         dtype: torch.dtype = torch.float32) -> MultitaskNet:
    net = MultitaskNet(algorithms, "mpnn", hidden=8, num_layers=2, variant=variant, tree=tree,
                       generator=torch.Generator().manual_seed(seed))
    return net.to(dtype)


def _batch(algorithm: str, size: int = 5, n: int = 5, seed: int = 3, dtype: torch.dtype = torch.float32):
    return to_torch(sample(algorithm, size, n=n, seed=seed).clrs_batch(), dtype=dtype)


@pytest.fixture(scope="module")
def features_net():
    return _net(AFFINITY_ALGOS, seed=1)


@pytest.fixture(scope="module")
def features(features_net):
    return gradient_features(features_net, AFFINITY_ALGOS, 1, num_samples=10, projection_dim=24, seed=5,
                             chunk_size=4)


# ----------------------------------------------------------------------------------------- per-sample gradients


@pytest.mark.parametrize("algorithm", GRAD_ALGOS)
def test_vmap_gradients_equal_a_loop_of_autograd_grad_in_float64(algorithm):
    net = _net(dtype=torch.float64)
    batch = _batch(algorithm, dtype=torch.float64)
    grads, values = per_sample_gradients(net, algorithm, batch, 1, chunk_size=2)
    expected, expected_values = loop_gradients(net, algorithm, batch, 1)
    assert set(grads) == set(net.layer_parameters(1))
    for name in expected:
        assert grads[name].shape == (batch.num_graphs, *net.layer_parameters(1)[name].shape)
        torch.testing.assert_close(grads[name], expected[name], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(values, expected_values, rtol=1e-10, atol=1e-12)
    # f_s of a graph alone equals its row of the batched forward pass (graphs are independent)
    torch.testing.assert_close(values, output_function(net.head(algorithm), batch), rtol=1e-10, atol=1e-12)


def test_branches_a_task_does_not_run_through_get_exactly_zero_gradient():
    algos = ("bfs", "dfs", "topological_sort")
    tree = Tree.from_partitions(algos, [[algos], [("bfs", "dfs"), ("topological_sort",)]])
    net = _net(algos, variant="branched", tree=tree)
    grads, _ = per_sample_gradients(net, "topological_sort", _batch("topological_sort"), 2)
    own = [name for name in grads if name.startswith("layers.1.1.")]
    other = [name for name in grads if name.startswith("layers.1.0.")]
    assert own and other and len(own) + len(other) == len(grads)
    assert all(torch.count_nonzero(grads[name]) == 0 for name in other)
    assert all(torch.count_nonzero(grads[f"layers.1.1.{lin}.weight"]) > 0 for lin in ("m_1", "m_2", "o1", "mlp_0"))


def test_output_function_is_the_mean_log_odds_of_the_true_labels_by_hand():
    """An independent NumPy computation from the head's output logits."""
    net = _net(dtype=torch.float64)
    for algorithm in ("topological_sort", "articulation_points", "floyd_warshall"):
        batch = _batch(algorithm, dtype=torch.float64)
        with torch.no_grad():
            logits, _ = net.head(algorithm)(batch, repred=True)
            got = output_function(net.head(algorithm), batch).numpy()
        expected = []
        for b in range(batch.num_graphs):
            entries = []
            for name, (stage, _, kind) in SPECS[algorithm].items():
                if stage != Stage.OUTPUT:
                    continue
                x, y = logits[name][b].numpy(), batch.outputs[name][b].numpy()
                if kind == "mask":
                    entries += [(2 * t - 1) * v for v, t in zip(x.ravel(), y.ravel()) if t != -1]
                    continue
                p = np.exp(x - x.max(-1, keepdims=True))
                p /= p.sum(-1, keepdims=True)
                if kind == "pointer":
                    true = np.take_along_axis(p, y.astype(int)[..., None], -1)[..., 0].ravel()
                else:  # mask_one: one entry, the probability of the marked node
                    true = [float((p * (y == 1)).sum())]
                entries += [math.log(q / (1 - q)) for q in np.clip(true, 1e-4, 1 - 1e-4)]
            expected.append(np.mean(entries))
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------------- features


def test_projection_is_seeded_per_parameter_name_and_order_free():
    shapes = {"b.weight": (3, 2), "a.bias": (4,), "c": (2, 2, 2)}
    p = Projection(shapes, 16, seed=7)
    assert p.matrix.shape == (6 + 4 + 8, 16) and p.num_parameters == 18
    assert set(torch.unique(p.matrix).tolist()) == {-0.25, 0.25}  # +-1/sqrt(16)
    assert torch.equal(Projection(dict(reversed(list(shapes.items()))), 16, seed=7).matrix, p.matrix)
    alone = Projection({"b.weight": (3, 2)}, 16, seed=7)
    assert torch.equal(alone.matrix, p.matrix[4:10])  # rows: a.bias (4), b.weight (6), c (8)
    assert not torch.equal(Projection(shapes, 16, seed=8).matrix, p.matrix)
    theta = torch.randn(16, generator=torch.Generator().manual_seed(0))
    lifted = p.lift(theta)
    torch.testing.assert_close(lifted["b.weight"].reshape(-1), p.matrix[4:10] @ theta)
    assert lifted["c"].shape == (2, 2, 2)


def test_features_are_the_projected_loop_gradients_in_float64():
    net = _net(AFFINITY_ALGOS, seed=1, dtype=torch.float64)
    features = gradient_features(net, ("bfs",), 1, num_samples=10, projection_dim=24, seed=5, chunk_size=4)
    assert features.num_parameters == sum(p.numel() for p in net.layer_parameters(1).values())
    grads, values = loop_gradients(net, "bfs", train_samples("bfs", 10, dtype=torch.float64), 1)
    expected = (features.projection.flatten(grads) @ features.projection.matrix.double()).numpy()
    assert features.features["bfs"].dtype == np.float32 and features.features["bfs"].shape == (10, 24)
    np.testing.assert_allclose(features.features["bfs"], expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_allclose(features.offsets["bfs"], values.numpy(), rtol=1e-6, atol=1e-7)


def test_features_are_deterministic_for_a_seed(features_net, features):
    again = gradient_features(features_net, AFFINITY_ALGOS[:1], 1, num_samples=10, projection_dim=24, seed=5,
                              chunk_size=4)
    assert np.array_equal(again.features["bfs"], features.features["bfs"])
    assert np.array_equal(again.offsets["bfs"], features.offsets["bfs"])
    other = gradient_features(features_net, AFFINITY_ALGOS[:1], 1, num_samples=10, projection_dim=24, seed=6,
                              chunk_size=4)
    assert not np.allclose(other.features["bfs"], features.features["bfs"])
    np.testing.assert_array_equal(other.offsets["bfs"], features.offsets["bfs"])  # f_s does not depend on P


def test_chunks_share_one_length_within_their_budgets():
    lengths = np.array([5, 3, 5, 5, 3, 5, 5, 9])
    chunks = [c.tolist() for c in length_chunks(lengths, 3, chunk_steps=12)]
    assert chunks == [[1, 4], [0, 2], [3, 5], [6], [7]]  # 3s: 2 graphs (cap 3); 5s: 2 a chunk (10 steps); 9: one
    assert [c.tolist() for c in length_chunks(lengths, 3)] == [[1, 4], [0, 2, 3], [5, 6], [7]]


def test_features_do_not_depend_on_chunk_size(features_net, features):
    other = gradient_features(features_net, ("dijkstra",), 1, num_samples=10, projection_dim=24, seed=5,
                              chunk_size=10, chunk_steps=10_000)
    scale = np.abs(features.features["dijkstra"]).max()  # float32 sums of ~1000 terms: rounding relative to it
    np.testing.assert_allclose(other.features["dijkstra"], features.features["dijkstra"], rtol=1e-4,
                               atol=1e-5 * scale)
    np.testing.assert_allclose(other.offsets["dijkstra"], features.offsets["dijkstra"], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------- regression


def _scipy_logistic(g: np.ndarray, f: np.ndarray, lam: float):
    """scipy's trust-region solution of the surrogate and the objective's gradient, computed here."""
    def objective(t):
        z = f + g @ t
        return np.logaddexp(0.0, -z).sum() + 0.5 * lam * t @ t, -g.T @ (1.0 / (1.0 + np.exp(z))) + lam * t

    def hessian(t):
        p = 1.0 / (1.0 + np.exp(-(f + g @ t)))
        return (g.T * (p * (1.0 - p))) @ g + lam * np.eye(g.shape[1])

    reference = minimize(objective, np.zeros(g.shape[1]), jac=True, hess=hessian, method="trust-exact",
                         options={"gtol": 1e-12}).x
    return reference, objective


def _assert_same_optimum(fit, g, f, lam):
    reference, objective = _scipy_logistic(g, f, lam)
    # lam-strong convexity: |theta - theta*| <= |grad F(theta)| / lam for both solutions
    bound = (np.linalg.norm(objective(reference)[1]) + np.linalg.norm(objective(fit.theta)[1])) / lam
    assert np.linalg.norm(objective(reference)[1]) < 1e-6
    assert np.linalg.norm(fit.theta - reference) <= bound + 1e-12
    assert np.linalg.norm(fit.theta - reference) <= 1e-6 * np.linalg.norm(reference)
    assert fit.objective == pytest.approx(objective(reference)[0], rel=1e-12)


@pytest.mark.parametrize("lam", [0.5, 1e3])
def test_logistic_fit_matches_scipy_on_random_data(lam):
    rng = np.random.default_rng(0)
    g, f = rng.normal(size=(60, 7)) * 3.0, rng.normal(size=60)
    fit = fit_logistic(g, f, lam)
    assert fit.converged and 1 <= fit.iterations <= 50
    _assert_same_optimum(fit, g, f, lam)


@pytest.mark.parametrize("n", [60, 5])  # more samples than features, and fewer
def test_logistic_fit_from_the_svd_matches_scipy(monkeypatch, n):
    """The path for features of widely different scales (forced here), against scipy on the same objective."""
    monkeypatch.setattr(affinity, "_WELL_CONDITIONED", 0.0)
    rng = np.random.default_rng(1)
    g, f, lam = rng.normal(size=(n, 7)), rng.normal(size=n), 0.3
    fit = fit_logistic(g, f, lam)
    assert fit.converged
    _assert_same_optimum(fit, g, f, lam)


def test_logistic_fit_reports_a_fit_stopped_early():
    rng = np.random.default_rng(2)
    g, f = rng.normal(size=(40, 5)) * 50.0, rng.normal(size=40)
    with pytest.warns(affinity.ConvergenceWarning, match="stopped after 1 iterations"):
        fit = fit_logistic(g, f, 1e-3, max_iter=1)
    assert not fit.converged and fit.iterations == 1 and fit.decrement > 0
    full = fit_logistic(g, f, 1e-3)
    assert full.converged and full.objective < fit.objective


def test_fit_subset_pools_the_subsets_samples(features):
    fit = fit_subset(features, ["bfs", "floyd_warshall"], lam=10.0)
    g = np.concatenate([features.features["bfs"], features.features["floyd_warshall"]])
    f = np.concatenate([features.offsets["bfs"], features.offsets["floyd_warshall"]])
    np.testing.assert_array_equal(fit.theta, fit_logistic(g, f, 10.0).theta)


# ------------------------------------------------------------------------------------------------ weight shifts


def test_estimate_scores_shift_the_weights_and_restore_them_bitwise(features_net, features):
    before = {k: v.clone() for k, v in features_net.state_dict().items()}
    theta = np.linspace(-1.0, 1.0, features.projection_dim)
    shift = features.projection.matrix @ torch.as_tensor(theta, dtype=torch.float32)
    params = features_net.layer_parameters(1)
    with shifted_weights(features_net, features, theta):
        flat = torch.cat([params[name].detach().reshape(-1) for name in sorted(params)])
        start = torch.cat([before[name].reshape(-1) for name in sorted(params)])
        torch.testing.assert_close(flat, start + shift)
    with pytest.raises(RuntimeError, match="inside"), shifted_weights(features_net, features, theta):
        raise RuntimeError("inside")
    scores = estimate_scores(features_net, features, ["bfs"], theta)
    for name, value in features_net.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert set(scores) == {"bfs"} and 0.0 <= scores["bfs"] <= 1.0
    # theta = 0 scores the network as it is
    unshifted = evaluate(features_net.head("dijkstra"), "dijkstra", "valid").metrics["score"]
    zero = estimate_scores(features_net, features, ["dijkstra"], np.zeros(features.projection_dim))
    assert zero == {"dijkstra": unshifted}


# ------------------------------------------------------------------------------------------------------ affinity


def test_affinity_matrix_follows_its_definition_on_a_hand_built_result():
    algos = ("a", "b", "c", "d")
    subsets = [SubsetEstimate(("a", "b"), {"a": 0.5, "b": 0.25}),
               SubsetEstimate(("a", "c"), {"a": 0.75, "c": 1.0}),
               SubsetEstimate(("a", "b"), {"a": 0.25, "b": 0.75}),
               SubsetEstimate(("c",), {"c": 0.5})]
    matrix, counts, missing = affinity_from_subsets(algos, subsets, fill="none")
    nan = math.nan
    expected = [[0.5, 0.375, 0.75, nan],  # a: all (0.5, 0.75, 0.25); with b (0.5, 0.25); with c (0.75)
                [0.5, 0.5, nan, nan],  # b: all (0.25, 0.75); with a the same
                [1.0, nan, 0.75, nan],  # c: all (1.0, 0.5); with a (1.0)
                [nan, nan, nan, nan]]
    np.testing.assert_array_equal(matrix, expected)
    np.testing.assert_array_equal(counts, [[3, 2, 1, 0], [2, 2, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])
    assert missing == 9  # 1 + 2 + 2 + 4
    filled, _, count = affinity_from_subsets(algos, subsets)
    assert count == 9
    assert filled[0, 3] == pytest.approx((0.5 + 0.375 + 0.75) / 3)
    assert filled[1, 2] == filled[1, 3] == 0.5
    assert filled[2, 1] == pytest.approx((1.0 + 0.75) / 2)
    assert np.all(filled[3] == pytest.approx(np.mean([0.5, 0.375, 0.75, 0.5, 0.5, 1.0, 0.75])))
    with pytest.raises(ValueError, match="no score for b"):
        affinity_from_subsets(algos, [SubsetEstimate(("a", "b"), {"a": 1.0})])
    with pytest.raises(ValueError, match="fill"):
        affinity_from_subsets(algos, subsets, fill="zero")


def test_subsets_are_drawn_from_numpys_default_rng():
    rng = np.random.default_rng(4)
    expected = [tuple(sorted(rng.choice(6, 3, replace=False).tolist())) for _ in range(5)]
    assert draw_subsets(6, 5, 3, seed=4) == expected
    assert all(len(set(s)) == 3 for s in expected)
    with pytest.raises(ValueError, match="subset_size"):
        draw_subsets(2, 5, 3, seed=0)


def test_task_affinity_is_deterministic_for_a_seed_and_changes_with_it(features_net):
    kwargs = dict(num_subsets=4, subset_size=2, num_samples=8, projection_dim=16, chunk_size=8, lam=1.0)
    first = task_affinity(features_net, AFFINITY_ALGOS, 2, seed=0, **kwargs)
    second = task_affinity(features_net, AFFINITY_ALGOS, 2, seed=0, **kwargs)
    assert np.array_equal(first.matrix, second.matrix) and first.matrix.shape == (3, 3)
    assert [s.tasks for s in first.subsets] == [tuple(AFFINITY_ALGOS[i] for i in s) for s in draw_subsets(3, 4, 2, 0)]
    assert all(s.scores == t.scores for s, t in zip(first.subsets, second.subsets))
    # T's definition on the result itself
    for i, a in enumerate(AFFINITY_ALGOS):
        for j, b in enumerate(AFFINITY_ALGOS):
            held = [s.scores[a] for s in first.subsets if a in s.tasks and b in s.tasks]
            assert first.counts[i, j] == len(held)
            if held:
                assert first.matrix[i, j] == pytest.approx(np.mean(held))
    assert first.filled == int((first.counts == 0).sum())
    assert set(first.timings) == {"features", "regressions", "evaluations"}
    other = task_affinity(features_net, AFFINITY_ALGOS, 2, seed=1, **kwargs)
    assert [s.tasks for s in other.subsets] != [s.tasks for s in first.subsets]
    assert not np.array_equal(other.matrix, first.matrix)
    restored = AffinityResult.from_dict(json.loads(json.dumps(first.to_dict())))
    assert np.array_equal(restored.matrix, first.matrix) and np.array_equal(restored.counts, first.counts)
    assert restored.subsets == first.subsets and restored.base_scores == first.base_scores
    assert restored.settings == first.settings


def test_affinity_result_json_keeps_missing_entries_as_null():
    result = AffinityResult(("bfs", "dfs"), np.array([[0.5, math.nan], [0.25, 1.0]]), np.array([[1, 0], [1, 1]]),
                            [], {"bfs": 0.1, "dfs": 0.2}, fill="none", filled=1)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["matrix"] == [[0.5, None], [0.25, 1.0]]
    back = AffinityResult.from_dict(data)
    assert np.array_equal(back.matrix, result.matrix, equal_nan=True) and back.filled == 1
    with pytest.raises(ValueError, match="format"):
        AffinityResult.from_dict({**data, "format": 99})


# ------------------------------------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize("kwargs, name", [
    ({"num_samples": 0}, "num_samples"), ({"num_samples": 1001}, "num_samples"),
    ({"projection_dim": 0}, "projection_dim"), ({"chunk_size": 0}, "chunk_size"), ({"seed": 1.5}, "seed"),
    ({"chunk_steps": 0}, "chunk_steps"),
])
def test_gradient_features_name_their_bad_argument(features_net, kwargs, name):
    with pytest.raises(ValueError, match=name):
        gradient_features(features_net, ("bfs",), 1, **kwargs)


@pytest.mark.parametrize("kwargs, name", [
    ({"num_subsets": 0}, "num_subsets"), ({"subset_size": 4}, "subset_size"), ({"subset_size": 0}, "subset_size"),
    ({"lam": 0.0}, "lam"), ({"seed": -1}, "seed"), ({"fill": "zeros"}, "fill"), ({"batch_size": 0}, "batch_size"),
])
def test_task_affinity_names_its_bad_argument(features_net, features, kwargs, name):
    with pytest.raises(ValueError, match=name):
        task_affinity(features_net, AFFINITY_ALGOS, 1, features=features, **kwargs)


def test_other_bad_inputs_are_named(features_net, features):
    with pytest.raises(ValueError, match="first_depth"):
        gradient_features(features_net, ("bfs",), 3)
    with pytest.raises(ValueError, match="'dfs' is not one of the network's algorithms"):
        gradient_features(features_net, ("dfs",), 1)
    with pytest.raises(ValueError, match="features are of"):
        task_affinity(features_net, AFFINITY_ALGOS, 2, features=features)
    with pytest.raises(ValueError, match="theta must have shape"):
        estimate_scores(features_net, features, ["bfs"], np.zeros(3))
    with pytest.raises(ValueError, match="no gradient features for dfs"):
        fit_subset(features, ["bfs", "dfs"])
    with pytest.raises(ValueError, match="offsets"):
        fit_logistic(np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="tol"):
        fit_logistic(np.zeros((4, 2)), np.zeros(4), tol=0.0)
    with pytest.raises(ValueError, match="differ from those the features were projected from"):
        with shifted_weights(_net(AFFINITY_ALGOS, variant="stn"), features, np.zeros(features.projection_dim)):
            pass
