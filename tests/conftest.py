"""Shared fixtures: the real VOC samples, and the one tiny model (and run) tests train."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPOSITORY = Path(__file__).resolve().parents[1]
# The four real VOC 2012 pairs live outside the repository, in the project's shared folder:
# beside the checkout (REPOSITORY/../shared) or copied into it (REPOSITORY/shared).
VOC_SAMPLES_CANDIDATES = [
    Path(os.environ["PIXELWISE_VOC_SAMPLES"]) if os.environ.get("PIXELWISE_VOC_SAMPLES") else None,
    REPOSITORY / "shared" / "voc-samples" / "VOC2012",
    REPOSITORY.parent / "shared" / "voc-samples" / "VOC2012",
]

TINY_SIZE = 64
# The tiny model the training tests use: DeepLab v3 on MobileNetV2 x0.35 with a narrow
# ASPP, random init, batch-norm momentum for short runs. Trains in seconds on 2 cores.
TINY_MODEL = dict(name="deeplabv3", backbone="mobilenetv2", width_multiplier=0.35,
                  backbone_weights=None, aspp_filters=16, bn_momentum=0.9)
# The same DeepLab on the tiny backbone (pixelwise.models.tiny_backbone: five strided convs
# with the same taps and strides), for tests whose point is what happens to a run (resume,
# extend, damage, freezing, the tutorial's commands), not the network. Tracing a training
# step is most of a short run's time, and it grows with the layers: 176 layers and 173
# trainable variables on MobileNetV2 x0.35, 41 and 35 on the tiny backbone; the 2-epoch
# run below takes about 39 s on MobileNetV2 and 9 s on the tiny backbone (2 cores).
TINY_BACKBONE_MODEL = dict(TINY_MODEL, backbone="tiny", width_multiplier=1.0)


def train_flags(model: dict) -> list[str]:
    """`pixelwise train` flags for ``model`` (``TINY_MODEL``'s keys) at 64 px, batch 4,
    without progress bars."""
    return ["--model", model["name"], "--backbone", model["backbone"],
            "--width-multiplier", str(model["width_multiplier"]), "--backbone-weights", "none",
            "--aspp-filters", str(model["aspp_filters"]),
            "--bn-momentum", str(model["bn_momentum"]), "--batch-size", "4",
            "--input-size", str(TINY_SIZE), "--quiet"]


def train_tiny_run(base: Path, flags: list[str]):
    """The synthetic dataset (24 images, 64 px) in ``base/synth`` and a model trained on it
    for 2 epochs through `pixelwise train ... FLAGS` in ``base/run``: (data folder, run
    folder, the command's output)."""
    from click.testing import CliRunner

    from pixelwise.cli import cli
    from pixelwise.data.synthetic import generate_synthetic

    data = base / "synth"
    generate_synthetic(data, num_images=24, size=TINY_SIZE, seed=5)
    run_dir = base / "run"
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(run_dir),
                                      "--epochs", "2", *flags])
    assert result.exit_code == 0, result.output
    return data, run_dir, result.output


@pytest.fixture
def voc_samples() -> Path:
    """The four real VOC 2012 pairs and the official lists; skipped where absent."""
    for candidate in VOC_SAMPLES_CANDIDATES:
        if candidate is not None and candidate.is_dir():
            return candidate
    looked = ", ".join(str(path) for path in VOC_SAMPLES_CANDIDATES if path is not None)
    pytest.skip(f"the real VOC 2012 samples are not on this machine (looked in {looked}); "
                "set PIXELWISE_VOC_SAMPLES to their VOC2012 folder to run this test")


@pytest.fixture(scope="session")
def tiny_model() -> dict:
    """The tiny model's settings, as ``ModelConfig`` fields (a fresh copy)."""
    return dict(TINY_MODEL)


@pytest.fixture(scope="session")
def tiny_train_flags() -> list[str]:
    """`pixelwise train` flags for the tiny model at 64 px, batch 4, without progress bars."""
    return train_flags(TINY_MODEL)


@pytest.fixture(scope="session")
def tiny_backbone_train_flags() -> list[str]:
    """`pixelwise train` flags for the tiny model on the tiny backbone (64 px, batch 4)."""
    return train_flags(TINY_BACKBONE_MODEL)


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory, tiny_train_flags):
    """A synthetic dataset (24 images, 64 px) and the tiny model trained on it for 2 epochs
    through `pixelwise train`: (data folder, run folder, the command's output)."""
    return train_tiny_run(tmp_path_factory.mktemp("tiny_run"), tiny_train_flags)


@pytest.fixture(scope="session")
def tiny_backbone_run(tmp_path_factory, tiny_backbone_train_flags):
    """As ``tiny_trained_run`` (same data, 2 epochs), the model on the tiny backbone: for
    tests of what happens to a run, whichever network it holds. Trains in seconds."""
    return train_tiny_run(tmp_path_factory.mktemp("tiny_backbone_run"),
                          tiny_backbone_train_flags)
