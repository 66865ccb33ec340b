"""A generated dataset in the VOC layout: the embedded default and the test data.

    layout = generate_synthetic("runs/demo/data", num_images=300, size=128, seed=0)
    layout.examples("train")        # -> [Example(name, image_path, label_path), ...]

Each image is a smooth, two-colour textured background with a few objects on it. Every
object class has its own shape family and its own texture (a pattern of a class-typical
kind, period and orientation, drawn in two tones of the object's colour):

    ball   ellipse    dots                  block  rectangle  horizontal stripes
    cone   triangle   fine slanted stripes  star   5 points   checks at 45 degrees
    ring   annulus    speckle

Colours are drawn around a class-typical hue, but the hue ranges of neighbouring classes
overlap (``color_overlap``) and backgrounds take any hue, so one pixel's colour does not
decide its class: a model has to use texture and shape. Objects are drawn in order, later
ones in front of earlier ones (occlusion), and, as in VOC, a band of the ignore label 255
a few pixels wide (``boundary_width``) covers every visible outline.

The folder written:

    DEST/JPEGImages/synth_00000.jpg ...
    DEST/SegmentationClass/synth_00000.png ...      palette PNGs of class indices
    DEST/ImageSets/Segmentation/{train,val,trainval}.txt
    DEST/pixelwise_dataset.json                     class names and colours
    DEST/pixelwise_synthetic.json                   the settings that made it

The first images form train, the rest val (which the VOC layout halves into val and test
with its seeded protocol). Image ``i`` depends only on the settings and ``(seed, i)``, and
the same settings give byte-identical files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from pixelwise.data.palette import write_label
from pixelwise.data.spec import SPEC_FILENAME, DatasetSpec, voc_colormap
from pixelwise.data.synthetic_scenes import (  # noqa: F401  (re-exported)
    MAX_OBJECT_CLASSES,
    OBJECT_CLASSES,
    ObjectClass,
    SyntheticConfig,
    boundary_band,
    render_example,
)
from pixelwise.data.voc import IMAGE_DIR, LABEL_DIR, SETS_DIR, VOCLayout, find_voc_root

PARAMS_FILENAME = "pixelwise_synthetic.json"
GENERATOR_VERSION = 1
TEMP_PREFIX = ".pixelwise-synth-"
NAME_PREFIX = "synth_"
def synthetic_spec(num_object_classes: int = MAX_OBJECT_CLASSES) -> DatasetSpec:
    """Class names (background first) and VOC's first palette colours for the synthetic set."""
    if not 1 <= num_object_classes <= MAX_OBJECT_CLASSES:
        raise ValueError(f"num_object_classes must be 1..{MAX_OBJECT_CLASSES}, "
                         f"got {num_object_classes}")
    names = ("background",) + tuple(c.name for c in OBJECT_CLASSES[:num_object_classes])
    colors = tuple(tuple(int(v) for v in rgb) for rgb in voc_colormap(len(names)))
    return DatasetSpec(names, colors)


def example_names(config: SyntheticConfig) -> tuple[list[str], list[str]]:
    """(train names, val names): the first ``num_train`` images, then the rest."""
    names = [f"{NAME_PREFIX}{index:05d}" for index in range(config.num_images)]
    return names[: config.num_train], names[config.num_train:]


def generate_synthetic(dest: str | Path, *, num_images: int = 300,
                       size: int | tuple[int, int] = 128, seed: int = 0,
                       val_fraction: float = 1 / 3,
                       num_object_classes: int = MAX_OBJECT_CLASSES,
                       objects_per_image: tuple[int, int] = (2, 4),
                       object_scale: tuple[float, float] = (0.2, 0.5),
                       color_overlap: float = 0.5, texture_contrast: float = 0.6,
                       noise_std: float = 0.03, boundary_width: int = 2,
                       jpeg_quality: int = 90, overwrite: bool = False,
                       progress: bool = False) -> VOCLayout:
    """Write a synthetic dataset in the VOC layout at ``dest``; return its layout.

    Args:
        dest: the dataset folder to create (it will hold JPEGImages/ etc.).
        num_images: images in all; ``val_fraction`` of them go to val.txt, the rest to
            train.txt.
        size: image side in pixels, or (height, width).
        seed: the random seed; the same settings give byte-identical files.
        val_fraction, num_object_classes, objects_per_image (min, max), object_scale
            (min, max fraction of the shorter side), color_overlap, texture_contrast,
            noise_std, boundary_width, jpeg_quality: see ``SyntheticConfig``.
        overwrite: replace an existing synthetic dataset made with other settings.
        progress: show a progress bar.

    Returns at once, writing nothing, when ``dest`` already holds the dataset these settings
    make. The files are written into a temporary folder beside ``dest`` and renamed into
    place when complete, so an interrupted run leaves no partial dataset. Raises
    FileExistsError when ``dest`` holds something else: another synthetic dataset (unless
    ``overwrite``) or any other non-empty folder (never replaced).
    """
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    config = SyntheticConfig(
        num_images=num_images, height=height, width=width, seed=seed,
        val_fraction=val_fraction, num_object_classes=num_object_classes,
        min_objects=objects_per_image[0], max_objects=objects_per_image[1],
        min_scale=object_scale[0], max_scale=object_scale[1], color_overlap=color_overlap,
        texture_contrast=texture_contrast, noise_std=noise_std,
        boundary_width=boundary_width, jpeg_quality=jpeg_quality)
    return write_synthetic(dest, config, overwrite=overwrite, progress=progress)


def write_synthetic(dest: str | Path, config: SyntheticConfig, *, overwrite: bool = False,
                    progress: bool = False) -> VOCLayout:
    """``generate_synthetic`` for a ready ``SyntheticConfig``."""
    dest = Path(dest)
    if _holds_same_dataset(dest, config):
        return find_voc_root(dest)
    replace_existing = _check_destination(dest, config, overwrite)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=dest.parent))
    try:
        _write_dataset(staging, config, progress=progress)
        if replace_existing:
            retired = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + "old-", dir=dest.parent))
            dest.rename(retired / dest.name)
            try:
                staging.rename(dest)
            except BaseException:
                (retired / dest.name).rename(dest)  # put the old dataset back
                shutil.rmtree(retired, ignore_errors=True)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            if dest.is_dir():  # empty: checked above
                dest.rmdir()
            staging.rename(dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return find_voc_root(dest)


def read_params(dest: str | Path) -> dict | None:
    """The settings recorded in a synthetic dataset folder, or None where there are none."""
    path = Path(dest) / PARAMS_FILENAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the synthetic dataset's settings: {error}; "
                         f"delete the folder and generate it again") from error
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object; delete the folder and generate "
                         f"it again")
    return record


def _params_record(config: SyntheticConfig) -> dict:
    return {"generator": "pixelwise.data.synthetic", "version": GENERATOR_VERSION,
            "params": config.to_dict()}


def _holds_same_dataset(dest: Path, config: SyntheticConfig) -> bool:
    record = read_params(dest) if dest.is_dir() else None
    return (record == _params_record(config)
            and all((dest / sub).is_dir() for sub in (IMAGE_DIR, LABEL_DIR, SETS_DIR)))


def _check_destination(dest: Path, config: SyntheticConfig, overwrite: bool) -> bool:
    """Whether ``dest`` holds a synthetic dataset to replace; raise if it may not be."""
    if not dest.exists():
        return False
    if not dest.is_dir():
        raise FileExistsError(f"{dest}: is a file; choose a folder name for the dataset")
    if not any(dest.iterdir()):
        return False
    record = read_params(dest)
    if record is None:
        raise FileExistsError(
            f"{dest}: folder exists and is not a synthetic dataset (no {PARAMS_FILENAME}); "
            f"choose another folder, or empty this one yourself")
    if not overwrite:
        recorded = record.get("params", {}) if isinstance(record.get("params"), dict) else {}
        wanted = config.to_dict()
        differences = [f"{key} {recorded.get(key)!r} -> {value!r}"
                       for key, value in wanted.items() if recorded.get(key) != value]
        if record.get("version") != GENERATOR_VERSION:
            differences.append(f"generator version {record.get('version')!r} -> "
                               f"{GENERATOR_VERSION}")
        detail = ", ".join(differences) if differences else "it is incomplete"
        raise FileExistsError(
            f"{dest}: holds a synthetic dataset made with other settings ({detail}); pass "
            f"overwrite=True (--overwrite) to replace it, or choose another folder")
    return True


def _write_dataset(root: Path, config: SyntheticConfig, *, progress: bool) -> None:
    image_dir, label_dir, sets_dir = root / IMAGE_DIR, root / LABEL_DIR, root / SETS_DIR
    for folder in (image_dir, label_dir, sets_dir):
        folder.mkdir(parents=True)
    spec = synthetic_spec(config.num_object_classes)
    train_names, val_names = example_names(config)
    names = train_names + val_names
    for index, name in enumerate(tqdm(names, unit="image", desc="synthetic",
                                      disable=not progress)):
        image, label_map = render_example(config, index)
        Image.fromarray(image, mode="RGB").save(image_dir / f"{name}.jpg", format="JPEG",
                                                quality=config.jpeg_quality)
        write_label(label_dir / f"{name}.png", label_map, spec)
    for split, split_names in (("train", train_names), ("val", val_names),
                               ("trainval", names)):
        (sets_dir / f"{split}.txt").write_text("".join(f"{name}\n" for name in split_names))
    spec.save(root / SPEC_FILENAME)
    # Written last: its presence marks a complete dataset.
    (root / PARAMS_FILENAME).write_text(json.dumps(_params_record(config), indent=2) + "\n")


__all__ = ["OBJECT_CLASSES", "ObjectClass", "SyntheticConfig", "boundary_band",
           "example_names", "generate_synthetic", "read_params", "render_example",
           "synthetic_spec", "write_synthetic"]
