"""A tiny named model for the zoo and transfer tests: the session's tiny trained run,
packaged as model ``tiny-synth`` in a folder of its own, and ``$PIXELWISE_MODELS`` set
to that folder while a test uses it."""

import pytest

from pixelwise.zoo import MODELS_PATH_VARIABLE, package_run

TINY_NAME = "tiny-synth"


@pytest.fixture(scope="session")
def tiny_zoo_dir(tmp_path_factory, tiny_trained_run):
    """A models folder holding ``tiny-synth`` (the tiny trained run's best model)."""
    _, run_dir, _ = tiny_trained_run
    models_dir = tmp_path_factory.mktemp("zoo")
    package_run(run_dir, models_dir, TINY_NAME, description="tiny test model",
                training={"data": "synthetic, 24 images", "recipe": "textbook",
                          "command": "pixelwise train ..."},
                scores={"split": "test", "mean_iou": 0.5, "pixel_accuracy": 0.8})
    return models_dir


@pytest.fixture
def tiny_zoo(tiny_zoo_dir, monkeypatch):
    """``tiny-synth`` registered through ``$PIXELWISE_MODELS``; its models folder."""
    monkeypatch.setenv(MODELS_PATH_VARIABLE, str(tiny_zoo_dir))
    return tiny_zoo_dir
