"""Split names and list files, the same for every dataset layout (VOC, CamVid, own data).

A split is the list file of its name when the dataset has one. ``val`` and ``test`` are the
two halves of val.txt after a seeded shuffle only when the dataset has no test.txt of its
own; the halves stay addressable as ``val-half-a`` and ``val-half-b``. A list line is a name
kept whole, or an image path and an annotation path (see ``read_list``).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixelwise.data.spec import DatasetSpec

DEFAULT_SPLIT_SEED = 0
SPLITS = ("train", "val", "test", "val-full", "val-half-a", "val-half-b", "trainval",
          "train_aug")
# The seeded halves of val.txt by name: which half (0: the larger, first one).
VAL_HALVES = {"val-half-a": 0, "val-half-b": 1}
_FILE_SUFFIX = re.compile(r"\.(jpe?g|png|bmp|gif)$", re.IGNORECASE)
_PATH_PAIR = re.compile(r"^(\S.*?\.(?:jpe?g|png|bmp|gif))\s+\S.*\.(?:jpe?g|png|bmp|gif)$",
                        re.IGNORECASE)



@dataclass(frozen=True)
class Example:
    name: str
    image_path: Path
    label_path: Path


@dataclass(frozen=True)
class ListedSplits(ABC):
    """How split names resolve to list files in a dataset folder; VOCLayout and
    ``data.camvid.CamVidLayout`` add where the listed images and labels lie."""

    root: Path

    @property
    @abstractmethod
    def sets_dir(self) -> Path:
        """The folder holding the list files (train.txt, val.txt, ...)."""

    @property
    @abstractmethod
    def spec(self) -> DatasetSpec:
        """The dataset's description file, else the layout's built-in description."""

    @abstractmethod
    def examples(self, split: str, seed: int = DEFAULT_SPLIT_SEED,
                 must_exist: bool = True) -> list[Example]:
        """(name, image path, label path) for every line of a split; with ``must_exist``
        one FileNotFoundError lists the missing files (``require_files``)."""

    def has_own_test_list(self) -> bool:
        return (self.sets_dir / "test.txt").is_file()

    def val_half(self, split: str) -> int | None:
        """Which seeded half of val.txt a split is (0 or 1), None when it is a whole list."""
        if split in VAL_HALVES:
            return VAL_HALVES[split]
        if split in ("val", "test") and not self.has_own_test_list():
            return 0 if split == "val" else 1
        return None

    def list_file(self, split: str) -> Path:
        """The list file behind a split name (or the split itself when it is a path)."""
        if split == "val-full" or self.val_half(split) is not None:
            return self.sets_dir / "val.txt"
        if split in SPLITS:
            return self.sets_dir / f"{split}.txt"
        path = Path(split)
        if path.suffix == ".txt" or path.exists():
            return path
        if (self.sets_dir / f"{split}.txt").is_file():  # any other list in the sets folder
            return self.sets_dir / f"{split}.txt"
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}, "
                         f"the name of a list in {self.sets_dir}, or the path of a list file")

    def split_lines(self, split: str, seed: int = DEFAULT_SPLIT_SEED) -> list[str]:
        """The split's non-blank list lines, in list order (a half: seeded-shuffle order)."""
        list_file = self.list_file(split)
        if not list_file.is_file():
            hint = (" (train_aug needs the SBD list and SegmentationClassAug labels)"
                    if split == "train_aug" else "")
            raise FileNotFoundError(f"{list_file}: split list for {split!r} not found{hint}")
        lines = [line for line in list_file.read_text().splitlines() if list_name(line)]
        half = self.val_half(split)
        return lines if half is None else halve(lines, seed)[half]

    def split_names(self, split: str, seed: int = DEFAULT_SPLIT_SEED) -> list[str]:
        """The image names of a split, in list order (a half: seeded-shuffle order)."""
        return [list_name(line) for line in self.split_lines(split, seed)]

    def describe_split(self, split: str, seed: int = DEFAULT_SPLIT_SEED) -> str:
        """Which list a split reads and how many images: ``test: ROOT/test.txt, 233 images``,
        ``test: second half of ROOT/.../val.txt (seed 0), 725 images``."""
        count = len(self.split_lines(split, seed))
        half = self.val_half(split)
        where = (str(self.list_file(split)) if half is None else
                 f"{('first', 'second')[half]} half of {self.list_file(split)} (seed {seed})")
        return f"{split}: {where}, {count} image{'' if count == 1 else 's'}"

    def require_files(self, split: str, examples: list[Example]) -> None:
        """Raise one FileNotFoundError listing the split's missing files (the first twenty,
        and how many in all), if any."""
        missing = [str(path) for example in examples
                   for path in (example.image_path, example.label_path) if not path.is_file()]
        if missing:
            shown = "\n  ".join(missing[:20])
            more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise FileNotFoundError(
                f"split {split!r} of {self.root}: {len(missing)} listed file(s) missing:"
                f"\n  {shown}{more}")


def read_list(list_file: Path) -> list[str]:
    """Names from a list file, blank lines skipped.

    A line is a name kept whole (``frame.001``, ``my photo 1``), or an image path and an
    annotation path (SBD's ``/JPEGImages/NAME.jpg /SegmentationClassAug/NAME.png``,
    SegNet's CamVid lists), or one path: a path gives its file name without the image suffix.
    """
    return [name for name in map(list_name, Path(list_file).read_text().splitlines()) if name]


def list_entries(line: str) -> tuple[str, str | None]:
    """A list line's image entry and its annotation entry (None when the line gives only
    one): ``("/SegNet/CamVid/train/X.png", "/SegNet/CamVid/trainannot/X.png")``,
    ``("2007_000032", None)``; ``("", None)`` for a blank line."""
    line = line.strip()
    pair = _PATH_PAIR.match(line)
    fields = line.split()
    if pair:
        return pair.group(1), line[pair.end(1):].strip()
    if len(fields) == 2 and all("/" in field for field in fields):
        return fields[0], fields[1]
    return line, None


def list_name(line: str) -> str:
    """The name one list line stands for ("" for a blank line); see ``read_list``."""
    entry = list_entries(line)[0]
    if "/" not in entry and not _FILE_SUFFIX.search(entry):
        return entry
    return _FILE_SUFFIX.sub("", entry.rsplit("/", 1)[-1])


def halve(names: list[str], seed: int = DEFAULT_SPLIT_SEED) -> tuple[list[str], list[str]]:
    """Split a list into two disjoint halves after a seeded shuffle (first half the larger)."""
    order = np.random.default_rng(seed).permutation(len(names))
    shuffled = [names[i] for i in order]
    middle = (len(shuffled) + 1) // 2
    return shuffled[:middle], shuffled[middle:]


__all__ = ["DEFAULT_SPLIT_SEED", "Example", "ListedSplits", "SPLITS", "VAL_HALVES", "halve",
           "list_entries", "list_name", "read_list"]
