"""``gnnbench run --scheduler``: the same per-seed function on a real Dask ``LocalCluster``."""

from __future__ import annotations

import json

import pytest
import torch

import harness_family as toy
from gnnbench.cli import main
from gnnbench.harness import register_family, resolve, run

distributed = pytest.importorskip("distributed")

torch.set_num_threads(1)
register_family(toy, shortcuts={"model": "model.activation"})


@pytest.fixture(scope="module")
def cluster():
    """Two worker threads in this process (no worker start-up cost; the family module is importable)."""
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as local:
        yield local


def records(directory, seeds):
    return {seed: json.loads((directory / f"seed_{seed}" / "record.json").read_text()) for seed in seeds}


def test_dask_client_matches_sequential(tmp_path, cluster):
    (spec,) = resolve("toy", overrides=["model.hidden=3"], seeds="0-2")
    (sequential,) = run(spec, out=tmp_path / "sequential", progress=False)
    with distributed.Client(cluster) as client:
        (on_dask,) = run(spec, out=tmp_path / "dask", scheduler=client, progress=False)
        assert client.status == "running"  # a client passed in is left open
    assert on_dask.failures == {} and on_dask.summary["seeds"] == [0, 1, 2]
    expected, got = records(sequential.directory, range(3)), records(on_dask.directory, range(3))
    for seed in range(3):
        assert got[seed]["test"] == expected[seed]["test"] and got[seed]["curve"] == expected[seed]["curve"]
        assert got[seed]["peak_memory"]["rss_scope"] == "process"  # seeds share the worker's process
    assert on_dask.summary["metrics"]["test.score"] == sequential.summary["metrics"]["test.score"]


def test_cli_scheduler_address_and_resume(tmp_path, cluster, monkeypatch, capsys):
    out = tmp_path / "run"
    arguments = ["run", "toy", "--model", "relu", "--set", "model.hidden=3", "--seeds", "0-1", "--out", str(out),
                 "--scheduler", cluster.scheduler_address, "--no-progress"]
    monkeypatch.setenv("GNNBENCH_TOY_FAIL_AT_STEP", "25")  # both seeds fail on the workers after step 20
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert "seed 0: RuntimeError: simulated failure before step 25" in error and "seed 1: RuntimeError" in error
    assert not (out / "seed_0" / "record.json").exists()
    monkeypatch.delenv("GNNBENCH_TOY_FAIL_AT_STEP")
    assert main(arguments) == 0  # the same command resumes both seeds from their checkpoints, on Dask
    resumed = records(out, (0, 1))
    assert all(record["resumed"] and record["extra"]["resumed_from_step"] == 20 for record in resumed.values())
    (spec,) = resolve("toy", shortcuts={"model": "relu"}, overrides=["model.hidden=3"], seeds="0-1")
    (reference,) = run(spec, out=tmp_path / "reference", progress=False)
    expected = records(reference.directory, (0, 1))
    assert all(resumed[seed]["test"] == expected[seed]["test"] for seed in (0, 1))


@pytest.mark.heavy
def test_dask_worker_processes(tmp_path):
    """A worker in its own process imports the family by its module name and writes into the shared directory."""
    (spec,) = resolve("toy", seeds="0-1", overrides=["train.steps=20"])
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as local:
        (result,) = run(spec, out=tmp_path / "run", scheduler=local.scheduler_address, progress=False)
        with distributed.Client(local) as client:
            worker_pids = set(client.run(lambda: __import__("os").getpid()).values())
    got = records(result.directory, (0, 1))
    assert result.summary["seeds"] == [0, 1]
    assert {record["environment"]["hardware"]["torch_threads"] for record in got.values()} == {1}
    (sequential,) = run(spec, out=tmp_path / "sequential", progress=False)
    assert got[0]["test"] == records(sequential.directory, (0,))[0]["test"]
    assert worker_pids and __import__("os").getpid() not in worker_pids


def test_scheduler_and_jobs_are_exclusive(tmp_path, cluster):
    (spec,) = resolve("toy")
    with pytest.raises(ValueError, match="either jobs .* or scheduler"):
        run(spec, out=tmp_path, scheduler=cluster.scheduler_address, jobs=2, progress=False)
