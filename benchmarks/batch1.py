"""Batch-1 inference latency of our DeepLab v3 against torchvision's, in every CPU precision.

The model on both sides: DeepLab v3 ResNet-50 at output stride 16, 21 classes, random
weights, one image of ``--input-size`` (384x384 by default). Ours is ``pixelwise
benchmark deeplabv3`` (fused batch norm); torchvision's is ``torchvision_os16`` of
benchmarks/peers.py (layer4 dilated, ASPP rates 6/12/18, its extra 3x3 head conv).

Paths ("jobs"), each run in a fresh process:

- ours (the project's environment):
  ``ours_keras_float32``: ``model(images, training=False)`` in one ``tf.function``, as
  ``pixelwise benchmark`` times it; ``ours_keras_mixed_bfloat16``: the same built under
  Keras's mixed policy; ``ours_tflite_float32`` and ``ours_tflite_int8``: the export a
  device runs (``pixelwise.export.export_tflite``: uint8 frame in, class map out, int8
  calibrated on ``--calibration-images`` random frames), timed through
  ``TFLiteSegmenter`` with os.cpu_count() threads and with 1 (a float16 export computes in
  float32 on a CPU and is left out);
- torchvision (the peers' environment, ``--peer-python``), with
  ``torch.set_num_threads(os.cpu_count())`` under ``torch.inference_mode``:
  ``torch_{eager,compile,compile_freezing}_{float32,bfloat16_autocast,bfloat16}``: eager,
  ``torch.compile`` (inductor, default mode) or ``torch.compile`` with inductor's
  ``freezing`` option (the weights taken as constants: folded into the graph and
  prepacked for inference), each in float32, under CPU autocast to bfloat16, or with the weights
  converted to bfloat16; ``torch_fx_int8``: post-training static quantization with the
  x86 backend (``prepare_fx``/``convert_fx``, ``get_default_qconfig_mapping("x86")``),
  calibrated on the same random frames. Eager and int8 are timed channels-last and
  contiguous; compiled paths channels-last only (each layout would compile again).

Per path: the first call is timed apart ("setup": with the tracing, compilation,
conversion or quantization before it; for compiled paths it depends on inductor's on-disk
cache, warm after the first round), then ``--warmup`` untimed calls and the median of
``--repeats`` timed ones. Keras and torchvision return logits; the TFLite times include
what the exported graph adds (uint8 input, argmax). ``--rounds N`` runs every job N times,
each round starting one job further along. The table gives, for each of our paths,
torchvision's fastest path in the same precision and its fastest of all, with the ratio
torchvision ms / ours ms (> 1: ours is faster): the median over the rounds and, in
brackets, the lowest and highest. A path that fails (e.g. ``torch.compile`` without a C++
compiler) is listed with its error. Nothing is asserted on time: run it on a quiet
machine (the load average is recorded).

The peers' environment is made as benchmarks/peers.py says (``benchmarks/requirements.txt``).
This script runs with the project's environment and starts every torchvision job with the
peers' Python (``--worker NAME``).

    python benchmarks/batch1.py --input-size 384 --rounds 3 \\
        --json benchmarks/results/batch1_384.json --results benchmarks/RESULTS.md

Fewer jobs (each compile takes a minute or more on a small machine):

    python benchmarks/batch1.py --rounds 3 \\
        --jobs ours_keras_float32,ours_tflite_int8,torch_eager_float32,torch_fx_int8

Smoke test (64 px, one repeat):

    python benchmarks/batch1.py --quick --json /tmp/batch1.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from peers import (
    DEFAULT_PEER_PYTHON,
    NUM_CLASSES,
    median_seconds,
    peak_rss_megabytes,
    torchvision_model,
)

RUNNERS = {
    "keras": "Keras, tf.function",
    "tflite": "TFLite (LiteRT), uint8 in, class map out",
    "eager": "eager",
    "compile": "torch.compile (inductor, default mode)",
    "compile_freezing": "torch.compile (inductor, freezing)",
    "fx": "FX post-training static quantization, x86 backend",
}
COMPUTES = {
    "float32": "float32",
    "mixed_bfloat16": "mixed_bfloat16 policy",
    "bfloat16_autocast": "CPU autocast to bfloat16",
    "bfloat16": "weights in bfloat16",
    "int8": "int8",
}
LAYOUTS = ("channels_last", "contiguous_format")  # torch memory formats
CALIBRATION_SEED = 7
FRAME_SEED = 4


@dataclass(frozen=True)
class Job:
    """One way of running the model, measured in a process of its own."""

    framework: str  # "ours" or "torch"
    runner: str  # a key of RUNNERS
    compute: str  # a key of COMPUTES

    @property
    def name(self) -> str:
        return f"{self.framework}_{self.runner}_{self.compute}"

    @property
    def precision(self) -> str:
        """The table's group: float32, bfloat16 or int8."""
        return "bfloat16" if "bfloat16" in self.compute else self.compute

    @property
    def description(self) -> str:
        return f"{RUNNERS[self.runner]}, {COMPUTES[self.compute]}"


JOBS = (
    Job("ours", "keras", "float32"),
    Job("ours", "tflite", "float32"),
    Job("ours", "keras", "mixed_bfloat16"),
    Job("ours", "tflite", "int8"),
    *(Job("torch", runner, compute)
      for runner in ("eager", "compile", "compile_freezing")
      for compute in ("float32", "bfloat16_autocast", "bfloat16")),
    Job("torch", "fx", "int8"),
)
JOBS_BY_NAME = {job.name: job for job in JOBS}


def random_frames(settings: dict, count: int, seed: int):
    """``count`` uint8 RGB frames [count, H, W, 3] of the input size: the same in both
    environments (NumPy's generator), for the timed frame and int8 calibration."""
    import numpy as np

    height, width = settings["input_size"]
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3),
                                                dtype=np.uint8)


def time_first_call(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def milliseconds(call, settings: dict) -> float:
    return 1000.0 * median_seconds(call, repeats=settings["repeats"], warmup=settings["warmup"])


# --- ours (the project's environment) ---------------------------------------------------

def benchmark_settings(settings: dict):
    """``pixelwise benchmark deeplabv3``'s settings at batch 1 (ResNet-50, OS 16, fused BN)."""
    from pixelwise.benchmark import BenchmarkSettings

    return BenchmarkSettings(
        model="deeplabv3", backbone="resnet50", output_stride=16,
        input_size=tuple(settings["input_size"]), batch_size=1,
        num_classes=settings["num_classes"], latency_repeats=settings["repeats"],
        warmup=settings["warmup"], tflite_threads=tuple(settings["tflite_threads"]))


def run_keras(job: Job, settings: dict) -> dict:
    from pixelwise.benchmark import build_benchmark_model, dtype_policy, inference_function

    image = random_frames(settings, 1, FRAME_SEED).astype("float32")  # RGB 0..255
    with dtype_policy(job.compute):
        forward = inference_function(build_benchmark_model(benchmark_settings(settings)))
        setup = time_first_call(lambda: forward(image).numpy())
        latency = milliseconds(lambda: forward(image).numpy(), settings)
    return {"latency_ms": {"": latency}, "setup_seconds": setup}  # "": no variants


def export_int8(model, bench, out_dir: Path, settings: dict) -> Path:
    from pixelwise.data.spec import DatasetSpec
    from pixelwise.export import export_tflite

    frames = random_frames(settings, settings["calibration_images"], CALIBRATION_SEED)
    # 21 classes: VOC's names and colours stand in for the metadata.
    return export_tflite(model, DatasetSpec.voc(), out_dir / "model_int8.tflite",
                         input_size=bench.input_size, quantize="int8",
                         calibration_images=list(frames))


def run_tflite(job: Job, settings: dict) -> dict:
    from pixelwise.benchmark import build_benchmark_model, export_tflite_for_timing, time_tflite

    bench = benchmark_settings(settings)
    model = build_benchmark_model(bench)
    with tempfile.TemporaryDirectory(prefix="pixelwise-batch1-") as scratch:
        start = time.perf_counter()
        path = (export_int8(model, bench, Path(scratch), settings) if job.compute == "int8"
                else export_tflite_for_timing(model, bench, scratch))
        setup = time.perf_counter() - start
        latency = {thread_count(threads): time_tflite(path, bench, threads)
                   for threads in bench.tflite_threads}
    return {"latency_ms": latency, "setup_seconds": setup}


def thread_count(threads: int) -> str:
    return f"{threads} thread" + ("s" if threads > 1 else "")


def ours_versions() -> dict:
    import keras
    import tensorflow as tf

    from pixelwise.benchmark import cpu_name

    return {"cpu": cpu_name(), "tensorflow": tf.__version__, "keras": keras.__version__}


# --- torchvision (the peers' environment) -----------------------------------------------

def torch_images(frames):
    """uint8 frames [N, H, W, 3] as torchvision takes them: float [N, 3, H, W],
    ImageNet-normalised."""
    import torch

    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return ((images - mean) / std).contiguous()


def quantize_int8(model, settings: dict):
    """``model`` quantized for the x86 backend (FX graph mode, static), calibrated on
    ``calibration_images`` random frames."""
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    calibration = torch_images(random_frames(settings, settings["calibration_images"],
                                             CALIBRATION_SEED))
    prepared = prepare_fx(model, get_default_qconfig_mapping("x86"),
                          example_inputs=(calibration[:1],))
    for image in calibration:
        prepared(image[None])
    return convert_fx(prepared)


def torch_forward(job: Job, model):
    """images -> logits, the way ``job`` runs ``model`` (already in its memory layout)."""
    import torch

    if job.compute == "bfloat16":
        model = model.to(torch.bfloat16)
    if job.runner.startswith("compile"):
        options = {"freezing": True} if job.runner == "compile_freezing" else None
        model = torch.compile(model, options=options)

    def forward(images):
        with (torch.autocast("cpu", dtype=torch.bfloat16) if job.compute == "bfloat16_autocast"
              else contextlib.nullcontext()):
            return model(images)["out"]

    return forward


def run_torch(job: Job, settings: dict) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count())
    model = torchvision_model("torchvision_os16", settings["num_classes"]).eval()
    image = torch_images(random_frames(settings, 1, FRAME_SEED))
    if job.compute == "bfloat16":
        image = image.to(torch.bfloat16)
    layouts = LAYOUTS if job.runner in ("eager", "fx") else LAYOUTS[:1]
    latency, setup = {}, 0.0
    with torch.inference_mode():
        if job.compute == "int8":
            start = time.perf_counter()
            model = quantize_int8(model, settings)
            setup = time.perf_counter() - start
        for layout in layouts:
            memory_format = getattr(torch, layout)
            forward = torch_forward(job, model.to(memory_format=memory_format))
            images = image.contiguous(memory_format=memory_format)
            first = time_first_call(lambda: forward(images))
            if not latency:  # the first layout's first call (compilation, for a compiled path)
                setup += first
            latency[layout] = milliseconds(lambda: forward(images), settings)
    return {"latency_ms": latency, "setup_seconds": setup}


def torch_versions() -> dict:
    import torch
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "torch_threads": torch.get_num_threads()}


def run_worker(name: str, settings: dict) -> dict:
    """One job's figures, or its error (the traceback goes to standard error)."""
    job = JOBS_BY_NAME[name]
    result = {"load_average": round(os.getloadavg()[0], 2)}
    try:
        if job.framework == "torch":
            result |= run_torch(job, settings) | {"versions": torch_versions()}
        else:
            run = run_keras if job.runner == "keras" else run_tflite
            result |= run(job, settings) | {"versions": ours_versions()}
    except Exception as error:  # the table records what failed, the other jobs go on
        traceback.print_exc()
        return result | {"error": error_text(error)}
    return result | {"peak_rss_mb": round(peak_rss_megabytes())}


def error_text(error: BaseException, limit: int = 300) -> str:
    """The error's type and the first line of its message, shortened for a table cell."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- the driver (the project's environment) ---------------------------------------------

def run_job(job: Job, settings: dict, peer_python: Path, folder: Path) -> dict:
    json_path = folder / f"{job.name}.json"
    json_path.unlink(missing_ok=True)
    python = str(peer_python) if job.framework == "torch" else sys.executable
    command = [python, str(Path(__file__).resolve()), "--worker", job.name,
               "--settings", json.dumps(settings), "--worker-json", str(json_path)]
    print(f"== {job.name}", flush=True)
    completed = subprocess.run(command)
    if completed.returncode != 0 or not json_path.exists():
        how = (f"killed by signal {-completed.returncode}" if completed.returncode < 0
               else f"exited with status {completed.returncode}")
        return {"error": f"the worker {how} (see its output)"}
    return json.loads(json_path.read_text())


def measurement_name(job: Job, variant: str) -> str:
    """``torch_eager_float32 (channels_last)``; a job with one measurement: its name."""
    return f"{job.name} ({variant})" if variant else job.name


def measurements(jobs: list[Job], rounds: dict[str, list[dict]]) -> dict[str, dict]:
    """Every measurement: its job, its milliseconds per round (None where the job
    failed that round) and the errors."""
    table = {}
    for job in jobs:
        results = rounds[job.name]
        variants = dict.fromkeys(variant for result in results
                                 for variant in result.get("latency_ms", {}))
        for variant in variants or [""]:
            table[measurement_name(job, variant)] = {
                "job": job,
                "ms": [result.get("latency_ms", {}).get(variant) for result in results],
                "errors": sorted({result["error"] for result in results if "error" in result})}
    return table


def median_ms(entry: dict) -> float | None:
    values = [value for value in entry["ms"] if value is not None]
    return statistics.median(values) if values else None


def fastest(table: dict[str, dict], precision: str | None = None) -> str | None:
    """The torchvision measurement of the lowest median (in ``precision`` if given)."""
    candidates = [name for name, entry in table.items()
                  if entry["job"].framework == "torch" and median_ms(entry) is not None
                  and precision in (None, entry["job"].precision)]
    return min(candidates, key=lambda name: median_ms(table[name]), default=None)


def ratio_spread(torch_entry: dict, ours_entry: dict) -> list[float] | None:
    """[median, lowest, highest] over the rounds of torchvision ms / ours ms."""
    ratios = [theirs / ours for theirs, ours in zip(torch_entry["ms"], ours_entry["ms"])
              if theirs is not None and ours is not None]
    return [statistics.median(ratios), min(ratios), max(ratios)] if ratios else None


def ratio_text(spread: list[float] | None) -> str:
    if spread is None:
        return ""
    median, low, high = spread
    return f"{median:.2f}" if low == high else f"{median:.2f} ({low:.2f}-{high:.2f})"


def ms_text(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def cell(text: str) -> str:
    """Text that cannot break a Markdown table row."""
    return text.replace("|", "\\|").replace("\n", " ")


def comparisons(table: dict[str, dict]) -> list[dict]:
    """Per measurement of ours: torchvision's fastest in its precision and of all, with
    the ratios."""
    rows = []
    for name, entry in table.items():
        if entry["job"].framework != "ours":
            continue
        row = {"ours": name, "precision": entry["job"].precision, "ours_ms": median_ms(entry)}
        for key, peer in (("same_precision", fastest(table, entry["job"].precision)),
                          ("fastest", fastest(table))):
            row[key] = None if peer is None else {
                "torch": peer, "torch_ms": median_ms(table[peer]),
                "ratio": ratio_spread(table[peer], entry)}
        rows.append(row)
    return rows


def comparison_line(row: dict) -> str:
    cells = [row["precision"], f"`{row['ours']}`", ms_text(row["ours_ms"])]
    for key in ("same_precision", "fastest"):
        peer = row[key]
        cells += (["no result", "", ""] if peer is None else
                  [f"`{peer['torch']}`", ms_text(peer["torch_ms"]), ratio_text(peer["ratio"])])
    return "| " + " | ".join(cells) + " |"


def path_line(name: str, entry: dict) -> str:
    job = entry["job"]
    values = [value for value in entry["ms"] if value is not None]
    spread = f"{min(values):.1f}-{max(values):.1f}" if len(values) > 1 else ""
    failed = sum(value is None for value in entry["ms"])
    errors = (cell(f"{failed} of {len(entry['ms'])} round(s): " + "; ".join(entry["errors"]))
              if failed else "")
    framework = "ours" if job.framework == "ours" else "torchvision"
    return (f"| {framework} | `{name}` | {job.precision} | {job.description} | "
            f"{ms_text(median_ms(entry))} | {spread} | {errors} |")


def markdown(settings: dict, environment: dict, table: dict[str, dict], rows: list[dict],
             setup: dict[str, float | None], command: str, rounds: int) -> str:
    height, width = settings["input_size"]
    versions = "".join(f", {name} {environment[name]}"
                       for name in ("tensorflow", "keras", "torch", "torchvision")
                       if name in environment)
    lines = [
        f"### Batch-1 latency, every CPU precision: DeepLab v3 ResNet-50 OS 16, "
        f"{height}x{width}, {settings['num_classes']} classes",
        "",
        f"{environment.get('cpu', 'CPU')} ({environment['cpu_count']} CPUs{versions}), "
        f"load average {environment['load_average_start']} at the start, "
        f"{environment['load_average_end']} at the end. Random weights; int8 calibrated on "
        f"{settings['calibration_images']} random frames. {rounds} interleaved round(s), "
        f"each path in a fresh process: the median of {settings['repeats']} timed calls "
        f"after the first call and {settings['warmup']} warm-up calls. Ours / it is "
        f"torchvision ms over ours (> 1: ours faster), the rounds' median and "
        f"lowest-highest in brackets. "
        f"Command: `{command}`",
        "",
        "| precision | ours | ms | torchvision, same precision (fastest) | ms | ours / it "
        "| torchvision, fastest of all | ms | ours / it |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *(comparison_line(row) for row in rows),
        "",
        "Every path:",
        "",
        "| framework | path | precision | how | ms | rounds' range (ms) | error |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(path_line(name, entry) for name, entry in table.items()),
        "",
        "Setup (s, median over the rounds: the first call, with the tracing, compilation, "
        "conversion or quantization before it; TFLite: the export): " + "; ".join(
            f"`{name}` {seconds:.1f}" for name, seconds in setup.items() if seconds is not None),
    ]
    return "\n".join(lines)


def median_setup(rounds: dict[str, list[dict]]) -> dict[str, float | None]:
    setup = {}
    for name, results in rounds.items():
        values = [result["setup_seconds"] for result in results if "setup_seconds" in result]
        setup[name] = statistics.median(values) if values else None
    return setup


def environment_of(rounds: dict[str, list[dict]]) -> dict:
    """The versions the workers reported (the first successful one of each side)."""
    environment = {"cpu_count": os.cpu_count()}
    for results in rounds.values():
        for result in results:
            environment = result.get("versions", {}) | environment
    return environment


def parse_jobs(text: str | None, parser: argparse.ArgumentParser) -> list[Job]:
    if text is None:
        return list(JOBS)
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in JOBS_BY_NAME]
    if unknown or not names:
        parser.error(f"unknown job(s) {', '.join(unknown) or '(none given)'}; choose from "
                     f"{', '.join(JOBS_BY_NAME)}")
    return [JOBS_BY_NAME[name] for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-size", default="384", help="S or HxW")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls (median)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed calls after the first, before the timed ones")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every job this many times, interleaved")
    parser.add_argument("--calibration-images", type=int, default=8,
                        help="random frames the int8 paths are calibrated on")
    parser.add_argument("--jobs", default=None,
                        help=f"comma-separated; default all: {','.join(JOBS_BY_NAME)}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 64x64, one repeat, one warm-up call")
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--json", dest="json_path", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=None,
                        help="Markdown file to put the section batch1_HxW into")
    parser.add_argument("--worker", default=None, choices=JOBS_BY_NAME, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-json", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = run_worker(args.worker, json.loads(args.settings))
        args.worker_json.write_text(json.dumps(result, indent=2))
        return 0

    jobs = parse_jobs(args.jobs, parser)
    if any(job.framework == "torch" for job in jobs) and not args.peer_python.exists():
        parser.error(f"{args.peer_python}: no peers' Python; create the environment as the "
                     "docstring of benchmarks/peers.py says, or pass --peer-python")
    if min(args.repeats, args.rounds, args.calibration_images) < 1 or args.warmup < 0:
        parser.error("--repeats, --rounds and --calibration-images must be at least 1, "
                     "--warmup at least 0")
    height, _, width = ("64" if args.quick else args.input_size).lower().partition("x")
    settings = {"input_size": [int(height), int(width or height)], "num_classes": NUM_CLASSES,
                "repeats": 1 if args.quick else args.repeats,
                "warmup": 1 if args.quick else args.warmup,
                "calibration_images": args.calibration_images,
                "tflite_threads": sorted({os.cpu_count() or 1, 1}, reverse=True)}
    load_start = round(os.getloadavg()[0], 2)
    rounds = {job.name: [] for job in jobs}
    with tempfile.TemporaryDirectory(prefix="pixelwise-batch1-") as folder:
        for round_index in range(args.rounds):
            # Each round starts one job further along: no job always runs first.
            shift = round_index % len(jobs)
            for job in jobs[shift:] + jobs[:shift]:
                rounds[job.name].append(run_job(job, settings, args.peer_python, Path(folder)))
    environment = environment_of(rounds) | {"load_average_start": load_start,
                                            "load_average_end": round(os.getloadavg()[0], 2)}
    table = measurements(jobs, rounds)
    rows = comparisons(table)
    setup = median_setup(rounds)
    command = shlex.join(["python", "benchmarks/batch1.py", *(sys.argv[1:] if argv is None
                                                              else argv)])
    text = markdown(settings, environment, table, rows, setup, command, args.rounds)
    print(text)
    if args.json_path:
        from pixelwise.benchmark_results import write_json

        write_json({"settings": settings, "environment": environment, "command": command,
                    "comparisons": rows, "setup_seconds": setup,
                    "measurements": {name: {"job": entry["job"].name, "ms": entry["ms"],
                                            "errors": entry["errors"]}
                                     for name, entry in table.items()},
                    "rounds": rounds}, args.json_path)
    if args.results:
        from pixelwise.benchmark_results import update_results_section

        section = "batch1_{}x{}".format(*settings["input_size"])
        update_results_section(args.results, section, text)
        print(f"wrote section {section} of {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
