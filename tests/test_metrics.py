import json
import math
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk

from pixelwise.losses import build_loss
from pixelwise.metrics import (
    ConfusionMatrix,
    ConfusionMatrixMetric,
    MeanAccuracy,
    MeanIoU,
    PixelAccuracy,
    confusion_matrix,
    mean_accuracy,
    mean_iou,
    per_class_accuracy,
    per_class_iou,
    pixel_accuracy,
    scores,
)

IGNORE = 255


def random_maps(rng, shape, num_classes, ignored_share=0.25):
    labels = rng.integers(0, num_classes, size=shape).astype(np.uint8)
    labels[rng.random(shape) < ignored_share] = IGNORE
    predictions = rng.integers(0, num_classes, size=shape)
    return labels, predictions


def random_logits(rng, batch, height, width, num_classes, ignored_share=0.25):
    labels = rng.integers(0, num_classes, size=(batch, height, width)).astype(np.uint8)
    labels[rng.random(labels.shape) < ignored_share] = IGNORE
    logits = rng.normal(size=(batch, height, width, num_classes)).astype(np.float32)
    return labels, logits


def keras_metrics(num_classes):
    return [ConfusionMatrixMetric(num_classes), PixelAccuracy(num_classes),
            MeanAccuracy(num_classes), MeanIoU(num_classes)]


def numpy_of(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


# ---------------------------------------------------------------------------------------
# Pure functions


def test_hand_computed_matrix_and_scores():
    # Labels by prediction, classes 0..3:
    #   class 0: 3 right, 1 taken for class 1
    #   class 1: never labelled, predicted once (the pixel above)
    #   class 2: 4 right, 2 taken for class 0
    #   class 3: never labelled, never predicted
    labels = np.array([0, 0, 0, 0, 2, 2, 2, 2, 2, 2, IGNORE, IGNORE])
    predictions = np.array([0, 0, 0, 1, 2, 2, 2, 2, 0, 0, 3, 1])
    matrix = confusion_matrix(labels, predictions, num_classes=4)
    expected = np.array([[3, 1, 0, 0], [0, 0, 0, 0], [2, 0, 4, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.dtype == np.int64
    assert pixel_accuracy(matrix) == pytest.approx(7 / 10)
    # Accuracy: class 0 3/4, class 2 4/6; classes 1 and 3 absent from the labels: NaN and
    # left out of the mean (the textbook's (TP+1)/(n+1) would count them as 1.0 each).
    np.testing.assert_allclose(per_class_accuracy(matrix), [3 / 4, np.nan, 4 / 6, np.nan])
    assert mean_accuracy(matrix) == pytest.approx((3 / 4 + 4 / 6) / 2)
    # IoU: class 0 3 / (4 + 5 - 3) = 1/2; class 1 0 / (0 + 1 - 0) = 0; class 2 4 / (6 + 4 - 4)
    # = 2/3; class 3 has an empty union: NaN, left out.
    np.testing.assert_allclose(per_class_iou(matrix), [1 / 2, 0.0, 2 / 3, np.nan])
    assert mean_iou(matrix) == pytest.approx((1 / 2 + 0 + 2 / 3) / 3)
    result = scores(matrix)
    assert result == json.loads(json.dumps(result))  # plain JSON, no NaN
    assert result["per_class_accuracy"][1] is None and result["per_class_iou"][3] is None
    assert result["labelled_pixels"] == 10
    assert result["mean_iou"] == pytest.approx(7 / 18)


def test_empty_matrix_scores_are_undefined():
    matrix = confusion_matrix(np.full((2, 3), IGNORE), np.zeros((2, 3), int), num_classes=3)
    assert not matrix.any()
    assert math.isnan(pixel_accuracy(matrix)) and math.isnan(mean_iou(matrix))
    assert math.isnan(mean_accuracy(matrix))
    assert scores(matrix)["mean_iou"] is None


@pytest.mark.filterwarnings("ignore:A single label was found")
@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple),
       num_classes=st.integers(1, 6), ignored_share=st.sampled_from([0.0, 0.3, 0.9]),
       seed=st.integers(0, 2**16))
def test_matches_scikit_learn(shape, num_classes, ignored_share, seed):
    rng = np.random.default_rng(seed)
    labels, predictions = random_maps(rng, shape, num_classes, ignored_share)
    matrix = confusion_matrix(labels, predictions, num_classes)
    keep = labels != IGNORE
    if not keep.any():
        assert matrix.shape == (num_classes, num_classes) and not matrix.any()
        assert math.isnan(pixel_accuracy(matrix)) and math.isnan(mean_iou(matrix))
        return
    labels, predictions = labels[keep], predictions[keep]
    classes = list(range(num_classes))
    np.testing.assert_array_equal(matrix, sk.confusion_matrix(labels, predictions, labels=classes))
    assert pixel_accuracy(matrix) == pytest.approx(sk.accuracy_score(labels, predictions))
    # scikit-learn scores an undefined class as 0; here it is NaN and left out of the mean.
    labelled = np.isin(classes, labels)
    iou = sk.jaccard_score(labels, predictions, labels=classes, average=None, zero_division=0)
    iou[~(labelled | np.isin(classes, predictions))] = np.nan
    np.testing.assert_allclose(per_class_iou(matrix), iou)
    assert mean_iou(matrix) == pytest.approx(np.nanmean(iou))
    recall = sk.recall_score(labels, predictions, labels=classes, average=None, zero_division=0)
    recall[~labelled] = np.nan
    np.testing.assert_allclose(per_class_accuracy(matrix), recall)
    assert mean_accuracy(matrix) == pytest.approx(np.nanmean(recall))


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match=r"label value 7 is not a class \(0..2\) or 255"):
        confusion_matrix(np.array([0, 7]), np.array([0, 1]), num_classes=3)
    with pytest.raises(ValueError, match=r"prediction value 3 is not a class \(0..2\)"):
        confusion_matrix(np.array([0, 1]), np.array([0, 3]), num_classes=3)
    with pytest.raises(ValueError, match="pass class maps"):
        confusion_matrix(np.zeros((2, 4, 4)), np.zeros((2, 4, 4, 3)), num_classes=3)
    with pytest.raises(ValueError, match="must be integer class indices"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 2)), num_classes=3)
    with pytest.raises(ValueError, match="square"):
        mean_iou(np.zeros((2, 3)))
    # Labels with a trailing axis of 1 are accepted.
    labels, predictions = random_maps(np.random.default_rng(0), (2, 5, 5), 3)
    np.testing.assert_array_equal(confusion_matrix(labels[..., None], predictions, 3),
                                  confusion_matrix(labels, predictions, 3))


# ---------------------------------------------------------------------------------------
# Accumulation and the Keras metrics


DATASET_LABELS, DATASET_LOGITS = random_logits(np.random.default_rng(1), 8, 12, 10, 5)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_scores_do_not_depend_on_batch_size(batch_size):
    whole = confusion_matrix(DATASET_LABELS, DATASET_LOGITS.argmax(-1), num_classes=5)
    accumulator = ConfusionMatrix(num_classes=5)
    metrics = keras_metrics(5)
    for start in range(0, len(DATASET_LABELS), batch_size):
        labels = DATASET_LABELS[start:start + batch_size]
        logits = DATASET_LOGITS[start:start + batch_size]
        accumulator.update(labels, logits.argmax(-1))
        for metric in metrics:
            metric.update_state(labels, logits)
    np.testing.assert_array_equal(accumulator.matrix, whole)
    np.testing.assert_array_equal(metrics[0].matrix, whole)
    np.testing.assert_array_equal(numpy_of(metrics[0].result()), whole)
    assert accumulator.scores() == scores(whole)
    expected = scores(whole)
    # The Keras results are the float64 formulas cast to float32: equal to the last bit.
    for metric, key in zip(metrics[1:], ["pixel_accuracy", "mean_accuracy", "mean_iou"]):
        assert metric.name == key
        assert numpy_of(metric.result()) == np.float32(expected[key])


def test_keras_metrics_match_numpy_on_random_inputs():
    rng = np.random.default_rng(2)
    for num_classes, ignored_share in [(2, 0.0), (4, 0.5), (21, 0.2), (3, 1.0)]:
        labels, logits = random_logits(rng, 3, 9, 7, num_classes, ignored_share)
        labels[0, 0, :3] = 0  # class 0 present in every case but the last
        if ignored_share == 1.0:
            labels[:] = IGNORE
        expected = scores(confusion_matrix(labels, logits.argmax(-1), num_classes))
        for metric in keras_metrics(num_classes)[1:]:
            metric.update_state(labels, logits)
            value = numpy_of(metric.result())
            if expected[metric.name] is None:
                assert np.isnan(value)
            else:
                assert value == np.float32(expected[metric.name])


def test_ignored_pixels_do_not_change_the_metrics():
    labels, logits = random_logits(np.random.default_rng(3), 2, 8, 8, 4, ignored_share=0.4)
    junk = logits.copy()
    ignored = labels == IGNORE
    junk[ignored] = np.random.default_rng(4).normal(size=(ignored.sum(), 4)) * 1e6
    junk[0][ignored[0]] = np.nan
    reference = ConfusionMatrixMetric(4)
    reference.update_state(labels, logits)
    with np.errstate(over="ignore"):
        junk_float16 = junk.astype(np.float16)  # the 1e6 values become +-inf
    for variant in (junk, junk_float16):
        metric = ConfusionMatrixMetric(4)
        metric.update_state(labels, variant)
        np.testing.assert_array_equal(metric.matrix, reference.matrix)
    assert reference.matrix.sum() == (~ignored).sum()


def test_label_shapes_and_dtypes():
    labels, logits = random_logits(np.random.default_rng(5), 2, 6, 6, 3)
    expected = confusion_matrix(labels, logits.argmax(-1), 3)
    for variant in (labels, labels.astype(np.int32), labels.astype(np.int64), labels[..., None]):
        metric = ConfusionMatrixMetric(3)
        metric.update_state(variant, logits)
        np.testing.assert_array_equal(metric.matrix, expected)


def test_state_is_exact_int64_past_float32_range():
    metric = MeanIoU(num_classes=2)
    assert keras.backend.standardize_dtype(metric.total_matrix.dtype) == "int64"
    metric.total_matrix.assign(np.array([[2**40, 0], [0, 0]], np.int64))
    metric.update_state(np.zeros((1, 1, 1), np.uint8), np.array([[[[1.0, 0.0]]]], np.float32))
    assert metric.matrix[0, 0] == 2**40 + 1  # a float32 count would stay at 2**40
    metric.reset_state()
    assert not metric.matrix.any()


def test_metric_errors_and_config():
    metric = MeanIoU(num_classes=3, ignore_label=200)
    with pytest.raises(ValueError, match="takes no sample_weight"):
        metric.update_state(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 3)), sample_weight=np.ones(1))
    with pytest.raises(ValueError, match="logits have 4 channels but the metric counts 3"):
        metric.update_state(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 4)))
    with pytest.raises(ValueError, match="do not match"):
        metric.update_state(np.zeros((1, 2, 3)), np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match="ignore_label 1 is a class index"):
        PixelAccuracy(num_classes=3, ignore_label=1)
    for cls in (ConfusionMatrixMetric, PixelAccuracy, MeanAccuracy, MeanIoU):
        original = cls(num_classes=3, ignore_label=200)
        config = keras.saving.serialize_keras_object(original)
        restored = keras.saving.deserialize_keras_object(config)
        assert type(restored) is cls and restored.get_config() == original.get_config()
        assert restored.num_classes == 3 and restored.ignore_label == 200


def tiny_model(num_classes):
    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, keras.layers.Conv2D(num_classes, 1, name="logits")(inputs))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_and_evaluate_report_the_dataset_scores(jit_compile, tmp_path):
    rng = np.random.default_rng(6)
    images = rng.normal(size=(6, 8, 8, 3)).astype(np.float32)
    labels = rng.integers(0, 4, size=(6, 8, 8)).astype(np.uint8)
    labels[:, :2] = IGNORE
    model = tiny_model(4)
    model.compile(optimizer="sgd", loss=build_loss("ce", num_classes=4),
                  metrics=[PixelAccuracy(4), MeanAccuracy(4), MeanIoU(4)], jit_compile=jit_compile)
    history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
    assert {"pixel_accuracy", "mean_accuracy", "mean_iou"} <= set(history.history)
    results = model.evaluate(images, labels, batch_size=4, verbose=0, return_dict=True)
    predictions = model.predict(images, batch_size=4, verbose=0).argmax(-1)
    expected = scores(confusion_matrix(labels, predictions, 4))
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou"):
        assert results[key] == pytest.approx(expected[key], rel=1e-6)
    if not jit_compile:
        model.save(tmp_path / "model.keras")
        reloaded = keras.saving.load_model(tmp_path / "model.keras")
        again = reloaded.evaluate(images, labels, batch_size=4, verbose=0, return_dict=True)
        assert again == pytest.approx(results, rel=1e-6)


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from pixelwise.losses import build_loss
    from pixelwise.metrics import ConfusionMatrixMetric, MeanAccuracy, MeanIoU, PixelAccuracy

    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, size=(8, 10, 6)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.3] = 255
    logits = rng.normal(size=(8, 10, 6, 4)).astype(np.float32)

    def custom_loop(strategy):
        with strategy.scope():
            metrics = [ConfusionMatrixMetric(4), PixelAccuracy(4), MeanAccuracy(4), MeanIoU(4)]
        batches = tf.data.Dataset.from_tensor_slices((labels, logits)).batch(4)

        @tf.function
        def step(batch_labels, batch_logits):
            for metric in metrics:
                metric.update_state(batch_labels, batch_logits)

        for batch in strategy.experimental_distribute_dataset(batches):
            strategy.run(step, args=batch)
        return {"matrix": metrics[0].matrix.tolist(),
                "scores": [float(metric.result()) for metric in metrics[1:]]}

    def evaluate(strategy):
        with strategy.scope():
            inputs = keras.Input((10, 6, 4))
            model = keras.Model(inputs, keras.layers.Identity()(inputs))
            model.compile(loss=build_loss("ce", num_classes=4), jit_compile=False,
                          metrics=[PixelAccuracy(4), MeanAccuracy(4), MeanIoU(4)])
        batches = tf.data.Dataset.from_tensor_slices((logits, labels)).batch(4)
        return model.evaluate(batches, verbose=0, return_dict=True)

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync,
                      "single": custom_loop(tf.distribute.get_strategy()),
                      "mirrored": custom_loop(mirrored),
                      "single_evaluate": evaluate(tf.distribute.get_strategy()),
                      "mirrored_evaluate": evaluate(mirrored)}))
""")


def test_mirrored_strategy_sums_the_replicas_into_the_same_matrix():
    completed = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True,
                               text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, size=(8, 10, 6)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.3] = 255
    logits = rng.normal(size=(8, 10, 6, 4)).astype(np.float32)
    expected = confusion_matrix(labels, logits.argmax(-1), 4)
    assert report["single"]["matrix"] == expected.tolist()
    assert report["mirrored"]["matrix"] == expected.tolist()  # both replicas' halves summed
    assert report["mirrored"]["scores"] == report["single"]["scores"]
    expected_scores = scores(expected)
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou"):
        assert report["mirrored_evaluate"][key] == report["single_evaluate"][key]
        assert report["mirrored_evaluate"][key] == pytest.approx(expected_scores[key], rel=1e-6)
