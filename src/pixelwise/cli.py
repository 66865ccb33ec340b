"""The `pixelwise` command. Thin: it parses arguments and calls the library."""

from __future__ import annotations

from pathlib import Path

import click

from pixelwise import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pixelwise")
def cli() -> None:
    """Semantic segmentation on TensorFlow 2 / Keras 3."""


@cli.group()
def data() -> None:
    """Get, check, convert and prepare datasets in the VOC layout."""


@data.group("download")
def data_download() -> None:
    """Download, verify and extract a dataset."""


@data_download.command("voc2012")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the tar and VOCdevkit/VOC2012.")
@click.option("--url", default=None, help="Download from here instead of the official URL.")
@click.option("--md5", default=None, help="Expected MD5 of the tar (default: the official one).")
@click.option("--from", "from_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Use this tar (copied in by hand) instead of downloading.")
def data_download_voc2012(dest: Path, url: str | None, md5: str | None,
                          from_file: Path | None) -> None:
    """Get PASCAL VOC 2012 trainval into DEST (resumes; verifies the MD5; extracts safely)."""
    from pixelwise.data import download

    try:
        voc_dir = download.download_voc2012(
            dest, url=url or download.VOC2012_URL, md5=md5 or download.VOC2012_MD5,
            from_file=from_file)
    except (OSError, ValueError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(voc_dir)


@data.command("check")
@click.argument("root", type=click.Path(exists=True, path_type=Path))
@click.option("--split", required=True,
              help="train, val, test, val-full, trainval, train_aug, or a list file.")
@click.option("--seed", default=None, type=int, help="Seed of the val/test halves.")
@click.option("--max-problems", default=100, show_default=True,
              help="Problem lines to print (0: all).")
def data_check(root: Path, split: str, seed: int | None, max_problems: int) -> None:
    """Check every image/annotation pair of a split; exit 1 on problems."""
    from pixelwise.data.check import check_dataset
    from pixelwise.data.voc import DEFAULT_SPLIT_SEED

    try:
        report = check_dataset(root, split, DEFAULT_SPLIT_SEED if seed is None else seed,
                               progress=True)
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(report.format(max_problems=max_problems or None))
    if not report.ok:
        raise SystemExit(1)


@data.command("import-rgb-masks")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--spec", "spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="pixelwise_dataset.json with the class colours (default: VOC).")
def data_import_rgb_masks(src: Path, dest: Path, spec_file: Path | None) -> None:
    """Convert the RGB mask PNGs in SRC to palette PNGs of class indices in DEST."""
    from pixelwise.data.rgb_masks import import_rgb_masks
    from pixelwise.data.spec import DatasetSpec

    try:
        spec = DatasetSpec.load(spec_file) if spec_file else DatasetSpec.voc()
        written = import_rgb_masks(src, dest, spec)
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"wrote {len(written)} palette PNG(s) to {dest}")


@data.command("prepare")
@click.argument("root", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Records folder (shards + manifest.json).")
@click.option("--split", "splits", multiple=True,
              help="Split to write (repeatable): train, val, test, val-full, trainval, "
                   "train_aug, or a list file. Default: train, val, test where listed.")
@click.option("--split-seed", default=None, type=int, help="Seed of the val/test halves.")
@click.option("--shard-size", default=256, show_default=True, type=click.IntRange(min=1),
              help="Most examples per shard.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes writing shards in parallel (same files as with one).")
def data_prepare(root: Path, out_dir: Path, splits: tuple[str, ...], split_seed: int | None,
                 shard_size: int, workers: int) -> None:
    """Write the splits of ROOT as sharded TFRecords in OUT (a rerun keeps complete shards)."""
    from pixelwise.data.records import prepare_records
    from pixelwise.data.voc import DEFAULT_SPLIT_SEED

    try:
        manifest = prepare_records(
            root, out_dir, splits or None,
            split_seed=DEFAULT_SPLIT_SEED if split_seed is None else split_seed,
            examples_per_shard=shard_size, progress=click.echo, workers=workers)
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    for key, split in manifest["splits"].items():
        click.echo(f"{key}: {split['num_examples']} examples in {len(split['shards'])} shard(s)")
    click.echo(f"manifest: {out_dir / 'manifest.json'}")


@data.command("synth")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "num_images", default=300, show_default=True, type=click.IntRange(min=2),
              help="Images in all (train + val).")
@click.option("--size", default=128, show_default=True, type=click.IntRange(min=16),
              help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.option("--val-fraction", default=1 / 3, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Share of the images in val.txt (halved into val and test when read).")
@click.option("--classes", "num_object_classes", default=5, show_default=True,
              type=click.IntRange(1, 5), help="Object classes (plus background).")
@click.option("--overwrite", is_flag=True,
              help="Replace a synthetic dataset made with other settings.")
def data_synth(dest: Path, num_images: int, size: int, seed: int, val_fraction: float,
               num_object_classes: int, overwrite: bool) -> None:
    """Generate a synthetic dataset in the VOC layout in DEST (no-op if already there)."""
    from pixelwise.data.synthetic import generate_synthetic

    try:
        layout = generate_synthetic(dest, num_images=num_images, size=size, seed=seed,
                                    val_fraction=val_fraction,
                                    num_object_classes=num_object_classes,
                                    overwrite=overwrite, progress=True)
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"{layout.root}: {num_images} images, {size}x{size} px, classes "
               f"{', '.join(layout.spec.class_names)}")


@cli.group()
def model() -> None:
    """Build and describe the segmentation models."""


@model.command("summary")
@click.argument("name")
@click.option("--input-size", default="384", show_default=True,
              help="Image size: S for S x S, or HxW (e.g. 384x512).")
@click.option("--backbone", default="resnet50", show_default=True,
              help="resnet50 or mobilenetv2.")
@click.option("--output-stride", default=None, type=int,
              help="DeepLab: 16 (default) or 8; U-Net: 32.")
@click.option("--num-classes", default=21, show_default=True, help="Logit channels.")
@click.option("--width-multiplier", default=1.0, show_default=True,
              help="MobileNetV2's alpha.")
@click.option("--multi-grid/--no-multi-grid", default=False, show_default=True,
              help="ResNet50 conv5 rates x (1, 2, 4).")
def model_summary(name: str, input_size: str, backbone: str, output_stride: int | None,
                  num_classes: int, width_multiplier: float, multi_grid: bool) -> None:
    """Parameters and multiply-adds of model NAME (deeplabv3, deeplabv3plus, unet)."""
    from pixelwise.models import build_model, measure_model

    try:
        height, _, width = input_size.lower().partition("x")
        size = (int(height), int(width or height))
    except ValueError as error:
        raise click.BadParameter(f"{input_size!r}: expected S or HxW", param_hint="--input-size") from error
    try:
        built = build_model(
            name, num_classes=num_classes, input_shape=(*size, 3), backbone=backbone,
            output_stride=output_stride, width_multiplier=width_multiplier,
            multi_grid=(1, 2, 4) if multi_grid else None)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    for line in measure_model(built, size).lines():
        click.echo(line)


def _parse_size(text: str, hint: str) -> tuple[int, int]:
    """``S`` or ``HxW`` -> (height, width)."""
    try:
        height, _, width = text.lower().partition("x")
        size = (int(height), int(width or height))
    except ValueError as error:
        raise click.BadParameter(f"{text!r}: expected S or HxW", param_hint=hint) from error
    if min(size) < 1:
        raise click.BadParameter(f"{text!r}: sizes must be positive", param_hint=hint)
    return size


@cli.command("train")
@click.option("--data", "data_source", type=click.Path(exists=True, path_type=Path),
              help="Dataset: a VOC-layout folder (or VOC tar) or a records folder from "
                   "`data prepare`.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (config, log, checkpoints, best.keras). Rerunning the same "
                   "command resumes it.")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Continue the run in this folder with its saved settings.")
@click.option("--model", "model_name", default="deeplabv3", show_default=True,
              type=click.Choice(["deeplabv3", "deeplabv3plus", "unet"]))
@click.option("--backbone", default="resnet50", show_default=True,
              type=click.Choice(["resnet50", "mobilenetv2"]))
@click.option("--backbone-weights", default="imagenet", show_default=True,
              help="imagenet, none (random init) or the path of a weights file.")
@click.option("--output-stride", default=None, type=click.Choice(["8", "16", "32"]),
              help="DeepLab: 16 (default) or 8; U-Net: 32.")
@click.option("--width-multiplier", default=1.0, show_default=True, help="MobileNetV2's alpha.")
@click.option("--multi-grid/--no-multi-grid", default=False, show_default=True,
              help="ResNet50 conv5 rates x (1, 2, 4).")
@click.option("--aspp-filters", default=None, type=click.IntRange(min=1),
              help="DeepLab ASPP channels (default 256).")
@click.option("--dropout", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True))
@click.option("--bn-momentum", default=0.99, show_default=True,
              type=click.FloatRange(0, 1, max_open=True),
              help="Batch-norm momentum; 0.9 for short runs from scratch.")
@click.option("--epochs", default=25, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Images per step on each replica (the global batch is this x replicas).")
@click.option("--input-size", default="384", show_default=True,
              help="Training size: S for S x S, or HxW; multiples of the output stride.")
@click.option("--recipe", default="textbook", show_default=True,
              type=click.Choice(["textbook", "paper"]),
              help="textbook: Adam, plateau LR reduction, early stopping; paper: SGD momentum "
                   "0.9 with poly decay.")
@click.option("--learning-rate", default=None, type=float,
              help="Initial learning rate for one replica's batch (default: 1e-3 textbook, "
                   "0.007 paper); see --lr-scaling.")
@click.option("--weight-decay", default=0.0, show_default=True, type=float)
@click.option("--loss", default="ce_dice", show_default=True,
              type=click.Choice(["ce", "weighted_ce", "dice", "ce_dice", "focal"]))
@click.option("--class-weighting", default="per_image", show_default=True,
              type=click.Choice(["per_image", "median_frequency", "none"]))
@click.option("--augment", default="textbook", show_default=True,
              type=click.Choice(["textbook", "deeplab", "none"]))
@click.option("--train-split", default="train", show_default=True)
@click.option("--val-split", default="val", show_default=True)
@click.option("--split-seed", default=0, show_default=True, help="Seed of the val/test halves.")
@click.option("--seed", default=0, show_default=True, help="Seed of weights, order, augmentation.")
@click.option("--mixed-precision", default="none", show_default=True,
              type=click.Choice(["none", "float16", "bfloat16"]))
@click.option("--jit-compile/--no-jit-compile", default=False, show_default=True,
              help="XLA for the training step (slow on CPUs).")
@click.option("--tensorboard/--no-tensorboard", default=True, show_default=True)
@click.option("--cache/--no-cache", default=False, show_default=True,
              help="Keep decoded images in memory after the first epoch.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Check the train and val splits before training.")
@click.option("--lr-scaling", default="linear", show_default=True,
              type=click.Choice(["linear", "sqrt", "none"]),
              help="How the learning rate follows the global batch (batch size x replicas).")
@click.option("--sync-batchnorm/--no-sync-batchnorm", default=False, show_default=True,
              help="With several replicas, batch norm statistics over the global batch.")
@click.option("--strategy", "strategy_name", default="auto", show_default=True,
              type=click.Choice(["auto", "one", "mirrored", "multiworker"]),
              help="tf.distribute strategy: auto (multiworker under a TF_CONFIG cluster, "
                   "mirrored with several GPUs, else one device), one, mirrored, multiworker.")
@click.option("--quiet", is_flag=True, help="One line per epoch instead of a progress bar.")
@click.pass_context
def train(ctx: click.Context, data_source: Path | None, out_dir: Path | None,
          resume_dir: Path | None, strategy_name: str, quiet: bool, **settings) -> None:
    """Train a model; a killed run continues with the same command or --resume RUN."""
    from click.core import ParameterSource

    from pixelwise.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from pixelwise.distribute import make_strategy
    from pixelwise.models import WeightsUnavailableError
    from pixelwise.train import STOP_NAN, resume, train as train_run

    try:
        # First: the multi-worker runtime must start before TensorFlow runs anything.
        strategy = make_strategy(strategy_name)
        if resume_dir is not None:
            flags = {param.name: param.opts[0] for param in ctx.command.params}
            given = [flags[name] for name in ("data_source", "out_dir", *settings)
                     if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
            if given:
                raise click.UsageError(f"--resume takes every setting from "
                                       f"{resume_dir / 'config.json'}; leave out "
                                       f"{', '.join(given)}")
            result = resume(resume_dir, progress=not quiet, echo=click.echo, strategy=strategy)
        else:
            if data_source is None or out_dir is None:
                raise click.UsageError("give --data and --out (or --resume RUN)")
            weights = settings["backbone_weights"]
            if weights not in ("imagenet", "none"):
                weights = str(Path(weights).resolve())
            config = RunConfig(
                data=DataConfig(
                    source=str(data_source.resolve()), train_split=settings["train_split"],
                    val_split=settings["val_split"], split_seed=settings["split_seed"],
                    input_size=_parse_size(settings["input_size"], "--input-size"),
                    augment=settings["augment"], cache="memory" if settings["cache"] else None,
                    check=settings["check"]),
                model=ModelConfig(
                    name=settings["model_name"], backbone=settings["backbone"],
                    output_stride=int(settings["output_stride"]) if settings["output_stride"] else None,
                    backbone_weights=None if weights == "none" else weights,
                    multi_grid=(1, 2, 4) if settings["multi_grid"] else None,
                    width_multiplier=settings["width_multiplier"], dropout=settings["dropout"],
                    aspp_filters=settings["aspp_filters"], bn_momentum=settings["bn_momentum"]),
                train=TrainConfig(
                    recipe=settings["recipe"], epochs=settings["epochs"],
                    batch_size=settings["batch_size"], learning_rate=settings["learning_rate"],
                    weight_decay=settings["weight_decay"], loss=settings["loss"],
                    class_weighting=settings["class_weighting"], seed=settings["seed"],
                    mixed_precision=None if settings["mixed_precision"] == "none"
                    else settings["mixed_precision"],
                    jit_compile=settings["jit_compile"], tensorboard=settings["tensorboard"],
                    lr_scaling=settings["lr_scaling"], sync_batchnorm=settings["sync_batchnorm"]))
            result = train_run(config, out_dir, progress=not quiet, echo=click.echo,
                               strategy=strategy)
    except (OSError, ValueError, RuntimeError, WeightsUnavailableError) as error:
        raise click.ClickException(str(error)) from error
    best = ("n/a" if result.best_val_mean_iou is None
            else f"{100 * result.best_val_mean_iou:.2f}% (epoch {result.best_epoch + 1})")
    click.echo(f"{result.run_dir}: {result.epochs_done} epoch(s) done ({result.stop_reason}); "
               f"best val mean IoU {best}")
    if result.stop_reason == STOP_NAN:
        raise click.ClickException(
            f"the loss became NaN or infinite; the last good epoch ({result.epochs_done}) is "
            f"saved in {result.run_dir}. Lower --learning-rate and start a new run")


@cli.command("evaluate")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="test", show_default=True)
@click.option("--resolution", "resolutions", multiple=True,
              type=click.Choice(["resized", "original", "both"]),
              help="resized (the textbook's protocol, default), original (VOC's), or both.")
@click.option("--multi-scale", is_flag=True, help="Average over scales 0.75, 1, 1.25.")
@click.option("--flip", is_flag=True, help="Average over horizontal flips too.")
@click.option("--hardest", default=8, show_default=True, type=click.IntRange(min=0),
              help="Draw the k images of highest loss (0: none).")
@click.option("--data", "data_source", type=click.Path(exists=True, path_type=Path),
              help="Another dataset with the same classes (default: the run's).")
@click.option("--batch-size", default=None, type=click.IntRange(min=1))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: RUN/evaluation).")
@click.option("--strategy", "strategy_name", default="auto", show_default=True,
              type=click.Choice(["auto", "one", "mirrored"]),
              help="tf.distribute strategy on this machine: auto (mirrored with several "
                   "GPUs, else one device), one, mirrored (each batch split between the "
                   "GPUs; --batch-size is per GPU). The scores are the one-device scores.")
def evaluate(run_dir: Path, split: str, resolutions: tuple[str, ...], multi_scale: bool,
             flip: bool, hardest: int, data_source: Path | None, batch_size: int | None,
             out_dir: Path | None, strategy_name: str) -> None:
    """Scores of a run's best model: printed, and as JSON, CSV and pictures."""
    from pixelwise.distribute import make_strategy
    from pixelwise.evaluate import RESOLUTIONS, evaluate_run

    chosen = []
    for resolution in resolutions or ("resized",):
        for item in (RESOLUTIONS if resolution == "both" else (resolution,)):
            if item not in chosen:
                chosen.append(item)
    try:
        strategy = make_strategy(strategy_name, one_machine=True)
        evaluate_run(run_dir, split=split, resolutions=chosen, multi_scale=multi_scale,
                     flip=flip, hardest=hardest, data=data_source, batch_size=batch_size,
                     out_dir=out_dir, echo=click.echo, strategy=strategy)
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error


@cli.command("predict")
@click.argument("run_dir", metavar="RUN|MODEL.tflite",
                type=click.Path(exists=True, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: RUN/predictions, or NAME_predictions beside "
                   "the .tflite).")
@click.option("--resize", is_flag=True,
              help="Run at the training input size (default: each image at its own size).")
@click.option("--fit", default="resize", show_default=True,
              type=click.Choice(["resize", "letterbox"]),
              help=".tflite: how an image meets the model's fixed input size.")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help=".tflite: interpreter threads.")
def predict(run_dir: Path, inputs: tuple[Path, ...], out_dir: Path | None, resize: bool,
            fit: str, threads: int | None) -> None:
    """Class-index PNG and colour overlay for each image in INPUTS (files or folders),
    from a run's best model or an exported .tflite model."""
    from pixelwise.predict import predict_run, predict_tflite

    try:
        if run_dir.is_file():
            if run_dir.suffix != ".tflite":
                raise click.UsageError(f"{run_dir}: give a run folder or a .tflite model")
            predict_tflite(run_dir, inputs, out_dir, num_threads=threads, fit_mode=fit,
                           echo=click.echo)
        else:
            predict_run(run_dir, inputs, out_dir, resize=resize, echo=click.echo)
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error


@cli.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "export_format", required=True,
              type=click.Choice(["saved_model", "tflite"]))
@click.option("--quantize", default=None, type=click.Choice(["float16", "int8"]),
              help="TFLite: float16 weights, or full-integer int8 (default: float32).")
@click.option("--input-size", default=None,
              help="TFLite input size and check size: S or HxW (default: the run's).")
@click.option("--out", "out_path", type=click.Path(path_type=Path),
              help="SavedModel folder or .tflite file (default: RUN/export/...).")
@click.option("--calibration-images", default=100, show_default=True,
              type=click.IntRange(min=1), help="int8: training images that calibrate it.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare with the Keras model on the run's test split; fail if short.")
@click.option("--check-images", default=None, type=click.IntRange(min=1),
              help="Check on the first N test images (default: all).")
@click.option("--probabilities", is_flag=True, help="SavedModel: also output probabilities.")
@click.option("--jit-compile/--no-jit-compile", default=False, show_default=True,
              help="XLA for the SavedModel's serving function and the check's Keras side.")
def export(run_dir: Path, export_format: str, quantize: str | None, input_size: str | None,
           out_path: Path | None, calibration_images: int, check: bool,
           check_images: int | None, probabilities: bool, jit_compile: bool) -> None:
    """Export RUN's best model as a SavedModel or TFLite, checked against Keras."""
    from pixelwise.export import ExportCheckError, export_run

    size = _parse_size(input_size, "--input-size") if input_size else None
    try:
        export_run(run_dir, export_format=export_format, quantize=quantize, input_size=size,
                   out=out_path, calibration_count=calibration_images, check=check,
                   check_limit=check_images, include_probabilities=probabilities,
                   jit_compile=jit_compile, echo=click.echo)
    except ExportCheckError as error:
        raise click.ClickException(f"the export fell short of its check; it stays on disk "
                                   f"for inspection:\n{error}") from error
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error


@cli.command("visualize")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="test", show_default=True)
@click.option("-n", "num_images", default=8, show_default=True, type=click.IntRange(min=1),
              help="Images in the grid.")
@click.option("--data", "data_source", type=click.Path(exists=True, path_type=Path),
              help="Another dataset with the same classes (default: the run's).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: RUN/figures).")
def visualize(run_dir: Path, split: str, num_images: int, data_source: Path | None,
              out_dir: Path | None) -> None:
    """Grid of image | ground truth | prediction, and the training curves."""
    from pixelwise.visualize import visualize_run

    try:
        visualize_run(run_dir, split=split, num_images=num_images, data=data_source,
                      out_dir=out_dir, echo=click.echo)
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error


@cli.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("runs") / "demo", show_default=True,
              help="Demo folder; the dataset goes to OUT/data, the run to OUT/run.")
@click.option("--n", "num_images", default=None, type=click.IntRange(min=2),
              help="Synthetic images in all (default 300).")
@click.option("--size", default=None, type=click.IntRange(min=16),
              help="Image side and input size in pixels, a multiple of 16 (default 96).")
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic dataset.")
@click.option("--epochs", default=None, type=click.IntRange(min=1), help="Training epochs.")
@click.option("--train/--no-train", "train_model", default=True, show_default=True,
              help="--no-train: only generate and check the dataset.")
@click.option("--mixed-precision", default="auto", show_default=True,
              type=click.Choice(["auto", "none", "bfloat16", "float16"]),
              help="auto: bfloat16 where the CPU computes it natively.")
def demo(out_dir: Path, num_images: int | None, size: int | None, seed: int,
         epochs: int | None, train_model: bool, mixed_precision: str) -> None:
    """The main job: synthetic data, DeepLab v3 training, test scores, pictures."""
    from pixelwise import demo as demo_module

    try:
        demo_module.run_demo(
            out_dir, num_images=num_images or demo_module.DEMO_NUM_IMAGES,
            size=size or demo_module.DEMO_SIZE, seed=seed,
            epochs=epochs or demo_module.DEMO_EPOCHS, train=train_model,
            mixed_precision=None if mixed_precision == "none" else mixed_precision,
            echo=click.echo)
    except (OSError, ValueError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error


@cli.command("benchmark")
@click.argument("name", default="deeplabv3")
@click.option("--backbone", default="resnet50", show_default=True,
              type=click.Choice(["resnet50", "mobilenetv2"]))
@click.option("--output-stride", default=None, type=int,
              help="DeepLab: 16 (default) or 8; U-Net: 32.")
@click.option("--input-size", default="384", show_default=True, help="S for S x S, or HxW.")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Batch of the throughput and training figures.")
@click.option("--num-classes", default=21, show_default=True, type=click.IntRange(min=1))
@click.option("--width-multiplier", default=1.0, show_default=True, help="MobileNetV2's alpha.")
@click.option("--precision", default="float32", show_default=True,
              type=click.Choice(["float32", "mixed_bfloat16"]))
@click.option("--fused-batchnorm/--no-fused-batchnorm", default=True, show_default=True,
              help="TensorFlow's fused batch norm kernel (same weights) or Keras's layer.")
@click.option("--xla/--no-xla", default=False, show_default=True,
              help="Also time inference compiled with XLA.")
@click.option("--tflite-threads", default="1,2", show_default=True,
              help="TFLite interpreter threads to time, comma-separated; 'none' to skip.")
@click.option("--latency-repeats", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--throughput-repeats", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--train-steps", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(min=0))
@click.option("--matmul-size", default=4096, show_default=True, type=click.IntRange(min=0),
              help="Side of the matmul that measures the FLOP rate; 0 skips it.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the figures as JSON here ('-': standard output).")
@click.option("--results", "results_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Markdown file (e.g. benchmarks/RESULTS.md) whose section to write.")
@click.option("--section", default=None,
              help="Section name in --results (default: model_backbone_size_precision).")
def benchmark(name: str, backbone: str, output_stride: int | None, input_size: str,
              batch_size: int, num_classes: int, width_multiplier: float, precision: str,
              fused_batchnorm: bool, xla: bool, tflite_threads: str, latency_repeats: int,
              throughput_repeats: int, train_steps: int, warmup: int, matmul_size: int,
              json_path: Path | None, results_path: Path | None, section: str | None) -> None:
    """Speed and size of model NAME: latency, throughput, training, memory, TFLite."""
    import json

    from pixelwise import benchmark as bench

    try:
        settings = bench.BenchmarkSettings(
            model=name, backbone=backbone, output_stride=output_stride,
            input_size=bench.parse_input_size(input_size), batch_size=batch_size,
            num_classes=num_classes, precision=precision, fused_batchnorm=fused_batchnorm,
            width_multiplier=width_multiplier, latency_repeats=latency_repeats,
            throughput_repeats=throughput_repeats, train_steps=train_steps, warmup=warmup,
            xla_inference=xla, tflite_threads=bench.parse_thread_counts(tflite_threads),
            matmul_size=matmul_size)
        result = bench.run_benchmark(settings, echo=lambda line: click.echo(f"... {line}", err=True))
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    for line in result.lines():
        click.echo(line)
    if json_path is not None:
        if str(json_path) == "-":
            click.echo(json.dumps(result.to_dict(), indent=2))
        else:
            bench.write_json(result.to_dict(), json_path)
    if results_path is not None:
        bench.update_results_section(
            results_path, section or bench.default_section_name(settings),
            bench.result_markdown(result, bench.command_line(settings)))


def main() -> None:
    cli()
