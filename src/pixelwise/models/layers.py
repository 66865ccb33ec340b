"""Custom layers of the segmentation models, each serialisable (no Lambda layers).

Both are registered under the package name ``pixelwise``, so a model saved as ``.keras``
loads with ``safe_mode=True`` once this module is imported (``pixelwise.models`` does so).

- :class:`ImageNetPreprocessing`: RGB 0..255 in, the input a backbone's ImageNet weights
  expect out, so saved and exported models take raw images.
- :class:`ResizeToMatch`: bilinear resize of one tensor to the runtime height and width of
  another, so the models work for any input size, including models built with unknown size.
- :class:`AtrousConv2D`, :class:`AtrousDepthwiseConv2D`: Keras's convolutions with their
  dilated case written in ``keras.ops`` (see :func:`space_to_batch_convolution` for why);
  AtrousConv2D's 'same' case as per-tap products that skip the zero padding
  (:func:`pixelwise.models.atrous.tapwise_convolution`), much faster at ASPP rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from pixelwise.models.atrous import (
    atrous_formulation,
    layer_formulation,
    native_dilated_convolution,
    tapwise_convolution,
)
from pixelwise.models.batchnorm import batch_normalization
# Re-exported: train, export and distribute import it from here.
from pixelwise.keras_internals import all_layers  # noqa: F401

# keras.applications' own constants (imagenet_utils.preprocess_input).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_RGB_MEAN = (0.485, 0.456, 0.406)
TORCH_RGB_STD = (0.229, 0.224, 0.225)
PREPROCESSING_MODES = ("caffe", "tf", "torch")


@keras.saving.register_keras_serializable(package="pixelwise")
class ImageNetPreprocessing(keras.layers.Layer):
    """Maps RGB images with values 0..255 to what a keras.applications backbone expects.

    The modes are those of ``keras.applications.imagenet_utils.preprocess_input``:

    - ``"caffe"`` (ResNet50): RGB -> BGR, then subtract the ImageNet mean per channel.
    - ``"tf"`` (MobileNetV2): scale to -1..1.
    - ``"torch"``: scale to 0..1, subtract the mean and divide by the standard deviation.

    Example:
        >>> layer = ImageNetPreprocessing("tf")
        >>> layer(np.full((1, 2, 2, 3), 255.0))  # all ones
    """

    def __init__(self, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(
                f"preprocessing mode {mode!r} is not one of {', '.join(PREPROCESSING_MODES)}")
        self.mode = mode

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        if self.mode == "tf":
            return images / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(TORCH_RGB_MEAN, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(TORCH_RGB_STD, dtype=self.compute_dtype)
            return (images / 255.0 - mean) / std
        mean = ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=self.compute_dtype)
        return ops.flip(images, axis=-1) - mean

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


def _bilinear_source_positions(output_size, input_size):
    """Lower and upper source indices and the weight of the upper one, per output index.

    Half-pixel centres, as ``keras.ops.image.resize`` (and ``tf.image.resize``) use:
    the source position of output ``i`` is ``(i + 0.5) * input_size / output_size - 0.5``,
    clamped to the valid range.
    """
    scale = ops.cast(input_size, "float32") / ops.cast(output_size, "float32")
    positions = (ops.cast(ops.arange(output_size), "float32") + 0.5) * scale - 0.5
    positions = ops.clip(positions, 0.0, ops.cast(input_size - 1, "float32"))
    lower = ops.floor(positions)
    upper_weight = positions - lower
    lower = ops.cast(lower, "int32")
    upper = ops.minimum(lower + 1, input_size - 1)
    return lower, upper, upper_weight


def bilinear_resize(images, height, width):
    """Bilinear resize of NHWC ``images`` to ``height`` x ``width`` (ints or scalar tensors).

    With static sizes this is ``keras.ops.image.resize`` (the backend's own kernel). That op
    checks its size argument with Python ``if``s, which fails inside a ``tf.function`` when the
    size is only known at run time, so dynamic sizes take a gather-and-interpolate path in
    ``keras.ops`` that computes the same values.
    """
    if isinstance(height, int) and isinstance(width, int):
        return ops.image.resize(images, (height, width), interpolation="bilinear")
    input_shape = ops.shape(images)
    rows_low, rows_high, row_weight = _bilinear_source_positions(height, input_shape[1])
    cols_low, cols_high, col_weight = _bilinear_source_positions(width, input_shape[2])
    row_weight = ops.cast(ops.reshape(row_weight, (1, -1, 1, 1)), images.dtype)
    col_weight = ops.cast(ops.reshape(col_weight, (1, 1, -1, 1)), images.dtype)
    top = ops.take(images, rows_low, axis=1)
    bottom = ops.take(images, rows_high, axis=1)
    rows = top + (bottom - top) * row_weight
    left = ops.take(rows, cols_low, axis=2)
    right = ops.take(rows, cols_high, axis=2)
    return left + (right - left) * col_weight


@keras.saving.register_keras_serializable(package="pixelwise")
class ResizeToMatch(keras.layers.Layer):
    """Bilinear resize of ``source`` to the runtime height and width of ``reference``.

    Called on a list ``[source, reference]``; only the shape of ``reference`` is used.
    This replaces fixed upsampling factors (``UpSampling2D((16, 16))``) so a model works
    for any input size, including one built with ``input_shape=(None, None, 3)``.

    Example:
        >>> logits = ResizeToMatch(name="logits")([coarse_logits, image])
    """

    def call(self, inputs):
        source, reference = inputs
        reference_shape = ops.shape(reference)
        return bilinear_resize(source, reference_shape[1], reference_shape[2])

    def compute_output_shape(self, input_shape):
        source_shape, reference_shape = input_shape
        return (source_shape[0], reference_shape[1], reference_shape[2], source_shape[3])


def _phase_grid_padding(size, kernel: int, rate: int, padding: str):
    """Padding before and after one spatial axis, and the convolution's output length.

    The 'same' span (kernel - 1) * rate is split as Keras / TensorFlow split it (the extra
    pixel after); 'valid' pads nothing. The axis is then padded further at its end to a
    multiple of ``rate`` so it splits into ``rate`` interleaved phases.
    """
    span = (kernel - 1) * rate
    before, after = (span // 2, span - span // 2) if padding == "same" else (0, 0)
    output_length = size + before + after - span
    after = after + (-(size + before + after)) % rate
    return before, after, output_length


def space_to_batch_convolution(inputs, convolve, *, kernel_size: Sequence[int],
                               dilation_rate: Sequence[int], padding: str):
    """A dilated convolution as an undilated one on the interleaved phases of the input.

    A kernel dilated by ``rate`` only ever combines pixels ``rate`` apart, so the input
    [B, H, W, C] (padded) is split into its ``rate_h x rate_w`` phase grids, stacked on
    the batch axis, convolved by ``convolve`` (stride 1, 'valid', no dilation), and woven
    back. This is what TensorFlow's SpaceToBatchND path does, written with reshape and
    transpose in ``keras.ops``: TensorFlow's graph optimiser mis-infers the shapes of that
    path when the batch and one spatial size are known and the other is not (as in
    ``predict``/``fit`` after batches of 500x375 then 500x333 images) and SpaceToBatchND
    then fails with "padded_shape[1]=... is not divisible by block_shape[1]".
    """
    batch, height, width, channels = ops.shape(inputs)
    rate_h, rate_w = dilation_rate
    kernel_h, kernel_w = kernel_size
    top, bottom, output_height = _phase_grid_padding(height, kernel_h, rate_h, padding)
    left, right, output_width = _phase_grid_padding(width, kernel_w, rate_w, padding)
    padded = ops.pad(inputs, ((0, 0), (top, bottom), (left, right), (0, 0)))
    rows = (height + top + bottom) // rate_h
    cols = (width + left + right) // rate_w
    phases = ops.reshape(padded, (batch, rows, rate_h, cols, rate_w, channels))
    phases = ops.transpose(phases, (2, 4, 0, 1, 3, 5))
    phases = ops.reshape(phases, (rate_h * rate_w * batch, rows, cols, channels))
    convolved = convolve(phases)
    filters = convolved.shape[-1]
    phase_rows, phase_cols = rows - (kernel_h - 1), cols - (kernel_w - 1)
    woven = ops.reshape(convolved, (rate_h, rate_w, batch, phase_rows, phase_cols, filters))
    woven = ops.transpose(woven, (2, 3, 0, 4, 1, 5))
    woven = ops.reshape(woven, (batch, phase_rows * rate_h, phase_cols * rate_w, filters))
    return ops.slice(woven, (0, 0, 0, 0), (batch, output_height, output_width, filters))


def _check_atrous_config(layer: keras.layers.Layer) -> None:
    if tuple(layer.dilation_rate) == (1, 1):
        return
    if tuple(layer.strides) != (1, 1) or layer.data_format != "channels_last":
        raise ValueError(
            f"{layer.name}: a dilated {type(layer).__name__} needs strides 1 and "
            f"channels_last, got strides {layer.strides} and {layer.data_format}")
    if getattr(layer, "groups", 1) != 1:
        raise ValueError(f"{layer.name}: grouped dilated convolutions are not supported")


@keras.saving.register_keras_serializable(package="pixelwise")
class AtrousConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose dilated case is written in ``keras.ops``; same
    arguments, weights and config.

    Undilated it is a plain Conv2D. Dilated it needs strides 1 and channels_last, and
    computes the same values as the dilated Conv2D:

    - 'same' padding (every dilated conv of the models): per-tap products over the outputs
      each tap reaches (:func:`pixelwise.models.atrous.tapwise_convolution`). Forward +
      backward of an ASPP branch (24 x 24 features, batch 8, 2048 -> 256 channels), timed
      interleaved against the space-to-batch formulation: 2.2x, 8x and 26x faster at rates
      6, 12 and 18 (TensorFlow's own dilated conv: about as slow as space-to-batch), and
      on par at the backbone's rate 2; benchmarks/RESULTS.md has the figures.
    - 'valid' padding: :func:`space_to_batch_convolution`.

    Where :func:`~pixelwise.models.atrous.layer_formulation` says "native" (GPUs; on a
    CPU with oneDNN, 'same' convolutions whose per-tap products would skip little), the
    Conv2D op's own dilated kernel
    (:func:`~pixelwise.models.atrous.native_dilated_convolution`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _check_atrous_config(self)

    def formulation(self, input_shape) -> str:
        """``"tapwise"`` or ``"native"``: how a dilated call on ``input_shape`` runs."""
        if self.padding != "same":
            return "native" if atrous_formulation() == "native" else "tapwise"
        return layer_formulation(input_shape[1], input_shape[2], self.kernel_size,
                                 self.dilation_rate)

    def convolution_op(self, inputs, kernel):
        if tuple(self.dilation_rate) == (1, 1):
            return super().convolution_op(inputs, kernel)
        if self.formulation(inputs.shape) == "native":
            return native_dilated_convolution(inputs, kernel, dilation_rate=self.dilation_rate,
                                              padding=self.padding)
        if self.padding == "same":
            return tapwise_convolution(inputs, ops.convert_to_tensor(kernel),
                                       dilation_rate=self.dilation_rate)
        return space_to_batch_convolution(
            inputs, lambda phases: ops.conv(phases, kernel, strides=1, padding="valid"),
            kernel_size=self.kernel_size, dilation_rate=self.dilation_rate, padding=self.padding)


@keras.saving.register_keras_serializable(package="pixelwise")
class AtrousDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` whose dilated case runs through
    :func:`space_to_batch_convolution` on every device (see :mod:`pixelwise.models.atrous`
    for why not the native op); same arguments, weights and config."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _check_atrous_config(self)

    def call(self, inputs):
        if tuple(self.dilation_rate) == (1, 1):
            return super().call(inputs)
        outputs = space_to_batch_convolution(
            inputs,
            lambda phases: ops.depthwise_conv(phases, self.kernel, strides=1, padding="valid"),
            kernel_size=self.kernel_size, dilation_rate=self.dilation_rate, padding=self.padding)
        if self.use_bias:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


def conv_bn_relu(features, filters: int, kernel_size: int, *, name: str, dilation_rate: int = 1,
                 fused_batchnorm: bool = True):
    """Conv (no bias, 'same' padding) -> BatchNormalization -> ReLU, as layers named
    ``{name}_conv``, ``{name}_bn`` and ``{name}_relu``; the batch norm is a
    :class:`~pixelwise.models.batchnorm.FusedBatchNormalization` if ``fused_batchnorm``."""
    features = AtrousConv2D(
        filters, kernel_size, padding="same", dilation_rate=dilation_rate, use_bias=False,
        kernel_initializer="he_normal", name=f"{name}_conv")(features)
    features = batch_normalization(fused=fused_batchnorm, name=f"{name}_bn")(features)
    return keras.layers.ReLU(name=f"{name}_relu")(features)


def separable_conv_bn_relu(features, filters: int, *, name: str, fused_batchnorm: bool = True):
    """A 3x3 conv made depthwise-separable, as DeepLab v3+'s decoder does it (its section
    3.2): depthwise 3x3 -> BN -> ReLU -> pointwise 1x1 conv of ``filters`` -> BN -> ReLU,
    as layers named ``{name}_depthwise...`` and ``{name}_pointwise...``. It costs about
    ``1/filters + 1/9`` of the full 3x3 conv's multiply-adds."""
    features = keras.layers.DepthwiseConv2D(
        3, padding="same", use_bias=False, depthwise_initializer="he_normal",
        name=f"{name}_depthwise")(features)
    features = batch_normalization(fused=fused_batchnorm, name=f"{name}_depthwise_bn")(features)
    features = keras.layers.ReLU(name=f"{name}_depthwise_relu")(features)
    return conv_bn_relu(features, filters, 1, name=f"{name}_pointwise",
                        fused_batchnorm=fused_batchnorm)
