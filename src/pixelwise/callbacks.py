"""The Keras callbacks of a training run, and their state that survives a resume.

    run_callbacks = build_run_callbacks(config, folder, state)
    model.fit(..., callbacks=run_callbacks.callbacks)

``RunCheckpoint`` saves the run at the end of every epoch (see its docstring for the order
of the files); ReduceLROnPlateau and EarlyStopping (textbook recipe) keep their counters in
the saved state, so a resumed run goes on counting where the interrupted one stopped.
An epoch whose loss, validation loss or weights are not finite is never saved: the run
stops there, its last good epoch kept. ``DivergenceWarning`` says when the training loss
grows by orders of magnitude (a learning rate far too high) before it becomes NaN.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from pixelwise.config import RunConfig
from pixelwise.recipe import current_learning_rate
from pixelwise.runs import RunFolder, save_model_atomically, write_json_atomically

BEST_MONITOR = "val_mean_iou"
PLATEAU_MONITOR = "val_loss"
STOP_COMPLETED = "completed"
STOP_EARLY = "early_stopping"
STOP_NAN = "nan_loss"
STOP_ALREADY_DONE = "already_complete"
STOP_TIME_BUDGET = "time_budget"
# Training loss this many times its first step's: warn that the run diverges.
DIVERGENCE_GROWTH = 100.0


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

    With ``keep_previous`` (what ``build_run_callbacks`` asks for) state.json also holds,
    under ``"previous"``, the state saved before it (None before the first epoch;
    ``previous_state`` is the one the run resumed from), and that state's checkpoint is
    kept, so a run can go back one epoch: from a damaged checkpoint, or to the other
    workers' epoch (see ``pixelwise.training_state``).

    An epoch whose loss or validation loss is NaN or infinite, or that leaves a weight
    that is, is not saved: the run stops and ``bad_epoch`` says why (TerminateOnNaN
    stops it within the epoch when the training loss does).

    Wall time: state.json's ``train_seconds`` adds this call's time since ``started``
    (``time.monotonic()`` when ``train`` began) to ``seconds_before`` (the earlier parts of
    a resumed run). With a ``time_budget`` the run stops after the epoch when one more
    epoch as long as this one would pass it (stop reason "time_budget").
    """

    def __init__(self, folder: RunFolder, *, total_epochs: int,
                 resumable: dict[str, ResumableState], best_value: float | None = None,
                 best_epoch: int | None = None, monitor: str = BEST_MONITOR,
                 keep_previous: bool = False, previous_state: dict | None = None,
                 time_budget: float | None = None, seconds_before: float = 0.0,
                 started: float | None = None) -> None:
        super().__init__()
        self.time_budget = time_budget
        self.seconds_before = float(seconds_before)
        self.started = time.monotonic() if started is None else started
        self._epoch_started = self.started
        self.folder = folder
        self.total_epochs = total_epochs
        self.resumable = resumable
        self.best_value = best_value
        self.best_epoch = best_epoch
        self.monitor = monitor
        self.keep_previous = keep_previous
        self.last_state = without_previous(previous_state)
        self.bad_epoch: str | None = None

    @property
    def saw_bad_loss(self) -> bool:
        """Whether an epoch was not saved because something in it was not finite."""
        return self.bad_epoch is not None

    def train_seconds(self) -> float:
        """Wall time of the run so far, all its parts together."""
        return self.seconds_before + (time.monotonic() - self.started)

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._epoch_started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = logs or {}
        epoch_seconds = time.monotonic() - self._epoch_started
        problem = non_finite_problem(self.model, logs)
        if problem:
            self.bad_epoch = f"epoch {epoch + 1}: {problem}"
            self.model.stop_training = True
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
        elif self.time_budget and self.train_seconds() + epoch_seconds > self.time_budget:
            self.model.stop_training = True
            stop_reason = STOP_TIME_BUDGET
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
            "train_seconds": round(self.train_seconds(), 1),
            "callbacks": {name: callback.state() for name, callback in self.resumable.items()},
        }
        kept = {checkpoint.name}
        if self.keep_previous:
            state["previous"] = self.last_state
            if self.last_state:
                kept.add(self.last_state["checkpoint"])
        write_json_atomically(self.folder.state_path, state)
        self.last_state = without_previous(state)
        for old in self.folder.checkpoint_dir.glob("epoch-*.keras"):
            if old.name not in kept:
                old.unlink(missing_ok=True)


def non_finite_problem(model: keras.Model, logs: dict) -> str | None:
    """What is NaN or infinite at the end of an epoch (the loss, the validation loss, the
    weights), or None when everything is finite."""
    checked = {"loss": logs.get("loss")}
    if "val_loss" in logs:
        checked["val_loss"] = logs["val_loss"]
    for name, value in checked.items():
        if value is None or not math.isfinite(float(value)):
            return f"{name} is {value}"
    for weight in model.weights:
        if not np.isfinite(keras.ops.convert_to_numpy(weight)).all():
            return f"weight {weight.path} holds NaN or infinite values"
    return None


class DivergenceWarning(keras.callbacks.Callback):
    """Says once when an epoch's training loss is ``growth`` times the loss of the first
    step of this call or more: the run diverges (a learning rate far too high), though the
    loss is still finite."""

    def __init__(self, echo: Callable[[str], None] = print,
                 growth: float = DIVERGENCE_GROWTH) -> None:
        super().__init__()
        self.echo = echo
        self.growth = growth
        self.first_loss: float | None = None
        self.warned = False

    def on_train_batch_end(self, batch, logs=None) -> None:
        if self.first_loss is None and logs and "loss" in logs:
            loss = float(logs["loss"])
            if math.isfinite(loss) and loss > 0:
                self.first_loss = loss

    def on_epoch_end(self, epoch, logs=None) -> None:
        loss = float((logs or {}).get("loss", math.nan))
        if self.warned or self.first_loss is None or not math.isfinite(loss):
            return
        if loss >= self.growth * self.first_loss:
            self.warned = True
            self.echo(f"warning: the training loss grew from {self.first_loss:.3g} (first step) "
                      f"to {loss:.3g} (epoch {epoch + 1}): the run diverges; lower "
                      f"--learning-rate (now {current_learning_rate(self.model.optimizer):.3g})")


@dataclass
class RunCallbacks:
    """The callbacks of a run in the order Keras calls them, and its checkpoint among them
    (which tells whether a NaN loss stopped the run)."""

    callbacks: list[keras.callbacks.Callback]
    checkpoint: RunCheckpoint


def build_run_callbacks(config: RunConfig, folder: RunFolder, state: dict | None, *,
                        keep_previous: bool = True, echo: Callable[[str], None] = print,
                        started: float | None = None) -> RunCallbacks:
    """The run's own callbacks: learning-rate logging, the textbook recipe's plateau and
    early stopping (their counters restored from ``state``), TerminateOnNaN, the
    divergence warning (to ``echo``), the CSV log, TensorBoard when configured, and the
    checkpoint (``keep_previous``: keep the epoch before the last one too; ``started``:
    when this part of the run began, for its wall time and ``train.time_budget``)."""
    train_config = config.train
    state = state or {}
    resumable: dict[str, ResumableState] = {}
    if train_config.recipe == "textbook":
        resumable["reduce_lr"] = ResumableReduceLROnPlateau(
            monitor=PLATEAU_MONITOR, factor=train_config.reduce_lr_factor,
            patience=train_config.reduce_lr_patience, min_lr=train_config.min_learning_rate,
            verbose=1)
        if train_config.early_stopping_patience:
            resumable["early_stopping"] = ResumableEarlyStopping(
                monitor=PLATEAU_MONITOR, patience=train_config.early_stopping_patience,
                verbose=1)
    for name, callback in resumable.items():
        callback.restore_state(state.get("callbacks", {}).get(name))
    callbacks: list[keras.callbacks.Callback] = [LearningRateLogger(), *resumable.values(),
                                                 keras.callbacks.TerminateOnNaN(),
                                                 DivergenceWarning(echo),
                                                 keras.callbacks.CSVLogger(str(folder.log_path),
                                                                           append=True)]
    if train_config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(
            str(folder.tensorboard_dir), write_graph=False, update_freq="epoch"))
    checkpoint = RunCheckpoint(
        folder, total_epochs=train_config.epochs, resumable=resumable,
        best_value=state.get("best_val_mean_iou"), best_epoch=state.get("best_epoch"),
        keep_previous=keep_previous, previous_state=state or None,
        time_budget=train_config.time_budget, seconds_before=state.get("train_seconds", 0.0),
        started=started)
    callbacks.append(checkpoint)
    return RunCallbacks(callbacks, checkpoint)


def without_previous(state: dict | None) -> dict | None:
    """``state`` without the state it keeps under ``"previous"``."""
    return None if state is None else {name: value for name, value in state.items()
                                       if name != "previous"}


def _plain(value):
    """A JSON-ready copy of a callback's counter (NumPy scalars become Python numbers)."""
    if value is None:
        return None
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    return float(value)


__all__ = ["BEST_MONITOR", "DIVERGENCE_GROWTH", "DivergenceWarning", "LearningRateLogger", "PLATEAU_MONITOR", "ResumableEarlyStopping",
           "ResumableReduceLROnPlateau", "ResumableState", "RunCallbacks", "RunCheckpoint",
           "STOP_ALREADY_DONE", "STOP_COMPLETED", "STOP_EARLY", "STOP_NAN", "STOP_TIME_BUDGET",
           "build_run_callbacks", "non_finite_problem", "without_previous"]
