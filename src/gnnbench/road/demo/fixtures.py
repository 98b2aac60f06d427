"""Everything the demo region's loopback portal serves, generated from one seed.

* the road network, as the Overpass answer osmnx receives (and as an OSM XML extract);
* crash records in Delaware's Socrata shape, with bad rows of every kind;
* Meteostat bulk files (stations database, monthly and daily CSVs) for stations around the town;
* HPMS-like ArcGIS layers, one per year, with AADT on the arterial roads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..endpoints import Endpoints
from .region import DEMO_DATASET_ID, DEMO_REGION, DemoCrashes, DemoNetwork, generate_crashes, generate_network

_ARTERIAL_AADT = {"trunk": 24_000.0, "primary": 15_000.0, "secondary": 8_000.0, "tertiary": 4_000.0}
_HPMS_FIELDS = [{"name": "OBJECTID", "type": "esriFieldTypeOID"}, {"name": "route_id", "type": "esriFieldTypeString"},
                {"name": "begin_point", "type": "esriFieldTypeDouble"},
                {"name": "end_point", "type": "esriFieldTypeDouble"},
                {"name": "f_system", "type": "esriFieldTypeInteger"}, {"name": "aadt", "type": "esriFieldTypeInteger"}]
_F_SYSTEM = {"trunk": 2, "primary": 3, "secondary": 4, "tertiary": 5}


@dataclass
class DemoFixtures:
    """The generated demo sources and how to serve them."""

    seed: int
    network: DemoNetwork
    crashes: DemoCrashes
    hpms: dict[int, list[dict[str, Any]]]

    @classmethod
    def generate(cls, seed: int = 0) -> DemoFixtures:
        network = generate_network(seed)
        crashes = generate_crashes(network, seed)
        return cls(seed=seed, network=network, crashes=crashes, hpms=hpms_features(network, seed))

    def serve(self, portal: Any, scratch: Path, *, drop_columns: tuple[str, ...] = ()) -> Endpoints:
        """Register every route on a running ``LoopbackPortal``; return the matching ``Endpoints``."""
        from .meteostat_files import write_meteostat_fixture

        portal.add_socrata(DEMO_DATASET_ID, self.crashes.rows, self.crashes.columns, drop_columns=drop_columns)
        portal.add_overpass(self.network.overpass_json(), prefix="/api")
        meteostat = scratch / "meteostat"
        written = write_meteostat_fixture(meteostat, bbox=self.network.bounds(), years=DEMO_REGION.years,
                                          n_stations=4, seed=self.seed)
        for relative in written["paths"]:
            portal.add_file(f"/meteostat/{relative}", (meteostat / relative).read_bytes())
        for year, features in self.hpms.items():
            portal.add_arcgis_layer(f"/hpms/HPMS_FULL_{DEMO_REGION.code}_{year}/FeatureServer/0", features,
                                    max_record_count=5, metadata={"geometryType": "esriGeometryPolyline",
                                                                  "fields": _HPMS_FIELDS})
        base = portal.url
        return Endpoints(crash_portal=base, overpass=f"{base}/api", meteostat=f"{base}/meteostat",
                         hpms=f"{base}/hpms")


def hpms_features(network: DemoNetwork, seed: int) -> dict[int, list[dict[str, Any]]]:
    """AADT sections along the demo's arterial ways, one ArcGIS feature list per year (volume grows ~2%/year)."""
    rng = np.random.default_rng(seed + 2)
    position = {node: i for i, node in enumerate(network.node_ids.tolist())}
    arterials = [(way, refs, tags) for way, refs, tags in network.ways if tags["highway"] in _ARTERIAL_AADT]
    base = {way: _ARTERIAL_AADT[tags["highway"]] * rng.uniform(0.7, 1.3) for way, _, tags in arterials}
    features: dict[int, list[dict[str, Any]]] = {}
    for step, year in enumerate(DEMO_REGION.years):
        layer = []
        for number, (way, refs, tags) in enumerate(arterials, start=1):
            path = [[round(float(network.lon[position[ref]]), 7), round(float(network.lat[position[ref]]), 7)]
                    for ref in refs]
            aadt = int(round(base[way] * 1.02 ** step * rng.uniform(0.95, 1.05)))
            layer.append({"attributes": {"OBJECTID": number, "route_id": f"DEMO-{way}", "begin_point": 0.0,
                                         "end_point": round(len(refs) * 0.1, 2), "f_system": _F_SYSTEM[tags["highway"]],
                                         "aadt": aadt},
                          "geometry": {"paths": [path]}})
        features[year] = layer
    return features
