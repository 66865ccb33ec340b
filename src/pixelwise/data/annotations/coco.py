"""COCO instances JSON (``images``, ``categories``, ``annotations``), drawn with pycocotools.

    import_coco("annotations/instances_default.json", "mydata", images="images/")

The classes are the categories in id order after background (ids with gaps become
contiguous indices: categories 1, 3, 7 -> classes 1, 2, 3; a category named background is
class 0). An image is found by its ``file_name`` under ``images`` (default: beside the
JSON, its ``images/`` folder and the ``images/`` folder beside that, as CVAT's COCO export
lays them out), or by its file name alone; it is named by its file name without suffix.

Each annotation's ``segmentation`` is drawn by pycocotools's rule: polygons (a list of
``[x0, y0, x1, y1, ...]``, their union) or RLE (``{"size": [h, w], "counts": [...]}``
uncompressed, or pycocotools's compressed string). An annotation with an empty
segmentation and a ``bbox`` (a box exported to COCO) is drawn as its box, as CVAT's mask
export draws boxes. Crowd regions (``iscrowd``: 1) are drawn with their category like any
other. Overlaps: larger annotations first, smaller on top (area counted in drawn pixels;
ties: file order), so an object inside a larger region stays visible. Images with no
annotation are left out with a note. Annotations are named by their ``id`` in messages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from pixelwise.data.annotations.annotated import (AnnotatedImage, Annotations, ImageRef,
                                                  first_names, shape_painter)
from pixelwise.data.annotations.exports import find_one, opened_export
from pixelwise.data.annotations.image_files import find_image
from pixelwise.data.annotations.importer import ImportOptions, ImportSummary, import_annotations
from pixelwise.data.annotations.rasterize import (Bounds, Size, box_polygon, coco_rle_mask,
                                                  polygon_bounds, polygon_mask)
from pixelwise.io import read_json

Draw = Callable[[Size], tuple[np.ndarray, Bounds | None]]


def import_coco(instances: str | Path, out: str | Path, images: str | Path | None = None,
                options: ImportOptions = ImportOptions()) -> ImportSummary:
    """Import a COCO instances JSON (or a .zip holding one) into the dataset at ``out``;
    ``images``: the folder its ``file_name``s are relative to (default: see module doc)."""
    if images is not None and not Path(images).is_dir():
        raise FileNotFoundError(f"{images}: no such folder of images")
    with opened_export(instances) as export:
        json_path = (find_one(export.path, "*.json", "COCO instances file", export.given)
                     if export.path.is_dir() else export.path)
        folder = json_path.parent
        roots = ([Path(images)] if images is not None
                 else [folder, folder / "images", folder.parent / "images"])
        annotations = read_coco(json_path, roots, Path(export.name(json_path)), export.name)
        return import_annotations(annotations, out, options)


def read_coco(json_path: Path, image_roots: list[Path], shown_as: Path | None = None,
              name: Callable[[Path], str] = str) -> Annotations:
    """The images, annotations and categories of a COCO instances file; problems with
    single entries are collected, a file that is not COCO raises ValueError. ``shown_as``
    and ``name`` name the file and the images in messages."""
    shown_as = shown_as or json_path
    try:
        values = read_json(json_path, what="COCO instances file")
    except ValueError as error:
        raise ValueError(str(error).replace(str(json_path), str(shown_as), 1)) from None
    if not isinstance(values, dict) or not all(
            isinstance(values.get(key), list) for key in ("images", "annotations", "categories")):
        raise ValueError(f"{shown_as}: not a COCO instances file (needs 'images', 'annotations' "
                         f"and 'categories' lists); export as COCO 1.0 (instances)")
    categories = _categories(values["categories"], shown_as)
    annotations = Annotations(source=shown_as, images=[],
                              class_names=tuple(name for _, name in sorted(categories.items())))
    by_image: dict[object, list[tuple[str, str, Draw]]] = {}
    for number, entry in enumerate(values["annotations"], start=1):
        shape = _annotation(entry, number, categories, shown_as, annotations.problems)
        if shape is not None:
            by_image.setdefault(shape[0], []).append(shape[1:])
    image_ids = Counter(entry.get("id") for entry in values["images"] if isinstance(entry, dict))
    left_out = []
    for number, entry in enumerate(values["images"], start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
            annotations.problems.append(f"{shown_as}, image {number}: needs 'id' and "
                                        f"'file_name'; export again")
            continue
        file_name, image_id = entry["file_name"], entry.get("id")
        where = f"{shown_as}, image {file_name!r}"
        if image_ids[image_id] > 1:
            annotations.problems.append(f"{where}: image id {image_id!r} is used "
                                        f"{image_ids[image_id]} times; export again")
            continue
        shapes = by_image.pop(image_id, [])
        if not shapes:
            left_out.append(file_name)
            continue
        found = find_image(image_roots, file_name)
        width, height = entry.get("width"), entry.get("height")
        annotations.images.append(AnnotatedImage(
            name=PurePosixPath(file_name.replace("\\", "/")).stem, where=where,
            image=ImageRef(name(found), path=found) if found else None,
            declared_size=((width, height) if isinstance(width, int) and isinstance(height, int)
                           else None),
            paint=shape_painter(shapes, "export the annotations again", smaller_on_top=True),
            missing=(f"image not found in {', '.join(map(name, image_roots))}; pass --images "
                     f"with the folder its file_name is relative to")))
    for image_id, shapes in by_image.items():
        annotations.problems.append(f"{shown_as}: {len(shapes)} annotation(s) name image_id "
                                    f"{image_id!r}, which is not in 'images'; export again")
    if left_out:
        annotations.notes.append(
            f"{shown_as}: {len(left_out)} image(s) with no annotation left out: "
            f"{first_names(left_out)}")
    return annotations


def _categories(entries: list, source: Path) -> dict[int, str]:
    """Category id -> name; ValueError for a malformed entry, a repeated id or name."""
    categories: dict[int, str] = {}
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), int) \
                or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise ValueError(f"{source}, category {number}: needs an integer 'id' and a 'name'")
        if entry["id"] in categories:
            raise ValueError(f"{source}: category id {entry['id']} is used twice")
        categories[entry["id"]] = entry["name"].strip()
    names = list(categories.values())
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise ValueError(f"{source}: categories named twice: {', '.join(doubled)}; a class "
                         f"needs one name (merge or rename them)")
    return categories


def _annotation(entry: object, number: int, categories: dict[int, str], source: Path,
                problems: list[str]) -> tuple[object, str, str, Draw] | None:
    """(image id, description, label, draw) of an annotation, or None (a problem noted)."""
    if not isinstance(entry, dict):
        problems.append(f"{source}, annotation {number}: not an object")
        return None
    what = f"annotation {entry.get('id', number)}"
    category = entry.get("category_id")
    if category not in categories:
        problems.append(f"{source}, {what}: category_id {category!r} is not one of the "
                        f"categories ({', '.join(map(str, sorted(categories)))})")
        return None
    label = categories[category]
    what = f"{what} ({label!r})"
    segmentation, bbox = entry.get("segmentation"), entry.get("bbox")
    if isinstance(segmentation, dict):
        return entry.get("image_id"), what, label, \
            lambda size: (coco_rle_mask(segmentation, size), None)
    if isinstance(segmentation, list) and segmentation:
        if not all(isinstance(polygon, list) for polygon in segmentation):
            problems.append(f"{source}, {what}: 'segmentation' must be a list of polygons "
                            f"[x0, y0, x1, y1, ...] or an RLE object")
            return None
        return entry.get("image_id"), what, label, lambda size: _polygons(segmentation, size)
    if isinstance(bbox, list) and len(bbox) == 4 and all(
            isinstance(value, (int, float)) for value in bbox) and bbox[2] > 0 and bbox[3] > 0:
        x, y, width, height = (float(value) for value in bbox)
        corners = box_polygon(x, y, x + width, y + height)
        return entry.get("image_id"), what, label, \
            lambda size: (polygon_mask(corners, size), polygon_bounds(corners))
    problems.append(f"{source}, {what}: has neither a segmentation nor a bbox to draw")
    return None


def _polygons(polygons: list[list], size: Size) -> tuple[np.ndarray, Bounds]:
    """The union of an annotation's polygons, and their extent."""
    mask = np.zeros(size, dtype=bool)
    extents = []
    for polygon in polygons:
        mask |= polygon_mask(polygon, size)
        extents.append(polygon_bounds(polygon))
    return mask, (min(e[0] for e in extents), min(e[1] for e in extents),
                  max(e[2] for e in extents), max(e[3] for e in extents))


__all__ = ["import_coco", "read_coco"]
