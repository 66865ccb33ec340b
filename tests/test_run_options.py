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


def test_light_decoder_and_aspp_rates_reach_the_model_builder(tmp_path):
    config = run_config_from_options(
        tmp_path, model="deeplabv3plus", aspp_rates=(), low_level_filters=24,
        decoder_filters=48)
    options = config.model.builder_options()
    assert (options["aspp_rates"], options["low_level_filters"],
            options["decoder_filters"]) == ((), 24, 48)
    assert RunConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="deeplabv3plus only"):
        run_config_from_options(tmp_path, model="deeplabv3", decoder_filters=48)


def test_an_older_run_config_without_decoder_fields_still_loads(tmp_path):
    saved = run_config_from_options(tmp_path, model="deeplabv3").to_dict()
    del saved["model"]["low_level_filters"], saved["model"]["decoder_filters"]
    model = RunConfig.from_dict(saved).model
    assert model.low_level_filters is None and model.decoder_filters is None


def test_the_rates_flag_reads_lists_and_none():
    from pixelwise.cli.params import parse_rates

    assert parse_rates("6,12,18") == (6, 12, 18) and parse_rates("none") == ()
    for bad in ("6;12", "0,2", ""):
        with pytest.raises(ValueError, match="rates"):
            parse_rates(bad)


def test_sqrt_median_frequency_weights_are_the_roots_of_median_frequency(tmp_path):
    import numpy as np

    from pixelwise.data.spec import DatasetSpec
    from pixelwise.recipe import build_training_loss

    class CountingSource:
        def class_pixel_counts(self, split, seed):
            return [10, 30, 60]

    spec = DatasetSpec(class_names=("a", "b", "c"), colors=((0, 0, 0), (1, 1, 1), (2, 2, 2)), ignore_label=11)
    weights = {}
    for weighting in ("median_frequency", "sqrt_median_frequency"):
        config = run_config_from_options(tmp_path, class_weighting=weighting)
        weights[weighting] = build_training_loss(config, CountingSource(), spec).class_weights
    # By hand: frequencies 0.1, 0.3, 0.6, median 0.3.
    np.testing.assert_allclose(weights["median_frequency"], [3.0, 1.0, 0.5])
    np.testing.assert_allclose(weights["sqrt_median_frequency"], [3 ** 0.5, 1.0, 0.5 ** 0.5])
