"""Issue 16: the ways a run lost work or lied, and the rough errors, each reproduced.

One writer per run folder; no non-finite model saved; a one-class training split refused;
damaged checkpoints and models named (and a damaged checkpoint skipped); the CLI ends bad
input with one line, never a traceback (``--debug`` shows it).
"""

import json
import math
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pixelwise.callbacks import DivergenceWarning, RunCheckpoint, build_run_callbacks
from pixelwise.cli import cli
from pixelwise.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pixelwise.data.check import ClassCoverageError
from pixelwise.data.synthetic import generate_synthetic
from pixelwise.runs import RunConflictError, RunFolder
from pixelwise.train import train
from test_run_lock import hold_in_subprocess

SIZE = 64


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synth"
    generate_synthetic(root, num_images=24, size=SIZE, seed=3)
    return root


def tiny_config(source, tiny_model, **train_settings) -> RunConfig:
    settings = dict(epochs=2, batch_size=4, tensorboard=False, learning_rate=3e-3)
    settings.update(train_settings)
    return RunConfig(data=DataConfig(source=str(source), input_size=SIZE, augment="none"),
                     model=ModelConfig(**tiny_model), train=TrainConfig(**settings))


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def assert_one_line_error(result, *expected: str, exit_codes=(1,)) -> None:
    """Exit status in ``exit_codes``, no exception escaped (CliRunner keeps it instead of
    printing a traceback), and ``expected`` in the output."""
    assert result.exit_code in exit_codes, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output
    for text in expected:
        assert text in result.output, result.output


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


# ---- case 1: one writer per run folder -------------------------------------------------

def test_a_second_training_of_a_busy_run_folder_is_refused_naming_the_holder(
        synthetic, tmp_path, tiny_train_flags):
    run_dir = tmp_path / "run"
    holder = hold_in_subprocess(run_dir)
    try:
        result = invoke("train", "--data", synthetic, "--out", run_dir, "--epochs", "1",
                        *tiny_train_flags)
    finally:
        holder.kill()
        holder.wait()
    assert_one_line_error(result, f"in use by pixelwise train (process {holder.pid}",
                          str(run_dir))
    assert sorted(path.name for path in run_dir.iterdir()) == [".lock"]  # nothing written


def test_the_lock_leaves_no_file_in_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunConflictError, match="not a pixelwise run"):
        RunFolder(tmp_path).lock()
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]


# ---- case 2: nothing non-finite is saved -----------------------------------------------

def small_model() -> keras.Model:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def checkpoint_callback(tmp_path, model) -> RunCheckpoint:
    folder = RunFolder(tmp_path)
    folder.checkpoint_dir.mkdir(parents=True)
    callback = RunCheckpoint(folder, total_epochs=3, resumable={})
    callback.set_model(model)
    return callback


@pytest.mark.parametrize("logs, what", [
    ({"loss": 0.5, "val_loss": math.nan, "val_mean_iou": 0.9}, "val_loss is nan"),
    ({"loss": math.inf, "val_loss": 0.5, "val_mean_iou": 0.9}, "loss is inf"),
])
def test_an_epoch_with_a_non_finite_loss_is_not_saved(tmp_path, logs, what):
    model = small_model()
    callback = checkpoint_callback(tmp_path, model)
    callback.on_epoch_end(0, logs)
    assert callback.bad_epoch == f"epoch 1: {what}" and model.stop_training
    assert not (tmp_path / "best.keras").exists()
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_an_epoch_leaving_non_finite_weights_is_not_saved(tmp_path):
    model = small_model()
    kernel = model.layers[-1].kernel
    kernel.assign(np.full(kernel.shape, np.nan, dtype="float32"))
    callback = checkpoint_callback(tmp_path, model)
    callback.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.5, "val_mean_iou": 0.9})
    assert "holds NaN or infinite values" in callback.bad_epoch
    assert not (tmp_path / "best.keras").exists()


def test_a_training_whose_loss_becomes_nan_stops_and_saves_nothing_non_finite(
        synthetic, tmp_path, tiny_backbone_train_flags):
    run_dir = tmp_path / "run"
    result = invoke("train", "--data", synthetic, "--out", run_dir, "--epochs", "3",
                    "--learning-rate", "1e17", *tiny_backbone_train_flags)
    assert_one_line_error(result, "training stopped", "Lower --learning-rate")
    assert "(completed)" not in result.output
    print(result.output)
    saved = [run_dir / "best.keras", *(run_dir / "checkpoints").glob("*.keras")]
    for path in [path for path in saved if path.exists()]:
        model = keras.saving.load_model(path, compile=False)
        assert all(np.isfinite(weight.numpy()).all() for weight in model.weights), path
    state = RunFolder(run_dir).read_state() or {"epochs_done": 0}
    rows = (run_dir / "train_log.csv").read_text().splitlines()[1:]
    assert len(rows) == state["epochs_done"]  # the log holds the saved epochs only
    assert not any("nan" in row for row in rows)


def test_a_growing_training_loss_is_reported_as_divergence():
    lines = []
    callback = DivergenceWarning(lines.append)
    callback.set_model(small_model())
    callback.on_train_batch_end(0, {"loss": 2.0})
    callback.on_epoch_end(0, {"loss": 30.0})
    assert lines == []
    callback.on_epoch_end(1, {"loss": 9e11})
    callback.on_epoch_end(2, {"loss": 9e12})
    assert len(lines) == 1 and "diverges" in lines[0] and "--learning-rate" in lines[0]


def test_every_run_watches_for_divergence(tmp_path, synthetic, tiny_model):
    run = build_run_callbacks(tiny_config(synthetic, tiny_model), RunFolder(tmp_path), None)
    assert any(isinstance(callback, DivergenceWarning) for callback in run.callbacks)


@pytest.mark.parametrize("settings", [
    dict(learning_rate=math.inf), dict(learning_rate=math.nan), dict(learning_rate=0.0),
    dict(learning_rate=-1e-3), dict(weight_decay=-1.0), dict(weight_decay=math.inf),
    dict(momentum=1.5),
])
def test_impossible_optimizer_settings_are_refused(settings):
    with pytest.raises(ValueError, match=f"train.{next(iter(settings))}"):
        TrainConfig(**settings)


# ---- case 3: a training split with one class -------------------------------------------

@pytest.fixture(scope="module")
def binary_masks(synthetic, tmp_path_factory) -> Path:
    """The synthetic set with every object labelled 255: the 0/255 binary-mask trap."""
    root = tmp_path_factory.mktemp("binary") / "synth"
    shutil.copytree(synthetic, root)
    for path in (root / "SegmentationClass").glob("*.png"):
        label = Image.open(path)
        values = np.array(label)
        values[values != 0] = 255
        binary = Image.fromarray(values.astype(np.uint8), mode="P")
        binary.putpalette(label.getpalette())
        binary.save(path)
    return root


@pytest.mark.parametrize("check", [True, False])
def test_binary_masks_are_refused_before_training(binary_masks, tmp_path, tiny_model, check):
    config = tiny_config(binary_masks, tiny_model)
    config = config.with_changes(data={"check": check})
    with pytest.raises(ClassCoverageError, match="0/255"):
        train(config, tmp_path / "run", progress=False, echo=lambda line: None)
    assert not (tmp_path / "run").exists()


# ---- rough errors ------------------------------------------------------------------------

def test_a_truncated_jpeg_without_the_check_is_named(synthetic, tmp_path,
                                                    tiny_backbone_train_flags):
    data = tmp_path / "synth"
    shutil.copytree(synthetic, data)
    name = (data / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]
    image = data / "JPEGImages" / f"{name}.jpg"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 3])
    result = invoke("train", "--data", data, "--out", tmp_path / "run", "--epochs", "1",
                    "--no-check", *tiny_backbone_train_flags)
    assert_one_line_error(result, f"{name}.jpg")


def test_a_damaged_last_checkpoint_is_skipped_for_the_one_before(tiny_backbone_run, tmp_path):
    _, trained, _ = tiny_backbone_run
    run_dir = copy_run(trained, tmp_path)
    folder = RunFolder(run_dir)
    state = folder.read_state()
    assert state["previous"]["epochs_done"] == 1  # the epoch before is kept
    last = folder.checkpoint_dir / state["checkpoint"]
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    lines = []
    result = train(RunConfig.load(folder.config_path), run_dir, progress=False,
                   echo=lines.append)
    assert any("damaged" in line and "epoch 1" in line for line in lines), lines
    assert result.resumed_from == 1 and result.epochs_done == 2


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_a_damaged_best_model_is_named_with_the_way_back(tiny_backbone_run, tmp_path, damage):
    _, trained, _ = tiny_backbone_run
    run_dir = copy_run(trained, tmp_path)
    best = run_dir / "best.keras"
    best.write_bytes(best.read_bytes()[:1000] if damage == "truncated"
                     else np.random.default_rng(0).bytes(5000))
    result = invoke("evaluate", run_dir, "--hardest", "0")
    assert_one_line_error(result, f"{best}: damaged", "checkpoints")


def test_a_model_naming_unsafe_classes_is_refused_in_one_line(tiny_backbone_run, tmp_path):
    _, trained, _ = tiny_backbone_run
    run_dir = copy_run(trained, tmp_path)
    best = run_dir / "best.keras"
    with zipfile.ZipFile(best) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][1].update(module="os", class_name="system",
                                          registered_name="os>system")
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(best, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    result = invoke("evaluate", run_dir, "--hardest", "0")
    assert_one_line_error(result, f"{best}: cannot be loaded")


def test_visualize_refuses_data_with_other_classes_as_evaluate_does(tiny_backbone_run, tmp_path):
    data, run_dir, _ = tiny_backbone_run
    other = tmp_path / "other"
    shutil.copytree(data, other)
    spec_path = other / "pixelwise_dataset.json"
    spec = json.loads(spec_path.read_text())
    spec["class_names"][1] = "football"
    spec_path.write_text(json.dumps(spec))
    for command in (["evaluate", run_dir, "--hardest", "0"], ["visualize", run_dir]):
        result = invoke(*command, "--data", other, "--out", tmp_path / "out")
        assert_one_line_error(result, "are not the run's")


def test_records_state_their_number_of_batches(synthetic, tmp_path, tiny_model):
    """Else Keras warns "Your input ran out of data" at the end of the first epoch."""
    import tensorflow as tf

    from pixelwise.data.pipeline import open_source
    from pixelwise.data.records_writer import prepare_records
    from pixelwise.training_inputs import training_inputs

    prepare_records(synthetic, tmp_path / "records")
    config = tiny_config(tmp_path / "records", tiny_model)
    source = open_source(config.data.source)
    inputs = training_inputs(config, source, tf.distribute.get_strategy(), epochs_done=0)
    assert int(inputs.train.cardinality()) == source.num_examples("train") // 4
    assert int(inputs.val.cardinality()) == -(-source.num_examples("val") // 4)


@pytest.mark.parametrize("args, expected", [
    (["--input-size", "64x"], "--input-size"),
    (["--learning-rate", "inf"], "learning_rate"),
    (["--learning-rate", "0"], "learning_rate"),
    (["--weight-decay", "-1"], "weight_decay"),
])
def test_bad_training_flags_end_in_one_line(synthetic, tmp_path, args, expected):
    result = invoke("train", "--data", synthetic, "--out", tmp_path / "run", *args)
    assert_one_line_error(result, expected, exit_codes=(1, 2))
    assert not (tmp_path / "run").exists()


# ---- the CLI never shows a traceback for bad input -------------------------------------

def test_bad_input_ends_in_one_line_and_debug_shows_the_error(tmp_path, synthetic):
    empty = tmp_path / "empty"
    empty.mkdir()
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a JPEG")
    commands = [
        ["evaluate", empty],
        ["visualize", empty],
        ["train", "--resume", empty],
        ["data", "check", empty],
        ["train", "--data", synthetic, "--out", tmp_path / "run", "--train-split", "nope"],
    ]
    for command in commands:
        assert_one_line_error(invoke(*command), exit_codes=(1, 2))
    debug = invoke("--debug", "evaluate", empty)
    assert debug.exit_code == 1 and isinstance(debug.exception, OSError)
