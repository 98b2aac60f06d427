"""gnnbench: benchmark datasets for graph learning research.

Subpackages: ``gnnbench.algo`` (CLRS-30-compatible algorithmic reasoning traces),
``gnnbench.datasets`` (PyTorch Geometric datasets; DGL twins in
``gnnbench.datasets.dgl``), ``gnnbench.io`` (caches and files).
"""

__version__ = "0.1.0"
