"""tf.distribute: strategies, the batch and learning-rate rule, TF_CONFIG, sharding, parallel
record preparation, and (in subprocesses) mirrored training on two logical CPUs and two
workers on loopback ports."""

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from conftest import TINY_MODEL
from pixelwise import distribute, training_inputs, training_state
from pixelwise.cli import cli
from pixelwise.data.pipeline import open_source
from pixelwise.data.records import read_manifest
from pixelwise.data.records_writer import prepare_records
from pixelwise.data.synthetic import generate_synthetic
from pixelwise.runs import RunFolder, load_run

SIZE = 64
SCENARIOS = Path(__file__).with_name("distribute_scenarios.py")
# conftest's tiny model as flags, with test_train's wider ASPP.
TINY_MODEL_FLAGS = ["--model", TINY_MODEL["name"], "--backbone", TINY_MODEL["backbone"],
                    "--width-multiplier", str(TINY_MODEL["width_multiplier"]),
                    "--backbone-weights", "none", "--aspp-filters", "32",
                    "--bn-momentum", str(TINY_MODEL["bn_momentum"]), "--input-size", str(SIZE),
                    "--augment", "none", "--no-tensorboard", "--learning-rate", "3e-3"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """15 images: train 10, val.txt 5 (val 3 / test 2)."""
    root = tmp_path_factory.mktemp("data") / "synth"
    generate_synthetic(root, num_images=15, size=SIZE, seed=3)
    return root


@pytest.fixture(scope="module")
def records(synthetic, tmp_path_factory):
    """The synthetic set as records, 3 examples per shard (train: 4 shards), one process."""
    out = tmp_path_factory.mktemp("records") / "one-worker"
    prepare_records(synthetic, out, examples_per_shard=3)
    return out


def child_environment(**extra) -> dict:
    environment = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    environment.update(TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return environment


def log_epochs(log_path: Path) -> list[int]:
    with open(log_path, newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def free_ports(count: int) -> list[int]:
    """Ports the system hands out for port 0, released just before use."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


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


def fake_worker(task_type, task_id, cluster):
    """A stand-in for a multi-worker strategy: only its cluster resolver is read."""
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)
    return SimpleNamespace(cluster_resolver=resolver)


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
    np.testing.assert_array_equal(matrix_two, matrix_one)
    assert matrix_two.sum() == result["labelled_pixels"]  # every pixel once, none twice
    assert np.count_nonzero(matrix_two.sum(axis=0)) >= 3  # a model that tells classes apart

    # evaluate_run under two replicas gives the one-device evaluation: every score, the
    # matrix, the hardest images (their losses to float rounding).
    assert "MirroredStrategy: 2 replica(s); global batch 4" in result["evaluate_echo"]
    evaluations = result["evaluations"]
    np.testing.assert_array_equal(evaluations["two_plain"]["confusion_matrix"], matrix_one)
    assert len(evaluations["two_plain"]["hardest"]) == 3
    assert evaluations["two_ms_flip"]["scales"] == [0.75, 1.0, 1.25]
    for protocol in ("plain", "ms_flip"):
        two, one = evaluations[f"two_{protocol}"], evaluations[f"one_{protocol}"]
        assert two["num_images"] == one["num_images"] == 5
        assert two["labelled_pixels"] == result["labelled_pixels"]
        hardest_two, hardest_one = two.pop("hardest"), one.pop("hardest")
        assert two == one, protocol
        assert [item["name"] for item in hardest_two] == [item["name"] for item in hardest_one]
        np.testing.assert_allclose([item["cross_entropy"] for item in hardest_two],
                                   [item["cross_entropy"] for item in hardest_one], rtol=1e-4)

    # Synchronized batch norm over two replicas normalises like one device over the
    # global batch; each replica's own statistics do not.
    assert result["sync_max_difference"] < 1e-5 and result["sync_variance_difference"] < 1e-4
    assert result["local_max_difference"] > 0.1


def start_worker(index: int, cluster: dict, arguments: list[str], backups: Path,
                 log_path: Path) -> subprocess.Popen:
    """``pixelwise train ARGUMENTS`` as task ``worker INDEX`` of ``cluster``, its output
    (stdout and stderr) written to ``log_path``."""
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pixelwise", "train", *arguments],
            stdout=log, stderr=subprocess.STDOUT, text=True,
            env=child_environment(TF_CONFIG=tf_config, PIXELWISE_WORKER_BACKUP_DIR=str(backups)))


def saved_epochs(folder: RunFolder) -> int:
    """The epochs state.json records (0 before the first save)."""
    try:
        return int(json.loads(folder.state_path.read_text())["epochs_done"])
    except FileNotFoundError:
        return 0


def stop_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_two_workers_resume_after_a_worker_is_killed(records, tmp_path, monkeypatch):
    epochs = 3
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    backups = tmp_path / "worker-backups"
    run_dirs = [tmp_path / "run", tmp_path / "run-worker-1"]
    monkeypatch.setenv("PIXELWISE_WORKER_BACKUP_DIR", str(backups))
    worker_backup = training_state.worker_backup_dir(run_dirs[1], fake_worker("worker", 1, cluster))
    chief, backup = RunFolder(run_dirs[0]), RunFolder(worker_backup)
    # Batch 1 per worker: 5 global steps per epoch, so the kill below lands inside epoch 2.
    commands = [["--strategy", "multiworker", "--data", str(records), "--out", str(run_dir),
                 "--epochs", str(epochs), "--batch-size", "1", "--sync-batchnorm", "--quiet",
                 *TINY_MODEL_FLAGS]
                for run_dir in run_dirs]
    first_logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    deadline = time.monotonic() + 480
    processes = [start_worker(index, cluster, command, backups, log)
                 for index, (command, log) in enumerate(zip(commands, first_logs))]
    try:
        # Until epoch 1 is saved on both workers (a worker killed while saving: see the
        # rollback tests above).
        while saved_epochs(chief) < 1 or saved_epochs(backup) < 1:
            for process, log in zip(processes, first_logs):
                assert process.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "no epoch saved in time"
            time.sleep(0.1)
        processes[1].kill()  # the machine of worker 1 dies
        processes[1].wait()
        try:  # the chief fails or hangs in its next collective
            processes[0].wait(timeout=3)
        except subprocess.TimeoutExpired:
            processes[0].kill()  # as a cluster manager would
            processes[0].wait()
    finally:
        stop_all(processes)
    assert (saved_epochs(chief), saved_epochs(backup)) == (1, 1)  # killed within epoch 2
    assert ("2 replica(s) on 2 workers; this is worker 0 (chief); global batch 2"
            in first_logs[0].read_text())
    assert "this is worker 1; global batch 2" in first_logs[1].read_text()
    # Same machine, so the non-chief got its own --out: it writes nothing there.
    assert not run_dirs[1].exists()
    first_row = chief.log_path.read_text().splitlines()[1]

    # Both started again with the same command.
    logs = [tmp_path / "worker-0-again.log", tmp_path / "worker-1-again.log"]
    processes = [start_worker(index, cluster, command, backups, log)
                 for index, (command, log) in enumerate(zip(commands, logs))]
    try:
        for process in processes:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        stop_all(processes)
    outputs = [log.read_text() for log in logs]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-4000:]
    for folder, output in zip((chief, backup), outputs):
        assert f"resuming {folder.root} after epoch 1 " in output
        assert f"epochs 2..{epochs}; run folder {folder.root}" in output
        assert "going back" not in output
        assert "Epoch 1/" not in output and f"Epoch {epochs}/{epochs}" in output
    assert f"{run_dirs[0]}: {epochs} epoch(s) done (completed)" in outputs[0]

    state = json.loads(chief.state_path.read_text())
    assert (state["epochs_done"], state["stop_reason"]) == (epochs, "completed")
    assert state["optimizer_iterations"] == epochs * 5
    assert log_epochs(chief.log_path) == list(range(epochs))  # one row each, none twice
    assert chief.log_path.read_text().splitlines()[1] == first_row  # epoch 1 not redone
    assert sorted(path.name for path in chief.checkpoint_dir.iterdir()) == [
        f"epoch-{epochs - 1:04d}.keras", f"epoch-{epochs:04d}.keras", "state.json"]
    assert sorted(path.name for path in chief.root.iterdir()) == [
        "best.keras", "checkpoints", "config.json", "pixelwise_dataset.json", "train_log.csv"]
    model, spec, config = load_run(chief.root)
    assert config.train.sync_batchnorm and config.train.batch_size == 1
    assert all(layer.synchronized for layer in model._flatten_layers(include_self=False)
               if isinstance(layer, keras.layers.BatchNormalization))
    logits = model.predict(np.zeros((1, SIZE, SIZE, 3), dtype="float32"), verbose=0)
    assert logits.shape == (1, SIZE, SIZE, spec.num_classes) and np.all(np.isfinite(logits))
    assert not run_dirs[1].exists() and not worker_backup.exists()
    assert not any(backups.rglob("*.keras"))
