"""The custom layers: preprocessing as keras.applications does it, resizing to a runtime size."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pixelwise.models.layers import (
    AtrousConv2D,
    AtrousDepthwiseConv2D,
    ImageNetPreprocessing,
    ResizeToMatch,
    bilinear_resize,
)


@pytest.mark.parametrize("mode, reference", [
    ("caffe", keras.applications.resnet.preprocess_input),
    ("tf", keras.applications.mobilenet_v2.preprocess_input),
    ("torch", keras.applications.densenet.preprocess_input),
])
def test_preprocessing_matches_keras_applications(mode, reference):
    images = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype("float32")
    expected = reference(images.copy())
    np.testing.assert_allclose(ImageNetPreprocessing(mode)(images), expected, rtol=1e-5, atol=1e-4)


def test_caffe_preprocessing_known_pixel():
    # RGB (255, 0, 10) -> BGR (10, 0, 255) minus the BGR mean (103.939, 116.779, 123.68).
    pixel = np.array([[[[255.0, 0.0, 10.0]]]], dtype="float32")
    np.testing.assert_allclose(
        ImageNetPreprocessing("caffe")(pixel)[0, 0, 0], [-93.939, -116.779, 131.32], rtol=1e-5)


def test_preprocessing_rejects_unknown_mode():
    with pytest.raises(ValueError, match="'bgr' is not one of caffe, tf, torch"):
        ImageNetPreprocessing("bgr")


def test_bilinear_resize_known_values():
    # Half-pixel centres: output i of 4 samples input (i + 0.5) / 2 - 0.5 = -0.25 (clamped
    # to 0), 0.25, 0.75, 1.25 (clamped to 1) of the 2 inputs [0, 4].
    images = np.array([0.0, 4.0], dtype="float32").reshape(1, 1, 2, 1)
    resized = bilinear_resize(images, 1, 4)
    np.testing.assert_allclose(np.asarray(resized).ravel(), [0.0, 1.0, 3.0, 4.0])


@pytest.mark.parametrize("source_size, target_size", [
    ((4, 6), (16, 24)),   # x4, as logits to the image
    ((5, 7), (13, 9)),    # odd, up in one axis and down in the other
    ((16, 16), (4, 4)),   # down
    ((1, 1), (6, 10)),    # image pooling: one value spread over the map
])
def test_dynamic_resize_equals_keras_resize(source_size, target_size):
    """In a tf.function with unknown sizes the layer takes its gather path; it must give
    the values of keras.ops.image.resize (the backend's kernel) with static sizes."""
    rng = np.random.default_rng(1)
    source = rng.normal(size=(2, *source_size, 3)).astype("float32")
    reference = np.zeros((2, *target_size, 1), dtype="float32")
    expected = keras.ops.image.resize(source, target_size, interpolation="bilinear")

    layer = ResizeToMatch()
    unknown = tf.TensorSpec((None, None, None, None), tf.float32)
    resize_dynamic = tf.function(lambda src, ref: layer([src, ref]), input_signature=[unknown] * 2)
    np.testing.assert_allclose(resize_dynamic(source, reference), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer([source, reference]), expected, rtol=1e-6, atol=1e-6)


def test_resize_to_match_symbolic_shape_and_config():
    source = keras.Input((None, None, 5))
    reference = keras.Input((32, 48, 3))
    assert ResizeToMatch()([source, reference]).shape == (None, 32, 48, 5)
    layer = ResizeToMatch(name="logits", dtype="float32")
    clone = ResizeToMatch.from_config(layer.get_config())
    assert clone.name == "logits" and clone.dtype_policy.name == "float32"


@pytest.mark.parametrize("kernel_size, rate, padding, size", [
    (3, (2, 2), "same", (7, 9)),
    (3, (6, 6), "same", (4, 6)),     # rate beyond the map: ASPP at 64 px, output stride 16
    (3, (3, 2), "valid", (11, 8)),
    (2, (2, 2), "same", (6, 5)),     # even kernel: the 'same' pad is uneven
])
def test_atrous_conv_equals_keras_dilated_conv(kernel_size, rate, padding, size):
    rng = np.random.default_rng(2)
    images = rng.normal(size=(2, *size, 5)).astype("float32")
    reference = keras.layers.Conv2D(4, kernel_size, dilation_rate=rate, padding=padding)
    expected = reference(images)
    atrous = AtrousConv2D.from_config(reference.get_config())
    atrous.build(images.shape)
    atrous.set_weights(reference.get_weights())
    np.testing.assert_allclose(atrous(images), expected, rtol=1e-5, atol=1e-5)

    depthwise = keras.layers.DepthwiseConv2D(kernel_size, dilation_rate=rate, padding=padding,
                                             depth_multiplier=2, use_bias=True,
                                             bias_initializer="glorot_uniform")
    expected = depthwise(images)
    atrous_depthwise = AtrousDepthwiseConv2D.from_config(depthwise.get_config())
    atrous_depthwise.build(images.shape)
    atrous_depthwise.set_weights(depthwise.get_weights())
    np.testing.assert_allclose(atrous_depthwise(images), expected, rtol=1e-5, atol=1e-5)


def test_atrous_conv_runs_where_tensorflow_dilated_conv_fails():
    """TensorFlow's dilated conv (SpaceToBatchND) concatenated with a 1x1 conv fails in a
    tf.function whose batch and height are known and width is not ("padded_shape[1]=20 is
    not divisible by block_shape[1]=6" here, with TF 2.21): the ASPP under Keras's
    predict/fit after two batches of the same height. The keras.ops version must give the
    eager values there, and the same gradients."""
    inputs = keras.Input((None, None, 8))
    dilated = AtrousConv2D(4, 3, dilation_rate=6, padding="same", name="dilated")(inputs)
    pointwise = keras.layers.Conv2D(4, 1, name="pointwise")(inputs)
    merged = keras.layers.Concatenate()([dilated, pointwise])
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(merged))
    features = np.random.default_rng(3).normal(size=(2, 4, 6, 8)).astype("float32")

    def loss_and_gradient(batch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(batch) ** 2)
        return loss, tape.gradient(loss, model.get_layer("dilated").kernel)

    partial = tf.function(loss_and_gradient,
                          input_signature=[tf.TensorSpec((2, 4, None, 8), tf.float32)])
    loss, gradient = partial(features)
    eager_loss, eager_gradient = loss_and_gradient(features)
    np.testing.assert_allclose(loss, eager_loss, rtol=1e-5)
    np.testing.assert_allclose(gradient, eager_gradient, rtol=1e-4, atol=1e-5)


def test_atrous_layers_refuse_strides_with_dilation():
    with pytest.raises(ValueError, match="strides"):
        AtrousConv2D(4, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="strides"):
        AtrousDepthwiseConv2D(3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="needs strides 1 and channels_last"):
        AtrousConv2D(4, 3, dilation_rate=2, data_format="channels_first")
