"""The compiled model's training step is traced once: the optimizer's variables exist
before the first step, so Keras does not trace again after creating them."""

import numpy as np
import pytest

from conftest import TINY_BACKBONE_MODEL, TINY_SIZE
from pixelwise.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pixelwise.data.sources import open_source
from pixelwise.data.synthetic import generate_synthetic
from pixelwise.recipe import build_compiled_model


@pytest.mark.parametrize("mixed_precision", [None, "float16"])
def test_training_traces_its_step_once(tmp_path, mixed_precision):
    import keras

    data = tmp_path / "synth"
    generate_synthetic(data, num_images=4, size=TINY_SIZE, seed=5)
    config = RunConfig(data=DataConfig(source=str(data), input_size=TINY_SIZE),
                       model=ModelConfig(**TINY_BACKBONE_MODEL),
                       train=TrainConfig(mixed_precision=mixed_precision))
    policy = keras.config.dtype_policy()
    if mixed_precision == "float16":
        keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build_compiled_model(config, open_source(str(data)), steps_per_epoch=2)
    finally:
        keras.config.set_dtype_policy(policy)
    assert model.optimizer.built
    height = width = TINY_SIZE
    rng = np.random.default_rng(0)
    images = (rng.random((4, height, width, 3)) * 255).astype("float32")
    labels = rng.integers(0, 2, (4, height, width)).astype("int32")
    traces = []
    step = model.train_step  # runs in Python once per trace of the compiled step

    def counted_step(data):
        traces.append(1)
        return step(data)

    model.train_step = counted_step
    model.fit(images, labels, batch_size=2, epochs=2, verbose=0)
    assert len(traces) == 1
