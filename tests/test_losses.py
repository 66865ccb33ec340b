import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from pixelwise.class_weights import median_frequency_weights
from pixelwise.config import LOSSES_WITH_CLASS_WEIGHTS
from pixelwise.losses import (
    LOSS_NAMES,
    CrossEntropyDice,
    FocalLoss,
    build_loss,
    per_image_loss,
)

IGNORE = 255

# One 2x2 image, two classes. Softmax of (ln 3, 0) is (3/4, 1/4); of (0, 0) is (1/2, 1/2).
#   pixel a: label 0, logits (ln 3, 0)  -> p_true = 3/4
#   pixel b: label 1, logits (ln 3, 0)  -> p_true = 1/4
#   pixel c: label 0, logits (0, 0)     -> p_true = 1/2
#   pixel d: label 255 (ignored), logits (100, -100)
# n = 3 labelled pixels, n_0 = 2, n_1 = 1 -> per-image weights w_0 = 1/3, w_1 = 2/3.
LN3 = math.log(3.0)
HAND_LOGITS = np.array([[[[LN3, 0.0], [LN3, 0.0]], [[0.0, 0.0], [100.0, -100.0]]]], np.float32)
HAND_LABELS = np.array([[[0, 1], [0, IGNORE]]], np.uint8)
CE_A, CE_B, CE_C = -math.log(3 / 4), -math.log(1 / 4), -math.log(1 / 2)
HAND_CE = (CE_A + CE_B + CE_C) / 3
HAND_WEIGHTED_CE = (CE_A / 3 + 2 * CE_B / 3 + CE_C / 3) / 3
# Dice, pixel weights (1/3, 2/3, 1/3); per pixel sum_c p*t = p_true, sum_c (p + t) = 2:
#   intersection = 1/3 * 3/4 + 2/3 * 1/4 + 1/3 * 1/2 = 7/12
#   total        = 2 * (1/3 + 2/3 + 1/3)               = 8/3
#   dice = 1 - (2 * 7/12 + 1) / (8/3 + 1) = 1 - (13/6) / (11/3) = 1 - 13/22 = 9/22
HAND_DICE = 9 / 22
# Focal, gamma 2: -(1 - p)^2 ln p per pixel, mean over the 3 labelled pixels.
HAND_FOCAL = ((1 / 4) ** 2 * CE_A + (3 / 4) ** 2 * CE_B + (1 / 2) ** 2 * CE_C) / 3
# Lovasz-softmax: per class c, the errors |t - p_c| sorted largest first, each times the
# rise of the Jaccard loss |S| / |F u S| as the set S of pixels taken so far grows.
#   class 0, F = {a, c}: errors a 1/4, b 3/4, c 1/2 -> b, c, a: J = 1/3, 2/3, 1
#     3/4 * 1/3 + 1/2 * 1/3 + 1/4 * 1/3 = 1/2
#   class 1, F = {b}: errors a 1/4, b 3/4, c 1/2 -> b, c, a: J = 1, 1, 1 -> 3/4 * 1 = 3/4
HAND_LOVASZ = (1 / 2 + 3 / 4) / 2


def loss_value(loss, labels, logits) -> float:
    return float(keras.ops.convert_to_numpy(loss(labels, logits)))


# Every loss, and the three with a written-out gradient as "NAME/written" (the plain
# names use the default, autodiff), so each test covers both gradients.
VARIANTS = [*LOSS_NAMES, *(f"{name}/written" for name in ("ce", "weighted_ce", "ce_dice"))]


def make_loss(variant: str, **options):
    """``build_loss`` for a name of ``VARIANTS``."""
    name, _, gradient = variant.partition("/")
    return build_loss(name, **options, **({"gradient": gradient} if gradient else {}))


@pytest.mark.parametrize("name, expected", [
    ("ce", HAND_CE),
    ("weighted_ce", HAND_WEIGHTED_CE),
    ("dice", HAND_DICE),
    ("ce_dice", HAND_WEIGHTED_CE + HAND_DICE),
    ("focal", HAND_FOCAL),
    ("lovasz", HAND_LOVASZ),
    ("ce_lovasz", HAND_WEIGHTED_CE + HAND_LOVASZ),
    ("ce/written", HAND_CE),
    ("weighted_ce/written", HAND_WEIGHTED_CE),
    ("ce_dice/written", HAND_WEIGHTED_CE + HAND_DICE),
])
def test_hand_computed_losses(name, expected):
    loss = make_loss(name, num_classes=2)
    assert loss_value(loss, HAND_LABELS, HAND_LOGITS) == pytest.approx(expected, rel=1e-6)


def test_hand_computed_options():
    # Dataset weights (1, 2) replace the per-image ones: pixels weigh 1, 2, 1.
    weighted_ce = build_loss("weighted_ce", num_classes=2, class_weights=[1.0, 2.0])
    assert loss_value(weighted_ce, HAND_LABELS, HAND_LOGITS) == pytest.approx(
        (CE_A + 2 * CE_B + CE_C) / 3, rel=1e-6)
    # Dice with weights (1, 2): intersection = 3/4 + 2/4 + 1/2 = 7/4, total = 2 * 4 = 8.
    dice = build_loss("dice", num_classes=2, class_weights=[1.0, 2.0])
    assert loss_value(dice, HAND_LABELS, HAND_LOGITS) == pytest.approx(
        1 - (2 * 7 / 4 + 1) / (8 + 1), rel=1e-6)
    # No smoothing, per-image weights: 1 - (7/6) / (8/3) = 1 - 7/16.
    unsmoothed = build_loss("dice", num_classes=2, smooth=0.0)
    assert loss_value(unsmoothed, HAND_LABELS, HAND_LOGITS) == pytest.approx(9 / 16, rel=1e-6)
    ce_dice = build_loss("ce_dice", num_classes=2, dice_weight=0.5)
    assert loss_value(ce_dice, HAND_LABELS, HAND_LOGITS) == pytest.approx(
        HAND_WEIGHTED_CE + HAND_DICE / 2, rel=1e-6)
    # Focal with alpha per class (0.25, 0.75) and gamma 1.
    focal = build_loss("focal", num_classes=2, gamma=1.0, alpha=[0.25, 0.75])
    assert loss_value(focal, HAND_LABELS, HAND_LOGITS) == pytest.approx(
        (0.25 * (1 / 4) * CE_A + 0.75 * (3 / 4) * CE_B + 0.25 * (1 / 2) * CE_C) / 3, rel=1e-6)
    # gamma 0 and a scalar alpha: alpha times cross-entropy.
    focal = build_loss("focal", num_classes=2, gamma=0.0, alpha=0.5)
    assert loss_value(focal, HAND_LABELS, HAND_LOGITS) == pytest.approx(HAND_CE / 2, rel=1e-6)


def test_batch_loss_is_mean_of_image_losses_and_empty_image_counts_zero():
    labels = np.concatenate([HAND_LABELS, np.full_like(HAND_LABELS, IGNORE)])
    logits = np.concatenate([HAND_LOGITS, np.full_like(HAND_LOGITS, 7.0)])
    loss = build_loss("ce", num_classes=2)
    per_image = keras.ops.convert_to_numpy(per_image_loss(loss, labels, logits))
    np.testing.assert_allclose(per_image, [HAND_CE, 0.0], rtol=1e-6)
    assert loss_value(loss, labels, logits) == pytest.approx(HAND_CE / 2, rel=1e-6)


def reference_lovasz(classes, probabilities) -> float:
    """Lovasz-softmax from its definition: for each present class, the sum over the pixels
    in order of falling error of error * (Jaccard loss of the pixels so far - before)."""
    values = []
    for present in np.unique(classes):
        foreground = classes == present
        errors = np.abs(foreground - probabilities[:, present])
        chosen = np.zeros_like(foreground)
        value = previous = 0.0
        for pixel in np.argsort(-errors, kind="stable"):
            chosen[pixel] = True
            jaccard = chosen.sum() / (foreground | chosen).sum()
            value += errors[pixel] * (jaccard - previous)
            previous = jaccard
        values.append(value)
    return float(np.mean(values))


def reference_image_losses(labels, logits, num_classes, class_weights=None, smooth=1.0,
                           gamma=2.0, alpha=None):
    """Plain NumPy, one image at a time, keeping only the labelled pixels."""
    results = {name: [] for name in LOSS_NAMES}
    for image_labels, image_logits in zip(labels, logits.astype(np.float64)):
        keep = image_labels < num_classes
        classes = image_labels[keep].astype(int)
        scores = image_logits[keep]
        if classes.size == 0:
            for name in LOSS_NAMES:
                results[name].append(0.0)
            continue
        shifted = scores - scores.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_p_true = log_p[np.arange(classes.size), classes]
        n = classes.size
        if class_weights is None:
            weight_of_class = (n - np.bincount(classes, minlength=num_classes)) / n
        else:
            weight_of_class = np.asarray(class_weights, np.float64)
        weights = weight_of_class[classes]
        probabilities = np.exp(log_p)
        targets = np.eye(num_classes)[classes]
        intersection = (weights[:, None] * probabilities * targets).sum()
        total = (weights[:, None] * (probabilities + targets)).sum()
        dice = 1 - (2 * intersection + smooth) / (total + smooth)
        weighted_ce = (weights * -log_p_true).sum() / n
        alpha_true = 1.0 if alpha is None else np.asarray(alpha)[classes]
        focal = (alpha_true * -(1 - np.exp(log_p_true)) ** gamma * log_p_true).mean()
        results["ce"].append(-log_p_true.mean())
        results["weighted_ce"].append(weighted_ce)
        results["dice"].append(dice)
        results["ce_dice"].append(weighted_ce + dice)
        results["focal"].append(focal)
        lovasz = reference_lovasz(classes, probabilities)
        results["lovasz"].append(lovasz)
        results["ce_lovasz"].append(weighted_ce + lovasz)
        hardest_first = np.sort(weights * -log_p_true)[::-1]
        results["ohem"].append(hardest_first[:int(np.ceil(0.25 * n))].mean())
    return {name: np.array(values) for name, values in results.items()}


def random_batch(rng, batch, height, width, num_classes, ignored_share=0.3):
    labels = rng.integers(0, num_classes, size=(batch, height, width)).astype(np.uint8)
    labels[rng.random(labels.shape) < ignored_share] = IGNORE
    logits = (rng.normal(size=(batch, height, width, num_classes)) * 3).astype(np.float32)
    return labels, logits


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 3), height=st.integers(1, 7), width=st.integers(1, 7),
       num_classes=st.integers(2, 5), ignored_share=st.sampled_from([0.0, 0.3, 1.0]),
       dataset_weights=st.booleans(), seed=st.integers(0, 2**16))
def test_losses_match_numpy_reference(batch, height, width, num_classes, ignored_share,
                                      dataset_weights, seed):
    rng = np.random.default_rng(seed)
    labels, logits = random_batch(rng, batch, height, width, num_classes, ignored_share)
    class_weights = rng.uniform(0.1, 3.0, num_classes).tolist() if dataset_weights else None
    alpha = rng.uniform(0.1, 1.0, num_classes).tolist()
    expected = reference_image_losses(labels, logits, num_classes, class_weights, alpha=alpha)
    for variant in VARIANTS:
        name = variant.partition("/")[0]
        options = {"alpha": alpha} if name == "focal" else {}
        weights = (class_weights if name in LOSSES_WITH_CLASS_WEIGHTS else None)
        loss = make_loss(variant, num_classes=num_classes, class_weights=weights, **options)
        per_image = keras.ops.convert_to_numpy(per_image_loss(loss, labels, logits))
        np.testing.assert_allclose(per_image, expected[name], rtol=2e-5, atol=1e-6,
                                   err_msg=variant)
        assert loss_value(loss, labels, logits) == pytest.approx(expected[name].mean(), rel=2e-5,
                                                                 abs=1e-6)


@pytest.mark.parametrize("gradient", ["autodiff", "written"])
def test_cross_entropy_matches_keras_sparse_cross_entropy_on_one_image(gradient):
    """Value and gradient, against Keras's own (autodiff) sparse cross-entropy."""
    labels, logits = random_batch(np.random.default_rng(1), 1, 9, 11, 4)
    reference = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE)
    expected, expected_gradient = loss_and_gradient(
        lambda y, z: reference(y.astype(np.int32), z), labels, logits)
    value, values_gradient = loss_and_gradient(build_loss("ce", num_classes=4, gradient=gradient),
                                               labels, logits)
    assert value == pytest.approx(float(expected), rel=1e-5)
    np.testing.assert_allclose(values_gradient, expected_gradient, rtol=1e-5, atol=1e-7)


def loss_and_gradient(loss, labels, logits):
    logits = tf.convert_to_tensor(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = loss(labels, logits)
    return value.numpy(), tape.gradient(value, logits).numpy()


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("junk", [1e30, -1e30, np.inf, np.nan, "random"])
def test_ignored_pixels_change_neither_value_nor_gradient(name, junk):
    rng = np.random.default_rng(2)
    labels, logits = random_batch(rng, 2, 6, 5, 3)
    ignored = labels == IGNORE
    junk_logits = logits.copy()
    junk_logits[ignored] = (rng.normal(size=(ignored.sum(), 3)) * 1e4 if junk == "random"
                            else junk)
    loss = make_loss(name, num_classes=3)
    value, gradient = loss_and_gradient(loss, labels, logits)
    junk_value, junk_gradient = loss_and_gradient(loss, labels, junk_logits.astype(np.float32))
    assert junk_value == value
    np.testing.assert_array_equal(junk_gradient, gradient)
    assert np.all(gradient[ignored] == 0)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_finite_for_empty_one_class_and_extreme_logits(name, dtype):
    rng = np.random.default_rng(3)
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[0] = IGNORE  # nothing labelled
    labels[1] = 2  # one class only
    labels[2] = rng.integers(0, 3, size=(5, 6))
    labels[3] = rng.integers(0, 3, size=(5, 6))
    labels[3, :2] = IGNORE
    logits = rng.normal(size=(4, 5, 6, 3)) * 20
    logits[2] = np.sign(logits[2]) * 60000.0  # near float16's largest finite value
    logits = tf.cast(tf.constant(logits, tf.float32), dtype)
    loss = make_loss(name, num_classes=3)
    value, gradient = loss_and_gradient(loss, labels, logits)
    assert np.isfinite(value)
    assert gradient.dtype == np.dtype(keras.backend.standardize_dtype(dtype)) or dtype == "bfloat16"
    assert np.all(np.isfinite(np.asarray(gradient, np.float32)))
    assert value.dtype == np.float32
    per_image = keras.ops.convert_to_numpy(per_image_loss(loss, labels, logits))
    assert per_image[0] == 0.0
    # Low-precision logits are computed in float32: the same as their float32 values.
    same_values = tf.cast(logits, tf.float32)
    assert value == pytest.approx(loss_and_gradient(loss, labels, same_values)[0], rel=1e-6)


def test_one_class_image_under_per_image_weights_weighs_nothing():
    labels = np.ones((1, 4, 4), np.uint8)
    logits = np.random.default_rng(4).normal(size=(1, 4, 4, 3)).astype(np.float32)
    for name in ("weighted_ce", "dice", "ce_dice"):
        assert loss_value(build_loss(name, num_classes=3), labels, logits) == 0.0
    assert loss_value(build_loss("ce", num_classes=3), labels, logits) > 0.0


def test_label_dtypes_and_trailing_axis_give_the_same_loss():
    labels, logits = random_batch(np.random.default_rng(5), 2, 5, 5, 4)
    loss = build_loss("ce_dice", num_classes=4)
    expected = loss_value(loss, labels, logits)
    for variant in (labels.astype(np.int32), labels.astype(np.int64), labels[..., None],
                    labels.astype(np.int32)[..., None]):
        assert loss_value(loss, variant, logits) == expected


def test_shape_and_argument_errors():
    loss = build_loss("ce", num_classes=4)
    labels, logits = random_batch(np.random.default_rng(6), 1, 3, 3, 3)
    with pytest.raises(ValueError, match="3 channels but the loss was built for num_classes=4"):
        loss(labels, logits)
    with pytest.raises(ValueError, match="labels must be"):
        build_loss("ce", num_classes=3)(labels[0], logits)
    with pytest.raises(ValueError, match="unknown loss 'dice_ce'; choose one of ce, weighted_ce"):
        build_loss("dice_ce", num_classes=3)
    with pytest.raises(ValueError, match="has no option gamma"):
        build_loss("dice", num_classes=3, gamma=2.0)
    with pytest.raises(ValueError, match="use 'weighted_ce'"):
        build_loss("ce", num_classes=3, class_weights=[1, 1, 1])
    with pytest.raises(ValueError, match="alpha"):
        build_loss("focal", num_classes=3, class_weights=[1, 1, 1])
    with pytest.raises(ValueError, match=r"one value per class \(3\)"):
        build_loss("weighted_ce", num_classes=3, class_weights=[1, 1])
    with pytest.raises(ValueError, match="finite and non-negative"):
        build_loss("dice", num_classes=2, class_weights=[1, -1])
    with pytest.raises(ValueError, match="ignore_label 1 is a class index"):
        build_loss("ce", num_classes=3, ignore_label=1)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        build_loss("focal", num_classes=3, gamma=-1.0)
    with pytest.raises(TypeError, match="needs a pixelwise loss"):
        per_image_loss(keras.losses.MeanSquaredError(), labels, logits)


def test_median_frequency_weights_by_hand():
    # Frequencies 0.1, 0.3, 0.6 (class 3 absent); median 0.3 -> 3, 1, 0.5, and 0.
    np.testing.assert_allclose(median_frequency_weights([10, 30, 60, 0]), [3.0, 1.0, 0.5, 0.0])
    # Eigen & Fergus: f_c = count / pixels of the images holding c: 10/20, 30/100, 60/60
    # -> median 0.5 -> 1, 5/3, 1/2.
    np.testing.assert_allclose(median_frequency_weights([10, 30, 60], [20, 100, 60]),
                               [1.0, 5 / 3, 0.5])
    with pytest.raises(ValueError, match="all zero"):
        median_frequency_weights([0, 0])
    with pytest.raises(ValueError, match="non-negative counts"):
        median_frequency_weights([3, -1])
    with pytest.raises(ValueError, match="at least class_pixel_counts"):
        median_frequency_weights([10, 30], [5, 30])
    weights = median_frequency_weights([10, 30, 60, 0])
    loss = build_loss("ce_dice", num_classes=4, class_weights=weights)
    assert loss.class_weights == pytest.approx([3.0, 1.0, 0.5, 0.0])


@pytest.mark.parametrize("variant", VARIANTS)
def test_losses_serialise_round_trip(variant):
    name = variant.partition("/")[0]
    options = {"focal": {"gamma": 1.5, "alpha": [0.5, 1.0, 2.0]}, "dice": {"smooth": 0.5},
               "ce_dice": {"smooth": 2.0, "dice_weight": 0.25}}.get(name, {})
    weights = [0.5, 1.0, 2.0] if name in ("weighted_ce", "dice", "ce_dice") else None
    loss = make_loss(variant, num_classes=3, class_weights=weights, **options)
    config = keras.saving.serialize_keras_object(loss)
    assert config["registered_name"].startswith("pixelwise>")
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    labels, logits = random_batch(np.random.default_rng(7), 2, 4, 4, 3)
    assert loss_value(restored, labels, logits) == loss_value(loss, labels, logits)


def test_model_trains_saves_and_reloads_with_the_loss(tmp_path):
    labels, images = random_batch(np.random.default_rng(8), 4, 8, 8, 3)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    loss = build_loss("ce_dice", num_classes=3, class_weights=[1.0, 2.0, 0.5], dice_weight=0.5)
    model.compile(optimizer="sgd", loss=loss, jit_compile=False)
    history = model.fit(images, labels, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(reloaded.loss, CrossEntropyDice)
    assert reloaded.loss.get_config() == loss.get_config()
    assert reloaded.evaluate(images, labels, verbose=0) == pytest.approx(
        model.evaluate(images, labels, verbose=0), rel=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy_and_grows_less_for_easy_pixels():
    labels, logits = random_batch(np.random.default_rng(9), 2, 5, 5, 4)
    ce = loss_value(build_loss("ce", num_classes=4), labels, logits)
    assert loss_value(FocalLoss(4, gamma=0.0), labels, logits) == pytest.approx(ce, rel=1e-6)
    assert loss_value(FocalLoss(4, gamma=2.0), labels, logits) < ce


@pytest.mark.parametrize("name", VARIANTS)
def test_losses_compile_with_xla(name):
    labels, logits = random_batch(np.random.default_rng(10), 2, 6, 6, 3)
    loss = make_loss(name, num_classes=3)

    @tf.function(jit_compile=True)
    def value_and_gradient(batch_labels, batch_logits):
        with tf.GradientTape() as tape:
            tape.watch(batch_logits)
            value = loss(batch_labels, batch_logits)
        return value, tape.gradient(value, batch_logits)

    value, gradient = value_and_gradient(tf.constant(labels), tf.constant(logits))
    eager_value, eager_gradient = loss_and_gradient(loss, labels, logits)
    assert float(value) == pytest.approx(float(eager_value), rel=1e-5)
    np.testing.assert_allclose(gradient.numpy(), eager_gradient, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("class_weights", [None, [0.5, 2.0, 1.0, 3.0]])
@pytest.mark.parametrize("smooth, dice_weight", [(1.0, 1.0), (0.0, 0.3)])
def test_ce_dice_gradient_written_out_equals_autodiff_of_its_two_terms(class_weights, smooth,
                                                                       dice_weight):
    """CE + Dice has its gradient written out (cross_entropy_dice); value and gradient equal
    autodiff of the separate weighted CE and Dice losses, each with its own softmax: with
    ignored pixels, an image with nothing labelled (0 / 0 under smooth 0) and sample
    weights scaling each image's gradient."""
    rng = np.random.default_rng(7)
    logits = tf.constant(rng.normal(scale=3.0, size=(3, 6, 5, 4)).astype("float32"))
    labels = rng.integers(0, 4, size=(3, 6, 5)).astype("int32")
    labels[0, :2] = IGNORE
    labels[2] = IGNORE
    sample_weight = tf.constant([0.5, 2.0, 1.0])
    options = dict(num_classes=4, ignore_label=IGNORE, class_weights=class_weights,
                   smooth=smooth)
    dice = build_loss("dice", **options)  # autodiff: no gradient of its own

    def autodiff_weighted_cross_entropy(y, z, sample_weight):
        """The weighted CE spelled out in TensorFlow ops, differentiated by autodiff."""
        is_class = (y >= 0) & (y < 4)
        one_hot = tf.one_hot(tf.where(is_class, y, -1), 4)
        if class_weights is None:  # per image: (n - n_c) / n
            counts = tf.reduce_sum(one_hot, axis=(1, 2))
            total = tf.reduce_sum(counts, axis=-1, keepdims=True)
            image_weights = tf.math.divide_no_nan(total - counts, total)[:, None, None, :]
        else:
            image_weights = tf.constant(class_weights)
        weights = tf.reduce_sum(one_hot * image_weights, axis=-1)
        masked = tf.where(is_class[..., None], z, 0.0)
        pixel_ce = -tf.reduce_sum(one_hot * tf.nn.log_softmax(masked), axis=-1)
        per_image = tf.math.divide_no_nan(tf.reduce_sum(weights * pixel_ce, axis=(1, 2)),
                                          tf.reduce_sum(tf.cast(is_class, tf.float32),
                                                        axis=(1, 2)))
        return tf.reduce_sum(per_image * sample_weight) / 3.0

    separate = [autodiff_weighted_cross_entropy,
                lambda y, z, sample_weight: dice_weight * dice(y, z, sample_weight=sample_weight)]
    results = []
    written = build_loss("ce_dice", dice_weight=dice_weight, gradient="written", **options)
    for losses in ([written], separate):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = sum(loss(labels, logits, sample_weight=sample_weight) for loss in losses)
        results.append((float(value), np.asarray(tape.gradient(value, logits))))
    (fused_value, fused_gradient), (separate_value, separate_gradient) = results
    assert np.isfinite(fused_value) and np.all(np.isfinite(fused_gradient))
    assert fused_value == pytest.approx(separate_value, rel=1e-6)
    np.testing.assert_allclose(fused_gradient, separate_gradient, rtol=1e-5, atol=1e-7)
    assert not np.any(fused_gradient[2]) and not np.any(fused_gradient[0, :2])


def test_the_default_gradient_is_autodiff_and_an_unknown_one_is_refused():
    assert build_loss("ce_dice", num_classes=3).gradient == "autodiff"
    assert build_loss("weighted_ce", num_classes=3, gradient="written").gradient == "written"
    with pytest.raises(ValueError, match="gradient must be one of autodiff, written"):
        build_loss("ce", num_classes=3, gradient="fused")
    with pytest.raises(ValueError, match="has no option gradient"):
        build_loss("focal", num_classes=3, gradient="written")
