"""What ``--init-from`` names: the weights file, and the classes and architecture behind it.

    source = open_init_source("camvid-toy")      # or "runs/road", "runs/road/best.keras"
    source.path, source.classes, source.model    # file, class names, ModelConfig (or None)

A registered model name (:mod:`pixelwise.zoo`) or a model folder with a card gives its
.keras file, the card's classes and its architecture; a run folder its best.keras, the
classes of its pixelwise_dataset.json and the model section of its config.json; a .keras
or .weights.h5 file what lies beside it (a card, or a run's two files), where anything
does. Classes or architecture that nothing records stay None.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pixelwise.config import ModelConfig, RunConfig
from pixelwise.data.spec import DatasetSpec
from pixelwise.runs import BEST_MODEL_FILENAME, CONFIG_FILENAME, SPEC_FILENAME
from pixelwise.zoo import (
    CARD_FILENAME,
    ModelCard,
    card_beside,
    find_named,
    is_model_name,
    known_models_text,
    read_card,
)

WEIGHTS_SUFFIXES = (".keras", ".weights.h5")


@dataclass(frozen=True)
class InitSource:
    """A trained model to start from.

    Attributes:
        reference: what was asked for (a name or a path, as given).
        path: the weights file: a .keras file (architecture and layer names included) or
            a .weights.h5 file (weights only: it must fit exactly).
        classes: its class names, or None where nothing beside it records them.
        model: its architecture, or None where nothing records it.
        name: the registered model's name, or None.
    """

    reference: str
    path: Path
    classes: tuple[str, ...] | None = None
    model: ModelConfig | None = None
    name: str | None = None

    def describe(self) -> str:
        """``camvid-toy (/.../model.keras)`` or the file's path."""
        return f"{self.name} ({self.path})" if self.name else str(self.path)


def init_reference(reference: str | os.PathLike) -> str:
    """What a run's config.json records for ``reference``: a registered model's name as
    it is, anything else as an absolute path. Raises FileNotFoundError for a path that
    does not exist and for a name no folder holds (listing the known names)."""
    if is_model_name(reference):
        return find_named(os.fspath(reference)).name
    path = Path(reference)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; --init-from takes a .keras or "
                                f".weights.h5 file, a run folder or a model name ("
                                f"{known_models_text()})")
    return str(path.resolve())


def open_init_source(reference: str | os.PathLike) -> InitSource:
    """The :class:`InitSource` of a model name, a model or run folder, or a weights file.

    Raises FileNotFoundError for a missing file (or unknown name) and ValueError for a
    file Keras did not write."""
    text = os.fspath(reference)
    if is_model_name(text):
        return _from_card(text, find_named(text))
    path = Path(text)
    if path.is_dir():
        if (path / CARD_FILENAME).is_file():
            return _from_card(text, read_card(path))
        path = path / BEST_MODEL_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; --init-from takes a .keras or "
                                f".weights.h5 file, a run folder holding "
                                f"{BEST_MODEL_FILENAME}, or a model name ({known_models_text()})")
    if not path.name.endswith(WEIGHTS_SUFFIXES):
        raise ValueError(f"{path}: not a .keras or .weights.h5 file; --init-from takes a "
                         f"model saved by Keras (a run's {BEST_MODEL_FILENAME})")
    card = card_beside(path)
    if card is not None:
        return InitSource(text, path, card.spec.class_names, card.model, card.name)
    folder = path.parent
    classes = (DatasetSpec.load(folder / SPEC_FILENAME).class_names
               if (folder / SPEC_FILENAME).is_file() else None)
    model = (RunConfig.load(folder / CONFIG_FILENAME).model
             if (folder / CONFIG_FILENAME).is_file() else None)
    return InitSource(text, path, classes, model)


def _from_card(reference: str, card: ModelCard) -> InitSource:
    return InitSource(reference, card.path("keras"), card.spec.class_names, card.model,
                      card.name)


__all__ = ["InitSource", "init_reference", "open_init_source"]
