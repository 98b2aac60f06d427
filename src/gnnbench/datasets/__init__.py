"""User-facing datasets (PyTorch Geometric); DGL twins live in ``gnnbench.datasets.dgl``."""

from .algorithmic_reasoning import AlgorithmicReasoningData, AlgorithmicReasoningDataset

__all__ = ["AlgorithmicReasoningData", "AlgorithmicReasoningDataset"]
