"""The README's examples run as written (a documentation test).

Every ```python block of README.md runs as its own script in a fresh interpreter, offline
(``GNNBENCH_OFFLINE=1``), with ``GNNBENCH_HOME`` and the working directory in a temporary folder shared by the
blocks of one test session (data a block generates is reused by the next), ``OMP_NUM_THREADS=1``. A failure names
the block's README line and shows its stderr. The compiled-kernel cache is shared with this test run's own
``$GNNBENCH_HOME`` so that the blocks do not spend half a minute compiling what the rest of the suite compiled.

Every ``gnnbench`` command of the ```bash blocks is parsed by the CLI's own parser (its options exist and their
values are valid); the cheap ones run, the ``gnnbench run`` examples are resolved with ``--dry-run`` (they train for
minutes to hours), and the rest are listed below with the reason they are not run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

#: README commands the test parses but does not run, and why.
NOT_RUN = {
    "gnnbench download road --state MA": "downloads Massachusetts' crash portal, Overpass, Meteostat and HPMS "
                                         "(network)",
    "gnnbench build road --state MA": "needs the downloaded Massachusetts sources (network)",
    "gnnbench build road --state MN --crashes '~/Downloads/mn_crashes.csv'": "needs a crash export the user "
                                                                             "downloads by hand",
    "gnnbench import ml4roadsafety --state MA": "downloads the ML4RoadSafety release from Harvard Dataverse "
                                                "(network)",
    "gnnbench info road --state MA": "needs a Massachusetts build (network)",
    "gnnbench download tiles --state MA": "reads NAIP from the Planetary Computer for a Massachusetts build "
                                          "(network); the same path runs on loopback in "
                                          "tests/test_tiles_naip_pipeline.py",
    "gnnbench build tiles --state MA": "needs the Massachusetts tiles downloaded above (network)",
    "gnnbench embed tiles --state MA --model resnet18 --weights '~/resnet18-f37072fd.pth'": "needs the "
        "Massachusetts crops and a weights file downloaded by hand",
    "gnnbench info tiles --state MA": "needs the Massachusetts crops (network)",
    "gnnbench download tiles --state MA --scheduler tcp://head:8786 --rate 20": "needs a Dask cluster and the "
        "network; the Dask path runs on a LocalCluster in tests/test_tiles_pipeline.py",
    "gnnbench build tiles --state MA --scheduler tcp://head:8786": "needs a Dask cluster and the tiles above",
    "gnnbench embed tiles --state MA --model clip-vit-b32 --weights /shared/ViT-B-32.pt --scheduler "
    "tcp://head:8786": "needs a Dask cluster, the crops above and OpenAI's CLIP weights file; embedding on Dask "
                       "runs in tests/test_tiles_embed.py",
    "gnnbench submit runs/sage --method 'My SAGE' --author 'Ada Lovelace' --contact ada@example.org --code-url "
    "https://github.com/you/my-sage": "needs the run directory the `gnnbench run` above trains (only dry-run here); "
                                      "run -> submit -> validate -> render is tested end to end in "
                                      "tests/test_leaderboard_submit.py",
    "gnnbench leaderboard validate": "works on the repository's leaderboard/submissions: .ci/run runs it there "
                                     "(with --history) on every change",
    "gnnbench leaderboard render": "writes the repository's leaderboard/README.md and index.html: .ci/run checks "
                                   "them with --check on every change",
    "gnnbench branch search --algorithms all --processor mpnn --out search/": "trains and estimates for an hour on "
                                                                               "a CPU; a tiny search runs in "
                                                                               "tests/test_multitask_search.py",
    "gnnbench branch train --tree search/tree.json --seeds 0-2": "needs the tree the search above writes; "
                                                                 "search -> train is tested in "
                                                                 "tests/test_multitask_search.py",
}
#: Sub-commands only parsed wherever they appear: ``quickstart`` is part of the README's set-up commands (install,
#: quickstart, the whole suite), which .ci/run runs verbatim in a fresh environment (and it takes minutes).
NOT_RUN_SUBCOMMANDS = {"quickstart": "a set-up command, run verbatim by .ci/run"}
#: ``gnnbench run`` trains (minutes to hours, some on a GPU or a Dask cluster): resolved with --dry-run instead.
DRY_RUN_COMMAND = "run"
#: ``gnnbench branch train`` trains through the same harness (minutes to hours): resolved with --dry-run as well.
DRY_RUN_BRANCH = ("branch", "train")


@dataclass(frozen=True)
class Block:
    language: str
    line: int  # the README line of the opening fence (1-based)
    text: str

    @property
    def first_line(self) -> int:
        return self.line + 1


def readme_blocks(text: str) -> list[Block]:
    """Every fenced code block of a Markdown text, with its language and the line of its opening fence."""
    blocks, opening, language, body = [], None, "", []
    for number, line in enumerate(text.splitlines(), start=1):
        fence = re.match(r"^\s*```(\S*)\s*$", line)
        if opening is None and fence:
            opening, language, body = number, fence.group(1), []
        elif opening is not None and fence and not fence.group(1):
            blocks.append(Block(language, opening, "\n".join(body) + "\n"))
            opening = None
        elif opening is not None:
            body.append(line)
    if opening is not None:
        raise ValueError(f"README.md line {opening}: the ```{language} block is never closed")
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
PYTHON = [block for block in BLOCKS if block.language == "python"]
BASH = [block for block in BLOCKS if block.language == "bash"]
TOML = [block for block in BLOCKS if block.language == "toml"]


def test_the_readme_has_examples_and_every_fence_closes():
    assert len(PYTHON) >= 6 and len(BASH) >= 3
    text = "```python\nx = 1\n```\n\n```bash\nls\n```\n"
    assert readme_blocks(text) == [Block("python", 1, "x = 1\n"), Block("bash", 5, "ls\n")]
    with pytest.raises(ValueError, match="line 1: the ```python block is never closed"):
        readme_blocks("```python\nx = 1\n")


@pytest.fixture(scope="session")
def readme_place(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A working directory and an environment shared by the README's blocks in this session."""
    from gnnbench.compile_cache import kernel_cache_dir

    place = tmp_path_factory.mktemp("readme")
    work, home = place / "work", place / "home"
    work.mkdir()
    home.mkdir()
    kernels = kernel_cache_dir().parent  # this run's compiled kernels, e.g. $GNNBENCH_HOME/numba
    kernels.mkdir(parents=True, exist_ok=True)
    (home / kernels.name).symlink_to(kernels, target_is_directory=True)
    env = {**os.environ, "GNNBENCH_HOME": str(home), "GNNBENCH_OFFLINE": "1", "GNNBENCH_PROGRESS": "0",
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    for block in TOML:  # files the README shows (the run example's my_config.toml), under the name in their first line
        name = re.match(r"#\s*(\S+\.toml)", block.text)
        if name:
            (work / name.group(1)).write_text(block.text)
    return work, env


def _dgl_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("dgl") is not None


def _uses_dgl(block: Block) -> bool:
    return "gnnbench.datasets.dgl" in block.text


@pytest.mark.parametrize("block", [  # the DGL example is also marked dgl: `-m dgl` in CI's DGL environment runs it
    pytest.param(block, id=f"line{block.line}",
                 marks=[pytest.mark.heavy, *([pytest.mark.dgl] if _uses_dgl(block) else [])])
    for block in PYTHON])
def test_readme_python_block_runs_as_written(block, readme_place):
    work, env = readme_place
    if _uses_dgl(block) and not _dgl_installed() and not os.environ.get("GNNBENCH_REQUIRE_DGL"):
        pytest.skip('the DGL example needs the optional extra (pip install "gnnbench[dgl]")')
    script = work / f"readme_line{block.line}.py"
    script.write_text(block.text)
    done = subprocess.run([sys.executable, script.name], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (
        f"README.md line {block.first_line}: the ```python block fails (exit {done.returncode}; line k of "
        f"{script.name} is README line {block.line} + k)\n--- stderr ---\n{done.stderr[-6000:]}")


def _commands(block: Block) -> list[str]:
    """The gnnbench commands of a bash block: comments dropped, ``&&``-chains split, ``\\``-continued lines joined."""
    commands = []
    for line in re.sub(r"\\\n", " ", block.text).splitlines():
        part: list[str] = []
        for word in [*shlex.split(line, comments=True), "&&"]:
            if word != "&&":
                part.append(word)
                continue
            if part[:1] == ["gnnbench"]:
                commands.append(shlex.join(part))  # quoted again: "My method" stays one argument
            part = []
    return commands


COMMANDS = [command for block in BASH for command in _commands(block)]


def test_the_not_run_list_names_only_readme_commands():
    assert set(NOT_RUN) <= set(COMMANDS), f"no longer in the README: {sorted(set(NOT_RUN) - set(COMMANDS))}"
    assert any(command.startswith("gnnbench quickstart") for command in COMMANDS)  # the set-up block is parsed


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_gnnbench_command_parses_and_runs(command, readme_place, monkeypatch, capsys):
    from gnnbench.cli import _parser, main

    work, env = readme_place
    argv = [os.path.expanduser(word) for word in shlex.split(command)[1:]]
    try:
        _parser().parse_args(argv)
    except SystemExit as error:
        pytest.fail(f"README command {command!r} does not parse (exit {error.code}):\n{capsys.readouterr().err}")
    if command in NOT_RUN or argv[0] in NOT_RUN_SUBCOMMANDS:
        return
    if argv[0] == DRY_RUN_COMMAND or tuple(argv[:2]) == DRY_RUN_BRANCH:
        argv.append("--dry-run")
    for name in ("GNNBENCH_HOME", "GNNBENCH_OFFLINE", "GNNBENCH_PROGRESS"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.chdir(work)
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 0, f"README command {' '.join(['gnnbench', *argv])!r} exits {status}:\n{captured.err}"
    assert captured.out.strip(), f"README command {command!r} printed nothing"
