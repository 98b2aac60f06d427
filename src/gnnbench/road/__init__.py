"""Road-network accident graphs for eight US states (and a synthetic demo region).

* :data:`STATES` — the registry: crash sources, column mappings, year splits (``STATES["MA"].splits``).
* :class:`Evaluator` — the official metrics of the three tasks.
* ``gnnbench.road.pipeline`` — ``download_region``, ``build_region_from_raw``, ``build_demo``.
* ``gnnbench.datasets.RoadAccidentDataset`` — the PyTorch Geometric dataset built from the tables.
"""

from .evaluation import Evaluator
from .states import STATES, StateEntry, get_state, region_code

__all__ = ["STATES", "Evaluator", "StateEntry", "get_state", "region", "region_code"]


def region(code: str) -> StateEntry:
    """The registry entry of a state code, or the synthetic demo region for ``"DEMO"``; an unknown code raises a
    ValueError listing the valid ones."""
    code = region_code(code)
    if code == "DEMO":
        from .demo.region import DEMO_REGION

        return DEMO_REGION
    return get_state(code)
