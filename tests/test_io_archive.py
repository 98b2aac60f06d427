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
    assert [f.read_bytes() for f in files] == [b"a,b\n", b"x"] and (tmp_path / "out" / "empty").is_dir()
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")) == [
        "empty", "nested", "nested/deep", "nested/deep/x.txt", "top.csv"]
    assert leftovers(tmp_path) == []


def test_extracted_target_gets_ordinary_permissions(tmp_path):
    # the staging folder comes from mkdtemp (mode 0700); the finished target must have the umask's mode
    umask = os.umask(0o022)
    try:
        safe_extract(make_zip(tmp_path / "data.zip", {"a.txt": b"a"}), tmp_path / "out")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


def test_existing_file_as_target_is_refused(tmp_path):
    archive = make_zip(tmp_path / "data.zip", {"a.txt": b"a"})
    (tmp_path / "out").write_text("a file")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out").read_text() == "a file"


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
    assert os.readlink(target / "pkg" / "sym.txt") == "a.txt"  # kept relative, not resolved
    assert leftovers(tmp_path) == []


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
    files = safe_extract(inner, tmp_path / "out")
    assert files == [tmp_path / "out" / "a.txt", tmp_path / "out" / "dir" / "link"]
    # zip symlinks land as plain files holding the link text (zipfile's way), never as links
    assert not files[1].is_symlink() and files[1].read_bytes() == b"../a.txt"


@pytest.mark.parametrize("kind", [stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK],
                         ids=["fifo", "char-device", "block-device", "socket"])
def test_zip_special_files_are_refused(tmp_path, kind):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("fine.txt", b"ok")
        info = zipfile.ZipInfo("special")
        info.external_attr = (kind | 0o644) << 16
        handle.writestr(info, b"")
    with pytest.raises(UnsafeArchiveError, match="'special' is a device, fifo or socket"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def _unsafe(member: tuple, reason: str):
    info = member[0]
    return pytest.param(member, reason, id=f"{info.name}->{info.linkname}" if info.linkname else info.name)


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        _unsafe(tar_member("/abs/evil", data=b"x"), "has an absolute path"),
        _unsafe(tar_member("../evil", data=b"x"), "contains '..'"),
        _unsafe(tar_member("sub/../../evil", data=b"x"), "contains '..'"),
        _unsafe(tar_member("sym", tarfile.SYMTYPE, link="/etc/passwd"), "is a symlink to '/etc/passwd' outside"),
        _unsafe(tar_member("sub/sym", tarfile.SYMTYPE, link="../../outside"), "is a symlink to '../../outside'"),
        _unsafe(tar_member("hard", tarfile.LNKTYPE, link="../outside"), "is a hard link to '../outside' outside"),
        _unsafe(tar_member("hard", tarfile.LNKTYPE, link="/etc/passwd"), "is a hard link to '/etc/passwd'"),
        _unsafe(tar_member("fifo", tarfile.FIFOTYPE), "is a device or fifo"),
        _unsafe(tar_member("tty", tarfile.CHRTYPE), "is a device or fifo"),
        _unsafe(tar_member("disk", tarfile.BLKTYPE), "is a device or fifo"),
        # a GNU volume header: neither file, folder, link nor device
        _unsafe(tar_member("volume", b"V"), "has unsupported type b'V'"),
    ],
)
def test_tar_unsafe_members_are_refused(tmp_path, member, reason):
    (tmp_path / "outside").write_text("precious")
    archive = make_tar(tmp_path / "bad.tar.gz", [tar_member("fine.txt", data=b"ok"), member])
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract(archive, tmp_path / "out")
    # refused by the check that runs before anything is written (not by tarfile's own filter afterwards)
    assert str(caught.value).startswith(f"{archive}: member {member[0].name!r} {reason}")
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
