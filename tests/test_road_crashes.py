"""Crash normalisation details: time zones, hand-made exports, state-plane coordinates, accounting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from gnnbench.road.crashes import CrashSchemaError, drop_duplicates, normalise_crashes
from gnnbench.road.geo import transform
from gnnbench.road.states import STATES


def test_utc_instants_take_the_local_date():
    raw = pd.DataFrame({"CRASH DATETIME": ["2019-03-01T03:30:00.000Z", "2019-03-01T03:30:00.000"],
                        "LATITUDE": ["39.1", "39.1"], "LONGITUDE": ["-75.5", "-75.6"],
                        "CRASH CLASSIFICATION DESCRIPTION": ["Property Damage Only"] * 2})
    kept, _ = normalise_crashes(raw, STATES["DE"], source_file="p.json")
    # 03:30 UTC is 22:30 the evening before in Delaware; the naive value is local already
    assert kept[["year", "month", "day"]].values.tolist() == [[2019, 2, 28], [2019, 3, 1]]


def test_a_hand_made_export_without_id_or_severity_is_accepted_with_notes():
    raw = pd.DataFrame({"Date of Crash": ["20130105", "20130105", "2013/02/07 00:00:00+00"],
                        "Latitude": ["41.6", "41.6", "42.0"], "Longitude": ["-93.6", "-93.6", "-92.0"]})
    kept, quality = normalise_crashes(raw, STATES["IA"], source_file="icat.csv", strict=False)
    assert kept["severity"].tolist() == ["unknown"] * 3
    assert kept["crash_id"].iloc[0] == kept["crash_id"].iloc[1]  # composite id: same time and place
    assert kept[["month", "day"]].values.tolist() == [[1, 5], [1, 5], [2, 7]]
    assert any("no crash id column" in note for note in quality.notes)
    assert any("no severity column" in note for note in quality.notes)
    kept = drop_duplicates(kept, quality, month_resolution=False)
    assert len(kept) == 2 and quality.to_dict()["dropped"]["duplicate"] == 1
    with pytest.raises(CrashSchemaError, match="severity"):
        normalise_crashes(raw, STATES["IA"], source_file="page.json", strict=True)


def test_state_plane_coordinates_are_reprojected_to_wgs84():
    lon, lat = np.array([-71.06, -72.5]), np.array([42.36, 42.1])
    x, y = transform(lon, lat, "EPSG:4326", "EPSG:26986")  # NAD83 / Massachusetts Mainland (metres)
    mapping = dataclasses.replace(STATES["MA"].columns, lat=("Y",), lon=("X",), crs="EPSG:26986")
    state = dataclasses.replace(STATES["MA"], columns=mapping)
    raw = pd.DataFrame({"CRASH_NUMB": ["1", "2"], "CRASH_DATETIME": [1546300800000, 1546387200000],
                        "X": x, "Y": y, "CRASH_SEVERITY_DESCR": ["Fatal injury", "Non-fatal injury"]})
    kept, quality = normalise_crashes(raw, state, source_file="ma.json")
    np.testing.assert_allclose(kept["lon"], lon, atol=1e-7)
    np.testing.assert_allclose(kept["lat"], lat, atol=1e-7)
    assert kept["severity"].tolist() == ["fatal", "injury"] and quality.kept == 2
    assert kept[["year", "month", "day"]].values.tolist() == [[2019, 1, 1], [2019, 1, 2]]


def test_accounting_holds_for_every_reason_at_once():
    raw = pd.DataFrame({
        "CRASH DATETIME": ["2019 Jan 02 01:00:00 PM", "", "2019 Jan 02 01:00:00 PM", "2019 Jan 02 01:00:00 PM",
                           "2019 Jan 02 01:00:00 PM", "2019 Jan 02 01:00:00 PM", "1850 Jan 01 01:00:00 PM",
                           "2019 Jan 02 01:00:00 PM"],
        "LATITUDE": ["39.1", "39.2", "NA", "0", "-75.5", "45.0", "39.3", "39.1"],
        "LONGITUDE": ["-75.5", "-75.5", "-75.5", "-75.5", "39.1", "-75.5", "-75.5", "-75.5"],
        "CRASH CLASSIFICATION DESCRIPTION": ["Fatality Crash"] * 8})
    kept, quality = normalise_crashes(raw, STATES["DE"], source_file="f.csv", years=[2019])
    kept = drop_duplicates(kept, quality, month_resolution=False)
    report = quality.to_dict()
    assert report["records_read"] == 8 and report["kept"] == 1
    assert {reason: count for reason, count in report["dropped"].items() if count} == {
        "unparseable_date": 2, "missing_coordinates": 1, "zero_coordinates": 1, "swapped_lat_lon": 1,
        "outside_state": 1, "duplicate": 1}
    assert report["examples"]["swapped_lat_lon"] == ["f.csv:4"]


def test_iowa_hub_csv_web_mercator_xy_is_reprojected():
    lon, lat = np.array([-93.62, -91.53]), np.array([41.59, 41.66])
    x, y = transform(lon, lat, "EPSG:4326", "EPSG:3857")
    raw = pd.DataFrame({"X": x, "Y": y, "CRASH_KEY": ["1", "2"], "CRASH_DATE": ["2019/07/04 00:00:00+00"] * 2,
                        "CSEV": ["5", "1"]})
    kept, _ = normalise_crashes(raw, STATES["IA"], source_file="hub.csv")
    np.testing.assert_allclose(kept["lon"], lon, atol=1e-7)
    np.testing.assert_allclose(kept["lat"], lat, atol=1e-7)
    assert kept["severity"].tolist() == ["property_damage", "fatal"] and kept["day"].tolist() == [4, 4]
