"""Training on several devices and machines: TensorFlow's ``tf.distribute``, nothing home-made.

    strategy = make_strategy("auto")          # before anything else touches TensorFlow
    train(config, "runs/voc", strategy=strategy)

Strategies (``pixelwise train --strategy``):

- ``"one"``: ``OneDeviceStrategy`` on the first GPU, else the CPU (or ``devices[0]``).
- ``"mirrored"``: ``MirroredStrategy``, one replica per local GPU (or per device named in
  ``devices``); gradients are all-reduced after every step.
- ``"multiworker"``: ``MultiWorkerMirroredStrategy`` across the machines listed in the
  ``TF_CONFIG`` environment variable, one replica per GPU of each (the CPU where a worker
  has none). Every worker runs the same command; see the README for a two-machine example.
- ``"auto"``: multiworker when ``TF_CONFIG`` lists more than one worker, mirrored when
  several GPUs are visible (or several ``devices`` are named), else TensorFlow's default
  strategy (no distribution: exactly the single-device code path).

Batch and learning rate. ``--batch-size`` is the batch of one replica; each step takes a
global batch of ``batch_size x replicas`` images, split evenly between the replicas. The
learning rate given (or the recipe's default) is the rate for one replica's batch, and is
scaled to the global batch by ``lr_scaling``:

- ``"linear"`` (default): ``lr x replicas``, the linear scaling rule of Goyal et al.,
  "Accurate, Large Minibatch SGD" (2017): k times the batch, k times the step. Suits SGD
  (the paper recipe); for very large batches add a warm-up or lower the rate.
- ``"sqrt"``: ``lr x sqrt(replicas)``, which keeps the gradient noise constant; often the
  better choice for Adam (the textbook recipe).
- ``"none"``: the rate as given.

With one replica every rule gives the rate as given. The poly schedule decays over the
steps of the global batch.

Batch normalisation. By default each replica normalises with the statistics of its own
share of the batch (as Keras does); ``sync_batchnorm`` makes every BatchNormalization layer
``synchronized``: the mean and variance are all-reduced over the global batch at each
training step (what DeepLab's large-batch results rely on when each device holds only a
few images). Inference uses the moving statistics either way.

Metrics and losses. The metrics keep their confusion matrix in a sum-aggregated variable,
so each replica counts its own pixels and reading the metric adds the counts: the matrix
over two replicas is the matrix over one (``distributed_confusion_matrix``). Each
replica's loss is its batch mean, scaled by Keras by ``1 / replicas`` before the gradients
are summed, so the step minimises the mean over the global batch (training batches are
always full). Validation batches are padded to the global batch (``pad_batches``), so
that no replica gets an empty share.

Elsewhere: the training input for a strategy (sharding between workers) is
``pixelwise.training_inputs``; the saved state workers agree on and the backup folders of
non-chief workers, ``pixelwise.training_state``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pixelwise.config import LR_SCALINGS
from pixelwise.data.spec import DatasetSpec
from pixelwise.models.layers import all_layers

STRATEGY_NAMES = ("auto", "one", "mirrored", "multiworker")
TF_CONFIG_VARIABLE = "TF_CONFIG"
WORKER_JOBS = ("chief", "worker")  # the TF_CONFIG jobs that train (not "evaluator", "ps")
# What TensorFlow's collective all-reduce carries.
COLLECTIVE_DTYPES = (tf.bfloat16, tf.float16, tf.float32, tf.float64, tf.int32, tf.int64)


# --------------------------------------------------------------------------- TF_CONFIG


def read_tf_config(environ: dict | None = None) -> dict | None:
    """The parsed ``TF_CONFIG`` environment variable, or None when it is unset or empty.

    Checked for what ``MultiWorkerMirroredStrategy`` needs: a ``cluster`` with a ``worker``
    (and optionally a ``chief``) list of "host:port" addresses, and a ``task`` naming this
    process's job and index in it.
    """
    text = (os.environ if environ is None else environ).get(TF_CONFIG_VARIABLE, "").strip()
    if not text:
        return None
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{TF_CONFIG_VARIABLE} is not valid JSON ({error}); expected e.g. "
                         f"{example}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not any(cluster.get(job) for job in WORKER_JOBS):
        raise ValueError(f"{TF_CONFIG_VARIABLE} has no \"cluster\" with a \"worker\" list; "
                         f"expected e.g. {example}")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(
                isinstance(address, str) and ":" in address for address in addresses):
            raise ValueError(f"{TF_CONFIG_VARIABLE}: cluster job {job!r} must be a list of "
                             f"\"host:port\" strings, got {addresses!r}")
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(f"{TF_CONFIG_VARIABLE} has no \"task\" {{\"type\": ..., \"index\": "
                         f"...}} naming this process; expected e.g. {example}")
    job, index = task["type"], task["index"]
    if job not in cluster or not isinstance(index, int) or not 0 <= index < len(cluster[job]):
        raise ValueError(f"{TF_CONFIG_VARIABLE}: task {job!r} {index!r} is not in the cluster "
                         f"({', '.join(f'{name}: {len(tasks)}' for name, tasks in cluster.items())})")
    return config


def cluster_size(tf_config: dict | None) -> int:
    """Training processes (chief + workers) a TF_CONFIG lists; 1 without one."""
    if not tf_config:
        return 1
    return max(1, sum(len(tf_config["cluster"].get(job, [])) for job in WORKER_JOBS))


# --------------------------------------------------------------------------- strategies


def local_gpus() -> list[str]:
    """The GPUs of this machine TensorFlow sees, e.g. ``["/physical_device:GPU:0", ...]``
    (listing them does not start the runtime)."""
    return [device.name for device in tf.config.list_physical_devices("GPU")]


def make_strategy(name: str = "auto", *, devices: Sequence[str] | None = None,
                  one_machine: bool = False) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy ``name`` (see the module docstring).

    Args:
        name: "auto", "one", "mirrored" or "multiworker".
        devices: local devices to use, e.g. ``["/gpu:0", "/gpu:1"]`` (one: a single device;
            mirrored: its replicas; multiworker takes every local GPU and refuses a list).
        one_machine: for jobs that run on this machine only (``pixelwise evaluate``):
            "auto" ignores ``TF_CONFIG`` and "multiworker" is refused.

    Call it first: logical devices and the multi-worker runtime must be set up before
    TensorFlow runs anything.
    """
    if name not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGY_NAMES)}")
    devices = list(devices) if devices is not None else None
    if devices is not None and not devices:
        raise ValueError("devices is an empty list; leave it None to use the visible devices")
    if name == "multiworker" and one_machine:
        raise ValueError("strategy 'multiworker' is for training; this runs on one machine: "
                         "choose auto, one or mirrored")
    if name == "auto":
        tf_config = None if one_machine else read_tf_config()
        if cluster_size(tf_config) > 1 and devices is None:
            name = "multiworker"
        elif len(devices if devices is not None else local_gpus()) > 1:
            name = "mirrored"
        elif devices is not None:
            name = "one"
        else:
            return tf.distribute.get_strategy()
    if name == "one":
        if devices is not None and len(devices) > 1:
            raise ValueError(f"strategy 'one' takes one device, got {devices}; use 'mirrored'")
        device = devices[0] if devices else ("/gpu:0" if local_gpus() else "/cpu:0")
        return tf.distribute.OneDeviceStrategy(device)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    if devices is not None:
        raise ValueError("strategy 'multiworker' uses every local GPU (or the CPU) of each "
                         "worker; leave devices unset, or set CUDA_VISIBLE_DEVICES")
    if read_tf_config() is None:
        raise ValueError(f"strategy 'multiworker' needs the {TF_CONFIG_VARIABLE} environment "
                         f"variable: the cluster's workers and this process's task (see the "
                         f"README, \"Training on several machines\")")
    try:
        return MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        raise RuntimeError(f"cannot start the multi-worker runtime ({error}); create the "
                           f"strategy before TensorFlow runs anything else") from error


class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """TensorFlow's ``MultiWorkerMirroredStrategy`` with a ``reduce`` that takes what Keras
    3's ``fit`` and ``evaluate`` give it (keras-team/keras#20585, tensorflow#72388):

    - a nested structure of per-replica values (the first ``(images, labels)`` batch,
      reduced to build the metrics): each is reduced, as ``MirroredStrategy.reduce`` does;
      integers of types the collectives cannot carry (the uint8 labels) as int64, cast back;
    - per-replica scalars (the step's logs) with ``axis=0``: averaged over the replicas,
      which is what Keras means and what it does under the other strategies.

    Everything else is TensorFlow's.
    """

    def reduce(self, reduce_op, value, axis):
        if tf.nest.is_nested(value):
            return tf.nest.map_structure(
                lambda item: self._reduce_item(reduce_op, item, axis), value)
        return self._reduce_item(reduce_op, value, axis)

    def _reduce_item(self, reduce_op, item, axis):
        local_values = self.experimental_local_results(item)
        if axis is not None and all(len(local.shape) == 0 for local in local_values):
            axis = None
        dtype = local_values[0].dtype
        if dtype in COLLECTIVE_DTYPES or not (dtype.is_integer or dtype == tf.bool):
            return super().reduce(reduce_op, item, axis)
        widened = self.run(lambda tensor: tf.cast(tensor, tf.int64), args=(item,))
        return tf.cast(super().reduce(reduce_op, widened, axis), dtype)


def describe(strategy: tf.distribute.Strategy) -> str:
    """One line: the strategy, its replicas and workers, this process's role."""
    workers = num_workers(strategy)
    text = (f"{type(strategy).__name__}: {strategy.num_replicas_in_sync} replica(s)"
            + (f" on {workers} workers" if workers > 1 else ""))
    task_type, task_id = task_of(strategy)
    if task_type is not None:
        text += f"; this is {task_type} {task_id}" + (" (chief)" if is_chief(strategy) else "")
    return text


def task_of(strategy: tf.distribute.Strategy) -> tuple[str | None, int | None]:
    """This process's (job, index) in a multi-worker cluster; (None, None) otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, None
    return resolver.task_type, resolver.task_id


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Training processes taking part in ``strategy`` (1 unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    cluster = resolver.cluster_spec().as_dict()
    return max(1, sum(len(cluster.get(job, [])) for job in WORKER_JOBS))


def worker_index(strategy: tf.distribute.Strategy) -> int:
    """This process's place among the training processes, the chief first (0 unless
    multi-worker): the input pipeline it feeds."""
    task_type, task_id = task_of(strategy)
    if task_type is None or task_type == "chief":
        return 0
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return len(cluster.get("chief", [])) + int(task_id)


def is_default(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether ``strategy`` is None or TensorFlow's default strategy (no distribution), as
    ``make_strategy("auto")`` returns it on a machine with one device."""
    return strategy is None or (strategy is tf.distribute.get_strategy()
                                and not tf.distribute.has_strategy())


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run folder: always, except on the non-chief workers
    of a multi-worker cluster (TensorFlow's own rule: the ``chief`` task, else ``worker`` 0)."""
    return bool(strategy.extended.should_checkpoint)


# --------------------------------------------------------------------------- batch and rate


def global_batch_size(per_replica_batch: int, replicas: int) -> int:
    """Images per step over all replicas: ``per_replica_batch x replicas``."""
    if int(per_replica_batch) < 1 or int(replicas) < 1:
        raise ValueError(f"per_replica_batch ({per_replica_batch}) and replicas ({replicas}) "
                         f"must be at least 1")
    return int(per_replica_batch) * int(replicas)


def scaled_learning_rate(learning_rate: float, replicas: int, rule: str = "linear") -> float:
    """The learning rate for ``replicas`` replicas' global batch, from the rate of one
    replica's batch: ``"linear"`` multiplies by ``replicas``, ``"sqrt"`` by its square root,
    ``"none"`` keeps it (see the module docstring)."""
    if rule not in LR_SCALINGS:
        raise ValueError(f"unknown learning-rate scaling {rule!r}; choose one of "
                         f"{', '.join(LR_SCALINGS)}")
    if int(replicas) < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    factor = {"linear": float(replicas), "sqrt": math.sqrt(replicas), "none": 1.0}[rule]
    return float(learning_rate) * factor


def pad_batches(dataset: tf.data.Dataset, batch_size: int,
                ignore_label: int) -> tf.data.Dataset:
    """Evaluation batches ``(images, labels)`` padded up to ``batch_size`` with black images
    whose pixels all carry ``ignore_label``, so that every batch splits evenly between
    the replicas and none gets an empty share.

    Why: TensorFlow's oneDNN convolution on CPUs returns its input unchanged for an empty
    batch (TensorFlow 2.21), which breaks a replica handed the empty end of a short last
    batch. The padding changes no metric (ignored pixels are not counted) and adds images
    of loss 0: ``val_loss`` is the sum over the real images divided by the real images plus
    at most ``batch_size - 1`` padding ones, the same every epoch.
    """

    def pad(images, labels):
        missing = batch_size - tf.shape(images)[0]
        images = tf.pad(images, [[0, missing], [0, 0], [0, 0], [0, 0]])
        labels = tf.pad(labels, [[0, missing], [0, 0], [0, 0]],
                        constant_values=tf.cast(ignore_label, labels.dtype))
        return (tf.ensure_shape(images, [batch_size, *images.shape[1:]]),
                tf.ensure_shape(labels, [batch_size, *labels.shape[1:]]))

    return dataset.map(pad)


# --------------------------------------------------------------------------- model


def synchronize_batch_norm(model: keras.Model) -> int:
    """Make every BatchNormalization layer (nested models too) ``synchronized``: under a
    strategy with several replicas, training-mode statistics are all-reduced over the
    global batch. Call before the first training step; returns the layers changed."""
    changed = 0
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
            changed += 1
    return changed


def distributed_confusion_matrix(model_path: str | Path, dataset: tf.data.Dataset,
                                 spec: DatasetSpec,
                                 strategy: tf.distribute.Strategy) -> np.ndarray:
    """The confusion matrix int64 [C, C] of the model saved at ``model_path`` over
    ``dataset`` (batches of ``(images, labels)``), computed by Keras's ``evaluate`` under
    ``strategy``: each replica counts its share, and the counts are added.

    The model is loaded inside ``strategy.scope()``. Under several replicas give batches
    that split evenly between them (``pad_batches``).
    """
    from pixelwise.losses import build_loss
    from pixelwise.metrics import ConfusionMatrixMetric
    from pixelwise.models import load_model

    with strategy.scope():
        model = load_model(model_path, compile=False)
        metric = ConfusionMatrixMetric(spec.num_classes, spec.ignore_label)
        model.compile(loss=build_loss("ce", num_classes=spec.num_classes,
                                      ignore_label=spec.ignore_label),
                      metrics=[metric], jit_compile=False)
    model.evaluate(dataset, verbose=0)
    return metric.matrix


def replica_predictor(strategy: tf.distribute.Strategy,
                      function: Callable) -> Callable[[np.ndarray], np.ndarray]:
    """``function`` (a batch of images -> a batch of outputs, written with ``keras.ops``
    over a model created in ``strategy.scope()``) as a NumPy function that runs on the
    replicas of ``strategy``.

    Each batch is split evenly between the replicas, in order; a batch that does not
    divide evenly is padded with black images, whose outputs are dropped (no replica gets
    an empty share: see ``pad_batches``). The outputs come back as one NumPy batch in the
    order of the images, so whatever is computed from them is what one device gives.
    """
    step = tf.function(function, reduce_retracing=True)
    replicas = strategy.num_replicas_in_sync

    def predict(images) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        count = len(images)
        share = max(1, -(-count // replicas))
        padded = np.zeros((share * replicas, *images.shape[1:]), dtype=np.float32)
        padded[:count] = images
        shares = np.split(padded, replicas)
        per_replica = strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(shares[context.replica_id_in_sync_group]))
        outputs = strategy.experimental_local_results(strategy.run(step, args=(per_replica,)))
        return np.concatenate([np.asarray(output) for output in outputs])[:count]

    return predict


__all__ = ["MultiWorkerMirroredStrategy", "STRATEGY_NAMES", "TF_CONFIG_VARIABLE", "cluster_size",
           "describe", "distributed_confusion_matrix", "global_batch_size", "is_chief",
           "is_default", "local_gpus", "make_strategy", "num_workers", "pad_batches",
           "read_tf_config", "replica_predictor", "scaled_learning_rate",
           "synchronize_batch_norm", "task_of", "worker_index"]
