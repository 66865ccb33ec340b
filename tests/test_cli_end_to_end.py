"""train -> evaluate -> predict -> visualize through the command line, on a tiny synthetic set."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pixelwise.cli import cli
from pixelwise.data.palette import read_label
from pixelwise.data.synthetic import generate_synthetic

SIZE = 64
NUM_CLASSES = 6


@pytest.fixture(scope="module")
def trained_run(tiny_trained_run):
    """A synthetic dataset and a run trained on it for 2 epochs through `pixelwise train`."""
    return tiny_trained_run


def png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        return image.size


def test_train_writes_a_complete_run_folder(trained_run):
    _, run_dir, output = trained_run
    assert "data check: train: 16 pairs OK" in output
    assert "2 epoch(s) done (completed)" in output
    for name in ("config.json", "pixelwise_dataset.json", "train_log.csv", "best.keras",
                 "checkpoints/state.json", "checkpoints/epoch-0002.keras"):
        assert (run_dir / name).is_file(), name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["backbone"] == "mobilenetv2" and config["train"]["epochs"] == 2
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    header = (run_dir / "train_log.csv").read_text().splitlines()[0].split(",")
    for column in ("epoch", "loss", "val_loss", "mean_iou", "val_mean_iou", "learning_rate"):
        assert column in header


def test_evaluate_both_protocols_with_multi_scale_and_flip(trained_run):
    _, run_dir, _ = trained_run
    result = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--split", "test", "--resolution",
                                      "both", "--multi-scale", "--flip", "--hardest", "2"])
    assert result.exit_code == 0, result.output
    assert "mean IoU" in result.output and "majority-class baseline" in result.output
    for protocol in ("test-resized-ms-flip", "test-original-ms-flip"):
        folder = run_dir / "evaluation" / protocol
        metrics = json.loads((folder / "metrics.json").read_text())
        for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "per_class",
                    "confusion_matrix", "majority_baseline", "hardest"):
            assert key in metrics, key
        assert metrics["num_images"] == 4 and metrics["scales"] == [0.75, 1.0, 1.25]
        assert 0.0 <= metrics["mean_iou"] <= 1.0
        matrix = np.array(metrics["confusion_matrix"])
        assert matrix.shape == (NUM_CLASSES, NUM_CLASSES)
        assert matrix.sum() == metrics["labelled_pixels"] > 0
        assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["pixel_accuracy"])
        assert len(metrics["hardest"]) == 2
        rows = (folder / "per_class.csv").read_text().splitlines()
        assert len(rows) == 1 + NUM_CLASSES and rows[1].startswith("0,background,")
        assert min(png_size(folder / "confusion.png")) > 100
        assert min(png_size(folder / "hardest.png")) > 100


def test_predict_folder_and_odd_sized_image(trained_run, tmp_path):
    data, run_dir, _ = trained_run
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((data / "JPEGImages").glob("*.jpg"))[:3]:
        shutil.copy(path, images / path.name)
    odd = tmp_path / "odd.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 70, 3), dtype=np.uint8)).save(odd)
    out = tmp_path / "predictions"
    result = CliRunner().invoke(cli, ["predict", str(run_dir), str(images), str(odd),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 8 file(s) for 4 image(s)" in result.output
    expected_sizes = {path.stem: (SIZE, SIZE) for path in images.iterdir()} | {"odd": (70, 45)}
    for name, size in expected_sizes.items():
        assert png_size(out / f"{name}.png") == size
        assert png_size(out / f"{name}_overlay.png") == size
        with Image.open(out / f"{name}.png") as image:
            assert image.mode == "P"  # a palette PNG of class indices
        assert read_label(out / f"{name}.png").max() < NUM_CLASSES
    missing = CliRunner().invoke(cli, ["predict", str(run_dir), str(tmp_path / "nowhere.jpg")])
    assert missing.exit_code == 1 and "nowhere.jpg" in missing.output


def test_visualize_grid_and_curves(trained_run):
    _, run_dir, _ = trained_run
    result = CliRunner().invoke(cli, ["visualize", str(run_dir), "--split", "test", "-n", "3"])
    assert result.exit_code == 0, result.output
    grid = run_dir / "figures" / "predictions-test.png"
    curves = run_dir / "figures" / "training_curves.png"
    assert str(grid) in result.output and str(curves) in result.output
    assert min(png_size(curves)) > 100
    single = CliRunner().invoke(cli, ["visualize", str(run_dir), "-n", "1", "--out",
                                      str(run_dir / "one")])
    assert single.exit_code == 0, single.output
    width, height = png_size(grid)
    one_width, one_height = png_size(run_dir / "one" / "predictions-test.png")
    assert width == one_width and height > 2 * one_height  # three rows against one


def test_cli_refuses_a_different_config_and_mixed_resume_options(trained_run, tiny_train_flags):
    data, run_dir, _ = trained_run
    changed = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(run_dir),
                                       "--epochs", "3", *tiny_train_flags])
    assert changed.exit_code == 1
    assert "train.epochs: 2 -> 3" in changed.output and "--resume" in changed.output
    mixed = CliRunner().invoke(cli, ["train", "--resume", str(run_dir), "--batch-size", "2"])
    assert mixed.exit_code == 2 and "leave out --batch-size" in mixed.output
    done = CliRunner().invoke(cli, ["train", "--resume", str(run_dir)])
    assert done.exit_code == 0 and "already_complete" in done.output
    incomplete = CliRunner().invoke(cli, ["train", "--out", str(run_dir)])
    assert incomplete.exit_code == 2 and "--data" in incomplete.output


def test_cli_names_bad_data_before_training(tmp_path, tiny_train_flags):
    data = tmp_path / "synth"
    generate_synthetic(data, num_images=8, size=SIZE, seed=2)
    name = (data / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]
    labels = read_label(data / "SegmentationClass" / f"{name}.png")
    labels[0, 0] = 77
    Image.fromarray(labels, mode="L").save(data / "SegmentationClass" / f"{name}.png")
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--out",
                                      str(tmp_path / "run"), *tiny_train_flags])
    assert result.exit_code == 1
    assert f"{name}.png: label value(s) 77" in result.output
    assert not (tmp_path / "run").exists()


def test_visualize_spreads_its_rows_over_the_split(trained_run):
    """A video's neighbouring frames are near duplicates: the grid shows the split's first
    and last image and ones evenly between, not its first few."""
    from pixelwise.visualize import spread_indices

    assert spread_indices(233, 4).tolist() == [0, 77, 155, 232]
    assert spread_indices(3, 8).tolist() == [0, 1, 2]
    assert spread_indices(0, 8).tolist() == []
    _, run_dir, _ = trained_run
    result = CliRunner().invoke(cli, ["visualize", str(run_dir), "--split", "val", "-n", "2",
                                      "--out", str(run_dir / "spread")])
    assert result.exit_code == 0, result.output
    assert "showing 2 image(s) spread over val:" in result.output
