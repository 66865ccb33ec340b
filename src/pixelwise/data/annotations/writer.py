"""Writing an import into the VOC layout, so that it is never half-written.

    ROOT/JPEGImages/NAME.<suffix>              the image's own bytes
    ROOT/SegmentationClass/NAME.png            palette PNG of class indices
    ROOT/ImageSets/Segmentation/train.txt      extended with the new names (val.txt too)
    ROOT/pixelwise_dataset.json                the classes (a new dataset only)

Every file is first written (``pixelwise.io.write_atomically``) into a staging folder
inside ROOT (``.tmp-import-...``). Only when every image of the import is staged are the
files renamed into place, then the description written, then the lists, each atomically:
a list never names a file that is not complete, and a failed import leaves nothing (or,
if it dies while renaming, complete but unlisted files, which a rerun with ``--overwrite``
replaces). A folder the import created is removed again when it fails.

An existing dataset in ROOT (a ``pixelwise_dataset.json``, or VOC-layout folders) is
extended: its classes stay (``classes.choose_classes`` checks the import against them),
new names are appended to its lists (and to trainval.txt where it has one), and a name it
already has (an image, a label or a list line) is refused unless ``overwrite``: then the
image and label are replaced and the name keeps its place in the lists.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixelwise.data.lists import list_name
from pixelwise.data.palette import write_label
from pixelwise.data.spec import SPEC_FILENAME, DatasetSpec, spec_for
from pixelwise.data.voc import IMAGE_DIR, IMAGE_SUFFIXES, LABEL_DIR, SETS_DIR
from pixelwise.io import (TEMP_PREFIX, fsync_folder, temporary_path, write_atomically,
                          write_bytes_atomically, write_json_atomically, write_text_atomically)


@dataclass(frozen=True)
class OutputFolder:
    """The folder an import writes to, as found before writing.

    Attributes:
        root: the folder.
        spec: the classes of the dataset already there; None for a new dataset.
        has_spec_file: whether that dataset has its own pixelwise_dataset.json.
        present: names it already has (an image, a label or a list line).
        listed: names its lists already hold.
    """

    root: Path
    spec: DatasetSpec | None
    has_spec_file: bool
    present: frozenset[str]
    listed: frozenset[str]


def inspect_output(root: str | Path) -> OutputFolder:
    """What ``root`` holds: nothing (a new dataset) or a dataset to extend. ValueError for a
    file, or a folder with other things in it."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: is a file; --out must be a folder (new, empty, or a "
                         f"dataset to extend)")
    entries = ([entry for entry in root.iterdir() if not entry.name.startswith(TEMP_PREFIX)]
               if root.is_dir() else [])
    if not entries:
        return OutputFolder(root, None, False, frozenset(), frozenset())
    layout_parts = [root / IMAGE_DIR, root / LABEL_DIR, root / SETS_DIR, root / SPEC_FILENAME]
    if not any(part.exists() for part in layout_parts):
        raise ValueError(f"{root}: holds other files but no dataset (no {IMAGE_DIR}/, "
                         f"{LABEL_DIR}/, {SETS_DIR}/ or {SPEC_FILENAME}); import into a new or "
                         f"empty folder, or into a dataset to extend")
    spec = spec_for(root)  # its own description, else VOC's classes (as pixelwise reads it)
    listed = set()
    if (root / SETS_DIR).is_dir():
        for list_file in sorted((root / SETS_DIR).glob("*.txt")):
            try:
                lines = list_file.read_text().splitlines()
            except (OSError, UnicodeDecodeError) as error:
                raise ValueError(f"{list_file}: cannot read the list: {error}") from error
            listed.update(name for name in map(list_name, lines) if name)
    files = set()
    if (root / IMAGE_DIR).is_dir():
        files.update(path.stem for path in (root / IMAGE_DIR).iterdir()
                     if path.suffix in IMAGE_SUFFIXES)
    if (root / LABEL_DIR).is_dir():
        files.update(path.stem for path in (root / LABEL_DIR).glob("*.png"))
    return OutputFolder(root, spec, (root / SPEC_FILENAME).is_file(),
                        frozenset(files | listed), frozenset(listed))


@dataclass(frozen=True)
class ListWritten:
    """A list file the import wrote: how many names it added, and how many it holds."""

    path: Path
    added: int
    total: int


class StagedImport:
    """Stages an import's files inside the output folder and commits them (see module doc).

    Use as a context manager: leaving it without ``commit`` removes everything staged (and
    the output folder, when this import created it and it is left empty).
    """

    def __init__(self, output: OutputFolder) -> None:
        self.output = output
        self.root = output.root
        self._created = self._first_missing(self.root)
        self._staging: Path | None = None
        self._staged: list[tuple[Path, Path]] = []  # (staged file, final path)
        self._replaced_names: set[str] = set()

    def __enter__(self) -> "StagedImport":
        return self

    def __exit__(self, *exc_info) -> None:
        self.discard()

    def stage(self, name: str, suffix: str, image_bytes: bytes, label_map: np.ndarray,
              spec: DatasetSpec) -> None:
        """Write one image (its bytes as they are) and its label map to the staging folder."""
        staging = self._staging_folder()
        image_path = staging / IMAGE_DIR / f"{name}{suffix}"
        label_path = staging / LABEL_DIR / f"{name}.png"
        write_bytes_atomically(image_path, image_bytes)
        write_atomically(label_path, lambda temporary: write_label(temporary, label_map, spec))
        self._staged += [(image_path, self.root / IMAGE_DIR / image_path.name),
                         (label_path, self.root / LABEL_DIR / label_path.name)]
        if name in self.output.present:
            self._replaced_names.add(name)

    def commit(self, spec: DatasetSpec, splits: dict[str, list[str]]) -> list[ListWritten]:
        """Move the staged files into place, write the description (a new dataset) and
        extend the lists; ``splits`` maps a list's name (train, val) to the new names."""
        for folder in (self.root / IMAGE_DIR, self.root / LABEL_DIR, self.root / SETS_DIR):
            folder.mkdir(parents=True, exist_ok=True)
        for staged, final in self._staged:
            os.replace(staged, final)
        self._remove_other_suffixes()
        fsync_folder(self.root / IMAGE_DIR)
        fsync_folder(self.root / LABEL_DIR)
        if self.output.spec is None:
            write_json_atomically(self.root / SPEC_FILENAME, spec.to_dict())
        written = []
        everything = [name for names in splits.values() for name in names]
        if everything and (self.root / SETS_DIR / "trainval.txt").is_file():
            splits = {**splits, "trainval": everything}
        for split, names in splits.items():
            if names:
                written.append(self._extend_list(self.root / SETS_DIR / f"{split}.txt", names))
        self._created = None  # the folder now holds a dataset: never removed
        self.discard()
        return written

    def discard(self) -> None:
        """Remove the staging folder, and the output folder if this import made it and it
        holds nothing else."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        if self._created is not None:
            _remove_empty_folders(self._created, self.root)

    def _staging_folder(self) -> Path:
        if self._staging is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._staging = temporary_path(self.root / "import")
            self._staging.mkdir()
        return self._staging

    def _remove_other_suffixes(self) -> None:
        """A replaced image may have had another suffix; that old file would shadow or
        double the new one."""
        kept = {final for _, final in self._staged}
        for name in self._replaced_names:
            for suffix in IMAGE_SUFFIXES:
                old = self.root / IMAGE_DIR / f"{name}{suffix}"
                if old not in kept and old.is_file():
                    old.unlink()

    def _extend_list(self, path: Path, names: list[str]) -> ListWritten:
        lines = path.read_text().splitlines() if path.is_file() else []
        lines = [line for line in lines if line.strip()]
        known = {list_name(line) for line in lines}
        added = [name for name in names if name not in known]
        write_text_atomically(path, "".join(f"{line}\n" for line in lines + added))
        return ListWritten(path, len(added), len(lines) + len(added))

    @staticmethod
    def _first_missing(root: Path) -> Path | None:
        """The outermost folder of ``root``'s path that does not exist yet (None: all do)."""
        missing = None
        for folder in [root, *root.parents]:
            if folder.exists():
                break
            missing = folder
        return missing


def _remove_empty_folders(top: Path, deepest: Path) -> None:
    """Remove ``deepest`` and its parents up to ``top`` while they are empty folders."""
    folder = deepest
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top or folder.parent == folder:
            return
        folder = folder.parent


__all__ = ["ListWritten", "OutputFolder", "StagedImport", "inspect_output"]
