"""A .tflite model as a Segmenter, on LiteRT's interpreter, and its metadata read back.

The interpreter is LiteRT's (``ai_edge_litert``, what a device installs without
TensorFlow); TensorFlow's deprecated ``tf.lite.Interpreter`` is the fallback where LiteRT is
not installed. A pixelwise export carries its classes in the file (``Model.metadata``
entries ``pixelwise_dataset`` and ``pixelwise_export``), so nothing beside it is needed.
"""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import numpy as np

from pixelwise.data.spec import DatasetSpec
from pixelwise.drivable import drivable_probability
from pixelwise.inference.formats import (
    CLASS_MAP_NAME,
    DRIVABLE_CLASSES_KEY,
    DRIVABLE_NAME,
    EXPORT_METADATA_NAME,
    PROBABILITIES_NAME,
    SERVING_SIGNATURE,
    SPEC_METADATA_NAME,
)
from pixelwise.inference.imaging import as_uint8_images
from pixelwise.inference.segmenter import Segmenter


def tflite_schema():
    """The generated TFLite flatbuffer schema (LiteRT's, else TensorFlow's copy)."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def metadata_text(value) -> str:
    """A flatbuffer string (bytes or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def read_tflite_metadata(path: str | Path) -> dict[str, bytes]:
    """The metadata entries (name -> bytes) of a .tflite file."""
    path = Path(path)
    data = path.read_bytes()
    schema = tflite_schema()
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise ValueError(f"{path}: not a TFLite model (no TFL3 flatbuffer identifier)")
    model = schema.Model.GetRootAs(data, 0)
    entries = {}
    try:
        for index in range(model.MetadataLength()):
            item = model.Metadata(index)
            buffer = model.Buffers(item.Buffer())
            entries[metadata_text(item.Name())] = (buffer.DataAsNumpy().tobytes()
                                                   if buffer is not None and buffer.DataLength()
                                                   else b"")
    except (struct.error, IndexError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: a damaged TFLite model ({len(data):,} bytes; truncated or "
                         f"overwritten: {error}); export it again") from None
    return entries


def read_tflite_spec(path: str | Path) -> DatasetSpec:
    """The dataset description stored in a .tflite file by ``pixelwise export``."""
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"{model_path}: the TFLite interpreter cannot load it ({error}); "
                         f"export it again") from None
    return interpreter


class TFLiteSegmenter(Segmenter):
    """A .tflite segmentation model: class maps for images of any size.

    The model runs at its fixed input size. An image of another size is fitted to it
    (``fit_mode``): "resize" (default; what training at a fixed input size does),
    "letterbox" (scaled to fit inside, keeping its aspect ratio, the rest the ImageNet mean
    colour) or "pad" (an image no larger than the input, padded with the mean colour). The
    class map is mapped back to the image's size (nearest neighbour). Images are uint8 RGB
    [H, W, 3]; other dtypes are clipped to 0..255 and rounded.

    Works with the exports of ``pixelwise.export.export_tflite`` (uint8 in, int32 class map
    out: the argmax is inside the graph, so there are no probabilities unless it was
    exported with them, or with the drivable probability, as further named outputs) and,
    for a model from elsewhere, with float32 RGB 0..255 input and logits output.

    Example:
        >>> segmenter = TFLiteSegmenter("model_int8.tflite", num_threads=1)
        >>> segmenter.predict(np.zeros((375, 500, 3), np.uint8)).shape
        (375, 500)
    """

    @classmethod
    def opens(cls, path: Path) -> bool:
        return path.is_file() and path.suffix == ".tflite"

    def __init__(self, model_path: str | Path, *, num_threads: int | None = None,
                 fit_mode: str = "resize", spec: DatasetSpec | None = None) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{self.model_path}: no such TFLite model")
        entries = read_tflite_metadata(self.model_path)
        spec = spec if spec is not None else read_tflite_spec(self.model_path)
        self.export_info = json.loads(entries.get(EXPORT_METADATA_NAME, b"{}") or b"{}")
        self.interpreter = make_interpreter(self.model_path, num_threads=num_threads)
        inputs = self.interpreter.get_input_details()
        self._outputs = self._named_outputs()
        if len(inputs) != 1 or not self._outputs:
            raise ValueError(f"{self.model_path}: expected one input and a class map or "
                             f"logits output, got {len(inputs)} input(s) and outputs "
                             f"{', '.join(self._outputs) or 'none'}")
        self._input = inputs[0]
        self._output = self._outputs.get(CLASS_MAP_NAME) or next(iter(self._outputs.values()))
        shape = tuple(int(side) for side in self._input["shape"])
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise ValueError(f"{self.model_path}: input shape {list(shape)}; expected "
                             f"[1, H, W, 3] RGB images")
        if self._input["dtype"] not in (np.uint8, np.float32):
            raise ValueError(f"{self.model_path}: input type {np.dtype(self._input['dtype'])}; "
                             f"expected uint8 (or float32) RGB")
        super().__init__(spec, fit_mode=fit_mode, input_size=(shape[1], shape[2]))

    def _named_outputs(self) -> dict[str, dict]:
        """The output details by name: the serving signature's names where the file has
        one (a pixelwise export), else a single unnamed output."""
        signatures = self.interpreter.get_signature_list()
        if SERVING_SIGNATURE in signatures:
            runner = self.interpreter.get_signature_runner(SERVING_SIGNATURE)
            return dict(runner.get_output_details())
        outputs = self.interpreter.get_output_details()
        return {"output": outputs[0]} if len(outputs) == 1 else {}

    @property
    def drivable_classes(self) -> tuple[int, ...] | None:
        """The class indices summed by the file's ``drivable`` output (None: no such output)."""
        if DRIVABLE_NAME not in self._outputs:
            return None
        return tuple(int(index) for index in self.export_info.get(DRIVABLE_CLASSES_KEY, ()))

    @property
    def quantize(self) -> str | None:
        """"float16" / "int8" / None (float32), from the export's metadata."""
        name = self.export_info.get("quantize", "float32")
        return None if name == "float32" else name

    @property
    def gives_class_maps(self) -> bool:
        """Whether the graph ends in an argmax (a pixelwise export) rather than logits."""
        return len(self._output["shape"]) == 3

    def describe(self) -> str:
        return f"TFLite model {self.model_path}"

    def _invoke(self, canvas: np.ndarray, names=None) -> np.ndarray | dict[str, np.ndarray]:
        """The main output of one canvas; with ``names``, those outputs by name."""
        self.interpreter.set_tensor(self._input["index"], canvas[None].astype(self._input["dtype"]))
        self.interpreter.invoke()
        if names is None:
            return self.interpreter.get_tensor(self._output["index"])[0]
        return {name: self.interpreter.get_tensor(self._outputs[name]["index"])[0]
                for name in names}

    def predict_at_input_size(self, image: np.ndarray) -> np.ndarray:
        """int32 class map [h, w] of one image exactly the model's input size [h, w, 3]."""
        image = as_uint8_images(image)
        if image.shape[:2] != self.input_size:
            raise ValueError(f"image of {image.shape[0]}x{image.shape[1]}; this model takes "
                             f"{self.input_size[0]}x{self.input_size[1]} (use predict)")
        return self._forward(image[None])[0].astype(np.int32)

    def _forward(self, canvases: np.ndarray) -> np.ndarray:
        # Class maps [B, h, w] from a pixelwise export; logits [B, h, w, C] otherwise.
        return np.stack([self._invoke(canvas) for canvas in canvases])

    def _forward_probabilities(self, canvases: np.ndarray) -> np.ndarray:
        if PROBABILITIES_NAME in self._outputs:
            return np.stack([self._invoke(canvas, [PROBABILITIES_NAME])[PROBABILITIES_NAME]
                             for canvas in canvases]).astype(np.float32)
        if self.gives_class_maps:
            raise ValueError(f"{self.model_path}: its graph ends in an argmax, so it gives "
                             f"class maps only, not probabilities; export it with "
                             f"`pixelwise export RUN --format tflite --probabilities`, or use "
                             f"the run's .keras model or a SavedModel exported with "
                             f"--probabilities")
        logits = self._forward(canvases).astype(np.float32)
        exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exponentials / exponentials.sum(axis=-1, keepdims=True)

    def _forward_outputs(self, canvases: np.ndarray, probabilities: bool,
                         drivable: tuple[int, ...] | None):
        # One invoke per canvas reads every output needed: the class map, and the
        # probabilities or the drivable output where the export has them.
        own_drivable = drivable is not None and drivable == self.drivable_classes
        wanted_probabilities = probabilities or (drivable is not None and not own_drivable)
        if CLASS_MAP_NAME not in self._outputs or (
                wanted_probabilities and PROBABILITIES_NAME not in self._outputs):
            return super()._forward_outputs(canvases, probabilities, drivable)
        names = [CLASS_MAP_NAME] + ([PROBABILITIES_NAME] if wanted_probabilities else []) + (
            [DRIVABLE_NAME] if own_drivable else [])
        results = [self._invoke(canvas, names) for canvas in canvases]
        class_maps = np.stack([result[CLASS_MAP_NAME] for result in results])
        probability_maps = (np.stack([result[PROBABILITIES_NAME] for result in results])
                            .astype(np.float32) if wanted_probabilities else None)
        if own_drivable:
            drivable_maps = np.stack([result[DRIVABLE_NAME] for result in results])
        elif drivable is not None:
            drivable_maps = drivable_probability(probability_maps, drivable)
        else:
            drivable_maps = None
        return class_maps, probability_maps if probabilities else None, drivable_maps


__all__ = ["TFLiteSegmenter", "make_interpreter", "read_tflite_metadata", "read_tflite_spec",
           "tflite_schema"]
