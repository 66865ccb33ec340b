"""`pixelwise data import coco`: COCO instances JSON (polygons, RLE compressed and not,
boxes) drawn with pycocotools, checked against masks drawn by hand."""

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools import mask as coco_mask

from import_helpers import grid, label, listed, write_image
from pixelwise.cli import cli
from pixelwise.data.annotations.coco import import_coco
from pixelwise.data.annotations.importer import ImportOptions
from pixelwise.data.check import check_dataset

CATEGORIES = [{"id": 1, "name": "road", "supercategory": ""},
              {"id": 5, "name": "toy", "supercategory": ""},
              {"id": 9, "name": "sign", "supercategory": ""}]


def annotation(ann_id, image_id, category_id, segmentation, iscrowd=0, bbox=None):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id,
            "segmentation": segmentation, "iscrowd": iscrowd, "area": 0.0,
            "bbox": bbox or [0, 0, 0, 0], "attributes": {"occluded": False}}


def coco_file(folder: Path, images: list[tuple[int, str, int, int]], annotations: list,
              categories=CATEGORIES, write_images=True, name="instances_default.json") -> Path:
    """A COCO instances file as CVAT's COCO 1.0 export writes it (and the images beside)."""
    folder.mkdir(parents=True, exist_ok=True)
    if write_images:
        for _, file_name, width, height in images:
            write_image(folder / file_name, width, height)
    path = folder / name
    path.write_text(json.dumps({
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": "", "url": "",
                 "version": "", "year": ""},
        "categories": categories,
        "images": [{"id": image_id, "width": width, "height": height, "file_name": file_name,
                    "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0}
                   for image_id, file_name, width, height in images],
        "annotations": annotations}))
    return path


def compressed_rle(mask: np.ndarray) -> dict:
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": encoded["size"], "counts": encoded["counts"].decode("ascii")}


def test_polygon_compressed_and_uncompressed_rle_with_category_id_gaps(tmp_path):
    sign = np.zeros((8, 12), dtype=bool)
    sign[5:7, 8:11] = True
    path = coco_file(tmp_path / "coco", [(1, "img1.jpg", 12, 8)], [
        annotation(10, 1, 1, [[1, 1, 5, 1, 5, 4, 1, 4]]),
        annotation(11, 1, 9, compressed_rle(sign)),
        # column by column: 6 off, 2 on (column 0, rows 6-7), 88 off
        annotation(12, 1, 5, {"size": [8, 12], "counts": [6, 2, 88]}, iscrowd=1),
    ])
    summary = import_coco(path, tmp_path / "out")
    assert summary.spec.class_names == ("background", "road", "toy", "sign")  # ids 1, 5, 9
    np.testing.assert_array_equal(label(tmp_path / "out", "img1"), grid("""
        ............
        .1111.......
        .1111.......
        .1111.......
        ............
        ........333.
        2.......333.
        2...........
    """))
    assert check_dataset(tmp_path / "out", "train").ok


def test_smaller_annotations_are_drawn_over_larger_and_boxes_are_drawn(tmp_path):
    crowd = [0] + [8, 2] * 7 + [8, 22]  # columns 0..7, rows 0..7 of a 10x10 image
    path = coco_file(tmp_path / "coco", [(2, "img2.png", 10, 10), (3, "empty.jpg", 10, 10)], [
        annotation(20, 2, 5, [[3, 3, 5, 3, 5, 5, 3, 5]]),  # small, listed first
        annotation(21, 2, 1, {"size": [10, 10], "counts": crowd}, iscrowd=1),
        annotation(22, 2, 9, [], bbox=[8, 8, 2, 2]),  # a box exported with no segmentation
    ])
    summary = import_coco(path, tmp_path / "out")
    np.testing.assert_array_equal(label(tmp_path / "out", "img2"), grid("""
        11111111..
        11111111..
        11111111..
        11122111..
        11122111..
        11111111..
        11111111..
        11111111..
        ........33
        ........33
    """))
    assert summary.names == ["img2"]
    assert any("1 image(s) with no annotation left out: empty.jpg" in note
               for note in summary.notes)


def test_every_problem_is_named_and_nothing_is_written(tmp_path):
    path = coco_file(tmp_path / "coco", [(1, "a.jpg", 12, 8), (2, "gone.jpg", 12, 8)], [
        annotation(1, 1, 4, [[0, 0, 4, 0, 4, 4]]),
        annotation(2, 1, 1, {"size": [4, 4], "counts": [16]}),
        annotation(3, 1, 1, {"size": [8, 12], "counts": [5, 2]}),
        annotation(4, 1, 5, [[30, 30, 40, 30, 40, 40]]),
        annotation(5, 1, 5, [[1, 1, 2, 2]]),
        annotation(6, 2, 1, [[0, 0, 4, 0, 4, 4]]),
        annotation(7, 99, 1, [[0, 0, 4, 0, 4, 4]]),
    ], write_images=False)
    write_image(tmp_path / "coco/a.jpg", 12, 8)
    with pytest.raises(ValueError) as raised:
        import_coco(path, tmp_path / "out")
    message = str(raised.value)
    assert message.startswith(f"{path}: 7 problems; nothing written:")
    where = f"{path}, image 'a.jpg'"
    for expected in (
            f"{path}, annotation 1: category_id 4 is not one of the categories (1, 5, 9)",
            f"{where}, annotation 2 ('road'): its RLE is 4x4 but the image is 12x8",
            f"{where}, annotation 3 ('road'): its RLE runs cover 7 pixels but the image has 96",
            f"{where}, annotation 4 ('toy'): lies outside the 12x8 image",
            f"{where}, annotation 5 ('toy'): a polygon needs at least 3 x, y pairs",
            f"{path}, image 'gone.jpg': image not found in {path.parent}",
            f"{path}: 1 annotation(s) name image_id 99, which is not in 'images'"):
        assert expected in message, expected
    assert not (tmp_path / "out").exists()


def test_malformed_and_non_coco_json_are_refused(tmp_path):
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(ValueError, match="broken.json: not a valid COCO instances file"):
        import_coco(tmp_path / "broken.json", tmp_path / "out")
    (tmp_path / "labelme.json").write_text('{"shapes": []}')
    with pytest.raises(ValueError, match="not a COCO instances file"):
        import_coco(tmp_path / "labelme.json", tmp_path / "out")
    doubled = [{"id": 1, "name": "road"}, {"id": 2, "name": "road"}]
    path = coco_file(tmp_path / "coco", [(1, "a.jpg", 4, 4)], [], categories=doubled)
    with pytest.raises(ValueError, match="categories named twice: road"):
        import_coco(path, tmp_path / "out")


def test_a_zip_in_cvats_coco_layout_and_an_images_folder(tmp_path):
    export = tmp_path / "export"
    path = coco_file(export / "annotations", [(1, "a.jpg", 12, 8)],
                     [annotation(1, 1, 1, [[0, 0, 4, 0, 4, 4, 0, 4]])], write_images=False)
    write_image(export / "images/a.jpg", 12, 8)
    archive = tmp_path / "coco.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in sorted(export.rglob("*")):
            zipped.write(file, file.relative_to(export))
    import_coco(archive, tmp_path / "from_zip")  # images/ beside annotations/
    import_coco(path, tmp_path / "from_folder", images=export / "images")
    expected = np.zeros((8, 12), dtype=np.uint8)
    expected[:4, :4] = 1
    np.testing.assert_array_equal(label(tmp_path / "from_zip", "a"), expected)
    np.testing.assert_array_equal(label(tmp_path / "from_folder", "a"), expected)


def test_classes_option_maps_categories_by_name(tmp_path):
    path = coco_file(tmp_path / "coco", [(1, "a.jpg", 12, 8)], [
        annotation(1, 1, 9, [[0, 0, 4, 0, 4, 4, 0, 4]]),
        annotation(2, 1, 1, [[6, 0, 10, 0, 10, 4, 6, 4]])])
    summary = import_coco(path, tmp_path / "out",
                          options=ImportOptions(classes="background,sign,toy,road"))
    assert summary.spec.class_names == ("background", "sign", "toy", "road")
    drawn = label(tmp_path / "out", "a")
    assert drawn[0, 0] == 1 and drawn[0, 6] == 3 and drawn[5, 5] == 0


def test_cli_coco(tmp_path):
    path = coco_file(tmp_path / "coco", [(i, f"f{i}.jpg", 12, 8) for i in range(1, 5)],
                     [annotation(i, i, 1 + 4 * (i % 2), [[0, 0, 6, 0, 6, 6, 0, 6]])
                      for i in range(1, 5)])
    result = CliRunner().invoke(cli, ["data", "import", "coco", str(path), "--images",
                                      str(tmp_path / "coco"), "--out", str(tmp_path / "out"),
                                      "--val-fraction", "0.25", "--unlabelled", "ignore"])
    assert result.exit_code == 0, result.output
    assert "imported 4 image(s)" in result.output and "(ignore)" in result.output
    assert len(listed(tmp_path / "out", "train")) == 3
    assert len(listed(tmp_path / "out", "val")) == 1
    bad = CliRunner().invoke(cli, ["data", "import", "coco", str(path), "--out",
                                   str(tmp_path / "out")])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert bad.output.startswith(f"Error: class 0 of the dataset in {tmp_path / 'out'} is "
                                 f"'road', not background") and bad.output.count("\n") == 1
    again = CliRunner().invoke(cli, ["data", "import", "coco", str(path), "--out",
                                     str(tmp_path / "out"), "--unlabelled", "ignore"])
    assert again.exit_code == 1 and "Traceback" not in again.output
    assert "4 problems; nothing written" in again.output  # every name is already there
    assert "already has an image named 'f1'; pass --overwrite" in again.output
