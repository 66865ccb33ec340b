"""The private Keras API pixelwise relies on, in one place.

Keras has no public way to (1) list every layer of a model including those of nested
models, or (2) walk a functional model's graph with each operation replaced by another
call (what :mod:`pixelwise.models.summary` needs to count multiply-adds without computing
anything). Keras itself does both with the private methods used below. A Keras release
that renames or changes them breaks these functions only; ``tests/test_keras_internals.py``
then fails with a message naming the Keras version.
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
            f"pixelwise.models.keras_internals needs updating for this Keras version")
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


__all__ = ["KerasInternalsChanged", "all_layers", "functional_graph", "run_through_graph"]
