"""Running an algorithm on one graph (``run_algorithm``) or a batch (``run_batch``)."""

from __future__ import annotations

import numpy as np

from .algorithms import IMPLEMENTATIONS
from .algorithms.shortest_paths import NEGATIVE_CYCLE
from .recording import KernelError, graph_probe, node_positions, one_hot, record
from .specs import SOURCE_ALGORITHMS, Stage, fields
from .trace import Trace, TraceSet
from .validation import check_graph


def run_algorithm(name: str, A: np.ndarray, s: int | None = None) -> Trace:
    """Run algorithm ``name`` on weight matrix ``A`` (0 = no edge) from source ``s``.

    Returns the CLRS-30 trace: the same fields, shapes and step semantics as the
    CLRS-30 reference implementation produces for this input.
    """
    A, source = check_graph(name, A, s)
    aux = _kruskal_order(A) if name == "mst_kruskal" and A.dtype != np.float64 else None
    return run_batch(name, A[None], np.array([source]), aux=aux)[0]


def run_batch(name: str, graphs: np.ndarray, sources: np.ndarray | None = None,
              aux: np.ndarray | None = None, *, copy: bool = True) -> TraceSet:
    """Run ``name`` on every graph of ``graphs`` ``[num, n, n]``; inputs are not re-validated.

    ``graphs`` keeps its dtype in the ``A`` input field, as CLRS-30 keeps the
    sampler's dtype (int64 for unweighted graphs). ``copy=False`` lets the trace
    set keep (and make read-only) ``graphs`` itself.
    """
    if sources is None:
        sources = np.zeros(graphs.shape[0], dtype=np.int64)
    keep_float32 = IMPLEMENTATIONS[name].float32_kernel and graphs.dtype == np.float32
    kernel_graphs = graphs if keep_float32 else np.ascontiguousarray(graphs, dtype=np.float64)
    return run_kernels(name, kernel_graphs, graphs.copy() if copy else graphs, sources, aux)


def run_kernels(name: str, kernel_graphs: np.ndarray, A: np.ndarray, sources: np.ndarray,
                aux: np.ndarray | None = None, probes: dict[str, np.ndarray] | None = None,
                metadata: dict | None = None) -> TraceSet:
    """The trace set of ``name`` on ``kernel_graphs`` (float64, or float32 for a kernel that
    computes in float32); ``A``, the same graphs in the caller's dtype, becomes the ``A`` field.
    ``probes`` holds the input probes ``adj``, ``pos`` and ``s`` if the caller computed them."""
    implementation = IMPLEMENTATIONS[name]
    num, n = kernel_graphs.shape[0], kernel_graphs.shape[1]
    try:
        recording = record(implementation.batch, implementation.which, implementation.kernel,
                           implementation.layout, kernel_graphs, sources, aux)
    except KernelError as error:
        if error.code == NEGATIVE_CYCLE:
            raise ValueError(f"{name}: graph {error.sample} has a negative-weight cycle reachable from "
                             f"source {int(sources[error.sample])}, so shortest paths are undefined") from None
        raise
    if probes is None:
        probes = {"adj": graph_probe(kernel_graphs), "pos": node_positions(num, n)}
        if name in SOURCE_ALGORITHMS:
            probes["s"] = one_hot(sources, n)
    hints, outputs = implementation.finalize(recording, A, probes["adj"])
    inputs = {"A": A, **probes}
    return TraceSet(
        algorithm=name,
        inputs={k: inputs[k] for k in fields(name, Stage.INPUT)},
        hints={k: hints[k] for k in fields(name, Stage.HINT)},
        outputs={k: outputs[k] for k in fields(name, Stage.OUTPUT)},
        offsets=recording.offsets,
        metadata=metadata if metadata is not None else {},
    )


def _kruskal_order(A: np.ndarray) -> np.ndarray:
    """Edge order as NumPy sorts the weights in ``A``'s own dtype (ties differ by dtype)."""
    n = A.shape[0]
    upper = np.triu(np.ones((n, n), dtype=bool), k=1) & (A > 0)
    order = np.full((1, n * n), -1, dtype=np.int64)
    weights = A[upper]  # row-major, the order the kernel lists edges in
    order[0, : weights.shape[0]] = np.argsort(weights)
    return order
