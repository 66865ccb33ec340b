"""The private Keras (and TensorFlow) API pixelwise relies on, in one place.

Keras has no public way to (1) list every layer of a model including those of nested
models, (2) walk a functional model's graph with each operation replaced by another
call (what :mod:`pixelwise.models.summary` needs to count multiply-adds without computing
anything), or (3) read back the random seed state ``keras.utils.set_random_seed`` sets (what
:mod:`pixelwise.global_state` needs to put it back). Keras and TensorFlow do these with the
private names used below. A release that renames or changes them breaks these functions
only; ``tests/test_keras_internals.py`` then fails with a message naming the version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras


class KerasInternalsChanged(RuntimeError):
    """A private Keras method pixelwise uses is missing in the installed Keras."""


def _require(obj: Any, method: str) -> Callable:
    found = getattr(obj, method, None)
    if not callable(found):
        raise KerasInternalsChanged(
            f"Keras {keras.__version__}: {type(obj).__name__}.{method} is gone; "
            f"pixelwise.keras_internals needs updating for this Keras version")
    return found


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of ``model`` (not the model itself), those of nested models and layers
    included (Keras's ``_flatten_layers``)."""
    return list(_require(model, "_flatten_layers")(include_self=False, recursive=True))


def functional_graph(model: keras.Model) -> keras.Model | None:
    """The functional model behind ``model``: itself if functional, a Sequential's inner
    graph (Keras's ``_functional``), None for a subclassed model."""
    graph = getattr(model, "_functional", None) or model
    return graph if callable(getattr(graph, "_run_through_graph", None)) else None


def run_through_graph(model: keras.Model, inputs: Any,
                      operation_fn: Callable[[Any], Callable]) -> Any:
    """Run ``model``'s graph on ``inputs`` with every operation ``op`` called as
    ``operation_fn(op)(*args, **kwargs)`` (Keras's ``Functional._run_through_graph``);
    ``model`` is a functional model (see :func:`functional_graph`)."""
    return _require(model, "_run_through_graph")(inputs, operation_fn=operation_fn)


# The names Keras's set_random_seed writes (keras/src/utils/rng_utils.py, keras 3.x).
KERAS_SEED_ATTRIBUTES = ("global_random_seed", "global_seed_generator")


def random_seed_state() -> dict:
    """Keras's and TensorFlow's global seed state as it is now (what
    ``keras.utils.set_random_seed`` changes besides Python's and NumPy's generators)."""
    from keras.src.backend.common import global_state as keras_global_state
    from tensorflow.python.eager import context as tf_context

    eager = tf_context.context()
    return {"keras": {name: keras_global_state.get_global_attribute(name)
                      for name in KERAS_SEED_ATTRIBUTES},
            "tf_seed": eager._seed,
            "tf_operation_seeds": eager._rng.getstate() if eager._seed is not None else None}


def restore_random_seed_state(state: dict) -> None:
    """Put back a state from :func:`random_seed_state`."""
    import tensorflow as tf
    from keras.src.backend.common import global_state as keras_global_state
    from tensorflow.python.eager import context as tf_context

    for name, value in state["keras"].items():
        keras_global_state.set_global_attribute(name, value)
    tf.random.set_seed(state["tf_seed"])  # also clears the kernels cached with other seeds
    if state["tf_operation_seeds"] is not None:
        tf_context.context()._rng.setstate(state["tf_operation_seeds"])


__all__ = ["KERAS_SEED_ATTRIBUTES", "KerasInternalsChanged", "all_layers", "functional_graph",
           "random_seed_state", "restore_random_seed_state", "run_through_graph"]
