"""How a run's model came to be: every stage of training behind it, for a model card.

    history = training_history("runs/road")
    history["stages"]        # one record a run: settings, epochs, minutes; the first first
    history["starts_from"]   # the registered model the first run started from, with its card's
                             # own training and scores (absent when it started from scratch)

Written onto a card by whoever packages the run (``package_run(..., training=...)``;
benchmarks/camvid.py's ``--ship``). A run that started from another run (``--init-from
RUN``) is preceded by that run's stages. A run that started from a registered model
(``--init-from camvid-toy``) or a model folder with a card carries that card's training
under ``starts_from``: the card is read when the history is written, so it describes the
model the run really started from even after a new model took over the name; a card that
already lists this very run (the run was shipped under that name before) gives its own
``starts_from`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixelwise.config import RunConfig
from pixelwise.runs import CONFIG_FILENAME, RunFolder

# The TrainConfig fields a stage record keeps: what decides the weights it ends with.
RECORDED_TRAIN_FIELDS = ("recipe", "batch_size", "learning_rate", "weight_decay", "loss",
                         "class_weighting", "mixed_precision", "freeze_backbone_epochs")


def stage_record(run_dir: str | Path) -> dict[str, Any]:
    """What one run did: where it started, its data and settings, epochs and minutes."""
    run = RunFolder(Path(run_dir))
    config = RunConfig.load(run.config_path)
    state = run.read_state() or {}
    start = config.model.init_weights or (
        f"{config.model.backbone_weights} backbone weights" if config.model.backbone_weights
        else "random weights")
    return {
        "run": str(run.root), "from": start,
        "data": config.data.source, "train_split": config.data.train_split,
        "input_size": "x".join(str(side) for side in config.data.input_size),
        "augment": config.data.augment,
        **{name: getattr(config.train, name) for name in RECORDED_TRAIN_FIELDS},
        "epochs": state.get("epochs_done"), "planned_epochs": config.train.epochs,
        "minutes": round(float(state.get("train_seconds") or 0.0) / 60, 1)}


def run_chain(run_dir: str | Path) -> list[Path]:
    """``run_dir`` and the run folders it started from (``--init-from``), the first first."""
    chain = [Path(run_dir)]
    while True:
        start = RunConfig.load(RunFolder(chain[0]).config_path).model.init_weights
        if not start or not (Path(start) / CONFIG_FILENAME).is_file() or Path(start) in chain:
            return chain
        chain.insert(0, Path(start))


def _starting_card(reference: str, chain: list[Path]) -> dict[str, Any] | None:
    """The card of the registered model or model folder ``reference``, as
    ``starts_from``; None where it has none."""
    from pixelwise.init_source import open_init_source

    try:
        source = open_init_source(reference)
    except (FileNotFoundError, ValueError):
        return None
    from pixelwise.zoo import CARD_FILENAME, read_card

    if source.name is None and not (source.path.parent / CARD_FILENAME).is_file():
        return None
    card = read_card(source.path.parent)
    runs = {str(path) for path in chain} | {str(path.resolve()) for path in chain}
    if any(stage.get("run") in runs for stage in card.training.get("stages", [])
           if isinstance(stage, dict)):
        return card.training.get("starts_from")  # the card is this run's own, shipped before
    return {"model": reference, "description": card.description,
            "training": card.training, "scores": card.scores}


def training_history(run_dir: str | Path) -> dict[str, Any]:
    """The stages behind ``run_dir``'s model (see the module docstring), with their epochs
    ("80 + 70") and minutes summed, those of a starting card's model included."""
    chain = run_chain(run_dir)
    stages = [stage_record(part) for part in chain]
    history: dict[str, Any] = {"stages": stages}
    first_start = RunConfig.load(RunFolder(chain[0]).config_path).model.init_weights
    earlier = _starting_card(first_start, chain) if first_start else None
    epochs = [str(stage["epochs"]) for stage in stages]
    minutes = sum(stage["minutes"] for stage in stages)
    if earlier is not None:
        history["starts_from"] = earlier
        before = earlier.get("training", {})
        if before.get("epochs") is not None:
            epochs.insert(0, str(before["epochs"]))
        if isinstance(before.get("minutes"), (int, float)):
            minutes += before["minutes"]
    history["epochs"] = " + ".join(epochs)
    history["minutes"] = round(minutes)
    return history


__all__ = ["RECORDED_TRAIN_FIELDS", "run_chain", "stage_record", "training_history"]
