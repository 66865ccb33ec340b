"""The SavedModel writer: a serving signature for uint8 batches of any size, and the
classes as constants (see :mod:`pixelwise.export`)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import keras
import numpy as np

from pixelwise.data.spec import SPEC_FILENAME, DatasetSpec
from pixelwise.export.prepare import (
    padded_logits,
    check_classes,
    check_destination,
    depthwise_layers,
    export_info,
    float32_model,
    save_functions,
)
from pixelwise.inference.formats import (
    CLASS_MAP_NAME,
    EXPORT_INFO_NAME,
    INPUT_NAME,
    METADATA_SIGNATURE,
    PROBABILITIES_NAME,
    SERVING_SIGNATURE,
)
from pixelwise.io import write_atomically


def export_saved_model(model: keras.Model, spec: DatasetSpec, out_dir: str | Path, *,
                       input_multiple: int = 16, include_probabilities: bool = False,
                       jit_compile: bool = False, overwrite: bool = False) -> Path:
    """Write ``model`` as a SavedModel with the serving signature of :mod:`pixelwise.export`.

    Args:
        model: a segmentation model (RGB 0..255 in, logits [B, H, W, C] out).
        spec: the classes it predicts; stored as constants and in assets/.
        out_dir: the SavedModel folder (written under a temporary name, then renamed).
        input_multiple: the model's stride; inputs are padded to a multiple of it.
        include_probabilities: also output the softmax probabilities.
        jit_compile: compile the serving function with XLA.
        overwrite: replace an existing ``out_dir``.

    Returns ``out_dir``.
    """
    import tensorflow as tf

    out_dir = Path(out_dir)
    check_destination(out_dir, overwrite)
    check_classes(model, spec)
    model = float32_model(model)
    depthwise = depthwise_layers(model) if jit_compile else []
    if depthwise:
        warnings.warn(f"{model.name}: XLA on a CPU runs its {len(depthwise)} "
                      "depthwise convolutions ~30x slower than TensorFlow's own kernels (a "
                      "MobileNetV2 DeepLab v3 ran ~7x slower per frame); serve it on CPUs "
                      "from an export without --jit-compile", stacklevel=2)
    height, width = (model.input_shape[1], model.input_shape[2])
    outputs = (CLASS_MAP_NAME, PROBABILITIES_NAME) if include_probabilities else (CLASS_MAP_NAME,)
    info = export_info(model, "saved_model", input_multiple=input_multiple, outputs=outputs)

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8,
                                                 name=INPUT_NAME)],
                 jit_compile=jit_compile)
    def serve(images):
        logits = padded_logits(model, images, input_multiple)
        result = {CLASS_MAP_NAME: tf.argmax(logits, axis=-1, output_type=tf.int32)}
        if include_probabilities:
            result[PROBABILITIES_NAME] = tf.nn.softmax(logits, axis=-1)
        return result

    @tf.function(input_signature=[])
    def metadata():
        return {
            "class_names": tf.constant(list(spec.class_names), dtype=tf.string),
            "colors": tf.constant(np.asarray(spec.colors, dtype=np.uint8)),
            "ignore_label": tf.constant(spec.ignore_label, dtype=tf.int32),
            "dataset_spec": tf.constant(json.dumps(spec.to_dict())),
            "export_info": tf.constant(json.dumps(info)),
        }

    def write(folder: Path) -> None:
        save_functions(model, folder, {SERVING_SIGNATURE: serve, METADATA_SIGNATURE: metadata})
        (folder / "assets").mkdir(exist_ok=True)
        spec.save(folder / "assets" / SPEC_FILENAME)
        (folder / "assets" / EXPORT_INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")

    write_atomically(out_dir, write)
    return out_dir


__all__ = ["export_saved_model"]
