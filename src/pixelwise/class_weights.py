"""Dataset-level class weights for the weighted losses (``class_weights`` of
:func:`pixelwise.losses.build_loss`), from a training set's per-class pixel counts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def median_frequency_weights(class_pixel_counts: Sequence[int],
                             image_pixel_counts: Sequence[int] | None = None) -> np.ndarray:
    """Median-frequency balancing (Eigen & Fergus 2015): ``w_c = median(f) / f_c``.

    ``class_pixel_counts[c]``: labelled pixels of class ``c`` over the training set (the
    manifest's per-class counts). ``f_c`` is that count over all labelled pixels, or,
    when ``image_pixel_counts[c]`` (the labelled pixels of the images in which ``c``
    appears) is given, over that, as in the paper. The median is over the classes that
    occur; a class that never occurs gets weight 0. Returns float64 ``[C]``.
    """
    counts = np.asarray(class_pixel_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"class_pixel_counts must be one count per class, "
                         f"got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(f"class_pixel_counts must be non-negative counts, got {counts.tolist()}")
    present = counts > 0
    if not present.any():
        raise ValueError("class_pixel_counts are all zero: no labelled pixel to balance")
    if image_pixel_counts is None:
        denominators = np.full_like(counts, counts.sum())
    else:
        denominators = np.asarray(image_pixel_counts, dtype=np.float64)
        if denominators.shape != counts.shape:
            raise ValueError(f"image_pixel_counts has shape {denominators.shape}, "
                             f"class_pixel_counts {counts.shape}: give one of each per class")
        if np.any(denominators[present] < counts[present]):
            raise ValueError("image_pixel_counts[c] must be at least class_pixel_counts[c] "
                             "(the images holding class c hold all of its pixels)")
    frequencies = np.zeros_like(counts)
    frequencies[present] = counts[present] / denominators[present]
    weights = np.zeros_like(counts)
    weights[present] = np.median(frequencies[present]) / frequencies[present]
    return weights
