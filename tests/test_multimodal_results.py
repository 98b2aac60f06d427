"""README's multimodal block is what scripts/multimodal_results.py makes of the committed run records, and every
record it cites is in the repository."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "multimodal_results.py"


def _script():
    spec = importlib.util.spec_from_file_location("multimodal_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _script()


@pytest.fixture(scope="module")
def block(script):
    return script.readme_block()


def test_readme_block_matches_the_committed_results(script, block):
    runs = script.load_runs()
    if not any(entry["records"] for entry in runs.values()):
        pytest.skip("no committed multimodal run records")
    assert block == script.render(runs).strip(), "README's multimodal block is stale: run " \
                                                 "`python scripts/multimodal_results.py`"
    assert script.main(["--check"]) == 0


def test_every_record_the_block_cites_is_committed(script, block):
    """Each cited run directory holds its config, dataset record, summary and a verified record per seed, and its
    summary.json agrees with those records (the harness wrote both)."""
    from gnnbench.harness.config import config_sha256
    from gnnbench.harness.record import finished_seeds, summarize
    from gnnbench.harness.values import read_toml

    cited = re.findall(r"`(results/multimodal/[^`]+)`", block)
    names = {spec.name for spec in script.specs().values()}
    for path in cited:
        directory = REPO / path
        assert directory.name in names, f"README cites {path}, which is none of the script's variants"
        for name in ("config.toml", "dataset.json", "environment.json", "summary.json", "summary.md"):
            assert (directory / name).is_file(), f"README cites {path}, which lacks {name}"
        config = read_toml(directory / "config.toml")
        digest = config_sha256(config)
        records = finished_seeds(directory, digest, missing_ok=(".pt",))  # git holds no weights
        summary = json.loads((directory / "summary.json").read_text())
        assert summary["config_sha256"] == digest
        assert sorted(records) == summary["seeds"], f"{path}: summary.json's seeds are not the verified records'"
        expected = summarize(records, name=summary["name"], config_sha256=digest)["metrics"]
        for metric, _ in script.METRICS:
            assert summary["metrics"][metric] == expected[metric], f"{path}: {metric}"
    for name in ("imagery.manifest.json", "embeddings.manifest.json"):
        if cited:
            assert (script.IMAGERY_RECORDS / name).is_file(), f"results/multimodal/imagery/{name} is not committed"
    for path in re.findall(r"`(results/[^`]+)`", block):  # the reference run it names as well
        assert (REPO / path / "summary.json").is_file(), f"README cites {path}, which is not in the repository"


def test_check_fails_on_a_stale_block(script, tmp_path, monkeypatch, capsys):
    begin, end = script.MARKERS
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{begin}\n| graph only | 99.99 |\n{end}\nrest\n")
    monkeypatch.setattr(script, "README", readme)
    assert script.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    readme.write_text("no markers here\n")
    with pytest.raises(SystemExit, match="lacks the markers"):
        script.main(["--check"])


def test_the_real_state_command_parses():
    """The block's command for a real state is one the CLI accepts (parsed only: it downloads imagery)."""
    from gnnbench.cli import _parser

    script = _script()
    parser = _parser()
    commands = [shlex.split(part) for part in script.REAL_STATE_COMMAND.split("&&")]
    assert [command[:3] for command in commands] == [["gnnbench", "download", "tiles"], ["gnnbench", "build", "tiles"],
                                                     ["gnnbench", "embed", "tiles"], ["gnnbench", "run",
                                                                                      "road_multimodal"]]
    for command in commands:
        parser.parse_args(command[1:])


def test_the_variants_are_the_shipped_configs(script):
    """Graph only is the shipped ``road`` protocol unchanged; the image runs differ from it only in the image
    features and the fusion (the comparison is like for like)."""
    from gnnbench.harness.config import differences

    runs = script.specs()
    base = runs["graph-only"].config
    assert base["train"]["epochs"] == 30 and base["data"]["state"] == "DEMO" and base["model"]["encoder"] == "sage"
    for key, spec in runs.items():
        if key == "graph-only":
            continue
        changed = {name for name, _, _ in differences(base, spec.config)}
        assert changed <= {"data.image_features", "model.fusion"}, (key, changed)
        assert spec.config["model"]["fusion"] == key
