"""Fine-tuning a trained model to new classes: what is kept, what starts anew, the class
map, refusals, and the frozen-backbone phase across resumes."""

import csv
import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY_BACKBONE_MODEL, TINY_MODEL, TINY_SIZE
from pixelwise.class_map import class_correspondence, parse_class_map
from pixelwise.cli import cli
from pixelwise.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pixelwise.data.spec import DatasetSpec
from pixelwise.data.synthetic import generate_synthetic, synthetic_spec
from pixelwise.init_source import InitSource
from pixelwise.models import build_model, load_model
from pixelwise.models.parts import backbone_layers, classifier_layer
from pixelwise.train import resume, train
from pixelwise.training_phases import Phase, plan_phases
from pixelwise.transfer import start_from_init_model, transfer_weights
from pixelwise.zoo import MODELS_PATH_VARIABLE, package_run
from zoo_fixtures import TINY_NAME

OLD_CLASSES = synthetic_spec().class_names  # background, ball, block, cone, star, ring
NEW_CLASSES = ("background", "ball", "block", "floor")


def network(num_classes: int, **changes) -> keras.Model:
    options = {key: value for key, value in TINY_MODEL.items()
               if key not in ("name", "bn_momentum")}
    options.update(changes)
    return build_model(TINY_MODEL["name"], num_classes=num_classes, **options)


def source_of(classes=OLD_CLASSES, model: ModelConfig | None = None) -> InitSource:
    return InitSource("old", "old.keras", None if classes is None else tuple(classes),
                      model or ModelConfig(**TINY_MODEL))


def weights_of(layer) -> list[np.ndarray]:
    return [np.array(weight) for weight in layer.get_weights()]


def same(first, second) -> bool:
    return len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second))


@pytest.fixture(scope="module")
def old_model() -> keras.Model:
    return network(len(OLD_CLASSES))


# --------------------------------------------------------------------------- class maps

def test_class_maps_parse_and_name_what_is_unknown():
    assert parse_class_map("road=floor, sky=sky") == (("road", "floor"), ("sky", "sky"))
    assert parse_class_map({"road": "floor"}) == (("road", "floor"),)
    assert parse_class_map("") is None and parse_class_map(None) is None
    for bad in ("road", "road=", "road=floor,road=floor"):
        with pytest.raises(ValueError, match="class map"):
            parse_class_map(bad)
    # Same names by default (ignoring case), only the map's pairs with one.
    assert class_correspondence(["sky", "Road"], ["road", "floor", "sky"]) == {0: [1], 2: [0]}
    assert class_correspondence(["sky", "road", "car"], ["floor", "sky"],
                                parse_class_map("road=floor,car=floor")) == {0: [1, 2]}
    with pytest.raises(ValueError) as raised:
        class_correspondence(["sky", "road"], ["floor"], parse_class_map("rood=floor,sky=flor"))
    message = str(raised.value)
    assert "the init model has no class rood (it has sky, road)" in message
    assert "the data has no class flor (it has floor)" in message and "\n" not in message


def test_a_class_map_is_part_of_the_run_configuration(tmp_path):
    config = RunConfig(data=DataConfig(source=str(tmp_path), input_size=(64, 64)),
                       model=ModelConfig(**TINY_MODEL, init_weights="tiny-synth",
                                         init_class_map="cone=floor,ball=ball"),
                       train=TrainConfig(freeze_backbone_epochs=2))
    config.save(tmp_path / "config.json")
    loaded = RunConfig.load(tmp_path / "config.json")
    assert loaded == config and not loaded.differences(config)
    assert loaded.model.init_class_map == (("cone", "floor"), ("ball", "ball"))
    with pytest.raises(ValueError, match="maps the classes of an init model; give "
                                         "init_weights too"):
        ModelConfig(init_class_map="a=b")
    with pytest.raises(ValueError, match="freeze_backbone_epochs must be >= 0"):
        TrainConfig(freeze_backbone_epochs=-1)


# --------------------------------------------------------------------------- the transfer

def test_every_fitting_layer_is_kept_and_same_named_classes_keep_their_rows(old_model):
    new = network(len(NEW_CLASSES))
    fresh_classifier = weights_of(classifier_layer(new))
    report = transfer_weights(new, old_model, backbone="mobilenetv2", classes=NEW_CLASSES,
                              source=source_of())
    old_layers = {layer.name: layer for layer in old_model.layers}
    classifier = classifier_layer(new)
    for layer in new.layers:
        if layer.weights and layer is not classifier:
            assert same(weights_of(layer), weights_of(old_layers[layer.name])), layer.name
    (kernel, bias), (old_kernel, old_bias) = weights_of(classifier), weights_of(
        classifier_layer(old_model))
    for new_index, old_index in ((0, 0), (1, 1), (2, 2)):
        assert np.array_equal(kernel[..., new_index], old_kernel[..., old_index])
        assert bias[new_index] == old_bias[old_index]
    # "floor" has no old class: its fresh row stays, unlike any old one.
    assert np.array_equal(kernel[..., 3], fresh_classifier[0][..., 3])
    assert not any(np.allclose(kernel[..., 3], old_kernel[..., index]) for index in range(6))
    weighted = [layer for layer in new.layers if layer.weights]
    assert report.kept == [layer.name for layer in weighted[:-1]]
    assert report.started_anew == {} and report.classifier == "classifier"
    assert report.carried_classes == {name: [name] for name in NEW_CLASSES[:3]}
    assert report.new_classes == ["floor"]
    row = kernel.shape[-2] + 1  # a kernel column and a bias
    assert report.total_params == new.count_params()
    assert report.kept_params == new.count_params() - classifier.count_params() + 3 * row
    assert "classifier: 3 of 4 classes carried over (background<-background, " \
           "ball<-ball, block<-block)" in report.summary()


def test_a_class_map_carries_the_rows_it_names_and_averages_merged_ones(old_model):
    new = network(len(NEW_CLASSES))
    fresh = weights_of(classifier_layer(new))
    report = transfer_weights(new, old_model, backbone="mobilenetv2", classes=NEW_CLASSES,
                              source=source_of(),
                              class_map=parse_class_map("cone=floor,star=floor,ball=ball"))
    kernel, bias = weights_of(classifier_layer(new))
    old_kernel, old_bias = weights_of(classifier_layer(old_model))
    assert np.allclose(kernel[..., 3], (old_kernel[..., 3] + old_kernel[..., 4]) / 2)
    assert np.isclose(bias[3], (old_bias[3] + old_bias[4]) / 2)
    assert np.array_equal(kernel[..., 1], old_kernel[..., 1])
    # background and block are not in the map: they start anew, same names or not.
    for index in (0, 2):
        assert np.array_equal(kernel[..., index], fresh[0][..., index])
        assert not np.allclose(kernel[..., index], old_kernel[..., index])
    assert report.carried_classes == {"ball": ["ball"], "floor": ["cone", "star"]}
    assert report.new_classes == ["background", "block"]
    with pytest.raises(ValueError, match="class map: the init model has no class road"):
        transfer_weights(network(4), old_model, backbone="mobilenetv2", classes=NEW_CLASSES,
                         source=source_of(), class_map=parse_class_map("road=floor"))


def test_another_head_starts_anew_around_a_kept_backbone(old_model):
    new = network(len(OLD_CLASSES), aspp_filters=8)
    report = transfer_weights(new, old_model, backbone="mobilenetv2", classes=OLD_CLASSES,
                              source=source_of())
    assert set(report.started_anew) == {layer.name for layer in new.layers
                                        if layer.name.startswith("aspp_") and layer.weights}
    assert "other shapes" in report.started_anew["aspp_project_conv"]
    backbone = [layer for layer in backbone_layers(new, "mobilenetv2") if layer.weights]
    assert set(report.kept) == {layer.name for layer in backbone}
    # The classifier's input has other channels: no row can be carried over.
    assert report.carried_classes == {} and report.new_classes == list(OLD_CLASSES)
    assert report.to_dict()["started_anew_layers"] == len(report.started_anew)


@pytest.mark.parametrize("changes, first", [({"backbone": "tiny", "width_multiplier": 1.0},
                                             "not in the init model"),
                                            ({"width_multiplier": 0.5}, "other shapes")])
def test_another_backbone_is_refused_and_nothing_changes(old_model, changes, first):
    new = network(len(OLD_CLASSES), **changes)
    before = [np.array(weight) for weight in new.get_weights()]
    with pytest.raises(ValueError) as raised:
        transfer_weights(new, old_model, backbone=changes.get("backbone", "mobilenetv2"),
                         classes=OLD_CLASSES, source=source_of())
    message = str(raised.value)
    assert "old.keras: its backbone does not fit this" in message and first in message
    assert "it is a deeplabv3 on mobilenetv2 x0.35" in message and "\n" not in message
    assert same(before, new.get_weights())


def test_a_model_without_recorded_classes_is_matched_by_class_count(old_model):
    same_count = network(len(OLD_CLASSES))
    report = transfer_weights(same_count, old_model, backbone="mobilenetv2",
                              classes=OLD_CLASSES, source=source_of(classes=None))
    assert same(weights_of(classifier_layer(same_count)),
                weights_of(classifier_layer(old_model)))
    assert not report.classes_known and "classes are not recorded" in report.summary()
    other_count = network(3)
    report = transfer_weights(other_count, old_model, backbone="mobilenetv2",
                              classes=("a", "b", "c"), source=source_of(classes=None))
    assert report.carried_classes == {} and report.new_classes == ["a", "b", "c"]
    with pytest.raises(ValueError, match="its classes are not recorded"):
        transfer_weights(network(3), old_model, backbone="mobilenetv2",
                         classes=("a", "b", "c"), source=source_of(classes=None),
                         class_map=parse_class_map("ball=a"))


def test_a_weights_file_must_fit_exactly(old_model, tmp_path):
    path = tmp_path / "old.weights.h5"
    old_model.save_weights(path)
    spec = synthetic_spec()

    def config(**model):
        return RunConfig(data=DataConfig(source=str(tmp_path), input_size=(64, 64)),
                         model=ModelConfig(**{**TINY_MODEL, "init_weights": str(path),
                                              **model}))

    new = network(len(OLD_CLASSES))
    report = start_from_init_model(new, config(), spec)
    assert same(new.get_weights(), old_model.get_weights())
    assert report.kept_params == report.total_params == new.count_params()
    with pytest.raises(ValueError, match="a class map needs a .keras model"):
        start_from_init_model(new, config(init_class_map="ball=ball"), spec)
    with pytest.raises(ValueError, match="its weights do not fit"):
        start_from_init_model(network(4), config(), DatasetSpec(
            NEW_CLASSES, ((0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3))))


# --------------------------------------------------------------------------- phases

def test_the_phases_follow_from_the_epochs_done():
    train_config = TrainConfig(epochs=5, freeze_backbone_epochs=2)
    assert plan_phases(0, train_config) == [Phase(0, 2, True), Phase(2, 5, False)]
    assert plan_phases(1, train_config) == [Phase(1, 2, True), Phase(2, 5, False)]
    assert plan_phases(2, train_config) == [Phase(2, 5, False)]
    assert plan_phases(5, train_config) == []
    assert plan_phases(0, TrainConfig(epochs=3)) == [Phase(0, 3, False)]
    assert plan_phases(0, TrainConfig(epochs=2, freeze_backbone_epochs=4)) == [
        Phase(0, 2, True)]


class Recorder(keras.callbacks.Callback):
    """The weights of every layer at the end of each epoch, by epoch number."""

    def __init__(self):
        super().__init__()
        self.epochs = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[epoch + 1] = {layer.name: weights_of(layer)
                                  for layer in self.model.layers if layer.weights}


class Kill(keras.callbacks.Callback):
    """Interrupts the run after the epoch it names was saved (as a kill would)."""

    def __init__(self, after_epoch: int):
        super().__init__()
        self.after_epoch = after_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after_epoch:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_a_frozen_backbone_stays_put_across_resumes_then_trains(tiny_backbone_run, tmp_path):
    # On the tiny backbone (five conv + batch-norm stages): the phases and the resumes are
    # the point, and each of the three calls below traces its training step anew.
    data, source_run, _ = tiny_backbone_run
    old = load_model(source_run / "best.keras", compile=False)
    backbone = [layer.name for layer in backbone_layers(old, "tiny") if layer.weights]
    assert len(backbone) == 10
    old_weights = {name: weights_of(old.get_layer(name)) for name in backbone + ["classifier"]}
    config = RunConfig(data=DataConfig(source=str(data), input_size=(TINY_SIZE, TINY_SIZE)),
                       model=ModelConfig(**TINY_BACKBONE_MODEL, init_weights=str(source_run)),
                       train=TrainConfig(epochs=3, batch_size=4, tensorboard=False,
                                         freeze_backbone_epochs=2))
    run_dir = tmp_path / "run"
    recorder, lines = Recorder(), []
    # Killed in the frozen phase, after epoch 1; then at the phase boundary, after epoch 2.
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir, progress=False, echo=lines.append, callbacks=[recorder, Kill(1)])
    with pytest.raises(KeyboardInterrupt):
        resume(run_dir, progress=False, echo=lines.append, callbacks=[recorder, Kill(2)])
    result = resume(run_dir, progress=False, echo=lines.append, callbacks=[recorder])
    assert (result.epochs_done, result.stop_reason) == (3, "completed")
    assert sorted(recorder.epochs) == [1, 2, 3]
    for epoch in (1, 2):  # backbone weights and batch-norm statistics as they came
        for name in backbone:
            assert same(recorder.epochs[epoch][name], old_weights[name]), (epoch, name)
    bn = next(name for name in backbone if "BN" in name or "bn" in name)
    assert np.array_equal(recorder.epochs[2][bn][2], old_weights[bn][2])  # moving mean
    # The head trained meanwhile, its batch norm statistics moving too.
    assert not same(recorder.epochs[1]["classifier"], old_weights["classifier"])
    assert not same(recorder.epochs[2]["aspp_project_bn"], recorder.epochs[1]["aspp_project_bn"])
    # Epoch 3 trains everything: the backbone's weights and statistics move.
    changed = [name for name in backbone
               if not same(recorder.epochs[3][name], old_weights[name])]
    assert len(changed) > len(backbone) // 2
    assert not np.array_equal(recorder.epochs[3][bn][2], old_weights[bn][2])
    trained = [line for line in lines if line.startswith("training ")]
    assert [line.split("), ")[1].split(";")[0] for line in trained] == [
        "epochs 1..2, backbone frozen", "epochs 2..2, backbone frozen", "epochs 3..3"]
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert state["optimizer_iterations"] == 3 * 4  # one optimizer over all phases
    with open(run_dir / "train_log.csv") as log:
        assert [int(row["epoch"]) for row in csv.DictReader(log)] == [0, 1, 2]


# --------------------------------------------------------------------------- the command

@pytest.fixture(scope="module")
def new_classes_data(tmp_path_factory):
    """A synthetic set of 3 object classes whose last one is called "floor"."""
    root = tmp_path_factory.mktemp("new_classes") / "synth"
    generate_synthetic(root, num_images=16, size=TINY_SIZE, seed=11, num_object_classes=3)
    spec = synthetic_spec(3)
    DatasetSpec(NEW_CLASSES, spec.colors).save(root / "pixelwise_dataset.json")
    return root


@pytest.fixture(scope="module")
def tiny_backbone_zoo_dir(tmp_path_factory, tiny_backbone_run):
    """A models folder holding ``tiny-synth`` as the tiny-backbone run's best model (the
    zoo tests' tiny-synth is on MobileNetV2: the two training phases below would each trace
    its hundreds of layers)."""
    _, run_dir, _ = tiny_backbone_run
    models_dir = tmp_path_factory.mktemp("zoo")
    package_run(run_dir, models_dir, TINY_NAME, description="tiny test model")
    return models_dir


@pytest.fixture
def tiny_backbone_zoo(tiny_backbone_zoo_dir, monkeypatch):
    """``tiny-synth`` (tiny backbone) registered through ``$PIXELWISE_MODELS``."""
    monkeypatch.setenv(MODELS_PATH_VARIABLE, str(tiny_backbone_zoo_dir))
    return tiny_backbone_zoo_dir


@pytest.mark.slow
def test_cli_fine_tunes_a_named_model_to_new_classes(tiny_backbone_zoo, new_classes_data,
                                                     tmp_path):
    run_dir = tmp_path / "run"
    common = ["--data", str(new_classes_data), "--init-from", TINY_NAME, "--batch-size", "4",
              "--input-size", str(TINY_SIZE), "--no-tensorboard", "--quiet"]
    runner = CliRunner()
    # No model flag: the named model's architecture is built.
    result = runner.invoke(cli, ["train", "--out", str(run_dir), "--epochs", "2",
                                 "--freeze-backbone-epochs", "1", *common])
    assert result.exit_code == 0, result.output
    model_file = tiny_backbone_zoo / TINY_NAME / "model.keras"
    assert (f"starting from the weights of {TINY_NAME} ({model_file}): kept " in result.output)
    assert "classifier: 3 of 4 classes carried over (background<-background, ball<-ball, " \
           "block<-block)" in result.output
    assert "epochs 1..1, backbone frozen" in result.output and "epochs 2..2;" in result.output
    assert "2 epoch(s) done (completed)" in result.output
    report = json.loads((run_dir / "init_report.json").read_text())
    assert report["source"] == f"{TINY_NAME} ({model_file})"
    assert report["started_anew"] == {} and report["new_classes"] == ["floor"]
    # Every layer but the classifier kept (whose rows of the 3 old classes carried over).
    weighted = [layer.name for layer in load_model(run_dir / "best.keras", compile=False).layers
                if layer.weights]
    assert report["kept"] == weighted[:-1] and report["classifier"] == weighted[-1]
    assert report["kept_layers"] == len(report["kept"]) > 20
    assert 0 < report["kept_params"] < report["total_params"]
    config = RunConfig.load(run_dir / "config.json")
    assert config.model.init_weights == TINY_NAME
    assert (config.model.backbone, config.model.width_multiplier, config.model.aspp_filters) \
        == ("tiny", 1.0, 16)
    assert config.train.freeze_backbone_epochs == 1
    # Flags given win, and must fit: another backbone is refused in one line.
    refused = runner.invoke(cli, ["train", "--out", str(tmp_path / "other"), "--epochs", "1",
                                  "--backbone", "mobilenetv2", "--width-multiplier", "0.35",
                                  *common])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "its backbone does not fit this" in refused.output
    assert not (tmp_path / "other").exists()
    unknown = runner.invoke(cli, ["train", "--out", str(tmp_path / "mapped"), "--epochs", "1",
                                  "--class-map", "rood=floor", *common])
    assert unknown.exit_code == 1 and "the init model has no class rood" in unknown.output
    assert not (tmp_path / "mapped").exists()
