"""Frames from videos (`pixelwise data frames`): short lossless videos written in the test
(48x64 at 10 frames/s, each frame's grey level telling its index), the frames chosen by a
step in seconds or frames, --max, --start/--end, the names and their times, reruns that
skip what is there, several videos, and bad videos, each a one-line error."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli_errors import one_line_error
from pixelwise.cli import cli
from pixelwise.video import opencv
from pixelwise.video.frames import (
    FrameStep,
    extract_frames,
    frame_name,
    parse_every,
    parse_frame_name,
)

HEIGHT, WIDTH, RATE, FRAMES = 48, 64, 10.0, 30  # a 3 s video
LEVEL_STEP = 8  # frame i is grey level 8 * i, so a written frame says which it is


def level_frame(index: int) -> np.ndarray:
    """Frame ``index``: a uniform grey of level 8 * index, with a white bar that moves."""
    frame = np.full((HEIGHT, WIDTH, 3), LEVEL_STEP * index, np.uint8)
    frame[:4, (2 * index) % WIDTH] = 255
    return frame


def write_video(path, count: int = FRAMES, rate: float = RATE):
    cv2 = opencv()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), rate, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for index in range(count):
        writer.write(cv2.cvtColor(level_frame(index), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("videos") / "drive.mkv")


def names(result) -> list[str]:
    return [path.name for path in result.files]


def index_of(path) -> int:
    """The index of the video frame a PNG holds, from its grey level."""
    level = np.asarray(Image.open(path).convert("RGB"))[HEIGHT // 2, WIDTH // 2, 0]
    return int(round(level / LEVEL_STEP))


# --------------------------------------------------------------------------- choosing frames


def test_a_step_in_seconds_takes_the_frame_at_each_multiple_named_by_video_and_time(video,
                                                                                    tmp_path):
    [result] = extract_frames([video], tmp_path, every="0.5s", image_format="png")
    assert names(result) == [f"drive_t{seconds:010.3f}.png"
                             for seconds in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)]
    assert result.files[1].name == "drive_t000000.500.png"
    assert [index_of(path) for path in result.files] == [0, 5, 10, 15, 20, 25]
    assert result.written == 6 and result.kept == 0 and result.frame_rate == pytest.approx(RATE)
    assert sorted(path.name for path in tmp_path.iterdir()) == names(result)


def test_a_step_in_frames_and_max_frames(video, tmp_path):
    [every_seventh] = extract_frames([video], tmp_path / "a", every="7f", image_format="png")
    assert [index_of(path) for path in every_seventh.files] == [0, 7, 14, 21, 28]
    assert names(every_seventh)[1:3] == ["drive_t000000.700.png", "drive_t000001.400.png"]
    [capped] = extract_frames([video], tmp_path / "b", every="7f", max_frames=3,
                              image_format="png")
    assert [index_of(path) for path in capped.files] == [0, 7, 14]
    assert len(list((tmp_path / "b").iterdir())) == 3


def test_start_and_end_bound_the_times_and_the_step_counts_from_start(video, tmp_path):
    [result] = extract_frames([video], tmp_path, every="0.4s", start=1.1, end=2.0,
                              image_format="png")
    # due at 1.1, 1.5, 1.9: the first frames at or after them are 1.1, 1.5 and 1.9 s
    assert [index_of(path) for path in result.files] == [11, 15, 19]
    [late] = extract_frames([video], tmp_path / "late", every="1s", start=2.25)
    assert [parse_frame_name(path.name) for path in late.files] == [("drive", 2.3)]


def test_a_step_longer_than_the_video_gives_its_first_frame(video, tmp_path):
    [result] = extract_frames([video], tmp_path, every="1m")
    assert names(result) == ["drive_t000000.000.jpg"]


def test_frames_are_high_quality_jpegs_by_default(video, tmp_path):
    [result] = extract_frames([video], tmp_path, every="1s")
    assert names(result) == ["drive_t000000.000.jpg", "drive_t000001.000.jpg",
                             "drive_t000002.000.jpg"]
    with Image.open(result.files[2]) as image:
        assert image.format == "JPEG" and image.size == (WIDTH, HEIGHT)
        pixels = np.asarray(image.convert("RGB"), np.float32)
    assert np.abs(pixels - level_frame(20)).mean() < 2.0


# --------------------------------------------------------------------------- reruns


def test_a_rerun_writes_only_the_frames_not_already_there(video, tmp_path):
    [first] = extract_frames([video], tmp_path, every="0.5s", max_frames=4)
    stamps = {path: path.stat().st_mtime_ns for path in first.files}
    first.files[1].unlink()
    [again] = extract_frames([video], tmp_path, every="0.5s", max_frames=4)
    assert again.files == first.files
    assert again.written == 1 and again.kept == 3
    for path in (first.files[0], first.files[2], first.files[3]):
        assert path.stat().st_mtime_ns == stamps[path]
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".tmp-")]


# --------------------------------------------------------------------------- names and steps


def test_names_round_trip_and_sort_by_video_then_time():
    assert frame_name("drive", 12.5) == "drive_t000012.500"
    assert parse_frame_name("drive_t000012.500.jpg") == ("drive", 12.5)
    assert parse_frame_name("my_toy_car_t000003.250") == ("my_toy_car", 3.25)
    assert parse_frame_name("holiday.jpg") is None
    assert parse_frame_name("drive_t12.5.jpg") is None
    times = [0.1, 2.0, 10.0, 100.25]
    assert sorted(frame_name("a", t) for t in reversed(times)) == [frame_name("a", t)
                                                                   for t in times]


@pytest.mark.parametrize("text, step", [("0.5s", FrameStep(0.5, "s")), ("2", FrameStep(2, "s")),
                                        ("1m", FrameStep(60, "s")), ("15f", FrameStep(15, "f")),
                                        (" 3F ", FrameStep(3, "f"))])
def test_parse_every(text, step):
    assert parse_every(text) == step


@pytest.mark.parametrize("text", ["0f", "1.5f", "f", "0", "abc", "-1s"])
def test_parse_every_refuses_nonsense(text):
    with pytest.raises(ValueError, match="--every"):
        parse_every(text)


# --------------------------------------------------------------------------- the command


def test_the_command_extracts_several_videos_and_says_what_it_did(video, tmp_path):
    second = write_video(tmp_path / "park.mkv", count=12)
    out = tmp_path / "set"
    result = CliRunner().invoke(cli, ["data", "frames", str(video), str(second), "--every",
                                      "5f", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == [
        "drive_t000000.000.jpg", "drive_t000000.500.jpg", "drive_t000001.000.jpg",
        "drive_t000001.500.jpg", "drive_t000002.000.jpg", "drive_t000002.500.jpg",
        "park_t000000.000.jpg", "park_t000000.500.jpg", "park_t000001.000.jpg"]
    lines = result.output.strip().splitlines()
    assert f"{video}: 6 frame(s) (6 written, 0 already there)" in lines[0]
    assert f"{second}: 3 frame(s) (3 written" in lines[1]
    assert str(out) in lines[1]
    assert lines[-1] == f"9 frame(s) from 2 video(s) in {out} (9 written now)"

    rerun = CliRunner().invoke(cli, ["data", "frames", str(video), str(second), "--every",
                                     "5f", "--out", str(out), "--max", "2", "--format", "png"])
    assert rerun.exit_code == 0, rerun.output
    assert rerun.output.strip().splitlines()[-1] == (f"4 frame(s) from 2 video(s) in {out} "
                                                     f"(4 written now)")
    assert len(list(out.glob("*.png"))) == 4


def test_a_video_that_cannot_be_opened_is_one_line_and_nothing_is_written(video, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    out = tmp_path / "set"
    result = CliRunner().invoke(cli, ["data", "frames", str(video), str(bad), "--out", str(out)])
    one_line_error(result, str(bad), "cannot decode")
    assert not out.exists()
    missing = CliRunner().invoke(cli, ["data", "frames", str(tmp_path / "gone.mp4"), "--out",
                                       str(out)])
    one_line_error(missing, "gone.mp4", "no such video")


def write_noise_video(path, count: int = FRAMES):
    """A video of random frames: they do not compress, so each takes about 9 kB."""
    rng = np.random.default_rng(0)
    cv2 = opencv()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), RATE, (WIDTH, HEIGHT))
    for _ in range(count):
        writer.write(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    writer.release()
    return path


def test_a_video_without_frames_is_one_line_naming_it(tmp_path):
    whole = write_noise_video(tmp_path / "whole.mkv").read_bytes()
    header_only = tmp_path / "header.mkv"
    header_only.write_bytes(whole[:2000])  # the container's header, no complete frame
    result = CliRunner().invoke(cli, ["data", "frames", str(header_only), "--out",
                                      str(tmp_path / "set")])
    one_line_error(result, str(header_only), "no frames")


def test_a_truncated_video_keeps_the_frames_before_the_break_and_says_so(tmp_path):
    path = write_noise_video(tmp_path / "noisy.mkv")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    [result] = extract_frames([path], tmp_path / "set", every="1f")
    assert 0 < len(result.files) < FRAMES
    assert "truncated" in result.note and result.note in result.summary()


def test_two_videos_of_one_name_are_refused_before_anything_is_written(video, tmp_path):
    (tmp_path / "other").mkdir()
    twin = write_video(tmp_path / "other" / "drive.mkv", count=5)
    with pytest.raises(ValueError, match="two videos named 'drive'"):
        extract_frames([video, twin], tmp_path / "set")
    assert not (tmp_path / "set").exists()
    same_twice = extract_frames([video, video.parent / "." / video.name], tmp_path / "set",
                                every="2s")
    assert [result.video for result in same_twice] == [video]


def test_bad_options_are_refused(video, tmp_path):
    result = CliRunner().invoke(cli, ["data", "frames", str(video), "--every", "0f", "--out",
                                      str(tmp_path)])
    assert result.exit_code == 2 and "--every" in result.output
    with pytest.raises(ValueError, match="start"):
        extract_frames([video], tmp_path, start=2.0, end=1.0)
    with pytest.raises(ValueError, match="image format"):
        extract_frames([video], tmp_path, image_format="gif")
