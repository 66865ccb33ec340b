"""Shapes -> boolean masks [H, W], by the rule of the tool that drew them.

Two polygon rules are in use, and each format keeps its tool's own:

- **LabelMe** (``labelme_shape_mask``): Pillow's ``ImageDraw``, called as labelme's
  ``shape_to_mask`` calls it, so masks equal labelme2voc's: a polygon is filled *with its
  outline* (pixels the edges pass through count, so a square from (1, 1) to (5, 4) covers
  columns 1..5 and rows 1..4); a rectangle the same from its two corners; a circle is the
  ellipse in the box centre +/- the distance to the point on the circle; line and linestrip
  are lines ``LINE_WIDTH`` (10) pixels wide; a point is a disk of radius ``POINT_RADIUS`` (5).
  Pillow puts pixel i at coordinate i and drops the fractional part of polygon vertices.
- **CVAT and COCO** (``polygon_mask``): pycocotools, as COCO's own tools and CVAT's
  "Segmentation mask" export (through Datumaro's polygons_to_masks and boxes_to_masks) do:
  pixel i spans [i, i + 1) and a pixel is set when the polygon covers about its centre, so
  the same square covers columns 1..4 and rows 1..3. A box is the polygon of its corners.

Masks stored as run lengths: ``cvat_rle_mask`` (CVAT's XML: counts alternate off/on,
starting with off, row by row inside the box) and ``coco_rle_mask`` (COCO: column by
column over the whole image, as a count list or pycocotools's compressed string).

Parts outside the image are clipped; every function raises ValueError with a message (no
file name: the caller knows where the shape came from) for what it cannot draw.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError
from pycocotools import mask as coco_mask

Size = tuple[int, int]  # (height, width)
Bounds = tuple[float, float, float, float]  # (x_min, y_min, x_max, y_max)

LINE_WIDTH = 10  # labelme's shape_to_mask defaults
POINT_RADIUS = 5
LABELME_SHAPES = ("polygon", "rectangle", "circle", "line", "linestrip", "point", "mask")
# How many points each LabelMe shape needs: (fewest, most); None: no upper limit.
_LABELME_POINTS = {"polygon": (3, None), "rectangle": (2, 2), "circle": (2, 2),
                   "line": (2, 2), "linestrip": (2, None), "point": (1, 1), "mask": (2, 2)}


def labelme_shape_mask(kind: str, points: Sequence[Sequence[float]], size: Size) -> np.ndarray:
    """A LabelMe shape (not a mask shape) drawn as labelme2voc draws it; see the module doc.

    Args:
        kind: the shape_type: polygon, rectangle, circle, line, linestrip or point.
        points: its [x, y] points in pixel coordinates.
        size: the image's (height, width).
    """
    check_point_count(kind, points)
    height, width = size
    canvas = Image.new("L", (width, height))
    draw = ImageDraw.Draw(canvas)
    xy = [(float(x), float(y)) for x, y in points]
    if kind == "polygon":
        draw.polygon(xy, fill=1, outline=1)
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = xy
        # Pillow refuses a reversed box; labelme stores the corners in drawing order.
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=1, outline=1)
    elif kind == "circle":
        (cx, cy), (px, py) = xy
        radius = math.hypot(cx - px, cy - py)
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=1, outline=1)
    elif kind in ("line", "linestrip"):
        draw.line(xy, fill=1, width=LINE_WIDTH)
    elif kind == "point":
        (cx, cy), = xy
        draw.ellipse([cx - POINT_RADIUS, cy - POINT_RADIUS, cx + POINT_RADIUS, cy + POINT_RADIUS],
                     fill=1, outline=1)
    else:
        raise ValueError(f"shape type {kind!r} is not drawn here")
    return np.asarray(canvas, dtype=np.uint8) > 0


def labelme_bounds(kind: str, points: Sequence[Sequence[float]]) -> Bounds:
    """The extent a LabelMe shape can cover (for telling "outside the image" apart)."""
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    reach = {"line": LINE_WIDTH / 2, "linestrip": LINE_WIDTH / 2, "point": POINT_RADIUS}
    if kind == "circle":
        radius = math.hypot(xs[0] - xs[1], ys[0] - ys[1])
        return xs[0] - radius, ys[0] - radius, xs[0] + radius, ys[0] + radius
    pad = reach.get(kind, 0.0)
    return min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad


def check_point_count(kind: str, points: Sequence[Sequence[float]]) -> None:
    """ValueError unless a LabelMe shape of ``kind`` has a number of points it can have."""
    fewest, most = _LABELME_POINTS[kind]
    count = len(points)
    if count < fewest or (most is not None and count > most):
        wanted = f"{fewest}" if fewest == most else f"at least {fewest}"
        raise ValueError(f"a {kind} needs {wanted} point(s), this one has {count}")


def labelme_mask(encoded: str, points: Sequence[Sequence[float]], size: Size) -> np.ndarray:
    """A LabelMe mask shape: a base64 PNG placed with its top-left pixel at the first point
    (coordinates truncated to whole pixels, as labelme does); the second point is its
    bottom-right pixel, so the PNG must be (x2 - x1 + 1) x (y2 - y1 + 1)."""
    check_point_count("mask", points)
    try:
        data = base64.b64decode(encoded, validate=False)
        with Image.open(io.BytesIO(data)) as picture:
            box_mask = np.asarray(picture.convert("L")) > 0
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError, TypeError) as error:
        raise ValueError(f"its 'mask' is not a base64 PNG ({error})") from None
    (x0, y0), (x1, y1) = [(int(float(x)), int(float(y))) for x, y in points]
    expected = (y1 - y0 + 1, x1 - x0 + 1)
    if box_mask.shape != expected:
        raise ValueError(f"its mask is {box_mask.shape[1]}x{box_mask.shape[0]} but its points "
                         f"({x0}, {y0})-({x1}, {y1}) make a {expected[1]}x{expected[0]} box")
    return paste(box_mask, x0, y0, size)


def polygon_mask(coordinates: Sequence[float], size: Size) -> np.ndarray:
    """One polygon ``[x0, y0, x1, y1, ...]`` filled by pycocotools's rule (see module doc)."""
    if len(coordinates) % 2 or len(coordinates) < 6:
        raise ValueError(f"a polygon needs at least 3 x, y pairs, got {len(coordinates)} "
                         f"number(s)")
    try:
        values = [float(value) for value in coordinates]
    except (TypeError, ValueError):
        raise ValueError("a polygon's coordinates must be numbers") from None
    if not all(math.isfinite(value) for value in values):
        raise ValueError("a polygon's coordinates must be finite numbers")
    height, width = size
    encoded = coco_mask.frPyObjects([values], height, width)
    return coco_mask.decode(coco_mask.merge(encoded)).astype(bool)


def polygon_bounds(coordinates: Sequence[float]) -> Bounds:
    xs, ys = coordinates[0::2], coordinates[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def box_polygon(x0: float, y0: float, x1: float, y1: float, rotation: float = 0.0) -> list[float]:
    """A box's corners as a polygon, turned ``rotation`` degrees (clockwise on screen, as
    CVAT shows it) about its centre."""
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return _turned(corners, (x0 + x1) / 2, (y0 + y1) / 2, rotation)


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, rotation: float = 0.0
                    ) -> list[float]:
    """An ellipse's outline as a polygon (about one vertex per pixel of its perimeter,
    at least 32), turned ``rotation`` degrees about its centre."""
    count = int(min(720, max(32, math.ceil(2 * math.pi * max(rx, ry)))))
    outline = [(cx + rx * math.cos(2 * math.pi * k / count),
                cy + ry * math.sin(2 * math.pi * k / count)) for k in range(count)]
    return _turned(outline, cx, cy, rotation)


def _turned(points: list[tuple[float, float]], cx: float, cy: float, degrees: float
            ) -> list[float]:
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    flat = []
    for x, y in points:
        flat += [cx + cos * (x - cx) - sin * (y - cy), cy + sin * (x - cx) + cos * (y - cy)]
    return flat


def cvat_rle_mask(counts: Sequence[int], left: int, top: int, box_width: int, box_height: int,
                  size: Size) -> np.ndarray:
    """CVAT's mask: run lengths alternating off/on (the first run is off, maybe 0 long),
    row-major inside the box whose top-left pixel is (left, top); the runs must cover the
    box exactly."""
    if box_width < 1 or box_height < 1:
        raise ValueError(f"its box is {box_width}x{box_height}; both sides must be at least 1")
    if any(count < 0 for count in counts):
        raise ValueError("its run lengths must not be negative")
    covered = int(sum(counts))
    if covered != box_width * box_height:
        raise ValueError(f"its run lengths cover {covered} pixels but its box is "
                         f"{box_width}x{box_height} = {box_width * box_height}")
    runs = np.arange(len(counts)) % 2 == 1
    box_mask = np.repeat(runs, np.asarray(counts, dtype=np.int64)).reshape(box_height, box_width)
    return paste(box_mask, left, top, size)


def coco_rle_mask(segmentation: dict, size: Size) -> np.ndarray:
    """A COCO RLE ``{"size": [h, w], "counts": ...}``, uncompressed (a list of run lengths,
    column-major, starting with background) or compressed (pycocotools's string); its size
    must be the image's."""
    try:
        rle_height, rle_width = (int(side) for side in segmentation["size"])
        counts = segmentation["counts"]
    except (KeyError, TypeError, ValueError):
        raise ValueError("an RLE segmentation needs 'size': [height, width] and 'counts'") from None
    if (rle_height, rle_width) != tuple(size):
        raise ValueError(f"its RLE is {rle_width}x{rle_height} but the image is "
                         f"{size[1]}x{size[0]} (width x height)")
    if isinstance(counts, list):
        if not all(isinstance(count, int) and count >= 0 for count in counts):
            raise ValueError("its RLE counts must be whole numbers >= 0")
        runs = counts
        encoded = coco_mask.frPyObjects({"size": [rle_height, rle_width], "counts": counts},
                                        rle_height, rle_width)
    elif isinstance(counts, (str, bytes)):
        text = counts.encode("ascii", "replace") if isinstance(counts, str) else counts
        runs = compressed_counts(text)
        encoded = {"size": [rle_height, rle_width], "counts": text}
    else:
        raise ValueError("its RLE 'counts' must be a list of run lengths or a string")
    # pycocotools decodes runs that do not add up to the image without complaint
    if sum(runs) != rle_height * rle_width:
        raise ValueError(f"its RLE runs cover {sum(runs)} pixels but the image has "
                         f"{rle_height * rle_width}")
    return coco_mask.decode(encoded).astype(bool)


def compressed_counts(text: bytes) -> list[int]:
    """The run lengths in pycocotools's compressed RLE string (5 bits a character from
    '0', the 6th bit saying more follow, sign in the last character's 5th bit; from the
    fourth run on, each is stored as the difference to the run two before)."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise ValueError("its compressed RLE string ends inside a number")
            chunk = text[position] - 48
            if not 0 <= chunk < 64:
                raise ValueError("its compressed RLE string has a character outside '0'..'o'")
            value |= (chunk & 0x1F) << shift
            more = bool(chunk & 0x20)
            position += 1
            shift += 5
            if not more and chunk & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            raise ValueError("its compressed RLE string decodes to a negative run")
        counts.append(value)
    return counts


def paste(box_mask: np.ndarray, left: int, top: int, size: Size) -> np.ndarray:
    """``box_mask`` placed with its top-left pixel at (left, top) in an image of ``size``;
    what falls outside is clipped."""
    height, width = size
    full = np.zeros((height, width), dtype=bool)
    box_height, box_width = box_mask.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + box_height, height), min(left + box_width, width)
    if y0 < y1 and x0 < x1:
        full[y0:y1, x0:x1] = box_mask[y0 - top:y1 - top, x0 - left:x1 - left]
    return full


def outside(bounds: Bounds, size: Size) -> bool:
    """Whether a shape's extent misses the image (pixel i spans [i, i + 1))."""
    x_min, y_min, x_max, y_max = bounds
    height, width = size
    return x_max < 0 or y_max < 0 or x_min >= width or y_min >= height


__all__ = ["LABELME_SHAPES", "LINE_WIDTH", "POINT_RADIUS", "box_polygon", "check_point_count",
           "coco_rle_mask", "compressed_counts", "cvat_rle_mask", "ellipse_polygon",
           "labelme_bounds", "labelme_mask", "labelme_shape_mask", "outside", "paste",
           "polygon_bounds", "polygon_mask"]
