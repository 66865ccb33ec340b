"""The private Keras API behind pixelwise.keras_internals: these tests fail first,
and say which Keras version changed it, when a Keras release moves it."""

import keras
import numpy as np
import pytest

from pixelwise.keras_internals import (
    KerasInternalsChanged,
    all_layers,
    functional_graph,
    run_through_graph,
)

FIX = f"Keras {keras.__version__} changed its private API: update pixelwise/keras_internals.py"


def _nested_model() -> keras.Model:
    inner_input = keras.Input((None, None, 3))
    inner = keras.Model(inner_input, keras.layers.Conv2D(4, 1, name="inner_conv")(inner_input),
                        name="inner")
    image = keras.Input((None, None, 3))
    return keras.Model(image, keras.layers.Conv2D(2, 1, name="outer_conv")(inner(image)))


def _sequential() -> keras.Sequential:
    return keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3, name="a")])


def test_the_private_methods_exist_in_this_keras():
    model = _nested_model()
    for method in ("_flatten_layers", "_run_through_graph"):
        assert callable(getattr(model, method, None)), f"Functional.{method} is gone. {FIX}"
    assert isinstance(getattr(_sequential(), "_functional", None), keras.Model), \
        f"Sequential._functional is gone. {FIX}"


def test_all_layers_reaches_into_nested_models():
    names = {layer.name for layer in all_layers(_nested_model())}
    assert {"inner", "inner_conv", "outer_conv"} <= names, f"{sorted(names)}. {FIX}"


def test_functional_graph_of_each_kind_of_model():
    model = _nested_model()
    assert functional_graph(model) is model
    sequential = _sequential()
    graph = functional_graph(sequential)
    assert graph is not None and graph.get_layer("a") is sequential.get_layer("a"), FIX

    class Subclassed(keras.Model):
        def call(self, images):
            return images

    assert functional_graph(Subclassed()) is None


def test_run_through_graph_calls_our_function_for_every_operation():
    model = _nested_model()
    called = []

    def operation_fn(operation):
        def shape_only(*args, **kwargs):
            called.append(operation.name)
            return operation.compute_output_spec(*args, **kwargs)
        return shape_only

    outputs = run_through_graph(model, [keras.KerasTensor((1, 8, 10, 3))], operation_fn)
    assert called == ["inner", "outer_conv"], f"{called}. {FIX}"
    assert tuple(outputs.shape) == (1, 8, 10, 2), FIX
    # Plain calls give the model's own values.
    images = np.ones((1, 4, 4, 3), "float32")
    direct = run_through_graph(model, [images], lambda operation: operation)
    np.testing.assert_allclose(direct, model(images), rtol=1e-6)


def test_a_missing_method_names_the_keras_version():
    with pytest.raises(KerasInternalsChanged, match=rf"Keras {keras.__version__}: .*_flatten_layers"):
        all_layers(object())


def test_the_seed_state_reads_back_and_restores():
    import tensorflow as tf

    from pixelwise.keras_internals import random_seed_state, restore_random_seed_state

    tf.random.set_seed(5)
    tf.random.uniform([1])  # advance TensorFlow's operation-seed counter
    saved = random_seed_state()
    assert saved["tf_seed"] == 5 and saved["tf_operation_seeds"] is not None, FIX
    expected = float(tf.random.uniform([1])[0])
    keras.utils.set_random_seed(123)
    tf.random.uniform([1])
    restore_random_seed_state(saved)
    assert float(tf.random.uniform([1])[0]) == expected, FIX
    restore_random_seed_state({**saved, "tf_seed": None, "tf_operation_seeds": None})
