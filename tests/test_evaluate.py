"""Evaluation, prediction and pictures, on models whose answers are known in advance."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from pixelwise.data.palette import read_label
from pixelwise.data.spec import DatasetSpec
from pixelwise.evaluate import (
    Evaluation,
    HardestImages,
    class_baseline,
    collapse_warning,
    evaluate_model,
    write_evaluation,
)
from pixelwise.inference import KerasSegmenter, predict_probabilities
from pixelwise.losses import build_loss, per_image_loss
from pixelwise.metrics import mean_iou
from pixelwise.predict import collect_images, overlay, predict_images
from pixelwise.visualize import (
    PredictionRow,
    prediction_grid_figure,
    read_log,
    save_figure,
    training_curves_figure,
)

SPEC = DatasetSpec(("background", "ball", "block"), ((0, 0, 0), (128, 0, 0), (0, 128, 0)))


class LabelEcho:
    """A stand-in model that 'predicts' the class written in the red channel: logits are
    10 x one-hot(red value), so its answers are known pixel by pixel."""

    def __call__(self, images, training=False):
        classes = np.clip(np.round(np.asarray(images)[..., 0]), 0, SPEC.num_classes - 1)
        return 10.0 * np.eye(SPEC.num_classes, dtype=np.float32)[classes.astype(int)]


def batch_of(label_maps, predicted_maps, names):
    images = np.zeros((*np.shape(predicted_maps), 3), np.float32)
    images[..., 0] = predicted_maps
    return images, np.asarray(label_maps, np.uint8), np.asarray(names, dtype=object)


# ---- baselines and the collapse warning ----------------------------------------------------

def test_class_baseline_by_hand():
    # Labels: 60 background, 30 ball, 10 block pixels (rows); predictions do not matter.
    matrix = np.array([[50, 10, 0], [5, 20, 5], [0, 0, 10]])
    majority = class_baseline(matrix, class_names=SPEC.class_names)
    # Background everywhere: its IoU 60/100, 0 for ball and block -> mean 0.2.
    assert majority == {"class": 0, "name": "background", "mean_iou": pytest.approx(0.2),
                        "pixel_accuracy": pytest.approx(0.6)}
    ball = class_baseline(matrix, 1)
    assert ball["mean_iou"] == pytest.approx(0.3 / 3) and ball["pixel_accuracy"] == 0.3


def test_collapse_warning_only_near_the_background_baseline():
    collapsed = np.array([[60, 0, 0], [28, 2, 0], [10, 0, 0]])  # nearly all background
    assert "collapsed to background" in collapse_warning(collapsed)
    good = np.array([[55, 5, 0], [5, 25, 0], [1, 0, 9]])
    assert mean_iou(good) > 0.7 and collapse_warning(good) is None


# ---- evaluate_model ---------------------------------------------------------------------

def test_evaluate_model_counts_every_labelled_pixel_and_ranks_the_hardest():
    label_maps = np.zeros((4, 8, 8), np.uint8)
    label_maps[:, :4] = 1
    label_maps[:, 6:, 6:] = 2
    label_maps[3, 0, :] = 255  # ignored pixels count nowhere
    predicted = label_maps.copy()
    predicted[predicted == 255] = 0
    predicted[1, :2] = 0  # image 1: 16 ball pixels wrong
    predicted[2, 4, :] = 1  # image 2: 8 background pixels wrong
    batches = [batch_of(label_maps[:2], predicted[:2], ["a", "b"]),
               batch_of(label_maps[2:], predicted[2:], ["c", "d"])]
    evaluation = evaluate_model(LabelEcho(), SPEC, batches, split="test", resolution="resized",
                                input_multiple=8, hardest=2)
    expected = np.zeros((3, 3), np.int64)
    for labels, predictions in zip(label_maps, predicted):
        keep = labels != 255
        np.add.at(expected, (labels[keep], predictions[keep]), 1)
    assert np.array_equal(evaluation.matrix, expected)
    assert evaluation.num_images == 4 and evaluation.matrix.sum() == 4 * 64 - 8
    assert [name for name, _ in evaluation.hardest] == ["b", "c"]
    assert evaluation.hardest[0][1] > evaluation.hardest[1][1] > 0
    assert [row.caption.split("\n")[0] for row in evaluation.hardest_rows] == ["b", "c"]
    assert evaluation.warnings == []


def test_hardest_images_rank_by_loss_hardest_first():
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 3, size=(7, 5, 5)).astype(np.uint8)
    labels[3] = 255  # nothing labelled: loss 0
    agreement = np.eye(3, dtype=np.float32)[np.where(labels == 255, 0, labels)]
    # Image i gets logits that agree with its labels by a margin of (i - 3): image 0 is
    # confidently wrong, image 6 confidently right.
    logits = np.stack([agreement[i] * (i - 3) * 2.0 for i in range(7)])
    losses = keras.ops.convert_to_numpy(per_image_loss(build_loss("ce", num_classes=3),
                                                       labels, logits)).tolist()

    def ranked(count):
        worst, built = HardestImages(count), []
        for index, loss in enumerate(losses):
            worst.offer(loss, lambda index=index: built.append(index) or index)
        return worst.worst_first(), built

    hardest, built = ranked(3)
    assert [index for _, index in hardest] == [0, 1, 2]
    assert hardest[0][0] > hardest[1][0] > hardest[2][0]
    assert built == [0, 1, 2]  # the easier images were never drawn
    assert len(ranked(50)[0]) == 7 and ranked(0)[0] == []
    # The easiest come last: image 6, then image 3 with nothing labelled (loss 0).
    assert [index for _, index in ranked(7)[0][-2:]] == [6, 3]
    ties = HardestImages(2)
    for name in "abc":
        ties.offer(1.0, lambda name=name: name)
    assert [name for _, name in ties.worst_first()] == ["a", "b"]  # ties: the earlier first


def test_evaluation_files_hold_the_scores(tmp_path):
    label_maps = np.zeros((2, 8, 8), np.uint8)
    label_maps[:, :3] = 1
    batches = [batch_of(label_maps, np.zeros_like(label_maps), ["x", "y"])]
    evaluation = evaluate_model(LabelEcho(), SPEC, batches, split="test", resolution="original",
                                input_multiple=8, hardest=1)
    assert "collapsed to background" in evaluation.warnings[0]
    written = write_evaluation(evaluation, SPEC, tmp_path / evaluation.name)
    assert [path.name for path in written] == ["metrics.json", "per_class.csv",
                                               "confusion.png", "hardest.png"]
    metrics = json.loads(written[0].read_text())
    assert metrics["mean_iou"] == pytest.approx((80 / 128) / 2)
    assert metrics["pixel_accuracy"] == pytest.approx(80 / 128)
    assert metrics["per_class"][2] == {"class": 2, "name": "block", "iou": None,
                                       "accuracy": None, "label_pixels": 0, "predicted_pixels": 0}
    assert metrics["majority_baseline"]["name"] == "background"
    assert metrics["confusion_matrix"] == [[80, 0, 0], [48, 0, 0], [0, 0, 0]]
    lines = written[1].read_text().splitlines()
    assert lines[0] == "class,name,iou,accuracy,label_pixels,predicted_pixels"
    assert lines[3] == "2,block,,,0,0"
    for picture in written[2:]:
        with Image.open(picture) as image:
            assert image.format == "PNG" and min(image.size) > 100
    assert evaluation.name == "test-original"
    table = evaluation.table()
    assert "mean IoU 31.25%" in table and "WARNING" in table


# ---- multi-scale and flip --------------------------------------------------------------

def pointwise_model(num_classes=3, seed=0):
    """A per-pixel (1x1 conv) Keras model: any input size, mirror-equivariant."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1)(inputs / 255.0))


def test_flip_averaging_of_a_mirror_equivariant_model_changes_nothing():
    model = pointwise_model()
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 24, 3)).astype(np.float32)
    plain = predict_probabilities(model, images, input_multiple=8)
    flipped = predict_probabilities(model, images, input_multiple=8, flip=True)
    np.testing.assert_allclose(plain.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(flipped, plain, atol=1e-6)


def test_multi_scale_averages_probabilities_at_the_input_size():
    model = pointwise_model()
    images = np.zeros((1, 16, 16, 3), np.float32)
    images[:, :, 8:] = 200.0  # two flat halves: resizing changes only the seam
    single = predict_probabilities(model, images, input_multiple=8)
    several = predict_probabilities(model, images, input_multiple=8, scales=(0.5, 1.0, 1.5))
    assert several.shape == single.shape == (1, 16, 16, 3)
    np.testing.assert_allclose(several[:, :, :6], single[:, :, :6], atol=1e-5)
    np.testing.assert_allclose(several[:, :, 10:], single[:, :, 10:], atol=1e-5)


# ---- predict ----------------------------------------------------------------------------

def test_predict_images_of_any_size_writes_class_maps_and_overlays(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    sizes = {"wide": (37, 50), "tall": (64, 33)}
    for name, (height, width) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(
            folder / f"{name}.jpg")
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(folder / "gray.png")
    (folder / "notes.txt").write_text("not an image")
    model = pointwise_model()
    written = predict_images(KerasSegmenter(model, SPEC, input_multiple=16), [folder],
                             tmp_path / "out", progress=False)
    assert sorted(item.label_path.name for item in written) == ["gray.png", "tall.png", "wide.png"]
    sizes["gray"] = (20, 20)
    for item in written:
        label_map = read_label(item.label_path)
        assert label_map.shape == sizes[item.image_path.stem]
        assert label_map.max() < SPEC.num_classes
        with Image.open(item.overlay_path) as image:
            assert image.mode == "RGB" and image.size[::-1] == label_map.shape
            drawn = np.asarray(image)
        # The overlay carries a legend of the classes present at its top left.
        plain = overlay(np.asarray(Image.open(item.image_path).convert("RGB")), label_map, SPEC)
        assert not np.array_equal(drawn[:8, :8], plain[:8, :8])
        assert np.array_equal(drawn[-3:, -3:], plain[-3:, -3:])
        # The class map is the argmax of the model's own logits on the unpadded pixels.
        image = np.asarray(Image.open(item.image_path).convert("RGB"), np.float32)
        expected = np.argmax(np.asarray(model(image[None]))[0], axis=-1)
        assert np.array_equal(label_map, expected)


def test_predict_with_resize_maps_back_to_the_image_size(tmp_path):
    path = tmp_path / "a.jpg"
    Image.fromarray(np.full((30, 45, 3), 90, np.uint8)).save(path)
    segmenter = KerasSegmenter(pointwise_model(), SPEC, input_multiple=16, fit_mode="resize",
                               input_size=(32, 32))
    probabilities = segmenter.probabilities(np.asarray(Image.open(path)))
    assert probabilities.shape == (30, 45, 3)


def test_predict_refuses_missing_paths_and_name_clashes(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.jpg"):
        collect_images([tmp_path / "nowhere.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        collect_images([tmp_path / "empty"])
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / sub / "same.jpg")
    with pytest.raises(ValueError, match="same.png"):
        predict_images(KerasSegmenter(pointwise_model(), SPEC), [tmp_path / "a", tmp_path / "b"],
                       tmp_path / "o", progress=False)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        predict_images(KerasSegmenter(pointwise_model(), SPEC), [broken], tmp_path / "o",
                       progress=False)


def test_overlay_blends_image_and_class_colours():
    image = np.full((2, 2, 3), 200, np.uint8)
    label_map = np.array([[0, 1], [2, 255]], np.uint8)
    blended = overlay(image, label_map, SPEC)
    assert blended[0, 0].tolist() == [100, 100, 100]
    assert blended[0, 1].tolist() == [164, 100, 100]
    assert blended[1, 0].tolist() == [100, 164, 100]
    assert blended[1, 1].tolist() == [212, 212, 196]  # the ignore colour (224, 224, 192)


# ---- pictures -----------------------------------------------------------------------------

def test_grid_and_curves_are_pictures(tmp_path):
    rows = [PredictionRow(np.zeros((16, 16, 3), np.uint8), np.ones((16, 16), np.uint8),
                          np.zeros((16, 16), np.uint8), "one")] * 2
    figure = prediction_grid_figure(rows, SPEC, title="grid")
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["0 background", "1 ball"]  # only the classes present
    path = save_figure(figure, tmp_path / "grid.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
    log = tmp_path / "train_log.csv"
    log.write_text("epoch,learning_rate,loss,mean_iou,val_loss,val_mean_iou\n"
                   "0,0.001,1.5,0.1,1.4,0.12\n1,0.0001,1.1,0.3,1.2,NA\n")
    columns = read_log(log)
    assert columns["val_mean_iou"][0] == 0.12 and np.isnan(columns["val_mean_iou"][1])
    with Image.open(save_figure(training_curves_figure(log), tmp_path / "curves.png")) as image:
        assert image.size[0] > image.size[1]
    log.write_text("epoch,loss\n")
    with pytest.raises(ValueError, match="no finished epoch"):
        read_log(log)


def test_evaluation_name_marks_the_protocol():
    evaluation = Evaluation(split="val", resolution="resized", scales=(0.75, 1.0, 1.25),
                            flip=True, num_images=0, matrix=np.zeros((3, 3), np.int64),
                            class_names=SPEC.class_names)
    assert evaluation.name == "val-resized-ms-flip"
