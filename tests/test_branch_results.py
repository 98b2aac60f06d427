"""README's branching results block is what scripts/branch_results.py makes of the committed run records."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "branch_results.py"


def _script():
    spec = importlib.util.spec_from_file_location("branch_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_block_matches_the_committed_results():
    pytest.importorskip("cvxpy")  # the note on whole-kept task sets re-solves the SDP sweep
    script = _script()
    if not (script.RESULTS / "search" / "tree.json").exists():
        pytest.skip("no committed branching results")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert script.main(["--print"]) == 0
    begin, end = script.MARKERS
    block = script.README.read_text().split(begin, 1)[1].split(end, 1)[0]
    assert block.strip() == out.getvalue().strip(), "README's branch:results block is stale: run " \
                                                    "`python scripts/branch_results.py`"


def test_every_figure_the_block_shows_is_committed():
    script = _script()
    begin, end = script.MARKERS
    block = script.README.read_text().split(begin, 1)[1].split(end, 1)[0]
    for line in block.splitlines():
        if line.startswith("!["):
            path = line.split("](", 1)[1].rstrip(")")
            assert (REPO / path).is_file(), f"README shows {path}, which is not in the repository"
