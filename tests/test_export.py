"""Export: the SavedModel signature, TFLite float32 / float16 / int8, the agreement check,
and `pixelwise export` on a run folder (the segmenters that read exports back on images of
other sizes: test_inference.py).

Two models, each built (or trained) once per module: DeepLab v3 with a narrow MobileNetV2
(alpha 0.35, 16 ASPP channels) at 64 px, the toy target's architecture with its atrous
layers; and a tiny three-layer network trained for a few seconds on coloured blobs
(background, red discs, blue boxes), so the int8 check against float32 mean IoU compares
a model that has learnt something (it reaches ~90% mean IoU).
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from blobs import (
    BLOB_SPEC,
    SIZE,
    blob_example,
    blob_examples,
    class_iou,
    keras_argmax,
    tiny_network,
    trained_blob_model,
    write_blob_run,
)
from pixelwise.data.spec import DatasetSpec
from pixelwise.export import (
    CheckThresholds,
    ExportCheckError,
    check_export,
    depthwise_layers,
    export_saved_model,
    export_tflite,
    float32_model,
)
from pixelwise.inference import (
    KerasSegmenter,
    SavedModelSegmenter,
    TFLiteSegmenter,
    read_saved_model_spec,
    read_tflite_metadata,
    read_tflite_spec,
)
from pixelwise.models import build_model

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

# --------------------------------------------------------------------------- data, models


@pytest.fixture(scope="module")
def blob_model() -> keras.Model:
    return trained_blob_model()


@pytest.fixture(scope="module")
def deeplab() -> keras.Model:
    """Random weights, batch-norm statistics of one batch: logits of order 1 and every
    class predicted somewhere (fresh statistics give logits of ~1e-10, all ties)."""
    keras.utils.set_random_seed(0)
    model = build_model("deeplabv3", num_classes=BLOB_SPEC.num_classes, backbone="mobilenetv2",
                        width_multiplier=0.35, aspp_filters=16)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(np.random.default_rng(0).uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32"),
          training=True)
    return model


@pytest.fixture(scope="module")
def exports(tmp_path_factory, blob_model, deeplab):
    """The .tflite exports every test below reads: made once."""
    folder = tmp_path_factory.mktemp("exports")
    calibration = [image for image, _ in blob_examples(16, seed=2)]
    return {
        "deeplab_float32": export_tflite(deeplab, BLOB_SPEC, folder / "deeplab.tflite",
                                         input_size=(SIZE, SIZE)),
        "deeplab_int8": export_tflite(deeplab, BLOB_SPEC, folder / "deeplab_int8.tflite",
                                      input_size=(SIZE, SIZE), quantize="int8",
                                      calibration_images=calibration[:2]),
        "blob_float32": export_tflite(blob_model, BLOB_SPEC, folder / "blob.tflite",
                                      input_size=(SIZE, SIZE), input_multiple=4),
        "blob_float16": export_tflite(blob_model, BLOB_SPEC, folder / "blob_fp16.tflite",
                                      input_size=(SIZE, SIZE), quantize="float16",
                                      input_multiple=4),
        "blob_int8": export_tflite(blob_model, BLOB_SPEC, folder / "blob_int8.tflite",
                                   input_size=(SIZE, SIZE), quantize="int8", input_multiple=4,
                                   calibration_images=calibration),
    }


def operators(path) -> list[dict]:
    """Each operator of a .tflite file in order: its name and its tensors' types, read from
    the flatbuffer (an interpreter would show its delegate's nodes instead)."""
    from ai_edge_litert import schema_py_generated as schema

    op_names = {value: name for name, value in vars(schema.BuiltinOperator).items()
                if not name.startswith("_")}
    type_names = {value: name.lower() for name, value in vars(schema.TensorType).items()
                  if not name.startswith("_")}
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    found = []
    for index in range(graph.OperatorsLength()):
        operator = graph.Operators(index)
        code = model.OperatorCodes(operator.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())

        def types(indices):
            return [type_names[graph.Tensors(int(i)).Type()] for i in indices if i >= 0]

        found.append({"name": op_names[builtin], "inputs": types(operator.InputsAsNumpy()),
                      "outputs": types(operator.OutputsAsNumpy())})
    return found


# --------------------------------------------------------------------------- SavedModel


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, blob_model):
    return export_saved_model(blob_model, BLOB_SPEC, tmp_path_factory.mktemp("sm") / "saved_model",
                              input_multiple=4, include_probabilities=True)


def test_saved_model_serves_uint8_batches_of_any_size(saved_model, blob_model):
    served = SavedModelSegmenter(saved_model)
    rng = np.random.default_rng(3)
    batches = [np.stack([image for image, _ in blob_examples(2, seed=3)]),
               rng.integers(0, 256, (1, 50, 70, 3), dtype=np.uint8)]  # padded to 52x72 inside
    for images in batches:
        outputs = served.outputs(images)
        assert outputs["class_map"].dtype == np.int32
        assert outputs["class_map"].shape == images.shape[:3]
        np.testing.assert_array_equal(outputs["class_map"],
                                      keras_argmax(blob_model, images, multiple=4))
        probabilities = outputs["probabilities"]
        assert probabilities.shape == (*images.shape[:3], BLOB_SPEC.num_classes)
        np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(np.argmax(probabilities, -1), outputs["class_map"])
    assert len(np.unique(served.outputs(batches[0])["class_map"])) == 3
    assert served.predict(batches[1][0]).shape == (50, 70)


def test_saved_model_carries_the_classes_and_colours(saved_model, blob_model):
    assert read_saved_model_spec(saved_model) == BLOB_SPEC
    loaded = tf.saved_model.load(str(saved_model))
    constants = loaded.signatures["metadata"]()
    assert [name.decode() for name in constants["class_names"].numpy()] == list(
        BLOB_SPEC.class_names)
    np.testing.assert_array_equal(constants["colors"].numpy(), np.asarray(BLOB_SPEC.colors))
    assert int(constants["ignore_label"].numpy()) == 255
    served = SavedModelSegmenter(saved_model)
    assert served.spec == BLOB_SPEC
    assert served.export_info["outputs"] == ["class_map", "probabilities"]
    assert served.export_info["input_multiple"] == 4
    with pytest.raises(FileExistsError, match="overwrite"):
        export_saved_model(blob_model, BLOB_SPEC, saved_model)


def test_xla_export_of_a_depthwise_model_warns_that_cpus_run_it_slower(tmp_path, deeplab,
                                                                       blob_model):
    assert not depthwise_layers(blob_model)
    assert len(depthwise_layers(deeplab)) == 17  # MobileNetV2: one per inverted residual block
    with pytest.warns(UserWarning, match=r"XLA on a CPU runs its 17 depthwise convolutions"):
        path = export_saved_model(deeplab, BLOB_SPEC, tmp_path / "xla", jit_compile=True)
    image = np.random.default_rng(3).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    served = SavedModelSegmenter(path).predict(image)  # XLA may round near-ties otherwise
    assert np.mean(served == keras_argmax(deeplab, image[None])[0]) > 0.99


# --------------------------------------------------------------------------- TFLite


def test_tflite_float32_takes_uint8_and_returns_the_int32_argmax(exports, deeplab):
    path = exports["deeplab_float32"]
    segmenter = TFLiteSegmenter(path, num_threads=1)
    detail_in = segmenter.interpreter.get_input_details()[0]
    detail_out = segmenter.interpreter.get_output_details()[0]
    assert detail_in["dtype"] == np.uint8 and list(detail_in["shape"]) == [1, SIZE, SIZE, 3]
    assert detail_out["dtype"] == np.int32 and list(detail_out["shape"]) == [1, SIZE, SIZE]
    names = [op["name"] for op in operators(path)]
    assert names[-1] == "ARG_MAX" and "SPACE_TO_BATCH_ND" not in names
    images = np.random.default_rng(4).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    expected = keras_argmax(deeplab, images)
    for image, keras_map in zip(images, expected):
        assert np.mean(segmenter.predict(image) == keras_map) >= 0.999
    assert read_tflite_spec(path) == BLOB_SPEC
    assert segmenter.spec == BLOB_SPEC
    info = json.loads(read_tflite_metadata(path)["pixelwise_export"])
    assert info["input_size"] == [SIZE, SIZE] and info["quantize"] == "float32"
    assert segmenter.quantize is None


def test_tflite_int8_is_full_integer_with_uint8_in_and_int32_out(exports):
    for key in ("deeplab_int8", "blob_int8"):
        segmenter = TFLiteSegmenter(exports[key])
        assert segmenter.interpreter.get_input_details()[0]["dtype"] == np.uint8
        assert segmenter.interpreter.get_output_details()[0]["dtype"] == np.int32
        assert segmenter.quantize == "int8"
        ops = operators(exports[key])
        assert ops[-1]["name"] == "ARG_MAX" and ops[-1]["inputs"][0] == "int8"
        assert ops[-1]["outputs"] == ["int32"]
        # The only float tensor: the input cast to float32, quantised at once.
        float_ops = [op["name"] for op in ops if "float32" in op["inputs"] + op["outputs"]]
        assert float_ops == ["CAST", "QUANTIZE"], float_ops
        convolutions = [op for op in ops if op["name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
        assert convolutions and all(op["inputs"][:2] == ["int8", "int8"]
                                    for op in convolutions)
    assert (exports["deeplab_int8"].stat().st_size
            < 0.5 * exports["deeplab_float32"].stat().st_size)


def test_tflite_float16_stores_half_precision_weights(exports):
    ops = operators(exports["blob_float16"])
    dequantized = [op for op in ops if op["name"] == "DEQUANTIZE"]
    assert len(dequantized) >= 3  # at least the three conv kernels
    assert all(op["inputs"] == ["float16"] and op["outputs"] == ["float32"] for op in dequantized)
    convolutions = [op for op in ops if op["name"] == "CONV_2D"]
    assert len(convolutions) == 3 and all(op["inputs"][0] == "float32" for op in convolutions)
    assert not [op for op in operators(exports["blob_float32"]) if op["name"] == "DEQUANTIZE"]
    assert TFLiteSegmenter(exports["blob_float16"]).quantize == "float16"


# --------------------------------------------------------------------------- the check


def test_check_computes_agreement_and_mean_ious_of_both(exports, blob_model):
    examples = blob_examples(6, seed=5)
    segmenter = TFLiteSegmenter(exports["blob_int8"])
    report = check_export(blob_model, BLOB_SPEC, segmenter, examples, quantize="int8",
                          input_multiple=4)
    images = np.stack([image for image, _ in examples])
    labels = np.stack([label for _, label in examples])
    keras_maps = keras_argmax(blob_model, images, multiple=4)
    export_maps = np.stack([segmenter.predict(image) for image in images])
    assert report.num_images == 6 and report.num_pixels == labels.size
    assert report.pixel_agreement == pytest.approx(np.mean(keras_maps == export_maps))
    assert report.keras_mean_iou == pytest.approx(class_iou(labels, keras_maps, 3))
    assert report.export_mean_iou == pytest.approx(class_iou(labels, export_maps, 3))
    assert report.keras_mean_iou > 0.8  # the model has learnt the blobs
    assert report.passed and report.mean_iou_drop <= 0.01
    assert report.pixel_agreement > 0.97
    saved = report.to_dict()
    assert saved["passed"] and saved["quantize"] == "int8"
    assert json.loads(json.dumps(saved))["keras_mean_iou"] == pytest.approx(report.keras_mean_iou)


def test_float_exports_agree_with_keras_on_the_check(exports, blob_model):
    examples = blob_examples(4, seed=6)
    for key, quantize in (("blob_float32", None), ("blob_float16", "float16")):
        report = check_export(blob_model, BLOB_SPEC, TFLiteSegmenter(exports[key]), examples,
                              quantize=quantize, input_multiple=4, jit_compile=True)
        assert report.passed and report.pixel_agreement >= 0.995
        assert report.thresholds.min_pixel_agreement == 0.995
        assert "PASSED" in "\n".join(report.lines())


def test_check_fails_loudly_when_short(exports, blob_model):
    examples = blob_examples(3, seed=7)
    segmenter = TFLiteSegmenter(exports["blob_float32"])
    with pytest.raises(ExportCheckError, match=r"pixel agreement 100\.000% is below 101\.00%") as caught:
        check_export(blob_model, BLOB_SPEC, segmenter, examples, input_multiple=4,
                     thresholds=CheckThresholds(min_pixel_agreement=1.01))
    assert not caught.value.report.passed
    keras.utils.set_random_seed(9)
    other = tiny_network(BLOB_SPEC.num_classes)  # untrained: another model altogether
    with pytest.raises(ExportCheckError, match="FAILED"):
        check_export(other, BLOB_SPEC, segmenter, examples, input_multiple=4)
    with pytest.raises(ExportCheckError, match="points below the Keras model"):
        check_export(blob_model, BLOB_SPEC, TFLiteSegmenter(exports["deeplab_int8"]), examples,
                     quantize="int8", input_multiple=4)
    report = check_export(other, BLOB_SPEC, segmenter, examples, input_multiple=4,
                          raise_on_failure=False)
    assert not report.passed and report.failures


# --------------------------------------------------------------------------- refusals


def test_a_size_off_the_stride_exports_padded_inside_the_graph(tmp_path, deeplab):
    """A camera's native size (CamVid's 360 x 480 at stride 16) exports as it is: the
    graph pads to the stride with the mean colour and crops back, as predict does."""
    path = export_tflite(deeplab, BLOB_SPEC, tmp_path / "m.tflite", input_size=(60, 100))
    segmenter = TFLiteSegmenter(path)
    assert segmenter.input_size == (60, 100)
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, size=(60, 100, 3), dtype=np.uint8)
    expected = KerasSegmenter(deeplab, BLOB_SPEC, input_multiple=16).predict(image)
    assert np.mean(segmenter.predict(image) == expected) >= 0.995


def test_bad_requests_are_refused_with_the_fix(tmp_path, blob_model, deeplab):
    with pytest.raises(ValueError, match="calibration_images"):
        export_tflite(blob_model, BLOB_SPEC, tmp_path / "m.tflite", input_size=(SIZE, SIZE),
                      quantize="int8", input_multiple=4)
    with pytest.raises(ValueError, match="predicts 3 classes but .* lists 21"):
        export_tflite(blob_model, DatasetSpec.voc(), tmp_path / "m.tflite",
                      input_size=(SIZE, SIZE), input_multiple=4)
    with pytest.raises(ValueError, match="quantize must be"):
        export_tflite(blob_model, BLOB_SPEC, tmp_path / "m.tflite", input_size=(SIZE, SIZE),
                      quantize="int4", input_multiple=4)
    not_tflite = tmp_path / "notes.tflite"
    not_tflite.write_bytes(b"hello, not a flatbuffer")
    with pytest.raises(ValueError, match="notes.tflite: not a TFLite model"):
        TFLiteSegmenter(not_tflite)
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        TFLiteSegmenter(tmp_path / "missing.tflite")


def test_mixed_precision_models_export_in_float32(blob_model):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = tiny_network(BLOB_SPEC.num_classes)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    mixed.set_weights(blob_model.get_weights())
    copy = float32_model(mixed)
    assert copy is not mixed
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    images = np.stack([image for image, _ in blob_examples(2, seed=10)]).astype("float32")
    np.testing.assert_allclose(np.asarray(copy(images)), np.asarray(blob_model(images)),
                               rtol=1e-5, atol=1e-4)
    assert float32_model(blob_model) is blob_model


def test_tflite_can_also_output_probabilities_and_the_drivable_probability(tmp_path,
                                                                         blob_model):
    path = export_tflite(blob_model, BLOB_SPEC, tmp_path / "planner.tflite",
                         input_size=(SIZE, SIZE), input_multiple=4, include_probabilities=True,
                         drivable_classes=[0, 2])
    segmenter = TFLiteSegmenter(path)
    assert segmenter.export_info["outputs"] == ["class_map", "probabilities", "drivable"]
    assert segmenter.drivable_classes == (0, 2)
    image = blob_example(np.random.default_rng(14))[0]
    probabilities = segmenter.probabilities(image)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    result = segmenter.segment(image, drivable=[0, 2])  # the file's own drivable output
    np.testing.assert_allclose(result.drivable, probabilities[..., [0, 2]].sum(-1), atol=1e-5)
    np.testing.assert_array_equal(result.class_map, segmenter.predict(image))
    assert np.mean(result.class_map == np.argmax(probabilities, -1)) > 0.999
    other = segmenter.segment(image, drivable=[1])  # other classes: summed from probabilities
    np.testing.assert_allclose(other.drivable, probabilities[..., 1], atol=1e-6)
    with pytest.raises(ValueError, match="class indices of 0..2"):
        export_tflite(blob_model, BLOB_SPEC, tmp_path / "bad.tflite", input_size=(SIZE, SIZE),
                      input_multiple=4, drivable_classes=[3])


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def blob_run(tmp_path_factory, blob_model):
    return write_blob_run(tmp_path_factory.mktemp("run"), blob_model)


def test_cli_exports_a_run_and_checks_it(blob_run):
    from pixelwise.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["export", str(blob_run), "--format", "tflite", "--quantize",
                                 "int8", "--calibration-images", "8"])
    assert result.exit_code == 0, result.output
    path = blob_run / "export" / "model_int8.tflite"
    assert "calibrating int8 on 8 image(s) of split 'train'" in result.output
    assert "pixels with the same class" in result.output and "PASSED" in result.output
    report = json.loads((blob_run / "export" / "model_int8_check.json").read_text())
    assert report["num_images"] == 6  # the test half of val.txt's 12
    assert report["passed"] and report["mean_iou_drop"] <= 0.01
    assert report["keras_mean_iou"] > 0.8  # a model that learnt something
    segmenter = TFLiteSegmenter(path)
    assert segmenter.spec == BLOB_SPEC and segmenter.input_size == (SIZE, SIZE)

    result = runner.invoke(cli, ["export", str(blob_run), "--format", "saved_model",
                                 "--out", str(blob_run / "served"), "--check-images", "2"])
    assert result.exit_code == 0, result.output
    assert SavedModelSegmenter(blob_run / "served").spec == BLOB_SPEC
    assert json.loads((blob_run / "served_check.json").read_text())["pixel_agreement"] >= 0.995

    result = runner.invoke(cli, ["export", str(blob_run), "--format", "saved_model",
                                 "--quantize", "int8"])
    assert result.exit_code != 0 and "quantize applies to TFLite" in result.output
    result = runner.invoke(cli, ["export", str(blob_run), "--format", "tflite",
                                 "--input-size", "50x", "--no-check"])
    assert result.exit_code == 2 and "expected S or HxW" in result.output
    result = runner.invoke(cli, ["export", str(blob_run), "--format", "tflite",
                                 "--drivable", "road", "--no-check"])
    assert result.exit_code != 0 and "drivable class 'road' is not a class" in result.output
    result = runner.invoke(cli, ["export", str(blob_run), "--format", "tflite", "--no-check",
                                 "--drivable", "background,blue box", "--out",
                                 str(blob_run / "planner.tflite")])
    assert result.exit_code == 0, result.output
    assert TFLiteSegmenter(blob_run / "planner.tflite").drivable_classes == (0, 2)


def test_cli_predicts_with_a_tflite_model(tmp_path, exports):
    from pixelwise.cli import cli
    from pixelwise.data.palette import read_label

    images = tmp_path / "images"
    images.mkdir()
    examples = {"square": blob_example(np.random.default_rng(12)),
                "wide": blob_example(np.random.default_rng(13), 48, 120)}
    for name, (image, _) in examples.items():
        Image.fromarray(image).save(images / f"{name}.png")
    result = CliRunner().invoke(cli, ["predict", str(exports["blob_int8"]), str(images),
                                      "--out", str(tmp_path / "out"), "--fit", "letterbox",
                                      "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 file(s) for 2 image(s)" in result.output and "letterbox" in result.output
    for name, (image, label_map) in examples.items():
        class_map = read_label(tmp_path / "out" / f"{name}.png")
        assert class_map.shape == image.shape[:2]
        assert class_iou(label_map, class_map, 3) > 0.6, name
        assert (tmp_path / "out" / f"{name}_overlay.png").is_file()
    result = CliRunner().invoke(cli, ["predict", str(images / "wide.png"), str(images)])
    assert result.exit_code != 0 and "give a run folder or a .tflite model" in result.output


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.02])
def test_a_truncated_tflite_is_named_not_a_struct_error(exports, tmp_path, keep):
    """Issue 16: a .tflite cut short raised struct.error from the metadata reader."""
    data = exports["blob_float32"].read_bytes()
    damaged = tmp_path / "cut.tflite"
    damaged.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match=r"cut.tflite: .*(damaged|cannot load|not a TFLite)"):
        TFLiteSegmenter(damaged)
    from pixelwise.cli import cli

    Image.new("RGB", (SIZE, SIZE)).save(tmp_path / "frame.png")
    result = CliRunner().invoke(cli, ["predict", str(damaged), str(tmp_path / "frame.png")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cut.tflite" in result.output


def test_a_run_size_runs_the_network_smaller_inside_the_graph(tmp_path, blob_model):
    """--run-size: the frame goes in and its class map comes out at the input size, the
    network runs at the smaller size in between, as the Keras model fitted by "resize";
    the check compares the two at that size and scores at the input size."""
    path = export_tflite(blob_model, BLOB_SPEC, tmp_path / "small.tflite",
                         input_size=(SIZE, SIZE), input_multiple=4, run_size=(40, 48))
    segmenter = TFLiteSegmenter(path)
    assert segmenter.input_size == (SIZE, SIZE)
    assert json.loads(read_tflite_metadata(path)["pixelwise_export"])["run_size"] == [40, 48]
    examples = blob_examples(4, seed=8)
    image = examples[0][0]
    exported = segmenter.predict(image)
    assert exported.shape == image.shape[:2]
    at_run_size = KerasSegmenter(blob_model, BLOB_SPEC, input_multiple=4, fit_mode="resize",
                                 input_size=(40, 48)).predict(image)
    assert np.mean(exported == at_run_size) >= 0.98
    # Not the model at the full size: the run size is what ran.
    full_size = KerasSegmenter(blob_model, BLOB_SPEC, input_multiple=4).predict(image)
    assert not np.array_equal(at_run_size, full_size)
    report = check_export(blob_model, BLOB_SPEC, segmenter, examples, input_multiple=4,
                          run_size=(40, 48), raise_on_failure=False)
    assert report.num_pixels == 4 * SIZE * SIZE and report.pixel_agreement >= 0.98
