"""The run configuration and the run folder's files: round trips, refusals, atomic writes."""

import json
import os

import keras
import numpy as np
import pytest

from pixelwise.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pixelwise.callbacks import ResumableEarlyStopping, ResumableReduceLROnPlateau
from pixelwise.global_state import dtype_policy
from pixelwise.recipe import build_network
from pixelwise.runs import RunFolder, load_run, trim_log, write_atomically, write_text_atomically


def make_config(**train):
    return RunConfig(data=DataConfig(source="/data/voc", input_size=(96, 128)),
                     model=ModelConfig(backbone="mobilenetv2", backbone_weights=None,
                                       aspp_rates=[2, 4, 6]),
                     train=TrainConfig(**train))


# ---- config.json ------------------------------------------------------------------------

def test_config_round_trips_through_json(tmp_path):
    config = make_config(epochs=3, mixed_precision="bfloat16", recipe="paper")
    path = tmp_path / "config.json"
    config.save(path)
    assert RunConfig.load(path) == config
    saved = json.loads(path.read_text())
    assert saved["data"]["input_size"] == [96, 128]
    assert saved["model"]["aspp_rates"] == [2, 4, 6]
    assert saved["train"]["recipe"] == "paper"


def test_recipes_fill_in_their_learning_rates_and_policies():
    assert make_config().train.initial_learning_rate == 1e-3
    assert make_config(recipe="paper").train.initial_learning_rate == 7e-3
    assert make_config(recipe="paper", learning_rate=0.01).train.initial_learning_rate == 0.01
    assert make_config().train.precision_policy == "float32"
    assert make_config(mixed_precision="float16").train.precision_policy == "mixed_float16"


def test_differences_name_each_changed_field():
    before, after = make_config(epochs=3), make_config(epochs=5, batch_size=2)
    assert before.differences(after) == ["train.epochs: 3 -> 5", "train.batch_size: 8 -> 2"]
    assert before.differences(make_config(epochs=3)) == []


def test_bad_settings_are_refused_with_the_field_named(tmp_path):
    with pytest.raises(ValueError, match="train.recipe"):
        TrainConfig(recipe="fast")
    with pytest.raises(ValueError, match="model.bn_momentum"):
        ModelConfig(bn_momentum=1.5)
    with pytest.raises(ValueError, match=r"input_size 100x100.*multiples of 16.*96x96"):
        RunConfig(data=DataConfig(source="x", input_size=100))
    with pytest.raises(ValueError, match="multiples of 32"):
        RunConfig(data=DataConfig(source="x", input_size=48), model=ModelConfig(name="unet"))
    path = tmp_path / "config.json"
    values = make_config().to_dict()
    values["train"]["epoch"] = 3
    path.write_text(json.dumps(values))
    with pytest.raises(ValueError, match=rf"{path}.*unknown field.*'train': epoch"):
        RunConfig.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=str(path)):
        RunConfig.load(path)


# ---- atomic writes ---------------------------------------------------------------------

def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    write_text_atomically(target, "old")

    def write_half_then_die(temporary):
        temporary.write_text("half of the n")
        raise KeyboardInterrupt  # as a kill would, mid-write

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, write_half_then_die)
    assert target.read_text() == "old"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["state.json"]
    write_text_atomically(target, "new")
    assert target.read_text() == "new"
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_stale_temporaries_are_removed_but_complete_files_kept(tmp_path):
    folder = RunFolder(tmp_path)
    folder.checkpoint_dir.mkdir()
    (folder.checkpoint_dir / ".tmp-epoch-0003-abc.keras").write_bytes(b"torn")
    (folder.checkpoint_dir / "epoch-0002.keras").write_bytes(b"whole")
    folder.remove_stale_temporaries()
    assert [path.name for path in folder.checkpoint_dir.iterdir()] == ["epoch-0002.keras"]


def test_state_naming_a_missing_checkpoint_is_an_error(tmp_path):
    folder = RunFolder(tmp_path)
    folder.checkpoint_dir.mkdir()
    folder.state_path.write_text(json.dumps({"epochs_done": 2, "checkpoint": "epoch-0002.keras"}))
    with pytest.raises(FileNotFoundError, match="epoch-0002.keras"):
        folder.read_state()


def test_load_run_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        load_run(tmp_path / "nothing")
    make_config().save(tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="pixelwise_dataset.json"):
        load_run(tmp_path)


# ---- the CSV log on resume -------------------------------------------------------------

def test_trim_log_keeps_the_saved_epochs_once(tmp_path):
    log = tmp_path / "train_log.csv"
    log.write_text("epoch,loss,val_mean_iou\n0,1.5,0.1\n1,1.2,0.2\n1,1.2,0.2\n2,1.0,0.3\n3,0.9,0.3\n4,0.")
    assert trim_log(log, 3) == 3
    assert log.read_text() == "epoch,loss,val_mean_iou\n0,1.5,0.1\n1,1.2,0.2\n2,1.0,0.3\n"
    assert trim_log(log, 0) == 0
    assert log.read_text() == "epoch,loss,val_mean_iou\n"
    assert trim_log(tmp_path / "absent.csv", 2) == 0


# ---- callback state ----------------------------------------------------------------------

def test_plateau_and_early_stopping_state_survive_on_train_begin():
    reduce_lr = ResumableReduceLROnPlateau(monitor="val_loss", patience=3, factor=0.1)
    early = ResumableEarlyStopping(monitor="val_loss", patience=6)
    reduce_lr.restore_state({"wait": 2, "best": 0.75, "cooldown_counter": 0})
    early.restore_state({"wait": 4, "best": 0.75, "best_epoch": 3, "stopped_epoch": 0})
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    for callback in (reduce_lr, early):
        callback.set_model(model)
        callback.on_train_begin()  # Keras resets its counters here; the mixin puts them back
    assert reduce_lr.state() == {"wait": 2, "best": 0.75, "cooldown_counter": 0}
    assert early.state() == {"wait": 4, "best": 0.75, "best_epoch": 3, "stopped_epoch": 0}
    # The restored wait of 2 plus one more epoch without improvement reaches patience 3
    # (a fresh callback would be at 1 and keep the learning rate).
    reduce_lr.on_epoch_end(7, {"val_loss": 0.8})
    assert np.isclose(float(model.optimizer.learning_rate), 1e-4)
    early.on_epoch_end(7, {"val_loss": 0.8})
    early.on_epoch_end(8, {"val_loss": 0.8})
    assert model.stop_training and early.state()["stopped_epoch"] == 8
    fresh = ResumableReduceLROnPlateau(monitor="val_loss", patience=3)
    fresh.set_model(model)
    fresh.on_train_begin()
    assert fresh.state() == {"wait": 0, "best": None, "cooldown_counter": 0}


# ---- precision and batch-norm momentum --------------------------------------------------

def test_mixed_precision_applies_inside_the_block_only():
    config = RunConfig(data=DataConfig(source="x", input_size=64),
                       model=ModelConfig(backbone="mobilenetv2", width_multiplier=0.35,
                                         backbone_weights=None, aspp_filters=8,
                                         bn_momentum=0.8))
    before = keras.mixed_precision.global_policy().name
    with dtype_policy("mixed_bfloat16"):
        model = build_network(config, num_classes=3)
    assert keras.mixed_precision.global_policy().name == before == "float32"
    logits = model(np.zeros((1, 64, 64, 3), np.float32))
    assert logits.dtype == "float32" and tuple(logits.shape) == (1, 64, 64, 3)
    assert {layer.compute_dtype for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D) and layer.name != "classifier"} == {"bfloat16"}
    batch_norms = [layer for layer in model.layers
                   if isinstance(layer, keras.layers.BatchNormalization)]
    assert batch_norms and {layer.momentum for layer in batch_norms} == {0.8}
