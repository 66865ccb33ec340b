"""Formulations of one atrous 3x3 'same' convolution, timed against each other.

Forward + backward (gradients of the input and the kernel) of one convolution on a batch of
features, as DeepLab v3 runs them at 384 x 384 (output stride 16: 24 x 24 features):

- ASPP branches: 2048 -> 256 channels at rates 6, 12, 18;
- the backbone's conv5 3x3 convs: 512 -> 512 channels at rate 2.

Formulations (all take the same kernel and give the same outputs):

- ``dense``: the undilated convolution (rate 1), the reference cost;
- ``tf_dilated``: ``keras.ops.conv(..., dilation_rate=rate)``, i.e. TensorFlow's
  SpaceToBatchND + conv + BatchToSpaceND (the path with the TF 2.21 shape bug);
- ``space_to_batch``: the same split written in keras.ops
  (``pixelwise.models.layers.space_to_batch_convolution``);
- ``tapwise``: one matrix product per tap over the outputs it reaches
  (``pixelwise.models.atrous.tapwise_convolution``);
- ``onednn_dilated``: TensorFlow's Conv2D op with its ``dilations`` attribute, which only
  oneDNN builds implement on CPU (for information: its gradient fails without oneDNN).

The formulations run interleaved in one process (each repeat times every formulation once,
in a shuffled order) and the medians are reported, so a change of machine load hits all of
them alike. The script waits (up to ``--max-wait`` seconds) for the 1-minute load average
to drop below ``--quiet-load`` and prints the load it ran under.

    python benchmarks/atrous.py --repeats 7 --batch 8 --size 24 --json atrous.json
    python benchmarks/atrous.py --repeats 2 --batch 1 --size 8 --aspp-channels 64  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from pixelwise.models.atrous import tapwise_convolution, tapwise_multiply_adds
from pixelwise.models.layers import space_to_batch_convolution


def _space_to_batch(inputs, kernel, rate):
    return space_to_batch_convolution(
        inputs, lambda phases: ops.conv(phases, kernel, strides=1, padding="valid"),
        kernel_size=(int(kernel.shape[0]), int(kernel.shape[1])), dilation_rate=(rate, rate),
        padding="same")


FORMULATIONS = {
    "dense": lambda inputs, kernel, rate: ops.conv(inputs, kernel, padding="same"),
    "tf_dilated": lambda inputs, kernel, rate: ops.conv(
        inputs, kernel, padding="same", dilation_rate=rate),
    "space_to_batch": _space_to_batch,
    "tapwise": lambda inputs, kernel, rate: tapwise_convolution(
        inputs, kernel, dilation_rate=(rate, rate)),
    "onednn_dilated": lambda inputs, kernel, rate: tf.raw_ops.Conv2D(
        input=inputs, filter=kernel, strides=[1, 1, 1, 1], padding="SAME",
        dilations=[1, rate, rate, 1]),
}


def wait_for_quiet(threshold: float, max_wait: float) -> float:
    """Wait until the 1-minute load average is below ``threshold`` (at most ``max_wait``
    seconds); the load average when the wait ended."""
    deadline = time.monotonic() + max_wait
    while os.getloadavg()[0] >= threshold and time.monotonic() < deadline:
        time.sleep(10)
    return os.getloadavg()[0]


def forward_backward_step(formulation, rate: int):
    @tf.function(jit_compile=False, autograph=False)
    def step(inputs, kernel):
        with tf.GradientTape() as tape:
            tape.watch([inputs, kernel])
            outputs = formulation(inputs, kernel, rate)
            loss = tf.reduce_sum(outputs * outputs)
        return tape.gradient(loss, [inputs, kernel])

    return step


def interleaved_seconds(steps: dict, inputs, kernel, *, repeats: int) -> dict[str, list[float]]:
    """Seconds of each ``steps[name](inputs, kernel)`` (gradients fetched), ``repeats``
    times, every repeat running each step once in a shuffled order."""
    seconds = {name: [] for name in steps}
    order = list(steps)
    for _ in range(repeats):
        random.shuffle(order)
        for name in order:
            start = time.perf_counter()
            _ = [np.asarray(gradient) for gradient in steps[name](inputs, kernel)]
            seconds[name].append(time.perf_counter() - start)
    return seconds


def time_formulations(*, batch: int, size: int, in_channels: int, out_channels: int,
                      rate: int, names: list[str], repeats: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    inputs = tf.constant(rng.normal(size=(batch, size, size, in_channels)).astype("float32"))
    kernel = tf.constant(rng.normal(0, 0.02, (3, 3, in_channels, out_channels)).astype("float32"))
    steps, reference = {}, None
    for name in names:
        steps[name] = forward_backward_step(FORMULATIONS[name], 1 if name == "dense" else rate)
        outputs = FORMULATIONS[name](inputs, kernel, 1 if name == "dense" else rate)
        if name != "dense":
            reference = outputs if reference is None else reference
            error = float(np.abs(np.asarray(outputs) - np.asarray(reference)).max())
            if error > 1e-3 * float(np.abs(np.asarray(reference)).max()):
                raise AssertionError(f"{name} differs from {names[0]} by {error}")
        steps[name](inputs, kernel)  # trace and warm up
    seconds = interleaved_seconds(steps, inputs, kernel, repeats=repeats)
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    dense_share = tapwise_multiply_adds(size, size, (3, 3), (rate, rate)) / (9 * size * size)
    return {"batch": batch, "size": size, "in_channels": in_channels,
            "out_channels": out_channels, "rate": rate,
            "tapwise_multiply_adds_vs_dense": round(dense_share, 3),
            "median_seconds": {name: round(value, 4) for name, value in medians.items()},
            "all_seconds": {name: [round(t, 4) for t in times] for name, times in seconds.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=24, help="feature height and width")
    parser.add_argument("--aspp-channels", type=int, default=2048,
                        help="ASPP input channels (output: 256, or this / 8 if smaller)")
    parser.add_argument("--rates", default="6,12,18")
    parser.add_argument("--backbone-rate", type=int, default=2)
    parser.add_argument("--backbone-channels", type=int, default=512)
    parser.add_argument("--formulations", default=",".join(FORMULATIONS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quiet-load", type=float, default=0.5)
    parser.add_argument("--max-wait", type=float, default=600.0)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    names = args.formulations.split(",")
    unknown = sorted(set(names) - set(FORMULATIONS))
    if unknown:
        parser.error(f"unknown formulation(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(FORMULATIONS)}")
    load_before = wait_for_quiet(args.quiet_load, args.max_wait)
    aspp_out = min(256, max(1, args.aspp_channels // 8))
    cases = [("aspp", args.aspp_channels, aspp_out, int(rate)) for rate in args.rates.split(",")]
    cases.append(("backbone", args.backbone_channels, args.backbone_channels, args.backbone_rate))
    results = []
    for label, in_channels, out_channels, rate in cases:
        result = time_formulations(batch=args.batch, size=args.size, in_channels=in_channels,
                                   out_channels=out_channels, rate=rate, names=names,
                                   repeats=args.repeats)
        result["case"] = label
        results.append(result)
        line = "  ".join(f"{name} {seconds:.3f}s"
                         for name, seconds in result["median_seconds"].items())
        print(f"{label} rate {rate:>2} ({in_channels}->{out_channels}): {line}", flush=True)
    report = {"load_average_before": round(load_before, 2),
              "load_average_after": round(os.getloadavg()[0], 2),
              "cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
              "keras": keras.__version__, "results": results}
    print(f"load average {report['load_average_before']} before, "
          f"{report['load_average_after']} after", flush=True)
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
