"""The ``gnnbench`` command line (called in-process through ``gnnbench.cli.main``)."""

import json
from pathlib import Path

import pytest

from gnnbench import __version__
from gnnbench.algo import ALGORITHMS, SPECS
from gnnbench.cli import main


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Nothing a test forgets to point at tmp_path lands in the real cache."""
    monkeypatch.setenv("GNNBENCH_HOME", str(tmp_path / "home"))


def test_quickstart(tmp_path, capsys):
    root = tmp_path / "data"
    assert main(["quickstart", "--root", str(root), "--road-root", str(tmp_path / "road")]) == 0
    out = capsys.readouterr().out
    assert f"gnnbench {__version__} quickstart" in out and "'bfs'" in out
    lines = out.splitlines()
    for split, graphs, nodes in (("train", 1000, 16), ("val", 32, 16), ("test", 32, 64)):
        line = next(line for line in lines if line.strip().startswith(f"{split} ") or
                    line.strip().startswith(f"{split}:"))
        assert f"{graphs} graphs" in line and f"{nodes} nodes" in line, line
    assert "evaluator check: the true outputs score 1.000" in out
    for stage in ("input", "hint", "output"):
        assert f"{stage} fields:" in out
    assert "pi (node pointer)" in out
    processed = root / "algorithmic_reasoning" / "bfs" / "processed"
    assert str(processed) in out
    assert len(list(processed.glob("*.npz"))) == 3
    assert "96 intersections, 325 directed road segments, 48 months" in out
    assert "crash records: read 2140, kept 2000" in out and "speed-limit heuristic" in out
    assert (tmp_path / "road" / "tables" / "DEMO" / "manifest.json").exists()
    home = tmp_path / "home"
    assert not home.exists() or {path.name for path in home.iterdir()} <= {"numba"}  # compiled kernels only


def test_quickstart_other_algorithm_and_bad_name(tmp_path, capsys):
    assert main(["quickstart", "--algorithm", "nope", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "gnnbench: error: unknown algorithm 'nope'" in err


def test_algo_list(capsys):
    assert main(["algo", "list"]) == 0
    out = capsys.readouterr().out
    listed = [line.split(":")[0] for line in out.splitlines() if line and not line.startswith(" ")]
    assert listed == list(ALGORITHMS)
    assert "strongly_connected_components: community" in out
    assert "topological_sort: er p=[0.5] directed acyclic" in out
    for name in ALGORITHMS:
        for field in SPECS[name]:
            assert f"{field}:" in out


def test_algo_generate_prints_json_lines(tmp_path, capsys):
    root = tmp_path / "data"
    argv = ["algo", "generate", "dfs", "--split", "val", "--num-samples", "5", "-n", "6", "--root", str(root)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["algorithm"] == "dfs" and record["split"] == "val"
    assert (record["graphs"], record["n"], record["seed"]) == (5, 6, 2)
    assert record["max_steps"] >= 1 and record["mean_steps"] <= record["max_steps"]
    assert record["seconds"] >= 0
    path = Path(record["path"])
    assert path.exists() and path.suffix == ".npz"
    assert path.parent == root / "algorithmic_reasoning" / "dfs" / "processed"
    assert path.with_suffix(".json").exists()


def test_algo_generate_several(tmp_path, capsys):
    argv = ["algo", "generate", "bfs", "dijkstra", "--split", "train", "--split", "test_16", "--num-samples", "3",
            "-n", "5", "--seed", "9", "--p", "0.3", "--p", "0.6", "--root", str(tmp_path)]
    assert main(argv) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [(r["algorithm"], r["split"]) for r in records] == [
        ("bfs", "train"), ("bfs", "test_16"), ("dijkstra", "train"), ("dijkstra", "test_16")]
    assert all(r["graphs"] == 3 and r["n"] == 5 and r["seed"] == 9 for r in records)
    # the p option is part of the cache key: without it, a different file
    assert main(["algo", "generate", "bfs", "--split", "train", "--num-samples", "3", "-n", "5", "--seed", "9",
                 "--root", str(tmp_path)]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["path"] != records[0]["path"]


def test_algo_generate_force_reload(tmp_path, capsys, monkeypatch):
    import gnnbench.datasets.algorithmic_reasoning as ar_module
    from gnnbench.algo import sample

    calls = []
    monkeypatch.setattr(ar_module, "sample", lambda *a, **k: calls.append(a) or sample(*a, **k))
    argv = ["algo", "generate", "bfs", "--split", "val", "--num-samples", "3", "-n", "4", "--root", str(tmp_path)]
    assert main(argv) == 0 and len(calls) == 1
    assert main(argv) == 0 and len(calls) == 1
    assert main([*argv, "--force-reload"]) == 0 and len(calls) == 2
    capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["algo", "generate", "dfz", "--split", "val", "--num-samples", "5", "-n", "6"], "unknown algorithm 'dfz'"),
    (["algo", "generate", "dfs", "--split", "vall", "--num-samples", "5", "-n", "6"], "unknown split 'vall'"),
    (["algo", "generate", "bfs", "--split", "val", "--num-samples", "5", "-n", "6", "--p", "1.5"],
     "edge probabilities p"),
])
def test_algo_generate_errors(tmp_path, capsys, argv, message):
    assert main([*argv, "--root", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "gnnbench: error:" in captured.err and message in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_bad_algorithm_error_lists_valid_names(tmp_path, capsys):
    assert main(["algo", "generate", "dfz", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    for name in ALGORITHMS:
        assert name in err


def test_argparse_errors_exit_with_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["algo", "generate", "bfs", "--num-samples", "many"])
    assert info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_no_arguments_prints_help(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: gnnbench")
    assert "quickstart" in out and "algo" in out


def test_algo_without_subcommand_prints_help(capsys):
    assert main(["algo"]) == 2
    assert "usage:" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"gnnbench {__version__}"


def test_road_commands_build_and_describe_the_demo_region(tmp_path, capsys):
    from gnnbench.cli import main

    home = tmp_path / "road"
    assert main(["build", "road", "--state", "DEMO", "--home", str(home)]) == 0
    assert main(["info", "road", "--state", "DEMO", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "accidents" in out and "dropped unmatched: 20" in out and "splits: train 2018-2019" in out
    assert main(["info", "road", "--state", "DEMO", "--home", str(home), "--json"]) == 0
    assert '"kind": "build"' in capsys.readouterr().out


def test_road_commands_explain_manual_states_and_missing_builds(tmp_path, capsys):
    from gnnbench.cli import main

    home = tmp_path / "road"
    assert main(["build", "road", "--state", "MN", "--home", str(home)]) == 2
    assert "road network" in capsys.readouterr().err
    assert main(["info", "road", "--state", "MA", "--home", str(home)]) == 2
    assert "no road build found" in capsys.readouterr().err
    assert main(["build", "road", "--state", "XX", "--home", str(home)]) == 2
    assert "unknown state" in capsys.readouterr().err
