"""Atrous (dilated) 'same' convolution as a sum of per-tap matrix products over the
output region each tap can reach.

A k x k kernel dilated by ``rate`` reads, for its tap ``(i, j)``, the input pixel
``(y + i * rate - top, x + j * rate - left)``. With 'same' padding every tap whose offset
is not zero reads zero padding for part of the outputs: for DeepLab's ASPP at 384 x 384
(24 x 24 features) a rate-18 off-centre row tap reaches only 6 of the 24 output rows, and
when the rate is at least the feature size an off-centre tap reaches no output at all and
the convolution is a 1 x 1 convolution with the centre tap. Padding-based formulations
(TensorFlow's SpaceToBatchND path, :func:`~pixelwise.models.layers.space_to_batch_convolution`)
multiply all that padding anyway, and their padded phase grids grow with the rate.

:func:`tapwise_convolution` computes each tap as one matrix product over the input slice
it actually reads, pads the product to the output's size and sums, so its work shrinks as
the rate grows: at 24 x 24 the multiply-adds are 69% (rate 6), 44% (rate 12) and 25%
(rate 18) of the dense count. The regions are computed from the runtime size, so one
model stays exact for every input size (taps that reach nothing give empty products).
The outputs equal a dilated convolution's up to float rounding; the weights are the
convolution's own kernel, so nothing about a layer's variables or config changes.

Which formulation runs is chosen per device and, on a CPU, per layer
(:func:`layer_formulation`): on a GPU the native dilated convolution (cuDNN) is expected
to be faster and lighter, so GPUs use it until measured otherwise
(:func:`native_dilated_convolution`: the Conv2D op's own ``dilations``, which
``tf.nn.convolution`` and Keras would route through space-to-batch). On a CPU with oneDNN
a layer whose per-tap products would skip little of the dense work (the backbone's rate 2,
ASPP's rate 6 at 24 x 24) runs oneDNN's dilated kernel too, which is as fast there and
keeps no per-tap input slices for the backward pass; the others, and every layer whose
size is unknown when traced, the per-tap products ('valid' ones: space-to-batch).
Dilated depthwise convolutions keep space-to-batch everywhere: the DepthwiseConv2dNative
op's own ``dilations`` gave wrong gradients on this CPU (oneDNN), 'valid' ones none at all.
``PIXELWISE_ATROUS=tapwise|native|auto`` or :func:`use_atrous_formulation` overrides the
choice; it is read when a model's graph is traced, so an already traced function keeps the
formulation it was traced with.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from keras import ops

ATROUS_FORMULATIONS = ("auto", "tapwise", "native")
ATROUS_ENVIRONMENT = "PIXELWISE_ATROUS"
_chosen: list[str] = []  # the innermost use_atrous_formulation() block's choice


def _checked_formulation(name: str, where: str) -> str:
    if name not in ATROUS_FORMULATIONS:
        raise ValueError(f"{where} {name!r}: choose one of {', '.join(ATROUS_FORMULATIONS)}")
    return name


# On a CPU, "auto" keeps the per-tap products where they skip at least this share of the
# dense multiply-adds: at DeepLab's 24 x 24 ASPP features, rates 12 and 18 (56% and 75%
# skipped, 2.2x and 1.4x faster than oneDNN's dilated kernel). Where they skip less (rate 2:
# 11%, rate 6: 31%) oneDNN's kernel is as fast or faster and keeps no per-tap input slices
# for the backward pass: a whole training step 2-10% faster and 0.3-0.7 GB lighter
# (benchmarks/memory.py: default against tapwise_atrous).
TAPWISE_MIN_SKIPPED = 1 / 3


def atrous_formulation() -> str:
    """``"tapwise"`` (this module's per-tap products; space-to-batch where they do not
    apply), ``"native"`` (the framework's dilated convolution) or ``"auto"`` for the graph
    traced now: what :func:`use_atrous_formulation` or ``PIXELWISE_ATROUS`` asks for, "auto"
    (the default) resolved to native when TensorFlow sees a GPU. On a CPU "auto" stays
    "auto": each layer chooses (:func:`layer_formulation`)."""
    if _chosen:
        name = _chosen[-1]
    else:
        name = _checked_formulation(os.environ.get(ATROUS_ENVIRONMENT, "auto").strip().lower(),
                                    ATROUS_ENVIRONMENT)
    if name != "auto":
        return name
    import tensorflow as tf

    return "native" if tf.config.list_logical_devices("GPU") else "auto"


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its CPU kernels through oneDNN (the default on x86 Linux,
    off with ``TF_ENABLE_ONEDNN_OPTS=0``); without it TensorFlow's dilated convolution has
    no gradient on a CPU."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow without the probe: assume the safe answer
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def layer_formulation(height, width, kernel_size: Sequence[int],
                      dilation_rate: Sequence[int]) -> str:
    """``"tapwise"`` or ``"native"`` for one 'same' dilated convolution on a
    ``height x width`` input (None where unknown when traced): :func:`atrous_formulation`,
    and where that says "auto" (a CPU), native if oneDNN runs the kernels and the per-tap
    products would skip less than ``TAPWISE_MIN_SKIPPED`` of the dense multiply-adds;
    tapwise where the size is unknown (one graph for every size)."""
    name = atrous_formulation()
    if name != "auto":
        return name
    if not isinstance(height, int) or not isinstance(width, int) or not onednn_enabled():
        return "tapwise"
    dense = height * width * kernel_size[0] * kernel_size[1]
    executed = tapwise_multiply_adds(height, width, kernel_size, dilation_rate)
    return "native" if executed > (1 - TAPWISE_MIN_SKIPPED) * dense else "tapwise"


@contextlib.contextmanager
def use_atrous_formulation(name: str) -> Iterator[None]:
    """Trace the models built or called in the block with formulation ``name``
    (``"auto"``, ``"tapwise"`` or ``"native"``); the previous choice comes back after."""
    _chosen.append(_checked_formulation(name, "atrous formulation"))
    try:
        yield
    finally:
        _chosen.pop()


def same_padding_before(kernel: int, rate: int) -> int:
    """Padding before an axis of a 'same' convolution (Keras / TensorFlow put the odd
    pixel of an even span after)."""
    return (kernel - 1) * rate // 2


def tap_output_range(size, offset: int):
    """Output indices ``[start, stop)`` along an axis of length ``size`` (int or scalar
    tensor) whose input index ``output + offset`` falls inside ``[0, size)``; an empty
    range (``start == stop``) when the tap never reads inside the input."""
    if isinstance(size, int):
        start = min(max(-offset, 0), size)
        return start, max(min(max(size - offset, 0), size), start)
    start = ops.minimum(max(-offset, 0), size)
    stop = ops.maximum(ops.minimum(ops.maximum(size - offset, 0), size), start)
    return start, stop


def _source_start(output_start, offset: int, size):
    """First input index a tap reads; kept inside ``[0, size]`` for an empty range (there
    ``output_start + offset`` can fall outside and the slice would be refused)."""
    if isinstance(output_start, int) and isinstance(size, int):
        return output_start + offset
    return ops.minimum(ops.maximum(output_start + offset, 0), size)


def tap_reach(size: int, kernel: int, rate: int) -> list[int]:
    """For a static axis length: how many outputs each of the ``kernel`` taps reaches."""
    before = same_padding_before(kernel, rate)
    reach = []
    for index in range(kernel):
        offset = index * rate - before
        reach.append(max(0, min(size, size - offset) - max(0, -offset)))
    return reach


def tapwise_multiply_adds(height: int, width: int, kernel_size: Sequence[int],
                          dilation_rate: Sequence[int]) -> int:
    """Output positions times taps that :func:`tapwise_convolution` multiplies, per
    input-output channel pair (the dense count is ``height * width * kh * kw``)."""
    rows = tap_reach(height, kernel_size[0], dilation_rate[0])
    cols = tap_reach(width, kernel_size[1], dilation_rate[1])
    return sum(rows) * sum(cols)


def native_dilated_convolution(inputs, kernel, *, dilation_rate: Sequence[int],
                               padding: str):
    """A stride-1 dilated 2-D convolution of NHWC ``inputs`` with ``kernel`` by the Conv2D
    op's own ``dilations`` (cuDNN's dilated kernels on a GPU)."""
    import tensorflow as tf

    return tf.nn.conv2d(inputs, kernel, strides=1, padding=padding.upper(),
                        dilations=list(dilation_rate))


def tapwise_convolution(inputs, kernel, *, dilation_rate: Sequence[int]):
    """A 'same', stride-1, dilated 2-D convolution of NHWC ``inputs`` with ``kernel``
    [kh, kw, in, out], as per-tap matrix products over the outputs each tap reaches.

    Equal to ``keras.ops.conv(inputs, kernel, padding="same", dilation_rate=...)`` up to
    rounding, for any input size known or not when traced.
    """
    input_shape = ops.shape(inputs)
    batch, height, width = input_shape[0], input_shape[1], input_shape[2]
    kernel_height, kernel_width = kernel.shape[0], kernel.shape[1]
    rate_h, rate_w = dilation_rate
    top = same_padding_before(kernel_height, rate_h)
    left = same_padding_before(kernel_width, rate_w)
    channels = inputs.shape[-1] if inputs.shape[-1] is not None else input_shape[3]
    # One split of the kernel into its taps: its gradient is one stack, where indexing
    # kernel[row, col] per tap costs a kernel-sized StridedSliceGrad per tap.
    taps = ops.unstack(ops.reshape(kernel, (kernel_height * kernel_width, *kernel.shape[2:])),
                       axis=0)
    outputs = None
    for row in range(kernel_height):
        row_offset = row * rate_h - top
        row_start, row_stop = tap_output_range(height, row_offset)
        if isinstance(row_start, int) and row_start == row_stop:
            continue
        for col in range(kernel_width):
            col_offset = col * rate_w - left
            col_start, col_stop = tap_output_range(width, col_offset)
            if isinstance(col_start, int) and col_start == col_stop:
                continue
            source = ops.slice(
                inputs, (0, _source_start(row_start, row_offset, height),
                         _source_start(col_start, col_offset, width), 0),
                (batch, row_stop - row_start, col_stop - col_start, channels))
            product = ops.matmul(source, taps[row * kernel_width + col])
            product = ops.pad(product, ((0, 0), (row_start, height - row_stop),
                                        (col_start, width - col_stop), (0, 0)))
            outputs = product if outputs is None else outputs + product
    return outputs
