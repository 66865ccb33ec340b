"""Parameter counts and multiply-adds: count_multiply_adds and `pixelwise model summary`."""

import keras
import pytest
from click.testing import CliRunner

from pixelwise.cli import cli
from pixelwise.models import build_model, count_multiply_adds, measure_model
from pixelwise.models.layers import AtrousConv2D


def _tiny_model() -> keras.Model:
    image = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", dilation_rate=2)(image)
    features = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2)(features)
    features = keras.layers.Conv2DTranspose(6, 2, strides=2)(features)
    features = keras.layers.SeparableConv2D(5, 3, padding="same")(features)
    features = keras.layers.BatchNormalization()(features)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    return keras.Model(image, keras.layers.Dense(7)(pooled))


# For an 8 x 10 x 3 image:
#   Conv2D 3x3, 3 -> 4, dilation 2, 'same':  8*10 positions x 3*3*3*4      = 8,640
#   DepthwiseConv2D 3x3, stride 2, x2:       4*5 positions x 3*3*4*2       = 1,440
#   Conv2DTranspose 2x2, 8 -> 6:             4*5 input positions x 2*2*8*6 = 3,840
#   SeparableConv2D 3x3, 6 -> 5:             8*10 x (3*3*6 + 6*5)          = 6,720
#   BatchNormalization, pooling:             not counted
#   Dense 5 -> 7:                            5*7                           =    35
TINY_MULTIPLY_ADDS = 8_640 + 1_440 + 3_840 + 6_720 + 35


def test_count_multiply_adds_by_hand():
    assert count_multiply_adds(_tiny_model(), (8, 10)) == TINY_MULTIPLY_ADDS


def test_executed_multiply_adds_skip_the_atrous_taps_that_read_only_padding():
    image = keras.Input((None, None, 2))
    model = keras.Model(image, AtrousConv2D(3, 3, padding="same", dilation_rate=4)(image))
    # On 8 x 8, rate 4: per axis the taps at -4 / 0 / +4 reach 4 / 8 / 4 of the outputs,
    # so 16 x 16 tap-positions are multiplied instead of 8*8 positions x 9 taps.
    assert count_multiply_adds(model, 8) == 8 * 8 * 9 * 2 * 3
    assert count_multiply_adds(model, 8, executed=True) == 16 * 16 * 2 * 3
    # Undilated layers and other models count the same either way.
    assert count_multiply_adds(_tiny_model(), (8, 10), executed=True) == TINY_MULTIPLY_ADDS


def test_count_multiply_adds_walks_nested_models():
    inner = _tiny_model()
    image = keras.Input((None, None, 3))
    outer = keras.Model(image, keras.layers.Dense(2)(inner(image)))
    assert count_multiply_adds(outer, (8, 10)) == TINY_MULTIPLY_ADDS + 7 * 2


def test_count_multiply_adds_of_a_sequential_model():
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.Conv2D(2, 1)])
    # 'valid' 3x3 on 8x10: 6x8 positions x 3*3*3*4, then 6x8 x 4*2.
    assert count_multiply_adds(model, (8, 10)) == 48 * 108 + 48 * 8


def test_count_multiply_adds_matches_mobilenetv2_paper():
    """Sandler et al. 2018, Table 4: MobileNetV2 (1.0, 224 x 224) takes 300M multiply-adds."""
    model = keras.applications.MobileNetV2(weights=None)
    assert count_multiply_adds(model, 224) == pytest.approx(300e6, rel=0.005)


def test_deeplab_multiply_adds_scale_with_the_image_except_image_pooling():
    """Twice the side, four times the positions for every conv but the image-pooling 1x1
    conv, which always sees one pooled position: 112 channels (MobileNetV2 x0.35) x 256."""
    model = build_model("deeplabv3", num_classes=21, backbone="mobilenetv2", width_multiplier=0.35)
    pooling_conv = 112 * 256
    assert model.get_layer("aspp_pool_conv").kernel.shape == (1, 1, 112, 256)
    small, large = count_multiply_adds(model, 64), count_multiply_adds(model, 128)
    assert large == 4 * small - 3 * pooling_conv
    assert count_multiply_adds(model, (64, 128)) == 2 * small - pooling_conv


def test_count_multiply_adds_refuses_other_sizes_of_a_fixed_model():
    model = build_model("deeplabv3", num_classes=3, input_shape=(64, 64, 3),
                        backbone="mobilenetv2", width_multiplier=0.35)
    assert count_multiply_adds(model, 64) > 0
    with pytest.raises(ValueError, match="built for 64x64 inputs, not 96x96"):
        count_multiply_adds(model, 96)


def test_measure_model_counts_trainable_parameters():
    model = _tiny_model()
    size = measure_model(model, (8, 10))
    # BatchNormalization over 5 channels: 10 trainable, 10 moving statistics.
    assert size.parameters == model.count_params()
    assert size.trainable_parameters == model.count_params() - 10
    assert size.multiply_adds == TINY_MULTIPLY_ADDS


def test_cli_model_summary_prints_the_library_figures():
    result = CliRunner().invoke(cli, [
        "model", "summary", "deeplabv3plus", "--backbone", "mobilenetv2",
        "--width-multiplier", "0.35", "--num-classes", "5", "--input-size", "64x96"])
    assert result.exit_code == 0, result.output
    model = build_model("deeplabv3plus", num_classes=5, backbone="mobilenetv2",
                        width_multiplier=0.35)
    multiply_adds = count_multiply_adds(model, (64, 96))
    assert "model           deeplabv3plus_mobilenetv2_os16" in result.output
    assert "input           64 x 96 x 3" in result.output
    assert f"parameters      {model.count_params():,} (" in result.output
    assert f"({multiply_adds:,}) per image" in result.output


def test_cli_model_summary_pads_a_size_off_the_stride():
    """A camera's native size (CamVid's 360 x 480 at stride 16) is summarised at the size
    the model runs it at, padded as predict and export pad it."""
    result = CliRunner().invoke(cli, ["model", "summary", "deeplabv3", "--backbone",
                                      "mobilenetv2", "--width-multiplier", "0.35",
                                      "--num-classes", "5", "--input-size", "60x100"])
    assert result.exit_code == 0, result.output
    assert "padded          60 x 100 runs as 64 x 112 (multiples of the stride, 16)" in \
        result.output
    model = build_model("deeplabv3", num_classes=5, backbone="mobilenetv2",
                        width_multiplier=0.35)
    assert f"({count_multiply_adds(model, (64, 112)):,}) per image" in result.output


@pytest.mark.parametrize("arguments, message", [
    (["deeplabv3", "--input-size", "big"], "'big': expected S or HxW"),
    (["fcn"], "unknown model 'fcn'"),
])
def test_cli_model_summary_errors(arguments, message):
    result = CliRunner().invoke(cli, ["model", "summary", *arguments])
    assert result.exit_code != 0
    assert message in result.output
