"""The agreement check: an export against the Keras model it came from, on the same
images (see :func:`check_export`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import keras
import numpy as np

from pixelwise.data.spec import DatasetSpec
from pixelwise.export.prepare import check_quantize, float32_model, quantization_name
from pixelwise.inference.imaging import as_uint8_images
from pixelwise.inference.keras_model import KerasSegmenter
from pixelwise.metrics import confusion_matrix, mean_iou

MIN_PIXEL_AGREEMENT = 0.995
MAX_INT8_MEAN_IOU_DROP = 0.01


@dataclass(frozen=True)
class CheckThresholds:
    """What an export must reach against the Keras model.

    ``min_pixel_agreement``: the share of pixels with the same class (None: no bound).
    ``max_mean_iou_drop``: how much lower its mean IoU may be (0.01 = 1 point; None: no
    bound).
    """

    min_pixel_agreement: float | None = None
    max_mean_iou_drop: float | None = None

    @classmethod
    def for_quantization(cls, quantize: str | None) -> "CheckThresholds":
        """>= 99.5% pixel agreement for float32 and float16; int8 within 1 mIoU point."""
        check_quantize(quantize)
        if quantize == "int8":
            return cls(max_mean_iou_drop=MAX_INT8_MEAN_IOU_DROP)
        return cls(min_pixel_agreement=MIN_PIXEL_AGREEMENT)


@dataclass(frozen=True)
class AgreementReport:
    """The export against the Keras model on the same images (see :func:`check_export`)."""

    export_path: str
    quantize: str
    num_images: int
    num_pixels: int
    agreeing_pixels: int
    keras_matrix: np.ndarray
    export_matrix: np.ndarray
    thresholds: CheckThresholds
    failures: tuple[str, ...] = field(default=())

    @property
    def pixel_agreement(self) -> float:
        return self.agreeing_pixels / self.num_pixels if self.num_pixels else float("nan")

    @property
    def keras_mean_iou(self) -> float:
        return mean_iou(self.keras_matrix)

    @property
    def export_mean_iou(self) -> float:
        return mean_iou(self.export_matrix)

    @property
    def mean_iou_drop(self) -> float:
        return self.keras_mean_iou - self.export_mean_iou

    @property
    def passed(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        bounds = []
        if self.thresholds.min_pixel_agreement is not None:
            bounds.append(f"agreement >= {100 * self.thresholds.min_pixel_agreement:.2f}%")
        if self.thresholds.max_mean_iou_drop is not None:
            bounds.append(f"mIoU drop <= {100 * self.thresholds.max_mean_iou_drop:.2f} points")
        lines = [
            f"check of {self.export_path} ({self.quantize}) against the Keras model on "
            f"{self.num_images} image(s):",
            f"  pixels with the same class: {100 * self.pixel_agreement:.3f}% "
            f"({self.agreeing_pixels} of {self.num_pixels})",
            f"  mean IoU: Keras {100 * self.keras_mean_iou:.2f}%, export "
            f"{100 * self.export_mean_iou:.2f}% (drop {100 * self.mean_iou_drop:+.2f} points)",
            f"  {'PASSED' if self.passed else 'FAILED'}"
            + (f" ({', '.join(bounds)})" if bounds else " (no thresholds)"),
        ]
        lines += [f"  - {failure}" for failure in self.failures]
        return lines

    def to_dict(self) -> dict:
        def number(value: float) -> float | None:
            return None if np.isnan(value) else float(value)

        return {"export_path": self.export_path, "quantize": self.quantize,
                "num_images": self.num_images, "num_pixels": self.num_pixels,
                "agreeing_pixels": self.agreeing_pixels,
                "pixel_agreement": number(self.pixel_agreement),
                "keras_mean_iou": number(self.keras_mean_iou),
                "export_mean_iou": number(self.export_mean_iou),
                "mean_iou_drop": number(self.mean_iou_drop),
                "min_pixel_agreement": self.thresholds.min_pixel_agreement,
                "max_mean_iou_drop": self.thresholds.max_mean_iou_drop,
                "passed": self.passed, "failures": list(self.failures),
                "keras_confusion_matrix": self.keras_matrix.tolist(),
                "export_confusion_matrix": self.export_matrix.tolist()}


class ExportCheckError(RuntimeError):
    """An export fell short of its thresholds; ``report`` holds the figures."""

    def __init__(self, report: AgreementReport) -> None:
        super().__init__("\n".join(report.lines()))
        self.report = report


def check_export(model: keras.Model, spec: DatasetSpec, exported, examples: Iterable, *,
                 quantize: str | None = None, thresholds: CheckThresholds | None = None,
                 input_multiple: int = 16, jit_compile: bool = False,
                 run_size: Sequence[int] | None = None,
                 raise_on_failure: bool = True) -> AgreementReport:
    """Compare an export with the Keras model it came from on the same images.

    Args:
        model: the Keras model (float32 reference).
        spec: the classes (for the ignore label and the class count).
        exported: a segmenter of :mod:`pixelwise.inference` (TFLite, SavedModel), or anything with
            ``predict(image) -> class map [H, W]``.
        examples: ``(image, label)`` pairs: uint8 RGB [H, W, 3] and uint8 class indices
            [H, W] (the ignore label left out of the IoUs). For a TFLite export, give images
            at its input size so both see the same pixels.
        quantize: the export's quantisation; picks the default thresholds.
        thresholds: overrides ``CheckThresholds.for_quantization(quantize)``.
        input_multiple: the model's stride (the Keras side pads to it with the mean colour).
        jit_compile: the Keras forward pass through XLA.
        run_size: the size an export runs its network at (``export_tflite(run_size=)``);
            the Keras side then runs at that size too (images resized to it, scores
            resized back), so the two compare the same computation.
        raise_on_failure: raise :class:`ExportCheckError` when a threshold is missed.

    The agreement counts every pixel of every image; each mean IoU comes from one
    confusion matrix over all images (``pixelwise.metrics``).
    """
    thresholds = thresholds or CheckThresholds.for_quantization(quantize)
    fitting = ({} if run_size is None
               else dict(fit_mode="resize", input_size=tuple(int(side) for side in run_size)))
    reference = KerasSegmenter(float32_model(model), spec, input_multiple=input_multiple,
                               jit_compile=jit_compile, **fitting)
    keras_matrix = np.zeros((spec.num_classes, spec.num_classes), dtype=np.int64)
    export_matrix = np.zeros_like(keras_matrix)
    num_images = num_pixels = agreeing = 0
    for image, label_map in examples:
        image = as_uint8_images(image)
        label_map = np.asarray(label_map)
        if label_map.shape != image.shape[:2]:
            raise ValueError(f"example {num_images}: image {image.shape[:2]} and label "
                             f"{label_map.shape} differ in size")
        keras_map = reference.predict(image)
        export_map = np.asarray(exported.predict(image))
        if export_map.shape != keras_map.shape:
            raise ValueError(f"example {num_images}: the export returned a {export_map.shape} "
                             f"class map for a {image.shape[:2]} image")
        agreeing += int(np.count_nonzero(keras_map == export_map))
        num_pixels += keras_map.size
        keras_matrix += confusion_matrix(label_map, keras_map, spec.num_classes, spec.ignore_label)
        export_matrix += confusion_matrix(label_map, export_map, spec.num_classes,
                                          spec.ignore_label)
        num_images += 1
    if num_images == 0:
        raise ValueError("check_export: no examples to check on")
    report = AgreementReport(
        export_path=str(getattr(exported, "model_path", getattr(exported, "path", exported))),
        quantize=quantization_name(quantize), num_images=num_images, num_pixels=num_pixels,
        agreeing_pixels=agreeing, keras_matrix=keras_matrix, export_matrix=export_matrix,
        thresholds=thresholds)
    failures = []
    if (thresholds.min_pixel_agreement is not None
            and not report.pixel_agreement >= thresholds.min_pixel_agreement):
        failures.append(f"pixel agreement {100 * report.pixel_agreement:.3f}% is below "
                        f"{100 * thresholds.min_pixel_agreement:.2f}%")
    if (thresholds.max_mean_iou_drop is not None
            and not report.mean_iou_drop <= thresholds.max_mean_iou_drop):
        failures.append(f"mean IoU {100 * report.export_mean_iou:.2f}% is "
                        f"{100 * report.mean_iou_drop:.2f} points below the Keras model's "
                        f"{100 * report.keras_mean_iou:.2f}% (allowed: "
                        f"{100 * thresholds.max_mean_iou_drop:.2f})")
    report = replace(report, failures=tuple(failures))
    if failures and raise_on_failure:
        raise ExportCheckError(report)
    return report


__all__ = ["AgreementReport", "CheckThresholds", "ExportCheckError", "MAX_INT8_MEAN_IOU_DROP",
           "MIN_PIXEL_AGREEMENT", "check_export"]
