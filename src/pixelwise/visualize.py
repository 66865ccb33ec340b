"""Pictures of a run: image | ground truth | prediction grids, the training curves, and
confusion matrices.

    paths = visualize_run("runs/demo", split="test", num_images=8)
    # runs/demo/figures/predictions-test.png, runs/demo/figures/training_curves.png

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend), and
written atomically. The grid's legend lists the classes present in its labels or
predictions, with their palette colours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from pixelwise.data.palette import colorize
from pixelwise.data.spec import DatasetSpec
from pixelwise.inference.imaging import class_map_of
from pixelwise.runs import FIGURES_DIR, RunFolder, load_run, open_run_data, write_atomically

CURVE_PANELS = (
    ("loss", ("loss", "val_loss"), "loss"),
    ("mean IoU", ("mean_iou", "val_mean_iou"), "mean IoU"),
    ("learning rate", ("learning_rate",), "learning rate"),
)


@dataclass
class PredictionRow:
    """One row of a grid: an RGB image (uint8 [H, W, 3]), its labels and the prediction
    (uint8 [H, W] class indices), and a caption."""

    image: np.ndarray
    label_map: np.ndarray | None
    prediction: np.ndarray
    caption: str = ""


def save_figure(figure: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``figure`` as a PNG at ``path`` atomically."""
    FigureCanvasAgg(figure)
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=dpi))
    return Path(path)


def prediction_grid_figure(rows: Sequence[PredictionRow], spec: DatasetSpec,
                           title: str | None = None) -> Figure:
    """A figure with one row per ``PredictionRow``: image | ground truth | prediction,
    and a legend of the classes present."""
    if not rows:
        raise ValueError("a prediction grid needs at least one row")
    has_labels = any(row.label_map is not None for row in rows)
    columns = ("image", "ground truth", "prediction") if has_labels else ("image", "prediction")
    figure = Figure(figsize=(2.6 * len(columns) + 1.8, 2.6 * len(rows) + 0.6))
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    present: set[int] = set()
    for row_axes, row in zip(axes, rows):
        panels = [row.image]
        if has_labels:
            panels.append(colorize(row.label_map, spec) if row.label_map is not None
                          else np.zeros_like(row.image))
            if row.label_map is not None:
                present.update(int(value) for value in np.unique(row.label_map))
        panels.append(colorize(row.prediction, spec))
        present.update(int(value) for value in np.unique(row.prediction))
        for axis, panel in zip(row_axes, panels):
            axis.imshow(panel, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
        if row.caption:
            row_axes[0].set_ylabel(row.caption, fontsize=8)
    for axis, column in zip(axes[0], columns):
        axis.set_title(column, fontsize=10)
    handles = [Patch(facecolor=np.asarray(spec.colors[index]) / 255.0, edgecolor="black",
                     label=f"{index} {spec.class_names[index]}")
               for index in sorted(present) if index < spec.num_classes]
    if spec.ignore_label in present:
        handles.append(Patch(facecolor=(224 / 255, 224 / 255, 192 / 255), edgecolor="black",
                             label=f"{spec.ignore_label} (ignore)"))
    figure.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    if title:
        figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 0.8, 0.97 if title else 1.0))
    return figure


def read_log(log_path: str | Path) -> dict[str, np.ndarray]:
    """The columns of a Keras CSV log as float arrays (``"NA"`` and blanks become NaN)."""
    import csv

    log_path = Path(log_path)
    if not log_path.is_file():
        raise FileNotFoundError(f"{log_path}: no training log; train the run first")
    with open(log_path, newline="") as handle:
        records = list(csv.DictReader(handle))
    if not records:
        raise ValueError(f"{log_path}: the log holds no finished epoch yet")
    columns: dict[str, np.ndarray] = {}
    for key in records[0]:
        values = []
        for record in records:
            try:
                values.append(float(record[key]))
            except (TypeError, ValueError):
                values.append(float("nan"))
        columns[key] = np.asarray(values)
    return columns


def training_curves_figure(log_path: str | Path) -> Figure:
    """Loss, mean IoU (train and val) and learning rate per epoch, from train_log.csv."""
    columns = read_log(log_path)
    epochs = columns["epoch"] + 1
    figure = Figure(figsize=(13, 3.6))
    axes = figure.subplots(1, len(CURVE_PANELS))
    for axis, (title, keys, ylabel) in zip(axes, CURVE_PANELS):
        for key in keys:
            if key in columns and not np.all(np.isnan(columns[key])):
                axis.plot(epochs, columns[key], marker="o", markersize=3,
                          label="validation" if key.startswith("val_") else "training")
        learning_rates = columns.get("learning_rate")
        if keys == ("learning_rate",) and learning_rates is not None and np.all(learning_rates > 0):
            axis.set_yscale("log")
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        if len(keys) > 1:
            axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str], title: str = "") -> Figure:
    """The confusion matrix, each row normalised by its label count (recall), with the
    percentages written in the cells when there are at most 25 classes."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    size = max(4.0, 0.45 * len(class_names) + 2.5)
    figure = Figure(figsize=(size + 1.0, size))
    axis = figure.subplots()
    image = axis.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the label's pixels")
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, labels=class_names, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(ticks, labels=class_names, fontsize=8)
    axis.set_xlabel("prediction")
    axis.set_ylabel("label")
    if len(class_names) <= 25:
        for row in range(len(class_names)):
            for column in range(len(class_names)):
                value = normalised[row, column]
                if value >= 0.005:
                    axis.text(column, row, f"{100 * value:.0f}", ha="center", va="center",
                              fontsize=7, color="white" if value > 0.5 else "black")
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return figure


def grid_rows(model, spec: DatasetSpec, dataset, num_images: int) -> list[PredictionRow]:
    """Up to ``num_images`` rows from a dataset of ``(images, labels, names)`` batches."""
    rows: list[PredictionRow] = []
    for images, labels, names in dataset:
        predictions = class_map_of(model(images, training=False)).astype(np.uint8)
        for image, label_map, prediction, name in zip(np.asarray(images), np.asarray(labels),
                                                      predictions, np.asarray(names)):
            caption = name.decode() if isinstance(name, bytes) else str(name)
            rows.append(PredictionRow(np.clip(image, 0, 255).astype(np.uint8), label_map,
                                      prediction, caption))
            if len(rows) == num_images:
                return rows
    return rows


def spread_indices(total: int, count: int) -> np.ndarray:
    """``count`` indices (at most ``total``) spread evenly over ``0 .. total - 1``, the first
    and the last included."""
    if total < 1:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, total - 1, min(count, total))).astype(np.int64))


def visualize_run(run_dir: str | Path, *, split: str = "test", num_images: int = 8,
                  data: str | Path | None = None, out_dir: str | Path | None = None,
                  echo: Callable[[str], None] = print) -> list[Path]:
    """Write the prediction grid of ``num_images`` images of ``split`` (resized protocol)
    and the training curves; return the paths written.

    Args:
        run_dir: a run folder.
        split: the split whose images are shown: ``num_images`` spread evenly over it (its
            first and its last included), since neighbouring frames of a video sequence
            are near duplicates.
        num_images: rows of the grid.
        data: another dataset (folder or records) than the run's own, same classes.
        out_dir: where the pictures go (default: RUN/figures).
    """
    import tensorflow as tf

    from pixelwise.data.pipeline import make_dataset
    from pixelwise.data.sources import describe_split

    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    folder = RunFolder(Path(run_dir))
    model, spec, config = load_run(folder.root)
    out_dir = Path(out_dir) if out_dir is not None else folder.root / FIGURES_DIR
    source = open_run_data(data or config.data.source, spec)
    total = source.num_examples(split, config.data.split_seed)
    chosen = spread_indices(total, num_images)
    echo(f"showing {len(chosen)} image(s) spread over "
         f"{describe_split(source, split, config.data.split_seed)}")
    dataset = make_dataset(source, split, batch_size=1, input_size=config.data.input_size,
                           training=False, split_seed=config.data.split_seed, with_names=True)
    picked = dataset.enumerate().filter(
        lambda index, batch: tf.reduce_any(tf.equal(index, chosen))).map(
        lambda index, batch: batch)
    rows = grid_rows(model, spec, picked, num_images)
    written = [save_figure(prediction_grid_figure(
        rows, spec, title=f"{folder.root.name}: {split} (image | ground truth | prediction)"),
        out_dir / f"predictions-{Path(split).stem}.png")]
    if folder.log_path.is_file():
        written.append(save_figure(training_curves_figure(folder.log_path),
                                   out_dir / "training_curves.png"))
    else:
        echo(f"{folder.log_path}: no training log, so no training curves")
    for path in written:
        echo(f"wrote {path}")
    return written


__all__ = ["PredictionRow", "confusion_figure", "grid_rows", "prediction_grid_figure", "read_log",
           "save_figure", "spread_indices", "training_curves_figure", "visualize_run"]
