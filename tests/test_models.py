"""The segmentation models: shapes, strides, weights, the ASPP, sizes and saving.

Shape logic runs on the tiny backbone (built in a fraction of a second); what is about the
real backbones (their weights, their parameter counts against the papers, their layers'
saving) builds them, marked slow where that is a ResNet-50. Those are built once per
module and shared; inputs are 64-128 px.
"""

import socket

import keras
import numpy as np
import pytest
import tensorflow as tf

from pixelwise.models import (
    WeightsUnavailableError,
    build_backbone,
    build_model,
    load_model,
)
from pixelwise.models.backbones import FEATURE_LAYERS, imagenet_weights_filename
from pixelwise.models.layers import AtrousConv2D, AtrousDepthwiseConv2D

NUM_CLASSES = 21

# Keras's Variable.__array__ under NumPy 2 (get_weights); noise, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def _randomise_batch_norm_statistics(model: keras.Model, seed: int) -> None:
    """Random BN gammas, betas and moving statistics, so a copy of them is detectable."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.gamma.shape[0]
            layer.set_weights([
                rng.uniform(0.5, 1.5, channels), rng.uniform(-0.1, 0.1, channels),
                rng.uniform(-0.1, 0.1, channels), rng.uniform(0.5, 1.5, channels)])


def _images(height: int, width: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, 3)).astype("float32")


def _submodel(model: keras.Model, *layer_names: str) -> keras.Model:
    return keras.Model(model.input, [model.get_layer(name).output for name in layer_names])


@pytest.fixture(scope="module")
def tiny_deeplabv3() -> keras.Model:
    """DeepLab v3 on the tiny backbone, output stride 16, unknown height and width."""
    keras.utils.set_random_seed(0)
    return build_model("deeplabv3", num_classes=NUM_CLASSES, backbone="tiny", aspp_filters=16)


@pytest.fixture(scope="module")
def deeplabv3() -> keras.Model:
    """DeepLab v3, ResNet-50, output stride 16, built for unknown height and width."""
    keras.utils.set_random_seed(0)
    return build_model("deeplabv3", num_classes=NUM_CLASSES)


@pytest.fixture(scope="module")
def resnet50_weights(tmp_path_factory):
    """A weights file of keras.applications' ResNet50 without top, random weights and BN
    statistics, and the keras.applications model holding them."""
    keras.utils.set_random_seed(1)
    reference = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(None, None, 3))
    _randomise_batch_norm_statistics(reference, seed=1)
    path = tmp_path_factory.mktemp("weights") / "resnet50_random.weights.h5"
    reference.save_weights(path)
    return path, reference


@pytest.fixture(scope="module")
def mobilenetv2_weights(tmp_path_factory):
    keras.utils.set_random_seed(2)
    reference = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(None, None, 3), alpha=0.35)
    _randomise_batch_norm_statistics(reference, seed=2)
    path = tmp_path_factory.mktemp("weights") / "mobilenetv2_random.weights.h5"
    reference.save_weights(path)
    return path, reference


@pytest.fixture(scope="module")
def built_models(request):
    """Every model by (name, backbone), built once when first asked; MobileNetV2 at 0.35."""
    built = {}

    def get(name: str, backbone: str) -> keras.Model:
        if (name, backbone) == ("deeplabv3", "resnet50"):
            return request.getfixturevalue("deeplabv3")
        if (name, backbone) not in built:
            keras.utils.set_random_seed(3)
            width = 0.35 if backbone == "mobilenetv2" else 1.0
            built[(name, backbone)] = build_model(
                name, num_classes=NUM_CLASSES, backbone=backbone, width_multiplier=width)
        return built[(name, backbone)]

    return get


ALL_MODELS = [pytest.param(name, backbone,
                           marks=[pytest.mark.slow] if backbone == "resnet50" else [])
              for name in ("deeplabv3", "deeplabv3plus", "unet")
              for backbone in ("resnet50", "mobilenetv2", "tiny")]
TINY_MODELS = [("deeplabv3", 16), ("deeplabv3", 8), ("deeplabv3plus", 16),
               ("deeplabv3plus", 8), ("unet", 32)]


# --- shapes and strides -------------------------------------------------------------------

@pytest.mark.parametrize("height, width", [(64, 64), (64, 96), (96, 48), (128, 128), (80, 112)])
def test_deeplabv3_logits_follow_the_input_size(tiny_deeplabv3, height, width):
    deeplabv3 = tiny_deeplabv3
    assert deeplabv3.input.shape == (None, None, None, 3)
    logits = deeplabv3(_images(height, width, batch=2), training=False)
    assert tuple(logits.shape) == (2, height, width, NUM_CLASSES)
    assert logits.dtype == "float32"


def test_predict_on_images_of_the_same_height_and_other_widths(tiny_deeplabv3):
    """predict() traces again with the width relaxed to None and the batch and height
    known: the case where TensorFlow's own dilated conv fails (see test_model_layers)."""
    deeplabv3 = tiny_deeplabv3
    for width in (64, 96, 128):
        images = _images(64, width, seed=width)
        np.testing.assert_allclose(deeplabv3.predict(images, verbose=0),
                                   deeplabv3(images, training=False), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name, backbone", ALL_MODELS)
def test_every_model_gives_logits_of_the_input_size(built_models, name, backbone):
    model = built_models(name, backbone)
    logits = model(_images(64, 96), training=False)
    assert tuple(logits.shape) == (1, 64, 96, NUM_CLASSES)
    assert model.output.dtype == "float32"
    assert model.layers[-1].name == "logits"


@pytest.mark.parametrize("name, output_stride", TINY_MODELS)
def test_every_model_on_the_tiny_backbone_has_its_strides(name, output_stride):
    model = build_model(name, num_classes=NUM_CLASSES, backbone="tiny",
                        output_stride=None if name == "unet" else output_stride)
    images = _images(64, 96)
    deepest, logits = _submodel(model, FEATURE_LAYERS["tiny"][32], "logits")(images)
    assert deepest.shape[1:3] == (64 // output_stride, 96 // output_stride)
    assert tuple(logits.shape) == (1, 64, 96, NUM_CLASSES) and logits.dtype == "float32"
    dilated = [layer.dilation_rate[0] for layer in model.layers
               if layer.name.startswith("stage") and layer.name.endswith("_conv")]
    assert dilated == {32: [1] * 5, 16: [1, 1, 1, 1, 2], 8: [1, 1, 1, 2, 4]}[output_stride]


def test_tiny_backbone_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="tiny backbone has no pretrained weights"):
        build_model("deeplabv3", num_classes=3, backbone="tiny", backbone_weights="imagenet")
    with pytest.raises(ValueError, match="multi_grid applies to the resnet50 backbone only"):
        build_model("deeplabv3", num_classes=3, backbone="tiny", multi_grid=(1, 2, 4))


def test_fixed_size_model_and_size_checks():
    model = build_model("deeplabv3plus", num_classes=3, input_shape=(48, 80, 3),
                        backbone="tiny")
    assert model.output.shape == (None, 48, 80, 3)
    with pytest.raises(ValueError, match=r"multiples of 16; use e.g. 96"):
        build_model("deeplabv3", num_classes=3, input_shape=(100, 96, 3))
    with pytest.raises(ValueError, match="multiples of 32"):
        build_model("unet", num_classes=3, input_shape=(48, 64, 3))
    with pytest.raises(ValueError, match=r"expected \(height, width, 3\)"):
        build_model("deeplabv3", num_classes=3, input_shape=(64, 64, 1))


@pytest.fixture(scope="module")
def deeplabv3_os8(resnet50_weights):
    """DeepLab v3 at output stride 8 with multi-grid, backbone weights from the random file."""
    path, _ = resnet50_weights
    return build_model("deeplabv3", num_classes=NUM_CLASSES, output_stride=8,
                       multi_grid=(1, 2, 4), backbone_weights=path)


@pytest.mark.slow
def test_feature_stride_16_and_8(deeplabv3, deeplabv3_os8):
    images = _images(64, 96)
    for model, stride, rates in [(deeplabv3, 16, (6, 12, 18)), (deeplabv3_os8, 8, (12, 24, 36))]:
        conv4, conv5, pooled_features = _submodel(
            model, "conv4_block6_out", "conv5_block3_out", "aspp_concat")(images)
        assert conv5.shape == (1, 64 // stride, 96 // stride, 2048)
        assert conv4.shape == (1, 64 // stride, 96 // stride, 1024)
        assert pooled_features.shape == (1, 64 // stride, 96 // stride, 5 * 256)
        assert tuple(model.get_layer(f"aspp_atrous{i}_conv").dilation_rate[0]
                     for i in (1, 2, 3)) == rates
    assert deeplabv3.get_layer("conv4_block1_1_conv").strides == (2, 2)
    assert deeplabv3_os8.get_layer("conv4_block1_1_conv").strides == (1, 1)


@pytest.mark.slow
def test_deeplabv3plus_decoder_fuses_quarter_resolution_features(built_models):
    model = built_models("deeplabv3plus", "resnet50")
    low_level, fused = _submodel(model, "decoder_low_level_relu", "decoder_concat")(_images(64, 96))
    assert low_level.shape == (1, 16, 24, 48)
    assert fused.shape == (1, 16, 24, 256 + 48)
    assert model.get_layer("decoder_low_level_conv").input.shape[-1] == 256  # conv2_block3_out


@pytest.mark.slow
def test_unet_skips_at_half_to_one_sixteenth(built_models):
    model = built_models("unet", "resnet50")
    names = [f"decoder{stage}_concat" for stage in (1, 2, 3, 4)]
    fused = _submodel(model, *names)(_images(64, 96))
    # Up-convolved decoder channels + skip channels (conv4, conv3, conv2, conv1 outputs).
    expected = [(4, 6, 256 + 1024), (8, 12, 128 + 512), (16, 24, 64 + 256), (32, 48, 32 + 64)]
    assert [tuple(tensor.shape[1:]) for tensor in fused] == expected
    assert isinstance(model.get_layer("decoder5_upconv"), keras.layers.Conv2DTranspose)


# --- the atrous backbone keeps the pretrained weights -----------------------------------

def _assert_same_weights(reference: keras.Model, atrous: keras.Model) -> int:
    """Every weight of every layer of ``reference`` equals the same-named one of ``atrous``."""
    compared = 0
    for layer in reference.layers:
        if not layer.weights:
            continue
        for expected, actual in zip(layer.get_weights(),
                                    atrous.get_layer(layer.name).get_weights(), strict=True):
            assert expected.shape == actual.shape, layer.name
            np.testing.assert_array_equal(expected, actual, err_msg=layer.name)
            compared += 1
    return compared


@pytest.mark.slow
@pytest.mark.parametrize("output_stride, multi_grid, conv4_rate, conv5_rates", [
    (16, None, 1, (2, 2, 2)),
    (16, (1, 2, 4), 1, (2, 4, 8)),
    (8, None, 2, (4, 4, 4)),
])
def test_atrous_resnet50_keeps_every_weight(resnet50_weights, output_stride, multi_grid,
                                            conv4_rate, conv5_rates):
    path, reference = resnet50_weights
    atrous = build_backbone("resnet50", output_stride=output_stride, weights=path,
                            multi_grid=multi_grid)
    # 53 convs x (kernel, bias) + 53 BNs x 4 = 318 tensors, all equal and equally shaped.
    assert _assert_same_weights(reference, atrous) == 318
    for block, rate in zip((1, 2, 3), conv5_rates):
        conv = atrous.get_layer(f"conv5_block{block}_2_conv")
        assert conv.dilation_rate == (rate, rate)
        assert isinstance(conv, AtrousConv2D if rate > 1 else keras.layers.Conv2D)
        assert conv.kernel.shape == (3, 3, 512, 512)
        np.testing.assert_array_equal(
            conv.get_weights()[0], reference.get_layer(conv.name).get_weights()[0])
    assert atrous.get_layer("conv4_block3_2_conv").dilation_rate == (conv4_rate, conv4_rate)
    assert atrous.get_layer("conv5_block1_0_conv").strides == (1, 1)
    assert atrous.get_layer("conv5_block1_1_conv").strides == (1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("backbone, output_stride, offset", [
    ("resnet50", 16, 0), ("resnet50", 8, 0), ("mobilenetv2", 16, 1), ("mobilenetv2", 8, 3),
])
def test_atrous_backbone_computes_the_original_network_densely(
        resnet50_weights, mobilenetv2_weights, backbone, output_stride, offset):
    """Atrous convolution only removes the subsampling: every (32 / output_stride)-th
    feature of the atrous backbone is the original network's feature, with the same
    weights. (ResNet50 subsamples with its 1x1 stride-2 convs, so the grid starts at 0;
    MobileNetV2 with 3x3 stride-2 depthwise convs after a (0, 1) pad, so it is shifted.)
    This also checks the preprocessing layer against keras.applications' function."""
    if backbone == "resnet50":
        (path, reference), width = resnet50_weights, 1.0
        preprocess = keras.applications.resnet.preprocess_input
        last = "conv5_block3_out"
    else:
        (path, reference), width = mobilenetv2_weights, 0.35
        preprocess = keras.applications.mobilenet_v2.preprocess_input
        last = "block_16_project_BN"
    atrous = build_backbone(backbone, output_stride=output_stride, weights=path,
                            width_multiplier=width)
    images = _images(64, 96, seed=5)
    original = keras.Model(reference.input, reference.get_layer(last).output)(
        preprocess(images.copy()))
    dense = _submodel(atrous, last)(images)
    dilated = [layer for layer in atrous.layers if isinstance(
        layer, (AtrousConv2D, AtrousDepthwiseConv2D)) and layer.dilation_rate != (1, 1)]
    assert len(dilated) == {("resnet50", 16): 3, ("resnet50", 8): 9,
                            ("mobilenetv2", 16): 3, ("mobilenetv2", 8): 10}[backbone, output_stride]
    step = 32 // output_stride
    assert dense.shape[1:3] == (64 // output_stride, 96 // output_stride)
    sampled = np.asarray(dense)[:, offset::step, offset::step]
    scale = float(np.abs(original).max())
    assert scale > 0
    np.testing.assert_allclose(sampled, original, rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.slow
def test_model_loads_backbone_weights_from_a_local_file(resnet50_weights, deeplabv3_os8):
    _, reference = resnet50_weights
    for block in (1, 2, 3):
        for unit in (1, 2, 3):
            name = f"conv5_block{block}_{unit}_conv"
            np.testing.assert_array_equal(deeplabv3_os8.get_layer(name).get_weights()[0],
                                          reference.get_layer(name).get_weights()[0])
    np.testing.assert_array_equal(
        deeplabv3_os8.get_layer("conv4_block6_2_conv").get_weights()[0],
        reference.get_layer("conv4_block6_2_conv").get_weights()[0])


def test_backbone_loads_keras_imagenet_file_format(tmp_path, mobilenetv2_weights):
    """Keras's downloaded *_notop.h5 files are in the legacy HDF5 layout; write one with
    Keras's own legacy writer and load it."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    _, reference = mobilenetv2_weights
    path = tmp_path / imagenet_weights_filename("mobilenetv2", 0.35)
    with h5py.File(path, "w") as legacy_file:
        legacy_h5_format.save_weights_to_hdf5_group(legacy_file, reference)
    atrous = build_backbone("mobilenetv2", weights=path, width_multiplier=0.35)
    # 52 bias-free convs (Conv1, 2 in block 0, 3 in each of blocks 1-16, Conv_1) + 52 BNs x 4.
    assert _assert_same_weights(reference, atrous) == 52 + 52 * 4
    with pytest.raises(ValueError, match=r"\.h5: could not load it into the mobilenetv2 "
                                         r"backbone .* at width_multiplier 0\.5"):
        build_backbone("mobilenetv2", weights=path, width_multiplier=0.5)


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "resnet50_notop.h5"
    with pytest.raises(FileNotFoundError, match="resnet50_notop.h5: backbone weights file not found"):
        build_model("deeplabv3", num_classes=3, backbone_weights=missing)


def test_imagenet_weights_offline_gives_a_clear_error(tmp_path, monkeypatch):
    """Independent of the network: Keras's weights URL points at a closed 127.0.0.1 port
    and its cache at an empty folder."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setattr("keras.src.applications.resnet.BASE_WEIGHTS_PATH",
                        f"http://127.0.0.1:{closed_port}/")
    # Keras reads KERAS_HOME once, at import; patch what it read as well.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(tmp_path))
    with pytest.raises(WeightsUnavailableError) as raised:
        build_model("deeplabv3", num_classes=3, backbone_weights="imagenet")
    message = str(raised.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert f"127.0.0.1:{closed_port}" in message
    assert "backbone_weights=PATH" in message and "--backbone-weights FILE" in message
    assert list((tmp_path / "models").glob("*.h5")) == []


# --- the head ----------------------------------------------------------------------------

@pytest.mark.slow
def test_image_pooling_branch_is_alive(deeplabv3):
    """The textbook resized the pooled 2048 features, leaving the pooling 1x1 conv dead.
    Here that conv's output is what is resized, so its weights change the logits."""
    resize = deeplabv3.get_layer("aspp_pool_resize")
    assert resize.input[0].shape[-1] == 256
    assert resize.input[0] is deeplabv3.get_layer("aspp_pool_relu").output
    conv = deeplabv3.get_layer("aspp_pool_conv")
    images = _images(64, 64, seed=7)
    before = np.asarray(deeplabv3(images, training=False))
    original_kernel = conv.get_weights()[0]
    try:
        conv.kernel.assign(np.random.default_rng(7).normal(0, 0.05, original_kernel.shape))
        after = np.asarray(deeplabv3(images, training=False))
    finally:
        conv.kernel.assign(original_kernel)
    assert np.abs(after - before).mean() > 1e-3 * np.abs(before).mean()
    np.testing.assert_array_equal(np.asarray(deeplabv3(images, training=False)), before)


def resnet50_notop_parameters() -> int:
    """ResNet-50 without top, from its architecture (He et al. 2016, Table 1).

    Keras's ResNet50 convs have biases; every BatchNormalization holds 4 values per
    channel (gamma, beta, moving mean, moving variance).
      conv1: 7x7x3x64 + 64 = 9,472; BN 4x64 = 256
      bottleneck(in, mid), out = 4 mid:
        1x1 in->mid (+mid), 3x3 mid->mid (+mid), 1x1 mid->out (+out), BN 4(mid+mid+out)
        first block of a stage adds the 1x1 shortcut in->out (+out) and its BN 4 out
      stages (mid, blocks, in): (64, 3, 64), (128, 4, 256), (256, 6, 512), (512, 3, 1024)
    = 23,587,712 (Keras's 25,636,712 with top minus the 2048x1000 + 1000 classifier).
    """
    total = 7 * 7 * 3 * 64 + 64 + 4 * 64
    for mid, blocks, stage_in in [(64, 3, 64), (128, 4, 256), (256, 6, 512), (512, 3, 1024)]:
        out = 4 * mid
        for block in range(blocks):
            block_in = stage_in if block == 0 else out
            total += block_in * mid + mid + 9 * mid * mid + mid + mid * out + out
            total += 4 * (mid + mid + out)
            if block == 0:
                total += block_in * out + out + 4 * out
    return total


@pytest.mark.slow
def test_deeplabv3_parameter_count_matches_the_architecture(deeplabv3):
    """DeepLab v3, ResNet-50, output stride 16, 21 classes, by hand:

      backbone (see resnet50_notop_parameters)                         23,587,712
      ASPP, convs without bias, BN 4 x 256 = 1,024 each:
        1x1:            2048 x 256         =    524,288  + 1,024
        3x3 rates 6/12/18: 3 x 9 x 2048 x 256 = 14,155,776 + 3 x 1,024
        image pooling 1x1: 2048 x 256       =    524,288  + 1,024
        projection 1x1: (5 x 256) x 256     =    327,680  + 1,024     15,538,176
      classifier 1x1 with bias: 256 x 21 + 21                              5,397
                                                                      39,131,285
    """
    backbone = resnet50_notop_parameters()
    assert backbone == 23_587_712
    aspp = (2048 * 256 + 3 * 9 * 2048 * 256 + 2048 * 256 + 5 * 256 * 256) + 6 * 4 * 256
    classifier = 256 * NUM_CLASSES + NUM_CLASSES
    assert backbone + aspp + classifier == 39_131_285
    assert deeplabv3.count_params() == backbone + aspp + classifier
    batch_norm_statistics = sum(
        2 * layer.gamma.shape[0] for layer in deeplabv3.layers
        if isinstance(layer, keras.layers.BatchNormalization))
    trainable = sum(int(np.prod(weight.shape)) for weight in deeplabv3.trainable_weights)
    assert trainable == deeplabv3.count_params() - batch_norm_statistics


@pytest.fixture
def mixed_precision():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("name", ["deeplabv3", "deeplabv3plus", "unet"])
def test_logits_are_float32_under_mixed_precision(mixed_precision, name):
    model = build_model(name, num_classes=4, backbone="tiny")
    assert model.get_layer("stage1_conv").compute_dtype == "float16"
    logits = model(_images(64, 64), training=False)
    assert logits.dtype == "float32"
    assert np.isfinite(np.asarray(logits)).all()


def test_registry_refuses_bad_arguments():
    with pytest.raises(ValueError, match="unknown model 'fcn'; choose one of deeplabv3, "
                                         "deeplabv3plus, unet"):
        build_model("fcn", num_classes=3)
    with pytest.raises(ValueError, match="unknown backbone 'vgg16'"):
        build_model("deeplabv3", num_classes=3, backbone="vgg16")
    with pytest.raises(ValueError, match="DeepLab supports 16 or 8"):
        build_model("deeplabv3", num_classes=3, output_stride=32)
    with pytest.raises(ValueError, match="U-Net encoder runs at stride 32"):
        build_model("unet", num_classes=3, output_stride=16)
    with pytest.raises(ValueError, match="multi_grid applies to the resnet50 backbone only"):
        build_model("deeplabv3", num_classes=3, backbone="mobilenetv2", multi_grid=(1, 2, 4))
    with pytest.raises(ValueError, match="width_multiplier 0.5 applies to mobilenetv2 only"):
        build_model("deeplabv3", num_classes=3, width_multiplier=0.5)
    with pytest.raises(ValueError, match="ImageNet weights of mobilenetv2 exist for"):
        build_model("deeplabv3", num_classes=3, backbone="mobilenetv2",
                    width_multiplier=0.6, backbone_weights="imagenet")


# --- saving --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, backbone", ALL_MODELS)
def test_saved_model_loads_in_safe_mode_with_identical_outputs(built_models, tmp_path, name,
                                                               backbone):
    model = built_models(name, backbone)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    path = tmp_path / f"{name}_{backbone}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    images = _images(64, 96, seed=11)
    np.testing.assert_array_equal(loaded(images, training=False), model(images, training=False))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    if (name, backbone) == ("deeplabv3", "resnet50"):
        # Still any size after loading, also in a tf.function with unknown size.
        unknown = tf.function(loaded, input_signature=[tf.TensorSpec((None, None, None, 3))])
        other = _images(48, 80, seed=12)
        np.testing.assert_allclose(unknown(other), model(other, training=False),
                                   rtol=1e-4, atol=1e-4)
        assert tuple(load_model(path)(other).shape) == (1, 48, 80, NUM_CLASSES)
    path.unlink()  # up to 160 MB


def test_load_model_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="best.keras: no such model file"):
        load_model(tmp_path / "best.keras")
