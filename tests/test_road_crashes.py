"""Crash normalisation details: time zones, hand-made exports, projected coordinates row by row, accounting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gnnbench.road.crashes import CrashSchemaError, drop_duplicates, normalise_crashes
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


def _forward(lon, lat, crs):
    """Projected x, y of known lon/lat, computed with pyproj directly (not through gnnbench)."""
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(np.asarray(lon), np.asarray(lat))


def test_massachusetts_state_plane_xy_fills_empty_lat_lon_row_by_row():
    lon, lat = np.array([-71.06, -72.5, -70.93]), np.array([42.36, 42.1, 41.64])
    x, y = _forward(lon, lat, "EPSG:26986")  # NAD83 / Massachusetts Mainland (metres)
    assert 1e5 < x.min() and 8e5 < y.min()  # really projected values, not degrees
    raw = pd.DataFrame({"X": x, "Y": y, "CRASH_NUMB": ["1", "2", "3"],
                        "CRASH_DATETIME": ["2019/01/01 00:00:00+00", "2019/01/02 00:00:00+00", "2019/01/03 09:00:00+00"],
                        "LAT": ["42.36", "", None], "LON": ["-71.06", "", None],
                        "CRASH_SEVERITY_DESCR": ["Fatal injury", "Non-fatal injury", "Property damage only (none injured)"]})
    kept, quality = normalise_crashes(raw, STATES["MA"], source_file="ma.csv")
    np.testing.assert_allclose(kept["lon"], lon, atol=1e-7)
    np.testing.assert_allclose(kept["lat"], lat, atol=1e-7)
    assert quality.coordinate_sources == {"LAT/LON": 1, "Y/X (EPSG:26986)": 2}
    assert kept["severity"].tolist() == ["fatal", "injury", "property_damage"]
    assert kept[["year", "month", "day"]].values.tolist() == [[2019, 1, 1], [2019, 1, 2], [2019, 1, 3]]


def test_projected_columns_holding_degrees_are_taken_as_degrees():
    """A hub CSV whose X/Y turn out to be WGS84 (the Iowa CRS is unverified) still reads correctly."""
    raw = pd.DataFrame({"X": [-93.62, 41.6], "Y": [41.59, -93.6], "CRASH_KEY": ["1", "2"],
                        "CRASH_DATE": ["2019/07/04 00:00:00+00"] * 2, "CSEV": ["5", "1"]})
    kept, quality = normalise_crashes(raw, STATES["IA"], source_file="hub.csv")
    assert kept[["lat", "lon"]].values.tolist() == [[41.59, -93.62]]
    assert quality.dropped["swapped_lat_lon"] == 1  # the swapped pair is still recognised


def test_a_row_with_no_coordinates_anywhere_is_dropped_as_missing():
    raw = pd.DataFrame({"X": [None, "-10421000"], "Y": ["", "5099000"], "LATITUDE": ["", ""], "LONGITUDE": ["", ""],
                        "CRASH_KEY": ["1", "2"], "CRASH_DATE": ["2019/07/04 00:00:00+00"] * 2, "CSEV": ["5", "1"]})
    kept, quality = normalise_crashes(raw, STATES["IA"], source_file="hub.csv")
    assert quality.dropped["missing_coordinates"] == 1 and quality.examples["missing_coordinates"] == ["hub.csv:0"]
    lon, lat = -10421000 / 6378137 * 180 / np.pi, np.degrees(2 * np.arctan(np.exp(5099000 / 6378137)) - np.pi / 2)
    np.testing.assert_allclose(kept[["lat", "lon"]].to_numpy()[0], [lat, lon], atol=1e-9)  # spherical Mercator


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


def test_iowa_web_mercator_xy_fills_empty_lat_lon_row_by_row():
    lon, lat = np.array([-93.62, -91.53, -95.86]), np.array([41.59, 41.66, 43.0])
    x, y = _forward(lon, lat, "EPSG:3857")
    raw = pd.DataFrame({"X": x, "Y": y, "LATITUDE": ["41.59", "", "43.0"], "LONGITUDE": ["-93.62", "", ""],
                        "CRASH_KEY": ["1", "2", "3"], "CRASH_DATE": ["2019/07/04 00:00:00+00"] * 3,
                        "CSEV": ["5", "1", "3"]})
    kept, quality = normalise_crashes(raw, STATES["IA"], source_file="hub.csv")
    np.testing.assert_allclose(kept["lon"], lon, atol=1e-7)
    np.testing.assert_allclose(kept["lat"], lat, atol=1e-7)
    # row 3 has a latitude but no longitude: both come from X/Y
    assert quality.coordinate_sources == {"LATITUDE/LONGITUDE": 1, "Y/X (EPSG:3857)": 2}
    assert kept["severity"].tolist() == ["property_damage", "fatal", "injury"] and kept["day"].tolist() == [4, 4, 4]


def test_wkt_point_column_fills_empty_lat_lon():
    raw = pd.DataFrame({"CRASH DATETIME": ["2019 Jan 02 01:00:00 PM"] * 2, "LATITUDE": ["NA", "39.1"],
                        "LONGITUDE": ["NA", "-75.5"], "the_geom": ["POINT (-75.736330000437 39.661740000052)", ""],
                        "CRASH CLASSIFICATION DESCRIPTION": ["Fatality Crash"] * 2})
    kept, quality = normalise_crashes(raw, STATES["DE"], source_file="de.csv")
    assert kept[["lat", "lon"]].values.tolist() == [[39.661740000052, -75.736330000437], [39.1, -75.5]]
    assert quality.coordinate_sources == {"LATITUDE/LONGITUDE": 1, "the_geom": 1}


def test_column_names_match_ignoring_case():
    """ML4RoadSafety's files lower-case every column name."""
    raw = pd.DataFrame({"crash_numb": ["7"], "crash_date_text": ["03/09/2002"], "lat": ["42.25"], "lon": ["-71.0"],
                        "crash_severity_descr": ["Fatal injury"]})
    kept, _ = normalise_crashes(raw, STATES["MA"], source_file="ma.csv")
    assert kept[["crash_id", "year", "month", "day", "lat", "lon", "severity"]].values.tolist() == [
        ["7", 2002, 3, 9, 42.25, -71.0, "fatal"]]
