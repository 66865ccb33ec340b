"""Where a training step's memory goes: peak resident memory of our DeepLab v3 training at
384 x 384, batch 8 (peers.py's setting), with one thing changed at a time.

Each variant runs in a fresh process (peak RSS only grows within a process): build the
model, one untimed step, then ``--steps`` timed steps of ``train_on_batch`` (Adam, the
default CE + Dice loss unless the variant changes it). Reported per variant: resident
memory after building, peak after training, the difference (what training adds), the
peak of the tensors TensorFlow's allocator held (weights and optimizer slots included;
the rest of the resident memory is the runtime, oneDNN's own buffers and the C
allocator's slack), and the median step time. The variants:

- ``default``: as peers.py measures it (on this CPU each atrous convolution chooses:
  oneDNN's dilated kernel at rates 2 and 6, per-tap products at 12 and 18);
- ``tapwise_atrous``: ``PIXELWISE_ATROUS=tapwise``, per-tap products at every rate (the
  CPU default before the per-layer choice);
- ``autodiff_loss``: CE + Dice differentiated by autodiff (the default before its
  gradient was written out; ``loss_fusion.py``'s ``AutodiffCrossEntropyDice``);
- ``native_atrous``: ``PIXELWISE_ATROUS=native``, TensorFlow's own dilated convolution;
- ``ce_loss``: plain cross-entropy instead of CE + Dice;
- ``malloc_arenas_2``: ``MALLOC_ARENA_MAX=2``, glibc's per-thread heaps capped at two
  (memory freed by one thread's heap is not reused by another's);
- ``no_onednn``: ``TF_ENABLE_ONEDNN_OPTS=0``, TensorFlow's kernels without oneDNN;
- ``recompute``: the backbone's stages recomputed in the backward pass
  (``pixelwise train --recompute``); run it at two batch sizes to see what one more image
  costs with and without it (how much larger a batch fits in the same memory).

    python benchmarks/memory.py --results benchmarks/RESULTS.md
    python benchmarks/memory.py --input-size 64 --batch-size 2 --steps 1 --variants default ce_loss
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

SECTION = "memory_where"
# Variant -> (environment changes, loss name).
VARIANTS = {
    "default": ({}, "ce_dice"),
    "autodiff_loss": ({}, "ce_dice_autodiff"),
    "tapwise_atrous": ({"PIXELWISE_ATROUS": "tapwise"}, "ce_dice"),
    "native_atrous": ({"PIXELWISE_ATROUS": "native"}, "ce_dice"),
    "ce_loss": ({}, "ce"),
    "malloc_arenas_2": ({"MALLOC_ARENA_MAX": "2"}, "ce_dice"),
    "no_onednn": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, "ce_dice"),
    "recompute": ({}, "ce_dice"),
}
RECOMPUTED = {"recompute"}


def resident_megabytes() -> float:
    """This process's resident set size now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(loss_name: str, size: int, batch: int, steps: int, recompute: bool = False) -> dict:
    """One variant, in this process."""
    import tensorflow as tf

    from pixelwise.benchmark import (
        BenchmarkSettings,
        build_benchmark_model,
        peak_rss_megabytes,
        time_training,
    )
    from pixelwise.losses import build_loss

    settings = BenchmarkSettings(input_size=(size, size), batch_size=batch, warmup=1,
                                 train_steps=steps, recompute=recompute)
    model = build_benchmark_model(settings)
    if loss_name == "ce_dice_autodiff":
        from loss_fusion import AutodiffCrossEntropyDice  # benchmarks/: this script's folder

        loss = AutodiffCrossEntropyDice(num_classes=settings.num_classes)
    else:
        loss = build_loss(loss_name, num_classes=settings.num_classes)
    built = resident_megabytes()
    timing = time_training(model, settings, loss=loss)
    try:
        tensors = tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20
    except ValueError:  # no allocator statistics (TensorFlow's CPU allocator without oneDNN)
        tensors = None
    return {"built_mb": built, "peak_mb": peak_rss_megabytes(), "tensors_peak_mb": tensors,
            "step_seconds": timing["step_seconds"]}


def run_variant(name: str, arguments: argparse.Namespace) -> dict:
    environment_changes, _ = VARIANTS[name]
    command = [sys.executable, __file__, "--worker", name, "--input-size",
               str(arguments.input_size), "--batch-size", str(arguments.batch_size),
               "--steps", str(arguments.steps)]
    completed = subprocess.run(command, env={**os.environ, **environment_changes},
                               capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"variant {name} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def megabytes(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def markdown(arguments: argparse.Namespace, results: dict[str, dict]) -> str:
    base = results.get("default")
    lines = [
        f"### Where training memory goes: DeepLab v3 ResNet-50 OS16, "
        f"{arguments.input_size}x{arguments.input_size}, batch {arguments.batch_size}, "
        f"float32",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d}, one fresh process per variant, "
        f"in turn; median of {arguments.steps} steps after one. Command: "
        f"`python benchmarks/memory.py {' '.join(arguments.argv)}`",
        "",
        "| variant | after building (MB) | peak training (MB) | training adds (MB) | "
        "tensors' peak (MB) | step (s) | peak / default |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, result in results.items():
        ratio = f"{result['peak_mb'] / base['peak_mb']:.2f}" if base else "-"
        lines.append(f"| {name} | {result['built_mb']:.0f} | {result['peak_mb']:.0f} | "
                     f"{result['peak_mb'] - result['built_mb']:.0f} | "
                     f"{megabytes(result['tensors_peak_mb'])} | {result['step_seconds']:.2f} | "
                     f"{ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input-size", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--results", type=Path, default=None,
                        help="Markdown file to write the table to (its own section).")
    parser.add_argument("--section", default=SECTION,
                        help="the section of --results to write (a run at another batch size "
                             "keeps the default table)")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    arguments.argv = sys.argv[1:] if argv is None else argv
    if arguments.worker:
        result = measure(VARIANTS[arguments.worker][1], arguments.input_size,
                         arguments.batch_size, arguments.steps,
                         recompute=arguments.worker in RECOMPUTED)
        print(json.dumps(result))
        return 0
    results = {}
    for name in arguments.variants:
        print(f"{name} ...", flush=True)
        results[name] = run_variant(name, arguments)
        print(f"  {json.dumps(results[name])}", flush=True)
    from pixelwise.benchmark_results import print_and_record

    print_and_record(markdown(arguments, results), arguments.results, arguments.section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
