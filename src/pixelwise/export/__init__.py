"""Export a trained model for serving (SavedModel) and for small devices (TFLite / LiteRT).

    export_saved_model(model, spec, "export/saved_model", input_multiple=16)
    export_tflite(model, spec, "export/model_int8.tflite", input_size=(256, 256),
                  quantize="int8", calibration_images=training_images)
    segmenter = Segmenter.from_path("export/model_int8.tflite")   # pixelwise.inference
    class_map = segmenter.predict(image)   # int32 [H, W] for a uint8 RGB image of any size
    report = check_export(model, spec, segmenter, held_out_examples, quantize="int8")

    export_run("runs/voc", export_format="tflite", quantize="int8")  # `pixelwise export`

SavedModel: the signature ``serving_default`` takes ``images``, uint8 RGB [B, H, W, 3] of
any batch size, height and width, and returns ``class_map`` int32 [B, H, W] (and, with
``include_probabilities``, ``probabilities`` float32 [B, H, W, C]). Inside, the batch is
padded at the bottom and right to a multiple of the model's stride with the ImageNet mean
colour and the logits cropped back, as ``pixelwise predict`` does. The classes travel as
constants, not variables: the signature ``metadata`` returns ``class_names`` (string [C]),
``colors`` (uint8 [C, 3]), ``ignore_label``, and ``dataset_spec`` / ``export_info`` (JSON
strings); ``assets/pixelwise_dataset.json`` holds the same description as a file.

TFLite: one fixed input size, batch 1: ``images`` uint8 [1, H, W, 3] in, ``class_map``
int32 [1, H, W] out; the argmax is inside the graph, so a device never handles logits.
On request, more outputs of the serving signature: ``probabilities`` float32 [1, H, W, C]
(``include_probabilities``) and ``drivable`` float32 [1, H, W], the summed probability of
the classes the planner may drive on (``drivable_classes``; :mod:`pixelwise.drivable`).
``quantize``: None (float32), ``"float16"`` (weights stored in float16, computed in float32)
or ``"int8"`` (full integer: weights and activations int8, calibrated on training images;
the only float op is the cast of the uint8 input before it is quantised). The classes
travel inside the .tflite file: TFLite metadata entries (``Model.metadata``, where the
converter records its own) ``pixelwise_dataset`` (the dataset description JSON) and
``pixelwise_export`` (input size, quantisation, model); see
:func:`pixelwise.inference.read_tflite_metadata`. Nothing beside the file is needed.

Exports run through :mod:`pixelwise.inference` (``SavedModelSegmenter``,
``TFLiteSegmenter`` on LiteRT's interpreter); nothing else imports the exporter to run a
model. Models trained under mixed precision are rebuilt in float32 for export
(:func:`float32_model`).

The check (:func:`check_export`) runs the Keras model and the export on the same
images and compares: the share of pixels given the same class, and each one's mean IoU
against the labels. Float32 and float16 exports must agree on >= 99.5% of the pixels; an
int8 export may lose at most 1 mean-IoU point against the Keras float32 model. Falling
short raises :class:`ExportCheckError`.

Modules: ``saved_model`` and ``tflite`` (the writers), ``check`` (the agreement check),
``run`` (a run folder's export and check), ``prepare`` (what the writers share).

XLA: ``jit_compile=True`` compiles the SavedModel's serving function (and the check's
Keras forward pass) with XLA. Each new input shape compiles once more, so it can only pay
off for a steady frame size, and on a CPU only for models without depthwise convolutions:
XLA's CPU compiler runs a 3x3 depthwise convolution ~30x slower than TensorFlow's kernel,
which made a MobileNetV2 DeepLab v3 ~7x slower per frame (benchmarks/RESULTS.md), so
exporting such a model with XLA warns. TFLite does not use XLA.
"""

from pixelwise.export.check import (
    MAX_INT8_MEAN_IOU_DROP,
    MIN_PIXEL_AGREEMENT,
    AgreementReport,
    CheckThresholds,
    ExportCheckError,
    check_export,
)
from pixelwise.export.prepare import (
    EXPORT_FORMATS,
    QUANTIZATIONS,
    depthwise_layers,
    export_info,
    float32_model,
    quantization_name,
)
from pixelwise.export.run import (
    DEFAULT_CALIBRATION_IMAGES,
    EXPORT_DIR,
    ExportResult,
    check_report_path,
    default_export_path,
    export_run,
    split_examples,
)
from pixelwise.export.saved_model import export_saved_model
from pixelwise.export.tflite import add_tflite_metadata, export_tflite

# The readers of what the writers write, at their old import path (they live in inference).
from pixelwise.inference import (  # noqa: E402
    SavedModelSegmenter,
    TFLiteSegmenter,
    make_interpreter,
    read_saved_model_spec,
    read_tflite_metadata,
    read_tflite_spec,
    resize_bilinear,
    resize_nearest,
)

__all__ = [
    "AgreementReport", "CheckThresholds", "DEFAULT_CALIBRATION_IMAGES", "EXPORT_DIR",
    "EXPORT_FORMATS", "ExportCheckError", "ExportResult", "MAX_INT8_MEAN_IOU_DROP",
    "MIN_PIXEL_AGREEMENT", "QUANTIZATIONS", "SavedModelSegmenter", "TFLiteSegmenter",
    "add_tflite_metadata", "check_export", "check_report_path", "default_export_path",
    "depthwise_layers", "export_info", "export_run", "export_saved_model", "export_tflite",
    "float32_model", "make_interpreter", "quantization_name", "read_saved_model_spec",
    "read_tflite_metadata", "read_tflite_spec", "resize_bilinear", "resize_nearest",
    "split_examples",
]
