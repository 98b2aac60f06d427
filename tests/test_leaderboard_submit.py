"""``gnnbench submit``: tiny real harness runs (``leaderboard_runs``: BFS 3 seeds, DEMO road 10 seeds, both with
the Hessian column) become submission folders that validate and rescore; every way a run can fall short is refused
with a message naming it."""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import tomllib

import pyarrow.parquet as pq
import pytest

from gnnbench.cli import main
from gnnbench.leaderboard.schema import SubmissionError
from gnnbench.leaderboard.submit import submit
from gnnbench.leaderboard.validate import validate
from synthetic.leaderboard_runs import ALGO_SEEDS, METHOD, ROAD_SEEDS

pytestmark = pytest.mark.e2e


def records(run):
    return {seed: json.loads((run / f"seed_{seed}" / "record.json").read_text())
            for seed in range(len(list(run.glob("seed_*"))))}


def test_algo_submission_holds_every_seed_and_validates(leaderboard_runs, tmp_path):
    folder = submit(leaderboard_runs.algo, method=METHOD, out=tmp_path)
    assert folder == tmp_path / "algo-clrs30-bfs" / "tiny-baseline"
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    assert files == ["predictions/seed_0.parquet", "predictions/seed_1.parquet", "predictions/seed_2.parquet",
                     "submission.json"]
    data = json.loads((folder / "submission.json").read_text())
    runs = records(leaderboard_runs.algo)
    assert data["num_seeds"] == ALGO_SEEDS and [seed["seed"] for seed in data["seeds"]] == [0, 1, 2]
    for seed in data["seeds"]:
        record = runs[seed["seed"]]
        assert seed["test"] == record["test"] and seed["valid"] == record["valid"]
        copied = folder / seed["predictions"]["path"]
        assert seed["predictions"]["sha256"] == hashlib.sha256(copied.read_bytes()).hexdigest()
        assert copied.read_bytes() == (leaderboard_runs.algo / f"seed_{seed['seed']}" / "predictions.parquet"
                                       ).read_bytes()
        assert seed["predictions"]["rows"] == pq.read_metadata(copied).num_rows == 32 * 64  # 32 graphs, n = 64
    scores = [runs[seed]["test"]["score"] for seed in range(ALGO_SEEDS)]
    assert data["summary"]["test.score"]["mean"] == pytest.approx(statistics.mean(scores), rel=1e-12)
    assert data["summary"]["test.score"]["std"] == pytest.approx(statistics.stdev(scores), rel=1e-12)
    report = validate(folder, base=None, cache=False)
    assert report.ok, report.all_errors()
    [entry] = report.entries
    assert entry.rescored and entry.rescored_seeds == ALGO_SEEDS
    assert entry.rescored_metrics == ["test.pi", "test.score"]
    # score_n16 is the n = 16 length split: its predictions are not submitted, and the report says so
    assert any("test.score_n16" in note for note in entry.notes)


def test_road_submission_validates_and_rescores_both_protocols(leaderboard_runs, tmp_path):
    folder = submit(leaderboard_runs.road, method=METHOD, out=tmp_path)
    assert folder == tmp_path / "road-demo-accident_occurrence" / "tiny-baseline"
    data = json.loads((folder / "submission.json").read_text())
    assert data["num_seeds"] == ROAD_SEEDS and data["dataset"]["synthetic"] is True
    assert data["metric"] == "roc_auc" and data["higher_is_better"] is True
    report = validate(folder, data_root=leaderboard_runs.road_root, base=None, cache=False)
    assert report.ok, report.all_errors()
    [entry] = report.entries
    assert entry.rescored and entry.rescored_seeds == ROAD_SEEDS
    assert {"test.score", "test.roc_auc", "test.recall@100", "test.ml4roadsafety.roc_auc",
            "test.ml4roadsafety.f1"} <= set(entry.rescored_metrics)


def test_submit_drops_the_machines_data_root(leaderboard_runs, tmp_path):
    """Regression: the road run's data.root (a path on the submitter's machine) was copied into the submission."""
    config = tomllib.loads((leaderboard_runs.road / "config.toml").read_text())
    assert config["data"]["root"] == str(leaderboard_runs.road_root)
    folder = submit(leaderboard_runs.road, method=METHOD, out=tmp_path)
    data = json.loads((folder / "submission.json").read_text())
    assert data["hyperparameters"]["data"]["root"] == ""
    assert {key: value for key, value in data["hyperparameters"]["data"].items() if key != "root"} == \
        {key: value for key, value in config["data"].items() if key != "root"}


def test_submit_counts_hessian_products_once(leaderboard_runs, tmp_path):
    """Regression: num_matvecs summed the record's total with its parts (twice the products)."""
    folder = submit(leaderboard_runs.algo, method=METHOD, out=tmp_path)
    data = json.loads((folder / "submission.json").read_text())
    for seed in data["seeds"]:
        counts = records(leaderboard_runs.algo)[seed["seed"]]["hessian"]["num_matvecs"]
        parts = sum(value for key, value in counts.items() if key != "total")
        assert seed["hessian"]["num_matvecs"] == parts == counts["total"]


def test_submit_refuses_a_run_without_the_hessian_column(leaderboard_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(leaderboard_runs.algo, run)
    record_path = run / "seed_1" / "record.json"
    record = json.loads(record_path.read_text())
    del record["hessian"]  # a run made without --hessian has no column (record.json is not in its own checksums)
    record_path.write_text(json.dumps(record))
    with pytest.raises(SubmissionError, match=r"seed_1: no Hessian column; every board entry has one: train with "
                                              r"`gnnbench run \.\.\. --hessian`"):
        submit(run, method=METHOD, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_submit_refuses_unfinished_seeds(leaderboard_runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(leaderboard_runs.algo, run)
    (run / "seed_2" / "record.json").unlink()  # seed 2 did not finish
    with pytest.raises(SubmissionError, match=r"seeds \[2, 7\] are not finished \(finished: \[0, 1\]\)"):
        submit(run, method=METHOD, out=tmp_path / "out", seeds=[0, 1, 2, 7])
    predictions = run / "seed_1" / "predictions.parquet"
    predictions.write_bytes(predictions.read_bytes() + b"\0")  # no longer its recorded checksum: not finished
    with pytest.raises(SubmissionError, match=r"seeds \[1\] are not finished \(finished: \[0\]\)"):
        submit(run, method=METHOD, out=tmp_path / "out", seeds=[0, 1])


def test_submit_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(SubmissionError, match=r"notes: no config\.toml; is this a run directory of `gnnbench run`"):
        submit(tmp_path / "notes", method=METHOD, out=tmp_path / "out")


def test_submit_refuses_an_existing_folder_unless_overwriting(leaderboard_runs, tmp_path):
    folder = submit(leaderboard_runs.algo, method=METHOD, out=tmp_path)
    (folder / "predictions" / "seed_0.parquet").write_bytes(b"stale")
    with pytest.raises(SubmissionError, match=r"tiny-baseline exists; pass overwrite=True \(--overwrite\)"):
        submit(leaderboard_runs.algo, method=METHOD, out=tmp_path)
    assert (folder / "predictions" / "seed_0.parquet").read_bytes() == b"stale"  # untouched
    assert submit(leaderboard_runs.algo, method=METHOD, out=tmp_path, overwrite=True) == folder
    assert validate(folder, base=None, cache=False).ok


def test_run_to_submission_to_validated_entry_on_the_rendered_board(leaderboard_runs, tmp_path, capsys):
    out = tmp_path / "submissions"
    assert main(["submit", str(leaderboard_runs.algo), "--method", "Tiny baseline", "--author", "Ada Lovelace",
                 "--author", "Charles Babbage", "--contact", "ada@example.org", "--code-url",
                 "https://example.org/tiny", "--out", str(out)]) == 0
    folder = out / "algo-clrs30-bfs" / "tiny-baseline"
    assert f"submission written to {folder}" in capsys.readouterr().out
    data = json.loads((folder / "submission.json").read_text())
    assert data["method"]["authors"] == ["Ada Lovelace", "Charles Babbage"] and data["method"]["paper"] is None
    assert main(["leaderboard", "validate", str(out), "--base", "", "--no-cache"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ok      algo-clrs30-bfs/tiny-baseline: rescored 3 seeds x 2 metrics"
    assert lines[-1] == f"1 submissions in {out}: 1 ok, 0 with errors"
    # ... and the new user sees it on the rendered board: a ranked row with the rescored mark, and on the page
    board = tmp_path / "board"
    assert main(["leaderboard", "render", str(out), "--out", str(board)]) == 0
    scores = [seed["test"]["score"] for seed in data["seeds"]]
    expected = f"{sum(scores) / len(scores):.4f}"
    rows = [line for line in (board / "README.md").read_text().splitlines() if "Tiny baseline" in line]
    assert len(rows) == 1 and rows[0].startswith("| 1 |") and expected in rows[0] and rows[0].rstrip().endswith("✓ |")
    assert "Tiny baseline" in (board / "index.html").read_text()

