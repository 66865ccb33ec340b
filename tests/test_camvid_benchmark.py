"""benchmarks/camvid.py's held-out sequence: recipes are chosen on streets the model did not
train on (CamVid's val.txt shares its sequence with train)."""

import importlib.util
from pathlib import Path

import pytest

from pixelwise.data.camvid import CamVidLayout
from test_camvid import make_camvid


def load_camvid_benchmark():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "camvid.py"
    spec = importlib.util.spec_from_file_location("camvid_benchmark", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def two_sequences(tmp_path) -> Path:
    """A CamVid folder whose 5 train frames come from two recordings: 0001TP (3), 0006R0 (2)."""
    root = tmp_path / "CamVid"
    make_camvid(root, sizes={"train": 5, "val": 1, "test": 1})
    lines = []
    for index, line in enumerate((root / "train.txt").read_text().splitlines()):
        if index in (1, 3):
            old = Path(line.split()[0]).stem
            new = old.replace("0001TP", "0006R0")
            for folder in ("train", "trainannot"):
                (root / folder / f"{old}.png").rename(root / folder / f"{new}.png")
            line = line.replace(old, new)
        lines.append(line)
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


def test_a_held_out_sequence_leaves_train_and_is_read_as_a_split_of_its_own(two_sequences):
    camvid_benchmark = load_camvid_benchmark()

    train_split, held_out_split = camvid_benchmark.hold_out_sequence(two_sequences, "0006R0")

    assert (train_split, held_out_split) == ("train-without-0006R0", "sequence-0006R0")
    layout = CamVidLayout(two_sequences)
    held_out = layout.examples(held_out_split)
    kept = layout.examples(train_split)
    assert [example.name for example in held_out] == ["0006R0_train001", "0006R0_train003"]
    assert [example.name for example in kept] == [
        "0001TP_train000", "0001TP_train002", "0001TP_train004"]
    for example in held_out + kept:  # the release's own paths, still pointing into train/
        assert example.image_path.parent.name == "train"
        assert example.label_path.parent.name == "trainannot"
    assert "2 images" in layout.describe_split(held_out_split)


def test_a_sequence_train_does_not_hold_is_refused_by_name(two_sequences):
    camvid_benchmark = load_camvid_benchmark()

    with pytest.raises(SystemExit, match=r"train.txt: no train frames of sequence '0016E5'.*"
                                         r"0001TP, 0006R0"):
        camvid_benchmark.hold_out_sequence(two_sequences, "0016E5")
    with pytest.raises(SystemExit, match="apart from the others"):  # all of train
        camvid_benchmark.hold_out_sequence(two_sequences, "00")
    assert sorted(path.name for path in two_sequences.glob("*.txt")) == [
        "test.txt", "train.txt", "val.txt"]


@pytest.mark.parametrize("history, title, epochs", [
    ({"stages": [{"from": "random weights"}, {"from": "runs/crops"}], "epochs": "80 + 70",
      "minutes": 121}, "from scratch)", "| 80 + 70, 2.02 h |"),
    ({"stages": [{"from": "camvid-toy"}], "epochs": "80 + 70 + 29", "minutes": 160,
      "starts_from": {"model": "camvid-toy"}}, "from camvid-toy)", "| 80 + 70 + 29, 2.67 h |"),
])
def test_the_results_section_says_where_training_started_and_counts_every_stage(
        history, title, epochs):
    figures = {"model": {"name": "deeplabv3plus", "backbone": "mobilenetv3large_minimalistic"},
               "date": "2026-12-06", "machine": "Some CPU, 2 CPUs", "load_average": 0.5,
               "command": "python ...",
               "split": "val", "keras_mean_iou": 0.6455, "int8_mean_iou": 0.642,
               "int8_keras_mean_iou_on_check": 0.646, "run_size": [360, 480],
               "int8_ms_1_thread": 17.1, "int8_ms_2_threads": None, "int8_bytes": 2_560_000,
               "parameters": 1_653_355, "history": history,
               "per_class_iou": {"sky": 0.922, "pole": 0.035}}
    text = load_camvid_benchmark().results_markdown(figures)
    assert text.splitlines()[0].endswith(title) and "2026-12-06 on Some CPU, 2 CPUs" in text
    assert epochs in text and "| val mean IoU, Keras float, 360 x 480 | 64.5% |" in text
    assert "| 2 threads | not timed |" in text.replace("int8 ms per frame, ", "")
    assert "| pole | 3.5% |" in text
