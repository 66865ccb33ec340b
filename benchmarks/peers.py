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

With ``--like-run RUN`` ours is the architecture of a run folder (``pixelwise benchmark
--like-run``: the CamVid toy model) and the peers default to torchvision's real-time
models, ``lraspp_mobilenet_v3_large`` and ``deeplabv3_mobilenet_v3_large``, with the run's
class count. ``--precision mixed_bfloat16`` runs ours under Keras's mixed policy and the
torchvision peers under CPU autocast to bfloat16. ``--rounds N`` runs every model N times,
each round starting one model further along; the table gives medians and the spread of
the ratios (ours / peer: training and inference images/s, and batch-1 latency).

    python benchmarks/peers.py --like-run runs/camvid-toy --input-size 320 --batch-size 16 \\
        --rounds 2 --results benchmarks/RESULTS.md

Full run (quiet machine; each training step at 384 takes seconds):

    python benchmarks/peers.py --input-size 384 --batch-size 8 --train-steps 3 \\
        --json benchmarks/results/peers_384.json --results benchmarks/RESULTS.md

``--recompute`` adds ours trained with ``pixelwise benchmark --recompute`` (the backbone's
stages recomputed in the backward pass) to every round: its training speed against ours
without, its peak memory against the peers'.

    python benchmarks/peers.py --input-size 384 --batch-size 8 --train-steps 3 --rounds 3 \
        --peers torchvision_os16 --recompute --results benchmarks/RESULTS.md

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
# The real-time peers of a toy model (``--like-run``): torchvision's two MobileNetV3 heads.
MOBILE_PEERS = ("torchvision_lraspp_mnv3", "torchvision_deeplabv3_mnv3")
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

def torchvision_model(name: str, num_classes: int):
    import torch
    from torchvision.models import resnet50
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation import (
        deeplabv3_mobilenet_v3_large,
        deeplabv3_resnet50,
        lraspp_mobilenet_v3_large,
    )
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

    torch.manual_seed(0)
    untrained = dict(weights=None, weights_backbone=None, num_classes=num_classes)
    if name == "torchvision_os8":
        return deeplabv3_resnet50(**untrained, aux_loss=False)
    if name == "torchvision_lraspp_mnv3":
        return lraspp_mobilenet_v3_large(**untrained)
    if name == "torchvision_deeplabv3_mnv3":
        return deeplabv3_mobilenet_v3_large(**untrained, aux_loss=False)
    backbone = resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
    features = IntermediateLayerGetter(backbone, return_layers={"layer4": "out"})
    head = DeepLabHead(2048, num_classes, atrous_rates=(6, 12, 18))
    return DeepLabV3(features, head, aux_classifier=None)


def run_torchvision(name: str, settings: dict) -> dict:
    """One torchvision model's figures; with ``precision`` mixed_bfloat16 its forward (and
    the loss) run under CPU autocast to bfloat16, as ours under Keras's mixed policy."""
    import contextlib

    import torch

    torch.set_num_threads(os.cpu_count())
    height, width = settings["input_size"]
    batch = settings["batch_size"]
    num_classes = settings["num_classes"]
    model = torchvision_model(name, num_classes).to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(0)
    mixed = settings["precision"] == "mixed_bfloat16"

    def autocast():
        return (torch.autocast("cpu", dtype=torch.bfloat16) if mixed
                else contextlib.nullcontext())

    def images(count):
        return (torch.rand(count, 3, height, width, generator=generator) * 2 - 1).contiguous(
            memory_format=torch.channels_last)

    single, batched = images(1), images(batch)
    model.eval()
    with torch.inference_mode(), autocast():
        latency = median_seconds(lambda: model(single)["out"],
                                 repeats=settings["latency_repeats"], warmup=settings["warmup"])
        batch_seconds = median_seconds(lambda: model(batched)["out"],
                                       repeats=settings["throughput_repeats"],
                                       warmup=settings["warmup"])
    after_inference = peak_rss_megabytes()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=255)
    labels = torch.randint(0, num_classes, (batch, height, width), generator=generator)
    train_images = images(batch)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
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
    if name.startswith("torchvision_") and name in PEERS + MOBILE_PEERS:
        return run_torchvision(name, settings)
    if name == "keras_hub":
        return run_keras_hub(settings)
    raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS + MOBILE_PEERS)}")


# --- the driver (runs in the project's environment) -------------------------------------

def run_ours(settings: dict, folder: Path, *, recompute: bool = False) -> dict:
    json_path = folder / ("ours_recompute.json" if recompute else "ours.json")
    height, width = settings["input_size"]
    architecture = (["--like-run", settings["like_run"]] if settings["like_run"]
                    else ["deeplabv3"])
    command = [sys.executable, "-m", "pixelwise", "benchmark", *architecture,
               "--precision", settings["precision"],
               "--input-size", f"{height}x{width}", "--batch-size", str(settings["batch_size"]),
               "--latency-repeats", str(settings["latency_repeats"]),
               "--throughput-repeats", str(settings["throughput_repeats"]),
               "--train-steps", str(settings["train_steps"]), "--warmup", str(settings["warmup"]),
               "--tflite-threads", "none", "--matmul-size", "0", "--json", str(json_path),
               *(["--recompute"] if recompute else [])]
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


RATIO_KINDS = ("training", "inference", "latency")


def ratio_table(ours: dict, peers: dict[str, dict]) -> dict[str, dict[str, float]]:
    """ours over each peer (> 1: ours is faster): training and inference images/s, and
    batch-1 latency (the peer's milliseconds over ours)."""
    table = {}
    for name, peer in peers.items():
        if "error" in peer:
            continue
        table[name] = {kind: ours[kind]["images_per_second"] / peer[kind]["images_per_second"]
                       for kind in ("training", "inference")}
        table[name]["latency"] = (peer["inference"]["latency_ms"]
                                  / ours["inference"]["latency_ms"])
    return table


def median_result(rounds: list[dict]) -> dict:
    """One model's figures over the rounds: medians of the speeds, the highest peak
    memory; the first round's other fields."""
    good = [result for result in rounds if "error" not in result]
    if not good:
        return rounds[0]
    merged = dict(good[0])
    merged["inference"] = {key: statistics.median(r["inference"][key] for r in good)
                           for key in ("latency_ms", "images_per_second")}
    merged["training"] = {key: statistics.median(r["training"][key] for r in good)
                          for key in ("step_seconds", "images_per_second")}
    merged["memory_mb"] = {key: max(r["memory_mb"][key] for r in good)
                           for key in ("after_inference", "after_training")}
    return merged


def ratio_spread(per_round: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Per peer and kind: [median, lowest, highest] of the rounds' ratios."""
    spread = {}
    for name in per_round[0]:
        spread[name] = {}
        for kind in RATIO_KINDS:
            values = [ratios[name][kind] for ratios in per_round if name in ratios]
            spread[name][kind] = [statistics.median(values), min(values), max(values)]
    return spread


def _ratio_text(values: list[float]) -> str:
    median, low, high = values
    return f"{median:.2f}" if low == high else f"{median:.2f} ({low:.2f}-{high:.2f})"


def recompute_row(ours: dict, recomputed: dict, peers: dict[str, dict]) -> str:
    """The table row of ours trained with ``--recompute``: its training speed against ours
    without, its peak memory against each peer's."""
    cost = recomputed["training"]["images_per_second"] / ours["training"]["images_per_second"]
    memory = "; ".join(
        f"peak {recomputed['memory_mb']['after_training'] / peer['memory_mb']['after_training']:.2f}"
        f"x {name}'s" for name, peer in peers.items() if "error" not in peer)
    return (f"| ours, `--recompute` | {recomputed['parameters']:,} | | | "
            f"{recomputed['training']['images_per_second']:.2f} | "
            f"{recomputed['memory_mb']['after_training']:.0f} | "
            f"training {cost:.2f}x ours without; {memory} |")


def markdown(settings: dict, ours: dict, peers: dict[str, dict], ratios: dict,
             command: str, rounds: int, recomputed: dict | None = None) -> str:
    height, width = settings["input_size"]
    environment = ours["environment"]
    ours_name = (f"the model of {Path(settings['like_run']).name} "
                 f"({ours['settings']['model']} / {ours['settings']['backbone']})"
                 if settings["like_run"] else "DeepLab v3 ResNet-50")
    lines = [f"### Peers: {ours_name}, {height}x{width}, batch {settings['batch_size']}, "
             f"{settings['precision']}",
             "",
             f"{environment['cpu']} ({environment['cpu_count']} CPUs), load average "
             f"{environment['load_average_before']} at the start. "
             f"{rounds} interleaved round(s): medians, and the ratios' lowest-highest "
             f"in brackets. Command: `{command}`",
             "",
             "| model | parameters | inference batch 1 (ms) | inference (images/s) "
             "| training (images/s) | peak RSS training (MB) "
             "| ours / it: training; inference; batch-1 latency |",
             "| --- | --- | --- | --- | --- | --- | --- |",
             f"| ours (pixelwise, {ours['settings']['model']}, OS 16, fused BN) | "
             f"{ours['parameters']:,} | "
             f"{ours['inference']['latency_ms']:.0f} | "
             f"{ours['inference']['images_per_second']:.2f} | "
             f"{ours['training']['images_per_second']:.2f} | "
             f"{ours['memory_mb']['after_training']:.0f} | |"]
    if recomputed is not None:
        lines.append(recompute_row(ours, recomputed, peers))
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
            + "; ".join(_ratio_text(ratio[kind]) for kind in RATIO_KINDS) + " |")
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
    parser.add_argument("--rounds", type=int, default=1,
                        help="run ours and every peer this many times, interleaved")
    parser.add_argument("--peers", default=None,
                        help=f"comma-separated; default {','.join(PEERS)}, or with --like-run "
                             f"{','.join(MOBILE_PEERS)}")
    parser.add_argument("--like-run", default=None, type=Path,
                        help="ours: the architecture of this run folder (e.g. the CamVid toy "
                             "model) instead of DeepLab v3 ResNet-50")
    parser.add_argument("--precision", default="float32", choices=("float32", "mixed_bfloat16"),
                        help="mixed_bfloat16: ours under Keras's mixed policy, torchvision "
                             "under CPU autocast")
    parser.add_argument("--recompute", action="store_true",
                        help="also run ours trained with --recompute (backbone stages "
                             "recomputed in the backward pass) in every round")
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
                "warmup": args.warmup, "precision": args.precision,
                "like_run": str(args.like_run.resolve()) if args.like_run else None,
                "num_classes": NUM_CLASSES}
    if args.like_run:
        spec = json.loads((args.like_run / "pixelwise_dataset.json").read_text())
        settings["num_classes"] = len(spec["class_names"])
    default_peers = MOBILE_PEERS if args.like_run else PEERS
    names = [name for name in (args.peers or ",".join(default_peers)).split(",") if name]
    unknown = sorted(set(names) - set(PEERS + MOBILE_PEERS))
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(PEERS + MOBILE_PEERS)}")
    if names and not args.peer_python.exists():
        parser.error(f"{args.peer_python}: no peers' Python; create the environment as the "
                     "docstring of benchmarks/peers.py says, or pass --peer-python")
    models = ["ours", *(["ours_recompute"] if args.recompute else []), *names]
    results = {name: [] for name in models}
    with tempfile.TemporaryDirectory() as folder:
        for round_index in range(max(args.rounds, 1)):
            # Each round starts one model further along: no model always runs first.
            shift = round_index % len(models)
            for name in models[shift:] + models[:shift]:
                results[name].append(
                    run_ours(settings, Path(folder), recompute=name == "ours_recompute")
                    if name.startswith("ours")
                    else run_peer(name, settings, args.peer_python, Path(folder)))
    per_round = [ratio_table(results["ours"][index],
                             {name: results[name][index] for name in names})
                 for index in range(len(results["ours"]))]
    ratios = ratio_spread(per_round) if names else {}
    ours = median_result(results["ours"])
    peers = {name: median_result(results[name]) for name in names}
    recomputed = median_result(results["ours_recompute"]) if args.recompute else None
    for name, ratio in ratios.items():
        print(f"ours / {name}: " + "; ".join(f"{kind} {_ratio_text(ratio[kind])}"
                                             for kind in RATIO_KINDS))
    if args.json_path:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(
            {"settings": settings, "ours": ours, "ours_recompute": recomputed, "peers": peers,
             "ours_over_peer": ratios, "rounds": results}, indent=2))
    if args.results:
        from pixelwise.benchmark import update_results_section

        command = shlex.join(["python", "benchmarks/peers.py", *(argv or sys.argv[1:])])
        size = f"{settings['input_size'][0]}x{settings['input_size'][1]}"
        mode = f"_{args.like_run.name}" if args.like_run else ""
        precision = "" if args.precision == "float32" else f"_{args.precision}"
        update_results_section(args.results, f"peers{mode}_{size}{precision}",
                               markdown(settings, ours, peers, ratios, command,
                                        len(results["ours"]), recomputed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
