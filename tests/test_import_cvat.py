"""`pixelwise data import cvat` (CVAT for images 1.1 XML) and `... cvat-masks` (CVAT's
Segmentation mask 1.1 export), checked against masks drawn by hand. CVAT's polygons and
boxes follow pycocotools's rule (as CVAT's own mask export): a square from (1, 1) to (5, 4)
covers columns 1..4 and rows 1..3."""

import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from import_helpers import grid, label, listed, snapshot, write_image
from pixelwise.cli import cli
from pixelwise.data.annotations.cvat import import_cvat
from pixelwise.data.annotations.cvat_masks import import_cvat_masks
from pixelwise.data.annotations.importer import ImportOptions
from pixelwise.data.check import check_dataset
from pixelwise.data.spec import DatasetSpec

META = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>7</id>
      <name>frames</name>
      <labels>
        <label><name>road</name><color>#804080</color><type>any</type><attributes/></label>
        <label><name>toy</name><color>#dc143c</color><type>any</type><attributes/></label>
        <label><name>lane</name><color>#ffffff</color><type>polyline</type><attributes/></label>
      </labels>
    </task>
  </meta>
"""


def cvat_export(folder: Path, images: str, sizes: dict[str, tuple[int, int]]) -> Path:
    """annotations.xml with META and ``images`` (the <image> elements), and each image of
    ``sizes`` in folder/images/."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (width, height) in sizes.items():
        write_image(folder / "images" / name, width, height)
    path = folder / "annotations.xml"
    path.write_text(META + images + "</annotations>\n")
    return path


SHAPES = """
  <image id="0" name="frame_000.jpg" width="12" height="8">
    <polygon label="road" source="manual" occluded="0"
             points="1.00,1.00;5.00,1.00;5.00,4.00;1.00,4.00" z_order="0"></polygon>
    <box label="toy" source="manual" occluded="0" xtl="7.00" ytl="2.00" xbr="10.00"
         ybr="6.00" z_order="0"></box>
    <mask label="toy" source="manual" occluded="0" rle="1, 2, 1, 2" left="9" top="0"
          width="3" height="2" z_order="0"></mask>
    <polyline label="lane" source="manual" occluded="0" points="0.00,7.00;11.00,7.00"
              z_order="0"></polyline>
    <tag label="toy" source="manual"></tag>
  </image>
  <image id="1" name="frame_001.jpg" width="12" height="8"></image>
"""


def test_polygon_box_and_rle_mask_by_pycocotools_rule(tmp_path):
    xml = cvat_export(tmp_path / "export", SHAPES, {"frame_000.jpg": (12, 8),
                                                    "frame_001.jpg": (12, 8)})
    summary = import_cvat(xml, tmp_path / "out")
    expected = grid("""
        ..........22
        .1111.....22
        .1111..222..
        .1111..222..
        .......222..
        .......222..
        ............
        ............
    """)
    np.testing.assert_array_equal(label(tmp_path / "out", "frame_000"), expected)
    spec = DatasetSpec.load(tmp_path / "out/pixelwise_dataset.json")
    assert spec.class_names == ("background", "road", "toy")  # lane: a polyline label
    assert spec.colors == ((0, 0, 0), (128, 64, 128), (220, 20, 60))  # CVAT's colours
    assert summary.names == ["frame_000"]  # frame_001 has no shape: left out
    notes = "\n".join(summary.notes)
    assert "1 image(s) with no shape left out (not labelled yet?): frame_001.jpg" in notes
    assert "not drawn (no area; CVAT's mask export leaves them out too): 1 polyline" in notes
    assert check_dataset(tmp_path / "out", "train").ok


def test_z_order_then_document_order_decides_overlaps(tmp_path):
    xml = cvat_export(tmp_path / "export", """
  <image id="0" name="z.png" width="8" height="8">
    <polygon label="toy" points="2,2;4,2;4,4;2,4" z_order="1"/>
    <box label="road" xtl="0" ytl="0" xbr="6" ybr="6" z_order="0"/>
    <box label="toy" xtl="5" ytl="5" xbr="8" ybr="8" z_order="0"/>
  </image>
""", {"z.png": (8, 8)})
    import_cvat(xml, tmp_path / "out")
    np.testing.assert_array_equal(label(tmp_path / "out", "z"), grid("""
        111111..
        111111..
        112211..
        112211..
        111111..
        11111222
        .....222
        .....222
    """))
    assert (tmp_path / "out/JPEGImages/z.png").is_file()


def test_rotated_box_and_ellipse(tmp_path):
    xml = cvat_export(tmp_path / "export", """
  <image id="0" name="r.jpg" width="10" height="10">
    <box label="road" xtl="2" ytl="3" xbr="6" ybr="5" rotation="90" z_order="0"/>
    <ellipse label="toy" cx="7" cy="7" rx="2" ry="1" z_order="1"/>
  </image>
""", {"r.jpg": (10, 10)})
    import_cvat(xml, tmp_path / "out")
    drawn = label(tmp_path / "out", "r")
    road = np.zeros((10, 10), dtype=bool)
    road[2:6, 3:5] = True  # 4 wide, 2 high about (4, 4), turned: x 3..5, y 2..6
    np.testing.assert_array_equal(drawn == 1, road)
    assert drawn[6:8, 6:8].tolist() == [[2, 2], [2, 2]]  # inside the ellipse
    assert drawn[5, 5] == 0 and drawn[8, 9] == 0 and (drawn == 2).sum() < 2 * 1 * 4 + 1


def test_every_problem_names_the_file_image_and_shape_and_nothing_is_written(tmp_path):
    xml = cvat_export(tmp_path / "export", """
  <image id="0" name="a.jpg" width="12" height="8">
    <mask label="toy" rle="1, 2" left="0" top="0" width="3" height="2" z_order="0"/>
    <polygon label="road" points="30,30;40,30;40,40" z_order="0"/>
    <box label="cat" xtl="0" ytl="0" xbr="2" ybr="2" z_order="0"/>
    <box label="road" xtl="abc" ytl="0" xbr="2" ybr="2" z_order="0"/>
  </image>
  <image id="1" name="b.jpg" width="20" height="8">
    <box label="road" xtl="0" ytl="0" xbr="2" ybr="2"/>
  </image>
  <image id="2" name="gone.jpg" width="12" height="8">
    <box label="road" xtl="0" ytl="0" xbr="2" ybr="2"/>
  </image>
""", {"a.jpg": (12, 8), "b.jpg": (12, 8)})
    with pytest.raises(ValueError) as raised:
        import_cvat(xml, tmp_path / "out")
    message = str(raised.value)
    assert message.startswith(f"{xml}: 6 problems; nothing written:")
    for expected in (
            f"{xml}, image 'a.jpg', shape 4 (box 'road'): its xtl='abc' is not a number",
            f"{xml}, image 'a.jpg', shape 1 (mask 'toy'): its run lengths cover 3 pixels but "
            f"its box is 3x2 = 6",
            f"{xml}, image 'a.jpg', shape 2 (polygon 'road'): lies outside the 12x8 image",
            f"{xml}, image 'a.jpg', shape 3 (box 'cat'): label 'cat' is not one of the classes "
            f"of the export (background, road, toy)",
            f"{xml}, image 'b.jpg': the annotation is for a 20x8 image but",
            f"{xml}, image 'gone.jpg': image not found in {xml.parent}, "
            f"{xml.parent / 'images'}; pass --images"):
        assert expected in message, expected
    assert not (tmp_path / "out").exists()


def test_malformed_xml_and_video_exports_are_refused(tmp_path):
    (tmp_path / "broken.xml").write_text("<annotations><image name='a.jpg'")
    with pytest.raises(ValueError, match=r"broken.xml: not valid XML \(.*\); export the"):
        import_cvat(tmp_path / "broken.xml", tmp_path / "out")
    (tmp_path / "video.xml").write_text(META + '<track id="0" label="road"/></annotations>')
    with pytest.raises(ValueError, match="CVAT for video 1.1"):
        import_cvat(tmp_path / "video.xml", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_zip_export_with_its_images_and_an_images_folder(tmp_path):
    xml = cvat_export(tmp_path / "export", SHAPES, {"frame_000.jpg": (12, 8)})
    archive = tmp_path / "task.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(xml, "annotations.xml")
        zipped.write(tmp_path / "export/images/frame_000.jpg", "images/frame_000.jpg")
    summary = import_cvat(archive, tmp_path / "from_zip")
    assert summary.names == ["frame_000"]
    elsewhere = tmp_path / "elsewhere"
    write_image(elsewhere / "frame_000.jpg", 12, 8)
    import_cvat(xml, tmp_path / "from_folder", images=elsewhere)
    np.testing.assert_array_equal(label(tmp_path / "from_zip", "frame_000"),
                                  label(tmp_path / "from_folder", "frame_000"))


# --- Segmentation mask 1.1 ------------------------------------------------------------------

LABELMAP = """# label:color_rgb:parts:actions
background:0,0,0::
road:128,64,128::
toy:220,20,60::
"""


def mask_export(folder: Path, masks: dict[str, np.ndarray], with_images: bool = True) -> Path:
    """CVAT's Segmentation mask 1.1 layout: labelmap.txt, RGB masks, the default list."""
    colours = {0: (0, 0, 0), 1: (128, 64, 128), 2: (220, 20, 60), 9: (10, 200, 10)}
    (folder / "SegmentationClass").mkdir(parents=True)
    (folder / "ImageSets/Segmentation").mkdir(parents=True)
    (folder / "labelmap.txt").write_text(LABELMAP)
    (folder / "ImageSets/Segmentation/default.txt").write_text("\n".join(masks) + "\n")
    for name, indices in masks.items():
        rgb = np.zeros(indices.shape + (3,), dtype=np.uint8)
        for index, colour in colours.items():
            rgb[indices == index] = colour
        Image.fromarray(rgb).save(folder / "SegmentationClass" / f"{name}.png")
        if with_images:
            write_image(folder / "JPEGImages" / f"{name}.jpg", indices.shape[1], indices.shape[0])
    return folder


MASK = grid("""
    11110000
    11110022
    00000022
    00000000
    22000000
    22000000
""")


def test_cvat_masks_colours_become_labelmap_classes(tmp_path):
    export = mask_export(tmp_path / "export", {"a": MASK, "b": np.zeros((6, 8), np.uint8)})
    summary = import_cvat_masks(export, tmp_path / "out")
    np.testing.assert_array_equal(label(tmp_path / "out", "a"), MASK)
    spec = DatasetSpec.load(tmp_path / "out/pixelwise_dataset.json")
    assert spec.class_names == ("background", "road", "toy")
    assert spec.colors == ((0, 0, 0), (128, 64, 128), (220, 20, 60))
    assert summary.names == ["a"]  # b: nothing but background, left out
    assert any("1 mask(s) with nothing but background left out" in note for note in summary.notes)
    assert summary.class_pixels.tolist() == [32, 8, 8]
    assert check_dataset(tmp_path / "out", "train").ok


def test_cvat_masks_background_can_become_the_ignore_label(tmp_path):
    export = mask_export(tmp_path / "export", {"a": MASK})
    summary = import_cvat_masks(export, tmp_path / "out",
                                options=ImportOptions(unlabelled="ignore"))
    assert summary.spec.class_names == ("road", "toy")
    expected = np.select([MASK == 1, MASK == 2], [0, 1], 255).astype(np.uint8)
    np.testing.assert_array_equal(label(tmp_path / "out", "a"), expected)


def test_cvat_masks_zip_without_images_takes_them_from_a_folder(tmp_path):
    export = mask_export(tmp_path / "export", {"a": MASK}, with_images=False)
    archive = tmp_path / "masks.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(export.rglob("*")):
            zipped.write(path, Path("export") / path.relative_to(export))
    with pytest.raises(ValueError) as raised:
        import_cvat_masks(archive, tmp_path / "out")
    assert str(raised.value) == (  # paths inside the zip, not where it was unpacked
        f"{archive}/export/SegmentationClass/a.png: no image named a in "
        f"{archive}/export/JPEGImages; pass --images with the folder holding the task's "
        f"images (nothing written)")
    write_image(tmp_path / "frames/a.png", 8, 6)
    import_cvat_masks(archive, tmp_path / "out", images=tmp_path / "frames")
    np.testing.assert_array_equal(label(tmp_path / "out", "a"), MASK)
    assert (tmp_path / "out/JPEGImages/a.png").read_bytes() == \
        (tmp_path / "frames/a.png").read_bytes()


def test_cvat_masks_unknown_colour_and_size_mismatch_are_problems(tmp_path):
    odd = MASK.copy()
    odd[5, 7] = 9  # a colour labelmap.txt does not have
    export = mask_export(tmp_path / "export", {"odd": odd, "small": MASK})
    write_image(export / "JPEGImages/small.jpg", 10, 6)
    with pytest.raises(ValueError) as raised:
        import_cvat_masks(export, tmp_path / "out")
    message = str(raised.value)
    assert "2 problems; nothing written" in message
    assert f"{export / 'SegmentationClass/odd.png'}, mask: {export / 'SegmentationClass/odd.png'}" \
           f": 1 colour(s) not in the palette: (10, 200, 10) x1" in message
    assert f"{export / 'SegmentationClass/small.png'}: the annotation is for a 8x6 image but " \
           f"{export / 'JPEGImages/small.jpg'} is 10x6" in message
    assert not (tmp_path / "out").exists()


def test_cli_cvat_and_cvat_masks(tmp_path):
    xml = cvat_export(tmp_path / "export", SHAPES, {"frame_000.jpg": (12, 8)})
    result = CliRunner().invoke(cli, ["data", "import", "cvat", str(xml), "--images",
                                      str(tmp_path / "export/images"), "--out",
                                      str(tmp_path / "out"), "--val-fraction", "0"])
    assert result.exit_code == 0, result.output
    assert f"list {tmp_path / 'out/ImageSets/Segmentation/train.txt'}: +1 image(s)" \
        in result.output
    assert listed(tmp_path / "out", "train") == ["frame_000"]
    export = mask_export(tmp_path / "masks", {"frame_000": MASK, "frame_009": MASK})
    before = snapshot(tmp_path / "out")
    result = CliRunner().invoke(cli, ["data", "import", "cvat-masks", str(export), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "already has an image named 'frame_000'" \
        in result.output
    assert snapshot(tmp_path / "out") == before
    result = CliRunner().invoke(cli, ["data", "import", "cvat-masks", str(export), "--out",
                                      str(tmp_path / "out"), "--overwrite"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(label(tmp_path / "out", "frame_000"), MASK)  # replaced
    assert sorted(listed(tmp_path / "out", "train") + listed(tmp_path / "out", "val")) == \
        ["frame_000", "frame_009"]
