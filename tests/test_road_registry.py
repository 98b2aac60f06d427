"""The state registry: the eight states, splits, geography, endpoints, the years each portal can supply,
and what was verified per state (and that the README and data card show the same table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gnnbench.road.coverage import (
    coverage_markdown,
    coverage_rows,
    missing_years_message,
    unavailable_years,
    year_ranges,
)
from gnnbench.road.geo import utm_epsg
from gnnbench.road.states import SEVERITIES, STATES, get_state

ML4RS_SPLITS = {
    "DE": ((2009, 2012), (2013, 2017), (2018, 2022)),
    "IA": ((2013, 2016), (2017, 2019), (2020, 2022)),
    "IL": ((2012, 2014), (2015, 2017), (2018, 2021)),
    "MA": ((2002, 2008), (2009, 2015), (2016, 2022)),
    "MD": ((2015, 2017), (2018, 2019), (2020, 2022)),
    "MN": ((2015, 2017), (2018, 2019), (2020, 2022)),
    "MT": ((2016, 2017), (2018, 2018), (2019, 2020)),
    "NV": ((2016, 2017), (2018, 2018), (2019, 2020)),
}
CITIES = {  # (lat, lon)
    "DE": ("Wilmington", 39.7391, -75.5398), "IA": ("Des Moines", 41.5868, -93.6250),
    "IL": ("Chicago", 41.8781, -87.6298), "MA": ("Boston", 42.3601, -71.0589),
    "MD": ("Baltimore", 39.2904, -76.6122), "MN": ("Minneapolis", 44.9778, -93.2650),
    "MT": ("Helena", 46.5891, -112.0391), "NV": ("Las Vegas", 36.1699, -115.1398),
}


def test_registry_has_exactly_the_eight_states():
    assert sorted(STATES) == ["DE", "IA", "IL", "MA", "MD", "MN", "MT", "NV"]
    assert all(entry.code == code for code, entry in STATES.items())
    assert get_state("nv") is STATES["NV"]
    with pytest.raises(ValueError, match="unknown state 'XX'; expected one of DE, IA"):
        get_state("XX")


@pytest.mark.parametrize("code", sorted(ML4RS_SPLITS))
def test_splits_are_ml4roadsafety_splits(code):
    spans = ML4RS_SPLITS[code]
    expected = {name: list(range(first, last + 1)) for name, (first, last) in zip(("train", "valid", "test"), spans)}
    splits = STATES[code].splits
    assert type(splits) is dict and all(type(years) is list for years in splits.values())
    assert splits == expected and list(splits) == ["train", "valid", "test"]
    assert STATES[code].years == list(range(spans[0][0], spans[2][1] + 1))
    splits["train"].append(1900)  # a copy: the registry stays unchanged
    assert STATES[code].splits == expected


@pytest.mark.parametrize("code", sorted(CITIES))
def test_bbox_and_utm_zone(code):
    entry = STATES[code]
    lon_min, lat_min, lon_max, lat_max = entry.bbox
    assert -180 < lon_min < lon_max < 0 and 0 < lat_min < lat_max < 90
    _, lat, lon = CITIES[code]
    assert lon_min <= lon <= lon_max and lat_min <= lat <= lat_max
    # Every state's centre lies in the zone the registry names (no adjacent-zone exceptions needed).
    assert entry.utm_epsg == utm_epsg((lon_min + lon_max) / 2, (lat_min + lat_max) / 2)


@pytest.mark.parametrize("code", sorted(STATES))
def test_sources_have_endpoints(code):
    entry = STATES[code]
    source = entry.crash_source
    assert source.kind in ("socrata", "arcgis", "manual")
    assert source.portal.startswith("https://")
    assert source.years[0] <= source.years[1]
    if source.kind == "socrata":
        assert source.base_url.startswith("https://") and source.base_url.count("/") == 2
        assert len(source.dataset_id) == 9 and source.dataset_id[4] == "-"
    elif source.kind == "arcgis":
        assert source.layers
        for key, url in source.layers.items():
            assert key == "all" or source.years[0] <= int(key) <= source.years[1]
            assert url.startswith("https://") and ("/FeatureServer/" in url or "/MapServer/" in url)
    else:
        assert not source.layers and source.base_url is None
        assert "--crashes" in source.manual_instructions
    assert set(entry.columns.severity_values.values()) <= set(SEVERITIES)
    assert all(key == key.strip().upper() for key in entry.columns.severity_values)


# ------------------------------------------------------------------------------------------ years and verification

FETCHABLE = {  # the years each portal serves to `gnnbench download road` (research notes), written out by hand
    "DE": list(range(2009, 2026)), "IA": list(range(2015, 2025)), "IL": list(range(2016, 2025)),
    "MD": list(range(2015, 2026)), "MA": [*range(2013, 2020), *range(2021, 2025)], "MN": [], "MT": [],
    "NV": list(range(2016, 2025)),
}
NOT_FETCHABLE = {  # of the ML4RoadSafety years (ML4RS_SPLITS above)
    "DE": [], "MD": [], "NV": [], "IA": [2013, 2014], "IL": [2012, 2013, 2014, 2015],
    "MA": [*range(2002, 2013), 2020], "MN": list(range(2015, 2023)), "MT": list(range(2016, 2021)),
}


@pytest.mark.parametrize("code", sorted(STATES))
def test_years_the_portal_cannot_supply(code):
    entry = STATES[code]
    assert entry.crash_source.fetchable_years == FETCHABLE[code]
    assert unavailable_years(entry, entry.years) == NOT_FETCHABLE[code]
    message = missing_years_message(entry, entry.years)
    if not NOT_FETCHABLE[code]:
        assert message is None
        return
    assert message.startswith(f"{code}: the crash portal ")
    assert f"--state {code} --crashes FILE" in message and f"import ml4roadsafety --state {code}" in message
    assert entry.crash_source.manual_instructions in message


def test_years_message_names_the_missing_ranges():
    message = missing_years_message(STATES["MA"], range(2002, 2023))
    assert "cannot supply 2002-2012, 2020 of the requested 2002-2022 (it serves 2013-2019, 2021-2024)" in message
    assert missing_years_message(STATES["MA"], [2015, 2016]) is None
    assert "none of the requested years (2016-2017) can be fetched" in missing_years_message(STATES["MT"], [2017, 2016])
    assert year_ranges([2020, 2002, 2003, 2004, 2004]) == "2002-2004, 2020" and year_ranges([]) == "none"


def test_every_state_says_what_was_verified_and_how():
    rows = {row["state"]: row for row in coverage_rows()}
    assert list(rows) == list(STATES)
    for code, row in rows.items():
        assert row["built from the live portal"] == "not yet"
        verified = row["verified"]
        # only Delaware's export was compared with a real file; every other state says it is unverified
        assert ("[unverified]" in verified) and (code == "DE") == verified.startswith("full CSV export")
    assert rows["MA"]["years by hand"] == "2002-2012, 2020" and rows["MA"]["formats by hand"] == "hub-csv, manual-csv"
    assert rows["NV"]["formats fetched"] == "arcgis-json, arcgis-geojson"


@pytest.mark.parametrize("document", ["README.md", "data_cards/road_accidents.md"])
def test_documents_show_the_registry_table(document):
    text = (Path(__file__).parent.parent / document).read_text(encoding="utf-8")
    assert coverage_markdown() in text


def test_info_road_without_a_state_prints_the_table(capsys):
    import json

    from gnnbench.cli import main

    assert main(["info", "road"]) == 0
    out = capsys.readouterr().out
    blocks = {block.split()[0]: block for block in out.split("\n") if block and not block.startswith(" ")}
    assert list(blocks) == ["DE", "IA", "IL", "MD", "MA", "MN", "MT", "NV"]
    assert "    years by hand:              2002-2012, 2020\n" in out  # Massachusetts
    assert out.count("built from the live portal: not yet") == 8
    assert main(["info", "road", "--json"]) == 0
    rows = {row["state"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["IA"]["years by hand"] == "2013-2014" and rows["MN"]["formats fetched"] == "none"
