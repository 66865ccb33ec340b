"""Speed and size of a model on this machine: what ``pixelwise benchmark`` reports.

For one model (name, backbone, output stride, input size), in one process:

- parameters and multiply-adds per image (:func:`pixelwise.models.count_multiply_adds`);
- Keras inference: latency at batch 1 (median of N calls) and images/s at the benchmark
  batch size, each through one ``tf.function`` of ``model(images, training=False)``;
  optionally also compiled with XLA (``jit_compile=True``);
- training images/s: ``train_on_batch`` with Adam and the default loss (``ce_dice``),
  ``jit_compile=False`` (XLA training is far slower on CPUs, see DESIGN.md);
- peak resident memory (the process's high-water mark after inference, after training);
- TFLite latency at batch 1 with 1 and 2 interpreter threads (optional: the conversion
  takes a while);
- the machine's limit: the float32 FLOP rate TensorFlow reaches on a large matrix product,
  and every throughput also as a fraction of what that rate would allow for this model
  (inference: 2 FLOPs per multiply-add; training: 3 x that, for the forward pass and the
  two products of the backward pass). The model's nominal multiply-adds are the
  architecture's; the atrous convolutions skip the taps that only read zero padding, so
  the fraction is also given for the multiply-adds actually executed (``executed=True``),
  the stricter measure of how close the kernels come to the machine.

``precision="mixed_bfloat16"`` builds and runs the model under Keras's mixed policy
(bfloat16 compute, float32 variables; the logits stay float32).

Times are medians after warm-up steps (the first calls trace and compile). Nothing here
asserts on time; run it on a quiet machine (the load average is recorded).
"""

from __future__ import annotations

import os
import platform
import re
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from pixelwise.benchmark_results import (
    RESULTS_MARKER,
    BenchmarkResult,
    result_markdown,
    update_results_section,
    write_json,
)
from pixelwise.global_state import dtype_policy

PRECISIONS = ("float32", "mixed_bfloat16")


@dataclass(frozen=True)
class BenchmarkSettings:
    """What to measure, and how often.

    Args:
        model: a name of :data:`pixelwise.models.MODEL_NAMES`.
        backbone: ``"resnet50"`` or ``"mobilenetv2"``.
        output_stride: None for the model's default (DeepLab 16, U-Net 32).
        input_size: (height, width) of the images.
        batch_size: batch of the throughput and training measurements.
        num_classes: logit channels.
        precision: ``"float32"`` or ``"mixed_bfloat16"``.
        fused_batchnorm: build with :class:`~pixelwise.models.FusedBatchNormalization`.
        recompute: train with the backbone's stages recomputed in the backward pass
            (:func:`pixelwise.models.recompute.enable_recomputation`).
        width_multiplier: MobileNetV2's alpha.
        latency_repeats: timed batch-1 calls (median reported).
        throughput_repeats: timed calls at ``batch_size``.
        train_steps: timed training steps.
        warmup: untimed calls before each timed series.
        xla_inference: also time inference compiled with XLA.
        tflite_threads: interpreter thread counts for TFLite latency; empty: skip TFLite
            (also skipped for mixed precision).
        matmul_size: side of the square float32 matrices of the FLOP-rate measurement;
            0 skips it (and the fractions of the limit).
        model_options: more keyword arguments of ``build_model`` (``aspp_filters``,
            ``aspp_rates``, ``low_level_filters``, ``decoder_filters``, ``decoder_conv``).
        like_run: the run folder these settings copy the architecture of
            (:func:`settings_like_run`), for the command line that reproduces them.
    """

    model: str = "deeplabv3"
    backbone: str = "resnet50"
    output_stride: int | None = None
    input_size: tuple[int, int] = (384, 384)
    batch_size: int = 8
    num_classes: int = 21
    precision: str = "float32"
    fused_batchnorm: bool = True
    recompute: bool = False
    width_multiplier: float = 1.0
    latency_repeats: int = 10
    throughput_repeats: int = 3
    train_steps: int = 3
    warmup: int = 1
    xla_inference: bool = False
    tflite_threads: tuple[int, ...] = (1, 2)
    matmul_size: int = 4096
    model_options: dict[str, Any] = field(default_factory=dict)
    like_run: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"input_size {self.input_size!r}: expected (height, width) > 0")
        for name in ("batch_size", "latency_repeats", "throughput_repeats", "train_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.matmul_size < 0:
            raise ValueError("warmup and matmul_size must not be negative")
        if any(threads < 1 for threads in self.tflite_threads):
            raise ValueError(f"tflite_threads {self.tflite_threads}: counts must be >= 1")


def settings_like_run(run_dir: str | Path, **settings: Any) -> BenchmarkSettings:
    """Settings that measure the architecture of the run folder ``run_dir`` (its model,
    backbone, head options and its dataset's class count) with random weights; other
    ``settings`` (input size, batch, precision...) as given."""
    from pixelwise.config import RunConfig
    from pixelwise.data.spec import DatasetSpec
    from pixelwise.runs import RunFolder

    folder = RunFolder(Path(run_dir))
    for path in (folder.config_path, folder.spec_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; give a run folder written by "
                                    f"`pixelwise train`")
    model = RunConfig.load(folder.config_path).model
    options = model.builder_options()
    return BenchmarkSettings(
        model=model.name, backbone=options.pop("backbone"),
        output_stride=options.pop("output_stride"),
        width_multiplier=options.pop("width_multiplier"),
        num_classes=DatasetSpec.load(folder.spec_path).num_classes,
        model_options={name: value for name, value in options.items()
                       if name != "backbone_weights"},  # random weights: measured, not used
        like_run=str(folder.root), **settings)


def parse_thread_counts(text: str) -> tuple[int, ...]:
    """``"1,2"`` -> (1, 2); ``"none"`` or ``""`` -> () (TFLite not measured)."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError as error:
        raise ValueError(f"TFLite threads {text!r}: expected counts like 1,2 or 'none'") from error
    if any(count < 1 for count in counts):
        raise ValueError(f"TFLite threads {text!r}: counts must be at least 1")
    return counts


def default_section_name(settings: "BenchmarkSettings") -> str:
    """``deeplabv3_resnet50_384x384_float32`` (plus ``_unfused-bn`` without the fused BN)."""
    height, width = settings.input_size
    name = f"{settings.model}_{settings.backbone}_{height}x{width}_{settings.precision}"
    name = name if settings.fused_batchnorm else name + "_unfused-bn"
    return name + "_recompute" if settings.recompute else name


def command_line(settings: "BenchmarkSettings") -> str:
    """The ``pixelwise benchmark`` command that measures ``settings``."""
    height, width = settings.input_size
    if settings.like_run is not None:
        parts = ["pixelwise", "benchmark", "--like-run", settings.like_run]
    else:
        parts = ["pixelwise", "benchmark", settings.model, "--backbone", settings.backbone]
        if settings.output_stride is not None:
            parts += ["--output-stride", str(settings.output_stride)]
        if settings.width_multiplier != 1.0:
            parts += ["--width-multiplier", str(settings.width_multiplier)]
    parts += ["--input-size", f"{height}x{width}", "--batch-size", str(settings.batch_size)]
    if settings.like_run is None:
        parts += ["--num-classes", str(settings.num_classes)]
    parts += ["--precision", settings.precision,
              "--fused-batchnorm" if settings.fused_batchnorm else "--no-fused-batchnorm",
              *(["--recompute"] if settings.recompute else []),
              "--xla" if settings.xla_inference else "--no-xla",
              "--tflite-threads", ",".join(map(str, settings.tflite_threads)) or "none",
              "--latency-repeats", str(settings.latency_repeats),
              "--throughput-repeats", str(settings.throughput_repeats),
              "--train-steps", str(settings.train_steps), "--warmup", str(settings.warmup),
              "--matmul-size", str(settings.matmul_size)]
    return " ".join(parts)


def peak_rss_megabytes() -> float:
    """This process's peak resident set size so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if platform.system() == "Darwin" else peak / 1024


def cpu_name() -> str:
    """The processor's model name where the system says it (Linux), else platform's word."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else platform.machine()


def machine_description() -> str:
    """``"<CPU model name>, <N> CPUs"``: the machine a results section was measured on."""
    return f"{cpu_name()}, {os.cpu_count()} CPUs"


def median_seconds(call: Callable[[], Any], *, repeats: int, warmup: int) -> float:
    """Median wall time of ``call()`` over ``repeats`` runs after ``warmup`` untimed ones.
    ``call`` must block until its result is computed (return NumPy values)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reachable_flop_rate(size: int = 4096, *, repeats: int = 5) -> float:
    """FLOP/s of TensorFlow's float32 product of two ``size`` x ``size`` matrices
    (2 size^3 FLOPs; median of ``repeats`` after one warm-up): what this CPU reaches on
    the best-tuned kernel it has, the ceiling for convolutions."""
    import tensorflow as tf  # the measurement is of TensorFlow's kernel

    rng = np.random.default_rng(0)
    left = tf.constant(rng.standard_normal((size, size), dtype=np.float32))
    right = tf.constant(rng.standard_normal((size, size), dtype=np.float32))
    product = tf.function(lambda a, b: tf.reduce_sum(tf.linalg.matmul(a, b)))
    seconds = median_seconds(lambda: product(left, right).numpy(), repeats=repeats, warmup=1)
    return 2.0 * size ** 3 / seconds


def _random_batch(settings: BenchmarkSettings, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    height, width = settings.input_size
    images = rng.uniform(0, 255, (batch, height, width, 3)).astype("float32")
    labels = rng.integers(0, settings.num_classes, (batch, height, width)).astype("int32")
    return images, labels


def build_benchmark_model(settings: BenchmarkSettings) -> keras.Model:
    """The model of ``settings`` with random weights, built for any input size; raises
    ValueError if the input size is not a multiple of what the model downsamples by."""
    from pixelwise.models import build_model
    from pixelwise.models.backbones import check_input_shape
    from pixelwise.models.registry import input_multiple

    multiple = input_multiple(settings.model, settings.output_stride)
    check_input_shape((*settings.input_size, 3), multiple, settings.model)
    keras.utils.set_random_seed(0)
    return build_model(
        settings.model, num_classes=settings.num_classes, backbone=settings.backbone,
        output_stride=settings.output_stride, width_multiplier=settings.width_multiplier,
        fused_batchnorm=settings.fused_batchnorm, **settings.model_options)


def inference_function(model: keras.Model, *, jit_compile: bool = False):
    """One ``tf.function`` of the model's inference (XLA-compiled if ``jit_compile``), its
    batch norms folded into their convolutions as the Keras predictor does."""
    import tensorflow as tf

    from pixelwise.models.folding import fold_batch_norms

    folded = fold_batch_norms(model)
    return tf.function(lambda images: folded(images, training=False), jit_compile=jit_compile)


def time_inference(model: keras.Model, settings: BenchmarkSettings, *,
                   jit_compile: bool) -> dict[str, float]:
    """Batch-1 latency (ms) and images/s at the benchmark batch size."""
    forward = inference_function(model, jit_compile=jit_compile)
    single, _ = _random_batch(settings, 1, seed=1)
    batch, _ = _random_batch(settings, settings.batch_size, seed=2)
    latency = median_seconds(lambda: forward(single).numpy(),
                             repeats=settings.latency_repeats, warmup=max(settings.warmup, 1))
    batch_seconds = median_seconds(lambda: forward(batch).numpy(),
                                   repeats=settings.throughput_repeats,
                                   warmup=max(settings.warmup, 1))
    return {"latency_ms": 1000.0 * latency,
            "images_per_second": settings.batch_size / batch_seconds}


def time_training(model: keras.Model, settings: BenchmarkSettings,
                  loss: keras.losses.Loss | None = None) -> dict[str, float]:
    """Images/s of ``train_on_batch`` (Adam, ``loss`` or the default loss, no XLA)."""
    from pixelwise.losses import build_loss
    from pixelwise.models.recompute import enable_recomputation

    if loss is None:
        loss = build_loss(num_classes=settings.num_classes)
    if settings.recompute:
        enable_recomputation(model, settings.backbone)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss, jit_compile=False)
    images, labels = _random_batch(settings, settings.batch_size, seed=3)
    step_seconds = median_seconds(lambda: model.train_on_batch(images, labels),
                                  repeats=settings.train_steps, warmup=max(settings.warmup, 1))
    return {"step_seconds": step_seconds, "images_per_second": settings.batch_size / step_seconds}


def export_tflite_for_timing(model: keras.Model, settings: BenchmarkSettings,
                            out_dir: str | Path) -> Path:
    """The float32 TFLite model a device would run (uint8 frame in, int32 class map out),
    written by :func:`pixelwise.export.export_tflite` with placeholder class names."""
    from pixelwise.data.spec import DatasetSpec, voc_colormap
    from pixelwise.export import export_tflite

    classes = settings.num_classes
    spec = DatasetSpec(tuple(f"class_{index}" for index in range(classes)),
                       tuple(tuple(int(c) for c in rgb) for rgb in voc_colormap(classes)))
    return export_tflite(model, spec, Path(out_dir) / "model.tflite",
                         input_size=settings.input_size)


def time_tflite(model_path: str | Path, settings: BenchmarkSettings, threads: int) -> float:
    """Median latency (ms) of one batch-1 TFLite inference with ``threads`` threads, through
    :class:`pixelwise.inference.TFLiteSegmenter` on a frame of the model's input size."""
    from pixelwise.inference import TFLiteSegmenter

    segmenter = TFLiteSegmenter(model_path, num_threads=threads)
    frame = np.random.default_rng(4).integers(0, 256, (*segmenter.input_size, 3), dtype=np.uint8)
    return 1000.0 * median_seconds(lambda: segmenter.predict_at_input_size(frame),
                                   repeats=settings.latency_repeats,
                                   warmup=max(settings.warmup, 1))


def fractions_of_limit(flop_rate: float, multiply_adds: int,
                       throughputs: dict[str, tuple[float, str]]) -> dict[str, float]:
    """Each throughput (images/s, ``"inference"`` or ``"training"``) as a fraction of
    ``flop_rate / FLOPs per image``: 2 FLOPs per multiply-add for inference, 6 for
    training (forward, and the input and weight gradients)."""
    flops_per_image = {"inference": 2.0 * multiply_adds, "training": 6.0 * multiply_adds}
    return {name: images_per_second / (flop_rate / flops_per_image[kind])
            for name, (images_per_second, kind) in throughputs.items()}


def run_benchmark(settings: BenchmarkSettings,
                  echo: Callable[[str], None] = lambda line: None) -> BenchmarkResult:
    """Measure the model of ``settings`` (see the module docstring); ``echo`` gets a line
    as each stage starts."""
    import tensorflow as tf

    from pixelwise.models import count_multiply_adds

    load_before = os.getloadavg()[0]
    with dtype_policy("mixed_bfloat16" if settings.precision == "mixed_bfloat16" else "float32"):
        echo("building the model")
        model = build_benchmark_model(settings)
        multiply_adds = count_multiply_adds(model, settings.input_size)
        executed_multiply_adds = count_multiply_adds(model, settings.input_size, executed=True)
        echo("inference")
        inference = time_inference(model, settings, jit_compile=False)
        xla = None
        if settings.xla_inference:
            echo("inference with XLA")
            xla = time_inference(model, settings, jit_compile=True)
        after_inference = peak_rss_megabytes()
        echo("training")
        training = time_training(model, settings)
        after_training = peak_rss_megabytes()
        tflite = {}
        # A mixed-precision model would convert to bfloat16 ops TFLite runs slowly if at
        # all; TFLite is measured on the float32 model only.
        if settings.tflite_threads and settings.precision == "float32":
            echo("TFLite conversion")
            with tempfile.TemporaryDirectory(prefix="pixelwise-benchmark-") as scratch:
                model_path = export_tflite_for_timing(model, settings, scratch)
                for threads in settings.tflite_threads:
                    echo(f"TFLite, {threads} thread(s)")
                    tflite[str(threads)] = time_tflite(model_path, settings, threads)
    flop_rate, fractions, executed_fractions = None, {}, {}
    if settings.matmul_size:
        echo("float32 FLOP rate")
        flop_rate = reachable_flop_rate(settings.matmul_size)
        throughputs = {"inference": (inference["images_per_second"], "inference"),
                       "training": (training["images_per_second"], "training")}
        if xla:
            throughputs["inference_xla"] = (xla["images_per_second"], "inference")
        fractions = fractions_of_limit(flop_rate, multiply_adds, throughputs)
        if executed_multiply_adds != multiply_adds:
            executed_fractions = fractions_of_limit(flop_rate, executed_multiply_adds,
                                                    throughputs)
    environment = {
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
        "keras": keras.__version__, "python": platform.python_version(),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
    }
    return BenchmarkResult(
        settings=asdict(settings), environment=environment, parameters=model.count_params(),
        multiply_adds=multiply_adds, inference=inference, training=training,
        memory_mb={"after_inference": after_inference, "after_training": after_training},
        xla_inference=xla, tflite_latency_ms=tflite, flop_rate=flop_rate,
        executed_multiply_adds=executed_multiply_adds,
        fraction_of_executed_limit=executed_fractions,
        fraction_of_limit=fractions)


__all__ = ["PRECISIONS", "RESULTS_MARKER", "BenchmarkResult", "BenchmarkSettings",
           "build_benchmark_model", "command_line", "cpu_name", "default_section_name",
           "dtype_policy", "export_tflite_for_timing", "fractions_of_limit",
           "inference_function", "machine_description", "median_seconds", "parse_thread_counts",
           "peak_rss_megabytes", "reachable_flop_rate", "result_markdown", "run_benchmark",
           "time_inference", "time_tflite", "time_training", "update_results_section",
           "write_json"]
