import numpy as np
import pytest
from PIL import Image

from pixelwise.data.palette import colorize, read_label, rgb_to_index, write_label
from pixelwise.data.spec import DatasetSpec, voc_colormap

# From ../shared/voc-samples/README.md: (width, height), {class index: pixels}.
KNOWN_COUNTS = {
    "2007_000032": ((500, 281), {0: 129545, 1: 4734, 15: 866, 255: 5355}),
    "2007_000033": ((500, 366), {0: 143868, 1: 30937, 255: 8195}),
    "2007_000042": ((500, 335), {0: 63851, 19: 93653, 255: 9996}),
    "2007_000663": ((422, 500), {0: 43952, 6: 151036, 7: 6938, 255: 9074}),
}


def test_voc_colormap_known_entries():
    colormap = voc_colormap()
    assert colormap[0].tolist() == [0, 0, 0]
    assert colormap[1].tolist() == [128, 0, 0]
    assert colormap[15].tolist() == [192, 128, 128]  # person
    assert colormap[20].tolist() == [0, 64, 128]  # tvmonitor
    assert colormap[255].tolist() == [224, 224, 192]  # boundary


@pytest.mark.parametrize("name", sorted(KNOWN_COUNTS))
def test_real_annotations_decode_to_known_pixel_counts(voc_samples, name):
    (width, height), counts = KNOWN_COUNTS[name]
    label_map = read_label(voc_samples / "SegmentationClass" / f"{name}.png")
    assert label_map.shape == (height, width)
    values, found = np.unique(label_map, return_counts=True)
    assert dict(zip(values.tolist(), found.tolist())) == counts


def test_real_annotation_colours_round_trip(voc_samples):
    path = voc_samples / "SegmentationClass" / "2007_000032.png"
    label_map = read_label(path)
    with Image.open(path) as image:
        rgb_by_pil = np.array(image.convert("RGB"))
    assert np.array_equal(colorize(label_map), rgb_by_pil)
    assert np.array_equal(rgb_to_index(rgb_by_pil), label_map)


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    label_map = rng.integers(0, 21, size=(37, 53)).astype(np.uint8)
    label_map[:3] = 255
    write_label(tmp_path / "a.png", label_map)
    assert np.array_equal(read_label(tmp_path / "a.png"), label_map)
    with Image.open(tmp_path / "a.png") as image:
        assert image.mode == "P"


def test_rgb_to_index_lists_unknown_colours():
    spec = DatasetSpec(("bg", "toy"), ((0, 0, 0), (255, 0, 0)))
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[1, :] = (1, 2, 3)
    rgb[2, 0] = (9, 9, 9)
    with pytest.raises(ValueError, match=r"mask.png: 2 colour\(s\) not in the palette: "
                                         r"\(1, 2, 3\) x4, \(9, 9, 9\) x1"):
        rgb_to_index(rgb, spec, source="mask.png")
    rgb[1, :] = 0
    rgb[2, 0] = 0
    expected = np.zeros((4, 4), dtype=np.uint8)
    expected[0, 0] = 1
    assert np.array_equal(rgb_to_index(rgb, spec), expected)


def test_read_label_refuses_rgb_with_file_name(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png: annotation has mode RGB"):
        read_label(tmp_path / "rgb.png")


def test_spec_round_trip_and_errors(tmp_path):
    spec = DatasetSpec(("bg", "road", "toy"), ((0, 0, 0), (128, 64, 128), (220, 20, 60)))
    spec.save(tmp_path / "d.json")
    assert DatasetSpec.load(tmp_path / "d.json") == spec
    assert spec.palette()[2].tolist() == [220, 20, 60]
    (tmp_path / "bad.json").write_text('{"class_names": ["a"], "colors": [[1, 2]]}')
    with pytest.raises(ValueError, match="bad.json: colour"):
        DatasetSpec.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="collides"):
        DatasetSpec(("a", "b"), ((0, 0, 0), (1, 1, 1)), ignore_label=1)


def test_named_list_in_sets_folder_is_a_split(voc_samples):
    from pixelwise.data.voc import find_voc_root

    layout = find_voc_root(voc_samples)
    assert [e.name for e in layout.examples("samples")] == [
        "2007_000032", "2007_000033", "2007_000042", "2007_000663"]
    with pytest.raises(ValueError, match="unknown split 'nope'"):
        layout.split_names("nope")
