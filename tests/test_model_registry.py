"""The model registry: names, backbones, output strides and input multiples in one place."""

import dataclasses

import keras
import pytest
from click.testing import CliRunner

from pixelwise.cli import cli
from pixelwise.config import ModelConfig
from pixelwise.models import build_model, registry


def test_each_model_knows_its_strides_and_input_multiple():
    assert registry.MODEL_NAMES == ("deeplabv3", "deeplabv3plus", "unet", "lraspp")
    assert [registry.input_multiple(name) for name in registry.MODEL_NAMES] == [16, 16, 32, 16]
    assert registry.input_multiple("deeplabv3", 8) == 8
    assert registry.all_output_strides() == (8, 16, 32)
    assert registry.all_backbone_names() == (
        "resnet50", "mobilenetv2", "mobilenetv3large", "mobilenetv3small",
        "mobilenetv3large_minimalistic", "mobilenetv3small_minimalistic", "tiny")
    with pytest.raises(ValueError, match="DeepLab supports 16 or 8"):
        registry.input_multiple("deeplabv3plus", 32)
    with pytest.raises(ValueError, match="U-Net encoder runs at stride 32"):
        registry.input_multiple("unet", 16)
    with pytest.raises(ValueError, match="unknown model 'fcn'; choose one of deeplabv3, "
                                         "deeplabv3plus, unet"):
        registry.model_entry("fcn")


def test_the_run_configuration_asks_the_registry():
    assert ModelConfig(name="unet").input_multiple == 32
    assert ModelConfig(name="deeplabv3plus", output_stride=8).input_multiple == 8
    assert ModelConfig().input_multiple == registry.input_multiple("deeplabv3")


def test_build_model_dispatches_through_the_registry(monkeypatch):
    """A model added to the registry is built by name with no other change."""
    calls = []

    def builder(**arguments):
        calls.append(arguments)
        image = keras.Input(arguments["input_shape"])
        return keras.Model(image, keras.layers.Conv2D(arguments["num_classes"], 1)(image))

    entry = dataclasses.replace(registry.MODELS["unet"], name="pointwise", builder=builder,
                                backbones=("tiny",))
    monkeypatch.setitem(registry.MODELS, "pointwise", entry)
    model = build_model("pointwise", num_classes=2, backbone="tiny")
    assert model.output.shape[-1] == 2
    assert calls[0]["backbone"] == "tiny" and "output_stride" not in calls[0]
    with pytest.raises(ValueError, match="unknown backbone 'resnet50'; choose one of tiny"):
        build_model("pointwise", num_classes=2)


def test_the_command_line_choices_come_from_the_registry():
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    for name in (*registry.MODEL_NAMES, *registry.all_backbone_names()):
        assert name in result.output
    refused = CliRunner().invoke(cli, ["train", "--data", ".", "--out", "x", "--model", "fcn"])
    assert refused.exit_code == 2 and "'fcn' is not one of" in refused.output
