"""Clustering tasks from a task-affinity matrix: the branching study's regularised SDP, with spectral clustering as
the fallback.

The affinity ``T[i, j]`` says how well task ``i`` does when trained together with task ``j`` (higher is better).
A partition of the tasks into clusters ``C`` is scored by its *density*

    ``sum over clusters C of sum(T[C, C]) / |C|``

(:func:`cluster_density`), the criterion of the AutoBRANE study (arXiv 2512.01113; ``branchnn_search.py`` of
https://github.com/VirtuosoResearch/Multitask-algorithmic-reasoning at commit
``d426c277da9df776af6a06cf4f03ec4887824065``). A partition is the matrix ``X = sum_C 1_C 1_C^T / |C|``, for which
``<T, X>`` is the density and ``tr(X)`` the number of clusters; relaxing the set of such matrices gives the SDP of
:func:`sdp_clustering`:

    maximise ``<T, X> - lam * tr(X)``  subject to  ``X ⪰ 0``, ``X ≥ 0`` (elementwise), ``X 1 = 1``,

solved with cvxpy and an open solver (Clarabel, else SCS). :func:`cluster_tasks` sweeps ``lam`` (0.1..1.0 by
default, in the units of ``T``) and keeps the densest partition.

Choices made here (and where they differ from the study's code):

* ``T`` is symmetrised to ``(T + T^T) / 2`` first. Neither ``<T, X>`` for a symmetric ``X`` nor the density
  changes, but the solver and the spectral embedding see one symmetric matrix.
* Rounding: tasks ``i`` and ``j`` are linked when ``X[i, j] >= (1 - rtol) / n``, and the clusters are the connected
  components of the links (a task linked to nothing is a cluster of its own). An integral ``X`` has entries ``0`` or
  ``1 / |C| >= 1 / n``, so this recovers its partition exactly, including the single cluster whose entries are all
  exactly ``1 / n`` (a strict ``> 1 / n`` splits it apart on rounding noise). Components always cover every task
  exactly once; the study's row-by-row scan can leave a task out or put it twice when the rows of a fractional ``X``
  overlap inconsistently.
* A solve counts as failed when the solver raises, returns no solution or a status other than ``optimal`` /
  ``optimal_inaccurate``, or returns an ``X`` that breaks the constraints by more than ``1e-3``. With ``solver="auto"``
  Clarabel is tried first and SCS second. When every solver fails, :func:`sdp_clustering` raises
  :class:`SDPSolverError` and :func:`cluster_tasks` falls back to :func:`spectral_clustering`, which it records in
  :attr:`ClusteringResult.fallback` and reports with a :class:`SDPFallbackWarning`.
* The spectral clustering is Ng, Jordan and Weiss's (NIPS 2001): the off-diagonal symmetrised affinities rescaled to
  ``[0, 1]`` (min to 0, max to 1: invariant to shifting and scaling ``T``, and defined for negative entries), the
  eigenvectors of the ``k`` smallest eigenvalues of the normalised Laplacian, rows scaled to unit length, then
  k-means (k-means++ seeding, a fixed seed, several restarts). ``k`` is chosen by the density over ``k = 1..n``.
* Ties in the density (within ``1e-9`` relative) go to the partition with fewer clusters, then to the smaller ``lam``
  (or ``k``).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gnnbench.arguments import check_choice, check_float, check_int

__all__ = [
    "DEFAULT_LAMBDAS",
    "ClusteringResult",
    "SDPFallbackWarning",
    "SDPSolverError",
    "cluster_density",
    "cluster_tasks",
    "sdp_clustering",
    "spectral_clustering",
]

logger = logging.getLogger(__name__)

Partition = tuple[tuple[int, ...], ...]

DEFAULT_LAMBDAS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 11))
"""The study's sweep of the cluster-count penalty: 0.1, 0.2, ..., 1.0."""

METHODS = ("sdp", "spectral")
SOLVERS = ("auto", "clarabel", "scs")
_SOLVER_ORDER = ("CLARABEL", "SCS")  # what "auto" tries, in order
_ACCEPTED_STATUSES = ("optimal", "optimal_inaccurate")
_FEASIBILITY_TOL = 1e-3  # largest constraint violation of an accepted solution
_TIE_RTOL = 1e-9


class SDPSolverError(RuntimeError):
    """No solver could solve the clustering SDP (cvxpy or the solvers missing, a solver error, a bad solution)."""


class SDPFallbackWarning(RuntimeWarning):
    """:func:`cluster_tasks` used spectral clustering because the SDP could not be solved."""


@dataclass(frozen=True)
class ClusteringResult:
    """The chosen partition of :func:`cluster_tasks` and how it was chosen.

    ``partition``: clusters of task indices, each sorted, ordered by their smallest index; ``groups``: the same with
    the task names when ``names`` was given. ``method``: the method that produced the partition (``"spectral"`` also
    when it was the fallback; ``fallback`` then says why). ``objectives``: the density of the partition found at each
    swept value, keyed by ``lam`` (SDP) or by ``k`` (spectral); ``lam`` / ``k``: the chosen value (the other is
    None). ``statuses``: the solver status at each ``lam`` (SDP only); ``status``: the chosen one's (``"spectral"``
    for spectral clustering); ``solver``: the solver that produced the chosen partition.
    """

    partition: Partition
    method: str
    objective: float
    objectives: dict[float, float]
    lam: float | None = None
    k: int | None = None
    status: str = ""
    statuses: dict[float, str] = field(default_factory=dict)
    solver: str | None = None
    fallback: str | None = None
    groups: tuple[tuple[str, ...], ...] | None = None
    partitions: dict[float, Partition] = field(default_factory=dict)  # the partition found at each swept value

    @property
    def num_clusters(self) -> int:
        """The number of clusters."""
        return len(self.partition)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (swept values as lists of records, since JSON keys are strings)."""
        key = "lam" if self.method == "sdp" else "k"
        sweep = [{key: value, "objective": objective, **({"status": self.statuses[value]}
                                                           if value in self.statuses else {}),
                  **({"partition": [list(c) for c in self.partitions[value]]} if value in self.partitions else {})}
                 for value, objective in self.objectives.items()]
        return {
            "method": self.method, "partition": [list(c) for c in self.partition],
            "groups": None if self.groups is None else [list(g) for g in self.groups],
            "objective": self.objective, "lam": self.lam, "k": self.k, "status": self.status,
            "solver": self.solver, "fallback": self.fallback, "sweep": sweep,
        }


def _check_affinity(T: Any) -> np.ndarray:
    """``T`` as a symmetrised float64 array; ValueError naming the problem."""
    try:
        array = np.array(T, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"T must be a square numeric matrix: {error}") from None
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ValueError(f"T must be a square matrix, got shape {array.shape}")
    if array.shape[0] < 1:
        raise ValueError("T must have at least one task, got shape (0, 0)")
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        i, j = (int(v) for v in bad[0])
        raise ValueError(f"T must be finite, got {array[i, j]} at row {i}, column {j} "
                         f"({len(bad)} non-finite entr{'y' if len(bad) == 1 else 'ies'})")
    return (array + array.T) / 2


def _check_names(names: Sequence[str] | None, n: int) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str):
        raise ValueError("names must be a sequence of task names, got a single string")
    names = tuple(names)
    if len(names) != n:
        raise ValueError(f"names must name each of the {n} tasks of T, got {len(names)} names")
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise ValueError(f"names[{i}] must be a string, got {name!r}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"names must be distinct, got duplicates {duplicates}")
    return names


def _canonical(clusters: Any) -> Partition:
    """Clusters as sorted tuples ordered by their smallest task (empty clusters dropped)."""
    return tuple(sorted(tuple(sorted(int(i) for i in c)) for c in clusters if len(c)))


def _from_labels(labels: np.ndarray) -> Partition:
    return _canonical([np.flatnonzero(labels == label) for label in np.unique(labels)])


def cluster_density(T: Any, partition: Sequence[Sequence[int]]) -> float:
    """The study's score of a partition: ``sum over clusters C of sum(T[C, C]) / |C|`` (``T`` symmetrised).

    ``partition`` must cover every task of ``T`` exactly once.
    """
    S = _check_affinity(T)
    n = S.shape[0]
    seen: list[int] = []
    for c, cluster in enumerate(partition):
        if len(cluster) == 0:
            raise ValueError(f"partition[{c}] is an empty cluster")
        seen.extend(check_int(f"partition[{c}] entry", i, minimum=0, maximum=n - 1) for i in cluster)
    if sorted(seen) != list(range(n)):
        raise ValueError(f"partition must cover each of the {n} tasks exactly once, got {sorted(seen)}")
    return float(sum(S[np.ix_(c, c)].sum() / len(c) for c in (list(cluster) for cluster in partition)))


def _round(X: np.ndarray, rtol: float) -> Partition:
    """Connected components of the links ``X[i, j] >= (1 - rtol) / n``."""
    n = X.shape[0]
    linked = X >= (1.0 - rtol) / n
    linked = linked | linked.T
    labels = np.full(n, -1)
    for start in range(n):
        if labels[start] >= 0:
            continue
        labels[start] = start
        stack = [start]
        while stack:
            i = stack.pop()
            for j in np.flatnonzero(linked[i] & (labels < 0)):
                labels[j] = start
                stack.append(int(j))
    return _from_labels(labels)


def _violation(X: np.ndarray) -> float:
    """The largest violation of ``X 1 = 1``, ``X >= 0``, symmetry and ``X ⪰ 0``."""
    sym = (X + X.T) / 2
    return float(max(np.abs(X.sum(axis=1) - 1).max(), max(-X.min(), 0.0), np.abs(X - X.T).max(),
                     max(-np.linalg.eigvalsh(sym).min(), 0.0)))


class _RegularisedSDP:
    """The SDP for one symmetrised ``S``, built once with ``lam`` as a cvxpy parameter (re-solved per ``lam``)."""

    def __init__(self, S: np.ndarray, solver: str):
        try:
            import cvxpy as cp
        except ImportError as error:
            raise SDPSolverError(f"cvxpy is not installed ({error})") from None
        self._cp = cp
        n = S.shape[0]
        installed = set(cp.installed_solvers())
        wanted = _SOLVER_ORDER if solver == "auto" else (solver.upper(),)
        self.solvers = [name for name in wanted if name in installed]
        if not self.solvers:
            raise SDPSolverError(f"no open SDP solver installed: wanted {' or '.join(wanted)}, "
                                 f"cvxpy has {sorted(installed)}")
        self.X = cp.Variable((n, n), PSD=True)
        self.lam = cp.Parameter(nonneg=True)
        objective = cp.Maximize(cp.sum(cp.multiply(S, self.X)) - self.lam * cp.trace(self.X))
        self.problem = cp.Problem(objective, [self.X >= 0, self.X @ np.ones(n) == 1])

    def solve(self, lam: float) -> tuple[np.ndarray, str, str]:
        """``(X, status, solver)`` from the first solver that succeeds; SDPSolverError with every failure."""
        self.lam.value = lam
        failures = []
        for name in self.solvers:
            try:
                with warnings.catch_warnings():  # cvxpy warns on inaccurate solutions: the status records it
                    warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                    self.problem.solve(solver=name)
            except self._cp.error.SolverError as error:
                failures.append(f"{name} raised: {error}")
                logger.debug("clustering SDP at lam=%s: %s raised %s", lam, name, error)
                continue
            status, X = self.problem.status, self.X.value
            if status not in _ACCEPTED_STATUSES or X is None:
                failures.append(f"{name} returned status {status!r}")
            elif (violation := _violation(X)) > _FEASIBILITY_TOL:
                failures.append(f"{name} returned an X that breaks the constraints by {violation:.3g}")
            else:
                return (X + X.T) / 2, status, name
            logger.debug("clustering SDP at lam=%s: %s", lam, failures[-1])
        raise SDPSolverError(f"the clustering SDP at lam={lam} failed: " + "; ".join(failures))


def _check_rtol(rtol: float) -> float:
    return check_float("rtol", rtol, minimum=0.0, maximum=1.0, open_max=True)


def _check_solver(solver: str) -> str:
    if not isinstance(solver, str):
        raise ValueError(f"solver must be one of {', '.join(map(repr, SOLVERS))}; got {solver!r}")
    return check_choice("solver", solver.lower(), SOLVERS)


def sdp_clustering(T: Any, lam: float, *, solver: str = "auto", rtol: float = 0.05) -> tuple[Partition, np.ndarray]:
    """The partition and the solution ``X`` of the regularised clustering SDP at ``lam``.

    ``T``: the ``n x n`` affinity (symmetrised); ``lam >= 0``: the penalty per cluster, in the units of ``T``;
    ``solver``: ``"auto"`` (Clarabel, then SCS), ``"clarabel"`` or ``"scs"``; ``rtol``: the rounding links ``i`` and
    ``j`` when ``X[i, j] >= (1 - rtol) / n`` (see the module docstring). Raises :class:`SDPSolverError` when no
    solver succeeds.
    """
    S = _check_affinity(T)
    lam = check_float("lam", lam, minimum=0.0)
    solver, rtol = _check_solver(solver), _check_rtol(rtol)
    if S.shape[0] == 1:  # X = [[1]] is the only feasible point
        return ((0,),), np.ones((1, 1))
    X, _, _ = _RegularisedSDP(S, solver).solve(lam)
    return _round(X, rtol), X


def _spectral_embedding(S: np.ndarray) -> np.ndarray:
    """Eigenvectors of the normalised Laplacian of the rescaled off-diagonal affinities, smallest eigenvalue first."""
    n = S.shape[0]
    off = ~np.eye(n, dtype=bool)
    low, high = S[off].min(), S[off].max()
    W = (S - low) / (high - low) if high > low else np.ones_like(S)
    W[~off] = 0.0
    degree = W.sum(axis=1)
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.where(degree > 0, degree, 1.0)), 0.0)
    laplacian = np.eye(n) - inv_sqrt[:, None] * W * inv_sqrt[None, :]
    _, vectors = np.linalg.eigh(laplacian)
    return vectors


def _kmeans(points: np.ndarray, k: int, rng: np.random.Generator, n_init: int, max_iter: int = 100) -> np.ndarray:
    """Labels of Lloyd's k-means with k-means++ seeding, the best (lowest inertia) of ``n_init`` restarts."""
    n = len(points)
    best_labels, best_inertia = np.zeros(n, dtype=int), math.inf
    for _ in range(n_init):
        centers = [points[rng.integers(n)]]
        for _ in range(1, k):
            d2 = ((points[:, None, :] - np.array(centers)[None]) ** 2).sum(-1).min(axis=1)
            total = d2.sum()
            centers.append(points[rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)])
        centers = np.array(centers)
        labels = np.full(n, -1)
        for _ in range(max_iter):
            d2 = ((points[:, None, :] - centers[None]) ** 2).sum(-1)
            new = d2.argmin(axis=1)
            for c in range(k):  # an empty cluster takes the point farthest from its center
                if not (new == c).any():
                    far = int(d2[np.arange(n), new].argmax())
                    if d2[far, new[far]] > 0 and (new == new[far]).sum() > 1:
                        new[far] = c
            if (new == labels).all():
                break
            labels = new
            centers = np.array([points[labels == c].mean(axis=0) if (labels == c).any() else centers[c]
                                for c in range(k)])
        inertia = float(((points - centers[labels]) ** 2).sum())
        if inertia < best_inertia - 1e-12:
            best_labels, best_inertia = labels, inertia
    return best_labels


def spectral_clustering(T: Any, k: int, *, seed: int = 0, n_init: int = 10) -> Partition:
    """A partition of the tasks into at most ``k`` clusters by spectral clustering of the symmetrised ``T``.

    Deterministic for a ``seed`` (k-means restarts: ``n_init``). May return fewer than ``k`` clusters when tasks
    have identical embeddings.
    """
    S = _check_affinity(T)
    n = S.shape[0]
    k = check_int("k", k, minimum=1, maximum=n)
    seed = check_int("seed", seed, minimum=0)
    n_init = check_int("n_init", n_init, minimum=1)
    if k == 1:
        return (tuple(range(n)),)
    return _spectral(S, k, seed, n_init)


def _spectral(S: np.ndarray, k: int, seed: int, n_init: int, vectors: np.ndarray | None = None) -> Partition:
    if vectors is None:
        vectors = _spectral_embedding(S)
    U = vectors[:, :k].copy()
    norms = np.linalg.norm(U, axis=1, keepdims=True)
    U = np.divide(U, norms, out=np.zeros_like(U), where=norms > 0)
    return _from_labels(_kmeans(U, k, np.random.default_rng(seed), n_init))


def _choose(candidates: list[tuple[Any, Partition, float]]) -> tuple[Any, Partition, float]:
    """The densest ``(value, partition, density)``; ties: fewer clusters, then the smaller swept value."""
    best = max(density for _, _, density in candidates)
    tied = [c for c in candidates if math.isclose(c[2], best, rel_tol=_TIE_RTOL, abs_tol=_TIE_RTOL)]
    return min(tied, key=lambda c: (len(c[1]), c[0]))


def _density(S: np.ndarray, partition: Partition) -> float:
    return float(sum(S[np.ix_(c, c)].sum() / len(c) for c in partition))


def cluster_tasks(T: Any, lambdas: Sequence[float] = DEFAULT_LAMBDAS, method: str = "sdp", *,
                  solver: str = "auto", names: Sequence[str] | None = None, rtol: float = 0.05,
                  seed: int = 0, n_init: int = 10) -> ClusteringResult:
    """The densest partition of the tasks of ``T`` over a sweep of ``lam`` (SDP) or of ``k`` (spectral).

    ``method="sdp"`` solves :func:`sdp_clustering` at every ``lam`` of ``lambdas``; if the SDP cannot be solved
    (cvxpy or its solvers missing, a solver failure), the result comes from spectral clustering instead, with the
    reason in ``fallback`` and an :class:`SDPFallbackWarning`. ``method="spectral"`` runs
    :func:`spectral_clustering` for ``k = 1..n`` (``seed``, ``n_init``). ``names``: one distinct name per task, to
    get the clusters as names in ``groups`` too.
    """
    S = _check_affinity(T)
    n = S.shape[0]
    method = check_choice("method", method, METHODS)
    solver, rtol = _check_solver(solver), _check_rtol(rtol)
    seed = check_int("seed", seed, minimum=0)
    n_init = check_int("n_init", n_init, minimum=1)
    names = _check_names(names, n)
    if isinstance(lambdas, (str, bytes)) or not isinstance(lambdas, (Sequence, np.ndarray)):
        raise ValueError(f"lambdas must be a sequence of numbers, got {lambdas!r}")
    lams = [check_float(f"lambdas[{i}]", lam, minimum=0.0) for i, lam in enumerate(lambdas)]
    if not lams:
        raise ValueError("lambdas must hold at least one value, got none")

    fallback = None
    if method == "sdp":
        try:
            result = _sdp_sweep(S, lams, solver, rtol)
        except SDPSolverError as error:
            fallback = f"SDP failed, used spectral clustering: {error}"
            logger.debug("task clustering: %s", fallback)
            warnings.warn(fallback, SDPFallbackWarning, stacklevel=2)
    if method == "spectral" or fallback is not None:
        result = _spectral_sweep(S, seed, n_init, fallback)
    if names is not None:
        result = _with_groups(result, names)
    return result


def _sdp_sweep(S: np.ndarray, lams: list[float], solver: str, rtol: float) -> ClusteringResult:
    n = S.shape[0]
    sdp = _RegularisedSDP(S, solver) if n > 1 else None
    candidates, statuses, solvers = [], {}, {}
    for lam in lams:
        if sdp is None:
            partition, statuses[lam], solvers[lam] = ((0,),), "trivial", None
        else:
            X, statuses[lam], solvers[lam] = sdp.solve(lam)
            partition = _round(X, rtol)
        candidates.append((lam, partition, _density(S, partition)))
        logger.debug("clustering SDP lam=%s (%s, %s): %s, density %.6g", lam, statuses[lam], solvers[lam],
                     partition, candidates[-1][2])
    lam, partition, density = _choose(candidates)
    return ClusteringResult(partition=partition, method="sdp", objective=density,
                            objectives={value: d for value, _, d in candidates}, lam=lam, status=statuses[lam],
                            statuses=statuses, solver=solvers[lam],
                            partitions={value: p for value, p, _ in candidates})


def _spectral_sweep(S: np.ndarray, seed: int, n_init: int, fallback: str | None) -> ClusteringResult:
    n = S.shape[0]
    vectors = _spectral_embedding(S) if n > 1 else None
    candidates = []
    for k in range(1, n + 1):
        partition = (tuple(range(n)),) if k == 1 else _spectral(S, k, seed, n_init, vectors)
        candidates.append((k, partition, _density(S, partition)))
    k, partition, density = _choose(candidates)
    return ClusteringResult(partition=partition, method="spectral", objective=density,
                            objectives={value: d for value, _, d in candidates}, k=k, status="spectral",
                            fallback=fallback, partitions={value: p for value, p, _ in candidates})


def _with_groups(result: ClusteringResult, names: tuple[str, ...]) -> ClusteringResult:
    return replace(result, groups=tuple(tuple(names[i] for i in cluster) for cluster in result.partition))
