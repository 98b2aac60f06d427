"""The branching study's result table from gnnbench's run records, written into README.md.

    gnnbench branch search --algorithms all --processor mpnn --hidden 32 --layers 3 --base-steps 100 \\
        --batch-size 4 --samples 250 --projection-dim 400 --subsets 200 --subset-size 3 --check-subsets 8 \\
        --check-steps 100 --seed 0 --out results/branch/cpu/search
    gnnbench branch train --variant stn,mtn,mmoe --algorithms all --seeds 0-2 --jobs 2 --set model.hidden=32 \\
        --set model.num_layers=3 --set train.steps=100 --set train.batch_size=4 --set train.learning_rate=0.001 \\
        --set train.eval_every=50 --set train.checkpoint_every=25 --out results/branch/cpu/runs
    gnnbench branch train --tree results/branch/cpu/search/tree.json --seeds 0-2 (same --set) \\
        --out results/branch/cpu/runs/branched-searched      # skipped when the searched tree shares every layer
    gnnbench branch train --tree results/branch/cpu/published_depths1-3.json --seeds 0-2 (same --set) \\
        --out results/branch/cpu/runs/branched-published-depths1-3
    python scripts/branch_results.py

Every number comes from the runs' verified seed records (``finished_seeds``), the search's ``tree.json`` and
``estimator.json``; the study's figures beside them are its published averages (Li et al.,
https://arxiv.org/abs/2512.01113; the plot data of ``text-graph-tasks/notebooks/plot_runtime_vs_performance.py`` in
https://github.com/VirtuosoResearch/Multitask-algorithmic-reasoning at d426c27), which train 10,000 steps on a GPU:
a reduced budget is labelled and never presented as a reproduction.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared helpers
from marked_blocks import MarkerError, markers, replace_blocks  # noqa: E402

RESULTS = REPO / "results" / "branch" / "cpu"
PUBLISHED_FIGURE = REPO / "results" / "branch" / "published_tree.png"
GPU_RESULTS = REPO / "results" / "branch" / "gpu"  # scripts/branch_gpu.py's archive, unpacked
#: Table columns: the three fixed variants, the branched network of the searched tree, of the study's tree.
VARIANTS = ("stn", "mtn", "mmoe", "branched", "published")
NAMES = {"stn": "STN", "mtn": "MTN", "mmoe": "MMoE", "branched": "branched (searched tree)",
         "published": "branched (study's tree)"}
#: The study's average accuracy (%) per method: Edge Transformer and MPNN panels (plot data, see the docstring);
#: its branched network (AutoBRANE) is its searched tree, published as the study's tree.
STUDY = {"edge_transformer": {"stn": 86.0, "mtn": 83.6, "mmoe": 84.9, "branched": 87.3, "published": 87.3},
         "mpnn": {"stn": 75.2, "mtn": 71.6, "mmoe": 71.7, "branched": 74.6, "published": 74.6}}
BLOCK = "branch:results"
MARKERS = markers(BLOCK)


def _column(config: dict) -> str:
    """A run's table column: its variant, ``published`` for a branched run on the study's tree or its first
    depths (``published_depths1-3.json``: the study's tree cut to the network's layers)."""
    from gnnbench.models.multitask import PUBLISHED_TREE

    model = config["model"]
    if model["variant"] != "branched":
        return model["variant"]
    study = [[sorted(group) for group in groups] for groups in PUBLISHED_TREE.depths[:len(model["tree"])]]
    return "published" if [[sorted(group) for group in groups] for groups in model["tree"]] == study else "branched"


def load_runs(root: Path) -> dict[str, dict]:
    """``{column: {"config", "records"}}`` of the runs under ``root`` (verified seeds only; their weights, which
    git does not hold, may be absent)."""
    from gnnbench.harness.config import config_sha256
    from gnnbench.harness.record import finished_seeds
    from gnnbench.harness.values import read_toml

    runs = {}
    for config_path in sorted(root.rglob("config.toml")):
        config = read_toml(config_path)
        if config.get("run", {}).get("benchmark") != "multitask":
            continue
        records = finished_seeds(config_path.parent, config_sha256(config), missing_ok=(".pt",))  # git holds no weights
        column = _column(config)
        if records and column not in runs:
            runs[column] = {"config": config, "records": records, "directory": config_path.parent}
    return runs


def _mean_std(values: list[float], scale: float = 100.0) -> str:
    if not values:
        return "not run"
    text = f"{scale * statistics.fmean(values):.1f}"
    if len(values) > 1:
        text += f" ± {scale * statistics.stdev(values):.1f}"
    return text


def _searched_tree_is_shared(search: Path) -> bool:
    """Whether the searched tree keeps every task in one group at every depth (then its network is MTN's)."""
    from gnnbench.models.multitask import Tree

    path = search / "tree.json"
    return path.exists() and all(len(groups) == 1 for groups in Tree.load(path).depths)


def _names(runs: dict[str, dict]) -> dict[str, str]:
    from gnnbench.models.multitask import PUBLISHED_TREE

    names = dict(NAMES)
    if runs.get("branched", {}).get("same_as") == "mtn":
        names["branched"] = "branched (searched tree = MTN's network¹)"
    if "published" in runs:
        depth = runs["published"]["config"]["model"]["num_layers"]
        if depth < PUBLISHED_TREE.num_layers:
            names["published"] = f"branched (study's tree, depths 1-{depth}²)"
    return names


def results_table(runs: dict[str, dict]) -> str:
    from gnnbench.algo.specs import ALGORITHMS

    present = [v for v in VARIANTS if v in runs]
    if not present:
        return "No multitask run has finished a seed yet."
    config = runs[present[0]]["config"]
    model, train = config["model"], config["train"]
    processor = model["processor"]
    first = next(iter(runs[present[0]]["records"].values()))
    on_gpu = str(first.get("device", "cpu")).startswith("cuda")
    where = "a GPU" if on_gpu else "the CPU"
    heads = f", {model['nb_heads']} heads" if processor in ("edge_transformer", "gatv2") else ""
    names = _names(runs)
    lines = [f"Reduced budget on {where}, not the study's protocol: processor {processor}, hidden {model['hidden']}"
             f"{heads}, {model['num_layers']} layers, **{train['steps']} steps** of batch {train['batch_size']} per "
             f"algorithm (Adam {train['learning_rate']}), fresh graphs of n = 16; test micro-F1 × 100 at n = 64, "
             "mean ± std over seeds (seeds in brackets). The study trains 10,000 steps (Edge Transformer: hidden "
             "192, 12 heads, 5 layers) on a GPU; its averages are beside ours for orientation only. Wall times are "
             "each seed's whole run (training, validation, the test at n = 64) with other runs sharing the machine "
             "(on the CPU: two or three single-threaded runs on 2 cores).", ""]
    header = "| algorithm | " + " | ".join(
        f"{names[v]} [{len(runs[v]['records'])} seed{'s' if len(runs[v]['records']) != 1 else ''}]"
        for v in present) + " |"
    lines += [header, "|---" * (1 + len(present)) + "|"]
    for algorithm in ALGORITHMS:
        cells = [_mean_std([r["test"][f"score_{algorithm}"] for r in runs[v]["records"].values()
                            if f"score_{algorithm}" in r["test"]]) for v in present]
        lines.append(f"| {algorithm} | " + " | ".join(cells) + " |")
    lines.append("| **average** | " + " | ".join(
        f"**{_mean_std([r['test']['score'] for r in runs[v]['records'].values()])}**" for v in present) + " |")
    for panel, label in (("mpnn", "study, MPNN (10,000 steps)"),
                         ("edge_transformer", "study, Edge Transformer (10,000 steps)")):
        lines.append(f"| {label} | " + " | ".join(f"{STUDY[panel][v]:.1f}" for v in present) + " |")
    lines.append("| wall time per seed (min) | " + " | ".join(
        f"{statistics.fmean(r['wall_seconds'] for r in runs[v]['records'].values()) / 60:.1f}" for v in present)
        + " |")
    memory_key, memory_label = (("cuda_allocated_bytes", "GiB, CUDA allocated") if on_gpu
                                else ("rss_bytes", "GiB, RSS"))
    lines.append(f"| peak memory per seed ({memory_label}) | " + " | ".join(
        f"{statistics.fmean(r['peak_memory'][memory_key] for r in runs[v]['records'].values()) / 2**30:.2f}"
        for v in present) + " |")
    lines.append("| parameters | " + " | ".join(
        f"{next(iter(runs[v]['records'].values()))['extra']['parameters']:,}" for v in present) + " |")
    resumed = {names[v]: sorted(k for k, r in runs[v]["records"].items() if r.get("resumed")) for v in present}
    resumed = {name: seeds for name, seeds in resumed.items() if seeds}
    if resumed:
        lines += ["", "Resumed from a checkpoint (their wall time counts from the resume): " + "; ".join(
            f"{name} seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
            for name, seeds in resumed.items()) + "."]
    if runs.get("branched", {}).get("same_as") == "mtn":
        lines += ["", "¹ The search kept all twelve algorithms in one group at every depth (below), so the branched "
                      "network of the searched tree is MTN's network: the same parameters, initial values, batches "
                      "and updates (`tests/test_multitask_net.py::"
                      "test_branched_network_of_the_shared_tree_is_the_shared_network`); its column repeats MTN's "
                      "runs."]
    if names["published"].endswith("²)"):
        from gnnbench.models.multitask import PUBLISHED_TREE
        from gnnbench.models.multitask.figures import short_name

        depth = runs["published"]["config"]["model"]["num_layers"]
        last = " | ".join("{" + ", ".join(short_name(a) for a in group) + "}"
                          for group in PUBLISHED_TREE.depths[depth - 1])
        lines += ["", f"² The study's published tree (below) has {PUBLISHED_TREE.num_layers} depths; this network "
                      f"has {depth} layers, so it takes the tree's first {depth} depths "
                      f"(`results/branch/cpu/published_depths1-{depth}.json`; depth {depth}: {last})."]
    return "\n".join(lines)


def _interaction_notes(search: Path) -> list[str]:
    """Why task sets stayed whole: the SDP's objective does not see a task's own level (for any partition,
    ``<T, X>`` of the part ``(r_i + r_j) / 2``, ``r`` the row means, is ``sum(r)``), only the interactions
    ``D_ij = (T_ij - r_i + T_ji - r_j) / 2``, against a penalty of λ per group. The sweep is re-solved from the
    stored ``T`` to count the λ values that return one group."""
    import numpy as np

    from gnnbench.models.multitask import cluster_tasks

    parts = []
    search_json = json.loads((search / "search.json").read_text())
    settings = search_json["settings"]
    for entry in search_json["entries"]:
        if len(entry["groups"]) != 1 or len(entry["tasks"]) < 2:
            continue
        T = np.asarray(json.loads((search / entry["affinity_file"]).read_text())["matrix"], dtype=float)
        rows = T.mean(axis=1)
        D = (T - rows[:, None] + T.T - rows[None, :]) / 2
        off = np.abs(D[~np.eye(len(T), dtype=bool)])
        sweep = cluster_tasks(T).partitions
        whole = sum(len(partition) == 1 for partition in sweep.values())
        parts.append(f"depth {entry['depth']}: largest |D| {off.max():.3f}, mean {off.mean():.3f}; "
                     f"{whole} of the {len(sweep)} λ values give one group")
    if not parts:
        return []
    return ["Why the search kept every task set whole: the SDP's objective depends on `T` only through the "
            "interactions `D_ij = (T_ij − r_i + T_ji − r_j) / 2` (`r` the row means: each task's own level adds the "
            "same `Σ r_i` to every partition), and at this budget they are small against a penalty of λ ≥ 0.1 per "
            "group (" + "; ".join(parts) + f"). The base networks here are far from trained ({settings['base_steps']} "
            f"steps at hidden {settings['hidden']}), so training with one task or another barely moves the estimated "
            "scores."]


def tree_comparison(search: Path) -> str:
    from gnnbench.models.multitask import PUBLISHED_TREE, Tree
    from gnnbench.models.multitask.figures import short_name

    if not (search / "tree.json").exists():
        return "The tree search has not finished yet."
    tree = Tree.load(search / "tree.json")
    settings = json.loads((search / "search.json").read_text())["settings"]

    def groups(t: Tree, depth: int) -> str:
        return " \\| ".join("{" + ", ".join(short_name(a) for a in g) + "}" for g in t.depths[depth - 1])

    lines = [f"Searched tree ({settings['processor']}, hidden {settings['hidden']}, {settings['num_layers']} layers, "
             f"{settings['base_steps']} base steps per entry, {settings['num_samples']} samples per task, "
             f"{settings['num_subsets']} subsets of {settings['subset_size']}) beside the study's published tree "
             "(its 5-layer Edge Transformer; its layer 1 is shared by all twelve):", "",
             "| layer | searched here | study (published) |", "|---|---|---|"]
    for depth in range(1, max(tree.num_layers, PUBLISHED_TREE.num_layers) + 1):
        mine = groups(tree, depth) if depth <= tree.num_layers else "—"
        theirs = groups(PUBLISHED_TREE, depth) if depth <= PUBLISHED_TREE.num_layers else "—"
        lines.append(f"| {depth} | {mine} | {theirs} |")
    lines += ["", *_interaction_notes(search)]
    check_path = search / "estimator.json"
    if check_path.exists():
        c = json.loads(check_path.read_text())
        pearson = "n/a" if c["pearson"] is None else f"{c['pearson']:.2f}"
        spearman = "n/a" if c["spearman"] is None else f"{c['spearman']:.2f}"
        lines += ["", f"Estimator check (`--check-subsets {c['num_subsets']}`): {c['num_subsets']} of the root's "
                      f"subsets trained for real ({c['steps']} steps each from the root's base network) against "
                      f"their estimates, {c['pairs']} (subset, task) pairs: mean |estimated − real| "
                      f"{100 * c['mean_abs_error']:.1f} points, mean relative error "
                      f"{100 * c['mean_relative_error']:.1f}% ({c['within_5_percent']} of {c['pairs']} within 5%; "
                      f"the study claims within 5%), Pearson r {pearson}, Spearman ρ {spearman}."]
    figures = [f"![task affinity at depth 1]({(search / 'affinity' / 'depth1-1.png').relative_to(REPO)})"]
    if (search / "tree.png").exists():
        figures.append(f"![searched tree]({(search / 'tree.png').relative_to(REPO)})")
    figures.append(f"![the study's published tree]({PUBLISHED_FIGURE.relative_to(REPO)})")
    lines += ["", "Task affinity at depth 1 (row: target task; column: trained with), the searched tree, and the "
                  "study's published tree:", "", *figures]
    return "\n".join(lines)


def published_figure() -> None:
    """``results/branch/published_tree.png``: the study's tree drawn as the search draws its own."""
    from gnnbench.models.multitask import PUBLISHED_TREE
    from gnnbench.models.multitask.figures import tree_figure

    tree_figure(PUBLISHED_TREE, PUBLISHED_FIGURE, title="the study's published tree (Edge Transformer, 5 layers)")


def unpack_gpu_archive(archive: Path, parent: Path) -> None:
    """Unpack ``et_runs.tar.gz`` (members under ``gpu/``; regular files and folders only) into ``parent``."""
    import tarfile

    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            if not (member.isfile() or member.isdir()) or member.name.split("/")[0] != "gpu" \
                    or ".." in member.name.split("/"):
                raise ValueError(f"{archive}: unexpected member {member.name!r}")
        tar.extractall(parent, members=members, filter="data")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=RESULTS / "runs")
    parser.add_argument("--search", type=Path, default=RESULTS / "search")
    parser.add_argument("--gpu", type=Path, default=GPU_RESULTS, help="the Edge Transformer panel's runs")
    parser.add_argument("--gpu-archive", type=Path, default=None,
                        help="unpack scripts/branch_gpu.py's et_runs.tar.gz into results/branch first")
    parser.add_argument("--print", action="store_true", help="print the section instead of writing README.md")
    args = parser.parse_args(argv)
    if args.gpu_archive is not None:
        unpack_gpu_archive(args.gpu_archive, args.gpu.parent)
    runs = load_runs(args.runs)
    shared = _searched_tree_is_shared(args.search)
    if "branched" not in runs and "mtn" in runs and shared:
        runs["branched"] = {**runs["mtn"], "same_as": "mtn"}
    if not args.print:
        published_figure()
    section = results_table(runs) + "\n\n" + tree_comparison(args.search)
    gpu_runs = load_runs(args.gpu) if args.gpu.exists() else {}
    if gpu_runs:
        section += "\n\nEdge Transformer panel on a GPU (`scripts/branch_gpu.py`: variant by variant, each variant's " \
                   "seeds at once, so wall times are under shared load):\n\n" + results_table(gpu_runs)
    if args.print:
        print(section)
        return 0
    try:
        README.write_text(replace_blocks(README.read_text(), {BLOCK: section}, "README.md"))
    except MarkerError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
