"""The ``gnnbench`` command: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .cli_branch import add_parsers as add_branch_parsers
from .cli_embed import add_parsers as add_embed_parsers
from .cli_imagery import add_parsers as add_imagery_parsers
from .cli_leaderboard import add_parsers as add_leaderboard_parsers
from .cli_options import number as _number
from .cli_options import root_option as _root_option
from .cli_options import usage as _usage
from .cli_run import compile_kernels, dry_run, prepare_run, writable
from .io.cache import UnwritableHomeError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return _handle(args)
    except (ValueError, FileNotFoundError, RuntimeError, UnwritableHomeError) as error:
        print(f"gnnbench: error: {error}", file=sys.stderr)
        return 2


def _handle(args: argparse.Namespace) -> int:
    """Run the command; the first Ctrl-C stops it with one line and the shell's status for SIGINT (130)."""
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("gnnbench: interrupted", file=sys.stderr)
        return 130


_ROAD_ROOT_HELP = "road data directory (default: $GNNBENCH_HOME/road); raw/, tables/ and processed/ live there"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gnnbench",
        description="Benchmark datasets for graph learning: CLRS-30-compatible algorithmic reasoning traces, "
                    "road-accident graphs of eight US states (DE IA IL MD MA MN MT NV), and Hessian-based "
                    "measurements of trained models.")
    parser.add_argument("--version", action="version", version=f"gnnbench {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    quick = commands.add_parser(
        "quickstart", help="generate data, train two small baselines, measure them (offline, a few minutes)",
        description="Generate the CLRS-30 train/valid/test splits of one algorithm as PyTorch Geometric datasets, "
                    "build the synthetic road demo region through the real download and build pipeline "
                    "(served by a loopback server) and load one monthly snapshot; then train a small MPNN on the "
                    "algorithm and a GraphSAGE on the demo region through the harness (`gnnbench run`), with "
                    "their Hessian column, and print one summary table. Needs no network.")
    quick.add_argument("--algorithm", default="bfs", help="algorithm to generate (default: bfs)")
    quick.add_argument("--root", type=Path, default=None, metavar="DIR",
                       help="dataset directory of the algorithmic splits (default: $GNNBENCH_HOME/datasets)")
    quick.add_argument("--road-root", type=Path, default=None, metavar="DIR",
                       help="road data directory of the demo region (default: $GNNBENCH_HOME/road)")
    quick.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help="run directory of the two baseline runs (default: $GNNBENCH_HOME/runs/<run name>)")
    quick.add_argument("--no-progress", action="store_true", help="no progress bars")
    quick.set_defaults(handler=_quickstart)

    algo = commands.add_parser("algo", help="algorithmic reasoning traces",
                               description="CLRS-30-compatible traces of twelve graph algorithms.")
    algo_commands = algo.add_subparsers(title="algo commands", metavar="COMMAND")
    algo.set_defaults(handler=lambda args: _usage(algo))

    listing = algo_commands.add_parser("list", help="list the algorithms and their fields")
    listing.set_defaults(handler=_algo_list)

    generate = algo_commands.add_parser(
        "generate", help="generate (and cache) dataset splits",
        description="Generate dataset splits as cached PyTorch Geometric datasets. By default CLRS-30's "
                    "train/valid/test (CLRS-30's spelling 'val' is accepted for 'valid'); --split test_16 ... "
                    "test_128 gives the length-generalisation sets.")
    generate.add_argument("algorithms", nargs="*", help="algorithms (default: all twelve)")
    generate.add_argument("--split", action="append", dest="splits",
                          help="split to generate, repeatable (default: train, valid, test)")
    generate.add_argument("--num-samples", type=_number(int, "--num-samples", minimum=1), default=None,
                          help="override the split's number of graphs")
    generate.add_argument("-n", "--nodes", type=_number(int, "--nodes", minimum=1), default=None,
                          help="override the split's graph size")
    generate.add_argument("--seed", type=_number(int, "--seed", minimum=0, maximum=2**32 - 1), default=None,
                          help="override the split's seed")
    generate.add_argument("--p", type=_number(float, "--p", minimum=0.0, maximum=1.0), action="append", default=None,
                          help="edge probability; repeat to draw one of several per graph")
    generate.add_argument("--root", type=Path, default=None, metavar="DIR",
                          help="dataset directory (default: $GNNBENCH_HOME/datasets)")
    generate.add_argument("--force-reload", action="store_true", help="regenerate even if cached")
    generate.set_defaults(handler=_algo_generate)
    _road_parsers(commands)
    _hessian_parsers(commands)
    _run_parsers(commands)
    add_leaderboard_parsers(commands)
    add_branch_parsers(commands)
    add_embed_parsers(commands)
    return parser


def _run_parsers(commands: argparse._SubParsersAction) -> None:
    from .harness.config import COMMON_SHORTCUTS, SHORTCUTS

    mapping = "; ".join(f"{benchmark}: " + ", ".join(f"--{flag} = {key}" for flag, key in table.items())
                        for benchmark, table in SHORTCUTS.items())
    common = ", ".join(f"--{flag} = {key}" for flag, key in COMMON_SHORTCUTS.items())
    runner = commands.add_parser(
        "run", help="train and evaluate a baseline over seeds into a run directory (resumable)",
        description="Run a baseline config over seeds: a shipped config (algo: CLRS-30's protocol; road: "
                    "ML4RoadSafety's), a TOML file of your own, or a run directory to resume. The run directory "
                    "holds the resolved config, the environment, the dataset identity, per seed the metrics, "
                    "curve, checkpoint, model and test predictions, and a summary (mean and unbiased standard "
                    "deviation over seeds). Re-running the same command resumes: finished seeds are skipped, an "
                    "unfinished one continues from its checkpoint.",
        epilog=f"Shortcut flags set config keys ({mapping}; every benchmark: {common}). A comma-separated "
               "--algorithm (or other string-valued shortcut) runs one run per value, e.g. "
               "--algorithm bfs,dfs,dijkstra. Examples: gnnbench run algo --algorithm bfs --model triplet_gmpnn "
               "--seeds 0-2;  gnnbench run road --state DEMO --model sage --task accident_occurrence --seeds 0-9;  "
               "gnnbench run my.toml --set train.steps=2000")
    runner.add_argument("target", help="shipped config (algo, road), a CONFIG.toml, or a run directory to resume")
    for flag, what in (("algorithm", "algorithm(s), comma-separated (algo)"),
                       ("model", "model: processor (algo: mpnn, pgn, gatv2, triplet_gmpnn, edge_transformer) or "
                                 "node encoder (road: mlp, gcn, sage, gin, gat) or variant (multitask: stn, mtn, "
                                 "mmoe, branched)"),
                       ("processor", "processor of every layer (multitask)"),
                       ("state", "state code, or DEMO (road)"), ("task", "task (road)")):
        runner.add_argument(f"--{flag}", default=None, help=what)
    runner.add_argument("--seeds", default=None, metavar="SEEDS",
                        help="seeds: '0-2', '0,3,5' or '4' (default: the config's run.seeds)")
    runner.add_argument("--set", action="append", dest="overrides", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. train.steps=2000 (repeatable; checked against the "
                             "family's defaults)")
    runner.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="run directory (default: $GNNBENCH_HOME/runs/<run name>; several runs: one "
                             "sub-directory each)")
    runner.add_argument("--jobs", type=_number(int, "--jobs", minimum=1), default=1, metavar="N",
                        help="seeds (and runs) trained at once in local processes (default: 1)")
    runner.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler address (e.g. tcp://host:8786), or local for a LocalCluster here, to "
                             "send the seeds to; the run directory must be on a filesystem the workers share")
    runner.add_argument("--device", default=None, help="torch device of training: cpu (default), cuda, cuda:N")
    runner.add_argument("--hessian", action="store_true",
                        help="add the Hessian column (traces, top eigenvalue, bounds, gap) to each seed's record; "
                             "budget in the config's [hessian] section")
    runner.add_argument("--no-progress", action="store_true", help="no progress bars")
    runner.add_argument("--force", action="store_true",
                        help="reuse a run directory holding another config (its contents move to superseded/)")
    runner.add_argument("--dry-run", action="store_true",
                        help="print the resolved config(s) and run directories, train nothing")
    _root_option(runner, "data directory (data.root) of families that read data from disk "
                         "(road default: $GNNBENCH_HOME/road)")
    runner.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from .harness import resolve, run

    root = str(args.root.expanduser().resolve()) if args.root is not None else None
    shortcuts = {"algorithm": args.algorithm, "model": args.model, "processor": args.processor, "state": args.state,
                 "task": args.task, "root": root, "device": args.device, "hessian": args.hessian}
    specs = resolve(args.target, shortcuts=shortcuts, overrides=args.overrides, seeds=args.seeds)
    out = args.out
    if out is None and Path(args.target).is_dir():
        out = Path(args.target)  # resuming a run directory in place
    if args.dry_run:
        return dry_run(specs, out)
    prepare_run(specs, out, progress=not args.no_progress)
    results = run(specs, out=out, jobs=args.jobs, scheduler=args.scheduler, progress=not args.no_progress,
                  force=args.force)
    for result in results:
        metrics = result.summary["metrics"]
        headline = ", ".join(f"{key} {entry['mean']:.4g}" + ("" if entry["std"] is None else f" ± {entry['std']:.2g}")
                             for key, entry in metrics.items() if key in ("valid.score", "test.score"))
        print(f"{result.name}: {len(result.summary['seeds'])} seeds, {headline or 'no metrics'}  [{result.directory}]")
    return 0


def _hessian_parsers(commands: argparse._SubParsersAction) -> None:
    hessian = commands.add_parser("hessian", help="Hessian measurements of a trained model; graph diffusion spectra",
                                  description="Hessian traces, eigenvalues, spectral density and generalization "
                                              "bounds of a saved model, and diffusion spectra of road graphs.")
    targets = hessian.add_subparsers(title="hessian commands", metavar="COMMAND")
    hessian.set_defaults(handler=lambda args: _usage(hessian))
    measure = targets.add_parser(
        "report", help="measure a checkpoint (per-layer traces, top eigenvalues, density, bounds) into JSON",
        description="Measure a saved model: per-layer Hessian traces (mean and max over batches), top eigenvalues, "
                    "spectral density and, with --initial and test batches, the Hessian-based bounds beside the "
                    "measured gap. The spec file defines build_model(), loss(model, batch), train_batches() and "
                    "optionally test_batches() and num_train_examples (see gnnbench.hessian.spec).")
    measure.add_argument("--spec", type=Path, required=True, help="Python file describing the model and data")
    measure.add_argument("--checkpoint", type=Path, required=True, help="state dict of the trained model (.pt)")
    measure.add_argument("--initial", type=Path, default=None,
                         help="state dict of the starting weights (enables the bounds)")
    measure.add_argument("--out", type=Path, default=Path("hessian_report.json"), help="JSON record to write")
    measure.add_argument("--plots", type=Path, default=None, help="directory for the figures (needs matplotlib)")
    measure.add_argument("--method", choices=("hutch++", "hutchinson"), default="hutch++",
                         help="trace estimator of the per-layer traces (default: hutch++)")
    measure.add_argument("--num-matvecs", type=_number(int, "--num-matvecs", minimum=1), default=99,
                         help="Hessian-vector products for the per-layer traces, in all (split over the batches)")
    measure.add_argument("--probes", choices=("full", "block"), default="full",
                         help="per-layer traces from full-length probes (default) or block-supported ones")
    measure.add_argument("--top-k", type=_number(int, "--top-k", minimum=1), default=5,
                         help="number of top eigenvalues")
    measure.add_argument("--seed", type=_number(int, "--seed", minimum=0), default=0,
                         help="seed of the random vectors of the traces, eigenvalues and density (default: 0)")
    measure.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    measure.add_argument("--no-progress", action="store_true", help="no progress bars")
    measure.set_defaults(handler=_hessian_report)
    diffusion = targets.add_parser(
        "diffusion", help="largest singular value of a road graph's diffusion matrix and depth factors",
        description="sigma_max of the diffusion matrix (GCN normalisation, mean, or sum with self-loops) of a built "
                    "road graph next to its maximum degree, and the factors sigma_max^(l-1) vs d^(l-1), l = 1..6.")
    diffusion.add_argument("--state", required=True, help=_STATE_HELP)
    diffusion.add_argument("--rule", choices=("gcn", "mean", "sum"), action="append",
                           help="aggregation rule (repeatable; default: all three)")
    _root_option(diffusion, _ROAD_ROOT_HELP)
    diffusion.set_defaults(handler=_hessian_diffusion)


def _hessian_report(args: argparse.Namespace) -> int:
    from .hessian import report
    from .hessian.spec import load_spec, load_state_dict

    spec = load_spec(args.spec)
    model = spec.model(args.checkpoint, args.device)
    test = spec.test_batches()
    record = report(model, spec.loss_fn(model), data=spec.train_batches(),
                    initial=load_state_dict(args.initial) if args.initial else None, test_data=test,
                    n=spec.num_train_examples, trace_method=args.method, num_matvecs=args.num_matvecs,
                    probes=args.probes, top_k=args.top_k, seed=args.seed, path=args.out, plots_dir=args.plots,
                    progress=not args.no_progress)
    trace_mean = record["trace"]["mean"]
    print(f"Hessian trace (mean over batches): {trace_mean['total']:.6g} ± {trace_mean['stderr'] or 0:.2g}")
    for layer, value in trace_mean["per_layer"].items():
        print(f"  {layer}: {value:.6g}")
    print("top eigenvalues: " + ", ".join(f"{value:.6g}" for value in record["top_eigenvalues"]))
    for name, bound in (record.get("bounds") or {}).items():
        print(f"{name}: bound on the gap {bound['bound_on_gap']:.4g}, measured gap {bound['measured_gap']:.4g}")
        if bound.get("bound_holds") is False:  # the note names the approximations that can cause it
            print(f"  warning: {bound['note']}")
    print("Hessian-vector products: " + ", ".join(f"{part} {count}" for part, count in record["matvecs"].items()))
    print(f"record written to {args.out}")
    return 0


def _hessian_diffusion(args: argparse.Namespace) -> int:
    from .datasets import RoadAccidentDataset
    from .hessian import diffusion_spectrum

    graph = RoadAccidentDataset(args.root, args.state).static_graph
    for rule in args.rule or ("gcn", "mean", "sum"):
        result = diffusion_spectrum(graph.edge_index, graph.num_nodes, rule)
        print(f"{rule}: sigma_max {result.sigma_max:.6g}, max degree {result.max_degree}, "
              f"{result.seconds:.2f} s ({result.method})")
        for depth, factor in result.factors.items():
            print(f"  l={depth}: sigma_max^(l-1) {factor['sigma_max^(l-1)']:.4g}  "
                  f"d^(l-1) {factor['max_degree^(l-1)']:.4g}  ratio {factor['ratio']:.3g}")
    return 0


_STATE_HELP = "two-letter state code (DE IA IL MD MA MN MT NV), or DEMO for the synthetic demo region"


def _road_parsers(commands: argparse._SubParsersAction) -> None:
    download = commands.add_parser("download", help="download raw sources",
                                   description="Download raw public sources into the cache.")
    download_targets = download.add_subparsers(title="what", metavar="WHAT")
    download.set_defaults(handler=lambda args: _usage(download))
    road = download_targets.add_parser(
        "road", help="crash records, OSM road network, Meteostat weather and HPMS traffic volume of a state",
        description="Download a state's crash records from its public portal (Socrata or ArcGIS REST; MN and MT "
                    "have no scriptable portal: download their files by hand and pass them to `build road "
                    "--crashes`), its drive network from Overpass (osmnx) unless --osm is given, Meteostat "
                    "weather and HPMS traffic volume. Downloads resume and are checksummed; GNNBENCH_OFFLINE=1 "
                    "refuses the network.")
    road.add_argument("--state", required=True, help=_STATE_HELP)
    road.add_argument("--osm", type=Path, default=None, help="local OSM XML extract to use instead of Overpass")
    road.add_argument("--years", type=_number(int, "--years", minimum=1900), nargs="+", default=None,
                      help="years (default: the state's splits)")
    road.add_argument("--only", choices=("crashes", "network", "weather", "volume"), action="append",
                      help="download only these parts (repeatable)")
    road.add_argument("--format", choices=("json", "geojson", "csv"), default=None,
                      help="crash export to fetch: the portal's API pages as JSON (default) or GeoJSON, or its "
                           "CSV download where its address is known")
    _root_option(road, _ROAD_ROOT_HELP)
    road.set_defaults(handler=_download_road)

    build = commands.add_parser("build", help="build tables from downloaded sources",
                                description="Build dataset tables from the raw downloads.")
    build_targets = build.add_subparsers(title="what", metavar="WHAT")
    build.set_defaults(handler=lambda args: _usage(build))
    road = build_targets.add_parser(
        "road", help="build a state's road-accident tables (nodes, edges, accidents, weather, volume)",
        description="Map-match crashes to road segments, aggregate them per month, attach weather and traffic "
                    "volume, and write Parquet tables plus manifest.json (sources, checksums, parameters, a "
                    "quality report accounting for every crash record). Runs offline on the raw downloads.")
    road.add_argument("--state", required=True, help=_STATE_HELP + ", or all")
    road.add_argument("--crashes", type=Path, nargs="+", default=None,
                      help="crash files downloaded by hand (CSV, or a directory of them) instead of the portal "
                           "download; required for MN and MT")
    road.add_argument("--osm", type=Path, default=None, help="OSM XML extract (default: the downloaded network)")
    road.add_argument("--aadt", action="append", default=[], metavar="YEAR=GEOJSON",
                      help="traffic counts of a year (GeoJSON lines with an 'aadt' property, e.g. a state DOT's) "
                           "to use instead of that year's HPMS download; repeatable")
    road.add_argument("--max-distance", type=_number(float, "--max-distance", minimum=0.0, open_min=True),
                      default=50.0,
                      help="map-matching distance in metres (default: 50)")
    road.add_argument("--years", type=_number(int, "--years", minimum=1900), nargs="+", default=None,
                      help="years (default: the state's splits)")
    road.add_argument("--scheduler", default=None, metavar="ADDRESS",
                      help="where the states are built: local (a Dask LocalCluster on this machine, the default "
                           "for --state all), none (one after another in this process, the default for one state) "
                           "or a scheduler address such as tcp://host:8786 whose workers share the road directory")
    road.add_argument("--workers", type=_number(int, "--workers", minimum=1), default=None,
                      help="--scheduler local: worker processes (default: the cores, at most 4); a state's build "
                           "peaks at about 4 GB, so choose N for your memory")
    _root_option(road, _ROAD_ROOT_HELP)
    road.set_defaults(handler=_build_road)

    importer = commands.add_parser("import", help="import published releases",
                                   description="Import a published dataset release into gnnbench's tables.")
    import_targets = importer.add_subparsers(title="release", metavar="RELEASE")
    importer.set_defaults(handler=lambda args: _usage(importer))
    ml4rs = import_targets.add_parser(
        "ml4roadsafety", help="the ML4RoadSafety release (Harvard Dataverse doi:10.7910/DVN/V71K5R)",
        description="Download a state's zip of the ML4RoadSafety release from Harvard Dataverse (or use "
                    "--release-dir), and convert it into the same tables as `build road`, under "
                    "HOME/ml4roadsafety/tables/STATE. Reports accident files identical across imported states "
                    "(a known defect of the release: MA and DE).")
    ml4rs.add_argument("--state", required=True, help="two-letter state code")
    ml4rs.add_argument("--release-dir", type=Path, default=None,
                       help="an extracted release state directory (skips the download)")
    ml4rs.add_argument("--doi", default=None, help="Dataverse DOI (default: doi:10.7910/DVN/V71K5R)")
    ml4rs.add_argument("--server", default=None,
                       help="Dataverse installation (default: https://dataverse.harvard.edu)")
    _root_option(ml4rs, _ROAD_ROOT_HELP)
    ml4rs.set_defaults(handler=_import_ml4roadsafety)

    info = commands.add_parser("info", help="describe built datasets",
                               description="Describe what has been built or imported.")
    info_targets = info.add_subparsers(title="what", metavar="WHAT")
    info.set_defaults(handler=lambda args: _usage(info))
    road = info_targets.add_parser("road", help="sizes, years, sources and quality report of a state's tables",
                                   description="Print the manifest summary of a state's built (or imported) "
                                               "tables: table sizes, years and splits, sources, quality report. "
                                               "Without --state: per state, the crash portal, its export formats, "
                                               "the years it can supply against the ML4RoadSafety years, and "
                                               "what was verified and how.")
    road.add_argument("--state", default=None, help=_STATE_HELP + " (default: the table of every state)")
    road.add_argument("--source", choices=("build", "ml4roadsafety"), default="build",
                      help="which tables: built from raw sources (default) or imported from ML4RoadSafety")
    road.add_argument("--json", action="store_true", help="print the whole manifest as JSON")
    _root_option(road, _ROAD_ROOT_HELP)
    road.set_defaults(handler=_info_road)
    add_imagery_parsers(download_targets, build_targets, info_targets)


def _road_home(args: argparse.Namespace) -> Path:
    from .io import gnnbench_home

    return args.root if args.root is not None else gnnbench_home() / "road"


def _download_road(args: argparse.Namespace) -> int:
    writable(_road_home(args))
    from .road import region
    from .road.build import RegionPaths
    from .road.pipeline import build_demo, download_region

    if args.state.upper() == "DEMO":
        print(f"demo region built at {build_demo(home=_road_home(args))}")
        return 0
    entry = region(args.state)
    paths = RegionPaths.for_region(entry.code, _road_home(args))
    parts = tuple(args.only or ("crashes", "network", "weather", "volume"))
    if "crashes" in parts:
        from .road.coverage import missing_years_message

        message = missing_years_message(entry, args.years or entry.years)
        if message:  # said before any download starts
            print(f"gnnbench: {message}", file=sys.stderr)
    report = download_region(entry, paths, years=args.years, osm_file=args.osm, parts=parts,
                             crash_format=args.format)
    print(json.dumps({"state": entry.code, "raw": str(paths.raw), **report}, indent=1, default=str))
    return 0


def _build_road(args: argparse.Namespace) -> int:
    writable(_road_home(args))
    from .road import STATES, region_code
    from .road.build import BuildParameters
    from .road.pipeline import build_states

    codes = list(STATES) if args.state.strip().lower() == "all" else [region_code(args.state, others=("all",))]
    parameters = BuildParameters(max_distance_m=args.max_distance, years=tuple(args.years) if args.years else None)
    scheduler = args.scheduler if args.scheduler is not None else ("local" if len(codes) > 1 else "none")
    built, failed = build_states(codes, home=_road_home(args), scheduler=scheduler, workers=args.workers,
                                 progress=scheduler != "none", crashes=args.crashes or (), osm_file=args.osm,
                                 parameters=parameters, volume_files=_aadt_files(args.aadt))
    if len(codes) == 1 and failed:
        raise ValueError(next(iter(failed.values())))
    for code in codes:
        if code in built:
            print(f"{code}: tables at {built[code]}")
    for code in codes:
        if code in failed:
            print(f"gnnbench: skipped {code}: {failed[code]}", file=sys.stderr)
    return 1 if failed else 0


def _aadt_files(values: list[str]) -> dict[int, Path]:
    files = {}
    for value in values:
        year, separator, path = value.partition("=")
        if not separator or not year.strip().isdigit():
            raise ValueError(f"--aadt expects YEAR=GEOJSON, got {value!r}")
        files[int(year)] = Path(path)
    return files


def _import_ml4roadsafety(args: argparse.Namespace) -> int:
    writable(_road_home(args))
    from .road import region_code
    from .road.sources.dataverse import DEFAULT_SERVER
    from .road.sources.ml4roadsafety import ML4ROADSAFETY_DOI, fetch_release, import_release

    state = region_code(args.state, demo=False)  # the release's eight states
    root = _road_home(args) / "ml4roadsafety"
    state_dir = args.release_dir or fetch_release(state, cache_dir=root / "raw", doi=args.doi or ML4ROADSAFETY_DOI,
                                                  server=args.server or DEFAULT_SERVER)
    out = import_release(state, state_dir, root / "tables" / state)
    print(f"{state}: imported tables at {out}")
    return 0


def _info_road(args: argparse.Namespace) -> int:
    from .road import region_code
    from .road.tables import verify_tables

    if args.state is None:
        from .road.coverage import coverage_rows, coverage_text

        print(json.dumps(coverage_rows(), indent=1) if args.json else coverage_text())
        return 0
    root = _road_home(args) / ("ml4roadsafety" if args.source == "ml4roadsafety" else "")
    state = region_code(args.state, tables=root / "tables")  # "unknown state", not "no road build found"
    manifest = verify_tables(root / "tables" / state)
    if args.json:
        print(json.dumps(manifest, indent=1, sort_keys=True))
        return 0
    print(f"{manifest['state']} ({manifest['kind']}, gnnbench {manifest['gnnbench_version']})")
    for name, table in manifest["files"].items():
        print(f"  {name:13s} {table['rows']:>12,d} rows")
    parameters = manifest["parameters"]
    if parameters.get("splits"):
        splits = parameters["splits"]
        print("  splits: " + "; ".join(f"{name} {splits[name][0]}-{splits[name][-1]}"
                                       for name in ("train", "valid", "test") if name in splits))
    crashes = manifest["quality"].get("crashes") or manifest["quality"].get("accidents") or {}
    if crashes:
        print(f"  crash records: read {crashes.get('records_read', crashes.get('rows_read'))}, "
              f"kept {crashes.get('kept', crashes.get('rows_kept'))}")
        for reason, count in (crashes.get("dropped") or {}).items():
            if count:
                print(f"    dropped {reason}: {count}")
    print(f"  sources: {len(manifest['sources'])} files")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from .io import gnnbench_home

    writable(args.root or gnnbench_home() / "datasets", args.road_root or gnnbench_home() / "road",
              args.out or gnnbench_home() / "runs")
    from .algo import SPECS, Evaluator
    from .algo.specs import check_algorithm
    from .datasets import AlgorithmicReasoningDataset

    algorithm = check_algorithm(args.algorithm)  # before the first line of output
    print(f"gnnbench {__version__} quickstart: CLRS-30 splits of {algorithm!r}")
    compile_kernels([algorithm], progress=not args.no_progress)
    for split in ("train", "valid", "test"):
        start = time.perf_counter()
        dataset = AlgorithmicReasoningDataset(args.root, algorithm, split)
        seconds = time.perf_counter() - start
        steps = dataset.num_steps
        print(f"  {split:5s}: {len(dataset):4d} graphs, {dataset.n:3d} nodes, hint steps "
              f"{steps.min()}-{steps.max()} (mean {steps.mean():.1f})  [{seconds:.2f} s]")
    item = dataset[0]
    print(f"  one test item: {item}")
    stages = {}
    for name, (stage, location, type_) in SPECS[algorithm].items():
        stages.setdefault(stage, []).append(f"{name} ({location} {type_})")
    for stage in ("input", "hint", "output"):
        print(f"  {stage} fields: {', '.join(stages.get(stage, []))}")
    evaluator = Evaluator(algorithm)
    truth = dataset.targets()
    perfect = evaluator.eval({"y_true": truth, "y_pred": truth})["score"]
    print(f"  evaluator check: the true outputs score {perfect:.3f}")
    print(f"  cached under {Path(dataset.processed_dir)}")
    _quickstart_road(args)
    return _quickstart_baselines(args)


def _quickstart_road(args: argparse.Namespace) -> int:
    from .datasets import RoadAccidentDataset
    from .road import Evaluator

    print("road accidents: the synthetic demo region (generated, served on loopback, downloaded, built)")
    start = time.perf_counter()
    dataset = RoadAccidentDataset(args.road_root, "DEMO", "accident_occurrence")
    static = dataset.static_graph
    print(f"  built in {time.perf_counter() - start:.1f} s: {static.num_nodes} intersections, "
          f"{static.edge_index.shape[1]} directed road segments, {len(dataset)} months (one graph each)")
    crashes = dataset.quality_report["crashes"]
    dropped = {reason: count for reason, count in crashes["dropped"].items() if count}
    print(f"  crash records: read {crashes['records_read']}, kept {crashes['kept']}, dropped {dropped}")
    split = dataset.get_split()
    print("  splits: " + ", ".join(f"{name} {len(months)} months" for name, months in split.items()))
    year, month = split["test"][0]
    snapshot = dataset.snapshot(year, month)
    print(f"  snapshot {year}-{month:02d}: x {tuple(snapshot.x.shape)}, edge_attr {tuple(snapshot.edge_attr.shape)}, "
          f"{int(snapshot.y[snapshot.eval_mask].sum())} of {int(snapshot.eval_mask.sum())} segments with a crash")
    speed = dataset.edge_feature_names.index("maxspeed_kmh")
    truth, scores = [], []
    for year, month in split["test"]:
        month_graph = dataset.snapshot(year, month)
        truth.append(month_graph.y[month_graph.eval_mask])
        scores.append(month_graph.edge_attr[month_graph.eval_mask, speed])
    result = Evaluator("accident_occurrence").eval({"y_true": truth, "y_pred": scores, "k": 20})
    print(f"  a speed-limit heuristic on the test months: ROC-AUC {result['roc_auc']:.3f}, "
          f"AP {result['average_precision']:.3f}, Recall@20 {result['recall@20']:.3f}")
    print(f"  tables under {dataset.raw_dir}")
    return 0



def _quickstart_baselines(args: argparse.Namespace) -> int:
    from .harness import run
    from .harness.quickstart import quickstart_commands, quickstart_specs, seed_record, summary_table

    print("baselines: a small MPNN on BFS and a GraphSAGE on the demo region, trained and measured through the "
          "harness")  # the kernels compiled before the splits were generated: nothing compiles here
    specs = quickstart_specs(road_root=args.road_root, algorithm=args.algorithm)
    out = args.out if args.out is not None else None
    results = run(specs, out=out, progress=not args.no_progress)
    records = {result.name: seed_record(result.directory) for result in results}
    print(summary_table(records))
    for result, command in zip(results, quickstart_commands(specs)):
        print(f"  {result.name}: {result.directory}\n    reproduce: {command}")
    return 0


def _algo_list(args: argparse.Namespace) -> int:
    from .algo import ALGORITHMS, DISTRIBUTIONS, SPECS

    for name in ALGORITHMS:
        dist = DISTRIBUTIONS[name]
        graph = f"{dist.generator} p={list(dist.p)}" + (" directed" if dist.directed else " undirected")
        graph += " acyclic" if dist.acyclic else ""
        graph += " weighted" if dist.weighted else ""
        print(f"{name}: {graph}")
        print(f"    fields: {', '.join(f'{f}:{st[0]}' for f, st in SPECS[name].items())}")
    return 0


def _algo_generate(args: argparse.Namespace) -> int:
    from .io import gnnbench_home

    writable(args.root or gnnbench_home() / "datasets")
    from .algo import ALGORITHMS, resolve_split
    from .algo.specs import check_algorithm
    from .datasets import AlgorithmicReasoningDataset

    algorithms = [check_algorithm(name) for name in args.algorithms] or list(ALGORITHMS)
    splits = args.splits or ("train", "valid", "test")
    for split in splits:  # every name checked before any work: a rejected name creates nothing
        resolve_split(split)
    options = {"p": tuple(args.p)} if args.p else {}
    summary = []
    compile_kernels(algorithms, progress=True)
    for algorithm in algorithms:
        for split in splits:
            start = time.perf_counter()
            dataset = AlgorithmicReasoningDataset(args.root, algorithm, split, num_samples=args.num_samples,
                                                  n=args.nodes, seed=args.seed, sampler_options=options,
                                                  force_reload=args.force_reload)
            record = {"algorithm": algorithm, "split": dataset.split, "graphs": len(dataset), "n": dataset.n,
                      "seed": dataset.seed, "max_steps": dataset.max_steps,
                      "mean_steps": round(float(np.mean(dataset.num_steps)), 2),
                      "seconds": round(time.perf_counter() - start, 3), "path": dataset.processed_paths[0]}
            summary.append(record)
            print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
