"""Pictures of predictions: the colour overlay, its legend, the drivable border.

    picture = overlay(image, class_map, spec)                    # image blended with colours
    picture = annotated_overlay(frame, class_map, spec, drivable_mask=mask, safety=0.7)

Text is drawn with Pillow's default font, so no window system or OpenCV is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pixelwise.data.palette import colorize
from pixelwise.data.spec import DatasetSpec
from pixelwise.drivable import OUTLINE_COLOR, draw_drivable

OVERLAY_ALPHA = 0.5
LEGEND_BACKGROUND = (0, 0, 0, 150)


def overlay(image: np.ndarray, label_map: np.ndarray, spec: DatasetSpec,
            alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """``image`` blended with the class colours of ``label_map`` (uint8 RGB)."""
    colours = colorize(label_map, spec).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def draw_legend(picture: np.ndarray, entries: Sequence[tuple[str, Sequence[int]]]) -> np.ndarray:
    """A copy of ``picture`` with a legend at its top left: a colour swatch and a name
    per entry, on a dark band, in a font sized to the picture (rows that do not fit are
    left out)."""
    height, width = picture.shape[:2]
    font_size = max(8, height // 36)
    font = ImageFont.load_default(size=font_size)
    row = font_size + max(2, font_size // 3)
    rows = min(len(entries), max(0, (height - 4) // row))
    if rows == 0:
        return np.array(picture, copy=True)
    entries = list(entries)[:rows]
    text_width = max(int(font.getlength(name)) for name, _ in entries)
    band = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(band)
    draw.rectangle([0, 0, min(width, text_width + font_size + 8), rows * row + 4],
                   fill=LEGEND_BACKGROUND)
    for position, (name, colour) in enumerate(entries):
        top = 2 + position * row
        draw.rectangle([3, top + 1, 2 + font_size - 2, top + font_size - 1],
                       fill=tuple(int(c) for c in colour) + (255,))
        draw.text((font_size + 5, top), name, fill=(255, 255, 255, 255), font=font)
    composed = Image.alpha_composite(Image.fromarray(picture).convert("RGBA"), band)
    return np.asarray(composed.convert("RGB"))


def legend_entries(class_map: np.ndarray, spec: DatasetSpec) -> list[tuple[str, tuple]]:
    """(name, colour) of the classes present in ``class_map``, largest area first."""
    counts = np.bincount(np.asarray(class_map, np.int64).ravel(), minlength=spec.num_classes)
    present = [index for index in np.argsort(-counts[:spec.num_classes], kind="stable")
               if counts[index]]
    return [(spec.class_names[index], tuple(spec.colors[index])) for index in present]


def annotated_overlay(image: np.ndarray, class_map: np.ndarray, spec: DatasetSpec, *,
                      drivable_mask: np.ndarray | None = None, safety: float | None = None,
                      legend: bool = True) -> np.ndarray:
    """The overlay of ``class_map`` on ``image``, the border of ``drivable_mask`` (when
    given) and a legend of the classes present (and of the drivable border)."""
    picture = overlay(image, class_map, spec)
    entries = legend_entries(class_map, spec) if legend else []
    if drivable_mask is not None:
        picture = draw_drivable(picture, drivable_mask)
        entries.append(("drivable" if safety is None else f"drivable p>={safety:g}",
                        OUTLINE_COLOR))
    return draw_legend(picture, entries) if entries else picture


__all__ = ["OVERLAY_ALPHA", "annotated_overlay", "draw_legend", "legend_entries", "overlay"]
