"""Issue 16, data layer: names kept whole, one-class training sets refused, oversized
images and truncated shards named, and images read in any format the pipeline decodes."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from aligned_voc import make_aligned_voc
from pixelwise.cli import cli
from pixelwise.data.check import ClassCoverageError, check_class_coverage, check_dataset
from pixelwise.data.palette import read_label, write_label
from pixelwise.data.records import RecordsSource, verify_shards
from pixelwise.data.records_writer import prepare_records
from pixelwise.data.rgb_masks import read_rgb_mask
from pixelwise.data.spec import DatasetSpec
from pixelwise.data.voc import find_voc_root, read_list

BINARY = DatasetSpec.from_dict({"class_names": ["background", "object"],
                               "colors": [[0, 0, 0], [255, 255, 255]]})


def write_pair(root, name, image, label_map, image_format="JPEG", suffix=".jpg"):
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "JPEGImages" / f"{name}{suffix}", format=image_format)
    write_label(root / "SegmentationClass" / f"{name}.png", label_map)


def image_of(value, height=16, width=24):
    return np.full((height, width, 3), value, dtype=np.uint8)


def two_class_label(height=16, width=24):
    label_map = np.zeros((height, width), dtype=np.uint8)
    label_map[:, width // 2:] = 1
    return label_map


def write_list(root, names, split="train"):
    (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")


# --- case 4: names with dots or spaces ------------------------------------------------------

def test_list_lines_are_names_kept_whole(tmp_path):
    list_file = tmp_path / "list.txt"
    list_file.write_text(
        "frame.001\nimg.v2\nmy photo 1\n  2007_000032  \n\n"
        "/JPEGImages/a.b.jpg /SegmentationClassAug/a.b.png\n"
        "/SegNet/CamVid/train/0001TP_006690.png /SegNet/CamVid/trainannot/0001TP_006690.png\n"
        "/data/my photo 2.jpg /labels/my photo 2.png\n"
        "/JPEGImages/solo.jpg\n")
    assert read_list(list_file) == ["frame.001", "img.v2", "my photo 1", "2007_000032", "a.b",
                                    "0001TP_006690", "my photo 2", "solo"]


def test_dotted_and_spaced_names_pick_their_own_files(tmp_path):
    names = ["frame.001", "frame.002", "img.v2", "my photo 1"]
    for value, name in enumerate(["frame", *names]):
        write_pair(tmp_path, name, image_of(40 * value), two_class_label())
    write_list(tmp_path, names)
    examples = find_voc_root(tmp_path).examples("train")
    assert [example.image_path.name for example in examples] == [
        "frame.001.jpg", "frame.002.jpg", "img.v2.jpg", "my photo 1.jpg"]
    assert [example.label_path.name for example in examples] == [
        "frame.001.png", "frame.002.png", "img.v2.png", "my photo 1.png"]
    report = check_dataset(tmp_path, "train")
    assert report.ok, report.problems


def test_images_are_found_by_other_suffixes(tmp_path):
    write_pair(tmp_path, "a", image_of(10), two_class_label())
    write_pair(tmp_path, "b", image_of(20), two_class_label(), image_format="PNG", suffix=".png")
    write_list(tmp_path, ["a", "b", "c"])
    layout = find_voc_root(tmp_path)
    examples = layout.examples("train", must_exist=False)
    assert [example.image_path.name for example in examples] == ["a.jpg", "b.png", "c.jpg"]
    with pytest.raises(FileNotFoundError, match="JPEGImages/c.jpg"):
        layout.examples("train")


# --- case 3: one-class training sets (the 0/255 trap) -------------------------------------

@pytest.mark.parametrize("counts, message", [
    ([500, 0], r"'train'.*only class 0 \(background\).*0/255.*store the object as 1"),
    ([0, 0], r"'train'.*no labelled pixels.*store the object as 1"),
])
def test_class_coverage_refuses_one_class(counts, message):
    with pytest.raises(ClassCoverageError, match=message):
        check_class_coverage(np.array(counts), BINARY, "train")
    assert issubclass(ClassCoverageError, ValueError)


def test_class_coverage_passes_two_classes():
    check_class_coverage(np.array([500, 3]), BINARY, "train")
    check_class_coverage(np.array([0, 7, 9]), DatasetSpec.from_dict(
        {"class_names": ["a", "b", "c"], "colors": [[0, 0, 0], [9, 9, 9], [99, 99, 99]]}), "train")


def binary_dataset(root):
    label_map = np.zeros((16, 24), dtype=np.uint8)
    label_map[4:12, 6:18] = 255
    for index in range(3):
        write_pair(root, f"m{index}", image_of(30 * index), label_map)
    (root / "pixelwise_dataset.json").write_text(json.dumps(BINARY.to_dict()))
    write_list(root, ["m0", "m1", "m2"])
    write_list(root, ["m0"], split="val")
    return root


def test_prepare_refuses_a_binary_0_255_training_set(tmp_path):
    source = binary_dataset(tmp_path / "masks")
    out = tmp_path / "records"
    with pytest.raises(ClassCoverageError, match=r"store the object as 1; 255 means ignore"):
        prepare_records(source, out, ("train",))
    assert not (out / "manifest.json").exists()
    assert not list(out.glob("train-*")), "refused shards are removed, so a fix gets rewritten"
    result = CliRunner().invoke(cli, ["data", "prepare", str(source), "--out", str(out)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "store the object as 1" in result.output


# --- rough errors: oversized images, truncated shards --------------------------------------

def huge_jpeg(path, width=20000, height=10000):
    """A small JPEG whose header claims ``width`` x ``height`` (as a decompression bomb does)."""
    Image.fromarray(image_of(90)).save(path, format="JPEG")
    data = bytearray(path.read_bytes())
    start = data.index(b"\xff\xc0")  # SOF0: marker, length(2), precision(1), height(2), width(2)
    data[start + 5:start + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))


def test_an_oversized_image_is_named_with_the_limit(tmp_path):
    for index in range(2):
        write_pair(tmp_path, f"p{index}", image_of(10), two_class_label())
    write_list(tmp_path, ["p0", "p1"])
    huge_jpeg(tmp_path / "JPEGImages/p1.jpg")
    report = check_dataset(tmp_path, "train")
    assert len(report.problems) == 1, report.problems
    assert report.problems == [f"{tmp_path / 'JPEGImages/p1.jpg'}: image of 200,000,000 pixels "
                               f"is above the limit of 178,956,970 pixels (Pillow's "
                               f"decompression-bomb guard); downscale it"]
    with pytest.raises(ValueError, match=r"p1.jpg: image of 200,000,000 pixels .* 178,956,970"):
        prepare_records(tmp_path, tmp_path / "records", ("train",))


def test_an_oversized_annotation_is_named(tmp_path):
    path = tmp_path / "huge.png"
    huge_jpeg(path)  # the label reader refuses it before looking at the format
    with pytest.raises(ValueError, match=r"huge.png: image of 200,000,000 pixels is above"):
        read_label(path)
    with pytest.raises(ValueError, match=r"huge.png: image of 200,000,000 pixels is above"):
        read_rgb_mask(path, BINARY)


@pytest.fixture(scope="module")
def small_records(tmp_path_factory):
    voc = make_aligned_voc(tmp_path_factory.mktemp("voc"),
                           {"train": [(32, 32)] * 5, "val": [(32, 32)] * 2}, seed=3)
    out = tmp_path_factory.mktemp("records")
    prepare_records(voc, out, ("train",), examples_per_shard=2)
    return out


def copy_records(small_records, tmp_path):
    return shutil.copytree(small_records, tmp_path / "records")


def test_complete_shards_verify(small_records):
    verify_shards(small_records, "train")
    RecordsSource.open(small_records)


@pytest.mark.parametrize("cut", [1, 30])
def test_a_truncated_shard_is_named(small_records, tmp_path, cut):
    records = copy_records(small_records, tmp_path)
    shard = records / "train-00001-of-00003.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-cut])
    with pytest.raises(ValueError, match=r"train-00001-of-00003.tfrecord: .*truncated.*"
                                         r"rerun `pixelwise data prepare .* --split train`"):
        RecordsSource.open(records)


def test_a_shard_cut_at_a_record_boundary_is_named(small_records, tmp_path):
    records = copy_records(small_records, tmp_path)
    shard = records / "train-00000-of-00003.tfrecord"
    data = shard.read_bytes()
    first_length = int.from_bytes(data[:8], "little")
    shard.write_bytes(data[:12 + first_length + 4])  # the first of its two records
    with pytest.raises(ValueError, match=r"train-00000-of-00003.tfrecord: holds 1 record\(s\), "
                                         r"the manifest says 2"):
        verify_shards(records, "train")


# --- CamVid readiness: PNG and BMP images ---------------------------------------------------

@pytest.mark.parametrize("image_format", ["PNG", "BMP"])
def test_png_and_bmp_images_are_accepted(tmp_path, image_format):
    write_pair(tmp_path, "a", image_of(50), two_class_label())
    write_pair(tmp_path, "b", image_of(90), two_class_label(), image_format=image_format)
    write_list(tmp_path, ["a", "b"])
    report = check_dataset(tmp_path, "train")
    assert report.ok, report.problems
    manifest = prepare_records(tmp_path, tmp_path / "records", ("train",))
    assert manifest["splits"]["train"]["num_examples"] == 2


def test_formats_the_pipeline_cannot_decode_are_named(tmp_path):
    write_pair(tmp_path, "a", image_of(50), two_class_label(), image_format="TIFF")
    write_list(tmp_path, ["a"])
    report = check_dataset(tmp_path, "train")
    assert report.problems == [f"{tmp_path / 'JPEGImages/a.jpg'}: is a TIFF file; images must "
                               f"be JPEG, PNG, BMP or GIF: re-save it as JPEG or PNG"]
    with pytest.raises(ValueError, match=r"a.jpg: is a TIFF file; images must be JPEG, PNG"):
        prepare_records(tmp_path, tmp_path / "records", ("train",))
