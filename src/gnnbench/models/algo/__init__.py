"""CLRS-30's encode-process-decode baselines in PyTorch, built from ``gnnbench.algo.SPECS``.

* ``losses``: the per-type output and hint losses;
* ``encoders`` / ``decoders``: one encoder and one decoder per (location, type);
* ``processors``: ``mpnn``, ``pgn``, ``gatv2``, ``triplet_gmpnn``;
* ``net``: the encode-process-decode network over ``TraceSet.clrs_batch()`` batches.
"""

from .losses import hint_loss, output_loss

__all__ = ["hint_loss", "output_loss"]
