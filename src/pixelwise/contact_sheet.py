"""Contact sheets: pictures as thumbnails in a grid, each captioned, optionally with a map
(an uncertainty map, say) in a heat colour beside it.

    sheet = contact_sheet([Tile(image, ("#1  0.613", "drive_t000012.500"), heat=map)])
    sheet.save("contact_sheet.png")

Layout: ``columns`` cells a row (fewer when there are fewer tiles), ``GAP`` pixels between
cells and around them. A cell is ``panels * thumb width`` wide (``panels``: 2 when any tile
has a map, else 1) and ``thumb height + CAPTION_HEIGHT`` high; each picture and map is
scaled to fit its thumbnail box (aspect kept) and centred in it; the caption's lines go
under them, cut to the cell's width. Only Pillow and NumPy: no display needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GAP = 6
CAPTION_HEIGHT = 28  # two lines of the 11 px font
CAPTION_FONT_SIZE = 11
BACKGROUND = (24, 24, 24)
TEXT_COLOUR = (235, 235, 235)
DEFAULT_THUMB_SIZE = (96, 128)  # (height, width)


@dataclass(frozen=True)
class Tile:
    """One cell: ``image`` (uint8 RGB [H, W, 3]), its ``caption`` (lines, two fit) and
    optionally ``heat``, a float map [h, w] of values in 0..1 drawn beside it."""

    image: np.ndarray
    caption: tuple[str, ...]
    heat: np.ndarray | None = None


def sheet_size(count: int, *, columns: int, thumb_size: Sequence[int],
               panels: int) -> tuple[int, int]:
    """(width, height) in pixels of the sheet of ``count`` tiles (see the module docstring)."""
    used_columns = min(count, columns)
    rows = math.ceil(count / columns)
    cell_width, cell_height = panels * thumb_size[1], thumb_size[0] + CAPTION_HEIGHT
    return (used_columns * cell_width + (used_columns + 1) * GAP,
            rows * cell_height + (rows + 1) * GAP)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """uint8 RGB of ``values`` in 0..1 on a black-red-yellow-white scale (0: black)."""
    values = np.clip(np.nan_to_num(np.asarray(values, np.float32)), 0.0, 1.0)
    channels = [np.clip(3.0 * values - offset, 0.0, 1.0) for offset in (0.0, 1.0, 2.0)]
    return np.round(255.0 * np.stack(channels, axis=-1)).astype(np.uint8)


def fitted(picture: Image.Image, thumb_size: Sequence[int]) -> Image.Image:
    """``picture`` scaled to fit a (height, width) box, aspect kept, centred on the
    background colour."""
    height, width = int(thumb_size[0]), int(thumb_size[1])
    scale = min(height / picture.height, width / picture.width)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    box = Image.new("RGB", (width, height), BACKGROUND)
    box.paste(picture.convert("RGB").resize(size, Image.Resampling.BILINEAR),
              ((width - size[0]) // 2, (height - size[1]) // 2))
    return box


def cut_to_width(text: str, font: ImageFont.ImageFont, width: int) -> str:
    """``text``, shortened with an ellipsis at the end until it fits ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def contact_sheet(tiles: Sequence[Tile], *, columns: int = 4,
                  thumb_size: Sequence[int] = DEFAULT_THUMB_SIZE) -> Image.Image:
    """The RGB sheet of ``tiles`` in reading order (see the module docstring).

    Args:
        tiles: the cells; at least one.
        columns: cells a row.
        thumb_size: (height, width) of each picture's (and map's) box.
    """
    if not tiles:
        raise ValueError("a contact sheet needs at least one picture")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    thumb_height, thumb_width = int(thumb_size[0]), int(thumb_size[1])
    panels = 2 if any(tile.heat is not None for tile in tiles) else 1
    sheet = Image.new("RGB", sheet_size(len(tiles), columns=columns, thumb_size=thumb_size,
                                        panels=panels), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=CAPTION_FONT_SIZE)
    line_height = CAPTION_HEIGHT // 2
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        left = GAP + column * (panels * thumb_width + GAP)
        top = GAP + row * (thumb_height + CAPTION_HEIGHT + GAP)
        sheet.paste(fitted(Image.fromarray(np.asarray(tile.image, np.uint8)), thumb_size),
                    (left, top))
        if tile.heat is not None:
            heat = Image.fromarray(heat_colours(tile.heat))
            sheet.paste(fitted(heat, thumb_size), (left + thumb_width, top))
        for line_index, line in enumerate(tile.caption[:2]):
            draw.text((left + 2, top + thumb_height + 1 + line_index * line_height),
                      cut_to_width(line, font, panels * thumb_width - 4), fill=TEXT_COLOUR,
                      font=font)
    return sheet


__all__ = ["BACKGROUND", "CAPTION_HEIGHT", "DEFAULT_THUMB_SIZE", "GAP", "Tile",
           "contact_sheet", "cut_to_width", "fitted", "heat_colours", "sheet_size"]
