"""Map matching: each crash to its nearest road segment within a distance, in metres, with a spatial index.

A two-way road is two directed edges with the same geometry; they form one *segment*, whose
canonical edge is the lower ``edge_id`` of the pair. Crashes are matched to segments (an
STRtree over the segments' lines in the state's UTM zone, queried for the nearest line within
``max_distance_m``; never a pairwise loop) and recorded on the canonical edge. Crashes farther
than ``max_distance_m`` from every road are returned as unmatched so the caller can count them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .geo import lines_from_wkb, project, project_geometries


def segment_ids(edges: pa.Table) -> np.ndarray:
    """For every edge, the canonical edge id of its segment (itself, or its reverse twin's lower id)."""
    import pandas as pd
    import shapely

    edge_id = edges["edge_id"].to_numpy()
    src = edges["src"].to_numpy()
    dst = edges["dst"].to_numpy()
    geometry = lines_from_wkb(edges["geometry"].to_pylist())
    if any(item is None for item in geometry):
        raise ValueError("edges without geometry cannot be map-matched")
    normalised = shapely.to_wkb(shapely.normalize(geometry))
    frame = pd.DataFrame({"edge_id": edge_id, "a": np.minimum(src, dst), "b": np.maximum(src, dst),
                          "shape": pd.util.hash_array(np.asarray(normalised, dtype=object))})
    return frame.groupby(["a", "b", "shape"], sort=False)["edge_id"].transform("min").to_numpy()


@dataclass
class SegmentIndex:
    """An STRtree over the distinct road segments of an edges table, in a projected CRS."""

    tree: object
    canonical: np.ndarray  # canonical edge id of each indexed line
    epsg: int

    @classmethod
    def build(cls, edges: pa.Table, epsg: int) -> SegmentIndex:
        """Index the segments (one line per two-way pair) of ``edges`` projected to ``epsg``."""
        import shapely

        canonical_of = segment_ids(edges)
        edge_id = edges["edge_id"].to_numpy()
        unique = canonical_of == edge_id
        lines = lines_from_wkb([blob for blob, keep in zip(edges["geometry"].to_pylist(), unique) if keep])
        projected = project_geometries(lines, epsg)
        return cls(tree=shapely.STRtree(projected), canonical=edge_id[unique], epsg=epsg)

    def match(self, lon: np.ndarray, lat: np.ndarray, max_distance_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Canonical edge id (-1 when none within ``max_distance_m``) and distance in metres per point."""
        import shapely

        if max_distance_m <= 0:
            raise ValueError(f"max_distance_m must be positive, got {max_distance_m}")
        x, y = project(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64), self.epsg)
        points = shapely.points(x, y)
        (point_index, line_index), distance = self.tree.query_nearest(
            points, max_distance=max_distance_m, return_distance=True, all_matches=False)
        edge = np.full(len(points), -1, dtype=np.int64)
        far = np.full(len(points), np.nan)
        edge[point_index] = self.canonical[line_index]
        far[point_index] = distance
        return edge, far
