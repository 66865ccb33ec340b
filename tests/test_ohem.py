"""Online hard example mining ("ohem"): the class-weighted cross-entropy of each image's
hardest pixels only, against a NumPy computation, with no gradient at the pixels left out."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from pixelwise.losses import build_loss, per_image_loss
from thin_lines import thin_class_iou_before_and_after_training

IGNORE = 255


def reference(labels, logits, class_weights, fraction):
    """Per image: sort the labelled pixels' weighted CE, average the top ceil(fraction * n)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    values = []
    for image_labels, image_log_probabilities in zip(labels, log_probabilities):
        keep = image_labels < len(class_weights)
        classes = image_labels[keep].astype(int)
        terms = -image_log_probabilities[keep][np.arange(classes.size), classes]
        terms = np.sort(terms * np.asarray(class_weights)[classes])[::-1]
        kept = math.ceil(fraction * terms.size)
        values.append(terms[:kept].mean() if kept else 0.0)
    return np.array(values)


def batch(seed, num_classes=4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=(3, 7, 9)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.25] = IGNORE
    labels[2] = IGNORE  # an image with nothing labelled
    logits = rng.normal(0.0, 2.0, size=labels.shape + (num_classes,)).astype(np.float32)
    logits[labels == IGNORE] = np.nan  # never read
    return labels, logits


@pytest.mark.parametrize("seed, fraction", [(0, 0.25), (1, 0.1), (2, 0.6), (3, 1.0)])
def test_it_averages_the_hardest_fraction_of_weighted_cross_entropy(seed, fraction):
    labels, logits = batch(seed)
    weights = [0.5, 1.0, 2.0, 3.0]
    loss = build_loss("ohem", num_classes=4, class_weights=weights, kept_fraction=fraction)
    per_image = keras.ops.convert_to_numpy(per_image_loss(loss, labels, logits))
    np.testing.assert_allclose(per_image, reference(labels, logits, weights, fraction),
                               rtol=1e-5, atol=1e-6)
    assert per_image[2] == 0.0


def test_keeping_every_pixel_is_the_weighted_cross_entropy():
    labels, logits = batch(4)
    weights = [1.0, 2.0, 1.0, 0.5]
    every = build_loss("ohem", num_classes=4, class_weights=weights, kept_fraction=1.0)
    weighted = build_loss("weighted_ce", num_classes=4, class_weights=weights)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(per_image_loss(every, labels, logits)),
                               keras.ops.convert_to_numpy(per_image_loss(weighted, labels, logits)),
                               rtol=1e-5)


def test_only_the_kept_pixels_get_a_gradient():
    labels, logits = batch(5)
    logits = np.nan_to_num(logits)
    loss = build_loss("ohem", num_classes=4, class_weights=[1.0] * 4, kept_fraction=0.25)
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss(labels, variable)
    gradient = np.abs(tape.gradient(value, variable).numpy()).sum(axis=-1)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    for image in range(2):
        keep = labels[image] < 4
        terms = -np.log(probabilities[image][keep][np.arange(keep.sum()),
                                                    labels[image][keep].astype(int)])
        kept = math.ceil(0.25 * terms.size)
        hardest = np.zeros(terms.size, bool)
        hardest[np.argsort(-terms)[:kept]] = True
        assert np.all(gradient[image][keep][hardest] > 0)
        assert np.all(gradient[image][keep][~hardest] == 0)
        assert np.all(gradient[image][~keep] == 0)
    assert np.all(gradient[2] == 0)


def test_the_kept_fraction_is_checked_and_kept():
    assert build_loss("ohem", num_classes=3, kept_fraction=0.5).get_config()[
        "kept_fraction"] == 0.5
    for fraction in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="kept_fraction must be in"):
            build_loss("ohem", num_classes=3, kept_fraction=fraction)


def test_a_model_trained_on_it_learns_a_rare_class_on_unseen_images():
    before, after = thin_class_iou_before_and_after_training(
        build_loss("ohem", num_classes=2, class_weights=[1.0, 1.0]))
    assert after > 0.8 and after > before + 0.3, (before, after)
