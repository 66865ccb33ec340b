"""Drivable space for the planner: which pixels the toy may drive on, and how sure.

    classes = drivable_classes(spec, "road,pavement")        # class indices, checked
    probability = drivable_probability(probabilities, classes)   # float32 [H, W] in 0..1
    mask = drivable_mask(probability, safety=0.7)                 # bool [H, W]

The probability that a pixel is drivable is the sum of the chosen classes' softmax
probabilities. The mask holds the pixels whose probability reaches ``safety``: a higher
safety is more cautious (fewer pixels count as drivable: the model must be surer), a
lower one more adventurous. ``outline`` marks the mask's border for drawing on overlays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pixelwise.data.spec import DatasetSpec

DEFAULT_SAFETY = 0.5
OUTLINE_COLOR = (0, 255, 0)


def drivable_classes(spec: DatasetSpec, names: str | Sequence[str]) -> tuple[int, ...]:
    """The class indices of ``names`` (a comma-separated string or a list of class names).

    A name the dataset does not have raises ValueError naming it and listing the classes.
    """
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",")]
    names = [name for name in names if name]
    if not names:
        raise ValueError("drivable classes: none given; name classes, e.g. road,pavement")
    indices = []
    for name in names:
        if name not in spec.class_names:
            raise ValueError(f"drivable class {name!r} is not a class of this model "
                             f"({', '.join(spec.class_names)})")
        index = spec.class_names.index(name)
        if index not in indices:
            indices.append(index)
    return tuple(indices)


def check_safety(safety: float) -> float:
    """``safety`` as a float, refused unless it lies in 0..1."""
    safety = float(safety)
    if not 0.0 <= safety <= 1.0:
        raise ValueError(f"safety {safety}: a probability threshold between 0 and 1 "
                         f"(higher is more cautious)")
    return safety


def drivable_probability(probabilities: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """float32 [..., H, W]: the sum of ``classes``' probabilities ([..., H, W, C])."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    return probabilities[..., list(classes)].sum(axis=-1, dtype=np.float32)


def drivable_mask(probability: np.ndarray, safety: float = DEFAULT_SAFETY) -> np.ndarray:
    """bool mask: the pixels whose drivable probability is at least ``safety``."""
    return np.asarray(probability) >= check_safety(safety)


def outline(mask: np.ndarray) -> np.ndarray:
    """bool [H, W]: the pixels of ``mask`` that touch a pixel outside it (4-neighbours;
    the image's edge does not count as outside)."""
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1, mode="edge")
    inner = (padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask & ~inner


def draw_drivable(picture: np.ndarray, mask: np.ndarray,
                  color: Sequence[int] = OUTLINE_COLOR) -> np.ndarray:
    """A copy of the RGB ``picture`` with the border of the drivable ``mask`` in ``color``."""
    drawn = np.array(picture, dtype=np.uint8, copy=True)
    drawn[outline(mask)] = np.asarray(color, dtype=np.uint8)
    return drawn


__all__ = ["DEFAULT_SAFETY", "OUTLINE_COLOR", "check_safety", "draw_drivable",
           "drivable_classes", "drivable_mask", "drivable_probability", "outline"]
