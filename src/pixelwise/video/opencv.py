"""OpenCV, imported on first use: video decoding and encoding (its wheel ships FFmpeg).

It is an optional extra, so everything that needs it calls :func:`opencv`, which says how
to install it when it is missing.
"""

from __future__ import annotations

EXTRA_HINT = "pip install 'pixelwise[video]'"


def opencv():
    """The ``cv2`` module, with its own log lines silenced (errors are ours to report)."""
    try:
        import cv2
    except ImportError as error:
        raise ImportError(f"videos and cameras need OpenCV, which is not installed: "
                          f"{EXTRA_HINT}") from error
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # builds without the logging module
        pass
    return cv2


__all__ = ["EXTRA_HINT", "opencv"]
