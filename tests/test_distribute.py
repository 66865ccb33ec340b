"""tf.distribute: strategies, the batch and learning-rate rule, TF_CONFIG, sharding, parallel
record preparation, and (in subprocesses) mirrored training on two logical CPUs. Two workers
on loopback ports: test_distribute_workers.py."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from distribute_helpers import (SIZE, TINY_MODEL_FLAGS, child_environment, fake_worker,
                                make_synthetic)
from pixelwise import distribute, training_inputs, training_state
from pixelwise.cli import cli
from pixelwise.data.pipeline import open_source
from pixelwise.data.records import read_manifest
from pixelwise.data.records_writer import prepare_records
from pixelwise.runs import RunFolder

SCENARIOS = Path(__file__).with_name("distribute_scenarios.py")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("data") / "synth")


@pytest.fixture(scope="module")
def records(synthetic, tmp_path_factory):
    """The synthetic set as records, 3 examples per shard (train: 4 shards), one process."""
    out = tmp_path_factory.mktemp("records") / "one-worker"
    prepare_records(synthetic, out, examples_per_shard=3)
    return out


# ---- the batch and learning-rate rule ---------------------------------------------------

def test_learning_rate_scales_with_the_replicas():
    assert distribute.scaled_learning_rate(1e-3, 4, "linear") == pytest.approx(4e-3)
    assert distribute.scaled_learning_rate(1e-3, 4, "sqrt") == pytest.approx(2e-3)
    assert distribute.scaled_learning_rate(1e-3, 4, "none") == pytest.approx(1e-3)
    for rule in ("linear", "sqrt", "none"):
        assert distribute.scaled_learning_rate(0.007, 1, rule) == pytest.approx(0.007)
    with pytest.raises(ValueError, match="cube"):
        distribute.scaled_learning_rate(1e-3, 2, "cube")
    assert distribute.global_batch_size(3, 2) == 6
    with pytest.raises(ValueError, match="at least 1"):
        distribute.global_batch_size(0, 2)


def test_the_optimizer_gets_the_scaled_rate(synthetic):
    from pixelwise.config import DataConfig, RunConfig, TrainConfig
    from pixelwise.recipe import build_optimizer, current_learning_rate

    def rate(replicas, **train):
        config = RunConfig(data=DataConfig(source=str(synthetic), input_size=SIZE),
                           train=TrainConfig(**train))
        return current_learning_rate(build_optimizer(config, steps_per_epoch=10,
                                                     replicas=replicas))

    assert rate(1) == pytest.approx(1e-3)
    assert rate(4) == pytest.approx(4e-3)
    assert rate(4, lr_scaling="sqrt") == pytest.approx(2e-3)
    assert rate(4, lr_scaling="none") == pytest.approx(1e-3)
    assert rate(2, recipe="paper") == pytest.approx(0.014)  # poly decay starts there
    with pytest.raises(ValueError, match="train.lr_scaling"):
        TrainConfig(lr_scaling="log")


# ---- strategies and TF_CONFIG -----------------------------------------------------------

def test_strategies_in_one_process():
    default = distribute.make_strategy("auto")  # no GPU, no TF_CONFIG: no distribution
    assert default is tf.distribute.get_strategy()
    assert default.num_replicas_in_sync == 1
    assert distribute.is_chief(default) and distribute.num_workers(default) == 1
    assert distribute.worker_index(default) == 0
    one = distribute.make_strategy("one")
    assert isinstance(one, tf.distribute.OneDeviceStrategy)
    assert "CPU" in one.extended.worker_devices[0].upper()
    with pytest.raises(ValueError, match="unknown strategy 'ring'"):
        distribute.make_strategy("ring")
    with pytest.raises(ValueError, match="'one' takes one device"):
        distribute.make_strategy("one", devices=["/cpu:0", "/cpu:1"])


def test_multiworker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        distribute.make_strategy("multiworker")


def test_read_tf_config():
    two = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    config = distribute.read_tf_config({"TF_CONFIG": json.dumps(two)})
    assert config == two and distribute.cluster_size(config) == 2
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"], "evaluator": ["d:4"]},
                  "task": {"type": "chief", "index": 0}}
    assert distribute.cluster_size(distribute.read_tf_config(
        {"TF_CONFIG": json.dumps(with_chief)})) == 3
    assert distribute.read_tf_config({}) is None and distribute.cluster_size(None) == 1
    bad = {
        "{not json": "not valid JSON",
        json.dumps({"task": {"type": "worker", "index": 0}}): "no \"cluster\"",
        json.dumps({"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}):
            "host:port",
        json.dumps({"cluster": {"worker": ["a:1"]}}): "no \"task\"",
        json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}):
            "not in the cluster",
    }
    for text, message in bad.items():
        with pytest.raises(ValueError, match=message):
            distribute.read_tf_config({"TF_CONFIG": text})


def test_worker_index_and_backup_folder(tmp_path, monkeypatch):
    cluster = {"chief": ["a:1"], "worker": ["b:2", "c:3"]}
    assert distribute.worker_index(fake_worker("chief", 0, cluster)) == 0
    assert distribute.worker_index(fake_worker("worker", 1, cluster)) == 2
    assert distribute.num_workers(fake_worker("worker", 1, cluster)) == 3
    monkeypatch.setenv("PIXELWISE_WORKER_BACKUP_DIR", str(tmp_path / "backups"))
    run_dir = tmp_path / "runs" / "voc"
    backup = training_state.worker_backup_dir(run_dir, fake_worker("worker", 1, cluster))
    assert backup.parts[-1] == "worker-1" and backup.parent.name.startswith("voc-")
    assert tmp_path / "backups" in backup.parents and run_dir not in backup.parents
    # Stable for a restarted worker; another task or run gets another folder.
    assert backup == training_state.worker_backup_dir(run_dir, fake_worker("worker", 1, cluster))
    assert backup != training_state.worker_backup_dir(run_dir, fake_worker("worker", 0, cluster))
    assert backup != training_state.worker_backup_dir(tmp_path / "other",
                                                  fake_worker("worker", 1, cluster))


# ---- input --------------------------------------------------------------------------------

def test_shard_policy_and_one_workers_files(synthetic, records):
    file_policy = tf.data.experimental.AutoShardPolicy.FILE
    data_policy = tf.data.experimental.AutoShardPolicy.DATA
    source = open_source(records)
    policy = lambda workers, training=True, data=source: training_inputs.auto_shard_policy(  # noqa: E731
        data, "train", workers, training=training, split_seed=0)
    assert policy(2) == file_policy and policy(4) == file_policy
    assert policy(5) == data_policy  # more workers than shard files
    assert policy(2, training=False) == data_policy
    assert policy(2, data=open_source(synthetic)) == data_policy

    manifest = read_manifest(records)
    shards = manifest["splits"]["train"]["shards"]
    assert len(shards) == 4
    cluster = {"worker": ["a:1", "b:2"]}
    names_read = []
    for task_id in (0, 1):
        part = training_inputs.worker_files_source(source, fake_worker("worker", task_id, cluster))
        assert part.num_examples("train") == 10  # still describes the whole split
        elements = part.elements("train", 0, shuffle_seed=None, shuffle_buffer=8)
        names_read.append([part.read(element)["name"].numpy().decode() for element in elements])
    names = manifest["splits"]["train"]["names"]
    # Worker 0 reads shards 0 and 2, worker 1 shards 1 and 3 (interleaved round-robin).
    assert sorted(names_read[0]) == sorted(names[0:3] + names[6:9])
    assert sorted(names_read[1]) == sorted(names[3:6] + names[9:10])


def test_padded_batches_split_evenly_and_count_nothing(synthetic):
    from pixelwise.data.pipeline import make_dataset
    from pixelwise.metrics import ConfusionMatrix

    batches = make_dataset(synthetic, "val-full", batch_size=4, input_size=SIZE, training=False)
    padded = distribute.pad_batches(batches, 4, 255)
    assert padded.element_spec[0].shape.as_list() == [4, SIZE, SIZE, 3]
    sizes, plain, counted = [], ConfusionMatrix(6), ConfusionMatrix(6)
    for (images, labels), (padded_images, padded_labels) in zip(batches, padded):
        sizes.append(len(images))
        assert padded_images.shape[0] == 4
        np.testing.assert_array_equal(padded_images[:len(images)], images)
        assert np.all(padded_images[len(images):] == 0)
        assert np.all(padded_labels[len(images):] == 255)
        plain.update(labels.numpy(), labels.numpy())
        counted.update(padded_labels.numpy(), padded_labels.numpy())
    assert sizes == [4, 1]
    np.testing.assert_array_equal(plain.matrix, counted.matrix)


def test_synchronize_batch_norm_marks_every_layer():
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 3)(inputs))
    inner = keras.Model(inputs, keras.layers.BatchNormalization()(features))
    outer = keras.Model(inputs, keras.layers.BatchNormalization()(inner(inputs)))
    assert distribute.synchronize_batch_norm(outer) == 3
    layers = outer._flatten_layers(include_self=False, recursive=True)
    assert all(layer.synchronized for layer in layers
               if isinstance(layer, keras.layers.BatchNormalization))


# ---- data prepare --workers -------------------------------------------------------------

def test_prepare_with_two_worker_processes_writes_the_same_files(synthetic, records, tmp_path):
    out = tmp_path / "two-workers"
    result = CliRunner().invoke(cli, ["data", "prepare", str(synthetic), "--out", str(out),
                                      "--shard-size", "3", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "train-00003-of-00004.tfrecord: wrote 1 examples" in result.output
    one = sorted(path.name for path in records.iterdir())
    assert one == sorted(path.name for path in out.iterdir()) and len(one) == 7
    for name in one:
        assert (records / name).read_bytes() == (out / name).read_bytes(), name
    # A rerun with workers keeps every complete shard.
    again = CliRunner().invoke(cli, ["data", "prepare", str(synthetic), "--out", str(out),
                                     "--shard-size", "3", "--workers", "2"])
    assert again.exit_code == 0 and again.output.count("complete, kept") == 6
    with pytest.raises(ValueError, match="workers must be at least 1"):
        prepare_records(synthetic, tmp_path / "none", workers=0)


def test_train_cli_refuses_multiworker_without_tf_config(synthetic, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["train", "--data", str(synthetic), "--out",
                                      str(tmp_path / "run"), "--strategy", "multiworker"])
    assert result.exit_code == 1 and "needs the TF_CONFIG environment variable" in result.output
    assert not (tmp_path / "run").exists()


# ---- evaluate --strategy ------------------------------------------------------------------

def test_evaluation_strategies_stay_on_this_machine(monkeypatch):
    two_workers = {"cluster": {"worker": ["localhost:1", "localhost:2"]},
                   "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(two_workers))
    # A TF_CONFIG left in the environment does not make an evaluation wait for a cluster.
    assert distribute.is_default(distribute.make_strategy("auto", one_machine=True))
    with pytest.raises(ValueError, match="'multiworker' is for training"):
        distribute.make_strategy("multiworker", one_machine=True)
    assert distribute.is_default(None) and distribute.is_default(tf.distribute.get_strategy())
    assert not distribute.is_default(distribute.make_strategy("one"))


def moved_pixels(matrix_two, matrix_one, what: str) -> int:
    """How many pixels two confusion matrices of the same labels predict differently;
    the labels' rows must be equal and at most 0.1% may move (near-ties, below)."""
    np.testing.assert_array_equal(matrix_two.sum(axis=1), matrix_one.sum(axis=1), err_msg=what)
    moved = int(np.abs(matrix_two - matrix_one).sum()) // 2
    assert moved <= matrix_one.sum() // 1000, (what, moved)
    return moved


def assert_same_evaluation(two: dict, one: dict, protocol: str) -> None:
    """Two evaluations of one model that differ only in how the images were batched.

    The labels are counted identically (every pixel once, in its class's row). The
    predictions may differ at near-ties: one image's logits differ in their last bits
    between batch compositions (up to 8e-6 measured here, oneDNN's kernels block by
    batch), which flips the argmax of a pixel whose two best classes are that close; a
    model trained for two steps has such pixels. So at most 0.1% of the pixels may move,
    and every score follows within that."""
    two, one = dict(two), dict(one)
    matrix_one = np.array(one.pop("confusion_matrix"))
    moved = moved_pixels(np.array(two.pop("confusion_matrix")), matrix_one, protocol)
    share = moved / matrix_one.sum()
    for class_two, class_one in zip(two.pop("per_class"), one.pop("per_class")):
        for key, value in class_one.items():
            if isinstance(value, float):
                assert class_two[key] == pytest.approx(value, abs=10 * share + 1e-12), key
            elif key == "predicted_pixels":
                assert abs(class_two[key] - value) <= moved, key
            else:
                assert class_two[key] == value, key
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou"):
        assert two.pop(key) == pytest.approx(one.pop(key), abs=10 * share + 1e-12), key
    assert two == one, protocol


def run_scenario(name: str, *arguments: str, timeout: float = 420) -> dict:
    """The RESULT of ``distribute_scenarios.py NAME ARGUMENTS`` run in a fresh process."""
    completed = subprocess.run([sys.executable, str(SCENARIOS), name, *arguments],
                               capture_output=True, text=True, env=child_environment(),
                               timeout=timeout)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.split("RESULT ", 1)[1])


def assert_in_order(outputs, images) -> None:
    np.testing.assert_array_equal(outputs, np.asarray(images)[:, :1] * 2.0)


def test_replica_predictor_keeps_the_order_of_the_images():
    # Two replicas (logical CPUs, set up before TensorFlow starts: a fresh process), so
    # the images are split into shares that could come back in another order.
    result = run_scenario("replica_order")
    assert result["replicas"] == 2
    assert_in_order(result["outputs"], result["images"])
    np.testing.assert_array_equal(result["one_image"], [[0.0]])
    # The same check catches replicas' results put together in the wrong order.
    with pytest.raises(AssertionError):
        assert_in_order(result["reversed_outputs"], result["images"])


@pytest.fixture(scope="module")
def tiny_run(synthetic, tmp_path_factory):
    """One epoch of the tiny model on the synthetic set, trained by the CLI."""
    run_dir = tmp_path_factory.mktemp("evaluate") / "run"
    result = CliRunner().invoke(cli, ["train", "--data", str(synthetic), "--out", str(run_dir),
                                      "--epochs", "1", "--batch-size", "2", "--quiet",
                                      "--strategy", "one", *TINY_MODEL_FLAGS])
    assert result.exit_code == 0, result.output
    return run_dir


def test_evaluate_cli_with_a_strategy_gives_the_one_device_scores(tiny_run, tmp_path):
    from pixelwise.evaluate import evaluate_run, read_metrics

    runner = CliRunner()
    result = runner.invoke(cli, ["evaluate", str(tiny_run), "--split", "val-full",
                                 "--batch-size", "2", "--hardest", "2", "--strategy", "one",
                                 "--out", str(tmp_path / "one")])
    assert result.exit_code == 0, result.output
    assert "OneDeviceStrategy: 1 replica(s); global batch 2" in result.output
    with_strategy = read_metrics(tmp_path / "one" / "val-full-resized" / "metrics.json")
    plain = evaluate_run(tiny_run, split="val-full", batch_size=4, hardest=2,
                         echo=lambda line: None, progress=False,
                         out_dir=tmp_path / "plain")[0].to_dict()
    assert with_strategy["num_images"] == plain["num_images"] == 5
    np.testing.assert_array_equal(with_strategy["confusion_matrix"], plain["confusion_matrix"])
    assert with_strategy["mean_iou"] == plain["mean_iou"]
    assert [item["name"] for item in with_strategy["hardest"]] == [
        item["name"] for item in plain["hardest"]]
    refused = runner.invoke(cli, ["evaluate", str(tiny_run), "--strategy", "multiworker"])
    assert refused.exit_code == 2 and "'multiworker' is not one of" in refused.output


# ---- restarted workers agree on the epoch to resume from ---------------------------------

def test_workers_resume_from_the_last_epoch_every_worker_saved():
    no_run = training_state.NO_RUN
    agree = training_state.common_saved_epochs
    assert agree([3, 3], [2, 2]) == 3
    assert agree([3, 3, 2, 2], [2, 2, 1, 1]) == 2  # two replicas per worker
    assert agree([2, 3], [no_run, 2]) == 2  # worker 0 was killed while saving epoch 3
    assert agree([1, 0], [0, no_run]) == 0  # ... while saving its first epoch
    assert agree([no_run, no_run], [no_run, no_run]) == 0  # a new run
    assert agree([0, no_run], [no_run, no_run]) == 0  # killed before any epoch was saved
    refused = {
        "complete": ([1, no_run], [0, no_run]),  # the other worker removed its backup
        "two epochs apart": ([3, 1], [2, no_run]),
        "nothing to go back to": ([3, 2], [no_run, no_run]),
    }
    for saved, fallback in refused.values():
        with pytest.raises(ValueError, match="do not match.*delete the run folder's checkpoints"):
            agree(saved, fallback)


def checkpointed_fit(folder: RunFolder, epochs: int) -> None:
    """``epochs`` epochs of two steps of a one-layer model, saved by the run's checkpoint
    callback as on a multi-worker run (keeping the previous state)."""
    from pixelwise.callbacks import RunCheckpoint

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    inputs = np.random.default_rng(0).normal(size=(8, 2)).astype("float32")
    model.fit(inputs, inputs[:, :1], batch_size=4, epochs=epochs, verbose=0, callbacks=[
        RunCheckpoint(folder, total_epochs=epochs, resumable={}, keep_previous=True)])


def test_a_worker_ahead_goes_back_one_epoch(tmp_path, monkeypatch):
    from pixelwise.training_state import agree_with_other_workers

    two_workers = fake_worker("worker", 0, {"worker": ["a:1", "b:2"]})

    def other_worker_has(saved, fallback):  # what the other worker's gathers return
        answers = iter([saved, fallback])
        monkeypatch.setattr(training_state, "gather_from_workers",
                            lambda strategy, value: [value, next(answers)])

    folder = RunFolder(tmp_path / "ahead")
    checkpointed_fit(folder, epochs=3)
    state = folder.read_state()
    assert state["epochs_done"] == 3 and state["optimizer_iterations"] == 6
    assert state["previous"]["epochs_done"] == 2 and "previous" not in state["previous"]
    assert sorted(path.name for path in folder.checkpoint_dir.iterdir()) == [
        "epoch-0002.keras", "epoch-0003.keras", "state.json"]

    # The other worker saved epoch 3 too: nothing changes.
    other_worker_has(3, 2)
    assert agree_with_other_workers(two_workers, folder, state, True, print) == state
    # It was killed while saving epoch 3: this worker goes back to epoch 2, on disk too.
    lines = []
    other_worker_has(2, training_state.NO_RUN)
    back = agree_with_other_workers(two_workers, folder, state, True, lines.append)
    assert back == state["previous"] and folder.read_state() == back
    assert lines == [f"{folder.root}: going back from epoch 3 to epoch 2, the last epoch "
                     f"every worker saved"]
    assert sorted(path.name for path in folder.checkpoint_dir.iterdir()) == [
        "epoch-0002.keras", "state.json"]
    saved = keras.saving.load_model(folder.checkpoint_dir / back["checkpoint"])
    assert int(saved.optimizer.iterations.numpy()) == back["optimizer_iterations"] == 4
    # Now behind (the other worker kept epoch 3 and can go back): it stays.
    other_worker_has(3, 2)
    assert agree_with_other_workers(two_workers, folder, back, True, print) == back
    # Behind with nothing kept to go back to, while the other is two epochs ahead: refused.
    other_worker_has(4, 3)
    with pytest.raises(ValueError, match=r"do not match.*this is worker 0, with 2 epochs"):
        agree_with_other_workers(two_workers, folder, back, True, print)

    # The other worker was killed while saving its first epoch: back to a new run.
    first = RunFolder(tmp_path / "first")
    checkpointed_fit(first, epochs=1)
    state = first.read_state()
    assert state["previous"] is None
    other_worker_has(0, training_state.NO_RUN)
    assert agree_with_other_workers(two_workers, first, state, True, print) is None
    assert first.read_state() is None and not list(first.checkpoint_dir.iterdir())


# ---- several devices and workers (subprocesses) -------------------------------------------

@pytest.mark.slow
def test_mirrored_training_on_two_cpus_and_identical_evaluation(synthetic, tmp_path):
    run_dir = tmp_path / "run"
    result = run_scenario("mirrored", str(synthetic), str(run_dir))
    assert result["replicas"] == 2
    assert (result["epochs_done"], result["stop_reason"]) == (1, "completed")
    assert "MirroredStrategy: 2 replica(s); global batch 4" in result["echo"]
    assert any("(2 steps per epoch)" in line for line in result["echo"])  # 10 // (2 x 2)
    folder = RunFolder(run_dir)
    assert folder.best_model_path.is_file() and folder.state_path.is_file()
    assert json.loads(folder.state_path.read_text())["optimizer_iterations"] == 2

    matrix_two, matrix_one = np.array(result["matrix_two"]), np.array(result["matrix_one"])
    moved_pixels(matrix_two, matrix_one, "two replicas against one device")
    assert matrix_two.sum() == result["labelled_pixels"]  # every pixel once, none twice
    assert np.count_nonzero(matrix_two.sum(axis=0)) >= 3  # a model that tells classes apart

    # evaluate_run under two replicas gives the one-device evaluation: every score, the
    # matrix, the hardest images (their losses to float rounding).
    assert "MirroredStrategy: 2 replica(s); global batch 4" in result["evaluate_echo"]
    evaluations = result["evaluations"]
    assert len(evaluations["two_plain"]["hardest"]) == 3
    assert evaluations["two_ms_flip"]["scales"] == [0.75, 1.0, 1.25]
    for protocol in ("plain", "ms_flip"):
        two, one = evaluations[f"two_{protocol}"], evaluations[f"one_{protocol}"]
        assert two["num_images"] == one["num_images"] == 5
        assert two["labelled_pixels"] == result["labelled_pixels"]
        hardest_two, hardest_one = two.pop("hardest"), one.pop("hardest")
        assert_same_evaluation(two, one, protocol)
        assert [item["name"] for item in hardest_two] == [item["name"] for item in hardest_one]
        np.testing.assert_allclose([item["cross_entropy"] for item in hardest_two],
                                   [item["cross_entropy"] for item in hardest_one], rtol=1e-4)

    # Synchronized batch norm over two replicas normalises like one device over the
    # global batch; each replica's own statistics do not.
    assert result["sync_max_difference"] < 1e-5 and result["sync_variance_difference"] < 1e-4
    assert result["local_max_difference"] > 0.1
