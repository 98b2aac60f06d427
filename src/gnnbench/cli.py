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


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except ValueError as error:
        print(f"gnnbench: error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gnnbench",
        description="Benchmark datasets for graph learning: CLRS-30-compatible algorithmic reasoning traces "
                    "(and, in later releases, road-safety graphs).")
    parser.add_argument("--version", action="version", version=f"gnnbench {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    quick = commands.add_parser(
        "quickstart", help="generate the CLRS-30 splits of one algorithm and summarise them (offline)",
        description="Generate the CLRS-30 train/val/test splits of one algorithm as PyTorch Geometric datasets "
                    "and print what was made. Needs no network.")
    quick.add_argument("--algorithm", default="bfs", help="algorithm to generate (default: bfs)")
    quick.add_argument("--root", type=Path, default=None,
                       help="dataset directory (default: $GNNBENCH_HOME/datasets)")
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
                    "train/val/test; --split test_16 ... test_128 gives the length-generalisation sets.")
    generate.add_argument("algorithms", nargs="*", help="algorithms (default: all twelve)")
    generate.add_argument("--split", action="append", dest="splits",
                          help="split to generate, repeatable (default: train, val, test)")
    generate.add_argument("--num-samples", type=int, default=None, help="override the split's number of graphs")
    generate.add_argument("-n", "--nodes", type=int, default=None, help="override the split's graph size")
    generate.add_argument("--seed", type=int, default=None, help="override the split's seed")
    generate.add_argument("--p", type=float, action="append", default=None,
                          help="edge probability; repeat to draw one of several per graph")
    generate.add_argument("--root", type=Path, default=None, help="dataset directory")
    generate.add_argument("--force-reload", action="store_true", help="regenerate even if cached")
    generate.set_defaults(handler=_algo_generate)
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _quickstart(args: argparse.Namespace) -> int:
    from .algo import SPECS, Evaluator
    from .datasets import AlgorithmicReasoningDataset

    algorithm = args.algorithm
    print(f"gnnbench {__version__} quickstart: CLRS-30 splits of {algorithm!r}")
    for split in ("train", "val", "test"):
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
    from .algo import ALGORITHMS
    from .datasets import AlgorithmicReasoningDataset

    algorithms = args.algorithms or list(ALGORITHMS)
    options = {"p": tuple(args.p)} if args.p else {}
    summary = []
    for algorithm in algorithms:
        for split in args.splits or ("train", "val", "test"):
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
