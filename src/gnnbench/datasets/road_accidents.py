"""PyTorch Geometric dataset of road-accident graphs (eight US states, or the synthetic demo region)."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data, Dataset

from ..arguments import check_choice
from ..io import file_lock
from ..io.cache import gnnbench_home
from ..road.manifest import read_manifest
from ..road.snapshots import STORE_FORMAT, SnapshotStore, write_snapshot_store

logger = logging.getLogger(__name__)

TASKS = ("accident_occurrence", "accident_count", "traffic_volume")
SOURCES = ("build", "ml4roadsafety")
#: ``snapshot(..., labels=...)``: gnnbench's per-segment labels, or ML4RoadSafety's per-directed-pair ones.
LABELS = ("segment", "ml4roadsafety")


class RoadAccidentDataset(Dataset):
    r"""A state's road network with monthly accident labels on every road segment.

    ``dataset[0]`` is the static graph: ``x`` (node features: degree, betweenness, lon, lat),
    ``edge_index`` (directed road segments; a two-way road is two edges), ``edge_attr``
    (length, oneway, lanes, maxspeed and their missing flags, bridge, tunnel, 15-way highway
    class one-hot; names in ``edge_feature_names``). :meth:`snapshot` gives one month: node
    features extended with that month's weather (tavg, tmin, tmax, prcp, wspd, pres), ``y`` for
    every edge (crash count; occurrence is ``count > 0``; for ``traffic_volume`` the AADT, NaN
    where unknown) and ``eval_mask``, which marks one edge per road segment (both directions
    of a two-way road share a label; evaluate each segment once, as the
    :class:`gnnbench.road.Evaluator` expects). :meth:`get_split` returns the months (or years,
    for traffic volume) of train/valid/test, ML4RoadSafety's year splits by default.

    ``root`` is the road data directory (default ``$GNNBENCH_HOME/road``). With ``source="build"``
    the tables come from ``gnnbench build road`` (``root/tables/STATE``); with
    ``source="ml4roadsafety"`` from ``gnnbench import ml4roadsafety``
    (``root/ml4roadsafety/tables/STATE``). The demo region (``state="DEMO"``) is generated and
    built offline on first use.

    .. list-table:: STATS (demo region, seed 0)
        :header-rows: 1

        * - #nodes
          - #edges
          - #months
          - #node features
          - #edge features
        * - 96
          - 325
          - 48
          - 4 (+6 weather)
          - 23
    """

    def __init__(self, root: str | Path | None = None, state: str = "DEMO", task: str = "accident_occurrence", *,
                 source: str = "build", transform: Callable | None = None, force_reload: bool = False) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
        self.state = str(state).upper()
        self.task = task
        self.source = source
        root = Path(root) if root is not None else gnnbench_home() / "road"
        if source == "ml4roadsafety":
            root = root / "ml4roadsafety"
        super().__init__(str(root), transform=transform, force_reload=force_reload)
        if self._stale():
            logger.warning("%s: the tables (or the array format) changed since the arrays were processed; "
                           "processing again", self.state)
            self.process()
        self.store = SnapshotStore(self.processed_dir)
        self._static = self._static_graph()

    # -- PyG dataset plumbing -----------------------------------------------------------------
    @property
    def raw_dir(self) -> str:
        return str(Path(self.root) / "tables" / self.state)

    @property
    def processed_dir(self) -> str:
        return str(Path(self.root) / "processed" / self.state)

    @property
    def raw_file_names(self) -> list[str]:
        return ["manifest.json", "nodes.parquet", "edges.parquet", "accidents.parquet", "node_weather.parquet",
                "edge_volume.parquet"]

    @property
    def processed_file_names(self) -> list[str]:
        return ["meta.json"]

    def download(self) -> None:
        from ..road.pipeline import build_demo

        if self.source == "ml4roadsafety":
            raise FileNotFoundError(f"no imported ML4RoadSafety tables for {self.state} under {self.raw_dir}; run "
                                    f"`gnnbench import ml4roadsafety --state {self.state}`")
        if self.state != "DEMO":
            raise FileNotFoundError(
                f"no road tables for {self.state} under {self.raw_dir}. Build them with `gnnbench download road "
                f"--state {self.state} && gnnbench build road --state {self.state}`, or import the published "
                f"release with `gnnbench import ml4roadsafety --state {self.state}`.")
        build_demo(home=Path(self.root))

    def process(self) -> None:
        with file_lock(self.processed_dir):  # two processes never write the same arrays
            staging = Path(self.processed_dir + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            write_snapshot_store(self.raw_dir, staging)
            shutil.rmtree(self.processed_dir, ignore_errors=True)
            staging.rename(self.processed_dir)

    def _stale(self) -> bool:
        meta = json.loads((Path(self.processed_dir) / "meta.json").read_text())
        return meta.get("format") != STORE_FORMAT or read_manifest(self.raw_dir)["tables"] != meta.get("tables")

    def len(self) -> int:
        return 1

    def get(self, idx: int) -> Data:
        if idx != 0:
            raise IndexError(f"{type(self).__name__} holds one static graph (index 0); use snapshot() for months")
        return self._static

    # -- the benchmark API --------------------------------------------------------------------
    @property
    def months(self) -> list[tuple[int, int]]:
        """Every (year, month) with labels, in order."""
        return [(int(y), int(m)) for y, m in np.asarray(self.store.months)]

    @property
    def edge_feature_names(self) -> list[str]:
        return list(self.store.meta["edge_features"])

    @property
    def node_feature_names(self) -> list[str]:
        return list(self.store.meta["node_features"]) + list(self.store.meta["weather_features"])

    def get_split(self) -> dict[str, list]:
        """``{"train", "valid", "test"}`` -> months ``(year, month)``, or years for ``traffic_volume``."""
        splits = self.store.meta.get("splits")
        if not splits:
            years = sorted({year for year, _ in self.months})
            raise ValueError(f"{self.state}: the build records no year splits (years {years})")
        order = [name for name in ("train", "valid", "test") if name in splits]
        if self.task == "traffic_volume":
            return {name: list(splits[name]) for name in order}
        available = set(self.months)
        return {name: [(year, month) for year in splits[name] for month in range(1, 13) if (year, month) in available]
                for name in order}

    def snapshot(self, year: int, month: int | None = None, *, labels: str = "segment") -> Data:
        """One month's graph: node features with that month's weather, a label for every road edge.

        For ``traffic_volume`` pass only the year: node weather is that year's mean and ``y`` the AADT.
        ``labels="ml4roadsafety"`` (imported releases only) gives ML4RoadSafety's labels instead: each directed
        edge its own crash count (or its own AADT), and ``eval_mask`` the edges ML4RoadSafety scores, for
        ``Evaluator(task, protocol="ml4roadsafety")``.
        """
        store = self.store
        check_choice("labels", labels, LABELS)
        if self.task != "traffic_volume" and month is None:
            raise ValueError(f"task {self.task} needs a month: snapshot(year, month)")
        if labels == "ml4roadsafety":
            y, label_mask = self._ml4roadsafety_labels(year, month)
        elif self.task == "traffic_volume":
            y = torch.from_numpy(np.array(store.volume_of(year), dtype=np.float32))
            label_mask = torch.isfinite(y) & torch.from_numpy(store.eval_mask)
        else:
            counts = torch.from_numpy(store.counts(year, month))
            y = (counts > 0).to(torch.float32) if self.task == "accident_occurrence" else counts
            label_mask = torch.from_numpy(store.eval_mask)
        weather = store.weather_of(year, month)
        x = torch.cat([self._static.x, torch.from_numpy(np.array(weather, dtype=np.float32))], dim=1)
        data = Data(x=x, edge_index=self._static.edge_index, edge_attr=self._static.edge_attr, y=y,
                    eval_mask=label_mask, year=int(year), month=int(month or 0))
        return data if self.transform is None else self.transform(data)

    def _ml4roadsafety_labels(self, year: int, month: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, eval_mask) as ML4RoadSafety labels and scores an imported release (see Evaluator's protocol)."""
        from ..road.ml4roadsafety_protocol import scored_negatives

        store = self.store
        if store.meta.get("kind") != "ml4roadsafety-import":
            raise ValueError(f"labels='ml4roadsafety' needs an imported ML4RoadSafety release "
                             f"(source='ml4roadsafety'); {self.state} was built ({store.meta.get('kind')})")
        if self.task == "traffic_volume":
            y = torch.from_numpy(store.directed_volume_of(year).astype(np.float32))
            return y, torch.isfinite(y)
        counts = store.directed_counts(year, month)
        positive = counts > 0
        scored = positive | scored_negatives(np.asarray(store.edge_index), positive)
        y = torch.from_numpy(positive.astype(np.float32) if self.task == "accident_occurrence" else counts)
        return y, torch.from_numpy(scored)

    def training_edges(self, year: int, month: int, *, negative_ratio: float = 1.0,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Optional negative sampling for training: ``(edge ids, labels)`` with every positive segment of the
        month and ``negative_ratio`` times as many negatives drawn uniformly from the other segments.

        Evaluation never samples: it scores every segment (``eval_mask``).
        """
        counts = torch.from_numpy(self.store.counts(year, month))
        segments = torch.from_numpy(np.flatnonzero(self.store.eval_mask))
        positive = segments[counts[segments] > 0]
        negative_pool = segments[counts[segments] == 0]
        wanted = min(len(negative_pool), int(round(negative_ratio * len(positive))))
        chosen = negative_pool[torch.randperm(len(negative_pool), generator=generator)[:wanted]]
        edges = torch.cat([positive, chosen])
        labels = torch.cat([torch.ones(len(positive)), torch.zeros(len(chosen))])
        return edges, labels

    @property
    def quality_report(self) -> dict[str, Any]:
        """The build's data-quality report (crash accounting, matching, weather and volume reports)."""
        return read_manifest(self.raw_dir)["quality"]

    def _static_graph(self) -> Data:
        store = self.store
        return Data(x=torch.from_numpy(np.array(store.node_features)),
                    edge_index=torch.from_numpy(np.array(store.edge_index)),
                    edge_attr=torch.from_numpy(np.array(store.edge_features)),
                    eval_mask=torch.from_numpy(store.eval_mask.copy()), num_nodes=int(store.node_features.shape[0]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(state={self.state}, task={self.task}, months={len(self.months)})"

