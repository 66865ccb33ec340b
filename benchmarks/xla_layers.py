"""Which layers XLA compiles well for this CPU: one layer's forward pass with and without
``jit_compile``, layer by layer, at the sizes of a MobileNetV2 DeepLab v3 at 256x256.

Found while timing the toy target: the whole MobileNetV2 model ran ~7x slower per frame
with XLA. This isolates the cause, one layer kind at a time:

    python benchmarks/xla_layers.py --results benchmarks/RESULTS.md
    python benchmarks/xla_layers.py --size 16 --repeats 3     # a quick check that it runs

Each layer is timed on the same input (batch 1, ``--size`` x ``--size`` x ``--channels``):
the median of ``--repeats`` calls after two warm-up calls (the first compiles). Run it on a
quiet machine; nothing is asserted on time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone

import keras
import tensorflow as tf

from pixelwise.benchmark import cpu_name, median_seconds, update_results_section


def layers(channels: int) -> dict[str, keras.layers.Layer]:
    return {
        "depthwise 3x3": keras.layers.DepthwiseConv2D(3, padding="same"),
        "depthwise 3x3, dilation 2": keras.layers.DepthwiseConv2D(3, padding="same",
                                                                  dilation_rate=2),
        f"conv 1x1, {channels} -> {channels}": keras.layers.Conv2D(channels, 1),
        f"conv 3x3, {channels} -> {channels}": keras.layers.Conv2D(channels, 3, padding="same"),
        "batch norm (inference)": keras.layers.BatchNormalization(),
    }


def time_layers(size: int, channels: int, repeats: int) -> list[dict]:
    inputs = tf.random.stateless_normal([1, size, size, channels], seed=[0, 0])
    rows = []
    for name, layer in layers(channels).items():
        layer(inputs)  # builds the weights
        times = {}
        for jit_compile in (False, True):
            forward = tf.function(lambda values, layer=layer: layer(values, training=False),
                                  jit_compile=jit_compile)
            times[jit_compile] = median_seconds(lambda: forward(inputs).numpy(),
                                                repeats=repeats, warmup=2)
        rows.append({"layer": name, "plain_ms": 1000 * times[False],
                     "xla_ms": 1000 * times[True], "xla_over_plain": times[True] / times[False]})
    return rows


def markdown(rows: list[dict], command: str, size: int, channels: int) -> str:
    lines = [f"## XLA on this CPU, layer by layer ({size}x{size}x{channels}, batch 1)", "",
             f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}` on "
             f"{cpu_name()} ({os.cpu_count()} logical CPUs; load average "
             f"{os.getloadavg()[0]:.2f}). Forward pass, median of the repeats.", "",
             "| layer | without XLA (ms) | with XLA (ms) | XLA / without |",
             "|---|---:|---:|---:|"]
    lines += [f"| {row['layer']} | {row['plain_ms']:.2f} | {row['xla_ms']:.2f} | "
              f"{row['xla_over_plain']:.2f}x |" for row in rows]
    lines += ["", "A model built on depthwise convolutions (MobileNetV2) is therefore slower "
              "with XLA on this CPU; `pixelwise export --jit-compile` warns for such models."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="Feature map side.")
    parser.add_argument("--channels", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--results", default=None, help="RESULTS.md to write a section of.")
    args = parser.parse_args(argv)
    rows = time_layers(args.size, args.channels, args.repeats)
    print(json.dumps(rows, indent=2))
    if args.results:
        command = " ".join(["python", "benchmarks/xla_layers.py", *(argv or sys.argv[1:])])
        update_results_section(args.results, "xla-layers",
                               markdown(rows, command, args.size, args.channels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
