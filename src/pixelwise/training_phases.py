"""A run in phases: the first ``train.freeze_backbone_epochs`` epochs with the backbone
frozen, then everything trained.

    for phase in plan_phases(epochs_done, config.train):
        enter_phase(model, phase, config, spec)
        model.fit(..., initial_epoch=phase.start_epoch, epochs=phase.end_epoch)

Frozen means every backbone layer (:func:`pixelwise.models.parts.backbone_layers`) is not
trainable: its weights get no updates and its batch normalisation runs in inference mode,
its moving statistics fixed. Keras reads ``trainable`` when it traces the training step,
so each phase recompiles the model; the optimizer is kept (built once on every trainable
variable, so its state and step count go on across phases and a checkpoint holds the
same variables whichever phase wrote it). The phase follows from the epochs done alone,
so a run killed in either phase resumes in the right one.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from pixelwise.config import RunConfig, TrainConfig
from pixelwise.data.spec import DatasetSpec
from pixelwise.models.parts import backbone_layers
from pixelwise.recipe import segmentation_metrics


@dataclass(frozen=True)
class Phase:
    """Epochs ``start_epoch + 1 .. end_epoch`` (Keras's ``initial_epoch`` and ``epochs``),
    with the backbone ``frozen`` or not."""

    start_epoch: int
    end_epoch: int
    frozen: bool

    def describe(self) -> str:
        return (f"epochs {self.start_epoch + 1}..{self.end_epoch}"
                + (", backbone frozen" if self.frozen else ""))


def plan_phases(epochs_done: int, train: TrainConfig) -> list[Phase]:
    """The phases left after ``epochs_done`` epochs: frozen up to
    ``train.freeze_backbone_epochs``, then trained to ``train.epochs`` (none when done)."""
    freeze_until = min(int(train.freeze_backbone_epochs), train.epochs)
    phases = []
    if epochs_done < freeze_until:
        phases.append(Phase(epochs_done, freeze_until, True))
    start = max(epochs_done, freeze_until)
    if start < train.epochs:
        phases.append(Phase(start, train.epochs, False))
    return phases


def set_backbone_trainable(model: keras.Model, backbone: str, trainable: bool) -> int:
    """Make ``model``'s ``backbone`` layers trainable or not; how many changed."""
    changed = 0
    for layer in backbone_layers(model, backbone):
        if layer.weights and layer.trainable != trainable:
            layer.trainable = trainable
            changed += 1
    return changed


def enter_phase(model: keras.Model, phase: Phase, config: RunConfig, spec: DatasetSpec) -> None:
    """Freeze or unfreeze ``model``'s backbone for ``phase`` and recompile it when that
    changed anything (same optimizer and loss, fresh metrics). Call it in the strategy's
    scope, after the checkpoint of a resumed run was restored."""
    if not phase.frozen and all(layer.trainable for layer in model.layers):
        return  # nothing was frozen: the model as compiled
    optimizer = model.optimizer
    if phase.frozen and not optimizer.built:
        optimizer.build(model.trainable_variables)  # every variable, whatever the phase
    if not set_backbone_trainable(model, config.model.backbone, not phase.frozen):
        return
    model.compile(optimizer=optimizer, loss=model.loss, metrics=segmentation_metrics(spec),
                  jit_compile=config.train.jit_compile)


__all__ = ["Phase", "enter_phase", "plan_phases", "set_backbone_trainable"]
