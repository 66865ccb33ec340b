"""Starting a network from a trained model of other classes (or another head).

    report = start_from_init_model(model, config, spec)   # config.model.init_weights
    report.summary()          # what was kept, what was started anew
    report.to_dict()          # what a run folder keeps as init_report.json

The rules:

- **Kept**: every layer of the new network whose weights fit, that is a layer of the same
  name in the init model with weights of the same shapes (batch norm's moving statistics
  included).
- **Started anew**: every other layer (its fresh initialisation stays), and the
  classifier (the 1x1 conv giving the logits), except its rows for classes that
  correspond: a new class takes the kernel column and bias of the old class of the same
  name, or of the old classes a class map names (averaged, see
  :mod:`pixelwise.class_map`). Where the init model's classes are not recorded, its
  classifier is kept whole when the class count is the same, and started anew otherwise.
  Other layers with a channel per class (LR-ASPP's ``low_classifier``) follow the same rule.
- **Refused**: an init model whose backbone does not fit, that is a backbone layer of the
  new network (see :func:`pixelwise.models.parts.backbone_layers`) with no same-named,
  same-shaped layer in the init model (another backbone, another width). The head (ASPP,
  decoder) may differ: those layers start anew and the report names them.

A .weights.h5 file holds no layer names, so it must fit the network exactly
(:func:`pixelwise.recipe.load_initial_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from pixelwise.class_map import ClassPairs, class_correspondence
from pixelwise.config import RunConfig
from pixelwise.data.spec import DatasetSpec
from pixelwise.init_source import InitSource, open_init_source
from pixelwise.models import load_model
from pixelwise.models.parts import backbone_layers, class_layers, classifier_layer
from pixelwise.recipe import load_initial_weights

INIT_REPORT_FILENAME = "init_report.json"


@dataclass
class TransferReport:
    """What a start from an init model kept and started anew.

    Attributes:
        source: the init model (name and file, or the file).
        kept: the layers (classifier aside) whose weights came from it.
        started_anew: layer (classifier aside) -> why it did not fit.
        classifier: the classifier layer's name.
        carried_classes: new class -> the old classes its classifier row came from.
        new_classes: the new classes whose classifier row starts anew.
        classes_known: whether the init model's classes were known (else the classifier
            was matched by class count alone).
        kept_params, total_params: parameters (all weights, batch norm statistics
            included) taken from the init model, and of the whole network.
    """

    source: str
    kept: list[str] = field(default_factory=list)
    started_anew: dict[str, str] = field(default_factory=dict)
    classifier: str = ""
    carried_classes: dict[str, list[str]] = field(default_factory=dict)
    new_classes: list[str] = field(default_factory=list)
    classes_known: bool = True
    kept_params: int = 0
    total_params: int = 0

    def summary(self) -> str:
        """One line: the layers and parameters kept, the classes carried over."""
        layers = len(self.kept) + len(self.started_anew)
        line = (f"kept {len(self.kept)} of {layers} layers before the classifier and "
                f"{self.kept_params:,} of {self.total_params:,} parameters")
        if self.started_anew:
            names = list(self.started_anew)
            line += (f"; started anew: {', '.join(names[:4])}"
                     + (f" and {len(names) - 4} more" if len(names) > 4 else ""))
        total = len(self.carried_classes) + len(self.new_classes)
        line += f"; classifier: {len(self.carried_classes)} of {total} classes carried over"
        if self.carried_classes and self.classes_known:
            line += " (" + ", ".join(f"{new}<-{'+'.join(old)}" for new, old
                                     in self.carried_classes.items()) + ")"
        elif self.carried_classes:
            line += " (the init model's classes are not recorded: kept in their order)"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "kept_layers": len(self.kept),
                "started_anew_layers": len(self.started_anew),
                "kept_params": self.kept_params, "total_params": self.total_params,
                "kept": list(self.kept), "started_anew": dict(self.started_anew),
                "classifier": self.classifier, "carried_classes": dict(self.carried_classes),
                "new_classes": list(self.new_classes), "classes_known": self.classes_known}


def fit_problem(layer: keras.layers.Layer, other: keras.layers.Layer | None) -> str | None:
    """Why ``other``'s weights cannot be ``layer``'s, or None when they fit."""
    if other is None:
        return "not in the init model"
    mine = [tuple(weight.shape) for weight in layer.weights]
    theirs = [tuple(weight.shape) for weight in other.weights]
    if mine != theirs:
        return f"other shapes ({_shapes(theirs)} in the init model, {_shapes(mine)} here)"
    return None


def _shapes(shapes: Sequence[tuple]) -> str:
    return " ".join("x".join(str(side) for side in shape) for shape in shapes)


def transfer_weights(model: keras.Model, init_model: keras.Model, *, backbone: str,
                     classes: Sequence[str], source: InitSource,
                     class_map: ClassPairs | None = None) -> TransferReport:
    """Copy what fits of ``init_model`` into ``model`` (see the module docstring);
    ``classes``: ``model``'s class names; ``source``: where ``init_model`` came from (its
    classes and architecture, for the class correspondence and the messages).

    Raises ValueError, on one line, when the backbone does not fit or a class map names
    classes either side lacks; ``model`` is then unchanged."""
    classifier, *other_class_layers = class_layers(model)
    theirs = {layer.name: layer for layer in init_model.layers}
    report = TransferReport(source=source.describe(), classifier=classifier.name,
                            total_params=model.count_params())
    fitting = []
    for layer in model.layers:
        if not layer.weights or layer is classifier or layer in other_class_layers:
            continue
        problem = fit_problem(layer, theirs.get(layer.name))
        if problem:
            report.started_anew[layer.name] = problem
        else:
            fitting.append(layer)
    misfits = [layer.name for layer in backbone_layers(model, backbone)
               if layer.name in report.started_anew]
    if misfits:
        raise ValueError(_backbone_refusal(model, source, backbone, misfits, report))
    rows = {classifier: _classifier_rows(classifier, classifier_layer(init_model), classes,
                                         source, class_map, report)}
    for layer in other_class_layers:  # their rows follow the classifier's correspondence
        if layer.name in theirs:
            rows[layer] = _classifier_rows(layer, theirs[layer.name], classes, source,
                                           class_map, report)
        else:
            report.started_anew[layer.name] = "not in the init model"
    for layer in fitting:
        layer.set_weights(theirs[layer.name].get_weights())
        report.kept.append(layer.name)
        report.kept_params += layer.count_params()
    for layer, weights in rows.items():
        layer.set_weights(weights)
    return report


def _backbone_refusal(model: keras.Model, source: InitSource, backbone: str,
                      misfits: list[str], report: TransferReport) -> str:
    total = sum(1 for layer in backbone_layers(model, backbone) if layer.weights)
    first = misfits[0]
    what = (f"it is a {source.model.name} on {source.model.backbone}"
            + (f" x{source.model.width_multiplier:g}" if source.model.width_multiplier != 1
               else "") + "; leave out the model flags that differ to build its architecture"
            if source.model is not None else "start from a model with this backbone")
    return (f"{source.describe()}: its backbone does not fit this {model.name} ({backbone}): "
            f"{len(misfits)} of {total} backbone layers differ (first: {first}, "
            f"{report.started_anew[first]}); {what}")


def _classifier_rows(classifier: keras.layers.Layer, old: keras.layers.Layer,
                     classes: Sequence[str], source: InitSource, class_map: ClassPairs | None,
                     report: TransferReport) -> list[np.ndarray]:
    """The classifier's weights with the rows of corresponding classes carried over from
    ``old``, filling the report's class fields."""
    weights = [np.array(weight) for weight in classifier.get_weights()]
    old_weights = old.get_weights()
    old_count = old_weights[0].shape[-1]
    if source.classes is None:
        if class_map:
            raise ValueError(f"{source.describe()}: its classes are not recorded (no card, "
                             f"no pixelwise_dataset.json beside it), so a class map cannot "
                             f"name them")
        report.classes_known = False
        sources = ({index: [index] for index in range(len(classes))}
                   if old_count == len(classes) else {})
        old_names = [str(index) for index in range(old_count)]
    else:
        old_names = list(source.classes)
        sources = class_correspondence(old_names, classes, class_map)
    same_input = (len(weights) == len(old_weights) and
                  weights[0].shape[:-1] == old_weights[0].shape[:-1])
    if not same_input:
        sources = {}  # another input width: no row can be carried
    for new, olds in sources.items():
        for weight, old_weight in zip(weights, old_weights):
            weight[..., new] = np.mean(old_weight[..., olds], axis=-1)
        report.kept_params += sum(int(np.prod(weight.shape[:-1])) for weight in weights)
        report.carried_classes[classes[new]] = [old_names[index] for index in olds]
    report.new_classes = [name for index, name in enumerate(classes) if index not in sources]
    return weights


def start_from_init_model(model: keras.Model, config: RunConfig,
                          spec: DatasetSpec) -> TransferReport:
    """Start ``model`` (built for ``config`` and ``spec``'s classes) from the model of
    ``config.model.init_weights`` under the rules of the module docstring.

    Raises FileNotFoundError for a missing file or unknown name, and ValueError on one
    line for a model that does not fit."""
    source = open_init_source(config.model.init_weights)
    if source.path.name.endswith(".weights.h5"):
        if config.model.init_class_map:
            raise ValueError(f"{source.path}: a weights file holds no layer names or "
                             f"classes; a class map needs a .keras model")
        load_initial_weights(model, source.path)
        report = TransferReport(source=source.describe(), classifier=classifier_layer(
            model).name, total_params=model.count_params(), kept_params=model.count_params())
        report.kept = [layer.name for layer in model.layers
                       if layer.weights and layer.name != report.classifier]
        report.carried_classes = {name: [name] for name in spec.class_names}
        report.classes_known = source.classes is not None
        return report
    try:
        init_model = load_model(source.path, compile=False)
    except (ValueError, TypeError, OSError) as error:
        raise ValueError(f"{source.path}: cannot read the model: "
                         f"{str(error).strip().splitlines()[0] if str(error).strip() else error}"
                         ) from error
    return transfer_weights(model, init_model, backbone=config.model.backbone,
                            classes=spec.class_names, source=source,
                            class_map=config.model.init_class_map)


__all__ = ["INIT_REPORT_FILENAME", "TransferReport", "fit_problem", "start_from_init_model",
           "transfer_weights"]
