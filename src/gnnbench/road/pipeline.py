"""One command per state: download its raw sources, build its tables; and the demo region end to end.

``download_region`` fetches every raw source of a region into ``RegionPaths.raw`` (crash pages,
the osmnx road network, Meteostat files, HPMS sections as GeoJSON); ``build_region_from_raw``
runs the build stages on those files in offline mode (so a build never touches the network)
and writes the tables. ``build_demo`` generates the synthetic demo region, serves it on a
loopback server imitating the real portals, and runs exactly the same two steps.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree  # networkx reads GraphML with it

import pyarrow as pa

from ..io import OfflineError, atomic_path, loopback_allowed, offline_mode, sha256_file
from .build import BuildParameters, RegionPaths, build_region
from .coverage import missing_years_message, unavailable_years
from .endpoints import Endpoints
from .manifest import MANIFEST_NAME, read_manifest
from .raw_files import corrupt, message
from .sources.crash_portals import crash_files, fetch_crashes
from .sources.osm import fetch_overpass_network
from .states import STATES, StateEntry
from .tables import SCHEMAS

__all__ = ["Endpoints", "build_demo", "build_region_from_raw", "download_region", "raw_sources"]

log = logging.getLogger("gnnbench.road")
NETWORK_FILE = "network.graphml"


def download_region(region: StateEntry, paths: RegionPaths, *, endpoints: Endpoints = Endpoints(),
                    years: Sequence[int] | None = None, osm_file: str | os.PathLike | None = None,
                    parts: Sequence[str] = ("crashes", "network", "weather", "volume"),
                    parameters: BuildParameters = BuildParameters(),
                    crash_format: str | None = None) -> dict[str, Any]:
    """Fetch the raw sources of ``region`` (those in ``parts``) into ``paths.raw``; return what was fetched.

    A state whose crash portal cannot be scripted is skipped for crashes with a note (pass the
    files to the build with ``crashes=``); years the portal cannot supply are listed as
    ``report["crashes"]["unavailable_years"]`` (``gnnbench.road.coverage.missing_years_message`` says
    what to do; the CLI prints it before downloading). ``crash_format`` is the portal export
    to fetch (``"json"``, ``"geojson"`` or ``"csv"``; see ``fetch_crashes``). Already complete
    downloads are reused.
    """
    years = list(years or region.years)
    report: dict[str, Any] = {}
    if "crashes" in parts:
        missing = unavailable_years(region, years)
        message = missing_years_message(region, years)
        if message:
            log.info("%s", message)
        if region.crash_source.kind == "manual":
            report["crashes"] = {"manual": region.crash_source.manual_instructions}
        else:
            records = fetch_crashes(region, paths.crashes, years=years, base_url=endpoints.crash_portal,
                                    format=crash_format)
            report["crashes"] = {"files": len(records)}
        report["crashes"]["unavailable_years"] = missing
    if "network" in parts and osm_file is None:
        place, bbox = (region.osm_place, None) if region.code in STATES else (None, region.bbox)
        overpass = f"{endpoints.overpass.rstrip('/')}" if endpoints.overpass else None
        record = fetch_overpass_network(paths.network / NETWORK_FILE, place=place, bbox=bbox, overpass_url=overpass,
                                        cache_dir=paths.raw / "osmnx-cache")
        report["network"] = record
    if "weather" in parts:
        from .sources.weather import DEFAULT_BASE_URL, monthly_weather

        nodes = _node_positions(paths, osm_file, parameters)
        _, weather_report = monthly_weather(nodes, years, base_url=endpoints.meteostat or DEFAULT_BASE_URL,
                                            cache_dir=paths.raw / "weather",
                                            max_distance_km=parameters.weather_max_distance_km)
        report["weather"] = {"stations_used": weather_report.get("stations_used")}
    if "volume" in parts:
        report["volume"] = _download_volume(region, paths, years, endpoints)
    return report


def _node_positions(paths: RegionPaths, osm_file, parameters: BuildParameters) -> pa.Table:
    """Node coordinates for choosing weather stations (the network must be downloaded first)."""
    from .sources.osm import load_network

    network_file = Path(osm_file or paths.network / NETWORK_FILE)
    if not network_file.exists():
        raise FileNotFoundError(f"weather stations are chosen by the road network's nodes, but {network_file} is "
                                f"missing: download the network first (or pass --osm)")
    graph = load_network(network_file)
    ids = sorted(graph.nodes)
    return pa.table({"node_id": list(range(len(ids))), "lon": [float(graph.nodes[i]["x"]) for i in ids],
                     "lat": [float(graph.nodes[i]["y"]) for i in ids]})


def _download_volume(region: StateEntry, paths: RegionPaths, years: Sequence[int], endpoints: Endpoints) -> dict:
    from .sources.traffic_volume import HPMS_BASE_URL, fetch_hpms_sections, hpms_layer_url

    fetched = {}
    for year in years:
        target = paths.raw / "volume" / f"hpms-{year}.geojson"
        if target.exists():
            fetched[year] = "cached"
            continue
        base = endpoints.hpms or HPMS_BASE_URL
        layer = (hpms_layer_url(region.code, year, base_url=base) if region.code in STATES
                 else f"{base.rstrip('/')}/HPMS_FULL_{region.code}_{year}/FeatureServer/0")
        counts: dict[str, Any] = {}
        sections = fetch_hpms_sections(region.code, year, layer_url=layer, report=counts)
        _write_sections(target, sections, layer, counts)
        fetched[year] = counts
    return fetched


def _write_sections(target: Path, sections: Sequence[Any], url: str, counts: dict[str, Any]) -> None:
    import shapely

    features = [{"type": "Feature", "geometry": json.loads(shapely.to_geojson(section.geometry)),
                 "properties": {"aadt": section.aadt, "route_id": section.route_id,
                                "begin_point": section.begin_point, "end_point": section.end_point,
                                "f_system": section.f_system}} for section in sections]
    with atomic_path(target) as temporary:
        temporary.write_text(json.dumps({"type": "FeatureCollection", "source": url, "download": counts,
                                         "features": features}, sort_keys=True))


def build_region_from_raw(region: StateEntry, paths: RegionPaths, *, crashes: Sequence[str | os.PathLike] = (),
                          osm_file: str | os.PathLike | None = None,
                          parameters: BuildParameters = BuildParameters(),
                          meteostat_url: str | None = None,
                          volume_files: Mapping[int, str | os.PathLike] | None = None) -> Path:
    """Build ``region``'s tables from what :func:`download_region` fetched (and/or user files), offline.

    ``volume_files`` maps a year to a GeoJSON of road sections with an ``aadt`` property (e.g. a state
    DOT's counts), used instead of that year's HPMS download.
    """
    network_file = Path(osm_file) if osm_file else paths.network / NETWORK_FILE
    if not network_file.exists():
        raise FileNotFoundError(f"{region.code}: road network {network_file} is missing; run `gnnbench download "
                                f"road --state {region.code}` or pass --osm PATH (an OSM XML extract)")
    if crashes:
        crash_paths = _expand(crashes)
        crash_root = None
    else:
        if region.crash_source.kind == "manual":
            raise FileNotFoundError(f"{region.code}: {region.crash_source.manual_instructions}")
        crash_paths, crash_root = crash_files(paths.crashes), paths.crashes
    years = tuple(parameters.years or region.years)
    parameters = replace(parameters, years=years)

    def weather(nodes: pa.Table, edges: pa.Table, years: Sequence[int]):
        from .sources.weather import DEFAULT_BASE_URL, monthly_weather

        from .sources.meteostat import WeatherSourceError

        try:
            with offline_mode():
                return monthly_weather(nodes, years, base_url=meteostat_url or DEFAULT_BASE_URL,
                                       cache_dir=paths.raw / "weather",
                                       max_distance_km=parameters.weather_max_distance_km)
        except WeatherSourceError as error:  # offline, only the downloaded files are read: one of them is damaged
            raise corrupt(paths.raw / "weather", str(error), paths.raw) from None
        except OfflineError as error:  # a downloaded file was deleted since
            raise FileNotFoundError(message(error.path or paths.raw / "weather", "missing from the weather download",
                                            paths.raw)) from None

    def volume(nodes: pa.Table, edges: pa.Table, years: Sequence[int]):
        from .sources.traffic_volume import match_volume, read_aadt_file

        tables, report = [], {}
        for year in years:
            user_file = (volume_files or {}).get(year)
            path = Path(user_file) if user_file else paths.raw / "volume" / f"hpms-{year}.geojson"
            if not path.exists():
                report[str(year)] = {"skipped": f"{path} not downloaded"}
                continue
            source = f"{path.name} {year}" if user_file else f"HPMS {year}"
            downloaded, sections = {} if user_file else _downloaded_layer(path, paths.raw), read_aadt_file(path)
            table, report[str(year)] = match_volume(edges, sections, year=year, source=source,
                                                    epsg=region.utm_epsg,
                                                    max_distance_m=parameters.volume_max_distance_m)
            report[str(year)]["download"] = downloaded  # sections the layer served without AADT or geometry
            tables.append(table)
        if not tables:
            return SCHEMAS["edge_volume"].empty_table(), report
        return pa.concat_tables(tables), report

    stations = paths.raw / "weather" / "stations.db"
    has_weather = stations.exists()
    if not has_weather and (paths.raw / "weather").exists():  # weather was downloaded: never build without it silently
        raise FileNotFoundError(message(stations, "missing from the weather download", paths.raw))
    has_volume = (paths.raw / "volume").exists() or bool(volume_files)
    try:
        return build_region(region, network_file=network_file, crash_paths=crash_paths, crash_root=crash_root,
                            out_dir=paths.tables, parameters=parameters, sources=raw_sources(paths.raw),
                            weather=weather if has_weather else None, volume=volume if has_volume else None)
    except ElementTree.ParseError as error:  # a truncated or overwritten network download (not the user's --osm)
        if osm_file:
            raise ValueError(f"{network_file}: not a readable road network ({error})") from None
        raise corrupt(network_file, f"not a readable GraphML file ({error})", paths.raw) from None


def _downloaded_layer(path: Path, raw_dir: Path) -> dict[str, Any]:
    """What the HPMS download recorded (sections served without AADT or geometry); a damaged file is named."""
    try:
        collection = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
            raise ValueError("not a GeoJSON FeatureCollection")
    except (ValueError, UnicodeDecodeError) as error:
        raise corrupt(path, f"not a readable HPMS download ({error})", raw_dir) from None
    return collection.get("download", {})


def raw_sources(raw_dir: Path) -> list[dict[str, Any]]:
    """Every raw file under ``raw_dir`` with its sha256, size and (when downloaded) URL and retrieval time."""
    records: list[dict[str, Any]] = []
    listings: dict[Path, dict[str, Any]] = {}
    if not raw_dir.exists():
        return records
    for path in sorted(raw_dir.rglob("*")):
        if not path.is_file() or path.name.endswith((".lock", ".part", ".download.json", ".missing.json")) \
                or "osmnx-cache" in path.parts:
            continue
        record = {"path": path.relative_to(raw_dir).as_posix(), "sha256": sha256_file(path),
                  "size": path.stat().st_size, "role": path.relative_to(raw_dir).parts[0]}
        listing = path.parent / "complete.json"
        sidecar = path.with_name(path.name + ".download.json")
        if listing.exists() and path != listing:
            if listing not in listings:  # read once per directory, not once per page
                listings[listing] = {page["path"]: page for page in _json(listing, raw_dir)["files"]}
            pages = listings[listing]
            if path.name in pages:
                record.update(url=pages[path.name]["url"], retrieved_at=pages[path.name]["retrieved_at"])
        if sidecar.exists():
            meta = _json(sidecar, raw_dir)
            record.update(url=meta.get("url"), retrieved_at=meta.get("retrieved_at"))
        records.append(record)
    return records


def _json(path: Path, raw_dir: Path) -> dict[str, Any]:
    """A download record (a listing or a ``.download.json`` sidecar); a damaged one names itself and the command."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError(f"a JSON {type(record).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as error:
        raise corrupt(path, f"not a readable download record ({error}); delete it", raw_dir) from None
    return record


def _expand(paths: Sequence[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and _is_crash_file(p))
        elif item.exists():
            files.append(item)
        else:
            raise FileNotFoundError(f"crash file not found: {item}")
    return files


def _is_crash_file(path: Path) -> bool:
    """A crash file inside a directory given with ``--crashes`` (not metadata, sidecars or partial downloads)."""
    name = path.name.lower()
    if name in ("columns.json", "complete.json") or name.endswith((".download.json", ".missing.json")):
        return False
    return name.endswith((".csv", ".csv.gz", ".json", ".geojson"))


def build_demo(home: str | os.PathLike | None = None, *, seed: int = 0, force: bool = False) -> Path:
    """Generate, serve (loopback), download and build the synthetic demo region; return its tables directory."""
    from .demo.fixtures import DemoFixtures
    from .demo.region import DEMO_REGION
    from .demo.server import LoopbackPortal

    paths = RegionPaths.for_region(DEMO_REGION.code, home)
    if not force and (paths.tables / MANIFEST_NAME).exists():
        read_manifest(paths.tables)
        return paths.tables
    fixtures = DemoFixtures.generate(seed)
    with tempfile.TemporaryDirectory(prefix="gnnbench-demo-") as scratch, LoopbackPortal() as portal:
        endpoints = fixtures.serve(portal, Path(scratch))
        with loopback_allowed():
            download_region(DEMO_REGION, paths, endpoints=endpoints)
        return build_region_from_raw(DEMO_REGION, paths, meteostat_url=endpoints.meteostat)


def build_state(code: str, *, home: str | os.PathLike, crashes: Sequence[str | os.PathLike] = (),
                osm_file: str | os.PathLike | None = None, parameters: BuildParameters = BuildParameters(),
                volume_files: Mapping[int, str | os.PathLike] | None = None) -> Path:
    """Build one state's tables from its downloads under ``home`` (``DEMO``: the demo region, rebuilt)."""
    from . import region

    if code.upper() == "DEMO":
        return build_demo(home=home, force=True)
    entry = region(code)
    return build_region_from_raw(entry, RegionPaths.for_region(entry.code, home), crashes=crashes,
                                 osm_file=osm_file, parameters=parameters, volume_files=volume_files)


def _build_or_report(code: str, **options: Any) -> tuple[str, str]:
    """``("ok", tables dir)`` or ``("failed", why)``: a state without its downloads does not stop the others."""
    try:
        return "ok", str(build_state(code, **options))
    except (FileNotFoundError, OSError) as error:
        return "failed", str(error)


def build_states(codes: Sequence[str], *, home: str | os.PathLike, scheduler: Any = "none",
                 workers: int | None = None, progress: bool = False,
                 **options: Any) -> tuple[dict[str, Path], dict[str, str]]:
    """Build several states' tables, one Dask task per state (``scheduler`` as in :mod:`gnnbench.parallel`).

    Returns the tables directory of each state built and the reason of each that failed.
    """
    from ..parallel import map_chunks, open_client

    built: dict[str, Path] = {}
    failed: dict[str, str] = {}
    with open_client(scheduler, workers) as client:
        for index, (status, detail) in map_chunks(_build_or_report, list(codes), client=client, desc="build road",
                                                  progress=progress, home=str(home), **options):
            if status == "ok":
                built[codes[index]] = Path(detail)
            else:
                failed[codes[index]] = detail
    return built, failed
