"""A model card's training history: every stage behind a run, through --init-from chains of
runs and into the card of a registered model a run started from, even after the run is
shipped under that model's name."""

import json
from dataclasses import replace

from conftest import TINY_MODEL
from pixelwise.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pixelwise.provenance import run_chain, training_history
from pixelwise.runs import RunFolder
from pixelwise.zoo import MODELS_PATH_VARIABLE, package_run, read_card


def finished_run(folder, *, epochs_done: int, seconds: float, start: str | None = None,
                 **train) -> RunFolder:
    """A run folder as training leaves it: its configuration and a saved state."""
    run = RunFolder(folder)
    folder.mkdir(parents=True)
    config = RunConfig(data=DataConfig(source=str(folder.parent / "data"),
                                       input_size=(64, 96)),
                       model=replace(ModelConfig(**TINY_MODEL), init_weights=start),
                       train=TrainConfig(epochs=epochs_done + 2, **train))
    config.save(run.config_path)
    run.checkpoint_dir.mkdir()
    run.checkpoint_path(epochs_done).write_bytes(b"weights")
    run.state_path.write_text(json.dumps({
        "epochs_done": epochs_done, "train_seconds": seconds,
        "checkpoint": run.checkpoint_path(epochs_done).name}))
    return run


def test_a_chain_of_runs_lists_every_stage_first_first(tmp_path):
    crops = finished_run(tmp_path / "crops", epochs_done=80, seconds=3180, learning_rate=2e-3)
    frames = finished_run(tmp_path / "frames", epochs_done=70, seconds=4080,
                          start=str(crops.root), batch_size=8, learning_rate=5e-4)
    assert run_chain(frames.root) == [crops.root, frames.root]
    history = training_history(frames.root)
    first, second = history["stages"]
    assert (first["run"], first["from"], first["epochs"], first["planned_epochs"]) == (
        str(crops.root), "random weights", 80, 82)
    assert (first["learning_rate"], first["minutes"], first["input_size"]) == (2e-3, 53.0,
                                                                               "64x96")
    assert (second["from"], second["batch_size"], second["learning_rate"]) == (
        str(crops.root), 8, 5e-4)
    assert history["epochs"] == "80 + 70" and history["minutes"] == 121
    assert "starts_from" not in history


def test_a_run_from_a_registered_model_keeps_that_models_card_even_once_it_replaces_it(
        tmp_path, monkeypatch, tiny_trained_run):
    _, trained, _ = tiny_trained_run
    models = tmp_path / "models"
    package_run(trained, models, "road", description="the first road model",
                training={"epochs": "80 + 70", "minutes": 121, "stages": ["(two runs)"]},
                scores={"split": "test", "mean_iou": 0.516})
    monkeypatch.setenv(MODELS_PATH_VARIABLE, str(models))
    third = finished_run(tmp_path / "third", epochs_done=30, seconds=1800, start="road")
    (third.root / "best.keras").write_bytes((trained / "best.keras").read_bytes())
    (third.root / "pixelwise_dataset.json").write_bytes(
        (trained / "pixelwise_dataset.json").read_bytes())
    history = training_history(third.root)
    assert [stage["run"] for stage in history["stages"]] == [str(third.root)]
    assert history["stages"][0]["from"] == "road"
    assert history["starts_from"]["model"] == "road"
    assert history["starts_from"]["scores"]["mean_iou"] == 0.516
    assert history["starts_from"]["training"]["minutes"] == 121
    assert history["epochs"] == "80 + 70 + 30" and history["minutes"] == 151
    # Shipped under the same name, its card holds the old one's; a second history of the
    # run, read when "road" is already this run, says the same.
    package_run(third.root, models, "road", training=history,
                scores={"split": "val", "mean_iou": 0.6})
    card = read_card(models / "road")
    assert card.training == history
    assert training_history(third.root) == history
