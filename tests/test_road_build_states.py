"""`gnnbench build road --state all` builds the states as Dask tasks (a LocalCluster by default)."""

from __future__ import annotations

import pytest

from gnnbench.road import STATES
from gnnbench.road.pipeline import build_states


@pytest.mark.heavy
def test_build_all_on_a_local_cluster_reports_every_state_that_cannot_be_built(tmp_path, capsys):
    from gnnbench.cli import main

    assert main(["build", "road", "--state", "all", "--root", str(tmp_path / "road"), "--workers", "2"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gnnbench: skipped ")]
    assert [line.split(":")[1].split()[-1] for line in err] == list(STATES)  # registry order, whatever finished first
    assert all("download road --state" in line for line in err)


def test_build_states_on_a_client_equals_the_sequential_build(tmp_path):
    distributed = pytest.importorskip("distributed")
    sequential, failed = build_states(["DEMO"], home=tmp_path / "one", scheduler="none")
    assert not failed
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster)
    try:
        parallel, failed = build_states(["DEMO", "MN"], home=tmp_path / "two", scheduler=client)
    finally:
        client.close()
        cluster.close()
    assert list(parallel) == ["DEMO"] and "network.graphml is missing" in failed["MN"]
    for name in ("nodes.parquet", "edges.parquet", "accidents.parquet"):
        assert (parallel["DEMO"] / name).read_bytes() == (sequential["DEMO"] / name).read_bytes()
