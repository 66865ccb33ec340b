"""Decoding in TensorFlow ops: image and annotation bytes -> uint8 arrays, checked.

    raw = data_source.read(element)          # see data.sources
    example = decode_example(raw, spec)      # {"name", "image": [H,W,3], "label": [H,W]}

Images decode whatever their format (JPEG with ``tf.io.decode_jpeg`` (grayscale and CMYK files come out RGB, and the
accurate integer IDCT gives the same pixels as PIL); annotations are PNGs read as class
indices, equal to ``palette.read_label`` (a single-channel PNG directly; a palette PNG by
swapping its palette for a gray ramp, so the decoded values are the indices whatever the
palette's colours). Values that are neither a class nor the ignore label, images that are
not JPEG, PNG, BMP or GIF, annotations that are not palette or 8-bit single-channel PNGs, and pairs of
different sizes stop the pipeline with an error naming the file.
"""

from __future__ import annotations

import zlib

import tensorflow as tf

from pixelwise.data.spec import DatasetSpec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_GRAY, PNG_PALETTE = 0, 3  # PNG colour types


def decode_image(contents: tf.Tensor, file_name: tf.Tensor | str = "image") -> tf.Tensor:
    """JPEG, PNG, BMP or GIF bytes (whatever the file's name says) -> uint8 RGB [H, W, 3].

    JPEGs use the accurate integer IDCT, which gives the same pixels as PIL; grayscale,
    CMYK and palette images come out RGB, an alpha channel is dropped, a GIF gives its
    first frame. Other formats raise an error naming ``file_name``.
    """
    decodable = tf.reduce_any([tf.io.is_jpeg(contents)] + [
        tf.strings.substr(contents, 0, len(magic)) == magic for magic in _OTHER_IMAGE_MAGICS])
    check = _check(decodable, file_name,
                   ": not a JPEG, PNG, BMP or GIF image; re-save it as JPEG or PNG")
    with tf.control_dependencies([check]):
        image = tf.cond(
            tf.io.is_jpeg(contents),
            lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(contents, channels=3, expand_animations=False))
    return tf.ensure_shape(image, [None, None, 3])


# PNG, BMP, GIF: the formats tf.io.decode_image reads besides JPEG.
_OTHER_IMAGE_MAGICS = (b"\x89PNG", b"BM", b"GIF8")


def decode_label(contents: tf.Tensor, spec: DatasetSpec,
                 file_name: tf.Tensor | str = "annotation") -> tf.Tensor:
    """Annotation PNG bytes -> uint8 class indices [H, W], equal to ``palette.read_label``.

    An 8-bit single-channel PNG holds the indices; so does a palette PNG, whose pixel
    values are read through a gray-ramp palette (see ``_palette_png_indices``). Other PNG
    kinds (RGB masks, 16-bit) and values that are neither a class nor ``spec.ignore_label``
    raise an error naming ``file_name``.
    """
    length = tf.strings.length(contents, unit="BYTE")
    header = tf.io.decode_raw(tf.strings.substr(contents, tf.minimum(24, length), 2), tf.uint8)
    is_png = tf.logical_and(tf.equal(tf.strings.substr(contents, 0, 8), PNG_SIGNATURE),
                            tf.equal(tf.size(header), 2))
    header = tf.pad(header, [[0, 2 - tf.size(header)]])
    bit_depth, color_type = header[0], header[1]
    is_gray8 = tf.logical_and(tf.equal(color_type, PNG_GRAY), tf.equal(bit_depth, 8))
    is_palette = tf.logical_and(tf.equal(color_type, PNG_PALETTE),
                                tf.reduce_any(tf.equal(bit_depth, [1, 2, 4, 8])))
    check = _check(
        tf.logical_and(is_png, tf.logical_or(is_gray8, is_palette)),
        file_name, ": not an 8-bit palette or single-channel PNG of class indices (PNG colour "
        "type ", color_type, ", bit depth ", bit_depth, "); RGB masks can be converted with "
        "`pixelwise data import-rgb-masks`")
    with tf.control_dependencies([check]):
        label_map = tf.cond(is_gray8,
                            lambda: tf.io.decode_png(contents, channels=1)[..., 0],
                            lambda: _palette_png_indices(contents, bit_depth, file_name))
    return check_label_values(label_map, spec, file_name)


def check_label_values(label_map: tf.Tensor, spec: DatasetSpec,
                       file_name: tf.Tensor | str = "annotation") -> tf.Tensor:
    """``label_map`` unchanged, after checking every value is a class or the ignore label."""
    def stray():
        return tf.logical_and(label_map >= spec.num_classes,
                              tf.not_equal(label_map, spec.ignore_label))

    if spec.ignore_label == 255:  # one pass: in uint8, 255 + 1 wraps round to 0
        valid = tf.reduce_max(label_map + tf.constant(1, tf.uint8)) <= spec.num_classes
    else:
        valid = tf.logical_not(tf.reduce_any(stray()))
    check = _check(
        valid, file_name, ": label value ",
        lambda: tf.reduce_max(tf.where(stray(), label_map, tf.zeros_like(label_map))),
        f" (the largest stray one) is not a class (0..{spec.num_classes - 1}) or the ignore "
        f"label {spec.ignore_label}")
    with tf.control_dependencies([check]):
        return tf.identity(label_map)


def _palette_png_indices(contents: tf.Tensor, bit_depth: tf.Tensor, file_name) -> tf.Tensor:
    """The pixel values (palette indices) of a palette PNG, in TensorFlow ops.

    ``tf.io.decode_png`` only gives a palette PNG's colours, so the file's PLTE chunk is
    swapped for a full gray ramp (entry i -> (i, i, i) for every index the bit depth
    allows, chunks precomputed with their CRCs) and the copy decoded as gray is the index
    map, whatever colours (or how few entries) the file's palette holds.
    """
    position, length = _png_palette_chunk(contents, file_name)
    size = tf.cast(tf.strings.length(contents, unit="BYTE"), tf.int64)
    chunk_end = tf.minimum(position + 12 + length, size)  # length, type, data, CRC
    recoloured = tf.strings.join([
        tf.strings.substr(contents, tf.constant(0, tf.int64), position),
        tf.gather(_GRAY_RAMP_CHUNKS, tf.cast(bit_depth, tf.int32)),
        tf.strings.substr(contents, chunk_end, size - chunk_end),
    ])
    return tf.io.decode_png(recoloured, channels=1)[..., 0]


def _png_palette_chunk(contents: tf.Tensor, file_name) -> tuple[tf.Tensor, tf.Tensor]:
    """(offset, data length) of the PLTE chunk of a PNG, found by walking its chunks."""
    size = tf.cast(tf.strings.length(contents, unit="BYTE"), tf.int64)

    def read_at(position, length):  # never past the end, whatever the file says
        position = tf.clip_by_value(tf.cast(position, tf.int64), 0, size)
        length = tf.minimum(tf.cast(length, tf.int64), size - position)
        return tf.strings.substr(contents, position, length)

    def chunk_length(position):
        length_bytes = tf.cast(tf.io.decode_raw(read_at(position, 4), tf.uint8), tf.int64)
        length_bytes = tf.pad(length_bytes, [[0, 4 - tf.size(length_bytes)]])
        return tf.reduce_sum(length_bytes * tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int64))

    def chunk_is(position, kind):
        return tf.logical_and(position + 8 <= size, tf.equal(read_at(position + 4, 4), kind))

    def keep_walking(position):
        return tf.logical_and(position + 8 <= size,
                              tf.logical_not(tf.logical_or(chunk_is(position, b"PLTE"),
                                                           chunk_is(position, b"IDAT"))))

    def next_chunk(position):
        return [position + 12 + chunk_length(position)]

    position = tf.while_loop(keep_walking, next_chunk, [tf.constant(8, tf.int64)])[0]
    length = chunk_length(position)
    valid = tf.logical_and(chunk_is(position, b"PLTE"),
                           tf.logical_and(tf.equal(length % 3, 0),
                                          tf.logical_and(length >= 3, length <= 768)))
    check = _check(valid, file_name, ": a palette PNG without a valid palette (PLTE chunk)")
    with tf.control_dependencies([check]):
        return tf.identity(position), tf.identity(length)


def _gray_ramp_chunks() -> list[bytes]:
    """Entry d: the PLTE chunk (length, type, data, CRC) of a gray ramp of 2**d entries for
    the palette bit depths d = 1, 2, 4, 8 (other entries empty)."""
    chunks = [b""] * 9
    for bit_depth in (1, 2, 4, 8):
        body = b"PLTE" + bytes(value for value in range(2 ** bit_depth) for _ in range(3))
        chunks[bit_depth] = ((len(body) - 4).to_bytes(4, "big") + body
                             + zlib.crc32(body).to_bytes(4, "big"))
    return chunks


_GRAY_RAMP_CHUNKS = _gray_ramp_chunks()


def _check(condition: tf.Tensor, *parts) -> tf.Tensor | tf.Operation | None:
    """An assertion that ``condition`` holds, for ``tf.control_dependencies``.

    Its message, ``parts`` joined (strings, numbers, shapes as HxW; a callable is called
    for its value), is only built when the assertion fails.
    """
    def text(part):
        if isinstance(part, str):
            return part
        part = tf.convert_to_tensor(part() if callable(part) else part)
        if part.dtype != tf.string:
            part = tf.strings.as_string(tf.cast(part, tf.int64))
        return tf.strings.reduce_join(part, separator="x") if part.shape.rank else part

    def fail():
        message = tf.strings.join([text(part) for part in parts])
        with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
            return tf.constant(False)

    if all(isinstance(part, (str, tf.Tensor)) and getattr(part, "dtype", tf.string) == tf.string
           for part in parts):  # a cheap message: no branch needed
        return tf.debugging.Assert(condition, [tf.strings.join(list(parts))])
    return tf.cond(condition, lambda: tf.constant(True), fail)


def decode_example(raw: dict, spec: DatasetSpec) -> dict:
    """``DataSource.read`` output -> {"name", "image": uint8 [H,W,3], "label": uint8 [H,W]}."""
    image = decode_image(raw["image_bytes"], raw["image_source"])
    label_map = decode_label(raw["label_bytes"], spec, raw["label_source"])
    same_size = tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(label_map)))
    check = _check(same_size, raw["label_source"], ": annotation is ",
                   lambda: tf.shape(label_map), " but the image ", raw["image_source"], " is ",
                   lambda: tf.shape(image)[:2], " (height x width)")
    with tf.control_dependencies([check]):
        return {"name": raw["name"], "image": tf.identity(image),
                "label": tf.identity(label_map)}


__all__ = ["check_label_values", "decode_example", "decode_image", "decode_label"]
