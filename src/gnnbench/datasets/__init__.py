"""User-facing datasets (PyTorch Geometric); DGL twins live in ``gnnbench.datasets.dgl``."""

from .algorithmic_reasoning import AlgorithmicReasoningData, AlgorithmicReasoningDataset
from .road_accidents import RoadAccidentDataset

__all__ = ["AlgorithmicReasoningData", "AlgorithmicReasoningDataset", "RoadAccidentDataset"]
