"""Class maps and colour overlays for images of any size.

    predict_run("runs/voc", ["photo.jpg", "holiday/"], "out/")
    # out/photo.png          palette PNG: the class index of every pixel
    # out/photo_overlay.png  the image blended with the class colours

    predict_images(Segmenter.from_path("runs/voc/best.keras"), paths, "out/")
    predict_tflite("runs/voc/export/model_int8.tflite", ["photo.jpg"], "out/")

The model is any form of ``pixelwise.inference.Segmenter``. A run's model pads each image
at the bottom and right to a multiple of its stride with the ImageNet mean colour (what the
training pipeline pads with) and crops the logits back to the image; or, with ``resize``,
runs at the training input size and resizes the logits back (bilinear). An exported TFLite
model runs at its fixed input size: each image is resized (or letterboxed) to it and the
class map mapped back (nearest neighbour); its classes come from the file's own metadata.
Either way the class map has the image's own size. A photo of more than 2 MiP
(``pixelwise.inference.DEFAULT_MAX_PIXELS``; ``max_pixels``) runs scaled down to that
size and its class map is brought back to full size, so memory stays bounded however large
the photo. Images are read with
PIL (any mode becomes RGB; the EXIF orientation is applied, so the map lines up with the
picture as viewers show it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from pixelwise.data.images import OversizedImageError, open_image
from pixelwise.data.palette import colorize, write_label
from pixelwise.data.spec import DatasetSpec
from pixelwise.inference import DEFAULT_MAX_PIXELS, KerasSegmenter, Segmenter, TFLiteSegmenter
from pixelwise.io import write_atomically
from pixelwise.runs import PREDICTIONS_DIR, RunFolder

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
OVERLAY_ALPHA = 0.5


@dataclass(frozen=True)
class PredictionFiles:
    """What ``predict_images`` wrote for one image."""

    image_path: Path
    label_path: Path
    overlay_path: Path


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files from files and folders (a folder's images by name, not recursive).

    A missing path, or a folder without images, raises FileNotFoundError naming it.
    """
    images: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            found = sorted(child for child in path.iterdir()
                           if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{path}: no images in this folder "
                                        f"({', '.join(IMAGE_SUFFIXES)})")
            images.extend(found)
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such image or folder")
    return images


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB [H, W, 3] (EXIF orientation applied)."""
    path = Path(path)
    try:
        with open_image(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except OversizedImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot read it as an image: {error}") from error


def overlay(image: np.ndarray, label_map: np.ndarray, spec: DatasetSpec,
            alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """``image`` blended with the class colours of ``label_map`` (uint8 RGB)."""
    colours = colorize(label_map, spec).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def predict_images(segmenter: Segmenter, paths: Sequence[str | Path], out_dir: str | Path, *,
                   progress: bool = True) -> list[PredictionFiles]:
    """For each image: ``out_dir/NAME.png`` (palette PNG of class indices) and
    ``out_dir/NAME_overlay.png``; see the module docstring.

    Args:
        segmenter: the model, any form (``pixelwise.inference.Segmenter``); its classes
            name and colour the outputs.
        paths: image files and folders (see ``collect_images``).
        out_dir: the output folder (created).
        progress: a progress bar.

    Two images with the same name (from different folders) would overwrite each other's
    outputs, so they are refused before anything is written.
    """
    images = collect_images(paths)
    by_name: dict[str, Path] = {}
    for path in images:
        if path.stem in by_name:
            raise ValueError(f"{path} and {by_name[path.stem]} would both write "
                             f"{path.stem}.png; predict them into separate --out folders")
        by_name[path.stem] = path
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = segmenter.spec
    written = []
    for path in tqdm(images, unit="image", desc="predict", disable=not progress or len(images) < 2):
        image = read_image(path)
        label_map = segmenter.predict(image).astype(np.uint8)
        label_path = out_dir / f"{path.stem}.png"
        overlay_path = out_dir / f"{path.stem}_overlay.png"
        write_atomically(label_path, lambda temporary: write_label(temporary, label_map, spec))
        blended = overlay(image, label_map, spec)
        write_atomically(overlay_path, lambda temporary: Image.fromarray(blended).save(
            temporary, format="PNG"))
        written.append(PredictionFiles(path, label_path, overlay_path))
    return written


def predict_run(run_dir: str | Path, paths: Sequence[str | Path],
                out_dir: str | Path | None = None, *, resize: bool = False,
                max_pixels: int | None = DEFAULT_MAX_PIXELS, progress: bool = True,
                echo: Callable[[str], None] = print) -> list[PredictionFiles]:
    """``predict_images`` with the best model of a run; ``resize`` runs the model at the
    run's training input size instead of padding; ``max_pixels`` bounds the size a photo
    runs at (see the module docstring). Default ``out_dir``: RUN/predictions."""
    folder = RunFolder(Path(run_dir))
    segmenter = KerasSegmenter.from_path(folder.root, fit_mode="resize" if resize else "pad",
                                         max_pixels=max_pixels)
    out_dir = Path(out_dir) if out_dir is not None else folder.root / PREDICTIONS_DIR
    written = predict_images(segmenter, paths, out_dir, progress=progress)
    echo(f"wrote {2 * len(written)} file(s) for {len(written)} image(s) to {out_dir}")
    return written


def predict_tflite(model_path: str | Path, paths: Sequence[str | Path],
                   out_dir: str | Path | None = None, *, num_threads: int | None = None,
                   fit_mode: str = "resize", progress: bool = True,
                   echo: Callable[[str], None] = print) -> list[PredictionFiles]:
    """``predict_images`` with a .tflite model from ``pixelwise export``.

    ``fit_mode``: "resize", "letterbox" or "pad" (see ``TFLiteSegmenter``);
    ``num_threads``: the interpreter's threads (None: its default). Default ``out_dir``:
    NAME_predictions/ beside the model file.
    """
    model_path = Path(model_path)
    segmenter = TFLiteSegmenter(model_path, num_threads=num_threads, fit_mode=fit_mode)
    out_dir = (Path(out_dir) if out_dir is not None
               else model_path.parent / f"{model_path.stem}_predictions")
    written = predict_images(segmenter, paths, out_dir, progress=progress)
    echo(f"wrote {2 * len(written)} file(s) for {len(written)} image(s) to {out_dir} "
         f"({model_path.name}, {segmenter.input_size[0]}x{segmenter.input_size[1]}, "
         f"{fit_mode})")
    return written


__all__ = ["IMAGE_SUFFIXES", "PredictionFiles", "collect_images", "overlay", "predict_images",
           "predict_run", "predict_tflite", "read_image"]
