"""Figures and tables of the data cards, computed from the data itself.

    python scripts/data_card_figures.py                                   # all twelve algorithms, DEMO, the cards
    python scripts/data_card_figures.py --root ~/.gnnbench/road --root results/road-region/three-years
    python scripts/data_card_figures.py --algorithms bfs dijkstra --out /tmp/f --no-cards --quick

Algorithmic reasoning: every algorithm's CLRS-30 splits (``train``, ``valid``, ``test``), generated through
``gnnbench.datasets.AlgorithmicReasoningDataset`` (and its cache under ``--algo-root``): graph sizes, hint (trace)
lengths and output label rates. Road: every region whose tables lie under a ``--root`` (``tables/<STATE>`` built,
``ml4roadsafety/tables/<STATE>`` imported), opened with ``gnnbench.datasets.RoadAccidentDataset``; the demo region
is always included (built offline under the first root when absent). Per region: nodes, edges, segments, the share
of segment-months with a crash per split, crashes per month, the crash accounting and feature missingness.

Writes PNGs (deterministic: fixed sizes, no metadata), ``numbers.json`` and, unless ``--no-cards``, the generated
tables of the cards between ``<!-- figures:<name>:begin -->`` and ``<!-- figures:<name>:end -->``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scripts' shared helpers
from marked_blocks import replace_blocks  # noqa: E402
SPLITS = ("train", "valid", "test")
SPLIT_COLOURS = {"train": "#4477aa", "valid": "#ee7733", "test": "#228833"}
DIGITS = 6  # floats in numbers.json
#: card file -> the generated tables it holds
CARD_TABLES = {
    "algorithmic_reasoning.md": ("algo-splits", "algo-sizes", "algo-hint-lengths", "algo-label-rates"),
    "road_accidents.md": ("road-sizes", "road-label-rates", "road-accidents", "road-crash-accounting",
                          "road-missingness"),
}
SYNTHETIC_CARD = "synthetic_state_scale.md"
NOT_PLOTTED = ("_Not generated: the state-scale region was not under a `--root` on the machine that generated "
               "the figures._")


# --------------------------------------------------------------------------- algorithmic reasoning


def label_rates(spec: Mapping[str, tuple[str, str, str]], outputs: Mapping[str, np.ndarray],
                adjacency: np.ndarray) -> dict[str, dict[str, Any]]:
    """One label statistic per output field, as meaningful for its type (see ``MEASURES``)."""
    num, n = adjacency.shape[:2]
    off_diagonal = ~np.eye(n, dtype=bool)
    rates: dict[str, dict[str, Any]] = {}
    for name, value in outputs.items():
        _, location, type_ = spec[name]
        value = np.asarray(value)
        entry: dict[str, Any] = {"location": location, "type": type_}
        if type_ == "mask":
            scored = value != -1  # the Evaluator ignores -1 (no edge)
            entry["positive_rate"] = float((value == 1).sum() / scored.sum())
            if location == "edge":
                edges = (adjacency != 0) & off_diagonal
                entry["positive_rate_on_edges"] = float((value[edges] == 1).mean())
        elif type_ == "mask_one":
            entry["positive_rate"] = float((value == 1).mean())
        elif type_ == "pointer" and location == "node":
            entry["self_pointer_rate"] = float((value == np.arange(n)).mean())
        elif type_ == "pointer" and location == "edge":
            # Pi[i, j] == i: j's predecessor is the path's source (a direct edge, or j unreachable from i)
            source = np.broadcast_to(np.arange(n)[:, None], (n, n))
            entry["source_pointer_rate"] = float((value == source)[:, off_diagonal].mean())
        elif type_ == "categorical":
            counts = np.bincount(value.argmax(-1).ravel(), minlength=value.shape[-1])
            entry["class_shares"] = [float(c) for c in counts / counts.sum()]
        else:  # scalar
            entry["mean"] = float(value.mean())
        rates[name] = entry
    return rates


MEASURES = {"positive_rate": "positive rate", "positive_rate_on_edges": "positive rate on the graph's edges",
            "self_pointer_rate": "share of nodes pointing to themselves",
            "source_pointer_rate": "share of pairs (i, j), i ≠ j, whose predecessor is i",
            "class_shares": "class shares", "mean": "mean"}
RATES = ("positive_rate", "positive_rate_on_edges", "self_pointer_rate", "source_pointer_rate")  # plotted


def algorithm_numbers(algorithm: str, root: Path) -> dict[str, Any]:
    """Sizes, hint lengths and label rates of one algorithm's splits."""
    from gnnbench.datasets import AlgorithmicReasoningDataset

    out: dict[str, Any] = {}
    for split in SPLITS:
        dataset = AlgorithmicReasoningDataset(root, algorithm, split)
        adjacency = np.asarray(dataset.targets("input")["A"])
        n = dataset.n
        edges = ((adjacency != 0) & ~np.eye(n, dtype=bool)).sum(axis=(1, 2))
        loops = (np.diagonal(adjacency, axis1=1, axis2=2) != 0).sum(axis=1)
        steps = np.asarray(dataset.num_steps)
        out[split] = {
            "graphs": len(dataset), "nodes": n, "seed": dataset.seed,
            "edges": _summary(edges), "self_loops_mean": float(loops.mean()),
            "hint_lengths": _summary(steps), "hint_length_counts": _counts(steps),
            "labels": label_rates(dataset.spec, dataset.targets("output"), adjacency),
        }
    return out


def _summary(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {"min": float(values.min()), "median": float(np.median(values)), "mean": float(values.mean()),
            "max": float(values.max())}


def _counts(values: np.ndarray) -> dict[str, int]:
    """How many graphs have each value (keys as strings, for JSON)."""
    unique, counts = np.unique(np.asarray(values), return_counts=True)
    return {str(int(u)): int(c) for u, c in zip(unique, counts)}


# --------------------------------------------------------------------------- road


def discover_regions(roots: Sequence[Path]) -> list[tuple[Path, str, str]]:
    """``(root, state, source)`` of every region with tables under the roots; DEMO (built if absent) first."""
    from gnnbench.road.manifest import MANIFEST_NAME

    found: list[tuple[Path, str, str]] = []
    for root in roots:
        for source, tables in (("build", root / "tables"), ("ml4roadsafety", root / "ml4roadsafety" / "tables")):
            if tables.is_dir():
                found += [(root, d.name, source) for d in sorted(tables.iterdir()) if (d / MANIFEST_NAME).is_file()]
    if not any(state == "DEMO" and source == "build" for _, state, source in found):
        found.append((roots[0], "DEMO", "build"))  # the dataset builds it offline
    return sorted(found, key=lambda region: (region[1] != "DEMO", region[1], region[2]))


def region_numbers(root: Path, state: str, source: str) -> dict[str, Any]:
    """Sizes, label rate per split, crashes per month, crash accounting and missingness of one region."""
    from gnnbench.datasets import RoadAccidentDataset
    from gnnbench.road.manifest import read_manifest

    occurrence = RoadAccidentDataset(root, state, source=source)
    counts = RoadAccidentDataset(root, state, task="accident_count", source=source)
    static = occurrence.static_graph
    segments = int(static.eval_mask.sum())
    tables = Path(occurrence.raw_dir)
    manifest = read_manifest(tables)
    position = {period: i for i, period in enumerate(occurrence.months)}
    splits = {}
    for split, months in occurrence.get_split().items():
        positive = sum(int(occurrence[position[m]].y[static.eval_mask].sum()) for m in months)
        splits[split] = {"years": sorted({year for year, _ in months}), "months": len(months),
                         "segment_months": len(months) * segments, "positive": positive,
                         "label_rate": positive / (len(months) * segments) if months else float("nan")}
    per_month = {}
    for i, (year, month) in enumerate(counts.months):
        item = counts[i]
        per_month[f"{year:04d}-{month:02d}"] = int(item.y[item.eval_mask].sum())
    return {
        "source": source, "kind": manifest.get("kind", source), "nodes": int(static.num_nodes),
        "edges": int(static.edge_index.shape[1]), "segments": segments, "months": len(occurrence.months),
        "accident_rows": int(manifest["files"]["accidents"]["rows"]), "splits": splits,
        "accidents_per_month": per_month, "crash_accounting": _crash_accounting(manifest.get("quality", {})),
        "missingness": _missingness(tables), "imagery": imagery_numbers(root, state) if source == "build" else {},
    }


def imagery_numbers(root: Path, state: str) -> dict[str, Any]:
    """Per imagery source of ``state`` (its manifest): source, licence, crops per status, resolution, years, and
    its contact sheet. The demo region's synthetic imagery is made offline when absent (download + build tiles)."""
    from gnnbench.io import offline_mode
    from gnnbench.road.tiles.crops import CropSpec
    from gnnbench.road.tiles.layout import imagery_dir, imagery_sources_of
    from gnnbench.road.tiles.pipeline import build_tiles, download_tiles, info_tiles

    if state == "DEMO" and not imagery_sources_of(root, state):
        with offline_mode(True):
            download_tiles("DEMO", spec=CropSpec(footprint_m=153.6), root=root, scheduler="none")
            build_tiles("DEMO", root=root, scheduler="none")
    out = {}
    for key in imagery_sources_of(root, state):
        manifest = info_tiles(state, source=key, root=root)
        source = manifest["source"]
        out[key] = {"name": source["name"], "provider": source["provider"], "licence": source["licence"],
                    "attribution": source["attribution"], "redistributable": source["redistributable"],
                    "crop_px": manifest["parameters"]["crop"]["size_px"], "counts": manifest["counts"],
                    "resolution": manifest.get("resolution", {}), "years": manifest.get("years", {}),
                    "contact_sheet": str(imagery_dir(root, state, key) / "contact_sheet.png")}
    return out


CRASH_ACCOUNTING = ("records_read", "kept", "missing_coordinates", "zero_coordinates", "swapped_lat_lon",
                    "outside_state", "unparseable_date", "outside_years", "duplicate", "unmatched")


def _crash_accounting(quality: Mapping[str, Any]) -> dict[str, int]:
    crashes = quality.get("crashes", {})
    dropped = crashes.get("dropped", crashes)  # a generated region lists the reasons at the top level
    return {key: int(crashes[key] if key in ("records_read", "kept") else dropped[key])
            for key in CRASH_ACCOUNTING if key in (crashes if key in ("records_read", "kept") else dropped)}


def _missingness(tables: Path) -> dict[str, float]:
    """From the tables: share of edges without lanes / maxspeed, of node-month weather values filled (bit ``i`` of
    ``node_weather.filled`` is column ``i``), of edge-years without an AADT (over the years ``edge_volume`` has)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from gnnbench.road.tables import WEATHER_COLUMNS

    out: dict[str, float] = {}
    edges = pq.read_table(tables / "edges.parquet", columns=["edge_id", "lanes", "maxspeed_kmh"])
    for column in ("lanes", "maxspeed_kmh"):
        out[f"edges.{column} (null)"] = edges.column(column).null_count / edges.num_rows
    filled = pq.read_table(tables / "node_weather.parquet", columns=["filled"]).column("filled").to_numpy()
    for bit, column in enumerate(WEATHER_COLUMNS):
        out[f"node_weather.{column} (filled)"] = float(((filled.astype(np.int64) >> bit) & 1).mean())
    volume = pq.read_table(tables / "edge_volume.parquet", columns=["year", "edge_id"])
    years = len(pc.unique(volume.column("year")))
    if years:
        out["edge_volume.aadt (none)"] = 1 - volume.num_rows / (years * edges.num_rows)
    return out


# --------------------------------------------------------------------------- figures


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8})
    return plt.subplots(figsize=(width, height))


def _save(fig, path: Path, dpi: int) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, metadata={"Software": None})  # no version/timestamp: identical bytes on re-runs
    plt.close(fig)


def plot_algorithmic(numbers: Mapping[str, Any], out: Path, dpi: int) -> list[Path]:
    """hint_lengths.png, edges_per_graph.png, label_rates.png."""
    algorithms = list(numbers)
    x = np.arange(len(algorithms))
    paths = []
    for name, key, ylabel, log in (("hint_lengths", "hint_lengths", "hint steps per trace (min, median, max)", True),
                                   ("edges_per_graph", "edges", "directed edges per graph (min, median, max)", True)):
        fig, ax = _figure(9, 3.6)
        for offset, split in zip((-0.25, 0, 0.25), SPLITS):
            stats = [numbers[a][split][key] for a in algorithms]
            median = np.array([s["median"] for s in stats])
            low, high = median - [s["min"] for s in stats], np.array([s["max"] for s in stats]) - median
            first = numbers[algorithms[0]][split]
            ax.errorbar(x + offset, median, yerr=[low, high], fmt="o", ms=3, capsize=2, color=SPLIT_COLOURS[split],
                        label=f"{split} ({first['graphs']} graphs, n = {first['nodes']})")
        ax.set_xticks(x, algorithms, rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.legend(frameon=False)
        _save(fig, out / f"{name}.png", dpi)
        paths.append(out / f"{name}.png")
    fig, ax = _figure(9, 3.6)
    labels = [(a, field, measure) for a in algorithms for field, entry in numbers[a]["train"]["labels"].items()
              for measure in entry if measure in RATES]
    x = np.arange(len(labels))
    for offset, split in zip((-0.27, 0, 0.27), SPLITS):
        values = [numbers[a][split]["labels"][f][m] for a, f, m in labels]
        ax.bar(x + offset, values, width=0.26, color=SPLIT_COLOURS[split], label=split)
    ax.set_xticks(x, [f"{a}.{f}" + (" (edges)" if m == "positive_rate_on_edges" else "") for a, f, m in labels],
                  rotation=40, ha="right")
    ax.set_ylabel("label rate (see the card's table)")
    ax.legend(frameon=False)
    _save(fig, out / "label_rates.png", dpi)
    return paths + [out / "label_rates.png"]


def plot_road(regions: Mapping[str, Any], out: Path, dpi: int) -> list[Path]:
    """accidents_per_month.png (one line per region) and road_label_rates.png."""
    import datetime

    fig, ax = _figure(9, 3.2)
    for name, region in regions.items():
        months = [datetime.date(int(k[:4]), int(k[5:]), 1) for k in region["accidents_per_month"]]
        ax.plot(months, list(region["accidents_per_month"].values()), marker=".", lw=1, label=f"{name} ({region['kind']})")
    ax.set_ylabel("crashes per month (matched)")
    ax.set_yscale("log")
    ax.legend(frameon=False)
    _save(fig, out / "accidents_per_month.png", dpi)
    fig, ax = _figure(6, 3)
    x = np.arange(len(regions))
    for offset, split in zip((-0.27, 0, 0.27), SPLITS):
        values = [region["splits"].get(split, {}).get("label_rate", np.nan) for region in regions.values()]
        ax.bar(x + offset, values, width=0.26, color=SPLIT_COLOURS[split], label=split)
    ax.set_xticks(x, list(regions))
    ax.set_ylabel("segment-months with ≥ 1 crash")
    ax.legend(frameon=False)
    _save(fig, out / "road_label_rates.png", dpi)
    return [out / "accidents_per_month.png", out / "road_label_rates.png", *copy_contact_sheets(regions, out)]


def copy_contact_sheets(regions: Mapping[str, Any], out: Path) -> list[Path]:
    """Each region's imagery contact sheet as ``imagery_<REGION>_<source>.png`` (the crops as they are)."""
    import shutil

    paths = []
    for name, region in regions.items():
        for key, imagery in region.get("imagery", {}).items():
            sheet = Path(imagery.pop("contact_sheet"))
            if sheet.is_file():
                target = out / f"imagery_{name.split()[0]}_{key}.png"
                shutil.copyfile(sheet, target)
                paths.append(target)
    return paths


# --------------------------------------------------------------------------- card tables


def _num(value: float) -> str:
    """An integer with thousands separators, anything else with one decimal."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"


def _rate(value: float) -> str:
    return f"{100 * value:.2f}%"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], right: int = 1) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < right else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def algo_tables(numbers: Mapping[str, Any], splits: Mapping[str, Any]) -> dict[str, str]:
    """The algorithmic card's generated tables."""
    algorithms = list(numbers)
    out = {"algo-splits": _table(["split", "graphs", "nodes", "seed"], (
        [f"`{name}`", _num(cfg["graphs"]), cfg["nodes"], cfg["seed"]] for name, cfg in splits.items()))}
    out["algo-sizes"] = _table(
        ["algorithm", *(f"{s}: edges per graph (min / mean / max)" for s in SPLITS), "self-loops per graph (train)"],
        ([f"`{a}`", *(f"{_num(e['min'])} / {e['mean']:,.1f} / {_num(e['max'])}"
                      for e in (numbers[a][s]["edges"] for s in SPLITS)),
          f"{numbers[a]['train']['self_loops_mean']:.2f}"] for a in algorithms))
    out["algo-hint-lengths"] = _table(
        ["algorithm", *(f"{s} (n = {numbers[algorithms[0]][s]['nodes']}): min / median / max" for s in SPLITS)],
        ([f"`{a}`", *(f"{_num(h['min'])} / {_num(h['median'])} / {_num(h['max'])}"
                      for h in (numbers[a][s]["hint_lengths"] for s in SPLITS))] for a in algorithms))
    rows = []
    for a in algorithms:
        for field, entry in numbers[a]["train"]["labels"].items():
            for measure in (m for m in entry if m in MEASURES):
                cells = []
                for s in SPLITS:
                    value = numbers[a][s]["labels"][field][measure]
                    cells.append(" / ".join(f"{v:.3f}" for v in value) if isinstance(value, list) else _rate(value))
                rows.append([f"`{a}`", f"`{field}` ({entry['location']} {entry['type']})", MEASURES[measure], *cells])
    out["algo-label-rates"] = _table(["algorithm", "output", "measure", *SPLITS], rows, right=3)
    return out


def road_tables(regions: Mapping[str, Any]) -> dict[str, str]:
    """The road cards' generated tables (every plotted region)."""
    out = {"road-sizes": _table(
        ["region", "kind", "nodes", "directed edges", "segments", "months", "accident rows (segment-months)"],
        ([name, f"`{r['kind']}`", _num(r["nodes"]), _num(r["edges"]), _num(r["segments"]),
          r["months"], _num(r["accident_rows"])] for name, r in regions.items()), right=2)}
    rows = []
    for name, r in regions.items():
        for split, s in r["splits"].items():
            years = f"{s['years'][0]}–{s['years'][-1]}" if len(s["years"]) > 1 else str(s["years"][0])
            rows.append([name, split, years, s["months"], _num(s["segment_months"]), _num(s["positive"]),
                         _rate(s["label_rate"])])
    out["road-label-rates"] = _table(["region", "split", "years", "months", "segment-months",
                                      "with ≥ 1 crash", "label rate"], rows, right=3)
    rows = []
    for name, r in regions.items():
        values = np.array(list(r["accidents_per_month"].values()), dtype=np.float64)
        months = list(r["accidents_per_month"])
        rows.append([name, f"{months[0]} – {months[-1]}", _num(values.sum()), _num(values.min()),
                     f"{values.mean():,.1f}", _num(values.max())])
    out["road-accidents"] = _table(["region", "months", "crashes", "per month: min", "mean", "max"], rows, right=2)
    reasons = [key for key in CRASH_ACCOUNTING if any(key in r["crash_accounting"] for r in regions.values())]
    out["road-crash-accounting"] = _table(["region", *(k.replace("_", " ") for k in reasons)], (
        [name, *(_num(r["crash_accounting"][k]) if k in r["crash_accounting"] else "–" for k in reasons)]
        for name, r in regions.items()))
    columns = sorted({key for r in regions.values() for key in r["missingness"]})
    out["road-missingness"] = _table(["region", *(f"`{c}`" for c in columns)], (
        [name, *(_rate(r["missingness"][c]) if c in r["missingness"] else "not recorded" for c in columns)]
        for name, r in regions.items()))
    return out


def imagery_table(regions: Mapping[str, Any]) -> str:
    """One row per region and imagery source: licence, crops, what was lost and why, resolution, years."""
    from gnnbench.road.tiles.validate import STATUSES

    rows = []
    for name, region in regions.items():
        for key, imagery in region.get("imagery", {}).items():
            counts = imagery["counts"]
            lost = ", ".join(f"{reason.replace('_', ' ')} {_num(counts[reason])}" for reason in
                             STATUSES[1:] if counts.get(reason))
            resolution = imagery["resolution"]
            years = ", ".join(f"{year}: {_num(n)}" for year, n in imagery["years"].items())
            rows.append([name, f"`{key}`", imagery["licence"], f"{_num(counts['ok'])} of {_num(counts['targets'])}",
                         lost or "none", f"{resolution['m_per_px_median']:.2f}" if resolution else "–", years])
    return _table(["region", "source", "licence", "crops ok", "lost (reason)", "m/px", "years"], rows, right=7)


def replace_tables(text: str, tables: Mapping[str, str], card: str) -> str:
    """``text`` with each ``<!-- figures:<name>:begin/end -->`` block replaced by ``tables[name]``."""
    return replace_blocks(text, {f"figures:{name}": table for name, table in tables.items()}, card)


def card_tables(numbers: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """card file -> its generated tables, from ``numbers.json``'s content."""
    algo = numbers["algorithmic"]
    regions = numbers["road"]["regions"]
    ordinary = {k: v for k, v in regions.items() if v["kind"] != "synthetic-state-scale"}
    cards = {"algorithmic_reasoning.md": algo_tables(algo["algorithms"], algo["splits"]),
             "road_accidents.md": {**road_tables(ordinary), "road-imagery": imagery_table(ordinary)}}
    scale = {k: v for k, v in regions.items() if v["kind"] == "synthetic-state-scale"}
    tables = road_tables(scale) if scale else dict.fromkeys(CARD_TABLES["road_accidents.md"], NOT_PLOTTED)
    cards[SYNTHETIC_CARD] = {name.replace("road-", "scale-"): table for name, table in tables.items()}
    return cards


# --------------------------------------------------------------------------- main


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, DIGITS)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def generate(out: Path, roots: Sequence[Path], algorithms: Sequence[str], algo_root: Path | None,
             dpi: int) -> dict[str, Any]:
    """Compute every number, write the figures and ``numbers.json`` under ``out``; return the numbers."""
    from gnnbench.algo.splits import GENERALIZATION_SPLITS
    from gnnbench.io.cache import gnnbench_home

    algo_root = algo_root or gnnbench_home() / "datasets"
    algo = {a: algorithm_numbers(a, algo_root) for a in algorithms}
    first = algo[algorithms[0]]
    splits = {s: {k: first[s][k] for k in ("graphs", "nodes", "seed")} for s in SPLITS}
    splits.update({name: {"graphs": c.num_samples, "nodes": c.n, "seed": c.seed}
                   for name, c in GENERALIZATION_SPLITS.items()})  # configuration: not generated here
    regions = {}
    for root, state, source in discover_regions(roots):
        name = state if source == "build" else f"{state} (ML4RoadSafety import)"
        regions[name] = region_numbers(root, state, source)
    numbers = _rounded({
        "generated_by": "scripts/data_card_figures.py",
        "algorithmic": {"splits": splits, "algorithms": algo},
        "road": {"regions": regions},
    })
    figures = plot_algorithmic(numbers["algorithmic"]["algorithms"], out, dpi)
    figures += plot_road(numbers["road"]["regions"], out, dpi)
    numbers["figures"] = sorted(path.name for path in figures)
    (out / "numbers.json").write_text(json.dumps(numbers, indent=1, sort_keys=False, ensure_ascii=False) + "\n")
    return numbers


def write_cards(numbers: Mapping[str, Any], cards: Path) -> list[Path]:
    """Rewrite the generated tables of every card that has them."""
    written = []
    for card, tables in card_tables(numbers).items():
        path = cards / card
        path.write_text(replace_tables(path.read_text(), tables, card))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    from gnnbench.algo import ALGORITHMS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "data_cards" / "figures", help="figures and numbers.json")
    parser.add_argument("--root", type=Path, action="append", default=None,
                        help="road data directory (repeatable; default $GNNBENCH_HOME/road)")
    parser.add_argument("--algo-root", type=Path, default=None,
                        help="algorithmic dataset cache (default $GNNBENCH_HOME/datasets)")
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS, metavar="ALGORITHM")
    parser.add_argument("--cards", type=Path, default=REPO / "data_cards", help="cards whose tables are rewritten")
    parser.add_argument("--no-cards", action="store_true", help="leave the cards alone")
    parser.add_argument("--quick", action="store_true", help="low-resolution figures (for tests)")
    args = parser.parse_args(argv)
    if not args.no_cards and list(args.algorithms) != list(ALGORITHMS):
        parser.error("--algorithms with a subset: pass --no-cards too (the cards' tables cover all twelve)")
    from gnnbench.io.cache import gnnbench_home

    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    numbers = generate(args.out, args.root or [gnnbench_home() / "road"], args.algorithms, args.algo_root,
                       dpi=50 if args.quick else 110)
    written = [] if args.no_cards else write_cards(numbers, args.cards)
    print(f"wrote {len(numbers['figures'])} figures and numbers.json to {args.out}"
          + (f", tables of {', '.join(p.name for p in written)}" if written else "")
          + f" in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
