"""The model registry: every segmentation model pixelwise builds, by name.

    >>> entry = model_entry("deeplabv3")
    >>> entry.default_output_stride, entry.allowed_output_strides   # 16, (8, 16)
    >>> input_multiple("unet")                                        # 32
    >>> default_backbone("lraspp")                                    # "mobilenetv3large"

Two numbers relate a model's sizes; they are kept apart because they mean different things:

- **output stride**: how much the backbone downsamples, input size / size of its last
  feature map. DeepLab runs an atrous backbone at 16 or 8; U-Net's encoder runs unmodified
  at 32. It is a setting of the model (``output_stride=`` in :func:`build_model`).
- **input multiple**: what an input's height and width must be divisible by, so every
  feature map the model concatenates or adds has a whole size and the logits come back at
  the input size. Callers pad or crop to it. It follows from the output stride: every
  model here taps its backbone at power-of-two strides up to the output stride, so the
  input multiple equals the output stride (:meth:`ModelEntry.input_multiple`).

To add a model: write its builder (keyword arguments ``num_classes``, ``input_shape``,
``backbone``, ``backbone_weights``, ``width_multiplier``, ``dropout``,
``fused_batchnorm``, plus ``output_stride`` and ``multi_grid`` if it takes them) and add
a :class:`ModelEntry` to :data:`MODELS`; ``build_model``, the command line's choices and
the stride every caller pads to follow from it. Each model names the backbone it is built
on when none is asked for (``default_backbone``: ResNet50 for DeepLab and U-Net,
MobileNetV3-Large for LR-ASPP, the head designed for it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras

from pixelwise.models.backbones import BACKBONE_NAMES
from pixelwise.models.deeplabv3 import DEEPLAB_OUTPUT_STRIDES, build_deeplabv3, build_deeplabv3plus
from pixelwise.models.lraspp import LRASPP_OUTPUT_STRIDES, build_lraspp
from pixelwise.models.unet import UNET_OUTPUT_STRIDE, build_unet


@dataclass(frozen=True)
class ModelEntry:
    """One model of the registry.

    Args:
        name: the name ``build_model`` and ``--model`` take.
        builder: builds the model from keyword arguments (see the module docstring).
        backbones: the backbone names it accepts.
        allowed_output_strides: the output strides it can run at.
        default_output_stride: the output stride when none is asked for.
        takes_output_stride: whether ``builder`` takes ``output_stride`` (U-Net's encoder
            has one fixed stride and does not).
        takes_multi_grid: whether ``builder`` takes ``multi_grid``.
        stride_hint: the sentence that explains a refused output stride.
        default_backbone: the backbone when none is asked for.
    """

    name: str
    builder: Callable[..., keras.Model]
    backbones: tuple[str, ...]
    allowed_output_strides: tuple[int, ...]
    default_output_stride: int
    takes_output_stride: bool
    takes_multi_grid: bool
    stride_hint: str
    default_backbone: str = "resnet50"

    def output_stride(self, requested: int | None = None) -> int:
        """``requested``, checked against :attr:`allowed_output_strides`, or the default."""
        if requested is None:
            return self.default_output_stride
        if int(requested) not in self.allowed_output_strides:
            raise ValueError(f"output_stride {requested}: {self.stride_hint}")
        return int(requested)

    def input_multiple(self, output_stride: int | None = None) -> int:
        """What input height and width must be multiples of at ``output_stride`` (None:
        the default): the output stride itself (see the module docstring)."""
        return self.output_stride(output_stride)


MODELS: dict[str, ModelEntry] = {
    "deeplabv3": ModelEntry(
        name="deeplabv3", builder=build_deeplabv3, backbones=BACKBONE_NAMES,
        allowed_output_strides=DEEPLAB_OUTPUT_STRIDES, default_output_stride=16,
        takes_output_stride=True, takes_multi_grid=True,
        stride_hint="DeepLab supports 16 or 8"),
    "deeplabv3plus": ModelEntry(
        name="deeplabv3plus", builder=build_deeplabv3plus, backbones=BACKBONE_NAMES,
        allowed_output_strides=DEEPLAB_OUTPUT_STRIDES, default_output_stride=16,
        takes_output_stride=True, takes_multi_grid=True,
        stride_hint="DeepLab supports 16 or 8"),
    "unet": ModelEntry(
        name="unet", builder=build_unet, backbones=BACKBONE_NAMES,
        allowed_output_strides=(UNET_OUTPUT_STRIDE,), default_output_stride=UNET_OUTPUT_STRIDE,
        takes_output_stride=False, takes_multi_grid=False,
        stride_hint="the U-Net encoder runs at stride 32 (its skips are at 1/2 .. 1/16); "
                    "leave output_stride unset"),
    # Any backbone: each has a stride-8 tap for the low-level branch.
    "lraspp": ModelEntry(
        name="lraspp", builder=build_lraspp, backbones=BACKBONE_NAMES,
        allowed_output_strides=LRASPP_OUTPUT_STRIDES, default_output_stride=16,
        takes_output_stride=True, takes_multi_grid=False,
        stride_hint="LR-ASPP supports 16 or 8", default_backbone="mobilenetv3large"),
}

MODEL_NAMES = tuple(MODELS)


def model_entry(name: str) -> ModelEntry:
    """The registry's entry for model ``name``; ValueError naming the choices otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}") from None


def all_backbone_names() -> tuple[str, ...]:
    """Every backbone some model accepts, in the registry's order."""
    names: list[str] = []
    for entry in MODELS.values():
        names += [backbone for backbone in entry.backbones if backbone not in names]
    return tuple(names)


def all_output_strides() -> tuple[int, ...]:
    """Every output stride some model runs at, ascending."""
    return tuple(sorted({stride for entry in MODELS.values()
                         for stride in entry.allowed_output_strides}))


def default_backbone(name: str) -> str:
    """Model ``name``'s backbone when none is asked for."""
    return model_entry(name).default_backbone


def default_output_stride(name: str) -> int:
    """Model ``name``'s output stride when none is asked for."""
    return model_entry(name).default_output_stride


def input_multiple(name: str, output_stride: int | None = None) -> int:
    """What model ``name``'s input height and width must be multiples of at
    ``output_stride`` (None: its default). The one place every caller asks."""
    return model_entry(name).input_multiple(output_stride)


__all__ = ["MODELS", "MODEL_NAMES", "ModelEntry", "all_backbone_names", "all_output_strides",
           "default_backbone", "default_output_stride", "input_multiple", "model_entry"]
