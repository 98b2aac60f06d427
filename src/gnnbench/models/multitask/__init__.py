"""Multitask networks over the twelve CLRS-30 graph algorithms and the branching study's search.

* ``tree``: :class:`Tree` (which algorithms share the processor layer at each depth; JSON on disk) and the study's
  :data:`PUBLISHED_TREE`;
* ``net``: :class:`MultitaskNet` (single-task, fully shared, MMoE and branched variants) and :func:`inherit`;
* ``gradients`` / ``affinity``: per-sample gradient features (``torch.func``), the projected logistic-regression
  estimates over random task subsets and the affinity matrix (:func:`task_affinity`);
* ``search``: the layer-wise tree search (:func:`search_tree`) and the estimator check;
* ``clustering``: :func:`cluster_tasks` (the SDP relaxation swept over lambda, spectral clustering as the fallback);
* ``figures``: affinity heatmaps and the tree as a dendrogram (matplotlib).
"""

from .affinity import AffinityResult, task_affinity
from .clustering import ClusteringResult, cluster_tasks
from .gradients import GradientFeatures, gradient_features
from .net import VARIANTS, MMoELayer, MultitaskNet, inherit
from .search import SearchSettings, search_tree
from .tree import PUBLISHED_TREE, Tree

__all__ = ["AffinityResult", "ClusteringResult", "GradientFeatures", "MMoELayer", "MultitaskNet", "PUBLISHED_TREE",
           "SearchSettings", "Tree", "VARIANTS", "cluster_tasks", "gradient_features", "inherit", "search_tree",
           "task_affinity"]
