"""ML4RoadSafety's road baselines in PyTorch: node encoders, the link predictor, the model and its data.

* :mod:`~gnnbench.models.road.encoders`: :class:`NodeEncoder` (``mlp``, ``gcn``, ``sage``, ``gin``, ``gat``);
* :mod:`~gnnbench.models.road.link_predictor`: :class:`LinkPredictor`, an MLP over ``[h_u, h_v, edge features]``;
* :mod:`~gnnbench.models.road.fusion`: the multimodal study's fusion heads of node representations and image
  features, :data:`FUSIONS` (:class:`ConcatFusion`, :class:`GatedFusion`, :class:`MoEFusion`);
* :mod:`~gnnbench.models.road.graph`: :class:`RoadGraph`, a graph's sparse operators (built once per graph);
* :mod:`~gnnbench.models.road.model`: :class:`RoadModel` (an encoder, one predictor per state), :class:`EdgeBatch`;
* :mod:`~gnnbench.models.road.data`: :class:`RoadRegion`, a state's dataset prepared for training;
* :mod:`~gnnbench.models.road.sampling`: neighbour-sampled subgraphs through PyG's ``NeighborLoader``.

The training protocol is :mod:`gnnbench.harness.road_family` (``gnnbench run road``).
"""

from ... import _pyg  # noqa: F401 - PyG imported first, without the warning its import prints
from .encoders import ENCODERS, GATConv, GCNConv, GINConv, NodeEncoder, SAGEConv
from .fusion import FUSIONS, ConcatFusion, GatedFusion, MoEFusion
from .graph import RoadGraph
from .link_predictor import LinkPredictor
from .model import EdgeBatch, RoadModel, batch_loss, task_loss

__all__ = ["ENCODERS", "FUSIONS", "ConcatFusion", "EdgeBatch", "GATConv", "GCNConv", "GINConv", "GatedFusion",
           "LinkPredictor", "MoEFusion", "NodeEncoder", "RoadGraph", "RoadModel", "SAGEConv", "batch_loss", "task_loss"]
