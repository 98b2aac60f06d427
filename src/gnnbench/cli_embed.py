"""``gnnbench embed tiles``: image embeddings of a state's crops, thin over :mod:`gnnbench.road.tiles.embed.run`."""

from __future__ import annotations

import argparse

from .cli_options import number, root_option, usage


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add ``embed`` (with ``embed tiles``) to the ``gnnbench`` command."""
    from .road.tiles.embed.models import IMAGE_MODELS

    embed = commands.add_parser(
        "embed", help="image embeddings of the satellite crops of a state",
        description="Embed the crops made by `gnnbench build tiles` with a pretrained image model; the "
                    "embeddings are aligned to the node table and read by RoadAccidentDataset(image_features=...).")
    embed_commands = embed.add_subparsers(title="embed commands", metavar="COMMAND")
    embed.set_defaults(handler=lambda args, parser=embed: usage(parser))
    tiles = embed_commands.add_parser(
        "tiles", help="embed every intersection's crop of a state (batched; fp16 and channels-last on a GPU)",
        description="Stream the state's crop shards (decoded on the host cores), preprocess on the device (resize, "
                    "centre crop, normalise) and embed them in batches: fp16 autocast and channels-last on CUDA, "
                    "fp32 on the CPU. Writes embeddings.npy (float16, one row per node; zeros for nodes without a "
                    "usable crop), available.npy and a manifest with the model, the weights' SHA-256 and the "
                    "preprocessing under ROOT/imagery/STATE/SOURCE/embeddings/MODEL/.",
        epilog="Examples: gnnbench embed tiles --state MA --model clip-vit-b32 --device cuda;  gnnbench embed tiles "
               "--state MA --model resnet18 --weights /path/to/resnet18-f37072fd.pth;  gnnbench embed tiles "
               "--state DEMO --model resnet18 --weights random")
    tiles.add_argument("--state", required=True, help="state code (e.g. MA) or DEMO")
    tiles.add_argument("--model", default="clip-vit-b32", metavar="MODEL",
                       help=f"image model: {', '.join(IMAGE_MODELS)} (default: clip-vit-b32, 512-d CLIP features)")
    tiles.add_argument("--weights", default=None, metavar="PATH|random",
                       help="weights file to load instead of the library's default download (a machine without "
                            "network access needs this), or 'random' for a seeded random initialisation")
    tiles.add_argument("--source", default=None, metavar="KEY",
                       help="imagery source key (needed only when the state has crops from several sources)")
    root_option(tiles, "road data directory (default: $GNNBENCH_HOME/road); imagery/ and tables/ live there")
    tiles.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                       help="torch device (default: auto, CUDA when available); cuda:N for one GPU")
    tiles.add_argument("--batch-size", type=number(int, "--batch-size", minimum=1), default=256, metavar="N",
                       help="images per batch (default: 256)")
    tiles.add_argument("--no-amp", action="store_true", help="run fp32 on CUDA too (no fp16 autocast)")
    tiles.add_argument("--no-channels-last", action="store_true",
                       help="keep the default (contiguous) memory format instead of channels-last")
    tiles.add_argument("--decode-workers", type=number(int, "--decode-workers", minimum=0), default=None,
                       metavar="N",
                       help="host processes decoding the crops (default: the CPU count; 0: decode in this process)")
    tiles.add_argument("--scheduler", default="none", metavar="ADDRESS",
                       help="embed groups of crops as Dask tasks: local (a LocalCluster here), or a scheduler "
                            "address such as tcp://host:8786 whose workers share GNNBENCH_HOME (and the --weights "
                            "file); default none: this process with --decode-workers decoding processes")
    tiles.add_argument("--workers", type=number(int, "--workers", minimum=1), default=None, metavar="N",
                       help="--scheduler local: worker processes (default: the cores, at most 4)")
    tiles.add_argument("--no-progress", action="store_true", help="no progress bar")
    tiles.set_defaults(handler=_embed_tiles)


def _embed_tiles(args: argparse.Namespace) -> int:
    from .io.manifest import read_manifest
    from .road.tiles.embed.run import embed_tiles
    from .road.tiles.layout import MANIFEST_NAME

    directory = embed_tiles(args.state, model=args.model, weights=args.weights, source=args.source, root=args.root,
                            device=args.device, batch_size=args.batch_size, amp=not args.no_amp,
                            channels_last=not args.no_channels_last, num_workers=args.decode_workers,
                            progress=not args.no_progress, scheduler=args.scheduler, workers=args.workers)
    manifest = read_manifest(directory / MANIFEST_NAME)
    counts, parameters, speed = manifest["counts"], manifest["parameters"], manifest["throughput"]
    weights = parameters["weights"]
    origin = (f"random (seed {weights['seed']})" if weights["origin"] == "random"
              else f"{weights['origin']} {weights['file_name']} sha256 {weights['sha256'][:12]}")
    print(f"{parameters['model']}: {counts['embedded']:,} of {counts['nodes']:,} nodes embedded "
          f"({counts['unavailable']:,} without a usable crop), {manifest['dim']}-d, weights {origin}, "
          f"{parameters['device']} {parameters['dtype']}, {speed['images_per_s'] or 0:,.0f} images/s")
    print(directory)
    return 0
