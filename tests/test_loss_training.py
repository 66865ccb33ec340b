"""Training with the written-out CE + Dice gradient follows the same path as autodiff.

One gradient can agree while training drifts (a gradient used differently under
``model.fit``'s compiled step, under XLA, or under mixed precision). So a small network is
trained for several steps with each loss, from the same weights on the same batch, and
the two trajectories (loss per step, weights at the end) must coincide.

The network has no batch normalisation on purpose: with it, DeepLab at the demo's 6 x 6
features is chaotic, and two formulas equal to rounding part ways within a few steps
(benchmarks/RESULTS.md, "The demo's score and the loss's gradient"), which would say
nothing about the loss.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pixelwise.config import DataConfig, RunConfig, TrainConfig
from pixelwise.data.spec import DatasetSpec
from pixelwise.global_state import dtype_policy
from pixelwise.losses import CrossEntropyDice
from pixelwise.recipe import build_training_loss

NUM_CLASSES = 4
IGNORE = 255
STEPS = 12


def autodiff_cross_entropy_dice(labels, logits):
    """The textbook's weighted CE + soft Dice in plain TensorFlow, left to autodiff: per-image
    class weights ``(n - n_c) / n``, ignored pixels in neither term, smooth 1."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    valid = tf.cast((labels >= 0) & (labels < NUM_CLASSES), tf.float32)
    one_hot = tf.one_hot(tf.where(valid > 0, labels, -1), NUM_CLASSES)
    labelled = tf.reduce_sum(valid, axis=[1, 2])
    class_counts = tf.reduce_sum(one_hot, axis=[1, 2])
    class_weights = tf.math.divide_no_nan(labelled[:, None] - class_counts, labelled[:, None])
    weights = tf.reduce_sum(one_hot * class_weights[:, None, None, :], axis=-1)
    log_probabilities = tf.nn.log_softmax(tf.where(valid[..., None] > 0, logits, 0.0))
    cross_entropy = tf.math.divide_no_nan(
        tf.reduce_sum(-weights * tf.reduce_sum(one_hot * log_probabilities, -1), [1, 2]),
        labelled)
    probabilities = tf.exp(log_probabilities) * valid[..., None]
    intersection = tf.reduce_sum(weights[..., None] * probabilities * one_hot, [1, 2, 3])
    total = tf.reduce_sum(weights[..., None] * (probabilities + one_hot), [1, 2, 3])
    return tf.reduce_mean(cross_entropy + 1.0 - (2.0 * intersection + 1.0) / (total + 1.0))


def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (8, 24, 24, 3)).astype("float32")
    labels = (images[..., 0] // 64).astype("int32")
    labels[rng.random(labels.shape) < 0.1] = IGNORE
    return images, labels


def trajectory(loss, optimizer: str, jit_compile: bool) -> tuple[list[float], np.ndarray]:
    """Losses of ``STEPS`` training steps and the weights after them, from seeded weights."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    features = keras.layers.Rescaling(1 / 255)(inputs)
    features = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(features)
    logits = keras.layers.Conv2D(NUM_CLASSES, 1, dtype="float32")(features)
    model = keras.Model(inputs, logits)
    model.compile(optimizer=(keras.optimizers.SGD(0.5) if optimizer == "sgd"
                             else keras.optimizers.Adam(1e-2)),
                  loss=loss, jit_compile=jit_compile)
    images, labels = batch()
    losses = [float(model.train_on_batch(images, labels)) for _ in range(STEPS)]
    return losses, np.concatenate([weight.ravel() for weight in model.get_weights()])


@pytest.mark.parametrize("policy, optimizer, jit_compile", [
    ("float32", "sgd", False), ("float32", "adam", True), ("bfloat16", "adam", False)])
def test_training_with_the_written_out_gradient_follows_autodiff(policy, optimizer,
                                                                 jit_compile):
    with dtype_policy(policy):
        written_loss = CrossEntropyDice(NUM_CLASSES, IGNORE, gradient="written")
        written, written_weights = trajectory(written_loss, optimizer, jit_compile)
        reference, reference_weights = trajectory(autodiff_cross_entropy_dice, optimizer,
                                                  jit_compile)
    assert written[-1] < written[0] - 0.01  # it trains: the comparison is not of standstills
    np.testing.assert_allclose(written, reference, rtol=1e-5)
    drift = np.linalg.norm(written_weights - reference_weights)
    assert drift <= 1e-5 * np.linalg.norm(reference_weights)


@pytest.mark.parametrize("loss, gradient", [("ce_dice", "written"), ("weighted_ce", "autodiff"),
                                            ("ce", "written")])
def test_the_runs_loss_takes_the_configured_gradient(loss, gradient):
    config = RunConfig(data=DataConfig(source="unused"),
                       train=TrainConfig(loss=loss, loss_gradient=gradient))
    built = build_training_loss(config, None, DatasetSpec(("a", "b"), ((0, 0, 0), (9, 9, 9))))
    assert built.gradient == gradient
    assert TrainConfig().loss_gradient == "autodiff"
    with pytest.raises(ValueError, match="train.loss_gradient must be autodiff or written"):
        TrainConfig(loss_gradient="fused")
