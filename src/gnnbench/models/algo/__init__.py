"""CLRS-30's encode-process-decode baselines in PyTorch, built from ``gnnbench.algo.SPECS``.

* ``losses``: the per-type output and hint losses;
* ``encoders`` / ``decoders``: one encoder and one decoder per (location, type);
* ``processors``: ``mpnn``, ``pgn``, ``gatv2``, ``triplet_gmpnn``, and ``edge_transformer`` (:mod:`.edge_transformer`);
* ``net``: the encode-process-decode network over ``TraceSet.clrs_batch()`` batches;
* ``batches``: ``TorchBatch`` (``to_torch(trace_set.clrs_batch())``) and CLRS-30's ``random_pos``;
* ``clrs_params``: ``load_clrs_params`` copies a CLRS-30 ``BaselineModel``'s haiku parameters into the network.
"""

from .batches import TorchBatch, random_pos, randomize_pos, to_torch
from .clrs_params import load_clrs_params
from .losses import hint_loss, output_loss
from .net import EncodeProcessDecode, clrs_loss
from .processors import make_processor

__all__ = ["EncodeProcessDecode", "TorchBatch", "clrs_loss", "hint_loss", "load_clrs_params", "make_processor",
           "output_loss", "random_pos", "randomize_pos", "to_torch"]
