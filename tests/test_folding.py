"""Batch norm folded into convolutions: the same function as the model it came from, on
every architecture (plain, depthwise with multipliers, atrous, with and without bias,
without gamma or beta), and only where a batch norm alone reads a linear convolution."""

import keras
import numpy as np
import pytest

from pixelwise.models import build_model
from pixelwise.models.batchnorm import FusedBatchNormalization
from pixelwise.models.folding import fold_batch_norms, foldable_pairs

SIZE = 32


def randomize_statistics(model: keras.Model, seed: int = 0) -> None:
    """Batch norms far from identity, so a fold that ignores any of them shows."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([
                rng.uniform(0.5, 1.5, weight.shape).astype("float32")
                if variable.name in ("gamma", "moving_variance")
                else rng.normal(0.0, 0.5, weight.shape).astype("float32")
                for weight, variable in zip(layer.get_weights(), layer.weights)])


def images(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")


def assert_same_function(model: keras.Model, folded: keras.Model) -> None:
    expected = np.asarray(model(images(), training=False))
    actual = np.asarray(folded(images(), training=False))
    np.testing.assert_allclose(actual, expected, rtol=1e-4,
                               atol=1e-4 * float(np.abs(expected).max()))


@pytest.mark.parametrize("name, backbone, options", [
    ("deeplabv3", "tiny", {}),
    ("deeplabv3plus", "mobilenetv2", dict(width_multiplier=0.35)),  # depthwise, atrous
    ("lraspp", "mobilenetv3small_minimalistic", {}),
    ("unet", "tiny", {}),
])
def test_every_batch_norm_of_our_models_folds_to_the_same_function(name, backbone, options):
    keras.utils.set_random_seed(0)
    model = build_model(name, num_classes=3, backbone=backbone, input_shape=(SIZE, SIZE, 3),
                        backbone_weights=None, **options)
    randomize_statistics(model)
    before = [weight.copy() for weight in model.get_weights()]
    folded = fold_batch_norms(model)
    assert not [layer for layer in folded.layers
                if isinstance(layer, keras.layers.BatchNormalization)]
    assert_same_function(model, folded)
    for weight, kept in zip(model.get_weights(), before):  # the model itself is unchanged
        np.testing.assert_array_equal(weight, kept)


@pytest.mark.parametrize("convolution", [
    lambda: keras.layers.Conv2D(6, 3, padding="same", use_bias=True, name="conv"),
    lambda: keras.layers.Conv2D(6, 3, padding="same", dilation_rate=2, use_bias=False,
                                name="conv"),
    lambda: keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="conv"),
], ids=["conv_bias", "atrous_no_bias", "depthwise_x2"])
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False)])
def test_kernels_and_biases_of_each_kind_fold_exactly(convolution, center, scale):
    inputs = keras.Input((SIZE, SIZE, 3))
    normalize = FusedBatchNormalization(center=center, scale=scale, epsilon=1e-3, name="bn")
    outputs = keras.layers.ReLU()(normalize(convolution()(inputs)))
    model = keras.Model(inputs, outputs)
    randomize_statistics(model, seed=3)
    assert foldable_pairs(model) == {"bn": "conv"}
    assert_same_function(model, fold_batch_norms(model))


def test_a_batch_norm_that_cannot_fold_is_kept():
    inputs = keras.Input((SIZE, SIZE, 3))
    shared = keras.layers.Conv2D(4, 3, padding="same", name="shared")(inputs)
    activated = keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                                    name="activated")(inputs)
    outputs = keras.layers.Concatenate()([
        keras.layers.BatchNormalization(name="bn_shared")(shared),
        shared,  # the convolution's output is read elsewhere too
        keras.layers.BatchNormalization(name="bn_activated")(activated),
        keras.layers.BatchNormalization(name="bn_input")(inputs)])
    model = keras.Model(inputs, outputs)
    randomize_statistics(model)
    assert foldable_pairs(model) == {}
    assert fold_batch_norms(model) is model
