"""MobileNetV3-Large and -Small (Howard et al. 2019) as pixelwise backbones.

What :mod:`pixelwise.models.backbones` needs to build, make atrous and tap them:

- :func:`mobilenetv3_application`: keras.applications' ``MobileNetV3Large`` /
  ``MobileNetV3Small`` without top and without its own rescaling (the backbone puts an
  ``ImageNetPreprocessing("tf")`` layer in front, as for MobileNetV2; the same -1..1),
  ``alpha`` = ``width_multiplier``; hard-swish and squeeze-excite, or for the
  ``..._minimalistic`` backbones Keras's ``minimalistic`` networks (ReLU, 3x3 kernels, no
  squeeze-excite: the paper's variant for hardware where those are slow; on this
  project's x86 CPU an int8 hard-swish runs in TFLite's own kernel and the minimalistic
  Large backbone runs 3x faster, see benchmarks/RESULTS.md);
- :func:`mobilenetv3_edit`: the layer-config edits of the atrous clone;
- :data:`MOBILENETV3_FEATURE_LAYERS`: the taps at nominal strides 2 .. 32.

keras.applications builds 15 (Large) or 11 (Small) inverted-residual blocks, layers named
``expanded_conv_{i}_...`` (block 0: ``expanded_conv_...``). A block of stride 2 pads its
input asymmetrically (``..._depthwise_pad``, what ``imagenet_utils.correct_pad`` gives)
and runs its 3x3 or 5x5 depthwise conv 'valid' at stride 2. The atrous edit is
MobileNetV2's (:func:`mobilenetv3_dilation_rates`): the stride-2 blocks past the output
stride run at stride 1 with the symmetric pad of a 'same' conv at their rate, and keep the
rate before them; the blocks after each such block double it:

    Large, output stride 16: block 12 unstrided (rate 1); blocks 13-14 rate 2
           output stride 8:  block 6 unstrided (1); 7-11 rate 2; block 12 unstrided (2);
                             13-14 rate 4
    Small, output stride 16: block 8 unstrided (rate 1); blocks 9-10 rate 2
           output stride 8:  block 3 unstrided (1); 4-7 rate 2; block 8 unstrided (2);
                             9-10 rate 4

(torchvision's dilated MobileNetV3 gives the unstrided block 12 rate 2 already; here the
block whose stride goes keeps its taps one input pixel apart, as before.) No weight
changes shape, so every pretrained weight survives. Squeeze-excite pools over the whole
feature map, so past the first unstrided block the atrous features are not exactly the
plain network's features sampled at every other position (ResNet50's and MobileNetV2's
are); with the squeeze-excite gates held constant they are.

keras.applications leaves the activations unnamed (``activation_17``: a counter of the
process); the two that are taps are renamed in the clone: the stem's activation
``stem_activation`` and the last one, after the 1x1 ``conv_1``, ``conv_1_activation``
(hard-swish, or ReLU in the minimalistic networks).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import keras

MINIMALISTIC = "_minimalistic"
MOBILENETV3_NAMES = ("mobilenetv3large", "mobilenetv3small",
                     "mobilenetv3large" + MINIMALISTIC, "mobilenetv3small" + MINIMALISTIC)
# Per backbone: the widths keras.applications has ImageNet weights for.
MOBILENETV3_IMAGENET_WIDTHS = {name: (1.0,) if name.endswith(MINIMALISTIC) else (0.75, 1.0)
                               for name in MOBILENETV3_NAMES}
MOBILENETV3_PREPROCESSING_MODE = "tf"

STEM_TAP = "stem_activation"
LAST_TAP = "conv_1_activation"

# Nominal stride -> the last layer at that stride. Stride 32: the hard-swish after the 1x1
# conv_1 (960 channels for Large, 576 for Small at width 1), the features torchvision's
# LR-ASPP and DeepLab v3 take from MobileNetV3, rather than the 160 / 96 channels of the
# last block before that expansion (MobileNetV2's tap: its DeepLab heads take those).
MOBILENETV3_FEATURE_LAYERS: dict[str, dict[int, str]] = {
    "mobilenetv3large": {
        2: "expanded_conv_add",  # block 0 (stride 1) with its residual; see TAP_ALTERNATIVES
        4: "expanded_conv_2_add",
        8: "expanded_conv_5_add",
        16: "expanded_conv_11_add",
        32: LAST_TAP,
    },
    "mobilenetv3small": {
        2: STEM_TAP,  # block 0 has stride 2: the stem is all there is at stride 2
        4: "expanded_conv_project_bn",
        8: "expanded_conv_2_add",
        16: "expanded_conv_7_add",
        32: LAST_TAP,
    },
}
# The minimalistic networks have the same blocks, so the same taps.
for _name in MOBILENETV3_NAMES[2:]:
    MOBILENETV3_FEATURE_LAYERS[_name] = MOBILENETV3_FEATURE_LAYERS[_name.removesuffix(MINIMALISTIC)]

# Large's block 0 adds its input only where its 16 * width channels round to the stem's
# 16 (widths 0.75 to 1.25, the ImageNet ones among them); elsewhere the block's last layer
# is its projection's batch norm.
TAP_ALTERNATIVES = {"expanded_conv_add": "expanded_conv_project_bn"}

_DEPTHWISE = re.compile(r"expanded_conv_(?:(\d+)_)?depthwise(_pad)?")


def mobilenetv3_weights_filename(backbone: str, width_multiplier: float = 1.0) -> str:
    """The file keras.applications downloads for ``backbone``'s no-top ImageNet weights."""
    size = backbone.removeprefix("mobilenetv3")  # "large", "small_minimalistic", ...
    return f"weights_mobilenet_v3_{size}_224_{float(width_multiplier)}_float_no_top_v2.h5"


def mobilenetv3_application(backbone: str, image: keras.KerasTensor, weights: str | None,
                            width_multiplier: float) -> keras.Model:
    """keras.applications' MobileNetV3 on ``image`` (already scaled to -1..1), no top, no
    rescaling of its own, hard-swish and squeeze-excite (or minimalistic), with ``weights``."""
    minimalistic = backbone.endswith(MINIMALISTIC)
    application = {"mobilenetv3large": keras.applications.MobileNetV3Large,
                   "mobilenetv3small": keras.applications.MobileNetV3Small
                   }[backbone.removesuffix(MINIMALISTIC)]
    with warnings.catch_warnings():
        # With an unknown input size Keras loads the 224x224 ImageNet weights and says so.
        warnings.filterwarnings("ignore", message=".*input_shape.*is undefined or non-square")
        return application(include_top=False, weights=weights, input_tensor=image,
                           alpha=float(width_multiplier), minimalistic=minimalistic,
                           include_preprocessing=False)


def _block_of(name: str) -> tuple[int, bool] | None:
    """(block id, whether it is the pad layer) of a depthwise conv or its pad; else None."""
    match = _DEPTHWISE.fullmatch(name)
    if match is None:
        return None
    return int(match.group(1) or 0), match.group(2) is not None


def mobilenetv3_dilation_rates(strided_blocks: set[int] | frozenset[int], num_blocks: int,
                               output_stride: int) -> tuple[dict[int, int], set[int]]:
    """Per block id its depthwise conv's dilation rate, and the stride-2 blocks that run
    unstrided, for a network whose blocks ``strided_blocks`` (of ``num_blocks``) have
    stride 2 after a stride-2 stem (see the module docstring for both variants)."""
    rates, unstrided = {}, set()
    stride, rate = 2, 1
    for block in range(num_blocks):
        rates[block] = rate
        if block in strided_blocks:
            if stride < output_stride:
                stride *= 2
            else:
                unstrided.add(block)
                rate *= 2
    return rates, unstrided


def _tap_renames(pretrained: keras.Model) -> dict[str, str]:
    """The keras.applications names of the stem's and the last activation -> tap names."""
    stem = pretrained.get_layer("conv_bn").output
    renames = {}
    for layer in pretrained.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if any(tensor is stem for tensor in keras.tree.flatten(layer.input)):
            renames[layer.name] = STEM_TAP
        if layer.output is pretrained.outputs[0]:
            renames[layer.name] = LAST_TAP
    if len(renames) != 2:
        raise RuntimeError(f"{pretrained.name}: could not find its stem and last activation "
                           f"(found {renames}); has keras.applications' MobileNetV3 changed?")
    return renames


def mobilenetv3_edit(pretrained: keras.Model, output_stride: int) -> Callable[[dict], dict]:
    """The edit of every layer config of ``pretrained`` (keras.applications' MobileNetV3)
    for the atrous clone at ``output_stride``: strides, pads, dilation rates, tap names."""
    kernels, strided = {}, set()
    for layer in pretrained.layers:
        found = _block_of(layer.name)
        if found is None:
            continue
        block, is_pad = found
        if is_pad:
            strided.add(block)
        else:
            kernels[block] = int(layer.kernel_size[0])
    rates, unstrided = mobilenetv3_dilation_rates(strided, len(kernels), output_stride)
    renames = _tap_renames(pretrained)

    def edit(config: dict) -> dict:
        name = config["name"]
        if name in renames:
            config["name"] = renames[name]
            return config
        found = _block_of(name)
        if found is None:
            return config
        block, is_pad = found
        if is_pad:
            if block in unstrided:
                # The strided conv is 'valid' after an asymmetric pad; at stride 1 it needs
                # the symmetric pad of a 'same' conv of its kernel at its rate.
                pad = (kernels[block] // 2) * rates[block]
                config["padding"] = ((pad, pad), (pad, pad))
            return config
        if block in unstrided:
            config["strides"] = (1, 1)
        if rates[block] != 1:
            config["dilation_rate"] = (rates[block], rates[block])
        return config

    return edit


__all__ = ["LAST_TAP", "MINIMALISTIC", "MOBILENETV3_FEATURE_LAYERS", "MOBILENETV3_IMAGENET_WIDTHS",
           "MOBILENETV3_NAMES", "MOBILENETV3_PREPROCESSING_MODE", "STEM_TAP",
           "TAP_ALTERNATIVES", "mobilenetv3_application", "mobilenetv3_dilation_rates",
           "mobilenetv3_edit", "mobilenetv3_weights_filename"]
