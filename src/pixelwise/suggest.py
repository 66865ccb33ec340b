"""Which frames to label next: the unlabelled frames the model is least sure of, spread out.

    suggestion = suggest_frames("runs/toy", "myset/", "suggest/", count=20,
                                labelled=["mydata/"])
    suggestion.picks        # the frames to label, most uncertain first
    # suggest/suggested.txt     the picks' file names, one a line, best first
    # suggest/suggested.csv     every frame scored: rank (picks only), file, score, video,
    #                           seconds, why it was passed over
    # suggest/contact_sheet.png the picks as thumbnails, captioned rank, score and name,
    #                           each with the model's uncertainty map beside it

Scores (each a mean over the frame's pixels, from the model's softmax probabilities p of
the C classes at each pixel; both lie in 0..1, higher is less sure):

- ``entropy``: the pixel's entropy -sum_c p_c ln p_c, divided by ln C (so 1 is uniform).
- ``margin``: 1 - (p1 - p2), p1 and p2 the pixel's two largest probabilities.

Spreading: frames are taken best score first (ties by name), passing over a frame that is

- within ``min_gap`` seconds of a frame already taken from the same video (the video and
  time come from the names ``pixelwise data frames`` writes, ``drive_t000012.500.jpg``;
  other names have no video and only the next rule applies), or
- a near-duplicate of a frame already taken: the mean absolute difference of their 16x16
  grey thumbnails (values 0..1) is under ``duplicate_threshold`` (0: no such check), so a
  parked toy's identical frames are not all picked,

until ``count`` are taken or no frame is left. Frames already labelled are not scored.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pixelwise.contact_sheet import Tile, contact_sheet
from pixelwise.inference import Segmenter
from pixelwise.io import write_atomically, write_text_atomically
from pixelwise.predict import read_image
from pixelwise.video.frames import parse_frame_name

SCORES = ("entropy", "margin")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
THUMBNAIL_SIDE = 16  # the grey thumbnails the near-duplicate check compares
DEFAULT_COUNT = 20
DEFAULT_MIN_GAP = 2.0
DEFAULT_DUPLICATE_THRESHOLD = 0.02
DEFAULT_BATCH_SIZE = 8
SUGGESTED_LIST = "suggested.txt"
SCORES_TABLE = "suggested.csv"
SHEET = "contact_sheet.png"


def uncertainty_maps(probabilities: np.ndarray, score: str) -> np.ndarray:
    """Per-pixel uncertainty in 0..1 (see the module docstring) of probabilities
    [..., H, W, C]: [..., H, W]."""
    probabilities = np.asarray(probabilities, np.float32)
    classes = probabilities.shape[-1]
    if score not in SCORES:
        raise ValueError(f"score {score!r}: choose one of {', '.join(SCORES)}")
    if classes < 2:
        return np.zeros(probabilities.shape[:-1], np.float32)
    if score == "entropy":
        logs = np.log(np.clip(probabilities, 1e-12, 1.0))
        return -np.sum(probabilities * logs, axis=-1) / np.float32(np.log(classes))
    top_two = np.partition(probabilities, classes - 2, axis=-1)[..., -2:]
    return 1.0 - (top_two[..., 1] - top_two[..., 0])


def grey_thumbnail(image: np.ndarray) -> np.ndarray:
    """float32 [16, 16] grey values in 0..1 of an RGB image (any size; squashed to square)."""
    grey = Image.fromarray(image).convert("L")
    small = grey.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255.0


def image_stem(name: str) -> str:
    """A frame's name without its folder and image suffix (``a/drive_t000001.500.jpg`` ->
    ``drive_t000001.500``; a dot that starts no image suffix stays)."""
    path = Path(name.strip())
    return path.stem if path.suffix.lower() in FRAME_SUFFIXES else path.name


@dataclass(frozen=True)
class ScoredFrame:
    """A frame, its score and its grey thumbnail (for the near-duplicate check)."""

    path: Path
    score: float
    thumbnail: np.ndarray

    @property
    def name(self) -> str:
        return image_stem(self.path.name)

    @property
    def video_time(self) -> tuple[str, float] | None:
        """(video stem, seconds) from the frame's name, or None for another name."""
        return parse_frame_name(self.name)


def list_frames(frames_dir: str | Path) -> list[Path]:
    """The images in ``frames_dir`` (not its sub-folders), by name. A missing folder, one
    without images, or two images of one name (``a.jpg``, ``a.png``) raise an error
    naming it."""
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        what = "not a folder" if frames_dir.exists() else "no such folder"
        raise FileNotFoundError(f"{frames_dir}: {what}; give the folder of frames")
    paths = sorted(path for path in frames_dir.iterdir()
                   if path.is_file() and path.suffix.lower() in FRAME_SUFFIXES)
    if not paths:
        raise ValueError(f"{frames_dir}: no frames in it ({', '.join(FRAME_SUFFIXES)})")
    seen: dict[str, Path] = {}
    for path in paths:
        stem = image_stem(path.name)
        if stem in seen:
            raise ValueError(f"{seen[stem]} and {path}: two frames named {stem!r}; keep one")
        seen[stem] = path
    return paths


def labelled_names(sources: Sequence[str | Path]) -> set[str]:
    """The names of frames already labelled: for a folder, the ``NAME.png`` in its
    ``SegmentationClass/`` (a dataset in the VOC layout); for a file, its lines (names or
    file names, one a line; blank lines and ``#`` comments skipped)."""
    names: set[str] = set()
    for source in sources:
        source = Path(source)
        if source.is_dir():
            labels = source / "SegmentationClass"
            if not labels.is_dir():
                raise FileNotFoundError(f"{source}: no SegmentationClass/ folder in it; give "
                                        f"a dataset folder in the VOC layout or a list file")
            names.update(image_stem(path.name) for path in labels.glob("*.png"))
        elif source.is_file():
            lines = source.read_text().splitlines()
            names.update(image_stem(line) for line in lines
                         if line.strip() and not line.lstrip().startswith("#"))
        else:
            raise FileNotFoundError(f"{source}: no such labelled dataset or list file")
    return names


def score_frames(segmenter: Segmenter, paths: Sequence[Path], *, score: str = "entropy",
                 batch_size: int = DEFAULT_BATCH_SIZE,
                 progress: bool = False) -> list[ScoredFrame]:
    """Each frame's score (the mean of :func:`uncertainty_maps`), in ``paths``' order.
    Frames are read ``batch_size`` at a time; those of one size run as one batch."""
    scored: list[ScoredFrame] = []
    starts = range(0, len(paths), batch_size)
    for start in tqdm(starts, desc="scoring", unit="batch", disable=not progress):
        batch = list(paths[start:start + batch_size])
        images = [read_image(path) for path in batch]
        scores = np.empty(len(batch), np.float64)
        for shape in dict.fromkeys(image.shape for image in images):
            members = [index for index, image in enumerate(images) if image.shape == shape]
            probabilities = segmenter.probabilities_batch(np.stack([images[index]
                                                                    for index in members]))
            maps = uncertainty_maps(probabilities, score)
            scores[members] = maps.reshape(len(members), -1).mean(axis=1)
        scored.extend(ScoredFrame(path, float(value), grey_thumbnail(image))
                      for path, value, image in zip(batch, scores, images))
    return scored


def ranked(frames: Sequence[ScoredFrame]) -> list[ScoredFrame]:
    """``frames`` best score first; ties by name."""
    return sorted(frames, key=lambda frame: (-frame.score, frame.name))


def passed_over_because(frame: ScoredFrame, picks: Sequence[ScoredFrame], min_gap: float,
                        duplicate_threshold: float) -> str | None:
    """Why ``frame`` may not join ``picks`` (see the module docstring), or None."""
    place = frame.video_time
    for pick in picks:
        pick_place = pick.video_time
        if (place is not None and pick_place is not None and place[0] == pick_place[0]
                and abs(place[1] - pick_place[1]) < min_gap):
            return f"within {min_gap:g} s of {pick.name}"
        if duplicate_threshold > 0:
            difference = float(np.mean(np.abs(frame.thumbnail - pick.thumbnail)))
            if difference < duplicate_threshold:
                return f"like {pick.name} (difference {difference:.4f})"
    return None


def spread_picks(frames: Sequence[ScoredFrame], count: int, *,
                 min_gap: float = DEFAULT_MIN_GAP,
                 duplicate_threshold: float = DEFAULT_DUPLICATE_THRESHOLD,
                 ) -> tuple[list[ScoredFrame], dict[str, str]]:
    """(the picks, best first; {name: why passed over}) of ``frames`` by the spreading
    rule of the module docstring. Frames below the last pick are in neither."""
    picks: list[ScoredFrame] = []
    passed_over: dict[str, str] = {}
    for frame in ranked(frames):
        if len(picks) >= count:
            break
        reason = passed_over_because(frame, picks, min_gap, duplicate_threshold)
        if reason is None:
            picks.append(frame)
        else:
            passed_over[frame.name] = reason
    return picks, passed_over


@dataclass(frozen=True)
class Suggestion:
    """What :func:`suggest_frames` found and wrote.

    Attributes:
        frames_dir: the folder of frames.
        score: "entropy" or "margin".
        frames: every frame scored, best first.
        picks: the frames to label next, best first.
        passed_over: {frame name: why it was not picked} for frames above the last pick.
        excluded: frames of the folder not scored, being labelled already.
        files: what was written.
    """

    frames_dir: Path
    score: str
    frames: tuple[ScoredFrame, ...]
    picks: tuple[ScoredFrame, ...]
    passed_over: dict[str, str]
    excluded: int
    files: tuple[Path, ...]

    def summary_lines(self) -> list[str]:
        """What happened, in a few lines: the folder and counts, then each file written."""
        lines = [f"{self.frames_dir}: {len(self.frames)} frame(s) scored by {self.score}, "
                 f"{self.excluded} excluded (labelled already)",
                 f"picked {len(self.picks)}, passed over {len(self.passed_over)} "
                 f"(near a pick in time or looks)"]
        return lines + [f"wrote {path}" for path in self.files]


def scores_table(frames: Sequence[ScoredFrame], picks: Sequence[ScoredFrame],
                 passed_over: dict[str, str]) -> str:
    """CSV of every frame, best first: rank (picks only), file, score, video, seconds,
    passed_over (why a frame above the last pick was not picked)."""
    ranks = {pick.name: rank for rank, pick in enumerate(picks, start=1)}
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["rank", "file", "score", "video", "seconds", "passed_over"])
    for frame in frames:
        video, seconds = frame.video_time or ("", "")
        writer.writerow([ranks.get(frame.name, ""), frame.path.name, f"{frame.score:.6f}",
                         video, seconds if seconds == "" else f"{seconds:.3f}",
                         passed_over.get(frame.name, "")])
    return text.getvalue()


def sheet_tiles(picks: Sequence[ScoredFrame], segmenter: Segmenter | None,
                score: str) -> list[Tile]:
    """The contact sheet's cells: each pick, captioned, with its uncertainty map when a
    segmenter is given (computed again for the picks alone, so scoring keeps no maps)."""
    tiles = []
    for rank, pick in enumerate(picks, start=1):
        image = read_image(pick.path)
        heat = (None if segmenter is None
                else uncertainty_maps(segmenter.probabilities(image), score))
        tiles.append(Tile(image, (f"#{rank}  {score} {pick.score:.3f}", pick.name), heat))
    return tiles


def write_suggestion(out_dir: str | Path, frames: Sequence[ScoredFrame],
                     picks: Sequence[ScoredFrame], passed_over: dict[str, str],
                     tiles: Sequence[Tile], columns: int) -> tuple[Path, ...]:
    """Write ``suggested.txt``, ``suggested.csv`` and (with picks) ``contact_sheet.png`` in
    ``out_dir``, each atomically; the paths written."""
    out_dir = Path(out_dir)
    listing = out_dir / SUGGESTED_LIST
    write_text_atomically(listing, "".join(f"{pick.path.name}\n" for pick in picks))
    table = out_dir / SCORES_TABLE
    write_text_atomically(table, scores_table(frames, picks, passed_over))
    if not tiles:
        return listing, table
    sheet = contact_sheet(tiles, columns=columns)
    write_atomically(out_dir / SHEET, lambda temporary: sheet.save(temporary, format="PNG"))
    return listing, table, out_dir / SHEET


def suggest_frames(model: Segmenter | str | Path, frames_dir: str | Path, out_dir: str | Path,
                   *, count: int = DEFAULT_COUNT, score: str = "entropy",
                   labelled: Sequence[str | Path] = (), min_gap: float = DEFAULT_MIN_GAP,
                   duplicate_threshold: float = DEFAULT_DUPLICATE_THRESHOLD,
                   batch_size: int = DEFAULT_BATCH_SIZE, columns: int = 4, maps: bool = True,
                   progress: bool = False) -> Suggestion:
    """Rank the unlabelled frames of ``frames_dir`` by the model's uncertainty, pick
    ``count`` spread out, and write the picks to ``out_dir`` (see the module docstring).

    Args:
        model: a Segmenter, or what ``Segmenter.from_path`` opens (a run folder, .keras,
            SavedModel folder; it must give probabilities, which a .tflite export does not).
        frames_dir: the folder of frames (JPEG, PNG or BMP; any size; not its sub-folders).
        out_dir: where the outputs go (created); not ``frames_dir`` itself.
        count: how many frames to pick.
        score: "entropy" or "margin".
        labelled: datasets in the VOC layout and list files naming frames labelled
            already (see :func:`labelled_names`); those are not scored.
        min_gap: seconds two picks of one video are at least apart (0: no such rule).
        duplicate_threshold: thumbnails closer than this are near-duplicates (0: no check).
        batch_size: frames read and run at a time.
        columns: thumbnails a row on the contact sheet.
        maps: put each pick's uncertainty map beside it on the contact sheet.
        progress: a progress bar while scoring.
    """
    if score not in SCORES:
        raise ValueError(f"score {score!r}: choose one of {', '.join(SCORES)}")
    if count < 1 or batch_size < 1 or columns < 1:
        raise ValueError(f"count, batch_size and columns must be at least 1, got {count}, "
                         f"{batch_size} and {columns}")
    if min_gap < 0 or duplicate_threshold < 0:
        raise ValueError(f"min_gap and duplicate_threshold must be >= 0, got {min_gap:g} "
                         f"and {duplicate_threshold:g}")
    frames_dir, out_dir = Path(frames_dir), Path(out_dir)
    paths = list_frames(frames_dir)
    if out_dir.resolve() == frames_dir.resolve():
        raise ValueError(f"{out_dir}: the outputs would join the frames; give another --out")
    done = labelled_names(labelled)
    unlabelled = [path for path in paths if image_stem(path.name) not in done]
    if not unlabelled:
        raise ValueError(f"{frames_dir}: all {len(paths)} frames are labelled already")
    segmenter = model if isinstance(model, Segmenter) else Segmenter.from_path(model)
    frames = ranked(score_frames(segmenter, unlabelled, score=score, batch_size=batch_size,
                                 progress=progress))
    picks, passed_over = spread_picks(frames, count, min_gap=min_gap,
                                      duplicate_threshold=duplicate_threshold)
    tiles = sheet_tiles(picks, segmenter if maps else None, score)
    files = write_suggestion(out_dir, frames, picks, passed_over, tiles, columns)
    return Suggestion(frames_dir, score, tuple(frames), tuple(picks), passed_over,
                      len(paths) - len(unlabelled), files)


__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_COUNT", "DEFAULT_DUPLICATE_THRESHOLD",
           "DEFAULT_MIN_GAP", "FRAME_SUFFIXES", "SCORES", "SCORES_TABLE", "SHEET",
           "SUGGESTED_LIST", "ScoredFrame", "Suggestion", "grey_thumbnail", "image_stem",
           "labelled_names", "list_frames", "passed_over_because", "ranked", "score_frames",
           "scores_table", "sheet_tiles", "spread_picks", "suggest_frames", "uncertainty_maps",
           "write_suggestion"]
