"""Task clustering (issue 12, item 4): the regularised SDP, its rounding, the lam sweep and the spectral fallback."""

import json
import sys
import warnings

import numpy as np
import pytest
from synthetic.affinity import planted_affinity

from gnnbench.models.multitask import clustering
from gnnbench.models.multitask.clustering import (
    DEFAULT_LAMBDAS,
    SDPFallbackWarning,
    SDPSolverError,
    cluster_density,
    cluster_tasks,
    sdp_clustering,
    spectral_clustering,
)

cvxpy = pytest.importorskip("cvxpy")

# The twelve algorithms and the first layer of the study's published tree (arXiv 2512.01113).
ALGORITHMS = ["bfs", "dfs", "topological_sort", "strongly_connected_components", "dag_shortest_paths",
              "bellman_ford", "articulation_points", "bridges", "dijkstra", "mst_prim", "floyd_warshall",
              "mst_kruskal"]
STUDY_FIRST_LAYER = {frozenset(ALGORITHMS[:8]), frozenset(["dijkstra", "mst_prim"]),
                     frozenset(["floyd_warshall", "mst_kruskal"])}

PLANTED = [((8, 2, 2), 0), ((8, 2, 2), 1), ((4, 4, 4), 0), ((5, 3), 2), ((3, 3, 2, 2), 0), ((6,), 0),
           ((2, 2), 0), ((2, 2), 3), ((3, 1), 0), ((2, 1, 1), 0), ((1, 1, 1, 1), 0), ((2, 1), 0)]


def assert_partition(partition, n):
    """A tuple of non-empty sorted tuples, ordered by first element, covering 0..n-1 exactly once."""
    assert isinstance(partition, tuple) and all(isinstance(c, tuple) and len(c) > 0 for c in partition)
    assert all(list(c) == sorted(c) for c in partition)
    assert [c[0] for c in partition] == sorted(c[0] for c in partition)
    assert sorted(i for c in partition for i in c) == list(range(n))


def density_by_loops(T, partition):
    """The study's score, written out with loops over the original (unsymmetrised) T."""
    total = 0.0
    for cluster in partition:
        total += sum(T[i][j] for i in cluster for j in cluster) / len(cluster)
    return total


def partition_matrix(partition, n):
    X = np.zeros((n, n))
    for cluster in partition:
        X[np.ix_(cluster, cluster)] = 1.0 / len(cluster)
    return X


@pytest.mark.parametrize("sizes,seed", PLANTED)
def test_sdp_recovers_the_planted_partition(sizes, seed):
    T, planted = planted_affinity(sizes, seed=seed, shuffle=True)
    result = cluster_tasks(T)
    assert result.method == "sdp" and result.fallback is None
    assert result.partition == planted
    assert result.solver == "CLARABEL" and result.status in ("optimal", "optimal_inaccurate")
    assert result.lam in DEFAULT_LAMBDAS and list(result.objectives) == list(DEFAULT_LAMBDAS)
    assert result.objective == pytest.approx(density_by_loops(T, planted))


@pytest.mark.parametrize("sizes,seed", PLANTED)
def test_spectral_recovers_the_planted_partition(sizes, seed):
    T, planted = planted_affinity(sizes, seed=seed, shuffle=True)
    result = cluster_tasks(T, method="spectral")
    assert result.method == "spectral" and result.fallback is None and result.lam is None
    assert result.partition == planted
    assert result.k == len(planted) and list(result.objectives) == list(range(1, len(T) + 1))
    assert spectral_clustering(T, len(planted)) == planted


@pytest.mark.parametrize("solver", ["clarabel", "scs"])
def test_sdp_solution_at_small_lam_is_the_planted_partition_matrix(solver):
    T, planted = planted_affinity((8, 2, 2), seed=4, shuffle=True)
    partition, X = sdp_clustering(T, 0.1, solver=solver)
    assert partition == planted
    np.testing.assert_allclose(X, partition_matrix(planted, 12), atol=2e-3)
    assert cluster_tasks(T, solver=solver).partition == planted


def test_twelve_algorithms_with_the_studys_first_layer_are_grouped_by_name():
    order = np.random.default_rng(7).permutation(12)
    names = [ALGORITHMS[i] for i in order]
    block = {name: b for b, group in enumerate(STUDY_FIRST_LAYER) for name in group}
    labels = np.array([block[name] for name in names])
    rng = np.random.default_rng(8)
    T = np.where(labels[:, None] == labels[None, :], 0.85, 0.6) + 0.03 * rng.standard_normal((12, 12))
    np.fill_diagonal(T, 0.72)
    for method in ("sdp", "spectral"):
        result = cluster_tasks(T, method=method, names=names)
        assert {frozenset(g) for g in result.groups} == STUDY_FIRST_LAYER
        assert result.groups == tuple(tuple(names[i] for i in c) for c in result.partition)


def test_density_is_the_studys_score_on_a_hand_computed_case():
    T = [[1, 3, 0], [1, 1, 0], [0, 0, 1]]  # symmetrised: [[1, 2, 0], [2, 1, 0], [0, 0, 1]]
    assert cluster_density(T, [[0, 1], [2]]) == pytest.approx((1 + 1 + 2 + 2) / 2 + 1)
    assert cluster_density(T, [[0], [1], [2]]) == pytest.approx(3.0)
    assert cluster_density(T, [[0, 1, 2]]) == pytest.approx(7 / 3)
    assert cluster_density(T, [[2], [1, 0]]) == pytest.approx(4.0)


def test_lam_selection_takes_the_densest_then_fewer_clusters_then_smaller_lam(monkeypatch):
    # Densities on T = [[1, 1, 0], [1, 1, 0], [0, 0, 1]], by hand: singletons 1 + 1 + 1 = 3;
    # {0}{1,2}: 1 + (1 + 1) / 2 = 2; {0,1}{2}: (1 + 1 + 1 + 1) / 2 + 1 = 3; one cluster: 5 / 3.
    T = np.array([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]])
    table = {0.1: ((0,), (1,), (2,)), 0.2: ((0,), (1, 2)), 0.3: ((0, 1), (2,)), 0.4: ((0, 1), (2,)),
             0.5: ((0, 1, 2),)}

    def solve(self, lam):
        return partition_matrix(table[lam], 3), "optimal", "CLARABEL"

    monkeypatch.setattr(clustering._RegularisedSDP, "solve", solve)
    result = cluster_tasks(T, lambdas=[0.5, 0.4, 0.3, 0.2, 0.1])
    assert result.partition == ((0, 1), (2,)) and result.lam == 0.3
    assert result.objective == pytest.approx(3.0)
    assert result.objectives == pytest.approx({0.1: 3.0, 0.2: 2.0, 0.3: 3.0, 0.4: 3.0, 0.5: 5 / 3})
    # Only the exact tie between two-cluster partitions left: the smaller lam.
    table[0.2] = ((0, 1), (2,))
    assert cluster_tasks(T, lambdas=[0.5, 0.4, 0.3, 0.2, 0.1]).lam == 0.2


def test_default_lambdas_are_the_studys_sweep():
    assert DEFAULT_LAMBDAS == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def test_result_is_always_a_valid_partition_on_random_matrices():
    rng = np.random.default_rng(12)
    for trial in range(24):
        n = int(rng.integers(1, 9))
        T = rng.normal(size=(n, n)) * [0.01, 1.0, 10.0][trial % 3]  # negative entries, several scales
        if trial % 4 == 0:
            T = np.round(T)  # many exact ties
        for method in ("sdp", "spectral"):
            result = cluster_tasks(T, method=method)
            assert_partition(result.partition, n)
            assert result.objective == pytest.approx(density_by_loops(T, result.partition), abs=1e-9)
            assert result.objective == pytest.approx(max(result.objectives.values()), abs=1e-9)
        for k in range(1, n + 1):
            partition = spectral_clustering(T, k)
            assert_partition(partition, n)
            assert len(partition) <= k
        if n > 1:
            partition, X = sdp_clustering(T, float(rng.uniform(0, 1)))
            assert_partition(partition, n)
            np.testing.assert_allclose(X, X.T, atol=1e-9)
            np.testing.assert_allclose(X.sum(axis=1), 1.0, atol=1e-3)
            assert X.min() > -1e-3 and np.linalg.eigvalsh(X).min() > -1e-3


def test_spectral_choice_ignores_shifting_and_scaling_the_affinity():
    # Spectral weights are min-max rescaled, and T -> a T + b adds b * n to every partition's density.
    rng = np.random.default_rng(3)
    for trial in range(6):
        T = rng.normal(size=(7, 7))
        assert (cluster_tasks(T, method="spectral").partition
                == cluster_tasks(5.0 * T - 3.0, method="spectral").partition)


def test_affinity_is_symmetrised_so_transposing_it_changes_nothing():
    # Affinity only above the diagonal: the planted blocks are visible only in (T + T^T) / 2.
    T, planted = planted_affinity((3, 3, 2), seed=11, shuffle=True)
    upper = np.triu(T, 1) * 2 + np.diag(np.diag(T))
    for method in ("sdp", "spectral"):
        assert cluster_tasks(upper, method=method).partition == planted
        assert cluster_tasks(upper.T, method=method).partition == planted
    assert spectral_clustering(upper, 3) == spectral_clustering(upper.T, 3) == planted


def test_rounding_links_the_single_cluster_whose_entries_are_all_one_over_n():
    # The integral one-cluster solution has every entry exactly 1/n; a strict "> 1/n" splits it on solver noise.
    n = 5
    X = np.full((n, n), 1 / n) - 1e-7 * np.eye(n)[::-1]
    assert clustering._round(X, 0.05) == ((0, 1, 2, 3, 4),)
    # Rows that overlap inconsistently (0-1 and 1-2 linked, 0-2 not) still give each task exactly one cluster.
    X = np.array([[0.5, 0.5, 0.0, 0.0], [0.5, 0.0, 0.5, 0.0], [0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert clustering._round(X, 0.05) == ((0, 1, 2), (3,))


def test_single_task():
    assert cluster_tasks([[0.3]]).partition == ((0,),)
    assert cluster_tasks([[0.3]], method="spectral", names=["bfs"]).groups == (("bfs",),)
    partition, X = sdp_clustering([[0.3]], 0.5)
    assert partition == ((0,),) and X.tolist() == [[1.0]]


def test_fallback_to_spectral_when_the_solver_raises(monkeypatch):
    T, planted = planted_affinity((2, 2), seed=1)

    def raises(self, *args, **kwargs):
        raise cvxpy.error.SolverError("simulated solver crash")

    monkeypatch.setattr(cvxpy.Problem, "solve", raises)
    with pytest.raises(SDPSolverError, match="simulated solver crash"):
        sdp_clustering(T, 0.1)
    with pytest.warns(SDPFallbackWarning, match="simulated solver crash"):
        result = cluster_tasks(T)
    assert result.method == "spectral" and result.partition == planted
    assert "CLARABEL raised: simulated solver crash" in result.fallback
    assert "SCS raised: simulated solver crash" in result.fallback
    assert result.to_dict()["fallback"] == result.fallback


def test_fallback_when_no_solver_or_no_cvxpy_is_installed(monkeypatch):
    T, planted = planted_affinity((3, 1), seed=2)
    monkeypatch.setattr(cvxpy, "installed_solvers", lambda: ["OSQP"])
    with pytest.warns(SDPFallbackWarning, match="no open SDP solver installed"):
        result = cluster_tasks(T)
    assert result.method == "spectral" and result.partition == planted and "CLARABEL or SCS" in result.fallback
    monkeypatch.setitem(sys.modules, "cvxpy", None)
    with pytest.warns(SDPFallbackWarning, match="cvxpy is not installed"):
        assert cluster_tasks(T).partition == planted


def test_fallback_when_the_solver_returns_no_solution(monkeypatch):
    T, planted = planted_affinity((2, 2), seed=5)
    monkeypatch.setattr(cvxpy.Problem, "solve", lambda self, *args, **kwargs: None)  # status stays None
    with pytest.warns(SDPFallbackWarning, match="returned status None"):
        result = cluster_tasks(T)
    assert result.method == "spectral" and result.partition == planted


def test_auto_solver_moves_on_to_scs_when_clarabel_fails(monkeypatch):
    T, planted = planted_affinity((2, 2), seed=6)
    original = cvxpy.Problem.solve

    def clarabel_fails(self, *args, solver=None, **kwargs):
        if solver == "CLARABEL":
            raise cvxpy.error.SolverError("simulated Clarabel failure")
        return original(self, *args, solver=solver, **kwargs)

    monkeypatch.setattr(cvxpy.Problem, "solve", clarabel_fails)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SDPFallbackWarning)
        result = cluster_tasks(T)
    assert result.method == "sdp" and result.solver == "SCS" and result.partition == planted
    with pytest.raises(SDPSolverError, match="simulated Clarabel failure"):
        sdp_clustering(T, 0.1, solver="clarabel")


def test_spectral_method_is_not_a_fallback_and_warns_nothing():
    T, _ = planted_affinity((2, 2), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = cluster_tasks(T, method="spectral")
    assert result.fallback is None and result.status == "spectral" and result.solver is None


def test_results_are_deterministic_and_json_ready():
    T, _ = planted_affinity((5, 3), seed=9, noise=0.12)
    for method in ("sdp", "spectral"):
        first, second = cluster_tasks(T, method=method), cluster_tasks(T, method=method)
        assert first == second
        record = json.loads(json.dumps(first.to_dict()))
        assert record["partition"] == [list(c) for c in first.partition]
        assert len(record["sweep"]) == (len(DEFAULT_LAMBDAS) if method == "sdp" else 8)


@pytest.mark.parametrize("T,match", [
    ([[1.0, 2.0, 3.0]], r"square matrix, got shape \(1, 3\)"),
    (np.zeros((2, 2, 2)), r"square matrix, got shape \(2, 2, 2\)"),
    (np.zeros((0, 0)), "at least one task"),
    ([[0.0, np.nan], [0.0, 0.0]], "finite, got nan at row 0, column 1"),
    ([[0.0, 1.0], [np.inf, -np.inf]], r"finite, got inf at row 1, column 0 \(2 non-finite entries\)"),
    ([["a", "b"], ["c", "d"]], "square numeric matrix"),
])
def test_bad_affinity_matrices_are_named(T, match):
    for call in (lambda: cluster_tasks(T), lambda: sdp_clustering(T, 0.1), lambda: spectral_clustering(T, 1),
                 lambda: cluster_density(T, [[0]])):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize("kwargs,match", [
    ({"lambdas": []}, "lambdas must hold at least one value"),
    ({"lambdas": [0.1, -0.2]}, r"lambdas\[1\] must be a finite number >= 0.0"),
    ({"lambdas": "0.1"}, "lambdas must be a sequence"),
    ({"method": "kmeans"}, "method must be one of"),
    ({"solver": "mosek"}, "solver must be one of"),
    ({"names": ["a", "b"]}, "names must name each of the 3 tasks"),
    ({"names": ["a", "b", "a"]}, r"names must be distinct, got duplicates \['a'\]"),
    ({"names": ["a", "b", 3]}, r"names\[2\] must be a string"),
    ({"rtol": 1.0}, "rtol must be a finite number"),
    ({"seed": -1}, "seed must be an integer >= 0"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cluster_tasks(np.eye(3), **kwargs)


def test_bad_lam_k_and_partition_are_named():
    with pytest.raises(ValueError, match="lam must be a finite number >= 0.0"):
        sdp_clustering(np.eye(3), -0.1)
    with pytest.raises(ValueError, match="k must be an integer >= 1 and <= 3"):
        spectral_clustering(np.eye(3), 4)
    with pytest.raises(ValueError, match="cover each of the 3 tasks exactly once"):
        cluster_density(np.eye(3), [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match=r"partition\[1\] is an empty cluster"):
        cluster_density(np.eye(3), [[0, 1, 2], []])
