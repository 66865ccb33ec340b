"""Segmentation scores from one dataset-level confusion matrix.

The matrix counts pixels: ``matrix[label, prediction]``, int64, pixels whose label is the
ignore label (255) left out. It is accumulated over the whole dataset and every score
is a pure function of it, so scores do not depend on how the data was batched:

- pixel accuracy: correct pixels / labelled pixels;
- per-class accuracy (recall): ``matrix[c, c] / matrix[c, :].sum()``, NaN for a class
  absent from the labels; mean accuracy averages the classes that are present;
- per-class IoU: ``matrix[c, c] / (row_c + column_c - matrix[c, c])``, NaN where that
  union is empty; mean IoU averages the classes with a non-empty union.

Three layers: pure NumPy functions (:func:`confusion_matrix`, :func:`scores`, ...), a
NumPy accumulator (:class:`ConfusionMatrix`), and Keras metrics taking logits
(:class:`PixelAccuracy`, :class:`MeanAccuracy`, :class:`MeanIoU`) for ``fit`` and
``evaluate``, written with ``keras.ops`` and safe under ``tf.distribute``. (The hardest
images of an evaluation are ranked by ``pixelwise.evaluate``.)
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from pixelwise.data.spec import IGNORE_LABEL

# ---------------------------------------------------------------------------------------
# Pure NumPy


def confusion_matrix(labels, predictions, num_classes: int,
                     ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """Pixel counts ``[label, prediction]``, int64 ``[C, C]``, with one ``bincount``.

    ``labels`` and ``predictions``: integer class maps of the same shape (any rank;
    labels may carry a trailing axis of 1). Pixels labelled ``ignore_label`` are skipped.
    A label or prediction that is neither a class nor (for labels) the ignore label is
    an error.
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.ndim == predictions.ndim + 1 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.shape != predictions.shape:
        raise ValueError(f"labels have shape {labels.shape} but predictions {predictions.shape}; "
                         f"pass class maps (argmax of the logits), not logits")
    if not all(np.issubdtype(values.dtype, np.integer) for values in (labels, predictions)):
        raise ValueError(f"labels ({labels.dtype}) and predictions ({predictions.dtype}) "
                         f"must be integer class indices")
    labelled = labels != ignore_label
    labels = labels[labelled].astype(np.int64)
    predictions = predictions[labelled].astype(np.int64)
    for what, values in (("label", labels), ("prediction", predictions)):
        bad = (values < 0) | (values >= num_classes)
        if bad.any():
            also = f" or {ignore_label}" if what == "label" else ""
            raise ValueError(f"{what} value {int(values[bad][0])} is not a class "
                             f"(0..{num_classes - 1}){also}")
    counts = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _checked_matrix(matrix) -> np.ndarray:
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"a confusion matrix is square [C, C], got shape {matrix.shape}")
    return matrix.astype(np.float64)


def pixel_accuracy(matrix) -> float:
    """Correct pixels over labelled pixels; NaN when nothing is labelled."""
    matrix = _checked_matrix(matrix)
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total > 0 else float("nan")


def per_class_accuracy(matrix) -> np.ndarray:
    """``[C]`` recall of each class; NaN for a class with no labelled pixel."""
    matrix = _checked_matrix(matrix)
    label_totals = matrix.sum(axis=1)
    accuracy = np.full(len(matrix), np.nan)
    present = label_totals > 0
    accuracy[present] = np.diag(matrix)[present] / label_totals[present]
    return accuracy


def per_class_iou(matrix) -> np.ndarray:
    """``[C]`` intersection over union of each class; NaN where the union is empty."""
    matrix = _checked_matrix(matrix)
    true_positives = np.diag(matrix)
    unions = matrix.sum(axis=1) + matrix.sum(axis=0) - true_positives
    iou = np.full(len(matrix), np.nan)
    defined = unions > 0
    iou[defined] = true_positives[defined] / unions[defined]
    return iou


def _mean_of_defined(values: np.ndarray) -> float:
    defined = ~np.isnan(values)
    return float(values[defined].mean()) if defined.any() else float("nan")


def mean_accuracy(matrix) -> float:
    """Mean of the per-class accuracies over the classes present in the labels."""
    return _mean_of_defined(per_class_accuracy(matrix))


def mean_iou(matrix) -> float:
    """Mean of the per-class IoUs over the classes whose union is non-empty."""
    return _mean_of_defined(per_class_iou(matrix))


def _json_number(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def scores(matrix) -> dict:
    """Every score of the matrix, JSON-ready: undefined values are None, lists per class."""
    matrix = np.asarray(matrix)
    return {
        "pixel_accuracy": _json_number(pixel_accuracy(matrix)),
        "mean_accuracy": _json_number(mean_accuracy(matrix)),
        "mean_iou": _json_number(mean_iou(matrix)),
        "per_class_accuracy": [_json_number(value) for value in per_class_accuracy(matrix)],
        "per_class_iou": [_json_number(value) for value in per_class_iou(matrix)],
        "labelled_pixels": int(matrix.sum()),
    }


class ConfusionMatrix:
    """Accumulates :func:`confusion_matrix` over batches (NumPy, exact int64 counts)."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL) -> None:
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, labels, predictions) -> None:
        """Add one batch of class maps (labels and predictions of the same shape)."""
        self.matrix += confusion_matrix(labels, predictions, self.num_classes, self.ignore_label)

    def reset(self) -> None:
        self.matrix[...] = 0

    def scores(self) -> dict:
        return scores(self.matrix)


# ---------------------------------------------------------------------------------------
# Keras metrics (keras.ops only)


@keras.saving.register_keras_serializable(package="pixelwise")
class ConfusionMatrixMetric(keras.metrics.Metric):
    """Accumulates the confusion matrix of ``(labels, logits)`` batches in an int64 state.

    ``update_state(labels, logits)``: labels ``[B, H, W]`` (or ``[B, H, W, 1]``) of class
    indices, any integer dtype; logits ``[B, H, W, C]`` (argmax is the prediction).
    Labels outside ``0..num_classes-1`` (the ignore label among them) are not counted.
    The state is an int64 variable (float32 counts stop being exact past 2**24 pixels)
    with ``aggregation="sum"``: under a ``tf.distribute`` strategy each replica counts its
    share and reading the state sums them. ``result()`` here is the matrix itself;
    the subclasses turn it into one score with the formulas of the NumPy functions.
    """

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 name: str = "confusion_matrix", dtype=None) -> None:
        super().__init__(name=name, dtype=dtype)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if 0 <= int(ignore_label) < int(num_classes):
            raise ValueError(f"ignore_label {ignore_label} is a class index (0..{num_classes - 1})")
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.total_matrix = self.add_variable(
            shape=(self.num_classes, self.num_classes), initializer="zeros", dtype="int64",
            aggregation="sum", name="total_matrix")

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        if sample_weight is not None:
            raise ValueError(f"{self.name} counts pixels and takes no sample_weight; "
                             f"give pixels to leave out the label {self.ignore_label} instead")
        labels = ops.convert_to_tensor(y_true)
        logits = ops.convert_to_tensor(y_pred)
        if len(labels.shape) == len(logits.shape) and labels.shape[-1] == 1:
            labels = ops.squeeze(labels, axis=-1)
        if logits.shape[-1] is not None and logits.shape[-1] != self.num_classes:
            raise ValueError(f"{self.name}: logits have {logits.shape[-1]} channels but the "
                             f"metric counts {self.num_classes} classes")
        known_sizes = zip(labels.shape, logits.shape[:-1])
        if len(labels.shape) != len(logits.shape) - 1 or any(
                a is not None and b is not None and a != b for a, b in known_sizes):
            raise ValueError(f"{self.name}: labels of shape {labels.shape} do not match "
                             f"logits of shape {logits.shape} ([B, H, W] and [B, H, W, C])")
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        predictions = ops.reshape(ops.cast(ops.argmax(logits, axis=-1), "int32"), (-1,))
        is_class = ops.logical_and(ops.greater_equal(labels, 0),
                                   ops.less(labels, self.num_classes))
        cells = ops.where(is_class, labels * self.num_classes + predictions, 0)
        # A bincount with a static length (segment_sum's num_segments), so XLA compiles it.
        counts = ops.segment_sum(ops.cast(is_class, "int32"), cells,
                                 num_segments=self.num_classes * self.num_classes)
        batch_matrix = ops.reshape(ops.cast(counts, "int64"), (self.num_classes, self.num_classes))
        self.total_matrix.assign_add(batch_matrix)

    @property
    def matrix(self) -> np.ndarray:
        """The accumulated matrix as int64 NumPy ``[C, C]`` (summed over replicas)."""
        return np.asarray(self.total_matrix.numpy(), dtype=np.int64)

    def result(self):
        return ops.copy(self.total_matrix)

    def _float_parts(self):
        """True positives, label totals and prediction totals as float64 ``[C]``."""
        matrix = ops.cast(ops.convert_to_tensor(self.total_matrix), "float64")
        return ops.diagonal(matrix), ops.sum(matrix, axis=1), ops.sum(matrix, axis=0)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes,
                "ignore_label": self.ignore_label}


def _mean_where(values, defined):
    """Mean of ``values`` where ``defined``; NaN when nothing is (0 / 0)."""
    total = ops.sum(ops.where(defined, values, ops.zeros_like(values)))
    return total / ops.sum(ops.cast(defined, values.dtype))


@keras.saving.register_keras_serializable(package="pixelwise")
class PixelAccuracy(ConfusionMatrixMetric):
    """Correct pixels over labelled pixels, from the accumulated matrix."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 name: str = "pixel_accuracy", dtype=None) -> None:
        super().__init__(num_classes, ignore_label, name=name, dtype=dtype)

    def result(self):
        true_positives, label_totals, _ = self._float_parts()
        return ops.cast(ops.sum(true_positives) / ops.sum(label_totals), self.dtype)


@keras.saving.register_keras_serializable(package="pixelwise")
class MeanAccuracy(ConfusionMatrixMetric):
    """Mean per-class accuracy over the classes present in the labels."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 name: str = "mean_accuracy", dtype=None) -> None:
        super().__init__(num_classes, ignore_label, name=name, dtype=dtype)

    def result(self):
        true_positives, label_totals, _ = self._float_parts()
        present = ops.greater(label_totals, 0.0)
        accuracy = true_positives / ops.where(present, label_totals, ops.ones_like(label_totals))
        return ops.cast(_mean_where(accuracy, present), self.dtype)


@keras.saving.register_keras_serializable(package="pixelwise")
class MeanIoU(ConfusionMatrixMetric):
    """Mean intersection over union over the classes whose union is non-empty."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 name: str = "mean_iou", dtype=None) -> None:
        super().__init__(num_classes, ignore_label, name=name, dtype=dtype)

    def result(self):
        true_positives, label_totals, prediction_totals = self._float_parts()
        unions = label_totals + prediction_totals - true_positives
        defined = ops.greater(unions, 0.0)
        iou = true_positives / ops.where(defined, unions, ops.ones_like(unions))
        return ops.cast(_mean_where(iou, defined), self.dtype)
