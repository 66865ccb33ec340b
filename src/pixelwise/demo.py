"""The main job behind `pixelwise demo`, on the embedded synthetic dataset.

    result = run_demo("runs/demo")
    # runs/demo/data     the synthetic dataset (VOC layout), checked
    # runs/demo/run      the run folder: config.json, train_log.csv, best.keras, ...
    #                    evaluation/test-resized/ (metrics.json, per_class.csv, pictures)
    #                    figures/ (predictions-test.png, training_curves.png)
    # runs/demo/demo_summary.json   the figures the demo prints

It generates the synthetic dataset (or finds it already there), checks its train, val and
test splits, trains DeepLab v3 with the ResNet-50 backbone from random weights at a small
input size on the CPU, evaluates the best model on the test split, draws the predictions
and the training curves, and prints the test scores beside the majority-class baseline.

The defaults are tuned to finish within 10 minutes on 2 CPU cores: 96 x 96 images, a
narrower ASPP (64 channels, rates 2/4/6 for the 6 x 6 feature map), batch-norm momentum
0.9 (Keras's 0.99 lags behind in a run this short), and bfloat16 mixed precision where
the CPU computes it natively (about twice as fast there; float32 elsewhere, which takes
about twice as long). A rerun with the same settings reuses the dataset and the finished
run (an interrupted run resumes); a demo run made with other settings, or on a dataset
since regenerated, is replaced.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pixelwise.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pixelwise.data.check import CheckReport, check_dataset
from pixelwise.data.synthetic import generate_synthetic, read_params
from pixelwise.data.voc import DEFAULT_SPLIT_SEED
from pixelwise.io import write_json_atomically

DEFAULT_DEMO_DIR = Path("runs") / "demo"
DEMO_SPLITS = ("train", "val", "test")
DEMO_NUM_IMAGES = 300
DEMO_SIZE = 96
DEMO_EPOCHS = 12
DEMO_BATCH_SIZE = 8
DEMO_LEARNING_RATE = 1e-3
DEMO_ASPP_FILTERS = 64
DEMO_ASPP_RATES = (2, 4, 6)
DEMO_BN_MOMENTUM = 0.9
DEMO_GRID_IMAGES = 8
DEMO_HARDEST = 4
SUMMARY_FILENAME = "demo_summary.json"
# CPU flags (Linux /proc/cpuinfo) of instructions that compute bfloat16 natively.
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass
class DemoResult:
    """What a demo run produced."""

    data_root: Path
    reports: dict[str, CheckReport]
    run_dir: Path | None = None
    test_metrics: dict | None = None
    figures: list[Path] | None = None
    wall_seconds: float | None = None


def cpu_has_native_bfloat16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU lists an instruction set that computes bfloat16 natively (Linux)."""
    try:
        flags = Path(cpuinfo).read_text()
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in NATIVE_BFLOAT16_FLAGS)


def demo_config(data_root: str | Path, *, size: int = DEMO_SIZE, epochs: int = DEMO_EPOCHS,
                batch_size: int = DEMO_BATCH_SIZE, learning_rate: float = DEMO_LEARNING_RATE,
                mixed_precision: str | None = "auto", split_seed: int = DEFAULT_SPLIT_SEED,
                seed: int = 0, loss_gradient: str = TrainConfig.loss_gradient) -> RunConfig:
    """The demo's run configuration (see the module docstring); ``mixed_precision="auto"``
    picks bfloat16 where the CPU computes it natively."""
    if mixed_precision == "auto":
        mixed_precision = "bfloat16" if cpu_has_native_bfloat16() else None
    return RunConfig(
        data=DataConfig(source=str(Path(data_root).resolve()), input_size=(size, size),
                        split_seed=split_seed, augment="textbook", cache="memory"),
        model=ModelConfig(name="deeplabv3", backbone="resnet50", output_stride=16,
                          backbone_weights=None, aspp_filters=DEMO_ASPP_FILTERS,
                          aspp_rates=DEMO_ASPP_RATES, bn_momentum=DEMO_BN_MOMENTUM),
        train=TrainConfig(recipe="textbook", epochs=epochs, batch_size=batch_size,
                          learning_rate=learning_rate, seed=seed,
                          mixed_precision=mixed_precision, loss_gradient=loss_gradient))


def prepare_demo_data(data_dir: Path, *, num_images: int, size: int, seed: int,
                      split_seed: int, echo: Callable[[str], None],
                      progress: bool) -> tuple[Path, dict[str, CheckReport], bool]:
    """Generate (or reuse) the synthetic dataset and check its splits; the last value
    says whether the dataset was (re)generated rather than reused."""
    previous = read_params(data_dir) if data_dir.is_dir() else None
    layout = generate_synthetic(data_dir, num_images=num_images, size=size, seed=seed,
                                overwrite=True, progress=progress)
    spec = layout.spec
    echo(f"synthetic dataset: {layout.root} ({num_images} images, {size}x{size} px, "
         f"{spec.num_classes} classes: {', '.join(spec.class_names)})")
    reports = {split: check_dataset(layout.root, split, split_seed) for split in DEMO_SPLITS}
    for report in reports.values():
        echo(report.format(max_problems=20))
    failed = [split for split, report in reports.items() if not report.ok]
    if failed:
        raise ValueError(f"{layout.root}: the check found problems in split(s) "
                         f"{', '.join(failed)}; see the report above")
    return layout.root, reports, read_params(layout.root) != previous


def discard_stale_run(run_dir: Path, config: RunConfig, data_changed: bool,
                      echo: Callable[[str], None]) -> None:
    """Delete an earlier demo run made with other settings or on other data, so the demo
    retrains instead of refusing (as ``train`` does for other runs) or reusing it."""
    from pixelwise.runs import RunFolder  # imports Keras: not needed for --no-train

    folder = RunFolder(run_dir)
    if not folder.exists():
        return
    changes = RunConfig.load(folder.config_path).differences(config)
    if changes or data_changed:
        reason = "; ".join(changes) if changes else "the dataset was regenerated"
        echo(f"replacing the earlier demo run in {run_dir} ({reason})")
        shutil.rmtree(run_dir)


def run_demo(out_dir: str | Path = DEFAULT_DEMO_DIR, *, num_images: int = DEMO_NUM_IMAGES,
             size: int = DEMO_SIZE, seed: int = 0, split_seed: int = DEFAULT_SPLIT_SEED,
             epochs: int = DEMO_EPOCHS, batch_size: int = DEMO_BATCH_SIZE,
             learning_rate: float = DEMO_LEARNING_RATE, mixed_precision: str | None = "auto",
             loss_gradient: str = TrainConfig.loss_gradient, train: bool = True,
             echo: Callable[[str], None] = print, progress: bool = True) -> DemoResult:
    """Generate and check the synthetic data, then train, evaluate and visualise.

    Args:
        out_dir: the demo's folder; the dataset goes to ``out_dir/data``, the run to
            ``out_dir/run``.
        num_images, size, seed: the synthetic dataset's size and seed (see
            ``pixelwise.data.synthetic.generate_synthetic``); ``size`` is also the input size.
        split_seed: the seed of the val/test halves.
        epochs, batch_size, learning_rate: the training's.
        mixed_precision: "auto" (bfloat16 where the CPU has it natively), None,
            "bfloat16" or "float16".
        loss_gradient: "autodiff" or "written" (``pixelwise.losses.LOSS_GRADIENTS``).
        train: False stops after the data check.
        echo: where the report lines go.
        progress: show progress bars.

    A dataset from an earlier demo with the same settings is reused as it is; one made
    with other settings is replaced. Raises ValueError, with the check's report, when a
    split has problems.
    """
    from pixelwise.evaluate import class_baseline, evaluate_run
    from pixelwise.train import train as train_run
    from pixelwise.visualize import visualize_run

    started = time.monotonic()
    out_dir = Path(out_dir)
    data_root, reports, data_changed = prepare_demo_data(
        out_dir / "data", num_images=num_images, size=size, seed=seed, split_seed=split_seed,
        echo=echo, progress=progress)
    result = DemoResult(data_root=data_root, reports=reports)
    if not train:
        return result
    run_dir = out_dir / "run"
    config = demo_config(data_root, size=size, epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, mixed_precision=mixed_precision,
                         split_seed=split_seed, loss_gradient=loss_gradient)
    discard_stale_run(run_dir, config, data_changed, echo)
    echo(f"training DeepLab v3 (ResNet-50, random init) at {size}x{size}, {epochs} epochs, "
         f"batch {batch_size}, precision {config.train.precision_policy}")
    trained = train_run(config, run_dir, progress=progress, echo=echo)
    evaluation = evaluate_run(run_dir, split="test", resolutions=("resized",),
                              hardest=DEMO_HARDEST, echo=echo, progress=progress)[0]
    figures = visualize_run(run_dir, split="test", num_images=DEMO_GRID_IMAGES, echo=echo)
    wall_seconds = time.monotonic() - started
    values = evaluation.scores
    baseline = class_baseline(evaluation.matrix, class_names=evaluation.class_names)
    metrics_dir = run_dir / "evaluation" / evaluation.name
    summary = {
        "test_mean_iou": values["mean_iou"],
        "test_pixel_accuracy": values["pixel_accuracy"],
        "test_mean_accuracy": values["mean_accuracy"],
        "majority_baseline_mean_iou": baseline["mean_iou"],
        "majority_baseline_pixel_accuracy": baseline["pixel_accuracy"],
        "majority_class": baseline["name"],
        "epochs_done": trained.epochs_done,
        "stop_reason": trained.stop_reason,
        "best_val_mean_iou": trained.best_val_mean_iou,
        "wall_seconds": round(wall_seconds, 1),
        "run_dir": str(run_dir),
        "metrics": str(metrics_dir / "metrics.json"),
        "figures": [str(path) for path in figures],
        "config": config.to_dict(),
    }
    write_json_atomically(out_dir / SUMMARY_FILENAME, summary)
    echo("")
    echo(f"demo finished in {wall_seconds / 60:.1f} min")
    echo(f"  test mean IoU       {100 * values['mean_iou']:.1f}%   (majority-class baseline "
         f"'{baseline['name']}' everywhere: {100 * baseline['mean_iou']:.1f}%)")
    echo(f"  test pixel accuracy {100 * values['pixel_accuracy']:.1f}%   (baseline "
         f"{100 * baseline['pixel_accuracy']:.1f}%)")
    echo(f"  run folder          {run_dir}")
    echo(f"  metrics             {metrics_dir}/metrics.json, per_class.csv, confusion.png, "
         f"hardest.png")
    for path in figures:
        echo(f"  figure              {path}")
    echo(f"  summary             {out_dir / SUMMARY_FILENAME}")
    result.run_dir = run_dir
    result.test_metrics = evaluation.to_dict()
    result.figures = figures
    result.wall_seconds = wall_seconds
    return result


__all__ = ["DEFAULT_DEMO_DIR", "DemoResult", "cpu_has_native_bfloat16", "demo_config",
           "run_demo"]
