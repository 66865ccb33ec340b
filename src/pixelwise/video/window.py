"""A live window for the camera loop, where a display and a windowing OpenCV exist."""

from __future__ import annotations

import os
import sys

import numpy as np

from pixelwise.video.opencv import opencv

QUIT_KEYS = (ord("q"), 27)  # q, Escape


class Window:
    """An OpenCV window showing RGB frames; ``show`` returns False once q or Escape is
    pressed."""

    def __init__(self, title: str) -> None:
        self.title = title
        opencv().namedWindow(title)

    def show(self, picture: np.ndarray) -> bool:
        cv2 = opencv()
        cv2.imshow(self.title, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        return (cv2.waitKey(1) & 0xFF) not in QUIT_KEYS

    def close(self) -> None:
        opencv().destroyWindow(self.title)


def open_window(title: str) -> Window | None:
    """A :class:`Window`, or None without a display (or with OpenCV's headless build,
    which has no windows): the caller then records without showing."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        return None
    try:
        return Window(title)
    except opencv().error:
        return None


__all__ = ["QUIT_KEYS", "Window", "open_window"]
