"""A few labelled frames of new classes: fine-tuned from a shipped model against from random
weights, in the same training time. The own-data loop's promise, measured on real frames.

The case is built from CamVid: three classes a toy's planner needs (drivable = road +
pavement, obstacle = everything standing on them, sky; CamVid's "unlabelled" is ignored),
``--frames`` training frames spread evenly over CamVid's train list, its val split to choose
the checkpoint (a third of them), its 233 test frames to score. Both runs get the same ``--budget`` of wall
time, the same input size, batch and augmentation; they differ in where they start:

- fine-tuned: ``--init-from MODEL`` (the architecture and every layer that fits come from
  the shipped model; the classifier starts anew, its rows carried over from road/pavement,
  sky and the obstacle classes by ``--class-map``), the backbone frozen for the first
  ``--freeze`` epochs;
- from scratch: the same architecture from random weights.

    python benchmarks/few_labels.py --camvid data/CamVid --out runs/few-labels \
        --results benchmarks/RESULTS.md

Each step is resumable (a rerun reuses the dataset and finished runs). Run it on a quiet
machine: the two runs share a wall-time budget, so anything beside them changes the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SECTION = "few_labels"
CLASS_NAMES = ("drivable", "obstacle", "sky")
COLORS = ((128, 64, 128), (220, 20, 60), (128, 128, 128))
IGNORE = 255
VAL_EVERY = 3  # a third of CamVid's val frames choose the checkpoint: validation is per epoch
# CamVid's 11 classes (pixelwise.data.spec.CAMVID_CLASS_NAMES) -> the three above; 11 ignored.
CAMVID_TO_NEW = {"sky": "sky", "building": "obstacle", "pole": "obstacle", "road": "drivable",
                 "pavement": "drivable", "tree": "obstacle", "signsymbol": "obstacle",
                 "fence": "obstacle", "car": "obstacle", "pedestrian": "obstacle",
                 "bicyclist": "obstacle"}
# What both runs share; the fine-tuned run takes its architecture from the model it starts from.
# docs/own-data.md's recipe for 20-100 frames (train's defaults otherwise: the textbook
# recipe), in bfloat16 for this CPU's speed.
COMMON = ["--input-size", "240x320", "--batch-size", "8", "--epochs", "40",
          "--mixed-precision", "bfloat16", "--quiet", "--no-tensorboard"]
SCRATCH_ARCHITECTURE = ["--model", "deeplabv3plus", "--backbone", "mobilenetv2",
                        "--width-multiplier", "1.0", "--backbone-weights", "none",
                        "--aspp-filters", "96", "--aspp-rates", "none",
                        "--low-level-filters", "24", "--decoder-filters", "48",
                        "--bn-momentum", "0.9"]


def label_lookup() -> np.ndarray:
    """uint8 table: a CamVid label value -> the three-class label (255 for unlabelled)."""
    from pixelwise.data.spec import CAMVID_CLASS_NAMES

    table = np.full(256, IGNORE, dtype=np.uint8)
    for index, name in enumerate(CAMVID_CLASS_NAMES):
        table[index] = CLASS_NAMES.index(CAMVID_TO_NEW[name])
    return table


def build_dataset(camvid: Path, out: Path, num_frames: int) -> Path:
    """The three-class dataset in the VOC layout: ``num_frames`` train frames spread evenly
    over CamVid's train list, all of val and test. Reused when already complete."""
    from PIL import Image

    from pixelwise.data.palette import write_label
    from pixelwise.data.spec import DatasetSpec
    from pixelwise.io import write_text_atomically

    spec = DatasetSpec(CLASS_NAMES, COLORS, IGNORE)
    lists = out / "ImageSets" / "Segmentation"
    if (lists / "test.txt").is_file():
        return out
    table = label_lookup()
    train = sorted((camvid / "train").glob("*.png"))
    step = len(train) / num_frames
    chosen = {"train": [train[int(index * step)] for index in range(num_frames)],
              "val": sorted((camvid / "val").glob("*.png"))[::VAL_EVERY],
              "test": sorted((camvid / "test").glob("*.png"))}
    for folder in ("JPEGImages", "SegmentationClass"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for split, images in chosen.items():
        for image in images:
            label = np.array(Image.open(camvid / f"{split}annot" / image.name))
            (out / "JPEGImages" / image.name).write_bytes(image.read_bytes())
            write_label(out / "SegmentationClass" / image.name, table[label], spec)
    spec.save(out / "pixelwise_dataset.json")
    for split, images in chosen.items():  # test.txt last: it marks the dataset complete
        write_text_atomically(lists / f"{split}.txt",
                              "".join(f"{image.stem}\n" for image in images))
    return out


def class_map_flag() -> str:
    return ",".join(f"{old}={new}" for old, new in CAMVID_TO_NEW.items())


def pixelwise(*arguments: str) -> None:
    print("$ pixelwise " + " ".join(arguments), flush=True)
    if subprocess.call([sys.executable, "-m", "pixelwise", *arguments]) != 0:
        raise SystemExit(f"pixelwise {arguments[0]} failed")


def train_and_score(data: Path, run_dir: Path, start: list[str], budget: str) -> dict:
    """Train (or resume) one run within ``budget`` and score its best model on test."""
    if (run_dir / "config.json").is_file():
        pixelwise("train", "--resume", str(run_dir), "--quiet")
    else:
        pixelwise("train", "--data", str(data), "--out", str(run_dir), "--time-budget",
                  budget, *start, *COMMON)
    pixelwise("evaluate", str(run_dir), "--split", "test", "--resolution", "original")
    metrics = json.loads((run_dir / "evaluation" / "test-original" / "metrics.json")
                         .read_text())
    from pixelwise.runs import RunFolder

    state = RunFolder(run_dir).read_state() or {}
    return {"mean_iou": metrics["mean_iou"],
            "per_class": {row["name"]: row["iou"] for row in metrics["per_class"]},
            "epochs": state.get("epochs_done"), "seconds": state.get("train_seconds")}


def markdown(rows: dict, command: str, frames: int, budget: str) -> str:
    lines = ["### A few labelled frames of new classes: fine-tuned against from scratch", "",
             f"CamVid recast as three classes ({', '.join(CLASS_NAMES)}; road + pavement are "
             f"drivable, everything else below the sky an obstacle), {frames} training frames, "
             f"34 val frames to choose the checkpoint, scored on the 233 test frames at "
             f"360 x 480. Both runs: at most {budget} of training and 40 epochs, 240 x 320 "
             f"crops, batch 8, Adam 1e-3 with plateau reduction and early stopping (the "
             f"textbook recipe of docs/own-data.md), bfloat16. Measured "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Command: `{command}`", "",
             "| start | test mean IoU | " + " | ".join(CLASS_NAMES)
             + " | epochs | training s |", "| --- " * (4 + len(CLASS_NAMES)) + "|"]
    for name, row in rows.items():
        per_class = " | ".join(f"{100 * row['per_class'][c]:.1f}%" for c in CLASS_NAMES)
        lines.append(f"| {name} | {100 * row['mean_iou']:.1f}% | {per_class} | "
                     f"{row['epochs']} | {row['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--camvid", type=Path, required=True, help="The CamVid folder.")
    parser.add_argument("--out", type=Path, default=Path("runs/few-labels"))
    parser.add_argument("--model", default="camvid-toy", help="The model fine-tuned from.")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--budget", default="7m", help="Training time of each run.")
    parser.add_argument("--freeze", type=int, default=5, help="Frozen-backbone epochs.")
    parser.add_argument("--results", type=Path, default=None)
    arguments = parser.parse_args()
    data = build_dataset(arguments.camvid, arguments.out / "data", arguments.frames)
    fine_tuned = ["--init-from", arguments.model, "--class-map", class_map_flag(),
                  "--freeze-backbone-epochs", str(arguments.freeze)]
    rows = {f"fine-tuned from `{arguments.model}`":
            train_and_score(data, arguments.out / "fine-tuned", fine_tuned, arguments.budget),
            "random weights": train_and_score(data, arguments.out / "scratch",
                                              SCRATCH_ARCHITECTURE, arguments.budget)}
    command = "python benchmarks/few_labels.py " + " ".join(sys.argv[1:])
    text = markdown(rows, command, arguments.frames, arguments.budget)
    print(text)
    if arguments.results:
        from pixelwise.benchmark import update_results_section

        update_results_section(arguments.results, SECTION, text)


if __name__ == "__main__":
    main()
