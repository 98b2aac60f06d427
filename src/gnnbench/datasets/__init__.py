"""User-facing datasets (PyTorch Geometric); DGL twins live in ``gnnbench.datasets.dgl``."""

from .. import _pyg  # noqa: F401 - PyG imported first, without the warning its import prints
from .algorithmic_reasoning import AlgorithmicReasoningData, AlgorithmicReasoningDataset
from .road_accidents import RoadAccidentDataset

__all__ = ["AlgorithmicReasoningData", "AlgorithmicReasoningDataset", "RoadAccidentDataset"]
