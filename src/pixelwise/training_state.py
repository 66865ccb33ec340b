"""The saved state a training run resumes from, on one machine or several.

    state = agree_with_other_workers(strategy, folder, folder.prepare(config, spec), ...)
    restore_checkpoint(model, folder.checkpoint_dir / state["checkpoint"], state)

One machine: the run folder's checkpoints/state.json names the checkpoint to resume from
(see ``pixelwise.runs`` and ``pixelwise.callbacks.RunCheckpoint``), and
``restore_checkpoint`` loads its weights and optimizer state into the compiled model. The
checkpoint of the epoch before is kept too: where the last one is damaged (a torn copy,
a disk fault) ``skip_damaged_checkpoint`` goes back to it and says so.

Multi-worker runs. Only the chief (task ``chief``, else ``worker`` 0) writes the run folder:
config, log, TensorBoard, checkpoints and ``best.keras``. The other workers do the same
saves (collective operations need every worker) into a backup folder of their own outside
the run folder (``worker_backup_dir``), which is removed when the run completes. Each worker
resumes from its own saved state, so after a worker restart all workers are started again
with the same command and continue from the last saved epoch (the run folder's checkpoint
plays the part of Keras's ``BackupAndRestore``). Each worker keeps the state of the epoch
before its last one too: a worker killed while saving an epoch leaves the others one epoch
ahead, and those go back to it (``agree_with_other_workers``; the chief's ``best.keras``
may then hold the model of the epoch that is trained again). Workers whose saved states
cannot be brought together stop with an error that says what to delete.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import tensorflow as tf

from pixelwise.distribute import num_workers, task_of
from pixelwise.runs import RunFolder, keras_file_is_whole

WORKER_BACKUP_ROOT_VARIABLE = "PIXELWISE_WORKER_BACKUP_DIR"
NO_RUN = -1  # a worker's saved epochs where it holds no run (folder absent or removed)


def restore_checkpoint(model: keras.Model, checkpoint: Path, state: dict) -> None:
    """Load weights and optimizer state of ``checkpoint`` into the compiled ``model``;
    raise ValueError (saying what to delete) when it does not match ``state``."""
    if not model.optimizer.built:  # a loss-scaling optimizer cannot be built twice
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(checkpoint)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(f"{checkpoint}: cannot restore the training state from it ({error}); "
                         f"delete {checkpoint.parent} to restart the run from scratch") from error
    iterations = int(model.optimizer.iterations.numpy())
    if iterations != int(state.get("optimizer_iterations", iterations)):
        raise ValueError(f"{checkpoint}: holds an optimizer at step {iterations}, but "
                         f"{checkpoint.parent / 'state.json'} records step "
                         f"{state['optimizer_iterations']}; delete {checkpoint.parent} to restart")


def skip_damaged_checkpoint(folder: RunFolder, state: dict | None,
                            echo: Callable[[str], None] = print) -> dict | None:
    """``state``, or the state saved the epoch before when ``state``'s checkpoint is not a
    whole .keras archive (then state.json is rewritten and the damaged file deleted).
    Raises ValueError, saying what to delete, when no earlier state is kept."""
    if not state:
        return state
    checkpoint = folder.checkpoint_dir / state["checkpoint"]
    if keras_file_is_whole(checkpoint):
        return state
    previous = state.get("previous")
    usable = "previous" in state and (
        previous is None or keras_file_is_whole(folder.checkpoint_dir / previous["checkpoint"]))
    if not usable:
        raise ValueError(f"{checkpoint}: damaged (not a complete .keras archive) and no earlier "
                         f"checkpoint is kept; delete {folder.checkpoint_dir} to restart the run")
    epochs = int(previous["epochs_done"]) if previous else 0
    echo(f"{checkpoint}: damaged (not a complete .keras archive); going back to the checkpoint "
         f"of epoch {epochs}" if previous else f"{checkpoint}: damaged (not a complete .keras "
         f"archive); no earlier epoch was saved, so the run starts again from epoch 0")
    folder.go_back_to(previous)
    return previous


def worker_backup_dir(run_dir: str | Path, strategy: tf.distribute.Strategy) -> Path:
    """Where a non-chief worker keeps its own copy of the run's saves: outside the run
    folder, under ``$PIXELWISE_WORKER_BACKUP_DIR`` (default: the system's temporary folder),
    named after the run folder's absolute path and the task, so a restarted worker finds
    it again."""
    root = Path(os.environ.get(WORKER_BACKUP_ROOT_VARIABLE) or tempfile.gettempdir())
    run_path = Path(run_dir).resolve()
    digest = hashlib.sha256(str(run_path).encode()).hexdigest()[:12]
    task_type, task_id = task_of(strategy)
    return root / "pixelwise-workers" / f"{run_path.name}-{digest}" / f"{task_type}-{task_id}"


def gather_from_workers(strategy: tf.distribute.Strategy, value: int) -> list[int]:
    """``value`` of every replica of every worker (a collective: every worker must call it)."""
    per_replica = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant([int(value)], dtype=tf.int64))
    return [int(item) for item in strategy.gather(per_replica, axis=0).numpy()]


def common_saved_epochs(saved: Sequence[int], fallback: Sequence[int]) -> int:
    """The epochs every worker can resume from, given each worker's ``saved`` epochs (its
    state.json; 0 before the first save, ``NO_RUN`` without a run folder) and the
    ``fallback`` epochs of the state before that one (``NO_RUN`` where none is kept).

    A worker killed while saving epoch ``n`` leaves the others one epoch ahead (no worker
    can finish epoch ``n + 1`` without it), so each worker is at the lowest saved epoch
    or can go back to it. Raises ValueError when they cannot agree."""
    saved, fallback = [int(value) for value in saved], [int(value) for value in fallback]
    if len(saved) != len(fallback) or not saved:
        raise ValueError(f"one saved and one fallback value per worker, got {saved} and "
                         f"{fallback}")
    if all(value in (NO_RUN, 0) for value in saved):
        return 0  # a new run (or one that saved no epoch yet)
    target = min(saved)
    if target != NO_RUN and all(value == target or back == target
                                for value, back in zip(saved, fallback)):
        return target
    raise ValueError(
        f"the workers' saved runs do not match: epochs saved {saved}, epochs they can go back "
        f"to {fallback} (one value per replica; {NO_RUN}: no run). Either the run is complete "
        f"(the other workers removed their backups: nothing to resume), or a worker's backup "
        f"folder was deleted or belongs to another run: then delete the run folder's "
        f"checkpoints/ and the workers' backup folders (under "
        f"{Path(tempfile.gettempdir()) / 'pixelwise-workers'} or "
        f"${WORKER_BACKUP_ROOT_VARIABLE}) to restart the run")


def agreed_saved_epochs(strategy: tf.distribute.Strategy, saved: int, fallback: int) -> int:
    """``common_saved_epochs`` over every worker's ``saved`` and ``fallback`` epochs (a
    collective: every worker must call it); ``saved`` with one worker."""
    if num_workers(strategy) <= 1:
        return int(saved)
    try:
        return common_saved_epochs(gather_from_workers(strategy, saved),
                                   gather_from_workers(strategy, fallback))
    except ValueError as error:
        task_type, task_id = task_of(strategy)
        raise ValueError(f"{error} (this is {task_type} {task_id}, with {saved} epochs "
                         f"saved)") from None


def agree_with_other_workers(strategy: tf.distribute.Strategy, folder: RunFolder,
                             state: dict | None, had_run: bool,
                             echo: Callable[[str], None] = print) -> dict | None:
    """The saved state this worker resumes from, the same epoch on every worker: its own
    ``state`` (``had_run``: the folder held a run before this call), or the one before it
    (kept under ``"previous"``) where another worker was killed while saving the last
    epoch. Going back rewrites state.json and deletes the newer checkpoint, so the epoch is
    trained again from the same weights everywhere. A collective: every worker calls it."""
    saved = (int(state["epochs_done"]) if state else 0) if had_run else NO_RUN
    previous = state.get("previous") if state else None
    can_go_back = bool(state) and "previous" in state and (
        previous is None or (folder.checkpoint_dir / str(previous.get("checkpoint"))).is_file())
    fallback = (int(previous["epochs_done"]) if previous else 0) if can_go_back else NO_RUN
    target = agreed_saved_epochs(strategy, saved, fallback)
    if target == max(saved, 0):
        return state
    echo(f"{folder.root}: going back from epoch {saved} to epoch {target}, the last epoch "
         f"every worker saved")
    folder.go_back_to(previous)
    return previous


__all__ = ["NO_RUN", "WORKER_BACKUP_ROOT_VARIABLE", "agree_with_other_workers",
           "agreed_saved_epochs", "common_saved_epochs", "gather_from_workers",
           "restore_checkpoint", "skip_damaged_checkpoint", "worker_backup_dir"]
