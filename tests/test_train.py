"""Training on a tiny synthetic set: the run folder, learning, refusals, and resume after a kill."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import TINY_BACKBONE_MODEL
from conftest import TINY_SIZE
from pixelwise.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pixelwise.data.synthetic import generate_synthetic
from pixelwise.evaluate import class_baseline, evaluate_run
from pixelwise.models import load_model
from pixelwise.runs import RunFolder, load_run
from pixelwise.train import (
    RunConflictError,
    build_optimizer,
    current_learning_rate,
    resume,
    train,
)

SIZE = TINY_SIZE
# conftest's tiny DeepLab with a wider ASPP at rates that reach across its 4x4 features, on
# the tiny backbone (pixelwise.models.tiny_backbone): what these tests train for is the run
# folder, resuming and global state, and MobileNetV2's hundreds of layers would cost most
# of each run in tracing.
TINY_MODEL = dict(TINY_BACKBONE_MODEL, aspp_filters=32, aspp_rates=(1, 2, 3))
# The tiny model that learns fastest from scratch: a U-Net's full-resolution decoder finds
# the shapes within a few dozen steps (a tiny DeepLab at stride 16 still predicts
# background everywhere after a hundred). On the tiny backbone it learns more in these 48
# steps than on MobileNetV2 x0.35 (test mean IoU 0.66 against 0.45), in under half the
# time; the bar, the majority baseline (0.13) + 0.15, is still out of reach after one
# epoch (0.22) or untrained (0.10).
LEARNER_MODEL = dict(TINY_BACKBONE_MODEL, name="unet", aspp_filters=None)


def tiny_config(source, model=TINY_MODEL, **train):
    settings = dict(epochs=2, batch_size=4, tensorboard=False, learning_rate=3e-3)
    settings.update(train)
    return RunConfig(data=DataConfig(source=str(source), input_size=SIZE, augment="none"),
                     model=ModelConfig(**model), train=TrainConfig(**settings))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synth"
    generate_synthetic(root, num_images=24, size=SIZE, seed=3)
    return root


def log_epochs(log_path):
    with open(log_path, newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


# ---- one brief run: learning and the run folder ----------------------------------------

@pytest.fixture(scope="module")
def learned_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("learn") / "synth"
    generate_synthetic(root, num_images=72, size=SIZE, seed=11)
    run_dir = tmp_path_factory.mktemp("runs") / "learn"
    config = tiny_config(root, LEARNER_MODEL, epochs=8, batch_size=8, learning_rate=3e-3)
    result = train(config, run_dir, progress=False, echo=lambda line: None)
    return config, run_dir, result


@pytest.mark.slow
def test_a_briefly_trained_model_beats_the_majority_baseline(learned_run):
    _, run_dir, result = learned_run
    assert result.stop_reason in ("completed", "early_stopping") and result.epochs_done >= 6
    evaluation = evaluate_run(run_dir, split="test", hardest=0, echo=lambda line: None,
                              progress=False)[0]
    test_miou = evaluation.scores["mean_iou"]
    baseline = class_baseline(evaluation.matrix)
    assert baseline["class"] == 0  # background is the majority class
    assert test_miou > baseline["mean_iou"] + 0.15, (test_miou, baseline)
    assert not evaluation.warnings


@pytest.mark.slow
def test_the_run_folder_holds_config_log_checkpoint_and_best_model(learned_run, tmp_path):
    config, run_dir, result = learned_run
    folder = RunFolder(run_dir)
    epochs = result.epochs_done
    assert (result.resumed_from, result.stop_reason) in ((0, "completed"), (0, "early_stopping"))
    assert RunConfig.load(folder.config_path) == config
    assert log_epochs(folder.log_path) == list(range(epochs))
    state = json.loads(folder.state_path.read_text())
    steps_per_epoch = 48 // 8
    assert state["epochs_done"] == epochs
    assert state["optimizer_iterations"] == epochs * steps_per_epoch
    assert sorted(p.name for p in folder.checkpoint_dir.iterdir()) == [  # and the one before
        f"epoch-{epochs - 1:04d}.keras", f"epoch-{epochs:04d}.keras", "state.json"]
    with open(folder.log_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    val_mious = [float(row["val_mean_iou"]) for row in rows]
    assert state["best_val_mean_iou"] == pytest.approx(max(val_mious))
    assert state["best_epoch"] == int(np.argmax(val_mious))
    for row in rows:  # the plateau callback may have divided it by 10
        assert any(np.isclose(float(row["learning_rate"]), rate) for rate in (3e-3, 3e-4, 3e-5))
    assert set(state["callbacks"]) == {"reduce_lr", "early_stopping"}
    model, spec, loaded_config = load_run(run_dir)
    assert loaded_config == config and spec.class_names[0] == "background"
    assert getattr(model, "optimizer", None) is None  # best.keras holds the network only
    momenta = {layer.momentum for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.9}
    # The same configuration again: nothing left to do, nothing rewritten.
    before = folder.state_path.stat().st_mtime_ns
    again = train(config, run_dir, progress=False, echo=lambda line: None)
    assert again.stop_reason == "already_complete" and again.epochs_done == epochs
    assert folder.state_path.stat().st_mtime_ns == before
    # Another configuration in the same folder is refused, naming what differs.
    other = config.with_changes(train={"learning_rate": 0.01})
    with pytest.raises(RunConflictError, match=r"train.learning_rate: 0.003 -> 0.01.*--resume"):
        train(other, run_dir, progress=False)
    # So is a folder that is not a run.
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunConflictError, match="not a pixelwise run"):
        train(config, tmp_path / "other", progress=False)


def test_paper_recipe_decays_the_learning_rate_polynomially(synthetic):
    config = tiny_config(synthetic, epochs=2, recipe="paper", learning_rate=0.01)
    optimizer = build_optimizer(config, steps_per_epoch=4)
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum == 0.9
    for step in (0, 4, 6, 8, 20):
        optimizer.iterations.assign(step)
        expected = 0.01 * (1 - min(step, 8) / 8) ** 0.9
        assert current_learning_rate(optimizer) == pytest.approx(expected, abs=1e-9)
    textbook = build_optimizer(tiny_config(synthetic), steps_per_epoch=4)
    assert isinstance(textbook, keras.optimizers.Adam)
    assert current_learning_rate(textbook) == pytest.approx(3e-3)


# ---- no global state left changed ----------------------------------------------------------

def global_draws() -> tuple[float, ...]:
    """The next number of each global random generator a run seeds."""
    return (random.random(), float(np.random.random()), float(keras.random.uniform(())),
            float(tf.random.uniform(())))


@pytest.mark.slow
def test_train_leaves_the_dtype_policy_and_the_random_state_as_it_found_them(synthetic,
                                                                             tmp_path):
    keras.utils.set_random_seed(1234)
    expected = global_draws()
    previous_policy = keras.config.dtype_policy()
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("mixed_bfloat16")  # the run trains in float32
    try:
        result = train(tiny_config(synthetic, epochs=1), tmp_path / "run", progress=False,
                       echo=lambda line: None)
        assert result.epochs_done == 1
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        assert global_draws() == expected
    finally:
        keras.config.set_dtype_policy(previous_policy)


# ---- bad input fails before training ----------------------------------------------------

def test_bad_data_stops_before_training_naming_the_file(synthetic, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(synthetic, broken)
    train_names = (broken / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    label_path = broken / "SegmentationClass" / f"{train_names[2]}.png"
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(label_path)  # RGB, not classes
    (broken / "JPEGImages" / f"{train_names[5]}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError) as raised:
        train(tiny_config(broken), tmp_path / "run", progress=False, echo=lambda line: None)
    message = str(raised.value)
    assert f"{train_names[2]}.png" in message and "mode RGB" in message
    assert f"{train_names[5]}.jpg" in message and "cannot decode" in message
    assert not (tmp_path / "run").exists()  # refused before the run folder was made
    with pytest.raises(FileNotFoundError, match="nowhere"):
        train(tiny_config(tmp_path / "nowhere"), tmp_path / "run", progress=False)


# ---- resume after a real kill ------------------------------------------------------------

def wait_for_epochs(state_path: Path, epochs: int, process: subprocess.Popen,
                    timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"training exited early: {process.stdout.read()}")
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):
            state = None  # not written yet (never torn: it is renamed into place)
        if state and state["epochs_done"] >= epochs:
            return state
        time.sleep(0.01)  # an epoch of the tiny model takes about 0.6 s: kill well within it
    raise AssertionError(f"no state for epoch {epochs} after {timeout} s")


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_saved_epoch(synthetic, tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "pixelwise", "train", "--data", str(synthetic),
               "--out", str(run_dir), "--backbone", "tiny", "--backbone-weights", "none",
               "--aspp-filters", "32", "--bn-momentum", "0.9",
               "--epochs", "3", "--batch-size", "4", "--input-size", str(SIZE),
               "--augment", "none", "--no-tensorboard", "--quiet"]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=environment)
    try:
        wait_for_epochs(run_dir / "checkpoints" / "state.json", 2, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    folder = RunFolder(run_dir)
    state = folder.read_state()
    saved_epochs = state["epochs_done"]
    assert saved_epochs == 2, "the kill came after the run had finished"
    saved = load_model(folder.checkpoint_dir / state["checkpoint"], compile=True)

    class StartingPoint(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = [variable.numpy().copy() for variable in self.model.weights]
            self.slots = [variable.numpy().copy() for variable in self.model.optimizer.variables]

    start = StartingPoint()
    result = resume(run_dir, progress=False, echo=lambda line: None, callbacks=[start])
    # The resumed run starts from the saved weights and optimizer state, exactly.
    assert len(start.weights) == len(saved.weights)
    for resumed, kept in zip(start.weights, saved.weights):
        assert np.array_equal(resumed, kept.numpy())
    assert len(start.slots) == len(saved.optimizer.variables)
    for resumed, kept in zip(start.slots, saved.optimizer.variables):
        assert np.array_equal(resumed, kept.numpy())
    assert int(saved.optimizer.iterations.numpy()) == saved_epochs * 4
    # It ends with the configured epoch count and one log row per epoch.
    assert (result.resumed_from, result.epochs_done) == (2, 3)
    assert log_epochs(folder.log_path) == [0, 1, 2]
    assert json.loads(folder.state_path.read_text())["optimizer_iterations"] == 3 * 4
    assert not list(run_dir.rglob(".tmp-*"))
