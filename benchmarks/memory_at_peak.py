"""Which tensors are alive when a training step's memory peaks: DeepLab v3 ResNet-50 at
384 x 384, batch 8 (memory.py's setting), one profiled ``train_on_batch`` after one
unprofiled.

TensorFlow's profiler records every allocation of the BFC allocator (switched on for the
CPU here, ``TF_CPU_ALLOCATOR_USE_BFC``, before TensorFlow loads); its memory profile
lists the allocations alive at the peak with the op that made each. They are grouped by
what keeps them alive (the op's kind), largest first, with the largest tensors. What the
allocator held before the step (weights, optimizer slots) is the peak minus the step's
tensors. The resident memory above the allocator's peak (runtime, oneDNN's own buffers,
the C allocator's slack) is memory.py's comparison of the two columns.

    python benchmarks/memory_at_peak.py --results benchmarks/RESULTS.md
    python benchmarks/memory_at_peak.py --input-size 64 --batch-size 2      # smoke
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # before TensorFlow loads

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

SECTION = "memory_at_peak"
MB = 2**20
# The op kinds, by the last part of the op's name, and what keeps their outputs alive.
KINDS = (
    ("loss", "the loss (its logits and per-pixel values; one-hot labels)"),
    ("BiasAdd", "convolution outputs (batch norm's gradient needs them)"),
    ("FusedBatchNormV3", "batch norm + ReLU outputs (the next convolution's gradient)"),
    ("Slice", "atrous per-tap input slices (the tap's kernel gradient)"),
    ("Pad", "zero padding of the stem (the next op's gradient)"),
    ("ResizeBilinear", "logits upsampled to the input size"),
)


def kind_of(op_name: str) -> str:
    if "loss" in op_name or op_name.split("/")[-1].startswith("one_hot"):
        return "loss"
    last = op_name.split("/")[-1]
    for kind, _ in KINDS[1:]:
        if last.startswith(kind):
            return kind
    return "other"


def profile_step(size: int, batch: int, log_dir: str) -> dict:
    """One profiled training step; the memory profile's summary and the live tensors at
    its peak as (megabytes, op name, shape)."""
    import keras
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as profiler_plugin

    from pixelwise.benchmark import BenchmarkSettings, build_benchmark_model
    from pixelwise.losses import build_loss

    settings = BenchmarkSettings(input_size=(size, size), batch_size=batch)
    model = build_benchmark_model(settings)
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=build_loss(num_classes=settings.num_classes), jit_compile=False)
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, settings.num_classes, (batch, size, size)).astype("int32")
    model.train_on_batch(images, labels)
    tf.profiler.experimental.start(log_dir)
    model.train_on_batch(images, labels)
    tf.profiler.experimental.stop()
    planes = [str(path) for path in Path(log_dir).rglob("*.xplane.pb")]
    data, ok = profiler_plugin.xspace_to_tools_data(planes, "memory_profile", {})
    if not ok:
        raise SystemExit(f"the profiler gave no memory profile for {planes}")
    profile = json.loads(data)
    allocator = next(iter(profile["memoryProfilePerAllocator"].values()))
    snapshots = allocator["memoryProfileSnapshots"]
    live = []
    for active in allocator["activeAllocations"]:
        index = int(active["snapshotIndex"])
        if index < 0:
            continue  # the allocator's own reserve, not a tensor
        activity = snapshots[index]["activityMetadata"]
        live.append((int(activity["requestedBytes"]) * int(active["numOccurrences"]) / MB,
                     activity["tfOpName"], activity["tensorShape"]))
    peak = int(allocator["profileSummary"]["peakStats"]["peakBytesInUse"]) / MB
    return {"peak_mb": peak, "live": live}


def markdown(arguments: argparse.Namespace, result: dict) -> str:
    totals = collections.Counter()
    for megabytes, op_name, _ in result["live"]:
        totals[kind_of(op_name)] += megabytes
    step_total = sum(totals.values())
    descriptions = dict(KINDS, other="everything else")
    lines = [
        f"### Tensors alive at a training step's memory peak: DeepLab v3 ResNet-50 OS16, "
        f"{arguments.input_size}x{arguments.input_size}, batch {arguments.batch_size}, "
        f"float32",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d}: TensorFlow's memory profile of one "
        f"`train_on_batch` (CE + Dice, Adam) after one, BFC allocator on the CPU. Peak "
        f"{result['peak_mb']:.0f} MB in use: {step_total:.0f} MB of the step's tensors, "
        f"{result['peak_mb'] - step_total:.0f} MB held from before it (weights, optimizer "
        f"slots). Command: `python benchmarks/memory_at_peak.py {' '.join(arguments.argv)}`",
        "",
        "| kept alive by | MB | share of the peak |",
        "| --- | --- | --- |",
    ]
    for kind, megabytes in totals.most_common():
        lines.append(f"| {descriptions[kind]} | {megabytes:.0f} | "
                     f"{megabytes / result['peak_mb']:.0%} |")
    lines += ["", "The largest tensors at the peak:", "", "| op | shape | MB |",
              "| --- | --- | --- |"]
    for megabytes, op_name, shape in sorted(result["live"], reverse=True)[:arguments.top]:
        lines.append(f"| `{op_name}` | {shape} | {megabytes:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-size", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--top", type=int, default=8, help="largest tensors to list")
    parser.add_argument("--results", type=Path, default=None,
                        help="Markdown file to write the tables to (their own section).")
    arguments = parser.parse_args(argv)
    arguments.argv = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory() as log_dir:
        result = profile_step(arguments.input_size, arguments.batch_size, log_dir)
    from pixelwise.benchmark_results import print_and_record

    print_and_record(markdown(arguments, result), arguments.results, SECTION)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
