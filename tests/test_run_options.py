"""run_config_from_options: the `pixelwise train` flags as a RunConfig, callable from Python."""

import pytest

from pixelwise.config import DataConfig, RunConfig
from pixelwise.run_options import run_config_from_options


def test_the_defaults_are_the_configurations_own(tmp_path):
    assert run_config_from_options(tmp_path) == RunConfig(
        data=DataConfig(source=str(tmp_path.resolve())))


def test_flag_values_become_configuration_values(tmp_path):
    weights = tmp_path / "w.weights.h5"
    config = run_config_from_options(
        tmp_path, model="deeplabv3plus", backbone_weights=str(weights), output_stride="8",
        multi_grid=True, input_size="64x96", mixed_precision="bfloat16", cache=True)
    assert (config.model.name, config.model.output_stride) == ("deeplabv3plus", 8)
    assert config.model.backbone_weights == str(weights.resolve())
    assert config.model.multi_grid == (1, 2, 4) and config.data.input_size == (64, 96)
    assert config.train.mixed_precision == "bfloat16" and config.data.cache == "memory"
    plain = run_config_from_options(tmp_path, backbone_weights="none", mixed_precision="none",
                                    input_size=64)
    assert plain.model.backbone_weights is None and plain.train.mixed_precision is None
    with pytest.raises(ValueError, match="multiples of 16"):
        run_config_from_options(tmp_path, input_size="100")
