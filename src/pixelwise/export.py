"""Export a trained model for serving (SavedModel) and for small devices (TFLite / LiteRT).

    export_saved_model(model, spec, "export/saved_model", input_multiple=16)
    export_tflite(model, spec, "export/model_int8.tflite", input_size=(256, 256),
                  quantize="int8", calibration_images=training_images)
    segmenter = TFLiteSegmenter("export/model_int8.tflite", num_threads=1)
    class_map = segmenter.predict(image)   # int32 [H, W] for a uint8 RGB image of any size
    report = check_export(model, spec, segmenter, held_out_examples, quantize="int8")

    export_run("runs/voc", export_format="tflite", quantize="int8")  # `pixelwise export`

SavedModel: the signature ``serving_default`` takes ``images``, uint8 RGB [B, H, W, 3] of
any batch size, height and width, and returns ``class_map`` int32 [B, H, W] (and, with
``include_probabilities``, ``probabilities`` float32 [B, H, W, C]). Inside, the batch is
padded at the bottom and right to a multiple of the model's stride with the ImageNet mean
colour and the logits cropped back, as ``pixelwise predict`` does. The classes travel as
constants, not variables: the signature ``metadata`` returns ``class_names`` (string [C]),
``colors`` (uint8 [C, 3]), ``ignore_label``, and ``dataset_spec`` / ``export_info`` (JSON
strings); ``assets/pixelwise_dataset.json`` holds the same description as a file.

TFLite: one fixed input size, batch 1: ``images`` uint8 [1, H, W, 3] in, ``class_map``
int32 [1, H, W] out; the argmax is inside the graph, so a device never handles logits.
``quantize``: None (float32), ``"float16"`` (weights stored in float16, computed in float32)
or ``"int8"`` (full integer: weights and activations int8, calibrated on training images;
the only float op is the cast of the uint8 input before it is quantised). The classes
travel inside the .tflite file: TFLite metadata entries (``Model.metadata``, where the
converter records its own) ``pixelwise_dataset`` (the dataset description JSON) and
``pixelwise_export`` (input size, quantisation, model); see :func:`read_tflite_metadata`.
Nothing beside the file is needed.

The interpreter is LiteRT's (``ai_edge_litert``, what a device installs without
TensorFlow); TensorFlow's deprecated ``tf.lite.Interpreter`` is the fallback where LiteRT is
not installed. Models trained under mixed precision are rebuilt in float32 for export
(:func:`float32_model`).

The check (:func:`check_export`) runs the Keras model and the export on the same held-out
images and compares: the share of pixels given the same class, and each one's mean IoU
against the labels. Float32 and float16 exports must agree on >= 99.5% of the pixels; an
int8 export may lose at most 1 mean-IoU point against the Keras float32 model. Falling
short raises :class:`ExportCheckError`.

XLA: ``jit_compile=True`` compiles the SavedModel's serving function (and the check's
Keras forward pass) with XLA. Each new input shape compiles once more, so it can only pay
off for a steady frame size, and on a CPU only for models without depthwise convolutions:
XLA's CPU compiler runs a 3x3 depthwise convolution ~30x slower than TensorFlow's kernel,
which made a MobileNetV2 DeepLab v3 ~7x slower per frame (benchmarks/RESULTS.md), so
exporting such a model with XLA warns. TFLite does not use XLA.
"""

from __future__ import annotations

import json
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np

from pixelwise.data.pipeline import MEAN_RGB
from pixelwise.data.spec import SPEC_FILENAME, DatasetSpec
from pixelwise.metrics import confusion_matrix, mean_iou
from pixelwise.models.layers import all_layers

EXPORT_FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = (None, "float16", "int8")
FITS = ("resize", "letterbox")
SPEC_METADATA_NAME = "pixelwise_dataset"
EXPORT_METADATA_NAME = "pixelwise_export"
EXPORT_INFO_FORMAT = "pixelwise-export"
EXPORT_INFO_VERSION = 1
SERVING_SIGNATURE = "serving_default"
METADATA_SIGNATURE = "metadata"
INPUT_NAME = "images"
CLASS_MAP_NAME = "class_map"
PROBABILITIES_NAME = "probabilities"
MIN_PIXEL_AGREEMENT = 0.995
MAX_INT8_MEAN_IOU_DROP = 0.01
DEFAULT_CALIBRATION_IMAGES = 100
EXPORT_DIR = "export"
TEMP_PREFIX = ".tmp-"


def quantization_name(quantize: str | None) -> str:
    """``"float32"``, ``"float16"`` or ``"int8"``: how an export computes."""
    _check_quantize(quantize)
    return quantize or "float32"


def _check_quantize(quantize: str | None) -> None:
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be None (float32), 'float16' or 'int8', got {quantize!r}")


# --------------------------------------------------------------------------- float32 copy


def float32_model(model: keras.Model) -> keras.Model:
    """``model`` itself when every layer computes in float32, else a float32 copy.

    A model trained under ``mixed_bfloat16`` / ``mixed_float16`` computes in half
    precision; TFLite has no bfloat16 kernels and the check compares against float32, so
    the copy is rebuilt from the model's config with every dtype policy set to float32 and
    given the same weights (stored in float32 under mixed precision anyway).
    """
    policies = {layer.dtype_policy.name for layer in all_layers(model)}
    if policies <= {"float32"}:
        return model
    clone = type(model).from_config(_float32_config(model.get_config()))
    clone.set_weights(model.get_weights())
    return clone


def depthwise_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The model's depthwise convolutions, which XLA compiles badly for CPUs."""
    return [layer for layer in all_layers(model)
            if isinstance(layer, keras.layers.DepthwiseConv2D)]


def _float32_config(value):
    if isinstance(value, dict):
        if value.get("class_name") == "DTypePolicy" and isinstance(value.get("config"), dict):
            return {**value, "config": {**value["config"], "name": "float32"}}
        return {key: ("float32" if key == "dtype" and item in ("float16", "bfloat16")
                      else _float32_config(item)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_float32_config(item) for item in value)
    return value


# --------------------------------------------------------------------------- export info


def export_info(model: keras.Model, export_format: str, *, quantize: str | None = None,
                input_size: tuple[int, int] | None = None, input_multiple: int | None = None,
                outputs: Sequence[str] = (CLASS_MAP_NAME,)) -> dict:
    """What an export holds, recorded inside it (TFLite metadata / SavedModel constant)."""
    return {"format": EXPORT_INFO_FORMAT, "version": EXPORT_INFO_VERSION,
            "export_format": export_format, "model": model.name,
            "quantize": quantization_name(quantize),
            "input_size": list(input_size) if input_size is not None else None,
            "input_multiple": input_multiple, "input": f"{INPUT_NAME}: uint8 RGB",
            "outputs": list(outputs)}


def _atomic_path(path: Path) -> Path:
    return path.parent / f"{TEMP_PREFIX}{path.name}-{uuid.uuid4().hex[:12]}"


def _check_destination(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True or choose "
                              f"another path")


def _replace(temporary: Path, path: Path) -> None:
    """Move the finished ``temporary`` onto ``path`` (a file is replaced atomically; an old
    folder is removed first)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    temporary.replace(path)


# --------------------------------------------------------------------------- SavedModel


def _save_functions(model: keras.Model, path: Path, functions: dict) -> None:
    """A SavedModel of ``functions`` (tf.functions with input signatures, each exported as
    the signature of its name) and the variables of ``model`` they read.

    Only the variables are tracked, not the Keras model: what ``keras.export.ExportArchive``
    does, without walking every layer's trackables (which took 10 s of the 13 s of a
    MobileNetV2 export).
    """
    import tensorflow as tf

    module = tf.Module()
    module.model_variables = [variable.value for variable in model.variables]
    signatures = {}
    for name, function in functions.items():
        setattr(module, name, function)
        signatures[name] = function.get_concrete_function()
    tf.saved_model.save(module, str(path), signatures=signatures)


def export_saved_model(model: keras.Model, spec: DatasetSpec, out_dir: str | Path, *,
                       input_multiple: int = 16, include_probabilities: bool = False,
                       jit_compile: bool = False, overwrite: bool = False) -> Path:
    """Write ``model`` as a SavedModel with the serving signature of the module docstring.

    Args:
        model: a segmentation model (RGB 0..255 in, logits [B, H, W, C] out).
        spec: the classes it predicts; stored as constants and in assets/.
        out_dir: the SavedModel folder (written under a temporary name, then renamed).
        input_multiple: the model's stride; inputs are padded to a multiple of it.
        include_probabilities: also output the softmax probabilities.
        jit_compile: compile the serving function with XLA.
        overwrite: replace an existing ``out_dir``.

    Returns ``out_dir``.
    """
    import tensorflow as tf

    out_dir = Path(out_dir)
    _check_destination(out_dir, overwrite)
    _check_classes(model, spec)
    model = float32_model(model)
    depthwise = depthwise_layers(model) if jit_compile else []
    if depthwise:
        warnings.warn(f"{model.name}: XLA on a CPU runs its {len(depthwise)} "
                      "depthwise convolutions ~30x slower than TensorFlow's own kernels (a "
                      "MobileNetV2 DeepLab v3 ran ~7x slower per frame); serve it on CPUs "
                      "from an export without --jit-compile", stacklevel=2)
    height, width = (model.input_shape[1], model.input_shape[2])
    mean = tf.constant(MEAN_RGB, dtype=tf.float32)
    outputs = (CLASS_MAP_NAME, PROBABILITIES_NAME) if include_probabilities else (CLASS_MAP_NAME,)
    info = export_info(model, "saved_model", input_multiple=input_multiple, outputs=outputs)

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8,
                                                 name=INPUT_NAME)],
                 jit_compile=jit_compile)
    def serve(images):
        pixels = tf.cast(images, tf.float32)
        shape = tf.shape(pixels)
        image_height, image_width = shape[1], shape[2]
        paddings = [[0, 0], [0, (-image_height) % input_multiple],
                    [0, (-image_width) % input_multiple], [0, 0]]
        # Exact: image pixels + 0 * mean inside, 0 + 1 * mean in the padding.
        padded = (tf.pad(pixels, paddings)
                  + tf.pad(tf.zeros_like(pixels), paddings, constant_values=1.0) * mean)
        logits = tf.cast(model(padded, training=False), tf.float32)
        logits = logits[:, :image_height, :image_width, :]
        result = {CLASS_MAP_NAME: tf.argmax(logits, axis=-1, output_type=tf.int32)}
        if include_probabilities:
            result[PROBABILITIES_NAME] = tf.nn.softmax(logits, axis=-1)
        return result

    @tf.function(input_signature=[])
    def metadata():
        return {
            "class_names": tf.constant(list(spec.class_names), dtype=tf.string),
            "colors": tf.constant(np.asarray(spec.colors, dtype=np.uint8)),
            "ignore_label": tf.constant(spec.ignore_label, dtype=tf.int32),
            "dataset_spec": tf.constant(json.dumps(spec.to_dict())),
            "export_info": tf.constant(json.dumps(info)),
        }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temporary = _atomic_path(out_dir)
    try:
        _save_functions(model, temporary, {SERVING_SIGNATURE: serve, METADATA_SIGNATURE: metadata})
        (temporary / "assets").mkdir(exist_ok=True)
        spec.save(temporary / "assets" / SPEC_FILENAME)
        (temporary / "assets" / "pixelwise_export.json").write_text(json.dumps(info, indent=2) + "\n")
        _replace(temporary, out_dir)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return out_dir


def read_saved_model_spec(path: str | Path) -> DatasetSpec:
    """The dataset description in a SavedModel's assets (without loading the model)."""
    spec_path = Path(path) / "assets" / SPEC_FILENAME
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path}: missing; {path} is not a SavedModel written by "
                                f"`pixelwise export --format saved_model`")
    return DatasetSpec.load(spec_path)


class SavedModelSegmenter:
    """A SavedModel from :func:`export_saved_model`, loaded with TensorFlow.

    ``predict(image)`` gives the int32 class map of one uint8 RGB image of any size;
    ``predict_batch(images)`` the outputs of a batch. ``spec`` and ``export_info`` come from
    the SavedModel's ``metadata`` signature.
    """

    def __init__(self, path: str | Path) -> None:
        import tensorflow as tf

        self.path = Path(path)
        if not (self.path / "saved_model.pb").is_file():
            raise FileNotFoundError(f"{self.path}: no saved_model.pb here; export one with "
                                    f"`pixelwise export RUN --format saved_model`")
        loaded = tf.saved_model.load(str(self.path))
        missing = {SERVING_SIGNATURE, METADATA_SIGNATURE} - set(loaded.signatures)
        if missing:
            raise ValueError(f"{self.path}: lacks the signature(s) {', '.join(sorted(missing))}; "
                             f"not a pixelwise export")
        self._loaded = loaded  # keeps the signatures' variables alive
        self._serve = loaded.signatures[SERVING_SIGNATURE]
        constants = loaded.signatures[METADATA_SIGNATURE]()
        self.spec = DatasetSpec.from_dict(json.loads(constants["dataset_spec"].numpy()),
                                          source=str(self.path))
        self.export_info = json.loads(constants["export_info"].numpy())

    def predict_batch(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The signature's outputs (NumPy) for uint8 images [B, H, W, 3]."""
        import tensorflow as tf

        images = _as_uint8_images(images, batched=True)
        outputs = self._serve(**{INPUT_NAME: tf.constant(images)})
        return {name: value.numpy() for name, value in outputs.items()}

    def predict(self, image: np.ndarray) -> np.ndarray:
        """int32 class map [H, W] of one uint8 RGB image [H, W, 3]."""
        return self.predict_batch(_as_uint8_images(image)[None])[CLASS_MAP_NAME][0]


# --------------------------------------------------------------------------- TFLite


def _check_classes(model: keras.Model, spec: DatasetSpec) -> None:
    channels = model.outputs[0].shape[-1]
    if channels != spec.num_classes:
        raise ValueError(f"{model.name} predicts {channels} classes but the dataset "
                         f"description lists {spec.num_classes}; pass the run's spec")


def _check_input_size(input_size: Sequence[int], input_multiple: int) -> tuple[int, int]:
    try:
        height, width = (int(side) for side in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be (height, width), got {input_size!r}") from None
    if min(height, width) < 1 or height % input_multiple or width % input_multiple:
        nearest = [max(input_multiple, round(side / input_multiple) * input_multiple)
                   for side in (height, width)]
        raise ValueError(f"input size {height}x{width}: the model needs multiples of "
                         f"{input_multiple}; use e.g. {nearest[0]}x{nearest[1]}")
    return height, width


def export_tflite(model: keras.Model, spec: DatasetSpec, out_path: str | Path, *,
                  input_size: Sequence[int], quantize: str | None = None,
                  calibration_images: Iterable[np.ndarray] | None = None,
                  input_multiple: int = 16, overwrite: bool = False) -> Path:
    """Write ``model`` as a .tflite file at a fixed ``input_size`` (see the module docstring).

    Args:
        model: a segmentation model (RGB 0..255 in, logits out).
        spec: the classes it predicts; stored in the file's metadata.
        out_path: the .tflite file (written under a temporary name, then renamed).
        input_size: (height, width), multiples of ``input_multiple``.
        quantize: None (float32), "float16" or "int8".
        calibration_images: int8 only, required: uint8 RGB images [H, W, 3] of any size
            (resized to ``input_size``), e.g. a hundred from the training split; the
            activation ranges are measured on them.
        input_multiple: the model's stride.
        overwrite: replace an existing file.

    Returns ``out_path``.
    """
    import tensorflow as tf

    _check_quantize(quantize)
    out_path = Path(out_path)
    if out_path.suffix != ".tflite":
        raise ValueError(f"{out_path}: a TFLite model's name ends in .tflite")
    _check_destination(out_path, overwrite)
    _check_classes(model, spec)
    height, width = _check_input_size(input_size, input_multiple)
    calibration = None
    if quantize == "int8":
        if calibration_images is None:
            raise ValueError("int8 export needs calibration_images: uint8 RGB images from the "
                             "training split (about 100)")
        calibration = [resize_bilinear(_as_uint8_images(image), (height, width))
                       for image in calibration_images]
        if not calibration:
            raise ValueError("int8 export: calibration_images is empty; give images from the "
                             "training split")
    elif calibration_images is not None:
        raise ValueError(f"calibration_images apply to int8 export only, not "
                         f"{quantization_name(quantize)}")
    model = float32_model(model)

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.uint8,
                                                 name=INPUT_NAME)])
    def serve(images):
        logits = model(tf.cast(images, tf.float32), training=False)
        return {CLASS_MAP_NAME: tf.argmax(logits, axis=-1, output_type=tf.int32)}

    out_path.parent.mkdir(parents=True, exist_ok=True)
    saved_model_dir = _atomic_path(out_path.with_suffix(".savedmodel"))
    try:
        _save_functions(model, saved_model_dir, {SERVING_SIGNATURE: serve})
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(saved_model_dir), signature_keys=[SERVING_SIGNATURE])
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        flatbuffer = converter.convert()
    finally:
        shutil.rmtree(saved_model_dir, ignore_errors=True)
    info = export_info(model, "tflite", quantize=quantize, input_size=(height, width),
                       input_multiple=input_multiple)
    flatbuffer = add_tflite_metadata(flatbuffer, {
        SPEC_METADATA_NAME: json.dumps(spec.to_dict()).encode(),
        EXPORT_METADATA_NAME: json.dumps(info).encode()}, source=str(out_path))
    temporary = _atomic_path(out_path)
    try:
        temporary.write_bytes(flatbuffer)
        _replace(temporary, out_path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return out_path


def _tflite_schema():
    """The generated TFLite flatbuffer schema (LiteRT's, else TensorFlow's copy)."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def add_tflite_metadata(flatbuffer: bytes, entries: dict[str, bytes], *,
                        source: str = "TFLite model") -> bytes:
    """``flatbuffer`` with ``entries`` (name -> bytes) added to ``Model.metadata``, each in
    a buffer of its own; entries of the same names are replaced."""
    import flatbuffers

    schema = _tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    if any((buffer.offset or 0) > 1 for buffer in model.buffers or []):
        raise ValueError(f"{source}: its weights are stored outside the flatbuffer (a model "
                         f"over 2 GB); its metadata cannot be rewritten here")
    model.metadata = [item for item in (model.metadata or [])
                      if _text(item.name) not in entries]
    model.buffers = list(model.buffers or [])
    for name, data in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(bytes(data), dtype=np.uint8)
        model.buffers.append(buffer)
        item = schema.MetadataT()
        item.name = name
        item.buffer = len(model.buffers) - 1
        model.metadata.append(item)
    builder = flatbuffers.Builder(len(flatbuffer) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_tflite_metadata(path: str | Path) -> dict[str, bytes]:
    """The metadata entries (name -> bytes) of a .tflite file."""
    path = Path(path)
    data = path.read_bytes()
    schema = _tflite_schema()
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise ValueError(f"{path}: not a TFLite model (no TFL3 flatbuffer identifier)")
    model = schema.Model.GetRootAs(data, 0)
    entries = {}
    for index in range(model.MetadataLength()):
        item = model.Metadata(index)
        buffer = model.Buffers(item.Buffer())
        entries[_text(item.Name())] = (buffer.DataAsNumpy().tobytes()
                                       if buffer is not None and buffer.DataLength() else b"")
    return entries


def read_tflite_spec(path: str | Path) -> DatasetSpec:
    """The dataset description stored in a .tflite file by :func:`export_tflite`."""
    entries = read_tflite_metadata(path)
    if SPEC_METADATA_NAME not in entries:
        raise ValueError(f"{path}: carries no dataset description (metadata "
                         f"{SPEC_METADATA_NAME!r}); export it with `pixelwise export` or pass "
                         f"the spec yourself")
    try:
        values = json.loads(entries[SPEC_METADATA_NAME])
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: metadata {SPEC_METADATA_NAME!r} is not JSON: {error}") from error
    return DatasetSpec.from_dict(values, source=f"{path} metadata {SPEC_METADATA_NAME!r}")


def make_interpreter(model_path: str | Path, *, num_threads: int | None = None):
    """A TFLite interpreter with its tensors allocated: LiteRT's where installed, else
    TensorFlow's (deprecated) ``tf.lite.Interpreter``."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


class TFLiteSegmenter:
    """A .tflite segmentation model: class maps for images of any size.

    The model runs at its fixed input size. An image of another size is fitted to it:
    ``fit="resize"`` (default; what training at a fixed input size does) resizes it
    (bilinear), ``"letterbox"`` scales it to fit inside keeping its aspect ratio and pads the
    rest with the ImageNet mean colour. The class map is mapped back to the image's size
    (nearest neighbour). Images are uint8 RGB [H, W, 3]; other dtypes are clipped to 0..255
    and rounded.

    Works with the exports of :func:`export_tflite` (uint8 in, int32 class map out) and, for
    a model from elsewhere, with float32 RGB 0..255 input and logits output (argmax here).

    Example:
        >>> segmenter = TFLiteSegmenter("model_int8.tflite", num_threads=1)
        >>> segmenter.predict(np.zeros((375, 500, 3), np.uint8)).shape
        (375, 500)
    """

    def __init__(self, model_path: str | Path, *, num_threads: int | None = None,
                 fit: str = "resize", spec: DatasetSpec | None = None) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{self.model_path}: no such TFLite model")
        if fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
        self.fit = fit
        entries = read_tflite_metadata(self.model_path)
        self.spec = spec if spec is not None else read_tflite_spec(self.model_path)
        self.export_info = json.loads(entries.get(EXPORT_METADATA_NAME, b"{}") or b"{}")
        self.interpreter = make_interpreter(self.model_path, num_threads=num_threads)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{self.model_path}: expected one input and one output, got "
                             f"{len(inputs)} and {len(outputs)}")
        self._input, self._output = inputs[0], outputs[0]
        shape = tuple(int(side) for side in self._input["shape"])
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise ValueError(f"{self.model_path}: input shape {list(shape)}; expected "
                             f"[1, H, W, 3] RGB images")
        if self._input["dtype"] not in (np.uint8, np.float32):
            raise ValueError(f"{self.model_path}: input type {np.dtype(self._input['dtype'])}; "
                             f"expected uint8 (or float32) RGB")
        self.input_size = (shape[1], shape[2])

    @property
    def quantize(self) -> str | None:
        """"float16" / "int8" / None (float32), from the export's metadata."""
        name = self.export_info.get("quantize", "float32")
        return None if name == "float32" else name

    def predict_at_input_size(self, image: np.ndarray) -> np.ndarray:
        """int32 class map [h, w] of one image exactly the model's input size [h, w, 3]."""
        image = _as_uint8_images(image)
        if image.shape[:2] != self.input_size:
            raise ValueError(f"image of {image.shape[0]}x{image.shape[1]}; this model takes "
                             f"{self.input_size[0]}x{self.input_size[1]} (use predict)")
        self.interpreter.set_tensor(self._input["index"],
                                    image[None].astype(self._input["dtype"]))
        self.interpreter.invoke()
        result = self.interpreter.get_tensor(self._output["index"])[0]
        if result.ndim == 3:  # logits
            result = np.argmax(result, axis=-1)
        return result.astype(np.int32)

    def predict(self, image: np.ndarray) -> np.ndarray:
        """int32 class map [H, W] of one RGB image [H, W, 3] of any size."""
        image = _as_uint8_images(image)
        height, width = image.shape[:2]
        if (height, width) == self.input_size:
            return self.predict_at_input_size(image)
        input_height, input_width = self.input_size
        if self.fit == "resize":
            class_map = self.predict_at_input_size(resize_bilinear(image, self.input_size))
            return resize_nearest(class_map, (height, width))
        scale = min(input_height / height, input_width / width)
        inner = (max(1, min(input_height, round(height * scale))),
                 max(1, min(input_width, round(width * scale))))
        canvas = np.empty((input_height, input_width, 3), dtype=np.uint8)
        canvas[:] = np.round(np.asarray(MEAN_RGB)).astype(np.uint8)
        canvas[:inner[0], :inner[1]] = resize_bilinear(image, inner)
        class_map = self.predict_at_input_size(canvas)[:inner[0], :inner[1]]
        return resize_nearest(class_map, (height, width))


# --------------------------------------------------------------------------- image helpers


def _as_uint8_images(images, *, batched: bool = False) -> np.ndarray:
    images = np.asarray(images)
    rank = 4 if batched else 3
    if images.ndim != rank or images.shape[-1] != 3:
        expected = "[B, H, W, 3]" if batched else "[H, W, 3]"
        raise ValueError(f"expected RGB image(s) {expected}, got shape {list(images.shape)}")
    if images.dtype != np.uint8:
        images = np.clip(np.round(images.astype(np.float64)), 0, 255).astype(np.uint8)
    return images


def _source_positions(output_size: int, input_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    positions = (np.arange(output_size, dtype=np.float64) + 0.5) * input_size / output_size - 0.5
    positions = np.clip(positions, 0.0, input_size - 1)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, input_size - 1)
    return lower, upper, (positions - lower).astype(np.float32)


def resize_bilinear(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bilinear resize of a uint8 image [H, W, C] to ``size`` (height, width), uint8.

    Half-pixel centres without antialiasing, as ``tf.image.resize`` (the training
    pipeline's resize) computes, so an export sees what the model was trained on.
    """
    height, width = int(size[0]), int(size[1])
    if image.shape[:2] == (height, width):
        return image
    rows_low, rows_high, row_weight = _source_positions(height, image.shape[0])
    cols_low, cols_high, col_weight = _source_positions(width, image.shape[1])
    pixels = image.astype(np.float32)
    top, bottom = pixels[rows_low], pixels[rows_high]
    rows = top + (bottom - top) * row_weight[:, None, None]
    left, right = rows[:, cols_low], rows[:, cols_high]
    resized = left + (right - left) * col_weight[None, :, None]
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def resize_nearest(label_map: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of a class map [h, w] to ``size`` (half-pixel centres)."""
    height, width = int(size[0]), int(size[1])
    rows = np.minimum(((np.arange(height) + 0.5) * label_map.shape[0] / height).astype(np.int64),
                      label_map.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * label_map.shape[1] / width).astype(np.int64),
                      label_map.shape[1] - 1)
    return label_map[rows[:, None], cols[None, :]]


# --------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class CheckThresholds:
    """What an export must reach against the Keras model.

    ``min_pixel_agreement``: the share of pixels with the same class (None: no bound).
    ``max_mean_iou_drop``: how much lower its mean IoU may be (0.01 = 1 point; None: no
    bound).
    """

    min_pixel_agreement: float | None = None
    max_mean_iou_drop: float | None = None

    @classmethod
    def for_quantization(cls, quantize: str | None) -> "CheckThresholds":
        """>= 99.5% pixel agreement for float32 and float16; int8 within 1 mIoU point."""
        _check_quantize(quantize)
        if quantize == "int8":
            return cls(max_mean_iou_drop=MAX_INT8_MEAN_IOU_DROP)
        return cls(min_pixel_agreement=MIN_PIXEL_AGREEMENT)


@dataclass(frozen=True)
class AgreementReport:
    """The export against the Keras model on the same images (see :func:`check_export`)."""

    export_path: str
    quantize: str
    num_images: int
    num_pixels: int
    agreeing_pixels: int
    keras_matrix: np.ndarray
    export_matrix: np.ndarray
    thresholds: CheckThresholds
    failures: tuple[str, ...] = field(default=())

    @property
    def pixel_agreement(self) -> float:
        return self.agreeing_pixels / self.num_pixels if self.num_pixels else float("nan")

    @property
    def keras_mean_iou(self) -> float:
        return mean_iou(self.keras_matrix)

    @property
    def export_mean_iou(self) -> float:
        return mean_iou(self.export_matrix)

    @property
    def mean_iou_drop(self) -> float:
        return self.keras_mean_iou - self.export_mean_iou

    @property
    def passed(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        bounds = []
        if self.thresholds.min_pixel_agreement is not None:
            bounds.append(f"agreement >= {100 * self.thresholds.min_pixel_agreement:.2f}%")
        if self.thresholds.max_mean_iou_drop is not None:
            bounds.append(f"mIoU drop <= {100 * self.thresholds.max_mean_iou_drop:.2f} points")
        lines = [
            f"check of {self.export_path} ({self.quantize}) against the Keras model on "
            f"{self.num_images} held-out image(s):",
            f"  pixels with the same class: {100 * self.pixel_agreement:.3f}% "
            f"({self.agreeing_pixels} of {self.num_pixels})",
            f"  mean IoU: Keras {100 * self.keras_mean_iou:.2f}%, export "
            f"{100 * self.export_mean_iou:.2f}% (drop {100 * self.mean_iou_drop:+.2f} points)",
            f"  {'PASSED' if self.passed else 'FAILED'}"
            + (f" ({', '.join(bounds)})" if bounds else " (no thresholds)"),
        ]
        lines += [f"  - {failure}" for failure in self.failures]
        return lines

    def to_dict(self) -> dict:
        def number(value: float) -> float | None:
            return None if np.isnan(value) else float(value)

        return {"export_path": self.export_path, "quantize": self.quantize,
                "num_images": self.num_images, "num_pixels": self.num_pixels,
                "agreeing_pixels": self.agreeing_pixels,
                "pixel_agreement": number(self.pixel_agreement),
                "keras_mean_iou": number(self.keras_mean_iou),
                "export_mean_iou": number(self.export_mean_iou),
                "mean_iou_drop": number(self.mean_iou_drop),
                "min_pixel_agreement": self.thresholds.min_pixel_agreement,
                "max_mean_iou_drop": self.thresholds.max_mean_iou_drop,
                "passed": self.passed, "failures": list(self.failures),
                "keras_confusion_matrix": self.keras_matrix.tolist(),
                "export_confusion_matrix": self.export_matrix.tolist()}


class ExportCheckError(RuntimeError):
    """An export fell short of its thresholds; ``report`` holds the figures."""

    def __init__(self, report: AgreementReport) -> None:
        super().__init__("\n".join(report.lines()))
        self.report = report


def keras_class_map_function(model: keras.Model, *, input_multiple: int = 16,
                             jit_compile: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """A function: uint8 RGB image [H, W, 3] -> the Keras model's int32 class map [H, W].

    The image is padded at the bottom and right to a multiple of ``input_multiple`` with
    the ImageNet mean colour (as the SavedModel and ``pixelwise predict`` do) and the map
    cropped back. ``jit_compile`` runs the forward pass through XLA.
    """
    import tensorflow as tf

    model = float32_model(model)
    forward = tf.function(
        lambda images: tf.argmax(tf.cast(model(images, training=False), tf.float32), axis=-1,
                                 output_type=tf.int32),
        input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)],
        jit_compile=jit_compile)
    mean = np.asarray(MEAN_RGB, dtype=np.float32)

    def class_map(image: np.ndarray) -> np.ndarray:
        image = _as_uint8_images(image)
        height, width = image.shape[:2]
        padded = np.broadcast_to(mean, (1, -(-height // input_multiple) * input_multiple,
                                        -(-width // input_multiple) * input_multiple, 3)).copy()
        padded[0, :height, :width] = image
        return forward(tf.constant(padded)).numpy()[0, :height, :width]

    return class_map


def check_export(model: keras.Model, spec: DatasetSpec, exported, examples: Iterable, *,
                 quantize: str | None = None, thresholds: CheckThresholds | None = None,
                 input_multiple: int = 16, jit_compile: bool = False,
                 raise_on_failure: bool = True) -> AgreementReport:
    """Compare an export with the Keras model it came from on held-out images.

    Args:
        model: the Keras model (float32 reference).
        spec: the classes (for the ignore label and the class count).
        exported: a :class:`TFLiteSegmenter`, :class:`SavedModelSegmenter`, or anything with
            ``predict(image) -> class map [H, W]``.
        examples: ``(image, label)`` pairs: uint8 RGB [H, W, 3] and uint8 class indices
            [H, W] (the ignore label left out of the IoUs). For a TFLite export, give images
            at its input size so both see the same pixels.
        quantize: the export's quantisation; picks the default thresholds.
        thresholds: overrides ``CheckThresholds.for_quantization(quantize)``.
        input_multiple: the model's stride (the Keras side pads to it).
        jit_compile: the Keras forward pass through XLA.
        raise_on_failure: raise :class:`ExportCheckError` when a threshold is missed.

    The agreement counts every pixel of every image; each mean IoU comes from one
    confusion matrix over all images (``pixelwise.metrics``).
    """
    thresholds = thresholds or CheckThresholds.for_quantization(quantize)
    reference = keras_class_map_function(model, input_multiple=input_multiple,
                                         jit_compile=jit_compile)
    keras_matrix = np.zeros((spec.num_classes, spec.num_classes), dtype=np.int64)
    export_matrix = np.zeros_like(keras_matrix)
    num_images = num_pixels = agreeing = 0
    for image, label_map in examples:
        image = _as_uint8_images(image)
        label_map = np.asarray(label_map)
        if label_map.shape != image.shape[:2]:
            raise ValueError(f"example {num_images}: image {image.shape[:2]} and label "
                             f"{label_map.shape} differ in size")
        keras_map = reference(image)
        export_map = np.asarray(exported.predict(image))
        if export_map.shape != keras_map.shape:
            raise ValueError(f"example {num_images}: the export returned a {export_map.shape} "
                             f"class map for a {image.shape[:2]} image")
        agreeing += int(np.count_nonzero(keras_map == export_map))
        num_pixels += keras_map.size
        keras_matrix += confusion_matrix(label_map, keras_map, spec.num_classes, spec.ignore_label)
        export_matrix += confusion_matrix(label_map, export_map, spec.num_classes,
                                          spec.ignore_label)
        num_images += 1
    if num_images == 0:
        raise ValueError("check_export: no examples to check on")
    report = AgreementReport(
        export_path=str(getattr(exported, "model_path", getattr(exported, "path", exported))),
        quantize=quantization_name(quantize), num_images=num_images, num_pixels=num_pixels,
        agreeing_pixels=agreeing, keras_matrix=keras_matrix, export_matrix=export_matrix,
        thresholds=thresholds)
    failures = []
    if (thresholds.min_pixel_agreement is not None
            and not report.pixel_agreement >= thresholds.min_pixel_agreement):
        failures.append(f"pixel agreement {100 * report.pixel_agreement:.3f}% is below "
                        f"{100 * thresholds.min_pixel_agreement:.2f}%")
    if (thresholds.max_mean_iou_drop is not None
            and not report.mean_iou_drop <= thresholds.max_mean_iou_drop):
        failures.append(f"mean IoU {100 * report.export_mean_iou:.2f}% is "
                        f"{100 * report.mean_iou_drop:.2f} points below the Keras model's "
                        f"{100 * report.keras_mean_iou:.2f}% (allowed: "
                        f"{100 * thresholds.max_mean_iou_drop:.2f})")
    report = replace(report, failures=tuple(failures))
    if failures and raise_on_failure:
        raise ExportCheckError(report)
    return report


# --------------------------------------------------------------------------- a run


def split_examples(source, split: str, *, input_size: Sequence[int], split_seed: int,
                   limit: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(image, label)`` pairs of a split resized to ``input_size`` by the evaluation
    pipeline (bilinear image rounded to uint8, nearest label), in list order."""
    from pixelwise.data.pipeline import make_dataset

    dataset = make_dataset(source, split, batch_size=1, input_size=tuple(input_size),
                           training=False, split_seed=split_seed)
    if limit is not None:
        dataset = dataset.take(limit)
    return [(_as_uint8_images(np.asarray(images)[0]), np.asarray(labels)[0])
            for images, labels in dataset]


def default_export_path(run_dir: str | Path, export_format: str, quantize: str | None) -> Path:
    """RUN/export/saved_model or RUN/export/model_{float32,float16,int8}.tflite."""
    if export_format == "saved_model":
        return Path(run_dir) / EXPORT_DIR / "saved_model"
    return Path(run_dir) / EXPORT_DIR / f"model_{quantization_name(quantize)}.tflite"


def check_report_path(export_path: str | Path) -> Path:
    """Where the check of an export is written: ``NAME_check.json`` beside it."""
    export_path = Path(export_path)
    return export_path.parent / f"{export_path.stem}_check.json"


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` wrote."""

    path: Path
    report: AgreementReport | None
    report_path: Path | None


def export_run(run_dir: str | Path, *, export_format: str, quantize: str | None = None,
               input_size: Sequence[int] | None = None, out: str | Path | None = None,
               calibration_count: int = DEFAULT_CALIBRATION_IMAGES, check: bool = True,
               check_limit: int | None = None, thresholds: CheckThresholds | None = None,
               include_probabilities: bool = False, jit_compile: bool = False,
               overwrite: bool = True, echo: Callable[[str], None] = print) -> ExportResult:
    """Export the best model of a run and check it on the run's held-out (test) split.

    Args:
        run_dir: a run folder written by ``pixelwise train``.
        export_format: "saved_model" or "tflite".
        quantize: TFLite only: None (float32), "float16" or "int8".
        input_size: the TFLite input size and the check's image size (default: the run's
            training input size).
        out: the SavedModel folder or .tflite file (default: :func:`default_export_path`).
        calibration_count: int8: how many training images calibrate the activations.
        check: run :func:`check_export` on the run's test split and write
            ``NAME_check.json`` beside the export; a miss raises :class:`ExportCheckError`
            (the export stays on disk for inspection).
        check_limit: check on the first N test images only (default: all).
        thresholds: override the default thresholds of the check.
        include_probabilities: SavedModel: also output probabilities.
        jit_compile: XLA for the SavedModel's serving function and the check's Keras side.
        overwrite: replace an earlier export at the same path.
        echo: where status lines go.
    """
    from pixelwise.runs import load_run, write_json_atomically

    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {export_format!r}")
    _check_quantize(quantize)
    if export_format == "saved_model" and quantize is not None:
        raise ValueError("quantize applies to TFLite exports; a SavedModel is float32")
    model, spec, config = load_run(run_dir)
    model = float32_model(model)
    input_multiple = config.model.input_multiple
    size = _check_input_size(input_size or config.data.input_size, input_multiple)
    path = Path(out) if out is not None else default_export_path(run_dir, export_format, quantize)
    source, split_seed = config.data.source, config.data.split_seed
    if export_format == "saved_model":
        export_saved_model(model, spec, path, input_multiple=input_multiple,
                           include_probabilities=include_probabilities,
                           jit_compile=jit_compile, overwrite=overwrite)
    else:
        calibration = None
        if quantize == "int8":
            calibration = [image for image, _ in split_examples(
                source, config.data.train_split, input_size=size, split_seed=split_seed,
                limit=calibration_count)]
            echo(f"calibrating int8 on {len(calibration)} image(s) of split "
                 f"{config.data.train_split!r}")
        export_tflite(model, spec, path, input_size=size, quantize=quantize,
                      calibration_images=calibration, input_multiple=input_multiple,
                      overwrite=overwrite)
    echo(f"wrote {path} ({export_format}, {quantization_name(quantize)}"
         + (f", {size[0]}x{size[1]}" if export_format == "tflite" else "") + ")")
    if not check:
        return ExportResult(path, None, None)
    examples = split_examples(source, config.data.test_split, input_size=size,
                              split_seed=split_seed, limit=check_limit)
    exported = (SavedModelSegmenter(path) if export_format == "saved_model"
                else TFLiteSegmenter(path))
    report = check_export(model, spec, exported, examples, quantize=quantize,
                          thresholds=thresholds, input_multiple=input_multiple,
                          jit_compile=jit_compile, raise_on_failure=False)
    report_path = check_report_path(path)
    write_json_atomically(report_path, report.to_dict())
    for line in report.lines():
        echo(line)
    if not report.passed:
        raise ExportCheckError(report)
    return ExportResult(path, report, report_path)


__all__ = [
    "AgreementReport", "CheckThresholds", "EXPORT_FORMATS", "ExportCheckError", "ExportResult",
    "QUANTIZATIONS", "SavedModelSegmenter", "TFLiteSegmenter", "add_tflite_metadata",
    "check_export", "check_report_path", "default_export_path", "export_info", "export_run",
    "export_saved_model", "export_tflite", "float32_model", "keras_class_map_function",
    "make_interpreter", "quantization_name", "read_saved_model_spec", "read_tflite_metadata",
    "read_tflite_spec", "resize_bilinear", "resize_nearest", "split_examples",
]
