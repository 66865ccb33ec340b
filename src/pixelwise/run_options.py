"""A run configuration from flat options, the ones `pixelwise train` takes.

    config = run_config_from_options("data/VOCdevkit/VOC2012", model="unet",
                                     backbone="mobilenetv2", input_size="256", epochs=10)

Every keyword is a `pixelwise train` flag with dashes as underscores (``--output-stride``
-> ``output_stride``) and the same default; the defaults are the configuration classes'
own (:mod:`pixelwise.config`), so they are written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
    backbone: str = ModelConfig.backbone,
    backbone_weights: str | Path | None = ModelConfig.backbone_weights,
    output_stride: int | str | None = ModelConfig.output_stride,
    width_multiplier: float = ModelConfig.width_multiplier,
    multi_grid: bool = False,
    aspp_filters: int | None = ModelConfig.aspp_filters,
    aspp_rates: Sequence[int] | None = ModelConfig.aspp_rates,
    low_level_filters: int | None = ModelConfig.low_level_filters,
    decoder_filters: int | None = ModelConfig.decoder_filters,
    dropout: float = ModelConfig.dropout,
    bn_momentum: float = ModelConfig.bn_momentum,
    init_weights: str | Path | None = ModelConfig.init_weights,
    epochs: int = TrainConfig.epochs,
    batch_size: int = TrainConfig.batch_size,
    input_size: int | str | Sequence[int] = DataConfig.input_size,
    recipe: str = TrainConfig.recipe,
    learning_rate: float | None = TrainConfig.learning_rate,
    weight_decay: float = TrainConfig.weight_decay,
    loss: str = TrainConfig.loss,
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
        output_stride: None for the model's default, or an int (or its text).
        multi_grid: ResNet50 conv5 rates x (1, 2, 4).
        init_weights: a trained model file or run folder to start from (stored absolute).
        input_size: S, "S", "HxW" or (height, width).
        mixed_precision: "none" or None, "float16" or "bfloat16".
        cache: keep decoded images in memory after the first epoch.
        Others: the fields of the same name in :mod:`pixelwise.config`.

    Raises ValueError, naming the field, for values the configuration refuses.
    """
    if backbone_weights is not None and str(backbone_weights) not in ("imagenet", NO_WEIGHTS):
        backbone_weights = str(Path(backbone_weights).resolve())
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
            multi_grid=MULTI_GRID if multi_grid else None,
            width_multiplier=width_multiplier, dropout=dropout, aspp_filters=aspp_filters,
            aspp_rates=aspp_rates, low_level_filters=low_level_filters,
            decoder_filters=decoder_filters, bn_momentum=bn_momentum,
            init_weights=str(Path(init_weights).resolve()) if init_weights else None),
        train=TrainConfig(
            recipe=recipe, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
            weight_decay=weight_decay, loss=loss, class_weighting=class_weighting, seed=seed,
            mixed_precision=None if mixed_precision == NO_MIXED_PRECISION else mixed_precision,
            jit_compile=jit_compile, tensorboard=tensorboard, lr_scaling=lr_scaling,
            sync_batchnorm=sync_batchnorm, time_budget=time_budget))


__all__ = ["MULTI_GRID", "run_config_from_options"]
