"""The ``gnnbench`` command line (called in-process through ``gnnbench.cli.main``)."""

import json
from pathlib import Path

import pytest

from gnnbench import __version__
from gnnbench.algo import ALGORITHMS, SPECS, sample
from gnnbench.cli import main


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Nothing a test forgets to point at tmp_path lands in the real cache."""
    monkeypatch.setenv("GNNBENCH_HOME", str(tmp_path / "home"))


@pytest.mark.heavy
def test_quickstart(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # PyG prints "Processing..." only outside pytest
    root = tmp_path / "data"
    runs = tmp_path / "runs"
    assert main(["quickstart", "--root", str(root), "--road-root", str(tmp_path / "road"), "--out", str(runs),
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "Processing" not in captured.err + out and "Done!" not in captured.err + out  # no library prints
    # stderr holds the CLI's own notices only (e.g. "compiling the bfs kernels once"): no warnings, tracebacks, prints
    assert all(line.startswith("gnnbench: ") for line in captured.err.splitlines()), captured.err
    assert f"gnnbench {__version__} quickstart" in out and "'bfs'" in out
    lines = out.splitlines()
    for split, graphs, nodes in (("train", 1000, 16), ("valid", 32, 16), ("test", 32, 64)):
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
    assert "96 intersections, 325 directed road segments, 48 months (one graph each)" in out
    assert "crash records: read 2140, kept 2000" in out and "speed-limit heuristic" in out
    assert (tmp_path / "road" / "tables" / "DEMO" / "manifest.json").exists()
    # the two baselines: one harness run directory each, one summary table, the command that reproduces each
    records = {path.parent.parent.name: json.loads(path.read_text()) for path in runs.glob("*/seed_0/record.json")}
    assert sorted(name.split("-")[0] for name in records) == ["algo", "road"]
    table = lines[lines.index(next(line for line in lines if line.startswith("run "))):]
    for name, record in records.items():
        row = next(line for line in table if line.startswith(name))
        assert f"{record['test']['score']:.4f}" in row, row
        hessian = record["hessian"]
        assert hessian["trace"] > 0 and hessian["top_eigenvalue"] > 0 and hessian["measured_gap"] is not None
        assert record["valid"]["score"] > 0.6, (name, record["valid"])  # both learn: BFS nearly perfectly
    algo = next(record for name, record in records.items() if name.startswith("algo"))
    assert algo["test"]["score"] >= 0.9, algo["test"]
    assert out.count("reproduce: gnnbench run ") == 2
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


@pytest.mark.parametrize("spelling", ["valid", "val"])
def test_algo_generate_prints_json_lines(tmp_path, capsys, spelling):
    root = tmp_path / "data"
    argv = ["algo", "generate", "dfs", "--split", spelling, "--num-samples", "5", "-n", "6", "--root", str(root)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["algorithm"] == "dfs" and record["split"] == "valid"  # CLRS-30's "val" is the same split
    assert (record["graphs"], record["n"], record["seed"]) == (5, 6, 2)
    lengths = sample("dfs", 5, n=6, seed=2).lengths  # the valid split's seed, drawn independently
    assert record["max_steps"] == int(lengths.max()) and record["mean_steps"] == round(float(lengths.mean()), 2)
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
    (["algo", "generate", "dfz", "--split", "valid", "--num-samples", "5", "-n", "6"], "unknown algorithm 'dfz'"),
    (["algo", "generate", "dfs", "--split", "vall", "--num-samples", "5", "-n", "6"], "unknown split 'vall'"),
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


@pytest.mark.parametrize("argv, option", [
    (["algo", "generate", "bfs", "--num-samples", "-1"], "--num-samples"),
    (["algo", "generate", "bfs", "-n", "0"], "--nodes"),
    (["algo", "generate", "bfs", "-n", "2.5"], "invalid int value"),
    (["algo", "generate", "bfs", "--seed", "-3"], "--seed"),
    (["algo", "generate", "bfs", "--seed", str(2**32)], "--seed"),
    (["algo", "generate", "bfs", "--p", "1.5"], "--p"),
    (["algo", "generate", "bfs", "--p", "nan"], "--p"),
    (["build", "road", "--state", "DE", "--max-distance", "0"], "--max-distance"),
    (["build", "road", "--state", "DE", "--max-distance", "-5"], "--max-distance"),
    (["build", "road", "--state", "DE", "--years", "2019", "19"], "--years"),
    (["download", "road", "--state", "DE", "--years", "-2019"], "--years"),
    (["hessian", "report", "--spec", "s.py", "--checkpoint", "m.pt", "--num-matvecs", "0"], "--num-matvecs"),
    (["hessian", "report", "--spec", "s.py", "--checkpoint", "m.pt", "--top-k", "0"], "--top-k"),
    (["hessian", "report", "--spec", "s.py", "--checkpoint", "m.pt", "--seed", "-1"], "--seed"),
])
def test_numeric_options_are_checked_and_named(tmp_path, capsys, argv, option):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--root", str(tmp_path)] if argv[0] != "hessian" else argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err
    assert not (tmp_path / "algorithmic_reasoning").exists()


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

    root = tmp_path / "road"
    assert main(["build", "road", "--state", "DEMO", "--root", str(root)]) == 0
    assert main(["info", "road", "--state", "DEMO", "--root", str(root)]) == 0
    captured = capsys.readouterr()
    assert "deprecated" not in captured.err
    out = captured.out
    assert f"DEMO: tables at {root / 'tables' / 'DEMO'}" in out
    assert "accidents" in out and "dropped unmatched: 20" in out and "splits: train 2018-2019" in out
    assert main(["info", "road", "--state", "DEMO", "--root", str(root), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest == json.loads((root / "tables" / "DEMO" / "manifest.json").read_text())
    assert manifest["kind"] == "build"


def test_home_is_a_deprecated_spelling_of_root(tmp_path, capsys):
    root = tmp_path / "road"
    assert main(["build", "road", "--state", "DEMO", "--root", str(root)]) == 0
    capsys.readouterr()
    assert main(["info", "road", "--state", "DEMO", "--home", str(root), "--json"]) == 0
    captured = capsys.readouterr()
    assert "--home is deprecated" in captured.err and "use --root" in captured.err
    assert json.loads(captured.out)["state"] == "DEMO"  # read from the --home directory
    assert not (tmp_path / "home" / "road").exists()  # not the default root


@pytest.mark.parametrize("command", [["download", "road"], ["build", "road"], ["import", "ml4roadsafety"],
                                     ["info", "road"], ["hessian", "diffusion"], ["algo", "generate"],
                                     ["quickstart"], ["download", "tiles"], ["build", "tiles"], ["info", "tiles"],
                                     ["embed", "tiles"]])
def test_every_data_directory_option_is_called_root(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "--root DIR" in text and "--home" not in text
    if command[0] in ("download", "build", "import", "info", "hessian", "embed"):
        assert "$GNNBENCH_HOME/road" in text


def test_road_commands_explain_manual_states_and_missing_builds(tmp_path, capsys):
    from gnnbench.cli import main

    root = tmp_path / "road"
    assert main(["build", "road", "--state", "MN", "--root", str(root)]) == 2
    assert "road network" in capsys.readouterr().err
    assert main(["info", "road", "--state", "MA", "--root", str(root)]) == 2
    assert "no road build found" in capsys.readouterr().err
    assert main(["build", "road", "--state", "XX", "--root", str(root)]) == 2
    assert "unknown state" in capsys.readouterr().err
