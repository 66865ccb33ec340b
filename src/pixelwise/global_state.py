"""Process-wide settings a training run changes, set for a block and put back after it.

    with dtype_policy("mixed_bfloat16"), seeded(0):
        model = build_network(...)        # bfloat16 compute, the same weights every run

Keras keeps its dtype policy and its random seed in process-wide state, and so do Python,
NumPy and TensorFlow for their random generators. A library call that sets them for its own
reproducibility must not leave the caller's program with another policy or another
sequence of random numbers, so both context managers restore what they found.

Keras and TensorFlow offer setters but no getters for their seed state; ``seeded`` reads
it through two private attributes (Keras's ``global_state`` and TensorFlow's eager
context), both named here only. ``tests/test_train.py`` checks that the state comes back.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend.common import global_state as keras_global_state
from tensorflow.python.eager import context as tf_context

# The names Keras's set_random_seed writes (keras/src/utils/rng_utils.py, keras 3.x).
KERAS_SEED_ATTRIBUTES = ("global_random_seed", "global_seed_generator")


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
    keras_state = {name: keras_global_state.get_global_attribute(name)
                   for name in KERAS_SEED_ATTRIBUTES}
    eager = tf_context.context()
    tf_seed = eager._seed
    tf_operation_seeds = eager._rng.getstate() if tf_seed is not None else None
    keras.utils.set_random_seed(int(seed))
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        for name, value in keras_state.items():
            keras_global_state.set_global_attribute(name, value)
        tf.random.set_seed(tf_seed)  # also clears the kernels cached with the run's seeds
        if tf_operation_seeds is not None:
            eager._rng.setstate(tf_operation_seeds)


__all__ = ["dtype_policy", "seeded"]
