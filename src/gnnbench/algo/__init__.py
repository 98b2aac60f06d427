"""CLRS-30-compatible algorithmic reasoning traces for twelve graph algorithms.

>>> from gnnbench.algo import ALGORITHMS, SPECS, run_algorithm, sample
>>> trace = run_algorithm("bfs", A, s=0)        # one graph
>>> traces = sample("dijkstra", 1000, n=16, seed=1)  # CLRS-30's training split
"""

from ..compile_cache import kernel_cache

with kernel_cache():  # compiled kernels cache under a directory keyed by their sources
    from .compilation import compile_kernels, interruptible, kernels_compiled
    from .evaluation import Evaluator
    from .execution import run_algorithm, run_batch
    from .samplers import DISTRIBUTIONS, GraphDistribution, sample, sample_graphs
    from .specs import ALGORITHMS, SPECS, Location, OutputClass, Stage, Type
    from .splits import CLRS30_SPLITS, LENGTH_GENERALIZATION_SIZES, SplitConfig, resolve_split
    from .trace import Trace, TraceSet

__all__ = [
    "ALGORITHMS",
    "CLRS30_SPLITS",
    "DISTRIBUTIONS",
    "Evaluator",
    "GraphDistribution",
    "LENGTH_GENERALIZATION_SIZES",
    "Location",
    "OutputClass",
    "SPECS",
    "SplitConfig",
    "Stage",
    "Trace",
    "TraceSet",
    "Type",
    "compile_kernels",
    "interruptible",
    "kernels_compiled",
    "resolve_split",
    "run_algorithm",
    "run_batch",
    "sample",
    "sample_graphs",
]
