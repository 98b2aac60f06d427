"""The quickstart's summary table says when a bound does not bound (issue: bounds that do not bound)."""

from __future__ import annotations

from gnnbench.harness.quickstart import summary_table


def _record(bound: float, gap: float, holds: bool | None, note: str | None = None) -> dict:
    bounds = {"ju_li_zhang_2022": {"bound_on_gap": bound, "bound_holds": holds, "note": note}}
    return {"valid": {"score": 0.5}, "test": {"score": 0.25}, "wall_seconds": 2.0,
            "hessian": {"trace": 3.0, "top_eigenvalue": 1.5, "measured_gap": gap, "bounds": bounds}}


def test_a_bound_below_the_gap_is_flagged_with_its_note():
    table = summary_table({"algo-bfs": _record(0.1218, 0.1255, False, "traces are estimates (2 s.e.: 0.13)"),
                           "road-DEMO": _record(0.5, 0.01, True)})
    lines = table.splitlines()
    assert lines[0].split()[-2:] == ["bound", "holds"]
    bfs = next(line for line in lines if line.startswith("algo-bfs"))
    road = next(line for line in lines if line.startswith("road-DEMO"))
    assert bfs.endswith("NO (below)") and "0.1218" in bfs and "0.1255" in bfs
    assert road.endswith("yes")
    assert lines[-1] == ("algo-bfs: the bound on the gap is below the measured gap. "
                         "traces are estimates (2 s.e.: 0.13)")
    assert not any(line.startswith("road-DEMO:") for line in lines)  # a bound that holds gets no note


def test_records_without_the_flag_show_a_dash():
    record = _record(0.5, 0.01, None)
    del record["hessian"]["bounds"]["ju_li_zhang_2022"]["bound_holds"]
    line = summary_table({"old-run": record}).splitlines()[2]
    assert line.split()[-1] == "-"
