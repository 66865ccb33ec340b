"""A run configuration from flat options, the ones `pixelwise train` takes.

    config = run_config_from_options("data/VOCdevkit/VOC2012", model="unet",
                                     backbone="mobilenetv2", input_size="256", epochs=10)

Every keyword is a `pixelwise train` flag with dashes as underscores (``--output-stride``
-> ``output_stride``) and the same default; the defaults are the configuration classes'
own (:mod:`pixelwise.config`), so they are written once.

Starting from a trained model whose architecture is recorded (a registered name, a run
folder), its architecture can stand in for the model flags not given:

    options = {**architecture_of_init("camvid-toy"), "epochs": 10}   # flags given win
    config = run_config_from_options("data/mine", init_weights="camvid-toy", **options)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pixelwise.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pixelwise.io import size_pair

# The flag values that stand for None in the configuration.
NO_WEIGHTS = "none"
NO_MIXED_PRECISION = "none"
MULTI_GRID = (1, 2, 4)


def run_config_from_options(
    data: str | Path,
    *,
    model: str = ModelConfig.name,
    backbone: str | None = ModelConfig.backbone,
    backbone_weights: str | Path | None = ModelConfig.backbone_weights,
    output_stride: int | str | None = ModelConfig.output_stride,
    width_multiplier: float = ModelConfig.width_multiplier,
    multi_grid: bool | Sequence[int] = False,
    aspp_filters: int | None = ModelConfig.aspp_filters,
    aspp_rates: Sequence[int] | None = ModelConfig.aspp_rates,
    low_level_filters: int | None = ModelConfig.low_level_filters,
    decoder_filters: int | None = ModelConfig.decoder_filters,
    decoder_conv: str | None = ModelConfig.decoder_conv,
    dropout: float = ModelConfig.dropout,
    bn_momentum: float = ModelConfig.bn_momentum,
    init_weights: str | Path | None = ModelConfig.init_weights,
    class_map: str | Sequence | None = None,
    freeze_backbone_epochs: int = TrainConfig.freeze_backbone_epochs,
    epochs: int = TrainConfig.epochs,
    batch_size: int = TrainConfig.batch_size,
    input_size: int | str | Sequence[int] = DataConfig.input_size,
    recipe: str = TrainConfig.recipe,
    learning_rate: float | None = TrainConfig.learning_rate,
    weight_decay: float = TrainConfig.weight_decay,
    loss: str = TrainConfig.loss,
    loss_gradient: str = TrainConfig.loss_gradient,
    class_weighting: str = TrainConfig.class_weighting,
    augment: str = DataConfig.augment,
    val_resolution: str = DataConfig.val_resolution,
    train_split: str = DataConfig.train_split,
    val_split: str = DataConfig.val_split,
    test_split: str = DataConfig.test_split,
    split_seed: int = DataConfig.split_seed,
    seed: int = TrainConfig.seed,
    mixed_precision: str | None = TrainConfig.mixed_precision,
    jit_compile: bool = TrainConfig.jit_compile,
    recompute: bool = TrainConfig.recompute,
    tensorboard: bool = TrainConfig.tensorboard,
    cache: bool = False,
    check: bool = DataConfig.check,
    lr_scaling: str = TrainConfig.lr_scaling,
    sync_batchnorm: bool = TrainConfig.sync_batchnorm,
    time_budget: float | None = TrainConfig.time_budget,
) -> RunConfig:
    """The :class:`~pixelwise.config.RunConfig` the flags of `pixelwise train` describe.

    Args:
        data: the dataset (a VOC-layout folder or tar, or a records folder); stored
            absolute.
        backbone_weights: "imagenet", "none" or None (random init), or a weights file
            (stored absolute).
        backbone: a backbone name, or None for the model's own (``ModelConfig.backbone``).
        output_stride: None for the model's default, or an int (or its text).
        multi_grid: ResNet50 conv5 rates x (1, 2, 4) (True), or the rates themselves.
        init_weights: a trained model to start from: a file or run folder (stored
            absolute) or a registered model name (stored as it is).
        class_map: which old class starts which new one, "OLD=NEW,..." (see
            :mod:`pixelwise.class_map`); ModelConfig's ``init_class_map``.
        input_size: S, "S", "HxW" or (height, width).
        mixed_precision: "none" or None, "float16" or "bfloat16".
        cache: keep decoded images in memory after the first epoch.
        Others: the fields of the same name in :mod:`pixelwise.config`.

    Raises ValueError, naming the field, for values the configuration refuses.
    """
    if backbone_weights is not None and str(backbone_weights) not in ("imagenet", NO_WEIGHTS):
        backbone_weights = str(Path(backbone_weights).resolve())
    if init_weights:
        from pixelwise.init_source import init_reference

        init_weights = init_reference(init_weights)
    if multi_grid is True:
        multi_grid = MULTI_GRID
    return RunConfig(
        data=DataConfig(
            source=str(Path(data).resolve()), train_split=train_split, val_split=val_split,
            test_split=test_split, split_seed=split_seed, input_size=size_pair(input_size, what="input size"),
            augment=augment, val_resolution=val_resolution,
            cache="memory" if cache else None, check=check),
        model=ModelConfig(
            name=model, backbone=backbone,
            output_stride=int(output_stride) if output_stride else None,
            backbone_weights=None if backbone_weights == NO_WEIGHTS else backbone_weights,
            multi_grid=tuple(multi_grid) if multi_grid else None,
            width_multiplier=width_multiplier, dropout=dropout, aspp_filters=aspp_filters,
            aspp_rates=aspp_rates, low_level_filters=low_level_filters,
            decoder_filters=decoder_filters, decoder_conv=decoder_conv,
            bn_momentum=bn_momentum,
            init_weights=init_weights or None, init_class_map=class_map),
        train=TrainConfig(
            recipe=recipe, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
            weight_decay=weight_decay, loss=loss, loss_gradient=loss_gradient,
            class_weighting=class_weighting, seed=seed,
            mixed_precision=None if mixed_precision == NO_MIXED_PRECISION else mixed_precision,
            jit_compile=jit_compile, recompute=recompute, tensorboard=tensorboard, lr_scaling=lr_scaling,
            sync_batchnorm=sync_batchnorm, time_budget=time_budget,
            freeze_backbone_epochs=freeze_backbone_epochs))


# The options of run_config_from_options that decide the architecture.
ARCHITECTURE_OPTIONS = ("model", "backbone", "backbone_weights", "output_stride",
                        "width_multiplier", "multi_grid", "aspp_filters", "aspp_rates",
                        "low_level_filters", "decoder_filters", "decoder_conv", "dropout",
                        "bn_momentum")


def model_options(model: ModelConfig) -> dict[str, Any]:
    """The options of :func:`run_config_from_options` that build ``model``'s
    architecture again, without pretrained backbone weights (``backbone_weights``
    "none": the init model's weights replace them)."""
    return dict(model=model.name, backbone=model.backbone, backbone_weights=NO_WEIGHTS,
                output_stride=model.output_stride, width_multiplier=model.width_multiplier,
                multi_grid=model.multi_grid or False, aspp_filters=model.aspp_filters,
                aspp_rates=model.aspp_rates, low_level_filters=model.low_level_filters,
                decoder_filters=model.decoder_filters, decoder_conv=model.decoder_conv,
                dropout=model.dropout,
                bn_momentum=model.bn_momentum)


def architecture_of_init(init_weights: str | Path | None) -> dict[str, Any]:
    """:func:`model_options` of the model ``init_weights`` names (a registered name, a
    model or run folder, a .keras file beside a card or a run's config.json); {} where
    none is given or its architecture is not recorded."""
    if not init_weights:
        return {}
    from pixelwise.init_source import open_init_source

    source = open_init_source(init_weights)
    return model_options(source.model) if source.model is not None else {}


__all__ = ["ARCHITECTURE_OPTIONS", "MULTI_GRID", "architecture_of_init", "model_options",
           "run_config_from_options"]
