"""The settings of a training run: data, model and training, saved as config.json in the run.

    config = RunConfig(data=DataConfig(source="data/VOCdevkit/VOC2012", input_size=(384, 384)),
                       model=ModelConfig(name="deeplabv3"), train=TrainConfig(epochs=25))
    config.save("runs/voc/config.json")
    assert RunConfig.load("runs/voc/config.json") == config

Every field has a typed default; ``validate`` (called on construction) refuses impossible
values with a message that names the field. ``RunConfig.differences`` lists what changed
between two configurations, which is how a run folder tells a resume from a different run.

Three training recipes (``TrainConfig.recipe``):

- ``"textbook"`` (default): Adam, learning rate 1e-3, ReduceLROnPlateau on val_loss (x0.1
  after 3 epochs without improvement, down to 1e-8), EarlyStopping after 6.
- ``"paper"`` (DeepLab v3): SGD with momentum 0.9, learning rate 0.007 decayed by the "poly"
  policy ``lr * (1 - step / total_steps) ** 0.9`` over the whole run; no plateau reduction
  and no early stopping.
- ``"adamw_cosine"`` (training from scratch): AdamW, learning rate 1e-3 reached by a linear
  warm-up over the first epoch, then a cosine decay to 0 over the rest of the run; weight
  decay from ``weight_decay`` (decoupled); no plateau reduction and no early stopping.

A run can also stop on a wall-clock budget (``TrainConfig.time_budget``): after the epoch
when the next one would pass it, counting every part of a resumed run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pixelwise.class_map import format_class_map, parse_class_map
from pixelwise.data.voc import DEFAULT_SPLIT_SEED
from pixelwise.io import size_pair, write_text_atomically

CONFIG_FORMAT = "pixelwise-run-config"
CONFIG_VERSION = 1

RECIPES = ("textbook", "paper", "adamw_cosine")
MIXED_PRECISION_POLICIES = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
CLASS_WEIGHTINGS = ("per_image", "median_frequency", "sqrt_median_frequency", "none")
# The losses that take class weights (pixelwise.losses.WeightedLoss); the others are refused
# a class_weighting other than per_image when the configuration is made, not after.
LOSSES_WITH_CLASS_WEIGHTS = ("weighted_ce", "dice", "ce_dice", "ce_lovasz", "ohem")
# How the learning rate follows the global batch (see pixelwise.distribute).
LR_SCALINGS = ("linear", "sqrt", "none")
# The recipes' defaults where a field is left None.
RECIPE_LEARNING_RATE = {"textbook": 1e-3, "paper": 7e-3, "adamw_cosine": 1e-3}


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is fed.

    Args:
        source: a VOC-layout dataset folder (or tar) or a records folder from
            ``pixelwise data prepare``; stored as an absolute path.
        train_split, val_split, test_split: split names (see ``pixelwise.data.voc``).
        split_seed: the seed of the val/test halves of val.txt.
        input_size: (height, width) the images are resized or cropped to in training and
            in the resized evaluation protocol.
        augment: training augmentation: "textbook", "deeplab" or "none".
        val_resolution: how validation images are scored during training: "resized" to
            ``input_size`` (default) or at their "original" size (padded to the stride),
            for training crops smaller than the images, e.g. CamVid's 360 x 480 frames.
        cache: None, or "memory" to keep decoded examples after the first epoch.
        check: run the data check on the train and val splits before training.
    """

    source: str
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    split_seed: int = DEFAULT_SPLIT_SEED
    input_size: tuple[int, int] = (384, 384)
    augment: str = "textbook"
    val_resolution: str = "resized"
    cache: str | None = None
    check: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", size_pair(self.input_size, what="data.input_size"))
        if self.augment not in ("textbook", "deeplab", "none"):
            raise ValueError(f"data.augment must be textbook, deeplab or none, got {self.augment!r}")
        if self.val_resolution not in ("resized", "original"):
            raise ValueError(f"data.val_resolution must be resized or original, got "
                             f"{self.val_resolution!r}")
        if self.cache not in (None, "memory"):
            raise ValueError(f"data.cache must be None or 'memory', got {self.cache!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build (see ``pixelwise.models.build_model``).

    Args:
        name: "deeplabv3", "deeplabv3plus", "unet" or "lraspp".
        backbone: "resnet50", "mobilenetv2", "mobilenetv3large" or "mobilenetv3small";
            None: the model's own (the registry's ``default_backbone``: mobilenetv3large
            for lraspp, resnet50 for the others), stored resolved.
        output_stride: DeepLab, LR-ASPP 16 or 8 (None: the model's default); U-Net 32.
        backbone_weights: "imagenet", None (random init) or the path of a weights file.
        multi_grid: ResNet50 conv5 rate multipliers, e.g. (1, 2, 4), or None.
        width_multiplier: MobileNetV2's alpha.
        dropout: dropout before the classifier.
        aspp_filters: DeepLab ASPP channels (None: 256, as in the paper).
        aspp_rates: DeepLab ASPP atrous rates (None: (6, 12, 18) x 16 / output stride);
            () keeps only the 1x1 and image-pooling branches (DeepLab's mobile setting).
        low_level_filters, decoder_filters: DeepLab v3+ decoder channels (None: 48 and
            256, as in the paper); small values make a light decoder for real time.
        decoder_conv: DeepLab v3+ decoder's two 3x3 convs, "dense" (None: as in the
            paper's ResNet models) or "separable" (depthwise 3x3 + pointwise 1x1, as in its
            Xception model; cheaper where the decoder dominates a light model).
        bn_momentum: momentum of every BatchNormalization layer's moving statistics.
            Keras's 0.99 suits long runs; short from-scratch runs need less (0.9), or the
            moving statistics lag behind the weights and inference-mode scores collapse.
        init_weights: a trained model whose weights start the run: a .keras file, a run
            folder (its best.keras), a registered model name (``pixelwise.zoo``) or a
            .weights.h5 file of this very architecture. Its classes may differ: every layer
            that fits is kept, the classifier rows of corresponding classes carry over
            (``pixelwise.transfer``); None: backbone_weights decide.
        init_class_map: which old class starts which new one, ``(("road", "floor"), ...)``
            or the text ``"road=floor,sky=sky"`` (see ``pixelwise.class_map``); None:
            classes of the same name.
    """

    name: str = "deeplabv3"
    backbone: str | None = None
    output_stride: int | None = None
    backbone_weights: str | None = "imagenet"
    multi_grid: tuple[int, ...] | None = None
    width_multiplier: float = 1.0
    dropout: float = 0.1
    aspp_filters: int | None = None
    aspp_rates: tuple[int, ...] | None = None
    low_level_filters: int | None = None
    decoder_filters: int | None = None
    decoder_conv: str | None = None
    bn_momentum: float = 0.99
    init_weights: str | None = None
    init_class_map: tuple[tuple[str, str], ...] | None = None

    def __post_init__(self) -> None:
        if self.backbone is None:
            from pixelwise.models.registry import default_backbone

            object.__setattr__(self, "backbone", default_backbone(self.name))
        try:
            object.__setattr__(self, "init_class_map", parse_class_map(self.init_class_map))
        except ValueError as error:
            raise ValueError(f"model.init_class_map: {error}") from None
        if self.init_class_map and not self.init_weights:
            raise ValueError(f"model.init_class_map ({format_class_map(self.init_class_map)}) "
                             f"maps the classes of an init model; give init_weights too")
        for name in ("multi_grid", "aspp_rates"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(rate) for rate in value))
        if not 0.0 <= self.bn_momentum < 1.0:
            raise ValueError(f"model.bn_momentum must be in [0, 1), got {self.bn_momentum}")
        aspp_set = self.aspp_filters is not None or self.aspp_rates is not None
        if aspp_set and self.name not in ("deeplabv3", "deeplabv3plus"):
            raise ValueError("model.aspp_filters and model.aspp_rates apply to the DeepLab "
                             f"models only; leave them unset for {self.name}")
        decoder_set = (self.low_level_filters is not None or self.decoder_filters is not None
                       or self.decoder_conv is not None)
        if decoder_set and self.name != "deeplabv3plus":
            raise ValueError("model.low_level_filters, decoder_filters and decoder_conv apply "
                             f"to deeplabv3plus only; leave them unset for {self.name}")
        if self.decoder_conv is not None:
            from pixelwise.models.deeplabv3 import DECODER_CONVS

            if self.decoder_conv not in DECODER_CONVS:
                raise ValueError(f"model.decoder_conv {self.decoder_conv!r}: choose "
                                 f"{' or '.join(DECODER_CONVS)}")
        for name in ("low_level_filters", "decoder_filters"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"model.{name} must be at least 1, got {value}")

    @property
    def input_multiple(self) -> int:
        """What the input height and width must be multiples of (DeepLab: its output
        stride, default 16; U-Net: 32), as the model registry says."""
        from pixelwise.models.registry import input_multiple

        return input_multiple(self.name, self.output_stride)

    def builder_options(self) -> dict[str, Any]:
        """Keyword arguments for ``build_model`` (besides ``num_classes``)."""
        options: dict[str, Any] = dict(
            backbone=self.backbone, output_stride=self.output_stride,
            backbone_weights=self.backbone_weights, multi_grid=self.multi_grid,
            width_multiplier=self.width_multiplier, dropout=self.dropout)
        if self.aspp_filters is not None:
            options["aspp_filters"] = self.aspp_filters
        for name in ("aspp_rates", "low_level_filters", "decoder_filters", "decoder_conv"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        return options


@dataclass(frozen=True)
class TrainConfig:
    """How to train (see the module docstring for the two recipes).

    Args:
        recipe: "textbook", "paper" or "adamw_cosine" (see the module docstring).
        epochs: passes over the training split.
        batch_size: images per step on each replica; a step takes ``batch_size x
            replicas`` images (see ``pixelwise.distribute``).
        learning_rate: initial learning rate for one replica's batch (None: 1e-3
            textbook, 0.007 paper), scaled to the global batch by ``lr_scaling``.
        lr_scaling: "linear" (x replicas, the default), "sqrt" (x sqrt(replicas)) or
            "none"; with one replica the rate is used as given.
        sync_batchnorm: with several replicas, batch normalisation uses the statistics
            of the global batch (all-reduced every step) instead of each replica's share.
        momentum: SGD momentum (paper recipe).
        poly_power: exponent of the poly decay (paper recipe).
        weight_decay: decoupled weight decay of the optimizer (0: none).
        reduce_lr_factor, reduce_lr_patience, min_learning_rate: ReduceLROnPlateau on
            val_loss (textbook recipe).
        early_stopping_patience: epochs without val_loss improvement before stopping
            (textbook recipe; 0: never stop early).
        loss: a name from ``pixelwise.losses.LOSS_NAMES`` ("ce_dice" by default).
        loss_gradient: "autodiff" (default) or "written": how "ce", "weighted_ce" and
            "ce_dice" get their gradient (``pixelwise.losses.LOSS_GRADIENTS``).
        class_weighting: "per_image" (the loss's own per-image weights), "median_frequency"
            (from the training split's pixel counts), "sqrt_median_frequency" (their square
            roots: rare classes still count more, without being pushed onto their
            neighbours) or "none" (all classes weigh 1).
        seed: seeds the weights' initialisation, the shuffle order and the augmentation.
        mixed_precision: None, "float16" or "bfloat16".
        jit_compile: compile the training step with XLA (slow to train on CPUs, see
            DESIGN.md).
        recompute: recompute the backbone's stages in the backward pass instead of keeping
            their activations (less memory, a slower step; ``pixelwise.models.recompute``).
        tensorboard: write TensorBoard logs to the run's tensorboard/ folder.
        time_budget: seconds of wall time the run may take, all its parts together (None:
            no limit); it stops after the epoch when the next one would pass the budget.
        freeze_backbone_epochs: the first N epochs train with the backbone frozen (its
            weights fixed, its batch norm in inference mode), then everything trains; for
            fine-tuning a trained model to new classes (see ``pixelwise.training_phases``).
    """

    recipe: str = "textbook"
    epochs: int = 25
    batch_size: int = 8
    learning_rate: float | None = None
    momentum: float = 0.9
    poly_power: float = 0.9
    weight_decay: float = 0.0
    reduce_lr_factor: float = 0.1
    reduce_lr_patience: int = 3
    min_learning_rate: float = 1e-8
    early_stopping_patience: int = 6
    loss: str = "ce_dice"
    loss_gradient: str = "autodiff"
    class_weighting: str = "per_image"
    seed: int = 0
    mixed_precision: str | None = None
    jit_compile: bool = False
    recompute: bool = False
    tensorboard: bool = True
    lr_scaling: str = "linear"
    sync_batchnorm: bool = False
    time_budget: float | None = None
    freeze_backbone_epochs: int = 0

    def __post_init__(self) -> None:
        if int(self.freeze_backbone_epochs) < 0:
            raise ValueError(f"train.freeze_backbone_epochs must be >= 0, got "
                             f"{self.freeze_backbone_epochs}")
        if self.recipe not in RECIPES:
            raise ValueError(f"train.recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate is not None and not 0 < self.learning_rate < math.inf:
            raise ValueError(f"train.learning_rate must be a positive finite number, got "
                             f"{self.learning_rate}")
        for name in ("weight_decay", "min_learning_rate"):
            value = getattr(self, name)
            if not 0 <= value < math.inf:
                raise ValueError(f"train.{name} must be a finite number >= 0, got {value}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"train.momentum must be in [0, 1), got {self.momentum}")
        if not 0 < self.poly_power < math.inf:
            raise ValueError(f"train.poly_power must be a positive finite number, got "
                             f"{self.poly_power}")
        if self.mixed_precision not in (None, *MIXED_PRECISION_POLICIES):
            raise ValueError(f"train.mixed_precision must be None, float16 or bfloat16, got "
                             f"{self.mixed_precision!r}")
        if self.loss_gradient not in ("autodiff", "written"):
            raise ValueError(f"train.loss_gradient must be autodiff or written, got "
                             f"{self.loss_gradient!r}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(f"train.class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)}, "
                             f"got {self.class_weighting!r}")
        if self.class_weighting != "per_image" and self.loss not in LOSSES_WITH_CLASS_WEIGHTS:
            raise ValueError(f"train.class_weighting {self.class_weighting} needs a loss that "
                             f"takes class weights ({', '.join(LOSSES_WITH_CLASS_WEIGHTS)}); "
                             f"loss {self.loss} does not")
        if not 0.0 < self.reduce_lr_factor < 1.0:
            raise ValueError(f"train.reduce_lr_factor must be in (0, 1), got {self.reduce_lr_factor}")
        if self.early_stopping_patience < 0 or self.reduce_lr_patience < 0:
            raise ValueError("train.early_stopping_patience and train.reduce_lr_patience must "
                             "be >= 0")
        if self.time_budget is not None and not (math.isfinite(self.time_budget)
                                                 and self.time_budget > 0):
            raise ValueError(f"train.time_budget must be a positive number of seconds or "
                             f"None, got {self.time_budget}")
        if self.lr_scaling not in LR_SCALINGS:
            raise ValueError(f"train.lr_scaling must be one of {', '.join(LR_SCALINGS)}, "
                             f"got {self.lr_scaling!r}")

    @property
    def initial_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return RECIPE_LEARNING_RATE[self.recipe]

    @property
    def precision_policy(self) -> str:
        """The Keras dtype policy name: "float32", "mixed_float16" or "mixed_bfloat16"."""
        return MIXED_PRECISION_POLICIES.get(self.mixed_precision or "", "float32")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a training run; saved as the run folder's config.json."""

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        multiple = self.model.input_multiple
        height, width = self.data.input_size
        if height % multiple or width % multiple:
            nearest = tuple(max(multiple, round(side / multiple) * multiple)
                            for side in (height, width))
            raise ValueError(
                f"data.input_size {height}x{width}: {self.model.name} needs multiples of "
                f"{multiple}; use e.g. {nearest[0]}x{nearest[1]}")

    def to_dict(self) -> dict:
        """JSON-ready: tuples become lists."""
        return {"format": CONFIG_FORMAT, "version": CONFIG_VERSION,
                "data": _jsonable(asdict(self.data)), "model": _jsonable(asdict(self.model)),
                "train": _jsonable(asdict(self.train))}

    @classmethod
    def from_dict(cls, values: dict, source: str = "run configuration") -> "RunConfig":
        """The inverse of ``to_dict``; unknown or missing sections and fields are errors."""
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a JSON object")
        if values.get("format") != CONFIG_FORMAT or values.get("version") != CONFIG_VERSION:
            raise ValueError(f"{source}: not a pixelwise run configuration (format "
                             f"{values.get('format')!r}, version {values.get('version')!r}; "
                             f"expected {CONFIG_FORMAT!r} version {CONFIG_VERSION})")
        sections = {}
        for name, section_class in (("data", DataConfig), ("model", ModelConfig),
                                    ("train", TrainConfig)):
            section = values.get(name)
            if not isinstance(section, dict):
                raise ValueError(f"{source}: section {name!r} is missing")
            known = {item.name for item in fields(section_class)}
            unknown = sorted(set(section) - known)
            if unknown:
                raise ValueError(f"{source}: unknown field(s) in {name!r}: {', '.join(unknown)}")
            try:
                sections[name] = section_class(**section)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{source}: {error}") from error
        return cls(**sections)

    def save(self, path: str | Path) -> None:
        """Write as JSON (atomically: a temporary file renamed into place)."""
        write_text_atomically(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{path}: no run configuration here; is this a run "
                                    f"folder written by `pixelwise train`?") from error
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: cannot read the run configuration: {error}") from error
        return cls.from_dict(values, source=str(path))

    def differences(self, other: "RunConfig") -> list[str]:
        """``"section.field: mine -> other's"`` for every field that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        changes = []
        for section in ("data", "model", "train"):
            for key in mine[section]:
                if mine[section][key] != theirs[section][key]:
                    changes.append(f"{section}.{key}: {mine[section][key]!r} -> "
                                   f"{theirs[section][key]!r}")
        return changes

    def with_changes(self, **sections: dict) -> "RunConfig":
        """A copy with fields replaced, e.g. ``with_changes(train={"epochs": 3})``."""
        updated = {name: replace(getattr(self, name), **values) for name, values in sections.items()}
        return replace(self, **updated)


def _jsonable(values: dict) -> dict:
    return {key: _as_lists(value) for key, value in values.items()}


def _as_lists(value):
    """Tuples (nested ones too) as lists, as JSON reads them back."""
    return [_as_lists(item) for item in value] if isinstance(value, tuple) else value


__all__ = ["CLASS_WEIGHTINGS", "DataConfig", "LR_SCALINGS", "ModelConfig", "RECIPES", "RunConfig",
           "TrainConfig"]
