"""A SavedModel from ``pixelwise export --format saved_model`` as a Segmenter.

Its ``serving_default`` signature takes uint8 RGB batches of any size and pads them to
the model's stride inside the graph, so images go in as they are ("pad", the default);
``probabilities`` are there when it was exported with them (``--probabilities``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pixelwise.data.spec import SPEC_FILENAME, DatasetSpec
from pixelwise.inference.formats import (
    CLASS_MAP_NAME,
    INPUT_NAME,
    METADATA_SIGNATURE,
    PROBABILITIES_NAME,
    SERVING_SIGNATURE,
)
from pixelwise.inference.imaging import DEFAULT_MAX_PIXELS
from pixelwise.inference.segmenter import Segmenter


def read_saved_model_spec(path: str | Path) -> DatasetSpec:
    """The dataset description in a SavedModel's assets (without loading the model)."""
    spec_path = Path(path) / "assets" / SPEC_FILENAME
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path}: missing; {path} is not a SavedModel written by "
                                f"`pixelwise export --format saved_model`")
    return DatasetSpec.load(spec_path)


class SavedModelSegmenter(Segmenter):
    """A SavedModel from ``pixelwise.export.export_saved_model``, loaded with TensorFlow.

    ``spec`` and ``export_info`` come from the SavedModel's ``metadata`` signature.
    ``fit_mode``: "pad" (default: the graph pads each batch to its stride) or "resize" /
    "letterbox" to ``input_size``.
    """

    @classmethod
    def opens(cls, path: Path) -> bool:
        return path.is_dir() and (path / "saved_model.pb").is_file()

    def __init__(self, path: str | Path, *, fit_mode: str = "pad",
                 input_size: Sequence[int] | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
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
        spec = DatasetSpec.from_dict(json.loads(constants["dataset_spec"].numpy()),
                                     source=str(self.path))
        self.export_info = json.loads(constants["export_info"].numpy())
        # The graph pads to the stride itself (with the exact mean colour): no padding here.
        super().__init__(spec, fit_mode=fit_mode, input_size=input_size, input_multiple=1,
                         max_pixels=max_pixels)

    def describe(self) -> str:
        return f"SavedModel {self.path}"

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The serving signature's outputs (NumPy) for uint8 images [B, H, W, 3]."""
        import tensorflow as tf

        outputs = self._serve(**{INPUT_NAME: tf.constant(images)})
        return {name: value.numpy() for name, value in outputs.items()}

    def _forward(self, canvases: np.ndarray) -> np.ndarray:
        return self.outputs(canvases)[CLASS_MAP_NAME]

    def _forward_probabilities(self, canvases: np.ndarray) -> np.ndarray:
        if PROBABILITIES_NAME not in self.export_info.get("outputs", ()):
            raise ValueError(f"{self.path}: exported without probabilities; export it again "
                             f"with `pixelwise export RUN --format saved_model --probabilities`")
        return self.outputs(canvases)[PROBABILITIES_NAME]


__all__ = ["SavedModelSegmenter", "read_saved_model_spec"]
