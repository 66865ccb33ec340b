"""Convert RGB mask PNGs (as annotation tools export them) to palette PNGs of class indices.

    import_rgb_masks("exports/masks", "mydata/SegmentationClass", DatasetSpec.load("spec.json"))

Each pixel's colour must be a class colour of the spec (or the ignore colour,
(224, 224, 192) as in VOC); any other colour is an error that names the file and lists
the colours. Each output is written under a temporary name and renamed, so a file under
its final name is always complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pixelwise.data.images import open_image
from pixelwise.data.palette import rgb_to_index, write_label
from pixelwise.data.spec import DatasetSpec
from pixelwise.io import write_atomically

DEFAULT_IGNORE_COLORS = ((224, 224, 192),)


def import_rgb_masks(src_dir: str | Path, dest_dir: str | Path, spec: DatasetSpec | None = None,
                     *, ignore_colors: tuple[tuple[int, int, int], ...] = DEFAULT_IGNORE_COLORS
                     ) -> list[Path]:
    """Convert every ``*.png`` in ``src_dir`` to a palette PNG of the same name in ``dest_dir``.

    Args:
        src_dir: folder of RGB (or RGBA, or palette) mask PNGs.
        dest_dir: where the palette PNGs go (created if needed); must differ from src_dir.
        spec: class names and colours; VOC's when None.
        ignore_colors: colours that become the ignore label.

    Returns the paths written. Files that convert are written even when others fail;
    the failures are then raised together in one ValueError, one line per file.
    """
    src_dir, dest_dir = Path(src_dir), Path(dest_dir)
    spec = spec or DatasetSpec.voc()
    if not src_dir.is_dir():
        raise FileNotFoundError(f"{src_dir}: no such folder of RGB masks")
    if dest_dir.exists() and dest_dir.resolve() == src_dir.resolve():
        raise ValueError(f"{dest_dir}: the destination is the source folder; converting in "
                         f"place would overwrite the RGB masks; choose another folder")
    sources = sorted(path for path in src_dir.iterdir()
                     if path.suffix.lower() == ".png" and path.is_file())
    if not sources:
        raise FileNotFoundError(f"{src_dir}: no .png masks in this folder")
    dest_dir.mkdir(parents=True, exist_ok=True)
    written, failures = [], []
    for source in sources:
        try:
            label_map = read_rgb_mask(source, spec, ignore_colors)
        except ValueError as error:
            failures.append(str(error))
            continue
        target = dest_dir / f"{source.stem}.png"
        write_label_atomically(target, label_map, spec)
        written.append(target)
    if failures:
        raise ValueError(f"{len(failures)} of {len(sources)} mask(s) not converted "
                         f"({len(written)} written to {dest_dir}):\n  " + "\n  ".join(failures))
    return written


def read_rgb_mask(path: str | Path, spec: DatasetSpec,
                  ignore_colors: tuple[tuple[int, int, int], ...] = DEFAULT_IGNORE_COLORS
                  ) -> np.ndarray:
    """One RGB mask file -> uint8 class-index map; errors name the file and unknown colours."""
    path = Path(path)
    try:
        with open_image(path) as image:
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = np.array(image.convert("RGBA"))
                if (rgba[..., 3] < 255).any():
                    raise ValueError(f"{path}: has transparent pixels; masks must be opaque")
            rgb = np.array(image.convert("RGB"))
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot decode the mask: {error}") from error
    return rgb_to_index(rgb, spec, ignore_colors=ignore_colors, source=str(path))


def write_label_atomically(path: str | Path, label_map: np.ndarray, spec: DatasetSpec) -> None:
    """write_label to a temporary name beside ``path``, then rename it into place."""
    write_atomically(path, lambda temporary: write_label(temporary, label_map, spec))


__all__ = ["import_rgb_masks", "read_rgb_mask", "write_label_atomically"]
