"""Reference models of both benchmark families.

* :mod:`gnnbench.models.algo`: CLRS-30's encode-process-decode baselines (encoders, decoders, processors, losses);
* :mod:`gnnbench.models.road`: ML4RoadSafety's node encoders and link predictor.
"""

from .algo import hint_loss, output_loss

__all__ = ["hint_loss", "output_loss"]
