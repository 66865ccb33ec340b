"""Multi-device scenarios of tests/test_distribute.py, each run in a fresh process.

Logical CPU devices must be configured before TensorFlow starts its runtime, so every
scenario runs in its own interpreter: ``python tests/distribute_scenarios.py NAME ARGS``.
It prints one JSON line, prefixed with ``RESULT``, for the test to read.

    mirrored DATA RUN_DIR   two logical CPUs: train one epoch under MirroredStrategy, then
                            the confusion matrix of the saved model over val-full under
                            two replicas and under one device, ``evaluate_run`` under two
                            replicas and on one device (plain, and multi-scale with flips),
                            and synchronized batch norm against one device's batch norm
                            over the global batch.
    replica_order           two logical CPUs: ``replica_predictor`` under MirroredStrategy
                            over 5 images (shares of 3 and 2 + 1 padding), and the same
                            with the replicas' results handed back in reverse order, the
                            mistake the order test must catch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from conftest import TINY_MODEL as CONFTEST_TINY_MODEL  # this script runs from tests/

SIZE = 64
# bn_momentum 0: after two steps the moving statistics are the last batch's, so the model
# already tells classes apart and the evaluation compares more than one column. The tiny
# backbone (as distribute_helpers' flags): the point is replicas against one device, and
# every evaluation below traces the network again, which for MobileNetV2 costs seconds each.
TINY_MODEL = dict(CONFTEST_TINY_MODEL, backbone="tiny", width_multiplier=1.0, aspp_filters=32,
                  aspp_rates=(1, 2, 3), bn_momentum=0.0)


def use_two_cpus() -> list[str]:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def batch_norm_outputs(strategy, images: np.ndarray, synchronized: bool) -> dict:
    """A lone BatchNormalization layer in training mode on ``images`` split between the
    replicas: its outputs (replicas' shares concatenated) and moving variance."""
    import keras

    from pixelwise.distribute import synchronize_batch_norm

    with strategy.scope():
        inputs = keras.Input(images.shape[1:])
        model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.0)(inputs))
        if synchronized:
            assert synchronize_batch_norm(model) == 1
    shares = np.split(images, strategy.num_replicas_in_sync)
    per_replica = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(shares[context.replica_id_in_sync_group]))
    step = tf.function(lambda batch: model(batch, training=True))
    outputs = strategy.experimental_local_results(strategy.run(step, args=(per_replica,)))
    return {"outputs": np.concatenate([np.asarray(output) for output in outputs]),
            "moving_variance": np.asarray(model.layers[-1].moving_variance)}


def mirrored(data_dir: str, run_dir: str) -> dict:
    devices = use_two_cpus()
    from pixelwise.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from pixelwise.data.palette import read_label
    from pixelwise.data.pipeline import make_dataset
    from pixelwise.data.voc import find_voc_root
    from pixelwise.distribute import (
        distributed_confusion_matrix,
        make_strategy,
        pad_batches,
    )
    from pixelwise.evaluate import evaluate_run
    from pixelwise.train import train

    two = make_strategy("mirrored", devices=devices)
    one = make_strategy("one", devices=[devices[0]])
    config = RunConfig(data=DataConfig(source=data_dir, input_size=SIZE, augment="none"),
                       model=ModelConfig(**TINY_MODEL),
                       train=TrainConfig(epochs=1, batch_size=2, tensorboard=False,
                                         learning_rate=3e-3))
    lines: list[str] = []
    result = train(config, run_dir, progress=False, echo=lines.append, strategy=two)

    layout = find_voc_root(data_dir)
    spec = layout.spec
    batches = make_dataset(data_dir, "val-full", batch_size=4, input_size=SIZE, training=False)
    best = Path(run_dir) / "best.keras"
    matrix_two = distributed_confusion_matrix(best, pad_batches(batches, 4, spec.ignore_label),
                                              spec, two)
    matrix_one = distributed_confusion_matrix(best, batches, spec, one)
    # The images are SIZE x SIZE already, so the pipeline does not resize them.
    labelled = sum(int(np.count_nonzero(read_label(example.label_path) != spec.ignore_label))
                   for example in layout.examples("val-full"))

    # evaluate_run: 5 images in batches of 4 (two replicas x 2, and 4 on one device), so
    # the last batch of 1 is padded to split between the replicas.
    evaluations, evaluate_echo = {}, []
    for name, strategy, batch_size in (("two", two, 2), ("one", None, 4)):
        for protocol, options in (("plain", dict(hardest=3)),
                                  ("ms_flip", dict(multi_scale=True, flip=True, hardest=0))):
            evaluation, = evaluate_run(
                run_dir, split="val-full", batch_size=batch_size, strategy=strategy,
                out_dir=Path(run_dir) / f"evaluation-{name}", progress=False,
                echo=evaluate_echo.append if strategy else (lambda line: None), **options)
            evaluations[f"{name}_{protocol}"] = evaluation.to_dict()

    images = np.random.default_rng(0).normal(3.0, 2.0, size=(4, 2, 2, 3)).astype("float32")
    images[2:] *= 4.0  # the second replica's share has other statistics
    reference = batch_norm_outputs(one, images, synchronized=False)
    synchronized = batch_norm_outputs(two, images, synchronized=True)
    local = batch_norm_outputs(two, images, synchronized=False)
    return {
        "replicas": two.num_replicas_in_sync,
        "epochs_done": result.epochs_done, "stop_reason": result.stop_reason,
        "echo": lines,
        "matrix_two": matrix_two.tolist(), "matrix_one": matrix_one.tolist(),
        "labelled_pixels": labelled,
        "evaluations": evaluations, "evaluate_echo": evaluate_echo,
        "sync_max_difference": float(np.abs(synchronized["outputs"] - reference["outputs"]).max()),
        "sync_variance_difference": float(np.abs(synchronized["moving_variance"]
                                                 - reference["moving_variance"]).max()),
        "local_max_difference": float(np.abs(local["outputs"] - reference["outputs"]).max()),
    }


class ReversedResults:
    """A strategy whose ``experimental_local_results`` lists the replicas last to first."""

    def __init__(self, strategy) -> None:
        self._strategy = strategy

    def __getattr__(self, name):
        return getattr(self._strategy, name)

    def experimental_local_results(self, value):
        return tuple(reversed(self._strategy.experimental_local_results(value)))


def replica_order() -> dict:
    devices = use_two_cpus()
    from pixelwise.distribute import make_strategy, replica_predictor

    two = make_strategy("mirrored", devices=devices)
    images = np.arange(10, dtype="float32").reshape(5, 2)
    double_first = lambda batch: batch[:, :1] * 2.0  # noqa: E731
    return {
        "replicas": two.num_replicas_in_sync,
        "images": images.tolist(),
        "outputs": replica_predictor(two, double_first)(images).tolist(),
        "one_image": replica_predictor(two, double_first)(images[:1]).tolist(),
        "reversed_outputs": replica_predictor(ReversedResults(two), double_first)(images).tolist(),
    }


SCENARIOS = {"mirrored": mirrored, "replica_order": replica_order}

if __name__ == "__main__":
    name, *arguments = sys.argv[1:]
    print("RESULT " + json.dumps(SCENARIOS[name](*arguments)), flush=True)
