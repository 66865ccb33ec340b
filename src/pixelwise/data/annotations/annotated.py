"""What every reader hands the importer: images, each with a painter for its shapes.

A reader (``labelme``, ``cvat``, ``cvat_masks``, ``coco``) parses an export into
``Annotations``: one ``AnnotatedImage`` per image (its dataset name, where its bytes are,
the size the annotation states, and ``paint``, which draws its shapes on a
``LabelCanvas`` by label name, later shapes over earlier ones). The importer chooses the
classes, opens each image and hands the painter a canvas of the image's size; the canvas
turns label names into class indices and collects each problem with the shape it is about.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixelwise.data.annotations.classes import ClassList
from pixelwise.data.annotations.rasterize import Bounds, outside


@dataclass(frozen=True)
class ImageRef:
    """Where an image's bytes are: a file, or bytes embedded in the annotation (LabelMe's
    ``imageData``). ``where`` names it in messages."""

    where: str
    path: Path | None = None
    data: bytes | None = None

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


@dataclass(frozen=True)
class AnnotatedImage:
    """One labelled image of an export.

    Attributes:
        name: its name in the dataset (``JPEGImages/NAME.ext``, ``SegmentationClass/NAME.png``).
        where: the annotation, and the image within it, for messages.
        image: its bytes' place, or None when it was not found (``missing`` says where it
            was looked for, and the fix).
        declared_size: the (width, height) the annotation states, or None.
        paint: draws its shapes on a canvas of the image's size.
    """

    name: str
    where: str
    image: ImageRef | None
    declared_size: tuple[int, int] | None
    paint: Callable[["LabelCanvas"], None]
    missing: str = ""


@dataclass
class Annotations:
    """An export, read: its images, its own classes, and what reading it found."""

    source: Path
    images: list[AnnotatedImage]
    class_names: tuple[str, ...]
    class_colors: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class LabelCanvas:
    """The class-index map [H, W] of one image, painted shape by shape.

    Args:
        size: the image's (height, width) as the annotation sees it (EXIF rotation applied).
        classes: the import's classes (label name -> index).
        fill: the value of pixels no shape covers (0 or the ignore label).
        where: the annotation and image, prefixed to every problem and note.
        problems, notes: where problems (the import fails) and notes (it goes on) go.
    """

    def __init__(self, size: tuple[int, int], classes: ClassList, fill: int, where: str,
                 problems: list[str], notes: list[str]) -> None:
        self.size = size
        self.classes = classes
        self.where = where
        self.label_map = np.full(size, fill, dtype=np.uint8)
        self._problems = problems
        self._notes = notes

    @property
    def height(self) -> int:
        return self.size[0]

    @property
    def width(self) -> int:
        return self.size[1]

    def paint(self, label: str, shape: str, mask: np.ndarray, bounds: Bounds | None = None
              ) -> None:
        """Set the pixels of ``mask`` to ``label``'s class. A shape that covers no pixel is
        a problem when ``bounds`` (its extent) lies outside the image, else a note."""
        value = self.classes.index_of(label)
        if value is None:
            self.problem(shape, self.classes.unknown_label(label))
            return
        if not mask.any():
            if bounds is not None and outside(bounds, self.size):
                x_min, y_min, x_max, y_max = bounds
                self.problem(shape, f"lies outside the {self.width}x{self.height} image "
                                    f"(x {x_min:g}..{x_max:g}, y {y_min:g}..{y_max:g}); correct "
                                    f"its coordinates, or check the image is the one it was "
                                    f"drawn on")
            else:
                self.note(shape, "covers no pixel; left out")
            return
        self.label_map[mask] = value

    def known(self, label: str, shape: str) -> bool:
        """Whether ``label`` is a class (a problem naming the shape when not)."""
        if self.classes.index_of(label) is None:
            self.problem(shape, self.classes.unknown_label(label))
            return False
        return True

    def problem(self, shape: str, message: str) -> None:
        self._problems.append(f"{self.where}, {shape}: {message}")

    def note(self, shape: str, message: str) -> None:
        self._notes.append(f"{self.where}, {shape}: {message}")


def first_names(names: list[str], most: int = 10) -> str:
    """``names`` joined by commas, the first ``most`` of them, `` ...`` after when more."""
    return ", ".join(names[:most]) + (" ..." if len(names) > most else "")


# A shape to draw: (where it is, e.g. "shape 3 (polygon)"; its label; size -> mask, bounds).
Draw = Callable[[tuple[int, int]], tuple[np.ndarray, Bounds | None]]


def shape_painter(shapes: list[tuple[str, str, Draw]], fix: str, *,
                  smaller_on_top: bool = False) -> Callable[["LabelCanvas"], None]:
    """A ``paint`` for :class:`AnnotatedImage`: each shape whose label the import knows,
    later over earlier (``smaller_on_top``: larger areas first, ties in order); a shape that
    cannot be drawn becomes a problem naming it, followed by ``fix``."""
    def paint(canvas: LabelCanvas) -> None:
        drawn = []
        for order, (what, label, draw) in enumerate(shapes):
            if not canvas.known(label, what):
                continue
            try:
                mask, bounds = draw(canvas.size)
            except ValueError as error:
                canvas.problem(what, f"{error}; {fix}")
                continue
            area = -int(mask.sum()) if smaller_on_top else 0
            drawn.append((area, order, what, label, mask, bounds))
        for _, _, what, label, mask, bounds in sorted(drawn, key=lambda shape: shape[:2]):
            canvas.paint(label, what, mask, bounds)
    return paint


__all__ = ["AnnotatedImage", "Annotations", "Draw", "ImageRef", "LabelCanvas", "first_names",
           "shape_painter"]
