"""Recomputed backbone stages: the same training as without, once-moved batch norm
statistics, the second run really happening, unchanged saved files, and the option's path
from the command line to the compiled model."""

import contextlib
import json

import keras
import numpy as np
import pytest

from conftest import TINY_MODEL, TINY_SIZE
from pixelwise.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pixelwise.data.synthetic import generate_synthetic
from pixelwise.models import build_model
from pixelwise.models import recompute as recompute_module
from pixelwise.models.recompute import StagedForward, enable_recomputation, recomputes
from pixelwise.run_options import run_config_from_options

SIZE = 64
STEPS = 3


def tiny_model(fused_batchnorm: bool = True, name: str = "deeplabv3plus") -> keras.Model:
    keras.utils.set_random_seed(1)
    model = build_model(name, num_classes=3, backbone="tiny", input_shape=(SIZE, SIZE, 3),
                        fused_batchnorm=fused_batchnorm)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    images = (rng.random((2, SIZE, SIZE, 3)) * 255).astype("float32")
    return images, rng.integers(0, 3, (2, SIZE, SIZE)).astype("int32")


def train(model: keras.Model, batch) -> list[float]:
    return [float(model.train_on_batch(*batch)) for _ in range(STEPS)]


def largest_difference(first: keras.Model, second: keras.Model) -> dict[str, float]:
    return {a.path: float(np.abs(a.numpy() - b.numpy()).max())
            for a, b in zip(first.weights, second.weights)}


@pytest.mark.parametrize(("name", "fused_batchnorm"),
                         [("deeplabv3plus", True), ("unet", False)])
def test_recomputed_training_moves_weights_and_statistics_as_without(batch, name,
                                                                     fused_batchnorm):
    plain, recomputed = tiny_model(fused_batchnorm, name), tiny_model(fused_batchnorm, name)
    enable_recomputation(recomputed, "tiny")
    assert np.allclose(train(plain, batch), train(recomputed, batch), rtol=1e-5)
    differences = largest_difference(plain, recomputed)
    statistics = [path for path in differences if "moving_" in path]
    assert statistics and max(differences.values()) < 1e-5, differences


def test_the_backward_pass_runs_every_stage_again_without_moving_statistics(batch,
                                                                            monkeypatch):
    second_runs = []

    class CountingScope(keras.StatelessScope):
        def __enter__(self):
            second_runs.append(1)
            return super().__enter__()

    monkeypatch.setattr(recompute_module.keras, "StatelessScope", CountingScope)
    plain, recomputed = tiny_model(), tiny_model()
    staged = enable_recomputation(recomputed, "tiny")
    train(plain, batch)
    train(recomputed, batch)
    # The step is traced once: every stage ran a second time while it was traced.
    assert len(second_runs) == len(staged.stages) == 5
    # Without the scope the second run's updates would land too: the test above would fail.
    monkeypatch.setattr(recompute_module.keras, "StatelessScope", contextlib.nullcontext)
    twice, once = tiny_model(), tiny_model()
    enable_recomputation(twice, "tiny")
    train(once, batch)
    train(twice, batch)
    moved = {path: value for path, value in largest_difference(once, twice).items()
             if "moving_mean" in path}
    assert max(moved.values()) > 1e-4


def test_the_saved_model_is_the_plain_model(tmp_path, batch):
    plain, recomputed = tiny_model(), tiny_model()
    enable_recomputation(recomputed, "tiny")
    train(recomputed, batch)
    assert recomputes(recomputed) and not recomputes(plain)
    path = tmp_path / "model.keras"
    recomputed.save(path)
    loaded = keras.models.load_model(path)
    assert not recomputes(loaded)
    assert json.dumps(loaded.get_config()) == json.dumps(plain.get_config())
    images = batch[0]
    np.testing.assert_allclose(loaded(images, training=False),
                               recomputed(images, training=False), atol=1e-6)


def test_inference_calls_the_models_own_graph(batch):
    model = tiny_model()
    before = np.asarray(model(batch[0], training=False))
    staged = enable_recomputation(model, "tiny")
    np.testing.assert_allclose(model(batch[0], training=False), before, atol=0)
    np.testing.assert_allclose(staged(batch[0], training=False), before, atol=1e-5)


def test_a_model_without_the_backbones_stages_is_refused_in_one_line():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"recompute: .* has none of the resnet50 backbone"):
        StagedForward(model, "resnet50")


def test_the_option_is_recorded_and_an_older_config_without_it_loads(tmp_path):
    config = run_config_from_options(tmp_path, recompute=True)
    assert config.train.recompute
    saved = config.to_dict()
    del saved["train"]["recompute"]
    assert RunConfig.from_dict(saved).train.recompute is False


def test_the_recipe_enables_it_from_the_config(tmp_path):
    from pixelwise.data.sources import open_source
    from pixelwise.recipe import build_compiled_model

    data = tmp_path / "synth"
    generate_synthetic(data, num_images=4, size=TINY_SIZE, seed=5)
    model = dict(TINY_MODEL)
    config = RunConfig(data=DataConfig(source=str(data), input_size=TINY_SIZE),
                       model=ModelConfig(**model), train=TrainConfig(recompute=True))
    compiled = build_compiled_model(config, open_source(str(data)), steps_per_epoch=1)
    assert recomputes(compiled)
