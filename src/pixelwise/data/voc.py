"""The VOC 2012 folder layout, and the splits read from its list files.

A dataset in this layout (VOC itself, the synthetic set, or a user's own):

    ROOT/JPEGImages/NAME.jpg                 (or NAME.jpeg, NAME.png, NAME.bmp)
    ROOT/SegmentationClass/NAME.png          palette or single-channel class indices
    ROOT/ImageSets/Segmentation/SPLIT.txt    one NAME per line, kept whole (dots, spaces)
    ROOT/pixelwise_dataset.json              optional: class names, colours, ignore label

Splits (the same rules for every layout, see ``ListedSplits``): a split is the list file
of its name when the dataset has one. ``val`` and ``test`` are the two halves of val.txt
after a seeded shuffle (the textbook's protocol) only when the dataset has no test.txt of
its own; the halves stay addressable as ``val-half-a`` and ``val-half-b``. ``val-full`` is
all of val.txt (the VOC benchmark); ``train_aug`` the SBD-augmented list (labels in
SegmentationClassAug); or the path of any list file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pixelwise.data.camvid import find_camvid_layout
from pixelwise.data.lists import (  # noqa: F401  (re-exported: the split rules live there)
    DEFAULT_SPLIT_SEED,
    SPLITS,
    VAL_HALVES,
    Example,
    ListedSplits,
    halve,
    list_entries,
    list_name,
    read_list,
)
from pixelwise.data.spec import DatasetSpec, spec_for

IMAGE_DIR = "JPEGImages"
LABEL_DIR = "SegmentationClass"
AUG_LABEL_DIR = "SegmentationClassAug"
SETS_DIR = Path("ImageSets") / "Segmentation"
AUG_SETS_DIR = Path("ImageSets") / "SegmentationAug"
# An image is NAME.jpg, or else the first of these that exists.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG", ".BMP")
@dataclass(frozen=True)
class VOCLayout(ListedSplits):
    """A dataset folder in the VOC 2012 layout (the folder that holds JPEGImages)."""

    @property
    def image_dir(self) -> Path:
        return self.root / IMAGE_DIR

    @property
    def label_dir(self) -> Path:
        return self.root / LABEL_DIR

    @property
    def sets_dir(self) -> Path:
        return self.root / SETS_DIR

    @property
    def spec(self) -> DatasetSpec:
        return spec_for(self.root, DatasetSpec.voc())

    def list_file(self, split: str) -> Path:
        if split == "train_aug":
            return self.root / AUG_SETS_DIR / "train_aug.txt"
        return super().list_file(split)

    def image_path(self, name: str) -> Path:
        """``JPEGImages/NAME.jpg``, or the NAME with another image suffix where only that
        exists (a missing image is named by its .jpg path)."""
        for suffix in IMAGE_SUFFIXES:
            path = self.image_dir / f"{name}{suffix}"
            if path.is_file():
                return path
        return self.image_dir / f"{name}.jpg"

    def label_dir_for(self, split: str) -> Path:
        return self.root / AUG_LABEL_DIR if split == "train_aug" else self.label_dir

    def examples(self, split: str, seed: int = DEFAULT_SPLIT_SEED,
                 must_exist: bool = True) -> list[Example]:
        """(name, image path, label path) for every name of a split.

        With ``must_exist`` a split that names missing files raises one error that
        lists them (the first twenty, and how many in all).
        """
        label_dir = self.label_dir_for(split)
        examples = [Example(name, self.image_path(name), label_dir / f"{name}.png")
                    for name in self.split_names(split, seed)]
        if must_exist:
            self.require_files(split, examples)
        return examples


def find_voc_root(path: str | Path) -> ListedSplits:
    """The dataset at ``path``: VOC2012 itself, VOCdevkit, or a folder holding VOCdevkit (a
    VOCLayout); or a CamVid release folder, or one holding it (a ``data.camvid.CamVidLayout``,
    read with CamVid's classes). A tar is extracted beside itself first. Names what is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        if path.name.endswith((".tar", ".tar.gz", ".tgz")):
            from pixelwise.data.download import extract_beside

            return find_voc_root(extract_beside(path))
        raise ValueError(f"{path}: expected a dataset folder or a VOC tar, got a file")
    for candidate in (path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"):
        if (candidate / IMAGE_DIR).is_dir() or (candidate / SETS_DIR).is_dir():
            missing = [str(candidate / sub) for sub in (IMAGE_DIR, LABEL_DIR, SETS_DIR)
                       if not (candidate / sub).is_dir()]
            if missing:
                raise FileNotFoundError(f"{candidate}: not a complete VOC-layout dataset; "
                                        f"missing folder(s): {', '.join(missing)}")
            return VOCLayout(candidate)
    camvid = find_camvid_layout(path)
    if camvid is not None:
        return camvid
    raise FileNotFoundError(
        f"{path}: no VOC-layout dataset here; expected {IMAGE_DIR}/, {LABEL_DIR}/ and "
        f"{SETS_DIR}/ in it, or in VOC2012/ or VOCdevkit/VOC2012/ below it (or CamVid's "
        f"train/ and trainannot/ folders with their lists)")
