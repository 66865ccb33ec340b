"""A thin class to learn, shared by the loss tests that claim to help thin classes: noise
images with a one-pixel-wide bright column, and the IoU a model reaches on it."""

import keras
import numpy as np


def thin_line_data(rng, count):
    """Random-noise images with a one-pixel-wide bright column (class 1) on class 0."""
    images = rng.normal(0.0, 0.3, size=(count, 16, 16, 1)).astype(np.float32)
    labels = np.zeros((count, 16, 16), np.uint8)
    columns = rng.integers(2, 14, size=count)
    for index, column in enumerate(columns):
        images[index, :, column, 0] += 1.0
        labels[index, :, column] = 1
    return images, labels


def thin_class_iou(model, images, labels) -> float:
    predicted = np.argmax(model.predict(images, verbose=0), axis=-1)
    return float(np.sum((predicted == 1) & (labels == 1))
                 / np.sum((predicted == 1) | (labels == 1)))


def thin_class_iou_before_and_after_training(loss) -> tuple[float, float]:
    """The thin class's IoU on unseen images of a small conv model before and after 15
    epochs on 32 training images with ``loss``."""
    rng = np.random.default_rng(0)
    train_images, train_labels = thin_line_data(rng, 32)
    test_images, test_labels = thin_line_data(rng, 16)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 1)),
                              keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                              keras.layers.Conv2D(2, 1)])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=loss)
    before = thin_class_iou(model, test_images, test_labels)
    model.fit(train_images, train_labels, batch_size=8, epochs=15, verbose=0)
    after = thin_class_iou(model, test_images, test_labels)
    return before, after
