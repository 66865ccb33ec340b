"""TFLite latency of an exported segmentation model, with 1 and 2 interpreter threads.

    python benchmarks/export.py             # the toy target: DeepLab v3, MobileNetV2 1.0,
                                            # 256x256, float32 and int8, 1 and 2 threads
    python benchmarks/export.py --run runs/toy --quantize float32,float16,int8
                                            # a trained run: latency and its test-split
                                            # mean IoU, Keras float32 beside each export
    python benchmarks/export.py --size 64 --width-multiplier 0.35 --repeats 3 \\
        --out /tmp/RESULTS.md               # a quick check that it runs

For each quantisation the model is exported with ``pixelwise.export.export_tflite`` (uint8
image in, int32 class map out, argmax inside; int8 calibrated on training images of the
run, or on random images for a model with random weights, which does not change its
speed), loaded in LiteRT's interpreter with N threads, and timed: the median of
``--repeats`` invocations after ``--warmup`` ones, on one fixed frame. The Keras model's
own forward pass at batch 1 is timed too, with and without XLA (``jit_compile``), on all
the cores TensorFlow uses. With ``--run`` each export is also checked on the run's test
split (``check_export``, thresholds not enforced here), giving its mean IoU beside the
Keras model's.

Figures go to standard output as JSON and into their own section of ``--out``
(benchmarks/RESULTS.md; other sections stay). Nothing is asserted on time: run it on a
quiet machine (the load average is recorded with the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pixelwise.benchmark import cpu_name, median_seconds
from pixelwise.benchmark_results import publish_figures

HERE = Path(__file__).resolve().parent
GOAL_INT8_MS = 20.0  # one thread: >= 50 frames per second


def median_ms(call, *, repeats: int, warmup: int) -> float:
    return 1000.0 * median_seconds(call, repeats=repeats, warmup=warmup)


def build_or_load(arguments: argparse.Namespace):
    """(model, spec, input size, input multiple, run config or None)."""
    from pixelwise.export import float32_model

    if arguments.run:
        from pixelwise.runs import load_run

        model, spec, config = load_run(arguments.run)
        size = _size(arguments.size) if arguments.size else config.data.input_size
        return float32_model(model), spec, size, config.model.input_multiple, config
    import keras

    from pixelwise.data.synthetic import synthetic_spec
    from pixelwise.models import build_model

    spec = synthetic_spec()
    keras.utils.set_random_seed(0)
    model = build_model(arguments.model, num_classes=spec.num_classes,
                        backbone=arguments.backbone, width_multiplier=arguments.width_multiplier)
    from pixelwise.models.registry import input_multiple

    return model, spec, _size(arguments.size or "256"), input_multiple(arguments.model), None


def keras_latency(model, size, arguments) -> dict[str, float]:
    import tensorflow as tf

    frame = tf.constant(np.random.default_rng(1).uniform(0, 255, (1, *size, 3)), tf.float32)
    figures = {}
    for name, jit in (("keras_ms", False), ("keras_xla_ms", True)):
        forward = tf.function(lambda images: model(images, training=False), jit_compile=jit)
        figures[name] = median_ms(lambda: forward(frame).numpy(), repeats=arguments.repeats,
                                  warmup=max(arguments.warmup, 2))
    return figures


def measure(arguments: argparse.Namespace) -> dict:
    from pixelwise.export import check_export, export_tflite, quantization_name, split_examples
    from pixelwise.inference import TFLiteSegmenter

    model, spec, size, multiple, config = build_or_load(arguments)
    quantizations = [None if name == "float32" else name for name in arguments.quantize.split(",")]
    threads = [int(count) for count in arguments.threads.split(",")]
    calibration = examples = None
    if config is not None:
        calibration = [image for image, _ in split_examples(
            config.data.source, config.data.train_split, input_size=size,
            split_seed=config.data.split_seed, limit=arguments.calibration_images)]
        examples = split_examples(config.data.source, config.data.test_split, input_size=size,
                                  split_seed=config.data.split_seed)
    elif "int8" in quantizations:
        rng = np.random.default_rng(2)
        calibration = [rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                       for _ in range(min(arguments.calibration_images, 8))]
    frame = np.random.default_rng(3).integers(0, 256, (*size, 3), dtype=np.uint8)
    result = {
        "model": model.name, "input_size": list(size), "run": arguments.run,
        "repeats": arguments.repeats, "cpu": cpu_name(), "logical_cpus": os.cpu_count(),
        "load_average_before": list(os.getloadavg()),
        "measured_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "exports": [],
    }
    if arguments.keras:
        print("timing the Keras forward pass (with and without XLA) ...", file=sys.stderr)
        result.update(keras_latency(model, size, arguments))
    with tempfile.TemporaryDirectory(prefix="pixelwise-export-bench-") as scratch:
        for quantize in quantizations:
            name = quantization_name(quantize)
            print(f"exporting {name} ...", file=sys.stderr)
            path = export_tflite(model, spec, Path(scratch) / f"{name}.tflite", input_size=size,
                                 quantize=quantize, input_multiple=multiple,
                                 calibration_images=calibration if quantize == "int8" else None)
            entry = {"quantize": name, "size_bytes": path.stat().st_size, "latency_ms": {}}
            for count in threads:
                segmenter = TFLiteSegmenter(path, num_threads=count)
                entry["latency_ms"][str(count)] = median_ms(
                    lambda: segmenter.predict_at_input_size(frame), repeats=arguments.repeats,
                    warmup=arguments.warmup)
            if examples is not None:
                report = check_export(model, spec, TFLiteSegmenter(path), examples,
                                      quantize=quantize, input_multiple=multiple,
                                      raise_on_failure=False)
                entry.update(pixel_agreement=report.pixel_agreement,
                             keras_mean_iou=report.keras_mean_iou,
                             export_mean_iou=report.export_mean_iou,
                             check_passed=report.passed)
            result["exports"].append(entry)
            print(json.dumps(entry), file=sys.stderr)
    result["load_average_after"] = list(os.getloadavg())
    return result


def result_markdown(result: dict, command: str) -> str:
    threads = sorted({count for entry in result["exports"] for count in entry["latency_ms"]},
                     key=int)
    height, width = result["input_size"]
    lines = [
        f"## TFLite export: {result['model']} at {height}x{width}",
        "",
        f"Measured {result['measured_utc']} UTC by `{command}` on {result['cpu']} "
        f"({result['logical_cpus']} logical CPUs; load average "
        f"{result['load_average_before'][0]:.2f} before, {result['load_average_after'][0]:.2f} "
        f"after). Median of {result['repeats']} invocations, batch 1, uint8 frame in, int32 "
        f"class map out (argmax inside); LiteRT interpreter.",
        "",
    ]
    if "keras_ms" in result:
        gain = 100.0 * (1.0 - result["keras_xla_ms"] / result["keras_ms"])
        lines += [f"Keras forward pass, batch 1, all cores: {result['keras_ms']:.1f} ms; with "
                  f"XLA (`jit_compile=True`) {result['keras_xla_ms']:.1f} ms ({abs(gain):.0f}% "
                  f"{'faster' if gain >= 0 else 'slower'}).", ""]
    with_scores = any("export_mean_iou" in entry for entry in result["exports"])
    header = ("| export | size (MB) | " + " | ".join(f"{t} thread{'s' * (t != '1')} (ms)"
                                                     for t in threads)
              + " | frames/s (1 thread) |")
    rule = "|---|---:|" + "---:|" * len(threads) + "---:|"
    if with_scores:
        header += " test mIoU Keras | test mIoU export | pixel agreement |"
        rule += "---:|---:|---:|"
    lines += [header, rule]
    for entry in result["exports"]:
        cells = [f"{entry['latency_ms'][t]:.2f}" if t in entry["latency_ms"] else "n/a"
                 for t in threads]
        one = entry["latency_ms"].get("1")
        frames = f"{1000.0 / one:.0f}" if one else "n/a"
        row = (f"| {entry['quantize']} | {entry['size_bytes'] / 1e6:.2f} | " + " | ".join(cells)
               + f" | {frames} |")
        if with_scores:
            row += (f" {100 * entry['keras_mean_iou']:.2f}% | {100 * entry['export_mean_iou']:.2f}%"
                    f" | {100 * entry['pixel_agreement']:.2f}% |")
        lines.append(row)
    int8 = next((entry for entry in result["exports"] if entry["quantize"] == "int8"), None)
    if int8 and "1" in int8["latency_ms"]:
        met = int8["latency_ms"]["1"] <= GOAL_INT8_MS
        lines += ["", f"Goal: int8, 1 thread <= {GOAL_INT8_MS:.0f} ms (>= 50 frames/s): "
                      f"{int8['latency_ms']['1']:.1f} ms, {'met' if met else 'not met'}."]
    return "\n".join(lines) + "\n"


def _size(text: str) -> tuple[int, int]:
    height, _, width = str(text).lower().partition("x")
    return int(height), int(width or height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="A run folder: its best model and its data.")
    parser.add_argument("--model", default="deeplabv3",
                        choices=["deeplabv3", "deeplabv3plus", "unet"])
    parser.add_argument("--backbone", default="mobilenetv2", choices=["mobilenetv2", "resnet50"])
    parser.add_argument("--width-multiplier", type=float, default=1.0)
    parser.add_argument("--size", help="S or HxW (default 256, or the run's input size).")
    parser.add_argument("--quantize", default="float32,int8",
                        help="Comma-separated: float32, float16, int8.")
    parser.add_argument("--threads", default="1,2", help="Interpreter thread counts.")
    parser.add_argument("--repeats", type=int, default=50, help="Timed invocations (median).")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--calibration-images", type=int, default=100)
    parser.add_argument("--keras", action=argparse.BooleanOptionalAction, default=True,
                        help="Also time the Keras forward pass with and without XLA.")
    parser.add_argument("--json", type=Path, help="Also write the figures as JSON here.")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--section", help="Section name in --out (default: from the model).")
    arguments = parser.parse_args()
    for name in arguments.quantize.split(","):
        if name not in ("float32", "float16", "int8"):
            parser.error(f"--quantize: {name!r} is not float32, float16 or int8")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = measure(arguments)
    command = "python benchmarks/export.py " + " ".join(sys.argv[1:])
    height, width = result["input_size"]
    section = arguments.section or f"export-{result['model']}-{height}x{width}"
    publish_figures(result, markdown=result_markdown(result, command.strip()),
                    results_path=arguments.out, section=section, json_path=arguments.json)


if __name__ == "__main__":
    main()
