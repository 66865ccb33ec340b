"""Our DeepLab v3 against the peers a user would pick instead, in the same run.

Same input size, batch, float32, one process at a time:

- ours: ``pixelwise benchmark deeplabv3`` (ResNet-50, output stride 16, fused batch norm);
- ``torchvision_os16``: torchvision's DeepLab v3 ResNet-50 at output stride 16 (layer4
  dilated, ``replace_stride_with_dilation=[False, False, True]``, ASPP rates 6/12/18);
- ``torchvision_os8``: torchvision's ``deeplabv3_resnet50`` as shipped (output stride 8,
  rates 12/24/36);
- ``keras_hub``: keras-hub's DeepLabV3 segmenter on a ResNet-50 built from its
  configuration (no preset download); as the issue notes it is no like-for-like
  reference: its backbone has no atrous stage and its ASPP runs at stride 32.

torchvision runs channels-last with ``torch.set_num_threads(os.cpu_count())``; both
torchvision models use their own head (ASPP, then a 3x3 conv, then the classifier; ours has
no 3x3 conv: about 0.34 G more multiply-adds per image at 384). Training: Adam, cross-entropy
with ignore index 255 (ours: its default loss, cross-entropy + Dice). Inference: eval mode,
``torch.inference_mode``.

The peers live in their own environment, ``benchmarks/.venv-peers`` (git-ignored; see
``benchmarks/requirements.txt``):

    python3.11 -m venv benchmarks/.venv-peers
    benchmarks/.venv-peers/bin/pip install -r benchmarks/requirements.txt

This script runs with the project's environment and starts each peer with the peers'
Python (``--peer-python``); each peer runs this same file with ``--worker NAME``.

Full run (quiet machine; each training step at 384 takes seconds):

    python benchmarks/peers.py --input-size 384 --batch-size 8 --train-steps 3 \\
        --json benchmarks/results/peers_384.json --results benchmarks/RESULTS.md

Smoke test:

    python benchmarks/peers.py --input-size 64 --batch-size 2 --quick --json /tmp/peers.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEERS = ("torchvision_os16", "torchvision_os8", "keras_hub")
DEFAULT_PEER_PYTHON = Path(__file__).resolve().parent / ".venv-peers" / "bin" / "python"
NUM_CLASSES = 21


def median_seconds(call, *, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_megabytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- workers (run inside the peers' environment) ---------------------------------------

def torchvision_model(output_stride: int):
    import torch
    from torchvision.models import resnet50
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation import deeplabv3_resnet50
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

    torch.manual_seed(0)
    if output_stride == 8:
        return deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=NUM_CLASSES,
                                  aux_loss=False)
    backbone = resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
    features = IntermediateLayerGetter(backbone, return_layers={"layer4": "out"})
    head = DeepLabHead(2048, NUM_CLASSES, atrous_rates=(6, 12, 18))
    return DeepLabV3(features, head, aux_classifier=None)


def run_torchvision(output_stride: int, settings: dict) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count())
    height, width = settings["input_size"]
    batch = settings["batch_size"]
    model = torchvision_model(output_stride).to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(0)

    def images(count):
        return (torch.rand(count, 3, height, width, generator=generator) * 2 - 1).contiguous(
            memory_format=torch.channels_last)

    single, batched = images(1), images(batch)
    model.eval()
    with torch.inference_mode():
        latency = median_seconds(lambda: model(single)["out"],
                                 repeats=settings["latency_repeats"], warmup=settings["warmup"])
        batch_seconds = median_seconds(lambda: model(batched)["out"],
                                       repeats=settings["throughput_repeats"],
                                       warmup=settings["warmup"])
    after_inference = peak_rss_megabytes()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=255)
    labels = torch.randint(0, NUM_CLASSES, (batch, height, width), generator=generator)
    train_images = images(batch)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(train_images)["out"], labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    step_seconds = median_seconds(step, repeats=settings["train_steps"], warmup=settings["warmup"])
    return {
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "inference": {"latency_ms": 1000 * latency, "images_per_second": batch / batch_seconds},
        "training": {"step_seconds": step_seconds, "images_per_second": batch / step_seconds},
        "memory_mb": {"after_inference": after_inference, "after_training": peak_rss_megabytes()},
        "versions": {"torch": torch.__version__,
                     "torchvision": __import__("torchvision").__version__,
                     "threads": torch.get_num_threads()},
    }


def keras_hub_model(input_size):
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    height, width = input_size
    # ResNet-50 (v1, bottleneck blocks) as in keras-hub's "resnet_50_imagenet" preset config.
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
        use_pre_activation=False, image_shape=(height, width, 3))
    # As keras-hub's DeepLab v3 ResNet-50 preset: ASPP on P5 (stride 32), rates 6/12/18.
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder, spatial_pyramid_pooling_key="P5", upsampling_size=8,
        dilation_rates=[6, 12, 18], low_level_feature_key="P2", projection_filters=48,
        image_shape=(height, width, 3))
    return keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=NUM_CLASSES)


def run_keras_hub(settings: dict) -> dict:
    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    height, width = settings["input_size"]
    batch = settings["batch_size"]
    model = keras_hub_model(settings["input_size"])
    rng = np.random.default_rng(0)
    single = rng.uniform(-1, 1, (1, height, width, 3)).astype("float32")
    batched = rng.uniform(-1, 1, (batch, height, width, 3)).astype("float32")
    forward = tf.function(lambda images: model(images, training=False))
    latency = median_seconds(lambda: forward(single).numpy(),
                             repeats=settings["latency_repeats"], warmup=settings["warmup"])
    batch_seconds = median_seconds(lambda: forward(batched).numpy(),
                                   repeats=settings["throughput_repeats"],
                                   warmup=settings["warmup"])
    after_inference = peak_rss_megabytes()
    model.compile(optimizer=keras.optimizers.Adam(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[], jit_compile=False)  # its default accuracy metric breaks here
    labels = rng.integers(0, NUM_CLASSES, (batch, height, width)).astype("int32")
    step_seconds = median_seconds(lambda: model.train_on_batch(batched, labels),
                                  repeats=settings["train_steps"], warmup=settings["warmup"])
    return {
        "parameters": model.count_params(),
        "inference": {"latency_ms": 1000 * latency, "images_per_second": batch / batch_seconds},
        "training": {"step_seconds": step_seconds, "images_per_second": batch / step_seconds},
        "memory_mb": {"after_inference": after_inference, "after_training": peak_rss_megabytes()},
        "versions": {"keras_hub": keras_hub.__version__, "keras": keras.__version__,
                     "tensorflow": tf.__version__},
    }


def run_worker(name: str, settings: dict) -> dict:
    if name == "torchvision_os16":
        return run_torchvision(16, settings)
    if name == "torchvision_os8":
        return run_torchvision(8, settings)
    if name == "keras_hub":
        return run_keras_hub(settings)
    raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")


# --- the driver (runs in the project's environment) -------------------------------------

def run_ours(settings: dict, folder: Path) -> dict:
    json_path = folder / "ours.json"
    height, width = settings["input_size"]
    command = [sys.executable, "-m", "pixelwise", "benchmark", "deeplabv3",
               "--input-size", f"{height}x{width}", "--batch-size", str(settings["batch_size"]),
               "--latency-repeats", str(settings["latency_repeats"]),
               "--throughput-repeats", str(settings["throughput_repeats"]),
               "--train-steps", str(settings["train_steps"]), "--warmup", str(settings["warmup"]),
               "--tflite-threads", "none", "--matmul-size", "0", "--json", str(json_path)]
    print(f"== ours: {shlex.join(command[1:])}", flush=True)
    subprocess.run(command, check=True)
    return json.loads(json_path.read_text())


def run_peer(name: str, settings: dict, peer_python: Path, folder: Path) -> dict:
    json_path = folder / f"{name}.json"
    command = [str(peer_python), str(Path(__file__).resolve()), "--worker", name,
               "--settings", json.dumps(settings), "--worker-json", str(json_path)]
    print(f"== {name}", flush=True)
    completed = subprocess.run(command)
    if completed.returncode != 0:
        return {"error": f"{name} exited with status {completed.returncode} (see its output)"}
    return json.loads(json_path.read_text())


def ratio_table(ours: dict, peers: dict[str, dict]) -> dict[str, dict[str, float]]:
    """ours / peer images/s (> 1: ours is faster) for training and inference."""
    table = {}
    for name, peer in peers.items():
        if "error" in peer:
            continue
        table[name] = {kind: ours[kind]["images_per_second"] / peer[kind]["images_per_second"]
                       for kind in ("training", "inference")}
    return table


def markdown(settings: dict, ours: dict, peers: dict[str, dict], ratios: dict,
             command: str) -> str:
    height, width = settings["input_size"]
    environment = ours["environment"]
    lines = [f"### Peers: DeepLab v3 ResNet-50, {height}x{width}, batch {settings['batch_size']}, "
             "float32",
             "",
             f"{environment['cpu']} ({environment['cpu_count']} CPUs), load average "
             f"{environment['load_average_before']} at the start. Command: `{command}`",
             "",
             "| model | parameters | inference batch 1 (ms) | inference (images/s) "
             "| training (images/s) | peak RSS training (MB) | ours / it: training, inference |",
             "| --- | --- | --- | --- | --- | --- | --- |",
             f"| ours (pixelwise, OS 16, fused BN) | {ours['parameters']:,} | "
             f"{ours['inference']['latency_ms']:.0f} | "
             f"{ours['inference']['images_per_second']:.2f} | "
             f"{ours['training']['images_per_second']:.2f} | "
             f"{ours['memory_mb']['after_training']:.0f} | |"]
    for name, peer in peers.items():
        if "error" in peer:
            lines.append(f"| {name} | {peer['error']} | | | | | |")
            continue
        ratio = ratios[name]
        lines.append(
            f"| {name} | {peer['parameters']:,} | {peer['inference']['latency_ms']:.0f} | "
            f"{peer['inference']['images_per_second']:.2f} | "
            f"{peer['training']['images_per_second']:.2f} | "
            f"{peer['memory_mb']['after_training']:.0f} | "
            f"{ratio['training']:.2f}, {ratio['inference']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input-size", default="384", help="S or HxW")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--latency-repeats", type=int, default=5)
    parser.add_argument("--throughput-repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="one repeat of everything")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--json", dest="json_path", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--settings", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-json", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = run_worker(args.worker, json.loads(args.settings))
        args.worker_json.write_text(json.dumps(result, indent=2))
        return 0

    height, _, width = args.input_size.lower().partition("x")
    settings = {"input_size": [int(height), int(width or height)],
                "batch_size": args.batch_size,
                "latency_repeats": 1 if args.quick else args.latency_repeats,
                "throughput_repeats": 1 if args.quick else args.throughput_repeats,
                "train_steps": 1 if args.quick else args.train_steps,
                "warmup": args.warmup}
    names = [name for name in args.peers.split(",") if name]
    unknown = sorted(set(names) - set(PEERS))
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    if names and not args.peer_python.exists():
        parser.error(f"{args.peer_python}: no peers' Python; create the environment as the "
                     "docstring of benchmarks/peers.py says, or pass --peer-python")
    with tempfile.TemporaryDirectory() as folder:
        ours = run_ours(settings, Path(folder))
        peers = {name: run_peer(name, settings, args.peer_python, Path(folder))
                 for name in names}
    ratios = ratio_table(ours, peers)
    for name, ratio in ratios.items():
        print(f"ours / {name}: training {ratio['training']:.2f}, "
              f"inference {ratio['inference']:.2f}")
    if args.json_path:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(
            {"settings": settings, "ours": ours, "peers": peers, "ours_over_peer": ratios},
            indent=2))
    if args.results:
        from pixelwise.benchmark import update_results_section

        command = shlex.join(["python", "benchmarks/peers.py", *(argv or sys.argv[1:])])
        update_results_section(args.results, f"peers_{settings['input_size'][0]}x"
                                             f"{settings['input_size'][1]}",
                               markdown(settings, ours, peers, ratios, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
