"""Videos and cameras: a short video of blob frames, written losslessly (FFV1 in .mkv) in
the test, predicted with the tiny blob network of ``blobs.py``; the overlay's frame count,
rate and size; class maps equal to per-image ``predict`` on the frames read back by the
same reader; the streaming API, its timings and drivable space; smoothing and flicker; bad
input, each a one-line error, with what was written kept valid."""

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from blobs import BLOB_SPEC, blob_examples, trained_blob_model, write_blob_run
from pixelwise.cli import cli
from pixelwise.data.palette import read_label
from pixelwise.inference import KerasSegmenter, Segmenter
from pixelwise.smoothing import FlickerMeter, ProbabilitySmoother, changed_share, flicker
from pixelwise.video import (
    FrameMaps,
    VideoInfo,
    annotated_overlay,
    legend_entries,
    open_video,
    opencv,
    overlay,
    prefetched,
    run_video,
    segment_frames,
)

HEIGHT, WIDTH, FRAMES, RATE = 48, 64, 6, 10.0


def write_video(path, frames, fourcc="FFV1", rate=RATE):
    cv2 = opencv()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), rate,
                             (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def read_frames(path):
    with open_video(path) as source:
        return list(source), source.info


@pytest.fixture(scope="module")
def blob_model():
    return trained_blob_model()


@pytest.fixture(scope="module")
def segmenter(blob_model):
    return KerasSegmenter(blob_model, BLOB_SPEC, input_multiple=4)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 6-frame lossless video of blob frames, 48x64 at 10 frames/s."""
    folder = tmp_path_factory.mktemp("clip")
    frames = [image for image, _ in blob_examples(FRAMES, seed=31, height=HEIGHT, width=WIDTH)]
    return write_video(folder / "clip.mkv", frames)


@pytest.fixture(scope="module")
def blob_run(tmp_path_factory, blob_model):
    return write_blob_run(tmp_path_factory.mktemp("run"), blob_model)


# --------------------------------------------------------------------------- the command


def test_predict_a_video_writes_an_overlay_like_it_and_class_maps_of_each_frame(clip, blob_run,
                                                                               tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", str(blob_run), str(clip), "--out", str(out),
                                      "--class-maps", "npz", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "clip: 6 frames" in result.output and "frames/s" in result.output
    overlay_frames, info = read_frames(out / "clip_overlay.mp4")
    assert info == VideoInfo(RATE, FRAMES, (HEIGHT, WIDTH)) and len(overlay_frames) == FRAMES
    frames, _ = read_frames(clip)
    # FFV1 is lossless: the frames read back are the frames written.
    assert np.array_equal(frames[0], blob_examples(1, seed=31, height=HEIGHT, width=WIDTH)[0][0])
    segmenter = Segmenter.from_path(blob_run)
    with np.load(out / "clip_classes.npz") as maps:
        assert sorted(maps.files) == [f"frame_{index:06d}" for index in range(FRAMES)]
        for index, frame in enumerate(frames):
            np.testing.assert_array_equal(maps[f"frame_{index:06d}"], segmenter.predict(frame))
    timings = json.loads((out / "clip_timings.json").read_text())
    assert timings["frames"] == FRAMES and timings["frames_per_second"] > 0
    assert timings["latency_ms"]["p95"] >= timings["latency_ms"]["median"] > 0
    assert set(timings["stage_median_ms"]) == {"decode", "preprocess", "inference",
                                               "postprocess", "output"}
    assert 0.0 <= timings["flicker"] <= 1.0 and timings["interrupted"] is False


def test_png_class_maps_and_drivable_space_of_a_video(clip, segmenter, tmp_path):
    classes = (1, 2)
    result = run_video(segmenter, open_video(clip), tmp_path, "clip", class_maps="png",
                       drivable=classes, safety=0.6, progress=False, echo=lambda line: None)
    frames, _ = read_frames(clip)
    assert [path.name for path in result.map_paths] == ["clip_classes", "clip_drivable"]
    for index, frame in enumerate(frames):
        np.testing.assert_array_equal(read_label(tmp_path / "clip_classes" / f"{index:06d}.png"),
                                      segmenter.predict(frame))
        probability = segmenter.probabilities(frame)[..., list(classes)].sum(-1)
        grey = read_label(tmp_path / "clip_drivable" / f"{index:06d}.png")
        assert np.abs(grey / 255.0 - probability).max() <= 0.5 / 255 + 1e-6
        mask = read_label(tmp_path / "clip_drivable" / f"{index:06d}_mask.png")
        np.testing.assert_array_equal(mask == 255, probability >= 0.6)


def test_camera_loop_on_a_video_file_stops_after_k_frames(clip, blob_run, tmp_path,
                                                          monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = CliRunner().invoke(cli, ["predict", str(blob_run), "--camera", str(clip),
                                      "--frames", "3", "--out", str(tmp_path), "--quiet",
                                      "--drivable", "red disc,blue box", "--safety", "0.7"])
    assert result.exit_code == 0, result.output
    assert "no display: recording clip" in result.output
    frames, info = read_frames(tmp_path / "clip_overlay.mp4")
    assert len(frames) == 3 and info.size == (HEIGHT, WIDTH)
    with np.load(tmp_path / "clip_drivable.npz") as drivable:
        assert len(drivable.files) == 6  # probability and mask of each frame
        np.testing.assert_array_equal(drivable["mask_000002"],
                                      drivable["probability_000002"] >= 0.7)


def test_ctrl_c_stops_cleanly_and_keeps_what_was_written(segmenter, tmp_path):
    def frames():
        for image, _ in blob_examples(3, seed=32, height=HEIGHT, width=WIDTH):
            yield image
        raise KeyboardInterrupt

    lines = []
    result = run_video(segmenter, frames(), tmp_path, "live", class_maps="npz",
                       progress=False, echo=lines.append)
    assert result.interrupted and "stopped by Ctrl-C" in lines[-1]
    assert len(read_frames(result.overlay_path)[0]) == 3
    with np.load(tmp_path / "live_classes.npz") as maps:
        assert len(maps.files) == 3
    assert json.loads(result.timings_path.read_text())["interrupted"] is True


def test_drivable_images_and_legends(blob_run, tmp_path):
    image, _ = blob_examples(1, seed=33)[0]
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "photo.png")
    result = CliRunner().invoke(cli, ["predict", str(blob_run), str(tmp_path / "photo.png"),
                                      "--out", str(tmp_path / "out"),
                                      "--drivable", "background", "--safety", "0.9"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 file(s) for 1 image(s)" in result.output
    probability = Segmenter.from_path(blob_run).probabilities(image)[..., 0]
    grey = read_label(tmp_path / "out" / "photo_drivable.png")
    assert np.abs(grey / 255.0 - probability).max() <= 0.5 / 255 + 1e-6
    mask = read_label(tmp_path / "out" / "photo_drivable_mask.png") == 255
    np.testing.assert_array_equal(mask, probability >= 0.9)
    # Cautious (0.9) marks no more pixels than adventurous (0.2).
    assert mask.sum() <= (probability >= 0.2).sum()


def test_legend_names_the_classes_present_largest_first():
    class_map = np.zeros((96, 128), np.int32)
    class_map[:20, :30] = 2
    class_map[60:, :] = 1
    assert [name for name, _ in legend_entries(class_map, BLOB_SPEC)] == [
        "background", "red disc", "blue box"]
    image = np.full((96, 128, 3), 128, np.uint8)
    drawn = annotated_overlay(image, class_map, BLOB_SPEC)
    plain = overlay(image, class_map, BLOB_SPEC)
    assert drawn.shape == plain.shape
    assert not np.array_equal(drawn[:30, :60], plain[:30, :60])  # the legend
    np.testing.assert_array_equal(drawn[60:, 100:], plain[60:, 100:])


# --------------------------------------------------------------------------- the stream


def test_stream_results_carry_class_maps_probabilities_and_timings(clip, segmenter):
    frames, _ = read_frames(clip)
    results = list(segment_frames(segmenter, open_video(clip), probabilities=True,
                                  drivable=(0,), safety=0.5))
    assert [result.index for result in results] == list(range(FRAMES))
    for result, frame in zip(results, frames):
        np.testing.assert_array_equal(result.frame, frame)
        np.testing.assert_array_equal(result.prediction.class_map, segmenter.predict(frame))
        probabilities = segmenter.probabilities(frame)
        np.testing.assert_allclose(result.prediction.probabilities, probabilities, atol=1e-6)
        np.testing.assert_allclose(result.prediction.drivable, probabilities[..., 0], atol=1e-6)
        np.testing.assert_array_equal(result.drivable_mask, result.prediction.drivable >= 0.5)
        assert set(result.prediction.timings_ms) == {"decode", "preprocess", "inference",
                                                     "postprocess"}


def test_smoothing_off_or_at_one_gives_the_unsmoothed_maps(segmenter):
    # The same scene with fresh noise in every frame: the maps flicker at the edges.
    base, _ = blob_examples(1, seed=34)[0]
    rng = np.random.default_rng(0)
    frames = [np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
              for _ in range(6)]
    plain = [r.prediction.class_map for r in segment_frames(segmenter, frames, prefetch=False)]
    for frame, class_map in zip(frames, plain):
        np.testing.assert_array_equal(class_map, segmenter.predict(frame))
    at_one = [r.prediction.class_map for r in segment_frames(segmenter, frames, smooth=1.0)]
    for frame, class_map in zip(frames, at_one):
        np.testing.assert_array_equal(class_map, np.argmax(segmenter.probabilities(frame), -1))
    smoothed = [r.prediction.class_map for r in segment_frames(segmenter, frames, smooth=0.3)]
    assert flicker(smoothed) < flicker(plain)


def test_exponential_moving_average_by_hand():
    smoother = ProbabilitySmoother(0.25)
    first, second = np.array([[[1.0, 0.0]]]), np.array([[[0.0, 1.0]]])
    np.testing.assert_allclose(smoother.update(first), first)
    np.testing.assert_allclose(smoother.update(second), [[[0.75, 0.25]]])
    np.testing.assert_allclose(smoother.update(second), [[[0.5625, 0.4375]]])
    with pytest.raises(ValueError, match="smoothing alpha 0.0"):
        ProbabilitySmoother(0.0)


def test_flicker_is_the_share_of_pixels_changing_class_between_frames():
    maps = [np.array([[0, 0], [1, 1]]), np.array([[0, 1], [1, 1]]), np.array([[1, 0], [0, 1]])]
    assert changed_share(maps[0], maps[1]) == 0.25
    assert changed_share(maps[1], maps[2]) == 0.75
    assert flicker(maps) == pytest.approx(0.5)  # 4 changed of 8 pixel pairs
    assert flicker(maps[:1]) is None
    meter = FlickerMeter()
    for class_map in maps:
        meter.update(class_map)
    assert meter.value == pytest.approx(0.5)


def test_reader_thread_keeps_order_and_raises_the_sources_error_after_its_frames():
    def frames():
        yield from range(5)
        raise ValueError("clip.mp4: truncated")

    seen = []
    with pytest.raises(ValueError, match="truncated"):
        for item in prefetched(frames(), depth=2):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------- bad input


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_a_truncated_video_is_named_and_the_frames_before_it_stay_playable(blob_run, tmp_path):
    frames = [image for image, _ in blob_examples(10, seed=35, height=HEIGHT, width=WIDTH)]
    whole = write_video(tmp_path / "whole.avi", frames, fourcc="MJPG")
    data = whole.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[:len(data) // 2])
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", str(blob_run), str(tmp_path / "cut.avi"),
                                      "--out", str(out), "--class-maps", "npz", "--quiet"])
    line = one_line_error(result)
    assert "cut.avi: truncated or undecodable after frame" in line and "of 10" in line
    kept = int(line.split("after frame ")[1].split()[0])
    assert 0 < kept < 10
    assert len(read_frames(out / "cut_overlay.mp4")[0]) == kept
    with np.load(out / "cut_classes.npz") as maps:
        assert len(maps.files) == kept


def test_an_unknown_codec_or_a_non_video_is_named(clip, blob_run, tmp_path):
    data = clip.read_bytes()
    assert data.count(b"V_FFV1") == 1  # the Matroska codec id
    (tmp_path / "odd.mkv").write_bytes(data.replace(b"V_FFV1", b"V_QQQQ"))
    (tmp_path / "notes.mp4").write_text("not a video")
    for name in ("odd.mkv", "notes.mp4"):
        result = CliRunner().invoke(cli, ["predict", str(blob_run), str(tmp_path / name),
                                          "--out", str(tmp_path / "out")])
        assert f"{name}: cannot decode it as a video" in one_line_error(result)


def test_bad_cameras_classes_and_outputs_are_refused(clip, blob_run, tmp_path):
    result = CliRunner().invoke(cli, ["predict", str(blob_run), "--camera", "99",
                                      "--out", str(tmp_path)])
    assert "camera 99: cannot be opened" in one_line_error(result)
    result = CliRunner().invoke(cli, ["predict", str(blob_run), str(clip), "--drivable",
                                      "road,red disc", "--out", str(tmp_path)])
    assert "drivable class 'road' is not a class of this model" in one_line_error(result)
    image, _ = blob_examples(1, seed=36)[0]
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "photo.png")
    result = CliRunner().invoke(cli, ["predict", str(blob_run), str(tmp_path / "photo.png"),
                                      "--out", str(tmp_path)])
    assert "photo.png: the output" in one_line_error(result)
    assert not list(tmp_path.glob("photo_overlay*"))
    result = CliRunner().invoke(cli, ["predict", str(blob_run)])
    assert "nothing to predict" in one_line_error(result)


def test_missing_opencv_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match=r"pip install 'pixelwise\[video\]'"):
        opencv()


def test_frame_maps_refuse_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="npz, png"):
        FrameMaps(tmp_path, "clip", "tiff", BLOB_SPEC, class_maps=True, drivable=False)
