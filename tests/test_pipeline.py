import hashlib
import warnings

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from aligned_voc import colors_to_labels, interior, make_aligned_voc
from pixelwise.data.palette import read_label
from pixelwise.data.pipeline import MEAN_RGB, make_dataset, open_source

TRAIN_SIZES = [(96, 128), (128, 96), (80, 112), (120, 72), (64, 100), (100, 64)]
VAL_SIZES = [(90, 120), (70, 50), (113, 87), (40, 130)]


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    return make_aligned_voc(tmp_path_factory.mktemp("aligned"),
                            {"train": TRAIN_SIZES, "val": VAL_SIZES, "same": [(60, 90)] * 3})


def batches(dataset):
    return [tuple(np.asarray(part) for part in batch) for batch in dataset]


def pil_rgb(path):
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))






# --------------------------------------------------------------------------- training


def check_alignment(images, labels, input_values, radius=2):
    """Every non-boundary pixel's colour spells its label and no label value is new.

    Returns (interior pixels checked, pixels whose colour and label disagree, pixels): over
    all pixels, boundaries included, aligned pairs disagree on 0.4-0.7%, a label one pixel
    off its image on 3-4%.
    """
    checked, disagreeing = 0, 0
    for image, label_map in zip(images, labels):
        new_values = set(np.unique(label_map).tolist()) - input_values
        assert not new_values, f"label values {sorted(new_values)} were not in the input"
        inside = interior(label_map, radius)
        decoded = colors_to_labels(image)
        mismatch = inside & (decoded != label_map)
        assert not mismatch.any(), (
            f"{mismatch.sum()} interior pixels disagree, e.g. label {label_map[mismatch][:5]} "
            f"vs colour {image[mismatch][:5]}")
        checked += inside.sum()
        disagreeing += (decoded != label_map).sum()
    return checked, disagreeing, labels.size


@pytest.mark.parametrize("augment", ["textbook", "deeplab", "none"])
def test_training_labels_match_images_after_augmentation(voc_root, augment):
    input_values = set()
    for name in open_source(voc_root).split_names("train"):
        input_values |= set(np.unique(read_label(
            voc_root / "SegmentationClass" / f"{name}.png")).tolist())
    dataset = make_dataset(voc_root, "train", batch_size=3, input_size=(64, 80), training=True,
                           seed=7, augment=augment)
    counts = np.zeros(3, dtype=np.int64)
    ignored = 0
    for _ in range(3):  # three epochs: new crops, flips and jitter each time
        for images, labels in batches(dataset):
            counts += check_alignment(images, labels, input_values)
            ignored += (labels == 255).sum()
    checked, disagreeing, pixels = counts
    assert checked > 0.5 * pixels
    assert disagreeing < 0.015 * pixels, f"{disagreeing / pixels:.1%} of the pixels disagree"
    assert ignored > 0




def test_training_batches_have_static_shapes_dtypes_and_ranges(voc_root):
    dataset = make_dataset(voc_root, "train", batch_size=4, input_size=(48, 72), training=True,
                           augment="deeplab", with_names=True)
    images_spec, labels_spec, names_spec = dataset.element_spec
    assert images_spec.shape.as_list() == [4, 48, 72, 3] and images_spec.dtype == tf.float32
    assert labels_spec.shape.as_list() == [4, 48, 72] and labels_spec.dtype == tf.uint8
    assert names_spec.dtype == tf.string
    (images, labels, names), = batches(dataset)  # 6 examples, remainder dropped
    assert images.min() >= 0 and images.max() <= 255 and images.max() > 200
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 255}
    assert len(set(names.tolist())) == 4
    assert set(names.tolist()) <= {n.encode() for n in open_source(voc_root).split_names("train")}


def test_same_seed_same_batches_new_augmentation_each_epoch(voc_root):
    def build(seed):
        return make_dataset(voc_root, "train", batch_size=2, input_size=48, training=True,
                            seed=seed, with_names=True)

    first, second = build(3), build(3)
    first_epochs = [batches(first) for _ in range(2)]
    second_epochs = [batches(second) for _ in range(2)]
    for one, other in zip(first_epochs, second_epochs):
        for batch_one, batch_other in zip(one, other, strict=True):
            for part_one, part_other in zip(batch_one, batch_other):
                assert np.array_equal(part_one, part_other)
    epoch_one, epoch_two = first_epochs
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(epoch_one, epoch_two))
    other_seed = batches(build(4))
    assert not all(np.array_equal(a[0], b[0]) for a, b in zip(epoch_one, other_seed))


def test_autotune_is_off_unless_asked_and_changes_no_value(voc_root):
    def build(autotune):
        return make_dataset(voc_root, "train", batch_size=2, input_size=48, training=True,
                            seed=5, with_names=True, autotune=autotune)

    default, tuned = make_dataset(voc_root, "val", batch_size=2, input_size=48,
                                  training=False), build(True)
    assert default.options().autotune.enabled is False
    assert tuned.options().autotune.enabled is True
    for batch_off, batch_on in zip(batches(build(False)), batches(tuned), strict=True):
        for part_off, part_on in zip(batch_off, batch_on):
            assert np.array_equal(part_off, part_on)


def test_training_without_augmentation_is_the_evaluation_resize(voc_root):
    settings = dict(batch_size=2, input_size=(40, 56), with_names=True, drop_remainder=False)
    trained = make_dataset(voc_root, "train", training=True, augment="none", **settings)
    evaluated = make_dataset(voc_root, "train", training=False, **settings)
    by_name = {}
    for images, labels, names in batches(evaluated):
        by_name.update({name: (image, label) for image, label, name in zip(images, labels, names)})
    seen = set()
    for images, labels, names in batches(trained):
        for image, label_map, name in zip(images, labels, names):
            assert np.array_equal(image, by_name[name][0])
            assert np.array_equal(label_map, by_name[name][1])
            seen.add(name)
    assert len(seen) == len(TRAIN_SIZES)




@pytest.mark.parametrize("cache", ["memory", "file"])
def test_cached_training_is_deterministic_and_aligned(voc_root, tmp_path, cache):
    cache_arg = "memory" if cache == "memory" else tmp_path / "decoded"

    def build():
        return make_dataset(voc_root, "train", batch_size=3, input_size=56, training=True,
                            seed=1, cache=cache_arg, augment="deeplab")

    first, second = build(), build()
    counts = np.zeros(3, dtype=np.int64)
    for _ in range(2):  # the second pass reads the cache
        one, other = batches(first), batches(second)
        for (images, labels), (other_images, other_labels) in zip(one, other, strict=True):
            assert np.array_equal(images, other_images) and np.array_equal(labels, other_labels)
            counts += check_alignment(images, labels, {0, 1, 2, 255})
    assert counts[1] < 0.015 * counts[2]
    if cache == "file":
        assert list(tmp_path.glob("decoded-train-*.index"))


# --------------------------------------------------------------------------- evaluation


def test_resized_evaluation_is_the_plain_resize_in_list_order(voc_root):
    dataset = make_dataset(voc_root, "val-full", batch_size=3, input_size=(40, 56),
                           training=False, with_names=True)
    names = [name for *_, batch_names in batches(dataset) for name in batch_names]
    assert [name.decode() for name in names] == open_source(voc_root).split_names("val-full")
    images, labels, names = batches(dataset)[0]
    assert images.shape == (3, 40, 56, 3) and labels.shape == (3, 40, 56)
    for image, label_map, name in zip(images, labels, names):
        stem = name.decode()
        original = read_label(voc_root / "SegmentationClass" / f"{stem}.png")
        expected = tf.image.resize(original[..., None], (40, 56), method="nearest")[..., 0]
        assert np.array_equal(label_map, expected.numpy())
        pixels = pil_rgb(voc_root / "JPEGImages" / f"{stem}.jpg").astype(np.float32)
        assert np.allclose(image, tf.image.resize(pixels, (40, 56)).numpy(), atol=1e-3)


def test_original_resolution_evaluation_pads_to_the_stride(voc_root):
    with pytest.warns(UserWarning, match="several sizes.*batches of 1"):
        dataset = make_dataset(voc_root, "val-full", batch_size=2, input_size=64,
                               training=False, eval_resolution="original", input_multiple=16,
                               with_names=True)
    results = batches(dataset)
    assert len(results) == len(VAL_SIZES)
    for images, labels, names in results:
        assert images.shape[0] == 1
        stem = names[0].decode()
        original = read_label(voc_root / "SegmentationClass" / f"{stem}.png")
        height, width = original.shape
        padded = (-(-height // 16) * 16, -(-width // 16) * 16)
        assert labels.shape[1:] == padded and images.shape[1:] == padded + (3,)
        assert np.array_equal(labels[0, :height, :width], original)
        assert (labels[0, height:] == 255).all() and (labels[0, :, width:] == 255).all()
        pixels = pil_rgb(voc_root / "JPEGImages" / f"{stem}.jpg")
        assert np.array_equal(images[0, :height, :width], pixels.astype(np.float32))
        assert np.allclose(images[0, height:], MEAN_RGB) and np.allclose(
            images[0, :, width:], MEAN_RGB)


def test_original_resolution_batches_when_all_sizes_pad_alike(voc_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = make_dataset(voc_root, "same", batch_size=2, input_size=64, training=False,
                               eval_resolution="original", input_multiple=8,
                               drop_remainder=True)
    assert dataset.element_spec[0].shape.as_list() == [2, 64, 96, 3]
    (images, labels), = batches(dataset)
    assert (labels[:, 60:] == 255).all() and (labels[:, :, 90:] == 255).all()


@pytest.mark.parametrize("eval_resolution", ["resized", "original"])
def test_cached_evaluation_equals_uncached(voc_root, tmp_path, eval_resolution):
    settings = dict(batch_size=1, input_size=48, training=False, eval_resolution=eval_resolution)
    plain = batches(make_dataset(voc_root, "val", **settings))
    cached = make_dataset(voc_root, "val", cache=tmp_path / "eval", **settings)
    for _ in range(2):
        for (images, labels), (cached_images, cached_labels) in zip(plain, batches(cached),
                                                                    strict=True):
            assert np.array_equal(images, cached_images)
            assert np.array_equal(labels, cached_labels)


# --------------------------------------------------------------------------- errors




@pytest.mark.parametrize("arguments, message", [
    (dict(augment="mixup"), "augment must be one of"),
    (dict(eval_resolution="full"), "eval_resolution must be one of"),
    (dict(input_size=(0, 64)), "input_size must be positive"),
    (dict(input_size="big"), "input_size must be an int"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
])
def test_bad_arguments_are_refused(voc_root, arguments, message):
    settings = dict(batch_size=2, input_size=32, training=True) | arguments
    with pytest.raises(ValueError, match=message):
        make_dataset(voc_root, "train", **settings)


def test_cache_folder_must_exist(voc_root, tmp_path):
    with pytest.raises(ValueError, match="does not exist; create it or pass cache='memory'"):
        make_dataset(voc_root, "train", batch_size=2, input_size=32, training=True,
                     cache=tmp_path / "missing" / "cache")


# --------------------------------------------------------------------------- recorded outputs


def fingerprint(images, labels):
    """(label bytes' digest, image moments): the mean, and the means weighted by row, by
    column and by channel, so a moved crop, a flip or a colour change shows."""
    height, width = labels.shape[1:]
    rows = np.linspace(0, 1, height)[None, :, None, None]
    columns = np.linspace(0, 1, width)[None, None, :, None]
    channels = np.array([1.0, 2.0, 3.0])
    images = images.astype(np.float64)
    moments = [images.mean(), (images * rows).mean(), (images * columns).mean(),
               (images * channels).mean()]
    return hashlib.sha256(labels.tobytes()).hexdigest()[:16], moments


# Recorded from the pipeline before it was split into sources, decoding, transforms and
# assembly (two epochs of two batches each): the split must not change one draw.
RECORDED_TRAINING_OUTPUTS = {
    ("textbook", None): [("8a0eb32bbfd966b8", [122.686, 62.203, 63.606, 246.472]),
                         ("70b1640be4f128f4", [104.023, 51.388, 52.214, 219.657]),
                         ("951dd08c804b0e3e", [111.908, 55.519, 57.383, 231.99]),
                         ("ea5ecd25a76ea549", [113.607, 57.336, 55.901, 217.052])],
    ("deeplab", None): [("b66df9c1fdb9937f", [138.563, 68.635, 68.564, 278.419]),
                        ("04942a88986c10d7", [111.147, 54.72, 56.012, 244.612]),
                        ("3d8bfa97f60c2b56", [120.699, 61.311, 62.534, 252.956]),
                        ("be0f91b0b44522a2", [119.455, 59.362, 57.804, 253.984])],
    ("none", None): [("a6a50c07b0897a24", [91.54, 46.193, 46.042, 165.771]),
                     ("2a4cdeeffe114650", [94.01, 46.251, 46.83, 188.208]),
                     ("2a4cdeeffe114650", [94.01, 46.251, 46.83, 188.208]),
                     ("eae57193234cdb42", [91.54, 46.193, 46.042, 165.771])],
}
# Decoded examples cached in memory: the same order and draws as without the cache.
RECORDED_TRAINING_OUTPUTS[("deeplab", "memory")] = RECORDED_TRAINING_OUTPUTS[("deeplab", None)]


@pytest.fixture(scope="module")
def recorded_voc_root(tmp_path_factory):
    return make_aligned_voc(tmp_path_factory.mktemp("recorded"), {"train": TRAIN_SIZES})


@pytest.mark.parametrize("augment, cache", list(RECORDED_TRAINING_OUTPUTS))
def test_training_outputs_equal_the_recorded_ones(recorded_voc_root, augment, cache):
    # Recorded in a fresh process: no global seed (another test may have set one; tf.data
    # combines it with the dataset's own seed).
    tf.random.set_seed(None)
    dataset = make_dataset(recorded_voc_root, "train", batch_size=3, input_size=(40, 56),
                           training=True, seed=11, augment=augment, cache=cache)
    outputs = [fingerprint(images, labels) for _ in range(2) for images, labels in
               batches(dataset)]
    recorded = RECORDED_TRAINING_OUTPUTS[(augment, cache)]
    assert [digest for digest, _ in outputs] == [digest for digest, _ in recorded]
    assert np.allclose([moments for _, moments in outputs],
                       [moments for _, moments in recorded], atol=2e-3)
