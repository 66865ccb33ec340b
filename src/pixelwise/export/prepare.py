"""What both export writers share: the float32 copy of a model, the checks of a request,
the record an export keeps of itself, and saving tf.functions as a SavedModel."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras

from pixelwise.data.pipeline import MEAN_RGB
from pixelwise.data.spec import DatasetSpec
from pixelwise.inference.formats import CLASS_MAP_NAME, INPUT_NAME
from pixelwise.models.layers import all_layers

EXPORT_FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = (None, "float16", "int8")
EXPORT_INFO_FORMAT = "pixelwise-export"
EXPORT_INFO_VERSION = 1


def quantization_name(quantize: str | None) -> str:
    """``"float32"``, ``"float16"`` or ``"int8"``: how an export computes."""
    check_quantize(quantize)
    return quantize or "float32"


def check_quantize(quantize: str | None) -> None:
    """Refuse anything but None (float32), "float16" and "int8"."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be None (float32), 'float16' or 'int8', got {quantize!r}")


def float32_model(model: keras.Model) -> keras.Model:
    """``model`` itself when every layer computes in float32, else a float32 copy.

    A model trained under ``mixed_bfloat16`` / ``mixed_float16`` computes in half
    precision; TFLite has no bfloat16 kernels and the check compares against float32, so
    the copy is rebuilt from the model's config with every dtype policy set to float32 and
    given the same weights (stored in float32 under mixed precision anyway).
    """
    policies = {layer.dtype_policy.name for layer in all_layers(model)}
    if policies <= {"float32"}:
        return model
    clone = type(model).from_config(_float32_config(model.get_config()))
    clone.set_weights(model.get_weights())
    return clone


def _float32_config(value):
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy" and isinstance(value.get("config"), dict):
            return {**value, "config": {**value["config"], "name": "float32"}}
        return {key: ("float32" if key == "dtype" and item in ("float16", "bfloat16")
                      else _float32_config(item)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_float32_config(item) for item in value)
    return value


def depthwise_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's depthwise convolutions, which XLA compiles badly for CPUs."""
    return [layer for layer in all_layers(model)
            if isinstance(layer, keras.layers.DepthwiseConv2D)]


def export_info(model: keras.Model, export_format: str, *, quantize: str | None = None,
                input_size: tuple[int, int] | None = None, input_multiple: int | None = None,
                outputs: Sequence[str] = (CLASS_MAP_NAME,)) -> dict:
    """What an export holds, recorded inside it (TFLite metadata / SavedModel constant)."""
    return {"format": EXPORT_INFO_FORMAT, "version": EXPORT_INFO_VERSION,
            "export_format": export_format, "model": model.name,
            "quantize": quantization_name(quantize),
            "input_size": list(input_size) if input_size is not None else None,
            "input_multiple": input_multiple, "input": f"{INPUT_NAME}: uint8 RGB",
            "outputs": list(outputs)}


def check_destination(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing export unless ``overwrite``."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True or choose "
                              f"another path")


def check_classes(model: keras.Model, spec: DatasetSpec) -> None:
    """Refuse a spec whose class count is not the model's."""
    channels = model.outputs[0].shape[-1]
    if channels != spec.num_classes:
        raise ValueError(f"{model.name} predicts {channels} classes but the dataset "
                         f"description lists {spec.num_classes}; pass the run's spec")


def check_input_size(input_size: Sequence[int]) -> tuple[int, int]:
    """``input_size`` as (height, width) of positive ints; any size is allowed, since the
    exported graph pads to the model's stride itself (:func:`padded_logits`)."""
    try:
        height, width = (int(side) for side in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be (height, width), got {input_size!r}") from None
    if min(height, width) < 1:
        raise ValueError(f"input size {height}x{width}: sides must be positive")
    return height, width


def padded_logits(model: keras.Model, images, input_multiple: int,
                  run_size: Sequence[int] | None = None):
    """float32 logits of uint8 ``images`` [B, H, W, 3] of any size, in the TensorFlow
    graph: the padding of :mod:`pixelwise.inference.imaging` (bottom and right, to a
    multiple of the stride, with the mean colour), then the logits cropped back to H x W.
    A camera's native size (e.g. 360 x 480 at stride 16) thus exports as it is.

    ``run_size`` (height, width): the network runs at this size instead: the images are
    resized to it (bilinear, half-pixel centres, as training resizes) and the logits
    resized back to H x W (bilinear), so a frame goes in and its class map comes out at
    the camera's size while the work is that of the smaller size.
    """
    import tensorflow as tf

    pixels = tf.cast(images, tf.float32)
    shape = tf.shape(pixels)
    image_height, image_width = shape[1], shape[2]
    if run_size is not None:
        pixels = tf.image.resize(pixels, [int(side) for side in run_size], method="bilinear")
    run_shape = tf.shape(pixels)
    run_height, run_width = run_shape[1], run_shape[2]
    paddings = [[0, 0], [0, (-run_height) % input_multiple],
                [0, (-run_width) % input_multiple], [0, 0]]
    # Exact: image pixels + 0 * mean inside, 0 + 1 * mean in the padding.
    mean = tf.constant(MEAN_RGB, dtype=tf.float32)
    padded = (tf.pad(pixels, paddings)
              + tf.pad(tf.zeros_like(pixels), paddings, constant_values=1.0) * mean)
    logits = tf.cast(model(padded, training=False), tf.float32)[:, :run_height, :run_width, :]
    if run_size is not None:
        logits = tf.image.resize(logits, [image_height, image_width], method="bilinear")
    return logits


def save_functions(model: keras.Model, path: Path, functions: dict) -> None:
    """A SavedModel of ``functions`` (tf.functions with input signatures, each exported as
    the signature of its name) and the variables of ``model`` they read.

    Only the variables are tracked, not the Keras model: what ``keras.export.ExportArchive``
    does, without walking every layer's trackables (most of the time of an export).
    """
    import tensorflow as tf

    module = tf.Module()
    module.model_variables = [variable.value for variable in model.variables]
    signatures = {}
    for name, function in functions.items():
        setattr(module, name, function)
        signatures[name] = function.get_concrete_function()
    tf.saved_model.save(module, str(path), signatures=signatures)


__all__ = ["EXPORT_FORMATS", "QUANTIZATIONS", "check_classes", "check_destination",
           "check_input_size", "check_quantize", "padded_logits", "depthwise_layers", "export_info",
           "float32_model", "quantization_name", "save_functions"]
