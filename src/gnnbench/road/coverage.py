"""What each state's crash portal can supply, and what of it was verified: the years report and the table.

``gnnbench download road`` reports, before it starts, the years of a request the portal cannot
supply (:func:`missing_years_message`); ``gnnbench info road`` and the README show
:func:`coverage_rows` per state (portal, formats, the years the portal serves against the
ML4RoadSafety years, and what was verified and how).
"""

from __future__ import annotations

from collections.abc import Iterable

from .states import CRASH_FORMATS, STATES, StateEntry


def unavailable_years(state: StateEntry, years: Iterable[int]) -> list[int]:
    """Those of ``years`` the state's portal cannot supply to ``gnnbench download road``."""
    available = set(state.crash_source.fetchable_years)
    return sorted({int(year) for year in years} - available)


def year_ranges(years: Iterable[int]) -> str:
    """``[2002, 2003, 2004, 2020]`` -> ``"2002-2004, 2020"`` (``"none"`` when empty)."""
    runs: list[list[int]] = []
    for year in sorted({int(year) for year in years}):
        if runs and year == runs[-1][1] + 1:
            runs[-1][1] = year
        else:
            runs.append([year, year])
    return ", ".join(f"{first}" if first == last else f"{first}-{last}" for first, last in runs) or "none"


def missing_years_message(state: StateEntry, years: Iterable[int]) -> str | None:
    """What ``gnnbench download road`` cannot fetch of ``years`` and what to do instead (None: nothing missing)."""
    years = sorted({int(year) for year in years})
    missing = unavailable_years(state, years)
    if not missing:
        return None
    source = state.crash_source
    if source.kind == "manual":
        head = (f"{state.code}: the crash portal has no scriptable download, so none of the requested years "
                f"({year_ranges(years)}) can be fetched.")
    else:
        head = (f"{state.code}: the crash portal cannot supply {year_ranges(missing)} of the requested "
                f"{year_ranges(years)} (it serves {year_ranges(source.fetchable_years)}).")
    how = source.manual_instructions or f"Download those years from {source.portal} by hand."
    return (f"{head} {how} Build with `gnnbench build road --state {state.code} --crashes FILE ...`, or import "
            f"the published ML4RoadSafety release: `gnnbench import ml4roadsafety --state {state.code}`.")


COLUMNS = ("state", "portal", "formats fetched", "formats by hand", "portal years", "ML4RoadSafety years",
           "years by hand", "verified", "built from the live portal")


def coverage_rows() -> list[dict[str, str]]:
    """One row per state: portal, export formats (fetched by gnnbench / passed by hand), years, verification."""
    rows = []
    for code, state in STATES.items():
        source = state.crash_source
        fetched = [name for name in source.formats if CRASH_FORMATS[name][0] is not None
                   and (CRASH_FORMATS[name][0] != "csv" or source.csv_urls())]
        by_hand = [name for name in source.formats if name not in fetched]
        portal_years = (f"{year_ranges(source.fetchable_years)}" if source.kind != "manual"
                        else f"{source.years[0]}-{source.years[1]} (manual export)")
        rows.append({"state": code, "portal": f"{source.kind}: {source.portal}",
                     "formats fetched": ", ".join(fetched) or "none", "formats by hand": ", ".join(by_hand) or "none",
                     "portal years": portal_years, "ML4RoadSafety years": year_ranges(state.years),
                     "years by hand": year_ranges(unavailable_years(state, state.years)),
                     "verified": source.verified, "built from the live portal": source.live_build})
    return rows


def coverage_markdown() -> str:
    """:func:`coverage_rows` as a Markdown table (the README's and the data card's)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in coverage_rows():
        lines.append("| " + " | ".join(row[name].replace("|", "/") for name in COLUMNS) + " |")
    return "\n".join(lines)


def coverage_text() -> str:
    """:func:`coverage_rows` for a terminal: one block per state."""
    blocks = []
    for row in coverage_rows():
        lines = [f"{row['state']}  {row['portal']}"]
        lines += [f"    {name + ':':28s}{row[name]}" for name in COLUMNS[2:]]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
