"""Extracting downloaded zip/tar archives without letting a member write outside its target."""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path


class UnsafeArchiveError(ValueError):
    """An archive member would escape the target or is a special file; names the archive and member."""


_DRIVE = re.compile(r"^[A-Za-z]:")
_FILTER_ERROR = getattr(tarfile, "FilterError", ())  # Python 3.11.4+


def _member_path(archive: Path, name: str) -> str:
    """The member's normalised relative POSIX path; refuses absolute names and any '..' component."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in posix.split("/"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'")
    relative = posixpath.normpath(posix)
    if relative in {"", "."}:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has no name")
    return relative


def _check_link(archive: Path, name: str, link: str, *, hard: bool) -> None:
    """Refuse a link whose target (relative to the member's folder; to the root for hard links) escapes."""
    posix = link.replace("\\", "/")
    base = "" if hard else posixpath.dirname(posixpath.normpath(name.replace("\\", "/")))
    resolved = posixpath.normpath(posixpath.join(base, posix))
    if posix.startswith("/") or _DRIVE.match(posix) or resolved == ".." or resolved.startswith("../"):
        kind = "hard link" if hard else "symlink"
        raise UnsafeArchiveError(f"{archive}: member {name!r} is a {kind} to {link!r} outside the target")


def _inside(root: Path, path: str | os.PathLike, archive: Path, name: str) -> None:
    """Refuse writing through ``path`` when its real location (symlinks followed) leaves ``root``."""
    real = os.path.realpath(path)
    if real != str(root) and not real.startswith(str(root) + os.sep):
        raise UnsafeArchiveError(f"{archive}: member {name!r} resolves outside the target (through a link)")


def _extract_zip(archive: Path, handle: zipfile.ZipFile, root: Path) -> list[str]:
    infos = handle.infolist()
    for info in infos:  # validate everything before writing anything
        _member_path(archive, info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            _check_link(archive, info.filename, handle.read(info).decode("utf-8", "replace"), hard=False)
        elif mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a device, fifo or socket")
    files = []
    for info in infos:
        relative = _member_path(archive, info.filename)
        destination = root / relative
        _inside(root, destination, archive, info.filename)
        if info.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        _inside(root, destination.parent, archive, info.filename)
        with handle.open(info) as source, open(destination, "wb") as sink:  # symlinks land as plain files
            shutil.copyfileobj(source, sink, 1 << 20)
        files.append(relative)
    return files


def _extract_tar(archive: Path, handle: tarfile.TarFile, root: Path) -> list[str]:
    members = handle.getmembers()
    for member in members:  # validate everything before writing anything
        _member_path(archive, member.name)
        if member.issym() or member.islnk():
            _check_link(archive, member.name, member.linkname, hard=member.islnk())
        elif member.ischr() or member.isblk() or member.isfifo():
            raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device or fifo")
        elif not (member.isreg() or member.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {member.name!r} has unsupported type {member.type!r}")
    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # second line of defence (3.11.4+)
    files = []
    for member in members:
        relative = _member_path(archive, member.name)
        destination = root / relative
        _inside(root, destination, archive, member.name)
        if member.islnk():
            _inside(root, root / _member_path(archive, member.linkname), archive, member.name)
        try:
            handle.extract(member, root, **extra)
        except _FILTER_ERROR as exc:  # pragma: no cover - our checks above come first
            raise UnsafeArchiveError(f"{archive}: member {member.name!r} refused: {exc}") from exc
        if member.issym():
            _inside(root, destination, archive, member.name)
        if not member.isdir():
            files.append(relative)
    return files


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> list[Path]:
    """Extract a zip or tar(.gz/.bz2/.xz) ``archive`` into ``target``; return the extracted file paths.

    ``target`` must not exist or be an empty directory (else :class:`FileExistsError`). Every member is
    checked first: absolute names, any '..' component, symlinks/hard links pointing outside ``target``,
    devices and fifos raise :class:`UnsafeArchiveError` (naming archive and member) and nothing is
    written. Extraction goes into a temporary directory beside ``target`` that is then renamed onto it,
    so ``target`` appears complete or not at all. Zip symlinks are written as plain files (zipfile's way).
    """
    archive, target = Path(archive), Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"cannot extract {archive}: {target} exists and is not an empty directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        opener, extract = zipfile.ZipFile, _extract_zip
    elif tarfile.is_tarfile(archive):
        opener, extract = tarfile.open, _extract_tar
    else:
        raise ValueError(f"{archive} is neither a zip nor a tar archive")
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".extract"))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp creates 0700; the result gets normal permissions
        root = Path(os.path.realpath(staging))
        with opener(archive) as handle:
            relative_files = extract(archive, handle, root)
        os.replace(staging, target)  # POSIX rename also replaces an empty directory atomically
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [target / relative for relative in relative_files]
