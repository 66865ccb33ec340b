"""Process-wide settings a training run changes, set for a block and put back after it.

    with dtype_policy("mixed_bfloat16"), seeded(0):
        model = build_network(...)        # bfloat16 compute, the same weights every run

Keras keeps its dtype policy and its random seed in process-wide state, and so do Python,
NumPy and TensorFlow for their random generators. A library call that sets them for its own
reproducibility must not leave the caller's program with another policy or another
sequence of random numbers, so both context managers restore what they found.

Keras and TensorFlow offer setters but no getters for their seed state; ``seeded`` reads
it through :mod:`pixelwise.keras_internals`, where every private name pixelwise uses
lives. ``tests/test_train.py`` checks that the state comes back.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import keras
import numpy as np

from pixelwise.keras_internals import random_seed_state, restore_random_seed_state


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Set Keras's global dtype policy (e.g. "mixed_bfloat16") for the block, and put the
    previous one back."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """``keras.utils.set_random_seed(seed)`` for the block: Python's, NumPy's, TensorFlow's
    and Keras's random state are seeded, and afterwards put back as they were."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    framework_state = random_seed_state()
    keras.utils.set_random_seed(int(seed))
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        restore_random_seed_state(framework_state)


__all__ = ["dtype_policy", "seeded"]
