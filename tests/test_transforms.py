import numpy as np
import pytest
import tensorflow as tf

from aligned_voc import colors_to_labels, interior, label_colors
from pixelwise.data.transforms import (AUGMENTATION_POLICIES, BRIGHTNESS_DELTA, HUE_DELTA,
                                       MEAN_RGB, ZOOM_RANGE, ColorJitter, Compose, PadToMultiple,
                                       RandomCrop, RandomFlip, RandomScale, RandomZoomCrop,
                                       Resize, SpareDraws, jitter_colors, resize_policy,
                                       scale_pad_crop_policy, zoom_crop_policy)


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


# --------------------------------------------------------------------------- every transform


def block_pattern(height=48, width=64, values=(0, 1, 2, 255), block=8, seed=0):
    """A label map of flat ``block`` x ``block`` cells of ``values`` and its image, each
    cell in the colour ``aligned_voc`` gives its label."""
    rng = np.random.default_rng(seed)
    cells = rng.choice(values, size=(height // block, width // block)).astype(np.uint8)
    label_map = np.kron(cells, np.ones((block, block), np.uint8))
    return label_colors(label_map), label_map


def every_transform():
    size = (40, 56)
    return {
        "Resize": Resize(size),
        "PadToMultiple": PadToMultiple(16, 255),
        "RandomZoomCrop": Compose((RandomZoomCrop(), Resize(size))),
        "RandomScale": RandomScale(),
        "RandomCrop": RandomCrop((56, 72), 255),  # larger than the input: crops and pads
        "RandomFlip": RandomFlip(),
        "ColorJitter": ColorJitter(),
        "textbook": zoom_crop_policy(size, 255),
        "deeplab": scale_pad_crop_policy(size, 255),
        "none": resize_policy(size, 255),
    }


@pytest.mark.parametrize("name", list(every_transform()))
def test_every_transform_keeps_image_and_label_aligned(name):
    transform = every_transform()[name]
    image, label_map = block_pattern()
    for seed in range(4):
        draws = tf.random.stateless_uniform([transform.num_draws], [seed, 0])
        out_image, out_label = (np.asarray(part) for part in
                                transform(tf.constant(image), tf.constant(label_map), draws))
        assert out_image.shape[:2] == out_label.shape and out_label.dtype == np.uint8
        inside = interior(out_label, radius=2)
        assert inside.mean() > 0.3
        decoded = colors_to_labels(out_image)
        assert np.array_equal(decoded[inside], out_label[inside]), f"{name}, seed {seed}"


@pytest.mark.parametrize("name", list(every_transform()))
def test_labels_are_never_interpolated(name):
    transform = every_transform()[name]
    image, label_map = block_pattern(values=(3, 7, 9), block=3)
    for seed in range(4):
        draws = tf.random.stateless_uniform([transform.num_draws], [seed, 1])
        _, out_label = transform(tf.constant(image), tf.constant(label_map), draws)
        assert set(np.unique(out_label).tolist()) <= {3, 7, 9, 255}


def test_flip_twice_is_the_identity_and_the_draw_decides():
    image, label_map = block_pattern(width=40)
    image, label_map = tf.constant(image), tf.constant(label_map)
    flip = RandomFlip()
    flipped = flip(image, label_map, tf.constant([0.2]))
    assert np.array_equal(flipped[1], label_map.numpy()[:, ::-1])
    assert np.array_equal(flipped[0], image.numpy()[:, ::-1])
    back = flip(*flipped, tf.constant([0.2]))
    assert np.array_equal(back[0], image) and np.array_equal(back[1], label_map)
    kept = flip(image, label_map, tf.constant([0.8]))
    assert np.array_equal(kept[0], image) and np.array_equal(kept[1], label_map)


def test_compose_hands_each_transform_its_own_draws():
    image, label_map = block_pattern(width=40)
    spare_then_flip = Compose((SpareDraws(1), RandomFlip()))
    assert spare_then_flip.num_draws == 2
    _, flipped = spare_then_flip(tf.constant(image), tf.constant(label_map),
                                 tf.constant([0.9, 0.1]))
    assert np.array_equal(flipped, label_map[:, ::-1])  # the flip read the second draw


def test_policies_keep_their_draw_layout():
    # Geometry on draws 0-3, the flip on 4, the colour on 5-7: the layout the recorded
    # outputs of test_pipeline were made with.
    for policy in (zoom_crop_policy((32, 32), 255), scale_pad_crop_policy((32, 32), 255)):
        assert policy.num_draws == 8
        starts = np.cumsum([0] + [transform.num_draws for transform in policy.transforms])
        kinds = [type(transform) for transform in policy.transforms]
        assert starts[kinds.index(RandomFlip)] == 4 and starts[kinds.index(ColorJitter)] == 5
    assert set(AUGMENTATION_POLICIES) == {"textbook", "deeplab", "none"}


def test_random_crop_pads_with_the_mean_colour_and_the_ignore_label():
    image, label_map = block_pattern(height=16, width=24, values=(0, 1))
    crop = RandomCrop((32, 40), ignore_label=255)
    out_image, out_label = (np.asarray(part) for part in crop(
        tf.constant(image), tf.constant(label_map), tf.constant([0.5, 0.5])))
    assert np.array_equal(out_label[:16, :24], label_map)
    assert (out_label[16:] == 255).all() and (out_label[:, 24:] == 255).all()
    assert np.allclose(out_image[16:], MEAN_RGB) and np.allclose(out_image[:, 24:], MEAN_RGB)
