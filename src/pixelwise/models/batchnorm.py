"""Batch normalisation through TensorFlow's fused kernel, with Keras's weights and config.

Keras 3's ``BatchNormalization`` on the TensorFlow backend is written with ``keras.ops``:
``moments`` (two reductions), then element-wise normalisation, with casts around them,
forward and backward. TensorFlow has one fused kernel for all of it (``FusedBatchNormV3``
and its gradient), which oneDNN accelerates on CPUs. :class:`FusedBatchNormalization` is
a ``keras.layers.BatchNormalization`` that calls that kernel where it computes the same
thing, and is its parent everywhere else:

- fused: TensorFlow backend, 4-D inputs normalised over the last axis (NHWC), float32 /
  float16 / bfloat16 inputs (statistics in float32, as Keras keeps them), no mask, no
  batch renormalisation, not ``synchronized``, epsilon at least 1.001e-5 (cuDNN's floor;
  keras.applications' ResNet50 uses exactly that);
- otherwise: ``keras.layers.BatchNormalization.call``.

Same semantics as the parent: in training (``training=True`` and the layer trainable) it
normalises with the batch mean and the *biased* batch variance and moves the moving
statistics by ``moving = moving * momentum + batch * (1 - momentum)``; the kernel returns
the unbiased (n - 1) variance for its own running averages, so it is rescaled by
(n - 1) / n first. In inference it uses the moving statistics.

Same variables (gamma, beta, moving_mean, moving_variance, same names and order) and the
same config. The class is *named* ``BatchNormalization`` too (importable as
``FusedBatchNormalization``): Keras files a layer's weights under the snake-case name of
its class (``layers/batch_normalization_3/vars`` in ``.weights.h5`` and ``.keras`` files),
so with the same class name a model's weights and checkpoints load into the model built
with either class, including files written before this layer existed. It is registered as
``pixelwise>BatchNormalization``, so ``.keras`` files load with ``safe_mode`` on.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# TensorFlow's fused_batch_norm raises smaller epsilons to this (cuDNN's minimum); the
# fast path is only taken where it would not change the layer's epsilon.
FUSED_MIN_EPSILON = 1.001e-5
FUSED_INPUT_DTYPES = ("float32", "float16", "bfloat16")


@keras.saving.register_keras_serializable(package="pixelwise")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` computed by TensorFlow's fused kernel where it
    can be (see the module docstring); identical arguments, weights and config.

    Example:
        >>> layer = FusedBatchNormalization(momentum=0.9, epsilon=1.001e-5)
        >>> layer(np.zeros((2, 8, 8, 16)), training=True)
    """

    def uses_fused_kernel(self, inputs, mask=None) -> bool:
        """Whether a call on ``inputs`` (with ``mask``) takes the fused kernel."""
        return (keras.backend.backend() == "tensorflow"
                and mask is None
                and len(inputs.shape) == 4
                and self.axis in (-1, 3)
                and not self.renorm
                and not self.synchronized
                and self.epsilon >= FUSED_MIN_EPSILON
                and keras.backend.standardize_dtype(inputs.dtype) in FUSED_INPUT_DTYPES)

    def call(self, inputs, training=None, mask=None):
        if not self.uses_fused_kernel(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        return self._fused_call(inputs, training=bool(training and self.trainable))

    def _fused_call(self, inputs, *, training: bool):
        import tensorflow as tf  # the fast path is TensorFlow's kernel; nothing else needs TF

        channels = inputs.shape[-1]
        gamma = (ops.cast(self.gamma, "float32") if self.scale
                 else ops.ones((channels,), dtype="float32"))
        beta = (ops.cast(self.beta, "float32") if self.center
                else ops.zeros((channels,), dtype="float32"))
        moving_mean = ops.cast(self.moving_mean, "float32")
        moving_variance = ops.cast(self.moving_variance, "float32")
        if training:
            empty = ops.zeros((0,), dtype="float32")
            outputs, batch_mean, unbiased_variance, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta, mean=empty, variance=empty,
                epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
                is_training=True)
            shape = ops.shape(inputs)
            count = ops.cast(shape[0] * shape[1] * shape[2], "float32")
            # The kernel's count - 1 is at least 1; undo exactly what it multiplied by.
            variance = unbiased_variance * (ops.maximum(count - 1.0, 1.0) / count)
            self.moving_mean.assign(
                moving_mean * self.momentum + batch_mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            outputs, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta, mean=moving_mean, variance=moving_variance,
                epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
                is_training=False)
        return ops.cast(outputs, self.compute_dtype)


# The name to use in code; the class keeps Keras's class name for the weights files' sake.
FusedBatchNormalization = BatchNormalization


def batch_normalization(*, fused: bool = True, **kwargs: Any) -> keras.layers.BatchNormalization:
    """A BatchNormalization layer: :class:`FusedBatchNormalization` if ``fused``, else
    Keras's own; ``kwargs`` are BatchNormalization's arguments."""
    layer_class = FusedBatchNormalization if fused else keras.layers.BatchNormalization
    return layer_class(**kwargs)


def fused_class(layer_class: type) -> type:
    """:class:`FusedBatchNormalization` for Keras's ``BatchNormalization`` (exactly that
    class, not subclasses), any other layer class as it is: for swapping the layers of a
    model while cloning it from configs."""
    if layer_class is keras.layers.BatchNormalization:
        return FusedBatchNormalization
    return layer_class
