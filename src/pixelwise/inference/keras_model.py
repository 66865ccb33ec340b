"""A Keras model as a :class:`~pixelwise.inference.Segmenter`, and multi-scale + flip
averaging (written once; ``pixelwise evaluate`` runs it on batches and on replicas).

    segmenter = KerasSegmenter(model, spec, input_multiple=16)            # pad each image
    segmenter = KerasSegmenter(model, spec, fit_mode="resize", input_size=(384, 384))
    segmenter = KerasSegmenter(model, spec, scales=(0.75, 1.0, 1.25), flip=True)

The model takes float RGB 0..255 and gives logits. Without averaging, the class map is the
argmax of the logits; with ``scales`` or ``flip`` it is the argmax of the softmax
probabilities averaged over the scales (each resized to a multiple of the stride, the
logits resized back, bilinear) and the mirrored images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from keras import ops

from pixelwise.data.spec import DatasetSpec
from pixelwise.inference.imaging import DEFAULT_MAX_PIXELS
from pixelwise.inference.segmenter import Segmenter
from pixelwise.models.folding import fold_batch_norms


def _multiple_of(size: int, scale: float, multiple: int) -> int:
    return max(multiple, int(round(size * scale / multiple)) * multiple)


def average_probabilities(model, images, *, input_multiple: int,
                          scales: Sequence[float] = (1.0,), flip: bool = False):
    """Softmax probabilities [B, H, W, C] averaged over ``scales`` and flips, as a tensor.

    ``model``: called as ``model(images, training=False)`` for logits. ``images``: float
    [B, H, W, 3] in 0..255, H and W multiples of ``input_multiple``. At each scale the
    images are resized to the nearest multiple of ``input_multiple`` and the logits resized
    back (bilinear). Written in ``keras.ops`` only, so it also runs inside a compiled
    function on each replica of a strategy.
    """
    images = ops.convert_to_tensor(images, dtype="float32")
    height, width = int(images.shape[1]), int(images.shape[2])
    total = None
    count = 0
    for scale in scales:
        size = (_multiple_of(height, scale, input_multiple),
                _multiple_of(width, scale, input_multiple))
        scaled = images if size == (height, width) else ops.image.resize(images, size)
        for mirrored in ((False, True) if flip else (False,)):
            inputs = ops.flip(scaled, axis=2) if mirrored else scaled
            logits = ops.cast(model(inputs, training=False), "float32")
            if mirrored:
                logits = ops.flip(logits, axis=2)
            if size != (height, width):
                logits = ops.image.resize(logits, (height, width))
            probabilities = ops.softmax(logits, axis=-1)
            total = probabilities if total is None else total + probabilities
            count += 1
    return total / count


def predict_probabilities(model, images, *, input_multiple: int,
                          scales: Sequence[float] = (1.0,), flip: bool = False) -> np.ndarray:
    """:func:`average_probabilities` as a float32 NumPy array."""
    probabilities = average_probabilities(model, images, input_multiple=input_multiple,
                                          scales=scales, flip=flip)
    return np.asarray(ops.convert_to_numpy(probabilities), dtype=np.float32)


class KerasSegmenter(Segmenter):
    """A Keras segmentation model (RGB 0..255 in, logits out) behind the Segmenter interface.

    Args:
        model: the Keras model.
        spec: the classes it predicts.
        input_multiple: the model's stride; "pad" pads each image to a multiple of it with
            the ImageNet mean colour.
        fit_mode: "pad" (default: each image at its own size), "resize" or "letterbox"
            (to ``input_size``).
        input_size: (height, width) for "resize" / "letterbox".
        scales: average the probabilities over these scales (1.0: none).
        flip: average over horizontally mirrored images too.
        jit_compile: run the forward pass through XLA (one compilation per input shape).
        max_pixels: "pad" scales larger images down to this many pixels (None: never).
    """

    pixel_dtype = np.float32

    def __init__(self, model: keras.Model, spec: DatasetSpec, *, input_multiple: int = 16,
                 fit_mode: str = "pad", input_size: Sequence[int] | None = None,
                 scales: Sequence[float] = (1.0,), flip: bool = False,
                 jit_compile: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        super().__init__(spec, fit_mode=fit_mode, input_size=input_size,
                         input_multiple=input_multiple, max_pixels=max_pixels)
        channels = model.outputs[0].shape[-1]
        if channels != spec.num_classes:
            raise ValueError(f"{model.name} predicts {channels} classes but the dataset "
                             f"description lists {spec.num_classes}")
        self.model = model
        # The copy that predicts: batch norms folded into their convolutions (same function).
        self._inference_model = fold_batch_norms(model)
        self.scales = tuple(float(scale) for scale in scales)
        self.flip = bool(flip)
        self._logits = self._make_forward(jit_compile)

    def _make_forward(self, jit_compile: bool):
        """The model as one TensorFlow graph instead of layer by layer in eager mode, whose
        per-op Python cost is most of a small model's time on one frame. Without XLA, a
        second image size retraces once with height and width unknown, a graph that then
        serves every size; XLA compiles one program per size."""
        import tensorflow as tf

        forward = tf.function(lambda images: self._inference_model(images, training=False),
                              jit_compile=jit_compile, reduce_retracing=not jit_compile)
        return lambda images, training=False: forward(images)

    @property
    def averaging(self) -> bool:
        """Whether several scales or flips are averaged."""
        return self.scales != (1.0,) or self.flip

    def describe(self) -> str:
        return f"Keras model {self.model.name}"

    def _forward(self, canvases: np.ndarray) -> np.ndarray:
        if self.averaging:
            return self._forward_probabilities(canvases)
        logits = ops.cast(self._logits(canvases), "float32")
        return np.asarray(ops.convert_to_numpy(logits))

    def _forward_probabilities(self, canvases: np.ndarray) -> np.ndarray:
        return predict_probabilities(self._logits, canvases, input_multiple=self.input_multiple,
                                     scales=self.scales, flip=self.flip)

    @classmethod
    def opens(cls, path: Path) -> bool:
        return (path.is_dir() and (path / "config.json").is_file()) or (
            path.is_file() and path.suffix == ".keras")

    @classmethod
    def open(cls, path: Path, **options) -> "KerasSegmenter":
        return cls.from_path(path, **options)

    @classmethod
    def from_path(cls, path: str | Path, *, spec: DatasetSpec | None = None,
                  input_multiple: int | None = None, **options) -> "KerasSegmenter":
        """A run folder's best model, or a ``.keras`` file: its classes from
        ``pixelwise_dataset.json`` beside it (or ``spec``), its stride from the run's
        ``config.json`` beside it (or ``input_multiple``); a ``.keras`` file in a model
        folder (:mod:`pixelwise.zoo`) takes both from its ``card.json``. For a run folder
        or a model folder, "resize" and "letterbox" default to its input size."""
        from pixelwise.config import RunConfig
        from pixelwise.runs import CONFIG_FILENAME, SPEC_FILENAME, load_run
        from pixelwise.zoo import card_beside

        path = Path(path)
        if path.is_dir():
            model, run_spec, config = load_run(path)
            if options.get("fit_mode", "pad") != "pad":
                options.setdefault("input_size", config.data.input_size)
            return cls(model, spec or run_spec, input_multiple=input_multiple
                       or config.model.input_multiple, **options)
        card = card_beside(path) if path.is_file() else None
        if card is not None:
            spec = spec or card.spec
            input_multiple = input_multiple or card.input_multiple
            if options.get("fit_mode", "pad") != "pad":
                options.setdefault("input_size", card.input_size)
        if spec is None:
            if not (path.parent / SPEC_FILENAME).is_file():
                raise FileNotFoundError(f"{path.parent / SPEC_FILENAME}: missing; pass spec= "
                                        f"(the classes {path.name} predicts)")
            spec = DatasetSpec.load(path.parent / SPEC_FILENAME)
        if input_multiple is None:
            if not (path.parent / CONFIG_FILENAME).is_file():
                raise FileNotFoundError(f"{path.parent / CONFIG_FILENAME}: missing; pass "
                                        f"input_multiple= (the stride of {path.name})")
            input_multiple = RunConfig.load(path.parent / CONFIG_FILENAME).model.input_multiple
        import pixelwise.losses  # noqa: F401  (registers the custom objects)
        import pixelwise.metrics  # noqa: F401
        from pixelwise.models import load_model

        return cls(load_model(path, compile=False), spec, input_multiple=input_multiple,
                   **options)


__all__ = ["KerasSegmenter", "average_probabilities", "predict_probabilities"]
