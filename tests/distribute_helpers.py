"""What test_distribute.py and test_distribute_workers.py share: the tiny model as
``pixelwise train`` flags, the synthetic set, a child process's environment and a stand-in
multi-worker strategy. The multi-process tests sit in files of their own so that pytest-xdist
(``--dist loadfile``) runs them on different workers."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import tensorflow as tf

from conftest import TINY_MODEL
from pixelwise.data.synthetic import generate_synthetic

SIZE = 64
# conftest's tiny DeepLab with test_train's wider ASPP, on the tiny backbone: these tests
# are about replicas, workers and resuming, not the backbone, and MobileNetV2's hundreds of
# layers cost far more to trace (once per process and strategy) than the steps themselves.
TINY_MODEL_FLAGS = ["--model", TINY_MODEL["name"], "--backbone", "tiny",
                    "--backbone-weights", "none", "--aspp-filters", "32",
                    "--bn-momentum", str(TINY_MODEL["bn_momentum"]), "--input-size", str(SIZE),
                    "--augment", "none", "--no-tensorboard", "--learning-rate", "3e-3"]


def make_synthetic(root: Path) -> Path:
    """15 images: train 10, val.txt 5 (val 3 / test 2)."""
    generate_synthetic(root, num_images=15, size=SIZE, seed=3)
    return root


def child_environment(**extra) -> dict:
    environment = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    environment.update(TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return environment


def fake_worker(task_type, task_id, cluster):
    """A stand-in for a multi-worker strategy: only its cluster resolver is read."""
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)
    return SimpleNamespace(cluster_resolver=resolver)
