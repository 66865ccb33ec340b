"""A thin class to learn, shared by the loss tests that claim to help thin classes: noise
images with a one-pixel-wide bright column, and the IoU a model reaches on it."""

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
