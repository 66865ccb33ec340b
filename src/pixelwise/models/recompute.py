"""Training with recomputed backbone stages (gradient checkpointing): less memory, more time.

    enable_recomputation(model, "resnet50")   # before model.fit; saving is unaffected

A training step normally keeps every activation of the forward pass for the backward
pass. With recomputation the backbone runs as a chain of stages, cut at its feature taps
(:data:`~pixelwise.models.backbones.FEATURE_LAYERS`: ResNet-50's conv1 .. conv5); each stage
keeps only its input, and runs forward a second time in the backward pass to get the rest
(``keras.remat``, TensorFlow's ``recompute_grad``). The head is not recomputed.

Batch normalization in training mode updates its moving statistics as it runs. The
recomputation is a second run of the same batch, so its updates are made in a
``keras.StatelessScope`` and dropped: the statistics move once per step, as without it.

The model itself is not changed: its layers, weights and saved files stay the same; only
its ``call`` in training mode goes through the stages (an attribute of this one model
object). Inference calls the model's own graph.
"""

from __future__ import annotations

import keras

from pixelwise.models.backbones import feature_layer_names


class StagedForward:
    """A model's forward pass as backbone stages (each recomputed in the backward pass)
    followed by its head: sub-models over the model's own layers, no weights copied."""

    def __init__(self, model: keras.Model, backbone: str):
        names = feature_layer_names(backbone)
        present = [names[stride] for stride in sorted(names) if _has_layer(model, names[stride])]
        if not present:
            raise ValueError(f"recompute: {model.name} has none of the {backbone} backbone's "
                             f"stage outputs ({', '.join(names.values())})")
        self.stage_names = tuple(present)
        # Sub-models cut from intermediate tensors add nodes to the graph they are cut
        # from, so they are cut from a copy of the graph over the same layers (no weights
        # copied) and the model's own graph, which is what gets saved, stays as it was.
        tapped = keras.Model(model.inputs, [*(model.get_layer(name).output for name in present),
                                            model.outputs[0]])
        copy = keras.models.clone_model(tapped, clone_function=lambda layer: layer)
        *boundaries, output = copy.outputs
        try:
            self.stages = []
            previous = copy.inputs[0]
            for name, boundary in zip(present, boundaries):
                self.stages.append(keras.Model(previous, boundary, name=f"stage_to_{name}"))
                previous = boundary
            self.head = keras.Model([copy.inputs[0], *boundaries], output, name="head")
        except ValueError as error:
            raise ValueError(
                f"recompute: {model.name} cannot be cut at its {backbone} stage outputs "
                f"({', '.join(present)}): a layer reads across a cut ({error})") from error

    def __call__(self, images, training: bool = True):
        features = [keras.ops.convert_to_tensor(images)]
        for stage in self.stages:
            features.append(_recomputed(stage)(features[-1]) if training
                            else stage(features[-1], training=False))
        return self.head(features, training=training)


def _has_layer(model: keras.Model, name: str) -> bool:
    try:
        model.get_layer(name)
    except ValueError:
        return False
    return True


def _recomputed(stage: keras.Model):
    """``stage`` in training mode under ``keras.remat``; the backward pass's second run
    leaves batch norm's moving statistics where the first put them."""
    runs = []

    def run(inputs):
        if not runs:
            runs.append("forward")
            return stage(inputs, training=True)
        with keras.StatelessScope():
            return stage(inputs, training=True)

    return keras.remat(run)


def enable_recomputation(model: keras.Model, backbone: str) -> StagedForward:
    """Make ``model``'s training-mode calls (``fit``, ``train_on_batch``) recompute its
    backbone stages; inference calls are untouched. Returns the staged forward pass."""
    staged = StagedForward(model, backbone)
    graph_call = model.call

    def call(inputs, training=None, mask=None, **kwargs):
        if training:
            return staged(inputs, training=True)
        return graph_call(inputs, training=training, mask=mask, **kwargs)

    model.call = call
    return staged


def recomputes(model: keras.Model) -> bool:
    """Whether :func:`enable_recomputation` was applied to ``model``."""
    return "call" in vars(model)


__all__ = ["StagedForward", "enable_recomputation", "recomputes"]
