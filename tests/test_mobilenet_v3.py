"""The MobileNetV3-Large and -Small backbones: taps, the atrous rebuild (strides, pads,
dilations, every pretrained weight kept), weights files, multiply-adds, the registry's models.

The "pretrained" weights are random: keras.applications' networks at width 0.75 (an
ImageNet width) with random batch-norm statistics and constant squeeze-excite gates,
written by the module's fixture (Large's in Keras's legacy HDF5 layout under the name of
Keras's ImageNet download, Small's by save_weights). Each backbone is built once per
module; inputs are 64 x 96.
"""

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from pixelwise.models import MODELS, build_backbone, build_model, count_multiply_adds, load_model
from pixelwise.models.backbones import FEATURE_LAYERS, backbone_features, imagenet_weights_filename
from pixelwise.models.batchnorm import FusedBatchNormalization
from pixelwise.models.layers import AtrousDepthwiseConv2D
from pixelwise.models.mobilenet_v3 import LAST_TAP, STEM_TAP

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

WIDTH = 0.75
APPLICATIONS = {"mobilenetv3large": keras.applications.MobileNetV3Large,
                "mobilenetv3small": keras.applications.MobileNetV3Small}
BACKBONES = tuple(APPLICATIONS)
# Channels of the stride-32 tap (the 1x1 conv_1 after the last block) at width 0.75.
LAST_CHANNELS = {"mobilenetv3large": 720, "mobilenetv3small": 432}
# The depthwise convs of the atrous backbones: block -> (strides, dilation rate).
EDITS = {
    ("mobilenetv3large", 16): {12: (1, 1), 13: (1, 2), 14: (1, 2)},
    ("mobilenetv3large", 8): {6: (1, 1), **{block: (1, 2) for block in range(7, 12)},
                              12: (1, 2), 13: (1, 4), 14: (1, 4)},
    ("mobilenetv3small", 16): {8: (1, 1), 9: (1, 2), 10: (1, 2)},
    ("mobilenetv3small", 8): {3: (1, 1), **{block: (1, 2) for block in range(4, 8)},
                              8: (1, 2), 9: (1, 4), 10: (1, 4)},
}
STRIDED = {"mobilenetv3large": (1, 3, 6, 12), "mobilenetv3small": (0, 1, 3, 8)}


def _images(height: int = 64, width: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (1, height, width, 3)).astype("float32")


def _depthwise_name(block: int) -> str:
    return "expanded_conv_depthwise" if block == 0 else f"expanded_conv_{block}_depthwise"


def _random_reference(backbone: str, seed: int) -> keras.Model:
    """keras.applications' network (its own 0..255 rescaling in front) with random
    weights, random batch-norm statistics and squeeze-excite gates that do not depend on
    the pooled features (the second SE conv's kernel zero, its bias random)."""
    keras.utils.set_random_seed(seed)
    reference = APPLICATIONS[backbone](include_top=False, weights=None,
                                       input_shape=(None, None, 3), alpha=WIDTH)
    rng = np.random.default_rng(seed)
    for layer in reference.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.set_weights([
                rng.uniform(0.5, 1.5, channels), rng.uniform(-0.1, 0.1, channels),
                rng.uniform(-0.1, 0.1, channels), rng.uniform(0.5, 1.5, channels)])
        elif layer.name.endswith("squeeze_excite_conv_1"):
            kernel, bias = layer.get_weights()
            layer.set_weights([np.zeros_like(kernel), rng.uniform(-2, 2, bias.shape)])
    return reference


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Per backbone: (weights file, the keras.applications model holding those weights)."""
    folder = tmp_path_factory.mktemp("weights")
    large = _random_reference("mobilenetv3large", seed=1)
    large_path = folder / imagenet_weights_filename("mobilenetv3large", WIDTH)
    with h5py.File(large_path, "w") as legacy_file:
        legacy_h5_format.save_weights_to_hdf5_group(legacy_file, large)
    small = _random_reference("mobilenetv3small", seed=2)
    small_path = folder / "mobilenetv3small_random.weights.h5"
    small.save_weights(small_path)
    return {"mobilenetv3large": (large_path, large), "mobilenetv3small": (small_path, small)}


@pytest.fixture(scope="module")
def atrous(weights):
    """The atrous backbone (backbone, output stride) on the fixture's weights, built once."""
    built = {}

    def get(backbone: str, output_stride: int) -> keras.Model:
        if (backbone, output_stride) not in built:
            built[backbone, output_stride] = build_backbone(
                backbone, output_stride=output_stride, weights=weights[backbone][0],
                width_multiplier=WIDTH)
        return built[backbone, output_stride]

    return get


ATROUS = [(backbone, stride) for backbone in BACKBONES for stride in (16, 8)]


@pytest.mark.parametrize("backbone, output_stride", ATROUS)
def test_taps_strides_and_dilations(atrous, backbone, output_stride):
    model = atrous(backbone, output_stride)
    taps = [backbone_features(model, backbone, stride) for stride in (2, 4, 8, 16, 32)]
    features = keras.Model(model.input, taps)(_images())
    sizes = [tuple(tensor.shape[1:3]) for tensor in features]
    assert sizes == [(64 // min(stride, output_stride), 96 // min(stride, output_stride))
                     for stride in (2, 4, 8, 16, 32)]
    assert features[-1].shape[-1] == LAST_CHANNELS[backbone]
    assert FEATURE_LAYERS[backbone][32] == LAST_TAP == model.layers[-1].name
    assert model.get_layer(LAST_TAP).input is model.get_layer("conv_1_bn").output
    assert model.get_layer(STEM_TAP).input is model.get_layer("conv_bn").output
    edits = EDITS[backbone, output_stride]
    blocks = 15 if backbone == "mobilenetv3large" else 11
    for block in range(blocks):
        layer = model.get_layer(_depthwise_name(block))
        strides = 2 if block in STRIDED[backbone] and block not in edits else 1
        rate = edits.get(block, (1, 1))[1]
        assert (layer.strides, layer.dilation_rate) == ((strides,) * 2, (rate,) * 2), layer.name
        assert isinstance(layer, AtrousDepthwiseConv2D) == (rate > 1), layer.name
        if block in edits and block in STRIDED[backbone]:
            # The pad of a 'same' conv of its kernel (3 or 5) at its rate, on both sides.
            pad = layer.kernel_size[0] // 2 * rate
            assert model.get_layer(f"{layer.name}_pad").padding == ((pad, pad), (pad, pad))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_atrous_rebuild_keeps_every_pretrained_weight(weights, atrous, backbone):
    _, reference = weights[backbone]
    model = atrous(backbone, 8)
    compared = 0
    for layer in reference.layers:
        if not layer.weights:
            continue
        for expected, actual in zip(layer.get_weights(),
                                    model.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(expected, actual, err_msg=layer.name)
            compared += 1
    # Every conv kernel (SE convs with their bias) and 4 tensors per batch norm.
    assert compared == sum(len(layer.weights) for layer in reference.layers)
    assert compared == {"mobilenetv3large": 262, "mobilenetv3small": 206}[backbone]
    assert model.count_params() == reference.count_params()
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(type(layer) is FusedBatchNormalization for layer in norms)


@pytest.mark.parametrize("backbone, output_stride", ATROUS)
def test_atrous_backbone_computes_the_plain_network_densely(weights, atrous, backbone,
                                                            output_stride):
    """With the squeeze-excite gates constant (see the fixture) atrous convolution only
    removes the subsampling: every (32 / output_stride)-th feature of the atrous backbone
    is the plain network's, on the same weights. The stride-2 depthwise convs pad (0, 1) or
    (1, 2) before a 'valid' 3x3 or 5x5, centring output j on input 2j + 1, so the grid
    starts at 1 (output stride 16) or 1 + 2 (8). It also checks ImageNetPreprocessing("tf")
    against keras.applications' own rescaling, which the reference has in front."""
    _, reference = weights[backbone]
    model = atrous(backbone, output_stride)
    images = _images(seed=5)
    stride_16_tap = FEATURE_LAYERS[backbone][16]
    plain_16, plain_32 = keras.Model(reference.input, [
        reference.get_layer(stride_16_tap).output, reference.output])(images)
    dense_16, dense_32 = keras.Model(model.input, [
        model.get_layer(stride_16_tap).output, model.output])(images)
    offset, step = {16: (1, 2), 8: (3, 4)}[output_stride]
    pairs = [(np.asarray(dense_32)[:, offset::step, offset::step], plain_32)]
    if output_stride == 8:
        pairs.append((np.asarray(dense_16)[:, 1::2, 1::2], plain_16))
    else:
        pairs.append((np.asarray(dense_16), plain_16))
    for dense, plain in pairs:
        plain = np.asarray(plain)
        scale = float(np.abs(plain).max())
        assert scale > 0 and dense.shape == plain.shape
        np.testing.assert_allclose(dense, plain, rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras, on the wrong file
def test_weights_files_errors_in_one_line(weights):
    large_path, _ = weights["mobilenetv3large"]
    assert large_path.name == "weights_mobilenet_v3_large_224_0.75_float_no_top_v2.h5"
    assert imagenet_weights_filename("mobilenetv3small") == (
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5")
    with pytest.raises(ValueError) as raised:
        build_backbone("mobilenetv3small", weights=weights["mobilenetv3small"][0],
                       width_multiplier=0.5)
    message = str(raised.value)
    assert "\n" not in message and len(message) < 600, message
    assert message.startswith(f"{weights['mobilenetv3small'][0]}: could not load it into the "
                              f"mobilenetv3small backbone (")
    assert "keras.applications' mobilenetv3small without its top at width_multiplier 0.5" \
        in message
    with pytest.raises(ValueError, match="ImageNet weights of mobilenetv3large exist for "
                                         "0.75, 1.0 only"):
        build_backbone("mobilenetv3large", weights="imagenet", width_multiplier=0.5)
    with pytest.raises(FileNotFoundError, match="backbone weights file not found"):
        build_backbone("mobilenetv3large", weights=large_path.parent / "missing.h5")
    with pytest.raises(ValueError, match="multi_grid applies to the resnet50 backbone only"):
        build_backbone("mobilenetv3small", multi_grid=(1, 2, 4))


@pytest.mark.parametrize("backbone, paper_multiply_adds, top_channels", [
    ("mobilenetv3large", 155e6, 1280), ("mobilenetv3small", 44e6, 1024)])
def test_multiply_adds_count_hard_swish_and_squeeze_excite_networks(
        weights, atrous, backbone, paper_multiply_adds, top_channels):
    """Howard et al. 2019, Table 3, at width 0.75 and 224 x 224: Large 155 M, Small 44 M
    multiply-adds, with the classifier top (1x1 conv to 1280 / 1024, then to 1000) that
    keras.applications leaves out here. Squeeze-excite's 1x1 convs count (on one position),
    hard-swish and the gates' products do not."""
    _, reference = weights[backbone]
    top = LAST_CHANNELS[backbone] * top_channels + top_channels * 1000
    counted = count_multiply_adds(reference, 224) + top
    assert abs(counted / paper_multiply_adds - 1) < 0.02, counted
    # The atrous backbone runs its last stage at 4 x the positions: more, never less.
    assert count_multiply_adds(atrous(backbone, 16), 224) > counted - top


@pytest.fixture(scope="module")
def registry_models():
    """DeepLab v3+ (DeepLab v3's encoder and ASPP, plus the stride-4 tap) and U-Net (every
    tap), small widths."""
    keras.utils.set_random_seed(3)
    return {
        "deeplabv3plus": build_model("deeplabv3plus", num_classes=5, backbone="mobilenetv3small",
                                     width_multiplier=0.5, output_stride=8, aspp_filters=16,
                                     decoder_filters=16),
        # Width 0.5: block 0's 8 channels do not match the stem's 16, so it has no residual
        # add and the stride-2 tap is its projection's batch norm (TAP_ALTERNATIVES).
        "unet": build_model("unet", num_classes=5, backbone="mobilenetv3large",
                            width_multiplier=0.5, decoder_filters=(32, 16, 16, 8, 8)),
    }


@pytest.mark.parametrize("name", ["deeplabv3plus", "unet"])
def test_the_registry_models_take_mobilenetv3(registry_models, name):
    for entry in MODELS.values():  # every model: all need taps at 32 and below, all there
        assert {"mobilenetv3large", "mobilenetv3small"} <= set(entry.backbones), entry.name
    model = registry_models[name]
    logits = model(_images(), training=False)
    assert tuple(logits.shape) == (1, 64, 96, 5) and logits.dtype == "float32"
    if name == "unet":
        layer_names = {layer.name for layer in model.layers}
        assert "expanded_conv_add" not in layer_names
        assert model.get_layer("decoder4_concat").input[1] is model.get_layer(
            "expanded_conv_project_bn").output
        assert model.get_layer("decoder1_concat").input[1].shape[-1] == 56  # stride-16 tap
    if name == "deeplabv3plus":
        assert model.get_layer("aspp_1x1_conv").input.shape[-1] == 288
        assert model.get_layer("decoder_low_level_conv").input is model.get_layer(
            "expanded_conv_project_bn").output  # Small's stride-4 tap


def test_saved_model_with_renamed_taps_loads_in_safe_mode(registry_models, tmp_path):
    model = registry_models["deeplabv3plus"]
    path = tmp_path / "deeplabv3plus_mobilenetv3small.keras"
    model.save(path)
    loaded = load_model(path, compile=False)
    images = _images(seed=9)
    np.testing.assert_array_equal(loaded(images, training=False), model(images, training=False))
    assert loaded.get_layer(LAST_TAP).output.shape[-1] == 288


def test_the_minimalistic_large_backbone_keeps_its_weights_relu_and_3x3(tmp_path):
    """Keras's minimalistic network (ReLU, 3x3 depthwise kernels, no squeeze-excite, the
    paper's variant for hardware where those are slow), made atrous like the others."""
    backbone = "mobilenetv3large_minimalistic"
    reference = keras.applications.MobileNetV3Large(
        input_shape=(None, None, 3), include_top=False, weights=None, minimalistic=True,
        include_preprocessing=False)
    path = tmp_path / imagenet_weights_filename(backbone)
    assert path.name == "weights_mobilenet_v3_large_minimalistic_224_1.0_float_no_top_v2.h5"
    reference.save_weights(tmp_path / "minimal.weights.h5")
    model = build_backbone(backbone, output_stride=16, weights=tmp_path / "minimal.weights.h5")
    for layer in reference.layers:
        if layer.weights:
            for mine, theirs in zip(model.get_layer(layer.name).get_weights(),
                                    layer.get_weights()):
                np.testing.assert_array_equal(mine, theirs)
    depthwise = [layer for layer in model.layers
                 if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert depthwise and all(layer.kernel_size == (3, 3) for layer in depthwise)
    assert not any("squeeze_excite" in layer.name for layer in model.layers)
    activations = {layer.get_config().get("activation") for layer in model.layers
                   if isinstance(layer, keras.layers.Activation)}
    assert "hard_swish" not in str(activations)
    taps = [backbone_features(model, backbone, stride) for stride in (2, 4, 8, 16, 32)]
    sizes = [tuple(tensor.shape[1:3]) for tensor in keras.Model(model.input, taps)(_images())]
    assert sizes == [(32, 48), (16, 24), (8, 12), (4, 6), (4, 6)]
    assert model.get_layer(STEM_TAP).input is model.get_layer("conv_bn").output
    with pytest.raises(ValueError, match="ImageNet weights of mobilenetv3large_minimalistic"):
        build_backbone(backbone, weights="imagenet", width_multiplier=0.75)
