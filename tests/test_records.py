import hashlib
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from aligned_voc import SPEC, make_aligned_voc
from pixelwise.cli import cli
from pixelwise.data.palette import read_label, write_label
from pixelwise.data.pipeline import make_dataset, open_source
from pixelwise.data.records import RecordsSource
from pixelwise.data.records_writer import prepare_records
from pixelwise.data.spec import DatasetSpec

SIZES = {"train": [(64, 96), (96, 64), (80, 80), (50, 120), (120, 50)],
         "val": [(72, 64), (64, 72), (90, 40)]}


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return make_aligned_voc(tmp_path_factory.mktemp("voc"), SIZES, seed=5)


@pytest.fixture(scope="module")
def records_dir(voc_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("records")
    prepare_records(voc_root, out, ("train", "val", "test", "val-full"), examples_per_shard=2)
    return out


def by_name(dataset):
    return {name.decode(): (image, label)
            for images, labels, names in dataset.as_numpy_iterator()
            for image, label, name in zip(images, labels, names)}


def test_shards_and_manifest(voc_root, records_dir):
    files = sorted(path.name for path in records_dir.iterdir())
    assert files == ["manifest.json", "test-00000-of-00001.tfrecord",
                     "train-00000-of-00003.tfrecord", "train-00001-of-00003.tfrecord",
                     "train-00002-of-00003.tfrecord", "val-00000-of-00001.tfrecord",
                     "val-full-00000-of-00002.tfrecord", "val-full-00001-of-00002.tfrecord"]
    manifest = json.loads((records_dir / "manifest.json").read_text())
    assert manifest["dataset"] == {"class_names": ["red", "green", "blue"],
                                   "colors": [[255, 0, 0], [0, 255, 0], [0, 0, 255]],
                                   "ignore_label": 255}
    folder = open_source(voc_root)
    for split in ("train", "val", "test", "val-full"):
        entry = manifest["splits"][split]
        names = folder.split_names(split)
        assert entry["names"] == names and entry["num_examples"] == len(names)
        value_counts = sum(np.bincount(read_label(voc_root / "SegmentationClass" / f"{name}.png")
                                       .reshape(-1), minlength=256) for name in names)
        assert entry["class_pixel_counts"] == value_counts[:3].tolist()
        assert entry["ignore_pixel_count"] == value_counts[255]
        assert np.allclose(entry["class_pixel_frequencies"],
                           value_counts[:3] / value_counts[:3].sum())
        list_file = voc_root / "ImageSets/Segmentation" / ("train.txt" if split == "train"
                                                           else "val.txt")
        assert entry["list_sha256"] == hashlib.sha256(list_file.read_bytes()).hexdigest()
    assert manifest["splits"]["train"]["image_sizes"] == [
        [50, 120, 1], [64, 96, 1], [80, 80, 1], [96, 64, 1], [120, 50, 1]]


def test_records_read_back_to_the_folders_pixels(voc_root, records_dir):
    settings = dict(batch_size=1, input_size=64, training=False, eval_resolution="original",
                    with_names=True)
    for split in ("train", "val-full"):
        from_folder = by_name(make_dataset(voc_root, split, **settings))
        from_records = by_name(make_dataset(records_dir, split, **settings))
        assert sorted(from_records) == sorted(from_folder) == sorted(
            open_source(voc_root).split_names(split))
        for name, (image, label_map) in from_records.items():
            folder_image, folder_label = from_folder[name]
            assert np.array_equal(image, folder_image) and np.array_equal(label_map,
                                                                         folder_label)
            original = read_label(voc_root / "SegmentationClass" / f"{name}.png")
            height, width = original.shape
            assert np.array_equal(label_map[:height, :width], original)


def test_records_source_answers_like_the_folder(voc_root, records_dir):
    records, folder = open_source(records_dir), open_source(voc_root)
    assert isinstance(records, RecordsSource)
    assert records.spec == folder.spec == SPEC
    for split in ("train", "val", "test"):
        assert records.split_names(split) == folder.split_names(split)
        assert records.num_examples(split) == folder.num_examples(split)
        assert np.array_equal(records.class_pixel_counts(split), folder.class_pixel_counts(split))
        assert records.image_sizes(split) == folder.image_sizes(split)
    with pytest.raises(ValueError, match="prepared with split seed 0, not 3"):
        records.num_examples("val", split_seed=3)
    with pytest.raises(ValueError, match=r"split 'trainval' was not prepared \(prepared: train"):
        records.num_examples("trainval")


def test_training_from_records_is_deterministic(records_dir):
    def build():
        return make_dataset(records_dir, "train", batch_size=2, input_size=48, training=True,
                            seed=2, shuffle_buffer=3)

    one, other = list(build().as_numpy_iterator()), list(build().as_numpy_iterator())
    assert len(one) == 2 and one[0][0].shape == (2, 48, 48, 3)
    for (images, labels), (other_images, other_labels) in zip(one, other, strict=True):
        assert np.array_equal(images, other_images) and np.array_equal(labels, other_labels)


def test_interrupted_prepare_leaves_complete_shards_and_a_rerun_finishes(voc_root, tmp_path):
    source = tmp_path / "voc"
    shutil.copytree(voc_root, source)
    label_path = source / "SegmentationClass" / "train_003.png"
    good_label = label_path.read_bytes()
    write_label(label_path, np.full((50, 120), 9, dtype=np.uint8), SPEC)
    out = tmp_path / "records"
    with pytest.raises(ValueError, match=r"train_003.png: label value\(s\) \[9\] not a class"):
        prepare_records(source, out, ("train",), examples_per_shard=2)
    assert sorted(path.name for path in out.iterdir()) == ["train-00000-of-00003.tfrecord"]
    first_shard = out / "train-00000-of-00003.tfrecord"
    first_stat = first_shard.stat()
    (out / "train-00002-of-00003.tfrecord.tmp").write_bytes(b"half a shard from a kill -9")

    label_path.write_bytes(good_label)
    lines = []
    manifest = prepare_records(source, out, ("train",), examples_per_shard=2,
                               progress=lines.append)
    assert lines[0] == "train-00000-of-00003.tfrecord: complete, kept (2 examples)"
    assert lines[1:] == ["train-00001-of-00003.tfrecord: wrote 2 examples",
                         "train-00002-of-00003.tfrecord: wrote 1 examples"]
    assert first_shard.stat().st_mtime_ns == first_stat.st_mtime_ns
    assert not list(out.glob("*.tmp"))
    assert manifest["splits"]["train"]["num_examples"] == 5
    assert len(by_name(make_dataset(out, "train", batch_size=2, input_size=32, training=False,
                                    with_names=True))) == 5


def test_preparing_another_split_keeps_the_earlier_ones(voc_root, tmp_path):
    prepare_records(voc_root, tmp_path, ("train",), examples_per_shard=2)
    manifest = prepare_records(voc_root, tmp_path, ("val-full",), examples_per_shard=2)
    assert sorted(manifest["splits"]) == ["train", "val-full"]
    records = open_source(tmp_path)
    assert records.num_examples("train") == 5 and records.num_examples("val-full") == 3
    other_classes = tmp_path / "other"
    shutil.copytree(voc_root, other_classes)
    DatasetSpec(("r", "g", "b"), SPEC.colors).save(other_classes / "pixelwise_dataset.json")
    manifest = prepare_records(other_classes, tmp_path, ("val-full",), examples_per_shard=2)
    assert sorted(manifest["splits"]) == ["val-full"]


def test_rerun_with_other_shard_size_replaces_the_shards(voc_root, tmp_path):
    prepare_records(voc_root, tmp_path, ("val-full",), examples_per_shard=1)
    assert len(list(tmp_path.glob("val-full-*.tfrecord"))) == 3
    prepare_records(voc_root, tmp_path, ("val-full",), examples_per_shard=2)
    assert sorted(path.name for path in tmp_path.glob("val-full-*")) == [
        "val-full-00000-of-00002.tfrecord", "val-full-00001-of-00002.tfrecord"]


@pytest.mark.parametrize("problem, message", [
    ("size", r"train_001.png: annotation is 64x40 but the image is 64x96 \(width x height\)"),
    ("rgb label", r"train_001.png: annotation has mode RGB"),
    ("broken image", r"train_001.jpg: cannot decode the image"),
    ("tiff image", r"train_001.jpg: is a TIFF file; images must be JPEG, PNG, BMP or GIF"),
])
def test_invalid_pairs_are_named(voc_root, tmp_path, problem, message):
    source = tmp_path / "voc"
    shutil.copytree(voc_root, source)
    if problem == "size":
        write_label(source / "SegmentationClass/train_001.png", np.zeros((40, 64), np.uint8))
    elif problem == "rgb label":
        Image.new("RGB", (64, 96)).save(source / "SegmentationClass/train_001.png")
    elif problem == "broken image":
        (source / "JPEGImages/train_001.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    else:
        Image.new("RGB", (64, 96)).save(source / "JPEGImages/train_001.jpg", format="TIFF")
    with pytest.raises(ValueError, match=message):
        prepare_records(source, tmp_path / "records", ("train",))
    assert not (tmp_path / "records" / "manifest.json").exists()


def test_prepare_command_on_the_real_samples(voc_samples, tmp_path):
    result = CliRunner().invoke(cli, ["data", "prepare", str(voc_samples.parent), "--out",
                                      str(tmp_path), "--split", "samples", "--shard-size", "3"])
    assert result.exit_code == 0, result.output
    assert "samples: 4 examples in 2 shard(s)" in result.output
    records = open_source(tmp_path)
    assert records.spec == DatasetSpec.voc()
    assert records.class_pixel_counts("samples").tolist()[:2] == [
        129545 + 143868 + 63851 + 43952, 4734 + 30937]
    decoded = by_name(make_dataset(tmp_path, "samples", batch_size=1, input_size=64,
                                   training=False, eval_resolution="original", input_multiple=1,
                                   with_names=True))
    for name, (image, label_map) in decoded.items():
        assert np.array_equal(label_map, read_label(voc_samples / "SegmentationClass" /
                                                    f"{name}.png"))
        with Image.open(voc_samples / "JPEGImages" / f"{name}.jpg") as original:
            assert np.array_equal(image, np.array(original.convert("RGB"), np.float32))


def test_prepare_command_reports_missing_files(voc_samples, tmp_path):
    result = CliRunner().invoke(cli, ["data", "prepare", str(voc_samples), "--out",
                                      str(tmp_path), "--split", "train"])
    assert result.exit_code == 1
    assert "listed file(s) missing" in result.output
    assert not (tmp_path / "manifest.json").exists()
