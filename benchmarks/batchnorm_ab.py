"""Keras's BatchNormalization against FusedBatchNormalization on one tensor, interleaved.

Forward + backward in training mode (batch statistics, moving-average update) and forward
in inference mode, inside ``tf.function``, for tensor shapes of DeepLab v3 ResNet-50 at
384 x 384, batch 8 (conv1: 192 x 192 x 64, conv2: 96 x 96 x 256, conv4/5 at stride 16:
24 x 24 x 1024 / 2048). Each repeat times both layers in a shuffled order; medians.

    python benchmarks/batchnorm_ab.py --repeats 10
    python benchmarks/batchnorm_ab.py --repeats 2 --batch 1 --scale 4   # smoke
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from pixelwise.models.batchnorm import FusedBatchNormalization

SHAPES = {"conv1 192x192x64": (192, 192, 64), "conv2 96x96x256": (96, 96, 256),
          "conv4 24x24x1024": (24, 24, 1024), "conv5 24x24x2048": (24, 24, 2048)}


def steps(layer):
    @tf.function(autograph=False)
    def train(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs, training=True)
            loss = tf.reduce_sum(outputs * outputs)
        return tape.gradient(loss, [inputs, layer.gamma.value, layer.beta.value])

    @tf.function(autograph=False)
    def infer(inputs):
        return layer(inputs, training=False)

    return train, infer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--scale", type=int, default=1, help="divide the spatial sizes")
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f}")
    rng = np.random.default_rng(0)
    for label, (height, width, channels) in SHAPES.items():
        shape = (args.batch, height // args.scale, width // args.scale, channels)
        inputs = tf.constant(rng.normal(size=shape).astype("float32"))
        layers = {"keras": keras.layers.BatchNormalization(epsilon=1.001e-5),
                  "fused": FusedBatchNormalization(epsilon=1.001e-5)}
        functions = {name: steps(layer) for name, layer in layers.items()}
        times = {(name, mode): [] for name in layers for mode in ("train", "infer")}
        for name, (train, infer) in functions.items():
            train(inputs)
            infer(inputs)
        for _ in range(args.repeats):
            order = list(functions)
            random.shuffle(order)
            for name in order:
                train, infer = functions[name]
                start = time.perf_counter()
                _ = [value.numpy() for value in train(inputs)]
                times[name, "train"].append(time.perf_counter() - start)
                start = time.perf_counter()
                infer(inputs).numpy()
                times[name, "infer"].append(time.perf_counter() - start)
        medians = {key: 1000 * statistics.median(values) for key, values in times.items()}
        print(f"{label}: training keras {medians['keras', 'train']:.1f} ms, fused "
              f"{medians['fused', 'train']:.1f} ms; inference keras "
              f"{medians['keras', 'infer']:.1f} ms, fused {medians['fused', 'infer']:.1f} ms",
              flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
