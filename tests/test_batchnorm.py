"""FusedBatchNormalization: Keras's BatchNormalization computed by TensorFlow's fused kernel.

Against Keras's own layer with the same weights: outputs, gradients and moving-statistic
updates in training and inference, under float32 and mixed precision; the same config and
variables (weights files and .keras files move between the two); the fast path is really
taken (the traced graph holds FusedBatchNormV3) and is left where it does not apply.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pixelwise.models import build_backbone, build_model
from pixelwise.models.batchnorm import FusedBatchNormalization, fused_class

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

CHANNELS = 6


@pytest.fixture
def policy(request):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _random_statistics(rng, channels: int) -> list[np.ndarray]:
    """gamma, beta, moving mean, moving variance, none at their initial values."""
    return [rng.uniform(0.5, 1.5, channels), rng.uniform(-0.5, 0.5, channels),
            rng.uniform(-0.5, 0.5, channels), rng.uniform(0.5, 1.5, channels)]


def _layer_pair(config: dict, input_shape, seed: int = 0):
    rng = np.random.default_rng(seed)
    reference = keras.layers.BatchNormalization(**config)
    reference.build(input_shape)
    reference.set_weights(_random_statistics(rng, input_shape[-1]))
    fused = FusedBatchNormalization.from_config(reference.get_config())
    fused.build(input_shape)
    fused.set_weights(reference.get_weights())
    return reference, fused


def _outputs_and_gradients(layer, inputs, weights_of_loss, training: bool):
    """Outputs, d loss / d (inputs, gamma, beta) for a loss that is not invariant to the
    normalisation (random weights on the outputs and on their squares), and the weights
    after the call."""
    inputs = tf.constant(inputs)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=training)
        values = tf.cast(outputs, "float32")
        loss = tf.reduce_sum(weights_of_loss[0] * values + weights_of_loss[1] * values ** 2)
    gradients = tape.gradient(loss, [inputs, layer.gamma.value, layer.beta.value])
    as_float = [np.asarray(tf.cast(gradient, "float32")) for gradient in gradients]
    return np.asarray(values), as_float, [np.asarray(weight) for weight in layer.get_weights()]


TOLERANCES = {  # (rtol, atol) of outputs and gradients, relative to their scale
    "float32": (1e-5, 1e-5),
    "mixed_bfloat16": (1e-2, 1e-2),
    "mixed_float16": (2e-3, 2e-3),
}


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "mixed_float16"], indirect=True)
@pytest.mark.parametrize("training", [True, False])
def test_fused_equals_keras_batch_norm(policy, training):
    rng = np.random.default_rng(1)
    shape = (3, 5, 7, CHANNELS)
    compute_dtype = keras.mixed_precision.global_policy().compute_dtype
    inputs = tf.cast(rng.normal(2.0, 3.0, shape).astype("float32"), compute_dtype)
    weights_of_loss = rng.normal(size=(2, *shape)).astype("float32")
    reference, fused = _layer_pair({"momentum": 0.9, "epsilon": 1e-3}, shape)
    expected, expected_gradients, expected_weights = _outputs_and_gradients(
        reference, inputs, weights_of_loss, training)
    actual, actual_gradients, actual_weights = _outputs_and_gradients(
        fused, inputs, weights_of_loss, training)

    rtol, atol = TOLERANCES[policy]
    assert fused(inputs, training=training).dtype == compute_dtype
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * np.abs(expected).max())
    for name, got, want in zip(("inputs", "gamma", "beta"), actual_gradients, expected_gradients):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * np.abs(want).max(),
                                   err_msg=f"gradient of {name}")
    # Statistics are float32 in both; the moving averages moved (training) or not, alike.
    for got, want in zip(actual_weights, expected_weights):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    initial = _random_statistics(np.random.default_rng(0), CHANNELS)
    moved = not np.allclose(actual_weights[2], initial[2])
    assert moved == training


def test_training_moves_the_statistics_by_keras_formula():
    """moving = moving * momentum + batch * (1 - momentum), with the biased batch
    variance: checked against NumPy, not only against Keras's layer."""
    rng = np.random.default_rng(2)
    inputs = rng.normal(1.0, 2.0, (2, 3, 4, CHANNELS)).astype("float32")
    _, fused = _layer_pair({"momentum": 0.8}, inputs.shape)
    mean_before, variance_before = fused.get_weights()[2:]
    fused(inputs, training=True)
    mean_after, variance_after = fused.get_weights()[2:]
    np.testing.assert_allclose(
        mean_after, 0.8 * mean_before + 0.2 * inputs.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(
        variance_after, 0.8 * variance_before + 0.2 * inputs.var(axis=(0, 1, 2)), rtol=1e-5)


def test_frozen_layer_runs_in_inference_mode():
    """Keras's rule: a BatchNormalization with trainable=False uses the moving statistics
    even when called with training=True, and does not update them."""
    inputs = np.random.default_rng(3).normal(size=(2, 4, 4, CHANNELS)).astype("float32")
    reference, fused = _layer_pair({}, inputs.shape)
    reference.trainable = fused.trainable = False
    before = fused.get_weights()
    np.testing.assert_allclose(fused(inputs, training=True), reference(inputs, training=True),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fused(inputs, training=True), fused(inputs, training=False))
    for got, want in zip(fused.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def _traced_op_types(layer, inputs, training: bool) -> set[str]:
    traced = tf.function(lambda batch: layer(batch, training=training))
    graph = traced.get_concrete_function(tf.TensorSpec(inputs.shape, inputs.dtype)).graph
    return {operation.type for operation in graph.get_operations()}


@pytest.mark.parametrize("training", [True, False])
def test_fused_kernel_is_the_one_that_runs(training):
    inputs = np.zeros((2, 4, 4, CHANNELS), dtype="float32")
    _, fused = _layer_pair({}, inputs.shape)
    operations = _traced_op_types(fused, inputs, training)
    assert "FusedBatchNormV3" in operations
    assert "Mean" not in operations  # no moments: the unfused path is not taken as well


@pytest.mark.parametrize("config, shape, dtype, reason", [
    ({"axis": 1}, (2, CHANNELS, 4, 4), "float32", "channels first"),
    ({}, (2, 5, CHANNELS), "float32", "3-D input"),
    ({"epsilon": 1e-6}, (2, 4, 4, CHANNELS), "float32", "epsilon below cuDNN's floor"),
    ({"renorm": True}, (2, 4, 4, CHANNELS), "float32", "batch renormalisation"),
    ({}, (2, 4, 4, CHANNELS), "float64", "float64 input"),
])
def test_parent_path_where_the_kernel_does_not_apply(config, shape, dtype, reason):
    rng = np.random.default_rng(4)
    reference = keras.layers.BatchNormalization(dtype=dtype, **config)
    fused = FusedBatchNormalization.from_config(reference.get_config())
    inputs = rng.normal(size=shape).astype(dtype)
    reference.build(shape)
    fused.build(shape)
    fused.set_weights(reference.get_weights())
    assert not fused.uses_fused_kernel(inputs), reason
    assert "FusedBatchNormV3" not in _traced_op_types(fused, inputs, training=True)
    for training in (True, False):
        np.testing.assert_allclose(fused(inputs, training=training),
                                   reference(inputs, training=training), rtol=1e-6, atol=1e-6)


def test_masked_call_takes_the_parent_path():
    inputs = np.random.default_rng(5).normal(size=(2, 3, 4, CHANNELS)).astype("float32")
    mask = np.ones((2, 3, 4), dtype=bool)
    mask[:, 0] = False
    reference, fused = _layer_pair({}, inputs.shape)
    assert not fused.uses_fused_kernel(inputs, mask)
    np.testing.assert_allclose(fused(inputs, training=True, mask=mask),
                               reference(inputs, training=True, mask=mask), rtol=1e-6, atol=1e-6)


def test_same_config_and_variables_as_keras_layer():
    reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=1.001e-5, name="conv1_bn")
    fused = FusedBatchNormalization.from_config(reference.get_config())
    assert fused.get_config() == reference.get_config()
    reference.build((None, 8, 8, CHANNELS))
    fused.build((None, 8, 8, CHANNELS))
    assert [v.path for v in fused.weights] == [v.path for v in reference.weights]
    assert [v.trainable for v in fused.weights] == [v.trainable for v in reference.weights]
    assert fused_class(keras.layers.BatchNormalization) is FusedBatchNormalization
    assert fused_class(keras.layers.Conv2D) is keras.layers.Conv2D
    assert keras.saving.get_registered_name(FusedBatchNormalization) == (
        "pixelwise>BatchNormalization")
    # Keras files weights under the class's snake-case name: the same as Keras's layer.
    assert FusedBatchNormalization.__name__ == keras.layers.BatchNormalization.__name__
    assert FusedBatchNormalization is not keras.layers.BatchNormalization


def _tiny_model(fused: bool) -> keras.Model:
    layer_class = FusedBatchNormalization if fused else keras.layers.BatchNormalization
    inputs = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(CHANNELS, 3, padding="same", name="conv")(inputs)
    features = layer_class(name="bn")(features)
    return keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(features))


def test_weights_files_move_between_fused_and_keras_layers(tmp_path):
    keras.utils.set_random_seed(6)
    plain = _tiny_model(fused=False)
    plain.get_layer("bn").set_weights(_random_statistics(np.random.default_rng(6), CHANNELS))
    path = tmp_path / "plain.weights.h5"
    plain.save_weights(path)
    fused = _tiny_model(fused=True)
    fused.load_weights(path)
    images = np.random.default_rng(7).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(fused(images, training=False), plain(images, training=False),
                               rtol=1e-5, atol=1e-5)


def test_saved_model_loads_in_safe_mode(tmp_path):
    keras.utils.set_random_seed(8)
    model = _tiny_model(fused=True)
    model.get_layer("bn").set_weights(_random_statistics(np.random.default_rng(8), CHANNELS))
    path = tmp_path / "fused.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.get_layer("bn")) is FusedBatchNormalization
    images = np.random.default_rng(9).normal(size=(1, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(loaded(images, training=False), model(images, training=False))


# --- in the models ---------------------------------------------------------------------

def _batch_norm_types(model: keras.Model) -> set[type]:
    return {type(layer) for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)}


@pytest.fixture(scope="module")
def model_pair():
    """DeepLab v3+ on MobileNetV2 0.35 with fused and with Keras batch norms, same weights
    (random, with random BN statistics)."""
    keras.utils.set_random_seed(10)
    # No dropout: the two models' dropout masks would differ.
    plain = build_model("deeplabv3plus", num_classes=3, backbone="mobilenetv2",
                        width_multiplier=0.35, dropout=0.0, fused_batchnorm=False)
    rng = np.random.default_rng(10)
    for layer in plain.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(_random_statistics(rng, layer.gamma.shape[0]))
    fused = build_model("deeplabv3plus", num_classes=3, backbone="mobilenetv2",
                        width_multiplier=0.35, dropout=0.0)
    fused.set_weights(plain.get_weights())
    return plain, fused


def test_build_model_swaps_every_batch_norm(model_pair):
    plain, fused = model_pair
    assert _batch_norm_types(plain) == {keras.layers.BatchNormalization}
    assert _batch_norm_types(fused) == {FusedBatchNormalization}
    # MobileNetV2 up to block_16_project_BN (52 less Conv_1_bn) + ASPP (5 branches +
    # projection) + decoder (low level + 2 refinements)
    assert sum(isinstance(layer, FusedBatchNormalization) for layer in fused.layers) == 51 + 6 + 3
    assert [layer.name for layer in fused.layers] == [layer.name for layer in plain.layers]


def test_fused_model_trains_like_the_keras_model(model_pair):
    """One SGD step through Keras's own train step (a tf.function, jit_compile off): the
    same loss and moving statistics, and the same update of the trained weights up to
    float noise. Through 60 batch norms in training mode on a tiny batch that noise is
    large for single weights: Keras's own model already differs by 0.6% (relative norm of
    all gradients) between eager and tf.function execution; the fused one by 0.3%."""
    plain, fused = model_pair
    rng = np.random.default_rng(11)
    images = rng.uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    labels = rng.integers(0, 3, (2, 64, 64)).astype("int32")
    np.testing.assert_allclose(fused(images, training=False), plain(images, training=False),
                               rtol=1e-4, atol=1e-4)
    before = [np.asarray(weight) for weight in plain.trainable_weights]
    losses = []
    for model in (plain, fused):
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=False)
        losses.append(model.train_on_batch(images, labels))
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    for plain_weight, fused_weight in zip(plain.non_trainable_weights, fused.non_trainable_weights):
        np.testing.assert_allclose(np.asarray(fused_weight), np.asarray(plain_weight),
                                   rtol=1e-3, atol=1e-5, err_msg=plain_weight.path)

    def update(model):
        return np.concatenate([(np.asarray(weight) - start).ravel()
                               for weight, start in zip(model.trainable_weights, before)])

    plain_update, fused_update = update(plain), update(fused)
    assert np.linalg.norm(plain_update) > 0
    relative = np.linalg.norm(fused_update - plain_update) / np.linalg.norm(plain_update)
    assert relative < 0.02


def test_fused_backbone_loads_imagenet_style_weights(tmp_path):
    """A keras.applications weights file (random here) loads into the fused backbone and
    gives the features of the unfused one."""
    keras.utils.set_random_seed(12)
    reference = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(None, None, 3), alpha=0.35)
    rng = np.random.default_rng(12)
    for layer in reference.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(_random_statistics(rng, layer.gamma.shape[0]))
    path = tmp_path / "mobilenetv2_random.weights.h5"
    reference.save_weights(path)
    fused = build_backbone("mobilenetv2", weights=path, width_multiplier=0.35)
    plain = build_backbone("mobilenetv2", weights=path, width_multiplier=0.35,
                           fused_batchnorm=False)
    assert _batch_norm_types(fused) == {FusedBatchNormalization}
    for layer in (layer for layer in reference.layers if layer.weights):
        for want, got in zip(layer.get_weights(), fused.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(got, want, err_msg=layer.name)
    images = rng.uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    expected = plain(images, training=False)
    np.testing.assert_allclose(fused(images, training=False), expected,
                               rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))


def test_fused_model_under_xla_inference(model_pair):
    _, fused = model_pair
    images = np.random.default_rng(13).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    compiled = tf.function(lambda batch: fused(batch, training=False), jit_compile=True)
    np.testing.assert_allclose(compiled(images), fused(images, training=False),
                               rtol=1e-4, atol=1e-4)
