"""PyTorch Geometric dataset of road-accident graphs (eight US states, or the synthetic demo region)."""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data, Dataset
from torch_geometric.data.dataset import files_exist
from torch_geometric.io import fs

from ..arguments import check_choice, check_float, check_int
from ..io import file_lock
from ..io.cache import gnnbench_home, require_writable, warn_rebuilt
from ..io.files import atomic_path
from ..road.manifest import read_manifest
from ..road.states import region_code
from ..road.tiles.embed.models import registered_models
from ..road.tiles.layout import IMAGE_MODELS
from ..io.manifest import ManifestError
from ..road.snapshots import STORE_MANIFEST, SnapshotStore, read_store_meta, write_snapshot_store
from . import preprocessing
from .mapped import map_private

logger = logging.getLogger(__name__)

TASKS = ("accident_occurrence", "accident_count", "traffic_volume")
SOURCES = ("build", "ml4roadsafety")
#: ``snapshot(..., labels=...)``: gnnbench's per-segment labels, or ML4RoadSafety's per-directed-pair ones.
LABELS = ("segment", "ml4roadsafety")
SPLITS = ("train", "valid", "test")
_KEPT_BY_SNAPSHOT = ("x", "y", "eval_mask", "year", "month")  # set per month; a pre_transform cannot override them

Period = tuple  # (year, month) for the accident tasks; (year,) for traffic volume


class RoadAccidentDataset(Dataset):
    r"""A state's road network with monthly accident labels on every road segment; one item per month.

    ``dataset[i]`` is month ``i`` of :attr:`months` (``len(dataset)`` months; for ``traffic_volume``,
    year ``i`` of :attr:`years`), the same graph as ``dataset.snapshot(year, month)``: ``x`` (node
    features: degree, betweenness, lon, lat, then that month's weather tavg, tmin, tmax, prcp, wspd,
    pres), ``edge_index`` (directed road segments; a two-way road is two edges), ``edge_attr`` (length,
    oneway, lanes, maxspeed and their missing flags, bridge, tunnel, 15-way highway class one-hot;
    names in ``edge_feature_names``), ``y`` for every edge (crash count; occurrence is ``count > 0``;
    for ``traffic_volume`` the AADT, NaN where unknown), ``eval_mask``, which marks one edge per road
    segment (both directions of a two-way road share a label; evaluate each segment once, as
    :class:`gnnbench.road.Evaluator` expects), and ``year``/``month``. The static graph (no weather,
    no labels) is :attr:`static_graph`. Every graph is fresh: changing one in place never changes the
    dataset (``edge_index``/``edge_attr`` are private copy-on-write mappings of the processed arrays,
    so this costs no copy).

    Splits: :meth:`get_split` gives the months (years for ``traffic_volume``) of ``train``/``valid``/
    ``test``, ML4RoadSafety's year splits by default; :meth:`get_idx_split` gives the same as item
    indices (OGB style), so ``dataset[dataset.get_idx_split()["train"]]`` is the training months and
    the standard :class:`~torch_geometric.loader.DataLoader` batches months.

    ``root`` is the road data directory (default ``$GNNBENCH_HOME/road``). With ``source="build"`` the
    tables come from ``gnnbench build road`` (``root/tables/STATE``); with ``source="ml4roadsafety"``
    from ``gnnbench import ml4roadsafety`` (``root/ml4roadsafety/tables/STATE``). ``state`` is required
    (``RoadAccidentDataset(root, "MA")``, or ``RoadAccidentDataset(state="MA")`` for the default root);
    ``"DEMO"`` is the synthetic demo region, generated and built offline on first use.

    ``pre_transform`` is applied once, when processing, to the static graph (before the monthly
    weather is appended to ``x``); it may change or add node and edge attributes but must keep
    ``edge_index`` and the number of nodes, since the labels are per edge. ``pre_filter`` is called
    on each month's graph when processing and keeps the months (years) it returns True for. Both are
    cached with their fingerprints; a different function processes again, with a warning.
    ``transform`` is applied to every graph on access (``dataset[i]`` and :meth:`snapshot`).
    ``num_node_features`` is 10, ``num_edge_features`` 23; ``num_classes`` is 2 for
    ``accident_occurrence`` and undefined (an ``AttributeError`` saying so) for the regression tasks.

    ``image_features="clip-vit-b32"`` (or ``"vit-b16"``, ``"resnet18"``, ``"resnet50"``) appends each node's
    image embedding (``D`` columns ``img_0`` .. ``img_{D-1}``, as ``gnnbench embed tiles`` stored them) and an
    ``image_available`` column (1, or 0 for a node without a usable image, whose embedding is zeros) to the
    static node features, before the weather: ``x`` is then degree, betweenness, lon, lat, the ``D + 1`` image
    columns, the weather. :attr:`image_feature_slice` gives their columns in ``x`` and
    :attr:`num_image_features` their number (``D + 1``). The embeddings live under
    ``root/imagery/STATE/SOURCE/embeddings/MODEL`` (see :mod:`gnnbench.road.tiles.layout`); ``image_source``
    picks the imagery source when several have embeddings. They must have been made from this build's node
    table (same node count, same ``nodes.parquet`` SHA-256), else the error names the command that remakes them.

    .. list-table:: STATS (demo region, seed 0)
        :header-rows: 1

        * - #nodes
          - #edges
          - #months (items)
          - #node features
          - #edge features
        * - 96
          - 325
          - 48
          - 4 (+6 weather)
          - 23
    """

    def __init__(self, root: str | Path | None = None, state: str | None = None,
                 task: str = "accident_occurrence", transform: Callable[[Data], Data] | None = None,
                 pre_transform: Callable[[Data], Data] | None = None,
                 pre_filter: Callable[[Data], bool] | None = None, force_reload: bool = False, *,
                 source: str = "build", image_features: str | None = None, image_source: str | None = None) -> None:
        self.state = _state_code(root, state)
        self.task = check_choice("task", task, TASKS)
        self.source = check_choice("source", source, SOURCES)
        if image_features is not None:
            check_choice("image_features", image_features, registered_models())
        if image_source is not None and (image_features is None or not isinstance(image_source, str)):
            raise ValueError(f"image_source={image_source!r} needs image_features= (one of "
                             f"{', '.join(map(repr, IMAGE_MODELS))}) and must be an imagery source name")
        self.image_features = image_features
        self.image_source = image_source  # then the imagery source the embeddings were found under
        root = Path(root) if root is not None else gnnbench_home() / "road"
        road_root = root  # the imagery of a state lives under the road root, whichever tables are used
        if source == "ml4roadsafety":
            root = root / "ml4roadsafety"
        region_code(self.state, tables=root / "tables")  # a registry state, DEMO or a built region: else the list
        # log=False: PyG would print "Processing..."/"Done!"; gnnbench logs. pre_transform and pre_filter are
        # applied by gnnbench (below), which processes again when they change instead of only warning.
        super().__init__(str(root), transform=transform, log=False, force_reload=force_reload)
        self.pre_transform, self.pre_filter = pre_transform, pre_filter
        stale = self._stale()
        if stale:
            warn_rebuilt(f"{self.state}: {stale}; processing the tables again", stacklevel=3)
            self.process()
        self.store = SnapshotStore(self.processed_dir)
        static = np.array(self.store.node_features, dtype=np.float32)
        self._image_manifest: dict[str, Any] | None = None
        if image_features is not None:
            columns, self.image_source, self._image_manifest = _image_columns(
                road_root, self.state, image_features, image_source, self.raw_dir, num_nodes=static.shape[0])
            static = np.concatenate([static, columns], axis=1)
        self._static_x = torch.from_numpy(static)
        self._overrides: dict[str, Any] = {}  # static attributes a pre_transform changed or added
        self._removed: list[str] = []  # ... and removed
        self._periods: list[Period] = self._store_periods()
        if pre_transform is not None or pre_filter is not None:
            self._preprocess(force_reload)
        self._position = {period: i for i, period in enumerate(self._periods)}

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
        return [STORE_MANIFEST]

    def _download(self) -> None:
        if not files_exist(self.raw_paths):  # PyG's own creates raw_dir first, even for tables it cannot make
            self.download()

    def _process(self) -> None:
        processed = Path(self.processed_dir)
        if not self.force_reload and not (processed / STORE_MANIFEST).exists() and any(processed.glob("*.npy")):
            warn_rebuilt(f"{processed / STORE_MANIFEST}: missing; processing the tables again", stacklevel=5)
        if self.force_reload or not files_exist(self.processed_paths):
            require_writable(processed.parent)
        preprocessing.check_pyg_records(processed, data_exists=files_exist(self.processed_paths),
                                        force_reload=self.force_reload)
        super()._process()

    def download(self) -> None:
        from ..road.manifest import MANIFEST_NAME
        from ..road.tables import verify_tables

        tables = Path(self.raw_dir)
        if (tables / MANIFEST_NAME).exists() or any(tables.glob("*.parquet")):
            verify_tables(tables)  # a build with a file missing: name it and the command that rebuilds it
        from ..road.pipeline import build_demo

        if self.source == "ml4roadsafety":
            raise FileNotFoundError(f"no imported ML4RoadSafety tables for {self.state} under {self.raw_dir}; run "
                                    f"`gnnbench import ml4roadsafety --state {self.state}`")
        if self.state != "DEMO":
            raise FileNotFoundError(
                f"no road tables for {self.state} under {self.raw_dir}. Build them with `gnnbench download road "
                f"--state {self.state} && gnnbench build road --state {self.state}`, or import the published "
                f"release with `gnnbench import ml4roadsafety --state {self.state}`.")
        logger.info("building the synthetic demo region under %s", self.root)
        require_writable(self.root)
        build_demo(home=Path(self.root))

    def process(self) -> None:
        logger.info("%s: processing the road tables in %s into arrays", self.state, self.raw_dir)
        require_writable(Path(self.processed_dir).parent)
        with file_lock(self.processed_dir):  # two processes never write the same arrays
            staging = Path(self.processed_dir + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            write_snapshot_store(self.raw_dir, staging)
            preprocessing.write_pyg_records(staging)  # what PyG writes after processing (process() replaces all)
            shutil.rmtree(self.processed_dir, ignore_errors=True)
            staging.rename(self.processed_dir)

    def _stale(self) -> str | None:
        """Why the processed arrays cannot be used (None: they can)."""
        try:
            meta = read_store_meta(self.processed_dir)
        except ManifestError as error:
            return f"the processed arrays are unusable ({error})"
        if read_manifest(self.raw_dir)["files"] != meta["parameters"]["tables"]:
            return f"{Path(self.processed_dir) / STORE_MANIFEST}: the tables changed since the arrays were processed"
        return None

    def len(self) -> int:
        return len(self._periods)

    def get(self, idx: int) -> Data:
        return self._snapshot(*self._periods[idx])

    @property
    def num_classes(self) -> int:
        """2 for ``accident_occurrence`` (does a segment have a crash); undefined for the regression tasks."""
        if self.task == "accident_occurrence":
            return 2
        label = "the monthly crash count" if self.task == "accident_count" else "the annual AADT (NaN: unknown)"
        raise AttributeError(f"num_classes is not defined for the {self.task} task, a regression on every edge "
                             f"(y is {label}); a model predicts one number per edge. Use task="
                             f"'accident_occurrence' for the binary task (num_classes = 2).")

    # -- the benchmark API --------------------------------------------------------------------
    @property
    def months(self) -> list[tuple[int, int]]:
        """Every (year, month) with labels, in order (the items, for the accident tasks)."""
        if self.task == "traffic_volume":
            return [(int(y), int(m)) for y, m in np.asarray(self.store.months)]
        return [period for period in self._periods]

    @property
    def years(self) -> list[int]:
        """The years of the items (``traffic_volume``) or of the months."""
        if self.task == "traffic_volume":
            return [year for (year,) in self._periods]
        return sorted({year for year, _ in self._periods})

    @property
    def edge_feature_names(self) -> list[str]:
        return list(self.store.meta["edge_features"])

    @property
    def node_feature_names(self) -> list[str]:
        images = self.num_image_features
        names = [f"img_{i}" for i in range(images - 1)] + ["image_available"] if images else []
        return list(self.store.meta["node_features"]) + names + list(self.store.meta["weather_features"])

    @property
    def num_image_features(self) -> int:
        """Columns of ``x`` that ``image_features`` added: ``D`` embedding columns and ``image_available`` (0
        without images)."""
        return 0 if self._image_manifest is None else int(self._static_x.shape[1]) - len(
            self.store.meta["node_features"])

    @property
    def image_feature_slice(self) -> slice | None:
        """The columns of ``x`` holding the image features, ``image_available`` last (None without images):
        ``x[:, dataset.image_feature_slice]``. It holds while a ``pre_transform`` keeps ``x``'s columns."""
        if self._image_manifest is None:
            return None
        start = len(self.store.meta["node_features"])
        return slice(start, start + self.num_image_features)

    @property
    def image_manifest(self) -> dict[str, Any] | None:
        """The manifest of the embeddings in use (model, weights, nodes, files; None without images)."""
        return copy.deepcopy(self._image_manifest)

    @property
    def static_graph(self) -> Data:
        """The road network without weather or labels: ``x`` (4 node features, plus the image columns with
        ``image_features``), ``edge_index``, ``edge_attr``, ``eval_mask`` (after the ``pre_transform``, if any).
        A fresh graph on every access."""
        data = Data(x=self._static_x.clone(), edge_index=self._mapped("edge_index"),
                    edge_attr=self._mapped("edge_features"), eval_mask=self._eval_mask(),
                    num_nodes=int(self._static_x.shape[0]))
        return self._with_overrides(data, keep=("eval_mask",))

    def get_split(self) -> dict[str, list]:
        """``{"train", "valid", "test"}`` -> months ``(year, month)``, or years for ``traffic_volume``."""
        splits = self.store.meta.get("splits")
        if not splits:
            raise ValueError(f"{self.state}: the build records no year splits (years {self.years})")
        order = [name for name in SPLITS if name in splits]
        if self.task == "traffic_volume":
            return {name: [year for year in splits[name] if (year,) in self._position] for name in order}
        return {name: [(year, month) for year in splits[name] for month in range(1, 13)
                       if (year, month) in self._position] for name in order}

    def get_idx_split(self) -> dict[str, torch.Tensor]:
        """The splits as item indices of the whole dataset (OGB's ``get_idx_split``): ``dataset[idx["train"]]``."""
        out = {}
        for name, periods in self.get_split().items():
            keys = [(period,) if self.task == "traffic_volume" else period for period in periods]
            out[name] = torch.tensor([self._position[key] for key in keys], dtype=torch.long)
        return out

    def snapshot(self, year: int, month: int | None = None, *, labels: str = "segment") -> Data:
        """One month's graph (``transform`` applied): node features with that month's weather, a label for
        every road edge. For ``traffic_volume`` pass only the year: node weather is that year's mean and
        ``y`` the AADT.

        ``labels="ml4roadsafety"`` (imported releases only) gives ML4RoadSafety's labels instead: each directed
        edge its own crash count (or its own AADT), and ``eval_mask`` the edges ML4RoadSafety scores, for
        ``Evaluator(task, protocol="ml4roadsafety")``.
        """
        check_choice("labels", labels, LABELS)
        data = self._snapshot(*self._period(year, month), labels=labels)
        return data if self.transform is None else self.transform(data)

    def training_edges(self, year: int, month: int, *, negative_ratio: float = 1.0,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Optional negative sampling for training: ``(edge ids, labels)`` with every positive segment of the
        month and ``negative_ratio`` times as many negatives drawn uniformly from the other segments.

        Evaluation never samples: it scores every segment (``eval_mask``).
        """
        negative_ratio = check_float("negative_ratio", negative_ratio, minimum=0.0)
        year, month = check_int("year", year), check_int("month", month, minimum=1, maximum=12)
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

    # -- building graphs --------------------------------------------------------------------
    def _store_periods(self) -> list[Period]:
        months = [(int(y), int(m)) for y, m in np.asarray(self.store.months)]
        if self.task != "traffic_volume":
            return months
        with_weather = {year for year, _ in months}
        return [(int(year),) for year in np.asarray(self.store.volume_years) if int(year) in with_weather]

    def _period(self, year: Any, month: Any) -> Period:
        year = check_int("year", year)
        if self.task == "traffic_volume":
            if month is not None:
                raise ValueError(f"task traffic_volume has one graph per year: snapshot({year}), not a month")
            period: Period = (year,)
        else:
            if month is None:
                raise ValueError(f"task {self.task} needs a month: snapshot(year, month)")
            period = (year, check_int("month", month, minimum=1, maximum=12))
        if period not in self._position:
            if self.pre_filter is not None and period in self._store_periods():
                raise KeyError(f"{'-'.join(map(str, period))} was left out by the dataset's pre_filter")
            if self.task == "traffic_volume":
                raise KeyError(f"no traffic volume year {year} in this dataset (years: {self.years})")
            self.store.month_position(*period)  # raises the store's error naming the range
        return period

    def _snapshot(self, year: int, month: int | None = None, labels: str = "segment") -> Data:
        store = self.store
        if labels == "ml4roadsafety":
            y, label_mask = self._ml4roadsafety_labels(year, month)
            weather = store.weather_of(year, month)
        elif self.task == "traffic_volume":
            y = torch.from_numpy(np.array(store.volume_of(year), dtype=np.float32))
            weather = store.weather_of(year)
            label_mask = torch.isfinite(y) & torch.from_numpy(store.eval_mask)
        else:
            counts = torch.from_numpy(store.counts(year, month))
            y = (counts > 0).to(torch.float32) if self.task == "accident_occurrence" else counts
            weather = store.weather_of(year, month)
            label_mask = self._eval_mask()
        x = torch.cat([self._overrides.get("x", self._static_x),
                       torch.from_numpy(np.array(weather, dtype=np.float32))], dim=1)
        data = Data(x=x, edge_index=self._mapped("edge_index"), edge_attr=self._mapped("edge_features"), y=y,
                    eval_mask=label_mask, year=int(year), month=int(month or 0))
        return self._with_overrides(data, keep=_KEPT_BY_SNAPSHOT)

    def _ml4roadsafety_labels(self, year: int, month: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, eval_mask) as ML4RoadSafety labels and scores an imported release (see Evaluator's protocol)."""
        from ..road.ml4roadsafety_protocol import scored_negatives

        store = self.store
        if store.meta["source_kind"] != "ml4roadsafety-import":
            raise ValueError(f"labels='ml4roadsafety' needs an imported ML4RoadSafety release "
                             f"(source='ml4roadsafety'); {self.state} was built ({store.meta['source_kind']})")
        if self.task == "traffic_volume":
            y = torch.from_numpy(store.directed_volume_of(year).astype(np.float32))
            return y, torch.isfinite(y)
        counts = store.directed_counts(year, month)
        positive = counts > 0
        scored = positive | scored_negatives(np.asarray(store.edge_index), positive)
        y = torch.from_numpy(positive.astype(np.float32) if self.task == "accident_occurrence" else counts)
        return y, torch.from_numpy(scored)

    def _mapped(self, name: str) -> torch.Tensor:
        return map_private(Path(self.store.directory) / f"{name}.npy")

    def _eval_mask(self) -> torch.Tensor:
        return torch.from_numpy(self.store.eval_mask.copy())

    def _with_overrides(self, data: Data, keep: tuple[str, ...]) -> Data:
        for key, value in self._overrides.items():
            if key not in keep:
                data[key] = value.clone() if torch.is_tensor(value) else _copied(value)
        for key in self._removed:
            if key not in keep and key in data:
                del data[key]
        return data

    # -- pre_transform / pre_filter ---------------------------------------------------------------
    def _preprocess(self, force_reload: bool) -> None:
        images = _image_key(self._image_manifest, self.image_features, self.image_source)
        # one cache per image option, so that switching it on and off never processes again
        name = self.task if images is None else f"{self.task}+images-{images['source']}-{images['model']}"
        directory = Path(self.processed_dir) / "preprocessed" / name
        record_path, static_path = directory / "record.json", directory / "static.pt"
        key = {"tables": self.store.meta["parameters"]["tables"], "task": self.task}
        if images is not None:
            key["images"] = images
        current = preprocessing.record(self.pre_transform, self.pre_filter, key=key)
        require_writable(directory)
        with file_lock(directory):
            stored = None
            if not preprocessing.needs_processing(record_path, current, force_reload=force_reload,
                                                  what=f"{self.state} {self.task}", output=static_path):
                stored = preprocessing.read_cached(static_path, {"overrides", "removed", "periods"},
                                                    "preprocessed static graph")
            if stored is None:
                stored = self._run_preprocessing()
                with atomic_path(static_path) as temporary:
                    fs.torch_save(stored, str(temporary))
                preprocessing.write_record(record_path, current, static_path, items=len(stored["periods"]))
        self._overrides, self._removed = stored["overrides"], list(stored["removed"])
        self._periods = [tuple(period) for period in stored["periods"]]

    def _run_preprocessing(self) -> dict:
        logger.info("%s: applying pre_transform/pre_filter (%s)", self.state, self.task)
        if self.pre_transform is not None:
            raw = self.static_graph
            edge_index, num_nodes = raw.edge_index.clone(), raw.num_nodes
            transformed = self.pre_transform(raw)
            if not isinstance(transformed, Data):
                raise ValueError(f"pre_transform must return a torch_geometric Data, got {type(transformed).__name__}")
            if transformed.num_nodes != num_nodes or not torch.equal(transformed.edge_index, edge_index):
                raise ValueError("pre_transform changed the road graph's nodes or edge_index; the monthly labels are "
                                 "per edge, so a pre_transform may only change or add attributes (use transform to "
                                 "change the graph of each item)")
            original = self.static_graph
            self._overrides = {k: v for k, v in transformed.items() if k not in ("edge_index", "num_nodes")
                               and not (k in original and _same(original[k], v))}
            self._removed = [k for k in original.keys() if k not in transformed.keys()]
        periods = self._store_periods()
        if self.pre_filter is not None:
            periods = [period for period in periods if self.pre_filter(self._snapshot(*period))]
        return {"overrides": self._overrides, "removed": self._removed, "periods": [list(p) for p in periods]}

    def __repr__(self) -> str:
        images = "" if self.image_features is None else f", image_features={self.image_features!r}"
        return f"{type(self).__name__}({len(self)}, state={self.state!r}, task={self.task!r}{images})"


def _state_code(root: Any, state: Any) -> str:
    if state is None:
        hint = (f" ({root!r} was given as the root: did you mean state={root!r}?)"
                if isinstance(root, str) and (len(root) == 2 or root.upper() == "DEMO") else "")
        raise TypeError("RoadAccidentDataset() needs a state: RoadAccidentDataset(root, 'MA') or "
                        f"RoadAccidentDataset(state='MA') for $GNNBENCH_HOME/road; 'DEMO' is the synthetic demo "
                        f"region{hint}")
    if not isinstance(state, str) or not state.strip().isalnum():
        raise ValueError(f"state must be a state code such as 'MA' (or 'DEMO'), got {state!r}")
    return state.strip().upper()


def _image_columns(root: Path, state: str, model: str, source: str | None, tables: str, *,
                   num_nodes: int) -> tuple[np.ndarray, str, dict[str, Any]]:
    """The ``[N, D + 1]`` image columns (embeddings, then ``image_available``), the imagery source they come
    from and the embeddings' manifest, checked against the node table of ``tables``."""
    from ..road.tiles.embed.store import find_embeddings, load_image_features
    from ..road.tiles.layout import embeddings_dir

    found = find_embeddings(root, state, model, source=source)
    embeddings, available, manifest = load_image_features(root, state, model, source=found)
    made_for = (manifest.get("parameters") or {}).get("nodes_sha256")
    table = read_manifest(tables)["files"].get("nodes") or {}
    if len(embeddings) != num_nodes or made_for != table.get("sha256"):
        raise ValueError(
            f"{state}: the {model} embeddings in {embeddings_dir(root, state, found, model)} are stale: made for "
            f"{len(embeddings)} nodes with nodes.parquet sha256 {made_for}, but the tables in {tables} have "
            f"{num_nodes} nodes with sha256 {table.get('sha256')}; rebuild them with "
            f"`gnnbench embed tiles --state {state} --model {model}`")
    columns = np.concatenate([embeddings.astype(np.float32), available.astype(np.float32)[:, None]], axis=1)
    return columns, found, manifest


def _image_key(manifest: dict[str, Any] | None, model: str | None, source: str | None) -> dict[str, Any] | None:
    """What the image columns were made from (for the preprocessing record), None without images."""
    if manifest is None:
        return None
    files = manifest.get("files") or {}
    return {"model": model, "source": source, "embeddings": (files.get("embeddings") or {}).get("sha256"),
            "available": (files.get("available") or {}).get("sha256")}


def _same(a: Any, b: Any) -> bool:
    if torch.is_tensor(a) and torch.is_tensor(b):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    return not torch.is_tensor(a) and not torch.is_tensor(b) and a == b


def _copied(value: Any) -> Any:
    return copy.deepcopy(value)


