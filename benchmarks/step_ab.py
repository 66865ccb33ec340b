"""Whole training and inference steps of DeepLab v3 in variants, timed interleaved.

For decisions on a machine that is not quiet: every variant's model is built in this one
process, and each repeat times one training step (``train_on_batch``, Adam, the default
loss, no XLA) and one inference batch of every variant in a shuffled order; medians are
reported. Variants:

- ``baseline``: Keras's BatchNormalization and the space-to-batch atrous convolution
  (the models before the fast paths);
- ``fused_bn``: the fused batch norm, space-to-batch atrous convolution;
- ``fast``: the fused batch norm and the per-tap atrous convolution (the default model).

    python benchmarks/step_ab.py --input-size 384 --batch-size 8 --repeats 3
    python benchmarks/step_ab.py --input-size 64 --batch-size 1 --repeats 1 \\
        --backbone mobilenetv2 --width-multiplier 0.35   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import types

import keras
import numpy as np
from keras import ops

from pixelwise.losses import build_loss
from pixelwise.models import build_model
from pixelwise.models.layers import AtrousConv2D, space_to_batch_convolution

VARIANTS = {"baseline": (False, False), "fused_bn": (True, False), "fast": (True, True)}


def _space_to_batch_op(layer, inputs, kernel):
    """AtrousConv2D's dilated case as it was before the per-tap formulation."""
    return space_to_batch_convolution(
        inputs, lambda phases: ops.conv(phases, kernel, strides=1, padding="valid"),
        kernel_size=layer.kernel_size, dilation_rate=layer.dilation_rate, padding=layer.padding)


def build_variant(name: str, args) -> keras.Model:
    fused, tapwise = VARIANTS[name]
    keras.utils.set_random_seed(0)
    model = build_model("deeplabv3", num_classes=21, backbone=args.backbone,
                        width_multiplier=args.width_multiplier, fused_batchnorm=fused)
    if not tapwise:
        for layer in model.layers:
            if isinstance(layer, AtrousConv2D) and layer.dilation_rate != (1, 1):
                layer.convolution_op = types.MethodType(_space_to_batch_op, layer)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=build_loss(num_classes=21),
                  jit_compile=False)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-size", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--width-multiplier", type=float, default=1.0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    rng = np.random.default_rng(0)
    size, batch = args.input_size, args.batch_size
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, 21, (batch, size, size)).astype("int32")
    load_before = os.getloadavg()[0]
    models = {name: build_variant(name, args) for name in names}
    import tensorflow as tf

    forwards = {name: tf.function(lambda x, m=model: m(x, training=False))
                for name, model in models.items()}
    for name in names:  # trace, warm up
        models[name].train_on_batch(images, labels)
        forwards[name](images).numpy()
    train_seconds = {name: [] for name in names}
    infer_seconds = {name: [] for name in names}
    for _ in range(args.repeats):
        order = list(names)
        random.shuffle(order)
        for name in order:
            start = time.perf_counter()
            models[name].train_on_batch(images, labels)
            train_seconds[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            forwards[name](images).numpy()
            infer_seconds[name].append(time.perf_counter() - start)
    report = {"input_size": size, "batch_size": batch, "backbone": args.backbone,
              "load_average_before": round(load_before, 2),
              "load_average_after": round(os.getloadavg()[0], 2), "variants": {}}
    for name in names:
        train = statistics.median(train_seconds[name])
        infer = statistics.median(infer_seconds[name])
        report["variants"][name] = {
            "train_step_seconds": round(train, 3), "train_images_per_second": round(batch / train, 3),
            "inference_seconds": round(infer, 3),
            "inference_images_per_second": round(batch / infer, 3),
            "all_train_seconds": [round(t, 3) for t in train_seconds[name]],
            "all_inference_seconds": [round(t, 3) for t in infer_seconds[name]]}
        print(f"{name:<9} training {batch / train:.3f} images/s ({train:.2f} s/step)  "
              f"inference {batch / infer:.3f} images/s", flush=True)
    print(f"load average {report['load_average_before']} before, "
          f"{report['load_average_after']} after")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
