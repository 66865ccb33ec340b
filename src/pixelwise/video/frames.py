"""Still frames from videos, to label: every half second (or every N frames) of each video.

    results = extract_frames(["drive.mp4", "park.mp4"], "myset/", every="0.5s", max_frames=40)
    # myset/drive_t000000.000.jpg, myset/drive_t000000.500.jpg, ..., myset/park_t000000.000.jpg

Names say the video and the time: ``STEM_tSSSSSS.mmm`` (seconds with milliseconds, zero
padded, so names sort by video, then time); :func:`parse_frame_name` reads them back. A
frame's time is its index over the video's frame rate (what its container declares), so a
rerun picks the same frames, writes the same names and skips those already there: an
interrupted extraction resumes. Frames are written atomically (:mod:`pixelwise.io`), as
JPEG (quality 95) or PNG.

Which frames: with a step in seconds, the first frame at or after ``start``, ``start +
every``, ``start + 2 * every``, ...; with a step in frames (``"15f"``), every N-th frame
from the first at or after ``start``. ``end`` (inclusive) stops early; ``max_frames``
bounds the frames of each video (those already present count).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pixelwise.io import parse_duration, write_atomically
from pixelwise.video.sources import open_video

FRAME_FORMATS = {"jpg": "JPEG", "png": "PNG"}  # file suffix -> Pillow's format name
JPEG_QUALITY = 95
NAME_PATTERN = re.compile(r"^(?P<video>.+)_t(?P<seconds>\d{6,}\.\d{3})$")
TIME_TOLERANCE = 0.0005  # seconds: half the names' resolution, against rounding of index/rate


@dataclass(frozen=True)
class FrameStep:
    """How far apart the frames are: ``value`` seconds (``unit`` "s") or ``value`` frames
    (``unit`` "f")."""

    value: float
    unit: str

    def __str__(self) -> str:
        return f"{int(self.value)}f" if self.unit == "f" else f"{self.value:g}s"


def parse_every(text: str | FrameStep) -> FrameStep:
    """``"0.5s"``, ``"2"`` (seconds), ``"1m"`` -> a step in seconds; ``"15f"`` -> every 15th
    frame. Raises ValueError naming the text for anything else."""
    if isinstance(text, FrameStep):
        return text
    cleaned = str(text).strip().lower()
    if cleaned.endswith("f"):
        count = cleaned[:-1].strip()
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--every {text!r}: a step in frames is a whole number of at "
                             f"least 1 before the f, e.g. 15f")
        return FrameStep(float(int(count)), "f")
    return FrameStep(parse_duration(cleaned, what="--every"), "s")


def frame_name(video_stem: str, seconds: float) -> str:
    """The stem of the frame of ``video_stem`` at ``seconds``: ``drive_t000012.500``."""
    return f"{video_stem}_t{seconds:010.3f}"


def parse_frame_name(name: str) -> tuple[str, float] | None:
    """(video stem, seconds) of a frame name or file name :func:`frame_name` made
    (``drive_t000012.500.jpg`` -> ("drive", 12.5)); None for any other name."""
    stem = Path(name).name
    for suffix in FRAME_FORMATS:
        if stem.lower().endswith("." + suffix):
            stem = stem[: -len(suffix) - 1]
    match = NAME_PATTERN.match(stem)
    if match is None:
        return None
    return match["video"], float(match["seconds"])


def chosen_frames(frames: Iterable[np.ndarray], frame_rate: float, step: FrameStep, *,
                  start: float = 0.0,
                  end: float | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds, frame) of the frames ``step`` chooses (see the module docstring) from a
    video's ``frames`` at ``frame_rate`` frames per second."""
    next_due = start
    first_index = None
    for index, frame in enumerate(frames):
        seconds = index / frame_rate
        if seconds < start - TIME_TOLERANCE:
            continue
        if end is not None and seconds > end + TIME_TOLERANCE:
            return
        if step.unit == "f":
            first_index = index if first_index is None else first_index
            if (index - first_index) % int(step.value) == 0:
                yield seconds, frame
        elif seconds >= next_due - TIME_TOLERANCE:
            yield seconds, frame
            steps_past = math.floor((seconds - start + TIME_TOLERANCE) / step.value)
            next_due = start + (steps_past + 1) * step.value


@dataclass(frozen=True)
class VideoFrames:
    """What :func:`extract_frames` did with one video.

    Attributes:
        video: the video file.
        frame_rate: its frames per second (the times in the names are index / this).
        files: the chosen frames' files, in time order (written now or already there).
        written: how many of them were written now.
        note: a problem after some frames (a truncated file), or None.
    """

    video: Path
    frame_rate: float
    files: tuple[Path, ...]
    written: int
    note: str | None = None

    @property
    def kept(self) -> int:
        """Chosen frames already present from an earlier run (not written again)."""
        return len(self.files) - self.written

    def summary(self) -> str:
        """One line: the video, its frames and where they are."""
        where = self.files[0].parent if self.files else "-"
        line = (f"{self.video}: {len(self.files)} frame(s) ({self.written} written, "
                f"{self.kept} already there) at {self.frame_rate:g} frames/s -> {where}")
        return line + (f"; {self.note}" if self.note else "")


def check_videos(videos: Sequence[str | Path]) -> list[Path]:
    """The videos as paths, each opened once, so a missing or undecodable one (ValueError
    or FileNotFoundError naming it) stops the command before anything is written; two
    videos with the same stem (their frames' names would clash) raise ValueError."""
    if not videos:
        raise ValueError("no videos given")
    paths = list({Path(video).resolve(): Path(video) for video in videos}.values())
    stems: dict[str, Path] = {}
    for path in paths:
        if path.stem in stems:
            raise ValueError(f"{stems[path.stem]} and {path}: two videos named "
                             f"{path.stem!r} would give frames the same names; rename one")
        stems[path.stem] = path
        open_video(path).close()
    return paths


def until_broken(frames: Iterator, breakage: list[str]) -> Iterator:
    """``frames`` until the reader's ValueError (a truncated video), whose message is
    appended to ``breakage``; the frames before it still count."""
    try:
        yield from frames
    except ValueError as error:
        breakage.append(str(error))


def save_frame(path: Path, frame: np.ndarray) -> None:
    """Write an RGB frame as the format ``path``'s suffix names, atomically."""
    image_format = FRAME_FORMATS[path.suffix.lstrip(".")]
    options = {"quality": JPEG_QUALITY} if image_format == "JPEG" else {}
    write_atomically(path, lambda temporary: Image.fromarray(frame).save(
        temporary, format=image_format, **options))


def extract_video_frames(video: str | Path, out_dir: str | Path, step: FrameStep, *,
                         max_frames: int | None = None, start: float = 0.0,
                         end: float | None = None, image_format: str = "jpg") -> VideoFrames:
    """The frames of one video that ``step`` chooses, as files in ``out_dir`` (see
    :func:`extract_frames`). A video without a single decodable frame raises ValueError
    naming it; one that breaks off later keeps the frames before and says so in ``note``."""
    out_dir = Path(out_dir)
    files: list[Path] = []
    written, breakage = 0, []
    with open_video(video) as source:
        chosen = until_broken(chosen_frames(source, source.info.frame_rate, step,
                                            start=start, end=end), breakage)
        for seconds, frame in chosen:
            path = out_dir / f"{frame_name(Path(video).stem, seconds)}.{image_format}"
            if not path.is_file():
                save_frame(path, frame)
                written += 1
            files.append(path)
            if max_frames is not None and len(files) >= max_frames:
                break
        chosen.close()
        if source.frames_read == 0:
            raise ValueError(f"{video}: no frames (an empty or undecodable video)")
        note = breakage[0].removeprefix(f"{source.name}: ") if breakage else None
        return VideoFrames(Path(video), source.info.frame_rate, tuple(files), written, note)


def extract_frames(videos: Sequence[str | Path], out_dir: str | Path, *,
                   every: str | FrameStep = "1s", max_frames: int | None = None,
                   start: float = 0.0, end: float | None = None, image_format: str = "jpg",
                   on_video: Callable[[VideoFrames], None] | None = None) -> list[VideoFrames]:
    """Still frames of each video as ``out_dir/STEM_tSSSSSS.mmm.jpg`` (see the module
    docstring); rerun, it writes only the frames not already there.

    Args:
        videos: video files (any FFmpeg reads: .mp4, .avi, .mov, .mkv, ...).
        out_dir: the folder the frames go to (created).
        every: the step between frames: seconds (``"0.5s"``, ``"2"``, ``"1m"``) or frames
            (``"15f"``); a :class:`FrameStep`.
        max_frames: the most frames of each video (None: all the step chooses).
        start: seconds into each video of the first frame.
        end: seconds into each video past which no frame is taken (None: its end).
        image_format: "jpg" (quality 95) or "png".
        on_video: called with each video's :class:`VideoFrames` as it is done.

    Every video is opened before any frame is written: a missing or undecodable one
    raises ValueError or FileNotFoundError naming it.
    """
    step = parse_every(every)
    if image_format not in FRAME_FORMATS:
        raise ValueError(f"image format {image_format!r}: choose one of "
                         f"{', '.join(FRAME_FORMATS)}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"start {start:g} s and end {end} s: need 0 <= start <= end")
    results = []
    for video in check_videos(videos):
        result = extract_video_frames(video, out_dir, step, max_frames=max_frames,
                                      start=start, end=end, image_format=image_format)
        if on_video is not None:
            on_video(result)
        results.append(result)
    return results


__all__ = ["FRAME_FORMATS", "FrameStep", "JPEG_QUALITY", "VideoFrames", "check_videos",
           "chosen_frames", "extract_frames", "extract_video_frames", "frame_name",
           "parse_every", "parse_frame_name", "save_frame", "until_broken"]
