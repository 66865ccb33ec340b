"""Extending a finished run, a wall-clock budget over all parts of a run, and the
AdamW + cosine recipe (issue 17: long from-scratch schedules on a CPU)."""

import csv
import json
import math
import shutil

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_BACKBONE_MODEL, TINY_SIZE
from pixelwise.cli import cli
from pixelwise.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pixelwise.data.synthetic import generate_synthetic
from pixelwise.io import parse_duration
from pixelwise.recipe import build_optimizer, learning_rate_schedule
from pixelwise.train import resume, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("extend") / "synth"
    generate_synthetic(root, num_images=16, size=TINY_SIZE, seed=3)
    return root


def tiny_config(data, **train) -> RunConfig:
    """The tiny DeepLab on the tiny backbone: these runs are about epochs and budgets."""
    return RunConfig(data=DataConfig(source=str(data), input_size=(TINY_SIZE, TINY_SIZE)),
                     model=ModelConfig(**TINY_BACKBONE_MODEL),
                     train=TrainConfig(batch_size=4, tensorboard=False, **train))


def log_epochs(run_dir) -> list[int]:
    with open(run_dir / "train_log.csv") as log:
        return [int(row["epoch"]) for row in csv.DictReader(log)]


@pytest.mark.slow
def test_a_finished_run_is_extended_by_more_epochs(tiny_backbone_run, tmp_path):
    _, trained, _ = tiny_backbone_run  # 2 epochs, completed
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    first_seconds = json.loads((run_dir / "checkpoints" / "state.json").read_text())[
        "train_seconds"]
    lines = []
    extended = resume(run_dir, epochs=3, progress=False, echo=lines.append)
    assert (extended.epochs_done, extended.resumed_from, extended.stop_reason) == (3, 2, "completed")
    assert any("extended to 3 epochs (was completed after epoch 2)" in line for line in lines)
    assert log_epochs(run_dir) == [0, 1, 2]
    assert RunConfig.load(run_dir / "config.json").train.epochs == 3
    assert extended.train_seconds > first_seconds > 0
    # A second call with the same number has nothing left to do.
    assert resume(run_dir, epochs=3, progress=False, echo=lambda line: None).stop_reason == \
        "already_complete"
    with pytest.raises(ValueError, match="3 epoch\\(s\\) are done already; --epochs must be at "
                                         "least 3"):
        resume(run_dir, epochs=2, progress=False, echo=lambda line: None)


@pytest.mark.slow
def test_the_time_budget_stops_a_run_and_counts_every_part(data, tmp_path):
    run_dir = tmp_path / "run"
    # A budget shorter than one epoch: the run stops after its first epoch.
    stopped = train(tiny_config(data, epochs=3, time_budget=0.01), run_dir, progress=False,
                    echo=lambda line: None)
    assert (stopped.epochs_done, stopped.stop_reason) == (1, "time_budget")
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert state["stop_reason"] == "time_budget" and state["train_seconds"] > 0.01
    # The same command again: the budget is spent, nothing to do.
    again = train(tiny_config(data, epochs=3, time_budget=0.01), run_dir, progress=False,
                  echo=lambda line: None)
    assert again.stop_reason == "already_complete"
    # A larger budget extends it to the end; the seconds of both parts add up.
    finished = resume(run_dir, time_budget=3600, progress=False, echo=lambda line: None)
    assert (finished.epochs_done, finished.stop_reason) == (3, "completed")
    assert finished.train_seconds > state["train_seconds"]
    assert log_epochs(run_dir) == [0, 1, 2]


@pytest.mark.slow
def test_cli_extends_with_epochs_and_budget_only(tiny_backbone_run, tmp_path):
    _, trained, _ = tiny_backbone_run  # 2 epochs, completed
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--resume", str(run_dir), "--epochs", "3",
                                 "--time-budget", "1h", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "3 epoch(s) done (completed)" in result.output and "min of training" in result.output
    assert RunConfig.load(run_dir / "config.json").train.time_budget == 3600
    result = runner.invoke(cli, ["train", "--resume", str(run_dir), "--batch-size", "2"])
    assert result.exit_code == 2 and "leave out --batch-size" in result.output
    result = runner.invoke(cli, ["train", "--resume", str(run_dir), "--time-budget", "soon"])
    assert result.exit_code == 2 and "expected e.g. 3h, 2h30m, 90m or seconds" in result.output


def test_adamw_cosine_warms_up_for_an_epoch_then_decays_to_zero():
    config = tiny_config("unused", recipe="adamw_cosine", epochs=10, learning_rate=2e-3,
                         weight_decay=1e-4)
    optimizer = build_optimizer(config, steps_per_epoch=5)
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.weight_decay == pytest.approx(1e-4)
    schedule = learning_rate_schedule(config, steps_per_epoch=5)
    rates = {step: float(schedule(step)) for step in (0, 5, 27, 50)}
    assert rates[0] == 0.0 and rates[5] == pytest.approx(2e-3)  # one epoch of warm-up
    # Then a cosine over the remaining 45 steps, down to 0 at the end of the run.
    assert rates[27] == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi * 22 / 45)), rel=1e-4)
    assert rates[50] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("text, seconds", [("3h", 10800), ("2h30m", 9000), ("90m", 5400),
                                           ("45s", 45), ("5400", 5400), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "3x", "0", "-1", "3h5", "soon"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_a_budget_must_be_positive():
    with pytest.raises(ValueError, match="train.time_budget must be a positive number"):
        TrainConfig(time_budget=0)
    assert np.isfinite(TrainConfig(time_budget=60).time_budget)


def tiny_network(aspp_filters: int = TINY_BACKBONE_MODEL["aspp_filters"]) -> keras.Model:
    from pixelwise.models import build_model

    options = {key: value for key, value in TINY_BACKBONE_MODEL.items()
               if key not in ("name", "bn_momentum")}
    options["aspp_filters"] = aspp_filters
    return build_model(TINY_BACKBONE_MODEL["name"], num_classes=21, input_shape=(None, None, 3),
                       **options)


def test_init_weights_copy_a_trained_model_into_a_fresh_one(tmp_path):
    from pixelwise.recipe import load_initial_weights

    trained = tiny_network()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    trained.save(run_dir / "best.keras")
    fresh = tiny_network()
    assert not all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(),
                                                        trained.get_weights()))
    # A run folder stands for its best.keras.
    assert load_initial_weights(fresh, run_dir) == run_dir / "best.keras"
    assert all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), trained.get_weights()))

    with pytest.raises(ValueError, match=r"best\.keras: its weights do not fit this"):
        load_initial_weights(tiny_network(aspp_filters=8), run_dir)
    with pytest.raises(FileNotFoundError, match=r"empty[/\\]best\.keras: not found"):
        (tmp_path / "empty").mkdir()
        load_initial_weights(fresh, tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match=r"notes\.txt: not a \.keras or \.weights\.h5 file"):
        load_initial_weights(fresh, tmp_path / "notes.txt")


@pytest.mark.slow
def test_cli_fine_tunes_a_trained_run_at_another_size(tiny_backbone_run,
                                                      tiny_backbone_train_flags,
                                                      tiny_train_flags, tmp_path):
    data, first_run, _ = tiny_backbone_run
    flags = [flag if flag != str(TINY_SIZE) else "96" for flag in tiny_backbone_train_flags]
    second_run = tmp_path / "second"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--data", str(data), "--out", str(second_run),
                                 "--init-from", str(first_run), "--epochs", "1",
                                 "--no-tensorboard", *flags])
    assert result.exit_code == 0, result.output
    assert f"starting from the weights of {first_run / 'best.keras'}" in result.output
    config = RunConfig.load(second_run / "config.json")
    assert config.model.init_weights == str(first_run.resolve())
    assert config.data.input_size == (96, 96)
    # Another backbone cannot start from it: one line naming the file, no traceback. (Another
    # head can: its layers start anew, see test_transfer.py.) Here the same DeepLab on
    # MobileNetV2 x0.35 (conftest's tiny_train_flags).
    result = runner.invoke(cli, ["train", "--data", str(data), "--out", str(tmp_path / "third"),
                                 "--init-from", str(first_run), "--epochs", "1",
                                 "--no-tensorboard", *tiny_train_flags])
    assert result.exit_code == 1, result.output
    assert "best.keras: its backbone does not fit this" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "third").exists()  # the corrected command can use that folder
