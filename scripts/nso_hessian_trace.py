"""Does noise stability optimization (NSO) lower the Hessian trace? NSO against plain training, compared at equal
steps and at equal gradient evaluations, on a synthetic state-scale road region.

Region: the generator of ``tests/synthetic/state_scale.py`` (nothing real: a jittered street grid with
Delaware-format crash records), by default at a reduced size, 20,000 nodes / 46,000 directed edges / 200,000 crash
rows over 2018-2019 (its CI size; the full 300k-node region does not train within minutes on two CPU cores; the
demo region, 96 nodes, is not for reporting). Splits: 2018 trains (12 months), 2019 tests (12 months).

Task: monthly accident occurrence. A 2-layer GCN over intersections plus an MLP on (source, target, road
features) scores every road segment; the loss is binary cross-entropy over the segments (``eval_mask``) of one
month. Each step uses one training month, in an order drawn from the seed (the same for every run of that seed).

Runs per seed, all from the same initialisation and with the same Adam settings:

* ``plain``: ``--steps`` steps, one gradient evaluation (forward + backward) per step;
* ``nso``: ``--steps`` steps of :func:`gnnbench.hessian.nso_gradient` with ``lam = 0`` (the paper's Algorithm 1):
  ``2k`` gradient evaluations per step (``k = --samples`` two-point noise draws) plus one forward pass without
  gradient (the unperturbed loss it returns);
* ``plain, equal gradient evaluations``: ``2k * --steps`` plain steps, as many gradient evaluations as ``nso``.

Reported: the training loss (mean over the 12 training months), the test loss and the test ROC-AUC and average
precision (:class:`gnnbench.road.Evaluator`, each segment once), and the Hessian trace of the training loss
(Hutch++ per layer, ``--matvecs`` Hessian-vector products in all, split over the 12 training months, mean over
months, with its standard error).

    python scripts/nso_hessian_trace.py [--seeds 0 1 2] [--steps 100] [--sigma 0.05] [--samples 2]
        [--matvecs 240] [--nodes 20000 --edges 46000 --crashes 200000] [--work DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch_geometric.nn import GCNConv

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic generators (not installed)

from synthetic.state_scale import generate_state_scale  # noqa: E402

from gnnbench.datasets import RoadAccidentDataset  # noqa: E402
from gnnbench.hessian import nso_gradient, trace  # noqa: E402
from gnnbench.road import Evaluator  # noqa: E402

DEMO_NODES = 96  # the demo region, for scale


class EdgeScorer(torch.nn.Module):
    def __init__(self, node_features: int, edge_features: int, hidden: int = 32) -> None:
        super().__init__()
        self.conv1 = GCNConv(node_features, hidden)
        self.conv2 = GCNConv(hidden, hidden)
        self.head = torch.nn.Sequential(torch.nn.Linear(2 * hidden + edge_features, hidden), torch.nn.ReLU(),
                                        torch.nn.Linear(hidden, 1))

    def forward(self, x, edge_index, edge_attr):
        h = torch.relu(self.conv1(x, edge_index))
        h = torch.relu(self.conv2(h, edge_index))
        return self.head(torch.cat([h[edge_index[0]], h[edge_index[1]], edge_attr], dim=1)).squeeze(-1)


def standardise(months):
    xs = torch.cat([m.x for m in months])
    x_mean, x_std = xs.mean(0), xs.std(0).clamp_min(1e-6)
    e_mean, e_std = months[0].edge_attr.mean(0), months[0].edge_attr.std(0).clamp_min(1e-6)
    for month in months:
        month.x = (month.x - x_mean) / x_std
        month.edge_attr = (month.edge_attr - e_mean) / e_std
    return months


def run(seed: int, kind: str, args, train, test) -> dict:
    """One training run; ``kind`` is "plain", "nso" or "plain-equal-evals"."""
    torch.manual_seed(seed)
    model = EdgeScorer(train[0].x.shape[1], train[0].edge_attr.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    evaluations_per_nso_step = 2 * args.samples
    steps = args.steps * evaluations_per_nso_step if kind == "plain-equal-evals" else args.steps
    order = torch.randint(0, len(train), (steps,), generator=torch.Generator().manual_seed(1000 + seed))
    noise = torch.Generator().manual_seed(2000 + seed)

    def loss_of(month):
        logits = model(month.x, month.edge_index, month.edge_attr)
        mask = month.eval_mask
        return torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], (month.y[mask] > 0).float())

    evaluations = 0
    start = time.perf_counter()
    for step in range(steps):
        month = train[int(order[step])]
        optimizer.zero_grad()
        if kind == "nso":
            nso_gradient(model, lambda: loss_of(month), sigma=args.sigma, num_samples=args.samples, lam=0.0,
                         generator=noise)
            evaluations += evaluations_per_nso_step
        else:
            loss_of(month).backward()
            evaluations += 1
        optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        train_loss = statistics.fmean(float(loss_of(month)) for month in train)
        test_loss = statistics.fmean(float(loss_of(month)) for month in test)
        scores = [torch.sigmoid(model(m.x, m.edge_index, m.edge_attr))[m.eval_mask] for m in test]
    metrics = Evaluator("accident_occurrence").eval({"y_true": [m.y[m.eval_mask] for m in test], "y_pred": scores,
                                                     "k": 100})
    measured = trace(model, loss_of, method="hutch++", num_matvecs=args.matvecs, seed=seed, data=train,
                     reduce="mean")
    return {"seed": seed, "kind": kind, "steps": steps, "gradient_evaluations": evaluations,
            "train_loss": train_loss, "test_loss": test_loss, "test_roc_auc": metrics["roc_auc"],
            "test_ap": metrics["average_precision"], "trace_total": measured.total, "trace_stderr": measured.stderr,
            "trace_per_layer": measured.per_layer, "trace_matvecs": measured.num_matvecs,
            "train_seconds": round(seconds, 1)}


LABELS = {"plain": "plain, equal steps", "nso": "NSO", "plain-equal-evals": "plain, equal gradient evaluations"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100, help="NSO steps (and plain steps at equal steps)")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--sigma", type=float, default=0.05, help="NSO noise standard deviation")
    parser.add_argument("--samples", type=int, default=2, help="NSO noise draws k per step (2k gradient evaluations)")
    parser.add_argument("--matvecs", type=int, default=240,
                        help="Hessian-vector products per trace estimate, in all (split over the 12 training months)")
    parser.add_argument("--nodes", type=int, default=20_000, help="region size: nodes")
    parser.add_argument("--edges", type=int, default=46_000, help="region size: directed edges")
    parser.add_argument("--crashes", type=int, default=200_000, help="region size: crash rows over two years")
    parser.add_argument("--work", default=None, help="directory for the generated region (default: temporary)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        region = generate_state_scale(work / f"state_scale_{args.nodes}", num_nodes=args.nodes, num_edges=args.edges,
                                      num_crashes=args.crashes, years=(2018, 2019), seed=0, release=False)
        dataset = RoadAccidentDataset(str(region.directory), region.region.code, "accident_occurrence")
        split = dataset.get_split()
        months = standardise([dataset.snapshot(y, m) for y, m in split["train"] + split["test"]])
        train, test = months[:len(split["train"])], months[len(split["train"]):]
        segments = int(train[0].eval_mask.sum())
        print(f"region: synthetic state-scale generator at {region.stats['nodes']:,} nodes, "
              f"{region.stats['edges']:,} directed edges ({segments:,} segments), {region.stats['crash_rows']:,} "
              f"crash rows; {region.stats['nodes'] / DEMO_NODES:.0f}x the demo region's nodes; "
              f"{len(train)} training / {len(test)} test months", flush=True)
        results = []
        for seed in args.seeds:
            for kind in ("plain", "nso", "plain-equal-evals"):
                results.append(run(seed, kind, args, train, test))
                row = results[-1]
                print(f"  seed {seed} {LABELS[kind]:34s} steps {row['steps']:5d}  gradient evaluations "
                      f"{row['gradient_evaluations']:5d}  test loss {row['test_loss']:.4f}  trace "
                      f"{row['trace_total']:.3f} ± {row['trace_stderr']:.3f}  [{row['train_seconds']} s]", flush=True)
    print(f"\nNSO: sigma {args.sigma}, k = {args.samples} ({2 * args.samples} gradient evaluations per step), "
          f"{args.steps} steps; Adam lr {args.lr}; one training month per step; Hessian trace: Hutch++ per layer, "
          f"{args.matvecs} Hessian-vector products over the 12 training months\n")
    print("| seed | training | steps | gradient evaluations | train loss | test loss | test ROC-AUC | test AP | "
          "Hessian trace (± stderr) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in results:
        print(f"| {row['seed']} | {LABELS[row['kind']]} | {row['steps']:,} | {row['gradient_evaluations']:,} | "
              f"{row['train_loss']:.4f} | {row['test_loss']:.4f} | {row['test_roc_auc']:.3f} | {row['test_ap']:.3f} | "
              f"{row['trace_total']:.3f} ± {row['trace_stderr']:.3f} |")
    summary = {}
    for kind in LABELS:
        rows = [row for row in results if row["kind"] == kind]
        summary[kind] = {key: statistics.fmean(row[key] for row in rows)
                         for key in ("trace_total", "test_loss", "train_loss", "test_roc_auc", "test_ap")}
    print("\n| training (mean over seeds) | Hessian trace | train loss | test loss | test ROC-AUC | test AP |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, values in summary.items():
        print(f"| {LABELS[kind]} | {values['trace_total']:.3f} | {values['train_loss']:.4f} | "
              f"{values['test_loss']:.4f} | {values['test_roc_auc']:.3f} | {values['test_ap']:.3f} |")
    nso = [row["trace_total"] for row in results if row["kind"] == "nso"]
    for kind in ("plain", "plain-equal-evals"):
        other = [row["trace_total"] for row in results if row["kind"] == kind]
        print(f"NSO / {LABELS[kind]}: Hessian trace ratio {sum(nso) / sum(other):.2f}; NSO lower in "
              f"{sum(a < b for a, b in zip(nso, other))} of {len(nso)} seeds")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"settings": vars(args), "region": region.stats, "results": results, "summary": summary},
                      handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
