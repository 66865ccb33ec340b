"""CVAT's "Segmentation mask 1.1" export: RGB masks and the colour of each label.

    EXPORT/labelmap.txt                        # label:color_rgb:parts:actions
    EXPORT/SegmentationClass/NAME.png          RGB mask, one colour per label
    EXPORT/ImageSets/Segmentation/default.txt  (not used: the import draws its own split)
    EXPORT/JPEGImages/NAME.jpg                 when exported with images

    import_cvat_masks("task_export.zip", "mydata", images="task_images/")

The classes are labelmap.txt's, in its order, with its colours; its ``background`` entry
(CVAT adds it, black, for pixels no shape covers) is the background class, or the ignore
label with ``--unlabelled ignore``. Each colour of a mask must be a label's (or VOC's
ignore colour, 224,224,192); ``rgb_masks.read_rgb_mask`` does the lookup. Images come
from the export's ``JPEGImages`` when it has them, else from ``images``, by name with any
suffix. Masks with nothing but background are left out with a note (CVAT exports every
frame of a task, labelled yet or not).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from pixelwise.data.annotations.annotated import (AnnotatedImage, Annotations, ImageRef,
                                                  LabelCanvas, first_names)
from pixelwise.data.annotations.classes import IGNORE_NAME, is_background
from pixelwise.data.annotations.exports import content_root, opened_export
from pixelwise.data.annotations.importer import ImportOptions, ImportSummary, import_annotations
from pixelwise.data.images import open_image
from pixelwise.data.rgb_masks import DEFAULT_IGNORE_COLORS, read_rgb_mask
from pixelwise.data.spec import IGNORE_LABEL, DatasetSpec
from pixelwise.data.voc import IMAGE_DIR, IMAGE_SUFFIXES, LABEL_DIR

LABELMAP = "labelmap.txt"
RGB = tuple[int, int, int]


def import_cvat_masks(export: str | Path, out: str | Path, images: str | Path | None = None,
                      options: ImportOptions = ImportOptions()) -> ImportSummary:
    """Import a CVAT "Segmentation mask 1.1" export (its folder or .zip) into the dataset
    at ``out``; ``images``: where the images are when the export has none."""
    if images is not None and not Path(images).is_dir():
        raise FileNotFoundError(f"{images}: no such folder of images")
    with opened_export(export) as opened:
        if not opened.path.is_dir():
            raise ValueError(f"{export}: expected the export's folder or .zip (with "
                             f"{LABELMAP} and {LABEL_DIR}/)")
        folder = content_root(opened.path)
        if Path(out).resolve() == folder.resolve():
            raise ValueError(f"{out}: is the export itself; import into another folder")
        roots = [folder / IMAGE_DIR] + ([Path(images)] if images is not None else [])
        annotations = read_cvat_masks(folder, roots, opened.given, opened.name)
        return import_annotations(annotations, out, options)


def read_labelmap(path: Path, shown: str | None = None) -> list[tuple[str, RGB]]:
    """(name, colour) per label of a labelmap.txt, in its order; ValueError naming the line
    that is not ``name:r,g,b:parts:actions`` (the file as ``shown``, default its path)."""
    shown = shown or str(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{shown}: cannot read the label map: {error}") from error
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":")
        try:
            rgb = tuple(int(value) for value in fields[1].split(","))
            if len(rgb) != 3 or not all(0 <= value <= 255 for value in rgb):
                raise ValueError
        except (IndexError, ValueError):
            raise ValueError(f"{shown}, line {number}: {line.strip()!r} is not "
                             f"'name:r,g,b:parts:actions'; export the task again") from None
        entries.append((fields[0].strip(), rgb))
    if not entries:
        raise ValueError(f"{shown}: lists no label")
    colours = [rgb for _, rgb in entries]
    shared = sorted({rgb for rgb in colours if colours.count(rgb) > 1})
    if shared:
        raise ValueError(f"{shown}: labels share the colour(s) {shared}; give each label its own "
                         f"colour in CVAT and export again")
    return entries


def read_cvat_masks(folder: Path, image_roots: list[Path], shown_as: Path | None = None,
                    name: Callable[[Path], str] = str) -> Annotations:
    """The masks of an unpacked export, with their images; see the module doc. ``shown_as``
    and ``name`` name the export and its files in messages."""
    shown_as = shown_as or folder
    if not (folder / LABELMAP).is_file():
        raise FileNotFoundError(f"{shown_as}: no {LABELMAP}; expected CVAT's 'Segmentation "
                                f"mask 1.1' export (its folder or .zip)")
    labelmap = read_labelmap(folder / LABELMAP, name(folder / LABELMAP))
    masks = sorted(path for path in (folder / LABEL_DIR).rglob("*.png") if path.is_file())
    if not masks:
        raise FileNotFoundError(f"{shown_as}: no masks in {LABEL_DIR}/")
    names = tuple(name for name, _ in labelmap)
    export_spec = DatasetSpec(names, tuple(rgb for _, rgb in labelmap), IGNORE_LABEL)
    ignore_colors = tuple(rgb for rgb in DEFAULT_IGNORE_COLORS if rgb not in export_spec.colors)
    # labelmap's background is the colour of pixels no shape covers, not a drawn label
    annotations = Annotations(source=shown_as, images=[],
                              class_names=tuple(name for name in names if not is_background(name)),
                              class_colors=dict(labelmap))
    backgrounds = [rgb for name, rgb in labelmap if is_background(name)]
    left_out = []
    for mask_path in masks:
        where = name(mask_path)
        try:
            with open_image(mask_path) as mask_image:
                size = mask_image.size
                colours = mask_image.convert("RGB").getcolors(1 << 24) or []
        except (OSError, SyntaxError, ValueError) as error:
            annotations.problems.append(f"{where}: cannot decode the mask ({error}); export "
                                        f"the task again")
            continue
        if all(tuple(rgb) in backgrounds for _, rgb in colours):
            left_out.append(mask_path.stem)
            continue
        relative = mask_path.relative_to(folder / LABEL_DIR).with_suffix("")
        found = _find_by_name(image_roots, relative)
        annotations.images.append(AnnotatedImage(
            name=mask_path.stem, where=where,
            image=ImageRef(name(found), path=found) if found else None, declared_size=size,
            paint=_painter(mask_path, where, export_spec, ignore_colors),
            missing=(f"no image named {relative} in {', '.join(map(name, image_roots))}; pass "
                     f"--images with the folder holding the task's images")))
    if left_out:
        annotations.notes.append(
            f"{shown_as}: {len(left_out)} mask(s) with nothing but background left out (not "
            f"labelled yet?): {first_names(left_out)}")
    return annotations


def _find_by_name(roots: list[Path], relative: Path) -> Path | None:
    """``ROOT/relative.<suffix>`` (or ``ROOT/<name>.<suffix>``), VOC's suffixes first."""
    for root in roots:
        for stem in (root / relative, root / relative.name):
            candidates = [stem.with_name(stem.name + suffix) for suffix in IMAGE_SUFFIXES]
            if stem.parent.is_dir():
                candidates += sorted(path for path in stem.parent.iterdir()
                                     if path.stem == stem.name and path.suffix)
            for candidate in candidates:
                if candidate.is_file():
                    return candidate
    return None


def _painter(mask_path: Path, where: str, export_spec: DatasetSpec,
             ignore_colors: tuple[RGB, ...]) -> Callable[[LabelCanvas], None]:
    def paint(canvas: LabelCanvas) -> None:
        try:
            index_map = read_rgb_mask(mask_path, export_spec, ignore_colors)
        except ValueError as error:
            canvas.problem("mask", f"{str(error).replace(str(mask_path), where)}; give each "
                                   f"colour a label in CVAT and export again")
            return
        for index in np.unique(index_map).tolist():
            if index == export_spec.ignore_label:
                label = IGNORE_NAME
            elif is_background(export_spec.class_names[index]):
                continue  # what no shape covers: the canvas's fill already
            else:
                label = export_spec.class_names[index]
            colour = (export_spec.colors[index] if index < export_spec.num_classes
                      else ignore_colors[0])
            canvas.paint(label, f"colour {colour} ({label!r})", index_map == index)
    return paint


__all__ = ["import_cvat_masks", "read_cvat_masks", "read_labelmap"]
