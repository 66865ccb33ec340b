"""`pixelwise train`: its flags are those of :func:`pixelwise.run_options.run_config_from_options`,
with the same names and the configuration's own defaults."""

from __future__ import annotations

from pathlib import Path

import click

from pixelwise.cli.root import cli
from pixelwise.cli.params import DURATION, RATES, SIZE, library_choice, registry_choice, reported
from pixelwise.config import (
    CLASS_WEIGHTINGS,
    LR_SCALINGS,
    MIXED_PRECISION_POLICIES,
    RECIPES,
    DataConfig,
    ModelConfig,
    TrainConfig,
)
from pixelwise.run_options import NO_MIXED_PRECISION


@cli.command("train")
@click.option("--data", "data_source", type=click.Path(exists=True, path_type=Path),
              help="Dataset: a VOC-layout folder (or VOC tar) or a records folder from "
                   "`data prepare`.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (config, log, checkpoints, best.keras). Rerunning the same "
                   "command resumes it.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Continue the run in this folder with its saved settings.")
@click.option("--model", default=ModelConfig.name, show_default=True,
              type=registry_choice("model"))
@click.option("--backbone", default=ModelConfig.backbone, type=registry_choice("backbone"),
              help="Default: the model's own (lraspp: mobilenetv3large; the others: "
                   "resnet50).")
@click.option("--backbone-weights", default=ModelConfig.backbone_weights, show_default=True,
              help="imagenet, none (random init) or the path of a weights file.")
@click.option("--output-stride", default=None, type=registry_choice("output_stride"),
              help="DeepLab: 16 (default) or 8; U-Net: 32.")
@click.option("--width-multiplier", default=ModelConfig.width_multiplier, show_default=True,
              help="MobileNetV2's alpha.")
@click.option("--multi-grid/--no-multi-grid", default=False, show_default=True,
              help="ResNet50 conv5 rates x (1, 2, 4).")
@click.option("--aspp-filters", default=None, type=click.IntRange(min=1),
              help="DeepLab ASPP channels (default 256).")
@click.option("--aspp-rates", default=None, type=RATES,
              help="DeepLab ASPP atrous rates, e.g. 6,12,18 (the default at stride 16), or "
                   "none for only the 1x1 and image-pooling branches (fast on phones).")
@click.option("--low-level-filters", default=None, type=click.IntRange(min=1),
              help="DeepLab v3+ decoder: channels of the 1/4-resolution features (default 48).")
@click.option("--decoder-filters", default=None, type=click.IntRange(min=1),
              help="DeepLab v3+ decoder: channels of its two 3x3 convs (default 256).")
@click.option("--decoder-conv", default=None,
              type=library_choice("pixelwise.models.deeplabv3", "DECODER_CONVS"),
              help="DeepLab v3+ decoder: its two 3x3 convs dense (default) or depthwise-"
                   "separable (cheaper on a light model).")
@click.option("--dropout", default=ModelConfig.dropout, show_default=True,
              type=click.FloatRange(0, 1, max_open=True))
@click.option("--bn-momentum", default=ModelConfig.bn_momentum, show_default=True,
              type=click.FloatRange(0, 1, max_open=True),
              help="Batch-norm momentum; 0.9 for short runs from scratch.")
@click.option("--init-from", "init_weights", default=None, metavar="MODEL",
              help="Start from a trained model: a run folder, a .keras file or a model name "
                   "(`pixelwise model list`). Its architecture stands in for the model flags "
                   "not given; every layer that fits is kept, classes of the same name keep "
                   "their classifier rows, the rest starts anew (init_report.json says what).")
@click.option("--class-map", default=None, metavar="OLD=NEW,...",
              help="With --init-from: which old class starts which new one, e.g. "
                   "road=floor,sky=sky (only these carry over; several old classes into one "
                   "new one are averaged). Default: classes of the same name.")
@click.option("--freeze-backbone-epochs", default=TrainConfig.freeze_backbone_epochs,
              show_default=True, type=click.IntRange(min=0),
              help="Train the first N epochs with the backbone frozen (weights fixed, batch "
                   "norm in inference mode), then everything.")
@click.option("--epochs", default=TrainConfig.epochs, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=TrainConfig.batch_size, show_default=True,
              type=click.IntRange(min=1),
              help="Images per step on each replica (the global batch is this x replicas).")
@click.option("--input-size", default="x".join(map(str, DataConfig.input_size)),
              show_default=True, type=SIZE,
              help="Training size: S for S x S, or HxW; multiples of the output stride.")
@click.option("--recipe", default=TrainConfig.recipe, show_default=True,
              type=click.Choice(RECIPES),
              help="textbook: Adam, plateau LR reduction, early stopping; paper: SGD momentum "
                   "0.9 with poly decay; adamw_cosine: AdamW, one-epoch warm-up, cosine "
                   "decay (from scratch).")
@click.option("--learning-rate", default=None, type=float,
              help="Initial learning rate for one replica's batch (default: 1e-3 textbook, "
                   "0.007 paper); see --lr-scaling.")
@click.option("--weight-decay", default=TrainConfig.weight_decay, show_default=True, type=float)
@click.option("--loss", default=TrainConfig.loss, show_default=True,
              type=library_choice("pixelwise.losses", "LOSS_NAMES"))
@click.option("--loss-gradient", default=TrainConfig.loss_gradient, show_default=True,
              type=library_choice("pixelwise.losses", "LOSS_GRADIENTS"),
              help="ce, weighted_ce, ce_dice: autodiff, or written out (same values, "
                   "~0.5 GB lighter at 384 x 384 batch 8).")
@click.option("--class-weighting", default=TrainConfig.class_weighting, show_default=True,
              type=click.Choice(CLASS_WEIGHTINGS))
@click.option("--augment", default=DataConfig.augment, show_default=True,
              type=library_choice("pixelwise.data.pipeline", "AUGMENTS"))
@click.option("--val-resolution", default=DataConfig.val_resolution, show_default=True,
              type=click.Choice(["resized", "original"]),
              help="Score validation images resized to --input-size or at their own size "
                   "(for crops smaller than the images).")
@click.option("--train-split", default=DataConfig.train_split, show_default=True)
@click.option("--val-split", default=DataConfig.val_split, show_default=True)
@click.option("--test-split", default=DataConfig.test_split, show_default=True,
              help="The split evaluate and export's check use by default.")
@click.option("--split-seed", default=DataConfig.split_seed, show_default=True,
              help="Seed of the val/test halves.")
@click.option("--seed", default=TrainConfig.seed, show_default=True,
              help="Seed of weights, order, augmentation.")
@click.option("--mixed-precision", default=NO_MIXED_PRECISION, show_default=True,
              type=click.Choice([NO_MIXED_PRECISION, *MIXED_PRECISION_POLICIES]))
@click.option("--jit-compile/--no-jit-compile", default=TrainConfig.jit_compile, show_default=True,
              help="XLA for the training step (slow on CPUs).")
@click.option("--recompute/--no-recompute", default=TrainConfig.recompute, show_default=True,
              help="Recompute the backbone's stages in the backward pass: less memory "
                   "(a larger batch fits), a slower step.")
@click.option("--tensorboard/--no-tensorboard", default=TrainConfig.tensorboard, show_default=True)
@click.option("--cache/--no-cache", default=False, show_default=True,
              help="Keep decoded images in memory after the first epoch.")
@click.option("--check/--no-check", default=DataConfig.check, show_default=True,
              help="Check the train and val splits before training.")
@click.option("--lr-scaling", default=TrainConfig.lr_scaling, show_default=True,
              type=click.Choice(LR_SCALINGS),
              help="How the learning rate follows the global batch (batch size x replicas).")
@click.option("--sync-batchnorm/--no-sync-batchnorm", default=TrainConfig.sync_batchnorm,
              show_default=True,
              help="With several replicas, batch norm statistics over the global batch.")
@click.option("--strategy", "strategy_name", default="auto", show_default=True,
              type=library_choice("pixelwise.distribute", "STRATEGY_NAMES"),
              help="tf.distribute strategy: auto (multiworker under a TF_CONFIG cluster, "
                   "mirrored with several GPUs, else one device), one, mirrored, multiworker.")
@click.option("--time-budget", default=None, type=DURATION,
              help="Stop after the epoch when the next would pass this wall time, all parts "
                   "of a resumed run together: 3h, 2h30m, 90m or seconds. With --resume: "
                   "extend a run.")
@click.option("--quiet", is_flag=True, help="One line per epoch instead of a progress bar.")
@click.pass_context
def train(ctx: click.Context, data_source: Path | None, out_dir: Path | None,
          resume_dir: Path | None, strategy_name: str, quiet: bool, **settings) -> None:
    """Train a model; a killed run continues with the same command or --resume RUN."""
    from click.core import ParameterSource

    from pixelwise.distribute import make_strategy
    from pixelwise.models import WeightsUnavailableError
    from pixelwise.run_options import architecture_of_init, run_config_from_options
    from pixelwise.train import STOP_NAN, resume, train as train_run

    with reported(OSError, ValueError, RuntimeError, WeightsUnavailableError):
        # First: the multi-worker runtime must start before TensorFlow runs anything.
        strategy = make_strategy(strategy_name)
        if resume_dir is not None:
            flags = {param.name: param.opts[0] for param in ctx.command.params}
            extending = ("epochs", "time_budget")
            given = [flags[name] for name in ("data_source", "out_dir", *settings)
                     if name not in extending
                     and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
            if given:
                raise click.UsageError(f"--resume takes every setting from "
                                       f"{resume_dir / 'config.json'} (but --epochs and "
                                       f"--time-budget, which extend the run); leave out "
                                       f"{', '.join(given)}")
            extend = {name: settings[name] for name in extending
                      if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
            result = resume(resume_dir, **extend, progress=not quiet, echo=click.echo,
                            strategy=strategy)
        else:
            if data_source is None or out_dir is None:
                raise click.UsageError("give --data and --out (or --resume RUN)")
            # The init model's architecture for the model flags not given.
            for name, value in architecture_of_init(settings["init_weights"]).items():
                if ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
                    settings[name] = value
            config = run_config_from_options(data_source, **settings)
            result = train_run(config, out_dir, progress=not quiet, echo=click.echo,
                               strategy=strategy)
    best = ("n/a" if result.best_val_mean_iou is None
            else f"{100 * result.best_val_mean_iou:.2f}% (epoch {result.best_epoch + 1})")
    took = ("" if result.train_seconds is None
            else f"; {result.train_seconds / 60:.1f} min of training, all parts")
    click.echo(f"{result.run_dir}: {result.epochs_done} epoch(s) done ({result.stop_reason}); "
               f"best val mean IoU {best}{took}")
    if result.stop_reason == STOP_NAN:
        kept = (f"the last good epoch ({result.epochs_done}) is saved in {result.run_dir}"
                if result.epochs_done else "no epoch was saved")
        raise click.ClickException(
            f"{result.bad_epoch}: training stopped; {kept}. Lower --learning-rate and start "
            f"a new run")
