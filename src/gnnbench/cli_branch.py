"""The branching study's commands: ``gnnbench branch train`` (and ``gnnbench branch search``), thin over
:mod:`gnnbench.harness.multitask_family` and :mod:`gnnbench.models.multitask`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .cli_options import number, usage
from .cli_run import dry_run, prepare_run

PUBLISHED = "published"  # --tree published: the study's final tree (gnnbench.models.multitask.PUBLISHED_TREE)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add ``branch`` to the ``gnnbench`` command."""
    branch = commands.add_parser(
        "branch", help="multitask networks over the twelve algorithms: train STN / MTN / MMoE / branched networks",
        description="One network over several CLRS-30 algorithms (the branching study, Li et al., "
                    "https://arxiv.org/abs/2512.01113): per-algorithm encoders and decoders around an L-layer "
                    "processor stack that is per algorithm (stn), fully shared (mtn), a mixture of experts with a "
                    "gate per algorithm (mmoe), or branched: at depth l one layer per group of algorithms, as a "
                    "tree file says. A tree file is JSON: {\"format\": 1, \"algorithms\": [...], \"depths\": "
                    "{\"1\": [[\"bfs\", \"dfs\", ...]], \"2\": [[\"bfs\", \"dfs\"], [\"dijkstra\"]], ...}}, each "
                    "depth a partition of the algorithms that refines the one above.",
        epilog="Examples: gnnbench branch train --tree tree.json --seeds 0-2;  gnnbench branch train --tree published "
               "--processor edge_transformer --device cuda;  gnnbench branch train --variant stn,mtn,mmoe "
               "--algorithms bfs,dfs,dijkstra --set train.steps=500")
    branch_commands = branch.add_subparsers(title="branch commands", metavar="COMMAND")
    branch.set_defaults(handler=lambda args, parser=branch: usage(parser))
    _train_parser(branch_commands)
    _search_parser(branch_commands)


# ------------------------------------------------------------------------------------------------------ train


def _train_parser(branch_commands: argparse._SubParsersAction) -> None:
    train = branch_commands.add_parser(
        "train", help="train a branched (or STN, MTN, MMoE) network through the harness into a run directory",
        description="Train a multitask network on its algorithms with the harness's multitask family (shipped "
                    "config `multitask`: the study's settings, every step one Adam update per algorithm, selection "
                    "on the mean validation score, test per algorithm at n = 64), over seeds, resumably. The run "
                    "directory holds config.toml (with the tree), tree.json, per seed the record (valid and test "
                    "score = the mean over algorithms, score_<algorithm> each; wall time, peak memory), the "
                    "selected model and the test predictions (with an algorithm column).",
        epilog="--set overrides any key of the multitask config (e.g. model.hidden=64, train.steps=500, "
               "data.train=clrs30); a CPU budget is labelled by those keys in the run's config. A comma-separated "
               "--variant or --processor runs one run per value.")
    train.add_argument("--tree", default=None, metavar="TREE.json",
                       help=f"tree file (implies --variant branched); '{PUBLISHED}': the study's final tree over "
                            "the twelve algorithms (5 layers)")
    train.add_argument("--variant", default=None, metavar="VARIANT",
                       help="stn, mtn, mmoe (no tree) or branched (needs --tree); default: branched with --tree, "
                            "else the config's (mtn)")
    train.add_argument("--algorithms", default=None, metavar="all|A,B,...",
                       help="algorithms, in the order of each step's updates (default: the tree's, else all twelve)")
    train.add_argument("--processor", default=None, help="processor of every layer (default: mpnn), e.g. "
                                                         "triplet_gmpnn, edge_transformer")
    train.add_argument("--seeds", default=None, metavar="SEEDS", help="seeds: '0-2', '0,3,5' or '4' (default: 0)")
    train.add_argument("--set", action="append", dest="overrides", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. train.steps=500 (repeatable)")
    train.add_argument("--out", type=Path, default=None, metavar="DIR",
                       help="run directory (default: $GNNBENCH_HOME/runs/<run name>; several runs: one "
                            "sub-directory each)")
    train.add_argument("--jobs", type=number(int, "--jobs", minimum=1), default=1, metavar="N",
                       help="seeds (and runs) trained at once in local processes (default: 1)")
    train.add_argument("--device", default=None, help="torch device of training: cpu (default), cuda, cuda:N")
    train.add_argument("--hessian", action="store_true",
                       help="add the Hessian column (of the sum of the algorithms' losses) to each seed's record")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.add_argument("--force", action="store_true",
                       help="reuse a run directory holding another config (its contents move to superseded/)")
    train.add_argument("--dry-run", action="store_true", help="print the resolved config(s), train nothing")
    train.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from .algo.specs import ALGORITHMS, check_algorithm
    from .harness import resolve, run
    from .harness.multitask_family import tree_value
    from .models.multitask import PUBLISHED_TREE, Tree

    tree = None
    if args.tree is not None:
        tree = PUBLISHED_TREE if args.tree == PUBLISHED else Tree.load(args.tree)
    variant = args.variant if args.variant is not None else "branched" if tree is not None else None
    if tree is not None and variant != "branched":
        raise ValueError(f"--tree goes with --variant branched, not {variant!r} (stn, mtn and mmoe have no tree)")
    if args.algorithms is None:
        algorithms = list(tree.algorithms) if tree is not None else None
    elif args.algorithms.strip().lower() == "all":
        algorithms = list(ALGORITHMS)
    else:
        algorithms = [check_algorithm(name.strip()) for name in args.algorithms.split(",") if name.strip()]
        if not algorithms:
            raise ValueError("--algorithms names no algorithm (give 'all' or a comma-separated list)")
    overrides = []
    if algorithms is not None:
        overrides.append(f"data.algorithms={json.dumps(algorithms)}")
    if tree is not None:
        if algorithms is not None and set(algorithms) != set(tree.algorithms):
            raise ValueError(f"--algorithms ({', '.join(algorithms)}) differ from the tree's "
                             f"({', '.join(tree.algorithms)})")
        overrides += [f"model.tree={json.dumps(tree_value(tree))}", f"model.num_layers={tree.num_layers}"]
    shortcuts = {"model": variant, "processor": args.processor, "device": args.device, "hessian": args.hessian}
    specs = resolve("multitask", shortcuts=shortcuts, overrides=[*overrides, *args.overrides], seeds=args.seeds)
    out = args.out
    if args.dry_run:
        return dry_run(specs, out)
    prepare_run(specs, out, progress=not args.no_progress)
    results = run(specs, out=out, jobs=args.jobs, progress=not args.no_progress, force=args.force)
    for spec, result in zip(specs, results):
        metrics = result.summary["metrics"]
        seeds = len(result.summary["seeds"])
        model = spec.config["model"]
        print(f"{result.name}: {model['variant']}, {model['processor']}, hidden {model['hidden']}, "
              f"{model['num_layers']} layers, {spec.config['train']['steps']} steps, {seeds} seed(s)  "
              f"[{result.directory}]")
        for algorithm in [*spec.config["data"]["algorithms"], None]:
            key = "test.score" if algorithm is None else f"test.score_{algorithm}"
            entry = metrics.get(key)
            value = "no score" if entry is None else f"{entry['mean']:.4f}" + (
                "" if entry["std"] is None else f" ± {entry['std']:.4f}")
            print(f"  {'mean' if algorithm is None else algorithm:30s} test {value}")
    return 0


# ------------------------------------------------------------------------------------------------------ search


def _search_parser(branch_commands: argparse._SubParsersAction) -> None:
    """``gnnbench branch search``: the layer-wise tree search (task affinity, clustering, tree file, figures)."""
    from .models.multitask.search import SearchSettings

    d = SearchSettings()
    search = branch_commands.add_parser(
        "search", help="search a branching tree: task affinities from projected gradients, SDP clustering, "
                       "layer by layer",
        description="The branching study's layer-wise search (AutoBRANE). A queue of (task set, depth) starts at "
                    "(all tasks, 1); each entry trains a shared base network on its tasks from its parent's weights "
                    "(the layers above the depth frozen), estimates the task affinity T[i, j] from per-sample "
                    "gradients of the layers at and below the depth (projected to --projection-dim dimensions) "
                    "with a logistic regression over --subsets random subsets of --subset-size tasks, and splits "
                    "the tasks by the SDP clustering of T; each group becomes an entry at the next depth. Writes "
                    "tree.json (for `gnnbench branch train --tree`), search.json (every entry, its lambda, times), "
                    "affinity/*.json and *.png heatmaps, and tree.png (the tree as a dendrogram).",
        epilog="The defaults are a CPU budget (MPNN, hidden 64, 3 layers, 200 base steps); the study's: "
               "--processor edge_transformer --hidden 192 --heads 12 --layers 5 --batch-size 4 --lr 2.5e-4 on a "
               "GPU. --check-subsets K also trains K of the sampled subsets for real and reports the estimated "
               "against the real scores (estimator.json).")
    search.add_argument("--algorithms", default="all", metavar="all|A,B,...", help="tasks (default: all twelve)")
    search.add_argument("--processor", default=d.processor, help=f"processor of every layer (default: {d.processor})")
    search.add_argument("--hidden", type=number(int, "--hidden", minimum=1), default=d.hidden, metavar="H",
                        help=f"hidden size of every layer (default: {d.hidden})")
    search.add_argument("--layers", type=number(int, "--layers", minimum=1), default=d.num_layers, metavar="L",
                        help=f"processor layers, the tree's depth (default: {d.num_layers})")
    search.add_argument("--heads", type=number(int, "--heads", minimum=1), default=d.nb_heads, metavar="K",
                        help="attention heads (gatv2, edge_transformer)")
    search.add_argument("--base-steps", type=number(int, "--base-steps", minimum=1), default=d.base_steps,
                        metavar="N", help=f"training steps of each entry's base network (default: {d.base_steps})")
    search.add_argument("--batch-size", type=number(int, "--batch-size", minimum=1), default=d.batch_size,
                        metavar="B", help=f"graphs per algorithm per step (default: {d.batch_size})")
    search.add_argument("--lr", type=number(float, "--lr", minimum=0.0), default=d.learning_rate, metavar="LR",
                        help=f"Adam learning rate of the base networks (default: {d.learning_rate})")
    search.add_argument("--samples", type=number(int, "--samples", minimum=1), default=d.num_samples, metavar="N",
                        help=f"training graphs per task for the gradient features (default: {d.num_samples})")
    search.add_argument("--projection-dim", type=number(int, "--projection-dim", minimum=1),
                        default=d.projection_dim, metavar="D",
                        help=f"dimension of the random projection of the gradients (default: {d.projection_dim})")
    search.add_argument("--subsets", type=number(int, "--subsets", minimum=1), default=d.num_subsets, metavar="S",
                        help=f"random task subsets per entry (default: {d.num_subsets})")
    search.add_argument("--subset-size", type=number(int, "--subset-size", minimum=1), default=d.subset_size,
                        metavar="K", help=f"tasks per subset (default: {d.subset_size})")
    search.add_argument("--regularization", type=number(float, "--regularization", minimum=0.0),
                        default=d.regularization, metavar="LAMBDA", help="the logistic regression's L2 weight")
    search.add_argument("--clustering", choices=("sdp", "spectral"), default=d.clustering,
                        help="sdp (cvxpy; spectral when no solver succeeds) or spectral (default: sdp)")
    search.add_argument("--max-depth", type=number(int, "--max-depth", minimum=1), default=None, metavar="L",
                        help="deepest depth at which tasks are split (default: --layers)")
    search.add_argument("--max-groups", type=number(int, "--max-groups", minimum=1), default=None, metavar="G",
                        help="most groups (layers) at one depth (default: no cap)")
    search.add_argument("--check-subsets", type=number(int, "--check-subsets", minimum=0), default=0, metavar="K",
                        help="train K of the root's subsets for real and compare with the estimates (default: 0)")
    search.add_argument("--check-steps", type=number(int, "--check-steps", minimum=1), default=None, metavar="N",
                        help="training steps of each checked subset (default: --base-steps)")
    search.add_argument("--seed", type=number(int, "--seed", minimum=0), default=d.seed,
                        help="seed of the initialisation, batches, projection and subsets (default: 0)")
    search.add_argument("--device", default=d.device, help="torch device: cpu (default), cuda, cuda:N")
    search.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    search.add_argument("--no-figures", action="store_true", help="skip the heatmaps and the tree figure")
    search.add_argument("--no-progress", action="store_true", help="no progress bars")
    search.set_defaults(handler=_search)


def _search(args: argparse.Namespace) -> int:
    from .algo.specs import ALGORITHMS, check_algorithm
    from .models.multitask.search import SearchSettings, search_tree

    if args.algorithms.strip().lower() == "all":
        algorithms = list(ALGORITHMS)
    else:
        algorithms = [check_algorithm(name.strip()) for name in args.algorithms.split(",") if name.strip()]
    settings = SearchSettings(
        processor=args.processor, hidden=args.hidden, num_layers=args.layers, nb_heads=args.heads,
        base_steps=args.base_steps, batch_size=args.batch_size, learning_rate=args.lr, num_samples=args.samples,
        projection_dim=args.projection_dim, num_subsets=args.subsets, subset_size=args.subset_size,
        regularization=args.regularization, clustering=args.clustering, max_depth=args.max_depth,
        max_groups=args.max_groups, seed=args.seed, device=args.device)
    result = search_tree(algorithms, settings, args.out, progress=not args.no_progress,
                         check_subsets=args.check_subsets, check_steps=args.check_steps,
                         figures=not args.no_figures)
    print(f"tree: {args.out / 'tree.json'}  ({result.seconds:.0f} s; train it: gnnbench branch train --tree "
          f"{args.out / 'tree.json'})")
    for depth, groups in enumerate(result.tree.depths, start=1):
        print(f"  layer {depth}: " + " | ".join("{" + ", ".join(group) + "}" for group in groups))
    if result.check is not None:
        c = result.check
        print(f"estimator check ({c['num_subsets']} subsets, {c['steps']} steps each): mean |estimated - real| "
              f"{c['mean_abs_error']:.4f}, mean relative error {100 * c['mean_relative_error']:.1f}%, "
              f"within 5%: {c['within_5_percent']}/{c['pairs']}, Pearson r {c['pearson'] if c['pearson'] is None else round(c['pearson'], 3)}  "
              f"[{args.out / 'estimator.json'}]")
    return 0
