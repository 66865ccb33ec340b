"""``pixelwise export`` on a run folder: export its best model, then check the export on
a split of the run's data, its test split by default (:func:`export_run`). A registered
model's name or a .keras file exports the same way, checked on the dataset given
(:mod:`pixelwise.export.sources`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixelwise.drivable import drivable_classes
from pixelwise.export.check import AgreementReport, CheckThresholds, ExportCheckError, check_export
from pixelwise.export.prepare import (
    EXPORT_FORMATS,
    check_input_size,
    check_quantize,
    float32_model,
    quantization_name,
)
from pixelwise.export.saved_model import export_saved_model
from pixelwise.export.sources import EXPORT_DIR, open_export_source
from pixelwise.export.tflite import export_tflite
from pixelwise.inference.imaging import as_uint8_images
from pixelwise.inference.segmenter import Segmenter
from pixelwise.io import write_json_atomically

DEFAULT_CALIBRATION_IMAGES = 100


def split_examples(source, split: str, *, input_size: Sequence[int], split_seed: int,
                   limit: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(image, label)`` pairs of a split resized to ``input_size`` by the evaluation
    pipeline (bilinear image rounded to uint8, nearest label), in list order."""
    from pixelwise.data.pipeline import make_dataset

    dataset = make_dataset(source, split, batch_size=1, input_size=tuple(input_size),
                           training=False, split_seed=split_seed)
    if limit is not None:
        dataset = dataset.take(limit)
    return [(as_uint8_images(np.asarray(images)[0]), np.asarray(labels)[0])
            for images, labels in dataset]


def default_export_path(run_dir: str | Path, export_format: str, quantize: str | None, *,
                        export_dir: str | Path | None = None) -> Path:
    """RUN/export/saved_model or RUN/export/model_{float32,float16,int8}.tflite (or in
    ``export_dir``)."""
    folder = Path(export_dir) if export_dir is not None else Path(run_dir) / EXPORT_DIR
    if export_format == "saved_model":
        return folder / "saved_model"
    return folder / f"model_{quantization_name(quantize)}.tflite"


def check_report_path(export_path: str | Path) -> Path:
    """Where the check of an export is written: ``NAME_check.json`` beside it."""
    export_path = Path(export_path)
    return export_path.parent / f"{export_path.stem}_check.json"


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` wrote."""

    path: Path
    report: AgreementReport | None
    report_path: Path | None


def export_run(run_dir: str | Path, *, export_format: str, quantize: str | None = None,
               input_size: Sequence[int] | None = None, out: str | Path | None = None,
               calibration_count: int = DEFAULT_CALIBRATION_IMAGES, check: bool = True,
               check_limit: int | None = None, check_split: str | None = None,
               thresholds: CheckThresholds | None = None,
               include_probabilities: bool = False,
               drivable: str | Sequence[str] | None = None, jit_compile: bool = False,
               run_size: Sequence[int] | None = None, data: str | Path | None = None,
               overwrite: bool = True, echo: Callable[[str], None] = print) -> ExportResult:
    """Export the best model of a run and check it against the Keras model on a split.

    Args:
        run_dir: a run folder written by ``pixelwise train``, a registered model's name
            (``pixelwise model list``) or a .keras file (in a model folder, or beside a
            run's config.json); see :mod:`pixelwise.export.sources`.
        export_format: "saved_model" or "tflite".
        quantize: TFLite only: None (float32), "float16" or "int8".
        input_size: the TFLite input size and the check's image size (default: the run's
            training input size).
        out: the SavedModel folder or .tflite file (default: :func:`default_export_path`).
        calibration_count: int8: how many training images calibrate the activations.
        check: run :func:`check_export` on the run's test split and write
            ``NAME_check.json`` beside the export; a miss raises :class:`ExportCheckError`
            (the export stays on disk for inspection).
        check_limit: check on the first N images of the split only (default: all).
        check_split: the split the check runs on (default: the run's test split, which
            neither training nor model selection saw).
        thresholds: override the default thresholds of the check.
        include_probabilities: also output probabilities.
        drivable: TFLite: also output the drivable probability, the summed probability of
            these class names (a list or "road,pavement"; see :mod:`pixelwise.drivable`).
        jit_compile: XLA for the SavedModel's serving function and the check's Keras side.
        run_size: TFLite: the size the network runs at inside the graph, the input resized
            to it and the logits back to ``input_size`` (a camera's frame in and out, the
            work of a smaller size); the check's Keras side runs at it too.
        data: the dataset the check and int8 calibration read (default: the run's); a
            model name or a .keras file without a run needs it for those two.
        overwrite: replace an earlier export at the same path.
        echo: where status lines go.
    """
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {export_format!r}")
    check_quantize(quantize)
    if export_format == "saved_model" and quantize is not None:
        raise ValueError("quantize applies to TFLite exports; a SavedModel is float32")
    if run_size is not None and export_format != "tflite":
        raise ValueError("run_size applies to TFLite exports")
    if drivable is not None and export_format != "tflite":
        raise ValueError("drivable applies to TFLite exports; a SavedModel gives "
                         "probabilities (--probabilities), whose sum is the drivable one")
    target = open_export_source(run_dir, data=data)
    spec = target.spec
    drivable_indices = None if drivable is None else drivable_classes(spec, drivable)
    model = float32_model(target.model)
    input_multiple = target.input_multiple
    size = check_input_size(input_size or target.input_size)
    path = Path(out) if out is not None else default_export_path(
        run_dir, export_format, quantize, export_dir=target.export_dir)
    split_seed = target.split_seed
    source = target.require_data("the check") if check else target.data
    if export_format == "saved_model":
        export_saved_model(model, spec, path, input_multiple=input_multiple,
                           include_probabilities=include_probabilities,
                           jit_compile=jit_compile, overwrite=overwrite)
    else:
        calibration = None
        if quantize == "int8":
            source = target.require_data("int8 calibration")
            calibration = [image for image, _ in split_examples(
                source, target.train_split, input_size=size, split_seed=split_seed,
                limit=calibration_count)]
            echo(f"calibrating int8 on {len(calibration)} image(s) of split "
                 f"{target.train_split!r}")
        export_tflite(model, spec, path, input_size=size, quantize=quantize,
                      calibration_images=calibration, input_multiple=input_multiple,
                      include_probabilities=include_probabilities,
                      drivable_classes=drivable_indices, run_size=run_size,
                      overwrite=overwrite)
    echo(f"wrote {path} ({export_format}, {quantization_name(quantize)}"
         + (f", {size[0]}x{size[1]}" if export_format == "tflite" else "")
         + (f", run at {run_size[0]}x{run_size[1]}" if run_size is not None else "") + ")")
    if not check:
        return ExportResult(path, None, None)
    from pixelwise.data.sources import describe_split, open_source

    check_split = check_split or target.test_split
    opened = open_source(source)
    if tuple(opened.spec.class_names) != tuple(spec.class_names):
        raise ValueError(f"{source}: its classes ({', '.join(opened.spec.class_names)}) are "
                         f"not those of {target.name} ({', '.join(spec.class_names)}); the "
                         f"check needs a dataset of the model's classes")
    echo(f"checking on {describe_split(opened, check_split, split_seed)}"
         + (f" (first {check_limit})" if check_limit else ""))
    examples = split_examples(source, check_split, input_size=size, split_seed=split_seed,
                              limit=check_limit)
    exported = Segmenter.from_path(path)
    report = check_export(model, spec, exported, examples, quantize=quantize,
                          thresholds=thresholds, input_multiple=input_multiple,
                          jit_compile=jit_compile, run_size=run_size,
                          raise_on_failure=False)
    report_path = check_report_path(path)
    write_json_atomically(report_path, report.to_dict())
    for line in report.lines():
        echo(line)
    if not report.passed:
        raise ExportCheckError(report)
    return ExportResult(path, report, report_path)


__all__ = ["DEFAULT_CALIBRATION_IMAGES", "EXPORT_DIR", "ExportResult", "check_report_path",
           "default_export_path", "export_run", "split_examples"]
