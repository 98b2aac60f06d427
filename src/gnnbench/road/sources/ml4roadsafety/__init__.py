"""Fetch the published ML4RoadSafety release (doi:10.7910/DVN/V71K5R) and import it as gnnbench road tables.

What the release holds, per state ``{STATE}/`` (from ``datasets/7_dataset_creation.py`` and
``ml_for_road_safety/data_loaders.py`` of https://github.com/VirtuosoResearch/ML4RoadSafety, read at commit
d8b3d96a8dc9f1323e9595addd705c3c2c96b42c):

* ``adj_matrix.pt``: sparse COO float ``[N, N]``, values = length, uncoalesced: one entry ``(u, v)`` per row
  of the OSMnx edge list plus ``(v, u)`` when that row is two-way. OSMnx already lists a two-way street in
  both directions, so most pairs appear twice (``coalesce()`` would sum their lengths). The loader's
  ``edge_index`` is ``adj.coalesce().indices()``, i.e. the distinct pairs in row-major order: that order
  is our ``edge_id``.
* ``Edges/edge_features.pt``: dict of sparse ``[N, N]`` tensors with one entry per OSMnx edge-list row:
  ``oneway``, ``length`` (OSMnx, metres) and one-hot highway classes. Class keys are ``numpy.str_``, which
  ``torch.load(weights_only=True)`` refuses unless numpy's scalar/dtype reconstructors are allow-listed
  (done here, nothing else is). The one-hot encoding used substring matching, so a ``primary_link`` edge
  also has ``primary`` set; we report the most specific class, and count (with a warning) the edges whose
  class is outside gnnbench's highway vocabulary (encoded as ``other`` in the snapshot features).
* ``Edges/edge_features_traffic_{year}.pt``: the same dict plus ``AADT`` (NaN where no count).
* ``Nodes/node_features_{year}_{month}.csv``: ``node_id`` (OSM id), ``lat``, ``lon``, ``tavg, tmin, tmax,
  prcp, wspd, pres`` in node order. The creation script renamed OSMnx's ``x, y`` to ``lat, lon``, so the
  columns are swapped; we detect that from the values and record it. Missing weather cells are filled as
  the loader fills them, flagged in ``node_weather.filled`` and counted (:mod:`.nodes`).
* ``accidents_monthly.csv``: ``year, month, node_1, node_2`` (OSM ids), ``acc_count``, ``node_1_idx``,
  ``node_2_idx``; imported per directed edge (:mod:`.accidents`).

An edge ``(v, u)`` added only by the two-way reversal (its street was listed in one direction, e.g. clipped
at a boundary; probably why the loader pads NV's features with two zero rows) has no feature entry of its
own and takes the attributes (and AADT, marked ``ml4roadsafety:reverse``) of its twin ``(u, v)``; the
manifest counts these edges. Anything dropped is counted with its reason, never silently lost.

Modules: :mod:`.release_files` (layout, file readers, the graph), :mod:`.nodes`, :mod:`.edges`,
:mod:`.accidents` (one table each), :mod:`.convert` (:func:`read_release`), :mod:`.fetch` (Dataverse download),
:mod:`.importer` (:func:`import_release`, the duplicate-file check).
"""

from ..dataverse import ML4ROADSAFETY_DOI
from .accidents import DROP_REASONS
from .convert import ReleaseTables, read_release
from .edges import VOLUME_SOURCE, VOLUME_SOURCE_REVERSE
from .fetch import fetch_release
from .importer import (
    IMPORT_KIND,
    KNOWN_IDENTICAL_ACCIDENT_FILES,
    check_imported_duplicates,
    identical_accident_files,
    import_release,
)
from .release_files import ACCIDENTS_FILE, ADJACENCY_FILE, RELEASE_STATES, ReleaseFormatError

__all__ = [
    "ACCIDENTS_FILE", "ADJACENCY_FILE", "DROP_REASONS", "IMPORT_KIND", "KNOWN_IDENTICAL_ACCIDENT_FILES",
    "ML4ROADSAFETY_DOI", "RELEASE_STATES", "VOLUME_SOURCE", "VOLUME_SOURCE_REVERSE", "ReleaseFormatError",
    "ReleaseTables", "check_imported_duplicates", "fetch_release", "identical_accident_files", "import_release",
    "read_release",
]
