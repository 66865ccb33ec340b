"""What ``pixelwise export`` exports: a run folder, a registered model or a .keras file.

    source = open_export_source("runs/voc")                      # its data checks it
    source = open_export_source("camvid-toy", data="data/camvid")  # name: data to check on

A run folder brings its best model, classes, input size, stride and dataset. A
registered model's name (:mod:`pixelwise.zoo`), or a .keras file in a model folder, brings
what its card says; a .keras file beside a run's config.json and pixelwise_dataset.json
what those say. Neither carries a dataset: the check and the int8 calibration then need
``data``, a dataset of the same classes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import keras

from pixelwise.config import DataConfig, RunConfig
from pixelwise.data.spec import DatasetSpec
from pixelwise.runs import CONFIG_FILENAME, SPEC_FILENAME, load_run
from pixelwise.zoo import card_beside, find_named, is_model_name

EXPORT_DIR = "export"


@dataclass(frozen=True)
class ExportSource:
    """A trained model to export, and the data that checks the export.

    Attributes:
        model: the Keras model.
        spec: its classes.
        input_size: the (height, width) it was trained or runs at: the TFLite default.
        input_multiple: its stride.
        data: the dataset the check and int8 calibration read, or None.
        train_split, test_split, split_seed: that dataset's splits.
        export_dir: where exports go by default.
        name: what it is called in messages.
    """

    model: keras.Model
    spec: DatasetSpec
    input_size: tuple[int, int]
    input_multiple: int
    data: str | None
    train_split: str
    test_split: str
    split_seed: int
    export_dir: Path
    name: str

    def require_data(self, purpose: str) -> str:
        """The dataset, or ValueError saying how to give one for ``purpose``."""
        if self.data is None:
            raise ValueError(f"{self.name} carries no dataset: {purpose} needs --data (a "
                             f"dataset with its classes: {', '.join(self.spec.class_names)})")
        return self.data


def open_export_source(target: str | os.PathLike, *,
                       data: str | os.PathLike | None = None) -> ExportSource:
    """The :class:`ExportSource` of a run folder, a registered model's name or a .keras
    file; ``data`` replaces a run's dataset (or gives one to a model). Raises
    FileNotFoundError / ValueError naming what is missing."""
    data = None if data is None else str(Path(data).resolve())
    defaults = DataConfig(source="")
    if is_model_name(target):
        card = find_named(os.fspath(target))
        return _keras_source(card.path("keras"), card.spec, card.input_size,
                             card.input_multiple, data, defaults,
                             Path(f"{card.name}_{EXPORT_DIR}"), card.name)
    path = Path(target)
    if path.is_dir():
        model, spec, config = load_run(path)
        return ExportSource(model, spec, config.data.input_size, config.model.input_multiple,
                            data or config.data.source, config.data.train_split,
                            config.data.test_split, config.data.split_seed,
                            path / EXPORT_DIR, str(path))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file or folder; give a run folder, a "
                                f".keras file or a model name")
    if path.suffix != ".keras":
        raise ValueError(f"{path}: export takes a run folder, a .keras file or a model name")
    card = card_beside(path)
    if card is not None:
        return _keras_source(path, card.spec, card.input_size, card.input_multiple, data,
                             defaults, path.parent / f"{path.stem}_{EXPORT_DIR}", str(path))
    missing = [name for name in (CONFIG_FILENAME, SPEC_FILENAME)
               if not (path.parent / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: {' and '.join(missing)} missing beside it (the "
                                f"classes and size of the model); export its run folder or "
                                f"put the file in a model folder with a card.json")
    config = RunConfig.load(path.parent / CONFIG_FILENAME)
    return _keras_source(path, DatasetSpec.load(path.parent / SPEC_FILENAME),
                         config.data.input_size, config.model.input_multiple,
                         data or config.data.source, config.data,
                         path.parent / f"{path.stem}_{EXPORT_DIR}", str(path))


def _keras_source(path: Path, spec: DatasetSpec, input_size, input_multiple: int,
                  data: str | None, splits: DataConfig, export_dir: Path,
                  name: str) -> ExportSource:
    import pixelwise.losses  # noqa: F401  (registers the custom objects)
    from pixelwise.models import load_model

    model = load_model(path, compile=False)
    if model.outputs[0].shape[-1] != spec.num_classes:
        raise ValueError(f"{path}: the model predicts {model.outputs[0].shape[-1]} classes "
                         f"but its description lists {spec.num_classes}")
    return ExportSource(model, spec, tuple(input_size), int(input_multiple), data,
                        splits.train_split, splits.test_split, splits.split_seed,
                        export_dir, name)


__all__ = ["EXPORT_DIR", "ExportSource", "open_export_source"]
