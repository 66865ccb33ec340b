"""The Segmenter interface: class maps and probabilities for images of any size.

    segmenter = Segmenter.from_path("runs/voc")                 # or best.keras,
    segmenter = Segmenter.from_path("model_int8.tflite")        # a SavedModel folder
    class_map = segmenter.predict(image)          # int32 [H, W] for uint8 RGB [H, W, 3]
    probabilities = segmenter.probabilities(image)               # float32 [H, W, C]
    class_maps = segmenter.predict_batch(images)                 # [B, H, W]
    for result in segmenter.stream(frames):                      # any iterable of frames
        use(result.class_map, result.timings_ms)
    result = segmenter.segment(image, drivable=(0, 1))   # + P(drivable) [H, W]: the sum
                                                         # of those classes' probabilities

Every model form runs the same three stages: the image is fitted to the model's input
(``fit_mode``: see :mod:`pixelwise.inference.imaging`), the model runs on the canvas, and
its answer is mapped back to the image's size. Logits and probabilities are mapped back
before the argmax; a model that only gives class maps (a .tflite export, whose graph ends
in an argmax) has its map resized nearest-neighbour.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pixelwise.data.spec import DatasetSpec
from pixelwise.drivable import drivable_probability
from pixelwise.inference.imaging import (
    DEFAULT_MAX_PIXELS,
    FIT_MODES,
    Fitting,
    as_uint8_images,
    check_rgb,
    class_map_of,
    fit_images,
    map_back,
    plan_fitting,
)


@dataclass(frozen=True)
class Prediction:
    """One image's result: its class map, its probabilities and its drivable probability
    (each when asked for) and the time of each stage in milliseconds (``preprocess``,
    ``inference``, ``postprocess``; from :meth:`Segmenter.stream` also ``decode``, the wait
    for the frame)."""

    class_map: np.ndarray
    probabilities: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    drivable: np.ndarray | None = None


class Segmenter:
    """A segmentation model of any form behind one interface (see the module docstring).

    Subclasses say what their model takes (``pixel_dtype``: uint8 or float32 canvases) and
    implement ``_forward(canvases)``, giving class maps [B, h, w] or scores [B, h, w, C]
    whose argmax is the class, and, where the form can, ``_forward_probabilities``.

    Attributes:
        spec: the classes the model predicts.
        fit_mode: "pad", "resize" or "letterbox".
        input_size: the model's (height, width) input, or None for any size.
        input_multiple: "pad" on a model of any size pads to a multiple of this.
        max_pixels: "pad" on a model of any size scales larger images down to this many
            pixels, bounding memory (None: never; see ``pixelwise.inference.imaging``).
    """

    pixel_dtype = np.uint8

    def __init__(self, spec: DatasetSpec, *, fit_mode: str = "pad",
                 input_size: Sequence[int] | None = None, input_multiple: int = 1,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        if fit_mode not in FIT_MODES:
            raise ValueError(f"fit_mode must be one of {', '.join(FIT_MODES)}, got {fit_mode!r}")
        if fit_mode != "pad" and input_size is None:
            raise ValueError(f"fit_mode {fit_mode!r} needs an input_size (height, width)")
        self.spec = spec
        self.fit_mode = fit_mode
        self.input_size = (None if input_size is None
                           else (int(input_size[0]), int(input_size[1])))
        self.input_multiple = int(input_multiple)
        if max_pixels is not None and int(max_pixels) < 1:
            raise ValueError(f"max_pixels must be at least 1 (or None), got {max_pixels!r}")
        self.max_pixels = None if max_pixels is None else int(max_pixels)

    # ------------------------------------------------------------------ what a form implements

    def _forward(self, canvases: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _forward_probabilities(self, canvases: np.ndarray) -> np.ndarray:
        raise ValueError(f"{self.describe()} gives class maps only, not probabilities")

    def _forward_outputs(self, canvases: np.ndarray, probabilities: bool,
                         drivable: tuple[int, ...] | None):
        """(scores for the class map, probabilities or None, drivable probability or None)
        of one forward pass; a form with several outputs overrides it."""
        if not probabilities and drivable is None:
            return self._forward(canvases), None, None
        probability_maps = self._forward_probabilities(canvases)
        return (probability_maps, probability_maps if probabilities else None,
                None if drivable is None else drivable_probability(probability_maps, drivable))

    def describe(self) -> str:
        """A few words naming the model (for messages)."""
        return type(self).__name__

    # ------------------------------------------------------------------ the interface

    def fitting(self, image_size: Sequence[int]) -> Fitting:
        """Where an image of ``image_size`` lands on the model's input."""
        return plan_fitting(image_size, self.fit_mode, input_size=self.input_size,
                            input_multiple=self.input_multiple, max_pixels=self.max_pixels)

    def predict(self, image) -> np.ndarray:
        """int32 class map [H, W] of one RGB image [H, W, 3] of any size."""
        return self.segment(image).class_map

    def probabilities(self, image) -> np.ndarray:
        """float32 class probabilities [H, W, C] of one RGB image [H, W, 3]."""
        return self.segment(image, probabilities=True).probabilities

    def predict_batch(self, images) -> np.ndarray | list[np.ndarray]:
        """Class maps of several images: [B, H, W] for an array [B, H, W, 3]; a list for a
        list of images (each at its own size)."""
        if isinstance(images, np.ndarray):
            return self._run_batch(images, probabilities=False)[0]
        return [self.predict(image) for image in images]

    def probabilities_batch(self, images) -> np.ndarray | list[np.ndarray]:
        """Probabilities of several images, as :meth:`predict_batch` gives class maps."""
        if isinstance(images, np.ndarray):
            return self._run_batch(images, probabilities=True)[1]
        return [self.probabilities(image) for image in images]

    def segment(self, image, *, probabilities: bool = False,
                drivable: Sequence[int] | None = None) -> Prediction:
        """The :class:`Prediction` of one image, with its stage times; ``drivable``: class
        indices whose summed probability is the result's ``drivable`` map (see
        :mod:`pixelwise.drivable`)."""
        image = check_rgb(image)
        drivable = None if drivable is None else tuple(int(index) for index in drivable)
        class_maps, probability_maps, drivable_maps, timings = self._run_batch(
            image[None], probabilities, drivable)
        return Prediction(class_maps[0],
                          None if probability_maps is None else probability_maps[0], timings,
                          None if drivable_maps is None else drivable_maps[0])

    def stream(self, frames: Iterable, *, probabilities: bool = False,
               drivable: Sequence[int] | None = None) -> Iterator[Prediction]:
        """A :class:`Prediction` for each frame of ``frames`` (any iterable of RGB images:
        a generator of arrays, ``pixelwise.video.open_source(...)``), computed as each
        frame arrives; its ``decode`` time is how long the frame took to arrive."""
        frames = iter(frames)
        while True:
            start = time.perf_counter()
            try:
                frame = next(frames)
            except StopIteration:
                return
            waited = 1000.0 * (time.perf_counter() - start)
            result = self.segment(frame, probabilities=probabilities, drivable=drivable)
            result.timings_ms.update(decode=waited)
            yield result

    # ------------------------------------------------------------------ the three stages

    def _run_batch(self, images: np.ndarray, probabilities: bool,
                   drivable: tuple[int, ...] | None = None):
        """(class maps, probabilities or None, drivable maps or None, stage times) of
        same-size images."""
        images = check_rgb(images, batched=True)
        if np.dtype(self.pixel_dtype) == np.uint8:
            images = as_uint8_images(images, batched=True)
        start = time.perf_counter()
        fitting = self.fitting(images.shape[1:3])
        canvases = fit_images(images, fitting, self.pixel_dtype)
        fitted = time.perf_counter()
        scores, probability_maps, drivable_maps = self._forward_outputs(
            canvases, probabilities, drivable)
        inferred = time.perf_counter()
        if (not probabilities and scores.ndim == 4 and self.fit_mode == "pad"
                and fitting.inner_size != fitting.image_size):
            # Scaled down for memory: bring back the class map, not every class's scores.
            scores = class_map_of(scores)
        if probability_maps is scores:
            probability_maps = scores = map_back(scores, fitting)
        else:
            scores = map_back(scores, fitting)
            if probability_maps is not None:
                probability_maps = map_back(probability_maps, fitting)
        if scores.ndim == 4:
            class_maps = class_map_of(scores)
        else:
            class_maps = scores.astype(np.int32, copy=False)
        if drivable_maps is not None:  # a float map: resized bilinear, as probabilities
            drivable_maps = map_back(np.asarray(drivable_maps, np.float32)[..., None],
                                     fitting)[..., 0]
        done = time.perf_counter()
        timings = {"preprocess": 1000.0 * (fitted - start),
                   "inference": 1000.0 * (inferred - fitted),
                   "postprocess": 1000.0 * (done - inferred)}
        if probability_maps is not None:
            probability_maps = probability_maps.astype(np.float32, copy=False)
        return class_maps, probability_maps, drivable_maps, timings

    # ------------------------------------------------------------------ opening a model

    # Each model form says which paths it opens (``opens``) and how (``open``); a form
    # registers itself by subclassing, so this module needs none of them imported.
    _forms: list[type["Segmenter"]] = []

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "opens" in cls.__dict__:
            Segmenter._forms.append(cls)

    @classmethod
    def opens(cls, path: Path) -> bool:
        """Whether ``path`` holds a model of this form."""
        return False

    @classmethod
    def open(cls, path: Path, **options) -> "Segmenter":
        """The segmenter of the model at ``path`` (a path ``opens`` accepts)."""
        return cls(path, **options)

    @staticmethod
    def from_path(path: str | Path, *, kind: str | None = None, **options) -> "Segmenter":
        """The segmenter of a run folder, a ``.keras`` file, a SavedModel folder (from
        ``pixelwise export --format saved_model``), a ``.tflite`` file or a registered
        model's name (``pixelwise model list``; see :mod:`pixelwise.zoo`).

        ``kind``: for a name, which of its files runs: "keras", "tflite", or None for its
        .keras (its .tflite where it ships no .keras). ``options`` go to the form's
        constructor: ``fit_mode``, ``input_size``; Keras: ``scales``, ``flip``,
        ``jit_compile``, ``input_multiple``, ``spec``; TFLite: ``num_threads``.
        """
        from pixelwise.zoo import resolve_model_path

        path = resolve_model_path(path, kind)
        for form in Segmenter._forms:
            if form.opens(path):
                return form.open(path, **options)
        what = "no such file or folder" if not path.exists() else "not a model pixelwise reads"
        raise FileNotFoundError(f"{path}: {what}; give a run folder, a .keras file, a "
                                f"SavedModel folder (pixelwise export --format saved_model), "
                                f"a .tflite file or a model name")


__all__ = ["Prediction", "Segmenter"]
