"""The run folder: one training run's files, written atomically, and loading a run back.

    runs/NAME/
      config.json                 RunConfig (data / model / train settings)
      pixelwise_dataset.json      the classes, colours and ignore label the model predicts
      train_log.csv               one row per finished epoch (Keras CSVLogger)
      best.keras                  the model of the best validation mean IoU (no optimizer)
      checkpoints/state.json      the last saved training state: epochs done, callback
                                  state, best score, and the checkpoint it belongs to
      checkpoints/epoch-NNNN.keras  the last checkpoint: model + optimizer state
      tensorboard/                TensorBoard logs
      evaluation/, predictions/, figures/   what evaluate / predict / visualize write
      .lock                       held by the training that writes the folder (run_lock)

    model, spec, config = load_run("runs/NAME")

``RunFolder.prepare`` makes a folder ready for training (or refuses one that holds another
run) and ``RunFolder.trim_log`` drops log rows the saved state does not cover.

Every file here is written under a temporary name in its own folder and renamed into
place (``os.replace``, atomic on POSIX), so a process killed at any moment leaves either
the old file or the new one, never a torn one.

One writer at a time: ``train`` holds the folder's lock (``RunFolder.lock``, see
``pixelwise.run_lock``) from preparing the folder to its last save, so a second training
of the same folder is refused naming the first. Evaluate, predict, visualize and export
take no lock: they read best.keras (replaced atomically, so they see one whole model),
write only into their own subfolders (evaluation/, predictions/, figures/, export/)
through the same atomic writes, and can therefore run beside a training.
"""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import keras

from pixelwise.config import RunConfig
from pixelwise.data.spec import DatasetSpec
from pixelwise.io import TEMP_PREFIX, write_atomically, write_json_atomically, write_text_atomically
from pixelwise.models import load_model
from pixelwise.run_lock import LOCK_FILENAME, RunLock

CONFIG_FILENAME = "config.json"
SPEC_FILENAME = "pixelwise_dataset.json"
LOG_FILENAME = "train_log.csv"
BEST_MODEL_FILENAME = "best.keras"
CHECKPOINT_DIR = "checkpoints"
STATE_FILENAME = "state.json"
TENSORBOARD_DIR = "tensorboard"
EVALUATION_DIR = "evaluation"
PREDICTIONS_DIR = "predictions"
FIGURES_DIR = "figures"


class RunConflictError(ValueError):
    """The run folder holds a run with another configuration (or is not a run folder)."""


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (nothing is created by constructing it)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILENAME

    @property
    def spec_path(self) -> Path:
        return self.root / SPEC_FILENAME

    @property
    def log_path(self) -> Path:
        return self.root / LOG_FILENAME

    @property
    def best_model_path(self) -> Path:
        return self.root / BEST_MODEL_FILENAME

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / CHECKPOINT_DIR

    @property
    def state_path(self) -> Path:
        return self.checkpoint_dir / STATE_FILENAME

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / TENSORBOARD_DIR

    def checkpoint_path(self, epochs_done: int) -> Path:
        return self.checkpoint_dir / f"epoch-{epochs_done:04d}.keras"

    def exists(self) -> bool:
        return self.config_path.is_file()

    def read_state(self) -> dict | None:
        """The saved training state, or None before the first epoch was saved."""
        if not self.state_path.is_file():
            return None
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{self.state_path}: cannot read the training state: {error}; it "
                             f"is written atomically, so something else changed it. Delete "
                             f"{self.checkpoint_dir} to restart the run from scratch") from error
        checkpoint = self.checkpoint_dir / str(state.get("checkpoint", ""))
        if not checkpoint.is_file():
            raise FileNotFoundError(f"{self.state_path}: names checkpoint {checkpoint}, which is "
                                    f"missing; delete {self.checkpoint_dir} to restart the run")
        return state

    def lock(self, purpose: str = "pixelwise train") -> RunLock:
        """The folder's lock, not yet acquired (``with folder.lock(): ...``). A non-empty
        folder that is not a run is refused first (RunConflictError), so no lock file is
        left in it."""
        self._refuse_foreign_folder()
        return RunLock(self.root, purpose=purpose)

    def _refuse_foreign_folder(self) -> None:
        if self.exists() or not self.root.is_dir():
            return
        if any(path.name != LOCK_FILENAME for path in self.root.iterdir()):
            raise RunConflictError(
                f"{self.root}: folder exists, is not empty and holds no {self.config_path.name}; "
                f"it is not a pixelwise run. Choose another --out folder")

    def prepare(self, config: RunConfig, spec: DatasetSpec) -> dict | None:
        """Make the folder ready to train ``config`` on ``spec``; the saved state (None
        before the first epoch).

        A new or empty folder gets config.json, the dataset spec and checkpoints/; a folder
        holding this run is kept as it is (its stale temporaries swept). Raises
        RunConflictError for a folder holding another configuration or other classes, or
        a non-empty folder that is not a run.
        """
        if self.exists():
            self._check_same_run(config, spec)
        self._refuse_foreign_folder()
        self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir.mkdir(exist_ok=True)
        self.remove_stale_temporaries()
        if not self.exists():
            config.save(self.config_path)
        if not self.spec_path.is_file():
            write_json_atomically(self.spec_path, spec.to_dict())
        return self.read_state()

    def _check_same_run(self, config: RunConfig, spec: DatasetSpec) -> None:
        changes = RunConfig.load(self.config_path).differences(config)
        if changes:
            raise RunConflictError(
                f"{self.root} holds a run with another configuration ("
                + "; ".join(changes) + f"). To continue that run use `pixelwise train --resume "
                f"{self.root}`; to start a new one choose another --out folder")
        if self.spec_path.is_file():
            saved_spec = DatasetSpec.load(self.spec_path)
            if saved_spec != spec:
                raise RunConflictError(
                    f"{self.spec_path}: the run was trained on classes "
                    f"{', '.join(saved_spec.class_names)}, but {config.data.source} now "
                    f"describes {', '.join(spec.class_names)}; start a new run with another --out")

    def extend(self, *, epochs: int | None = None, time_budget: float | None = None,
               echo: Callable[[str], None] = print) -> RunConfig:
        """Let the run here go on: ``epochs`` (at least the epochs done) and/or a new
        ``time_budget`` (seconds, all parts together) replace the saved ones in config.json,
        and a run that had stopped (completed, early stopping, time budget) is reopened.
        Returns the new configuration; hold the folder's lock while calling it."""
        if not self.exists():
            raise FileNotFoundError(f"{self.config_path}: not found; {self.root} is not a run "
                                    f"folder written by `pixelwise train`")
        config = RunConfig.load(self.config_path)
        state = self.read_state() or {}
        done = int(state.get("epochs_done", 0))
        changes: dict = {}
        if epochs is not None:
            if epochs < max(done, 1):
                raise ValueError(f"{self.root}: {done} epoch(s) are done already; --epochs "
                                 f"must be at least {max(done, 1)} to extend the run")
            changes["epochs"] = int(epochs)
        if time_budget is not None:
            changes["time_budget"] = float(time_budget)
        extended = config.with_changes(train=changes)
        if extended != config:
            extended.save(self.config_path)
        if state.get("stop_reason") and done < extended.train.epochs and (
                extended != config):
            reopened = dict(state, stop_reason=None)
            if "early_stopping" in state.get("callbacks", {}):  # count patience afresh
                reopened["callbacks"] = dict(state["callbacks"], early_stopping=dict(
                    state["callbacks"]["early_stopping"], wait=0, stopped_epoch=0))
            write_json_atomically(self.state_path, reopened)
            echo(f"{self.root}: extended to {extended.train.epochs} epochs"
                 + (f" within {extended.train.time_budget:.0f} s" if extended.train.time_budget
                    else "") + f" (was {state['stop_reason']} after epoch {done})")
        return extended

    def trim_log(self, epochs_done: int) -> int:
        """Keep the log rows of the ``epochs_done`` saved epochs (see ``trim_log``)."""
        return trim_log(self.log_path, epochs_done)

    def go_back_to(self, previous: dict | None) -> None:
        """Make ``previous`` (a state kept under ``"previous"``, None: no epoch saved) the
        saved state again, deleting every checkpoint it does not name."""
        if previous is None:
            self.state_path.unlink(missing_ok=True)
        else:
            write_json_atomically(self.state_path, previous)
        for checkpoint in self.checkpoint_dir.glob("epoch-*.keras"):
            if previous is None or checkpoint.name != previous["checkpoint"]:
                checkpoint.unlink(missing_ok=True)

    def remove_unstarted(self) -> None:
        """Undo ``prepare`` in a new folder whose run could not start (no epoch saved), so
        the corrected command can use it; anything else found there is kept (``train``
        removes the folder itself once its lock is released, if nothing is left)."""
        if self.read_state() is not None:
            return
        self.config_path.unlink(missing_ok=True)
        self.spec_path.unlink(missing_ok=True)
        try:
            self.checkpoint_dir.rmdir()
        except OSError:
            pass  # not empty: someone else's files stay

    def remove_stale_temporaries(self) -> None:
        """Delete temporary files a killed process left behind (never a complete file)."""
        for folder in (self.root, self.checkpoint_dir):
            if folder.is_dir():
                for path in folder.glob(TEMP_PREFIX + "*"):
                    path.unlink(missing_ok=True)


class LoadedRun(NamedTuple):
    """What ``load_run`` returns; unpacks as ``model, spec, config = load_run(...)``."""

    model: keras.Model
    spec: DatasetSpec
    config: RunConfig


def load_run(run_dir: str | Path, *, checkpoint: str = "best") -> LoadedRun:
    """The trained model, the dataset spec and the configuration of a run folder.

    Args:
        run_dir: a folder written by ``pixelwise train``.
        checkpoint: "best" (best.keras, the best validation mean IoU) or "last" (the
            model of the last saved epoch).

    The model is loaded without its optimizer, loss and metrics (``compile=False``), with
    safe mode on, so only the network's layers (``pixelwise.models``) need to be known.
    """
    folder = RunFolder(Path(run_dir))
    if not folder.root.is_dir():
        raise FileNotFoundError(f"{folder.root}: no such run folder")
    config = RunConfig.load(folder.config_path)
    if not folder.spec_path.is_file():
        raise FileNotFoundError(f"{folder.spec_path}: missing; the run folder is incomplete "
                                f"(train writes it before the first epoch)")
    spec = DatasetSpec.load(folder.spec_path)
    if checkpoint == "best":
        model_path = folder.best_model_path
        if not model_path.is_file():
            raise FileNotFoundError(
                f"{model_path}: missing; the run has not finished an epoch yet. Train it "
                f"(`pixelwise train --resume {folder.root}`) first")
    elif checkpoint == "last":
        state = folder.read_state()
        if state is None:
            raise FileNotFoundError(f"{folder.state_path}: no saved epoch yet in {folder.root}")
        model_path = folder.checkpoint_dir / state["checkpoint"]
    else:
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    model = load_model_file(model_path, folder)
    if model.outputs[0].shape[-1] != spec.num_classes:
        raise ValueError(f"{model_path}: the model predicts {model.outputs[0].shape[-1]} "
                         f"classes but {folder.spec_path} lists {spec.num_classes}")
    return LoadedRun(model, spec, config)


def load_model_file(model_path: Path, folder: RunFolder) -> keras.Model:
    """The network saved at ``model_path`` in ``folder``; ValueError saying what to do when
    the file is damaged (torn, or not a .keras archive) or names classes safe mode refuses."""
    if not keras_file_is_whole(model_path):
        try:
            last = folder.checkpoint_dir / folder.read_state()["checkpoint"]
        except (OSError, ValueError, TypeError, KeyError):
            last = None
        remedy = (f"copy {last} (the last epoch's model, not necessarily the best) over it, "
                  f"or retrain" if last is not None and last != model_path and
                  keras_file_is_whole(last) else "retrain the run")
        raise ValueError(f"{model_path}: damaged (not a complete .keras archive; it is written "
                         f"atomically, so something else changed it); {remedy}")
    try:
        return load_model(model_path, compile=False)
    except TypeError as error:  # Keras's safe mode, or a layer it cannot rebuild
        reason = str(error).splitlines()[0]
        raise ValueError(f"{model_path}: cannot be loaded: its config.json names classes that "
                         f"are not pixelwise or Keras layers, or was edited by hand ({reason})"
                         ) from error


def keras_file_is_whole(path: Path) -> bool:
    """Whether ``path`` is a readable zip archive whose every member passes its CRC check
    (a .keras file is one)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def open_run_data(data: str | Path, spec: DatasetSpec):
    """The dataset ``data`` (folder or records) opened for a run trained on ``spec``;
    ValueError when its classes are not the run's (evaluate and visualize share this)."""
    from pixelwise.data.pipeline import open_source

    source = open_source(data)
    if source.spec.class_names != spec.class_names:
        raise ValueError(f"{data}: its classes ({', '.join(source.spec.class_names)}) are not "
                         f"the run's ({', '.join(spec.class_names)})")
    return source


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


def save_model_atomically(model: keras.Model, path: str | Path, *,
                          include_optimizer: bool = True) -> None:
    """``model.save(path)`` through a temporary file.

    ``include_optimizer=False`` saves the network alone (what inference needs, a third of
    the size of a model with Adam's two moments): a fresh functional model over the same
    layers, which is not compiled, is saved instead.
    """
    to_save = model
    if not include_optimizer and getattr(model, "optimizer", None) is not None:
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        outputs = model.outputs[0] if len(model.outputs) == 1 else model.outputs
        to_save = keras.Model(inputs, outputs, name=model.name)
    write_atomically(path, lambda temporary: to_save.save(temporary))


__all__ = ["BEST_MODEL_FILENAME", "CONFIG_FILENAME", "LOG_FILENAME", "LoadedRun",
           "RunConflictError", "RunFolder", "SPEC_FILENAME", "keras_file_is_whole", "load_model_file",
           "load_run", "open_run_data", "save_model_atomically",
           "trim_log", "write_atomically", "write_json_atomically", "write_text_atomically"]
