"""Formulations of one dilated 3x3 'same' depthwise convolution, timed against each other.

Forward + backward (gradients of the input and the kernel) of the depthwise convolutions
MobileNetV2 runs atrous in DeepLab at 352 x 480, batch 8:

- output stride 16: blocks 14-16, 960 channels at 22 x 30, rate 2;
- output stride 8: blocks 7-13, 384 channels at 44 x 60, rate 2, and blocks 14-16,
  960 channels at 44 x 60, rate 4.

Formulations (same kernel, same outputs):

- ``dense``: the undilated convolution (rate 1), the reference cost;
- ``tf_dilated``: ``keras.ops.depthwise_conv(..., dilation_rate=rate)``, TensorFlow's
  SpaceToBatchND + depthwise conv + BatchToSpaceND;
- ``space_to_batch``: the same split written in keras.ops
  (``pixelwise.models.layers.space_to_batch_convolution``);
- ``zero_inserted``: an undilated depthwise convolution with the kernel written out with
  zeros between its taps (``zero_inserted_kernel`` here; tried for the layer and not kept:
  TensorFlow's CPU depthwise kernel pays for every zero tap).

Interleaved in one process (each repeat times every formulation once, in a shuffled order);
medians reported.

    python benchmarks/atrous_depthwise.py --repeats 9 --json benchmarks/results/atrous_depthwise.json
    python benchmarks/atrous_depthwise.py --repeats 2 --batch 1 --scale 4     # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np
import tensorflow as tf
from keras import ops

from atrous import forward_backward_step, interleaved_seconds  # benchmarks/: the script's folder
from pixelwise.models.layers import space_to_batch_convolution


def zero_inserted_kernel(kernel, dilation_rate):
    """A dilated kernel [kh, kw, ...] written out: the kernel's taps every rate-th position,
    zeros between; convolving with it undilated ('same') is the dilated convolution."""
    kernel_h, kernel_w = kernel.shape[0], kernel.shape[1]
    rate_h, rate_w = dilation_rate
    rest = tuple(kernel.shape[2:])
    spread = ops.reshape(kernel, (kernel_h, 1, kernel_w, 1, *rest))
    spread = ops.pad(spread, ((0, 0), (0, rate_h - 1), (0, 0), (0, rate_w - 1))
                     + ((0, 0),) * len(rest))
    spread = ops.reshape(spread, (kernel_h * rate_h, kernel_w * rate_w, *rest))
    return spread[: (kernel_h - 1) * rate_h + 1, : (kernel_w - 1) * rate_w + 1]


def _space_to_batch(inputs, kernel, rate):
    return space_to_batch_convolution(
        inputs, lambda phases: ops.depthwise_conv(phases, kernel, strides=1, padding="valid"),
        kernel_size=(3, 3), dilation_rate=(rate, rate), padding="same")


FORMULATIONS = {
    "dense": lambda inputs, kernel, rate: ops.depthwise_conv(inputs, kernel, padding="same"),
    "tf_dilated": lambda inputs, kernel, rate: ops.depthwise_conv(
        inputs, kernel, padding="same", dilation_rate=rate),
    "space_to_batch": _space_to_batch,
    "zero_inserted": lambda inputs, kernel, rate: ops.depthwise_conv(
        inputs, zero_inserted_kernel(kernel, (rate, rate)), padding="same"),
}
# (name, channels, height, width, rate) at 352 x 480.
CASES = [("os16 blocks 14-16", 960, 22, 30, 2), ("os8 blocks 7-13", 384, 44, 60, 2),
         ("os8 blocks 14-16", 960, 44, 60, 4)]


def time_case(*, batch: int, channels: int, height: int, width: int, rate: int,
              repeats: int) -> dict:
    rng = np.random.default_rng(0)
    inputs = tf.constant(rng.normal(size=(batch, height, width, channels)).astype("float32"))
    kernel = tf.constant(rng.normal(0, 0.1, (3, 3, channels, 1)).astype("float32"))
    reference = np.asarray(FORMULATIONS["tf_dilated"](inputs, kernel, rate))
    steps = {}
    for name, formulation in FORMULATIONS.items():
        if name != "dense":
            error = float(np.abs(np.asarray(formulation(inputs, kernel, rate)) - reference).max())
            if error > 1e-4 * float(np.abs(reference).max()):
                raise AssertionError(f"{name} differs from tf_dilated by {error}")
        steps[name] = forward_backward_step(formulation, 1 if name == "dense" else rate)
        steps[name](inputs, kernel)  # trace and warm up
    seconds = interleaved_seconds(steps, inputs, kernel, repeats=repeats)
    return {"batch": batch, "channels": channels, "height": height, "width": width,
            "rate": rate,
            "median_ms": {name: round(1000 * statistics.median(times), 2)
                          for name, times in seconds.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--scale", type=int, default=1, help="divide the feature sizes by this")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    results = []
    for label, channels, height, width, rate in CASES:
        result = time_case(batch=args.batch, channels=channels, height=max(1, height // args.scale),
                           width=max(1, width // args.scale), rate=rate, repeats=args.repeats)
        result["case"] = label
        results.append(result)
        print(f"{label} ({channels} ch, {result['height']}x{result['width']}, rate {rate}): "
              + "  ".join(f"{name} {ms:.1f} ms" for name, ms in result["median_ms"].items()),
              flush=True)
    report = {"load_average_before": round(load_before, 2),
              "load_average_after": round(os.getloadavg()[0], 2),
              "tensorflow": tf.__version__, "results": results}
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(report, handle, indent=2)
    print(f"load average {report['load_average_before']} before, "
          f"{report['load_average_after']} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
