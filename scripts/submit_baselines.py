"""Submit the reference baselines' runs (``scripts/reference_numbers.py``) to the leaderboard, as any user would.

    python scripts/reference_numbers.py --part road --regions DEMO     # road: 5 models x seeds 0-9, --hessian
    python scripts/reference_numbers.py --part algo --budget cpu       # algo: MPNN x 12 algorithms x seeds 0-2
    python scripts/submit_baselines.py                                 # -> leaderboard/submissions/
    gnnbench leaderboard validate && gnnbench leaderboard render

Every entry goes through :func:`gnnbench.leaderboard.submit.submit`, the function behind ``gnnbench submit``: the
metrics, predictions and Hessian columns are the harness's run records, nothing is typed in here but the method's
description. A run without the Hessian column (``--hessian``) or with fewer seeds than the board's rules is
reported and left out, never submitted partially. The state-scale synthetic region's runs are left out: 2 seeds
at a reduced budget (the rules ask 10) and 76 MB of predictions per seed (the board's limit is 16 MB).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "reference"
SUBMISSIONS = REPO / "leaderboard" / "submissions"
PACKAGE_URL = "https://pypi.org/project/gnnbench/"
AUTHORS = ["gnnbench developers"]

ROAD_NAMES = {"mlp": "MLP", "gcn": "GCN", "sage": "GraphSAGE", "gin": "GIN", "gat": "GAT"}
ALGO_NAMES = {"mpnn": "MPNN", "triplet_gmpnn": "Triplet-GMPNN", "pgn": "PGN", "gatv2": "GATv2"}
ML4ROADSAFETY_PAPER = "https://arxiv.org/abs/2311.00164"  # Nippani et al., NeurIPS 2023 Datasets and Benchmarks
CLRS_PAPER = "https://arxiv.org/abs/2205.15659"  # Veličković et al., "The CLRS Algorithmic Reasoning Benchmark"


def road_method(config: dict) -> dict:
    encoder = config["model"]["encoder"]
    state = config["data"]["state"]
    return {"name": f"{ROAD_NAMES[encoder]} (gnnbench baseline)",
            "description": f"gnnbench's {ROAD_NAMES[encoder]} node encoder and link predictor under ML4RoadSafety's "
                           f"protocol ({config['train']['epochs']} epochs, hidden {config['model']['hidden_channels']})"
                           f": gnnbench run road --state {state} --model {encoder} --task {config['data']['task']} "
                           f"--seeds 0-9 --hessian",
            "authors": AUTHORS, "contact": PACKAGE_URL, "code_url": PACKAGE_URL, "paper": ML4ROADSAFETY_PAPER}


def algo_method(config: dict, budget_text: str) -> dict:
    processor = config["model"]["processor"]
    algorithm = config["data"]["algorithm"]
    return {"name": f"{ALGO_NAMES[processor]} (gnnbench baseline, {budget_text})",
            "description": f"gnnbench's encode-process-decode network with the {ALGO_NAMES[processor]} processor "
                           f"(hidden {config['model']['hidden']}, batch {config['train']['batch_size']}, "
                           f"{config['train']['steps']} steps): python scripts/reference_numbers.py --part algo "
                           f"--budget cpu --algorithms {algorithm}",
            "authors": AUTHORS, "contact": PACKAGE_URL, "code_url": PACKAGE_URL, "paper": CLRS_PAPER}


def run_directories() -> list[Path]:
    """The road DEMO runs with the Hessian column and the reduced-budget algorithmic runs."""
    road = sorted(RESULTS.glob("road/road-DEMO-*"))
    algo = sorted(RESULTS.glob("cpu/algo/algo-*"))
    return [directory for directory in road + algo if (directory / "config.toml").is_file()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=SUBMISSIONS, help="submissions directory")
    parser.add_argument("--date", default=None, help="submission date, ISO (default: today)")
    args = parser.parse_args(argv)
    from gnnbench.harness.values import read_toml
    from gnnbench.leaderboard.schema import MIN_SEEDS, SubmissionError
    from gnnbench.leaderboard.submit import submit

    submitted, skipped = [], []
    for directory in run_directories():
        config = read_toml(directory / "config.toml")
        benchmark = config["run"]["benchmark"]
        if not config["hessian"]["enabled"]:
            skipped.append(f"{directory.name}: no Hessian column (a run of the README table without --hessian)")
            continue
        if benchmark == "road":
            method, budget = road_method(config), ""
        else:
            steps = config["train"]["steps"]
            budget = f"{steps} steps on a 2-core CPU; CLRS-30's protocol trains 10,000"
            method = algo_method(config, f"{steps} steps, CPU")
        seeds = list(range(MIN_SEEDS[benchmark]))
        try:
            folder = submit(directory, method=method, out=args.out, budget=budget, seeds=seeds, overwrite=True,
                            submitted=args.date)
        except SubmissionError as error:
            skipped.append(f"{directory.name}: {error}")
            continue
        submitted.append(folder)
        print(f"submitted {directory.relative_to(REPO)} -> {folder.relative_to(REPO)}")
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(f"{len(submitted)} submitted, {len(skipped)} skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
