"""Synthetic ML4RoadSafety releases in the exact published layout (test tree only: tests and benchmarks).

The files mirror what ``datasets/7_dataset_creation.py`` of VirtuosoResearch/ML4RoadSafety writes:

* The OSM edge list (OSMnx): one row ``(u, v)`` per direction of travel, so a two-way street appears as
  ``(u, v)`` and ``(v, u)`` (both ``oneway`` 0), except where one direction was clipped away.
* ``adj_matrix.pt``: an uncoalesced sparse COO float tensor ``[N, N]`` whose values are lengths, with one
  entry ``(u, v)`` per OSM edge followed by ``(v, u)`` when it is two-way; two-way streets thus give
  duplicate entries (which ``coalesce()`` sums).
* ``Edges/edge_features.pt``: a dict of sparse ``[N, N]`` float tensors with one entry ``(u, v)`` per OSM
  edge, keyed ``oneway``, ``length`` and then the highway classes present, which are ``numpy.str_`` (from
  ``np.unique``) and one-hot encoded by *substring* match, so a ``primary_link`` edge also has ``primary`` set.
* ``Edges/edge_features_traffic_{year}.pt``: the same dict plus ``AADT`` (NaN where no count).
* ``Nodes/node_features_{year}_{month}.csv``: ``node_id,lat,lon,tavg,tmin,tmax,prcp,wspd,pres`` in node
  order, where (as in the release) the column named ``lat`` holds the longitude and ``lon`` the latitude.
* ``accidents_monthly.csv``: ``year,month,node_1,node_2,acc_count,node_1_idx,node_2_idx`` sorted by
  year, month, node_1, node_2 (OSM ids in ``node_1``/``node_2``, node indices in ``*_idx``).

Everything is drawn from one seeded generator with vectorised numpy, so the same arguments give the same
files and a release with 300k nodes and 700k edges takes seconds.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

WEATHER_COLUMNS = ("tavg", "tmin", "tmax", "prcp", "wspd", "pres")

#: Highway classes seen in the published ``edge_features.pt`` files.
HIGHWAY_CLASSES = (
    "access_ramp", "bus_stop", "crossing", "disused", "elevator", "escape", "living_street", "motorway",
    "motorway_link", "primary", "primary_link", "residential", "rest_area", "road", "secondary",
    "secondary_link", "stairs", "tertiary", "tertiary_link", "trunk", "trunk_link", "unclassified", "unsurfaced",
)

# OSM ``highway`` strings the generator draws from (lists as OSMnx writes merged ways), with their weights.
_HIGHWAY_STRINGS = (
    *HIGHWAY_CLASSES,
    "['residential', 'unclassified']",
    "['secondary', 'tertiary']",
    "['primary', 'trunk_link']",
)
_COMMON = {"residential": 40.0, "unclassified": 8.0, "tertiary": 8.0, "secondary": 6.0, "primary": 5.0,
           "motorway": 2.0, "trunk": 2.0, "motorway_link": 1.5, "primary_link": 1.0, "tertiary_link": 1.0}
_HIGHWAY_WEIGHTS = np.array([_COMMON.get(name, 0.3) for name in _HIGHWAY_STRINGS])
_HIGHWAY_WEIGHTS /= _HIGHWAY_WEIGHTS.sum()

_CENTRES = {"DE": (-75.5, 39.0), "IA": (-93.5, 42.0), "IL": (-89.2, 40.0), "MA": (-71.8, 42.3),
            "MD": (-76.8, 39.0), "MN": (-94.3, 46.3), "MT": (-109.6, 47.0), "NV": (-116.6, 39.3)}

ADJACENCY_FILE = "adj_matrix.pt"
ACCIDENTS_FILE = "accidents_monthly.csv"


def expected_highway(highway: str) -> str:
    """The class an importer should report for an OSM ``highway`` string of this generator.

    A single class is itself; a list such as ``"['secondary', 'tertiary']"`` gives its alphabetically
    first item (no list here holds a class that is a substring of another one in the same list).
    """
    if highway.startswith("["):
        items = [item.strip(" '") for item in highway.strip("[]").split(",")]
        return sorted(items)[0]
    return highway


@dataclass
class ReleaseFixture:
    """Ground truth of a synthetic release: what :func:`write_release` encodes into the files."""

    state: str
    years: tuple[int, ...]
    months: tuple[int, ...]
    osm_ids: np.ndarray            # [N] int64, node order of the release
    lon: np.ndarray                # [N] float64
    lat: np.ndarray                # [N] float64
    seg_u: np.ndarray              # [M] int64 node index: the OSM edges (u, v) of the release's edge table
    seg_v: np.ndarray              # [M] int64
    seg_oneway: np.ndarray         # [M] bool
    seg_length: np.ndarray         # [M] float32, metres
    seg_highway: np.ndarray        # [M] object: the OSM highway string
    edge_src: np.ndarray           # [E] int64, release edge order (coalesced adj_matrix.pt)
    edge_dst: np.ndarray           # [E] int64
    edge_segment: np.ndarray       # [E] int64: the OSM edge of each release edge (its twin's when it has none)
    acc_year: np.ndarray           # [A] int64
    acc_month: np.ndarray          # [A] int64
    acc_segment: np.ndarray        # [A] int64
    acc_count: np.ndarray          # [A] int64
    weather: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (year, month) -> [N, 6] float64
    aadt: dict[int, np.ndarray] = field(default_factory=dict)                 # year -> [M] float32 (NaN: none)

    @property
    def num_nodes(self) -> int:
        return int(self.osm_ids.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_src.shape[0])

    def highway_classes(self) -> list[str]:
        """The highway keys the release holds: the classes present in the data, sorted."""
        names: set[str] = set()
        for value in np.unique(self.seg_highway):
            names.update(item.strip(" '") for item in str(value).strip("[]").split(","))
        return sorted(names)


def generate_release(state: str, *, num_nodes: int, num_edges: int, years: Iterable[int], seed: int,
                     months: Sequence[int] = tuple(range(1, 13)), accident_rate: float = 0.02,
                     aadt_coverage: float = 0.3, clipped_rate: float = 0.02) -> ReleaseFixture:
    """Draw a synthetic release with ``num_nodes`` nodes and exactly ``num_edges`` edges in ``adj_matrix.pt``.

    ``num_edges / 1.6`` streets are drawn, 60% of them two-way and listed in both directions (``clipped_rate``
    of those only in one, as at a clipped boundary). Each month about ``accident_rate`` of the OSM edges get crashes;
    ``aadt_coverage`` of them get a yearly AADT.
    """
    state = state.upper()
    years = tuple(int(year) for year in years)
    months = tuple(int(month) for month in months)
    if num_nodes < 2:
        raise ValueError(f"a release needs at least 2 nodes, got {num_nodes}")
    if num_edges < 1:
        raise ValueError(f"a release needs at least 1 edge, got {num_edges}")
    if not years or not months or any(not 1 <= month <= 12 for month in months):
        raise ValueError(f"need at least one year and months within 1..12, got years={years} months={months}")
    rng = np.random.default_rng(seed)
    num_streets = math.ceil(num_edges / 1.6)
    num_two_way = num_edges - num_streets
    if num_streets > num_nodes * (num_nodes - 1) // 2:
        raise ValueError(f"{num_edges} edges do not fit a simple road graph on {num_nodes} nodes")

    # Nodes: OSM ids in arbitrary (not sorted) order, coordinates around the state's centre.
    osm_ids = (10_000_000 + rng.integers(0, 1000) + np.cumsum(rng.integers(1, 1000, num_nodes))).astype(np.int64)
    osm_ids = osm_ids[rng.permutation(num_nodes)]
    centre_lon, centre_lat = _CENTRES.get(state, (-90.0, 40.0))
    lon = np.round(centre_lon + rng.uniform(-0.8, 0.8, num_nodes), 7)
    lat = np.round(centre_lat + rng.uniform(-0.5, 0.5, num_nodes), 7)

    # Streets: distinct unordered node pairs between nearby indices, randomly oriented; a two-way street
    # is listed in both directions (as OSMnx does), except a few "clipped" ones listed in one direction only.
    low, high = _distinct_pairs(rng, num_streets, num_nodes)
    flip = rng.random(num_streets) < 0.5
    street_u, street_v = np.where(flip, high, low), np.where(flip, low, high)
    two_way = np.zeros(num_streets, dtype=bool)
    two_way[rng.choice(num_streets, num_two_way, replace=False)] = True
    clipped = two_way & (rng.random(num_streets) < clipped_rate)
    street_length = np.round(rng.gamma(2.0, 150.0, num_streets) + 5.0, 3).astype(np.float32)
    highway_choice = rng.choice(len(_HIGHWAY_STRINGS), num_streets, p=_HIGHWAY_WEIGHTS)
    street_highway = np.asarray(_HIGHWAY_STRINGS, dtype=object)[highway_choice]

    # OSM edges (the rows of the release's edge table, one feature entry each), in shuffled order.
    backward = np.flatnonzero(two_way & ~clipped)
    street = np.concatenate([np.arange(num_streets), backward])
    seg_u = np.concatenate([street_u, street_v[backward]])
    seg_v = np.concatenate([street_v, street_u[backward]])
    shuffle = rng.permutation(street.shape[0])
    street, seg_u, seg_v = street[shuffle], seg_u[shuffle], seg_v[shuffle]
    seg_oneway = ~two_way[street]
    num_segments = street.shape[0]

    # Release edges: distinct directed pairs in coalesced (row-major) order; the (v, u) of a clipped street
    # has no OSM edge of its own and belongs to its twin (u, v).
    src = np.concatenate([seg_u, street_v[clipped]])
    dst = np.concatenate([seg_v, street_u[clipped]])
    osm_edge_of_street = np.full(num_streets, -1, dtype=np.int64)
    osm_edge_of_street[street] = np.arange(num_segments)  # exact for clipped streets: they have one OSM edge
    segment = np.concatenate([np.arange(num_segments), osm_edge_of_street[clipped]])
    order = np.argsort(src * num_nodes + dst, kind="stable")
    edge_src, edge_dst, edge_segment = src[order], dst[order], segment[order]
    seg_length, seg_highway = street_length[street], street_highway[street]

    # Accidents: per month a random set of segments with 1 + Poisson(0.5) crashes.
    periods = [(year, month) for year in years for month in months]
    per_period = rng.binomial(num_segments, min(1.0, accident_rate), len(periods))
    period_index = np.repeat(np.arange(len(periods)), per_period)
    chosen = rng.integers(0, num_segments, period_index.shape[0])
    combined = np.unique(period_index.astype(np.int64) * num_segments + chosen)
    period_index, acc_segment = combined // num_segments, combined % num_segments
    period_array = np.asarray(periods, dtype=np.int64).reshape(-1, 2)
    acc_year, acc_month = period_array[period_index, 0], period_array[period_index, 1]
    acc_count = 1 + rng.poisson(0.5, acc_segment.shape[0]).astype(np.int64)

    weather = {period: _draw_weather(rng, num_nodes, period[1]) for period in periods}
    aadt = {}
    for year in years:
        values = np.full(num_segments, np.nan, dtype=np.float32)
        counted = rng.random(num_segments) < aadt_coverage
        values[counted] = np.round(rng.lognormal(8.0, 1.0, int(counted.sum())))
        aadt[year] = values

    return ReleaseFixture(
        state=state, years=years, months=months, osm_ids=osm_ids, lon=lon, lat=lat,
        seg_u=seg_u.astype(np.int64), seg_v=seg_v.astype(np.int64), seg_oneway=seg_oneway,
        seg_length=seg_length, seg_highway=seg_highway,
        edge_src=edge_src.astype(np.int64), edge_dst=edge_dst.astype(np.int64),
        edge_segment=edge_segment.astype(np.int64),
        acc_year=acc_year, acc_month=acc_month, acc_segment=acc_segment.astype(np.int64), acc_count=acc_count,
        weather=weather, aadt=aadt,
    )


def write_release(directory: str | os.PathLike, fixture: ReleaseFixture, *, nested: bool = False) -> Path:
    """Write ``fixture`` as ``directory/{STATE}/`` (or ``directory/ML4RoadSafety_graphs_{STATE}/{STATE}/``)."""
    import torch

    root = Path(directory)
    if nested:
        root = root / f"ML4RoadSafety_graphs_{fixture.state}"
    state_dir = root / fixture.state
    (state_dir / "Nodes").mkdir(parents=True, exist_ok=True)
    (state_dir / "Edges").mkdir(parents=True, exist_ok=True)
    n = fixture.num_nodes
    size = (n, n)

    # adj_matrix.pt: per segment (u, v), then (v, u) right after it when two-way (the script's loop order).
    num_segments = fixture.seg_u.shape[0]
    rows = np.stack([fixture.seg_u, fixture.seg_v], axis=1)
    reverse = np.stack([fixture.seg_v, fixture.seg_u], axis=1)
    both = np.stack([rows, reverse], axis=1).reshape(-1, 2)             # u,v, v,u, u,v, v,u, ...
    keep = np.stack([np.ones(num_segments, dtype=bool), ~fixture.seg_oneway], axis=1).reshape(-1)
    lengths = np.repeat(fixture.seg_length, 2)[keep]
    adjacency = torch.sparse_coo_tensor(torch.from_numpy(np.ascontiguousarray(both[keep].T)),
                                        torch.from_numpy(lengths), size, check_invariants=False)
    torch.save(adjacency, state_dir / ADJACENCY_FILE)

    # Edges/edge_features.pt and the yearly traffic files.
    indices = torch.from_numpy(np.ascontiguousarray(np.stack([fixture.seg_u, fixture.seg_v])))
    features = _edge_feature_dict(fixture, indices, size)
    torch.save(features, state_dir / "Edges" / "edge_features.pt")
    for year, values in fixture.aadt.items():
        traffic = dict(features)
        traffic["AADT"] = torch.sparse_coo_tensor(indices, torch.from_numpy(values.astype(np.float32)), size,
                                                 check_invariants=False)
        torch.save(traffic, state_dir / "Edges" / f"edge_features_traffic_{year}.pt")

    # Nodes/node_features_{year}_{month}.csv (the column named "lat" holds x, i.e. the longitude).
    for (year, month), values in fixture.weather.items():
        columns = {"node_id": pa.array(fixture.osm_ids), "lat": pa.array(fixture.lon), "lon": pa.array(fixture.lat)}
        for index, name in enumerate(WEATHER_COLUMNS):
            column = values[:, index]
            columns[name] = pa.array(column, mask=np.isnan(column))
        _write_csv(state_dir / "Nodes" / f"node_features_{year}_{month}.csv", pa.table(columns))

    # accidents_monthly.csv, sorted like the script's groupby.
    node_1 = fixture.osm_ids[fixture.seg_u[fixture.acc_segment]]
    node_2 = fixture.osm_ids[fixture.seg_v[fixture.acc_segment]]
    order = np.lexsort((node_2, node_1, fixture.acc_month, fixture.acc_year))
    accidents = pa.table({
        "year": fixture.acc_year[order], "month": fixture.acc_month[order],
        "node_1": node_1[order], "node_2": node_2[order], "acc_count": fixture.acc_count[order],
        "node_1_idx": fixture.seg_u[fixture.acc_segment][order],
        "node_2_idx": fixture.seg_v[fixture.acc_segment][order],
    })
    _write_csv(state_dir / ACCIDENTS_FILE, accidents)
    return state_dir


def write_release_fixture(directory: str | os.PathLike, state: str, *, num_nodes: int, num_edges: int,
                          years: Iterable[int], seed: int, months: Sequence[int] = tuple(range(1, 13)),
                          nested: bool = False) -> Path:
    """Generate a synthetic release (see :func:`generate_release`) and write it; return the state directory."""
    fixture = generate_release(state, num_nodes=num_nodes, num_edges=num_edges, years=years, seed=seed,
                               months=months)
    return write_release(directory, fixture, nested=nested)


def zip_release(state_dir: str | os.PathLike, zip_path: str | os.PathLike, *, nested: bool = False) -> Path:
    """Zip a state directory as ``{STATE}/...`` (``ML4RoadSafety_graphs_{STATE}/{STATE}/...`` when ``nested``)."""
    state_dir = Path(state_dir)
    state = state_dir.name
    prefix = f"ML4RoadSafety_graphs_{state}/{state}" if nested else state
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in sorted(state_dir.rglob("*")):
            if path.is_file():
                archive.write(path, f"{prefix}/{path.relative_to(state_dir).as_posix()}")
    return zip_path


# --------------------------------------------------------------------------- helpers


def _distinct_pairs(rng: np.random.Generator, count: int, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct unordered pairs (low < high) of nearby node indices, in draw order."""
    window = min(num_nodes - 1, 64)
    keys = np.empty(0, dtype=np.int64)
    while keys.shape[0] < count:
        batch = max(2 * (count - keys.shape[0]), 16)
        first = rng.integers(0, num_nodes, batch)
        second = (first + rng.integers(1, window + 1, batch)) % num_nodes
        low, high = np.minimum(first, second), np.maximum(first, second)
        keys = np.concatenate([keys, low.astype(np.int64) * num_nodes + high])
        _, first_seen = np.unique(keys, return_index=True)
        keys = keys[np.sort(first_seen)]
        if window < num_nodes - 1:
            window = min(num_nodes - 1, window * 2)  # widen when nearby pairs run out
    keys = keys[:count]
    return keys // num_nodes, keys % num_nodes


def _draw_weather(rng: np.random.Generator, num_nodes: int, month: int) -> np.ndarray:
    """Monthly Meteostat-like values per node (1 decimal), with some missing."""
    season = 10.0 - 12.0 * math.cos(2.0 * math.pi * (month - 1) / 12.0)
    tavg = season + rng.normal(0.0, 2.0, num_nodes)
    values = np.stack([
        tavg,
        tavg - rng.uniform(2.0, 8.0, num_nodes),
        tavg + rng.uniform(2.0, 8.0, num_nodes),
        rng.gamma(1.5, 40.0, num_nodes),
        rng.uniform(0.0, 30.0, num_nodes),
        1013.0 + rng.normal(0.0, 8.0, num_nodes),
    ], axis=1)
    values = np.round(values, 1)
    missing = rng.random(values.shape) < np.array([0.03, 0.03, 0.03, 0.05, 0.1, 0.2])
    values[missing] = np.nan
    return values


def _edge_feature_dict(fixture: ReleaseFixture, indices, size) -> dict:
    """The ``edge_features.pt`` dict: oneway, length, then one-hot highway classes by substring match."""
    import torch

    features = {
        "oneway": torch.sparse_coo_tensor(indices, torch.from_numpy(fixture.seg_oneway.astype(np.float32)), size,
                                          check_invariants=False),
        "length": torch.sparse_coo_tensor(indices, torch.from_numpy(fixture.seg_length), size, check_invariants=False),
    }
    strings, inverse = np.unique(fixture.seg_highway.astype(str), return_inverse=True)
    for name in fixture.highway_classes():
        per_string = np.array([1.0 if name in text else 0.0 for text in strings], dtype=np.float32)
        values = torch.from_numpy(per_string[inverse.reshape(-1)])
        # numpy.str_ keys, as published
        features[np.str_(name)] = torch.sparse_coo_tensor(indices, values, size, check_invariants=False)
    return features


def _write_csv(path: Path, table: pa.Table) -> None:
    """CSV as pandas writes it: an unquoted header, empty cells for missing values."""
    with open(path, "wb") as handle:
        handle.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, handle, write_options=pacsv.WriteOptions(include_header=False))
