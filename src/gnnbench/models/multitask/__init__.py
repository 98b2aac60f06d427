"""Multitask networks over the twelve CLRS-30 graph algorithms and the branching study's search.

* ``tree``: :class:`Tree` (which algorithms share the processor layer at each depth; JSON on disk) and the study's
  :data:`PUBLISHED_TREE`;
* ``net``: :class:`MultitaskNet` (single-task, fully shared, MMoE and branched variants) and :func:`inherit`;
* ``clustering``: :func:`cluster_tasks` (the SDP relaxation swept over lambda, spectral clustering as the fallback);
* ``figures``: affinity heatmaps and the tree as a dendrogram (matplotlib).
"""

from .clustering import ClusteringResult, cluster_tasks
from .net import VARIANTS, MMoELayer, MultitaskNet, inherit
from .tree import PUBLISHED_TREE, Tree

__all__ = ["ClusteringResult", "MMoELayer", "MultitaskNet", "PUBLISHED_TREE", "Tree", "VARIANTS", "cluster_tasks", "inherit"]
