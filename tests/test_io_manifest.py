"""The package's one manifest format: envelope, kinds, layouts, and verification of the described files."""

import hashlib
import json

import numpy as np
import pytest

from gnnbench import __version__
from gnnbench.io.manifest import ManifestError, file_record, read_manifest, verify_files, write_manifest


@pytest.fixture()
def described(tmp_path):
    data = tmp_path / "values.bin"
    data.write_bytes(bytes(range(200)))
    manifest = write_manifest(tmp_path / "manifest.json", kind="example", layout=3, parameters={"seed": 1},
                              files={"values": file_record(data, rows=200)}, note={"count": np.int64(5)})
    return tmp_path, data, manifest


def test_written_envelope_and_file_record(described):
    directory, data, manifest = described
    on_disk = json.loads((directory / "manifest.json").read_text())
    assert on_disk == manifest
    assert on_disk["manifest_format"] == 1 and on_disk["kind"] == "example" and on_disk["layout"] == 3
    assert on_disk["gnnbench_version"] == __version__ and on_disk["parameters"] == {"seed": 1}
    assert on_disk["files"]["values"] == {"path": "values.bin", "bytes": 200, "rows": 200,
                                          "sha256": hashlib.sha256(bytes(range(200))).hexdigest()}
    assert on_disk["note"] == {"count": 5}  # numpy scalars become JSON numbers
    assert read_manifest(directory / "manifest.json", kinds=("example",), layout=3) == manifest
    verify_files(manifest, directory)


def test_sections_cannot_shadow_the_envelope(tmp_path):
    with pytest.raises(ValueError, match="may not be named gnnbench_version, manifest_format"):
        write_manifest(tmp_path / "m.json", kind="a", layout=1, parameters={}, files={}, manifest_format=2,
                       gnnbench_version="0")
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("content, message", [
    (None, "manifest missing"),
    ("{not json", "unreadable manifest"),
    ("[1, 2]", "a JSON list, not an object"),
    (json.dumps({"kind": "x"}), "no manifest_format, layout, gnnbench_version, parameters, files"),
    (json.dumps({"manifest_format": 9, "kind": "x", "layout": 1, "gnnbench_version": "0", "parameters": {},
                 "files": {}}), "manifest format 9"),
    (json.dumps({"manifest_format": 1, "kind": "x", "layout": 1, "gnnbench_version": "0", "parameters": {},
                 "files": {"a": {"bytes": 1}}}), "'files' must map names to records with a 'path'"),
])
def test_unreadable_manifests_name_the_file_and_problem(tmp_path, content, message):
    path = tmp_path / "manifest.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ManifestError, match=message) as caught:
        read_manifest(path)
    assert str(path) in str(caught.value)


def test_other_kind_or_layout_is_refused(described):
    directory, _, _ = described
    with pytest.raises(ManifestError, match="a 'example' manifest, expected 'trace-set'"):
        read_manifest(directory / "manifest.json", kinds=("trace-set",))
    with pytest.raises(ManifestError, match="layout 3 of 'example', this gnnbench reads 4"):
        read_manifest(directory / "manifest.json", layout=4)


def test_verify_files_names_missing_truncated_and_corrupt_files(described):
    directory, data, manifest = described
    data.write_bytes(bytes(range(100)))
    with pytest.raises(ManifestError, match=r"values.bin: 100 bytes, the manifest says 200"):
        verify_files(manifest, directory)
    data.write_bytes(bytes(reversed(range(200))))  # same size, other content
    verify_files(manifest, directory, checksum=False)  # sizes only: passes
    with pytest.raises(ManifestError, match=r"values.bin: SHA-256 differs"):
        verify_files(manifest, directory)
    data.unlink()
    with pytest.raises(ManifestError, match=r"values.bin: missing"):
        verify_files(manifest, directory)
    with pytest.raises(ManifestError, match="lists no file 'other'"):
        verify_files(manifest, directory, names=["other"])
