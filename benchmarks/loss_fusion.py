"""CE + Dice three ways, forward + backward, interleaved in one process: with its gradient
written out (pixelwise's ``--loss-gradient written``), by autodiff over one log-softmax for
both terms (the default), and by autodiff with a softmax per term (before that). Each variant's
peak of TensorFlow's tensor memory during its step is read from the allocator.

The logits of a DeepLab training step at 384 x 384, batch 8, 21 classes (VOC), and of the
CamVid toy model's step (320 x 320, batch 16, 11 classes); labels with VOC's ignore value
in a tenth of the pixels. Each repeat runs both variants once in a shuffled order; medians
and their ratio reported, and written to their section of ``--results``.

    python benchmarks/loss_fusion.py --repeats 15 --results benchmarks/RESULTS.md
    python benchmarks/loss_fusion.py --repeats 2 --scale 8        # smoke
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np
import tensorflow as tf

from atrous import interleaved_seconds  # benchmarks/: the script's folder
from pixelwise.loss_terms import mean_over_labelled, pixel_cross_entropy, soft_dice_loss
from pixelwise.losses import CrossEntropyDice

DEVICE = "CPU:0"

CASES = {"VOC step (384 x 384, batch 8, 21 classes)": (8, 384, 384, 21),
         "CamVid toy step (320 x 320, batch 16, 11 classes)": (16, 320, 320, 11)}
IGNORE = 255


class TwoSoftmaxCrossEntropyDice(CrossEntropyDice):
    """The loss before the fusion: each term takes its own softmax of the logits."""

    def losses_from_pixels(self, pixels):
        weights = self.weights_of(pixels)
        cross_entropy = mean_over_labelled(weights * pixel_cross_entropy(pixels), pixels.valid)
        return cross_entropy + self.dice_weight * soft_dice_loss(pixels, weights, self.smooth)


def loss_step(losses):
    @tf.function(jit_compile=False, autograph=False)
    def step(logits, labels):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = tf.add_n([loss(labels, logits) for loss in losses])
        return [tape.gradient(value, logits)]

    return step


def time_case(batch: int, height: int, width: int, classes: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(batch, height, width, classes)).astype("float32"))
    labels = rng.integers(0, classes, size=(batch, height, width)).astype("int32")
    labels[rng.random(labels.shape) < 0.1] = IGNORE
    labels = tf.constant(labels)
    options = dict(num_classes=classes, ignore_label=IGNORE)
    steps = {"written-out gradient": loss_step([CrossEntropyDice(**options, gradient="written")]),
             "autodiff, one log-softmax": loss_step([CrossEntropyDice(**options)]),
             "autodiff, a softmax per term": loss_step([TwoSoftmaxCrossEntropyDice(**options)])}
    interleaved_seconds(steps, logits, labels, repeats=1)  # trace and warm up
    peaks = {name: peak_megabytes(step, logits, labels) for name, step in steps.items()}
    seconds = interleaved_seconds(steps, logits, labels, repeats=repeats)
    return {name: (1000 * statistics.median(values), peaks[name])
            for name, values in seconds.items()}


def peak_megabytes(step, logits, labels) -> float:
    """The most tensor memory the allocator held during one ``step``, above what it held
    before (the logits and labels)."""
    before = tf.config.experimental.get_memory_info(DEVICE)["current"]
    tf.config.experimental.reset_memory_stats(DEVICE)
    step(logits, labels)[0].numpy()
    return (tf.config.experimental.get_memory_info(DEVICE)["peak"] - before) / 2**20


def markdown(figures: dict, command: str, load: float) -> str:
    names = list(next(iter(figures.values())))
    lines = ["### CE + Dice: its gradient written out, against autodiff", "",
             f"Forward + backward of the loss alone (`[B]` losses, gradient for the logits), "
             f"medians of interleaved repeats, and the peak of TensorFlow's tensor memory "
             f"during one step above the inputs; load average {load:.2f} at the end. "
             f"Command: `{command}`", "",
             "| logits | " + " | ".join(f"{name}: ms, peak MB" for name in names)
             + " | time: autodiff one log-softmax / written out |",
             "| --- | " + " | ".join("---" for _ in names) + " | --- |"]
    for case, results in figures.items():
        cells = [f"{ms:.1f} ms, {peak:.0f} MB" for ms, peak in results.values()]
        ratio = results[names[1]][0] / results[names[0]][0]
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--scale", type=int, default=1, help="divide the sizes by this")
    parser.add_argument("--results", default=None, help="RESULTS.md whose section to write")
    arguments = parser.parse_args(argv)
    figures = {}
    for case, (batch, height, width, classes) in CASES.items():
        figures[case] = time_case(batch, height // arguments.scale, width // arguments.scale,
                                  classes, arguments.repeats)
        print(case, {name: (round(ms, 2), round(peak)) for name, (ms, peak)
                     in figures[case].items()}, flush=True)
    if arguments.results:
        from pixelwise.benchmark import update_results_section

        command = " ".join(["python benchmarks/loss_fusion.py", *(argv or sys.argv[1:])])
        update_results_section(arguments.results, "loss_fusion",
                               markdown(figures, command, os.getloadavg()[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
