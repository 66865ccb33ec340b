"""The per-pixel terms the losses of :mod:`pixelwise.losses` are made of, over logits
``[B, H, W, C]`` and a batch's labelled pixels (:func:`prepare_pixels`): cross-entropy, soft
Dice (with its gradient written out, :func:`cross_entropy_dice`), the mean over each image's
hardest pixels (online hard example mining) and the Lovasz-softmax extension of the Jaccard
loss. Each returns one value per image, ``[B]``. float32, written with ``keras.ops`` only.
"""

from __future__ import annotations

from typing import NamedTuple

from keras import ops


class LabelledPixels(NamedTuple):
    """One batch made ready for a loss: ignored pixels are zero in every field."""

    one_hot: object  # float32 [B, H, W, C]: the label's class, all zeros where ignored
    valid: object  # float32 [B, H, W]: 1 where the label is a class, else 0
    logits: object  # float32 [B, H, W, C]: the logits, zeros where ignored
    classes: object  # int32 [B, H, W]: the label's class, -1 where ignored


def prepare_pixels(labels, logits, num_classes: int) -> LabelledPixels:
    """Cast, check shapes and mask out every pixel whose label is not a class.

    ``labels``: integer (or integral float) ``[B, H, W]`` or ``[B, H, W, 1]``;
    ``logits``: ``[B, H, W, num_classes]`` of any float dtype.
    """
    logits = ops.cast(ops.convert_to_tensor(logits), "float32")
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) == 4 and labels.shape[-1] == 1:
        labels = ops.squeeze(labels, axis=-1)
    if len(logits.shape) != 4:
        raise ValueError(f"logits must be [batch, height, width, classes], "
                         f"got shape {logits.shape}")
    if logits.shape[-1] is not None and logits.shape[-1] != num_classes:
        raise ValueError(f"logits have {logits.shape[-1]} channels but the loss was built for "
                         f"num_classes={num_classes}; build it with the model's class count")
    if len(labels.shape) != 3:
        raise ValueError(f"labels must be [batch, height, width] (or with a trailing 1), "
                         f"got shape {labels.shape} for logits of shape {logits.shape}")
    labels = ops.cast(labels, "int32")
    is_class = ops.logical_and(ops.greater_equal(labels, 0), ops.less(labels, num_classes))
    valid = ops.cast(is_class, "float32")
    classes = ops.where(is_class, labels, -1)
    # -1 has no class: its one-hot row is all zeros.
    one_hot = ops.one_hot(classes, num_classes, dtype="float32")
    logits = ops.where(is_class[..., None], logits, 0.0)
    return LabelledPixels(one_hot=one_hot, valid=valid, logits=logits, classes=classes)


def image_class_weights(one_hot) -> object:
    """The textbook's per-image class weights ``w_c = (n - n_c) / n``: float32 ``[B, C]``.

    ``n`` counts the labelled pixels of each image, ``n_c`` those of class ``c``; an image
    with no labelled pixel gets all-zero weights.
    """
    class_counts = ops.sum(one_hot, axis=(1, 2))
    labelled_counts = ops.sum(class_counts, axis=-1, keepdims=True)
    return ops.divide_no_nan(labelled_counts - class_counts, labelled_counts)


def pixel_weights(one_hot, class_weights) -> object:
    """Each pixel's weight, its label's class weight: ``[B, H, W]``, 0 where ignored.

    ``class_weights`` is ``[C]`` (dataset-level) or ``[B, C]`` (per image).
    """
    if len(class_weights.shape) == 2:
        class_weights = class_weights[:, None, None, :]
    return ops.sum(one_hot * class_weights, axis=-1)


def pixel_cross_entropy(pixels: LabelledPixels, log_probabilities=None) -> object:
    """``-log softmax(logits)[label]`` per pixel: ``[B, H, W]``, 0 where ignored.
    ``log_probabilities``: the log-softmax of ``pixels.logits`` if already computed."""
    if log_probabilities is None:
        log_probabilities = ops.log_softmax(pixels.logits, axis=-1)
    return -ops.sum(pixels.one_hot * log_probabilities, axis=-1)


def mean_over_labelled(pixel_values, valid) -> object:
    """Per image, the sum of ``pixel_values`` divided by its labelled-pixel count: ``[B]``."""
    return ops.divide_no_nan(ops.sum(pixel_values, axis=(1, 2)), ops.sum(valid, axis=(1, 2)))


def soft_dice_loss(pixels: LabelledPixels, weights, smooth: float,
                   probabilities=None) -> object:
    """Weighted soft Dice loss per image, ``[B]``; 0 for an image with nothing labelled.
    ``probabilities``: the softmax of ``pixels.logits`` if already computed."""
    if probabilities is None:
        probabilities = ops.softmax(pixels.logits, axis=-1)
    probabilities = probabilities * pixels.valid[..., None]
    weights = weights[..., None]
    intersection = ops.sum(weights * probabilities * pixels.one_hot, axis=(1, 2, 3))
    total = ops.sum(weights * (probabilities + pixels.one_hot), axis=(1, 2, 3))
    denominator = total + smooth
    ratio = ops.divide_no_nan(2.0 * intersection + smooth, denominator)
    return ops.where(ops.greater(denominator, 0.0), 1.0 - ratio, ops.zeros_like(ratio))


def cross_entropy_dice(pixels: LabelledPixels, weights, smooth: float,
                       dice_weight: float) -> object:
    """``mean_over_labelled(w * CE) + dice_weight * soft Dice`` per image, ``[B]``, with
    the gradient written out instead of left to autodiff (``dice_weight`` 0: the weighted
    cross-entropy alone; weights ``pixels.valid``: the plain one).

    Both terms depend on the logits only through ``p_y``, each pixel's softmax
    probability of its label: ``CE_i = -log p_y``, and Dice's denominator is
    ``sum_i w_i sum_c (p_ic + t_ic) = 2 sum_i w_i`` because a pixel's probabilities sum
    to 1. So per image, with ``n`` labelled pixels and ``d = 2 sum_i w_i + smooth``,

        loss = sum_i w_i (-log p_y) / n + dice_weight * (1 - (2 sum_i w_i p_y + smooth) / d)
        d loss / d z_ic = (p_ic - t_ic) * w_i * (1 / n + 2 dice_weight p_y / d)

    Autodiff keeps ~7 logits-sized tensors to the backward pass, at a step's memory peak;
    this keeps the logits and recomputes the softmax. At 384 x 384, batch 8: the loss 1.76x
    faster, a DeepLab v3 ResNet-50 step ~0.5 GB lighter (benchmarks/loss_fusion.py, memory.py).
    """
    valid, logits, classes = pixels.valid, pixels.logits, pixels.classes
    labelled_counts = ops.sum(valid, axis=(1, 2))
    denominator = 2.0 * ops.sum(weights, axis=(1, 2)) + smooth
    has_denominator = ops.greater(denominator, 0.0)
    # Where an image has nothing to score, d is 0 (smooth 0) and so is every weight.
    safe_denominator = ops.where(has_denominator, denominator, ops.ones_like(denominator))
    # The label's logit by index: no logits-sized one-hot product in the forward pass.
    label_index = ops.maximum(classes, 0)[..., None]  # 0 where ignored; w_i is 0 there

    @ops.custom_gradient
    def per_image(logits):
        log_normalizer = ops.logsumexp(logits, axis=-1)
        label_logit = ops.take_along_axis(logits, label_index, axis=-1)[..., 0]
        log_p_label = (label_logit - log_normalizer) * valid
        p_label = ops.exp(log_p_label) * valid
        cross_entropy = ops.divide_no_nan(ops.sum(-weights * log_p_label, axis=(1, 2)),
                                          labelled_counts)
        ratio = (2.0 * ops.sum(weights * p_label, axis=(1, 2)) + smooth) / safe_denominator
        dice = ops.where(has_denominator, 1.0 - ratio, ops.zeros_like(ratio))

        def gradient(*arguments, upstream=None):
            if upstream is None:
                (upstream,) = arguments
            cross_entropy_scale = ops.divide_no_nan(upstream, labelled_counts)
            dice_scale = 2.0 * dice_weight * upstream / safe_denominator
            scale = weights * (cross_entropy_scale[:, None, None]
                               + dice_scale[:, None, None] * p_label)
            probabilities = ops.exp(logits - log_normalizer[..., None])
            labels = ops.one_hot(classes, ops.shape(logits)[-1], dtype=logits.dtype)
            return (probabilities - labels) * scale[..., None]

        return cross_entropy + dice_weight * dice, gradient

    return per_image(logits)


def weighted_cross_entropy(pixels: LabelledPixels, weights, log_probabilities) -> object:
    """``sum_i w_i CE_i / n`` per image over its ``n`` labelled pixels, ``[B]``, from the
    log-softmax of ``pixels.logits``."""
    return mean_over_labelled(weights * pixel_cross_entropy(pixels, log_probabilities),
                              pixels.valid)


def autodiff_cross_entropy_dice(pixels: LabelledPixels, weights, smooth: float,
                                dice_weight: float) -> object:
    """The value of :func:`cross_entropy_dice`, its gradient left to autodiff: one
    log-softmax serves both terms, its exp the softmax (Dice skipped at ``dice_weight`` 0)."""
    log_probabilities = ops.log_softmax(pixels.logits, axis=-1)
    cross_entropy = weighted_cross_entropy(pixels, weights, log_probabilities)
    if dice_weight == 0.0:
        return cross_entropy
    dice = soft_dice_loss(pixels, weights, smooth, ops.exp(log_probabilities))
    return cross_entropy + dice_weight * dice


def hardest_pixels_mean(pixel_values, valid, fraction: float) -> object:
    """Per image, the mean of the largest ``ceil(fraction * n)`` of ``pixel_values``
    (non-negative, ``[B, H, W]``) among its ``n`` labelled pixels, ``[B]``; 0 for an image
    with nothing labelled. The pixels left out get no gradient: online hard example mining
    (Shrivastava et al. 2016) as DeepLab's ``top_k_percent_pixels`` does it per image."""
    batch = ops.shape(pixel_values)[0]
    # Ignored pixels (key -1) rank after every labelled one, so never among the kept.
    keys = ops.reshape(ops.where(valid > 0, pixel_values, -1.0), (batch, -1))
    largest_first = ops.flip(ops.sort(keys, axis=-1), axis=-1)
    kept = ops.ceil(fraction * ops.sum(valid, axis=(1, 2)))[:, None]  # [B, 1]
    ranks = ops.cast(ops.arange(ops.shape(keys)[1]), "float32")[None, :]
    in_kept = ops.cast(ops.less(ranks, kept), "float32")
    return ops.divide_no_nan(ops.sum(largest_first * in_kept, axis=-1), kept[:, 0])


def lovasz_softmax(pixels: LabelledPixels, probabilities=None) -> object:
    """The Lovasz-softmax loss per image, ``[B]`` (Berman, Rannen Triki and Blaschko 2018,
    arXiv:1705.08790): for each class present in the image's labels, the Lovasz extension
    of its Jaccard loss ``1 - IoU`` evaluated at the errors ``|t_ic - p_ic|``; the mean over
    those classes (0 for an image with nothing labelled).

    A surrogate of the IoU itself, so a class of few pixels (poles, signs) weighs as much
    as the road, and its gradient is exact at hard predictions: with ``p`` one-hot, the
    loss is the mean over present classes of ``1 - IoU``. Sorts every class's errors in
    every image (``[B, C, H*W]``).
    """
    if probabilities is None:
        probabilities = ops.softmax(pixels.logits, axis=-1)
    batch, classes = ops.shape(probabilities)[0], ops.shape(probabilities)[-1]
    valid = ops.reshape(pixels.valid, (batch, 1, -1))
    labels = ops.transpose(ops.reshape(pixels.one_hot, (batch, -1, classes)), (0, 2, 1))
    errors = ops.abs(labels - ops.transpose(ops.reshape(probabilities, (batch, -1, classes)),
                                            (0, 2, 1))) * valid
    # Largest error first; ignored pixels (key -1) after every labelled one, where the
    # Jaccard's running counts they would change meet only errors of 0.
    order = ops.argsort(-ops.where(valid > 0, errors, -1.0), axis=-1)
    sorted_errors = ops.take_along_axis(errors, order, axis=-1)
    sorted_labels = ops.take_along_axis(labels, order, axis=-1)
    label_counts = ops.sum(labels, axis=-1, keepdims=True)  # [B, C, 1]
    intersection = label_counts - ops.cumsum(sorted_labels, axis=-1)
    union = label_counts + ops.cumsum(1.0 - sorted_labels, axis=-1)
    jaccard = 1.0 - ops.divide_no_nan(intersection, union)
    # The Lovasz extension's weights: the Jaccard loss's increments along the sorted order.
    increments = ops.concatenate([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]],
                                 axis=-1)
    per_class = ops.sum(sorted_errors * ops.stop_gradient(increments), axis=-1)  # [B, C]
    present = ops.cast(ops.greater(label_counts[..., 0], 0.0), "float32")
    return ops.divide_no_nan(ops.sum(per_class * present, axis=-1), ops.sum(present, axis=-1))
