"""Check a dataset split before preparing or training on it.

Every image/annotation pair of the split is opened: both files must exist and decode
(the image as JPEG, PNG, BMP or GIF, see ``pixelwise.data.images``), have the same size, and the annotation must hold class indices
(palette or single-channel PNG, values below the number of classes, or the ignore
label). Every problem is collected with its file name, not just the first; per-class
pixel counts and frequencies come with the report.

    report = check_dataset("data/VOCdevkit/VOC2012", "train")
    print(report.format())

A training split must label at least two classes (``check_class_coverage``): binary masks
stored as 0/255 hold one class and the ignore label, and train to a perfect, meaningless
score.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pixelwise.data.images import OversizedImageError, open_image, unsupported_format
from pixelwise.data.palette import read_label
from pixelwise.data.spec import DatasetSpec
from pixelwise.data.voc import DEFAULT_SPLIT_SEED, Example, find_voc_root


@dataclass
class CheckReport:
    """What check_dataset found in one split.

    ``class_pixel_counts[c]`` is the number of pixels labelled with class ``c`` over the
    annotations that decoded; ``ignore_pixel_count`` those with the ignore label.
    ``problems`` make the split unusable as it is; ``warnings`` deserve a look.
    """

    root: Path
    split: str
    seed: int
    spec: DatasetSpec
    num_pairs: int
    class_pixel_counts: np.ndarray
    ignore_pixel_count: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    split_description: str = ""  # which list the split read, as ``describe_split`` says

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def class_frequencies(self) -> np.ndarray:
        """Share of each class among the labelled (not ignored) pixels; zeros if none."""
        total = self.class_pixel_counts.sum()
        return self.class_pixel_counts / total if total else np.zeros(len(self.class_pixel_counts))

    def format(self, max_problems: int | None = None) -> str:
        """The report as text; ``max_problems`` caps the problem lines shown (None: all)."""
        lines = [f"{self.root}, split {self.split!r} (seed {self.seed}): "
                 f"{self.num_pairs} pair(s) listed"]
        if self.split_description:
            lines.append(f"split {self.split_description}")
        total = int(self.class_pixel_counts.sum()) + self.ignore_pixel_count
        if total:
            width = max(len(name) for name in self.spec.class_names)
            lines.append("class pixels (frequency among labelled pixels):")
            frequencies = self.class_frequencies
            for index, name in enumerate(self.spec.class_names):
                pixels = int(self.class_pixel_counts[index])
                lines.append(f"  {index:3d} {name:<{width}} {pixels:>12,d}"
                             f"  {100 * frequencies[index]:6.2f}%")
            lines.append(f"  {self.spec.ignore_label:3d} {'(ignore)':<{width}} "
                         f"{self.ignore_pixel_count:>12,d}  "
                         f"{100 * self.ignore_pixel_count / total:6.2f}% of all pixels")
        if self.warnings:
            lines.append(f"{len(self.warnings)} warning(s):")
            lines.extend(f"  {warning}" for warning in self.warnings)
        if self.problems:
            shown = self.problems if max_problems is None else self.problems[:max_problems]
            lines.append(f"{len(self.problems)} problem(s):")
            lines.extend(f"  {problem}" for problem in shown)
            if len(shown) < len(self.problems):
                lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        lines.append("OK" if self.ok else f"NOT OK: {len(self.problems)} problem(s)")
        return "\n".join(lines)


def check_dataset(root: str | Path, split: str, seed: int = DEFAULT_SPLIT_SEED, *,
                  progress: bool = False) -> CheckReport:
    """Check every pair of a split of a VOC-layout dataset; see the module docstring.

    Args:
        root: the dataset (VOC2012, VOCdevkit or a folder above, a custom dataset, or a
            CamVid release folder, read with CamVid's classes).
        split: a split name (train, val, test, val-full, val-half-a, val-half-b, trainval,
            train_aug) or a list file.
        seed: the seed of the val/test halves.
        progress: show a progress bar.

    Raises FileNotFoundError when the dataset or the split's list file is missing; every
    problem with the pairs themselves goes into the report.
    """
    layout = find_voc_root(root)
    spec = layout.spec
    examples = layout.examples(split, seed, must_exist=False)
    report = CheckReport(root=layout.root, split=split, seed=seed, spec=spec,
                         num_pairs=len(examples),
                         class_pixel_counts=np.zeros(spec.num_classes, dtype=np.int64),
                         split_description=layout.describe_split(split, seed))
    if not examples:
        report.problems.append(f"{layout.list_file(split)}: the split lists no images")
    duplicates = sorted(name for name, times in Counter(e.name for e in examples).items()
                        if times > 1)
    if duplicates:
        report.warnings.append(f"names listed more than once: {', '.join(duplicates[:20])}"
                               f"{' ...' if len(duplicates) > 20 else ''}")
    value_counts = np.zeros(256, dtype=np.int64)
    for example in tqdm(examples, unit="pair", desc=f"check {Path(split).name}",
                        disable=not progress):
        _, label_counts = check_pair(example, spec, report.problems)
        if label_counts is not None:
            value_counts += label_counts
    report.class_pixel_counts = value_counts[: spec.num_classes].copy()
    report.ignore_pixel_count = int(value_counts[spec.ignore_label])
    report.warnings.extend(_label_warnings(value_counts, spec))
    return report


def check_pair(example: Example, spec: DatasetSpec, problems: list[str]
               ) -> tuple[tuple[int, int] | None, np.ndarray | None]:
    """Check one pair, appending its problems (each naming its file); return the image's
    (width, height) if it decoded and the label's value histogram [256] if it decoded."""
    image_size = None
    if not example.image_path.is_file():
        problems.append(f"{example.image_path}: image missing")
    else:
        try:
            with open_image(example.image_path) as image:
                image.load()
                image_format, image_size = image.format, image.size
            if unsupported_format(example.image_path, image_format):
                problems.append(unsupported_format(example.image_path, image_format))
        except OversizedImageError as error:
            problems.append(str(error))
        except (OSError, SyntaxError, ValueError) as error:
            image_size = None
            problems.append(f"{example.image_path}: cannot decode the image: {error}")
    if not example.label_path.is_file():
        problems.append(f"{example.label_path}: annotation missing")
        return image_size, None
    try:
        label_map = read_label(example.label_path)
    except ValueError as error:
        problems.append(str(error))
        return image_size, None
    if image_size is not None and (label_map.shape[1], label_map.shape[0]) != image_size:
        problems.append(f"{example.label_path}: annotation is {label_map.shape[1]}x"
                        f"{label_map.shape[0]} but the image is {image_size[0]}x{image_size[1]} "
                        f"(width x height)")
    value_counts = np.bincount(label_map.reshape(-1), minlength=256)
    stray = [value for value in np.flatnonzero(value_counts).tolist()
             if value >= spec.num_classes and value != spec.ignore_label]
    if stray:
        listing = ", ".join(f"{value} ({value_counts[value]} px)" for value in stray)
        problems.append(f"{example.label_path}: label value(s) {listing} not a class "
                        f"(0..{spec.num_classes - 1}) or the ignore label {spec.ignore_label}")
    return image_size, value_counts


class ClassCoverageError(ValueError):
    """A training split whose annotations label fewer than two classes."""


def check_class_coverage(class_pixel_counts, spec: DatasetSpec, split: str) -> None:
    """Raise ClassCoverageError unless at least two classes have labelled pixels.

    Args:
        class_pixel_counts: pixels per class over the split's annotations, [num_classes]
            (the ignore label not included), as ``CheckReport.class_pixel_counts``, a
            records manifest's or ``DataSource.class_pixel_counts`` give them.
        spec: the dataset's classes and ignore label.
        split: the split's name, for the message.
    """
    present = np.flatnonzero(np.asarray(class_pixel_counts)[: spec.num_classes]).tolist()
    if len(present) >= 2:
        return
    ignore = spec.ignore_label
    if present:
        what = (f"only class {present[0]} ({spec.class_names[present[0]]}) has labelled pixels, "
                f"the rest is the ignore label {ignore}")
    else:
        what = f"no labelled pixels: every pixel is the ignore label {ignore}"
    raise ClassCoverageError(
        f"split {split!r}: {what}; a model trained on it reaches a perfect, meaningless score. "
        f"If the masks are binary 0/{ignore}: store the object as 1; {ignore} means ignore "
        f"(label_map[label_map == {ignore}] = 1), and name two classes in "
        f"pixelwise_dataset.json")


def _label_warnings(value_counts: np.ndarray, spec: DatasetSpec) -> list[str]:
    warnings = []
    present = set(np.flatnonzero(value_counts).tolist())
    if spec.ignore_label in present and present <= {0, spec.ignore_label}:
        warnings.append(
            f"every annotation holds only 0 and {spec.ignore_label}: {spec.ignore_label} means "
            f"'ignore' here, so the objects would be ignored in training and evaluation. If these "
            f"are binary masks, store the object as 1 (label_map[label_map == "
            f"{spec.ignore_label}] = 1) and describe two classes in pixelwise_dataset.json")
    elif present:
        absent = [name for index, name in enumerate(spec.class_names) if index not in present]
        if absent:
            warnings.append(f"no pixels of class(es): {', '.join(absent)}")
    return warnings


__all__ = ["CheckReport", "ClassCoverageError", "check_class_coverage", "check_dataset",
           "check_pair"]
