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
an uninterrupted run would have seen. The checkpoint of the epoch before is kept as well,
and a run whose last checkpoint is damaged resumes from that one.

One writer per run folder: ``train`` holds the folder's lock (``pixelwise.run_lock``) from
preparing it to its last save, and a second ``train`` of the same folder meanwhile is
refused (``RunFolderBusyError``, naming the holder). The operating system drops the lock
when the process ends, however it ends, so a killed run resumes.

An epoch whose loss, validation loss or weights are not finite is never saved: the run
stops with its last good epoch kept (``stop_reason`` "nan_loss"); a training loss growing
by orders of magnitude is reported as divergence while still finite.

Before anything is built, the train and val splits of a dataset folder go through
``pixelwise.data.check.check_dataset``, so missing or corrupt files and annotations that
are not class maps stop the run with the files named (records were checked when prepared),
and a training split labelling fewer than two classes is refused. Without the check, data
that fails to decode during training is checked then, and the files named.

Under a ``tf.distribute`` strategy (``strategy=``, see ``pixelwise.distribute``) the model,
optimizer, loss and metrics are created in its scope, each step takes ``batch_size x
replicas`` images, the learning rate is scaled by ``train.lr_scaling``, and on the
non-chief workers of a multi-worker cluster everything the run folder would get goes to
the worker's own backup folder instead.

A new run with ``model.init_weights`` starts from that trained model, keeping every layer
that fits and the classifier rows of corresponding classes (``pixelwise.transfer``; what
was kept is printed and written as init_report.json). With
``train.freeze_backbone_epochs`` the run trains in two phases, the backbone frozen first
(``pixelwise.training_phases``); the second phase starts as a resume from the state the
first one saved, so a run interrupted at any point continues as an uninterrupted one would.

``train`` coordinates; the pieces live in ``pixelwise.recipe`` (network, optimizer, loss,
metrics), ``pixelwise.callbacks`` (the per-epoch save and the resumable callbacks),
``pixelwise.runs`` (the run folder), ``pixelwise.training_inputs`` (data check and
datasets for the strategy) and ``pixelwise.training_state`` (restoring a checkpoint, the
epoch the workers agree on). Keras's dtype policy and the global random seeds are set for
the run and put back when ``train`` returns (``pixelwise.global_state``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from pixelwise import distribute
from pixelwise.callbacks import (
    STOP_ALREADY_DONE,
    STOP_COMPLETED,
    STOP_EARLY,
    STOP_NAN,
    STOP_TIME_BUDGET,
    LearningRateLogger,
    RunCheckpoint,
    build_run_callbacks,
)
from pixelwise.config import RunConfig
from pixelwise.data.pipeline import open_source
from pixelwise.global_state import dtype_policy as precision_policy
from pixelwise.global_state import seeded
from pixelwise.io import write_json_atomically
from pixelwise.recipe import (
    build_compiled_model,
    build_network,
    build_optimizer,
    current_learning_rate,
    set_batch_norm_momentum,
)
from pixelwise.runs import RunConflictError, RunFolder, trim_log
from pixelwise.training_inputs import (
    check_training_data,
    input_error,
    training_images,
    training_inputs,
)
from pixelwise.training_phases import enter_phase, plan_phases
from pixelwise.training_state import (
    agree_with_other_workers,
    restore_checkpoint,
    skip_damaged_checkpoint,
    worker_backup_dir,
)
from pixelwise.transfer import INIT_REPORT_FILENAME, start_from_init_model


@dataclass
class TrainResult:
    """How a ``train`` call ended.

    ``epochs_done``: epochs saved in the run (all calls together); ``resumed_from``: epochs
    already done when this call started; ``stop_reason``: "completed", "early_stopping",
    "nan_loss" (the loss, the validation loss or the weights became NaN or infinite: the
    last good epoch stays saved, and ``bad_epoch`` says what) or "already_complete"
    (nothing left to do).
    """

    run_dir: Path
    epochs_done: int
    resumed_from: int
    stop_reason: str
    best_val_mean_iou: float | None
    best_epoch: int | None
    bad_epoch: str | None = None
    train_seconds: float | None = None  # wall time of the run, all its parts together


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

    Raises FileNotFoundError / ValueError for bad data (before any training),
    ``pixelwise.run_lock.RunFolderBusyError`` while another process writes the folder, and
    ``pixelwise.models.WeightsUnavailableError`` when ImageNet weights cannot be fetched.
    """
    started = time.monotonic()
    strategy = strategy or tf.distribute.get_strategy()
    if config.train.time_budget is not None and distribute.num_workers(strategy) > 1:
        raise ValueError("train.time_budget applies to runs on one machine: each worker "
                         "would stop after its own count; leave --time-budget out")
    # Non-chief workers save the same files (collectives need every worker) elsewhere.
    folder = RunFolder(Path(run_dir) if distribute.is_chief(strategy)
                       else worker_backup_dir(run_dir, strategy))
    source = open_source(config.data.source)
    check_training_data(config, source, echo)
    train_size = training_images(config, source, strategy.num_replicas_in_sync)
    new_folder = not folder.root.exists()
    try:
        with folder.lock():
            return _train_locked(config, Path(run_dir), folder, source, train_size, strategy,
                                 progress=progress, echo=echo, callbacks=callbacks,
                                 started=started)
    finally:
        if new_folder and folder.root.is_dir() and not any(folder.root.iterdir()):
            folder.root.rmdir()  # a run that could not start leaves no empty folder behind


def _train_locked(config: RunConfig, run_dir: Path, folder: RunFolder, source, train_size: int,
                  strategy: tf.distribute.Strategy, *, progress: bool,
                  echo: Callable[[str], None],
                  callbacks: Sequence[keras.callbacks.Callback], started: float) -> TrainResult:
    """``train`` from preparing the folder on, with the folder's lock held."""
    chief = distribute.is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    workers = distribute.num_workers(strategy)
    global_batch = distribute.global_batch_size(config.train.batch_size, replicas)
    had_run = folder.exists()
    state = skip_damaged_checkpoint(folder, folder.prepare(config, source.spec), echo)
    if workers > 1:
        state = agree_with_other_workers(strategy, folder, state, had_run, echo)
    epochs_done = int(state["epochs_done"]) if state else 0
    if replicas > 1 or workers > 1:
        echo(distribute.describe(strategy) + f"; global batch {global_batch}")
    if state and state.get("stop_reason"):
        echo(f"{folder.root}: training already complete ({epochs_done} epochs, "
             f"{state['stop_reason']}); nothing to do")
        return TrainResult(run_dir, epochs_done, epochs_done, STOP_ALREADY_DONE,
                           state.get("best_val_mean_iou"), state.get("best_epoch"),
                           train_seconds=state.get("train_seconds"))
    steps_per_epoch = train_size // global_batch

    with seeded(config.train.seed), precision_policy(config.train.precision_policy), \
            strategy.scope():
        model = build_compiled_model(config, source, steps_per_epoch, replicas)
        if state:
            restore_checkpoint(model, folder.checkpoint_dir / state["checkpoint"], state)
            echo(f"resuming {folder.root} after epoch {epochs_done} "
                 f"(learning rate {current_learning_rate(model.optimizer):.3g})")
        elif config.model.init_weights:
            _start_from_init_model(model, config, folder, source.spec, had_run=had_run,
                                   chief=chief, echo=echo)
        folder.trim_log(epochs_done)
        run = None
        for phase in plan_phases(epochs_done, config.train):
            if run is not None:  # a later phase goes on as a resume from the saved state
                state = folder.read_state() or {}
                if run.checkpoint.bad_epoch or state.get("stop_reason"):
                    break
                started = time.monotonic()
            enter_phase(model, phase, config, source.spec)
            inputs = training_inputs(config, source, strategy, phase.start_epoch)
            run = build_run_callbacks(config, folder, state, echo=echo, started=started)
            echo(f"training {model.name} on {train_size} images ({steps_per_epoch} steps per "
                 f"epoch), {phase.describe()}; run folder {folder.root}")
            try:
                model.fit(inputs.train, validation_data=inputs.val, epochs=phase.end_epoch,
                          initial_epoch=phase.start_epoch,
                          callbacks=[*run.callbacks, *callbacks], shuffle=False,
                          steps_per_epoch=inputs.fit_steps,
                          verbose=1 if progress else 2)  # the pipeline shuffles
            except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as error:
                raise input_error(config, source, error) from error

    final_state = folder.read_state() or {}
    epochs_saved = int(final_state.get("epochs_done", 0))
    bad_epoch = run.checkpoint.bad_epoch if run is not None else None
    if bad_epoch:
        stop_reason = STOP_NAN
        folder.trim_log(epochs_saved)  # the log keeps the saved epochs only
        echo(f"{bad_epoch}; not saved, training stopped" + (
            f", the last good epoch ({epochs_saved}) is kept" if epochs_saved else ""))
    else:
        stop_reason = final_state.get("stop_reason") or STOP_COMPLETED
    if not chief and final_state.get("stop_reason"):
        shutil.rmtree(folder.root, ignore_errors=True)  # the run is complete: no restart
    return TrainResult(run_dir, epochs_saved, epochs_done, stop_reason,
                       final_state.get("best_val_mean_iou"), final_state.get("best_epoch"),
                       bad_epoch, final_state.get("train_seconds"))


def _start_from_init_model(model: keras.Model, config: RunConfig, folder: RunFolder, spec,
                           *, had_run: bool, chief: bool, echo: Callable[[str], None]) -> None:
    """Start a new run's ``model`` from ``config.model.init_weights`` (see
    ``pixelwise.transfer``), saying what was kept and writing it as init_report.json; a
    model that does not fit leaves a new folder as it was."""
    try:
        report = start_from_init_model(model, config, spec)
    except (OSError, ValueError):
        if not had_run:
            folder.remove_unstarted()
        raise
    echo(f"starting from the weights of {report.source}: {report.summary()}")
    if chief:
        write_json_atomically(folder.root / INIT_REPORT_FILENAME, report.to_dict())


def resume(run_dir: str | Path, *, epochs: int | None = None, time_budget: float | None = None,
           progress: bool = True, echo: Callable[[str], None] = print,
           callbacks: Sequence[keras.callbacks.Callback] = (),
           strategy: tf.distribute.Strategy | None = None) -> TrainResult:
    """Continue the run in ``run_dir`` with the configuration saved there (a non-chief
    worker reads it from its own backup folder when it has one).

    ``epochs`` / ``time_budget``: extend the run (see ``RunFolder.extend``): a finished run
    goes on to ``epochs`` epochs or within the new budget. A schedule over the run (poly,
    cosine) is then computed over the new number of epochs, from the step reached.
    """
    folder = RunFolder(Path(run_dir))
    if epochs is not None or time_budget is not None:
        if strategy is not None and distribute.num_workers(strategy) > 1:
            raise ValueError("extending a multi-worker run: change config.json on every "
                             "worker by hand instead")
        with folder.lock():
            folder.extend(epochs=epochs, time_budget=time_budget, echo=echo)
    if strategy is not None and not distribute.is_chief(strategy):
        backup = RunFolder(worker_backup_dir(run_dir, strategy))
        if backup.exists():
            return train(RunConfig.load(backup.config_path), run_dir, progress=progress,
                         echo=echo, callbacks=callbacks, strategy=strategy)
    if not folder.exists():
        raise FileNotFoundError(f"{folder.config_path}: not found; {folder.root} is not a run "
                                f"folder written by `pixelwise train`")
    return train(RunConfig.load(folder.config_path), folder.root, progress=progress, echo=echo,
                 callbacks=callbacks, strategy=strategy)


# Names that lived here before the training modules were split, still importable here.
__all__ = ["LearningRateLogger", "RunCheckpoint", "RunConflictError", "STOP_ALREADY_DONE",
           "STOP_COMPLETED", "STOP_EARLY", "STOP_NAN", "STOP_TIME_BUDGET", "TrainResult", "build_network",
           "build_optimizer", "check_training_data", "current_learning_rate",
           "precision_policy", "resume", "set_batch_norm_momentum", "train", "trim_log"]
