"""DeepLab v3+ with a depthwise-separable decoder (``decoder_conv="separable"``): its layers
and cost against an independent count, the configuration and flags that choose it, batch
norms that fold, and fine-tuning a dense-decoder model into it."""

import keras
import numpy as np
import pytest

from pixelwise.config import ModelConfig, RunConfig
from pixelwise.data.synthetic import synthetic_spec
from pixelwise.init_source import InitSource
from pixelwise.models import build_model, count_multiply_adds
from pixelwise.models.folding import fold_batch_norms
from pixelwise.run_options import model_options, run_config_from_options
from pixelwise.transfer import transfer_weights

LIGHT = dict(backbone="tiny", backbone_weights=None, aspp_filters=16, aspp_rates=(),
             low_level_filters=8, decoder_filters=12)
SIZE = (64, 96)
CLASSES = synthetic_spec().class_names


def deeplabv3plus(decoder_conv: str, **changes) -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_model("deeplabv3plus", num_classes=len(CLASSES), decoder_conv=decoder_conv,
                       **{**LIGHT, **changes})


def test_both_refining_convs_become_depthwise_then_pointwise():
    model = deeplabv3plus("separable")
    for index in (1, 2):
        depthwise = model.get_layer(f"decoder_refine{index}_depthwise")
        pointwise = model.get_layer(f"decoder_refine{index}_pointwise_conv")
        assert isinstance(depthwise, keras.layers.DepthwiseConv2D)
        assert depthwise.kernel_size == (3, 3) and depthwise.depth_multiplier == 1
        assert pointwise.kernel_size == (1, 1) and pointwise.filters == LIGHT["decoder_filters"]
        assert not pointwise.use_bias and not depthwise.use_bias  # each has its batch norm
    assert not [layer.name for layer in model.layers if layer.name.endswith("refine1_conv")]
    logits = model(np.zeros((1, *SIZE, 3), "float32"), training=False)
    assert logits.shape == (1, *SIZE, len(CLASSES))


def test_it_saves_the_multiply_adds_the_convolution_arithmetic_says():
    height, width = SIZE[0] // 4, SIZE[1] // 4  # the decoder runs at a quarter of the size
    channels = LIGHT["aspp_filters"] + LIGHT["low_level_filters"]  # after the concat
    filters = LIGHT["decoder_filters"]
    dense = 9 * channels * filters + 9 * filters * filters
    separable = (9 * channels + channels * filters) + (9 * filters + filters * filters)
    saved = count_multiply_adds(deeplabv3plus("dense"), SIZE) - count_multiply_adds(
        deeplabv3plus("separable"), SIZE)
    assert saved == height * width * (dense - separable)
    # Batch norms: the separable decoder has two more per conv pair (depthwise outputs).
    assert deeplabv3plus("dense").count_params() - deeplabv3plus("separable").count_params() \
        == (dense - separable) - 4 * (channels + filters)


def test_its_batch_norms_fold_to_the_same_function():
    model = deeplabv3plus("separable")
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.5, beta.shape),
                               rng.normal(0, 0.5, mean.shape),
                               rng.uniform(0.5, 1.5, variance.shape)])
    folded = fold_batch_norms(model)
    assert not [layer for layer in folded.layers
                if isinstance(layer, keras.layers.BatchNormalization)]
    images = rng.uniform(0, 255, (2, *SIZE, 3)).astype("float32")
    expected = np.asarray(model(images, training=False))
    np.testing.assert_allclose(np.asarray(folded(images, training=False)), expected,
                               rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))


def test_the_configuration_chooses_it_and_refuses_what_does_not_apply(tmp_path):
    config = run_config_from_options(tmp_path, model="deeplabv3plus", decoder_conv="separable")
    assert config.model.builder_options()["decoder_conv"] == "separable"
    assert RunConfig.from_dict(config.to_dict()) == config
    assert model_options(config.model)["decoder_conv"] == "separable"  # --init-from's
    dense = run_config_from_options(tmp_path, model="deeplabv3plus")
    assert "decoder_conv" not in dense.model.builder_options()  # the builder's dense
    with pytest.raises(ValueError, match="deeplabv3plus only; leave them unset for unet"):
        ModelConfig(name="unet", decoder_conv="separable")
    with pytest.raises(ValueError, match="decoder_conv 'grouped': choose dense or separable"):
        ModelConfig(name="deeplabv3plus", decoder_conv="grouped")
    with pytest.raises(ValueError, match="decoder_conv 'grouped': expected one of"):
        deeplabv3plus("grouped")


def test_a_dense_decoder_model_starts_all_but_the_refining_convs():
    dense, separable = deeplabv3plus("dense"), deeplabv3plus("separable")
    source = InitSource("dense", "dense.keras", tuple(CLASSES),
                        ModelConfig(name="deeplabv3plus", **LIGHT))
    report = transfer_weights(separable, dense, backbone="tiny", classes=CLASSES, source=source)
    refining = {layer.name for layer in separable.layers
                if layer.name.startswith("decoder_refine") and layer.weights}
    assert set(report.started_anew) == refining
    assert len(refining) == 8  # two (depthwise, its BN, pointwise, its BN)
    for name in report.kept:
        for mine, theirs in zip(separable.get_layer(name).get_weights(),
                                dense.get_layer(name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    # Both decoders end in decoder_filters channels: every class keeps its classifier row.
    assert report.carried_classes == {name: [name] for name in CLASSES}
