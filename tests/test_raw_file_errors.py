"""A damaged raw download (crash pages and their listing, the road network, an HPMS layer) stops the build with an
error naming the file and the exact command that downloads it again (issue 10, item 3)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gnnbench.road.build import RegionPaths
from gnnbench.road.demo.region import DEMO_REGION
from gnnbench.road.pipeline import build_region_from_raw
from gnnbench.road.raw_files import CorruptRawFileError, download_command
from gnnbench.road.sources.crash_portals import COMPLETE


def _damage(path: Path, kind: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if kind == "truncate" else (b"\x00garbage\xff<{" * len(data))[: len(data)])


@pytest.fixture
def raw(copy_demo_region, tmp_path) -> RegionPaths:
    """A private copy of the demo region's root (raw downloads included), tables not needed."""
    root = copy_demo_region(tmp_path / "road")
    return RegionPaths.for_region("DEMO", root)


def _expected_command(paths: RegionPaths) -> str:
    return f"gnnbench download road --state DEMO --root {shlex.quote(str(paths.raw.parent.parent.absolute()))}"


def test_download_command_names_the_state_and_a_root_other_than_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("GNNBENCH_HOME", str(tmp_path / "home"))
    default = tmp_path / "home" / "road" / "raw" / "MA" / "crashes"
    assert download_command(default) == "gnnbench download road --state MA"
    other = tmp_path / "x"
    assert download_command(other / "raw" / "DE") == f"gnnbench download road --state DE --root {other}"
    with pytest.raises(ValueError, match="not under a road data directory"):
        download_command(tmp_path / "elsewhere")


@pytest.mark.parametrize("kind", ["truncate", "garbage"])
def test_a_damaged_network_download_is_named_with_its_command(raw, kind):
    network = raw.network / "network.graphml"
    _damage(network, kind)
    with pytest.raises(CorruptRawFileError) as caught:
        build_region_from_raw(DEMO_REGION, raw)
    text = str(caught.value)
    assert text.startswith(f"{network}: not a readable GraphML file")
    assert text.endswith(f"download it again with `{_expected_command(raw)}`")


@pytest.mark.parametrize("kind", ["truncate", "garbage"])
def test_a_damaged_crash_listing_is_named_with_its_command(raw, kind):
    listing = raw.crashes / COMPLETE
    _damage(listing, kind)
    with pytest.raises(CorruptRawFileError, match=re.escape(f"{listing}: not a readable download listing")) as caught:
        build_region_from_raw(DEMO_REGION, raw)
    assert str(caught.value).endswith(f"`{_expected_command(raw)}`")


@pytest.mark.parametrize("kind", ["truncate", "garbage", "delete"])
def test_a_damaged_crash_page_is_named_with_its_command(raw, kind):
    page = sorted(path for path in raw.crashes.iterdir() if path.name not in (COMPLETE, "columns.json"))[0]
    if kind == "delete":
        page.unlink()
        error, reason = FileNotFoundError, f"{page}: listed in {raw.crashes / COMPLETE} but missing"
    else:
        _damage(page, kind)
        error, reason = CorruptRawFileError, f"{page}: does not match the sha256 recorded in"
    with pytest.raises(error, match=re.escape(reason)) as caught:
        build_region_from_raw(DEMO_REGION, raw)
    assert str(caught.value).endswith(f"`{_expected_command(raw)}`")


@pytest.mark.parametrize("kind", ["truncate", "garbage"])
def test_a_damaged_hpms_download_is_named_with_its_command(raw, kind):
    layers = sorted((raw.raw / "volume").glob("hpms-*.geojson"))
    assert layers, "the demo region downloads HPMS layers"
    _damage(layers[0], kind)
    with pytest.raises(CorruptRawFileError, match=re.escape(f"{layers[0]}: not a readable HPMS download")) as caught:
        build_region_from_raw(DEMO_REGION, raw)
    assert str(caught.value).endswith(f"`{_expected_command(raw)}`")


def test_a_deleted_crash_listing_names_the_command(raw):
    (raw.crashes / COMPLETE).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"no finished crash download ({COMPLETE} is missing")) \
            as caught:
        build_region_from_raw(DEMO_REGION, raw)
    assert str(caught.value).endswith(f"`{_expected_command(raw)}`")


@pytest.mark.parametrize("name", ["stations.db", "monthly data", "a download record"])
def test_a_damaged_weather_download_is_named_with_its_command(raw, name):
    weather = raw.raw / "weather"
    if name == "stations.db":
        target = weather / "stations.db"
    elif name == "monthly data":
        target = sorted((weather / "monthly").glob("*.csv.gz"))[0]
    else:
        target = sorted((weather / "monthly").glob("*.download.json"))[0]
    _damage(target, "truncate")
    with pytest.raises(CorruptRawFileError) as caught:
        build_region_from_raw(DEMO_REGION, raw)
    text = str(caught.value)
    assert (target.name if name != "stations.db" else "stations.db") in text
    assert text.endswith(f"download it again with `{_expected_command(raw)}`")


@pytest.mark.parametrize("name", ["stations.db", "monthly data"])
def test_a_deleted_weather_download_is_named_with_its_command(raw, name):
    """Weather was downloaded: a deleted file is an error, never a build without weather."""
    weather = raw.raw / "weather"
    target = weather / "stations.db" if name == "stations.db" else sorted((weather / "monthly").glob("*.csv.gz"))[0]
    target.unlink()
    with pytest.raises(FileNotFoundError) as caught:
        build_region_from_raw(DEMO_REGION, raw)
    assert str(caught.value) == (f"{target}: missing from the weather download; download it again with "
                                 f"`{_expected_command(raw)}`")
