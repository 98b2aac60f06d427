"""``gnnbench leaderboard validate``: one test per kind of bad input and tampering, each asserting the precise
message (submission folder, seed, field or metric). The submissions are made from tiny real runs
(``leaderboard_runs``) and tampered with in private copies."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import statistics

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gnnbench.cli import main
from gnnbench.leaderboard.schema import MAX_PREDICTION_BYTES, MAX_SUBMISSION_BYTES, identity_checksum
from gnnbench.leaderboard.validate import validate
from synthetic.leaderboard_runs import load, resummarise, save, submit_runs

pytestmark = pytest.mark.e2e

ALGO = "algo-clrs30-bfs/tiny-baseline"
ROAD = "road-demo-accident_occurrence/tiny-baseline"
NUMBER = r"(-?[0-9.e+-]+)"


@pytest.fixture(scope="module")
def pristine(leaderboard_runs, tmp_path_factory):
    """A submissions root with the algo and the road submission (read-only: tests copy it)."""
    root = tmp_path_factory.mktemp("pristine") / "submissions"
    submit_runs(leaderboard_runs, root)
    return root


@pytest.fixture
def board(pristine, tmp_path):
    root = tmp_path / "submissions"
    shutil.copytree(pristine, root)
    return root


@pytest.fixture
def check(leaderboard_runs):
    """``check(path)``: validate against the tiny runs' road data, no history, no cache."""
    def run(path, **options):
        options = {"data_root": leaderboard_runs.road_root, "base": None, "cache": False, **options}
        return validate(path, **options)
    return run


def rechecksum(folder, data, seed):
    """Update a seed's declared checksum, size and rows to its (altered) file."""
    path = folder / "predictions" / f"seed_{seed}.parquet"
    entry = next(item for item in data["seeds"] if item["seed"] == seed)["predictions"]
    entry.update(sha256=hashlib.sha256(path.read_bytes()).hexdigest(), bytes=path.stat().st_size,
                 rows=pq.read_metadata(path).num_rows)


def rewrite(path, change):
    table = pq.read_table(path)
    columns = {name: table.column(name).to_numpy() for name in table.column_names}
    pq.write_table(change(columns), path)


def errors_of(report, name):
    return next(entry for entry in report.entries if entry.name == name).errors


def only_error(report, pattern):
    """The report's single error, matched against ``pattern`` (a full match); returns the match."""
    errors = report.all_errors()
    assert len(errors) == 1, errors
    match = re.fullmatch(pattern, errors[0])
    assert match, errors[0]
    return match


def test_pristine_submissions_are_valid_and_rescored(board, check):
    report = check(board)
    assert report.ok, report.all_errors()
    assert [(entry.name, entry.rescored) for entry in report.entries] == [(ALGO, True), (ROAD, True)]


# --------------------------------------------------------------------------------------- edited scores


def test_test_score_edited_in_a_seed_is_caught_by_rescoring(board, check):
    folder = board / ALGO
    data = load(folder)
    original = data["seeds"][1]["test"]["score"]
    data["seeds"][1]["test"]["score"] = original + 0.25
    resummarise(data)
    save(folder, data)
    match = only_error(check(folder), rf"{ALGO}: seed 1: test\.score is {NUMBER} in submission\.json but the "
                                      rf"predictions score {NUMBER}")
    assert float(match.group(1)) == pytest.approx(original + 0.25, abs=1e-4)
    assert float(match.group(2)) == pytest.approx(original, abs=1e-4)


def test_road_metric_edited_in_a_seed_is_caught_by_rescoring(board, check):
    folder = board / ROAD
    data = load(folder)
    original = data["seeds"][3]["test"]["ml4roadsafety.f1"]
    data["seeds"][3]["test"]["ml4roadsafety.f1"] = original - 0.01
    resummarise(data)
    save(folder, data)
    match = only_error(check(folder), rf"{ROAD}: seed 3: test\.ml4roadsafety\.f1 is {NUMBER} in submission\.json "
                                      rf"but the predictions score {NUMBER}")
    assert float(match.group(2)) == pytest.approx(original, abs=1e-4)


def test_summary_mean_edited_is_caught(board, check):
    folder = board / ALGO
    data = load(folder)
    scores = [seed["test"]["score"] for seed in data["seeds"]]
    data["summary"]["test.score"]["mean"] += 0.01
    save(folder, data)
    match = only_error(check(folder), rf"{ALGO}: summary\.test\.score\.mean is {NUMBER}, but the seeds' mean is "
                                      rf"{NUMBER}")
    assert float(match.group(2)) == pytest.approx(statistics.mean(scores), rel=1e-9)


def test_summary_std_edited_is_caught(board, check):
    folder = board / ROAD
    data = load(folder)
    scores = [seed["test"]["roc_auc"] for seed in data["seeds"]]
    data["summary"]["test.roc_auc"]["std"] = statistics.pstdev(scores)  # the biased deviation (divisor n)
    save(folder, data)
    match = only_error(check(folder), rf"{ROAD}: summary\.test\.roc_auc\.std is {NUMBER}, but the seeds' unbiased "
                                      rf"standard deviation is {NUMBER}")
    assert float(match.group(2)) == pytest.approx(statistics.stdev(scores), rel=1e-9)


def test_summary_entry_removed_is_caught(board, check):
    folder = board / ALGO
    data = load(folder)
    del data["summary"]["test.pi"]
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: summary\.test\.pi is missing \(every seed has test\.pi: mean {NUMBER}\)")


def test_summary_of_a_metric_some_seeds_lack(board, check):
    folder = board / ALGO
    data = load(folder)
    data["summary"]["test.accuracy"] = {"mean": 0.5, "std": 0.1, "n": 3}
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: summary\.test\.accuracy: seeds 0-2 have no test\.accuracy")


def test_training_seconds_is_the_seeds_mean(board, check):
    folder = board / ROAD
    data = load(folder)
    data["training_seconds"] /= 2  # a faster-looking method
    save(folder, data)
    match = only_error(check(folder), rf"{ROAD}: training_seconds is {NUMBER}, but the seeds' mean is {NUMBER}")
    assert float(match.group(2)) == pytest.approx(statistics.mean(s["training_seconds"] for s in data["seeds"]),
                                                  rel=1e-5)


def test_headline_metric_direction_is_the_tasks(board, check):
    folder = board / ROAD
    data = load(folder)
    data["higher_is_better"] = False
    save(folder, data)
    only_error(check(folder), rf"{ROAD}: higher_is_better is False, expected True for road/DEMO/accident_occurrence")


def test_generated_data_is_marked_synthetic(board, check):
    folder = board / ALGO
    data = load(folder)
    data["dataset"]["synthetic"] = False
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: dataset\.synthetic is false, but clrs30 is generated by gnnbench")


def test_hyperparameters_name_the_submitted_task(board, check):
    folder = board / ALGO
    data = load(folder)
    data["hyperparameters"]["data"]["algorithm"] = "dfs"  # a DFS run submitted as BFS
    save(folder, data)
    errors = check(folder).all_errors()
    assert errors[0] == f"{ALGO}: hyperparameters.data.algorithm is 'dfs', expected 'bfs' for algo/clrs30/bfs"
    assert f"{ALGO}: dataset.identity.algorithm is 'bfs' in submission.json but 'dfs' in the data built here (a " \
           "different dataset version)" in errors


# ---------------------------------------------------------------------------------------- predictions


def test_prediction_files_swapped_between_seeds(board, check):
    predictions = board / ALGO / "predictions"
    first, second = predictions / "seed_0.parquet", predictions / "seed_1.parquet"
    content = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(content)
    errors = check(board / ALGO).all_errors()
    assert len(errors) == 2
    assert re.fullmatch(rf"{ALGO}: seed 0: predictions/seed_0\.parquet: sha256 [0-9a-f]{{12}}\.\.\. does not match "
                        r"predictions\.sha256 [0-9a-f]{12}\.\.\. in submission\.json \(it is seed 1's file\)",
                        errors[0])
    assert errors[1].startswith(f"{ALGO}: seed 1: predictions/seed_1.parquet: sha256 ")
    assert errors[1].endswith("(it is seed 0's file)")


def test_prediction_file_swapped_between_submissions(board, check):
    shutil.copyfile(board / ROAD / "predictions" / "seed_2.parquet", board / ALGO / "predictions" / "seed_2.parquet")
    errors = check(board).all_errors()
    assert len(errors) == 1
    assert errors[0].startswith(f"{ALGO}: seed 2: predictions/seed_2.parquet: sha256 ")
    assert errors[0].endswith(f"(it is the predictions file of {ROAD} seed 2)")


def test_predictions_altered_with_updated_checksum_are_caught_by_rescoring(board, check):
    folder = board / ALGO
    rewrite(folder / "predictions" / "seed_0.parquet",
            lambda c: pa.table({**c, "value": np.zeros_like(c["value"])}))  # every node's parent: node 0
    data = load(folder)
    rechecksum(folder, data, 0)
    save(folder, data)
    errors = check(folder).all_errors()
    assert len(errors) == 2
    for error, metric in zip(errors, ("pi", "score")):
        match = re.fullmatch(rf"{ALGO}: seed 0: test\.{metric} is {NUMBER} in submission\.json but the predictions "
                             rf"score {NUMBER}", error)
        assert match, error
        assert float(match.group(1)) == pytest.approx(data["seeds"][0]["test"][metric], abs=1e-4)


def test_road_predictions_altered_with_updated_checksum_are_caught_by_rescoring(board, check):
    folder = board / ROAD
    rewrite(folder / "predictions" / "seed_4.parquet",
            lambda c: pa.table({**c, "prediction": (1 - c["prediction"]).astype(np.float32)}))
    data = load(folder)
    rechecksum(folder, data, 4)
    save(folder, data)
    errors = check(folder).all_errors()
    roc_auc = next(error for error in errors if "test.roc_auc" in error)
    match = re.fullmatch(rf"{ROAD}: seed 4: test\.roc_auc is {NUMBER} in submission\.json but the predictions "
                         rf"score {NUMBER}", roc_auc)
    # reversed scores rank every pair the other way round: ROC-AUC becomes 1 - ROC-AUC (no ties)
    assert float(match.group(2)) == pytest.approx(1 - float(match.group(1)), abs=1e-3)
    assert all(error.startswith(f"{ROAD}: seed 4: test.") for error in errors)


def test_wrong_parquet_columns(board, check):
    folder = board / ALGO
    rewrite(folder / "predictions" / "seed_0.parquet",
            lambda c: pa.table({"graph": c["graph"], "field": c["field"], "position": c["position"],
                                "pred": c["value"]}))
    data = load(folder)
    rechecksum(folder, data, 0)
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: seed 0: predictions/seed_0\.parquet: columns \['graph', 'field', "
                              r"'position', 'pred'\], expected exactly \['graph', 'field', 'position', 'value'\]")


def test_wrong_parquet_dtype(board, check):
    folder = board / ROAD
    rewrite(folder / "predictions" / "seed_5.parquet",
            lambda c: pa.table({**c, "prediction": c["prediction"].astype(np.float64)}))
    data = load(folder)
    rechecksum(folder, data, 5)
    save(folder, data)
    only_error(check(folder), rf"{ROAD}: seed 5: predictions/seed_5\.parquet: column 'prediction' is double, "
                              r"expected float")


def test_declared_columns_must_be_the_familys(board, check):
    folder = board / ALGO
    data = load(folder)
    data["seeds"][2]["predictions"]["columns"]["value"] = "float32"
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: seed 2: predictions\.columns\.value is 'float32', expected float64")


def test_duplicated_prediction_rows(board, check):
    folder = board / ALGO
    # the last row replaced by a copy of the first: same row count, one key twice and one missing
    rewrite(folder / "predictions" / "seed_1.parquet",
            lambda c: pa.table({name: np.concatenate([values[:-1], values[:1]]) for name, values in c.items()}))
    data = load(folder)
    rechecksum(folder, data, 1)
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: seed 1: predictions/seed_1\.parquet: 1 row repeats a \(graph, field, "
                              r"position\) key, e\.g\. \(0, 'pi', 0\) \(every key appears exactly once\)")


def test_missing_prediction_rows(board, check):
    folder = board / ROAD
    rewrite(folder / "predictions" / "seed_0.parquet", lambda c: pa.table({k: v[:-5] for k, v in c.items()}))
    data = load(folder)
    rechecksum(folder, data, 0)
    save(folder, data)
    only_error(check(folder), rf"{ROAD}: seed 0: predictions: period 2021-12 has 320 rows, DEMO has 325 directed "
                              r"edges \(one row each\)")


def test_non_finite_prediction(board, check):
    folder = board / ROAD
    rewrite(folder / "predictions" / "seed_6.parquet",
            lambda c: pa.table({**c, "prediction": np.where(np.arange(len(c["prediction"])) == 7, np.float32("nan"),
                                                            c["prediction"]).astype(np.float32)}))
    data = load(folder)
    rechecksum(folder, data, 6)
    save(folder, data)
    only_error(check(folder), rf"{ROAD}: seed 6: predictions/seed_6\.parquet: 1 prediction values are NaN or "
                              r"infinite \(first at row 7\)")


def test_corrupt_parquet_file(board, check):
    folder = board / ALGO
    path = folder / "predictions" / "seed_0.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")  # Parquet's magic bytes around nothing
    data = load(folder)
    entry = data["seeds"][0]["predictions"]
    entry.update(sha256=hashlib.sha256(path.read_bytes()).hexdigest(), bytes=path.stat().st_size)
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: seed 0: predictions/seed_0\.parquet: not a readable Parquet file \(.+\)")


def test_prediction_rows_are_bounded_before_reading(board, check, monkeypatch):
    """A compressed file can expand to far more rows than its bytes: the row count is checked from the footer first
    (the limit lowered here so that the bound is crossed by a real submission's 2048 rows)."""
    from gnnbench.leaderboard import predictions

    monkeypatch.setattr(predictions, "MAX_PREDICTION_ROWS", 2000)
    report = check(board / ALGO)
    assert report.all_errors() == [f"{ALGO}: seed {seed}: predictions/seed_{seed}.parquet: 2048 rows, more than the "
                                   "limit of 2000" for seed in range(3)]


# ---------------------------------------------------------------------------------------- removed seeds


def test_seed_removed_from_json_and_files_breaks_the_seed_count(board, check):
    folder = board / ROAD
    data = load(folder)
    data["seeds"] = [seed for seed in data["seeds"] if seed["seed"] != 9]
    data["num_seeds"] = 9
    resummarise(data)
    save(folder, data)
    (folder / "predictions" / "seed_9.parquet").unlink()
    only_error(check(folder), rf"{ROAD}: num_seeds is 9: the road benchmark needs at least 10 seeds \(0\.\.9\)")


def test_seed_removed_from_json_only(board, check):
    folder = board / ALGO
    data = load(folder)
    data["seeds"] = data["seeds"][:2]
    data["num_seeds"] = 2
    resummarise(data)
    save(folder, data)
    errors = check(folder).all_errors()
    assert errors == [f"{ALGO}: num_seeds is 2: the algo benchmark needs at least 3 seeds (0..2)",
                      f"{ALGO}: predictions/seed_2.parquet: an extra file (seed 2 is not in submission.json)"]


def test_prediction_file_removed(board, check):
    (board / ALGO / "predictions" / "seed_1.parquet").unlink()
    only_error(check(board / ALGO), rf"{ALGO}: seed 1: predictions/seed_1\.parquet is missing \(the test "
                                    r"predictions of every seed are rescored\)")


def test_non_contiguous_seeds(board, check):
    folder = board / ALGO
    data = load(folder)
    data["seeds"][2]["seed"] = 5  # seeds 0, 1, 5: a chosen seed instead of seed 2
    data["seeds"][2]["predictions"]["path"] = "predictions/seed_5.parquet"
    save(folder, data)
    (folder / "predictions" / "seed_2.parquet").rename(folder / "predictions" / "seed_5.parquet")
    only_error(check(folder), rf"{ALGO}: seeds are 0-1, 5, not 0\.\.2: submit seeds 0, 1, \.\.\., num_seeds - 1, all "
                              r"of them \(seeds are never chosen or tuned\)")


# ------------------------------------------------------------------------------------------- ranges


def test_roc_auc_out_of_range(board, check):
    folder = board / ROAD
    data = load(folder)
    data["seeds"][3]["test"]["roc_auc"] = 1.3
    resummarise(data)
    save(folder, data)
    errors = check(folder).all_errors()
    assert f"{ROAD}: seed 3: test.roc_auc is 1.3, outside [0, 1]" in errors
    assert any(error.startswith(f"{ROAD}: seed 3: test.roc_auc is 1.3 in submission.json but the predictions score")
               for error in errors)


def test_count_metric_must_be_a_non_negative_integer(board, check):
    folder = board / ROAD
    data = load(folder)
    data["seeds"][0]["valid"]["months_skipped"] = -1.0  # valid metrics are not rescored: the range check catches it
    resummarise(data)
    save(folder, data)
    only_error(check(folder), rf"{ROAD}: seed 0: valid\.months_skipped is -1, but it counts \(a non-negative "
                              r"integer\)")


def test_parameters_zero(board, check):
    folder = board / ALGO
    data = load(folder)
    data["parameters"] = 0
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: parameters: Input should be greater than or equal to 1")


def test_nan_in_the_hessian_column(board, check):
    folder = board / ALGO
    data = load(folder)
    data["seeds"][2]["hessian"]["trace"] = float("nan")
    save(folder, data)
    assert "NaN" in (folder / "submission.json").read_text()
    only_error(check(folder), rf"{ALGO}: seed 2: hessian\.trace: Input should be a finite number \(got nan\)")


def test_nan_test_metric(board, check):
    folder = board / ROAD
    data = load(folder)
    data["seeds"][8]["test"]["average_precision"] = float("inf")
    save(folder, data)
    only_error(check(folder), rf"{ROAD}: seed 8: test\.average_precision: Input should be a finite number "
                              r"\(got inf\)")


def test_unknown_metric(board, check):
    folder = board / ALGO
    data = load(folder)
    for seed in data["seeds"]:
        seed["valid"]["accuracy"] = 0.5
    resummarise(data)
    save(folder, data)
    errors = check(folder).all_errors()
    assert errors[:3] == [f"{ALGO}: seed {seed}: valid.accuracy is not a metric of algo/clrs30/bfs"
                          for seed in range(3)]


def test_hessian_column_missing(board, check):
    folder = board / ALGO
    data = load(folder)
    data["seeds"][0]["hessian"] = None
    for key in [key for key in data["summary"] if key.startswith("hessian.")]:
        del data["summary"][key]
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: seed 0: hessian is missing: every board entry has a Hessian column "
                              r"\(gnnbench run \.\.\. --hessian\)")


def test_bound_holds_must_agree_with_its_numbers(board, check):
    folder = board / ALGO
    data = load(folder)
    bound = data["seeds"][1]["hessian"]["bounds"]["trace_radius"]
    bound["bound_holds"] = not bound["bound_holds"]
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: seed 1: hessian\.bounds\.trace_radius\.bound_holds is (True|False), but "
                              rf"bound_on_gap {NUMBER} vs measured_gap {NUMBER} says otherwise")


# --------------------------------------------------------------------------------------- files, paths


def test_prediction_path_escaping_the_folder(board, check):
    folder = board / ALGO
    data = load(folder)
    data["seeds"][0]["predictions"]["path"] = "../../../etc/passwd"
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: seed 0: predictions\.path must be 'predictions/seed_0\.parquet', got "
                              r"'\.\./\.\./\.\./etc/passwd'")


def test_symlinked_prediction_file(board, check, tmp_path):
    target = tmp_path / "elsewhere.parquet"
    path = board / ALGO / "predictions" / "seed_0.parquet"
    shutil.copyfile(path, target)  # the same bytes: only the link itself is wrong
    path.unlink()
    path.symlink_to(target)
    only_error(check(board / ALGO), rf"{ALGO}: seed 0: predictions/seed_0\.parquet is a symbolic link \(a "
                                    r"submission holds plain files only\)")


def test_symlinked_submission_json(board, check, tmp_path):
    path = board / ALGO / "submission.json"
    shutil.copyfile(path, tmp_path / "submission.json")
    path.unlink()
    path.symlink_to(tmp_path / "submission.json")
    only_error(check(board / ALGO), rf"{ALGO}: submission\.json is a symbolic link \(a submission holds plain "
                                    r"files only\)")


def test_symlinked_submission_folder(board, check, tmp_path):
    shutil.move(board / ALGO, tmp_path / "outside")
    (board / ALGO).symlink_to(tmp_path / "outside")
    report = check(board)
    assert [entry.name for entry in report.entries] == [ROAD]
    assert report.errors == [f"{ALGO}: a symbolic link; a task folder holds <method>/ submission folders only"]


def test_extra_files(board, check):
    folder = board / ALGO
    (folder / "train.py").write_text("print('hi')\n")
    (folder / "predictions" / "seed_0.pkl").write_bytes(b"\x80\x04N.")
    (board / "notes.txt").write_text("a stray file\n")
    report = check(board)
    assert errors_of(report, ALGO) == [
        f"{ALGO}: predictions/seed_0.pkl: an extra file (a submission holds submission.json and "
        "predictions/seed_<k>.parquet only)",
        f"{ALGO}: train.py: an extra file (a submission holds submission.json and predictions/seed_<k>.parquet only)"]
    assert report.errors == ["notes.txt: a stray file; the submissions directory holds <task>/<method>/ folders only"]


def test_oversize_prediction_file(board, check):
    path = board / ALGO / "predictions" / "seed_2.parquet"
    with open(path, "r+b") as handle:
        handle.truncate(MAX_PREDICTION_BYTES + 1)  # sparse: no 16 MiB written
    only_error(check(board / ALGO), rf"{ALGO}: seed 2: predictions/seed_2\.parquet is {MAX_PREDICTION_BYTES + 1} "
                                    rf"bytes, more than the limit of {MAX_PREDICTION_BYTES}")


def test_oversize_submission_json(board, check):
    path = board / ALGO / "submission.json"
    text = path.read_text()
    path.write_text(text + " " * (MAX_SUBMISSION_BYTES + 1 - len(text.encode())))  # still valid JSON
    only_error(check(board / ALGO), rf"{ALGO}: submission\.json is {MAX_SUBMISSION_BYTES + 1} bytes, more than "
                                    rf"the limit of {MAX_SUBMISSION_BYTES}")


def test_folder_not_named_after_the_method(board, check):
    (board / ALGO).rename(board / "algo-clrs30-bfs" / "best-model")
    report = check(board)
    assert report.all_errors() == ["algo-clrs30-bfs/best-model: the folder must be algo-clrs30-bfs/tiny-baseline "
                                   "(benchmark-dataset-task / method.name, as `gnnbench submit` names it)"]


def test_schema_error_names_the_field(board, check):
    folder = board / ALGO
    data = load(folder)
    del data["method"]["contact"]
    data["seeds"][1]["steps"] = "many"
    save(folder, data)
    assert check(folder).all_errors() == [
        f"{ALGO}: method.contact: Field required",
        f"{ALGO}: seed 1: steps: Input should be a valid integer, unable to parse string as an integer"]


# ---------------------------------------------------------------------------------- versions, identity


def test_newer_gnnbench_version(board, check):
    folder = board / ALGO
    data = load(folder)
    data["gnnbench_version"] = "99.0"
    save(folder, data)
    from gnnbench import __version__
    only_error(check(folder), rf"{ALGO}: gnnbench_version 99\.0 is newer than the gnnbench installed here "
                              rf"\({re.escape(__version__)}\): validate with gnnbench >= 99\.0")


def test_gnnbench_version_must_be_pep440(board, check):
    folder = board / ALGO
    data = load(folder)
    data["gnnbench_version"] = "latest"
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: gnnbench_version 'latest' is not a PEP 440 version")


def test_unsupported_schema_version(board, check):
    folder = board / ALGO
    data = load(folder)
    data["schema_version"] = 2
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: schema_version: Input should be 1")


def test_different_algo_dataset_identity(board, check):
    folder = board / ALGO
    data = load(folder)
    data["dataset"]["identity"]["splits"]["test"]["sha256"] = "0" * 64  # another version of the test split
    data["dataset"]["identity_sha256"] = identity_checksum(data["dataset"]["identity"])
    save(folder, data)
    only_error(check(folder), rf"{ALGO}: dataset\.identity\.splits\.test\.sha256 is '0{{36}}\.\.\. in "
                              r"submission\.json but '[0-9a-f]{36}\.\.\. in the data built here \(a different "
                              r"dataset version\)")


def test_different_road_dataset_identity(board, check):
    folder = board / ROAD
    data = load(folder)
    tables = data["dataset"]["identity"]["states"][0]["tables"]
    tables["accidents"]["rows"] += 1
    data["dataset"]["identity_sha256"] = identity_checksum(data["dataset"]["identity"])
    save(folder, data)
    rows = tables["accidents"]["rows"]
    only_error(check(folder), rf"{ROAD}: dataset\.identity\.states\[0\]\.tables\.accidents\.rows is {rows} "
                              rf"in submission\.json but {rows - 1} in the data built here \(a different dataset "
                              r"version\)")


def test_identity_checksum_must_match_identity(board, check):
    folder = board / ROAD
    data = load(folder)
    data["dataset"]["identity"]["states"][0]["nodes"] += 1  # identity_sha256 left as it was
    save(folder, data)
    only_error(check(folder), rf"{ROAD}: dataset: identity_sha256 '[0-9a-f]{{64}}' is not the SHA-256 of identity "
                              r"\([0-9a-f]{64}\)")


def test_road_data_not_available_here_is_a_note(board, check, tmp_path):
    """A real state's submission where its data is not downloaded: every other check runs, rescoring is noted."""
    folder = board / ROAD
    data = load(folder)
    data["dataset"]["name"] = "MA"
    data["hyperparameters"]["data"]["state"] = "MA"
    save(folder, data)
    moved = board / "road-ma-accident_occurrence" / "tiny-baseline"
    moved.parent.mkdir()
    folder.rename(moved)
    folder.parent.rmdir()
    report = check(board, data_root=tmp_path / "empty")
    assert report.ok, report.all_errors()
    entry = next(entry for entry in report.entries if entry.name == "road-ma-accident_occurrence/tiny-baseline")
    assert not entry.rescored and entry.rescored_metrics == []
    [note] = entry.notes
    assert note.startswith("road-ma-accident_occurrence/tiny-baseline: not rescored: the MA data is not available "
                           f"under {tmp_path / 'empty'} (no road tables for MA under ")
    assert note.endswith("gnnbench leaderboard validate PATH --data-root DIR")


def test_no_rescore_is_said(board, check):
    report = check(board / ALGO, rescore=False)
    assert report.ok and not report.entries[0].rescored
    assert report.entries[0].notes == [f"{ALGO}: not rescored (--no-rescore): the dataset identity and the test "
                                       "metrics were not recomputed"]


# ----------------------------------------------------------------------------------------- duplicates


def test_duplicate_submission_of_one_method(board, check):
    copy = board / "algo-clrs30-bfs" / "tiny-baseline-2"
    shutil.copytree(board / ALGO, copy)
    errors = check(board).all_errors()
    assert f"{ALGO}: a duplicate submission: algo-clrs30-bfs/tiny-baseline-2 is also method 'tiny-baseline' on " \
           "algo/clrs30/bfs" in errors
    assert "algo-clrs30-bfs/tiny-baseline-2: a duplicate submission: algo-clrs30-bfs/tiny-baseline is also method " \
           "'tiny-baseline' on algo/clrs30/bfs" in errors


def test_identical_predictions_in_two_submissions(board, check):
    copy = board / "algo-clrs30-bfs" / "other"
    shutil.copytree(board / ALGO, copy)
    data = load(copy)
    data["method"]["name"] = "Other"
    save(copy, data)
    errors = check(board).all_errors()
    assert len(errors) == 6
    assert re.fullmatch(r"algo-clrs30-bfs/other: seed 0: predictions file identical to that of "
                        rf"{ALGO} seed 0 \(sha256 [0-9a-f]{{12}}\.\.\.\): every seed's predictions are its own",
                        errors[0]), errors[0]
    assert errors[3].startswith(f"{ALGO}: seed 0: predictions file identical to that of algo-clrs30-bfs/other seed 0")


def test_identical_perfect_predictions_are_allowed(board, check):
    """Two methods that both predict every BFS parent right submit the same file: a note, not an error."""
    from gnnbench.harness.algo_data import split_traces
    from gnnbench.harness.algo_eval import prediction_columns

    truth = prediction_columns(split_traces("bfs", "test").outputs)
    folders = [board / ALGO, board / "algo-clrs30-bfs" / "perfect"]
    shutil.copytree(folders[0], folders[1])
    for folder, name in zip(folders, ("Tiny baseline", "Perfect")):
        data = load(folder)
        data["method"]["name"] = name
        pq.write_table(pa.table(truth), folder / "predictions" / "seed_0.parquet")
        rechecksum(folder, data, 0)
        data["seeds"][0]["test"].update(score=1.0, pi=1.0)
        resummarise(data)
        save(folder, data)
    shutil.rmtree(board / ROAD)
    # seeds 1 and 2 are copies too: those are errors; seed 0's perfect predictions are only noted
    report = check(board)
    assert not any("seed 0" in error for error in report.all_errors())
    assert f"{ALGO}: seed 0: predictions identical to algo-clrs30-bfs/perfect seed 0 (perfect predictions: " \
           "allowed)" in errors_of_notes(report, ALGO)


def errors_of_notes(report, name):
    return next(entry for entry in report.entries if entry.name == name).notes


# ------------------------------------------------------------------------------------------ the CLI


def test_validate_command_lines_and_exit_codes(board, leaderboard_runs, capsys):
    arguments = ["leaderboard", "validate", str(board), "--data-root", str(leaderboard_runs.road_root), "--base", "",
                 "--no-cache"]
    assert main(arguments) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"ok      {ALGO}: rescored 3 seeds x 2 metrics"
    assert lines[2] == f"ok      {ROAD}: rescored 10 seeds x 14 metrics"
    assert lines[-1] == f"2 submissions in {board}: 2 ok, 0 with errors"
    data = load(board / ALGO)
    data["summary"]["test.score"]["mean"] += 0.5
    save(board / ALGO, data)
    assert main(arguments) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"FAILED  {ALGO}: 1 error; rescored 3 seeds x 2 metrics"
    assert lines[1].startswith(f"    {ALGO}: summary.test.score.mean is ")
    assert lines[-1] == f"2 submissions in {board}: 1 ok, 1 with errors"


def test_validate_command_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["leaderboard", "validate", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("PATH", "--data-root DIR", "--root DIR", "--base REF", "--history", "--no-rescore", "--no-cache",
                   "RESCORE", "CONTRIBUTING.md"):
        assert option in text


def test_missing_submissions_directory(tmp_path, check):
    report = check(tmp_path / "nowhere")
    assert not report.ok
    assert report.errors == [f"{tmp_path / 'nowhere'}: not a directory of submissions "
                             "(leaderboard/submissions/<task>/<method>/)"]


def test_rescoring_cache_is_reused_and_keyed_by_content(board, check, tmp_path, monkeypatch):
    monkeypatch.setenv("GNNBENCH_HOME", str(tmp_path / "home"))
    first = check(board / ALGO, cache=True)
    assert first.ok and first.entries[0].rescored
    assert len(list((tmp_path / "home" / "leaderboard" / "rescore").glob("*.json"))) == 1
    second = check(board / ALGO, cache=True)
    assert second.ok and second.entries[0].rescored_metrics == first.entries[0].rescored_metrics
    assert any("reused from the cache" in note for note in second.entries[0].notes)
    data = load(board / ALGO)  # any change to the submission is a new key: rescored again, and caught
    data["seeds"][0]["test"]["score"] += 0.5
    resummarise(data)
    save(board / ALGO, data)
    third = check(board / ALGO, cache=True)
    assert not any("reused from the cache" in note for note in third.entries[0].notes)
    assert any(error.startswith(f"{ALGO}: seed 0: test.score is ") for error in third.all_errors())
    assert os.environ["GNNBENCH_HOME"] == str(tmp_path / "home")


def test_cache_keeps_only_complete_results(board, check, tmp_path, monkeypatch):
    """Regression: a result without a seed whose file failed its checksum was cached under the submission's key,
    so the repaired submission then passed with that seed silently not rescored."""
    monkeypatch.setenv("GNNBENCH_HOME", str(tmp_path / "home"))
    path = board / ALGO / "predictions" / "seed_1.parquet"
    good = path.read_bytes()
    shutil.copyfile(board / ALGO / "predictions" / "seed_2.parquet", path)
    assert not check(board / ALGO, cache=True).ok
    path.write_bytes(good)
    report = check(board / ALGO, cache=True)
    assert report.ok and report.entries[0].rescored and report.entries[0].rescored_seeds == 3


def test_hyperparameters_data_section_is_the_benchmarks(board, check):
    folder = board / ROAD
    data = load(folder)
    data["hyperparameters"]["data"]["weather"] = True
    save(folder, data)
    only_error(check(folder), rf"{ROAD}: hyperparameters: unknown config key data\.weather \(keys of \[data\]: .*\)")


def test_model_and_train_sections_are_the_methods_own(board, check):
    """A method of one's own has its own model and training keys: they are not checked against the baselines'."""
    folder = board / ALGO
    data = load(folder)
    data["hyperparameters"]["model"] = {"kind": "my transformer", "layers": 12}
    data["hyperparameters"]["train"]["schedule"] = "cosine"
    save(folder, data)
    report = check(folder)
    assert report.ok and report.entries[0].rescored, report.all_errors()


def test_road_scoring_protocol_comes_from_eval(board, check):
    """eval.k is part of the scoring: a submission claiming k = 50 is rescored at k = 50 and has no recall@100."""
    folder = board / ROAD
    data = load(folder)
    data["hyperparameters"]["eval"]["k"] = 50
    save(folder, data)
    errors = check(folder).all_errors()
    assert len(errors) == 2 * 10
    assert errors[0] == f"{ROAD}: seed 0: test.recall@100 is not a metric the evaluator computes from these " \
                        "predictions and hyperparameters"
    assert re.fullmatch(rf"{ROAD}: seed 0: test\.recall@50 is missing from submission\.json \(the predictions score "
                        rf"{NUMBER}\)", errors[1])


def test_an_empty_board_is_valid(tmp_path, monkeypatch):
    """No leaderboard/submissions yet (the default PATH): nothing to check, said in a note; a PATH given
    explicitly must exist (test_missing_submissions_directory)."""
    monkeypatch.chdir(tmp_path)
    report = validate(cache=False)
    assert report.ok and report.entries == []
    assert report.notes == [f"{tmp_path.resolve() / 'leaderboard' / 'submissions'}: no submissions yet (the board is "
                            "empty)"]
