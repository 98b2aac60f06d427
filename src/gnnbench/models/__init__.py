"""Reference models of the algorithmic and road benchmarks (work in progress: issue 9).

So far: ``losses``, the per-type losses of CLRS-30's encode-process-decode baselines.
"""

from .losses import hint_loss, output_loss

__all__ = ["hint_loss", "output_loss"]
