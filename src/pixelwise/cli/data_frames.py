"""`pixelwise data frames` and `pixelwise data suggest`: from videos to frames worth labelling."""

from __future__ import annotations

from pathlib import Path

import click

from pixelwise.cli.data import data
from pixelwise.cli.params import DURATION, ParsedType, library_choice, reported
from pixelwise.io import parse_duration


def parse_step(text: str):
    """``--every``: seconds (``0.5s``, ``2``, ``1m``) or frames (``15f``); the library's
    parser, imported when used (it brings OpenCV and the video package)."""
    from pixelwise.video.frames import parse_every

    return parse_every(text)


def parse_gap(text: str) -> float:
    """``--min-gap``: a duration (``2s``, ``1m``, seconds), or 0 for no gap rule."""
    cleaned = str(text).strip().lower().rstrip("s")
    if cleaned.replace(".", "", 1).isdigit() and float(cleaned) == 0:
        return 0.0
    return parse_duration(text, what="--min-gap")


STEP = ParsedType("step", parse_step, ())
GAP = ParsedType("duration", parse_gap, (int, float))


@data.command("frames")
@click.argument("videos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Folder the frames go to (created).")
@click.option("--every", default="1s", show_default=True, type=STEP,
              help="Step between frames: seconds (0.5s, 2, 1m) or frames (15f).")
@click.option("--max", "max_frames", default=None, type=click.IntRange(min=1),
              help="The most frames of each video (default: all the step gives).")
@click.option("--start", default=None, type=DURATION,
              help="Take frames from this time of each video on (e.g. 10s, 1m30s).")
@click.option("--end", default=None, type=DURATION,
              help="Take no frame after this time of each video.")
@click.option("--format", "image_format", default="jpg", show_default=True,
              type=library_choice("pixelwise.video.frames", "FRAME_FORMATS"),
              help="jpg (quality 95) or png.")
def data_frames(videos: tuple[Path, ...], out_dir: Path, every, max_frames: int | None,
                start: float | None, end: float | None, image_format: str) -> None:
    """Still frames of VIDEOS for labelling, named VIDEO_tSECONDS.jpg (e.g.
    drive_t000012.500.jpg); a rerun writes only the frames not already in OUT."""
    from pixelwise.video.frames import extract_frames

    with reported(OSError, ValueError, ImportError):
        results = extract_frames(videos, out_dir, every=every, max_frames=max_frames,
                                 start=start or 0.0, end=end, image_format=image_format,
                                 on_video=lambda result: click.echo(result.summary()))
    total = sum(len(result.files) for result in results)
    written = sum(result.written for result in results)
    click.echo(f"{total} frame(s) from {len(results)} video(s) in {out_dir} "
               f"({written} written now)")


@data.command("suggest")
@click.argument("model")
@click.argument("frames_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Folder for suggested.txt, suggested.csv and "
                                  "contact_sheet.png (created).")
@click.option("-n", "--count", default=20, show_default=True, type=click.IntRange(min=1),
              help="How many frames to suggest.")
@click.option("--score", default="entropy", show_default=True,
              type=library_choice("pixelwise.suggest", "SCORES"),
              help="entropy: mean per-pixel entropy of the softmax over ln(classes); "
                   "margin: mean of 1 - (p1 - p2), the two most likely classes.")
@click.option("--labelled", multiple=True, type=click.Path(path_type=Path),
              help="Frames labelled already (repeatable): a dataset folder in the VOC "
                   "layout (its SegmentationClass/NAME.png) or a list file of names.")
@click.option("--min-gap", default=2.0, show_default=True, type=GAP,
              help="Seconds two picks of one video are at least apart, by the frames' "
                   "names (0: no such rule).")
@click.option("--duplicate-threshold", default=0.02, show_default=True,
              type=click.FloatRange(min=0),
              help="Frames whose 16x16 grey thumbnails differ by less than this mean "
                   "absolute difference (0..1) are near-duplicates; one is picked (0: off).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Frames run through the model at a time.")
@click.option("--columns", default=4, show_default=True, type=click.IntRange(min=1),
              help="Thumbnails a row on the contact sheet.")
@click.option("--no-maps", is_flag=True,
              help="Leave the uncertainty maps off the contact sheet.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def data_suggest(model: str, frames_dir: Path, out_dir: Path, count: int, score: str,
                 labelled: tuple[Path, ...], min_gap: float, duplicate_threshold: float,
                 batch_size: int, columns: int, no_maps: bool, quiet: bool) -> None:
    """Rank the unlabelled frames in FRAMES_DIR by MODEL's uncertainty and suggest the
    COUNT to label next, spread over time and looks. MODEL: a run folder, .keras file,
    SavedModel folder or a model name (`pixelwise model list`)."""
    from pixelwise.suggest import suggest_frames

    with reported():
        suggestion = suggest_frames(
            model, frames_dir, out_dir, count=count, score=score, labelled=labelled,
            min_gap=min_gap, duplicate_threshold=duplicate_threshold, batch_size=batch_size,
            columns=columns, maps=not no_maps, progress=not quiet)
    for line in suggestion.summary_lines():
        click.echo(line)
