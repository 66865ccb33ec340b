"""Named trained models: the ones that ship with pixelwise and the ones a user adds.

    list_models()                                  # every ModelCard, searched folders first
    card = find_model("camvid-toy")                # its card (classes, size, scores, ...)
    resolve_model_path("camvid-toy")               # .../zoo_models/camvid-toy/model.keras
    resolve_model_path("camvid-toy", kind="tflite")   # its model_int8.tflite
    resolve_model_path("runs/voc")                 # a path: returned unchanged

(The model *registry*, :mod:`pixelwise.models.registry`, maps architecture names to
builders; this maps names of trained models to their files.)

A model is a folder named after it holding ``card.json`` and the files the card lists:

    zoo_models/camvid-toy/
      card.json           what the model is (below)
      model.keras         Keras weights and architecture (kind "keras")
      model_int8.tflite   optional: an export for small devices (kind "tflite")

card.json::

    {"format": "pixelwise-model-card", "version": 1,
     "name": "camvid-toy", "description": "DeepLab v3 + MobileNetV2 on CamVid road scenes",
     "files": {"keras": "model.keras", "tflite": "model_int8.tflite"},
     "classes": {"class_names": [...], "colors": [[...], ...], "ignore_label": 11},
     "input_size": [360, 480],
     "model": {"name": "deeplabv3", "backbone": "mobilenetv2", ...},
     "training": {"data": "...", "recipe": "textbook", "command": "pixelwise train ..."},
     "scores": {"split": "test", "mean_iou": 0.61, "pixel_accuracy": 0.88}}

``classes`` is a dataset description (:class:`~pixelwise.data.spec.DatasetSpec`), ``model``
the model section of a run's config.json (its architecture, so ``train --init-from NAME``
rebuilds it), ``input_size`` the (height, width) it runs at; ``training`` and ``scores``
are free-form records of how it was made and how well it does.

Where models are found: the folders of ``$PIXELWISE_MODELS`` (separated by ``:``, ``;`` on
Windows) in order, then the folder shipped inside the package (``zoo_models/``); the first
folder holding a name wins. A path that exists is always a path, never a name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from pixelwise.config import ModelConfig
from pixelwise.data.spec import DatasetSpec
from pixelwise.io import read_json, size_pair, write_json_atomically

MODELS_PATH_VARIABLE = "PIXELWISE_MODELS"
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent / "zoo_models"
CARD_FILENAME = "card.json"
CARD_FORMAT = "pixelwise-model-card"
CARD_VERSION = 1
FILE_KINDS = ("keras", "tflite")
FILE_SUFFIXES = {"keras": ".keras", "tflite": ".tflite"}
# A name never ends like a model file (a mistyped path stays a path in the messages).
MODEL_FILE_SUFFIXES = (".keras", ".tflite", ".h5", ".json")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Settings of a run's model section that are no part of a shipped model's architecture.
NOT_ARCHITECTURE = ("init_weights", "init_class_map", "backbone_weights")


@dataclass(frozen=True)
class ModelCard:
    """What a named model is (see the module docstring); ``folder`` holds its files."""

    name: str
    folder: Path
    files: dict[str, str]
    spec: DatasetSpec
    input_size: tuple[int, int]
    model: ModelConfig
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)

    @property
    def input_multiple(self) -> int:
        """What its input height and width must be multiples of (its stride)."""
        return self.model.input_multiple

    def path(self, kind: str | None = None) -> Path:
        """The file of ``kind`` ("keras" or "tflite"; None: the .keras where the model has
        one, else its .tflite). Raises ValueError for a kind it lacks and
        FileNotFoundError for a file the card lists but the folder lacks."""
        if kind is None:
            kind = "keras" if "keras" in self.files else "tflite"
        if kind not in FILE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FILE_KINDS)}, got {kind!r}")
        if kind not in self.files:
            raise ValueError(f"model {self.name} has no {kind} file (it has: "
                             f"{', '.join(sorted(self.files))})")
        path = self.folder / self.files[kind]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; {self.folder / CARD_FILENAME} lists it")
        return path

    def to_dict(self) -> dict[str, Any]:
        """The card as card.json holds it."""
        return {"format": CARD_FORMAT, "version": CARD_VERSION, "name": self.name,
                "description": self.description, "files": dict(self.files),
                "classes": self.spec.to_dict(), "input_size": list(self.input_size),
                "model": architecture_dict(self.model), "training": dict(self.training),
                "scores": dict(self.scores)}

    def save(self) -> Path:
        """Write card.json into ``folder`` (atomically); its path."""
        path = self.folder / CARD_FILENAME
        write_json_atomically(path, self.to_dict())
        return path

    def scores_text(self) -> str:
        """``mean IoU 61.2% (test)``, or ``-`` for a card without a mean IoU."""
        mean_iou = self.scores.get("mean_iou")
        if not isinstance(mean_iou, (int, float)):
            return "-"
        split = self.scores.get("split")
        return f"mean IoU {100 * mean_iou:.1f}%" + (f" ({split})" if split else "")


def architecture_dict(model: ModelConfig) -> dict[str, Any]:
    """``model``'s fields that describe the architecture, JSON-ready (tuples as lists)."""
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(model).items() if key not in NOT_ARCHITECTURE}


def read_card(folder: str | Path) -> ModelCard:
    """The card of the model folder ``folder``; ValueError naming the file when it is not
    a card this version reads."""
    folder = Path(folder)
    path = folder / CARD_FILENAME
    values = read_json(path, what="model card")
    if not isinstance(values, dict) or values.get("format") != CARD_FORMAT:
        raise ValueError(f"{path}: not a pixelwise model card (format {CARD_FORMAT!r})")
    if values.get("version") != CARD_VERSION:
        raise ValueError(f"{path}: model card version {values.get('version')!r}; this "
                         f"pixelwise reads version {CARD_VERSION}")
    try:
        files = {str(kind): str(name) for kind, name in dict(values["files"]).items()}
        architecture = {key: value for key, value in dict(values["model"]).items()
                        if key not in NOT_ARCHITECTURE}
        unknown = sorted(set(architecture) - {item.name for item in fields(ModelConfig)})
        if unknown:
            raise ValueError(f"unknown model field(s) {', '.join(unknown)}")
        card = ModelCard(
            name=str(values["name"]), folder=folder, files=files,
            spec=DatasetSpec.from_dict(values["classes"], source="classes"),
            input_size=size_pair(values["input_size"], what="input_size"),
            model=ModelConfig(**architecture, backbone_weights=None),
            description=str(values.get("description", "")),
            training=dict(values.get("training") or {}), scores=dict(values.get("scores") or {}))
    except (KeyError, TypeError, ValueError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise ValueError(f"{path}: {detail}") from None
    if card.name != folder.name:
        raise ValueError(f"{path}: names the model {card.name!r}, but its folder is "
                         f"{folder.name!r}; the two must agree")
    bad = sorted(kind for kind, name in files.items()
                 if kind not in FILE_KINDS or Path(name).name != name
                 or not name.endswith(FILE_SUFFIXES[kind]))
    if not files or bad:
        raise ValueError(f"{path}: 'files' must map keras and/or tflite to a .keras / .tflite "
                         f"file in the model's folder" + (f" (not {', '.join(bad)})" if bad
                                                          else ""))
    return card


def check_model_name(name: str) -> str:
    """``name`` if it can name a model (letters, digits, ``.``, ``_``, ``-``; not ending
    like a model file), else ValueError."""
    if not NAME_PATTERN.fullmatch(name) or name.lower().endswith(MODEL_FILE_SUFFIXES):
        raise ValueError(f"{name!r}: a model name is letters, digits, '.', '_' and '-' "
                         f"(e.g. camvid-toy), not ending in {', '.join(MODEL_FILE_SUFFIXES)}")
    return name


def model_dirs() -> list[Path]:
    """The folders searched for models, in order: ``$PIXELWISE_MODELS``'s, then the
    shipped one."""
    listed = os.environ.get(MODELS_PATH_VARIABLE, "")
    extra = [Path(part).expanduser() for part in listed.split(os.pathsep) if part.strip()]
    return [*extra, SHIPPED_MODELS_DIR]


def list_models() -> list[ModelCard]:
    """The card of every model found (see :func:`model_dirs`), by name; a name in an
    earlier folder hides the same name further on. A damaged card raises ValueError
    naming it."""
    cards: dict[str, ModelCard] = {}
    for root in model_dirs():
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if (folder / CARD_FILENAME).is_file() and folder.name not in cards:
                cards[folder.name] = read_card(folder)
    return [cards[name] for name in sorted(cards)]


def model_names() -> list[str]:
    """The names of the models found, sorted."""
    return [card.name for card in list_models()]


def find_model(name: str) -> ModelCard:
    """The card of the model ``name``; FileNotFoundError listing the known names."""
    if NAME_PATTERN.fullmatch(name):
        for root in model_dirs():
            if (root / name / CARD_FILENAME).is_file():
                return read_card(root / name)
    raise FileNotFoundError(f"{name}: no model of that name; {known_models_text()}")


def find_named(name: str) -> ModelCard:
    """:func:`find_model` for text that could also have been a path: its error says that
    no file or folder of that name exists either."""
    try:
        return find_model(name)
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such file or folder, and no model of that "
                                f"name; {known_models_text()}") from None


def known_models_text() -> str:
    """One sentence naming the models found, or saying how to add one."""
    names = model_names()
    if names:
        return f"known models: {', '.join(names)} (see `pixelwise model list`)"
    return (f"no models are registered ({SHIPPED_MODELS_DIR} holds none; "
            f"{MODELS_PATH_VARIABLE}=DIR adds a folder of models)")


def is_model_name(text: str | os.PathLike) -> bool:
    """Whether ``text`` is to be looked up as a model name: not an existing path, no
    folder separator and no model file ending."""
    text = os.fspath(text)
    return (bool(text) and not Path(text).exists() and "/" not in text
            and os.sep not in text and not text.lower().endswith(MODEL_FILE_SUFFIXES))


def resolve_model_path(name_or_path: str | os.PathLike, kind: str | None = None) -> Path:
    """The file of a registered model (``kind``: "keras", "tflite" or None for the .keras
    where it has one, see :meth:`ModelCard.path`); any path is returned unchanged (existing
    or not: the caller's own message names a missing file). A name no folder holds raises
    FileNotFoundError listing the known names."""
    if is_model_name(name_or_path):
        return find_named(os.fspath(name_or_path)).path(kind)
    return Path(name_or_path)


def card_beside(path: str | os.PathLike) -> ModelCard | None:
    """The card of the model folder a model file lies in, or None where there is none."""
    folder = Path(path).parent
    return read_card(folder) if (folder / CARD_FILENAME).is_file() else None


def card_of(name_or_path: str | os.PathLike) -> ModelCard | None:
    """The card of a model name, or of a model file in a model folder; None for anything
    else (a run folder, a file without a card)."""
    if is_model_name(name_or_path):
        return find_named(os.fspath(name_or_path))
    path = Path(name_or_path)
    return card_beside(path) if path.is_file() else None


def package_run(run_dir: str | Path, models_dir: str | Path, name: str, *,
                description: str = "", tflite: str | Path | None = None,
                training: dict[str, Any] | None = None,
                scores: dict[str, Any] | None = None) -> ModelCard:
    """Make the best model of a run the model ``name`` in ``models_dir``: its best.keras
    (and ``tflite``, an export of it) copied into ``models_dir/name/`` and a card written
    from the run's settings. ``scores`` default to the run's best validation mean IoU;
    ``training`` to its data, recipe and epochs (:func:`pixelwise.provenance.training_history`
    gives every stage behind it)."""
    from pixelwise.config import RunConfig
    from pixelwise.runs import RunFolder

    run = RunFolder(Path(run_dir))
    config = RunConfig.load(run.config_path)
    state = run.read_state() or {}
    if not run.best_model_path.is_file():
        raise FileNotFoundError(f"{run.best_model_path}: missing; train the run first")
    check_model_name(name)
    folder = Path(models_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run.best_model_path, folder / "model.keras")
    files = {"keras": "model.keras"}
    if tflite is not None:
        shutil.copyfile(tflite, folder / Path(tflite).name)
        files["tflite"] = Path(tflite).name
    if scores is None:
        best = state.get("best_val_mean_iou")
        scores = {} if best is None else {"split": config.data.val_split, "mean_iou": best}
    card = ModelCard(
        name=name, folder=folder, files=files, spec=DatasetSpec.load(run.spec_path),
        input_size=config.data.input_size, model=config.model, description=description,
        training=training if training is not None else {
            "data": config.data.source, "recipe": config.train.recipe,
            "epochs": state.get("epochs_done"), "input_size": list(config.data.input_size)},
        scores=scores)
    card.save()
    return read_card(folder)


def card_json(card: ModelCard) -> str:
    """The card as indented JSON text, with the folder it was read from."""
    return json.dumps({**card.to_dict(), "folder": str(card.folder)}, indent=2)


__all__ = ["CARD_FILENAME", "FILE_KINDS", "MODELS_PATH_VARIABLE", "ModelCard",
           "SHIPPED_MODELS_DIR", "architecture_dict", "card_beside", "card_json", "card_of",
           "check_model_name", "find_model", "find_named", "is_model_name",
           "known_models_text", "list_models", "model_dirs", "model_names", "package_run",
           "read_card", "resolve_model_path"]
