"""The training recipe of a RunConfig: network, optimizer and schedule, loss, metrics.

    model = build_compiled_model(config, source, steps_per_epoch=40, replicas=2)

``TrainConfig.recipe`` picks the optimizer (see ``pixelwise.config``): Adam for
"textbook", SGD with momentum and the poly decay for "paper", AdamW with a one-epoch
warm-up and a cosine decay for "adamw_cosine". Everything here is built
under the caller's dtype policy and distribution strategy scope.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import keras
import numpy as np

from pixelwise import distribute
from pixelwise.class_weights import median_frequency_weights
from pixelwise.config import RunConfig
from pixelwise.data.pipeline import DataSource
from pixelwise.data.spec import DatasetSpec
from pixelwise.losses import LOSSES_WITH_GRADIENT, build_loss
from pixelwise.metrics import MeanAccuracy, MeanIoU, PixelAccuracy
from pixelwise.models import build_model
from pixelwise.models.layers import all_layers
from pixelwise.models.recompute import enable_recomputation
from pixelwise.runs import BEST_MODEL_FILENAME


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The optimizer's learning rate now (a schedule evaluated at the current step)."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def set_batch_norm_momentum(model: keras.Model, momentum: float) -> int:
    """Set ``momentum`` on every BatchNormalization layer (nested models too); the count."""
    changed = 0
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            changed += 1
    return changed


def build_network(config: RunConfig, num_classes: int) -> keras.Model:
    """The model of ``config`` (under the current dtype policy) with its BN momentum set."""
    model = build_model(config.model.name, num_classes=num_classes, input_shape=(None, None, 3),
                        **config.model.builder_options())
    set_batch_norm_momentum(model, config.model.bn_momentum)
    return model


def load_initial_weights(model: keras.Model, source: str | Path) -> Path:
    """Set ``model``'s weights from a trained model of the same architecture and classes:
    a .keras or .weights.h5 file, or a run folder (its best.keras). The file read.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, when its
    weights do not fit ``model``."""
    path = Path(source)
    if path.is_dir():
        path = path / BEST_MODEL_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; --init-from takes a .keras or .weights.h5 "
                                f"file, or a run folder holding {BEST_MODEL_FILENAME}")
    if not path.name.endswith((".keras", ".weights.h5")):
        raise ValueError(f"{path}: not a .keras or .weights.h5 file; --init-from takes a model "
                         f"saved by Keras (a run's {BEST_MODEL_FILENAME})")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
            error = None
        except (ValueError, KeyError, OSError) as raised:
            error = raised
    # Keras only warns when it skips a part that does not fit: a partial start is refused.
    skipped = [str(warning.message) for warning in caught
               if "Skipping" in str(warning.message)
               and "for optimizer" not in str(warning.message)]  # a run's model has none
    if error is not None or skipped:
        reason = (str(error) or type(error).__name__) if error is not None else skipped[0]
        raise ValueError(f"{path}: its weights do not fit this {model.name} (same model, "
                         f"backbone, head sizes and number of classes needed): "
                         f"{reason.splitlines()[0]}") from error
    return path


def learning_rate_schedule(config: RunConfig, steps_per_epoch: int, replicas: int = 1):
    """The recipe's learning rate: a constant (textbook), the poly decay over the run
    (paper) or a one-epoch linear warm-up then a cosine decay to 0 (adamw_cosine); its
    initial value scaled for ``replicas`` replicas by ``train.lr_scaling``."""
    train_config = config.train
    learning_rate = distribute.scaled_learning_rate(train_config.initial_learning_rate,
                                                    replicas, train_config.lr_scaling)
    total_steps = max(1, train_config.epochs * steps_per_epoch)
    if train_config.recipe == "paper":
        return keras.optimizers.schedules.PolynomialDecay(
            initial_learning_rate=learning_rate, decay_steps=total_steps,
            end_learning_rate=0.0, power=train_config.poly_power)
    if train_config.recipe == "adamw_cosine":
        warmup_steps = min(steps_per_epoch, total_steps // 2)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0, decay_steps=max(1, total_steps - warmup_steps), alpha=0.0,
            warmup_target=learning_rate, warmup_steps=warmup_steps)
    return learning_rate


def build_optimizer(config: RunConfig, steps_per_epoch: int,
                    replicas: int = 1) -> keras.optimizers.Optimizer:
    """Adam (textbook), SGD with momentum (paper) or AdamW (adamw_cosine), following
    :func:`learning_rate_schedule`; weight decay from ``train.weight_decay``."""
    train_config = config.train
    schedule = learning_rate_schedule(config, steps_per_epoch, replicas)
    if train_config.recipe == "paper":
        return keras.optimizers.SGD(learning_rate=schedule, momentum=train_config.momentum,
                                    weight_decay=train_config.weight_decay or None)
    if train_config.recipe == "adamw_cosine":
        return keras.optimizers.AdamW(learning_rate=schedule,
                                      weight_decay=train_config.weight_decay)
    return keras.optimizers.Adam(learning_rate=schedule,
                                 weight_decay=train_config.weight_decay or None)


def build_training_loss(config: RunConfig, source: DataSource, spec: DatasetSpec):
    """The configured loss, with median-frequency class weights (or their square roots)
    from the training split when asked for."""
    class_weights = None
    weighting = config.train.class_weighting
    if weighting in ("median_frequency", "sqrt_median_frequency"):
        counts = source.class_pixel_counts(config.data.train_split, config.data.split_seed)
        weights = median_frequency_weights(counts)
        if weighting == "sqrt_median_frequency":
            weights = np.sqrt(weights)
        class_weights = weights.tolist()
    elif weighting == "none":
        class_weights = [1.0] * spec.num_classes
    options = ({"gradient": config.train.loss_gradient}
               if config.train.loss in LOSSES_WITH_GRADIENT else {})
    return build_loss(config.train.loss, num_classes=spec.num_classes,
                      ignore_label=spec.ignore_label, class_weights=class_weights, **options)


def segmentation_metrics(spec: DatasetSpec) -> list[keras.metrics.Metric]:
    """Pixel accuracy, mean accuracy and mean IoU (logged as ``mean_iou`` / ``val_mean_iou``)."""
    return [PixelAccuracy(spec.num_classes, spec.ignore_label),
            MeanAccuracy(spec.num_classes, spec.ignore_label),
            MeanIoU(spec.num_classes, spec.ignore_label)]


def build_compiled_model(config: RunConfig, source: DataSource, steps_per_epoch: int,
                         replicas: int = 1) -> keras.Model:
    """The network compiled with the recipe's optimizer, loss and metrics; with
    ``train.sync_batchnorm`` and several replicas its batch norm is synchronized.

    Call it inside the strategy's scope (and the run's dtype policy)."""
    spec = source.spec
    model = build_network(config, spec.num_classes)
    if config.train.sync_batchnorm and replicas > 1:
        distribute.synchronize_batch_norm(model)
    if config.train.recompute:
        enable_recomputation(model, config.model.backbone)
    model.compile(optimizer=build_optimizer(config, steps_per_epoch, replicas),
                  loss=build_training_loss(config, source, spec),
                  metrics=segmentation_metrics(spec), jit_compile=config.train.jit_compile)
    # Made now, the optimizer's slots exist before the first step is traced; made inside it,
    # they make Keras trace the step twice (a few seconds to a minute per run).
    model.optimizer.build(model.trainable_variables)
    return model


__all__ = ["build_compiled_model", "build_network", "build_optimizer", "build_training_loss",
           "learning_rate_schedule", "load_initial_weights",
           "current_learning_rate", "segmentation_metrics", "set_batch_norm_momentum"]
