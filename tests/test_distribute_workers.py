"""Two ``pixelwise train --strategy multiworker`` processes, one killed within an epoch,
both started again: they resume from the last epoch both saved. A file of its own so that
pytest-xdist runs it beside test_distribute.py's mirrored test, not after it."""

import csv
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from distribute_helpers import (SIZE, TINY_MODEL_FLAGS, child_environment, fake_worker,
                                make_synthetic)
from pixelwise import training_state
from pixelwise.data.records_writer import prepare_records
from pixelwise.runs import RunFolder, load_run


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """The synthetic set as records, 3 examples per shard (train: 4 shards), one process."""
    synthetic = make_synthetic(tmp_path_factory.mktemp("data") / "synth")
    out = tmp_path_factory.mktemp("records") / "one-worker"
    prepare_records(synthetic, out, examples_per_shard=3)
    return out


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
