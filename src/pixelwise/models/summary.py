"""Size of a model: parameters and multiply-adds for one image of a given size.

What :func:`count_multiply_adds` counts, per layer, for a batch of one image (a
multiply-accumulate, ``a += w * x``, counts once; dilation does not change the count):

- ``Conv1D/2D/3D`` (dilated or not, grouped): output positions x kernel size x
  (input channels / groups) x filters, i.e. output positions x the kernel's weight count;
- ``DepthwiseConv1D/2D``: output positions x kernel size x channels x depth multiplier;
- ``SeparableConv1D/2D``: its depthwise part plus its pointwise (1x1) part;
- ``Conv1D/2D/3DTranspose``: *input* positions x the kernel's weight count (each input
  value is spread over a kernel-sized window of every filter);
- ``Dense``: positions (all axes but the batch and the last) x inputs x units.

Not counted: bias additions, batch normalisation, activations, pooling, resizing,
element-wise additions and concatenation (all small beside the convolutions). So for
MobileNetV3: squeeze-excite's two 1x1 convs count (on their one pooled position), its
hard-sigmoid and the products by its gate do not, nor does hard-swish (Keras ops and
layers without a kernel). With the classifier top that gives 217 M (Large) and 56 M (Small)
at 224 x 224, the published figures within 2% (``tests/test_mobilenet_v3.py``).

With ``executed=True`` the count is the work these models' own layers do instead: an
:class:`~pixelwise.models.layers.AtrousConv2D` with 'same' padding multiplies only the
taps that reach the input (``tapwise_multiply_adds``), skipping those that would only read
zero padding, which at DeepLab's ASPP rates is much of the nominal count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import keras

from pixelwise.models.atrous import tapwise_multiply_adds
from pixelwise.keras_internals import functional_graph, run_through_graph
from pixelwise.models.layers import AtrousConv2D

TRANSPOSED_CONVOLUTIONS = (
    keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
SEPARABLE_CONVOLUTIONS = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
CONVOLUTIONS = (
    keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
    keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


def _positions(shape: Sequence[int | None]) -> int:
    """Number of positions of a [batch, ..., channels] shape, for a batch of one."""
    return math.prod(int(size) for size in shape[1:-1])


def layer_multiply_adds(layer: keras.layers.Layer, input_shape: Sequence[int],
                        output_shape: Sequence[int], *, executed: bool = False) -> int:
    """Multiply-adds of one call of ``layer`` on a batch of one (0 for uncounted layers);
    ``executed``: the taps an AtrousConv2D running per-tap products multiplies rather than
    the nominal count."""
    if (executed and isinstance(layer, AtrousConv2D) and layer.padding == "same"
            and tuple(layer.dilation_rate) != (1, 1)
            and layer.formulation(tuple(input_shape)) == "tapwise"):
        kernel_height, kernel_width, inputs, filters = layer.kernel.shape
        taps = tapwise_multiply_adds(int(output_shape[1]), int(output_shape[2]),
                                     (kernel_height, kernel_width), layer.dilation_rate)
        return taps * inputs * filters
    if isinstance(layer, TRANSPOSED_CONVOLUTIONS):
        return _positions(input_shape) * math.prod(layer.kernel.shape)
    if isinstance(layer, SEPARABLE_CONVOLUTIONS):
        return _positions(output_shape) * (
            math.prod(layer.depthwise_kernel.shape) + math.prod(layer.pointwise_kernel.shape))
    if isinstance(layer, CONVOLUTIONS):
        return _positions(output_shape) * math.prod(layer.kernel.shape)
    if isinstance(layer, keras.layers.Dense):
        return _positions(input_shape) * math.prod(layer.kernel.shape)
    return 0


def _input_size_pair(input_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        return input_size, input_size
    if len(input_size) != 2:
        raise ValueError(f"input_size {input_size!r}: expected an int or (height, width)")
    return int(input_size[0]), int(input_size[1])


def _walk(model: keras.Model, inputs, executed: bool = False) -> tuple[object, int]:
    """Trace ``model``'s graph on symbolic ``inputs``, summing every layer's multiply-adds.

    Uses Keras's graph runner (:func:`~pixelwise.keras_internals.run_through_graph`,
    what Keras itself uses to compute output shapes and to clone models) with each operation
    replaced by its ``compute_output_spec``, so nothing is computed and no layer is
    changed. Nested functional models are walked in turn.
    """
    total = 0

    def operation_fn(operation):
        def shape_only_call(*args, **kwargs):
            nonlocal total
            inner = functional_graph(operation) if isinstance(operation, keras.Model) else None
            if inner is not None:
                outputs, inner_total = _walk(inner, args[0], executed)
                total += inner_total
                return outputs
            outputs = operation.compute_output_spec(*args, **kwargs)
            tensors = keras.tree.flatten(args)
            if tensors and isinstance(outputs, keras.KerasTensor):
                total += layer_multiply_adds(operation, tensors[0].shape, outputs.shape,
                                             executed=executed)
            return outputs

        return shape_only_call

    outputs = run_through_graph(model, inputs, operation_fn)
    return outputs, total


def count_multiply_adds(model: keras.Model, input_size: int | Sequence[int], *,
                        executed: bool = False) -> int:
    """Multiply-adds of ``model`` for one image of ``input_size`` (``S`` or ``(H, W)``);
    with ``executed``, those its layers actually do (see the module docstring).

    ``model`` is a functional Keras model with one image input [B, H, W, C]; the count
    follows the rules in this module's docstring. Works for models built with unknown H, W.

    Example:
        >>> count_multiply_adds(build_model("deeplabv3", num_classes=21), 384)
    """
    graph = functional_graph(model)
    if graph is None or len(graph.inputs) != 1:
        raise TypeError(
            f"count_multiply_adds needs a functional model with one image input; got {model!r}")
    model = graph
    height, width = _input_size_pair(input_size)
    if height <= 0 or width <= 0:
        raise ValueError(f"input_size {input_size!r} must be positive")
    model_input = model.inputs[0]
    built_height, built_width, channels = model_input.shape[1:]
    for built, asked in ((built_height, height), (built_width, width)):
        if built is not None and built != asked:
            raise ValueError(
                f"{model.name} was built for {built_height}x{built_width} inputs, "
                f"not {height}x{width}; rebuild it with input_shape=(None, None, {channels})")
    image = keras.KerasTensor((1, height, width, channels), dtype=model_input.dtype)
    _, total = _walk(model, [image], executed)
    return total


@dataclass(frozen=True)
class ModelSize:
    """Parameter counts and multiply-adds of a model at one input size."""

    name: str
    input_height: int
    input_width: int
    parameters: int
    trainable_parameters: int
    multiply_adds: int

    def lines(self) -> list[str]:
        return [
            f"model           {self.name}",
            f"input           {self.input_height} x {self.input_width} x 3",
            f"parameters      {self.parameters:,} ({self.trainable_parameters:,} trainable)",
            f"multiply-adds   {self.multiply_adds / 1e9:.2f} G ({self.multiply_adds:,}) per image",
        ]


def measure_model(model: keras.Model, input_size: int | Sequence[int]) -> ModelSize:
    """Parameters (all, and trainable) and multiply-adds of ``model`` at ``input_size``."""
    height, width = _input_size_pair(input_size)
    trainable = sum(math.prod(weight.shape) for weight in model.trainable_weights)
    return ModelSize(
        name=model.name, input_height=height, input_width=width,
        parameters=model.count_params(), trainable_parameters=trainable,
        multiply_adds=count_multiply_adds(model, (height, width)))
