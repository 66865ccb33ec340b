"""Inference: one :class:`Segmenter` over every model form pixelwise has.

    from pixelwise.inference import Segmenter

    segmenter = Segmenter.from_path("runs/voc")   # run folder, .keras, SavedModel, .tflite
    class_map = segmenter.predict(image)          # int32 [H, W], the image's own size
    probabilities = segmenter.probabilities(image)

Modules: ``segmenter`` (the interface and its three stages), ``imaging`` (fitting an image
to a model's input: pad to the stride, resize, letterbox; NumPy resizing; the argmax),
``keras_model`` (Keras models; multi-scale + flip averaging), ``saved_model`` and
``tflite`` (the exports of ``pixelwise.export``, read back), ``formats`` (the names both
sides agree on).
"""

from pixelwise.inference.imaging import (
    DEFAULT_MAX_PIXELS,
    FIT_MODES,
    Fitting,
    as_uint8_images,
    class_map_of,
    fit_images,
    map_back,
    plan_fitting,
    resize_bilinear,
    resize_nearest,
    resize_scores,
)
from pixelwise.inference.keras_model import (
    KerasSegmenter,
    average_probabilities,
    predict_probabilities,
)
from pixelwise.inference.saved_model import SavedModelSegmenter, read_saved_model_spec
from pixelwise.inference.segmenter import Prediction, Segmenter
from pixelwise.inference.tflite import (
    TFLiteSegmenter,
    make_interpreter,
    read_tflite_metadata,
    read_tflite_spec,
)

__all__ = ["DEFAULT_MAX_PIXELS", "FIT_MODES", "Fitting", "KerasSegmenter", "Prediction", "SavedModelSegmenter",
           "Segmenter", "TFLiteSegmenter", "as_uint8_images", "average_probabilities",
           "class_map_of", "fit_images", "make_interpreter", "map_back", "plan_fitting",
           "predict_probabilities", "read_saved_model_spec", "read_tflite_metadata",
           "read_tflite_spec", "resize_bilinear", "resize_nearest", "resize_scores"]
