"""Generate every algorithmic-reasoning split and print a content fingerprint of each.

Builds the CLRS-30 train/valid/test splits and the length-generalisation test sets
(n = 16, 32, 64, 128) of all twelve algorithms as cached PyTorch Geometric
datasets, then prints, per split, its size and a SHA-256 over the arrays' bytes
(independent of file timestamps), so two machines or two gnnbench versions can
be checked to produce identical data.

    python scripts/generate_algorithmic_reasoning.py --root data [--json summary.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from gnnbench.algo import ALGORITHMS
from gnnbench.datasets import AlgorithmicReasoningDataset

SPLITS = ("train", "valid", "test", "test_16", "test_32", "test_64", "test_128")


def content_digest(dataset: AlgorithmicReasoningDataset) -> str:
    digest = hashlib.sha256()
    columns = dataset.columns
    for name in sorted(columns.arrays):
        array = np.ascontiguousarray(columns.arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    digest.update(np.ascontiguousarray(columns.offsets).tobytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="dataset directory")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    parser.add_argument("--algorithms", nargs="*", default=list(ALGORITHMS))
    args = parser.parse_args()

    rows = []
    for algorithm in args.algorithms:
        for split in SPLITS:
            start = time.perf_counter()
            dataset = AlgorithmicReasoningDataset(args.root, algorithm, split)
            rows.append({"algorithm": algorithm, "split": split, "graphs": len(dataset), "n": dataset.n,
                         "seed": dataset.seed, "max_steps": dataset.max_steps,
                         "mean_steps": round(float(np.mean(dataset.num_steps)), 3),
                         "sha256": content_digest(dataset), "seconds": round(time.perf_counter() - start, 3)})
            row = rows[-1]
            print(f"{algorithm:30s} {split:9s} {row['graphs']:5d} x n={row['n']:3d}  steps <= {row['max_steps']:4d}"
                  f"  {row['sha256'][:16]}  {row['seconds']:.2f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
