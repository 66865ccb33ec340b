"""CVAT for images 1.1: one ``annotations.xml`` for a task's (or project's) images.

    import_cvat("annotations.xml", "mydata", images="task_images/")

The classes are the labels of ``<meta>`` (with their colours), in that order after
background; labels for shapes without area (points, polyline, skeleton, tag types) and
skeleton parts are left out. Each ``<image name width height>`` becomes one dataset image
(named by its file name without suffix), found under ``images`` (default: beside the XML
and in its ``images/`` folder) by its name or its file name.

Drawn, in ``z_order`` (ties: document order), later over earlier, with pycocotools's
polygon rule, as CVAT's own "Segmentation mask 1.1" export draws them (Datumaro's
polygons_to_masks and boxes_to_masks):

- ``<polygon points="x,y;x,y;...">``;
- ``<box xtl ytl xbr ybr rotation>``: the polygon of its corners (turned about its centre);
- ``<mask rle left top width height>``: CVAT's run lengths, off/on from off, row by row
  in the box (``rasterize.cvat_rle_mask``);
- ``<ellipse cx cy rx ry rotation>``: a polygon through its outline (CVAT's export uses
  OpenCV's ellipse; a pixel on the rim may differ).

Not drawn, with a note: ``<polyline>``, ``<points>``, ``<cuboid>`` and ``<skeleton>`` (no
area; CVAT's mask export leaves them out too). ``<tag>`` (image labels) are skipped.
Images with no shape to draw are left out with a note: CVAT lists every frame of a task,
labelled yet or not. Tracks (CVAT for video 1.1) are refused: export as CVAT for images.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from pixelwise.data.annotations.annotated import (AnnotatedImage, Annotations, ImageRef,
                                                  first_names, shape_painter)
from pixelwise.data.annotations.exports import find_one, opened_export
from pixelwise.data.annotations.image_files import find_image
from pixelwise.data.annotations.importer import ImportOptions, ImportSummary, import_annotations
from pixelwise.data.annotations.rasterize import (Bounds, Size, box_polygon, cvat_rle_mask,
                                                  ellipse_polygon, polygon_bounds, polygon_mask)

DRAWN = ("polygon", "box", "mask", "ellipse")
NOT_DRAWN = ("polyline", "points", "cuboid", "skeleton")
# Label types whose shapes have no area: not classes.
AREALESS_LABEL_TYPES = ("points", "polyline", "skeleton", "tag", "cuboid")

Draw = Callable[[Size], tuple[np.ndarray, Bounds]]


def import_cvat(annotations_file: str | Path, out: str | Path, images: str | Path | None = None,
                options: ImportOptions = ImportOptions()) -> ImportSummary:
    """Import a CVAT for images 1.1 export (``annotations.xml``, or the export's .zip) into
    the dataset at ``out``; ``images``: the folder of the task's images (default: beside the
    XML, and its ``images/`` folder)."""
    if images is not None and not Path(images).is_dir():
        raise FileNotFoundError(f"{images}: no such folder of images")
    with opened_export(annotations_file) as export:
        xml_path = (find_one(export.path, "*.xml", "CVAT annotations file", export.given)
                    if export.path.is_dir() else export.path)
        roots = ([Path(images)] if images is not None
                 else [xml_path.parent, xml_path.parent / "images"])
        annotations = read_cvat(xml_path, roots, Path(export.name(xml_path)), export.name)
        return import_annotations(annotations, out, options)


def read_cvat(xml_path: Path, image_roots: list[Path], shown_as: Path | None = None,
              name: Callable[[Path], str] = str) -> Annotations:
    """The images, shapes and labels of a CVAT for images 1.1 file; problems with shapes
    are collected, a file that is not such XML raises ValueError. ``shown_as`` and
    ``name`` name the file and the images in messages."""
    shown_as = shown_as or xml_path
    try:
        root = ElementTree.parse(xml_path).getroot()
    except ElementTree.ParseError as error:
        raise ValueError(f"{shown_as}: not valid XML ({error}); export the annotations from "
                         f"CVAT again") from None
    except OSError as error:
        raise ValueError(f"{shown_as}: cannot read it: {error}") from error
    if root.tag != "annotations":
        raise ValueError(f"{shown_as}: not a CVAT annotations file (its root is <{root.tag}>, "
                         f"expected <annotations>); export as 'CVAT for images 1.1'")
    if root.find("track") is not None:
        raise ValueError(f"{shown_as}: holds <track> elements (CVAT for video 1.1); export the "
                         f"task as 'CVAT for images 1.1' instead")
    names, colors = _meta_labels(root)
    annotations = Annotations(source=shown_as, images=[], class_names=names,
                              class_colors=colors)
    skipped_shapes: Counter = Counter()
    unlabelled = []
    for number, element in enumerate(root.findall("image"), start=1):
        image_name = element.get("name") or ""
        where = (f"{shown_as}, image {image_name!r}" if image_name
                 else f"{shown_as}, image {number}")
        if not image_name:
            annotations.problems.append(f"{where}: has no name; export again from CVAT")
            continue
        shapes = _shapes(element, where, annotations.problems, skipped_shapes)
        if not shapes:
            unlabelled.append(image_name)
            continue
        found = find_image(image_roots, image_name)
        annotations.images.append(AnnotatedImage(
            name=PurePosixPath(image_name.replace("\\", "/")).stem, where=where,
            image=ImageRef(name(found), path=found) if found else None,
            declared_size=_declared_size(element),
            paint=shape_painter(shapes, "correct it in CVAT and export again"),
            missing=(f"image not found in {', '.join(map(name, image_roots))}; pass --images "
                     f"with the folder holding the task's images")))
    if skipped_shapes:
        listing = ", ".join(f"{count} {kind}" for kind, count in sorted(skipped_shapes.items()))
        annotations.notes.append(f"{shown_as}: not drawn (no area; CVAT's mask export leaves "
                                 f"them out too): {listing}")
    if unlabelled:
        annotations.notes.append(
            f"{shown_as}: {len(unlabelled)} image(s) with no shape left out (not labelled "
            f"yet?): {first_names(unlabelled)}")
    return annotations


def _meta_labels(root: ElementTree.Element) -> tuple[tuple[str, ...], dict]:
    """The class names and colours ``<meta>`` declares (a task's or a project's labels)."""
    names, colors = [], {}
    meta = root.find("meta")
    for label in meta.iter("label") if meta is not None else ():
        name = (label.findtext("name") or "").strip()
        if not name or (label.findtext("parent") or "").strip() \
                or (label.findtext("type") or "").strip() in AREALESS_LABEL_TYPES:
            continue
        names.append(name)
        color = (label.findtext("color") or "").strip().lstrip("#")
        if len(color) == 6:
            try:
                colors[name] = tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))
            except ValueError:
                pass
    return tuple(dict.fromkeys(names)), colors


def _declared_size(element: ElementTree.Element) -> tuple[int, int] | None:
    try:
        return int(element.get("width", "")), int(element.get("height", ""))
    except ValueError:
        return None


def _shapes(image: ElementTree.Element, where: str, problems: list[str], skipped: Counter
            ) -> list[tuple[str, str, Draw]]:
    """The image's drawable shapes as (description, label, draw), in drawing order."""
    shapes = []
    for number, element in enumerate(image, start=1):
        if element.tag in NOT_DRAWN:
            skipped[element.tag] += 1
            continue
        if element.tag not in DRAWN:
            continue
        label = (element.get("label") or "").strip()
        what = f"shape {number} ({element.tag} {label!r})"
        try:
            z_order = int(element.get("z_order", "0") or 0)
            draw = _geometry(element)
        except ValueError as error:
            problems.append(f"{where}, {what}: {error}; export again from CVAT")
            continue
        if not label:
            problems.append(f"{where}, {what}: has no label; export again from CVAT")
            continue
        shapes.append((z_order, number, what, label, draw))
    shapes.sort(key=lambda shape: (shape[0], shape[1]))
    return [(what, label, draw) for _, _, what, label, draw in shapes]


def _geometry(element: ElementTree.Element) -> Draw:
    """How to draw a shape element; ValueError when its attributes are not numbers."""
    def number(key: str, default: str | None = None) -> float:
        text = element.get(key, default)
        try:
            return float(text)
        except (TypeError, ValueError):
            raise ValueError(f"its {key}={text!r} is not a number") from None

    if element.tag == "polygon":
        text = element.get("points") or ""
        try:
            coordinates = [float(value) for pair in text.split(";") for value in pair.split(",")]
        except ValueError:
            raise ValueError(f"its points {text[:40]!r} are not 'x,y;x,y;...'") from None
        return lambda size: (polygon_mask(coordinates, size), polygon_bounds(coordinates))
    if element.tag == "box":
        corners = box_polygon(number("xtl"), number("ytl"), number("xbr"), number("ybr"),
                              number("rotation", "0"))
        return lambda size: (polygon_mask(corners, size), polygon_bounds(corners))
    if element.tag == "ellipse":
        outline = ellipse_polygon(number("cx"), number("cy"), number("rx"), number("ry"),
                                  number("rotation", "0"))
        return lambda size: (polygon_mask(outline, size), polygon_bounds(outline))
    text = element.get("rle") or ""
    try:
        counts = [int(value) for value in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"its rle {text[:40]!r} is not a list of whole numbers") from None
    left, top = int(number("left")), int(number("top"))
    width, height = int(number("width")), int(number("height"))
    bounds = (left, top, left + width - 1, top + height - 1)
    return lambda size: (cvat_rle_mask(counts, left, top, width, height, size), bounds)


__all__ = ["import_cvat", "read_cvat"]
