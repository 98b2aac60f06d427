"""The harness (configs, runner, run record, Hessian column, ``gnnbench run``) on a real, tiny family.

The family (``tests/harness_family.py``) genuinely trains a regression model on seeded synthetic data and implements
the whole family contract, so resume, determinism, skipping, refusal, jobs and the Hessian column are exercised
end to end; every expected value is computed here independently (NumPy statistics, closed-form Hessians, a second
evaluation of the saved weights).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import harness_family as toy
from gnnbench.cli import main
from gnnbench.harness import config as harness_config
from gnnbench.harness import record as harness_record
from gnnbench.harness import values as harness_values
from gnnbench.harness import register_family, resolve, run, run_seed
from gnnbench.harness.runner import worker_threads

torch.set_num_threads(1)
register_family(toy, shortcuts={"model": "model.activation"})

TESTS = Path(__file__).parent


def spec_of(*overrides: str, seeds: str = "0", **shortcuts):
    (spec,) = resolve("toy", overrides=overrides, seeds=seeds, shortcuts=shortcuts)
    return spec


def load_model(config, path: Path) -> torch.nn.Module:
    model = toy.build_model(config, torch.Generator().manual_seed(0))
    model.load_state_dict(torch.load(path, weights_only=True))
    return model


def state_equal(left: dict, right: dict) -> bool:
    return left.keys() == right.keys() and all(torch.equal(left[key], right[key]) for key in left)


# ------------------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("text, seeds", [("0-2", [0, 1, 2]), ("0,3,5", [0, 3, 5]), ("4", [4]),
                                         ("0-2,7", [0, 1, 2, 7]), ("3,1,1", [1, 3]), (" 2 - 3 ".replace(" ", ""), [2, 3])])
def test_parse_seeds(text, seeds):
    assert harness_values.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["2-0", "a", "-1", "", "1,,x", "1.5"])
def test_parse_seeds_rejects(text):
    with pytest.raises(ValueError, match="--seeds"):
        harness_values.parse_seeds(text)


def test_toml_round_trip():
    config = {"run": {"name": "x", "seeds": [0, 1]},
              "data": {"quote": 'a "b"\n\tc \\ ü', "p": [0.1, 1e-05, 1e16], "flag": False, "inf": math.inf,
                       "empty": [], "nested": {"deep": 3, "key with space": "v"}},
              "model": {"hidden": 0, "skip": None}}
    parsed = tomllib.loads(harness_values.dumps_toml(config))
    expected = json.loads(json.dumps(config))
    del expected["model"]["skip"]  # TOML has no null: left out
    expected["data"]["inf"] = math.inf
    assert parsed == expected


def test_layers_shortcuts_and_set_in_order(tmp_path):
    user = tmp_path / "mine.toml"
    user.write_text('[run]\nbenchmark = "toy"\n[train]\nsteps = 11\nlr = 1\n[model]\nactivation = "relu"\n')
    (spec,) = resolve(user, shortcuts={"model": "tanh"}, overrides=["train.steps=12", "train.momentum=0"])
    assert spec.config["train"]["steps"] == 12  # --set beats the file
    assert spec.config["train"]["lr"] == 1.0 and isinstance(spec.config["train"]["lr"], float)  # int accepted
    assert spec.config["train"]["momentum"] == 0.0
    assert spec.config["model"]["activation"] == "tanh"  # the shortcut beats the file
    assert spec.config["data"]["n_train"] == toy.default_config()["data"]["n_train"]  # the family's default
    assert spec.sources == ["defaults", str(user), "--model", "--set train.steps=12", "--set train.momentum=0"]


@pytest.mark.parametrize("override, message", [
    ("train.steps=abc", "--set train.steps=abc: train.steps must be an integer"),
    ("train.steps=1.5", "train.steps must be an integer"),
    ("train.lr=true", "train.lr must be a number"),
    ("train.stepz=3", "unknown config key 'train.stepz'; did you mean train.steps"),
    ("model.hidden.x=3", "unknown config key 'model.hidden.x'"),
    ("steps=3", "--set expects SECTION.KEY=VALUE"),
    ("hessian.trace_method=exact", "hessian.trace_method must be one of"),
    ("run.device=tpu", "run.device must be cpu, cuda"),
    ("hessian.parameters=[1]", "hessian.parameters[0] must be a parameter name"),
    ("train.steps=0", "train.steps must be >= 1"),  # the family's own validation
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        spec_of(override)


def test_bad_files_name_the_file(tmp_path):
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[run]\nbenchmark = "toy"\n[model]\nhiden = 3\n')
    with pytest.raises(ValueError, match=f"{unknown}: unknown config key 'model.hiden'; did you mean model.hidden"):
        resolve(unknown)
    typed = tmp_path / "typed.toml"
    typed.write_text('[run]\nbenchmark = "toy"\n[train]\nsteps = "ten"\n')
    with pytest.raises(ValueError, match=f"{typed}: train.steps must be an integer"):
        resolve(typed)
    broken = tmp_path / "broken.toml"
    broken.write_text('[run\nbenchmark = "toy"\n')
    with pytest.raises(ValueError, match=f"{broken}: not valid TOML"):
        resolve(broken)
    nameless = tmp_path / "nameless.toml"
    nameless.write_text("[train]\nsteps = 3\n")
    with pytest.raises(ValueError, match="run.benchmark is not set"):
        resolve(nameless)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve(tmp_path / "missing.toml")
    with pytest.raises(ValueError, match="--state does not apply to the toy benchmark"):
        resolve("toy", shortcuts={"state": "IA"})


def test_list_values_and_top_level_benchmark(tmp_path):
    (spec,) = resolve("toy", overrides=["run.seeds=1-3"])
    assert spec.seeds == [1, 2, 3]
    top = tmp_path / "top.toml"
    top.write_text('benchmark = "toy"\n[run]\nseeds = [4, 2]\n')
    (spec,) = resolve(top)
    assert spec.benchmark == "toy" and spec.seeds == [2, 4]


def test_names_identify_configs():
    plain, again, other = spec_of(), spec_of(), spec_of("train.steps=41")
    assert plain.name == again.name == "toy-tanh"  # the family's defaults: no hash
    assert other.name.startswith("toy-tanh-") and len(other.name) == len("toy-tanh-") + 8
    assert spec_of(seeds="0-4").name == plain.name  # seeds are not part of what a run computes
    swept = resolve("toy", shortcuts={"model": "tanh,relu"})
    assert [spec.name for spec in swept] == ["toy-tanh", "toy-relu"]
    assert [spec.config["model"]["activation"] for spec in swept] == ["tanh", "relu"]


# -------------------------------------------------------------------------------------------- the run directory


def test_run_directory_layout_and_records(tmp_path):
    spec = spec_of(seeds="0-2")
    (result,) = run(spec, out=tmp_path / "run", progress=False)
    root = tmp_path / "run"
    assert result.directory == root and result.failures == {}
    stored = tomllib.loads((root / "config.toml").read_text())
    assert harness_config.differences(stored, spec.config) == [] and stored["run"]["seeds"] == [0, 1, 2]
    assert json.loads((root / "dataset.json").read_text()) == json.loads(json.dumps(toy.dataset_identity(spec.config)))
    environment = json.loads((root / "environment.json").read_text())
    assert environment["packages"]["torch"] == torch.__version__.split("+")[0] or \
        torch.__version__.startswith(environment["packages"]["torch"])
    assert environment["device"]["type"] == "cpu"
    x_test, y_test = toy.make_data(spec.config)["test"]
    for seed in (0, 1, 2):
        directory = root / f"seed_{seed}"
        record = json.loads((directory / "record.json").read_text())
        assert record["seed"] == seed and record["steps"] == 40 and record["device"] == "cpu"
        assert [row["step"] for row in record["curve"]] == [10, 20, 30, 40]
        assert record["wall_seconds"] > 0 and record["peak_memory"]["rss_bytes"] > 0
        # the saved weights load with weights_only=True and reproduce the stored predictions and metrics
        model = load_model(spec.config, directory / "model.pt")
        table = pq.read_table(directory / "predictions.parquet").to_pandas()
        assert list(table.columns) == ["index", "y_true", "y_pred"]
        with torch.no_grad():
            again = toy.predict(model, x_test).numpy()
        np.testing.assert_array_equal(table["y_pred"].to_numpy(), again)
        np.testing.assert_array_equal(table["y_true"].to_numpy(), y_test.numpy())
        error = np.mean((table["y_pred"].to_numpy(np.float64) - table["y_true"].to_numpy(np.float64)) ** 2)
        assert record["test"]["mse"] == pytest.approx(error, rel=1e-5)
        assert record["test"]["score"] == pytest.approx(1 - error / np.var(y_test.numpy().astype(np.float64)),
                                                        rel=1e-5)
        import hashlib

        assert record["files"]["predictions.parquet"]["sha256"] == \
            hashlib.sha256((directory / "predictions.parquet").read_bytes()).hexdigest()
        state = torch.load(directory / "checkpoint.pt", weights_only=True)
        assert state["step"] == 40
    # summary: NumPy's mean and unbiased (ddof=1) standard deviation of the records' values
    summary = json.loads((root / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2]
    records = [json.loads((root / f"seed_{seed}" / "record.json").read_text()) for seed in (0, 1, 2)]
    for split in ("valid", "test"):
        for metric in ("score", "mse"):
            values = np.array([rec[split][metric] for rec in records])
            entry = summary["metrics"][f"{split}.{metric}"]
            assert entry["mean"] == pytest.approx(values.mean(), rel=1e-12)
            assert entry["std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
            assert entry["std"] == pytest.approx(torch.tensor(values).std().item(), rel=1e-12)
            assert entry["n"] == 3
    assert summary["metrics"]["steps"]["std"] == 0.0
    assert "| test.score |" in (root / "summary.md").read_text()
    assert not [path.name for path in root.rglob("*") if path.name.endswith((".part", ".partial"))]


def test_single_seed_summary_has_no_std(tmp_path):
    (result,) = run(spec_of(), out=tmp_path / "one", progress=False)
    assert result.summary["metrics"]["test.score"]["std"] is None
    assert result.summary["metrics"]["test.score"]["n"] == 1


def test_default_run_directory_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GNNBENCH_HOME", str(tmp_path / "home"))
    spec = spec_of("train.steps=10")
    (result,) = run(spec, progress=False)
    assert result.directory == tmp_path / "home" / "runs" / spec.name
    assert (result.directory / "seed_0" / "record.json").exists()


def test_same_seed_is_bitwise_identical(tmp_path):
    spec = spec_of("model.hidden=3", seeds="0-1")
    first, second = (run(spec, out=tmp_path / name, progress=False)[0] for name in ("a", "b"))
    for seed in (0, 1):
        a, b = (json.loads((result.directory / f"seed_{seed}" / "record.json").read_text())
                for result in (first, second))
        assert a["valid"] == b["valid"] and a["test"] == b["test"] and a["curve"] == b["curve"]
        assert state_equal(torch.load(first.directory / f"seed_{seed}" / "model.pt", weights_only=True),
                           torch.load(second.directory / f"seed_{seed}" / "model.pt", weights_only=True))
        assert a["files"]["predictions.parquet"]["sha256"] == b["files"]["predictions.parquet"]["sha256"]
    a0, a1 = (json.loads((first.directory / f"seed_{seed}" / "record.json").read_text()) for seed in (0, 1))
    assert a0["test"] != a1["test"]  # seeds differ


def test_resume_after_a_failure_is_bitwise_identical(tmp_path, monkeypatch):
    spec = spec_of("model.hidden=3", seeds="0-1")
    (reference,) = run(spec, out=tmp_path / "reference", progress=False)
    monkeypatch.setenv("GNNBENCH_TOY_FAIL_AT_STEP", "25")
    with pytest.raises(RuntimeError, match="seed 0: RuntimeError: simulated failure before step 25"):
        run(spec, out=tmp_path / "killed", progress=False)
    killed = tmp_path / "killed"
    for seed in (0, 1):  # both seeds failed after their checkpoint at step 20; neither looks finished
        assert not (killed / f"seed_{seed}" / "record.json").exists()
        assert torch.load(killed / f"seed_{seed}" / "checkpoint.pt", weights_only=True)["step"] == 20
    assert json.loads((killed / "summary.json").read_text())["seeds"] == []
    monkeypatch.delenv("GNNBENCH_TOY_FAIL_AT_STEP")
    (resumed,) = run(spec, out=killed, progress=False)
    for seed in (0, 1):
        new = json.loads((killed / f"seed_{seed}" / "record.json").read_text())
        old = json.loads((reference.directory / f"seed_{seed}" / "record.json").read_text())
        assert new["resumed"] is True and new["extra"]["resumed_from_step"] == 20
        assert old["resumed"] is False and old["extra"]["resumed_from_step"] is None
        assert new["valid"] == old["valid"] and new["test"] == old["test"] and new["curve"] == old["curve"]
        assert state_equal(torch.load(killed / f"seed_{seed}" / "model.pt", weights_only=True),
                           torch.load(reference.directory / f"seed_{seed}" / "model.pt", weights_only=True))
    assert resumed.summary["metrics"]["test.score"] == reference.summary["metrics"]["test.score"]


def test_killed_process_resumes(tmp_path):
    """SIGKILL of a real ``gnnbench run`` process mid-training; the same command then finishes the run exactly."""
    out = tmp_path / "run"
    arguments = ["run", "toy", "--seeds", "0", "--set", "train.steps=60", "--out", str(out), "--no-progress"]
    script = ("import sys, harness_family; from gnnbench.harness import register_family; "
              "register_family(harness_family); from gnnbench.cli import main; sys.exit(main(sys.argv[1:]))")
    environment = {**os.environ, "GNNBENCH_TOY_SLEEP": "0.05", "PYTHONPATH": str(TESTS)}
    process = subprocess.Popen([sys.executable, "-c", script, *arguments], env=environment, cwd=TESTS,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = out / "seed_0" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    step = torch.load(checkpoint, weights_only=True)["step"]
    assert 10 <= step < 60 and not (out / "seed_0" / "record.json").exists()
    assert main([*arguments]) == 0  # the same command, in this process (the family is registered here)
    record = json.loads((out / "seed_0" / "record.json").read_text())
    assert record["resumed"] is True and record["extra"]["resumed_from_step"] >= step
    (reference,) = run(spec_of("train.steps=60"), out=tmp_path / "reference", progress=False)
    expected = json.loads((reference.directory / "seed_0" / "record.json").read_text())
    assert record["test"] == expected["test"] and record["curve"] == expected["curve"]


def test_finished_seeds_are_skipped_and_seeds_added(tmp_path, monkeypatch):
    spec = spec_of(seeds="0-1")
    run(spec, out=tmp_path / "run", progress=False)
    before = {seed: (tmp_path / "run" / f"seed_{seed}" / "record.json").read_bytes() for seed in (0, 1)}
    trained = []
    original = toy.train_seed
    monkeypatch.setattr(toy, "train_seed", lambda context: trained.append(context.seed) or original(context))
    (result,) = run(spec_of(seeds="0-2"), out=tmp_path / "run", progress=False)
    assert trained == [2]  # seeds 0 and 1 were finished
    assert {seed: (tmp_path / "run" / f"seed_{seed}" / "record.json").read_bytes() for seed in (0, 1)} == before
    assert result.summary["seeds"] == [0, 1, 2]
    assert tomllib.loads((tmp_path / "run" / "config.toml").read_text())["run"]["seeds"] == [0, 1, 2]
    run(spec_of(seeds="1"), out=tmp_path / "run", progress=False)  # a subset: nothing to train
    assert trained == [2]
    assert tomllib.loads((tmp_path / "run" / "config.toml").read_text())["run"]["seeds"] == [0, 1, 2]


def test_tampered_or_partial_records_are_not_finished(tmp_path):
    spec = spec_of()
    run(spec, out=tmp_path / "run", progress=False)
    seed_dir = tmp_path / "run" / "seed_0"
    digest = harness_config.config_sha256(spec.config)
    good = harness_record.verify_seed(seed_dir, seed=0, config_sha256=digest)
    assert good is not None
    assert harness_record.verify_seed(seed_dir, seed=1, config_sha256=digest) is None
    assert harness_record.verify_seed(seed_dir, seed=0, config_sha256="0" * 64) is None
    original = (seed_dir / "predictions.parquet").read_bytes()
    (seed_dir / "predictions.parquet").write_bytes(original[:-10])
    assert harness_record.verify_seed(seed_dir, seed=0, config_sha256=digest) is None
    run(spec, out=tmp_path / "run", progress=False)  # redone from the final checkpoint: the same bytes
    assert (seed_dir / "predictions.parquet").read_bytes() == original
    text = (seed_dir / "record.json").read_text()
    (seed_dir / "record.json").write_text(text[: len(text) // 2])  # a torn write
    assert harness_record.verify_seed(seed_dir, seed=0, config_sha256=digest) is None
    run(spec, out=tmp_path / "run", progress=False)
    redone = harness_record.verify_seed(seed_dir, seed=0, config_sha256=digest)
    assert redone["test"] == good["test"]


def test_committed_records_verify_without_their_weights(tmp_path):
    """Committed results hold no weights (git ignores *.pt): missing_ok=(".pt",) accepts their absence, never a
    changed file that is present, and never another missing file."""
    spec = spec_of()
    run(spec, out=tmp_path / "run", progress=False)
    seed_dir = tmp_path / "run" / "seed_0"
    digest = harness_config.config_sha256(spec.config)
    record = harness_record.verify_seed(seed_dir, seed=0, config_sha256=digest)
    weights = [name for name in record["files"] if name.endswith(".pt")]
    assert weights
    for name in weights:
        (seed_dir / name).unlink()
    assert harness_record.verify_seed(seed_dir, seed=0, config_sha256=digest) is None
    assert harness_record.verify_seed(seed_dir, seed=0, config_sha256=digest, missing_ok=(".pt",)) == record
    assert harness_record.finished_seeds(tmp_path / "run", digest, missing_ok=(".pt",)) == {0: record}
    (seed_dir / "predictions.parquet").write_bytes(b"tampered")
    assert harness_record.verify_seed(seed_dir, seed=0, config_sha256=digest, missing_ok=(".pt",)) is None
    (seed_dir / "predictions.parquet").unlink()
    assert harness_record.verify_seed(seed_dir, seed=0, config_sha256=digest, missing_ok=(".pt",)) is None


def test_mismatched_config_is_refused_unless_forced(tmp_path):
    run(spec_of(), out=tmp_path / "run", progress=False)
    with pytest.raises(ValueError) as refused:
        run(spec_of("train.steps=30", "train.lr=0.1"), out=tmp_path / "run", progress=False)
    message = str(refused.value)
    assert "train.steps: 40 there, 30 now" in message and "train.lr: 0.05 there, 0.1 now" in message
    assert "--force" in message and "train.batch_size" not in message
    assert json.loads((tmp_path / "run" / "seed_0" / "record.json").read_text())["steps"] == 40  # untouched
    (result,) = run(spec_of("train.steps=30", "train.lr=0.1"), out=tmp_path / "run", progress=False, force=True)
    assert json.loads((tmp_path / "run" / "seed_0" / "record.json").read_text())["steps"] == 30
    (superseded,) = (tmp_path / "run" / "superseded").iterdir()
    assert json.loads((superseded / "seed_0" / "record.json").read_text())["steps"] == 40
    assert tomllib.loads((superseded / "config.toml").read_text())["train"]["steps"] == 40


def test_a_checkpoint_of_another_config_is_never_resumed(tmp_path, monkeypatch):
    """Without its config.toml (deleted by hand), a run directory's unfinished seed of another config is moved
    aside, not resumed into the new config's run."""
    monkeypatch.setenv("GNNBENCH_TOY_FAIL_AT_STEP", "25")
    with pytest.raises(RuntimeError):
        run(spec_of("train.lr=0.2"), out=tmp_path / "run", progress=False)
    monkeypatch.delenv("GNNBENCH_TOY_FAIL_AT_STEP")
    (tmp_path / "run" / "config.toml").unlink()
    (result,) = run(spec_of(), out=tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "seed_0" / "record.json").read_text())
    assert record["resumed"] is False and record["extra"]["resumed_from_step"] is None
    (fresh,) = run(spec_of(), out=tmp_path / "fresh", progress=False)
    assert record["test"] == json.loads((fresh.directory / "seed_0" / "record.json").read_text())["test"]
    (moved,) = (tmp_path / "run" / "superseded").iterdir()
    assert torch.load(moved / "seed_0" / "checkpoint.pt", weights_only=True)["step"] == 20


def test_changed_dataset_is_refused(tmp_path, monkeypatch):
    run(spec_of(), out=tmp_path / "run", progress=False)
    original = toy.dataset_identity
    monkeypatch.setattr(toy, "dataset_identity", lambda config: {**original(config), "sha256": "f" * 64})
    with pytest.raises(ValueError, match="dataset sha256: '[0-9a-f]{64}' there, 'f{64}' now"):
        run(spec_of(), out=tmp_path / "run", progress=False)


def test_run_directory_in_use_is_refused(tmp_path):
    from gnnbench.io import file_lock

    (tmp_path / "run").mkdir()
    with file_lock(tmp_path / "run" / ".run"):
        with pytest.raises(RuntimeError, match="is in use by another gnnbench run"):
            run(spec_of(), out=tmp_path / "run", progress=False)


@pytest.mark.heavy
def test_jobs_match_sequential_seeds(tmp_path):
    """Two runs (a sweep over the activation) x two seeds in two spawned processes: the same records as one by one."""
    specs = resolve("toy", shortcuts={"model": "tanh,relu"}, overrides=["model.hidden=3", "train.steps=20"],
                    seeds="0-1")
    parallel = run(specs, out=tmp_path / "parallel", jobs=2, progress=False)
    assert [result.directory for result in parallel] == [tmp_path / "parallel" / spec.name for spec in specs]
    sequential = run(specs, out=tmp_path / "sequential", progress=False)
    for one, other in zip(sequential, parallel):
        assert other.summary["seeds"] == [0, 1]
        assert other.summary["metrics"]["test.score"] == one.summary["metrics"]["test.score"]
        for seed in (0, 1):
            a, b = (json.loads((result.directory / f"seed_{seed}" / "record.json").read_text())
                    for result in (one, other))
            assert a["test"] == b["test"] and a["valid"] == b["valid"] and a["curve"] == b["curve"]
            assert b["environment"]["hardware"]["torch_threads"] == worker_threads(2)
    tanh, relu = (json.loads((result.directory / "seed_0" / "record.json").read_text()) for result in parallel)
    assert tanh["test"] != relu["test"]


def test_each_runs_summary_is_written_when_its_last_seed_ends(tmp_path, monkeypatch):
    """In a sweep, the first run's summary.json exists before the second run trains (an interrupted sweep keeps the
    summaries of the runs it finished)."""
    from gnnbench.harness import runner

    specs = resolve("toy", shortcuts={"model": "tanh,relu"}, overrides=["train.steps=4"], seeds="0-1")
    seen = []
    real = runner.run_seed

    def watching(config, seed, run_dir, **options):
        seen.append((Path(run_dir).name, seed, sorted(path.parent.name for path in tmp_path.glob("*/summary.json"))))
        return real(config, seed, run_dir, **options)

    monkeypatch.setattr(runner, "run_seed", watching)
    run(specs, out=tmp_path, progress=False)
    first, second = (spec.name for spec in specs)
    assert seen == [(first, 0, []), (first, 1, []), (second, 0, [first]), (second, 1, [first])]
    summary = json.loads((tmp_path / first / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]


def test_worker_threads_split_the_cores():
    assert worker_threads(1, cores=16) == 16
    assert worker_threads(3, cores=16) == 5
    assert worker_threads(4, cores=2) == 1


def test_peak_memory_is_per_seed(tmp_path):
    """150 MB of ballast in one seed's training shows in its peak; the next seed in the same process does not carry
    it (the peak is reset per seed; without the reset a process's peak never falls)."""
    def resident() -> int:
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:"))

    before = resident()
    (heavy,) = run(spec_of("data.ballast_mb=150"), out=tmp_path / "heavy", progress=False)
    (light,) = run(spec_of(), out=tmp_path / "light", progress=False)
    heavy_rss, light_rss = (json.loads((result.directory / "seed_0" / "record.json").read_text())["peak_memory"]
                            for result in (heavy, light))
    assert heavy_rss["rss_scope"] == light_rss["rss_scope"]
    if heavy_rss["rss_scope"] != "seed":
        pytest.skip("this system cannot reset the peak resident set size (/proc/self/clear_refs)")
    ballast = 150 * 2**20
    assert heavy_rss["rss_bytes"] >= before + 0.9 * ballast
    assert light_rss["rss_bytes"] <= heavy_rss["rss_bytes"] - 0.5 * ballast
    assert light_rss["cuda_allocated_bytes"] is None


def test_git_commit_only_of_a_checkout_tracking_the_path(tmp_path):
    from gnnbench.harness.environment import git_commit

    def git(*arguments):
        return subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t", *arguments],
                              capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "module.py").write_text("x = 1\n")
    git("add", "package")
    git("commit", "-qm", "one")
    (tmp_path / "elsewhere").mkdir()
    assert git_commit(tmp_path / "package") == {"commit": git("rev-parse", "HEAD"), "dirty": False}
    (tmp_path / "package" / "module.py").write_text("x = 2\n")
    assert git_commit(tmp_path / "package")["dirty"] is True
    assert git_commit(tmp_path / "elsewhere") is None  # inside the repository, but nothing there is tracked
    outside = tmp_path.parent / f"{tmp_path.name}-plain"
    outside.mkdir()
    assert git_commit(outside) is None


def test_cuda_without_a_gpu_is_an_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match=r"seed 0: RuntimeError: run.device is 'cuda' but torch.cuda"):
        run(spec_of("run.device=cuda"), out=tmp_path / "run", progress=False)


def test_run_seed_alone(tmp_path):
    spec = spec_of()
    record = run_seed(spec.config, 0, tmp_path, progress=False)
    assert record == json.loads((tmp_path / "seed_0" / "record.json").read_text())
    assert run_seed(spec.config, 0, tmp_path, family=spec.family) == record  # finished: returned, not retrained
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        run_seed(spec.config, -1, tmp_path)


# ---------------------------------------------------------------------------------------------- Hessian column


def test_hessian_column_of_a_linear_model_is_exact(tmp_path):
    """Linear regression: the Hessian of a batch's mean squared error is (2/m) A^T A with A = [X 1]."""
    spec = spec_of("hessian.num_matvecs=60", "hessian.top_k=2", "hessian.max_train_batches=4", hessian=True)
    (result,) = run(spec, out=tmp_path / "run", progress=False)
    record = json.loads((result.directory / "seed_0" / "record.json").read_text())
    column = record["hessian"]
    x, y = toy.make_data(spec.config)["train"]
    train = toy.batches(x.double(), y.double(), 64)
    hessians = [2.0 / len(xb) * torch.cat([xb, torch.ones(len(xb), 1, dtype=xb.dtype)], 1).T
                @ torch.cat([xb, torch.ones(len(xb), 1, dtype=xb.dtype)], 1) for xb, _ in train]
    traces = [float(torch.trace(h)) for h in hessians]
    assert column["trace"] == pytest.approx(np.mean(traces), rel=1e-5)
    assert column["trace_stderr"] == 0.0  # Hutch++ resolved the 5-dimensional trace exactly
    assert column["trace_max_over_batches"] == pytest.approx(max(traces), rel=1e-5)
    assert sum(column["per_layer_trace"].values()) == pytest.approx(column["trace"], rel=1e-9)
    eigenvalues = torch.linalg.eigvalsh(hessians[0]).flip(0)  # the top eigenvalues are of the first batch
    assert column["top_eigenvalue"] == pytest.approx(float(eigenvalues[0]), rel=1e-4)
    assert column["top_eigenvalues"] == pytest.approx(eigenvalues[:2].tolist(), rel=1e-4)
    # the measured gap and the Ju-Li-Zhang bound, from the saved and the initial weights
    model = load_model(spec.config, result.directory / "seed_0" / "model.pt").double()
    initial = toy.build_model(spec.config, torch.Generator().manual_seed(1000)).double()
    x_test, y_test = toy.make_data(spec.config)["test"]
    with torch.no_grad():
        train_losses = [float(toy.mse(model, batch)) for batch in train]
        test_losses = [float(toy.mse(model, batch))
                       for batch in toy.batches(x_test.double(), y_test.double(), 64)]
    gap = np.mean(test_losses) - np.mean(train_losses)
    assert column["measured_gap"] == pytest.approx(gap, rel=1e-4, abs=1e-7)
    v = torch.cat([(model.weight - initial.weight).reshape(-1), model.bias - initial.bias]).detach()
    quadratic = max(float(v @ h @ v) for h in hessians)
    n, epsilon = 256, 0.1
    gap_term = (1 + epsilon) * math.sqrt(max(train_losses)) * math.sqrt(quadratic) / math.sqrt(n)
    bound = column["bounds"]["ju_li_zhang_2022"]
    assert bound["bound_on_gap"] == pytest.approx(epsilon * np.mean(train_losses) + gap_term, rel=1e-4)
    radius = column["bounds"]["trace_radius"]["bound_on_gap"]
    assert radius == pytest.approx(max(train_losses) * math.sqrt(max(traces) * float(v @ v) / n), rel=1e-4)
    matvecs = column["num_matvecs"]
    assert matvecs["total"] == sum(value for key, value in matvecs.items() if key != "total")
    assert column["batches"] == {"train": 4, "test": 1}
    full = json.loads((result.directory / "seed_0" / "hessian.json").read_text())
    assert full["trace"]["mean"]["total"] == column["trace"]
    summary = result.summary["metrics"]
    assert summary["hessian.trace"]["mean"] == column["trace"]
    assert summary["hessian.bound.ju_li_zhang_2022"]["mean"] == bound["bound_on_gap"]


def test_hessian_column_matches_gnnbench_hessian_report(tmp_path):
    """A two-layer model at the default budget: the column is what gnnbench.hessian.report measures directly."""
    from gnnbench.hessian import report

    spec = spec_of("model.hidden=3", "hessian.max_train_batches=3", hessian=True)
    (result,) = run(spec, out=tmp_path / "run", progress=False)
    column = json.loads((result.directory / "seed_0" / "record.json").read_text())["hessian"]
    model = load_model(spec.config, result.directory / "seed_0" / "model.pt")
    data = toy.make_data(spec.config)
    initial = toy.build_model(spec.config, torch.Generator().manual_seed(1000)).state_dict()
    settings = harness_config.HARNESS_DEFAULTS["hessian"]
    direct = report(model, lambda batch: toy.mse(model, batch), data=toy.batches(*data["train"], 64)[:3],
                    initial=initial, test_data=toy.batches(*data["test"], 64), n=256,
                    num_matvecs=settings["num_matvecs"], top_k=settings["top_k"],
                    density_runs=settings["density_runs"], density_steps=settings["density_steps"])
    assert set(column["per_layer_trace"]) == {"0", "2"}  # the two Linear layers of the Sequential
    assert column["per_layer_trace"] == direct["trace"]["mean"]["per_layer"]
    assert column["per_layer_trace_stderr"] == direct["trace"]["mean"]["per_layer_stderr"]
    assert column["trace"] == direct["trace"]["mean"]["total"] and column["trace_stderr"] > 0
    assert column["top_eigenvalue"] == direct["top_eigenvalues"][0]
    for name in ("ju_li_zhang_2022", "trace_radius"):
        assert column["bounds"][name]["bound_on_gap"] == direct["bounds"][name]["bound_on_gap"]
        assert column["bounds"][name]["measured_gap"] == direct["bounds"][name]["measured_gap"]
    assert column["num_matvecs"] == direct["matvecs"]
    assert column["num_matvecs"]["trace"] == settings["num_matvecs"]


def test_hessian_needs_the_family_inputs(tmp_path, monkeypatch):
    original = toy.train_seed

    def without(context):
        outcome = original(context)
        outcome.hessian = None
        return outcome

    monkeypatch.setattr(toy, "train_seed", without)
    with pytest.raises(RuntimeError, match="returned no HessianInputs, which --hessian needs"):
        run(spec_of(hessian=True), out=tmp_path / "run", progress=False)


# ---------------------------------------------------------------------------------------------- the command line


def test_cli_run_prints_the_summary_and_resumes_a_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "toy", "--seeds", "0-1", "--set", "train.steps=20", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    score = summary["metrics"]["test.score"]
    assert f"test.score {score['mean']:.4g} ± {score['std']:.2g}" in printed and str(out) in printed
    assert main(["run", str(out), "--no-progress"]) == 0  # a run directory: resumed in place, nothing to do
    assert json.loads((out / "summary.json").read_text())["seeds"] == [0, 1]
    assert main(["run", str(out / "config.toml"), "--seeds", "2", "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "summary.json").read_text())["seeds"] == [0, 1, 2]


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert main(["run", "toy", "--set", "train.steps=many", "--out", str(tmp_path)]) == 2
    assert "train.steps must be an integer" in capsys.readouterr().err
    assert main(["run", "toy", "--seeds", "3-1", "--out", str(tmp_path)]) == 2
    assert "--seeds: the range '3-1' is empty" in capsys.readouterr().err
    assert main(["run", "nothing-like-this", "--out", str(tmp_path)]) == 2
    assert "neither a shipped config" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "toy", "--jobs", "0"])
    assert "--jobs must be an integer >= 1" in capsys.readouterr().err


def test_cli_dry_run_and_shortcuts(tmp_path, capsys):
    assert main(["run", "toy", "--model", "relu", "--hessian", "--device", "cpu", "--root", str(tmp_path),
                 "--seeds", "0,3", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    config = tomllib.loads(printed.split("\n", 1)[1])
    assert config["model"]["activation"] == "relu" and config["hessian"]["enabled"] is True
    assert config["data"]["root"] == str(tmp_path.resolve()) and config["run"]["seeds"] == [0, 3]
    assert printed.startswith("# run directory: ") and config["run"]["name"] in printed.split("\n", 1)[0]
    assert not list(tmp_path.iterdir())  # nothing trained or written


def test_cli_help_documents_the_shortcuts(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, key in (("--algorithm", "data.algorithm"), ("--state", "data.state"), ("--task", "data.task"),
                      ("--root", "data.root"), ("--device", "run.device"), ("--hessian", "hessian.enabled")):
        assert f"{flag} = {key}" in text


def test_shipped_name_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    """`gnnbench run road` in a directory that holds a folder named `road` (a data directory) means the shipped
    config; a folder with a config.toml is a run directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "road").mkdir()
    (tmp_path / "algo").mkdir()
    (spec,) = harness_config.resolve("algo", shortcuts={"algorithm": "bfs", "model": "mpnn"})
    assert spec.benchmark == "algo" and spec.config["model"]["processor"] == "mpnn"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is not a run directory"):
        harness_config.resolve(tmp_path / "empty")
