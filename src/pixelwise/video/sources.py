"""Frame sources: video files and cameras as iterables of uint8 RGB frames [H, W, 3].

    source = open_video("drive.mp4")          # or open_camera(0), open_camera("rtsp://...")
    source.info                                # frame rate, frame count (None: live), size
    for frame in prefetched(source):           # a reader thread decodes ahead
        ...

A video that cannot be opened, or that ends before the frame count its container
declares (a truncated or damaged file), raises ValueError naming the file; a camera that
cannot be opened raises OSError naming it. Decoding is FFmpeg's, through OpenCV
(:mod:`pixelwise.video.opencv`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixelwise.video.opencv import opencv

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
DEFAULT_CAMERA_RATE = 30.0  # frames/s when a camera does not say
PREFETCH_FRAMES = 4


def is_video(path: str | Path) -> bool:
    """Whether ``path`` names a video file by its suffix (``VIDEO_SUFFIXES``)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    """What a source says about its frames: frames per second, how many (None: live or
    unknown) and their (height, width)."""

    frame_rate: float
    frame_count: int | None
    size: tuple[int, int]


class FrameSource:
    """Frames from an OpenCV capture: a video file or a camera (see the module docstring).

    Iterating reads frames from where the last iteration stopped; ``frames_read`` counts
    them. ``close`` releases the capture (also at the end of a ``with`` block).
    """

    def __init__(self, capture, name: str, *, live: bool) -> None:
        cv2 = opencv()
        self.name = name
        self.live = live
        self._capture = capture
        self.frames_read = 0
        rate = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        size = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
        self.info = VideoInfo(rate if rate > 0 else DEFAULT_CAMERA_RATE,
                              None if live or count <= 0 else count, size)

    def __iter__(self) -> Iterator[np.ndarray]:
        cv2 = opencv()
        while True:
            ok, frame = self._capture.read()
            if not ok:
                break
            self.frames_read += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        expected = self.info.frame_count
        if not self.live and expected is not None and self.frames_read < expected:
            raise ValueError(f"{self.name}: truncated or undecodable after frame "
                             f"{self.frames_read} of {expected}; the outputs hold the frames "
                             f"before it")

    def close(self) -> None:
        """Release the file or camera."""
        self._capture.release()

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_video(path: str | Path) -> FrameSource:
    """The frames of a video file; one FFmpeg cannot open raises ValueError naming it."""
    cv2 = opencv()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise ValueError(f"{path}: cannot decode it as a video (an unknown codec, a damaged "
                         f"file, or not a video)")
    return FrameSource(capture, str(path), live=False)


def camera_name(camera: str | int) -> str:
    """A file-name stem for a camera: ``camera0``, ``video2`` (/dev/video2), ``stream``
    (a URL)."""
    text = str(camera)
    if text.isdigit():
        return f"camera{text}"
    if "://" in text:
        return "stream"
    return Path(text).stem or "camera"


def open_camera(camera: str | int) -> FrameSource:
    """Live frames from a camera index (``0``), a device path (``/dev/video0``), a stream
    URL or a video file played as if live; one that cannot be opened raises OSError."""
    cv2 = opencv()
    text = str(camera)
    capture = cv2.VideoCapture(int(text) if text.isdigit() else text)
    if not capture.isOpened():
        capture.release()
        raise OSError(f"camera {text}: cannot be opened (no such device, busy, or an "
                      f"unreachable stream)")
    return FrameSource(capture, f"camera {text}", live=True)


def prefetched(frames: Iterable, depth: int = PREFETCH_FRAMES) -> Iterator:
    """``frames`` read ahead by a thread into a queue of ``depth`` items, so decoding
    overlaps the model (OpenCV and TensorFlow release the GIL while they work). An error
    in the reader is raised here, after the frames before it; closing the iterator stops
    the reader."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for frame in frames:
                if not put((frame, None)):
                    return
        except BaseException as error:  # handed to the consumer, who raises it
            put((done, error))
            return
        put((done, None))

    reader = threading.Thread(target=read, name="pixelwise-frame-reader", daemon=True)
    reader.start()
    try:
        while True:
            item, error = items.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        reader.join(timeout=5)


__all__ = ["DEFAULT_CAMERA_RATE", "FrameSource", "PREFETCH_FRAMES", "VIDEO_SUFFIXES",
           "VideoInfo", "camera_name", "is_video", "open_camera", "open_video", "prefetched"]
