"""`pixelwise data import labelme`: LabelMe JSON files -> a VOC-layout dataset, drawn as
labelme2voc draws them (Pillow, outline included), checked against masks drawn by hand."""

import base64
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from import_helpers import grid, image_bytes, label, listed, snapshot, write_image
from pixelwise.cli import cli
from pixelwise.data.annotations.importer import ImportOptions
from pixelwise.data.annotations.labelme import import_labelme
from pixelwise.data.check import check_dataset
from pixelwise.data.spec import DatasetSpec, voc_colormap


def shape(label, kind, points, **extra):
    return {"label": label, "points": points, "group_id": None, "shape_type": kind,
            "flags": {}, **extra}


def labelme_file(folder: Path, name: str, shapes: list, size=(12, 8), *, image=True,
                 image_data: bytes | None = None, image_path: str | None = None) -> Path:
    """A LabelMe JSON file as labelme 5 writes it (and its JPEG beside it when ``image``)."""
    folder.mkdir(parents=True, exist_ok=True)
    if image:
        write_image(folder / f"{name}.jpg", *size)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({
        "version": "5.5.0", "flags": {}, "shapes": shapes,
        "imagePath": image_path if image_path is not None else f"{name}.jpg",
        "imageData": base64.b64encode(image_data).decode() if image_data else None,
        "imageHeight": size[1], "imageWidth": size[0]}, indent=2))
    return path


def test_polygon_and_rectangle_include_their_edges_later_shapes_on_top(tmp_path):
    labelme_file(tmp_path / "src", "frame", [
        shape("road", "polygon", [[1, 1], [5, 1], [5, 4], [1, 4]]),
        shape("toy", "rectangle", [[9, 6], [7, 2]]),  # corners in reverse order
        shape("toy", "polygon", [[-3, -3], [2, -3], [2, 2], [-3, 2]]),  # partly outside
    ])
    summary = import_labelme(tmp_path / "src", tmp_path / "out")
    expected = grid("""
        222.........
        222111......
        222111.222..
        .11111.222..
        .11111.222..
        .......222..
        .......222..
        ............
    """)
    np.testing.assert_array_equal(label(tmp_path / "out", "frame"), expected)
    assert summary.spec.class_names == ("background", "road", "toy")
    assert summary.class_pixels.tolist() == [int((expected == c).sum()) for c in range(3)]


def test_circle_point_ignore_and_background_labels(tmp_path):
    labelme_file(tmp_path / "src", "frame", [
        shape("toy", "point", [[8, 8]]),  # a disk of radius 5
        shape("__ignore__", "circle", [[8, 8], [8, 10]]),  # radius 2
        shape("_background_", "rectangle", [[3, 8], [4, 8]]),
    ], size=(16, 16))
    import_labelme(tmp_path / "src", tmp_path / "out")
    np.testing.assert_array_equal(label(tmp_path / "out", "frame"), grid("""
        ................
        ................
        ................
        ......11111.....
        .....1111111....
        ....111111111...
        ...1111xxx1111..
        ...111xxxxx111..
        .....1xxxxx111..
        ...111xxxxx111..
        ...1111xxx1111..
        ....111111111...
        .....1111111....
        ......11111.....
        ................
        ................
    """))


def test_lines_are_ten_pixels_wide(tmp_path):
    labelme_file(tmp_path / "src", "line", [shape("road", "line", [[2, 7], [13, 7]])],
                 size=(16, 16))
    labelme_file(tmp_path / "src", "strip", [shape("road", "linestrip", [[2, 7], [13, 7]])],
                 size=(16, 16))
    import_labelme(tmp_path / "src", tmp_path / "out")
    expected = np.zeros((16, 16), dtype=np.uint8)
    expected[3:13, 2:14] = 1  # rows 7-4..7+5, columns 2..13
    np.testing.assert_array_equal(label(tmp_path / "out", "line"), expected)
    np.testing.assert_array_equal(label(tmp_path / "out", "strip"), expected)


def png_base64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_mask_shape_is_placed_at_its_first_point(tmp_path):
    box = np.array([[1, 0, 1], [1, 1, 0]])
    labelme_file(tmp_path / "src", "frame", [
        shape("toy", "mask", [[4, 2], [6, 3]], mask=png_base64(box))], size=(8, 6))
    import_labelme(tmp_path / "src", tmp_path / "out")
    np.testing.assert_array_equal(label(tmp_path / "out", "frame"), grid("""
        ........
        ........
        ....1.1.
        ....11..
        ........
        ........
    """))


def test_embedded_image_data_is_used_when_the_image_is_not_there(tmp_path):
    data = image_bytes(12, 8, "PNG")
    labelme_file(tmp_path / "src", "frame", [shape("road", "rectangle", [[0, 0], [3, 3]])],
                 image=False, image_data=data)
    import_labelme(tmp_path / "src", tmp_path / "out")
    assert (tmp_path / "out/JPEGImages/frame.png").read_bytes() == data
    assert label(tmp_path / "out", "frame")[:4, :4].tolist() == [[1] * 4] * 4


def test_images_are_copied_byte_for_byte_and_the_spec_uses_voc_colours(tmp_path):
    labelme_file(tmp_path / "src", "b", [shape("toy", "rectangle", [[0, 0], [1, 1]])])
    labelme_file(tmp_path / "src", "a", [shape("road", "rectangle", [[0, 0], [1, 1]])])
    import_labelme(tmp_path / "src", tmp_path / "out")
    for name in ("a", "b"):
        assert ((tmp_path / "out/JPEGImages" / f"{name}.jpg").read_bytes()
                == (tmp_path / "src" / f"{name}.jpg").read_bytes())
    spec = DatasetSpec.load(tmp_path / "out/pixelwise_dataset.json")
    assert spec.class_names == ("background", "road", "toy")
    assert spec.colors == tuple(tuple(int(c) for c in rgb) for rgb in voc_colormap(3))


def test_classes_from_a_labelme2voc_labels_file(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("__ignore__\n_background_\ntoy\nroad\ncat\n")
    labelme_file(tmp_path / "src", "frame", [
        shape("road", "rectangle", [[0, 0], [1, 1]]), shape("toy", "rectangle", [[3, 0], [3, 0]])])
    summary = import_labelme(tmp_path / "src", tmp_path / "out",
                             ImportOptions(classes=str(labels)))
    assert summary.spec.class_names == ("background", "toy", "road", "cat")
    assert label(tmp_path / "out", "frame")[0, :4].tolist() == [2, 2, 0, 1]


def test_unlabelled_pixels_can_be_ignored(tmp_path):
    labelme_file(tmp_path / "src", "frame", [shape("road", "rectangle", [[0, 0], [1, 0]]),
                                             shape("toy", "rectangle", [[3, 0], [3, 0]])])
    summary = import_labelme(tmp_path / "src", tmp_path / "out",
                             ImportOptions(unlabelled="ignore"))
    assert summary.spec.class_names == ("road", "toy")  # no background class to learn
    assert label(tmp_path / "out", "frame")[0, :5].tolist() == [0, 0, 255, 1, 255]
    assert summary.ignore_pixels == 12 * 8 - 3


def test_background_first_is_required_when_unlabelled_pixels_are_background(tmp_path):
    labelme_file(tmp_path / "src", "frame", [shape("road", "rectangle", [[0, 0], [1, 1]])])
    with pytest.raises(ValueError, match="class 0 of --classes is 'road', not background"):
        import_labelme(tmp_path / "src", tmp_path / "out", ImportOptions(classes="road,toy"))
    assert not (tmp_path / "out").exists()


def test_an_exif_rotated_jpeg_keeps_its_bytes_and_gets_its_label_on_the_stored_grid(tmp_path):
    """Stored 12x8 with orientation 6 (turn clockwise to show): LabelMe shows it 8x12 and
    the stored top-left pixel (red) at the shown top-right; the label must cover it."""
    src = tmp_path / "src"
    data = write_image(src / "photo.jpg", 12, 8, orientation=6)
    labelme_file(src, "photo", [shape("road", "rectangle", [[6, 0], [7, 1]])], size=(8, 12),
                 image=False)
    summary = import_labelme(src, tmp_path / "out")
    assert (tmp_path / "out/JPEGImages/photo.jpg").read_bytes() == data
    stored = label(tmp_path / "out", "photo")
    shown = np.zeros((12, 8), dtype=np.uint8)
    shown[0:2, 6:8] = 1
    np.testing.assert_array_equal(stored, np.rot90(shown, 1))
    assert stored.shape == (8, 12) and stored[0, 0] == 1
    with Image.open(tmp_path / "out/JPEGImages/photo.jpg") as picture:
        assert picture.getpixel((0, 0))[0] > 200  # the red corner the label covers
    assert summary.turned == ["photo"]
    assert check_dataset(tmp_path / "out", "train").ok


def test_every_problem_is_listed_with_its_file_and_shape_and_nothing_is_written(tmp_path):
    src = tmp_path / "src"
    (src / "broken.json").parent.mkdir(parents=True)
    (src / "broken.json").write_text('{"shapes": [')
    (src / "other.json").write_text('{"categories": []}')
    labelme_file(src, "missing", [shape("road", "rectangle", [[0, 0], [1, 1]])], image=False)
    labelme_file(src, "size", [shape("road", "rectangle", [[0, 0], [1, 1]])])
    data = json.loads((src / "size.json").read_text())
    data["imageWidth"] = 20
    (src / "size.json").write_text(json.dumps(data))
    labelme_file(src, "empty", [shape("road", "rectangle", [[0, 0], [1, 1]])], image=False)
    (src / "empty.jpg").write_bytes(b"")
    labelme_file(src, "garbage", [shape("road", "rectangle", [[0, 0], [1, 1]])], image=False)
    (src / "garbage.jpg").write_bytes(b"this is not a picture at all")
    labelme_file(src, "outside", [shape("road", "rectangle", [[0, 0], [1, 1]]),
                                  shape("toy", "polygon", [[30, 30], [40, 30], [40, 40]])])
    labelme_file(src, "short", [shape("road", "polygon", [[0, 0], [5, 5]])])
    labelme_file(src, "cat", [shape("cat", "rectangle", [[0, 0], [1, 1]])])
    with pytest.raises(ValueError) as raised:
        import_labelme(src, tmp_path / "out", ImportOptions(classes="background,road,toy"))
    message = str(raised.value)
    assert message.startswith(f"{src}: 9 problems; nothing written:")
    for expected in (
            f"{src / 'broken.json'}: not a readable JSON file",
            f"{src / 'other.json'}: not a LabelMe annotation (no 'shapes' list)",
            f"{src / 'missing.json'}: image {src / 'missing.jpg'} not found",
            f"{src / 'size.json'}: the annotation is for a 20x8 image but "
            f"{src / 'size.jpg'} is 12x8",
            f"{src / 'empty.json'}: {src / 'empty.jpg'}: the image file is empty",
            f"{src / 'garbage.json'}: {src / 'garbage.jpg'}: cannot decode the image",
            f"{src / 'outside.json'}, shape 2 (polygon 'toy'): lies outside the 12x8 image",
            f"{src / 'short.json'}, shape 1 (polygon 'road'): a polygon needs at least 3 "
            f"point(s), this one has 2",
            f"{src / 'cat.json'}, shape 1 (rectangle 'cat'): label 'cat' is not one of the "
            f"classes of --classes (background, road, toy); add it to --classes"):
        assert expected in message, expected
    assert not (tmp_path / "out").exists()


def test_a_single_problem_is_one_line(tmp_path):
    labelme_file(tmp_path / "src", "frame", [shape("road", "circle", [[3, 3]])])
    with pytest.raises(ValueError) as raised:
        import_labelme(tmp_path / "src", tmp_path / "out")
    assert str(raised.value) == (
        f"{tmp_path / 'src/frame.json'}, shape 1 (circle 'road'): a circle needs 2 point(s), "
        f"this one has 1; correct it in LabelMe (nothing written)")


def test_a_second_batch_extends_the_dataset_and_known_names_need_overwrite(tmp_path):
    out = tmp_path / "out"
    for name in ("a", "b", "c", "d"):
        labelme_file(tmp_path / "one", name, [shape("road", "rectangle", [[0, 0], [2, 2]])])
    import_labelme(tmp_path / "one", out, ImportOptions(val_fraction=0.25))
    spec_before = (out / "pixelwise_dataset.json").read_bytes()
    assert sorted(listed(out, "train") + listed(out, "val")) == ["a", "b", "c", "d"]
    # a second batch: toy is not a class of the dataset
    labelme_file(tmp_path / "two", "e", [shape("toy", "rectangle", [[0, 0], [2, 2]])])
    before = snapshot(out)
    with pytest.raises(ValueError, match="label 'toy' is not one of the classes of the dataset"):
        import_labelme(tmp_path / "two", out)
    assert snapshot(out) == before
    # the same classes: extended
    labelme_file(tmp_path / "two", "e", [shape("road", "rectangle", [[0, 0], [3, 3]])])
    labelme_file(tmp_path / "two", "f", [shape("road", "rectangle", [[0, 0], [3, 3]])])
    summary = import_labelme(tmp_path / "two", out, ImportOptions(val_fraction=0))
    assert listed(out, "train")[-2:] == ["e", "f"] and len(listed(out, "val")) == 1
    assert [(written.path.name, written.added) for written in summary.lists] == [("train.txt", 2)]
    assert (out / "pixelwise_dataset.json").read_bytes() == spec_before
    # a name the dataset has: refused, then replaced with --overwrite
    labelme_file(tmp_path / "three", "a", [shape("road", "rectangle", [[0, 0], [5, 5]])],
                 size=(12, 8))
    before = snapshot(out)
    with pytest.raises(ValueError, match=r"already has an image named 'a'; pass --overwrite"):
        import_labelme(tmp_path / "three", out)
    assert snapshot(out) == before
    import_labelme(tmp_path / "three", out, ImportOptions(overwrite=True))
    assert label(out, "a")[:6, :6].tolist() == [[1] * 6] * 6
    names = listed(out, "train") + listed(out, "val")
    assert sorted(names) == ["a", "b", "c", "d", "e", "f"]  # listed once
    assert check_dataset(out, "train").ok and check_dataset(out, "val-full").ok


def test_a_problem_after_images_were_staged_leaves_no_trace(tmp_path):
    """The first file draws and is staged; the last one fails: a new folder is removed
    again, an existing dataset keeps every byte and gets no staging leftovers."""
    src = tmp_path / "src"
    labelme_file(src, "a", [shape("road", "rectangle", [[0, 0], [2, 2]])])
    labelme_file(src, "z", [shape("road", "polygon", [[40, 40], [50, 40], [50, 50]])])
    with pytest.raises(ValueError, match=r"z.json, shape 1 \(polygon 'road'\): lies outside"):
        import_labelme(src, tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists()
    labelme_file(tmp_path / "first", "x", [shape("road", "rectangle", [[0, 0], [2, 2]])])
    import_labelme(tmp_path / "first", tmp_path / "existing")
    before = snapshot(tmp_path / "existing")
    with pytest.raises(ValueError, match="lies outside"):
        import_labelme(src, tmp_path / "existing")
    assert snapshot(tmp_path / "existing") == before
    assert sorted(path.name for path in (tmp_path / "existing").iterdir()) == [
        "ImageSets", "JPEGImages", "SegmentationClass", "pixelwise_dataset.json"]


def test_overwriting_an_image_of_another_suffix_removes_the_old_file(tmp_path):
    labelme_file(tmp_path / "one", "a", [shape("road", "rectangle", [[0, 0], [2, 2]])],
                 image=False, image_data=image_bytes(12, 8, "PNG"))
    import_labelme(tmp_path / "one", tmp_path / "out")
    assert (tmp_path / "out/JPEGImages/a.png").is_file()
    labelme_file(tmp_path / "two", "a", [shape("toy", "rectangle", [[0, 0], [2, 2]])])
    with pytest.raises(ValueError, match="label 'toy' is not one of the classes of --classes"):
        import_labelme(tmp_path / "two", tmp_path / "out",
                       ImportOptions(classes="background,road", overwrite=True))
    labelme_file(tmp_path / "two", "a", [shape("road", "rectangle", [[0, 0], [4, 4]])])
    import_labelme(tmp_path / "two", tmp_path / "out", ImportOptions(overwrite=True))
    assert sorted(path.name for path in (tmp_path / "out/JPEGImages").iterdir()) == ["a.jpg"]
    assert label(tmp_path / "out", "a")[4, 4] == 1
    assert listed(tmp_path / "out", "train") == ["a"]


def test_other_classes_than_the_dataset_has_are_refused(tmp_path):
    labelme_file(tmp_path / "src", "a", [shape("road", "rectangle", [[0, 0], [2, 2]])])
    import_labelme(tmp_path / "src", tmp_path / "out")
    with pytest.raises(ValueError, match="already holds a dataset with classes background, road; "
                                         "--classes gives background, road, toy"):
        import_labelme(tmp_path / "src", tmp_path / "out",
                       ImportOptions(classes="background,road,toy", overwrite=True))


def test_a_folder_with_other_things_in_it_is_not_written_to(tmp_path):
    labelme_file(tmp_path / "src", "a", [shape("road", "rectangle", [[0, 0], [2, 2]])])
    (tmp_path / "out").mkdir()
    (tmp_path / "out/notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds other files but no dataset"):
        import_labelme(tmp_path / "src", tmp_path / "out")
    assert snapshot(tmp_path / "out") == {"notes.txt": b"mine"}


def test_the_split_is_seeded_and_deterministic(tmp_path):
    for name in "abcdefghij":
        labelme_file(tmp_path / "src", name, [shape("road", "rectangle", [[0, 0], [1, 1]])])
    import_labelme(tmp_path / "src", tmp_path / "one", ImportOptions(seed=3))
    import_labelme(tmp_path / "src", tmp_path / "two", ImportOptions(seed=3))
    assert listed(tmp_path / "one", "val") == listed(tmp_path / "two", "val")
    assert len(listed(tmp_path / "one", "val")) == 2 and len(listed(tmp_path / "one", "train")) == 8
    vals = set()
    for seed in range(6):
        import_labelme(tmp_path / "src", tmp_path / f"s{seed}", ImportOptions(seed=seed))
        vals.add(tuple(listed(tmp_path / f"s{seed}", "val")))
    assert len(vals) > 1  # the seed matters


def test_a_zip_of_a_labelme_folder(tmp_path):
    labelme_file(tmp_path / "frames", "a", [shape("road", "rectangle", [[0, 0], [2, 2]])])
    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in (tmp_path / "frames").iterdir():
            zipped.write(path, f"frames/{path.name}")
    summary = import_labelme(archive, tmp_path / "out")
    assert summary.names == ["a"] and label(tmp_path / "out", "a")[2, 2] == 1


def test_cli_imports_and_reports(tmp_path):
    for name in ("a", "b", "c", "d", "e"):
        labelme_file(tmp_path / "src", name, [shape("road", "polygon", [[0, 0], [6, 0], [6, 6]]),
                                              shape("toy", "point", [[9, 4]])])
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["data", "import", "labelme", str(tmp_path / "src"),
                                      "--out", str(out), "--val-fraction", "0.4"])
    assert result.exit_code == 0, result.output
    assert f"{out}: imported 5 image(s)" in result.output
    assert f"list {out / 'ImageSets/Segmentation/train.txt'}: +3 image(s), 3 in all" \
        in result.output
    assert f"list {out / 'ImageSets/Segmentation/val.txt'}: +2 image(s)" in result.output
    assert "road" in result.output and "toy" in result.output
    report = check_dataset(out, "train")
    assert report.ok, report.format()
    assert (report.class_pixel_counts > 0).all()
    check = CliRunner().invoke(cli, ["data", "check", str(out), "--split", "val-full"])
    assert check.exit_code == 0 and check.output.rstrip().endswith("OK")


def test_cli_errors_are_one_line_without_a_traceback(tmp_path):
    labelme_file(tmp_path / "src", "a", [shape("cat", "rectangle", [[0, 0], [2, 2]])])
    result = CliRunner().invoke(cli, ["data", "import", "labelme", str(tmp_path / "src"),
                                      "--out", str(tmp_path / "out"), "--classes",
                                      "background,road"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "a.json, shape 1 (rectangle 'cat'): label 'cat' is not one of the classes" in lines[0]
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
