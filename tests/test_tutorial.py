"""docs/own-data.md, run: every command of its ```sh / ```console blocks, in order, through
the CLI, on a tiny world made here, so the tutorial and the commands cannot drift apart.

The world: a 30 s video of a toy's view (a wall, a floor, a red obstacle sliding across)
written with OpenCV as drive.mp4; the tiny session model on the tiny backbone
(``tiny_backbone_run``: the tutorial's commands are the point, not the network, and each
training, export and prediction below is seconds with it) packaged as ``camvid-toy`` (its
classes renamed to road-scene ones, so ``--class-map road=floor`` has a ``road``) on
``$PIXELWISE_MODELS``; the working directory a tmp folder, so the doc's relative paths
(drive.mp4, myset/, runs/mytoy) land there. A ``labelme`` line is the person labelling:
the test writes a LabelMe .json, with the doc's class names, for every frame of the last
suggested.txt not labelled yet, its polygons where the scene put floor and obstacle.

Only sizes and counts change, through OVERRIDES: each entry must match a command of the
doc (else the test fails: the doc moved), and every command must be run (a command of a
kind the test does not know fails it too).
"""

import csv
import dataclasses
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pixelwise.cli import cli
from pixelwise.video import opencv
from pixelwise.video.frames import parse_frame_name
from pixelwise.zoo import MODELS_PATH_VARIABLE, package_run, read_card

DOC = Path(__file__).resolve().parents[1] / "docs" / "own-data.md"
INIT_NAME = "camvid-toy"
# The stand-in's six classes (the tiny synthetic model's, renamed): road is one of them.
ROAD_CLASSES = ("sky", "building", "road", "pavement", "car", "pedestrian")

# (text in the doc, what the test runs instead): sizes and counts only, each must match.
OVERRIDES = (
    ("--epochs 40", "--epochs 1"),
    ("--freeze-backbone-epochs 5", "--freeze-backbone-epochs 1"),
    ("--input-size 240x320", "--input-size 48x64"),
    ("--run-size 192x256", "--run-size 32x48"),
    ("--batch-size 8", "--batch-size 4"),
    ("-n 20", "-n 10"),  # 10 labelled frames: val.txt gets 2, one for val, one for test
)

# The video: HEIGHT x WIDTH frames at RATE frames/s for SECONDS; wall above HORIZON, floor
# below it, an obstacle box sliding across the floor and back.
HEIGHT, WIDTH, RATE, SECONDS = 48, 64, 4.0, 30
HORIZON = 18
BOX_TOP, BOX_BOTTOM, BOX_WIDTH = 14, 40, 14


# --------------------------------------------------------------------------- the doc


def doc_commands(text: str) -> list[str]:
    """The commands of the doc's ```sh and ```console blocks, in order, backslash-continued
    lines joined. In a console block only ``$ `` lines are commands (the rest is what they
    print); in an sh block every line but blanks and comments is."""
    commands = []
    for language, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        if language not in ("sh", "console"):
            continue
        joined = re.sub(r"\s*\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = line.strip()
            if language == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def apply_overrides(commands: list[str]) -> list[str]:
    """The commands with OVERRIDES applied (whole words only); fails for an entry that
    matches nothing."""
    unused = []
    for old, new in OVERRIDES:
        pattern = re.compile(r"(?<!\S)" + re.escape(old) + r"(?!\S)")
        matched = [bool(pattern.search(command)) for command in commands]
        if not any(matched):
            unused.append(old)
        commands = [pattern.sub(new, command) for command in commands]
    assert not unused, f"overrides that match no command of {DOC.name}: {unused}"
    return commands


def recipe_table(text: str) -> dict[str, str]:
    """The recipe table of step 7: flag -> value."""
    rows = re.findall(r"^\| `(--[\w-]+)` \| ([^|]+?) \|", text, re.M)
    assert rows, f"{DOC.name}: no recipe table (| `--flag` | value | why |)"
    return dict(rows)


def command_kind(words: list[str]) -> str:
    """``labelme``, ``train``, ``data suggest``, ``data import labelme``, ...: what a
    command is, for its check."""
    if words[0] != "pixelwise":
        return words[0]
    depth = {"data": 2, "model": 2}.get(words[1], 1)
    if words[1:3] == ["data", "import"]:
        depth = 3
    return " ".join(words[1:1 + depth])


def option(args: list[str], name: str, default=None):
    return args[args.index(name) + 1] if name in args else default


# --------------------------------------------------------------------------- the world


def box_left(seconds: float) -> int:
    """Where the obstacle's left edge is at a time: across the floor and back."""
    phase = (seconds / 10.0) % 2.0
    travel = WIDTH - BOX_WIDTH
    return int(round(travel * (phase if phase <= 1 else 2 - phase)))


def horizon(seconds: float) -> int:
    """The row where the floor starts: the toy pitches a little as it drives."""
    return HORIZON + int(round(4 * np.sin(2 * np.pi * seconds / 11)))


def scene(seconds: float) -> np.ndarray:
    """The toy's view at a time: a textured wall, a brown floor and the red obstacle, in
    light that comes and goes (so frames a few seconds apart look different)."""
    rng = np.random.default_rng(int(seconds * 100))
    frame = np.empty((HEIGHT, WIDTH, 3), np.float32)
    top = horizon(seconds)
    frame[:top] = (70 + 60 * np.sin(seconds / 3) ** 2, 90, 150)
    frame[top:] = (150, 120, 80)
    left = box_left(seconds)
    frame[BOX_TOP:BOX_BOTTOM, left:left + BOX_WIDTH] = (210, 30, 30)
    frame *= 0.8 + 0.4 * np.sin(2 * np.pi * seconds / 7)
    frame += rng.integers(-12, 13, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def write_drive_video(path: Path) -> Path:
    cv2 = opencv()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), RATE, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for index in range(int(SECONDS * RATE)):
        writer.write(cv2.cvtColor(scene(index / RATE), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def polygon(left, top, right, bottom) -> list[list[float]]:
    return [[left, top], [right, top], [right, bottom], [left, bottom]]


def label_frame(image: Path, labels: list[str]) -> Path:
    """What a person saves in LabelMe for a frame: the floor, then the obstacle over it."""
    _, seconds = parse_frame_name(image.name)
    left = box_left(seconds)
    floor, obstacle = labels
    shapes = [
        {"label": floor, "points": polygon(0, horizon(seconds), WIDTH - 1, HEIGHT - 1),
         "group_id": None, "shape_type": "polygon", "flags": {}},
        {"label": obstacle, "points": polygon(left, BOX_TOP, left + BOX_WIDTH - 1,
                                              BOX_BOTTOM - 1),
         "group_id": None, "shape_type": "polygon", "flags": {}},
    ]
    path = image.with_suffix(".json")
    path.write_text(json.dumps({
        "version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": image.name,
        "imageData": None, "imageHeight": HEIGHT, "imageWidth": WIDTH}))
    return path


@pytest.fixture
def road_zoo(tmp_path_factory, tiny_backbone_run, monkeypatch):
    """The tiny trained model registered as camvid-toy, with road-scene class names."""
    _, run_dir, _ = tiny_backbone_run
    models_dir = tmp_path_factory.mktemp("road_zoo")
    card = package_run(run_dir, models_dir, INIT_NAME, description="tiny stand-in")
    assert len(card.spec.class_names) == len(ROAD_CLASSES)
    renamed = dataclasses.replace(card.spec, class_names=ROAD_CLASSES)
    dataclasses.replace(card, spec=renamed).save()
    assert read_card(models_dir / INIT_NAME).spec.class_names == ROAD_CLASSES
    monkeypatch.setenv(MODELS_PATH_VARIABLE, str(models_dir))
    return models_dir


# --------------------------------------------------------------------------- the run


class Tutorial:
    """Runs the doc's commands in a folder and checks what each one leaves there."""

    def __init__(self):
        self.runner = CliRunner()
        self.suggested: Path | None = None  # the last suggested.txt
        self.labelled: set[str] = set()  # frames with a .json
        self.kinds: list[str] = []

    def run(self, command: str) -> None:
        words = shlex.split(command)
        kind = command_kind(words)
        checks = {
            "labelme": self.labelme, "model list": self.model_list,
            "data frames": self.frames, "data suggest": self.suggest,
            "data import labelme": self.imported, "data check": self.check,
            "train": self.train, "evaluate": self.evaluate, "export": self.export,
            "predict": self.predict,
        }
        assert kind in checks, f"{DOC.name}: the test cannot run {command!r}"
        if kind == "labelme":
            self.labelme(words[1:], command)
        else:
            result = self.runner.invoke(cli, words[1:], catch_exceptions=False)
            print(f"$ {command}\n{result.output}")
            assert result.exit_code == 0, f"{command}\n{result.output}"
            checks[kind](words[1:], result.output)
        self.kinds.append(kind)

    # The person -----------------------------------------------------------------------

    def labelme(self, args: list[str], command: str) -> None:
        folder = Path(args[0])
        labels = option(args, "--labels").split(",")
        assert self.suggested is not None, f"{command!r} before any `data suggest`"
        picks = self.suggested.read_text().split()
        new = [name for name in picks if Path(name).stem not in self.labelled]
        assert new, f"{command!r}: {self.suggested} names no frame left to label"
        for name in new:
            label_frame(folder / name, labels)
            self.labelled.add(Path(name).stem)

    # What the commands leave ---------------------------------------------------------

    def model_list(self, args, output):
        assert INIT_NAME in output

    def frames(self, args, output):
        out = Path(option(args, "--out"))
        frames = sorted(out.glob("*.jpg"))
        # --every 0.5s over the whole video
        assert len(frames) == 2 * SECONDS, output
        assert frames[1].name == f"{Path(args[2]).stem}_t000000.500.jpg"

    def suggest(self, args, output):
        out = Path(option(args, "--out"))
        count = int(option(args, "-n"))
        picks = (out / "suggested.txt").read_text().split()
        # At least 8, so that val.txt gets two frames: one for val, one for test.
        assert 8 <= len(picks) <= count, output
        assert (out / "suggested.csv").is_file() and (out / "contact_sheet.png").is_file()
        frames = Path(args[3])
        assert all((frames / name).is_file() for name in picks)
        if "--labelled" in args:  # the frames labelled and imported are not suggested
            dataset = Path(option(args, "--labelled"))
            done = {path.stem for path in (dataset / "SegmentationClass").glob("*.png")}
            assert done and not done & {Path(name).stem for name in picks}
        self.suggested = out / "suggested.txt"

    def imported(self, args, output):
        out = Path(option(args, "--out"))
        lists = out / "ImageSets" / "Segmentation"
        train = (lists / "train.txt").read_text().split()
        val = (lists / "val.txt").read_text().split()
        # Every labelled frame, and only those, once.
        assert sorted(train + val) == sorted(self.labelled), output
        assert len(val) >= 2  # the two halves, val and test, hold a frame each
        spec = json.loads((out / "pixelwise_dataset.json").read_text())
        classes = option(args, "--classes")
        if classes is not None:
            assert spec["class_names"] == classes.split(",")
        for name in train + val:
            assert (out / "SegmentationClass" / f"{name}.png").is_file()
            assert (out / "JPEGImages" / f"{name}.jpg").is_file()

    def check(self, args, output):
        assert output.rstrip().endswith("OK"), output

    def train(self, args, output):
        out = Path(option(args, "--out"))
        assert (out / "best.keras").is_file(), output
        log = list(csv.DictReader((out / "train_log.csv").open()))
        assert len(log) == int(option(args, "--epochs")), output
        report = json.loads((out / "init_report.json").read_text())
        assert report["kept_layers"] > 0 and 0 < report["kept_params"] <= report[
            "total_params"]
        carried = report["carried_classes"]
        if "--class-map" in args:
            old, new = option(args, "--class-map").split("=")
            assert carried == {new: [old]}, report
        else:  # from a run of these classes: every one carries over
            assert set(carried) == {"background", "floor", "obstacle"}, report

    def evaluate(self, args, output):
        split = option(args, "--split", "test")
        metrics = json.loads((Path(args[1]) / "evaluation" / f"{split}-resized" /
                              "metrics.json").read_text())
        assert "mean IoU" in output and metrics, output

    def export(self, args, output):
        path = Path(args[1]) / "export" / "model_int8.tflite"
        assert path.is_file(), output
        report = json.loads(path.with_name("model_int8_check.json").read_text())
        assert report["passed"], report

    def predict(self, args, output):
        out = Path(option(args, "--out"))
        stem = Path(args[2]).stem
        for name in (f"{stem}_overlay.mp4", f"{stem}_drivable.npz", f"{stem}_timings.json"):
            assert (out / name).is_file(), (name, output)
        safety = float(option(args, "--safety"))
        with np.load(out / f"{stem}_drivable.npz") as drivable:
            keys = sorted(key for key in drivable.files if key.startswith("probability_"))
            assert len(keys) == int(SECONDS * RATE)  # a probability and a mask per frame
            for key in keys[::20]:
                probability = drivable[key]
                assert probability.shape == (HEIGHT, WIDTH)
                mask = drivable[key.replace("probability_", "mask_")]
                assert np.array_equal(mask, probability >= safety)


KINDS = ("labelme", "model list", "data frames", "data suggest", "data import labelme",
         "data check", "train", "evaluate", "export", "predict")


def test_the_doc_is_what_the_tutorial_test_runs():
    """Without running anything: the doc's commands are of kinds the test runs and checks,
    every override matches one, and the training commands follow the recipe table."""
    text = DOC.read_text(encoding="utf-8")
    commands = doc_commands(text)
    kinds = [command_kind(shlex.split(command)) for command in commands]
    assert set(kinds) <= set(KINDS), [kind for kind in kinds if kind not in KINDS]
    apply_overrides(commands)
    recipe = recipe_table(text)
    trainings = [shlex.split(command) for command in commands
                 if command_kind(shlex.split(command)) == "train"]
    assert len(trainings) == 2
    for words in trainings:
        assert {flag: option(words, flag) for flag in recipe} == recipe, words
    # The harness itself: continued lines, console prompts, an override matching nothing.
    parsed = doc_commands("```console\n$ pixelwise a \\\n    --b 1\nprinted\n```\n"
                          "```sh\n# note\npixelwise c\n```\n```text\npixelwise d\n```\n")
    assert parsed == ["pixelwise a --b 1", "pixelwise c"]
    with pytest.raises(AssertionError, match="match no command"):
        apply_overrides(["pixelwise train --epochs 4"])


@pytest.mark.slow
def test_every_command_of_the_own_data_tutorial_runs(road_zoo, tmp_path, monkeypatch):
    commands = apply_overrides(doc_commands(DOC.read_text(encoding="utf-8")))
    monkeypatch.chdir(tmp_path)
    write_drive_video(tmp_path / "drive.mp4")
    tutorial = Tutorial()
    for command in commands:
        tutorial.run(command)
    # Every command ran; the whole loop, and a second round of it.
    assert len(tutorial.kinds) == len(commands)
    assert set(tutorial.kinds) == set(KINDS)
    for kind in ("data suggest", "labelme", "data import labelme", "train"):
        assert tutorial.kinds.count(kind) == 2, kind
