"""The data cards: datasheet sections, figures, and generated tables that match the data (scripts/data_card_figures.py)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CARDS = REPO / "data_cards"
FIGURES = CARDS / "figures"
SECTIONS = ("Motivation", "Composition", "Collection process", "Preprocessing, cleaning and labeling", "Uses",
            "Distribution", "Maintenance")  # Gebru et al., Datasheets for Datasets


def _script():
    spec = importlib.util.spec_from_file_location("data_card_figures", REPO / "scripts" / "data_card_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cards() -> list[Path]:
    cards = sorted(CARDS.glob("*.md"))
    assert {card.name for card in cards} >= {"algorithmic_reasoning.md", "road_accidents.md",
                                             "synthetic_state_scale.md"}
    return cards


def _sections(text: str) -> dict[str, str]:
    """Level-2 heading -> its text up to the next level-2 heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


def test_every_card_has_the_seven_datasheet_sections_in_order_and_none_empty():
    for card in _cards():
        sections = _sections(card.read_text())
        assert [title for title in sections if title in SECTIONS] == list(SECTIONS), card.name
        for title in SECTIONS:
            prose = re.sub(r"<!--.*?-->|^#+ .*$", "", sections[title], flags=re.MULTILINE)
            assert len(prose.split()) >= 20, f"{card.name}: section {title!r} is (nearly) empty"


def test_every_figure_the_cards_reference_exists_and_is_a_png():
    referenced = set()
    for card in _cards():
        referenced |= set(re.findall(r"figures/([\w.-]+\.(?:png|json))", card.read_text()))
    assert {"hint_lengths.png", "accidents_per_month.png", "label_rates.png", "numbers.json"} <= referenced
    numbers = json.loads((FIGURES / "numbers.json").read_text())
    for name in referenced | set(numbers["figures"]):
        path = FIGURES / name
        assert path.is_file(), f"{path} is referenced but missing"
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_card_tables_match_the_committed_numbers():
    """A table edited by hand, or numbers.json regenerated without rewriting the cards, fails here."""
    script = _script()
    numbers = json.loads((FIGURES / "numbers.json").read_text())
    assert set(numbers["algorithmic"]["algorithms"]) == set(script_algorithms())
    assert "DEMO" in numbers["road"]["regions"]
    for card, tables in script.card_tables(numbers).items():
        text = (CARDS / card).read_text()
        for name, table in tables.items():
            found = re.search(rf"<!-- figures:{name}:begin -->\n(.*?)\n<!-- figures:{name}:end -->", text, re.DOTALL)
            assert found, f"{card}: no generated table {name}"
            assert found.group(1) == table, f"{card}: table {name} differs from figures/numbers.json; run " \
                                            f"scripts/data_card_figures.py"


def test_committed_demo_numbers_agree_with_the_card_prose_facts():
    """The demo region's build as the road card describes it: 2,000 crashes kept, 20 dropped per bad-row kind."""
    demo = json.loads((FIGURES / "numbers.json").read_text())["road"]["regions"]["DEMO"]
    accounting = demo["crash_accounting"]
    assert accounting["kept"] == 2000 == sum(demo["accidents_per_month"].values())
    assert all(accounting[kind] == 20 for kind in ("missing_coordinates", "zero_coordinates", "swapped_lat_lon",
                                                   "outside_state", "unparseable_date", "duplicate", "unmatched"))
    assert accounting["records_read"] == 2000 + 7 * 20
    assert demo["accident_rows"] == sum(split["positive"] for split in demo["splits"].values())


def script_algorithms() -> tuple[str, ...]:
    from gnnbench.algo import ALGORITHMS
    return tuple(ALGORITHMS)


def test_label_rates_on_a_hand_computed_case():
    spec = {"is_cut": ("output", "node", "mask"), "is_bridge": ("output", "edge", "mask"),
            "pi": ("output", "node", "pointer"), "Pi": ("output", "edge", "pointer"),
            "head": ("output", "node", "mask_one")}
    # one graph on 3 nodes: edges 0->1, 1->0, 1->2 (and a self-loop at 2, not an edge for the rates)
    adjacency = np.array([[[0, 1, 0], [1, 0, 1], [0, 0, 1]]], dtype=float)
    outputs = {"is_cut": np.array([[0, 1, 0]]),
               "is_bridge": np.array([[[-1, 1, -1], [0, -1, 1], [-1, -1, -1]]]),
               "pi": np.array([[0, 0, 1]]),
               "Pi": np.array([[[0, 0, 1], [1, 1, 1], [2, 2, 2]]]),
               "head": np.array([[0, 0, 1]])}
    rates = _script().label_rates(spec, outputs, adjacency)
    assert rates["is_cut"]["positive_rate"] == pytest.approx(1 / 3)
    assert rates["is_bridge"]["positive_rate"] == pytest.approx(2 / 3)  # 3 scored entries (truth != -1), 2 positive
    assert rates["is_bridge"]["positive_rate_on_edges"] == pytest.approx(2 / 3)  # edges 0->1 (1), 1->0 (0), 1->2 (1)
    assert rates["pi"]["self_pointer_rate"] == pytest.approx(1 / 3)  # only node 0 points to itself
    # off-diagonal pairs whose predecessor is the row: (0,1), (1,0), (1,2), (2,0), (2,1) of 6
    assert rates["Pi"]["source_pointer_rate"] == pytest.approx(5 / 6)
    assert rates["head"]["positive_rate"] == pytest.approx(1 / 3)


def test_replace_tables_rewrites_only_the_marked_block_and_names_missing_markers():
    script = _script()
    text = "a\n<!-- figures:t:begin -->\nold\n<!-- figures:t:end -->\nb\n"
    assert script.replace_tables(text, {"t": "| x |"}, "c.md") == \
        "a\n<!-- figures:t:begin -->\n| x |\n<!-- figures:t:end -->\nb\n"
    with pytest.raises(ValueError, match=r"c\.md: needs the markers <!-- figures:u:begin -->"):
        script.replace_tables(text, {"u": "| y |"}, "c.md")


def test_a_subset_of_algorithms_needs_no_cards():
    with pytest.raises(SystemExit):
        _script().main(["--algorithms", "bfs", "--out", "unused"])


@pytest.mark.heavy
def test_quick_run_matches_values_recomputed_from_the_data(tmp_path, copy_demo_region):
    import pandas as pd
    import pyarrow.parquet as pq

    from gnnbench.datasets import RoadAccidentDataset
    from gnnbench.harness.algo_data import split_traces

    script = _script()
    road = copy_demo_region(tmp_path / "road")
    out = tmp_path / "figures"
    arguments = ["--algorithms", "bfs", "dijkstra", "--root", str(road), "--algo-root", str(tmp_path / "algo"),
                 "--no-cards", "--quick"]
    assert script.main([*arguments, "--out", str(out)]) == 0
    numbers = json.loads((out / "numbers.json").read_text())
    assert set(numbers["figures"]) == {"hint_lengths.png", "edges_per_graph.png", "label_rates.png",
                                       "accidents_per_month.png", "road_label_rates.png", "imagery_DEMO_demo.png"}
    # the demo region's imagery, made offline by the script: one crop per node, all usable, from the manifest
    imagery = numbers["road"]["regions"]["DEMO"]["imagery"]["demo"]
    nodes = pq.read_metadata(road / "tables" / "DEMO" / "nodes.parquet").num_rows
    assert imagery["counts"] == {"targets": nodes, "ok": nodes, "missing": 0, "out_of_coverage": 0, "corrupt": 0,
                                 "blank": 0, "failed": 0}
    assert imagery["resolution"]["m_per_px_median"] == pytest.approx(153.6 / 256) and "synthetic" in imagery["licence"]
    for name in numbers["figures"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # algorithmic: recomputed trace by trace from the package's split traces
    for algorithm in ("bfs", "dijkstra"):
        for split, (graphs, n) in {"train": (1000, 16), "valid": (32, 16), "test": (32, 64)}.items():
            traces = split_traces(algorithm, split)
            entry = numbers["algorithmic"]["algorithms"][algorithm][split]
            assert (entry["graphs"], entry["nodes"]) == (graphs, n) == (len(traces), traces[0].num_nodes)
            steps = np.array([next(iter(trace.hints.values())).shape[0] for trace in traces])
            assert entry["hint_lengths"] == {"min": steps.min(), "median": np.median(steps),
                                             "mean": pytest.approx(steps.mean(), abs=1e-6), "max": steps.max()}
            assert entry["hint_length_counts"] == {str(k): int((steps == k).sum()) for k in set(steps.tolist())}
            edges = np.array([sum(1 for i in range(n) for j in range(n) if i != j and trace.inputs["A"][i, j] != 0)
                              for trace in traces])
            assert entry["edges"]["mean"] == pytest.approx(edges.mean(), abs=1e-6)
            assert (entry["edges"]["min"], entry["edges"]["max"]) == (edges.min(), edges.max())
            roots = sum(int(trace.outputs["pi"][i] == i) for trace in traces for i in range(n))
            assert entry["labels"]["pi"]["self_pointer_rate"] == pytest.approx(roots / (graphs * n), abs=1e-6)

    # road: the demo region, from its tables and the dataset's tensors
    demo = numbers["road"]["regions"]["DEMO"]
    tables = road / "tables" / "DEMO"
    accidents = pd.read_parquet(tables / "accidents.parquet")
    monthly = accidents.groupby(["year", "month"])["count"].sum()
    assert demo["accidents_per_month"] == {f"{y:04d}-{m:02d}": int(c) for (y, m), c in monthly.items()}
    dataset = RoadAccidentDataset(road, "DEMO")
    static = dataset.static_graph
    assert (demo["nodes"], demo["edges"]) == (static.num_nodes, static.edge_index.shape[1])
    nodes, edges = pq.read_table(tables / "nodes.parquet"), pq.read_table(tables / "edges.parquet")
    assert (demo["nodes"], demo["edges"]) == (nodes.num_rows, edges.num_rows)
    segments = int(static.eval_mask.sum())
    assert demo["segments"] == segments
    for split, years in {"train": [2018, 2019], "valid": [2020], "test": [2021]}.items():
        rows = accidents[accidents["year"].isin(years) & (accidents["count"] > 0)]
        tensors = sum(int((dataset.snapshot(y, m).y[static.eval_mask] > 0).sum()) for y in years for m in range(1, 13))
        assert demo["splits"][split]["positive"] == len(rows) == tensors
        assert demo["splits"][split]["label_rate"] == pytest.approx(len(rows) / (12 * len(years) * segments), abs=1e-6)
    frame = edges.to_pandas()
    assert demo["missingness"]["edges.lanes (null)"] == pytest.approx(frame["lanes"].isna().mean(), abs=1e-6)
    filled = dataset.quality_report["node_weather"]["filled"]  # the weather adapter's own counts
    for column, methods in filled.items():
        assert demo["missingness"][f"node_weather.{column} (filled)"] == pytest.approx(
            1 - methods["observed"] / sum(methods.values()), abs=1e-6)

    # deterministic: a second run writes the same bytes
    again = tmp_path / "again"
    assert script.main([*arguments, "--out", str(again)]) == 0
    for name in [*numbers["figures"], "numbers.json"]:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
