"""Per-frame timings of a stream and their summary: frames/s, median and 95th-percentile
latency, and the median of each stage.

A frame's latency is the sum of its stages: ``decode`` (the wait for the frame: near zero
when a reader thread decodes ahead), ``preprocess``, ``inference``, ``postprocess`` (which
includes smoothing and the drivable mask) and ``output`` (drawing and writing). Frames/s is
end to end: frames over the wall time from the first frame asked for to the last written.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from pixelwise.io import write_json_atomically

STAGES = ("decode", "preprocess", "inference", "postprocess", "output")


class TimingLog:
    """Collects each frame's stage times (ms) and the wall time of the whole stream."""

    def __init__(self) -> None:
        self.frames: list[dict[str, float]] = []
        self._start = time.perf_counter()
        self._end: float | None = None

    def add(self, timings_ms: dict[str, float]) -> None:
        """Record one frame's stage times."""
        self.frames.append({stage: float(timings_ms.get(stage, 0.0)) for stage in STAGES})
        self._end = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Wall time from the start to the last frame recorded."""
        return (self._end or time.perf_counter()) - self._start

    def summary(self) -> dict:
        """frames, seconds, frames_per_second, latency_ms {median, p95} and the median of
        each stage (stage_median_ms)."""
        count = len(self.frames)
        if not count:
            return {"frames": 0, "seconds": round(self.seconds, 4), "frames_per_second": None,
                    "latency_ms": None, "stage_median_ms": None}
        stages = np.array([[frame[stage] for stage in STAGES] for frame in self.frames])
        latency = stages.sum(axis=1)
        return {"frames": count, "seconds": round(self.seconds, 4),
                "frames_per_second": round(count / self.seconds, 3) if self.seconds > 0 else None,
                "latency_ms": {"median": round(float(np.median(latency)), 3),
                               "p95": round(float(np.percentile(latency, 95)), 3)},
                "stage_median_ms": {stage: round(float(np.median(stages[:, column])), 3)
                                    for column, stage in enumerate(STAGES)}}


def summary_line(summary: dict) -> str:
    """``N frames, F frames/s, latency median M ms, p95 P ms`` for printing."""
    if not summary["frames"]:
        return "0 frames"
    latency = summary["latency_ms"]
    return (f"{summary['frames']} frames, {summary['frames_per_second']:.2f} frames/s, "
            f"latency median {latency['median']:.1f} ms, p95 {latency['p95']:.1f} ms")


def write_summary(path: str | Path, summary: dict) -> Path:
    """Write ``summary`` as JSON at ``path``."""
    write_json_atomically(path, summary)
    return Path(path)


__all__ = ["STAGES", "TimingLog", "summary_line", "write_summary"]
