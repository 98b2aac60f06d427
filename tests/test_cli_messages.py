"""Consistent CLI messages: every option documented, unknown names listed with the valid ones, nothing created
for a rejected name, counts that must be positive rejected before any work."""

import argparse
import warnings

import pytest

from gnnbench.cli import _parser, main
from gnnbench.cli_options import DeprecatedOption

#: The registry's eight states (issue 3) and the demo region, written out here rather than read from the code.
STATES = ["DE", "IA", "IL", "MD", "MA", "MN", "MT", "NV"]


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GNNBENCH_HOME", str(tmp_path / "home"))


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every (command path, parser) of the argparse tree, the top-level parser first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _nothing_but_kernels(home):
    """Nothing under GNNBENCH_HOME but numba's compiled-kernel cache (shared by every command, made on import)."""
    return not home.exists() or {path.name for path in home.iterdir()} <= {"numba"}


def _valid_names(err: str) -> list[str]:
    """The names after 'valid: ' in an error line."""
    line = next(line for line in err.splitlines() if "valid: " in line)
    return [name.strip() for name in line.split("valid: ", 1)[1].split(",")]


def test_the_walk_reaches_every_command():
    paths = {" ".join(path) for path, _ in _walk(_parser())}
    assert {"quickstart", "algo list", "algo generate", "run", "hessian report", "hessian diffusion",
            "download road", "build road", "import ml4roadsafety", "info road"} <= paths


def test_every_option_positional_and_command_has_help():
    missing = []
    for path, parser in _walk(_parser()):
        for action in parser._actions:
            where = " ".join(path) or "gnnbench"
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{where} {choice.dest}" for choice in action._choices_actions
                            if not (choice.help or "").strip()]
                continue
            if action.help == argparse.SUPPRESS:
                assert isinstance(action, DeprecatedOption), (where, action.option_strings)  # hidden: old names only
                continue
            if not (action.help or "").strip():
                missing.append(f"{where} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def _choice_cases():
    for path, parser in _walk(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                yield pytest.param([*path, "no-such-choice"], list(action.choices), id=" ".join([*path, "COMMAND"]))
            elif action.choices is not None:
                yield pytest.param([*path, action.option_strings[0], "no-such-choice"], list(action.choices),
                                   id=" ".join([*path, action.option_strings[0]]))


@pytest.mark.parametrize("argv, choices", list(_choice_cases()))
def test_every_choice_error_lists_the_choices(capsys, argv, choices):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'no-such-choice'" in err and all(f"'{choice}'" in err for choice in choices), err


def test_hessian_report_documents_method_and_seed(capsys):
    with pytest.raises(SystemExit):
        main(["hessian", "report", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--method {hutch++,hutchinson} trace estimator" in text
    assert "--seed SEED seed of the random vectors" in text


@pytest.mark.parametrize("argv", [
    ["info", "road", "--state", "XX"],
    ["info", "road", "--state", "XX", "--source", "ml4roadsafety"],
    ["hessian", "diffusion", "--state", "XX"],
    ["download", "road", "--state", "XX"],
])
def test_unknown_state_lists_the_valid_ones_and_creates_nothing(tmp_path, capsys, argv):
    root = tmp_path / "road"
    assert main([*argv, "--root", str(root)]) == 2
    captured = capsys.readouterr()
    assert "gnnbench: error: unknown state 'XX'" in captured.err
    if argv[0] != "download":  # the commands that also read regions built under --root say where they looked
        assert f"(no tables in {root}/" in captured.err and "/tables/XX); valid: " in captured.err
    assert _valid_names(captured.err) == [*STATES, "DEMO"]
    assert "no road build found" not in captured.err and "download road --state XX" not in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert not root.exists() and _nothing_but_kernels(tmp_path / "home")  # no road/tables/XX, nor anything else


def test_run_rejects_an_unknown_state_before_any_run_directory(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", "road", "--state", "XX", "--seeds", "0", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "data.state: unknown state 'XX' (no tables in " in err and _valid_names(err) == [*STATES, "DEMO"]
    assert not out.exists() and _nothing_but_kernels(tmp_path / "home")


def test_build_road_lists_all_among_the_valid_names(tmp_path, capsys):
    assert main(["build", "road", "--state", "XX", "--root", str(tmp_path / "road")]) == 2
    assert _valid_names(capsys.readouterr().err) == [*STATES, "DEMO", "all"]
    assert not (tmp_path / "road").exists()


def test_import_ml4roadsafety_lists_the_release_states(tmp_path, capsys):
    for state in ("XX", "DEMO"):  # the release has no demo region
        assert main(["import", "ml4roadsafety", "--state", state, "--root", str(tmp_path / "road")]) == 2
        err = capsys.readouterr().err
        assert f"unknown state '{state}'" in err and _valid_names(err) == STATES
    assert not (tmp_path / "road").exists()


def test_known_state_without_a_build_is_not_called_unknown(tmp_path, capsys):
    assert main(["info", "road", "--state", "ma", "--root", str(tmp_path / "road")]) == 2  # any case
    err = capsys.readouterr().err
    assert "unknown state" not in err and "no road build found" in err


def test_a_region_built_under_root_is_not_called_unknown(tmp_path, capsys):
    """Regions outside the registry with tables of their own (the synthetic state-scale region) stay readable."""
    tables = tmp_path / "road" / "tables" / "ZZ"
    tables.mkdir(parents=True)
    (tables / "edges.parquet").write_bytes(b"not parquet")
    assert main(["info", "road", "--state", "zz", "--root", str(tmp_path / "road")]) == 2
    err = capsys.readouterr().err
    assert "unknown state" not in err and "ZZ" in err  # the tables' own problem instead
    from gnnbench.harness import resolve

    specs = resolve("road", shortcuts={"state": "ZZ", "root": str(tmp_path / "road")})
    assert specs[0].config["data"]["state"] == "ZZ"
    with pytest.raises(ValueError, match="data.state: unknown state 'YY'"):
        resolve("road", shortcuts={"state": "YY", "root": str(tmp_path / "road")})


@pytest.mark.parametrize("state, error, message", [
    ("XX", ValueError, r"unknown state 'XX' \(no tables in .*/tables/XX\); valid: DE, IA, IL, MD, MA, MN, MT, NV, DEMO$"),
    ("MA", FileNotFoundError, "no road tables for MA .*gnnbench download road --state MA"),  # known, not built
])
@pytest.mark.parametrize("source", ["build", "ml4roadsafety"])
def test_road_dataset_rejects_without_creating_folders(tmp_path, state, error, message, source):
    from gnnbench.datasets import RoadAccidentDataset

    if source == "ml4roadsafety" and state == "MA":
        message = "no imported ML4RoadSafety tables for MA .*gnnbench import ml4roadsafety --state MA"
    with pytest.raises(error, match=message):
        RoadAccidentDataset(tmp_path / "road", state, source=source)
    assert not (tmp_path / "road").exists()


@pytest.mark.parametrize("argv, message", [
    (["algo", "generate", "bfs", "dfz"], "unknown algorithm 'dfz'"),  # bfs is not generated first
    (["algo", "generate", "bfs", "--split", "train", "--split", "vall"], "unknown split 'vall'"),
])
def test_algo_generate_checks_every_name_before_any_work(tmp_path, capsys, argv, message):
    assert main([*argv, "--num-samples", "2", "-n", "4", "--root", str(tmp_path / "data")]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
    assert not (tmp_path / "data").exists()


def test_quickstart_rejects_an_unknown_algorithm_before_any_output(tmp_path, capsys):
    assert main(["quickstart", "--algorithm", "nope", "--root", str(tmp_path / "data")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "unknown algorithm 'nope'; valid algorithms are: bfs, dfs" in captured.err
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("argv, message", [
    (["algo", "generate", "bfs", "--num-samples", "0"], "--num-samples must be an integer >= 1, got 0"),
    (["algo", "generate", "bfs", "-n", "0"], "--nodes must be an integer >= 1, got 0"),
    (["run", "algo", "--jobs", "0"], "--jobs must be an integer >= 1, got 0"),
    (["hessian", "report", "--spec", "s.py", "--checkpoint", "m.pt", "--top-k", "0"],
     "--top-k must be an integer >= 1, got 0"),
    (["hessian", "report", "--spec", "s.py", "--checkpoint", "m.pt", "--num-matvecs", "0"],
     "--num-matvecs must be an integer >= 1, got 0"),
])
def test_zero_counts_are_rejected_before_any_work(tmp_path, capsys, argv, message):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy "mean of empty slice" on the way
        with pytest.raises(SystemExit) as info:
            main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
    assert _nothing_but_kernels(tmp_path / "home")
