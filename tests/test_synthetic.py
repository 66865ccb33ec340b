import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import ndimage
from sklearn.ensemble import HistGradientBoostingClassifier

from pixelwise.cli import cli
from pixelwise.data import synthetic
from pixelwise.data.palette import read_label
from pixelwise.data.spec import IGNORE_LABEL
from pixelwise.data.synthetic import (
    PARAMS_FILENAME,
    SyntheticConfig,
    boundary_band,
    generate_synthetic,
    read_params,
    render_example,
    synthetic_spec,
)
from pixelwise.data.voc import find_voc_root

NUM_CLASSES = 6  # background + ball, block, cone, star, ring
# The dataset most tests read: 90 images of 128 px (60 train, 30 val), about a second.
SETTINGS = dict(num_images=90, size=128, seed=3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("synth") / "data", **SETTINGS)


def load_split(layout, split):
    """(images uint8 [N, H, W, 3], label maps uint8 [N, H, W]) of a split, read from disk."""
    images, label_maps = [], []
    for example in layout.examples(split):
        with Image.open(example.image_path) as image:
            assert image.format == "JPEG" and image.mode == "RGB", example.image_path
            images.append(np.array(image))
        label_maps.append(read_label(example.label_path))
    return np.stack(images), np.stack(label_maps)


def confusion(true_labels, predicted, num_classes=NUM_CLASSES):
    keep = true_labels < num_classes
    return np.bincount(true_labels[keep].astype(np.int64) * num_classes + predicted[keep],
                       minlength=num_classes ** 2).reshape(num_classes, num_classes)


def mean_iou(matrix, first_class=0):
    true_positives = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - true_positives
    return float(np.mean((true_positives / np.maximum(union, 1))[first_class:]))


def colour_codes(images, levels=16):
    """Each pixel's RGB quantised to ``levels`` per channel, as one bin number."""
    quantised = images.astype(np.int64) * levels // 256
    return (quantised[..., 0] * levels + quantised[..., 1]) * levels + quantised[..., 2]


def colour_lookup(codes, label_maps, levels=16, classes=range(NUM_CLASSES)):
    """The best per-pixel-colour classifier: each colour bin -> its majority class."""
    keep = np.isin(label_maps, list(classes))
    counts = np.bincount(codes[keep] * NUM_CLASSES + label_maps[keep],
                         minlength=levels ** 3 * NUM_CLASSES).reshape(-1, NUM_CLASSES)
    lookup = counts.argmax(1)
    seen = counts.sum(1) > 0
    lookup[~seen] = np.bincount(label_maps[keep], minlength=NUM_CLASSES).argmax()
    return lookup


# ---- layout ---------------------------------------------------------------------------

def test_layout_is_a_valid_voc_dataset(dataset):
    layout = find_voc_root(dataset.root)
    assert layout.root == dataset.root
    assert layout.spec == synthetic_spec(5)
    assert layout.spec.class_names == ("background", "ball", "block", "cone", "star", "ring")
    train, val_full = layout.split_names("train"), layout.split_names("val-full")
    assert (len(train), len(val_full)) == (60, 30)
    assert not set(train) & set(val_full)
    assert layout.split_names("trainval") == train + val_full
    assert sorted(layout.split_names("val") + layout.split_names("test")) == sorted(val_full)
    assert len(layout.split_names("val")) == len(layout.split_names("test")) == 15
    assert sorted(path.stem for path in layout.image_dir.glob("*.jpg")) == sorted(train + val_full)
    assert read_params(layout.root)["params"] == SyntheticConfig(
        num_images=90, height=128, width=128, seed=3).to_dict()


def test_every_pair_decodes_with_classes_or_ignore(dataset):
    for split in ("train", "val-full"):
        images, label_maps = load_split(dataset, split)
        assert images.shape[1:] == (128, 128, 3) and label_maps.shape[1:] == (128, 128)
        assert set(np.unique(label_maps).tolist()) <= set(range(NUM_CLASSES)) | {IGNORE_LABEL}
        # Every image has objects, and a boundary band around them.
        assert ((label_maps > 0) & (label_maps < NUM_CLASSES)).any(axis=(1, 2)).all()
        assert (label_maps == IGNORE_LABEL).any(axis=(1, 2)).all()


def test_every_class_in_train_with_balanced_objects(dataset):
    _, label_maps = load_split(dataset, "train")
    counts = np.bincount(label_maps.reshape(-1), minlength=256)
    frequencies = counts[:NUM_CLASSES] / counts[:NUM_CLASSES].sum()
    assert (counts[:NUM_CLASSES] > 0).all()
    # Background is the majority, yet every object class keeps a fair share of pixels.
    assert 0.55 < frequencies[0] < 0.85
    assert (frequencies[1:] > 0.02).all()
    # Bands are a few pixels wide: a small share of all pixels, not a flood.
    assert 0.02 < counts[IGNORE_LABEL] / label_maps.size < 0.12


def test_non_square_images(tmp_path):
    layout = generate_synthetic(tmp_path / "data", num_images=4, size=(48, 80), seed=1)
    example = layout.examples("train")[0]
    with Image.open(example.image_path) as image:
        assert image.size == (80, 48)
    assert read_label(example.label_path).shape == (48, 80)


# ---- drawing: bands, occlusion --------------------------------------------------------

def test_boundary_band_against_hand_computed_square():
    label_map = np.zeros((10, 10), dtype=np.uint8)
    label_map[3:7, 3:7] = 2  # rows and columns 3..6
    expected = np.zeros((10, 10), dtype=bool)
    expected[2:8, 2:8] = True  # one pixel either side of the outline
    expected[4:6, 4:6] = False
    assert np.array_equal(boundary_band(label_map, 2), expected)
    expected = np.zeros((10, 10), dtype=bool)
    expected[1:8, 1:8] = True  # two pixels outside, one inside
    expected[4, 4] = False
    assert np.array_equal(boundary_band(label_map, 3), expected)
    assert not boundary_band(label_map, 0).any()
    # The image border is no outline.
    assert not boundary_band(np.full((6, 6), 4, dtype=np.uint8), 2).any()


def test_saved_labels_are_the_drawing_with_its_bands(dataset):
    config = SyntheticConfig(num_images=90, height=128, width=128, seed=3)
    unbanded = dataclasses.replace(config, boundary_width=0)
    for index, example in enumerate(dataset.examples("trainval")[:10]):
        raw_image, raw_labels = render_example(unbanded, index)
        assert not (raw_labels == IGNORE_LABEL).any()
        expected = np.where(boundary_band(raw_labels, 2), IGNORE_LABEL, raw_labels)
        assert np.array_equal(read_label(example.label_path), expected), example.name
        with Image.open(example.image_path) as image:
            jpeg = np.array(image).astype(int)
        # The JPEG of this very drawing (up to compression), not of a neighbour's.
        assert np.abs(jpeg - raw_image).mean() < 12
        assert np.abs(jpeg - render_example(unbanded, index + 1)[0]).mean() > 25


def test_bands_separate_every_pair_of_classes(dataset):
    # Any two labelled pixels within `boundary_width` of each other along a row or column
    # hold the same class: every outline (object/background or object/object) is banded.
    _, label_maps = load_split(dataset, "trainval")
    for distance in (1, 2):
        for first, second in ((label_maps[:, :, :-distance], label_maps[:, :, distance:]),
                              (label_maps[:, :-distance], label_maps[:, distance:])):
            labelled = (first != IGNORE_LABEL) & (second != IGNORE_LABEL)
            assert (first[labelled] == second[labelled]).all()


def test_objects_occlude_each_other(dataset):
    # Two different object classes meeting across a band: one is in front of the other.
    _, label_maps = load_split(dataset, "trainval")
    left, right = label_maps[:, :, :-3], label_maps[:, :, 3:]
    meeting = (left > 0) & (right > 0) & (left < NUM_CLASSES) & (right < NUM_CLASSES) & (
        left != right)
    assert meeting.any(axis=(1, 2)).sum() >= 5


# ---- determinism ------------------------------------------------------------------------

def dataset_bytes(root):
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path):
    first = generate_synthetic(tmp_path / "a", num_images=8, size=64, seed=5)
    second = generate_synthetic(tmp_path / "b", num_images=8, size=64, seed=5)
    first_files, second_files = dataset_bytes(first.root), dataset_bytes(second.root)
    assert len(first_files) == 8 * 2 + 3 + 2
    assert first_files == second_files


def test_different_seeds_differ(tmp_path):
    first = generate_synthetic(tmp_path / "a", num_images=4, size=64, seed=5)
    second = generate_synthetic(tmp_path / "b", num_images=4, size=64, seed=6)
    for one, other in zip(first.examples("trainval"), second.examples("trainval")):
        assert one.image_path.read_bytes() != other.image_path.read_bytes()
        assert not np.array_equal(read_label(one.label_path), read_label(other.label_path))


# ---- difficulty: colour alone is not enough, texture and shape are ---------------------

def test_colour_alone_does_not_decide_the_class(dataset):
    train_images, train_labels = load_split(dataset, "train")
    val_images, val_labels = load_split(dataset, "val-full")
    lookup = colour_lookup(colour_codes(train_images), train_labels)
    predicted = lookup[colour_codes(val_images)]
    colour_miou = mean_iou(confusion(val_labels, predicted))
    assert colour_miou < 0.5
    # It does fit the training pixels better than chance: the bound is not an accident
    # of a broken classifier.
    train_miou = mean_iou(confusion(train_labels, lookup[colour_codes(train_images)]))
    assert train_miou > colour_miou + 0.1


def texture_features(images):
    """Per-pixel colour, blurred colour and local gradient energy in four directions."""
    values = images.astype(np.float32) / 255
    gray = values.mean(-1)
    features = [values, ndimage.uniform_filter(values, (1, 9, 9, 1))]
    for step in (1, 2, 3):
        for shift in ((0, step), (step, 0), (step, step), (step, -step)):
            difference = np.abs(gray - np.roll(gray, shift, axis=(1, 2)))
            features.append(ndimage.uniform_filter(difference, (1, 9, 9))[..., None])
    return np.concatenate(features, -1).reshape(-1, 3 + 3 + 12)


def test_texture_makes_the_classes_learnable(dataset):
    # A classifier that sees each pixel's neighbourhood (its texture) separates the classes
    # far better than the best one that sees only the pixel's colour.
    train_images, train_labels = load_split(dataset, "train")
    val_images, val_labels = load_split(dataset, "val-full")
    train_features, train_targets = texture_features(train_images), train_labels.reshape(-1)
    labelled = np.flatnonzero(train_targets < NUM_CLASSES)
    sample = np.random.default_rng(0).choice(labelled, 30000, replace=False)
    classifier = HistGradientBoostingClassifier(max_iter=60, class_weight="balanced",
                                                random_state=0)
    classifier.fit(train_features[sample], train_targets[sample])
    predicted = classifier.predict(texture_features(val_images))
    texture_miou = mean_iou(confusion(val_labels.reshape(-1), predicted))
    lookup = colour_lookup(colour_codes(train_images), train_labels)
    colour_miou = mean_iou(confusion(val_labels, lookup[colour_codes(val_images)]))
    assert texture_miou > 0.75
    assert texture_miou > colour_miou + 0.35


def test_color_overlap_knob_mixes_object_colours():
    # Among object pixels only: with color_overlap=0 the classes' hues are apart and
    # colour goes a long way; with 1 they overlap widely.
    def object_colour_miou(color_overlap):
        config = SyntheticConfig(num_images=60, height=64, width=64, seed=1,
                                 color_overlap=color_overlap)
        images, label_maps = map(np.stack, zip(*(render_example(config, i) for i in range(60))))
        codes = colour_codes(images)
        objects = range(1, NUM_CLASSES)
        lookup = colour_lookup(codes[:40], label_maps[:40], classes=objects)
        matrix = confusion(np.where(label_maps[40:] == 0, IGNORE_LABEL, label_maps[40:]),
                           lookup[codes[40:]])
        return mean_iou(matrix, first_class=1)

    assert object_colour_miou(0.0) > object_colour_miou(1.0) + 0.2


# ---- no-op, refuse, overwrite, atomic --------------------------------------------------

def test_second_call_with_same_settings_is_a_no_op(tmp_path):
    layout = generate_synthetic(tmp_path / "data", num_images=4, size=64, seed=2)
    stamps = {path: path.stat().st_mtime_ns for path in layout.root.rglob("*")}
    again = generate_synthetic(tmp_path / "data", num_images=4, size=64, seed=2)
    assert again.root == layout.root
    assert {path: path.stat().st_mtime_ns for path in layout.root.rglob("*")} == stamps
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]  # no temp folders


def test_other_settings_refused_unless_overwrite(tmp_path):
    generate_synthetic(tmp_path / "data", num_images=4, size=64, seed=2)
    with pytest.raises(FileExistsError, match=r"height 64 -> 80.*overwrite"):
        generate_synthetic(tmp_path / "data", num_images=4, size=80, seed=2)
    assert read_params(tmp_path / "data")["params"]["height"] == 64
    layout = generate_synthetic(tmp_path / "data", num_images=6, size=80, seed=2, overwrite=True)
    assert read_params(layout.root)["params"]["height"] == 80
    assert len(layout.split_names("trainval")) == 6
    assert len(list(layout.image_dir.glob("*.jpg"))) == 6  # the old files are gone
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


def test_foreign_folder_is_never_replaced(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not a synthetic dataset"):
            generate_synthetic(tmp_path / "mine", num_images=4, size=64, overwrite=overwrite)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    assert find_voc_root(generate_synthetic(tmp_path / "empty", num_images=4, size=64).root)


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_write_label(path, label_map, spec=None):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(path, label_map, spec)

    original = synthetic.write_label
    monkeypatch.setattr(synthetic, "write_label", failing_write_label)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(tmp_path / "data", num_images=6, size=64)
    assert list(tmp_path.iterdir()) == []


def test_bad_settings_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="val_fraction"):
        generate_synthetic(tmp_path / "data", num_images=4, val_fraction=1.0)
    with pytest.raises(ValueError, match="num_object_classes must be 1..5"):
        generate_synthetic(tmp_path / "data", num_object_classes=6)
    with pytest.raises(ValueError, match="min_objects"):
        generate_synthetic(tmp_path / "data", objects_per_image=(3, 2))
    assert not (tmp_path / "data").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError, match="is a file"):
        generate_synthetic(tmp_path / "file", num_images=4, size=64)


def test_broken_params_file_is_reported(tmp_path):
    layout = generate_synthetic(tmp_path / "data", num_images=4, size=64)
    (layout.root / PARAMS_FILENAME).write_text("{not json")
    with pytest.raises(ValueError, match=f"{PARAMS_FILENAME}: cannot read"):
        generate_synthetic(tmp_path / "data", num_images=4, size=64)


# ---- command line -------------------------------------------------------------------------

def test_cli_data_synth(tmp_path):
    runner = CliRunner()
    dest = tmp_path / "synth"
    result = runner.invoke(cli, ["data", "synth", str(dest), "--n", "6", "--size", "64",
                                 "--seed", "4", "--classes", "3"])
    assert result.exit_code == 0, result.output
    assert str(dest) in result.output
    layout = find_voc_root(dest)
    assert layout.spec.class_names == ("background", "ball", "block", "cone")
    assert len(layout.split_names("trainval")) == 6
    params = json.loads((dest / PARAMS_FILENAME).read_text())["params"]
    assert (params["height"], params["seed"], params["num_object_classes"]) == (64, 4, 3)
    refused = runner.invoke(cli, ["data", "synth", str(dest), "--n", "6", "--size", "72"])
    assert refused.exit_code == 1
    assert "--overwrite" in refused.output
    replaced = runner.invoke(cli, ["data", "synth", str(dest), "--n", "6", "--size", "72",
                                  "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert read_label(find_voc_root(dest).examples("train")[0].label_path).shape == (72, 72)


def test_cli_demo_generates_and_checks(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--n", "12", "--size", "64",
                                      "--no-train"])
    assert result.exit_code == 0, result.output
    data_root = out / "data"
    assert f"synthetic dataset: {data_root}" in result.output
    assert len(find_voc_root(data_root).split_names("trainval")) == 12
    for split in ("'train'", "'val'", "'test'"):
        assert f"split {split}" in result.output
    # The class pixel frequencies of the check, with the class names.
    for name in ("background", "ball", "block", "cone", "star", "ring"):
        assert name in result.output
    assert "%" in result.output and "NOT OK" not in result.output
