"""Test metrics of a trained run: one confusion matrix per protocol, and what it tells.

    evaluations = evaluate_run("runs/voc", split="test", resolutions=("resized", "original"))

Protocols (``resolution``):

- ``"resized"`` (the textbook's): images and labels resized to the run's input size.
- ``"original"`` (VOC's): each image at its own size, padded at the bottom and right to a
  multiple of the model's stride; the padding is labelled "ignore", so the scores cover
  exactly the original label map.

Optionally, multi-scale and flip inference: the softmax probabilities are averaged over
the scales (each resized to a multiple of the stride, the logits resized back) and, with
``flip``, over the horizontally mirrored images too.

Under a ``tf.distribute`` strategy (``strategy=``, ``pixelwise evaluate --strategy``) the
model is loaded in its scope and each batch of ``batch_size x replicas`` images is split
between the replicas; the probabilities come back to this process in order, and the
confusion matrix, the hardest images and everything else are computed from them exactly
as on one device (``pixelwise.distribute.replica_predictor``). Multi-scale and flip
inference run on the replicas too.

For each protocol the run folder gets ``evaluation/SPLIT-PROTOCOL[-ms][-flip]/`` with
``metrics.json`` (scores, per-class table, confusion matrix, baseline, hardest images,
warnings), ``per_class.csv``, ``confusion.png`` and ``hardest.png`` (the ``hardest``
images of highest cross-entropy: image | ground truth | prediction).

The majority-class baseline is computed from the same confusion matrix: predicting the
most frequent class everywhere gets that class's share of the pixels as its IoU and 0
for every other class present. When the mean IoU comes within ``COLLAPSE_MARGIN`` of the
background-only baseline (class 0 everywhere), a warning says that the predictions
probably collapsed to background.
"""

from __future__ import annotations

import contextlib
import csv
import heapq
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
from keras import ops
from tqdm import tqdm

from pixelwise.data.spec import DatasetSpec
from pixelwise.inference import average_probabilities, class_map_of, predict_probabilities
from pixelwise.io import read_json
from pixelwise.losses import build_loss, per_image_loss
from pixelwise.metrics import ConfusionMatrix, scores
from pixelwise.runs import (
    EVALUATION_DIR,
    RunFolder,
    load_run,
    open_run_data,
    write_atomically,
    write_json_atomically,
)
from pixelwise.visualize import (
    PredictionRow,
    confusion_figure,
    prediction_grid_figure,
    save_figure,
)

if TYPE_CHECKING:
    import tensorflow as tf

RESOLUTIONS = ("resized", "original")
MULTI_SCALES = (0.75, 1.0, 1.25)
COLLAPSE_MARGIN = 0.05


@dataclass
class Evaluation:
    """The result of one protocol on one split."""

    split: str
    resolution: str
    scales: tuple[float, ...]
    flip: bool
    num_images: int
    matrix: np.ndarray
    class_names: tuple[str, ...]
    hardest: list[tuple[str, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hardest_rows: list[PredictionRow] = field(default_factory=list, repr=False)

    @property
    def scores(self) -> dict:
        return scores(self.matrix)

    @property
    def name(self) -> str:
        """``test-resized``, ``test-original-ms-flip``, ...: the output folder's name."""
        parts = [Path(self.split).stem, self.resolution]
        if tuple(self.scales) != (1.0,):
            parts.append("ms")
        if self.flip:
            parts.append("flip")
        return "-".join(parts)

    def to_dict(self) -> dict:
        values = self.scores
        label_pixels = self.matrix.sum(axis=1)
        predicted_pixels = self.matrix.sum(axis=0)
        return {
            "split": self.split,
            "resolution": self.resolution,
            "scales": list(self.scales),
            "flip": self.flip,
            "num_images": self.num_images,
            "pixel_accuracy": values["pixel_accuracy"],
            "mean_accuracy": values["mean_accuracy"],
            "mean_iou": values["mean_iou"],
            "labelled_pixels": values["labelled_pixels"],
            "per_class": [
                {"class": index, "name": name, "iou": values["per_class_iou"][index],
                 "accuracy": values["per_class_accuracy"][index],
                 "label_pixels": int(label_pixels[index]),
                 "predicted_pixels": int(predicted_pixels[index])}
                for index, name in enumerate(self.class_names)],
            "majority_baseline": class_baseline(self.matrix, class_names=self.class_names),
            "background_baseline": class_baseline(self.matrix, 0, self.class_names),
            "confusion_matrix": self.matrix.tolist(),
            "hardest": [{"name": name, "cross_entropy": loss} for name, loss in self.hardest],
            "warnings": list(self.warnings),
        }

    def table(self) -> str:
        """The scores and the per-class table as text."""
        values = self.scores
        width = max(8, *(len(name) for name in self.class_names))
        lines = [f"{self.split} ({self.name}): {self.num_images} images, "
                 f"{values['labelled_pixels']:,} labelled pixels",
                 f"  pixel accuracy {_percent(values['pixel_accuracy'])}   mean accuracy "
                 f"{_percent(values['mean_accuracy'])}   mean IoU {_percent(values['mean_iou'])}",
                 f"  {'class':<{width + 4}} {'IoU':>7} {'accuracy':>9} {'pixels':>12}"]
        label_pixels = self.matrix.sum(axis=1)
        for index, name in enumerate(self.class_names):
            lines.append(f"  {index:3d} {name:<{width}} {_percent(values['per_class_iou'][index]):>7}"
                         f" {_percent(values['per_class_accuracy'][index]):>9}"
                         f" {int(label_pixels[index]):>12,d}")
        baseline = class_baseline(self.matrix, class_names=self.class_names)
        if baseline["class"] is not None:
            lines.append(f"  majority-class baseline ({baseline['name']} everywhere): mean IoU "
                         f"{_percent(baseline['mean_iou'])}, pixel accuracy "
                         f"{_percent(baseline['pixel_accuracy'])}")
        lines.extend(f"  WARNING: {warning}" for warning in self.warnings)
        return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def class_baseline(matrix: np.ndarray, class_index: int | None = None,
                   class_names: Sequence[str] | None = None) -> dict:
    """Scores of predicting one class everywhere (default: the most frequent label),
    from the label counts (row sums) of ``matrix``: ``{"class", "name", "mean_iou",
    "pixel_accuracy"}`` (the name where ``class_names`` are given)."""
    matrix = np.asarray(matrix, dtype=np.int64)
    label_pixels = matrix.sum(axis=1)
    if label_pixels.sum() == 0:
        return {"class": None, "name": None, "mean_iou": None, "pixel_accuracy": None}
    index = int(np.argmax(label_pixels)) if class_index is None else int(class_index)
    constant = np.zeros_like(matrix)
    constant[:, index] = label_pixels
    values = scores(constant)
    name = class_names[index] if class_names is not None else None
    return {"class": index, "name": name, "mean_iou": values["mean_iou"],
            "pixel_accuracy": values["pixel_accuracy"]}


def collapse_warning(matrix: np.ndarray, margin: float = COLLAPSE_MARGIN) -> str | None:
    """A warning when the mean IoU is within ``margin`` of the background-only baseline's."""
    values = scores(matrix)
    baseline = class_baseline(matrix, 0)
    if values["mean_iou"] is None or baseline["mean_iou"] is None:
        return None
    if values["mean_iou"] < baseline["mean_iou"] + margin:
        return (f"the predictions look collapsed to background: mean IoU "
                f"{_percent(values['mean_iou'])} is within {100 * margin:.0f} points of the "
                f"background-only baseline's {_percent(baseline['mean_iou'])} (pixel accuracy "
                f"{_percent(values['pixel_accuracy'])} against its "
                f"{_percent(baseline['pixel_accuracy'])}). Train longer, check the class "
                f"weighting, or, for a short run from scratch, lower the batch-norm momentum")
    return None


# --------------------------------------------------------------------------- inference


class HardestImages:
    """The ``count`` items of highest loss among those offered, kept in a min-heap while a
    dataset streams past; of equal losses the earlier item ranks first."""

    def __init__(self, count: int) -> None:
        self.count = int(count)
        self._heap: list[tuple[float, int, object]] = []  # (loss, -arrival, item)
        self._arrivals = 0

    def offer(self, loss: float, make_item: Callable[[], object]) -> None:
        """Offer the next item (in dataset order); ``make_item()`` builds it only if kept."""
        key = (float(loss), -self._arrivals)
        self._arrivals += 1
        if len(self._heap) < self.count:
            heapq.heappush(self._heap, (*key, make_item()))
        elif self.count and key > self._heap[0][:2]:
            heapq.heapreplace(self._heap, (*key, make_item()))

    def worst_first(self) -> list[tuple[float, object]]:
        """``(loss, item)`` of the kept items, highest loss first."""
        ordered = sorted(self._heap, key=lambda entry: (-entry[0], -entry[1]))
        return [(loss, item) for loss, _, item in ordered]


def _labelled_extent(label_map: np.ndarray, ignore_label: int) -> tuple[int, int]:
    """Height and width up to the last row / column holding a labelled pixel (drops the
    padding of the original-resolution protocol)."""
    rows = np.flatnonzero((label_map != ignore_label).any(axis=1))
    columns = np.flatnonzero((label_map != ignore_label).any(axis=0))
    if rows.size == 0:
        return label_map.shape
    return int(rows[-1]) + 1, int(columns[-1]) + 1


def _hardest_row(image, label_map: np.ndarray, class_map: np.ndarray, name, loss: float,
                 ignore_label: int) -> PredictionRow:
    """image | label | prediction of one image, cut to its labelled extent."""
    caption = name.decode() if isinstance(name, bytes) else str(name)
    height, width = _labelled_extent(label_map, ignore_label)
    return PredictionRow(np.clip(np.asarray(image)[:height, :width], 0, 255).astype(np.uint8),
                         label_map[:height, :width], class_map[:height, :width],
                         f"{caption}\nCE {loss:.3f}")


def evaluate_model(model: keras.Model, spec: DatasetSpec, batches: Iterable, *, split: str,
                   resolution: str, input_multiple: int, scales: Sequence[float] = (1.0,),
                   flip: bool = False, hardest: int = 0, num_batches: int | None = None,
                   progress: bool = False,
                   strategy: tf.distribute.Strategy | None = None) -> Evaluation:
    """Accumulate the confusion matrix of ``model`` over ``batches`` of
    ``(images, labels, names)``; keep the ``hardest`` images by per-image cross-entropy.

    With a ``strategy`` (``model`` created in its scope) each batch is split between its
    replicas (see the module docstring); None or the default strategy: one device.
    """
    from pixelwise import distribute

    if distribute.is_default(strategy):
        def infer(images) -> np.ndarray:
            return predict_probabilities(model, images, input_multiple=input_multiple,
                                         scales=scales, flip=flip)
    else:
        infer = distribute.replica_predictor(strategy, lambda images: average_probabilities(
            model, images, input_multiple=input_multiple, scales=scales, flip=flip))
    confusion = ConfusionMatrix(spec.num_classes, spec.ignore_label)
    cross_entropy = build_loss("ce", num_classes=spec.num_classes, ignore_label=spec.ignore_label)
    worst = HardestImages(hardest)
    num_images = 0
    for images, labels, names in tqdm(batches, total=num_batches, unit="batch",
                                      desc=f"evaluate {split}", disable=not progress):
        probabilities = infer(images)
        labels = np.asarray(labels)
        names = np.asarray(names)
        predictions = class_map_of(probabilities).astype(np.uint8)
        confusion.update(labels, predictions)
        if hardest:
            log_probabilities = np.log(np.maximum(probabilities, 1e-12))
            losses = np.asarray(ops.convert_to_numpy(
                per_image_loss(cross_entropy, labels, log_probabilities)))
            for index, loss in enumerate(losses.tolist()):
                worst.offer(loss, lambda: _hardest_row(images[index], labels[index],
                                                       predictions[index], names[index], loss,
                                                       spec.ignore_label))
        num_images += len(labels)
    worst_first = worst.worst_first()
    evaluation = Evaluation(
        split=split, resolution=resolution, scales=tuple(float(s) for s in scales), flip=flip,
        num_images=num_images, matrix=confusion.matrix.copy(), class_names=spec.class_names,
        hardest=[(row.caption.split("\n")[0], float(loss)) for loss, row in worst_first],
        hardest_rows=[row for _, row in worst_first])
    warning = collapse_warning(evaluation.matrix)
    if warning:
        evaluation.warnings.append(warning)
    return evaluation


# --------------------------------------------------------------------------- outputs


def write_evaluation(evaluation: Evaluation, spec: DatasetSpec, out_dir: str | Path,
                     extra: dict | None = None) -> list[Path]:
    """Write metrics.json, per_class.csv, confusion.png and (if any) hardest.png."""
    out_dir = Path(out_dir)
    values = {**(extra or {}), **evaluation.to_dict()}
    written = [out_dir / "metrics.json", out_dir / "per_class.csv", out_dir / "confusion.png"]
    write_json_atomically(written[0], values)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["class", "name", "iou", "accuracy", "label_pixels", "predicted_pixels"])
    for row in values["per_class"]:
        writer.writerow([row["class"], row["name"], _csv_number(row["iou"]),
                         _csv_number(row["accuracy"]), row["label_pixels"], row["predicted_pixels"]])
    write_atomically(written[1], lambda temporary: temporary.write_text(table.getvalue()))
    save_figure(confusion_figure(evaluation.matrix, spec.class_names,
                                 title=f"{evaluation.name}: mean IoU "
                                       f"{_percent(evaluation.scores['mean_iou'])}"),
                written[2])
    if evaluation.hardest_rows:
        written.append(out_dir / "hardest.png")
        save_figure(prediction_grid_figure(
            evaluation.hardest_rows, spec,
            title=f"{evaluation.name}: the {len(evaluation.hardest_rows)} hardest images"),
            written[3])
    return written


def _csv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def evaluate_run(run_dir: str | Path, *, split: str | None = None,
                 resolutions: Sequence[str] = ("resized",), multi_scale: bool = False,
                 flip: bool = False, hardest: int = 8, data: str | Path | None = None,
                 batch_size: int | None = None, out_dir: str | Path | None = None,
                 echo: Callable[[str], None] = print, progress: bool = True,
                 strategy: tf.distribute.Strategy | None = None) -> list[Evaluation]:
    """Evaluate the best model of a run on ``split`` under each of ``resolutions``.

    Args:
        run_dir: a run folder written by ``pixelwise train``.
        split: the split to evaluate (default: the run's test split, of its data source).
        resolutions: "resized" and/or "original" (see the module docstring).
        multi_scale: average over the scales ``MULTI_SCALES``.
        flip: average over horizontal flips too.
        hardest: how many of the hardest images to draw (0: none).
        data: another dataset (folder or records) with the same classes.
        batch_size: images per batch on each replica (default: the run's training batch
            size); a batch holds ``batch_size x replicas`` images.
        out_dir: where the results go (default: RUN/evaluation).
        echo: where the tables go.
        progress: show a progress bar.
        strategy: a ``tf.distribute`` strategy of this machine, from
            ``pixelwise.distribute.make_strategy(..., one_machine=True)`` ("one" or
            "mirrored"); None: one device. The scores are the one-device scores.

    Prints each table, writes the files listed in the module docstring, and returns the
    evaluations.
    """
    from pixelwise import distribute
    from pixelwise.data.pipeline import make_dataset

    for resolution in resolutions:
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, "
                             f"got {resolution!r}")
    distributed = not distribute.is_default(strategy)
    if distributed and distribute.num_workers(strategy) > 1:
        raise ValueError(f"evaluation runs on one machine; {distribute.describe(strategy)} "
                         f"spans several: use make_strategy('mirrored') there")
    folder = RunFolder(Path(run_dir))
    with strategy.scope() if distributed else contextlib.nullcontext():
        model, spec, config = load_run(folder.root)
    source = open_run_data(data or config.data.source, spec)
    out_root = Path(out_dir) if out_dir is not None else folder.root / EVALUATION_DIR
    scales = MULTI_SCALES if multi_scale else (1.0,)
    replicas = strategy.num_replicas_in_sync if distributed else 1
    batch_size = distribute.global_batch_size(batch_size or config.train.batch_size, replicas)
    if distributed:
        echo(distribute.describe(strategy) + f"; global batch {batch_size}")
    from pixelwise.data.sources import describe_split

    split = split or config.data.test_split
    echo(f"evaluating on {describe_split(source, split, config.data.split_seed)}")
    num_examples = source.num_examples(split, config.data.split_seed)
    evaluations = []
    for resolution in resolutions:
        batches = make_dataset(source, split, batch_size=batch_size,
                               input_size=config.data.input_size, training=False,
                               eval_resolution=resolution,
                               input_multiple=config.model.input_multiple,
                               split_seed=config.data.split_seed, with_names=True)
        evaluation = evaluate_model(
            model, spec, batches, split=split, resolution=resolution,
            input_multiple=config.model.input_multiple, scales=scales, flip=flip,
            hardest=hardest, num_batches=None if resolution == "original" else
            -(-num_examples // batch_size), progress=progress, strategy=strategy)
        written = write_evaluation(evaluation, spec, out_root / evaluation.name, extra={
            "run": str(folder.root), "model": str(folder.best_model_path),
            "data": str(data or config.data.source)})
        echo(evaluation.table())
        echo(f"wrote {', '.join(str(path) for path in written)}")
        evaluations.append(evaluation)
    return evaluations


def read_metrics(path: str | Path) -> dict:
    """A metrics.json written by ``evaluate_run``; ValueError naming a missing or damaged one."""
    return read_json(path, what="metrics file (pixelwise evaluate writes it)")


__all__ = ["COLLAPSE_MARGIN", "Evaluation", "HardestImages", "MULTI_SCALES", "RESOLUTIONS",
           "class_baseline", "collapse_warning", "evaluate_model",
           "evaluate_run", "read_metrics", "write_evaluation"]
