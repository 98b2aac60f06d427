"""Map matching: each crash to its nearest road segment within a distance, in metres, with a spatial index.

A two-way road is two directed edges with the same geometry; they form one *segment*, whose
canonical edge is the lower ``edge_id`` of the pair. Crashes are matched to segments (an
STRtree over the segments' lines in the state's UTM zone, queried for the lines near each crash,
the nearest within ``max_distance_m`` kept, ties to the lowest edge id; never a pairwise loop) and
recorded on the canonical edge. Crashes farther than ``max_distance_m`` from every road are
returned as unmatched so the caller can count them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..arguments import check_float, check_int
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

    def match(self, lon: np.ndarray, lat: np.ndarray, max_distance_m: float, *,
              chunk_size: int = 262_144) -> tuple[np.ndarray, np.ndarray]:
        """Canonical edge id (-1 when none within ``max_distance_m``) and distance in metres per point.

        The nearest segment wins; among segments at exactly the same distance, the lowest canonical edge
        id. Points are handled ``chunk_size`` at a time: the tree yields every segment whose bounding
        box meets the square of half-side ``max_distance_m`` around a point, whose exact distances are
        then compared.
        """
        import shapely

        max_distance_m = check_float("max_distance_m", max_distance_m, minimum=0.0, open_min=True)
        chunk_size = check_int("chunk_size", chunk_size, minimum=1)
        x, y = project(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64), self.epsg)
        lines = self.tree.geometries
        edge = np.full(len(x), -1, dtype=np.int64)
        far = np.full(len(x), np.nan)
        for start in range(0, len(x), chunk_size):
            px, py = x[start:start + chunk_size], y[start:start + chunk_size]
            boxes = shapely.box(px - max_distance_m, py - max_distance_m, px + max_distance_m, py + max_distance_m)
            point_index, line_index = self.tree.query(boxes)
            distance = shapely.distance(shapely.points(px[point_index], py[point_index]), lines[line_index])
            near = distance <= max_distance_m
            point_index, line_index, distance = point_index[near], line_index[near], distance[near]
            # Per point, the smallest distance, then the lowest line (lines are stored by canonical edge id).
            order = np.lexsort((line_index, distance, point_index))
            first = order[np.r_[True, point_index[order][1:] != point_index[order][:-1]]] if len(order) else order
            edge[start + point_index[first]] = self.canonical[line_index[first]]
            far[start + point_index[first]] = distance[first]
        return edge, far
