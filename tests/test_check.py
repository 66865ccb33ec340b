"""Splits and layouts on the real VOC lists, `data check`, and `data import-rgb-masks`."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pixelwise.cli import cli
from pixelwise.data.check import check_dataset
from pixelwise.data.palette import colorize, read_label, write_label
from pixelwise.data.rgb_masks import import_rgb_masks
from pixelwise.data.spec import DatasetSpec
from pixelwise.data.voc import find_voc_root, read_list

# From ../shared/voc-samples/README.md: pixels per class over the four samples.
SAMPLE_CLASS_PIXELS = {
    0: 129545 + 143868 + 63851 + 43952,  # background
    1: 4734 + 30937,  # aeroplane
    6: 151036,  # bus
    7: 6938,  # car
    15: 866,  # person
    19: 93653,  # train
}
SAMPLE_IGNORE_PIXELS = 5355 + 8195 + 9996 + 9074


def make_dataset(root: Path, pairs: dict[str, tuple[np.ndarray, np.ndarray]],
                 split: str = "train") -> Path:
    """A VOC-layout folder: JPEG images, palette PNG labels and one list file."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, (image, label_map) in pairs.items():
        Image.fromarray(image).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        write_label(root / "SegmentationClass" / f"{name}.png", label_map)
    (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(pairs) + "\n")
    return root


def random_image(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def blocks_label(height: int = 24, width: int = 32, values=(0, 1, 15)) -> np.ndarray:
    label_map = np.zeros((height, width), dtype=np.uint8)
    for index, value in enumerate(values):
        label_map[:, index * width // len(values):] = value
    return label_map


# --- splits on the official lists ---------------------------------------------------------

def test_split_sizes_on_the_official_lists(voc_samples):
    layout = find_voc_root(voc_samples)
    assert len(layout.split_names("train")) == 1464
    assert len(layout.split_names("val-full")) == 1449
    assert len(layout.split_names("trainval")) == 2913
    assert len(layout.split_names("train_aug")) == 10582
    train, val_full = set(layout.split_names("train")), set(layout.split_names("val-full"))
    assert not train & val_full and train | val_full == set(layout.split_names("trainval"))


def test_val_and_test_halve_val_txt_by_seed(voc_samples):
    layout = find_voc_root(voc_samples)
    official = read_list(voc_samples / "ImageSets/Segmentation/val.txt")
    val, test = layout.split_names("val", seed=0), layout.split_names("test", seed=0)
    assert (len(val), len(test)) == (725, 724)
    assert not set(val) & set(test)
    assert sorted(val + test) == sorted(official)
    assert layout.split_names("val", seed=0) == val  # deterministic
    other_val = layout.split_names("val", seed=1)
    assert set(other_val) != set(val) and len(other_val) == 725
    assert sorted(other_val + layout.split_names("test", seed=1)) == sorted(official)


def test_find_voc_root_accepts_voc2012_and_the_folder_above(voc_samples):
    assert find_voc_root(voc_samples).root == voc_samples
    assert find_voc_root(voc_samples.parent).root == voc_samples  # holds VOC2012/


def test_find_voc_root_accepts_a_vocdevkit_layout(tmp_path):
    voc = make_dataset(tmp_path / "VOCdevkit" / "VOC2012",
                       {"a": (random_image(), blocks_label())})
    assert find_voc_root(tmp_path).root == voc
    assert find_voc_root(tmp_path / "VOCdevkit").root == voc


def test_find_voc_root_names_the_missing_folder(tmp_path):
    voc = tmp_path / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    with pytest.raises(FileNotFoundError,
                       match=r"missing folder\(s\): .*VOC2012/SegmentationClass"):
        find_voc_root(tmp_path)
    with pytest.raises(FileNotFoundError, match="no VOC-layout dataset"):
        find_voc_root(tmp_path / "VOC2012" / "JPEGImages")


# --- data check on the real samples ---------------------------------------------------------

def test_check_the_four_real_samples(voc_samples):
    report = check_dataset(voc_samples, str(voc_samples / "ImageSets/Segmentation/samples.txt"))
    assert report.ok and report.problems == [] and report.num_pairs == 4
    expected = np.zeros(21, dtype=np.int64)
    for index, pixels in SAMPLE_CLASS_PIXELS.items():
        expected[index] = pixels
    assert np.array_equal(report.class_pixel_counts, expected)
    assert report.ignore_pixel_count == SAMPLE_IGNORE_PIXELS
    assert report.class_frequencies[0] == pytest.approx(381216 / expected.sum())
    assert report.class_frequencies.sum() == pytest.approx(1.0)
    assert not any("0 and 255" in warning for warning in report.warnings)


def test_cli_check_on_the_samples_list_passes(voc_samples):
    result = CliRunner().invoke(cli, ["data", "check", str(voc_samples), "--split",
                                      str(voc_samples / "ImageSets/Segmentation/samples.txt")])
    assert result.exit_code == 0, result.output
    assert "4 pair(s)" in result.output
    assert "background" in result.output and "381,216" in result.output
    assert "151,036" in result.output  # bus
    assert result.output.rstrip().endswith("OK")


def test_cli_check_on_the_official_val_list_names_the_missing_files(voc_samples):
    layout = find_voc_root(voc_samples)
    val_names = layout.split_names("val")
    present = {path.stem for path in (voc_samples / "JPEGImages").glob("*.jpg")}
    missing = [name for name in val_names if name not in present]
    result = CliRunner().invoke(cli, ["data", "check", str(voc_samples), "--split", "val",
                                      "--max-problems", "0"])
    assert result.exit_code == 1
    assert f"{2 * len(missing)} problem(s)" in result.output
    for name in (missing[0], missing[len(missing) // 2], missing[-1]):
        assert f"JPEGImages/{name}.jpg: image missing" in result.output
        assert f"SegmentationClass/{name}.png: annotation missing" in result.output
    for name in present & set(val_names):
        assert f"{name}.jpg" not in result.output


def test_check_val_full_reports_every_missing_pair(voc_samples):
    report = check_dataset(voc_samples, "val-full")
    # Three of the four samples are in val.txt; the other 1446 names have no files here.
    assert report.num_pairs == 1449 and not report.ok
    assert len(report.problems) == 2 * 1446
    assert report.class_pixel_counts[19] == 93653 and report.class_pixel_counts[15] == 0


def test_cli_check_without_a_list_file_is_a_clear_error(voc_samples):
    result = CliRunner().invoke(cli, ["data", "check", str(voc_samples), "--split",
                                      str(voc_samples / "no_such_list.txt")])
    assert result.exit_code == 1
    assert "no_such_list.txt: split list" in result.output and "not found" in result.output


# --- data check on made-up datasets ---------------------------------------------------------

def test_binary_masks_stored_as_0_and_255_raise_the_warning(tmp_path):
    binary = blocks_label(values=(0, 255))
    root = make_dataset(tmp_path, {f"m{i}": (random_image(seed=i), binary) for i in range(3)})
    report = check_dataset(root, "train")
    assert report.ok  # a legal dataset...
    assert any("only 0 and 255" in warning and "ignored" in warning
               for warning in report.warnings)  # ...that would teach nothing
    assert report.class_pixel_counts.sum() == 3 * (binary == 0).sum()
    result = CliRunner().invoke(cli, ["data", "check", str(root), "--split", "train"])
    assert result.exit_code == 0 and "only 0 and 255" in result.output


def test_zeros_and_ignore_with_a_real_class_do_not_warn(tmp_path):
    root = make_dataset(tmp_path, {"a": (random_image(), blocks_label(values=(0, 255, 1)))})
    assert not any("0 and 255" in warning for warning in check_dataset(root, "train").warnings)


def test_label_value_that_is_no_class_is_reported_with_file_and_value(tmp_path):
    bad = blocks_label(values=(0, 37))
    root = make_dataset(tmp_path, {"good": (random_image(), blocks_label()),
                                   "bad": (random_image(), bad)})
    report = check_dataset(root, "train")
    assert not report.ok and len(report.problems) == 1
    problem = report.problems[0]
    assert "SegmentationClass/bad.png" in problem
    assert f"37 ({(bad == 37).sum()} px)" in problem and "0..20" in problem


def test_label_value_checked_against_the_datasets_own_classes(tmp_path):
    root = make_dataset(tmp_path, {"a": (random_image(), blocks_label(values=(0, 1, 2)))})
    DatasetSpec(("background", "road"), ((0, 0, 0), (128, 64, 128))).save(
        root / "pixelwise_dataset.json")
    report = check_dataset(root, "train")
    assert len(report.problems) == 1 and "a.png: label value(s) 2 " in report.problems[0]
    assert "0..1" in report.problems[0] and len(report.class_pixel_counts) == 2


def test_mismatched_sizes_are_reported(tmp_path):
    root = make_dataset(tmp_path, {"a": (random_image(24, 32), blocks_label(20, 30))})
    report = check_dataset(root, "train")
    assert report.problems == [f"{root / 'SegmentationClass/a.png'}: annotation is 30x20 but "
                               f"the image is 32x24 (width x height)"]


def test_undecodable_and_wrong_format_files_are_reported_by_name(tmp_path):
    root = make_dataset(tmp_path, {name: (random_image(), blocks_label())
                                   for name in ("broken", "png_inside", "rgb_label", "fine")})
    (root / "JPEGImages/broken.jpg").write_bytes(b"not a jpeg at all")
    Image.fromarray(random_image()).save(root / "JPEGImages/png_inside.jpg", format="TIFF")
    Image.fromarray(colorize(blocks_label())).save(root / "SegmentationClass/rgb_label.png")
    report = check_dataset(root, "train")
    assert len(report.problems) == 3, report.problems
    text = "\n".join(report.problems)
    assert "broken.jpg: cannot decode the image" in text
    assert "png_inside.jpg: is a TIFF file; images must be JPEG, PNG, BMP or GIF" in text
    assert "rgb_label.png: annotation has mode RGB" in text and "import-rgb-masks" in text
    assert "fine" not in text


def test_every_missing_file_is_reported_not_just_the_first(tmp_path):
    root = make_dataset(tmp_path, {name: (random_image(), blocks_label()) for name in "abcd"})
    (root / "JPEGImages/a.jpg").unlink()
    (root / "SegmentationClass/c.png").unlink()
    (root / "JPEGImages/d.jpg").unlink()
    (root / "SegmentationClass/d.png").unlink()
    report = check_dataset(root, "train")
    assert sorted(Path(problem.split(":")[0]).name for problem in report.problems) == [
        "a.jpg", "c.png", "d.jpg", "d.png"]
    # b's label and a's label decoded and were counted.
    assert report.class_pixel_counts.sum() == 2 * 24 * 32


# --- import-rgb-masks ------------------------------------------------------------------------

def test_import_rgb_masks_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    label_maps = {f"mask{i}": rng.choice(np.array([0, 3, 15, 20, 255], dtype=np.uint8),
                                         size=(20, 28)) for i in range(3)}
    src = tmp_path / "rgb"
    src.mkdir()
    for name, label_map in label_maps.items():
        Image.fromarray(colorize(label_map)).save(src / f"{name}.png")
    written = import_rgb_masks(src, tmp_path / "labels")
    assert [path.name for path in written] == [f"{name}.png" for name in sorted(label_maps)]
    for name, label_map in label_maps.items():
        path = tmp_path / "labels" / f"{name}.png"
        with Image.open(path) as image:
            assert image.mode == "P"
        assert np.array_equal(read_label(path), label_map)
    assert sorted(path.name for path in (tmp_path / "labels").iterdir()) == [
        path.name for path in written]


def test_cli_import_rgb_masks_with_a_custom_spec(tmp_path):
    spec = DatasetSpec(("background", "road", "toy"), ((0, 0, 0), (128, 64, 128), (220, 20, 60)))
    spec_file = tmp_path / "pixelwise_dataset.json"
    spec.save(spec_file)
    label_map = blocks_label(values=(0, 1, 2))
    src = tmp_path / "rgb"
    src.mkdir()
    Image.fromarray(colorize(label_map, spec)).convert("RGBA").save(src / "scene.png")
    result = CliRunner().invoke(cli, ["data", "import-rgb-masks", str(src), str(tmp_path / "out"),
                                      "--spec", str(spec_file)])
    assert result.exit_code == 0, result.output
    assert "wrote 1 palette PNG(s)" in result.output
    assert np.array_equal(read_label(tmp_path / "out/scene.png"), label_map)
    with Image.open(tmp_path / "out/scene.png") as image:
        assert image.getpalette()[:9] == [0, 0, 0, 128, 64, 128, 220, 20, 60]


def test_unknown_colours_name_the_file_and_the_colours(tmp_path):
    src = tmp_path / "rgb"
    src.mkdir()
    good = colorize(blocks_label())
    bad = good.copy()
    bad[:2, :3] = (1, 2, 3)
    Image.fromarray(good).save(src / "a_good.png")
    Image.fromarray(bad).save(src / "b_bad.png")
    dest = tmp_path / "labels"
    with pytest.raises(ValueError) as caught:
        import_rgb_masks(src, dest)
    message = str(caught.value)
    assert "b_bad.png: 1 colour(s) not in the palette: (1, 2, 3) x6" in message
    assert "a_good" not in message
    # The good mask is written in full; the bad one not at all; no temporary files.
    assert sorted(path.name for path in dest.iterdir()) == ["a_good.png"]
    assert np.array_equal(read_label(dest / "a_good.png"), blocks_label())
    result = CliRunner().invoke(cli, ["data", "import-rgb-masks", str(src), str(dest)])
    assert result.exit_code == 1 and "(1, 2, 3)" in result.output


def test_import_rgb_masks_refuses_to_convert_in_place(tmp_path):
    Image.fromarray(colorize(blocks_label())).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    with pytest.raises(ValueError, match="would overwrite the RGB masks"):
        import_rgb_masks(tmp_path, tmp_path)
    assert (tmp_path / "a.png").read_bytes() == before
