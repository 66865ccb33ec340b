"""Class maps and colour overlays for images of any size, videos and cameras.

    predict_run("runs/voc", ["photo.jpg", "holiday/"], "out/")
    # out/photo.png          palette PNG: the class index of every pixel
    # out/photo_overlay.png  the image blended with the class colours, with a legend

    predict_images(Segmenter.from_path("runs/voc/best.keras"), paths, "out/")
    predict_tflite("runs/voc/export/model_int8.tflite", ["photo.jpg"], "out/")
    predict("runs/camvid", ["drive.mp4"], drivable="road,pavement", safety=0.7)
    # RUN/predictions/drive_overlay.mp4, drive_drivable.npz, drive_timings.json

``predict`` (what `pixelwise predict` runs) takes any model form, images, folders and
videos (:mod:`pixelwise.video`) or a camera, and on request the drivable space of
:mod:`pixelwise.drivable`: for an image ``NAME_drivable.png`` (the probability times 255,
grey) and ``NAME_drivable_mask.png``, or both in ``NAME_drivable.npz`` with
``class_maps="npz"``.

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
from pixelwise.data.palette import write_label
from pixelwise.drivable import DEFAULT_SAFETY, drivable_mask
from pixelwise.inference import DEFAULT_MAX_PIXELS, KerasSegmenter, Segmenter, TFLiteSegmenter
from pixelwise.io import write_atomically
from pixelwise.runs import PREDICTIONS_DIR, RunFolder
from pixelwise.video.drawing import OVERLAY_ALPHA, annotated_overlay, overlay
from pixelwise.video.sources import VIDEO_SUFFIXES
from pixelwise.video.writer import mask_image, probability_image
from pixelwise.zoo import is_model_name, resolve_model_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class PredictionFiles:
    """What ``predict_images`` wrote for one image."""

    image_path: Path
    label_path: Path
    overlay_path: Path
    drivable_paths: tuple[Path, ...] = ()


def collect_images(inputs: Sequence[str | Path], *,
                   suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files from files and folders (a folder's images by name, not recursive);
    ``suffixes``: what a folder's files must end in to count.

    A missing path, or a folder without images, raises FileNotFoundError naming it.
    """
    images: list[Path] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            found = sorted(child for child in path.iterdir()
                           if child.is_file() and child.suffix.lower() in suffixes)
            if not found:
                raise FileNotFoundError(f"{path}: no images in this folder "
                                        f"({', '.join(suffixes)})")
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


def save_png(path: Path, image: Image.Image) -> Path:
    """Write a PIL image as PNG at ``path``, atomically."""
    write_atomically(path, lambda temporary: image.save(temporary, format="PNG"))
    return path


def write_drivable(out_dir: Path, stem: str, probability: np.ndarray, mask: np.ndarray,
                   map_format: str) -> tuple[Path, ...]:
    """An image's drivable probability and mask (see the module docstring)."""
    if map_format == "npz":
        path = out_dir / f"{stem}_drivable.npz"

        def write(temporary: Path) -> None:
            with open(temporary, "wb") as file:
                np.savez_compressed(file, probability=probability.astype(np.float32), mask=mask)

        write_atomically(path, write)
        return (path,)
    return (save_png(out_dir / f"{stem}_drivable.png", probability_image(probability)),
            save_png(out_dir / f"{stem}_drivable_mask.png", mask_image(mask)))


def predict_images(segmenter: Segmenter, paths: Sequence[str | Path], out_dir: str | Path, *,
                   progress: bool = True, drivable: Sequence[int] | None = None,
                   safety: float = DEFAULT_SAFETY,
                   drivable_format: str = "png") -> list[PredictionFiles]:
    """For each image: ``out_dir/NAME.png`` (palette PNG of class indices) and
    ``out_dir/NAME_overlay.png``; see the module docstring.

    Args:
        segmenter: the model, any form (``pixelwise.inference.Segmenter``); its classes
            name and colour the outputs.
        paths: image files and folders (see ``collect_images``).
        out_dir: the output folder (created).
        progress: a progress bar.
        drivable: class indices whose summed probability is drivable; its probability and
            mask at ``safety`` are written (``drivable_format``: "png" or "npz") and the
            mask's border drawn on the overlay.

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
        prediction = segmenter.segment(image, drivable=drivable)
        label_map = prediction.class_map.astype(np.uint8)
        label_path = out_dir / f"{path.stem}.png"
        write_atomically(label_path, lambda temporary: write_label(temporary, label_map, spec))
        mask = None if drivable is None else drivable_mask(prediction.drivable, safety)
        blended = annotated_overlay(image, label_map, spec, drivable_mask=mask, safety=safety)
        drivable_paths: tuple[Path, ...] = ()
        if mask is not None:
            drivable_paths = write_drivable(out_dir, path.stem, prediction.drivable, mask,
                                            drivable_format)
        overlay_path = save_png(out_dir / f"{path.stem}_overlay.png", Image.fromarray(blended))
        written.append(PredictionFiles(path, label_path, overlay_path, drivable_paths))
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


def open_model(model_path: str | Path, *, resize: bool = False, fit_mode: str | None = None,
               num_threads: int | None = None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS, kind: str | None = None) -> Segmenter:
    """The Segmenter of any model form (``Segmenter.from_path``) with predict's options:
    a .tflite runs with ``num_threads`` and ``fit_mode`` (default "resize"); the others
    pad each image (or, with ``resize``, run at the training input size) and scale
    images above ``max_pixels`` down. ``num_threads`` for TensorFlow sets its thread pools,
    which only works before TensorFlow has started in this process. A registered model's
    name (:mod:`pixelwise.zoo`) runs its file of ``kind`` (None: its .keras)."""
    if kind is not None and not is_model_name(model_path):
        raise ValueError(f"{model_path}: a path, not a model name; the kind of file "
                         f"({kind}) picks among a registered model's files")
    model_path = resolve_model_path(model_path, kind)
    if model_path.is_file() and model_path.suffix not in (".tflite", ".keras"):
        raise ValueError(f"{model_path}: give a run folder or a .tflite model (or a .keras "
                         f"file, or a SavedModel folder)")
    if model_path.suffix == ".tflite":
        return Segmenter.from_path(model_path, num_threads=num_threads,
                                   fit_mode=fit_mode or "resize")
    if num_threads is not None:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(num_threads)
            tf.config.threading.set_inter_op_parallelism_threads(num_threads)
        except RuntimeError as error:
            raise ValueError(f"threads {num_threads}: TensorFlow has already started in this "
                             f"process, so its thread count is fixed") from error
    return Segmenter.from_path(model_path, fit_mode=fit_mode or ("resize" if resize else "pad"),
                               max_pixels=max_pixels)


def _model_label(model_path: str | Path, kind: str | None) -> str:
    """The model file's name, after the model's name where one was given."""
    if is_model_name(model_path):
        return f"{model_path}: {resolve_model_path(model_path, kind).name}"
    return Path(model_path).name


def default_out_dir(model_path: str | Path) -> Path:
    """RUN/predictions for a run folder, NAME_predictions in the current folder for a
    registered model's name, else NAME_predictions beside the model."""
    if is_model_name(model_path):
        return Path(f"{model_path}_predictions")
    model_path = Path(model_path)
    if model_path.is_dir() and (model_path / "config.json").is_file():
        return model_path / PREDICTIONS_DIR
    return model_path.parent / f"{model_path.stem}_predictions"


def refuse_overwriting_inputs(inputs: Sequence[Path], outputs: Sequence[Path]) -> None:
    """Raise ValueError naming the input that an output would overwrite."""
    resolved = {path.resolve(): path for path in inputs}
    for output in outputs:
        if output.resolve() in resolved:
            raise ValueError(f"{resolved[output.resolve()]}: the output {output} would "
                             f"overwrite this input; choose another --out folder")


def predict(model_path: str | Path, inputs: Sequence[str | Path] = (),
            out_dir: str | Path | None = None, *, camera: str | int | None = None,
            max_frames: int | None = None, class_maps: str | None = None,
            drivable: str | Sequence[str] | None = None, safety: float = DEFAULT_SAFETY,
            smooth: float | None = None, resize: bool = False, fit_mode: str | None = None,
            num_threads: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
            kind: str | None = None, progress: bool = True,
            echo: Callable[[str], None] = print) -> list[Path]:
    """`pixelwise predict`: images, folders and videos in ``inputs``, or a ``camera``,
    through any model form (:func:`open_model`); returns the paths written.

    Images get their class map and overlay (:func:`predict_images`); videos (and the
    camera) their overlay video, frames/s and, with ``class_maps`` ("npz" or "png"), their
    class maps (:func:`pixelwise.video.run_video`). ``drivable``: class names of the
    model (e.g. "road,pavement") whose summed probability is drivable, marked where it
    reaches ``safety`` (higher: more cautious). ``smooth``: videos' exponential moving
    average of probabilities (the newest frame's weight). ``max_frames``: stop a video or
    the camera after that many frames. Default ``out_dir``: :func:`default_out_dir`.
    ``model_path`` may be a registered model's name; ``kind`` picks its file ("keras",
    "tflite"; None: its .keras).
    """
    from pixelwise.drivable import check_safety, drivable_classes
    from pixelwise.smoothing import check_alpha
    from pixelwise.video import camera_name, is_video, open_camera, open_video, open_window
    from pixelwise.video import output_paths, run_video

    if not inputs and camera is None:
        raise ValueError("nothing to predict: give images, folders or videos, or a camera")
    safety = check_safety(safety)
    smooth = None if smooth is None else check_alpha(smooth)
    paths = collect_images(inputs, suffixes=IMAGE_SUFFIXES + VIDEO_SUFFIXES) if inputs else []
    videos = [path for path in paths if is_video(path)]
    images = [path for path in paths if not is_video(path)]
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(model_path)
    segmenter = open_model(model_path, resize=resize, fit_mode=fit_mode,
                           num_threads=num_threads, max_pixels=max_pixels, kind=kind)
    classes = None if drivable is None else drivable_classes(segmenter.spec, drivable)
    stems = {path: path.stem for path in videos}
    if camera is not None:
        stems[Path(str(camera))] = camera_name(camera)
    planned = [out_dir / f"{path.stem}{end}" for path in images
               for end in (".png", "_overlay.png")]
    for stem in stems.values():
        planned += output_paths(out_dir, stem, class_maps=class_maps, drivable=classes is not None)
    refuse_overwriting_inputs(paths, planned)
    written: list[Path] = []
    if images:
        results = predict_images(segmenter, images, out_dir, progress=progress, drivable=classes,
                                 safety=safety, drivable_format=class_maps or "png")
        files = [path for item in results
                 for path in (item.label_path, item.overlay_path, *item.drivable_paths)]
        echo(f"wrote {len(files)} file(s) for {len(results)} image(s) to {out_dir}"
             + (f" ({_model_label(model_path, kind)}, {segmenter.input_size[0]}x"
                f"{segmenter.input_size[1]}, {segmenter.fit_mode})"
                if isinstance(segmenter, TFLiteSegmenter) else ""))
        written += files
    options = dict(class_maps=class_maps, drivable=classes, safety=safety, smooth=smooth,
                   max_frames=max_frames, progress=progress, echo=echo)
    for path in videos:
        with open_video(path) as source:
            written += run_video(segmenter, source, out_dir, stems[path], **options).paths
    if camera is not None:
        with open_camera(camera) as source:
            window = open_window(f"pixelwise: {camera_name(camera)}")
            if window is None:
                echo(f"no display: recording {camera_name(camera)} to {out_dir} "
                     f"(Ctrl-C stops)")
            try:
                written += run_video(segmenter, source, out_dir, camera_name(camera),
                                     window=window, **options).paths
            finally:
                if window is not None:
                    window.close()
    if videos or camera is not None:
        echo(f"wrote the outputs of {len(videos) + (camera is not None)} video(s) to {out_dir}")
    return written


__all__ = ["IMAGE_SUFFIXES", "OVERLAY_ALPHA", "PredictionFiles", "collect_images",
           "default_out_dir", "open_model", "overlay", "predict", "predict_images",
           "predict_run", "predict_tflite", "read_image", "refuse_overwriting_inputs",
           "write_drivable"]
