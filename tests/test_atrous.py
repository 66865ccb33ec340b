"""Atrous convolution as per-tap products over the outputs each tap reaches.

Against Keras's own dilated Conv2D with the same kernel: outputs and gradients, for sizes
where the rate is below, equal to and above the feature size, known or unknown at trace
time; the work it skips, counted by hand; and AtrousConv2D keeps Conv2D's config and
weights.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pixelwise.models.atrous import (
    tap_reach,
    tapwise_convolution,
    tapwise_multiply_adds,
)
from pixelwise.models.layers import AtrousConv2D

CASES = [  # (height, width), kernel size, dilation rate
    ((7, 9), 3, (2, 2)),      # backbone-like: every tap reaches most outputs
    ((24, 24), 3, (18, 18)),  # ASPP rate 18 at 384 px: off-centre taps reach 6 of 24 rows
    ((24, 24), 3, (6, 6)),
    ((4, 6), 3, (6, 6)),      # rate beyond the map (ASPP at 64 px): only the centre tap
    ((6, 6), 3, (6, 6)),      # rate equal to the size: off-centre taps reach nothing
    ((5, 13), 3, (12, 12)),   # beyond in one axis, within in the other
    ((5, 8), 3, (2, 3)),      # different rates per axis
    ((6, 5), 2, (2, 2)),      # even kernel: the 'same' pad is uneven (more after)
    ((3, 3), 3, (1, 1)),      # undilated
]


def _reference_layer(kernel_size, rate, in_channels=5, filters=4, seed=0):
    layer = keras.layers.Conv2D(filters, kernel_size, dilation_rate=rate, padding="same",
                                use_bias=False)
    layer.build((None, None, None, in_channels))
    rng = np.random.default_rng(seed)
    layer.kernel.assign(rng.normal(size=layer.kernel.shape).astype("float32"))
    return layer


def _outputs_and_gradients(convolve, images, kernel, weights_of_loss):
    images = tf.constant(images)
    kernel = tf.constant(kernel)
    with tf.GradientTape() as tape:
        tape.watch([images, kernel])
        outputs = convolve(images, kernel)
        loss = tf.reduce_sum(weights_of_loss * outputs)
    image_gradient, kernel_gradient = tape.gradient(loss, [images, kernel])
    return np.asarray(outputs), np.asarray(image_gradient), np.asarray(kernel_gradient)


@pytest.mark.parametrize("size, kernel_size, rate", CASES)
@pytest.mark.parametrize("known_size", [True, False])
def test_tapwise_equals_dilated_conv(size, kernel_size, rate, known_size):
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, *size, 5)).astype("float32")
    reference = _reference_layer(kernel_size, rate)
    kernel = np.asarray(reference.kernel)
    weights_of_loss = rng.normal(size=(2, *size, 4)).astype("float32")
    expected = _outputs_and_gradients(
        lambda x, k: keras.ops.conv(x, k, padding="same", dilation_rate=rate),
        images, kernel, weights_of_loss)

    def tapwise(x, k):
        return tapwise_convolution(x, k, dilation_rate=rate)

    if not known_size:
        unknown = tf.TensorSpec((None, None, None, 5), tf.float32)
        traced = tf.function(tapwise, autograph=False,
                             input_signature=[unknown, tf.TensorSpec(kernel.shape, tf.float32)])
        tapwise = traced
    actual = _outputs_and_gradients(tapwise, images, kernel, weights_of_loss)
    for name, got, want in zip(("outputs", "input gradient", "kernel gradient"), actual, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=name)


def test_one_graph_serves_every_size():
    """Traced once with unknown sizes, the same function is exact for maps smaller than,
    equal to and larger than the rate."""
    rng = np.random.default_rng(2)
    kernel = rng.normal(size=(3, 3, 3, 2)).astype("float32")
    traced = tf.function(lambda x: tapwise_convolution(x, kernel, dilation_rate=(6, 6)),
                         autograph=False,
                         input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    for size in ((2, 3), (6, 6), (7, 20), (13, 13)):
        images = rng.normal(size=(1, *size, 3)).astype("float32")
        expected = keras.ops.conv(images, kernel, padding="same", dilation_rate=6)
        np.testing.assert_allclose(traced(images), expected, rtol=1e-5, atol=1e-5)
    assert len(traced._list_all_concrete_functions()) == 1


def test_rate_beyond_the_map_is_a_centre_tap_product():
    rng = np.random.default_rng(3)
    images = rng.normal(size=(1, 4, 6, 3)).astype("float32")
    kernel = rng.normal(size=(3, 3, 3, 2)).astype("float32")
    centre_only = np.einsum("bhwc,cf->bhwf", images, kernel[1, 1])
    np.testing.assert_allclose(tapwise_convolution(images, kernel, dilation_rate=(6, 6)),
                               centre_only, rtol=1e-5, atol=1e-5)


def test_multiply_adds_counted_by_hand():
    # 24 rows, rate 18, 3 taps: the top tap reaches rows 18..23 (6), the centre all 24,
    # the bottom rows 0..5 (6).
    assert tap_reach(24, 3, 18) == [6, 24, 6]
    assert tap_reach(24, 3, 6) == [18, 24, 18]
    assert tap_reach(4, 3, 6) == [0, 4, 0]
    # Even kernel, rate 2: 'same' pads 1 before and 1 after; taps at offsets -1 and +1.
    assert tap_reach(6, 2, 2) == [5, 5]
    # Dense 3x3 at 24x24 is 9 x 576 = 5184 position-taps; rate 18 needs 36 x 36 = 1296.
    assert tapwise_multiply_adds(24, 24, (3, 3), (18, 18)) == 36 * 36
    assert tapwise_multiply_adds(24, 24, (3, 3), (12, 12)) == 48 * 48
    assert tapwise_multiply_adds(24, 24, (3, 3), (6, 6)) == 60 * 60
    assert tapwise_multiply_adds(24, 24, (3, 3), (1, 1)) == 70 * 70


@pytest.mark.parametrize("size, rate", [((24, 24), 18), ((4, 6), 6), ((7, 9), 2)])
def test_atrous_conv2d_layer_matches_conv2d(size, rate):
    """Same config and weights as Keras's Conv2D (a bias and an activation too), same
    outputs, inside a model traced for unknown sizes as Keras's predict does."""
    reference = keras.layers.Conv2D(3, 3, dilation_rate=rate, padding="same",
                                    activation="relu", bias_initializer="glorot_uniform")
    images = np.random.default_rng(4).normal(size=(2, *size, 5)).astype("float32")
    expected = reference(images)
    atrous = AtrousConv2D.from_config(reference.get_config())
    atrous.build(images.shape)
    atrous.set_weights(reference.get_weights())
    assert atrous.get_config() == reference.get_config()
    assert [w.path.split("/")[-1] for w in atrous.weights] == ["kernel", "bias"]
    inputs = keras.Input((None, None, 5))
    model = keras.Model(inputs, atrous(inputs))
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_the_per_device_formulations_give_the_same_outputs_and_gradients(padding):
    """tapwise (CPUs) and native (GPUs: the Conv2D op's own dilations) are one layer with
    one set of weights: the same outputs and weight gradients within float rounding."""
    from pixelwise.models.atrous import use_atrous_formulation

    layer = AtrousConv2D(4, 3, dilation_rate=(6, 2), padding=padding)
    images = tf.constant(np.random.default_rng(5).normal(size=(2, 14, 11, 5)).astype("float32"))
    layer.build(images.shape)
    results = {}
    for formulation in ("tapwise", "native"):
        with use_atrous_formulation(formulation), tf.GradientTape() as tape:
            outputs = layer(images)
            loss = tf.reduce_sum(outputs * tf.cos(outputs))
        results[formulation] = (np.asarray(outputs),
                                np.asarray(tape.gradient(loss, layer.trainable_weights[0])))
    for tapwise, native in zip(results["tapwise"], results["native"]):
        np.testing.assert_allclose(tapwise, native, rtol=1e-4, atol=1e-4)
    # And they are two computations: only the native graph has a dilated convolution op.
    dilated_ops = {}
    for formulation in ("tapwise", "native"):
        with use_atrous_formulation(formulation):
            graph = tf.function(layer).get_concrete_function(images).graph
        dilated_ops[formulation] = [
            op.type for op in graph.get_operations()
            if "dilations" in op.node_def.attr and 6 in op.get_attr("dilations")]
    assert not dilated_ops["tapwise"] and dilated_ops["native"]


def test_the_formulation_is_chosen_per_device_and_can_be_overridden(monkeypatch):
    from pixelwise.models import atrous

    monkeypatch.delenv(atrous.ATROUS_ENVIRONMENT, raising=False)
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [])
    assert atrous.atrous_formulation() == "auto"  # a CPU: each layer chooses
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    assert atrous.atrous_formulation() == "native"
    with atrous.use_atrous_formulation("tapwise"):
        assert atrous.atrous_formulation() == "tapwise"
    monkeypatch.setenv(atrous.ATROUS_ENVIRONMENT, "tapwise")
    assert atrous.atrous_formulation() == "tapwise"
    monkeypatch.setenv(atrous.ATROUS_ENVIRONMENT, "fast")
    with pytest.raises(ValueError, match="PIXELWISE_ATROUS 'fast': choose one of"):
        atrous.atrous_formulation()
    with pytest.raises(ValueError, match="atrous formulation 'x'"):
        with atrous.use_atrous_formulation("x"):
            pass


def test_on_a_cpu_each_layer_keeps_the_per_tap_products_only_where_they_skip_much(monkeypatch):
    """CPU, "auto": at 24 x 24 features the backbone's rate 2 (11% of the taps' work
    skipped) and ASPP's rate 6 (31%) run oneDNN's dilated kernel, rates 12 and 18 (56%,
    75%) the per-tap products; an unknown size, no oneDNN or an explicit choice keeps
    the per-tap products (or what was chosen). The outputs are the same either way."""
    from pixelwise.models import atrous

    monkeypatch.delenv(atrous.ATROUS_ENVIRONMENT, raising=False)
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [])
    monkeypatch.setattr(atrous, "onednn_enabled", lambda: True)
    chosen = {rate: atrous.layer_formulation(24, 24, (3, 3), (rate, rate))
              for rate in (2, 6, 12, 18)}
    assert chosen == {2: "native", 6: "native", 12: "tapwise", 18: "tapwise"}
    assert atrous.layer_formulation(None, 24, (3, 3), (2, 2)) == "tapwise"
    with atrous.use_atrous_formulation("tapwise"):
        assert atrous.layer_formulation(24, 24, (3, 3), (2, 2)) == "tapwise"
    monkeypatch.setattr(atrous, "onednn_enabled", lambda: False)
    assert atrous.layer_formulation(24, 24, (3, 3), (2, 2)) == "tapwise"

    monkeypatch.setattr(atrous, "onednn_enabled", lambda: True)
    images = tf.constant(np.random.default_rng(6).normal(size=(2, 24, 24, 5)).astype("float32"))
    for rate in (2, 12):
        layer = AtrousConv2D(4, 3, dilation_rate=rate, padding="same")
        layer.build(images.shape)
        graph = tf.function(layer).get_concrete_function(images).graph
        dilated = [op for op in graph.get_operations()
                   if "dilations" in op.node_def.attr and rate in op.get_attr("dilations")]
        assert bool(dilated) == (chosen[rate] == "native")
        with atrous.use_atrous_formulation("tapwise"):
            tapwise = layer(images)
        np.testing.assert_allclose(layer(images), tapwise, rtol=1e-4, atol=1e-4)
