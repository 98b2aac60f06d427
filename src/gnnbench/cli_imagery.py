"""The imagery commands: ``gnnbench download tiles``, ``build tiles`` and ``info tiles`` (thin over
:mod:`gnnbench.road.tiles.pipeline`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .cli_options import number, root_option

_ROOT_HELP = "road data directory (default: $GNNBENCH_HOME/road); the imagery lives in its imagery/ folder"
_STATE_HELP = "two-letter state code (DE IA IL MD MA MN MT NV), or DEMO for the synthetic demo region"
_SCHEDULER_HELP = ("where the chunks run: local (a Dask LocalCluster on this machine, the default), none (this "
                   "process only), or a Dask scheduler address such as tcp://host:8786 whose workers share "
                   "GNNBENCH_HOME")


def add_parsers(download: argparse._SubParsersAction, build: argparse._SubParsersAction,
                info: argparse._SubParsersAction) -> None:
    """Add ``tiles`` under ``download``, ``build`` and ``info``."""
    from .road.tiles.sources import SOURCE_NAMES

    fetch = download.add_parser(
        "tiles", help="fetch the imagery tiles every intersection's crop needs (resumable, rate-limited)",
        description="Plan a square crop centred on every node (optionally every edge midpoint) of a built state "
                    "and fetch each tile those crops need into the tile cache, once however many crops share "
                    "it: bounded concurrency, a rate limit, retries on 5xx/429 (Retry-After honoured). A 404, a "
                    "corrupt or a blank tile is recorded and counted, never fatal; a rerun resumes and fetches "
                    "nothing twice. Sources: naip-pc (native NAIP, 0.3-1 m, public domain: windows of the "
                    "Planetary Computer's COGs, read block by block with anonymous SAS tokens refreshed during the "
                    "run), naip-usgs (native NAIP, one exactly centred image per crop from the keyless USGS NAIP "
                    "ImageServer), usgs-imagery (USGS National Map imagery basemap, public domain, "
                    "real tiles to zoom 16, about 1.6-1.9 m/px), xyz (your own template), esri-world-imagery "
                    "and mapbox-satellite (commercial: your own key, their terms printed first), demo (the "
                    "synthetic imagery of --state DEMO, served on loopback).",
        epilog="Example: gnnbench download tiles --state MA --scheduler tcp://scheduler:8786 --rate 20")
    fetch.add_argument("--state", required=True, help=_STATE_HELP)
    fetch.add_argument("--source", choices=SOURCE_NAMES, default=None,
                       help="imagery source (default: demo for DEMO, else naip-pc)")
    fetch.add_argument("--endpoint", default=None,
                       help="naip-pc: another STAC/SAS API base URL; naip-usgs: another ImageServer URL")
    fetch.add_argument("--years", type=number(int, "--years", minimum=2000, maximum=2100), nargs=2, default=None,
                       metavar=("FIRST", "LAST"),
                       help="NAIP: the imagery years to prefer (default: the state's crash years); per node the "
                            "covering year nearest to them is chosen and recorded")
    fetch.add_argument("--template", default=None,
                       help="--source xyz: tile URL template with {z}, {x}, {y} (WMTS {TileMatrix}, {TileCol}, "
                            "{TileRow} accepted; {key} is replaced by --api-key)")
    fetch.add_argument("--max-zoom", type=number(int, "--max-zoom", minimum=0, maximum=24), default=None,
                       help="--source xyz: the highest zoom with real tiles (required; never overzoomed)")
    fetch.add_argument("--axis-order", choices=("zyx", "zxy"), default=None,
                       help="--source xyz: zyx for ArcGIS-style .../{z}/{y}/{x}; default: read from the template")
    fetch.add_argument("--attribution", default="", help="--source xyz: the attribution the provider requires")
    fetch.add_argument("--licence", default=None, help="--source xyz: the provider's licence, for the manifest")
    fetch.add_argument("--api-key", default=None,
                       help="your own key for a commercial source (or set GNNBENCH_IMAGERY_KEY)")
    fetch.add_argument("--size", type=number(int, "--size", minimum=16, maximum=2048), default=256,
                       help="crop size in pixels (default: 256)")
    fetch.add_argument("--footprint", type=number(float, "--footprint", minimum=1.0, maximum=10000.0),
                       default=None,
                       help="crop footprint in metres (default: 153.6 for NAIP and DEMO, i.e. 256 px of 0.6 m; an "
                            "XYZ source's native resolution at its zoom); needs at most 1.5x upsampling")
    fetch.add_argument("--zoom", type=number(int, "--zoom", minimum=0, maximum=24), default=None,
                       help="tile zoom (default: the coarsest zoom fine enough for --footprint, else the source's "
                            "highest); beyond the source's real tiles is an error before any request")
    fetch.add_argument("--edges", action="store_true", help="also crop every edge midpoint")
    fetch.add_argument("--format", choices=("png", "jpg"), default="png",
                       help="crop image format: png (lossless, default) or jpg (quality 95, about 5x smaller)")
    fetch.add_argument("--concurrency", type=number(int, "--concurrency", minimum=1, maximum=64), default=8,
                       help="parallel requests per worker (default: 8)")
    fetch.add_argument("--rate", type=number(float, "--rate", minimum=0.0), default=10.0,
                       help="requests per second over all workers (default: 10; 0: unlimited)")
    fetch.add_argument("--retry-missing", action="store_true",
                       help="fetch again the tiles recorded as failed or corrupt (never the 404s)")
    fetch.add_argument("--chunk-size", type=number(int, "--chunk-size", minimum=1), default=4096,
                       help="targets per chunk (a chunk is one Dask task and one shard; default: 4096)")
    _scheduler_options(fetch)
    root_option(fetch, _ROOT_HELP)
    fetch.set_defaults(handler=_download_tiles)

    crops = build.add_parser(
        "tiles", help="cut the crops from the tile cache into shards, with an index, manifest and contact sheet",
        description="Cut every planned crop from the tile cache (offline) into WebDataset tar shards "
                    "(crops/shard-NNNNN.tar: KEY.png and KEY.json per node, KEY like n000012345), index them by "
                    "node id in crops.parquet (status, shard, byte offset), draw a contact sheet of random "
                    "crops and write manifest.json: source, licence and attribution, counts per status "
                    "(ok, missing, corrupt, blank, failed), requests, resolution. Finished shards are kept on a "
                    "rerun.")
    crops.add_argument("--state", required=True, help=_STATE_HELP)
    crops.add_argument("--source", default=None,
                       help="imagery source key (default: the one source downloaded for the state)")
    crops.add_argument("--accept-terms", action="store_true",
                       help="a commercial source: you accept its terms and keep the crops for your own use")
    _scheduler_options(crops)
    root_option(crops, _ROOT_HELP)
    crops.set_defaults(handler=_build_tiles)

    show = info.add_parser("tiles", help="the imagery manifest of a state: source, licence, counts, resolution",
                           description="Print the summary of a state's imagery manifest.")
    show.add_argument("--state", required=True, help=_STATE_HELP)
    show.add_argument("--source", default=None, help="imagery source key (default: the only one)")
    show.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    root_option(show, _ROOT_HELP)
    show.set_defaults(handler=_info_tiles)


def _scheduler_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", default="local", metavar="ADDRESS", help=_SCHEDULER_HELP)
    parser.add_argument("--workers", type=number(int, "--workers", minimum=1), default=None,
                        help="LocalCluster worker processes (default: the cores, at most 4)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _download_tiles(args: argparse.Namespace) -> int:
    from .cli_run import writable
    from .road.tiles.crops import CropSpec
    from .road.tiles.layout import road_root
    from .road.tiles.pipeline import download_tiles

    writable(road_root(args.root))
    spec = CropSpec(size_px=args.size, footprint_m=args.footprint, zoom=args.zoom,
                    targets="nodes+edges" if args.edges else "nodes", format=args.format)
    record = download_tiles(args.state, source=args.source, spec=spec, root=args.root, scheduler=args.scheduler,
                            workers=args.workers, concurrency=args.concurrency, rate=args.rate,
                            retry_missing=args.retry_missing, chunk_size=args.chunk_size, template=args.template,
                            max_zoom=args.max_zoom, axis_order=args.axis_order, attribution=args.attribution,
                            licence=args.licence, api_key=args.api_key,
                            endpoint=args.endpoint, years=tuple(args.years) if args.years else None,
                            progress=not args.no_progress)
    requests = record["requests"]
    outcomes = ", ".join(f"{name} {count}" for name, count in requests["outcomes"].items()) or "none fetched"
    where = f"zoom {record['plan']['zoom']}" if "zoom" in record["plan"] else record["source"]["info"]["name"]
    print(f"{record['state']}: {record['targets']} crops ({where}) need {record['unique_tiles']} tiles or blocks: "
          f"{requests['from_cache']} already cached, {requests['fetched']} fetched ({outcomes}) with "
          f"{requests['http_requests']} HTTP requests, {requests['bytes'] / 1e6:.1f} MB")
    print(f"next: gnnbench build tiles --state {record['state']}")
    return 0


def _build_tiles(args: argparse.Namespace) -> int:
    from .cli_run import writable
    from .road.tiles.layout import road_root
    from .road.tiles.pipeline import build_tiles, info_tiles

    writable(road_root(args.root))
    out = build_tiles(args.state, source=args.source, root=args.root, scheduler=args.scheduler,
                      workers=args.workers, accept_terms=args.accept_terms, progress=not args.no_progress)
    manifest = info_tiles(args.state, source=Path(out).name, root=args.root)
    print(_summary(manifest))
    print(f"crops at {out}")
    return 0


def _info_tiles(args: argparse.Namespace) -> int:
    from .road.tiles.pipeline import info_tiles

    manifest = info_tiles(args.state, source=args.source, root=args.root)
    print(json.dumps(manifest, indent=1, sort_keys=True) if args.json else _summary(manifest))
    return 0


def _summary(manifest: dict) -> str:
    parameters, counts, source = manifest["parameters"], manifest["counts"], manifest["source"]
    crop = parameters["crop"]
    resolution = manifest.get("resolution") or {}
    from .road.tiles.validate import STATUSES

    lost = ", ".join(f"{name} {counts[name]}" for name in STATUSES[1:] if counts.get(name))
    lines = [f"{parameters['state']}: {counts['ok']} of {counts['targets']} crops ok" + (f" ({lost})" if lost else ""),
             f"  source: {source['name']} ({source['provider']}); licence: {source['licence']}",
             f"  attribution: {source['attribution']}",
             f"  crops: {crop['size_px']} px, "
             + (f"zoom {parameters['plan']['zoom']}, " if "zoom" in parameters["plan"] else "")
             + (f"{resolution.get('m_per_px_median', float('nan')):.2f} m/px" if resolution else "no crop ok")
             + f", {crop['format']}, {len([name for name in manifest['files'] if name.startswith('shard-')])} shard(s)"]
    return "\n".join(lines)
