"""Named trained models (pixelwise.zoo): cards, the search path, resolution, and the
commands that take a name (model list / show, predict, export, train --init-from)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli_errors import one_line_error
from conftest import TINY_MODEL, TINY_SIZE
from pixelwise.cli import cli
from pixelwise.data.palette import read_label
from pixelwise.data.synthetic import synthetic_spec
from pixelwise.export.sources import open_export_source
from pixelwise.inference import KerasSegmenter, Segmenter, TFLiteSegmenter
from pixelwise.run_options import architecture_of_init, run_config_from_options
from pixelwise.zoo import (
    CARD_FILENAME,
    MODELS_PATH_VARIABLE,
    SHIPPED_MODELS_DIR,
    find_model,
    list_models,
    package_run,
    read_card,
    resolve_model_path,
)
from zoo_fixtures import TINY_NAME, tiny_zoo, tiny_zoo_dir  # noqa: F401  (fixtures)


# --------------------------------------------------------------------------- the registry

def test_with_no_folder_added_only_the_shipped_models_are_listed(monkeypatch):
    monkeypatch.delenv(MODELS_PATH_VARIABLE, raising=False)
    shipped = sorted(path.name for path in SHIPPED_MODELS_DIR.iterdir()
                     if (path / CARD_FILENAME).is_file())
    assert [card.name for card in list_models()] == shipped
    result = CliRunner().invoke(cli, ["model", "list"])
    assert result.exit_code == 0, result.output
    if not shipped:
        assert "no models are registered" in result.output
        assert MODELS_PATH_VARIABLE in result.output


def test_a_packaged_run_has_a_complete_card(tiny_zoo, tiny_trained_run):
    _, run_dir, _ = tiny_trained_run
    card = find_model(TINY_NAME)
    assert card.folder == tiny_zoo / TINY_NAME
    assert card.files == {"keras": "model.keras"}
    assert card.spec == synthetic_spec()
    assert card.input_size == (TINY_SIZE, TINY_SIZE)
    for key, value in TINY_MODEL.items():
        if key != "backbone_weights":
            assert getattr(card.model, key) == value, key
    assert card.model.backbone_weights is None and card.model.init_weights is None
    assert card.scores["mean_iou"] == 0.5 and card.training["recipe"] == "textbook"
    assert card.input_multiple == 16
    assert (tiny_zoo / TINY_NAME / "model.keras").read_bytes() == \
        (run_dir / "best.keras").read_bytes()
    # The file on disk is the card as read back.
    values = json.loads((tiny_zoo / TINY_NAME / CARD_FILENAME).read_text())
    assert values["format"] == "pixelwise-model-card" and values["version"] == 1
    assert values["classes"]["class_names"] == list(synthetic_spec().class_names)
    assert values["input_size"] == [TINY_SIZE, TINY_SIZE]
    assert read_card(tiny_zoo / TINY_NAME) == card


def test_names_resolve_to_files_and_paths_pass_through(tiny_zoo, tmp_path):
    assert resolve_model_path(TINY_NAME) == tiny_zoo / TINY_NAME / "model.keras"
    assert resolve_model_path(TINY_NAME, kind="keras") == tiny_zoo / TINY_NAME / "model.keras"
    with pytest.raises(ValueError, match="model tiny-synth has no tflite file .it has: keras"):
        resolve_model_path(TINY_NAME, kind="tflite")
    # Paths, existing or not, come back unchanged (a missing one is the caller's message).
    for path in (tmp_path, tmp_path / "gone.keras", tmp_path / "run"):
        assert resolve_model_path(path) == path
    (tmp_path / TINY_NAME).mkdir()
    assert resolve_model_path(str(tmp_path / TINY_NAME)) == tmp_path / TINY_NAME
    with pytest.raises(FileNotFoundError) as raised:
        resolve_model_path("no-such-model")
    message = str(raised.value)
    assert message.startswith("no-such-model: no such file or folder, and no model of that "
                              "name; known models: ")
    assert TINY_NAME in message and "\n" not in message


def test_earlier_folders_hide_later_ones_and_bad_cards_are_named(tiny_zoo, tmp_path,
                                                                 monkeypatch):
    first = tmp_path / "first"
    shutil.copytree(tiny_zoo / TINY_NAME, first / TINY_NAME)
    card = json.loads((first / TINY_NAME / CARD_FILENAME).read_text())
    card["description"] = "the user's own copy"
    (first / TINY_NAME / CARD_FILENAME).write_text(json.dumps(card))
    monkeypatch.setenv(MODELS_PATH_VARIABLE, f"{first}:{tiny_zoo}")
    assert find_model(TINY_NAME).description == "the user's own copy"
    assert [card.name for card in list_models()].count(TINY_NAME) == 1

    (first / "renamed").mkdir()
    (first / "renamed" / CARD_FILENAME).write_text(json.dumps(card))
    with pytest.raises(ValueError, match="names the model 'tiny-synth', but its folder is "
                                         "'renamed'"):
        list_models()
    card["files"] = {"keras": "../elsewhere.keras"}
    (first / "renamed" / CARD_FILENAME).write_text(json.dumps(dict(card, name="renamed")))
    with pytest.raises(ValueError, match=r"renamed.card\.json: 'files' must map"):
        find_model("renamed")
    (first / "renamed" / CARD_FILENAME).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a pixelwise model card"):
        find_model("renamed")


def test_model_list_and_show(tiny_zoo):
    runner = CliRunner()
    listed = runner.invoke(cli, ["model", "list"])
    assert listed.exit_code == 0, listed.output
    line = next(line for line in listed.output.splitlines() if line.startswith(TINY_NAME))
    assert "6 classes (background, ball, block, cone, star, ring)" in line
    assert f"input {TINY_SIZE}x{TINY_SIZE}" in line and "mean IoU 50.0% (test)" in line
    assert "files: keras model.keras" in line
    assert "tiny test model" in listed.output
    shown = runner.invoke(cli, ["model", "show", TINY_NAME])
    assert shown.exit_code == 0, shown.output
    card = json.loads(shown.output)
    assert card["name"] == TINY_NAME and card["folder"] == str(tiny_zoo / TINY_NAME)
    assert card["model"]["backbone"] == "mobilenetv2" and card["scores"]["split"] == "test"
    one_line_error(runner.invoke(cli, ["model", "show", "nothing-here"]),
                   "nothing-here: no model of that name; known models: ", TINY_NAME)


# --------------------------------------------------------------------------- using a name

def test_a_name_opens_as_a_segmenter_with_the_cards_classes(tiny_zoo):
    segmenter = Segmenter.from_path(TINY_NAME)
    assert isinstance(segmenter, KerasSegmenter)
    assert segmenter.spec == synthetic_spec() and segmenter.input_multiple == 16
    resized = Segmenter.from_path(TINY_NAME, fit_mode="resize")
    assert resized.input_size == (TINY_SIZE, TINY_SIZE)
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert segmenter.predict(image).shape == (50, 70)
    # The .keras file of a model folder opens by its path too, the card beside it.
    by_path = Segmenter.from_path(tiny_zoo / TINY_NAME / "model.keras")
    assert by_path.spec == segmenter.spec and by_path.input_multiple == 16


def test_cli_predicts_with_a_name_into_the_current_folder(tiny_zoo, tmp_path, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((48, 80, 3), 90, np.uint8)).save(images / "frame.png")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["predict", TINY_NAME, str(images), "--quiet"])
    assert result.exit_code == 0, result.output
    written = tmp_path / f"{TINY_NAME}_predictions"
    assert read_label(written / "frame.png").shape == (48, 80)
    assert (written / "frame_overlay.png").is_file()
    assert not (tiny_zoo / TINY_NAME / "model_predictions").exists()
    one_line_error(runner.invoke(cli, ["predict", TINY_NAME, str(images), "--kind", "tflite"]),
                   "model tiny-synth has no tflite file")
    one_line_error(runner.invoke(cli, ["predict", "no-such-model", str(images)]),
                   "no-such-model: no such file or folder, and no model of that name")


@pytest.mark.slow
def test_cli_exports_a_name_then_predicts_with_its_tflite(tiny_zoo, tiny_trained_run,
                                                          tmp_path, monkeypatch):
    data, run_dir, _ = tiny_trained_run
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    # A name carries no dataset: the check needs one.
    one_line_error(runner.invoke(cli, ["export", TINY_NAME, "--format", "tflite"]),
                   "tiny-synth carries no dataset: the check needs --data")
    result = runner.invoke(cli, ["export", TINY_NAME, "--format", "tflite", "--data", str(data),
                                 "--check-images", "2"])
    assert result.exit_code == 0, result.output
    exported = tmp_path / f"{TINY_NAME}_export" / "model_float32.tflite"
    assert exported.is_file() and "agreement" in result.output.lower()
    assert (exported.parent / "model_float32_check.json").is_file()
    # Registered with its .tflite, predict runs either file by name.
    models = tmp_path / "models"
    package_run(run_dir, models, "tiny-lite", tflite=exported)
    monkeypatch.setenv(MODELS_PATH_VARIABLE, str(models))
    assert isinstance(Segmenter.from_path("tiny-lite", kind="tflite"), TFLiteSegmenter)
    Image.fromarray(np.full((TINY_SIZE, TINY_SIZE, 3), 90, np.uint8)).save(tmp_path / "f.png")
    result = runner.invoke(cli, ["predict", "tiny-lite", str(tmp_path / "f.png"), "--kind",
                                 "tflite", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "model_float32.tflite" in result.output
    assert read_label(tmp_path / "tiny-lite_predictions" / "f.png").shape == (TINY_SIZE,
                                                                               TINY_SIZE)


def test_export_sources_of_a_name_a_model_file_and_a_run(tiny_zoo, tiny_trained_run,
                                                         tmp_path):
    data, run_dir, _ = tiny_trained_run
    named = open_export_source(TINY_NAME)
    assert named.data is None and named.input_size == (TINY_SIZE, TINY_SIZE)
    assert named.spec == synthetic_spec() and named.export_dir.name == f"{TINY_NAME}_export"
    with pytest.raises(ValueError, match="int8 calibration needs --data"):
        named.require_data("int8 calibration")
    model_file = open_export_source(tiny_zoo / TINY_NAME / "model.keras", data=data)
    assert model_file.data == str(data.resolve()) and model_file.input_multiple == 16
    assert model_file.export_dir == tiny_zoo / TINY_NAME / "model_export"
    run = open_export_source(run_dir)
    assert run.data == str(data.resolve()) and run.export_dir == run_dir / "export"
    lone = tmp_path / "lone.keras"
    shutil.copyfile(run_dir / "best.keras", lone)
    with pytest.raises(FileNotFoundError, match="config.json and pixelwise_dataset.json "
                                                "missing beside it"):
        open_export_source(lone)


def test_a_names_architecture_stands_in_for_the_model_options(tiny_zoo, tiny_trained_run):
    data, _, _ = tiny_trained_run
    options = architecture_of_init(TINY_NAME)
    config = run_config_from_options(data, init_weights=TINY_NAME, input_size=TINY_SIZE,
                                     **options)
    card = find_model(TINY_NAME)
    assert config.model.init_weights == TINY_NAME  # a name is recorded as the name
    for field in ("name", "backbone", "width_multiplier", "aspp_filters", "bn_momentum",
                  "output_stride", "dropout"):
        assert getattr(config.model, field) == getattr(card.model, field), field
    assert config.model.backbone_weights is None  # the init model's weights replace them
    assert architecture_of_init(None) == {}
    with pytest.raises(FileNotFoundError, match="no-such-model: no such file or folder"):
        run_config_from_options(data, init_weights="no-such-model")


def test_the_camvid_benchmark_ships_its_run_with_the_figures_on_the_card(tiny_trained_run,
                                                                          tmp_path):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "camvid.py"
    spec = importlib.util.spec_from_file_location("camvid_benchmark", script)
    camvid_benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(camvid_benchmark)
    _, run_dir, _ = tiny_trained_run
    old = tmp_path / "camvid-toy"
    old.mkdir()
    (old / "old_model.keras").write_text("the model it replaces")
    int8 = tmp_path / "toy_int8.tflite"
    int8.write_bytes(b"int8 model")
    figures = {"model": {"name": "deeplabv3plus", "backbone": "mobilenetv3large_minimalistic"},
               "split": "test", "keras_mean_iou": 0.61234, "int8_mean_iou": 0.60111,
               "run_size": [360, 480], "int8_ms_1_thread": 18.5,
               "history": {"stages": [{"run": str(run_dir), "from": "random weights"}],
                           "epochs": "80 + 70", "minutes": 130},
               "machine": "Some CPU, 2 CPUs", "command": "python benchmarks/camvid.py ..."}
    shipped = camvid_benchmark.ship_model(run_dir, int8, figures, models_dir=tmp_path)
    assert shipped == old and not (old / "old_model.keras").exists()
    card = read_card(old)
    assert card.scores["test_mean_iou"] == 0.6123 and card.scores["int8_test_mean_iou"] == 0.6011
    assert card.scores["int8_run_size"] == "360x480" and card.training["minutes"] == 130
    assert card.training["stages"] == [{"run": str(run_dir), "from": "random weights"}]
    assert "trained from random weights on CamVid" in card.description
    assert (old / "model_int8.tflite").read_bytes() == b"int8 model"
    assert (old / "model.keras").is_file() and card.files["tflite"] == "model_int8.tflite"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["camvid-toy", "toy_int8.tflite"]
