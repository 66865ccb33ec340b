"""The streaming loop: frames in, results out; and a video's outputs written as it goes.

    for result in segment_frames(segmenter, open_video("drive.mp4"), drivable=(0, 3),
                                 safety=0.7, smooth=0.5):
        plan(result.prediction.drivable, result.drivable_mask)    # per frame, as it comes

    run_video(segmenter, open_video("drive.mp4"), "out/", "drive", class_maps="npz")
    # out/drive_overlay.mp4, out/drive_classes.npz, out/drive_timings.json

Any iterable of uint8 RGB frames is a source: a video, a camera, a generator of arrays.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pixelwise.drivable import DEFAULT_SAFETY, check_safety, drivable_mask, drivable_probability
from pixelwise.inference.imaging import class_map_of
from pixelwise.inference.segmenter import Prediction, Segmenter
from pixelwise.smoothing import FlickerMeter, ProbabilitySmoother
from pixelwise.video.drawing import annotated_overlay
from pixelwise.video.sources import prefetched
from pixelwise.video.timing import TimingLog, summary_line, write_summary
from pixelwise.video.writer import FrameMaps, OverlayVideo


@dataclass(frozen=True)
class FrameResult:
    """One frame of a stream: its index, the frame, the :class:`Prediction` (smoothed when
    asked) and the drivable mask (when drivable classes were given)."""

    index: int
    frame: np.ndarray
    prediction: Prediction
    drivable_mask: np.ndarray | None = None


class _Remembered:
    """Iterates ``frames`` and keeps the latest one (the one the segmenter is on)."""

    def __init__(self, frames: Iterable) -> None:
        self._frames = iter(frames)
        self.latest = None

    def __iter__(self):
        return self

    def __next__(self):
        self.latest = next(self._frames)
        return self.latest

    def close(self) -> None:
        """Close the frames' iterator where it has a ``close`` (stops a reader thread)."""
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()


def segment_frames(segmenter: Segmenter, frames: Iterable, *,
                   drivable: Sequence[int] | None = None, safety: float = DEFAULT_SAFETY,
                   smooth: float | None = None, probabilities: bool = False,
                   prefetch: bool = True) -> Iterator[FrameResult]:
    """A :class:`FrameResult` per frame of ``frames``, computed as frames arrive.

    Args:
        segmenter: the model (:class:`~pixelwise.inference.Segmenter`, any form).
        frames: uint8 RGB frames [H, W, 3] (a video, a camera, any iterable).
        drivable: class indices whose summed probability is the drivable probability; the
            mask holds the pixels where it reaches ``safety`` (higher: more cautious).
        smooth: exponential moving average of the probabilities across frames, the
            newest frame's weight (:class:`pixelwise.smoothing.ProbabilitySmoother`);
            the class map is the argmax of the average. None: no smoothing.
        probabilities: keep each frame's probabilities (smoothed when smoothing).
        prefetch: decode ahead in a reader thread (:func:`pixelwise.video.prefetched`).
    """
    drivable = None if drivable is None else tuple(int(index) for index in drivable)
    safety = check_safety(safety)
    smoother = None if smooth is None else ProbabilitySmoother(smooth)
    remembered = _Remembered(prefetched(frames) if prefetch else frames)
    stream = segmenter.stream(remembered, probabilities=probabilities or smoother is not None,
                              drivable=None if smoother is not None else drivable)
    try:
        for index, prediction in enumerate(stream):
            start = time.perf_counter()
            if smoother is not None:
                smoothed = smoother.update(prediction.probabilities)
                prediction = replace(
                    prediction, class_map=class_map_of(smoothed),
                    probabilities=smoothed.copy() if probabilities else None,
                    drivable=None if drivable is None else drivable_probability(smoothed, drivable))
            mask = None if prediction.drivable is None else drivable_mask(prediction.drivable, safety)
            prediction.timings_ms["postprocess"] += 1000.0 * (time.perf_counter() - start)
            yield FrameResult(index, remembered.latest, prediction, mask)
    finally:
        stream.close()
        remembered.close()


@dataclass
class VideoResult:
    """What :func:`run_video` wrote and measured."""

    overlay_path: Path | None
    map_paths: list[Path] = field(default_factory=list)
    timings_path: Path | None = None
    summary: dict = field(default_factory=dict)
    interrupted: bool = False

    @property
    def paths(self) -> list[Path]:
        """Every file or folder written."""
        return [path for path in (self.overlay_path, *self.map_paths, self.timings_path)
                if path is not None]


def output_paths(out_dir: Path, stem: str, *, class_maps: str | None,
                 drivable: bool) -> list[Path]:
    """The paths :func:`run_video` writes for ``stem`` (to check them before starting)."""
    paths = [out_dir / f"{stem}_overlay.mp4", out_dir / f"{stem}_timings.json"]
    if class_maps is not None or drivable:
        suffix = ".npz" if (class_maps or "npz") == "npz" else ""
        if class_maps is not None:
            paths.append(out_dir / f"{stem}_classes{suffix}")
        if drivable:
            paths.append(out_dir / f"{stem}_drivable{suffix}")
    return paths


def run_video(segmenter: Segmenter, source, out_dir: str | Path, stem: str, *,
              class_maps: str | None = None, drivable: Sequence[int] | None = None,
              safety: float = DEFAULT_SAFETY, smooth: float | None = None,
              max_frames: int | None = None, prefetch: bool = True, window=None,
              progress: bool = True, echo: Callable[[str], None] = print) -> VideoResult:
    """Segment every frame of ``source`` and write ``out_dir/STEM_overlay.mp4`` (the
    source's frame rate and frame size; colours, legend, drivable border), on request the
    class maps and drivable space (``class_maps``: "npz" or "png"; drivable ones follow
    that format, npz by default; see :class:`pixelwise.video.FrameMaps`), and
    ``STEM_timings.json`` (:mod:`pixelwise.video.timing`, with the flicker).

    ``source``: a :class:`pixelwise.video.FrameSource` (its ``info`` gives the frame rate
    and count) or any iterable of frames (25 frames/s). ``max_frames`` stops after that
    many; ``window`` (:class:`pixelwise.video.Window`) shows each overlay, and q stops.
    Ctrl-C stops cleanly: the outputs keep the frames written. Any other error closes the
    outputs (valid, with the frames before it) and is raised.
    """
    out_dir = Path(out_dir)
    info = getattr(source, "info", None)
    frame_rate = info.frame_rate if info is not None else 25.0
    total = info.frame_count if info is not None else None
    if max_frames is not None:
        total = max_frames if total is None else min(total, max_frames)
    frames = itertools.islice(source, max_frames) if max_frames is not None else source
    maps = None
    if class_maps is not None or drivable is not None:
        maps = FrameMaps(out_dir, stem, class_maps or "npz", segmenter.spec,
                         class_maps=class_maps is not None, drivable=drivable is not None)
    results = segment_frames(segmenter, frames, drivable=drivable, safety=safety,
                             smooth=smooth, prefetch=prefetch)
    video, log, flicker = None, TimingLog(), FlickerMeter()
    result = VideoResult(None)
    bar = tqdm(total=total, unit="frame", desc=stem, disable=not progress)
    try:
        for frame_result in results:
            start = time.perf_counter()
            prediction = frame_result.prediction
            picture = annotated_overlay(frame_result.frame, prediction.class_map,
                                        segmenter.spec, drivable_mask=frame_result.drivable_mask,
                                        safety=safety if drivable is not None else None)
            if video is None:
                video = OverlayVideo(out_dir / f"{stem}_overlay.mp4", frame_rate,
                                     picture.shape[:2])
            video.write(picture)
            if maps is not None:
                maps.write(frame_result.index, prediction.class_map, prediction.drivable,
                           frame_result.drivable_mask)
            flicker.update(prediction.class_map)
            keep_going = window is None or window.show(picture)
            log.add({**prediction.timings_ms, "output": 1000.0 * (time.perf_counter() - start)})
            bar.update()
            if not keep_going:
                break
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        results.close()
        bar.close()
        result.overlay_path = video.close() if video is not None else None
        result.map_paths = maps.close() if maps is not None else []
    result.summary = {**log.summary(), "flicker": flicker.value, "smooth": smooth,
                      "interrupted": result.interrupted}
    result.timings_path = write_summary(out_dir / f"{stem}_timings.json", result.summary)
    stopped = " (stopped by Ctrl-C; kept what was written)" if result.interrupted else ""
    echo(f"{stem}: {summary_line(result.summary)}{stopped}")
    return result


__all__ = ["FrameResult", "VideoResult", "output_paths", "run_video", "segment_frames"]
