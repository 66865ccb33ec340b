"""Where a training step's time goes: TensorFlow's profiler on one ``train_on_batch``.

Builds the model (``--fused-batchnorm`` / ``--no-fused-batchnorm``), runs warm-up steps,
profiles ``--steps`` training steps (and as many inference batches with
``--inference``), and sums the TensorFlow ops' self time (host) by op type and by the
model's part (ResNet stage, ASPP branch, optimizer) and layer, from each op's name scopes
(gradient ops are charged to the layer they differentiate). Idle time is left out. The raw profile stays in ``--logdir`` for
TensorBoard's profile plugin.

    python benchmarks/profile_step.py --input-size 384 --batch-size 8 --steps 2
    python benchmarks/profile_step.py --input-size 64 --batch-size 1 --steps 1 \\
        --backbone mobilenetv2 --width-multiplier 0.35        # smoke
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import re
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pixelwise.losses import build_loss
from pixelwise.models import build_model


def op_stats(logdir: str) -> list[dict]:
    """Rows of the profiler's framework-op statistics for the newest profile in logdir."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    files = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))
    if not files:
        raise FileNotFoundError(f"{logdir}: the profiler wrote no .xplane.pb file")
    data, ok = plugin.xspace_to_tools_data(files[-1:], "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"{files[-1]}: could not read the profile: {data[:200]!r}")
    table = json.loads(data)[0]
    columns = [column["id"] for column in table["cols"]]
    return [dict(zip(columns, [cell["v"] for cell in row["c"]])) for row in table["rows"]]


def layer_of(operation: str, layer_names: set[str]) -> str | None:
    """The model layer an op belongs to, from its name scopes (TensorFlow appends
    ``_1``... to a scope used again; gradient ops sit under ``gradient_tape/``)."""
    for part in operation.split("/"):
        if part in layer_names:
            return part
        unsuffixed = re.sub(r"_\d+$", "", part)
        if unsuffixed in layer_names:
            return unsuffixed
    return None


def group_of(operation: str, layer: str | None) -> str:
    """A coarser bucket: a ResNet stage (``conv4``), an ASPP branch (``aspp_atrous3``),
    the optimizer, or the layer's own name."""
    if layer is None:
        first = operation.split("/")[0].lower()
        return "optimizer" if first in ("adam", "sgd", "optimizer") else "loss and other"
    stage = re.match(r"(conv\d)_", layer)
    if stage:
        return stage.group(1)
    branch = re.match(r"(aspp_[a-z]+\d*)_", layer)
    return branch.group(1) if branch else layer


def summarise(rows: list[dict], layer_names: set[str], top: int) -> dict:
    """Host self time (idle excluded) by op type, by model part and by layer."""
    by_type, by_group, by_layer = (collections.Counter() for _ in range(3))
    for row in rows:
        if row.get("host_or_device") not in (None, "Host") or row["type"] == "IDLE":
            continue
        self_time = float(row["total_self_time"])
        layer = layer_of(row["operation"], layer_names)
        by_type[row["type"]] += self_time
        by_group[group_of(row["operation"], layer)] += self_time
        by_layer[layer or group_of(row["operation"], None)] += self_time
    total = sum(by_type.values())

    def ranked(counter):
        return [(name, round(us / 1000, 1), round(us / total, 3))
                for name, us in counter.most_common(top)]

    return {"total_ms": total / 1000, "by_op_type": ranked(by_type),
            "by_part": ranked(by_group), "by_layer": ranked(by_layer)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="deeplabv3")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--width-multiplier", type=float, default=1.0)
    parser.add_argument("--input-size", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--fused-batchnorm", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--inference", action="store_true", help="profile inference instead")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--logdir", default=None)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    model = build_model(args.model, num_classes=21, backbone=args.backbone,
                        width_multiplier=args.width_multiplier,
                        fused_batchnorm=args.fused_batchnorm)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=build_loss(num_classes=21),
                  jit_compile=False)
    rng = np.random.default_rng(0)
    size, batch = args.input_size, args.batch_size
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, 21, (batch, size, size)).astype("int32")
    forward = tf.function(lambda x: model(x, training=False))

    def step():
        if args.inference:
            forward(images).numpy()
        else:
            model.train_on_batch(images, labels)

    step()  # trace and warm up
    logdir = args.logdir or tempfile.mkdtemp(prefix="pixelwise-profile-")
    tf.profiler.experimental.start(logdir)
    for _ in range(args.steps):
        step()
    tf.profiler.experimental.stop()
    summary = summarise(op_stats(logdir), {layer.name for layer in model.layers}, args.top)
    what = "inference batch" if args.inference else "training step"
    print(f"{args.steps} {what}(es) of {model.name}, {size}x{size}, batch {batch}, fused BN "
          f"{args.fused_batchnorm}: {summary['total_ms'] / args.steps:.0f} ms of op self time "
          f"per step (profile in {logdir})")
    for title, key in (("op type", "by_op_type"), ("part", "by_part"), ("layer", "by_layer")):
        print(f"  by {title}:")
        for name, milliseconds, share in summary[key]:
            print(f"    {share:6.1%} {milliseconds / args.steps:9.1f} ms  {name}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
