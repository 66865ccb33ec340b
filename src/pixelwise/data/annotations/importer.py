"""From read annotations to a dataset: choose the classes, draw every image, check
everything, then write it all (``writer``) or nothing.

Every problem of an import is collected (a label that is not a class, a shape outside its
image, a missing or undecodable image, a size other than the annotation states, a name the
dataset already has, ...), each on one line naming the file and the shape; if there is
any, nothing is written and one ValueError lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixelwise.data.annotations.annotated import (AnnotatedImage, Annotations, LabelCanvas,
                                                  first_names)
from pixelwise.data.annotations.classes import UNLABELLED_CHOICES, ClassList, choose_classes
from pixelwise.data.annotations.image_files import copy_suffix, read_image, to_stored_grid
from pixelwise.data.annotations.splits import (DEFAULT_SEED, DEFAULT_VAL_FRACTION,
                                               split_names, val_count)
from pixelwise.data.annotations.writer import (ListWritten, OutputFolder, StagedImport,
                                               inspect_output)
from pixelwise.data.images import OversizedImageError
from pixelwise.data.lists import list_name
from pixelwise.data.spec import DatasetSpec

MAX_PROBLEMS_SHOWN = 50


@dataclass(frozen=True)
class ImportOptions:
    """The choices every import command shares.

    Attributes:
        classes: ``--classes``: a comma list or a labels file; None: from the export (or the
            dataset being extended).
        unlabelled: what pixels no shape covers become: "background" (class 0) or "ignore".
        val_fraction: share of the new images listed in val.txt (0: all in train.txt).
        seed: the seed of that draw.
        overwrite: replace images the dataset already has instead of refusing them.
    """

    classes: str | None = None
    unlabelled: str = "background"
    val_fraction: float = DEFAULT_VAL_FRACTION
    seed: int = DEFAULT_SEED
    overwrite: bool = False


@dataclass
class ImportSummary:
    """What an import wrote."""

    root: Path
    source: Path
    names: list[str]
    spec: DatasetSpec
    class_pixels: np.ndarray  # [num_classes] pixels per class over the imported labels
    ignore_pixels: int
    lists: list[ListWritten]
    new_dataset: bool
    turned: list[str] = field(default_factory=list)  # names whose label was turned (EXIF)
    notes: list[str] = field(default_factory=list)

    def format(self, max_notes: int = 20) -> str:
        what = "new dataset" if self.new_dataset else "existing dataset"
        lines = [f"{self.root}: imported {len(self.names)} image(s) from {self.source} "
                 f"({what}, {self.spec.num_classes} classes)"]
        total = int(self.class_pixels.sum()) + self.ignore_pixels
        width = max(len(name) for name in self.spec.class_names + ("(ignore)",))
        lines.append("pixels per class:")
        for index, name in enumerate(self.spec.class_names):
            pixels = int(self.class_pixels[index])
            lines.append(f"  {index:3d} {name:<{width}} {pixels:>12,d}  "
                         f"{100 * pixels / max(total, 1):6.2f}%")
        share = 100 * self.ignore_pixels / max(total, 1)
        lines.append(f"  {self.spec.ignore_label:3d} {'(ignore)':<{width}} "
                     f"{self.ignore_pixels:>12,d}  {share:6.2f}%")
        for written in self.lists:
            lines.append(f"list {written.path}: +{written.added} image(s), {written.total} "
                         f"in all")
        if self.turned:
            lines.append(f"{len(self.turned)} image(s) carry an EXIF rotation; their labels "
                         f"are on the stored pixel grid, as pixelwise reads the images: "
                         f"{first_names(self.turned)}")
        if self.notes:
            lines.append(f"{len(self.notes)} note(s):")
            lines += [f"  {note}" for note in self.notes[:max_notes]]
            if len(self.notes) > max_notes:
                lines.append(f"  ... and {len(self.notes) - max_notes} more")
        return "\n".join(lines)


def import_annotations(annotations: Annotations, out: str | Path,
                       options: ImportOptions = ImportOptions()) -> ImportSummary:
    """Write ``annotations`` as a VOC-layout dataset in ``out`` (new, or extended).

    Raises ValueError listing every problem (nothing written), or for options that cannot
    work (a val fraction out of range, classes that do not fit the existing dataset).
    """
    if options.unlabelled not in UNLABELLED_CHOICES:
        raise ValueError(f"--unlabelled {options.unlabelled!r}: use one of "
                         f"{', '.join(UNLABELLED_CHOICES)}")
    val_count(2, options.val_fraction)  # checks the fraction
    if not annotations.images and not annotations.problems:
        why = f" ({annotations.notes[0]})" if annotations.notes else ""
        raise ValueError(f"{annotations.source}: no annotated images found{why}; nothing "
                         f"written")
    output = inspect_output(out)
    classes = choose_classes(annotations.class_names, annotations.class_colors,
                             requested=options.classes, existing=output.spec,
                             existing_root=output.root, unlabelled=options.unlabelled)
    fill = classes.unlabelled_value(options.unlabelled)
    problems = list(annotations.problems) + _name_problems(annotations.images, output,
                                                           options.overwrite)
    notes = list(annotations.notes)
    spec = classes.spec()
    value_counts = np.zeros(256, dtype=np.int64)
    turned = []
    with StagedImport(output) as staged:
        for item in annotations.images:
            drawn = _draw(item, classes, fill, problems, notes)
            if drawn is None or problems:
                continue  # once anything is wrong, only look for more problems
            image_bytes, suffix, label_map, orientation = drawn
            staged.stage(item.name, suffix, image_bytes, label_map, spec)
            value_counts += np.bincount(label_map.reshape(-1), minlength=256)
            if orientation != 1:
                turned.append(item.name)
        if problems:
            raise ValueError(_problems_message(annotations.source, problems))
        names = [item.name for item in annotations.images]
        train, val = split_names([name for name in names if name not in output.listed],
                                 options.val_fraction, options.seed)
        lists = staged.commit(spec, {"train": train, "val": val})
    return ImportSummary(
        root=output.root, source=annotations.source, names=names, spec=spec,
        class_pixels=value_counts[:spec.num_classes].copy(),
        ignore_pixels=int(value_counts[spec.ignore_label]), lists=lists,
        new_dataset=output.spec is None, turned=turned, notes=notes)


def _draw(item: AnnotatedImage, classes: ClassList, fill: int, problems: list[str],
          notes: list[str]) -> tuple[bytes, str, np.ndarray, int] | None:
    """One image's bytes, copy suffix, label map (on the stored grid) and EXIF orientation;
    None (and its problems recorded) when it cannot be drawn."""
    if item.image is None:
        problems.append(f"{item.where}: {item.missing}")
        return None
    try:
        image_bytes, info = read_image(item.image)
    except (OversizedImageError, ValueError) as error:
        problems.append(f"{item.where}: {error}")
        return None
    shown = info.shown_size
    if item.declared_size is not None and tuple(item.declared_size) != shown:
        turned = (f" (shown turned by its EXIF orientation {info.orientation})"
                  if info.orientation != 1 else "")
        problems.append(
            f"{item.where}: the annotation is for a {item.declared_size[0]}x"
            f"{item.declared_size[1]} image but {item.image.where} is {shown[0]}x{shown[1]}"
            f"{turned} (width x height); use the image it was labelled on")
        return None
    suffix = copy_suffix((item.image.path.suffix if item.image.path else ""), info.format)
    if suffix is None:
        problems.append(f"{item.where}: {item.image.where} is a {info.format} image; the "
                        f"dataset layout finds .jpg, .png and .bmp files: re-save it as PNG")
        return None
    before = len(problems)
    canvas = LabelCanvas((shown[1], shown[0]), classes, fill, item.where, problems, notes)
    item.paint(canvas)
    if len(problems) > before:
        return None
    return image_bytes, suffix, to_stored_grid(canvas.label_map, info.orientation), \
        info.orientation


def _name_problems(images: list[AnnotatedImage], output: OutputFolder, overwrite: bool
                   ) -> list[str]:
    """Names the list files cannot hold, names given twice, names the dataset already has."""
    problems = []
    seen: dict[str, str] = {}
    for item in images:
        name = item.name
        if not name or name != name.strip() or "/" in name or "\\" in name \
                or list_name(name) != name:
            problems.append(f"{item.where}: the image name {name!r} cannot be a line of a list "
                            f"file (it would read back as {list_name(name)!r}); rename the "
                            f"image")
        elif name in seen:
            problems.append(f"{item.where}: a second image named {name!r} (the first: "
                            f"{seen[name]}); dataset names must be unique: rename one")
        elif name in output.present and not overwrite:
            problems.append(f"{item.where}: {output.root} already has an image named {name!r}; "
                            f"pass --overwrite to replace it, or rename the image")
        seen.setdefault(name, item.where)
    return problems


def _problems_message(source: Path, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{problems[0]} (nothing written)"
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = (f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown)
            else "")
    return (f"{source}: {len(problems)} problems; nothing written:\n  " + "\n  ".join(shown)
            + more)


__all__ = ["ImportOptions", "ImportSummary", "import_annotations"]
