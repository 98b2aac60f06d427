"""The leaderboard's git history check: nothing committed is removed or changed, compared with a base commit and,
with ``--history``, in every commit. Each test works in its own temporary repository (``git init``)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gnnbench.cli import main
from gnnbench.leaderboard.schema import identity_checksum
from gnnbench.leaderboard.validate import validate
from synthetic.leaderboard_runs import load, resummarise, save, submit_runs

pytestmark = pytest.mark.e2e

ALGO = "algo-clrs30-bfs/tiny-baseline"
ROAD = "road-demo-accident_occurrence/tiny-baseline"


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=test@example.org",
                           "-c", "commit.gpgsign=false", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def commit(repo, message):
    git(repo, "add", "-A", "leaderboard")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def pristine(leaderboard_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("history-pristine") / "submissions"
    submit_runs(leaderboard_runs, root)
    return root


@pytest.fixture
def repo(pristine, tmp_path):
    """A repository whose first commit adds both submissions under leaderboard/submissions."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    shutil.copytree(pristine, repo / "leaderboard" / "submissions")
    commit(repo, "leaderboard: first entries")
    return repo


def board(repo):
    return repo / "leaderboard" / "submissions"


def check(path, **options):
    return validate(path, **{"rescore": False, "cache": False, **options})


def test_untouched_board_passes(repo):
    report = check(board(repo), history=True)
    assert report.ok, report.all_errors()
    assert report.notes == ["history: 1 commit touching the submissions checked"]


def test_removed_seed_is_caught_by_history(repo):
    folder = board(repo) / ROAD
    data = load(folder)
    data["seeds"] = data["seeds"][:-1]
    data["num_seeds"] = 9
    resummarise(data)
    save(folder, data)
    (folder / "predictions" / "seed_9.parquet").unlink()
    assert check(board(repo)).all_errors() == [
        f"{ROAD}: num_seeds is 9: the road benchmark needs at least 10 seeds (0..9)",
        f"{ROAD}: seed 9: removed since HEAD; committed seeds are never removed"]


def test_removed_submission_is_caught(repo):
    shutil.rmtree(board(repo) / "algo-clrs30-bfs")
    report = check(board(repo))
    assert [entry.name for entry in report.entries] == [ROAD]
    assert report.errors == [f"{ALGO}: removed since HEAD; committed results are never removed from the board"]


def test_changed_score_is_caught_even_when_consistent(repo):
    """A metric changed with its summary (a careful edit the other checks without rescoring would pass)."""
    folder = board(repo) / ALGO
    data = load(folder)
    before = data["seeds"][0]["test"]["pi"]
    data["seeds"][0]["test"]["pi"] = before + 0.5
    data["seeds"][0]["test"]["score"] = before + 0.5
    resummarise(data)
    save(folder, data)
    errors = check(folder).all_errors()
    assert errors == [f"{ALGO}: seed 0: test.pi changed since HEAD ({before!r} -> {before + 0.5!r})",
                      f"{ALGO}: seed 0: test.score changed since HEAD ({before!r} -> {before + 0.5!r})"]


def test_changed_prediction_checksum_is_caught(repo):
    folder = board(repo) / ROAD
    data = load(folder)
    old = data["seeds"][4]["predictions"]["sha256"]
    path = folder / "predictions" / "seed_4.parquet"
    table = pq.read_table(path)
    pq.write_table(table.set_column(4, "prediction", pc.subtract(pa.scalar(1, pa.float32()), table["prediction"])),
                   path)
    new = hashlib.sha256(path.read_bytes()).hexdigest()
    data["seeds"][4]["predictions"].update(sha256=new, bytes=path.stat().st_size)
    save(folder, data)
    errors = check(board(repo)).all_errors()
    assert f"{ROAD}: seed 4: predictions.sha256 changed since HEAD ('{old}' -> '{new}')" in errors
    assert all(error.startswith(f"{ROAD}: seed 4: predictions.") for error in errors)  # and its bytes, if they differ


def test_changed_dataset_identity_is_caught(repo):
    folder = board(repo) / ALGO
    data = load(folder)
    data["dataset"]["identity"]["splits"]["valid"]["seed"] = 7
    data["dataset"]["identity_sha256"] = identity_checksum(data["dataset"]["identity"])
    save(folder, data)
    errors = check(folder).all_errors()
    assert errors[0] == f"{ALGO}: dataset.identity.splits.valid.seed changed since HEAD (2 -> 7)"
    assert errors[1].startswith(f"{ALGO}: dataset.identity_sha256 changed since HEAD ('")
    assert len(errors) == 2


def test_changed_hyperparameters_and_parameters_are_caught(repo):
    folder = board(repo) / ALGO
    data = load(folder)
    data["hyperparameters"]["train"]["steps"] = 10000
    data["parameters"] += 1
    save(folder, data)
    assert check(folder).all_errors() == [
        f"{ALGO}: hyperparameters.train.steps changed since HEAD (2 -> 10000)",
        f"{ALGO}: parameters changed since HEAD ({data['parameters'] - 1} -> {data['parameters']})"]


def test_method_metadata_may_change(repo):
    folder = board(repo) / ALGO
    data = load(folder)
    data["method"].update(contact="ada@example.com", description="now with a paper",
                          paper="https://example.org/paper", code_url="https://example.org/code",
                          authors=["Ada Lovelace", "Charles Babbage"])
    data["submitted"] = "2026-02-01"
    save(folder, data)
    report = check(board(repo))
    assert report.ok, report.all_errors()


def test_renamed_method_is_followed_by_its_predictions(repo):
    folder = board(repo) / ALGO
    data = load(folder)
    data["method"]["name"] = "Tiny baseline v2"
    save(folder, data)
    folder.rename(folder.parent / "tiny-baseline-v2")
    report = check(board(repo))
    assert report.ok, report.all_errors()
    assert f"{ALGO}: moved to algo-clrs30-bfs/tiny-baseline-v2 since HEAD (same predictions)" in report.notes


def test_added_seeds_are_allowed(pristine, tmp_path):
    """Seeds may be added (a submission first committed with seeds 0-1, then 0-2); committed ones stay."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    shutil.copytree(pristine / "algo-clrs30-bfs", board(repo) / "algo-clrs30-bfs")
    folder = board(repo) / ALGO
    full = load(folder)
    fewer = json.loads(json.dumps(full))
    fewer["seeds"], fewer["num_seeds"] = fewer["seeds"][:2], 2
    resummarise(fewer)
    save(folder, fewer)
    (folder / "predictions" / "seed_2.parquet").unlink()
    commit(repo, "two seeds")
    save(folder, full)
    shutil.copyfile(pristine / ALGO / "predictions" / "seed_2.parquet", folder / "predictions" / "seed_2.parquet")
    report = check(board(repo), history=True)
    assert report.ok, report.all_errors()
    assert report.notes == ["history: 1 commit touching the submissions checked"]


def test_every_commit_is_checked_with_history(repo):
    folder = board(repo) / ALGO
    data = load(folder)
    before = data["seeds"][2]["valid"]["score"]
    data["seeds"][2]["valid"]["score"] = data["seeds"][2]["valid"]["pi"] = 1.0
    resummarise(data)
    save(folder, data)
    sha = commit(repo, "better numbers")
    assert check(board(repo)).ok  # the working tree is HEAD: only the history sees it
    errors = check(board(repo), history=True).all_errors()
    assert f"{ALGO}: seed 2: valid.score changed in commit {sha[:10]} ({before!r} -> 1.0)" in errors
    assert len(errors) == 2  # valid.pi and valid.score
    assert main(["leaderboard", "validate", str(board(repo)), "--history", "--no-rescore", "--no-cache"]) == 1


def test_removal_in_a_past_commit_is_caught(repo):
    shutil.rmtree(board(repo) / "road-demo-accident_occurrence")
    sha = commit(repo, "drop the road entry")
    report = check(board(repo), history=True)
    assert report.errors == [f"{ROAD}: removed in commit {sha[:10]}; committed results are never removed from the "
                             "board"]


def test_leaderboard_change_trailer_turns_a_commit_into_a_note(repo):
    folder = board(repo) / ALGO
    data = load(folder)
    data["budget"] = "2 steps, CPU"
    save(folder, data)
    sha = commit(repo, "baselines: say the budget\n\nLeaderboard-Change: the budget was left out by mistake")
    report = check(board(repo), history=True)
    assert report.ok, report.all_errors()
    assert (f"commit {sha[:10]} changes committed results under 'Leaderboard-Change: the budget was left out by "
            f"mistake': {ALGO}: budget changed in commit {sha[:10]} ('' -> '2 steps, CPU')") in report.notes


def test_single_submission_folder_is_compared_too(repo):
    folder = board(repo) / ROAD
    data = load(folder)
    data["seeds"][7]["steps"] += 1
    save(folder, data)
    assert check(folder).all_errors() == [f"{ROAD}: seed 7: steps changed since HEAD ({data['seeds'][7]['steps'] - 1}"
                                          f" -> {data['seeds'][7]['steps']})"]


def test_history_never_touches_the_working_tree_or_index(repo):
    folder = board(repo) / ALGO
    (folder / "submission.json").write_text((folder / "submission.json").read_text() + "\n")  # uncommitted
    status = git(repo, "status", "--porcelain")
    index = (repo / ".git" / "index").read_bytes()
    check(board(repo), history=True)
    assert git(repo, "status", "--porcelain") == status == " M leaderboard/submissions/" + ALGO + "/submission.json\n"
    assert (repo / ".git" / "index").read_bytes() == index


def test_outside_a_repository_is_a_note(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "submissions")
    report = check(tmp_path / "submissions", history=True)
    assert report.ok
    assert len(report.notes) == 1 and re.fullmatch(
        rf"history not checked: {re.escape(str(tmp_path / 'submissions'))} is not in a git repository \(.*\)",
        report.notes[0])


def test_repository_without_commits_is_a_note(pristine, tmp_path):
    git(tmp_path, "init", "-q")
    shutil.copytree(pristine, tmp_path / "submissions")
    report = check(tmp_path / "submissions")
    assert report.ok
    assert report.notes == ["history not checked against HEAD: no such commit (a repository without commits?)"]


def test_shallow_clone_says_what_it_could_not_check(repo, tmp_path):
    folder = board(repo) / ALGO
    data = load(folder)
    data["method"]["description"] = "second commit"
    save(folder, data)
    sha = commit(repo, "describe the method")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repo}", str(clone)], check=True)
    report = check(board(clone), history=True)
    assert report.ok
    assert (f"history before commit {sha[:10]} is not in this clone (shallow); fetch the whole history "
            "(git fetch --unshallow) to check it") in report.notes
