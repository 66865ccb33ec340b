"""Where an export lies: a folder, a file, or a zip of them (as CVAT and LabelMe users
pass exports around), unpacked safely into a temporary folder for the import's duration.

Every member of a zip is checked first (``data.archives.check_zip_members``: no absolute
paths, no ``..``, no links or devices), so a hostile archive writes nothing.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pixelwise.data.archives import check_zip_members, member_parts


@dataclass(frozen=True)
class OpenedExport:
    """An export ready to read: ``path`` on disk (for a zip: the folder it was unpacked
    to), ``given`` as the user named it."""

    path: Path
    given: Path

    def name(self, path: Path) -> str:
        """How messages name ``path``: inside an unpacked zip, as a path within the zip."""
        if self.path == self.given:
            return str(path)
        try:
            return str(self.given / path.relative_to(self.path))
        except ValueError:
            return str(path)


@contextlib.contextmanager
def opened_export(path: str | Path) -> Iterator[OpenedExport]:
    """``path`` itself, or, for a .zip, the folder it was unpacked to (removed afterwards).

    Raises FileNotFoundError when ``path`` does not exist, ValueError for a broken or
    unsafe zip.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if not (path.is_file() and path.suffix.lower() == ".zip"):
        yield OpenedExport(path, path)
        return
    folder = Path(tempfile.mkdtemp(prefix="pixelwise-import-"))
    try:
        _unzip(path, folder)
        yield OpenedExport(folder, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _unzip(zip_path: Path, folder: Path) -> None:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for info in check_zip_members(zip_path, archive.infolist()):
                target = folder.joinpath(*member_parts(zip_path, info.filename))
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(target, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
    except (zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{zip_path}: cannot read the zip: {error}") from error


def content_root(folder: Path) -> Path:
    """``folder``, or the folder inside it when it holds nothing but one folder (a zip of
    ``export/...``)."""
    while folder.is_dir():
        entries = [entry for entry in folder.iterdir() if not entry.name.startswith(".")
                   and entry.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir():
            return folder
        folder = entries[0]
    return folder


def find_one(folder: Path, pattern: str, what: str, source: Path) -> Path:
    """The one file matching ``pattern`` anywhere under ``folder`` (the shallowest when
    several lie at different depths); ValueError when there is none, or several at the
    shallowest depth."""
    found = sorted(folder.rglob(pattern), key=lambda path: (len(path.parts), str(path)))
    found = [path for path in found if path.is_file() and "__MACOSX" not in path.parts]
    if not found:
        raise ValueError(f"{source}: holds no {what} ({pattern})")
    shallowest = [path for path in found if len(path.parts) == len(found[0].parts)]
    if len(shallowest) > 1:
        listing = ", ".join(str(path.relative_to(folder)) for path in shallowest[:5])
        raise ValueError(f"{source}: holds several {what}s ({listing}); unpack it and pass "
                         f"the one to import")
    return found[0]


__all__ = ["OpenedExport", "content_root", "find_one", "opened_export"]
