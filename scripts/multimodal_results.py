"""The multimodal road baselines (issue 13): GraphSAGE on the road graph alone beside the same model with each
intersection's satellite-image embedding, through the fusion heads of the multimodal study, written into README.md.

    python scripts/multimodal_results.py --run      # imagery, embeddings and 5 variants x 10 seeds (resumable)
    python scripts/multimodal_results.py            # rewrite README's multimodal block from the run records
    python scripts/multimodal_results.py --check    # exit 1 when README's block is not what the records give

``--run`` makes the demo region's imagery and embeddings under a road root of its own (default
``results/multimodal/road-data``, not committed; the demo tables, the synthetic imagery and the seeded random
initialisation are deterministic, so every run of this script makes the same files) with the commands a user runs::

    gnnbench download tiles --state DEMO --root R && gnnbench build tiles --state DEMO --root R
    gnnbench embed tiles --state DEMO --root R --model clip-vit-b32 --weights random

and copies their two manifests to ``results/multimodal/imagery/``. It then trains, through the harness (the code of
``gnnbench run``), the shipped ``road`` config (graph only) and ``road_multimodal`` with ``model.fusion`` = early,
concat, gated and moe, on DEMO with GraphSAGE at the shipped road protocol, each into
``results/multimodal/<run name>/``. Finished seeds are skipped; the weights (``*.pt``) are not committed.

No image-model weights can be downloaded where these runs were made: the embeddings come from a randomly
initialised CLIP ViT-B/32 on synthetic imagery, so the table checks the pipeline end to end; it does not show that
images help. Every number in the block is read from the run records and the two manifests, except the study's
published figures (``STUDY``), which carry their source.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared helpers
from marked_blocks import MarkerError, markers, read_block, replace_blocks  # noqa: E402

RESULTS = REPO / "results" / "multimodal"
IMAGERY_RECORDS = RESULTS / "imagery"  # copies of the imagery and embeddings manifests the runs used
DATA_ROOT = RESULTS / "road-data"  # the road root the runs read (gitignored; --run makes it)
BLOCK = "multimodal"
MARKERS = markers(BLOCK)
#: The reference table's GraphSAGE run on DEMO (scripts/reference_numbers.py), the same protocol as the graph-only row.
REFERENCE = REPO / "results" / "reference" / "road" / "road-DEMO-sage-accident_occurrence-753b0e02"

STATE, MODEL, TASK, IMAGE_MODEL = "DEMO", "sage", "accident_occurrence", "clip-vit-b32"
SEEDS = "0-9"
#: Table rows: (key, shipped config, ``--set`` overrides, label).
VARIANTS = (
    ("graph-only", "road", [], "graph only (`road`)"),
    ("early", "road_multimodal", ["model.fusion=early"], "image columns as node features (`early`)"),
    ("concat", "road_multimodal", ["model.fusion=concat"], "concatenation + MLP (`concat`)"),
    ("gated", "road_multimodal", ["model.fusion=gated"], "gated fusion (`gated`)"),
    ("moe", "road_multimodal", ["model.fusion=moe"], "mixture of experts (`moe`)"),
)
METRICS = (("test.score", "gnnbench protocol"), ("test.ml4roadsafety.roc_auc", "ML4RoadSafety protocol"))
#: The multimodal study's reported figures (MMTraCE, arXiv 2512.02920, abstract; https://arxiv.org/abs/2512.02920,
#: https://ziniuzhang.github.io/mmtrace): average AUROC over six states with real Mapbox Satellite imagery, and its
#: gain over graph-only GNNs. Its per-state table was not read first-hand.
STUDY = {"auroc": "90.1%", "gain": "+3.7 points", "states": "six"}
REAL_STATE_COMMAND = ("gnnbench download tiles --state MA && gnnbench build tiles --state MA && gnnbench embed tiles "
                      "--state MA --model clip-vit-b32 --weights /path/ViT-B-32.pt && gnnbench run road_multimodal "
                      "--state MA --model sage --set model.fusion=gated --seeds 0-9")


def specs(root: str = "", seeds: str = SEEDS) -> dict[str, object]:
    """``{variant: RunSpec}`` (the run name and identity do not depend on ``root``, an execution key)."""
    from gnnbench.harness import resolve

    out = {}
    for key, config, overrides, _ in VARIANTS:
        shortcuts = {"state": STATE, "model": MODEL, "task": TASK, "root": root or None}
        (spec,) = resolve(config, shortcuts=shortcuts, overrides=overrides, seeds=seeds)
        out[key] = spec
    return out


# ------------------------------------------------------------------------------------------------------------ run


def _gnnbench(*argv: str) -> None:
    """One ``gnnbench`` command, as a user runs it, in a process of its own (building the demo region compiles and
    starts numba's parallel kernels, which leave torch's thread count at the core count in their process, whatever
    ``OMP_NUM_THREADS`` says); a failure stops the script."""
    print("$ gnnbench " + " ".join(argv), flush=True)
    status = subprocess.run([sys.executable, "-m", "gnnbench.cli", *argv], check=False).returncode
    if status != 0:
        raise SystemExit(f"gnnbench {' '.join(argv)} failed (exit status {status})")


def _embeddings_ready(root: Path) -> Path | None:
    """The embeddings directory when it already holds this script's embeddings (random init, seed 0)."""
    from gnnbench.road.tiles.layout import embeddings_dir, imagery_sources_of

    sources = imagery_sources_of(root, STATE)
    if len(sources) != 1:
        return None
    directory = embeddings_dir(root, STATE, sources[0], IMAGE_MODEL)
    path = directory / "manifest.json"
    if not path.is_file():
        return None
    weights = json.loads(path.read_text())["parameters"]["weights"]
    return directory if weights == {"origin": "random", "seed": 0} else None


def make_imagery(root: Path) -> None:
    """The demo region's crops and CLIP ViT-B/32 embeddings (random init, seed 0) under ``root``; their manifests
    are copied to ``results/multimodal/imagery/``."""
    directory = _embeddings_ready(root)
    if directory is None:
        if (root / "imagery" / STATE).exists():
            raise SystemExit(f"{root / 'imagery' / STATE} holds imagery or embeddings this script did not make "
                             f"(another source, or weights other than random seed 0): remove it, or pass --root")
        _gnnbench("download", "tiles", "--state", STATE, "--root", str(root), "--scheduler", "none", "--no-progress")
        _gnnbench("build", "tiles", "--state", STATE, "--root", str(root), "--scheduler", "none", "--no-progress")
        _gnnbench("embed", "tiles", "--state", STATE, "--root", str(root), "--model", IMAGE_MODEL, "--weights",
                  "random", "--device", "cpu", "--no-progress")
        directory = _embeddings_ready(root)
        if directory is None:
            raise SystemExit(f"gnnbench embed tiles wrote no {IMAGE_MODEL} embeddings of random seed 0 under {root}")
    IMAGERY_RECORDS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(directory.parents[1] / "manifest.json", IMAGERY_RECORDS / "imagery.manifest.json")
    shutil.copyfile(directory / "manifest.json", IMAGERY_RECORDS / "embeddings.manifest.json")


def run(root: Path, seeds: str, jobs: int, progress: bool) -> None:
    from gnnbench.harness import run as harness_run

    os.chdir(REPO)  # the runs' data.root is recorded relative to the repository when it lies inside it
    root = root.resolve()
    recorded = str(root.relative_to(REPO)) if root.is_relative_to(REPO) else str(root)
    make_imagery(root)
    for key, spec in specs(recorded, seeds).items():
        print(f"{key}: {spec.name} (seeds {seeds})", flush=True)
        harness_run(spec, out=RESULTS / spec.name, jobs=jobs, progress=progress)


# --------------------------------------------------------------------------------------------------------- render


def load_runs() -> dict[str, dict]:
    """``{variant: {"spec", "directory", "records", "dataset"}}`` from the committed run records (verified seed
    records; the weights, which git does not hold, may be absent)."""
    from gnnbench.harness.config import config_sha256
    from gnnbench.harness.record import finished_seeds

    runs = {}
    for key, spec in specs().items():
        directory = RESULTS / spec.name
        records = finished_seeds(directory, config_sha256(spec.config), missing_ok=(".pt",)) \
            if directory.is_dir() else {}
        dataset = json.loads((directory / "dataset.json").read_text()) if records else None
        runs[key] = {"spec": spec, "directory": directory, "records": records, "dataset": dataset}
    return runs


def _cell(values: list[float]) -> str:
    if not values:
        return "not run"
    text = f"{100 * statistics.fmean(values):.2f}"
    if len(values) > 1:
        text += f" ± {100 * statistics.stdev(values):.2f}"
    return text + f" ({len(values)} seed{'s' if len(values) != 1 else ''})"


def _metric(records: dict[int, dict], name: str) -> list[float]:
    split, key = name.split(".", 1)
    return [record[split][key] for record in records.values() if key in record.get(split, {})]


def _seed_text(seeds: list[int]) -> str:
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds)) or "none"


def _images(runs: dict[str, dict]) -> tuple[dict, dict, dict]:
    """The imagery and embeddings manifests the multimodal runs read, checked against their dataset records."""
    imagery_path = IMAGERY_RECORDS / "imagery.manifest.json"
    embeddings_path = IMAGERY_RECORDS / "embeddings.manifest.json"
    for path in (imagery_path, embeddings_path):
        if not path.is_file():
            raise SystemExit(f"{path.relative_to(REPO)} is missing: run `python scripts/multimodal_results.py --run`")
    imagery, embeddings = json.loads(imagery_path.read_text()), json.loads(embeddings_path.read_text())
    used = None
    for key, entry in runs.items():
        if not entry["records"] or key == "graph-only":
            continue
        (state,) = entry["dataset"]["states"]
        images = state["images"]
        if images["files"]["embeddings"]["sha256"] != embeddings["files"]["embeddings"]["sha256"]:
            raise SystemExit(f"{entry['directory'].relative_to(REPO)} was trained on other embeddings than "
                             f"{embeddings_path.relative_to(REPO)} records: run the script with --run again")
        used = images
    return imagery, embeddings, used or {}


def _repeats_reference(entry: dict) -> list[int]:
    """The seeds when the graph-only run's test ROC-AUCs equal, seed for seed, those of the reference table's
    GraphSAGE DEMO run (same protocol; ``[]`` when they differ or either is missing)."""
    path = REFERENCE / "summary.json"
    if not entry["records"] or not path.is_file():
        return []
    reference = json.loads(path.read_text())["metrics"]
    seeds = sorted(entry["records"])
    for name, _ in METRICS:
        values = reference.get(name, {}).get("values", {})
        if any(str(seed) not in values for seed in seeds) or [values[str(seed)] for seed in seeds] != _metric(
                entry["records"], name):
            return []
    return seeds


def render(runs: dict[str, dict]) -> str:
    present = [key for key in runs if runs[key]["records"]]
    if not present:
        return "No multimodal run has finished a seed yet (`python scripts/multimodal_results.py --run`)."
    imagery, embeddings, used = _images(runs)
    first = runs[present[0]]
    config = first["spec"].config
    model, train, evaluation = config["model"], config["train"], config["eval"]
    (state,) = first["dataset"]["states"]
    record = next(iter(first["records"].values()))
    threads = sorted({r["environment"]["hardware"]["torch_threads"] for key in present
                      for r in runs[key]["records"].values() if (r.get("environment") or {}).get("hardware")})
    where = ("CPU" if record["device"] == "cpu" else record["device"]) + (
        f", {' or '.join(map(str, threads))} torch thread{'s' if threads != [1] else ''} per seed" if threads else "")
    seeds = sorted({seed for key in present for seed in runs[key]["records"]})
    crop = imagery["parameters"]["crop"]
    source = imagery["parameters"]["source"]["info"]
    parameters = embeddings["parameters"]
    weights = parameters["weights"]
    counts = embeddings["counts"]
    lines = [
        f"Budget: the shipped road protocol (`configs/road.toml`: {train['epochs']} epochs, Adam {train['lr']}, "
        f"hidden {model['hidden_channels']}, {model['num_layers']} layers, validation every {evaluation['every']} "
        f"epochs, the checkpoint of the best validation score), GraphSAGE, seeds {_seed_text(seeds)}, on the "
        f"{where}; {state['state']} ({state['nodes']} intersections, {state['segments']} road segments, a synthetic "
        f"region generated by gnnbench), accident occurrence. Test ROC-AUC × 100 on the test months, mean ± std "
        f"over seeds, under gnnbench's protocol (`test.score`) and ML4RoadSafety's (`test.ml4roadsafety.roc_auc`).",
        "",
        f"Images from the source “{source['name']}”, whose attribution reads “{source['attribution']}”: "
        f"{crop['size_px']}-px crops of {crop['footprint_m']} m "
        f"around each intersection ({imagery['counts']['ok']} of {imagery['counts']['targets']} ok), embedded by "
        f"{parameters['model']} ({parameters['architecture']}, {parameters['library_version']}) with **randomly "
        f"initialised weights (seed {weights['seed']})**: {counts['embedded']} of {counts['nodes']} nodes, "
        f"{embeddings['dim']}-d (embeddings sha256 {embeddings['files']['embeddings']['sha256'][:12]}…, as each "
        f"multimodal run's `dataset.json` records). No trained weights could be downloaded where these runs were "
        f"made, and the imagery is not a photograph: the image columns are a random network's features "
        f"of scenes drawn from the demo road network, not what a trained model sees in real imagery. This table "
        f"checks the multimodal pipeline end to end; it does not show whether images help."
        if weights.get("origin") == "random" else
        f"Images: {source['name']}, embedded by {parameters['model']} (weights {weights.get('file_name')}).",
        "",
        "| fusion | " + " | ".join(label for _, label in METRICS) + " | parameters | wall time per seed (s) "
        "| run records |",
        "|---|---|---|---|---|---|",
    ]
    for key, _, _, label in VARIANTS:
        entry = runs[key]
        records = entry["records"]
        cells = [_cell(_metric(records, name)) for name, _ in METRICS]
        if records:
            parameters_count = f"{next(iter(records.values()))['extra']['parameters']:,}"
            wall = f"{statistics.fmean(r['wall_seconds'] for r in records.values()):.1f}"
            where_records = f"`{entry['directory'].relative_to(REPO)}`"
        else:
            parameters_count, wall, where_records = "—", "—", "not run"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {parameters_count} | {wall} | {where_records} |")
    same = _repeats_reference(runs["graph-only"])
    if same:
        lines += ["", f"The graph-only row repeats the GraphSAGE DEMO run of the road table above seed for seed (the "
                      f"same ROC-AUC under both protocols for seeds {_seed_text(same)}, "
                      f"`{REFERENCE.relative_to(REPO)}`)."]
    lines += ["",
              f"For context only: the study (MMTraCE, arXiv 2512.02920) reports an average AUROC of {STUDY['auroc']}, "
              f"{STUDY['gain']} over graph-only GNNs, over {STUDY['states']} real states with real Mapbox Satellite "
              "imagery, pretrained image encoders and its own evaluation; nothing here reproduces or tests that. "
              "The same comparison on a real state (real imagery and the OpenAI CLIP weights from a file) is:", "",
              f"    {REAL_STATE_COMMAND}", "",
              "with `gnnbench run road --state MA --model sage --seeds 0-9` as its graph-only baseline."]
    if used and used.get("counts", {}).get("unavailable"):
        lines += ["", f"{used['counts']['unavailable']} nodes had no usable crop (their `image_available` is 0)."]
    return "\n".join(lines)


def readme_block() -> str:
    try:
        return read_block(README.read_text(), BLOCK, "README.md")
    except MarkerError as error:
        raise SystemExit(str(error)) from None


def write_readme(block: str) -> None:
    try:
        README.write_text(replace_blocks(README.read_text(), {BLOCK: block}, "README.md"))
    except MarkerError as error:
        raise SystemExit(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--run", action="store_true", help="make the imagery and embeddings and train every variant "
                                                         "(resumable), then rewrite the README block")
    mode.add_argument("--check", action="store_true", help="exit 1 when README's block differs from the records'")
    mode.add_argument("--print", action="store_true", help="print the block instead of writing README.md")
    parser.add_argument("--root", type=Path, default=DATA_ROOT, help="road root of the demo imagery (--run)")
    parser.add_argument("--seeds", default=SEEDS, help="seeds to train (--run; default %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once (--run)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.run:
        run(args.root, args.seeds, args.jobs, not args.no_progress)
    block = render(load_runs())
    if args.print:
        print(block)
        return 0
    if args.check:
        if readme_block() != block.strip():
            print("README.md's multimodal block is stale: run `python scripts/multimodal_results.py`",
                  file=sys.stderr)
            return 1
        return 0
    write_readme(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
