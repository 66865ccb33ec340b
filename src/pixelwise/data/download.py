"""Get the VOC 2012 tar: streamed download that resumes, MD5 check, safe extraction.

    download_voc2012("data")                    # -> data/VOCdevkit/VOC2012
    download_voc2012("data", from_file="VOCtrainval_11-May-2012.tar")   # offline machines

The download goes to ``DEST/NAME.tar.part``; an interrupted transfer resumes from there
with an HTTP Range request (in the same call, or the next one). The file is renamed to
``DEST/NAME.tar`` only once complete and its MD5 matches. Extraction checks every member
before writing anything, unpacks into a temporary folder inside DEST and renames the
result into place, then leaves a marker (``.pixelwise-extracted``) that lets a second call
return at once.

CamVid's download, which has no published checksum, is ``data.camvid_download.download_camvid``;
both extract through ``data.archives``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm import tqdm

# Safe extraction lives in data.archives; these names stay importable from here.
from pixelwise.data.archives import (TAR_SUFFIXES, TEMP_PREFIX, UnsafeArchiveError,
                                     check_members, extract_tar, safe_members)
from pixelwise.io import write_json_atomically

VOC2012_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC2012_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
VOC2012_SUBDIR = PurePosixPath("VOCdevkit") / "VOC2012"
EXTRACTED_MARKER = ".pixelwise-extracted"
CHUNK_BYTES = 1 << 20
# Consecutive failed attempts (no new bytes) before a download gives up.
MAX_STALLED_ATTEMPTS = 3


class DownloadError(RuntimeError):
    """The archive could not be fetched (network, HTTP status, server cut off)."""


class ChecksumError(ValueError):
    """A file's MD5 is not the expected one."""


def download_voc2012(dest: str | Path, *, url: str = VOC2012_URL, md5: str = VOC2012_MD5,
                     from_file: str | Path | None = None, progress: bool = True) -> Path:
    """Download (or take ``from_file``), verify and extract VOC 2012; return the VOC2012 folder.

    Args:
        dest: folder that receives the tar and ``VOCdevkit/VOC2012``; created if needed.
        url: where to download the tar from.
        md5: expected MD5 of the tar (hex).
        from_file: a tar copied in by hand; it is verified and extracted, never modified,
            and nothing is downloaded.
        progress: show tqdm progress bars.

    Does nothing (no request, no hashing) when DEST already holds an extraction of a tar
    with this MD5.
    """
    dest = Path(dest)
    md5 = md5.lower()
    voc_dir = dest / VOC2012_SUBDIR
    marker = read_marker(dest)
    if marker is not None and marker.get("md5") == md5 and voc_dir.is_dir():
        return voc_dir
    if from_file is not None:
        tar_path = Path(from_file)
        if not tar_path.is_file():
            raise FileNotFoundError(f"{tar_path}: no such file (given as --from)")
        verify_md5(tar_path, md5, progress=progress)
    else:
        dest.mkdir(parents=True, exist_ok=True)
        tar_path = fetch(url, dest / archive_name(url), md5, progress=progress)
    member_paths = [PurePosixPath(member.name) for member in safe_members(tar_path)]
    if not any(path == VOC2012_SUBDIR or VOC2012_SUBDIR in path.parents for path in member_paths):
        raise ValueError(f"{tar_path}: the archive holds no {VOC2012_SUBDIR}/ folder; "
                         f"is it the VOC 2012 trainval tar?")
    extract_tar(tar_path, dest, progress=progress)
    write_marker(dest, tar_path, md5)
    return voc_dir


def archive_name(url: str) -> str:
    """The file name a URL's path ends in (``VOCtrainval_11-May-2012.tar``)."""
    name = PurePosixPath(urllib.parse.urlparse(url).path).name
    if not name:
        raise ValueError(f"{url}: the URL does not end in a file name")
    return name


def fetch(url: str, target: str | Path, md5: str, *, progress: bool = True,
          timeout_s: float = 60.0) -> Path:
    """Download ``url`` to ``target`` through ``target.part``, resuming; verify its MD5.

    An existing ``target`` with the right MD5 is kept as it is. On an MD5 mismatch the
    download is deleted and made once more; a second mismatch raises ChecksumError.
    """
    target = Path(target)
    md5 = md5.lower()
    if target.is_file():
        if file_md5(target, progress=progress) == md5:
            return target
        target.unlink()  # ours (only verified downloads get this name), but not this archive
    part = target.with_name(target.name + ".part")
    for attempt in (1, 2):
        download_to_part(url, part, progress=progress, timeout_s=timeout_s)
        found = file_md5(part, progress=progress)
        if found == md5:
            os.replace(part, target)
            return target
        part.unlink()
        if attempt == 2:
            raise ChecksumError(
                f"{url}: downloaded twice and the MD5 matched neither time (last {found}, "
                f"expected {md5}); the file was deleted. Check the URL and --md5, or download the tar another way and "
                f"pass it with --from FILE")
    raise AssertionError("unreachable")


def fetch_unverified(url: str, target: str | Path, *, dataset: str, progress: bool = True,
                     timeout_s: float = 60.0) -> Path:
    """Download ``url`` to ``target`` through ``target.part``, resuming, for an archive with
    no published checksum (the caller verifies what it extracts). An existing ``target`` is
    kept; ``dataset`` names the download command in the offline hint."""
    target = Path(target)
    if target.is_file():
        return target
    part = target.with_name(target.name + ".part")
    download_to_part(url, part, progress=progress, timeout_s=timeout_s, dataset=dataset)
    os.replace(part, target)
    return target


def download_to_part(url: str, part: str | Path, *, progress: bool = True,
                     timeout_s: float = 60.0, dataset: str = "voc2012") -> None:
    """Stream ``url`` into ``part``, continuing an existing partial file with a Range request.

    A server that ignores Range (answers 200) is read from the start again. A transfer
    cut short is resumed at once; after MAX_STALLED_ATTEMPTS attempts in a row that bring
    no new bytes, DownloadError is raised (its hint names ``pixelwise data download DATASET``).
    """
    part = Path(part)
    stalled = 0
    while True:
        size_before = part.stat().st_size if part.exists() else 0
        try:
            complete = _request_into(url, part, progress=progress, timeout_s=timeout_s)
        except urllib.error.HTTPError as error:
            raise DownloadError(
                f"{url}: HTTP {error.code} {error.reason}. {_offline_hint(dataset)}") from error
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = getattr(error, "reason", error)
            complete = False
            failure = f"{url}: download failed: {reason}. {_offline_hint(dataset)}"
        else:
            failure = (f"{url}: the server closed the connection early "
                       f"{MAX_STALLED_ATTEMPTS} times in a row. {_offline_hint(dataset)}")
        if complete:
            return
        grew = part.exists() and part.stat().st_size > size_before
        stalled = 0 if grew else stalled + 1
        if stalled >= MAX_STALLED_ATTEMPTS:
            raise DownloadError(failure)


def _request_into(url: str, part: Path, *, progress: bool, timeout_s: float) -> bool:
    """One HTTP request appending to ``part``; True when the file is complete."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "pixelwise"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return True  # nothing left to send: the partial file is whole (the MD5 will tell)
        raise
    with response:
        if offset and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range", ""))
            if start != offset:
                raise DownloadError(f"{url}: asked for bytes from {offset}, the server sent "
                                    f"them from {start}")
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # a 200 answer is the whole file: start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = offset
        with open(part, mode) as sink, tqdm(total=total, initial=offset, unit="B",
                                            unit_scale=True, unit_divisor=1024,
                                            desc=part.name, disable=not progress) as bar:
            while True:
                chunk = response.read(CHUNK_BYTES)
                if not chunk:
                    break
                sink.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client returns b"" rather than raising when a connection drops early.
    return total is None or received >= total


def _content_range_start(content_range: str) -> int | None:
    # "bytes 1000-4999/5000"
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _offline_hint(dataset: str) -> str:
    return ("On a machine without internet access, download the archive elsewhere and pass "
            f"it with `pixelwise data download {dataset} --dest DIR --from FILE`.")


def file_md5(path: str | Path, *, progress: bool = False) -> str:
    """Hex MD5 of a file, read in chunks."""
    path = Path(path)
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as source, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                          unit_divisor=1024, desc=f"md5 {path.name}",
                                          disable=not progress) as bar:
        for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def verify_md5(path: str | Path, md5: str, *, progress: bool = False) -> None:
    """Raise ChecksumError (naming the file and both sums) unless the file has this MD5."""
    found = file_md5(path, progress=progress)
    if found != md5.lower():
        raise ChecksumError(f"{path}: MD5 is {found}, expected {md5.lower()}; the file is "
                            f"incomplete or a different archive (it was left as it is)")


def write_marker(folder: str | Path, tar_path: str | Path, md5: str) -> None:
    """Record in ``folder`` that a complete extraction of this tar lies there."""
    tar_path = Path(tar_path)
    record = {"archive": tar_path.name, "md5": md5.lower(), "size": tar_path.stat().st_size}
    write_json_atomically(Path(folder) / EXTRACTED_MARKER, record, indent=None)


def read_marker(folder: str | Path) -> dict | None:
    """The marker record in ``folder``, or None when absent or unreadable."""
    try:
        record = json.loads((Path(folder) / EXTRACTED_MARKER).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def extract_beside(tar_path: str | Path, *, progress: bool = True) -> Path:
    """Extract a tar next to itself, into a folder named after it, once; return that folder.

    ``data/VOCtrainval_11-May-2012.tar`` -> ``data/VOCtrainval_11-May-2012/``. A later
    call finds the marker (same archive name and size) and returns without reading the tar.
    """
    tar_path = Path(tar_path)
    if not tar_path.is_file():
        raise FileNotFoundError(f"{tar_path}: no such file")
    stem = next((tar_path.name[: -len(suffix)] for suffix in TAR_SUFFIXES
                 if tar_path.name.endswith(suffix)), tar_path.stem)
    folder = tar_path.parent / stem
    marker = read_marker(folder)
    if marker is not None:
        if marker.get("archive") == tar_path.name and marker.get("size") == tar_path.stat().st_size:
            return folder
        raise FileExistsError(f"{folder}: holds an extraction of another archive "
                              f"({marker.get('archive')}, {marker.get('size')} bytes); remove "
                              f"it to extract {tar_path.name} there")
    md5 = file_md5(tar_path, progress=progress)
    extract_tar(tar_path, folder, progress=progress)
    write_marker(folder, tar_path, md5)
    return folder


__all__ = [
    "VOC2012_URL", "VOC2012_MD5", "DownloadError", "ChecksumError", "UnsafeArchiveError",
    "download_voc2012", "fetch", "fetch_unverified", "download_to_part", "file_md5",
    "verify_md5", "safe_members", "check_members", "extract_tar", "extract_beside",
    "read_marker", "write_marker", "archive_name",
]
