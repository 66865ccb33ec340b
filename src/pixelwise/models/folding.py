"""Batch norm folded into the convolution before it, for inference.

In inference a batch norm is a per-channel affine map, ``x * scale + shift`` with
``scale = gamma / sqrt(moving_variance + epsilon)`` and ``shift = beta - moving_mean *
scale``. After a convolution it can be folded into that convolution: each output channel's
kernel is multiplied by its ``scale`` and ``shift`` becomes (part of) its bias. The folded
model computes the same function (to float rounding) with one pass over each feature map
less; TensorFlow's graph optimizer fuses only some of these pairs by itself (plain
``Conv2D`` followed directly by the fused kernel, not depthwise or atrous ones).

    folded = fold_batch_norms(model)      # a new model; ``model`` is left as it is

Only for inference: the folded model has no batch statistics to train.
"""

from __future__ import annotations

import keras
import numpy as np

FOLDABLE_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


def _single_input_layer(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    """The layer whose output is ``layer``'s only input, where that holds."""
    if len(layer._inbound_nodes) != 1:
        return None
    inputs = layer._inbound_nodes[0].input_tensors
    if len(inputs) != 1:
        return None
    return inputs[0]._keras_history.operation


def foldable_pairs(model: keras.Model) -> dict[str, str]:
    """Batch norm layer name -> the convolution it can be folded into: a Conv2D or
    DepthwiseConv2D (atrous ones included) called once, with no activation, whose output
    goes to that batch norm alone, which normalizes the last axis."""
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        if layer.axis not in (-1, 3) or len(layer._inbound_nodes) != 1:
            continue
        convolution = _single_input_layer(layer)
        if (not isinstance(convolution, FOLDABLE_CONVOLUTIONS)
                or convolution.data_format != "channels_last"
                or keras.activations.serialize(convolution.activation) != "linear"
                or len(convolution._inbound_nodes) != 1
                or len(convolution._outbound_nodes) != 1):
            continue
        pairs[layer.name] = convolution.name
    return pairs


def batch_norm_affine(layer: keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) of ``layer`` in inference, float64."""
    variance = np.asarray(layer.moving_variance, dtype="float64")
    mean = np.asarray(layer.moving_mean, dtype="float64")
    scale = 1.0 / np.sqrt(variance + layer.epsilon)
    if layer.scale:
        scale = scale * np.asarray(layer.gamma, dtype="float64")
    shift = -mean * scale
    if layer.center:
        shift = shift + np.asarray(layer.beta, dtype="float64")
    return scale, shift


def folded_weights(convolution: keras.layers.Layer,
                   batch_norm: keras.layers.BatchNormalization) -> list[np.ndarray]:
    """[kernel, bias] of ``convolution`` with ``batch_norm`` folded in."""
    scale, shift = batch_norm_affine(batch_norm)
    kernel = np.asarray(convolution.kernel, dtype="float64")
    if isinstance(convolution, keras.layers.DepthwiseConv2D):
        # (kh, kw, in, multiplier): output channel c * multiplier + m
        per_output = scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        per_output = scale  # (kh, kw, in, out)
    bias = (np.asarray(convolution.bias, dtype="float64") if convolution.use_bias
            else np.zeros_like(scale))
    return [(kernel * per_output).astype("float32"), (bias * scale + shift).astype("float32")]


def fold_batch_norms(model: keras.Model) -> keras.Model:
    """A copy of ``model`` for inference with each foldable batch norm (see
    :func:`foldable_pairs`) folded into its convolution; its other layers keep their
    weights. ``model`` itself is not changed. A model with nothing to fold is returned
    as it is."""
    pairs = foldable_pairs(model)
    if not pairs:
        return model
    folded_convolutions = set(pairs.values())

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name in pairs:
            return layer  # never called: call_skipping_folded passes its input on
        config = layer.get_config()
        if layer.name in folded_convolutions:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call_skipping_folded(layer: keras.layers.Layer, *args, **kwargs):
        return args[0] if layer.name in pairs else layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone,
                                      call_function=call_skipping_folded)
    convolution_of = {name: model.get_layer(name) for name in folded_convolutions}
    batch_norm_for = {convolution: name for name, convolution in pairs.items()}
    for layer in folded.layers:
        if not layer.weights:  # inputs (named anew by the cloning) and weightless layers
            continue
        original = model.get_layer(layer.name)
        if layer.name in convolution_of:
            batch_norm = model.get_layer(batch_norm_for[layer.name])
            layer.set_weights(folded_weights(original, batch_norm))
        else:
            layer.set_weights(original.get_weights())
    return folded


__all__ = ["batch_norm_affine", "fold_batch_norms", "foldable_pairs", "folded_weights"]
