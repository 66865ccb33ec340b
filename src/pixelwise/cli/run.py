"""`pixelwise evaluate | predict | export | visualize | demo`: what is done with a run."""

from __future__ import annotations

from pathlib import Path

import click

from pixelwise.cli.params import SIZE, library_choice, reported
from pixelwise.cli.root import cli
from pixelwise.config import TrainConfig
from pixelwise.demo import DEFAULT_DEMO_DIR, DEMO_EPOCHS, DEMO_NUM_IMAGES, DEMO_SIZE, run_demo


@cli.command("evaluate")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default=None,
              help="The split to score (default: the run's test split, --test-split of train).")
@click.option("--resolution", "resolutions", multiple=True,
              type=library_choice("pixelwise.evaluate", "RESOLUTIONS", extra=["both"]),
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
              type=library_choice("pixelwise.distribute", "STRATEGY_NAMES",
                                  exclude=["multiworker"]),
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
    with reported():
        strategy = make_strategy(strategy_name, one_machine=True)
        evaluate_run(run_dir, split=split, resolutions=chosen, multi_scale=multi_scale,
                     flip=flip, hardest=hardest, data=data_source, batch_size=batch_size,
                     out_dir=out_dir, echo=click.echo, strategy=strategy)


@cli.command("predict")
@click.argument("model_path", metavar="MODEL")
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: RUN/predictions, or NAME_predictions beside "
                   "the model).")
@click.option("--camera", default=None, metavar="N|DEVICE|URL",
              help="Live frames from a camera index, a device path or a stream URL (or a "
                   "video file played as live); a window where a display exists, else "
                   "recording only. Ctrl-C stops and keeps what was written.")
@click.option("--frames", "max_frames", default=None, type=click.IntRange(min=1),
              help="Stop a video or the camera after K frames.")
@click.option("--class-maps", default=None, type=click.Choice(["npz", "png"]),
              help="Videos: also write the class maps, one compressed array file "
                   "(NAME_classes.npz) or a folder of palette PNGs (NAME_classes/).")
@click.option("--drivable", default=None, metavar="CLASS,CLASS",
              help="Drivable space: these classes' summed probability per pixel and a "
                   "mask at --safety, drawn on the overlay and written as NAME_drivable*.")
@click.option("--safety", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Drivable where the probability reaches this; higher is more cautious "
                   "(fewer pixels drivable), lower more adventurous.")
@click.option("--smooth", default=None, type=click.FloatRange(0, 1, min_open=True),
              metavar="ALPHA",
              help="Videos: average probabilities over frames, the newest weighing ALPHA "
                   "(1: none; lower: steadier, slower to follow).")
@click.option("--resize", is_flag=True,
              help="Run at the training input size (default: each image at its own size).")
@click.option("--fit", default=None,
              type=library_choice("pixelwise.inference", "FIT_MODES"),
              help=".tflite: how an image meets the model's fixed input size "
                   "[default: resize].")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="Interpreter threads (.tflite) or TensorFlow's threads (other forms).")
@click.option("--max-pixels", default=2048 * 1024, show_default=True,
              type=click.IntRange(min=1),
              help="Larger photos run scaled down to this many pixels (bounds memory); "
                   "the class map comes back at full size.")
@click.option("--kind", default=None, type=click.Choice(["keras", "tflite"]),
              help="A model name: which of its files runs [default: its .keras].")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def predict(model_path: str, inputs: tuple[Path, ...], out_dir: Path | None,
            camera: str | None, max_frames: int | None, class_maps: str | None,
            drivable: str | None, safety: float, smooth: float | None, resize: bool,
            fit: str | None, threads: int | None, max_pixels: int, kind: str | None,
            quiet: bool) -> None:
    """Class maps and colour overlays for the images, folders and videos (.mp4 .avi .mov
    .mkv) in INPUTS, or a --camera, from MODEL: a run folder, a .keras file, a SavedModel
    folder, a .tflite model or a model name (`pixelwise model list`). Videos print
    frames/s and latency and write them as NAME_timings.json."""
    from pixelwise.predict import predict as predict_media

    with reported(OSError, ValueError, ImportError):
        predict_media(model_path, inputs, out_dir, camera=camera, max_frames=max_frames,
                      class_maps=class_maps, drivable=drivable, safety=safety, smooth=smooth,
                      resize=resize, fit_mode=fit, num_threads=threads,
                      max_pixels=max_pixels, kind=kind, progress=not quiet, echo=click.echo)


@cli.command("export")
@click.argument("run_dir", metavar="MODEL")
@click.option("--format", "export_format", required=True,
              type=library_choice("pixelwise.export", "EXPORT_FORMATS"))
@click.option("--quantize", default=None,
              type=library_choice("pixelwise.export", "QUANTIZATIONS"),
              help="TFLite: float16 weights, or full-integer int8 (default: float32).")
@click.option("--input-size", default=None, type=SIZE,
              help="TFLite input size and check size: S or HxW (default: the run's).")
@click.option("--run-size", default=None, type=SIZE,
              help="TFLite: run the network at this size inside the graph (the input is "
                   "resized to it, the class map comes back at --input-size): S or HxW.")
@click.option("--out", "out_path", type=click.Path(path_type=Path),
              help="SavedModel folder or .tflite file (default: RUN/export/..., "
                   "NAME_export/... for a model name).")
@click.option("--calibration-images", default=100, show_default=True,
              type=click.IntRange(min=1), help="int8: training images that calibrate it.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare with the Keras model on the run's test split; fail if short.")
@click.option("--check-images", default=None, type=click.IntRange(min=1),
              help="Check on the first N images of the split (default: all).")
@click.option("--check-split", default=None,
              help="The split the check runs on (default: the run's test split).")
@click.option("--data", "data_source", type=click.Path(exists=True, path_type=Path),
              help="Dataset of the model's classes for the check and int8 calibration "
                   "(default: the run's; a model name or .keras file needs it for those).")
@click.option("--probabilities", is_flag=True, help="Also output probabilities.")
@click.option("--drivable", default=None, metavar="CLASS,CLASS",
              help="TFLite: also output the drivable probability, the summed probability "
                   "of these classes.")
@click.option("--jit-compile/--no-jit-compile", default=False, show_default=True,
              help="XLA for the SavedModel's serving function and the check's Keras side.")
def export(run_dir: str, export_format: str, quantize: str | None,
           input_size: tuple[int, int] | None, run_size: tuple[int, int] | None,
           out_path: Path | None,
           calibration_images: int, check: bool, check_images: int | None,
           check_split: str | None, data_source: Path | None, probabilities: bool,
           drivable: str | None, jit_compile: bool) -> None:
    """Export MODEL as a SavedModel or TFLite, checked against Keras: a run folder (its
    best model), a model name (`pixelwise model list`) or a .keras file."""
    from pixelwise.export import ExportCheckError, export_run

    try:
        export_run(run_dir, export_format=export_format, quantize=quantize,
                   input_size=input_size, out=out_path,
                   calibration_count=calibration_images, check=check,
                   check_limit=check_images, check_split=check_split,
                   include_probabilities=probabilities,
                   drivable=drivable, jit_compile=jit_compile, run_size=run_size,
                   data=data_source, echo=click.echo)
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

    with reported():
        visualize_run(run_dir, split=split, num_images=num_images, data=data_source,
                      out_dir=out_dir, echo=click.echo)


@cli.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_DEMO_DIR, show_default=True,
              help="Demo folder; the dataset goes to OUT/data, the run to OUT/run.")
@click.option("--n", "num_images", default=DEMO_NUM_IMAGES, show_default=True,
              type=click.IntRange(min=2), help="Synthetic images in all.")
@click.option("--size", default=DEMO_SIZE, show_default=True, type=click.IntRange(min=16),
              help="Image side and input size in pixels, a multiple of 16.")
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic dataset.")
@click.option("--epochs", default=DEMO_EPOCHS, show_default=True, type=click.IntRange(min=1),
              help="Training epochs.")
@click.option("--train/--no-train", "train_model", default=True, show_default=True,
              help="--no-train: only generate and check the dataset.")
@click.option("--mixed-precision", default="auto", show_default=True,
              type=click.Choice(["auto", "none", "bfloat16", "float16"]),
              help="auto: bfloat16 where the CPU computes it natively.")
@click.option("--loss-gradient", default=TrainConfig.loss_gradient, show_default=True,
              type=library_choice("pixelwise.losses", "LOSS_GRADIENTS"),
              help="CE + Dice's gradient: autodiff, or written out (lighter; see RESULTS.md).")
def demo(out_dir: Path, num_images: int, size: int, seed: int, epochs: int,
         train_model: bool, mixed_precision: str, loss_gradient: str) -> None:
    """The main job: synthetic data, DeepLab v3 training, test scores, pictures."""
    with reported(OSError, ValueError, RuntimeError):
        run_demo(
            out_dir, num_images=num_images, size=size, seed=seed, epochs=epochs,
            train=train_model,
            mixed_precision=None if mixed_precision == "none" else mixed_precision,
            loss_gradient=loss_gradient, echo=click.echo)
