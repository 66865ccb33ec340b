"""Which classes an import writes, and which class index each label name gets.

The classes come from, first to last that applies:

1. ``--classes``: a comma list (``background,road,toy``) or a labels file in labelme2voc's
   format (one name a line; a first line ``__ignore__`` and then ``_background_`` as class 0).
   Taken exactly, in that order. Importing into an existing dataset, they must be its classes.
2. The existing dataset in the output folder: its ``pixelwise_dataset.json`` (a second batch
   of frames gets the same class indices; every label must be one of its classes).
3. The export: CVAT's labels, COCO's categories (by id), labelmap.txt, or the labels found
   in LabelMe files (sorted), in that order after class 0, ``background``. Background is
   added only when unlabelled pixels become background (the default) or the export names it.

Label names: ``_background_`` and ``background`` (any case) mean the background class;
``__ignore__`` means the ignore label (as in labelme2voc). Colours: the existing dataset's,
else the export's where it gives them (CVAT, labelmap.txt), else the VOC colour map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pixelwise.data.spec import IGNORE_COLOR, IGNORE_LABEL, DatasetSpec, voc_colormap

BACKGROUND = "background"
BACKGROUND_NAMES = ("background", "_background_")
IGNORE_NAME = "__ignore__"
UNLABELLED_CHOICES = ("background", "ignore")

RGB = tuple[int, int, int]


def is_background(name: str) -> bool:
    return name.strip().lower() in BACKGROUND_NAMES


def canonical(name: str) -> str:
    """A class name as the spec writes it (``_background_`` -> ``background``)."""
    return BACKGROUND if is_background(name) else name.strip()


def parse_class_names(text: str) -> tuple[str, ...]:
    """``--classes``: a comma list, or the path of a labels file (one name a line; blank
    lines and a ``__ignore__`` line skipped). Raises ValueError for an empty list or a name
    given twice."""
    path = Path(text)
    if path.is_file():
        try:
            names = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: cannot read the labels file: {error}") from error
        source = str(path)
    else:
        names, source = text.split(","), f"--classes {text!r}"
    names = [canonical(name) for name in names if name.strip() and name.strip() != IGNORE_NAME]
    if not names:
        raise ValueError(f"{source}: names no class; give e.g. background,road,toy")
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise ValueError(f"{source}: class(es) named twice: {', '.join(doubled)}")
    return tuple(names)


@dataclass(frozen=True)
class ClassList:
    """The classes an import writes, with where they came from (for messages)."""

    names: tuple[str, ...]
    colors: tuple[RGB, ...]
    ignore_label: int
    origin: str  # "--classes", "the dataset in ROOT", "the export"

    def index_of(self, label: str) -> int | None:
        """The class index of a label name (the ignore label for ``__ignore__``), or None."""
        if label.strip() == IGNORE_NAME:
            return self.ignore_label
        wanted = canonical(label)
        for index, name in enumerate(self.names):
            if canonical(name) == wanted:
                return index
        return None

    def unknown_label(self, label: str) -> str:
        """Why ``label`` cannot be drawn, and the fix."""
        listing = ", ".join(self.names)
        if self.origin == "--classes":
            fix = "add it to --classes or correct the label"
        elif self.origin.startswith("the dataset"):
            fix = ("correct the label, or import into a new folder (a dataset's classes "
                   "cannot change under its labels)")
        else:
            fix = "correct the label"
        return f"label {label!r} is not one of the classes of {self.origin} ({listing}); {fix}"

    def spec(self) -> DatasetSpec:
        return DatasetSpec(self.names, self.colors, self.ignore_label)

    def unlabelled_value(self, unlabelled: str) -> int:
        """The value of pixels no shape covers: class 0 (which must be the background) or
        the ignore label."""
        if unlabelled not in UNLABELLED_CHOICES:
            raise ValueError(f"unlabelled pixels: {unlabelled!r}; use one of "
                             f"{', '.join(UNLABELLED_CHOICES)}")
        if unlabelled == "ignore":
            return self.ignore_label
        if not is_background(self.names[0]):
            raise ValueError(
                f"class 0 of {self.origin} is {self.names[0]!r}, not background: pixels no shape "
                f"covers would become {self.names[0]!r}; put background first in the classes, "
                f"or pass --unlabelled ignore")
        return 0


def choose_classes(export_names: Sequence[str], export_colors: Mapping[str, RGB], *,
                   requested: str | None = None, existing: DatasetSpec | None = None,
                   existing_root: Path | None = None, unlabelled: str = "background"
                   ) -> ClassList:
    """The classes of an import (see the module doc).

    Args:
        export_names: the export's class names in its order (background included or not).
        export_colors: colours the export gives, by name.
        requested: the ``--classes`` text (a comma list or a labels file), or None.
        existing: the spec of the dataset already in the output folder, or None.
        existing_root: that folder, for messages.
        unlabelled: "background" or "ignore": what pixels no shape covers become.

    Raises ValueError when ``requested`` and ``existing`` disagree or make no valid spec.
    """
    where = f"the dataset in {existing_root}"
    if requested is not None:
        names = parse_class_names(requested)
        if existing is not None:
            if tuple(map(canonical, existing.class_names)) != names:
                raise ValueError(
                    f"{existing_root} already holds a dataset with classes "
                    f"{', '.join(existing.class_names)}; --classes gives {', '.join(names)}: "
                    f"give the same classes (or leave --classes out), or import into a new "
                    f"folder")
            return _from_existing(existing, "--classes")
        return _build(names, export_colors, "--classes")
    if existing is not None:
        return _from_existing(existing, where)
    names = [canonical(name) for name in export_names if name.strip() != IGNORE_NAME]
    names = list(dict.fromkeys(names))  # drop repeats, keep order
    others = [name for name in names if name != BACKGROUND]
    if BACKGROUND in names or unlabelled == "background":
        others.insert(0, BACKGROUND)
    if not others:
        raise ValueError("the export names no class, and unlabelled pixels are ignored: "
                         "nothing would be labelled; give --classes")
    return _build(tuple(others), export_colors, "the export")


def _from_existing(spec: DatasetSpec, origin: str) -> ClassList:
    return ClassList(spec.class_names, spec.colors, spec.ignore_label, origin)


def _build(names: tuple[str, ...], export_colors: Mapping[str, RGB], origin: str) -> ClassList:
    """Colours for new classes: the export's (background black unless it says otherwise),
    else the first VOC colour-map entry from the class's own index on that no class uses."""
    if len(names) >= IGNORE_LABEL:
        raise ValueError(f"{len(names)} classes from {origin}; at most {IGNORE_LABEL - 1} fit "
                         f"beside the ignore label {IGNORE_LABEL}")
    given = {canonical(name): tuple(int(c) for c in rgb) for name, rgb in export_colors.items()}
    colors: list[RGB | None] = [given.get(name) for name in names]
    seen: set[RGB] = set()
    for index, rgb in enumerate(colors):  # a colour two classes share goes to the first
        if rgb is not None and rgb in seen:
            colors[index] = None
        elif rgb is not None:
            seen.add(rgb)
    palette = [tuple(int(c) for c in rgb) for rgb in voc_colormap(256)]
    taken = seen | {IGNORE_COLOR}  # pictures show ignored pixels in that colour
    for index, rgb in enumerate(colors):
        if rgb is None:
            rgb = next(entry for entry in palette[index:] + palette[:index]
                       if entry not in taken)
            colors[index] = rgb
            taken.add(rgb)
    try:
        spec = DatasetSpec(names, tuple(colors), IGNORE_LABEL)
    except ValueError as error:
        raise ValueError(f"classes from {origin}: {error}") from error
    return ClassList(spec.class_names, spec.colors, spec.ignore_label, origin)


__all__ = ["BACKGROUND", "IGNORE_NAME", "UNLABELLED_CHOICES", "ClassList", "canonical",
           "choose_classes", "is_background", "parse_class_names"]
