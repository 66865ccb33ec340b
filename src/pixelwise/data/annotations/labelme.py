"""LabelMe: one JSON file per image, read as labelme2voc reads it.

    import_labelme("frames/", "mydata")         # every frames/*.json (or a .zip of them)

Each file names its image by ``imagePath``, relative to the JSON file (a file beside it of
that name also counts); when the image is not there, the base64 ``imageData`` the file
may carry is used. The dataset name is the JSON file's name without ``.json``, as in
labelme2voc. Shapes are drawn in file order, later over earlier, by labelme's own rule
(``rasterize.labelme_shape_mask``): polygon, rectangle, circle, line and linestrip (10 px
wide), point (a disk of radius 5) and mask (a base64 PNG placed at its first point).
Labels ``__ignore__`` and ``_background_`` mean the ignore label and class 0. Without
``--classes``, the classes are the labels found, sorted, after background. A file with no
shapes is imported as all unlabelled (someone saved it). Shapes are counted from 1 in
messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable
from pathlib import Path

from pixelwise.data.annotations.annotated import (AnnotatedImage, Annotations, ImageRef,
                                                  LabelCanvas)
from pixelwise.data.annotations.classes import IGNORE_NAME
from pixelwise.data.annotations.exports import content_root, opened_export
from pixelwise.data.annotations.image_files import find_image
from pixelwise.data.annotations.importer import ImportOptions, ImportSummary, import_annotations
from pixelwise.data.annotations.rasterize import (LABELME_SHAPES, labelme_bounds, labelme_mask,
                                                  labelme_shape_mask)

Point = tuple[float, float]
Shape = tuple[str, str, list[Point], str | None]  # kind, label, points, base64 mask


def import_labelme(src: str | Path, out: str | Path,
                   options: ImportOptions = ImportOptions()) -> ImportSummary:
    """Import LabelMe annotations (a folder of .json files, one .json, or a .zip of them)
    into the dataset at ``out``; see ``importer.import_annotations`` for what is written."""
    with opened_export(src) as export:
        annotations = read_labelme(export.path, shown_as=export.given, name=export.name)
        return import_annotations(annotations, out, options)


def read_labelme(src: Path, shown_as: Path | None = None,
                 name: Callable[[Path], str] = str) -> Annotations:
    """Every LabelMe file of ``src`` (a folder's ``*.json``, not its subfolders, or one
    file), read; problems with a file's content are collected, not raised. ``shown_as``
    and ``name`` name the source and its files in messages."""
    shown_as = shown_as or src
    if src.is_dir():
        folder = content_root(src)
        files = sorted(path for path in folder.glob("*.json") if path.is_file())
        if not files:
            raise ValueError(f"{shown_as}: no LabelMe .json files in this folder")
    elif src.suffix.lower() == ".json":
        files = [src]
    else:
        raise ValueError(f"{shown_as}: expected a folder of LabelMe .json files, one .json "
                         f"or a .zip of them")
    annotations = Annotations(source=shown_as, images=[], class_names=())
    labels: set[str] = set()
    for path in files:
        item = _read_file(path, annotations.problems, labels, name)
        if item is not None:
            annotations.images.append(item)
    annotations.class_names = tuple(sorted(labels - {IGNORE_NAME}))
    return annotations


def _read_file(path: Path, problems: list[str], labels: set[str],
               name: Callable[[Path], str]) -> AnnotatedImage | None:
    where = name(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problems.append(f"{where}: not a readable JSON file ({error}); re-save it in LabelMe")
        return None
    if not isinstance(values, dict) or not isinstance(values.get("shapes"), list):
        problems.append(f"{where}: not a LabelMe annotation (no 'shapes' list); leave it out "
                        f"of the folder")
        return None
    shapes: list[tuple[int, Shape]] = []
    for number, shape in enumerate(values["shapes"], start=1):
        parsed = _parse_shape(shape)
        if isinstance(parsed, str):
            problems.append(f"{where}, shape {number}: {parsed}; correct it in LabelMe")
            continue
        shapes.append((number, parsed))
        labels.add(parsed[1])
    image, missing = _image_of(path, values, name)
    width, height = values.get("imageWidth"), values.get("imageHeight")
    declared = ((width, height) if isinstance(width, int) and isinstance(height, int)
                else None)
    return AnnotatedImage(name=path.stem, where=where, image=image, declared_size=declared,
                          paint=lambda canvas: _paint(shapes, canvas), missing=missing)


def _parse_shape(shape: object) -> Shape | str:
    """(kind, label, points, base64 mask) of a shape, or what is wrong with it."""
    if not isinstance(shape, dict):
        return "a shape must be an object with 'label' and 'points'"
    label, kind = shape.get("label"), shape.get("shape_type") or "polygon"
    if not isinstance(label, str) or not label.strip():
        return "has no label"
    points = shape.get("points")
    try:
        parsed = [(float(x), float(y)) for x, y in points]
    except (TypeError, ValueError):
        return f"({label!r}) 'points' must be a list of [x, y] pairs"
    if not all(math.isfinite(value) for point in parsed for value in point):
        return f"({label!r}) its points must be finite numbers"
    if kind not in LABELME_SHAPES:
        return (f"({label!r}) shape type {kind!r} is not one LabelMe draws into masks "
                f"({', '.join(LABELME_SHAPES)})")
    encoded = shape.get("mask")
    if kind == "mask" and not isinstance(encoded, str):
        return f"({label!r}) a mask shape needs its base64 'mask'"
    return kind, label.strip(), parsed, encoded


def _image_of(path: Path, values: dict, name: Callable[[Path], str]
              ) -> tuple[ImageRef | None, str]:
    """The image a LabelMe file names: the file at ``imagePath`` (relative to the JSON, or
    its name beside it), else the embedded ``imageData``."""
    image_path = values.get("imagePath")
    found = None
    if isinstance(image_path, str) and image_path.strip():
        found = find_image([path.parent], image_path)
        absolute = Path(image_path)
        if found is None and absolute.is_absolute() and absolute.is_file():
            found = absolute
    if found is not None:
        return ImageRef(where=name(found), path=found), ""
    embedded = values.get("imageData")
    if isinstance(embedded, str) and embedded:
        try:
            data = base64.b64decode(embedded, validate=False)
        except (binascii.Error, ValueError):
            return None, "its imageData is not base64; re-save the file in LabelMe"
        return ImageRef(where=f"{name(path)} (imageData)", data=data), ""
    wanted = path.parent / str(image_path) if image_path else path.with_suffix(".jpg")
    return None, (f"image {name(wanted)} not found, and the file carries no imageData; put the "
                  f"image where imagePath says, or re-save the file in LabelMe with the image "
                  f"data")


def _paint(shapes: list[tuple[int, Shape]], canvas: LabelCanvas) -> None:
    for number, (kind, label, points, encoded) in shapes:
        what = f"shape {number} ({kind} {label!r})"
        if not canvas.known(label, what):
            continue
        try:
            if kind == "mask":
                mask = labelme_mask(encoded or "", points, canvas.size)
                bounds = (points[0][0], points[0][1], points[1][0], points[1][1])
            else:
                mask = labelme_shape_mask(kind, points, canvas.size)
                bounds = labelme_bounds(kind, points)
        except ValueError as error:
            canvas.problem(what, f"{error}; correct it in LabelMe")
            continue
        canvas.paint(label, what, mask, bounds)


__all__ = ["import_labelme", "read_labelme"]
