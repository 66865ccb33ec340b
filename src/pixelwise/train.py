"""Training: Keras ``fit`` with the run folder's callbacks, resumable after any interruption.

    config = RunConfig(data=DataConfig(source="data/VOCdevkit/VOC2012"), ...)
    result = train(config, "runs/voc")        # a second call with the same config resumes
    result = resume("runs/voc")               # the same, with the config read from the run

What one epoch leaves in the run folder (see ``pixelwise.runs``): a row in train_log.csv,
best.keras when the validation mean IoU improved, a checkpoint with the optimizer state,
and checkpoints/state.json naming that checkpoint, written in this order and each
atomically. State.json is the commit point: a run resumes from the epoch it records,
with the weights, the optimizer's moments and step counter (so the learning-rate schedule
too), the learning rate, the state of ReduceLROnPlateau and EarlyStopping, and the best
score so far; log rows of later epochs (written before a kill hit) are dropped first.
A resumed run draws its shuffle order and augmentations from ``seed + epochs done``, so
it is reproducible for a given interruption point but does not replay the exact batches
an uninterrupted run would have seen.

Before anything is built, the train and val splits of a dataset folder go through
``pixelwise.data.check.check_dataset``, so missing or corrupt files and annotations that
are not class maps stop the run with the files named (records were checked when prepared).

Under a ``tf.distribute`` strategy (``strategy=``, see ``pixelwise.distribute``) the model,
optimizer, loss and metrics are created in its scope, each step takes ``batch_size x
replicas`` images, the learning rate is scaled by ``train.lr_scaling``, and on the
non-chief workers of a multi-worker cluster everything the run folder would get goes to
the worker's own backup folder instead.
"""

from __future__ import annotations

import contextlib
import csv
import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pixelwise import distribute
from pixelwise.config import RunConfig
from pixelwise.data.check import check_dataset
from pixelwise.data.pipeline import DataSource, FolderSource, make_dataset, open_source
from pixelwise.data.spec import DatasetSpec
from pixelwise.losses import build_loss, median_frequency_weights
from pixelwise.metrics import MeanAccuracy, MeanIoU, PixelAccuracy
from pixelwise.models import build_model
from pixelwise.models.layers import all_layers
from pixelwise.runs import (
    RunFolder,
    save_model_atomically,
    write_json_atomically,
    write_text_atomically,
)

BEST_MONITOR = "val_mean_iou"
PLATEAU_MONITOR = "val_loss"
STOP_COMPLETED = "completed"
STOP_EARLY = "early_stopping"
STOP_NAN = "nan_loss"
STOP_ALREADY_DONE = "already_complete"


class RunConflictError(ValueError):
    """The run folder holds a run with another configuration (or is not a run folder)."""


@dataclass
class TrainResult:
    """How a ``train`` call ended.

    ``epochs_done``: epochs saved in the run (all calls together); ``resumed_from``: epochs
    already done when this call started; ``stop_reason``: "completed", "early_stopping",
    "nan_loss" (the loss became NaN or infinite: the last good epoch stays saved) or
    "already_complete" (nothing left to do).
    """

    run_dir: Path
    epochs_done: int
    resumed_from: int
    stop_reason: str
    best_val_mean_iou: float | None
    best_epoch: int | None


# --------------------------------------------------------------------------- callbacks


class ResumableState:
    """Mixin for a Keras callback whose counters survive a resume.

    ``state_fields`` are copied into state.json at every epoch and written back after the
    callback's own ``on_train_begin`` (which resets them) when the run resumes.
    """

    state_fields: tuple[str, ...] = ()

    def restore_state(self, state: dict | None) -> None:
        self._restored_state = dict(state or {})

    def on_train_begin(self, logs=None) -> None:
        super().on_train_begin(logs)
        for name, value in getattr(self, "_restored_state", {}).items():
            if name in self.state_fields:
                setattr(self, name, value)

    def state(self) -> dict:
        return {name: _plain(getattr(self, name)) for name in self.state_fields}


class ResumableReduceLROnPlateau(ResumableState, keras.callbacks.ReduceLROnPlateau):
    state_fields = ("wait", "best", "cooldown_counter")


class ResumableEarlyStopping(ResumableState, keras.callbacks.EarlyStopping):
    state_fields = ("wait", "best", "best_epoch", "stopped_epoch")


class LearningRateLogger(keras.callbacks.Callback):
    """Puts the learning rate of the epoch (a schedule's value at its last step) into the
    logs as ``learning_rate``, for the CSV log and TensorBoard."""

    def on_epoch_end(self, epoch, logs=None) -> None:
        if logs is not None:
            logs["learning_rate"] = current_learning_rate(self.model.optimizer)


class RunCheckpoint(keras.callbacks.Callback):
    """Saves the run's state at the end of every epoch, each file atomically:

    1. best.keras (network only) when ``val_mean_iou`` beats the best so far;
    2. checkpoints/epoch-NNNN.keras, the model with its optimizer state;
    3. checkpoints/state.json naming it, with the epoch count, the best score, the learning
       rate and the ``resumable`` callbacks' state (the commit point);
    4. older epoch checkpoints are then deleted.

    With ``keep_previous`` (multi-worker runs) state.json also holds, under ``"previous"``,
    the state saved before it (None before the first epoch; ``previous_state`` is the one
    the run resumed from), and that state's checkpoint is kept, so a worker can go back
    one epoch to the other workers' (see ``pixelwise.distribute``).

    An epoch whose loss is NaN or infinite is not saved (TerminateOnNaN stops the run).
    """

    def __init__(self, folder: RunFolder, *, total_epochs: int,
                 resumable: dict[str, ResumableState], best_value: float | None = None,
                 best_epoch: int | None = None, monitor: str = BEST_MONITOR,
                 keep_previous: bool = False, previous_state: dict | None = None) -> None:
        super().__init__()
        self.folder = folder
        self.total_epochs = total_epochs
        self.resumable = resumable
        self.best_value = best_value
        self.best_epoch = best_epoch
        self.monitor = monitor
        self.keep_previous = keep_previous
        self.last_state = _without_previous(previous_state)
        self.saw_bad_loss = False

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = logs or {}
        loss = logs.get("loss")
        if loss is None or not math.isfinite(float(loss)):
            self.saw_bad_loss = True
            return
        epochs_done = epoch + 1
        current = logs.get(self.monitor)
        if current is not None and math.isfinite(float(current)) and (
                self.best_value is None or float(current) > self.best_value):
            save_model_atomically(self.model, self.folder.best_model_path, include_optimizer=False)
            self.best_value, self.best_epoch = float(current), epoch
        checkpoint = self.folder.checkpoint_path(epochs_done)
        save_model_atomically(self.model, checkpoint, include_optimizer=True)
        if self.model.stop_training:
            stop_reason = STOP_EARLY
        elif epochs_done >= self.total_epochs:
            stop_reason = STOP_COMPLETED
        else:
            stop_reason = None
        state = {
            "epochs_done": epochs_done,
            "checkpoint": checkpoint.name,
            "optimizer_iterations": int(self.model.optimizer.iterations.numpy()),
            "learning_rate": current_learning_rate(self.model.optimizer),
            "best_val_mean_iou": self.best_value,
            "best_epoch": self.best_epoch,
            "stop_reason": stop_reason,
            "callbacks": {name: callback.state() for name, callback in self.resumable.items()},
        }
        kept = {checkpoint.name}
        if self.keep_previous:
            state["previous"] = self.last_state
            if self.last_state:
                kept.add(self.last_state["checkpoint"])
        write_json_atomically(self.folder.state_path, state)
        self.last_state = _without_previous(state)
        for old in self.folder.checkpoint_dir.glob("epoch-*.keras"):
            if old.name not in kept:
                old.unlink(missing_ok=True)


# --------------------------------------------------------------------------- building blocks


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The optimizer's learning rate now (a schedule evaluated at the current step)."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def set_batch_norm_momentum(model: keras.Model, momentum: float) -> int:
    """Set ``momentum`` on every BatchNormalization layer (nested models too); the count."""
    changed = 0
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            changed += 1
    return changed


@contextlib.contextmanager
def precision_policy(policy: str) -> Iterator[None]:
    """Set Keras's global dtype policy for the block, and put the previous one back."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_network(config: RunConfig, num_classes: int) -> keras.Model:
    """The model of ``config`` (under the current dtype policy) with its BN momentum set."""
    model = build_model(config.model.name, num_classes=num_classes, input_shape=(None, None, 3),
                        **config.model.builder_options())
    set_batch_norm_momentum(model, config.model.bn_momentum)
    return model


def build_optimizer(config: RunConfig, steps_per_epoch: int,
                    replicas: int = 1) -> keras.optimizers.Optimizer:
    """Adam (textbook) or SGD with momentum and poly decay over the run (paper); the
    learning rate scaled for ``replicas`` replicas by ``train.lr_scaling``."""
    train_config = config.train
    weight_decay = train_config.weight_decay or None
    learning_rate = distribute.scaled_learning_rate(train_config.initial_learning_rate,
                                                    replicas, train_config.lr_scaling)
    if train_config.recipe == "paper":
        schedule = keras.optimizers.schedules.PolynomialDecay(
            initial_learning_rate=learning_rate,
            decay_steps=max(1, train_config.epochs * steps_per_epoch),
            end_learning_rate=0.0, power=train_config.poly_power)
        return keras.optimizers.SGD(learning_rate=schedule, momentum=train_config.momentum,
                                    weight_decay=weight_decay)
    return keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=weight_decay)


def build_training_loss(config: RunConfig, source: DataSource, spec: DatasetSpec):
    """The configured loss, with median-frequency class weights from the training split
    when asked for."""
    class_weights = None
    if config.train.class_weighting == "median_frequency":
        counts = source.class_pixel_counts(config.data.train_split, config.data.split_seed)
        class_weights = median_frequency_weights(counts).tolist()
    elif config.train.class_weighting == "none":
        class_weights = [1.0] * spec.num_classes
    return build_loss(config.train.loss, num_classes=spec.num_classes,
                      ignore_label=spec.ignore_label, class_weights=class_weights)


def segmentation_metrics(spec: DatasetSpec) -> list[keras.metrics.Metric]:
    """Pixel accuracy, mean accuracy and mean IoU (logged as ``mean_iou`` / ``val_mean_iou``)."""
    return [PixelAccuracy(spec.num_classes, spec.ignore_label),
            MeanAccuracy(spec.num_classes, spec.ignore_label),
            MeanIoU(spec.num_classes, spec.ignore_label)]


def check_training_data(config: RunConfig, source: DataSource,
                        echo: Callable[[str], None] = print) -> None:
    """Check the train and val splits of a dataset folder; raise with the report on problems.

    Records folders were validated pair by pair when prepared, and ``data.check=False``
    skips the check: then the splits are only looked up (a missing split raises).
    """
    splits = (config.data.train_split, config.data.val_split)
    if not config.data.check or not isinstance(source, FolderSource):
        for split in splits:
            source.num_examples(split, config.data.split_seed)
        return
    for split in splits:
        report = check_dataset(source.layout.root, split, config.data.split_seed)
        if not report.ok:
            raise ValueError(f"the data check found problems; fix them before training:\n"
                             f"{report.format(max_problems=20)}")
        echo(f"data check: {split}: {report.num_pairs} pairs OK")


def trim_log(log_path: Path, epochs_done: int) -> int:
    """Keep the header and the rows of epochs ``0 .. epochs_done - 1`` of a CSV log
    (rows of later epochs, a torn last line, duplicates); return the rows kept."""
    if not log_path.is_file():
        return 0
    lines = log_path.read_text().splitlines()
    if not lines:
        return 0
    header, kept, seen = lines[0], [], set()
    width = len(next(csv.reader([header])))
    for line in lines[1:]:
        fields = next(csv.reader([line]), [])
        try:
            epoch = int(fields[0])
        except (IndexError, ValueError):
            continue
        if len(fields) == width and 0 <= epoch < epochs_done and epoch not in seen:
            kept.append(line)
            seen.add(epoch)
    write_text_atomically(log_path, "\n".join([header, *kept]) + "\n")
    return len(kept)


# --------------------------------------------------------------------------- the run


def _prepare_folder(config: RunConfig, folder: RunFolder, spec: DatasetSpec) -> dict | None:
    """Check the folder is this run's (or new), write config and spec; the saved state."""
    if folder.exists():
        saved = RunConfig.load(folder.config_path)
        changes = saved.differences(config)
        if changes:
            raise RunConflictError(
                f"{folder.root} holds a run with another configuration ("
                + "; ".join(changes) + f"). To continue that run use `pixelwise train --resume "
                f"{folder.root}`; to start a new one choose another --out folder")
        if folder.spec_path.is_file():
            saved_spec = DatasetSpec.load(folder.spec_path)
            if saved_spec != spec:
                raise RunConflictError(
                    f"{folder.spec_path}: the run was trained on classes "
                    f"{', '.join(saved_spec.class_names)}, but {config.data.source} now "
                    f"describes {', '.join(spec.class_names)}; start a new run with another --out")
    elif folder.root.is_dir() and any(folder.root.iterdir()):
        raise RunConflictError(
            f"{folder.root}: folder exists, is not empty and holds no {folder.config_path.name}; "
            f"it is not a pixelwise run. Choose another --out folder")
    folder.root.mkdir(parents=True, exist_ok=True)
    folder.checkpoint_dir.mkdir(exist_ok=True)
    folder.remove_stale_temporaries()
    if not folder.exists():
        config.save(folder.config_path)
    if not folder.spec_path.is_file():
        write_text_atomically(folder.spec_path, _spec_json(spec))
    return folder.read_state()


def _spec_json(spec: DatasetSpec) -> str:
    import json

    return json.dumps(spec.to_dict(), indent=2) + "\n"


def train(config: RunConfig, run_dir: str | Path, *, progress: bool = True,
          echo: Callable[[str], None] = print,
          callbacks: Sequence[keras.callbacks.Callback] = (),
          strategy: tf.distribute.Strategy | None = None) -> TrainResult:
    """Train (or resume) the run of ``config`` in ``run_dir``; see the module docstring.

    Args:
        config: the run's settings.
        run_dir: the run folder; a new one is created, one holding this configuration is
            resumed from its last saved epoch, and one holding another configuration is
            refused (RunConflictError).
        progress: Keras's progress bar per step (else one line per epoch).
        echo: where status lines go.
        callbacks: more Keras callbacks, called after the run's own.
        strategy: a ``tf.distribute`` strategy from ``pixelwise.distribute.make_strategy``
            (None: TensorFlow's default, one device). Every worker of a multi-worker
            cluster calls ``train`` with the same arguments.

    Raises FileNotFoundError / ValueError for bad data (before any training), and
    ``pixelwise.models.WeightsUnavailableError`` when ImageNet weights cannot be fetched.
    """
    strategy = strategy or tf.distribute.get_strategy()
    chief = distribute.is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    workers = distribute.num_workers(strategy)
    # Non-chief workers save the same files (collectives need every worker) elsewhere.
    folder = RunFolder(Path(run_dir) if chief else distribute.worker_backup_dir(run_dir, strategy))
    source = open_source(config.data.source)
    spec = source.spec
    check_training_data(config, source, echo)
    train_size = source.num_examples(config.data.train_split, config.data.split_seed)
    global_batch = distribute.global_batch_size(config.train.batch_size, replicas)
    if train_size < global_batch:
        raise ValueError(f"split {config.data.train_split!r} of {config.data.source} holds "
                         f"{train_size} image(s), fewer than one batch of {global_batch} ("
                         f"{config.train.batch_size} x {replicas} replica(s)); lower --batch-size")
    had_run = folder.exists()
    state = _prepare_folder(config, folder, spec)
    if workers > 1:
        state = _agree_with_other_workers(strategy, folder, state, had_run, echo)
    epochs_done = int(state["epochs_done"]) if state else 0
    if replicas > 1 or workers > 1:
        echo(distribute.describe(strategy) + f"; global batch {global_batch}")
    if state and state.get("stop_reason"):
        echo(f"{folder.root}: training already complete ({epochs_done} epochs, "
             f"{state['stop_reason']}); nothing to do")
        return TrainResult(Path(run_dir), epochs_done, epochs_done, STOP_ALREADY_DONE,
                           state.get("best_val_mean_iou"), state.get("best_epoch"))
    steps_per_epoch = train_size // global_batch

    keras.utils.set_random_seed(config.train.seed)
    with precision_policy(config.train.precision_policy), strategy.scope():
        model = build_network(config, spec.num_classes)
        if config.train.sync_batchnorm and replicas > 1:
            distribute.synchronize_batch_norm(model)
        model.compile(optimizer=build_optimizer(config, steps_per_epoch, replicas),
                      loss=build_training_loss(config, source, spec),
                      metrics=segmentation_metrics(spec), jit_compile=config.train.jit_compile)
        if state:
            _restore_checkpoint(model, folder.checkpoint_dir / state["checkpoint"], state)
            echo(f"resuming {folder.root} after epoch {epochs_done} "
                 f"(learning rate {current_learning_rate(model.optimizer):.3g})")
        trim_log(folder.log_path, epochs_done)

        by_files = workers > 1 and distribute.auto_shard_policy(
            source, config.data.train_split, workers, training=True,
            split_seed=config.data.split_seed) == tf.data.experimental.AutoShardPolicy.FILE
        train_data = make_dataset(
            distribute.worker_files_source(source, strategy) if by_files else source,
            config.data.train_split, batch_size=global_batch,
            input_size=config.data.input_size, training=True,
            seed=config.train.seed + epochs_done, augment=config.data.augment,
            cache=config.data.cache, split_seed=config.data.split_seed)
        val_data = make_dataset(
            source, config.data.val_split, batch_size=global_batch,
            input_size=config.data.input_size, training=False, cache=config.data.cache,
            split_seed=config.data.split_seed)
        if replicas > 1:  # every replica gets images, even from the last batch
            val_data = distribute.pad_batches(val_data, global_batch, spec.ignore_label)
        fit_steps = None
        if workers > 1:
            data_policy = tf.data.experimental.AutoShardPolicy.DATA
            val_data = distribute.with_shard_policy(val_data, data_policy)
            if by_files:  # this worker's files only, as many steps as every other worker
                train_data = distribute.with_shard_policy(
                    train_data, tf.data.experimental.AutoShardPolicy.OFF).repeat()
                fit_steps = steps_per_epoch
            else:
                train_data = distribute.with_shard_policy(train_data, data_policy)

        resumable: dict[str, ResumableState] = {}
        run_callbacks: list[keras.callbacks.Callback] = [LearningRateLogger()]
        if config.train.recipe == "textbook":
            resumable["reduce_lr"] = ResumableReduceLROnPlateau(
                monitor=PLATEAU_MONITOR, factor=config.train.reduce_lr_factor,
                patience=config.train.reduce_lr_patience, min_lr=config.train.min_learning_rate,
                verbose=1)
            if config.train.early_stopping_patience:
                resumable["early_stopping"] = ResumableEarlyStopping(
                    monitor=PLATEAU_MONITOR, patience=config.train.early_stopping_patience,
                    verbose=1)
        for name, callback in resumable.items():
            callback.restore_state((state or {}).get("callbacks", {}).get(name))
            run_callbacks.append(callback)
        run_callbacks.append(keras.callbacks.TerminateOnNaN())
        run_callbacks.append(keras.callbacks.CSVLogger(str(folder.log_path), append=True))
        if config.train.tensorboard:
            run_callbacks.append(keras.callbacks.TensorBoard(
                str(folder.tensorboard_dir), write_graph=False, update_freq="epoch"))
        checkpoint = RunCheckpoint(
            folder, total_epochs=config.train.epochs, resumable=resumable,
            best_value=(state or {}).get("best_val_mean_iou"),
            best_epoch=(state or {}).get("best_epoch"),
            keep_previous=workers > 1, previous_state=state)
        run_callbacks.append(checkpoint)
        run_callbacks.extend(callbacks)

        echo(f"training {model.name} on {train_size} images ({steps_per_epoch} steps per epoch), "
             f"epochs {epochs_done + 1}..{config.train.epochs}; run folder {folder.root}")
        model.fit(train_data, validation_data=val_data, epochs=config.train.epochs,
                  initial_epoch=epochs_done, callbacks=run_callbacks, shuffle=False,
                  steps_per_epoch=fit_steps,
                  verbose=1 if progress else 2)  # the pipeline shuffles

    final_state = folder.read_state() or {}
    if checkpoint.saw_bad_loss:
        stop_reason = STOP_NAN
    else:
        stop_reason = final_state.get("stop_reason") or STOP_COMPLETED
    if not chief and final_state.get("stop_reason"):
        shutil.rmtree(folder.root, ignore_errors=True)  # the run is complete: no restart
    return TrainResult(Path(run_dir), int(final_state.get("epochs_done", 0)), epochs_done,
                       stop_reason, final_state.get("best_val_mean_iou"),
                       final_state.get("best_epoch"))


def resume(run_dir: str | Path, *, progress: bool = True, echo: Callable[[str], None] = print,
           callbacks: Sequence[keras.callbacks.Callback] = (),
           strategy: tf.distribute.Strategy | None = None) -> TrainResult:
    """Continue the run in ``run_dir`` with the configuration saved there (a non-chief
    worker reads it from its own backup folder when it has one)."""
    folder = RunFolder(Path(run_dir))
    if strategy is not None and not distribute.is_chief(strategy):
        backup = RunFolder(distribute.worker_backup_dir(run_dir, strategy))
        if backup.exists():
            return train(RunConfig.load(backup.config_path), run_dir, progress=progress,
                         echo=echo, callbacks=callbacks, strategy=strategy)
    if not folder.exists():
        raise FileNotFoundError(f"{folder.config_path}: not found; {folder.root} is not a run "
                                f"folder written by `pixelwise train`")
    return train(RunConfig.load(folder.config_path), folder.root, progress=progress, echo=echo,
                 callbacks=callbacks, strategy=strategy)


def _agree_with_other_workers(strategy: tf.distribute.Strategy, folder: RunFolder,
                              state: dict | None, had_run: bool,
                              echo: Callable[[str], None]) -> dict | None:
    """The saved state this worker resumes from, the same epoch on every worker: its own,
    or the one before it (kept under ``"previous"``) where another worker was killed while
    saving the last epoch. Going back rewrites state.json and deletes the newer checkpoint,
    so the epoch is trained again from the same weights everywhere."""
    saved = (int(state["epochs_done"]) if state else 0) if had_run else distribute.NO_RUN
    previous = state.get("previous") if state else None
    can_go_back = bool(state) and "previous" in state and (
        previous is None or (folder.checkpoint_dir / str(previous.get("checkpoint"))).is_file())
    fallback = ((int(previous["epochs_done"]) if previous else 0) if can_go_back
                else distribute.NO_RUN)
    target = distribute.agreed_saved_epochs(strategy, saved, fallback)
    if target == max(saved, 0):
        return state
    echo(f"{folder.root}: going back from epoch {saved} to epoch {target}, the last epoch "
         f"every worker saved")
    if previous is None:
        folder.state_path.unlink()
    else:
        write_json_atomically(folder.state_path, previous)
    for checkpoint in folder.checkpoint_dir.glob("epoch-*.keras"):
        if previous is None or checkpoint.name != previous["checkpoint"]:
            checkpoint.unlink(missing_ok=True)
    return previous


def _without_previous(state: dict | None) -> dict | None:
    return None if state is None else {name: value for name, value in state.items()
                                       if name != "previous"}


def _restore_checkpoint(model: keras.Model, checkpoint: Path, state: dict) -> None:
    """Load weights and optimizer state of ``checkpoint`` into the compiled ``model``."""
    model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(checkpoint)
    except (ValueError, OSError, KeyError) as error:
        raise ValueError(f"{checkpoint}: cannot restore the training state from it ({error}); "
                         f"delete {checkpoint.parent} to restart the run from scratch") from error
    iterations = int(model.optimizer.iterations.numpy())
    if iterations != int(state.get("optimizer_iterations", iterations)):
        raise ValueError(f"{checkpoint}: holds an optimizer at step {iterations}, but "
                         f"{checkpoint.parent / 'state.json'} records step "
                         f"{state['optimizer_iterations']}; delete {checkpoint.parent} to restart")


def _plain(value):
    """A JSON-ready copy of a callback's counter (NumPy scalars become Python numbers)."""
    if value is None:
        return None
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    return float(value)


__all__ = ["LearningRateLogger", "RunCheckpoint", "RunConflictError", "TrainResult",
           "build_network", "build_optimizer", "check_training_data", "precision_policy",
           "resume", "set_batch_norm_momentum", "train", "trim_log"]
