"""The CamVid toy model, end to end: data, training from scratch, evaluation, int8 export,
latency. One command reproduces every figure in RESULTS.md's CamVid section.

    python benchmarks/camvid.py --data data --out runs/camvid-toy        # downloads CamVid
    python benchmarks/camvid.py --data data --from camvid.tar --out runs/camvid-toy
    python benchmarks/camvid.py --data data --out runs/camvid-toy --skip-training  # figures
                                                                        # of a trained run

Steps, each resumable (a rerun picks up where a killed one stopped):

1. ``pixelwise data download camvid`` (or ``--from`` an archive or a folder), verified.
2. ``pixelwise train`` with the toy recipe below, from random weights, on 320 x 320 crops
   (stage 1, in ``OUT-crops``), then ``--init-from`` that run on whole 360 x 480 frames
   (stage 2, in ``OUT``: recipe 4 of RESULTS.md), both within ``--time-budget`` (every part
   of both stages together); the run folders are kept out of git (``runs/``).
   ``--stages 1`` trains stage 1 alone, in ``OUT`` (recipe 3).
3. ``pixelwise evaluate`` on the 233 test frames at their full 360 x 480 (``original``).
4. ``pixelwise export --format tflite --quantize int8 --input-size 360x480 --run-size
   288x384``: a 360 x 480 frame in, its class map out, the network run at 288 x 384 inside
   the graph (for the 20 ms goal); checked on the test split at 360 x 480: the int8
   model's mean IoU beside Keras's run at the same size.
5. Latency of the int8 model on LiteRT, 1 and 2 threads, on real test frames.

Prints per-class IoU, mean IoU (Keras float and int8), ms per frame, the model's size and the
training wall time (both stages), and writes them as a section of ``--results``
(benchmarks/RESULTS.md).
``--hold-out-sequence 0006R0`` trains without that recording's train frames and scores on
them: how a recipe is chosen (val.txt shares its recording with train, test does not).
``--copy-model`` puts the int8 model in benchmarks/camvid/toy_int8.tflite, and the pictures
of the scored split (frames | ground truth | prediction, and the hardest frames) beside it
as JPEGs for README.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEST_SIZE = (360, 480)  # CamVid's frames: the int8 model's input and output, scored there
# The size the int8 model runs its network at inside the graph (frame resized to it, logits
# back to 360 x 480): 360 x 480 itself ran 23.6 ms on one thread, over the 20 ms goal.
RUN_SIZE = "288x384"
SECTION = "camvid_toy"

# The toy recipe: what `pixelwise train` is given (flag -> value).
TOY_RECIPE = {  # recipe 3 of RESULTS.md's CamVid log
    "--model": "deeplabv3plus", "--backbone": "mobilenetv2", "--width-multiplier": "1.0",
    "--backbone-weights": "none", "--aspp-filters": "96", "--aspp-rates": "none",
    "--low-level-filters": "24", "--decoder-filters": "48", "--input-size": "320x320",
    "--val-resolution": "original", "--batch-size": "16", "--recipe": "adamw_cosine",
    "--learning-rate": "0.002", "--weight-decay": "0.05", "--loss": "ce_dice",
    "--class-weighting": "sqrt_median_frequency", "--augment": "deeplab",
    "--mixed-precision": "bfloat16", "--bn-momentum": "0.9", "--epochs": "112",
}


# Stage 2 (recipe 4): stage 1's model trained on again on whole frames (352 x 480 crops of
# 360 x 480 frames scaled 0.5-2), a second, lower cosine; the flags that differ from stage 1.
FRAMES_STAGE = {"--input-size": "352x480", "--batch-size": "8", "--learning-rate": "0.0005",
                "--epochs": "84"}
STAGE_1_BUDGET = 95 * 60  # seconds: stage 1's 112 epochs took 83 minutes here


def stage_1_folder(out: Path) -> Path:
    """Where stage 1 trains when ``out`` is the two-stage model's run folder."""
    return out.with_name(out.name + "-crops")


def command_line(arguments: argparse.Namespace) -> str:
    parts = ["python benchmarks/camvid.py", "--data", str(arguments.data), "--out",
             str(arguments.out), "--time-budget", arguments.time_budget, "--score-split",
             arguments.score_split, "--run-size", arguments.run_size]
    if arguments.skip_training:
        parts.append("--skip-training")
    if arguments.ship:
        parts.append("--ship")
    if arguments.hold_out_sequence:
        parts += ["--hold-out-sequence", arguments.hold_out_sequence]
    if arguments.from_path:
        parts += ["--from", str(arguments.from_path)]
    if arguments.stages != 2:
        parts += ["--stages", str(arguments.stages)]
    for flag, value in arguments.recipe_overrides:
        parts += ["--set", f"{flag[2:]}={value}"]
    for flag, value in arguments.frames_overrides:
        parts += ["--set-frames", f"{flag[2:]}={value}"]
    return " ".join(parts)


def run(command: list[str]) -> None:
    """One `pixelwise` command in a process of its own, its output streamed."""
    print("$ pixelwise " + " ".join(command), flush=True)
    exit_code = subprocess.call([sys.executable, "-m", "pixelwise", *command])
    if exit_code != 0:
        raise SystemExit(f"pixelwise {command[0]} failed (exit {exit_code})")


def hold_out_sequence(camvid: Path, sequence: str) -> tuple[str, str]:
    """Split CamVid's train list by recording: ``train-without-SEQ.txt`` (every other train
    frame) and ``sequence-SEQ.txt`` (the train frames whose names start with ``sequence``,
    e.g. 0006R0), written beside train.txt; returns the two split names.

    A recipe is chosen on a sequence it did not train on because val.txt is no such thing:
    its 101 frames all come from 0016E5, the sequence of 204 of the 367 train frames, while
    test is Seq05VD and 0001TP (recipe 5 of RESULTS.md: val as recipe 4, test 5 points lower).
    """
    from pixelwise.data.lists import list_name

    train_list = camvid / "train.txt"
    lines = [line for line in train_list.read_text().splitlines() if line.strip()]
    held_out = [line for line in lines if list_name(line).startswith(sequence)]
    kept = [line for line in lines if not list_name(line).startswith(sequence)]
    if not held_out or not kept:
        sequences = sorted({list_name(line).split("_")[0] for line in lines})
        raise SystemExit(f"{train_list}: no train frames of sequence {sequence!r} to hold out"
                         f" apart from the others; its sequences: {', '.join(sequences)}")
    splits = {f"train-without-{sequence}": kept, f"sequence-{sequence}": held_out}
    for name, split_lines in splits.items():
        path = camvid / f"{name}.txt"
        partial = path.with_suffix(".txt.partial")
        partial.write_text("".join(line + "\n" for line in split_lines))
        partial.replace(path)
        print(f"{path}: {len(split_lines)} of the {len(lines)} frames of {train_list.name}")
    train_split, val_split = splits
    return train_split, val_split


def train_flag(text: str) -> tuple[str, str]:
    """``"epochs=80"`` -> ``("--epochs", "80")``: a `pixelwise train` flag and its value."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip("-") or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FLAG=VALUE, e.g. epochs=80")
    return "--" + name.strip("-"), value


def read_training_seconds(run_dir: Path) -> float:
    """The training seconds the state of run ``run_dir`` records (0 before its first epoch)."""
    from pixelwise.runs import RunFolder

    return float((RunFolder(run_dir).read_state() or {}).get("train_seconds") or 0.0)


def train_stage(camvid: Path, run_dir: Path, recipe: dict, budget_seconds: float, *,
                init_from: Path | None = None) -> None:
    """Train (or resume) one stage in ``run_dir`` within ``budget_seconds``."""
    if (run_dir / "config.json").is_file():
        run(["train", "--resume", str(run_dir), "--quiet"])
        return
    start = ["--init-from", str(init_from)] if init_from else []
    run(["train", "--data", str(camvid), "--out", str(run_dir), "--quiet", "--no-tensorboard",
         "--time-budget", f"{budget_seconds:.0f}", *start,
         *[part for flag_value in recipe.items() for part in flag_value]])


def latency_in_fresh_process(model_path: Path, camvid: Path, threads: int,
                             repeats: int) -> float:
    """:func:`latency_ms` in a process of its own, as a device runs only the interpreter:
    the figure does not depend on what this process did before (evaluation, export)."""
    completed = subprocess.run(
        [sys.executable, __file__, "--time-model", str(model_path), "--data", str(camvid),
         "--threads", str(threads), "--repeats", str(repeats)],
        check=True, capture_output=True, text=True)
    return float(completed.stdout.strip().splitlines()[-1])


def test_frames(camvid: Path, count: int = 20) -> list:
    """The first ``count`` test frames of the CamVid folder ``camvid``, decoded."""
    from pixelwise.predict import read_image

    return [read_image(path) for path in sorted((camvid / "test").glob("*.png"))[:count]]


def latency_ms(model_path: Path, frames, threads: int, repeats: int) -> float:
    from pixelwise.inference import TFLiteSegmenter

    segmenter = TFLiteSegmenter(model_path, num_threads=threads)
    for frame in frames[:2]:
        segmenter.predict(frame)
    times = []
    for index in range(repeats):
        frame = frames[index % len(frames)]
        start = time.perf_counter()
        segmenter.predict(frame)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"),
                        help="Folder that receives CamVid/ (download or --from).")
    parser.add_argument("--from", dest="from_path", type=Path, default=None,
                        help="A local archive (tar, zip) or extracted CamVid folder.")
    parser.add_argument("--out", type=Path, default=Path("runs/camvid-toy"))
    parser.add_argument("--time-budget", default="3h")
    parser.add_argument("--skip-training", action="store_true",
                        help="Evaluate, export and time the run as it is.")
    parser.add_argument("--repeats", type=int, default=50,
                        help="Timed frames per thread count (0: no timing, e.g. while "
                             "something else runs).")
    parser.add_argument("--score-split", default=None,
                        help="Where the scores come from: test (the default) for the final "
                             "model only; val while choosing a recipe.")
    parser.add_argument("--hold-out-sequence", metavar="SEQUENCE", default=None,
                        help="Choose a recipe on streets not trained on: train without the "
                             "train frames of SEQUENCE (e.g. 0006R0), validate and score on "
                             "them.")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--run-size", default=RUN_SIZE,
                        help="HxW the int8 model runs its network at ('none': 360x480)")
    parser.add_argument("--copy-model", action="store_true",
                        help="Copy the int8 model to benchmarks/camvid/toy_int8.tflite.")
    parser.add_argument("--ship", action="store_true",
                        help="Make the run the shipped road model zoo_models/camvid-toy "
                             "(Keras model, int8 model and a card with these figures).")
    parser.add_argument("--stages", type=int, choices=(1, 2), default=2,
                        help="2: the toy recipe on crops, then on whole frames (recipe 4; "
                             "stage 1 trains in OUT-crops); 1: crops only (recipe 3, in OUT).")
    parser.add_argument("--set", type=train_flag, action="append", default=[],
                        metavar="FLAG=VALUE", dest="recipe_overrides",
                        help="Change a `pixelwise train` flag of the toy recipe (stage 1), "
                             "e.g. --set epochs=80.")
    parser.add_argument("--set-frames", type=train_flag, action="append", default=[],
                        metavar="FLAG=VALUE", dest="frames_overrides",
                        help="The same for stage 2, e.g. --set-frames epochs=60.")
    parser.add_argument("--time-model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.time_model:  # the worker of latency_in_fresh_process; --data: CamVid/
        frames = test_frames(arguments.data)
        print(latency_ms(arguments.time_model, frames, arguments.threads, arguments.repeats))
        return

    from pixelwise.data.camvid_download import download_camvid

    if arguments.hold_out_sequence and (arguments.ship or arguments.copy_model):
        parser.error("--hold-out-sequence trains on part of train: such a model is for "
                     "choosing a recipe, not for --ship or --copy-model")
    camvid = download_camvid(arguments.data, from_path=arguments.from_path)
    recipe = dict(TOY_RECIPE)
    if arguments.hold_out_sequence:
        train_split, held_out_split = hold_out_sequence(camvid, arguments.hold_out_sequence)
        recipe.update({"--train-split": train_split, "--val-split": held_out_split})
        arguments.score_split = arguments.score_split or held_out_split
    arguments.score_split = arguments.score_split or "test"
    recipe.update(dict(arguments.recipe_overrides))
    frames_recipe = {**recipe, **FRAMES_STAGE, **dict(arguments.frames_overrides)}
    if not arguments.skip_training:
        from pixelwise.io import parse_duration

        total_budget = parse_duration(arguments.time_budget)
        if arguments.stages == 1:
            train_stage(camvid, arguments.out, recipe, total_budget)
        else:
            first = stage_1_folder(arguments.out)
            train_stage(camvid, first, recipe, min(STAGE_1_BUDGET, total_budget))
            spent = read_training_seconds(first)
            if spent >= total_budget:
                raise SystemExit(f"stage 1 used the whole --time-budget ({spent / 60:.0f} min); "
                                 f"give more or use --stages 1")
            train_stage(camvid, arguments.out, frames_recipe, total_budget - spent,
                        init_from=first)
    split = arguments.score_split
    run(["evaluate", str(arguments.out), "--split", split, "--resolution", "original",
         "--hardest", "6"])
    run(["visualize", str(arguments.out), "--split", split, "-n", "6"])
    int8_path = arguments.out / "export" / "toy_int8.tflite"
    from pixelwise.io import parse_size

    run_size = None if arguments.run_size == "none" else parse_size(arguments.run_size)
    from pixelwise.export import ExportCheckError, export_run

    try:  # a miss of the check's thresholds is reported, not fatal: the figures still count
        export_run(arguments.out, export_format="tflite", quantize="int8", input_size=TEST_SIZE,
                   run_size=run_size, out=int8_path, check_split=split)
    except ExportCheckError as error:
        print(f"int8 export outside the check's thresholds:\n{error}")

    from pixelwise.benchmark import machine_description
    from pixelwise.evaluate import read_metrics
    from pixelwise.models import load_model
    from pixelwise.provenance import training_history
    from pixelwise.runs import RunFolder

    folder = RunFolder(arguments.out)
    metrics = read_metrics(arguments.out / "evaluation" / f"{split}-original" / "metrics.json")
    check = json.loads((int8_path.parent / "toy_int8_check.json").read_text())
    figures = {
        "split": split,
        "keras_mean_iou": metrics["mean_iou"],
        "per_class_iou": {row["name"]: row["iou"] for row in metrics["per_class"]},
        "int8_mean_iou": check.get("export_mean_iou"),
        "int8_keras_mean_iou_on_check": check.get("keras_mean_iou"),
        "run_size": list(run_size) if run_size else list(TEST_SIZE),
        "int8_ms_1_thread": (latency_in_fresh_process(int8_path, camvid, 1, arguments.repeats)
                             if arguments.repeats else None),
        "int8_ms_2_threads": (latency_in_fresh_process(int8_path, camvid, 2,
                                                       arguments.repeats)
                              if arguments.repeats else None),
        "int8_bytes": int8_path.stat().st_size,
        "parameters": load_model(folder.best_model_path, compile=False).count_params(),
        "history": training_history(arguments.out),  # for the card: every stage's settings
        "model": json.loads(folder.config_path.read_text())["model"],
        "load_average": os.getloadavg()[0],
        "machine": machine_description(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "command": command_line(arguments),
    }
    print(json.dumps(figures, indent=2))
    if arguments.copy_model:
        target = HERE / "camvid" / "toy_int8.tflite"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(int8_path, target)
        print(f"copied {int8_path} to {target}")
        from PIL import Image

        pictures = {
            arguments.out / "figures" / f"predictions-{split}.png": f"predictions-{split}.jpg",
            arguments.out / "evaluation" / f"{split}-original" / "hardest.png":
                f"hardest-{split}.jpg"}
        for source, name in pictures.items():
            with Image.open(source) as picture:
                picture.convert("RGB").save(target.parent / name, quality=85)
            print(f"copied {source} to {target.parent / name}")
    if arguments.ship:
        ship_model(arguments.out, int8_path, figures)
    from pixelwise.benchmark import update_results_section

    section = SECTION if split == "test" else f"{SECTION}_{arguments.out.name}_{split}"
    update_results_section(arguments.results, section, results_markdown(figures))
    print(f"wrote section {section} of {arguments.results}")


def ship_model(run_dir: Path, int8_path: Path, figures: dict,
               models_dir: Path | None = None) -> Path:
    """Make ``run_dir`` the model ``camvid-toy`` of ``models_dir`` (the shipped models by
    default) with its int8 export and a card of ``figures`` (how it was trained and
    scored); the model it replaces is removed only once the new one is complete."""
    import tempfile

    from pixelwise.zoo import SHIPPED_MODELS_DIR, package_run

    models_dir = Path(models_dir or SHIPPED_MODELS_DIR)

    model, history = figures["model"], figures["history"]
    start = (f"from {history['starts_from']['model']} (whose card's training is kept below)"
             if "starts_from" in history else f"from {history['stages'][0]['from']}")
    description = (f"{model['name']} on {model['backbone']}, trained {start} on CamVid's 367 "
                   f"train frames: a road-scene starting point to fine-tune to your own classes")
    split = figures["split"]
    val_path = run_dir / "evaluation" / "val-original" / "metrics.json"
    scores = {"split": split, "mean_iou": round(figures["keras_mean_iou"], 4),
              f"{split}_mean_iou": round(figures["keras_mean_iou"], 4),
              "scored_at": "360x480 (Keras, whole frames)",
              f"int8_{split}_mean_iou": round(figures["int8_mean_iou"], 4),
              "int8_run_size": "x".join(map(str, figures["run_size"])),
              "int8_ms_1_thread": figures["int8_ms_1_thread"]}
    if val_path.is_file():
        from pixelwise.evaluate import read_metrics

        scores["val_mean_iou"] = round(read_metrics(val_path)["mean_iou"], 4)
    training = {"data": "CamVid (SegNet tutorial release), 367 train frames, 101 val",
                "machine": figures["machine"], "command": figures["command"], **history}
    shipped = models_dir / "camvid-toy"
    with tempfile.TemporaryDirectory(dir=models_dir) as folder:
        tflite = Path(folder) / "model_int8.tflite"
        shutil.copyfile(int8_path, tflite)
        package_run(run_dir, folder, "camvid-toy", description=description,
                    tflite=tflite, training=training, scores=scores)
        if shipped.exists():
            shutil.rmtree(shipped)
        (Path(folder) / "camvid-toy").rename(shipped)
    print(f"shipped {run_dir} as {shipped}")
    return shipped


def _ms(value: float | None) -> str:
    return "not timed" if value is None else f"{value:.1f}"


def results_markdown(figures: dict) -> str:
    per_class = figures.get("per_class_iou") or {}
    rows = "\n".join(f"| {name} | {100 * value:.1f}% |" for name, value in per_class.items()
                     if value is not None)
    history = figures["history"]
    first = history["stages"][0]["from"]
    start = (history["starts_from"]["model"] if "starts_from" in history
             else "scratch" if first == "random weights" else first)
    run_height, run_width = figures["run_size"]
    return (
        f"### CamVid toy model ({figures['model']['name']}, {figures['model']['backbone']}, "
        f"from {start})\n\n"
        f"Measured {figures['date']} on {figures['machine']}, load average "
        f"{figures['load_average']:.2f} at the end. "
        f"Command: `{figures['command']}`\n\n"
        f"| figure | value |\n|---|---|\n"
        f"| {figures['split']} mean IoU, Keras float, 360 x 480 | "
        f"{100 * figures['keras_mean_iou']:.1f}% |\n"
        f"| {figures['split']} mean IoU, int8 TFLite, run at {run_height} x {run_width}, "
        f"scored at 360 x 480 | {100 * figures['int8_mean_iou']:.1f}% |\n"
        f"| the same for the Keras float model run at {run_height} x {run_width} | "
        f"{100 * figures['int8_keras_mean_iou_on_check']:.1f}% |\n"
        f"| int8 ms per 360 x 480 frame, 1 thread | {_ms(figures['int8_ms_1_thread'])} |\n"
        f"| int8 ms per frame, 2 threads | {_ms(figures['int8_ms_2_threads'])} |\n"
        f"| int8 model size | {figures['int8_bytes'] / 1e6:.2f} MB |\n"
        f"| parameters | {figures['parameters']:,} |\n"
        f"| epochs, training wall time (every stage) | {history['epochs']}, "
        f"{history['minutes'] / 60:.2f} h |\n\n"
        f"Per-class {figures['split']} IoU (Keras float):\n\n| class | IoU |\n|---|---|\n{rows}\n")


if __name__ == "__main__":
    main()
