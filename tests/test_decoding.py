import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from aligned_voc import SPEC, make_aligned_voc
from pixelwise.data.decoding import decode_image, decode_label
from pixelwise.data.palette import read_label, write_label
from pixelwise.data.pipeline import make_dataset
from pixelwise.data.spec import DatasetSpec


def pil_rgb(path):
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))


def test_tf_decoding_equals_pil_on_real_samples(voc_samples):
    spec = DatasetSpec.voc()
    for label_path in sorted((voc_samples / "SegmentationClass").glob("*.png")):
        decoded = decode_label(tf.constant(label_path.read_bytes()), spec, str(label_path))
        assert np.array_equal(decoded.numpy(), read_label(label_path)), label_path.name
        image_path = voc_samples / "JPEGImages" / f"{label_path.stem}.jpg"
        image = decode_image(tf.constant(image_path.read_bytes()), str(image_path))
        assert np.array_equal(image.numpy(), pil_rgb(image_path)), image_path.name


def _png_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def test_palette_indices_do_not_depend_on_the_palette_colours():
    rng = np.random.default_rng(1)
    label_map = rng.integers(0, 3, size=(33, 47)).astype(np.uint8)
    label_map[5:9] = 255
    shuffled = Image.fromarray(label_map, mode="P")
    palette = rng.permutation(256 * 3).astype(np.uint8) % 251  # colours unlike the spec's
    palette[3 * 255: 3 * 256] = palette[0:3]  # entry 255 shares entry 0's colour
    shuffled.putpalette(palette.tolist())
    variants = {
        "foreign palette": _png_bytes(shuffled),
        "with transparency": _png_bytes(shuffled, transparency=0),
        "single channel": _png_bytes(Image.fromarray(label_map, mode="L")),
    }
    small = Image.fromarray(np.minimum(label_map, 3), mode="P")
    small.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])  # 4 entries: a 2-bit PNG
    for name, contents in variants.items():
        decoded = decode_label(tf.constant(contents), SPEC, name).numpy()
        assert np.array_equal(decoded, label_map), name
        assert np.array_equal(decoded, np.array(Image.open(io.BytesIO(contents)))), name
    short_palette = Image.fromarray((label_map == 1).astype(np.uint8), mode="P")
    short_bytes = _png_bytes(short_palette)  # PIL writes 1 bit, 1 entry; index 1 is past it
    assert short_bytes[24] == 1
    assert np.array_equal(decode_label(tf.constant(short_bytes), SPEC, "short").numpy(),
                          label_map == 1)
    small_bytes = _png_bytes(small, bits=2)
    assert small_bytes[24] == 2  # really a 2-bit palette PNG
    decoded = decode_label(tf.constant(small_bytes), DatasetSpec(
        ("a", "b", "c", "d"), ((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255))), "2-bit")
    assert np.array_equal(decoded.numpy(), np.minimum(label_map, 3))


@pytest.mark.parametrize("kind, message", [
    ("rgb", r"not an 8-bit palette or single-channel PNG .*colour type 2, bit depth 8"),
    ("gray16", r"not an 8-bit palette or single-channel PNG .*colour type 0, bit depth 16"),
    ("stray value", r"label value 7 .* not a class \(0..2\) or the ignore label 255"),
    ("not a png", "not an 8-bit palette or single-channel PNG"),
])
def test_bad_annotations_raise_naming_the_file(kind, message):
    label_map = np.zeros((20, 30), dtype=np.uint8)
    if kind == "rgb":
        contents = _png_bytes(Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)))
    elif kind == "gray16":
        contents = _png_bytes(Image.fromarray(label_map.astype(np.uint16) * 300))
    elif kind == "stray value":
        label_map[3, 4] = 7
        label_image = Image.fromarray(label_map, mode="P")
        label_image.putpalette(SPEC.palette().reshape(-1).tolist())
        contents = _png_bytes(label_image)
    else:
        contents = b"GIF89a not an annotation at all"
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"odd/2007_x.png: {message}"):
        decode_label(tf.constant(contents), SPEC, "odd/2007_x.png")


@pytest.mark.parametrize("image_format", ["PNG", "BMP", "GIF"])
def test_png_bmp_and_gif_images_decode_whatever_their_name(image_format):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(6, 9, 3)).astype(np.uint8)
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    (image.convert("P") if image_format == "GIF" else image).save(buffer, format=image_format)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    decoded = decode_image(tf.constant(buffer.getvalue()), "photos/a.jpg").numpy()
    np.testing.assert_array_equal(decoded, expected)


def test_images_of_other_formats_raise_naming_the_file():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="TIFF")
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="photos/a.jpg: not a JPEG, PNG, BMP or GIF image"):
        decode_image(tf.constant(buffer.getvalue()), "photos/a.jpg")


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs_decode_to_rgb(tmp_path, mode):
    rng = np.random.default_rng(2)
    colors = np.kron(rng.integers(0, 256, size=(4, 5, 3)), np.ones((12, 12, 1))).astype(np.uint8)
    path = tmp_path / f"{mode}.jpg"
    Image.fromarray(colors).convert(mode).save(path, quality=90)
    image = decode_image(tf.constant(path.read_bytes()), str(path)).numpy()
    assert image.shape == (48, 60, 3)
    assert np.array_equal(image, pil_rgb(path))
    if mode == "L":
        assert np.array_equal(image[..., 0], image[..., 2])


def test_folder_with_grayscale_jpeg_and_mismatched_sizes(tmp_path):
    root = make_aligned_voc(tmp_path / "gray", {"train": [(48, 64), (48, 64)]})
    Image.open(root / "JPEGImages/train_000.jpg").convert("L").save(
        root / "JPEGImages/train_000.jpg")
    (images, labels), = make_dataset(root, "train", batch_size=2, input_size=32,
                                     training=True)
    assert images.shape == (2, 32, 32, 3)
    write_label(root / "SegmentationClass/train_001.png", np.zeros((40, 64), np.uint8), SPEC)
    dataset = make_dataset(root, "train", batch_size=1, input_size=32, training=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"train_001.png: annotation is "
                       r"40x64 but the image .*train_001.jpg is 48x64 \(height x width\)"):
        list(dataset)
