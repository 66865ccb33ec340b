"""Segmentation losses over logits ``[B, H, W, C]`` and class-index labels ``[B, H, W]``.

Every loss here is first a value per image; the Keras reduction then averages those
values over the batch (``sample_weight``, if given, weighs images). Within an image,
pixels whose label is not a class (the ignore label 255, or any value outside
``0..num_classes-1``) are left out of both the sum and the count, whatever logits
they carry: their logits are replaced by zeros before any arithmetic, so even
infinite or NaN logits there change neither the value nor the gradient. An image
without a single labelled pixel has a loss of 0 (and still counts in the batch mean).

Names for :func:`build_loss` (``LOSS_NAMES``):

- ``"ce"``: cross-entropy from logits, the mean over the labelled pixels.
- ``"weighted_ce"``: each labelled pixel's cross-entropy times its class's weight,
  summed and divided by the number of labelled pixels. By default the weights come
  from the image itself (the textbook's scheme): with ``n`` labelled pixels of which
  ``n_c`` are of class ``c``, ``w_c = (n - n_c) / n``. So rare classes weigh more, and an
  image of a single class weighs nothing. ``class_weights`` (one float per class,
  e.g. :func:`pixelwise.class_weights.median_frequency_weights` of the training set)
  replace them.
- ``"dice"``: soft Dice over the softmax with the same pixel weights
  ``w_i``, one score over all pixels and classes of an image,
  ``1 - (2 * sum_i w_i sum_c p_ic t_ic + smooth) / (sum_i w_i sum_c (p_ic + t_ic) + smooth)``
  with ``p`` the softmax, ``t`` the one-hot labels, ignored pixels in neither.
- ``"ce_dice"`` (the default): ``weighted_ce + dice_weight * dice``, sharing weights.
- ``"focal"``: focal loss (Lin et al. 2017), ``-alpha_t (1 - p_t)^gamma log p_t``
  averaged over the labelled pixels; ``alpha`` is None, one float, or one per class.
- ``"lovasz"``: Lovasz-softmax (Berman et al. 2018), a surrogate of ``1 - IoU`` per class
  present in the image, averaged over those classes (``loss_terms.lovasz_softmax``).
- ``"ce_lovasz"``: ``weighted_ce + lovasz_weight * lovasz`` (the weights on the first term).
- ``"ohem"``: online hard example mining: per image, the mean of the ``weighted_ce`` pixel
  terms over only its hardest ``kept_fraction`` (0.25 by default) of labelled pixels, so the
  easy road and sky pixels stop drowning the poles and borders still wrong
  (``loss_terms.hardest_pixels_mean``).

Plain (unweighted) Dice or Dice + CE: pass ``class_weights=[1.0] * num_classes``.

All arithmetic is float32 whatever the logits' dtype (float16 / bfloat16 under mixed
precision are cast first). Written with ``keras.ops`` only.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from pixelwise.data.spec import IGNORE_LABEL
from pixelwise.loss_terms import (
    LabelledPixels,
    autodiff_cross_entropy_dice,
    cross_entropy_dice,
    hardest_pixels_mean,
    image_class_weights,
    lovasz_softmax,
    mean_over_labelled,
    pixel_cross_entropy,
    pixel_weights,
    prepare_pixels,
    soft_dice_loss,
    weighted_cross_entropy,
)

LOSS_NAMES = ("ce", "weighted_ce", "dice", "ce_dice", "focal", "lovasz", "ce_lovasz",
              "ohem")
DEFAULT_LOSS = "ce_dice"
# How "ce", "weighted_ce" and "ce_dice" get their gradient: autodiff (default; the bfloat16
# demo's scores, benchmarks/RESULTS.md) or written out (equal, lighter: cross_entropy_dice).
LOSS_GRADIENTS = ("autodiff", "written")

# (1 - p_t) is floored here in the focal loss so that its power stays differentiable
# at p_t == 1 for any gamma >= 0; the effect on the value is below float32 resolution.
_FOCAL_FLOOR = 1e-7


def _cross_entropy_dice_by(gradient: str):
    """The CE + Dice function whose gradient is ``gradient`` (one of ``LOSS_GRADIENTS``)."""
    if gradient not in LOSS_GRADIENTS:
        raise ValueError(f"gradient must be one of {', '.join(LOSS_GRADIENTS)}, got "
                         f"{gradient!r}")
    return cross_entropy_dice if gradient == "written" else autodiff_cross_entropy_dice


def _checked_class_weights(class_weights: Sequence[float] | None, num_classes: int,
                           what: str = "class_weights") -> list[float] | None:
    if class_weights is None:
        return None
    values = np.asarray(class_weights, dtype=np.float64)
    if values.shape != (num_classes,):
        raise ValueError(f"{what} needs one value per class ({num_classes}), "
                         f"got shape {values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{what} must be finite and non-negative, got {values.tolist()}")
    return [float(value) for value in values]


def _non_negative(name: str, value: float) -> float:
    if not float(value) >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return float(value)


class SegmentationLoss(keras.losses.Loss):
    """Base of the losses here: ``call`` returns the per-image values ``[B]``.

    Subclasses implement ``losses_from_pixels(pixels) -> [B]`` on a :class:`LabelledPixels`.
    """

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL, name: str | None = None,
                 reduction: str = "sum_over_batch_size", dtype=None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        if 0 <= int(ignore_label) < int(num_classes):
            raise ValueError(f"ignore_label {ignore_label} is a class index "
                             f"(0..{num_classes - 1}); use a value outside the classes, normally 255")
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)

    def per_image(self, labels, logits) -> object:
        """The loss of each image of the batch, float32 ``[B]``."""
        return self.losses_from_pixels(prepare_pixels(labels, logits, self.num_classes))

    def losses_from_pixels(self, pixels: LabelledPixels) -> object:
        raise NotImplementedError(f"{type(self).__name__} must define losses_from_pixels")

    def call(self, y_true, y_pred):
        return self.per_image(y_true, y_pred)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes,
                "ignore_label": self.ignore_label}


class WeightedLoss(SegmentationLoss):
    """A loss whose pixels carry class weights: per image (default) or ``class_weights``."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 class_weights: Sequence[float] | None = None, **kwargs) -> None:
        super().__init__(num_classes, ignore_label, **kwargs)
        self.class_weights = _checked_class_weights(class_weights, self.num_classes)

    def weights_of(self, pixels: LabelledPixels) -> object:
        """Each pixel's weight ``[B, H, W]`` (0 where ignored)."""
        if self.class_weights is None:
            class_weights = image_class_weights(pixels.one_hot)
        else:
            class_weights = ops.convert_to_tensor(self.class_weights, dtype="float32")
        return pixel_weights(pixels.one_hot, class_weights)

    def get_config(self) -> dict:
        return {**super().get_config(), "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package="pixelwise")
class CrossEntropy(SegmentationLoss):
    """Cross-entropy from logits, averaged over each image's labelled pixels."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 gradient: str = "autodiff", name: str = "cross_entropy", **kwargs) -> None:
        super().__init__(num_classes, ignore_label, name=name, **kwargs)
        self.gradient, self._loss = gradient, _cross_entropy_dice_by(gradient)

    def losses_from_pixels(self, pixels: LabelledPixels) -> object:
        # Weighted CE with every labelled pixel's weight 1.
        return self._loss(pixels, pixels.valid, smooth=1.0, dice_weight=0.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "gradient": self.gradient}


@keras.saving.register_keras_serializable(package="pixelwise")
class WeightedCrossEntropy(WeightedLoss):
    """``sum_i w_i CE_i / n`` over each image's ``n`` labelled pixels (weights: module doc)."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 class_weights: Sequence[float] | None = None, gradient: str = "autodiff",
                 name: str = "weighted_cross_entropy", **kwargs) -> None:
        super().__init__(num_classes, ignore_label, class_weights, name=name, **kwargs)
        self.gradient, self._loss = gradient, _cross_entropy_dice_by(gradient)

    def losses_from_pixels(self, pixels: LabelledPixels) -> object:
        return self._loss(pixels, self.weights_of(pixels), smooth=1.0, dice_weight=0.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "gradient": self.gradient}


@keras.saving.register_keras_serializable(package="pixelwise")
class DiceLoss(WeightedLoss):
    """Soft Dice over the softmax with the pixel weights and additive ``smooth``."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 class_weights: Sequence[float] | None = None, smooth: float = 1.0,
                 name: str = "dice", **kwargs) -> None:
        super().__init__(num_classes, ignore_label, class_weights, name=name, **kwargs)
        self.smooth = _non_negative("smooth", smooth)

    def losses_from_pixels(self, pixels: LabelledPixels) -> object:
        return soft_dice_loss(pixels, self.weights_of(pixels), self.smooth)

    def get_config(self) -> dict:
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="pixelwise")
class CrossEntropyDice(WeightedLoss):
    """Weighted cross-entropy plus ``dice_weight`` times soft Dice, on the same weights."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 class_weights: Sequence[float] | None = None, smooth: float = 1.0,
                 dice_weight: float = 1.0, gradient: str = "autodiff",
                 name: str = "cross_entropy_dice", **kwargs) -> None:
        super().__init__(num_classes, ignore_label, class_weights, name=name, **kwargs)
        self.smooth = _non_negative("smooth", smooth)
        self.dice_weight = _non_negative("dice_weight", dice_weight)
        self.gradient, self._loss = gradient, _cross_entropy_dice_by(gradient)

    def losses_from_pixels(self, pixels: LabelledPixels) -> object:
        return self._loss(pixels, self.weights_of(pixels), self.smooth, self.dice_weight)

    def get_config(self) -> dict:
        return {**super().get_config(), "smooth": self.smooth, "dice_weight": self.dice_weight,
                "gradient": self.gradient}


@keras.saving.register_keras_serializable(package="pixelwise")
class FocalLoss(SegmentationLoss):
    """Focal loss ``-alpha_t (1 - p_t)^gamma log p_t``, averaged over labelled pixels.

    ``gamma`` >= 0 (0 gives cross-entropy); ``alpha``: None (1 for every class), one
    float for all classes, or one float per class (``alpha_t`` is the label's).
    """

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL, gamma: float = 2.0,
                 alpha: float | Sequence[float] | None = None, name: str = "focal",
                 **kwargs) -> None:
        super().__init__(num_classes, ignore_label, name=name, **kwargs)
        self.gamma = _non_negative("gamma", gamma)
        if alpha is None or np.ndim(alpha) == 0:
            if alpha is not None and not (np.isfinite(alpha) and alpha >= 0):
                raise ValueError(f"alpha must be finite and non-negative, got {alpha}")
            self.alpha = None if alpha is None else float(alpha)
        else:
            self.alpha = _checked_class_weights(alpha, self.num_classes, what="alpha")

    def losses_from_pixels(self, pixels: LabelledPixels) -> object:
        log_p_true = ops.sum(pixels.one_hot * ops.log_softmax(pixels.logits, axis=-1), axis=-1)
        one_minus_p_true = ops.maximum(-ops.expm1(log_p_true), _FOCAL_FLOOR)
        focal = -ops.power(one_minus_p_true, self.gamma) * log_p_true
        if isinstance(self.alpha, list):
            alpha = ops.convert_to_tensor(self.alpha, dtype="float32")
            focal = focal * ops.sum(pixels.one_hot * alpha, axis=-1)
        elif self.alpha is not None:
            focal = focal * self.alpha
        return mean_over_labelled(focal, pixels.valid)

    def get_config(self) -> dict:
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="pixelwise")
class LovaszSoftmax(SegmentationLoss):
    """Lovasz-softmax: per image, the mean over its present classes of the Lovasz
    extension of ``1 - IoU`` (``loss_terms.lovasz_softmax``)."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 name: str = "lovasz_softmax", **kwargs) -> None:
        super().__init__(num_classes, ignore_label, name=name, **kwargs)

    def losses_from_pixels(self, pixels: LabelledPixels) -> object:
        return lovasz_softmax(pixels)


@keras.saving.register_keras_serializable(package="pixelwise")
class CrossEntropyLovasz(WeightedLoss):
    """Weighted cross-entropy plus ``lovasz_weight`` times Lovasz-softmax: every pixel's
    gradient from the first, each class's IoU (thin ones as much as the road) from the
    second."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 class_weights: Sequence[float] | None = None, lovasz_weight: float = 1.0,
                 name: str = "cross_entropy_lovasz", **kwargs) -> None:
        super().__init__(num_classes, ignore_label, class_weights, name=name, **kwargs)
        self.lovasz_weight = _non_negative("lovasz_weight", lovasz_weight)

    def losses_from_pixels(self, pixels: LabelledPixels) -> object:
        log_probabilities = ops.log_softmax(pixels.logits, axis=-1)
        cross_entropy = weighted_cross_entropy(pixels, self.weights_of(pixels),
                                               log_probabilities)
        return cross_entropy + self.lovasz_weight * lovasz_softmax(
            pixels, ops.exp(log_probabilities))

    def get_config(self) -> dict:
        return {**super().get_config(), "lovasz_weight": self.lovasz_weight}


@keras.saving.register_keras_serializable(package="pixelwise")
class HardPixelCrossEntropy(WeightedLoss):
    """Online hard example mining: per image, the class-weighted cross-entropy averaged over
    only the ``kept_fraction`` of its labelled pixels where that term is largest."""

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 class_weights: Sequence[float] | None = None, kept_fraction: float = 0.25,
                 name: str = "hard_pixel_cross_entropy", **kwargs) -> None:
        super().__init__(num_classes, ignore_label, class_weights, name=name, **kwargs)
        if not 0.0 < float(kept_fraction) <= 1.0:
            raise ValueError(f"kept_fraction must be in (0, 1], got {kept_fraction}")
        self.kept_fraction = float(kept_fraction)

    def losses_from_pixels(self, pixels: LabelledPixels) -> object:
        pixel_losses = self.weights_of(pixels) * pixel_cross_entropy(pixels)
        return hardest_pixels_mean(pixel_losses, pixels.valid, self.kept_fraction)

    def get_config(self) -> dict:
        return {**super().get_config(), "kept_fraction": self.kept_fraction}


_LOSS_CLASSES = {
    "ce": CrossEntropy,
    "weighted_ce": WeightedCrossEntropy,
    "dice": DiceLoss,
    "ce_dice": CrossEntropyDice,
    "focal": FocalLoss,
    "lovasz": LovaszSoftmax,
    "ce_lovasz": CrossEntropyLovasz,
    "ohem": HardPixelCrossEntropy,
}
_LOSS_OPTIONS = {
    "ce": ("gradient",),
    "weighted_ce": ("gradient",),
    "dice": ("smooth",),
    "ce_dice": ("smooth", "dice_weight", "gradient"),
    "focal": ("gamma", "alpha"),
    "lovasz": (),
    "ce_lovasz": ("lovasz_weight",),
    "ohem": ("kept_fraction",),
}
LOSSES_WITH_GRADIENT = tuple(name for name in _LOSS_OPTIONS if "gradient" in _LOSS_OPTIONS[name])


def build_loss(name: str = DEFAULT_LOSS, *, num_classes: int, ignore_label: int = IGNORE_LABEL,
               class_weights: Sequence[float] | None = None, **options) -> SegmentationLoss:
    """The loss called ``name`` (one of ``LOSS_NAMES``), ready for ``model.compile``.

    ``class_weights``: dataset-level weights (one per class) used instead of the per-image
    weights by "weighted_ce", "dice", "ce_dice", "ce_lovasz" and "ohem". ``options``: "dice"
    takes ``smooth``; "ce_dice" ``smooth`` and ``dice_weight``; "focal" ``gamma`` and ``alpha``;
    "ce_lovasz" ``lovasz_weight``; "ohem" ``kept_fraction``; "ce", "weighted_ce" and
    "ce_dice" ``gradient`` ("autodiff" or "written", ``LOSS_GRADIENTS``).

    >>> loss = build_loss("ce_dice", num_classes=21)
    >>> model.compile(optimizer="adam", loss=loss)  # doctest: +SKIP
    """
    if name not in _LOSS_CLASSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    unknown = sorted(set(options) - set(_LOSS_OPTIONS[name]))
    if unknown:
        allowed = ", ".join(_LOSS_OPTIONS[name]) or "none"
        raise ValueError(f"loss {name!r} has no option {', '.join(unknown)} "
                         f"(its options: {allowed})")
    if class_weights is not None:
        if not issubclass(_LOSS_CLASSES[name], WeightedLoss):
            hint = {"ce": "use 'weighted_ce' for class-weighted cross-entropy",
                    "focal": "give per-class weights to focal as alpha=[...]"}.get(
                name, "use 'ce_lovasz' to weigh its cross-entropy by class")
            raise ValueError(f"loss {name!r} does not take class_weights; {hint}")
        options["class_weights"] = class_weights
    return _LOSS_CLASSES[name](num_classes=num_classes, ignore_label=ignore_label, **options)


def per_image_loss(loss: SegmentationLoss, labels, logits) -> object:
    """The loss of each image in a batch, float32 ``[B]``; their mean is the batch loss."""
    if not isinstance(loss, SegmentationLoss):
        raise TypeError(f"per_image_loss needs a pixelwise loss (from build_loss), "
                        f"got {type(loss).__name__}")
    return loss.per_image(labels, logits)
