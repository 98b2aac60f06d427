"""Does noise stability optimization (NSO) lower the Hessian trace? Plain vs NSO training on one benchmark task.

Task: monthly accident occurrence on the road demo region (``RoadAccidentDataset(root, "DEMO")``): a 2-layer
GCN over intersections plus an MLP on (source, target, road features) scores every road segment; loss is
binary cross-entropy over the training months (2018-2019), evaluated on the test months (2021) with the
official Evaluator. Both runs use the same seed, initialisation, optimizer (Adam) and number of steps; the NSO
run wraps the optimizer in ``NoiseStabilityOptimizer`` (two-point noise, k samples, sigma). The Hessian
trace of the training loss is measured after training with Hutch++ per layer (mean over the training months).

    python scripts/nso_hessian_trace.py [--seeds 0 1 2] [--steps 300] [--sigma 0.05] [--samples 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from torch_geometric.nn import GCNConv

from gnnbench.datasets import RoadAccidentDataset
from gnnbench.hessian import NoiseStabilityOptimizer, trace
from gnnbench.road import Evaluator


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


def run(seed: int, nso: bool, args, train, test, root) -> dict:
    torch.manual_seed(seed)
    model = EdgeScorer(train[0].x.shape[1], train[0].edge_attr.shape[1])
    base = torch.optim.Adam(model.parameters(), lr=args.lr)

    def loss_of(month):
        logits = model(month.x, month.edge_index, month.edge_attr)
        mask = month.eval_mask
        return torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], month.y[mask])

    def full_loss():
        return sum(loss_of(month) for month in train) / len(train)

    optimizer = (NoiseStabilityOptimizer(base, model, sigma=args.sigma, num_samples=args.samples, lam=0.0,
                                         generator=torch.Generator().manual_seed(seed)) if nso else base)
    start = time.perf_counter()
    for _ in range(args.steps):
        if nso:
            def closure():
                loss = full_loss()
                loss.backward()
                return loss
            optimizer.step(closure)
        else:
            optimizer.zero_grad()
            full_loss().backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        train_loss = float(full_loss())
        test_loss = float(sum(loss_of(month) for month in test) / len(test))
        scores = [torch.sigmoid(model(m.x, m.edge_index, m.edge_attr))[m.eval_mask] for m in test]
    metrics = Evaluator("accident_occurrence").eval({"y_true": [m.y[m.eval_mask] for m in test], "y_pred": scores,
                                                     "k": 20})
    measured = trace(model, loss_of, method="hutch++", num_matvecs=args.matvecs, per_layer=True, seed=seed,
                     data=train, reduce="mean")
    return {"seed": seed, "nso": nso, "train_loss": train_loss, "test_loss": test_loss,
            "test_roc_auc": metrics["roc_auc"], "test_ap": metrics["average_precision"],
            "trace_total": measured.total, "trace_stderr": measured.stderr, "trace_per_layer": measured.per_layer,
            "train_seconds": round(seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--matvecs", type=int, default=60)
    parser.add_argument("--root", default=None, help="road data directory (default: a temporary one)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or scratch
        dataset = RoadAccidentDataset(root, "DEMO", "accident_occurrence")
        split = dataset.get_split()
        months = standardise([dataset.snapshot(y, m) for y, m in split["train"] + split["test"]])
        train, test = months[:len(split["train"])], months[len(split["train"]):]
        results = [run(seed, nso, args, train, test, root) for seed in args.seeds for nso in (False, True)]
    print("| seed | training | train loss | test loss | test ROC-AUC | Hessian trace (Hutch++, ± stderr) |")
    print("|---:|---|---:|---:|---:|---:|")
    for row in results:
        print(f"| {row['seed']} | {'NSO' if row['nso'] else 'plain'} | {row['train_loss']:.4f} | "
              f"{row['test_loss']:.4f} | {row['test_roc_auc']:.3f} | {row['trace_total']:.3f} ± "
              f"{row['trace_stderr']:.3f} |")
    plain = [row["trace_total"] for row in results if not row["nso"]]
    noisy = [row["trace_total"] for row in results if row["nso"]]
    ratio = sum(noisy) / sum(plain)
    print(f"\nmean Hessian trace: plain {sum(plain) / len(plain):.3f}, NSO {sum(noisy) / len(noisy):.3f} "
          f"(NSO / plain = {ratio:.2f}); NSO lower in {sum(n < p for n, p in zip(noisy, plain))} of {len(plain)} seeds")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"settings": vars(args), "results": results, "ratio": ratio}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
