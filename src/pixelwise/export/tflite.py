"""The TFLite writer: one fixed input size, batch 1, uint8 in, the argmax inside, the
classes in the file's metadata (see :mod:`pixelwise.export`); the metadata is read back by
:mod:`pixelwise.inference.tflite`.

On request the graph has more outputs beside ``class_map``, so a device gets what the
argmax throws away: ``probabilities`` (float32 [1, H, W, C], the softmax) and ``drivable``
(float32 [1, H, W], the summed probability of the chosen classes; see
:mod:`pixelwise.drivable`). An int8 model computes them in int8 and gives them dequantised.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import keras
import numpy as np

from pixelwise.data.spec import DatasetSpec
from pixelwise.export.prepare import (
    padded_logits,
    check_classes,
    check_destination,
    check_input_size,
    check_quantize,
    export_info,
    float32_model,
    quantization_name,
    save_functions,
)
from pixelwise.inference.formats import (
    CLASS_MAP_NAME,
    DRIVABLE_CLASSES_KEY,
    DRIVABLE_NAME,
    EXPORT_METADATA_NAME,
    INPUT_NAME,
    PROBABILITIES_NAME,
    SERVING_SIGNATURE,
    SPEC_METADATA_NAME,
)
from pixelwise.inference.imaging import as_uint8_images, resize_bilinear
from pixelwise.inference.tflite import metadata_text, tflite_schema
from pixelwise.io import temporary_path, write_bytes_atomically


def export_tflite(model: keras.Model, spec: DatasetSpec, out_path: str | Path, *,
                  input_size: Sequence[int], quantize: str | None = None,
                  calibration_images: Iterable[np.ndarray] | None = None,
                  input_multiple: int = 16, include_probabilities: bool = False,
                  drivable_classes: Sequence[int] | None = None,
                  run_size: Sequence[int] | None = None, overwrite: bool = False) -> Path:
    """Write ``model`` as a .tflite file at a fixed ``input_size`` (see :mod:`pixelwise.export`).

    Args:
        model: a segmentation model (RGB 0..255 in, logits out).
        spec: the classes it predicts; stored in the file's metadata.
        out_path: the .tflite file (written under a temporary name, then renamed).
        input_size: (height, width), any size: the graph pads to ``input_multiple``.
        quantize: None (float32), "float16" or "int8".
        calibration_images: int8 only, required: uint8 RGB images [H, W, 3] of any size
            (resized to ``input_size``), e.g. a hundred from the training split; the
            activation ranges are measured on them.
        input_multiple: the model's stride.
        include_probabilities: also output the softmax probabilities.
        drivable_classes: also output the summed probability of these class indices.
        run_size: (height, width) the network runs at, inside the graph: the input is
            resized to it and the logits back to ``input_size`` (None: ``input_size``).
        overwrite: replace an existing file.

    Returns ``out_path``.
    """
    import tensorflow as tf

    check_quantize(quantize)
    out_path = Path(out_path)
    if out_path.suffix != ".tflite":
        raise ValueError(f"{out_path}: a TFLite model's name ends in .tflite")
    check_destination(out_path, overwrite)
    check_classes(model, spec)
    height, width = check_input_size(input_size)
    run_size = None if run_size is None else check_input_size(run_size)
    if drivable_classes is not None:
        drivable_classes = [int(index) for index in drivable_classes]
        if not drivable_classes or not all(0 <= i < spec.num_classes for i in drivable_classes):
            raise ValueError(f"drivable_classes {drivable_classes}: class indices of "
                             f"0..{spec.num_classes - 1}, at least one")
    calibration = None
    if quantize == "int8":
        if calibration_images is None:
            raise ValueError("int8 export needs calibration_images: uint8 RGB images from the "
                             "training split (about 100)")
        calibration = [resize_bilinear(as_uint8_images(image), (height, width))
                       for image in calibration_images]
        if not calibration:
            raise ValueError("int8 export: calibration_images is empty; give images from the "
                             "training split")
    elif calibration_images is not None:
        raise ValueError(f"calibration_images apply to int8 export only, not "
                         f"{quantization_name(quantize)}")
    model = float32_model(model)

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.uint8,
                                                 name=INPUT_NAME)])
    def serve(images):
        logits = padded_logits(model, images, input_multiple, run_size)
        outputs = {CLASS_MAP_NAME: tf.argmax(logits, axis=-1, output_type=tf.int32)}
        if include_probabilities or drivable_classes is not None:
            probabilities = tf.nn.softmax(logits, axis=-1)
            if include_probabilities:
                outputs[PROBABILITIES_NAME] = probabilities
            if drivable_classes is not None:
                outputs[DRIVABLE_NAME] = tf.reduce_sum(
                    tf.gather(probabilities, drivable_classes, axis=-1), axis=-1)
        return outputs

    out_path.parent.mkdir(parents=True, exist_ok=True)
    saved_model_dir = temporary_path(out_path.with_suffix(".savedmodel"))
    try:
        save_functions(model, saved_model_dir, {SERVING_SIGNATURE: serve})
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(saved_model_dir), signature_keys=[SERVING_SIGNATURE])
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        flatbuffer = converter.convert()
    finally:
        shutil.rmtree(saved_model_dir, ignore_errors=True)
    outputs = [CLASS_MAP_NAME] + ([PROBABILITIES_NAME] if include_probabilities else []) + (
        [DRIVABLE_NAME] if drivable_classes is not None else [])
    info = export_info(model, "tflite", quantize=quantize, input_size=(height, width),
                       input_multiple=input_multiple, outputs=outputs)
    if drivable_classes is not None:
        info[DRIVABLE_CLASSES_KEY] = drivable_classes
    if run_size is not None:
        info["run_size"] = list(run_size)
    flatbuffer = add_tflite_metadata(flatbuffer, {
        SPEC_METADATA_NAME: json.dumps(spec.to_dict()).encode(),
        EXPORT_METADATA_NAME: json.dumps(info).encode()}, source=str(out_path))
    write_bytes_atomically(out_path, flatbuffer)
    return out_path


def add_tflite_metadata(flatbuffer: bytes, entries: dict[str, bytes], *,
                        source: str = "TFLite model") -> bytes:
    """``flatbuffer`` with ``entries`` (name -> bytes) added to ``Model.metadata``, each in
    a buffer of its own; entries of the same names are replaced."""
    import flatbuffers

    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    if any((buffer.offset or 0) > 1 for buffer in model.buffers or []):
        raise ValueError(f"{source}: its weights are stored outside the flatbuffer (a model "
                         f"over 2 GB); its metadata cannot be rewritten here")
    model.metadata = [item for item in (model.metadata or [])
                      if metadata_text(item.name) not in entries]
    model.buffers = list(model.buffers or [])
    for name, data in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(bytes(data), dtype=np.uint8)
        model.buffers.append(buffer)
        item = schema.MetadataT()
        item.name = name
        item.buffer = len(model.buffers) - 1
        model.metadata.append(item)
    builder = flatbuffers.Builder(len(flatbuffer) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


__all__ = ["add_tflite_metadata", "export_tflite"]
