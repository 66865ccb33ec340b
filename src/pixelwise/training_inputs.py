"""The input of a training run: its data checked, then the training and validation
datasets for the run's ``tf.distribute`` strategy.

    check_training_data(config, source)
    inputs = training_inputs(config, source, strategy, epochs_done=0)
    model.fit(inputs.train, validation_data=inputs.val, steps_per_epoch=inputs.fit_steps)

Each step takes a global batch of ``batch_size x replicas`` images; Keras splits it between
the replicas (``experimental_distribute_dataset``). Validation batches are padded to the
global batch (``pixelwise.distribute.pad_batches``) so that no replica gets an empty share.

Across workers the training data is sharded by files when it is prepared records with at
least one shard file per worker: worker ``i`` of ``W`` reads the shards ``i, i + W, ...``
(``worker_files_source``), repeated, for the split's number of global steps per epoch,
since its files may hold more or fewer images than another's. Otherwise it is sharded by
data (``AutoShardPolicy.DATA``): each worker reads everything and keeps its part of each
global batch. Validation data is always sharded by data, so every worker evaluates the
same number of steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from pixelwise import distribute
from pixelwise.config import RunConfig
from pixelwise.data.check import check_class_coverage, check_dataset
from pixelwise.data.pipeline import DataSource, FolderSource, make_dataset
from pixelwise.data.records import RecordsSource


def check_training_data(config: RunConfig, source: DataSource,
                        echo: Callable[[str], None] = print) -> None:
    """Check the train and val splits of a dataset folder; raise with the report on problems.

    Records folders were validated pair by pair when prepared, and ``data.check=False``
    skips the check: then the splits are only looked up (a missing split raises). Either
    way the training split must label at least two classes
    (``pixelwise.data.check.ClassCoverageError``: binary 0/255 masks are the usual cause).
    """
    data = config.data
    train_counts = None
    if not data.check or not isinstance(source, FolderSource):
        for split in (data.train_split, data.val_split):
            source.num_examples(split, data.split_seed)
    else:
        for split in (data.train_split, data.val_split):
            report = check_dataset(source.layout.root, split, data.split_seed)
            if not report.ok:
                raise ValueError(f"the data check found problems; fix them before training:\n"
                                 f"{report.format(max_problems=20)}")
            echo(f"data check: {split}: {report.num_pairs} pairs OK")
            if split == data.train_split:
                train_counts = report.class_pixel_counts
    if train_counts is None:
        train_counts = source.class_pixel_counts(data.train_split, data.split_seed)
    check_class_coverage(train_counts, source.spec, data.train_split)


def input_error(config: RunConfig, source: DataSource, error: tf.errors.OpError) -> Exception:
    """What to raise for ``error``, raised by TensorFlow while ``fit`` read the data: for a
    dataset folder, a ValueError with the data check's report naming the files (a
    truncated JPEG fails only when decoded, so ``--no-check`` runs meet it here); else
    ``error`` itself."""
    if not isinstance(source, FolderSource):
        return error
    for split in (config.data.train_split, config.data.val_split):
        report = check_dataset(source.layout.root, split, config.data.split_seed)
        if not report.ok:
            return ValueError(f"reading the data failed ({error.message.splitlines()[0]}); the "
                              f"data check names the cause:\n{report.format(max_problems=20)}")
    return error


def with_known_batches(dataset: tf.data.Dataset, batches: int) -> tf.data.Dataset:
    """``dataset`` with its number of batches stated where TensorFlow cannot tell it
    (records): else Keras learns it only when the first epoch runs out of data, and warns
    "Your input ran out of data" although every step ran."""
    if dataset.cardinality() != tf.data.UNKNOWN_CARDINALITY:
        return dataset
    return dataset.apply(tf.data.experimental.assert_cardinality(batches))


def training_images(config: RunConfig, source: DataSource, replicas: int) -> int:
    """The images of the training split; ValueError when they do not fill one global batch."""
    train_size = source.num_examples(config.data.train_split, config.data.split_seed)
    global_batch = distribute.global_batch_size(config.train.batch_size, replicas)
    if train_size < global_batch:
        raise ValueError(f"split {config.data.train_split!r} of {config.data.source} holds "
                         f"{train_size} image(s), fewer than one batch of {global_batch} ("
                         f"{config.train.batch_size} x {replicas} replica(s)); lower --batch-size")
    return train_size


def auto_shard_policy(source: object, split: str, num_workers: int, *, training: bool,
                      split_seed: int) -> tf.data.experimental.AutoShardPolicy:
    """How a dataset is divided between workers: FILE for training on prepared records
    with at least one shard per worker, DATA otherwise (see the module docstring)."""
    if training and isinstance(source, RecordsSource):
        shards = source.split_info(split, split_seed)["shards"]
        if len(shards) >= num_workers:
            return tf.data.experimental.AutoShardPolicy.FILE
    return tf.data.experimental.AutoShardPolicy.DATA


def worker_files_source(source: object, strategy: tf.distribute.Strategy) -> object:
    """The records ``source`` restricted to this worker's shard files (``worker_index,
    worker_index + workers, ...``): sharding by files done with ``tf.data``'s ``shard`` on
    the file list. TensorFlow's automatic FILE sharding cannot do it here: the pipeline
    pairs every example with a draw of ``Dataset.random``, a source it cannot shard."""
    return dataclasses.replace(source, file_shard=(distribute.num_workers(strategy),
                                                   distribute.worker_index(strategy)))


def with_shard_policy(dataset: tf.data.Dataset,
                      policy: tf.data.experimental.AutoShardPolicy) -> tf.data.Dataset:
    """``dataset`` with ``policy`` set as its auto-shard policy."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return dataset.with_options(options)


@dataclass
class TrainingInputs:
    """What ``fit`` is given: the training and validation batches, and the steps of an
    epoch where the training data repeats (None: one pass over it)."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    fit_steps: int | None


def training_inputs(config: RunConfig, source: DataSource, strategy: tf.distribute.Strategy,
                    epochs_done: int) -> TrainingInputs:
    """The run's training and validation datasets under ``strategy`` (see the module
    docstring); the shuffle order and augmentation are drawn from ``seed + epochs_done``."""
    data = config.data
    replicas = strategy.num_replicas_in_sync
    workers = distribute.num_workers(strategy)
    global_batch = distribute.global_batch_size(config.train.batch_size, replicas)
    by_files = workers > 1 and auto_shard_policy(
        source, data.train_split, workers, training=True,
        split_seed=data.split_seed) == tf.data.experimental.AutoShardPolicy.FILE
    train_data = make_dataset(
        worker_files_source(source, strategy) if by_files else source, data.train_split,
        batch_size=global_batch, input_size=data.input_size, training=True,
        seed=config.train.seed + epochs_done, augment=data.augment, cache=data.cache,
        split_seed=data.split_seed)
    if data.val_resolution == "original":
        sizes = source.image_sizes(data.val_split, data.split_seed)
        if len(sizes) > 1:
            raise ValueError(f"val_resolution 'original' needs validation images of one size "
                             f"(split {data.val_split!r} has {len(sizes)}); use 'resized'")
    val_data = make_dataset(source, data.val_split, batch_size=global_batch,
                            input_size=data.input_size, training=False, cache=data.cache,
                            split_seed=data.split_seed, eval_resolution=data.val_resolution,
                            input_multiple=config.model.input_multiple)
    if not by_files:
        train_images = source.num_examples(data.train_split, data.split_seed)
        train_data = with_known_batches(train_data, train_images // global_batch)
    val_images = source.num_examples(data.val_split, data.split_seed)
    val_data = with_known_batches(val_data, -(-val_images // global_batch))
    if replicas > 1:  # every replica gets images, even from the last batch
        val_data = distribute.pad_batches(val_data, global_batch, source.spec.ignore_label)
    fit_steps = None
    if workers > 1:
        data_policy = tf.data.experimental.AutoShardPolicy.DATA
        val_data = with_shard_policy(val_data, data_policy)
        if by_files:  # this worker's files only, as many steps as every other worker
            train_data = with_shard_policy(
                train_data, tf.data.experimental.AutoShardPolicy.OFF).repeat()
            train_size = source.num_examples(data.train_split, data.split_seed)
            fit_steps = train_size // global_batch
        else:
            train_data = with_shard_policy(train_data, data_policy)
    return TrainingInputs(train_data, val_data, fit_steps)


__all__ = ["TrainingInputs", "auto_shard_policy", "check_training_data", "input_error",
           "training_images", "training_inputs", "with_known_batches", "with_shard_policy",
           "worker_files_source"]
