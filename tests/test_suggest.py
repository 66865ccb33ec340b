"""Which frames to label next (`pixelwise data suggest`): a model built in the test whose
uncertainty is known by construction (a 1x1 convolution: a pixel of red level 128 is a coin
toss between two classes, one of red level 0 is certain), on frames whose share of such
pixels sets their score. The ranking against scores computed here with NumPy from
``Segmenter.probabilities``; labelled frames left out; the min-gap and near-duplicate
spreading; the files written and the contact sheet's grid; the command and its one-line
errors."""

import csv
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blobs import BLOB_SPEC, write_blob_run
from pixelwise.cli import cli
from pixelwise.contact_sheet import BACKGROUND, CAPTION_HEIGHT, GAP
from pixelwise.inference import KerasSegmenter
from pixelwise.suggest import ScoredFrame, ranked, spread_picks, suggest_frames

HEIGHT, WIDTH = 48, 64
THUMB_HEIGHT, THUMB_WIDTH = 96, 128  # the contact sheet's default boxes


def red_uncertainty_model() -> keras.Model:
    """Logits (R - 128) / 8, 0 and -30 at each pixel: three classes (the blob spec's)."""
    image = keras.Input((None, None, 3), name="image")
    logits = keras.layers.Conv2D(3, 1, name="logits")(image)
    model = keras.Model(image, logits, name="red_uncertainty")
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    kernel[0, 0, 0, 0] = 1 / 8
    model.get_layer("logits").set_weights([kernel, np.array([-16, 0, -30], np.float32)])
    return model


@pytest.fixture(scope="module")
def model():
    return red_uncertainty_model()


@pytest.fixture(scope="module")
def segmenter(model):
    return KerasSegmenter(model, BLOB_SPEC, input_multiple=1)


def frame(uncertain_share: float, identity: int, height: int = HEIGHT,
          width: int = WIDTH) -> np.ndarray:
    """A frame whose left ``uncertain_share`` of columns have red level 128 (the rest 0);
    green ``identity`` tells frames apart to the eye and to the thumbnails."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : round(uncertain_share * width), 0] = 128
    image[..., 1] = identity
    return image


def save(folder, name: str, image: np.ndarray, suffix: str = ".png"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{suffix}"
    Image.fromarray(image).save(path, quality=95) if suffix == ".jpg" else Image.fromarray(
        image).save(path)
    return path


def independent_score(segmenter, path, score: str) -> float:
    """The frame's score as the module docstring defines it, computed here."""
    probabilities = segmenter.probabilities(np.asarray(Image.open(path).convert("RGB")))
    probabilities = probabilities.astype(np.float64)
    if score == "entropy":
        safe = np.where(probabilities > 0, probabilities, 1.0)
        pixels = -(probabilities * np.log(safe)).sum(axis=-1) / np.log(probabilities.shape[-1])
    else:
        ordered = np.sort(probabilities, axis=-1)
        pixels = 1.0 - (ordered[..., -1] - ordered[..., -2])
    return float(pixels.mean())


@pytest.fixture
def mixed_frames(tmp_path):
    """Seven frames of distinct scores: PNGs and a JPEG, two sizes, names out of score order."""
    folder = tmp_path / "frames"
    shares = {"e": 0.1, "c": 0.3, "a": 0.5, "g": 0.65, "b": 0.8, "d": 0.9, "f": 0.2}
    for index, (name, share) in enumerate(shares.items()):
        if name == "g":
            save(folder, name, frame(share, 30 * index), ".jpg")
        elif name == "b":
            save(folder, name, frame(share, 30 * index, height=40, width=56))
        else:
            save(folder, name, frame(share, 30 * index))
    return folder


# --------------------------------------------------------------------------- the ranking


@pytest.mark.parametrize("score", ["entropy", "margin"])
def test_the_ranking_is_the_scores_computed_independently(segmenter, mixed_frames, tmp_path,
                                                          score):
    suggestion = suggest_frames(segmenter, mixed_frames, tmp_path / "out", count=7,
                                score=score, min_gap=0, duplicate_threshold=0, batch_size=3)
    expected = {path.stem: independent_score(segmenter, path, score)
                for path in sorted(mixed_frames.iterdir())}
    gaps = np.diff(sorted(expected.values()))
    assert gaps.min() > 1e-3  # the order below is not decided by rounding
    assert [frame.name for frame in suggestion.frames] == sorted(expected, key=expected.get,
                                                                 reverse=True)
    assert [frame.name for frame in suggestion.picks] == ["d", "b", "g", "a", "c", "f", "e"]
    for frame_scored in suggestion.frames:
        assert frame_scored.score == pytest.approx(expected[frame_scored.name], abs=1e-5)
    assert suggestion.excluded == 0 and suggestion.passed_over == {}


def test_entropy_is_scaled_to_one_for_a_coin_toss(segmenter, tmp_path):
    folder = tmp_path / "frames"
    save(folder, "all_uncertain", frame(1.0, 0))
    save(folder, "all_certain", frame(0.0, 200))
    suggestion = suggest_frames(segmenter, folder, tmp_path / "out", count=2)
    by_name = {frame.name: frame.score for frame in suggestion.frames}
    assert by_name["all_uncertain"] == pytest.approx(np.log(2) / np.log(3), abs=1e-4)
    assert by_name["all_certain"] == pytest.approx(0.0, abs=1e-4)
    margin = suggest_frames(segmenter, folder, tmp_path / "out", count=2, score="margin")
    assert {frame.name: frame.score for frame in margin.frames}["all_uncertain"] == (
        pytest.approx(1.0, abs=1e-4))


# --------------------------------------------------------------------------- leaving out


def test_labelled_frames_are_not_scored(segmenter, mixed_frames, tmp_path):
    dataset = tmp_path / "mydata"
    (dataset / "SegmentationClass").mkdir(parents=True)
    for name in ("d", "a"):
        Image.fromarray(np.zeros((HEIGHT, WIDTH), np.uint8)).save(
            dataset / "SegmentationClass" / f"{name}.png")
    listing = tmp_path / "done.txt"
    listing.write_text("# labelled last week\nJPEGImages/g.jpg\n\nnot_a_frame\n")
    suggestion = suggest_frames(segmenter, mixed_frames, tmp_path / "out", count=3,
                                labelled=[dataset, listing], min_gap=0)
    assert suggestion.excluded == 3
    assert sorted(frame.name for frame in suggestion.frames) == ["b", "c", "e", "f"]
    assert [frame.name for frame in suggestion.picks] == ["b", "c", "f"]
    with pytest.raises(ValueError, match="all 2 frames are labelled already"):
        folder = tmp_path / "two"
        save(folder, "d", frame(0.5, 0))
        save(folder, "a", frame(0.3, 90))
        suggest_frames(segmenter, folder, tmp_path / "out2", labelled=[dataset])
    with pytest.raises(FileNotFoundError, match="SegmentationClass"):
        suggest_frames(segmenter, mixed_frames, tmp_path / "out3", labelled=[tmp_path / "two"])


# --------------------------------------------------------------------------- spreading


def test_near_duplicates_of_a_pick_are_passed_over(segmenter, tmp_path):
    folder = tmp_path / "frames"
    shares = [0.1, 0.3, 0.5, 0.7, 0.9]
    for index, share in enumerate(shares):
        save(folder, f"f{index}", frame(share, 40 * index))
    top = frame(0.9, 160)
    save(folder, "copy1", top)
    save(folder, "copy2", top)
    noisy = top.copy()  # the blue channel: invisible to the model, visible to the eye
    noisy[..., 2] = np.random.default_rng(0).integers(0, 5, noisy.shape[:2])
    save(folder, "near", noisy)

    copies = {"copy1", "copy2", "f4", "near"}  # f4 is the same frame as the copies

    suggestion = suggest_frames(segmenter, folder, tmp_path / "out", count=5)
    first = suggestion.picks[0].name
    assert first in copies  # they tie; which comes first is the ranking's tie rule
    assert [frame.name for frame in suggestion.picks[1:]] == ["f3", "f2", "f1", "f0"]
    assert set(suggestion.passed_over) == copies - {first}
    assert all(reason.startswith(f"like {first} ") for reason in suggestion.passed_over.values())

    unchecked = suggest_frames(segmenter, folder, tmp_path / "out", count=5,
                               duplicate_threshold=0)
    assert {frame.name for frame in unchecked.picks[:4]} == copies
    assert unchecked.picks[4].name == "f3"


def test_ties_rank_by_name():
    frames = [ScoredFrame(Path(f"{name}.png"), 0.5, np.zeros((16, 16), np.float32))
              for name in ("b", "a", "c")]
    frames.append(ScoredFrame(Path("z.png"), 0.7, np.zeros((16, 16), np.float32)))
    assert [frame.name for frame in ranked(frames)] == ["z", "a", "b", "c"]


def test_picks_of_one_video_are_min_gap_apart(segmenter, tmp_path):
    folder = tmp_path / "frames"
    shares = {"drive_t000000.500": 0.9, "drive_t000001.000": 0.8, "drive_t000000.000": 0.7,
              "park_t000000.200": 0.6, "drive_t000003.000": 0.5, "drive_t000002.400": 0.4}
    for index, (name, share) in enumerate(shares.items()):
        save(folder, name, frame(share, 40 * index), ".jpg")
    spread = suggest_frames(segmenter, folder, tmp_path / "out", count=6, min_gap=2.0,
                            duplicate_threshold=0)
    assert [frame.name for frame in spread.picks] == ["drive_t000000.500", "park_t000000.200",
                                                      "drive_t000003.000"]
    assert spread.passed_over == {
        name: "within 2 s of drive_t000000.500"
        for name in ("drive_t000001.000", "drive_t000000.000", "drive_t000002.400")}
    assert spread.picks[0].video_time == ("drive", 0.5)

    picks, _ = spread_picks(spread.frames, 2, min_gap=2.0, duplicate_threshold=0)
    assert [frame.name for frame in picks] == ["drive_t000000.500", "park_t000000.200"]
    picks, passed_over = spread_picks(spread.frames, 6, min_gap=0, duplicate_threshold=0)
    assert [frame.name for frame in picks] == list(shares) and passed_over == {}
    picks, _ = spread_picks(spread.frames, 6, min_gap=0.5, duplicate_threshold=0)
    names = [frame.name for frame in picks]  # exactly 0.5 s from drive_t000000.500: allowed
    assert "drive_t000001.000" in names and "drive_t000000.000" in names
    picks, _ = spread_picks(spread.frames, 6, min_gap=0.51, duplicate_threshold=0)
    names = [frame.name for frame in picks]
    assert "drive_t000001.000" not in names and "drive_t000000.000" not in names


# --------------------------------------------------------------------------- the outputs


def test_the_outputs_list_the_picks_score_every_frame_and_show_them(segmenter, mixed_frames,
                                                                    tmp_path):
    out = tmp_path / "out"
    suggestion = suggest_frames(segmenter, mixed_frames, out, count=5, columns=4)
    assert [path.name for path in suggestion.files] == ["suggested.txt", "suggested.csv",
                                                        "contact_sheet.png"]
    picked = [frame.path.name for frame in suggestion.picks]
    assert (out / "suggested.txt").read_text().splitlines() == picked
    assert picked == ["d.png", "b.png", "g.jpg", "a.png", "c.png"]

    with open(out / "suggested.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["file"] for row in rows] == [frame.path.name for frame in suggestion.frames]
    assert [row["rank"] for row in rows][:5] == ["1", "2", "3", "4", "5"]
    assert rows[5]["rank"] == rows[6]["rank"] == ""
    assert float(rows[0]["score"]) == pytest.approx(suggestion.frames[0].score, abs=1e-6)

    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG"
        # two rows of cells (4 + 1), each cell a thumbnail and its map side by side
        assert sheet.size == (4 * 2 * THUMB_WIDTH + 5 * GAP,
                              2 * (THUMB_HEIGHT + CAPTION_HEIGHT) + 3 * GAP)
        pixels = np.asarray(sheet.convert("RGB"))
    first_map_centre = pixels[GAP + THUMB_HEIGHT // 2, GAP + THUMB_WIDTH + THUMB_WIDTH // 4]
    assert tuple(first_map_centre) != BACKGROUND  # the uncertainty of the left columns
    fifth_cell = pixels[2 * GAP + THUMB_HEIGHT + CAPTION_HEIGHT + THUMB_HEIGHT // 2,
                        GAP + THUMB_WIDTH // 2]
    assert tuple(fifth_cell) != BACKGROUND
    assert (pixels[-GAP - 1, -GAP - 1] == BACKGROUND).all()  # no sixth cell

    plain = suggest_frames(segmenter, mixed_frames, tmp_path / "plain", count=3, columns=2,
                           maps=False)
    with Image.open(plain.files[-1]) as sheet:
        assert sheet.size == (2 * THUMB_WIDTH + 3 * GAP,
                              2 * (THUMB_HEIGHT + CAPTION_HEIGHT) + 3 * GAP)


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model):
    return write_blob_run(tmp_path_factory.mktemp("suggest_run"), model)


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    for needle in needles:
        assert needle in lines[0], result.output


def test_the_command_suggests_from_a_run_folder(run_dir, mixed_frames, tmp_path):
    listing = tmp_path / "done.txt"
    listing.write_text("d\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["data", "suggest", str(run_dir), str(mixed_frames),
                                      "-n", "3", "--out", str(out), "--labelled", str(listing),
                                      "--min-gap", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == (f"{mixed_frames}: 6 frame(s) scored by entropy, 1 excluded "
                        f"(labelled already)")
    assert lines[1].startswith("picked 3")
    assert lines[2:] == [f"wrote {out / name}" for name in
                         ("suggested.txt", "suggested.csv", "contact_sheet.png")]
    assert (out / "suggested.txt").read_text().splitlines() == ["b.png", "g.jpg", "a.png"]


def test_the_command_says_in_one_line_what_is_wrong(run_dir, mixed_frames, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, ["data", "suggest", str(run_dir), str(tmp_path / "gone"),
                                  "--out", str(tmp_path / "out")])
    one_line_error(missing, "gone", "no such folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no frames here")
    empty = runner.invoke(cli, ["data", "suggest", str(run_dir), str(tmp_path / "empty"),
                                "--out", str(tmp_path / "out")])
    one_line_error(empty, "empty", "no frames")
    unknown = runner.invoke(cli, ["data", "suggest", str(tmp_path / "nomodel"),
                                  str(mixed_frames), "--out", str(tmp_path / "out")])
    one_line_error(unknown, "nomodel", "no such file or folder")
    into_frames = runner.invoke(cli, ["data", "suggest", str(run_dir), str(mixed_frames),
                                      "--out", str(mixed_frames)])
    one_line_error(into_frames, "another --out")
    bad_gap = runner.invoke(cli, ["data", "suggest", str(run_dir), str(mixed_frames),
                                  "--out", str(tmp_path / "out"), "--min-gap", "soon"])
    assert bad_gap.exit_code == 2 and "--min-gap" in bad_gap.output
    assert not (tmp_path / "out").exists()
