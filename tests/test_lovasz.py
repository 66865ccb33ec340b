"""Lovasz-softmax: at hard predictions it is 1 - IoU of each present class, and as a
training loss it moves a model's IoU on a thin class."""

import keras
import numpy as np
import pytest

from pixelwise.losses import build_loss, per_image_loss
from thin_lines import thin_class_iou_before_and_after_training

IGNORE = 255


def iou_losses(labels, predictions, num_classes):
    """Per image: the mean over the classes its labels hold of 1 - IoU (ignored pixels out)."""
    values = []
    for image_labels, image_predictions in zip(labels, predictions):
        keep = image_labels < num_classes
        truth, guess = image_labels[keep], image_predictions[keep]
        per_class = [1.0 - np.sum((truth == c) & (guess == c)) / np.sum((truth == c) | (guess == c))
                     for c in np.unique(truth)]
        values.append(np.mean(per_class) if per_class else 0.0)
    return np.array(values)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_at_hard_predictions_it_is_one_minus_the_iou_of_each_present_class(seed):
    rng = np.random.default_rng(seed)
    num_classes = 4
    labels = rng.integers(0, num_classes, size=(3, 9, 11)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.2] = IGNORE
    labels[2, 3:, :] = 1  # a class that covers most of one image
    predictions = np.where(rng.random(labels.shape) < 0.6, labels % num_classes,
                           rng.integers(0, num_classes, size=labels.shape))
    logits = 60.0 * np.eye(num_classes, dtype=np.float32)[predictions]  # softmax ~one-hot

    loss = build_loss("lovasz", num_classes=num_classes)
    per_image = keras.ops.convert_to_numpy(per_image_loss(loss, labels, logits))

    np.testing.assert_allclose(per_image, iou_losses(labels, predictions, num_classes),
                               rtol=1e-5, atol=1e-6)


def test_a_perfect_prediction_costs_nothing_and_an_unlabelled_image_zero():
    labels = np.array([[[0, 1, 2], [2, 2, IGNORE]], [[IGNORE] * 3] * 2], np.uint8)
    logits = 60.0 * np.eye(3, dtype=np.float32)[np.minimum(labels, 2)]
    for name in ("lovasz", "ce_lovasz"):
        per_image = keras.ops.convert_to_numpy(
            per_image_loss(build_loss(name, num_classes=3), labels, logits))
        np.testing.assert_allclose(per_image, [0.0, 0.0], atol=1e-6)


def test_the_weight_of_the_lovasz_term_is_checked_and_kept():
    loss = build_loss("ce_lovasz", num_classes=3, lovasz_weight=0.5, class_weights=[1, 2, 3])
    assert loss.get_config()["lovasz_weight"] == 0.5
    with pytest.raises(ValueError, match="lovasz_weight must be >= 0"):
        build_loss("ce_lovasz", num_classes=3, lovasz_weight=-1.0)
    with pytest.raises(ValueError, match="use 'ce_lovasz' to weigh its cross-entropy"):
        build_loss("lovasz", num_classes=3, class_weights=[1, 1, 1])


def test_training_on_lovasz_raises_a_thin_class_iou_on_unseen_images():
    before, after = thin_class_iou_before_and_after_training(
        build_loss("lovasz", num_classes=2))
    assert after > 0.8 and after > before + 0.3, (before, after)


def test_a_class_weighting_is_refused_at_configuration_for_a_loss_without_weights():
    from pixelwise.config import LOSSES_WITH_CLASS_WEIGHTS, TrainConfig
    from pixelwise.losses import _LOSS_CLASSES, WeightedLoss

    assert set(LOSSES_WITH_CLASS_WEIGHTS) == {
        name for name, loss in _LOSS_CLASSES.items() if issubclass(loss, WeightedLoss)}
    with pytest.raises(ValueError, match="class_weighting sqrt_median_frequency needs a loss "
                                         r"that takes class weights .*loss lovasz does not"):
        TrainConfig(loss="lovasz", class_weighting="sqrt_median_frequency")
    assert TrainConfig(loss="ce_lovasz", class_weighting="sqrt_median_frequency").loss == \
        "ce_lovasz"
