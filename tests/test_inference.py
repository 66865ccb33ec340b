"""Inference: one Segmenter over a run folder, a .keras file, a SavedModel and a .tflite
file, on images of odd sizes; fitting (pad, resize, letterbox), multi-scale + flip
averaging, batches and streams, and the NumPy resizing the exports rely on.

The model is the tiny blob network of ``blobs.py`` (stride 4, trained for a few seconds),
made once per module in each of the four forms.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from blobs import BLOB_SPEC, SIZE, blob_examples, class_iou, trained_blob_model, write_blob_run
from pixelwise.data.pipeline import MEAN_RGB
from pixelwise.export import export_saved_model, export_tflite
from pixelwise.inference import (
    KerasSegmenter,
    Prediction,
    SavedModelSegmenter,
    Segmenter,
    TFLiteSegmenter,
    plan_fitting,
    resize_bilinear,
    resize_nearest,
)

ODD = (70, 90)  # neither a multiple of the stride nor the TFLite input size
RUN_MULTIPLE = 32  # the blob run's config says U-Net: stride 32


@pytest.fixture(scope="module")
def blob_model() -> keras.Model:
    return trained_blob_model()


@pytest.fixture(scope="module")
def forms(tmp_path_factory, blob_model):
    """The blob model as a run folder, a .keras file, a SavedModel and a .tflite file."""
    root = tmp_path_factory.mktemp("forms")
    run = write_blob_run(root, blob_model)
    return {
        "run": run,
        "keras": run / "best.keras",
        "saved_model": export_saved_model(blob_model, BLOB_SPEC, root / "saved_model",
                                          input_multiple=RUN_MULTIPLE,
                                          include_probabilities=True),
        "tflite": export_tflite(blob_model, BLOB_SPEC, root / "blob.tflite",
                                input_size=(SIZE, SIZE), input_multiple=4),
    }


@pytest.fixture(scope="module")
def odd_image():
    (image, label_map), = blob_examples(1, seed=21, height=ODD[0], width=ODD[1])
    return image, label_map


def keras_logits(model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model(images.astype(np.float32), training=False))


# --------------------------------------------------------------------------- the four forms


def test_from_path_opens_every_form(forms):
    expected = {"run": KerasSegmenter, "keras": KerasSegmenter,
                "saved_model": SavedModelSegmenter, "tflite": TFLiteSegmenter}
    for name, path in forms.items():
        segmenter = Segmenter.from_path(path)
        assert type(segmenter) is expected[name], name
        assert segmenter.spec == BLOB_SPEC, name
    assert Segmenter.from_path(forms["run"]).input_multiple == RUN_MULTIPLE
    assert Segmenter.from_path(forms["tflite"]).input_size == (SIZE, SIZE)


def test_shapes_at_an_odd_image_size(forms, odd_image):
    image, _ = odd_image
    for name, path in forms.items():
        segmenter = Segmenter.from_path(path)
        class_map = segmenter.predict(image)
        assert class_map.shape == ODD and class_map.dtype == np.int32, name
        if name == "tflite":
            continue
        probabilities = segmenter.probabilities(image)
        assert probabilities.shape == (*ODD, 3) and probabilities.dtype == np.float32, name
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(np.argmax(probabilities, -1), class_map)


def test_every_form_agrees_with_the_keras_model(forms, odd_image, blob_model):
    image, label_map = odd_image
    # By hand: pad to 96x96 (multiples of 32) with the mean colour, argmax, crop.
    padded = np.empty((1, 96, 96, 3), np.float32)
    padded[:] = MEAN_RGB
    padded[0, :ODD[0], :ODD[1]] = image
    expected = np.argmax(keras_logits(blob_model, padded)[0, :ODD[0], :ODD[1]], -1)
    for name in ("run", "keras", "saved_model"):
        np.testing.assert_array_equal(Segmenter.from_path(forms[name]).predict(image), expected,
                                      err_msg=name)
    # The .tflite runs at 64x64: the same blobs, found as well, not the same pixels.
    tflite_map = Segmenter.from_path(forms["tflite"]).predict(image)
    keras_resized = KerasSegmenter(blob_model, BLOB_SPEC, input_multiple=4, fit_mode="resize",
                                   input_size=(SIZE, SIZE)).predict(image)
    assert np.mean(tflite_map == keras_resized) > 0.97
    assert class_iou(label_map, tflite_map, 3) > 0.6


def test_a_tflite_export_has_no_probabilities(forms, odd_image):
    with pytest.raises(ValueError, match="ends in an argmax"):
        Segmenter.from_path(forms["tflite"]).probabilities(odd_image[0])


def test_a_saved_model_without_probabilities_says_how_to_get_them(tmp_path, blob_model):
    path = export_saved_model(blob_model, BLOB_SPEC, tmp_path / "plain", input_multiple=4)
    with pytest.raises(ValueError, match="--probabilities"):
        Segmenter.from_path(path).probabilities(np.zeros((8, 8, 3), np.uint8))


def test_unknown_paths_are_refused_with_the_forms_it_reads(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.onnx: no such file.*a .tflite file"):
        Segmenter.from_path(tmp_path / "nowhere.onnx")
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(FileNotFoundError, match="not a model pixelwise reads"):
        Segmenter.from_path(tmp_path / "model.onnx")
    (tmp_path / "lone").mkdir()
    keras_file = tmp_path / "lone" / "model.keras"
    keras_file.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="pixelwise_dataset.json: missing; pass spec="):
        Segmenter.from_path(keras_file)


# --------------------------------------------------------------------------- options


def test_batch_and_stream_give_what_single_images_give(forms, blob_model):
    segmenter = KerasSegmenter(blob_model, BLOB_SPEC, input_multiple=4)
    images = np.stack([image for image, _ in blob_examples(3, seed=22, height=ODD[0],
                                                           width=ODD[1])])
    singles = [segmenter.predict(image) for image in images]
    np.testing.assert_array_equal(segmenter.predict_batch(images), np.stack(singles))
    mixed = [images[0], images[1][:40, :50]]
    assert [m.shape for m in segmenter.predict_batch(mixed)] == [ODD, (40, 50)]
    results = list(segmenter.stream(iter(images), probabilities=True))
    assert all(isinstance(result, Prediction) for result in results)
    for result, single in zip(results, singles):
        np.testing.assert_array_equal(result.class_map, single)
        assert result.probabilities.shape == (*ODD, 3)
        assert set(result.timings_ms) == {"decode", "preprocess", "inference", "postprocess"}
    assert set(segmenter.segment(images[0]).timings_ms) == {"preprocess", "inference",
                                                            "postprocess"}
    tflite = Segmenter.from_path(forms["tflite"])
    np.testing.assert_array_equal(tflite.predict_batch(images[:2]),
                                  np.stack([tflite.predict(image) for image in images[:2]]))


def test_the_keras_model_runs_as_one_graph_that_every_image_size_shares(blob_model):
    segmenter = KerasSegmenter(blob_model, BLOB_SPEC, input_multiple=4)
    folded, traces = segmenter._inference_model, []

    def traced_model(images, training=False):  # runs only while a graph is traced
        traces.append(tuple(images.shape))
        return folded(images, training=training)

    segmenter._inference_model = traced_model
    for height, width in [(40, 48), (64, 64), (52, 72), (40, 48), (96, 60)]:
        (image, _), = blob_examples(1, seed=height + width, height=height, width=width)
        canvas = image[None].astype(np.float32)  # multiples of 4: the canvas is the image
        logits = segmenter._forward(canvas)
        np.testing.assert_allclose(logits, keras_logits(blob_model, canvas), atol=1e-4)
    # The first size, then one graph of unknown height and width for all the others.
    assert len(traces) == 2 and traces[1][1:3] == (None, None), traces


def test_drivable_probability_is_the_sum_of_the_chosen_classes(forms, odd_image):
    image, _ = odd_image
    for name in ("run", "saved_model"):
        segmenter = Segmenter.from_path(forms[name])
        result = segmenter.segment(image, drivable=[0, 2])
        probabilities = segmenter.probabilities(image)
        assert result.drivable.shape == ODD and result.drivable.dtype == np.float32, name
        np.testing.assert_allclose(result.drivable, probabilities[..., 0] + probabilities[..., 2],
                                   atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(result.class_map, segmenter.predict(image))
    with pytest.raises(ValueError, match="--probabilities"):
        Segmenter.from_path(forms["tflite"]).segment(image, drivable=[0])


def test_multi_scale_and_flip_equal_a_hand_average(blob_model):
    image = blob_examples(1, seed=23)[0][0]  # 64x64: no padding at stride 4
    segmenter = KerasSegmenter(blob_model, BLOB_SPEC, input_multiple=4, scales=(0.5, 1.0),
                               flip=True)
    pixels = tf.constant(image[None].astype(np.float32))
    total = np.zeros((SIZE, SIZE, 3), np.float32)
    for size in ((32, 32), (64, 64)):
        scaled = tf.image.resize(pixels, size)
        for mirrored in (False, True):
            inputs = tf.reverse(scaled, [2]) if mirrored else scaled
            logits = blob_model(inputs, training=False)
            if mirrored:
                logits = tf.reverse(logits, [2])
            total += tf.nn.softmax(tf.image.resize(logits, (SIZE, SIZE)))[0].numpy()
    np.testing.assert_allclose(segmenter.probabilities(image), total / 4, atol=1e-5)
    np.testing.assert_array_equal(segmenter.predict(image), np.argmax(total, -1))


def test_resize_and_letterbox_map_back_to_the_image_size(blob_model, odd_image):
    image, label_map = odd_image
    for fit_mode in ("resize", "letterbox"):
        segmenter = KerasSegmenter(blob_model, BLOB_SPEC, input_multiple=4, fit_mode=fit_mode,
                                   input_size=(SIZE, SIZE))
        assert segmenter.predict(image).shape == ODD
        assert segmenter.probabilities(image).shape == (*ODD, 3)
        assert class_iou(label_map, segmenter.predict(image), 3) > 0.6, fit_mode
    # Resize by hand: the image to 64x64, the logits back to 70x90 (bilinear), argmax.
    logits = blob_model(tf.image.resize(image[None].astype(np.float32), (SIZE, SIZE)))
    expected = np.argmax(tf.image.resize(logits, ODD)[0].numpy(), -1)
    resized = KerasSegmenter(blob_model, BLOB_SPEC, input_multiple=4, fit_mode="resize",
                             input_size=(SIZE, SIZE))
    np.testing.assert_array_equal(resized.predict(image), expected)
    # Letterbox: 70x90 scaled by 64/90 to 50x64 at the top, the mean colour below.
    assert plan_fitting(ODD, "letterbox", input_size=(SIZE, SIZE)).inner_size == (50, SIZE)


def test_fitting_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="larger than the model's input 64x64"):
        plan_fitting(ODD, "pad", input_size=(SIZE, SIZE))
    with pytest.raises(ValueError, match="fit_mode must be one of pad, resize, letterbox"):
        plan_fitting(ODD, "stretch")
    with pytest.raises(ValueError, match="needs an input_size"):
        KerasSegmenter(keras.Sequential([keras.Input((None, None, 3)),
                                         keras.layers.Conv2D(3, 1)]), BLOB_SPEC,
                       fit_mode="resize")
    assert plan_fitting(ODD, "pad", input_multiple=32).canvas_size == (96, 96)


def test_tflite_pads_small_images_to_its_input(forms):
    (image, label_map), = blob_examples(1, seed=24, height=40, width=60)
    segmenter = TFLiteSegmenter(forms["tflite"], fit_mode="pad")
    canvas = np.empty((SIZE, SIZE, 3), np.uint8)
    canvas[:] = np.round(MEAN_RGB).astype(np.uint8)
    canvas[:40, :60] = image
    np.testing.assert_array_equal(segmenter.predict(image),
                                  segmenter.predict_at_input_size(canvas)[:40, :60])
    assert class_iou(label_map, segmenter.predict(image), 3) > 0.6


# --------------------------------------------------------------------------- exports at other sizes


def test_segmenter_maps_a_non_square_image_back_to_its_size(forms):
    (image, label_map), = blob_examples(1, seed=8, height=45, width=100)
    for fit in ("resize", "letterbox"):
        segmenter = TFLiteSegmenter(forms["tflite"], fit_mode=fit)
        class_map = segmenter.predict(image)
        assert class_map.shape == (45, 100) and class_map.dtype == np.int32
        assert class_iou(label_map, class_map, 3) > 0.6, fit
    letterbox = TFLiteSegmenter(forms["tflite"], fit_mode="letterbox")
    canvas = np.empty((SIZE, SIZE, 3), np.uint8)
    canvas[:] = np.round(MEAN_RGB).astype(np.uint8)
    canvas[:29] = resize_bilinear(image, (29, SIZE))  # 45x100 scaled by 0.64
    np.testing.assert_array_equal(
        letterbox.predict(image),
        resize_nearest(letterbox.predict_at_input_size(canvas)[:29], (45, 100)))


def test_resizing_matches_tensorflow():
    image = np.random.default_rng(9).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for size in ((64, 64), (20, 90)):
        expected = tf.image.resize(image.astype(np.float32), size, method="bilinear").numpy()
        assert np.abs(resize_bilinear(image, size).astype(float) - expected).max() <= 0.51
        labels = image[..., 0]
        np.testing.assert_array_equal(
            resize_nearest(labels, size),
            tf.image.resize(labels[..., None], size, method="nearest").numpy()[..., 0])


def test_large_images_run_scaled_down_to_max_pixels_and_come_back_full_size(blob_model):
    """Issue 16 case 5: a photo far above the bound never reaches the model whole."""
    (image, label_map), = blob_examples(1, seed=5, height=4 * SIZE, width=6 * SIZE)
    seen_shapes = []

    def recording_model(images, training=False):
        seen_shapes.append(tuple(images.shape))
        return blob_model(images, training=training)

    segmenter = KerasSegmenter(blob_model, BLOB_SPEC, input_multiple=4, max_pixels=SIZE * SIZE)
    segmenter._logits = recording_model
    class_map = segmenter.predict(image)
    assert class_map.shape == image.shape[:2]
    (_, height, width, _), = seen_shapes
    assert height * width <= SIZE * SIZE * 1.2  # the bound, up to rounding to the stride
    assert class_iou(label_map, class_map, 3) > 0.6  # still a good map at full size
    # Probabilities come back at full size too.
    assert segmenter.probabilities(image).shape == (*image.shape[:2], 3)
    # Under the bound nothing changes: the image runs at its own size.
    assert plan_fitting((60, 80), "pad", input_multiple=4, max_pixels=60 * 80).inner_size == (60, 80)
    assert plan_fitting((600, 800), "pad", input_multiple=4, max_pixels=None).inner_size == (600, 800)
    with pytest.raises(ValueError, match="max_pixels must be at least 1"):
        KerasSegmenter(blob_model, BLOB_SPEC, max_pixels=0)


def test_predict_names_a_photo_above_the_pixel_limit(tmp_path, monkeypatch):
    from PIL import Image

    from pixelwise.data.images import OversizedImageError
    from pixelwise.predict import read_image

    Image.new("RGB", (200, 100)).save(tmp_path / "huge.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # the limit is twice this
    with pytest.raises(OversizedImageError, match=r"huge.jpg: image of 20,000 pixels is above "
                                                  r"the limit of 10,000 pixels"):
        read_image(tmp_path / "huge.jpg")
