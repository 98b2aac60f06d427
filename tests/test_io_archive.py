"""gnnbench.io.archive.safe_extract: zip/tar extraction that never writes outside its target."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from gnnbench.io import UnsafeArchiveError, safe_extract


def make_zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    return info, io.BytesIO(data) if kind == tarfile.REGTYPE else None


def make_tar(path: Path, members: list[tuple], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for info, data in members:
            archive.addfile(info, data)
    return path


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".extract"))


def test_zip_extracts_into_new_target(tmp_path):
    archive = make_zip(tmp_path / "data.zip", {"top.csv": b"a,b\n", "nested/deep/x.txt": b"x", "empty/": b""})
    files = safe_extract(archive, tmp_path / "out")
    assert files == [tmp_path / "out" / "top.csv", tmp_path / "out" / "nested" / "deep" / "x.txt"]
    assert files[1].read_bytes() == b"x" and (tmp_path / "out" / "empty").is_dir()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_extracts_with_inner_links(tmp_path, mode):
    archive = make_tar(
        tmp_path / "data.tar",
        [
            tar_member("pkg", tarfile.DIRTYPE),
            tar_member("pkg/a.txt", data=b"alpha"),
            tar_member("pkg/sym.txt", tarfile.SYMTYPE, link="a.txt"),
            tar_member("pkg/hard.txt", tarfile.LNKTYPE, link="pkg/a.txt"),
        ],
        mode,
    )
    target = tmp_path / "out"
    target.mkdir()  # an empty target is fine
    files = safe_extract(archive, target)
    assert files == [target / "pkg" / "a.txt", target / "pkg" / "sym.txt", target / "pkg" / "hard.txt"]
    assert (target / "pkg" / "sym.txt").is_symlink() and (target / "pkg" / "sym.txt").read_bytes() == b"alpha"
    assert (target / "pkg" / "hard.txt").read_bytes() == b"alpha"


def test_non_empty_target_and_non_archive_are_refused(tmp_path):
    archive = make_zip(tmp_path / "data.zip", {"a": b"1"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("mine")
    with pytest.raises(FileExistsError, match="out"):
        safe_extract(archive, tmp_path / "out")
    (tmp_path / "plain.txt").write_text("not an archive")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        safe_extract(tmp_path / "plain.txt", tmp_path / "out2")


@pytest.mark.parametrize("name", ["/etc/evil", "../evil", "a/../../evil", "ok/../evil", "C:/evil", "..\\evil"])
def test_zip_path_escapes_are_refused(tmp_path, name):
    archive = make_zip(tmp_path / "bad.zip", {"fine.txt": b"ok", name: b"boom"})
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, tmp_path / "out")
    assert str(archive) in str(caught.value) and repr(name) in str(caught.value)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
    assert not (tmp_path / "evil").exists()


def test_zip_symlink_escape_is_refused(tmp_path):
    archive = make_zip(tmp_path / "bad.zip", {"a.txt": b"a"}, symlinks={"link": "../../etc/passwd"})
    with pytest.raises(UnsafeArchiveError, match="'link'.*outside"):
        safe_extract(archive, tmp_path / "out")
    inner = make_zip(tmp_path / "ok.zip", {"a.txt": b"a"}, symlinks={"dir/link": "../a.txt"})
    assert len(safe_extract(inner, tmp_path / "out")) == 2


@pytest.mark.parametrize(
    "member",
    [
        tar_member("/abs/evil", data=b"x"),
        tar_member("../evil", data=b"x"),
        tar_member("sub/../../evil", data=b"x"),
        tar_member("sym", tarfile.SYMTYPE, link="/etc/passwd"),
        tar_member("sub/sym", tarfile.SYMTYPE, link="../../outside"),
        tar_member("hard", tarfile.LNKTYPE, link="../outside"),
        tar_member("hard", tarfile.LNKTYPE, link="/etc/passwd"),
        tar_member("fifo", tarfile.FIFOTYPE),
        tar_member("tty", tarfile.CHRTYPE),
        tar_member("disk", tarfile.BLKTYPE),
    ],
    ids=lambda member: f"{member[0].name}->{member[0].linkname}" if member[0].linkname else member[0].name,
)
def test_tar_unsafe_members_are_refused(tmp_path, member):
    (tmp_path / "outside").write_text("precious")
    archive = make_tar(tmp_path / "bad.tar.gz", [tar_member("fine.txt", data=b"ok"), member])
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, tmp_path / "out")
    assert str(archive) in str(caught.value) and repr(member[0].name) in str(caught.value)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
    assert (tmp_path / "outside").read_text() == "precious"


def test_tar_symlink_chain_escape_is_refused(tmp_path):
    # "b" -> "." is harmless and "l" -> "b/.." looks inside lexically, but really points at the parent.
    (tmp_path / "outside").write_text("precious")
    archive = make_tar(
        tmp_path / "chain.tar",
        [
            tar_member("b", tarfile.SYMTYPE, link="."),
            tar_member("l", tarfile.SYMTYPE, link="b/.."),
            tar_member("l/outside", data=b"overwritten"),
        ],
        "w",
    )
    with pytest.raises(UnsafeArchiveError, match="'l'"):
        safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "outside").read_text() == "precious"
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["chain.tar", "outside"]
