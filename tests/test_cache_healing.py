"""Every cache gnnbench writes is verified on read: processed files heal with a warning, tables explain.

Each cache is damaged three ways (truncated, its bytes replaced by garbage of the same length, deleted):
a processed file (road arrays and their manifest, PyG's pre_transform.pt/pre_filter.pt, the algorithmic
trace cache, the preprocessed items) is rebuilt with a ``CacheRebuiltWarning`` naming it, and the rebuilt
data equals the original; a table (``tables/DEMO/*.parquet``, its ``manifest.json``) is an error naming the
file and the command that rebuilds it, from the datasets and from ``gnnbench info road``.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gnnbench.cli import main
from gnnbench.datasets import AlgorithmicReasoningDataset, RoadAccidentDataset
from gnnbench.io import CacheRebuiltWarning

KINDS = ("truncate", "garbage", "delete")
MONTH = (2019, 6)
SNAPSHOT_KEYS = ("x", "edge_index", "edge_attr", "y", "eval_mask")


def damage(path: Path, kind: str) -> None:
    """Truncate ``path`` to half, replace its bytes with as many bytes of garbage, or delete it."""
    data = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes((b"\x00garbage\xff\x80{" * len(data))[: len(data)])
    else:
        path.unlink()


def rebuilt_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, CacheRebuiltWarning)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_quiet(build):
    """``build()`` warns nothing about caches (the damaged one was really rebuilt)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheRebuiltWarning)
        return build()


# --- the road demo region --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory, copy_demo_region):
    """The demo region built once; its processed files (with PyG's records), one snapshot and the tables."""
    root = copy_demo_region(tmp_path_factory.mktemp("demo"))  # built once per test run (conftest.demo_region)
    dataset = RoadAccidentDataset(root, "DEMO")
    processed, tables = root / "processed" / "DEMO", root / "tables" / "DEMO"
    assert (processed / "pre_transform.pt").exists() and (processed / "pre_filter.pt").exists()
    return {"root": root, "snapshot": dataset.snapshot(*MONTH),
            "processed": {path.name: digest(path) for path in processed.glob("*.npy")},
            "tables": {path.name: digest(path) for path in tables.glob("*.parquet")}}


@pytest.fixture
def road(demo, tmp_path):
    """A private copy of the demo region's tables and processed arrays (no raw files: nothing needs them)."""
    root = tmp_path / "road"
    for part in ("tables", "processed"):
        shutil.copytree(demo["root"] / part, root / part)
    return root


def assert_snapshot_equal(dataset, expected):
    got = dataset.snapshot(*MONTH)
    for key in SNAPSHOT_KEYS:
        assert torch.equal(got[key], expected[key]), key


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["edge_index.npy", "weather.npy", "manifest.json", "pre_transform.pt",
                                  "pre_filter.pt"])
def test_damaged_processed_road_file_is_rebuilt_with_a_warning(demo, road, name, kind):
    path = road / "processed" / "DEMO" / name
    damage(path, kind)
    with pytest.warns(CacheRebuiltWarning) as record:
        dataset = RoadAccidentDataset(road, "DEMO")
    messages = rebuilt_warnings(record)
    assert len(messages) == 1 and str(path) in messages[0], messages
    assert_snapshot_equal(dataset, demo["snapshot"])
    rebuilt = road / "processed" / "DEMO"
    assert {p.name: digest(p) for p in rebuilt.glob("*.npy")} == demo["processed"]  # byte-identical arrays
    for record_name in ("pre_transform.pt", "pre_filter.pt"):
        assert torch.load(rebuilt / record_name, weights_only=True) == "None"  # what PyG records for no function
    assert_snapshot_equal(assert_quiet(lambda: RoadAccidentDataset(road, "DEMO")), demo["snapshot"])


def test_stale_road_arrays_are_rebuilt_with_a_warning_naming_the_manifest(demo, road):
    stored = road / "processed" / "DEMO" / "manifest.json"
    meta = json.loads(stored.read_text())
    meta["parameters"]["tables"]["edges"]["sha256"] = "0" * 64  # processed from other tables
    stored.write_text(json.dumps(meta))
    with pytest.warns(CacheRebuiltWarning, match="tables changed") as record:
        dataset = RoadAccidentDataset(road, "DEMO")
    assert str(stored) in rebuilt_warnings(record)[0]
    assert_snapshot_equal(dataset, demo["snapshot"])
    assert_quiet(lambda: RoadAccidentDataset(road, "DEMO"))


def _expected_command(root: Path) -> str:
    return f"gnnbench build road --state DEMO --root {shlex.quote(str(root))}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["edges.parquet", "accidents.parquet", "manifest.json"])
def test_damaged_table_is_an_error_naming_the_file_and_the_command(road, name, kind, capsys):
    path = road / "tables" / "DEMO" / name
    damage(path, kind)
    command = _expected_command(road)
    # the dataset, processing from the tables
    with pytest.raises((ValueError, FileNotFoundError)) as raised:
        RoadAccidentDataset(road, "DEMO", force_reload=True)
    message = str(raised.value)
    assert str(path) in message and f"`{command}`" in message, message
    # gnnbench info road: an error instead of a summary
    assert main(["info", "road", "--state", "DEMO", "--root", str(road)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gnnbench: error: "), lines
    assert str(path) in lines[0] and f"`{command}`" in lines[0], lines


def test_a_table_damaged_after_processing_is_reported_by_info_while_the_dataset_still_serves(demo, road, capsys):
    assert main(["info", "road", "--state", "DEMO", "--root", str(road)]) == 0  # intact: the summary
    assert "edges" in capsys.readouterr().out
    damage(road / "tables" / "DEMO" / "edges.parquet", "garbage")
    assert main(["info", "road", "--state", "DEMO", "--root", str(road)]) == 2
    assert "SHA-256 differs" in capsys.readouterr().err
    # the verified processed arrays do not depend on the damaged file: the dataset serves them unchanged
    assert_snapshot_equal(assert_quiet(lambda: RoadAccidentDataset(road, "DEMO")), demo["snapshot"])


def test_the_command_in_the_message_rebuilds_the_original_tables(demo, road, capsys):
    path = road / "tables" / "DEMO" / "edges.parquet"
    damage(path, "truncate")
    assert main(["info", "road", "--state", "DEMO", "--root", str(road)]) == 2
    command = capsys.readouterr().err.split("`")[1]
    assert command == _expected_command(road)
    assert main(shlex.split(command)[1:]) == 0
    rebuilt = {p.name: digest(p) for p in (road / "tables" / "DEMO").glob("*.parquet")}
    assert rebuilt == demo["tables"]  # the build is deterministic: the same bytes as before the damage
    dataset = RoadAccidentDataset(road, "DEMO")
    assert_snapshot_equal(dataset, demo["snapshot"])


# --- the algorithmic cache (already verified; here for completeness) ------------------------------------

ALGO = {"algorithm": "bfs", "split": "train", "num_samples": 4, "n": 5, "seed": 3}


def make_algo(root, **kwargs):
    return AlgorithmicReasoningDataset(root, **ALGO, **kwargs)


def algo_items(dataset):
    return [dataset[i] for i in range(len(dataset))]


def assert_items_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert set(x.keys()) == set(y.keys())
        for key in x.keys():
            assert torch.equal(x[key], y[key]) if torch.is_tensor(x[key]) else x[key] == y[key], key


@pytest.fixture(scope="module")
def algo(tmp_path_factory):
    root = tmp_path_factory.mktemp("algo")
    dataset = make_algo(root)
    return {"root": root, "items": algo_items(dataset)}


@pytest.fixture
def algo_root(algo, tmp_path):
    root = tmp_path / "datasets"
    shutil.copytree(algo["root"], root)
    return root


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("which", ["columns", "manifest", "pre_transform.pt", "pre_filter.pt"])
def test_damaged_algorithmic_cache_is_regenerated_with_a_warning(algo, algo_root, which, kind):
    processed = Path(make_algo(algo_root).processed_dir)
    columns, manifest = (Path(path) for path in make_algo(algo_root).processed_paths)
    path = {"columns": columns, "manifest": manifest}.get(which, processed / which)
    damage(path, kind)
    with pytest.warns(CacheRebuiltWarning) as record:
        dataset = make_algo(algo_root)
    messages = rebuilt_warnings(record)
    assert len(messages) == 1 and str(path) in messages[0], messages
    assert_items_equal(algo_items(dataset), algo["items"])
    assert_items_equal(algo_items(assert_quiet(lambda: make_algo(algo_root))), algo["items"])


def _x_from_pos(data):
    data.x = data.pos[:, None] * 3
    return data


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("which", ["items", "record"])
def test_damaged_preprocessed_items_are_made_again_with_a_warning(algo_root, which, kind):
    first = algo_items(make_algo(algo_root, pre_transform=_x_from_pos))
    (items,) = Path(algo_root).rglob("*.pre.pt")
    path = items if which == "items" else items.with_name(items.name.replace(".pre.pt", ".pre.json"))
    damage(path, kind)
    with pytest.warns(CacheRebuiltWarning) as record:
        again = make_algo(algo_root, pre_transform=_x_from_pos)
    messages = rebuilt_warnings(record)
    assert len(messages) == 1 and str(path) in messages[0], messages
    assert_items_equal(algo_items(again), first)
    np.testing.assert_allclose(again[1].x[:, 0].numpy(), again[1].pos.numpy() * 3, rtol=1e-6)
    assert_items_equal(algo_items(assert_quiet(lambda: make_algo(algo_root, pre_transform=_x_from_pos))), first)


def test_a_pre_transform_pt_pyg_cannot_read_no_longer_ends_in_an_unpickling_error(algo_root):
    """The file PyG reads with torch.load(weights_only=False): garbage there was 'invalid literal for int()'."""
    path = Path(make_algo(algo_root).processed_dir) / "pre_transform.pt"
    path.write_bytes(b"0garbage\n" * 10)
    with pytest.warns(CacheRebuiltWarning, match="pre_transform.pt: unreadable"):
        make_algo(algo_root)


def test_the_rebuild_command_names_the_build_or_the_import_and_a_root_outside_the_default(tmp_path, monkeypatch):
    from gnnbench.road.manifest import rebuild_command

    monkeypatch.setenv("GNNBENCH_HOME", str(tmp_path / "home"))
    default, other = tmp_path / "home" / "road", tmp_path / "my data"
    assert rebuild_command(default / "tables" / "MA") == "gnnbench build road --state MA"
    assert rebuild_command(default / "ml4roadsafety" / "tables" / "MA") == "gnnbench import ml4roadsafety --state MA"
    assert rebuild_command(other / "tables" / "DE") == f"gnnbench build road --state DE --root '{other}'"
    assert (rebuild_command(other / "ml4roadsafety" / "tables" / "DE")
            == f"gnnbench import ml4roadsafety --state DE --root '{other}'")
