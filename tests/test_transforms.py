import numpy as np
import pytest
import tensorflow as tf

from pixelwise.data.transforms import (BRIGHTNESS_DELTA, HUE_DELTA, ZOOM_RANGE, Compose,
                                       RandomZoomCrop, Resize, jitter_colors)


@pytest.mark.parametrize("choice", [0.2, 0.8])  # enlarge and crop / plain resize
def test_zoom_crop_shows_one_over_the_zoom_of_each_side(choice):
    height, width = 50, 70
    rows, columns = np.mgrid[:height, :width]
    image = tf.constant(np.stack([rows, columns, rows], axis=-1).astype(np.uint8))
    label_map = tf.constant(columns.astype(np.uint8))  # each pixel's column
    low, high = ZOOM_RANGE
    zoom_crop = Compose((RandomZoomCrop(ZOOM_RANGE), Resize((40, 40))))
    for scale_draw in (0.0, 0.5, 0.999):
        scale = low + scale_draw * (high - low) if choice < 0.5 else 1.0
        for offset_draw in (0.0, 0.999):  # the window at the top left, the bottom right
            draws = tf.constant([choice, scale_draw, offset_draw, offset_draw])
            crop, crop_label = (np.asarray(part) for part in
                                zoom_crop(image, label_map, draws))
            assert crop.shape == (40, 40, 3) and crop_label.shape == (40, 40)
            columns_seen = (crop_label.min(), crop_label.max())
            assert columns_seen[1] - columns_seen[0] + 1 == round(width / scale)
            rows_seen = (crop[..., 0].min(), crop[..., 0].max())
            assert abs(rows_seen[1] - rows_seen[0] + 1 - round(height / scale)) <= 1
            if offset_draw == 0:
                assert columns_seen[0] == 0 and rows_seen[0] <= 0.5
            else:
                assert columns_seen[1] == width - 1 and rows_seen[1] >= height - 1.5
            assert np.abs(crop[..., 1] - crop_label).max() <= 1  # image and label agree


def test_color_jitter_is_yiq_hue_then_brightness_then_contrast():
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 255, size=(6, 7, 3)).astype(np.float32)
    hue, brightness, contrast = 0.07, -0.04, 1.15  # turns, share of 255, factor
    draws = tf.constant([(hue / HUE_DELTA + 1) / 2, (brightness / BRIGHTNESS_DELTA + 1) / 2,
                         (contrast - 0.8) / 0.4], tf.float32)
    jittered = jitter_colors(tf.constant(image), draws).numpy()
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                       [0.211, -0.523, 0.312]])
    angle = 2 * np.pi * hue
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)],
                         [0, np.sin(angle), np.cos(angle)]])
    expected = image @ (np.linalg.inv(to_yiq) @ rotation @ to_yiq).T  # luma kept, hue turned
    expected = expected + 255 * brightness
    expected = tf.image.adjust_contrast(expected.astype(np.float32), contrast).numpy()
    assert np.allclose(jittered, np.clip(expected, 0, 255), atol=1e-3)
    gray = np.full((4, 4, 3), 77, np.float32)
    turned = jitter_colors(tf.constant(gray), tf.constant([0.9, 0.5, 0.5])).numpy()
    assert np.allclose(turned, 77, atol=1e-3)  # hue leaves grays alone
