"""Peak memory of the Edge Transformer processor (``edge_transformer``) at the branching study's size.

The study's processor: ``EncodeProcessDecode("bfs", "edge_transformer", hidden=192, nb_heads=12, num_layers=5)``
(https://arxiv.org/abs/2512.01113; the Edge Transformer of https://arxiv.org/abs/2401.10119). Its attention is
``[B, heads, N, N, N]`` and its value product ``[B, N, N, N, H]``, so memory grows as ``n^3``. Measured, each case in
a fresh child process (one torch thread):

(a) evaluation at n = 64: one forward pass under ``torch.no_grad`` (``model.predict``) on the first B graphs of
    CLRS-30's BFS test split (n = 64), B = 1, 4, 32. gnnbench forms the value product for a chunk of rows at a time
    (``ET_CHUNK`` elements); the baseline is the same layer with chunking off (``chunk_elements`` above the whole
    product), which forms it at once as the study's JAX code does (``einsum(..., "bxayhd")``). The baseline runs at
    B = 1 and 4 only (``--baseline-batches``): at B = 32 it needs ``~4 * B * N^3 * (H + 2 heads)`` bytes (printed).
(b) training: one forward and backward pass (``model.loss(batch).backward()``) on B = 4 sampled BFS graphs at
    n = 16, and at n = 8, 12 (B = 4), 24 (B = 2) and 32 (B = 1) for the fit.

Peak memory: on a GPU ``torch.cuda.max_memory_allocated`` above the allocation before the pass; on the CPU the
process's peak resident set size above its size before the pass, the harness's approach (``VmHWM`` reset through
``/proc/self/clear_refs``, see ``gnnbench.harness.runner``; freed memory kept for reuse by
``gnnbench.harness.allocator.retain_freed_memory``, as in the harness's seeds; ``--no-retain``: glibc's defaults,
which unmap freed large blocks, so the peak is closer to the live tensors); for training also the exact bytes
autograd saves for the backward pass (``saved_tensors_hooks``, each storage once, parameters left out).

The ``n^3`` model: saved bytes per layer call and graph ``~ c * heads * n^3 + c2 * n^2 * H`` (a layer call of a
graph: one processor layer at one hint step of one graph; ``num_layers * sum over graphs of their steps`` per
pass), fitted to the training measurements by least squares. Analytically ``c = 4 * (d + 1)`` bytes with
``d = H / heads``: the value product and the attention weights of every row chunk are kept for the backward pass.

    python benchmarks/edge_transformer_memory.py [--device cuda] [--repeats 1] [--quick] [--no-retain]

``--quick``: hidden 48, 3 heads, 2 layers, n = 32 for the evaluation (a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STUDY = {"hidden": 192, "nb_heads": 12, "num_layers": 5}
QUICK = {"hidden": 48, "nb_heads": 3, "num_layers": 2}
TRAIN_CASES = ((8, 4), (12, 4), (16, 4), (24, 2), (32, 1))  # (n, B): n = 16, B = 4 is the study's; the rest fit n^3
HUGE_CHUNK = 1 << 62  # chunk_elements above any product: one chunk (the baseline)


# ================================================================================ child: one measured pass


def _rss(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM
        return True
    except OSError:
        return False


def child(case: dict) -> dict:
    import torch

    from gnnbench.algo import sample
    from gnnbench.harness.algo_data import chunks, split_traces
    from gnnbench.harness.allocator import retain_freed_memory
    from gnnbench.models.algo.batches import to_torch
    from gnnbench.models.algo.edge_transformer import EdgeTransformer
    from gnnbench.models.algo.net import EncodeProcessDecode

    torch.set_num_threads(1)
    if case["retain"]:
        retain_freed_memory()  # as the harness's seeds run: freed blocks are reused, not unmapped and faulted in again
    device = torch.device(case["device"])
    model = EncodeProcessDecode("bfs", "edge_transformer", hidden=case["hidden"], nb_heads=case["nb_heads"],
                                num_layers=case["num_layers"], generator=torch.Generator().manual_seed(0))
    if case["chunk"] is not None:
        for module in model.modules():
            if isinstance(module, EdgeTransformer):
                module.chunk_elements = case["chunk"]
    model.to(device)
    b, n = case["batch"], case["n"]
    if case["kind"] == "eval":
        traces = split_traces("bfs", "test") if n == 64 else sample("bfs", b, n=n, seed=0)
        raw = chunks(traces.clrs_batch(), b)[0]
    else:
        raw = sample("bfs", b, n=n, seed=0).clrs_batch()
    batch = to_torch(raw, device=device)
    lengths = np.asarray(raw.lengths)
    graph_steps = int(np.maximum(lengths - 2, 0).sum() + len(lengths))  # processor steps over the graphs
    tiny = to_torch(sample("bfs", 1, n=4, seed=1).clrs_batch(), device=device)  # warm-up: lazy kernels
    model.predict(tiny)
    model.loss(tiny).backward()
    model.zero_grad(set_to_none=True)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    base_rss = _rss("VmRSS")
    scope = "pass" if _reset_peak() else "process"
    start = time.perf_counter()
    if case["kind"] == "eval":
        model.predict(batch)
    else:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = model.loss(batch)
        loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    out = {**case, "seconds": seconds, "graph_steps": graph_steps, "rss_scope": scope,
           "saved_bytes": sum(saved.values()) if case["kind"] == "train" else None}
    if device.type == "cuda":
        out["peak_bytes"] = int(torch.cuda.max_memory_allocated(device) - base)
    else:
        peak = _rss("VmHWM")
        out["peak_bytes"] = None if peak is None or base_rss is None else peak - base_rss
    return out


# ================================================================================ parent: cases, table, fit


def run_case(case: dict, repeats: int) -> dict:
    results = []
    for _ in range(repeats):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], capture_output=True,
                              text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"case {case} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = dict(results[0])
    best["peak_bytes"] = int(np.median([r["peak_bytes"] for r in results]))
    best["seconds"] = float(np.median([r["seconds"] for r in results]))
    return best


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MiB"


def fit(train: list[dict], heads: int, hidden: int, layers: int) -> tuple[float, float]:
    """``saved / layer calls ~ c3 * heads * n^3 + c2 * n^2 * H`` (per graph) by least squares."""
    calls = np.array([r["graph_steps"] * layers for r in train], dtype=float)
    n = np.array([r["n"] for r in train], dtype=float)
    y = np.array([r["saved_bytes"] for r in train], dtype=float) / calls
    design = np.stack([heads * n ** 3, n ** 2 * hidden], axis=1)
    (c3, c2), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(c3), float(c2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--eval-batches", type=int, nargs="+", default=[1, 4, 32])
    parser.add_argument("--baseline-batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--no-retain", action="store_true",
                        help="glibc's default malloc (freed large blocks unmapped) instead of the harness's setting")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    size = QUICK if args.quick else STUDY
    eval_n = 32 if args.quick else 64
    heads, hidden, layers = size["nb_heads"], size["hidden"], size["num_layers"]
    d = hidden // heads
    common = {"device": args.device, "retain": not args.no_retain, **size}
    print(f"Edge Transformer memory: bfs, hidden {hidden}, {heads} heads, {layers} layers, device {args.device}, "
          f"{args.repeats} repeat(s) (median), one torch thread, each case in a fresh process, freed memory "
          f"{'unmapped (glibc default)' if args.no_retain else 'retained (the harness setting)'}")
    from gnnbench.models.algo.edge_transformer import ET_CHUNK

    rows = []
    started = time.perf_counter()
    for b in args.eval_batches:
        ours = run_case({**common, "kind": "eval", "n": eval_n, "batch": b, "chunk": None}, args.repeats)
        base = run_case({**common, "kind": "eval", "n": eval_n, "batch": b, "chunk": HUGE_CHUNK}, args.repeats) \
            if b in args.baseline_batches else None
        rows.append((ours, base))
    train = [run_case({**common, "kind": "train", "n": n, "batch": b, "chunk": None}, args.repeats)
             for n, b in TRAIN_CASES]

    scope = "GPU max_memory_allocated" if args.device.startswith("cuda") else "peak RSS above the process's size"
    print(f"\n(a) evaluation, one forward pass under no_grad, BFS test split n = {eval_n} ({scope}):")
    print(f"{'B':>4} {'layer calls':>12} {'gnnbench':>12} {'seconds':>8} {'one chunk':>12} {'seconds':>8} "
          f"{'ratio':>6}")
    for ours, base in rows:
        calls = ours["graph_steps"] * layers
        ratio = f"{base['peak_bytes'] / ours['peak_bytes']:.1f}x" if base else "-"
        print(f"{ours['batch']:>4} {calls:>12} {_mb(ours['peak_bytes']):>12} {ours['seconds']:>8.1f} "
              f"{_mb(base['peak_bytes']) if base else 'not run':>12} "
              f"{base['seconds'] if base else float('nan'):>8.1f} {ratio:>6}")
    big = max(args.eval_batches)
    print(f"one chunk at B = {big}: the value product and attention alone are 4 * B * n^3 * (H + 2 heads) = "
          f"{_mb(4 * big * eval_n ** 3 * (hidden + 2 * heads))} per layer call; gnnbench forms at most "
          f"max({_mb(4 * ET_CHUNK)}, one row: {_mb(4 * big * eval_n ** 2 * hidden)}) of it at once")

    print(f"\n(b) training, one forward + backward pass on sampled BFS graphs ({scope}; saved: autograd's "
          "saved tensors):")
    print(f"{'n':>4} {'B':>3} {'layer calls':>12} {'peak':>12} {'saved':>12} {'seconds':>8}")
    for r in train:
        print(f"{r['n']:>4} {r['batch']:>3} {r['graph_steps'] * layers:>12} {_mb(r['peak_bytes']):>12} "
              f"{_mb(r['saved_bytes']):>12} {r['seconds']:>8.2f}")
    c3, c2 = fit(train, heads, hidden, layers)
    print(f"\nn^3 model (training): saved bytes per layer call and graph ~ c * heads * n^3 + c2 * n^2 * H with "
          f"c = {c3:.1f} (analytical 4 * (d + 1) = {4 * (d + 1)}), c2 = {c2:.1f}")
    last = rows[-1][0]
    steps = last["graph_steps"] / last["batch"]  # processor steps per graph of the evaluated test graphs
    for b in (4, 32):
        est = b * steps * layers * (c3 * heads * eval_n ** 3 + c2 * eval_n ** 2 * hidden)
        print(f"  extrapolated: training at n = {eval_n}, B = {b}, {steps:.2f} processor steps per graph (as the "
              f"test graphs above), {layers} layers: ~{est / 2**30:,.1f} GiB saved for backward")
    print(f"\n{time.perf_counter() - started:.0f} s in all")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
