"""The NAIP sources in the imagery pipeline: COG blocks from the Planetary Computer (``naip-pc``, the default for
real states) and exported images from the USGS NAIP ImageServer (``naip-usgs``).

``naip-pc`` plans offline from what its download cached: the STAC item index of the state (one search, Parquet)
and each chosen item's COG header (``.npz``). A cache key is one COG block, ``(item, level, block_row,
block_col)``, fetched once with a ranged, SAS-signed request however many crops share it. ``naip-usgs`` asks the
service for each crop (exactly centred; no sharing); its key carries the target and its position.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from ....io.http import DownloadError, RetryPolicy
from ..cache import TileCache, TileKey
from ..cog import CogInfo, decode_block, load_info, save_info
from ..crops import CropSpec, TileReader
from ..geometry import global_pixel, morton
from ..plan import Plan, disjoint_fetch_chunks
from ..shards import target_key
from ..validate import check_tile, decode_rgb, is_blank, worst
from .naip_pc import BlockFetcher, ItemIndex, blocks_for_crop, check_header, choose_item, choose_level, read_crop
from .naip_usgs import DEFAULT_ENDPOINT as USGS_ENDPOINT
from .naip_usgs import fetch_crop
from .sas import PC_ENDPOINT, SasTokens
from .stac import NaipItem, read_items, search_items, write_items
from .xyz import SourceInfo

#: NAIP's native 0.6 m x 256 px: the default crop footprint of the NAIP sources
DEFAULT_FOOTPRINT_M = 153.6
_FETCHER_LOCK = threading.Lock()

NAIP_PC_INFO = SourceInfo(
    id="naip-pc", name="NAIP (USDA FSA) from the Microsoft Planetary Computer",
    provider="USDA Farm Service Agency; hosted by Microsoft Planetary Computer",
    url="https://planetarycomputer.microsoft.com/dataset/naip",
    licence="public domain (USDA FSA; credit requested)",
    licence_url="https://www.fsa.usda.gov/help/policies-and-links/",
    attribution="National Agriculture Imagery Program (NAIP), USDA Farm Service Agency", redistributable=True)

NAIP_USGS_INFO = SourceInfo(
    id="naip-usgs", name="NAIP (USDA FSA) from the USGS NAIP ImageServer",
    provider="USDA Farm Service Agency; served by U.S. Geological Survey, The National Map",
    url=USGS_ENDPOINT, licence="public domain (USDA FSA / USGS; credit requested)",
    licence_url="https://www.usgs.gov/information-policies-and-instructions/copyrights-and-credits",
    attribution="National Agriculture Imagery Program (NAIP), USDA Farm Service Agency; USGS The National Map",
    redistributable=True)


def state_years(state: str) -> tuple[int, int]:
    """The first and last crash year of ``state`` (the imagery years a crop prefers)."""
    from ... import region

    years = region(state).years
    return min(years), max(years)


def _order(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Targets in Morton order of their zoom-16 tile (neighbours share blocks and chunks)."""
    x, y = global_pixel(lon, lat, 16)
    return np.argsort(morton(np.floor(x / 256).astype(np.int64), np.floor(y / 256).astype(np.int64)), kind="stable")


@dataclass
class NaipPcSource:
    """NAIP COG windows from the Planetary Computer: STAC search, SAS-signed ranged reads of the blocks."""

    state: str
    endpoint: str = PC_ENDPOINT
    years: tuple[int, int] = (2010, 2030)
    items_file: str = ""  # the item index the plan used (under the cache), set by plan()
    info: SourceInfo = NAIP_PC_INFO
    key: str = "naip-pc"
    default_footprint_m: float = DEFAULT_FOOTPRINT_M
    _local: dict = field(default_factory=dict, repr=False, compare=False)  # per process: fetcher, headers, items

    @classmethod
    def create(cls, state: str, *, endpoint: str | None = None, years: tuple[int, int]) -> NaipPcSource:
        return cls(state=state, endpoint=(endpoint or PC_ENDPOINT).rstrip("/"), years=tuple(years))

    def describe(self) -> dict[str, Any]:
        return {"kind": "naip-pc", "key": self.key, "state": self.state, "endpoint": self.endpoint,
                "years": list(self.years), "items_file": self.items_file, "info": asdict(self.info)}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> NaipPcSource:
        return cls(state=description["state"], endpoint=description["endpoint"], years=tuple(description["years"]),
                   items_file=description["items_file"], info=SourceInfo(**description["info"]))

    def __getstate__(self) -> dict[str, Any]:  # sessions, locks and caches stay in their process
        return {**self.__dict__, "_local": {}}

    # -- caches ------------------------------------------------------------------------------------------------
    def _fetcher(self) -> BlockFetcher:
        with _FETCHER_LOCK:  # the fetch threads share one fetcher, so one SAS token
            if "fetcher" not in self._local:
                self._local["fetcher"] = BlockFetcher(SasTokens(self.endpoint, "naip"))
        return self._local["fetcher"]

    def _items(self, cache: Path) -> dict[str, NaipItem]:
        if "items" not in self._local:
            self._local["items"] = {item.id: item for item in read_items(cache / "items" / self.items_file)}
        return self._local["items"]

    def _header(self, cache: Path, item: NaipItem, *, online: bool = False) -> CogInfo:
        headers = self._local.setdefault("headers", {})
        if item.id not in headers:
            path = cache / item.id / "header.npz"
            if not path.is_file():
                if not online:
                    raise FileNotFoundError(f"{path}: the COG header of NAIP item {item.id} was never fetched; run "
                                            f"`gnnbench download tiles --state {self.state} --source naip-pc`")
                info = self._fetcher().header(item.href)
                check_header(item, info)
                save_info(info, path)
            headers[item.id] = load_info(path)
        return headers[item.id]

    # -- plan ----------------------------------------------------------------------------------------------------
    def plan(self, targets: pd.DataFrame, spec: CropSpec, *, chunk_size: int, cache: Path, online: bool) -> Plan:
        footprint = spec.footprint_m or DEFAULT_FOOTPRINT_M
        lon, lat = targets["lon"].to_numpy(), targets["lat"].to_numpy()
        if online:
            margin = 0.01
            bbox = (float(lon.min()) - margin, float(lat.min()) - margin, float(lon.max()) + margin,
                    float(lat.max()) + margin)
            digest = hashlib.sha256(json.dumps([self.endpoint, bbox]).encode()).hexdigest()[:12]
            self.items_file = f"{self.state}-{digest}.parquet"
            path = cache / "items" / self.items_file
            if not path.is_file():
                write_items(search_items(self.endpoint, collection="naip", bbox=bbox), path)
            self._local.pop("items", None)
        elif not self.items_file or not (cache / "items" / self.items_file).is_file():
            raise FileNotFoundError(f"no NAIP item index of {self.state} under {cache / 'items'}; run `gnnbench "
                                    f"download tiles --state {self.state} --source naip-pc`")
        index = ItemIndex(self._items(cache).values())
        order = _order(lon, lat)
        frame = targets.iloc[order].reset_index(drop=True).copy()
        items, levels, keys = [], [], []
        for target in frame.itertuples(index=False):
            item = choose_item(index, target.lon, target.lat, footprint, self.years)
            if item is None:
                items.append("")
                levels.append(-1)
                keys.append([])
                continue
            info = self._header(cache, item, online=online)
            level = choose_level(info, item, spec.size_px, footprint)
            items.append(item.id)
            levels.append(level)
            keys.append([(item.id, level, row, col) for row, col in
                         blocks_for_crop(item, info.levels[level], target.lon, target.lat, spec.size_px, footprint)])
        frame["item_id"], frame["level"] = items, levels
        frame["chunk"] = np.arange(len(frame)) // chunk_size
        return Plan(targets=frame, tiles=keys, fetch_chunks=disjoint_fetch_chunks(frame["chunk"].tolist(), keys),
                    parameters={"footprint_m": footprint, "years": list(self.years), "items_file": self.items_file})

    # -- fetch ---------------------------------------------------------------------------------------------------
    def key_url(self, key: TileKey) -> str:
        item_id, level, row, col = key
        item = self._local.get("items", {}).get(item_id)
        return f"{item.href if item else item_id} (level {level}, block {row},{col})"

    def stats(self) -> dict[str, int]:
        """Requests sent by this process's block fetcher (headers and blocks), SAS refreshes, 403 retries."""
        fetcher = self._local.get("fetcher")
        if fetcher is None:
            return {"requests": 0, "token_refreshes": 0, "auth_retries": 0}
        return {"requests": fetcher.requests, "token_refreshes": fetcher.tokens.refreshes,
                "auth_retries": fetcher.auth_retries}

    def bind(self, cache: Path) -> NaipPcSource:
        """Remember the cache this process fetches into (items and headers are read from it)."""
        self._local["cache"] = Path(cache)
        return self

    def fetch_key(self, key: TileKey, session: requests.Session, retry: RetryPolicy) -> bytes:
        item_id, level, row, col = key
        cache = self._local["cache"]
        item = self._items(cache)[item_id]
        offset, length = self._header(cache, item).levels[level].block_range(row, col)
        if length == 0:  # a sparse block: no imagery there
            raise DownloadError(f"{item.href}: block {row},{col} of level {level} is empty (sparse)", url=item.href,
                                status=404)
        return self._fetcher().read_range(item.href, offset, length)

    def check_key(self, key: TileKey, data: bytes) -> str:
        try:
            self._decode(key, data)
        except ValueError:
            return "corrupt"
        return "ok"

    def _decode(self, key: TileKey, data: bytes) -> np.ndarray:
        item_id, level, row, col = key
        cache = self._local["cache"]
        info = self._header(cache, self._items(cache)[item_id])
        return decode_block(info.levels[level], data, where=f"{item_id} (level {level}, block {row},{col})")

    # -- crops ---------------------------------------------------------------------------------------------------
    def crops(self, targets: pd.DataFrame, spec: CropSpec, parameters: dict[str, Any],
              cache: Path) -> Iterator[tuple[str, np.ndarray | None, dict[str, Any]]]:
        self.bind(cache)
        footprint = parameters["footprint_m"]
        reader = TileReader(TileCache(cache), decode=self._decode)
        items = self._items(cache)
        for target in targets.itertuples(index=False):
            if not target.item_id:
                yield "out_of_coverage", None, {}
                continue
            item = items[target.item_id]
            level = self._header(cache, item).levels[target.level]
            statuses: list[str] = []

            def get_block(row: int, col: int, item_id: str = target.item_id, index: int = target.level):
                status, pixels = reader.get((item_id, index, row, col))
                statuses.append("failed" if status == "not_fetched" else status)
                return pixels

            rgb, info = read_crop(item, level, get_block, target.lon, target.lat, spec.size_px, footprint)
            status = worst(statuses)
            if status == "ok" and is_blank(rgb):
                status = "blank"
            info.pop("window", None)
            yield status, (rgb if status == "ok" else None), info


@dataclass
class NaipUsgsSource:
    """One exactly centred NAIP image per crop from the USGS NAIP ImageServer (``exportImage``)."""

    state: str
    utm_epsg: int
    endpoint: str = USGS_ENDPOINT
    years: tuple[int, int] = (2010, 2030)
    info: SourceInfo = NAIP_USGS_INFO
    key: str = "naip-usgs"
    default_footprint_m: float = DEFAULT_FOOTPRINT_M

    @classmethod
    def create(cls, state: str, *, endpoint: str | None = None, years: tuple[int, int]) -> NaipUsgsSource:
        from ... import region

        return cls(state=state, utm_epsg=region(state).utm_epsg, endpoint=(endpoint or USGS_ENDPOINT).rstrip("/"),
                   years=tuple(years))

    def describe(self) -> dict[str, Any]:
        return {"kind": "naip-usgs", "key": self.key, "state": self.state, "utm_epsg": self.utm_epsg,
                "endpoint": self.endpoint, "years": list(self.years), "info": asdict(self.info)}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> NaipUsgsSource:
        return cls(state=description["state"], utm_epsg=description["utm_epsg"], endpoint=description["endpoint"],
                   years=tuple(description["years"]), info=SourceInfo(**description["info"]))

    def plan(self, targets: pd.DataFrame, spec: CropSpec, *, chunk_size: int, cache: Path, online: bool) -> Plan:
        footprint = spec.footprint_m or DEFAULT_FOOTPRINT_M
        frame = targets.iloc[_order(targets["lon"].to_numpy(), targets["lat"].to_numpy())].reset_index(drop=True)
        frame["chunk"] = np.arange(len(frame)) // chunk_size
        keys = [[self._key(spec.size_px, footprint, target)] for target in frame.itertuples(index=False)]
        return Plan(targets=frame, tiles=keys, fetch_chunks=disjoint_fetch_chunks(frame["chunk"].tolist(), keys),
                    parameters={"footprint_m": footprint, "mosaic": "service-default"})

    def _key(self, size_px: int, footprint_m: float, target: Any) -> TileKey:
        """One exported image: what it shows (projection, size, footprint, position) and whose it is."""
        return (f"epsg{self.utm_epsg}", size_px, footprint_m, target_key(target.kind, target.target_id),
                float(target.lon), float(target.lat))

    def key_url(self, key: TileKey) -> str:
        return f"{self.endpoint}/exportImage ({key[3]} at {key[4]}, {key[5]})"

    def fetch_key(self, key: TileKey, session: requests.Session, retry: RetryPolicy) -> bytes:
        _, size_px, footprint_m, _, lon, lat = key
        return fetch_crop(self.endpoint, lon, lat, utm_epsg=self.utm_epsg, size_px=size_px, footprint_m=footprint_m,
                          session=session, retry=retry)

    def check_key(self, key: TileKey, data: bytes) -> str:
        return check_tile(data)[0]

    def bind(self, cache: Path) -> NaipUsgsSource:
        return self

    def stats(self) -> dict[str, int]:
        return {}

    def crops(self, targets: pd.DataFrame, spec: CropSpec, parameters: dict[str, Any],
              cache: Path) -> Iterator[tuple[str, np.ndarray | None, dict[str, Any]]]:
        store = TileCache(cache)
        meta = {"year": -1, "mosaic": "service-default", "m_per_px": parameters["footprint_m"] / spec.size_px,
                "dx": 0.0, "dy": 0.0}
        for target in targets.itertuples(index=False):
            key = self._key(spec.size_px, parameters["footprint_m"], target)
            data = store.read(key)
            if data is None:
                marker = store.marker(key)
                yield (marker.get("reason", "failed") if marker else "failed"), None, meta
                continue
            rgb = decode_rgb(data)
            if rgb.shape[:2] != (spec.size_px, spec.size_px):
                yield "corrupt", None, meta
                continue
            yield "ok", rgb, meta
