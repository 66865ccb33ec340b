"""Temporal smoothing of per-frame probabilities, and the flicker it is meant to reduce.

    smoother = ProbabilitySmoother(alpha=0.5)
    for probabilities in frames_probabilities:            # float [H, W, C] per frame
        smoothed = smoother.update(probabilities)
    flicker([class_map_0, class_map_1, ...])              # share of pixels that change class

Smoothing is an exponential moving average: ``smoothed_t = alpha * p_t + (1 - alpha) *
smoothed_{t-1}``, so ``alpha`` is the weight of the newest frame: 1 is no smoothing, lower
is steadier but slower to follow motion.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float, refused unless 0 < alpha <= 1."""
    alpha = float(alpha)
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"smoothing alpha {alpha}: the newest frame's weight, in (0, 1] "
                         f"(1: no smoothing)")
    return alpha


class ProbabilitySmoother:
    """Exponential moving average of probability maps over a stream of frames.

    A frame of another shape than the last (a new video) starts the average afresh.
    """

    def __init__(self, alpha: float) -> None:
        self.alpha = check_alpha(alpha)
        self._average: np.ndarray | None = None

    def update(self, probabilities: np.ndarray) -> np.ndarray:
        """The smoothed probabilities after this frame's (float32, same shape)."""
        probabilities = np.asarray(probabilities, dtype=np.float32)
        if self._average is None or self._average.shape != probabilities.shape:
            self._average = probabilities.copy()
        else:
            self._average = self.alpha * probabilities + (1.0 - self.alpha) * self._average
        return self._average

    def reset(self) -> None:
        """Forget the frames so far."""
        self._average = None


def changed_share(previous: np.ndarray, current: np.ndarray) -> float:
    """The share of pixels whose class differs between two class maps of the same size."""
    previous, current = np.asarray(previous), np.asarray(current)
    if previous.shape != current.shape:
        raise ValueError(f"class maps of different sizes: {previous.shape} and {current.shape}")
    return float(np.mean(previous != current)) if previous.size else 0.0


class FlickerMeter:
    """Accumulates :func:`changed_share` over consecutive frames of a stream."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None
        self._changed = 0
        self._pixels = 0

    def update(self, class_map: np.ndarray) -> None:
        """Count the pixels that changed class since the previous frame."""
        class_map = np.asarray(class_map)
        if self._previous is not None and self._previous.shape == class_map.shape:
            self._changed += int(np.count_nonzero(self._previous != class_map))
            self._pixels += class_map.size
        self._previous = class_map.copy()

    @property
    def value(self) -> float | None:
        """Share of pixels that changed class between consecutive frames (None: < 2 frames)."""
        return self._changed / self._pixels if self._pixels else None


def flicker(class_maps: Iterable[np.ndarray]) -> float | None:
    """The share of pixels that change class between consecutive frames, over all pairs
    of ``class_maps`` (None for fewer than two frames)."""
    meter = FlickerMeter()
    for class_map in class_maps:
        meter.update(class_map)
    return meter.value


__all__ = ["FlickerMeter", "ProbabilitySmoother", "changed_share", "check_alpha", "flicker"]
