"""LR-ASPP (MobileNetV3's segmentation head): its layout against the paper, sizes at output
stride 16 and 8, parameters by hand, the registry and the command line, saving, and an int8
TFLite export through `pixelwise export` with its agreement check.

Built once per module: LR-ASPP on MobileNetV3-Large (the default, width 1, stride 16), on
the tiny backbone, and on MobileNetV3-Small x0.35 for the export; inputs are 64-96 px.
"""

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from blobs import BLOB_SPEC, SIZE, write_blob_dataset
from pixelwise.cli import cli
from pixelwise.config import DataConfig, ModelConfig, RunConfig
from pixelwise.models import build_model, count_multiply_adds, load_model, registry
from pixelwise.models.parts import backbone_layers, classifier_layer
from pixelwise.run_options import run_config_from_options

NUM_CLASSES = 21

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def _images(height: int = 64, width: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (1, height, width, 3)).astype("float32")


def _outputs(model: keras.Model, images, *names: str) -> list[np.ndarray]:
    tapped = keras.Model(model.input, [model.get_layer(name).output for name in names])
    return [np.asarray(tensor) for tensor in tapped(images, training=False)]


@pytest.fixture(scope="module")
def lraspp() -> keras.Model:
    """build_model("lraspp") with nothing else asked: MobileNetV3-Large, output stride 16."""
    keras.utils.set_random_seed(0)
    return build_model("lraspp", num_classes=NUM_CLASSES)


@pytest.fixture(scope="module")
def tiny_lraspp() -> dict:
    keras.utils.set_random_seed(1)
    return {stride: build_model("lraspp", num_classes=3, backbone="tiny", output_stride=stride,
                                branch_filters=8)
            for stride in (16, 8)}


def test_the_default_is_the_papers_head_on_mobilenetv3_large(lraspp):
    assert lraspp.name == "lraspp_mobilenetv3large_os16"
    assert registry.default_backbone("lraspp") == "mobilenetv3large"
    # The two taps: the 960-channel features after conv_1 (stride 16, the last block
    # unstrided) and block 5's output at stride 8 (40 channels).
    assert lraspp.get_layer("lraspp_branch_conv").input is lraspp.get_layer(
        "conv_1_activation").output
    assert lraspp.get_layer("lraspp_pool").input is lraspp.get_layer("conv_1_activation").output
    assert lraspp.get_layer("low_classifier").input is lraspp.get_layer(
        "expanded_conv_5_add").output
    assert lraspp.get_layer("expanded_conv_12_depthwise").strides == (1, 1)
    high, branch, gate, upsampled, low, summed, logits = _outputs(
        lraspp, _images(), "conv_1_activation", "lraspp_branch_relu", "lraspp_gate",
        "lraspp_upsample", "expanded_conv_5_add", "classifier_sum", "logits")
    assert high.shape == (1, 4, 6, 960) and branch.shape == (1, 4, 6, 128)
    assert gate.shape == (1, 1, 1, 128) and upsampled.shape == (1, 8, 12, 128)
    assert low.shape == (1, 8, 12, 40) and summed.shape == (1, 8, 12, NUM_CLASSES)
    assert logits.shape == (1, 64, 96, NUM_CLASSES) and logits.dtype == np.float32
    # The gate: a sigmoid of a bias-free 1x1 conv of the globally pooled high features.
    (kernel,) = lraspp.get_layer("lraspp_gate_conv").get_weights()
    expected_gate = 1 / (1 + np.exp(-(high.mean(axis=(1, 2)) @ kernel[0, 0])))
    np.testing.assert_allclose(gate[:, 0, 0], expected_gate, rtol=1e-5, atol=1e-6)
    # The sum of the two 1x1 classifiers: the low features' and the gated branch's.
    low_kernel, low_bias = lraspp.get_layer("low_classifier").get_weights()
    high_kernel, high_bias = lraspp.get_layer("classifier").get_weights()
    expected = low @ low_kernel[0, 0] + low_bias + upsampled @ high_kernel[0, 0] + high_bias
    np.testing.assert_allclose(summed, expected, rtol=1e-4, atol=1e-4)
    assert classifier_layer(lraspp).name == "classifier"
    assert len(backbone_layers(lraspp, "mobilenetv3large")) == len(
        [layer for layer in lraspp.layers if not layer.name.startswith(
            ("image", "lraspp_", "classifier", "low_classifier", "logits"))])


def test_parameter_count_by_hand(lraspp):
    """MobileNetV3-Large without top: Keras's 5,507,432 with top less its 1x1 conv_2
    (960 x 1280 + 1280) and classifier (1280 x 1000 + 1000) = 2,996,352. The head, 21 classes:

      branch 1x1, no bias:       960 x 128 = 122,880, its BN 4 x 128 = 512
      gate 1x1, no bias:         960 x 128 = 122,880
      classifier 1x1 with bias:  128 x 21 + 21 = 2,709
      low classifier with bias:   40 x 21 + 21 =   861          249,842
                                                          3,246,194
    Without the batch norms' moving statistics (what torchvision counts as parameters):
    3,221,538 trainable, torchvision's lraspp_mobilenet_v3_large's count for 21 classes.
    """
    backbone = 5_507_432 - (960 * 1280 + 1280) - (1280 * 1000 + 1000)
    head = (960 * 128 + 4 * 128 + 960 * 128 + 128 * NUM_CLASSES + NUM_CLASSES
            + 40 * NUM_CLASSES + NUM_CLASSES)
    assert (backbone, head) == (2_996_352, 249_842)
    assert lraspp.count_params() == backbone + head == 3_246_194
    trainable = sum(int(np.prod(weight.shape)) for weight in lraspp.trainable_weights)
    assert trainable == 3_221_538
    # Multiply-adds at 224 x 224 (high features 14 x 14, low 28 x 28), the head by hand.
    encoder = keras.Model(lraspp.input, lraspp.get_layer("conv_1_activation").output)
    head_multiply_adds = (14 * 14 * 960 * 128 + 960 * 128
                          + 28 * 28 * (128 + 40) * NUM_CLASSES)
    assert (count_multiply_adds(lraspp, 224)
            == count_multiply_adds(encoder, 224) + head_multiply_adds)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_logits_at_the_input_size_at_output_stride_16_and_8(tiny_lraspp, output_stride):
    model = tiny_lraspp[output_stride]
    assert model.input.shape == (None, None, None, 3)
    for height, width in [(64, 64), (64, 96), (96, 48)]:
        high, low, logits = _outputs(model, _images(height, width), "stage5_out",
                                     "stage3_out", "logits")
        assert high.shape[1:3] == (height // output_stride, width // output_stride)
        assert low.shape[1:3] == (height // 8, width // 8)
        assert logits.shape == (1, height, width, 3) and logits.dtype == np.float32


def test_saved_lraspp_loads_in_safe_mode(tiny_lraspp, tmp_path):
    model = tiny_lraspp[16]
    path = tmp_path / "lraspp.keras"
    model.save(path)
    loaded = load_model(path, compile=False)
    images = _images(seed=3)
    np.testing.assert_array_equal(loaded(images, training=False), model(images, training=False))
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def test_registry_entry_and_refusals():
    entry = registry.model_entry("lraspp")
    assert "lraspp" in registry.MODEL_NAMES
    assert set(entry.backbones) == set(registry.all_backbone_names())
    assert registry.input_multiple("lraspp") == 16 and registry.input_multiple("lraspp", 8) == 8
    assert registry.default_backbone("deeplabv3") == "resnet50"
    with pytest.raises(ValueError, match="LR-ASPP supports 16 or 8"):
        registry.input_multiple("lraspp", 32)
    with pytest.raises(ValueError, match="multi_grid applies to the DeepLab models only"):
        build_model("lraspp", num_classes=3, backbone="tiny", multi_grid=(1, 2, 4))
    with pytest.raises(ValueError, match="aspp_filters: not an option of lraspp"):
        build_model("lraspp", num_classes=3, backbone="tiny", aspp_filters=16)
    with pytest.raises(ValueError, match="lraspp needs height and width that are multiples "
                                         "of 16"):
        build_model("lraspp", num_classes=3, backbone="tiny", input_shape=(72, 64, 3))


def test_the_configuration_and_the_command_line_take_lraspp(tmp_path, monkeypatch):
    assert ModelConfig(name="lraspp").backbone == "mobilenetv3large"
    assert ModelConfig(name="unet").backbone == "resnet50"
    config = run_config_from_options(tmp_path, model="lraspp", input_size=64)
    assert (config.model.backbone, config.model.input_multiple) == ("mobilenetv3large", 16)
    assert RunConfig.from_dict(config.to_dict()) == config
    for option in (dict(aspp_filters=96), dict(aspp_rates=(6,))):
        with pytest.raises(ValueError, match="apply to the DeepLab models only; leave them "
                                             "unset for lraspp"):
            ModelConfig(name="lraspp", **option)

    runner = CliRunner()
    help_text = runner.invoke(cli, ["train", "--help"]).output
    for name in ("lraspp", "mobilenetv3large", "mobilenetv3small"):
        assert name in help_text
    captured = []

    def fake_train(config, out_dir, **_):
        captured.append(config)
        raise ValueError("stopped before training")

    monkeypatch.setattr("pixelwise.train.train", fake_train)
    common = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
              "--model", "lraspp", "--input-size", "64"]
    for extra, expected in [([], "mobilenetv3large"),
                            (["--backbone", "mobilenetv3large"], "mobilenetv3large"),
                            (["--backbone", "mobilenetv3small", "--output-stride", "8"],
                             "mobilenetv3small")]:
        result = runner.invoke(cli, common + extra)
        assert result.exit_code == 1 and "stopped before training" in result.output, \
            result.output
        assert (captured[-1].model.name, captured[-1].model.backbone) == ("lraspp", expected)
    assert captured[-1].model.input_multiple == 8


def _tflite_operators(path) -> list[tuple[str, list[str]]]:
    """(operator name, its tensors' types) of every operator of a .tflite file."""
    from ai_edge_litert import schema_py_generated as schema

    op_names = {value: name for name, value in vars(schema.BuiltinOperator).items()
                if not name.startswith("_")}
    type_names = {value: name.lower() for name, value in vars(schema.TensorType).items()
                  if not name.startswith("_")}
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    found = []
    for index in range(graph.OperatorsLength()):
        operator = graph.Operators(index)
        code = model.OperatorCodes(operator.OpcodeIndex())
        tensors = [*operator.InputsAsNumpy(), *operator.OutputsAsNumpy()]
        found.append((op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())],
                      [type_names[graph.Tensors(int(i)).Type()] for i in tensors if i >= 0]))
    return found


def test_int8_export_of_lraspp_on_mobilenetv3_passes_its_check(tmp_path):
    """`pixelwise export RUN --quantize int8` on an LR-ASPP run (MobileNetV3-Small x0.35 at
    output stride 8, so with dilated depthwise convs; random weights with the batch-norm
    statistics of one batch, so logits are of order 1): hard-swish, the squeeze-excite
    gates and the LR-ASPP sigmoid all run in int8, and the export passes the agreement check
    on the run's test split."""
    from pixelwise.runs import RunFolder, save_model_atomically

    keras.utils.set_random_seed(4)
    model = build_model("lraspp", num_classes=BLOB_SPEC.num_classes, output_stride=8,
                        backbone="mobilenetv3small", width_multiplier=0.35)
    assert model.get_layer("expanded_conv_10_depthwise").dilation_rate == (4, 4)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(np.random.default_rng(4).uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32"),
          training=True)
    data = write_blob_dataset(tmp_path / "blobs", 24, seed=11)
    folder = RunFolder(tmp_path / "run")
    folder.root.mkdir()
    RunConfig(data=DataConfig(source=str(data), input_size=SIZE, augment="none"),
              model=ModelConfig(name="lraspp", backbone="mobilenetv3small", output_stride=8,
                                width_multiplier=0.35, backbone_weights=None)
              ).save(folder.config_path)
    BLOB_SPEC.save(folder.spec_path)
    save_model_atomically(model, folder.best_model_path, include_optimizer=False)

    result = CliRunner().invoke(cli, ["export", str(folder.root), "--format", "tflite",
                                      "--quantize", "int8", "--calibration-images", "8"])
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.output
    report = json.loads((folder.root / "export" / "model_int8_check.json").read_text())
    assert report["passed"] and report["mean_iou_drop"] <= 0.01
    assert report["num_images"] == 4  # the test half of val.txt's 8
    assert report["pixel_agreement"] > 0.9
    operators = _tflite_operators(folder.root / "export" / "model_int8.tflite")
    names = [name for name, _ in operators]
    assert names.count("HARD_SWISH") == 18 and names.count("LOGISTIC") == 1
    float_ops = [name for name, types in operators if "float32" in types]
    assert float_ops == ["CAST", "QUANTIZE"], float_ops
    assert all(types[0] == "int8" for name, types in operators
               if name in ("HARD_SWISH", "LOGISTIC", "MUL", "CONV_2D", "DEPTHWISE_CONV_2D"))


def test_fine_tuning_to_other_classes_carries_both_classifiers_rows():
    from pixelwise.init_source import InitSource
    from pixelwise.transfer import transfer_weights

    def network(classes):
        return build_model("lraspp", num_classes=classes, backbone="tiny",
                           input_shape=(64, 64, 3))

    old, new = network(3), network(2)
    report = transfer_weights(new, old, backbone="tiny", classes=("road", "toy"),
                              source=InitSource("old", "old.keras", ("sky", "road", "car")),
                              class_map=(("road", "road"), ("car", "toy")))
    assert report.carried_classes == {"road": ["road"], "toy": ["car"]}
    for name in ("classifier", "low_classifier"):
        kernel, bias = old.get_layer(name).get_weights()
        new_kernel, new_bias = new.get_layer(name).get_weights()
        np.testing.assert_array_equal(new_kernel, kernel[..., [1, 2]])
        np.testing.assert_array_equal(new_bias, bias[[1, 2]])
    assert "low_classifier" not in report.started_anew
