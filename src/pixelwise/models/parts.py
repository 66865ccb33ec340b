"""The parts of a built segmentation model: its backbone layers and its classifier.

    backbone = backbone_layers(model, "mobilenetv2")   # the encoder, preprocessing included
    classifier = classifier_layer(model)                # the 1x1 conv giving the logits
    per_class = class_layers(model)                     # it, and LR-ASPP's low_classifier

Every model of the registry is one flat functional graph: the backbone's layers (with
their keras.applications names) and the head's. The backbone is what leads to its deepest
feature tap (:data:`~pixelwise.models.backbones.FEATURE_LAYERS` at stride 32), found from
the graph itself, so a model loaded from a .keras file has the same parts as a built one.
"""

from __future__ import annotations

import keras

from pixelwise.models.backbones import feature_layer_names

DEEPEST_TAP_STRIDE = 32
# Layers other than the classifier whose output channels are the classes, by the name the
# builders give them: LR-ASPP adds a classifier of the stride-8 features to the logits.
OTHER_CLASS_LAYERS = ("low_classifier",)


def backbone_layers(model: keras.Model, backbone: str) -> list[keras.layers.Layer]:
    """The layers of ``model`` that belong to its ``backbone`` (the deepest tap and every
    layer before it, the input layer left out), in the model's order.

    Raises ValueError when ``model`` has no layer of that backbone's deepest tap."""
    tap = feature_layer_names(backbone)[DEEPEST_TAP_STRIDE]
    try:
        output = model.get_layer(tap).output
    except ValueError as error:
        raise ValueError(f"{model.name} has no layer {tap!r}: it is not built on a "
                         f"{backbone} backbone") from error
    # A model over the same layers, from the input to the tap: its layers are the tap's
    # ancestors (no weights are created or copied).
    encoder = keras.Model(model.inputs, output)
    names = {layer.name for layer in encoder.layers
             if not isinstance(layer, keras.layers.InputLayer)}
    return [layer for layer in model.layers if layer.name in names]


def classifier_layer(model: keras.Model) -> keras.layers.Layer:
    """The layer whose weights make the logits: the last layer with weights (the 1x1
    conv; what follows it, a resize, has none). Raises ValueError for a model whose
    last weighted layer is not a convolution with one output channel per logit."""
    weighted = [layer for layer in model.layers if layer.weights]
    if not weighted:
        raise ValueError(f"{model.name} has no layer with weights")
    classifier = weighted[-1]
    channels = model.outputs[0].shape[-1]
    kernel = getattr(classifier, "kernel", None)
    if not isinstance(classifier, keras.layers.Conv2D) or kernel is None or \
            kernel.shape[-1] != channels:
        raise ValueError(f"{model.name}: its last layer with weights, {classifier.name}, is "
                         f"not a convolution giving its {channels} logits")
    return classifier


def class_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer with one output channel per class: the classifier first, then those of
    :data:`OTHER_CLASS_LAYERS` the model has."""
    names = {layer.name for layer in model.layers}
    return [classifier_layer(model),
            *(model.get_layer(name) for name in OTHER_CLASS_LAYERS if name in names)]


__all__ = ["OTHER_CLASS_LAYERS", "backbone_layers", "class_layers", "classifier_layer"]
