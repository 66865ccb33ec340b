"""The Keras predictor's time per frame: its model as one tf.function graph (how
``KerasSegmenter`` runs it) against the same model called layer by layer in eager mode (how
it ran before), interleaved in one process.

    python benchmarks/keras_predictor.py --model camvid-toy --size 360x480 --rounds 3 \\
        --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import statistics
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def frame_ms(segmenter, frame: np.ndarray, repeats: int) -> float:
    """Median ms of ``segmenter.predict(frame)`` after two untimed calls."""
    from pixelwise.benchmark import median_seconds

    return 1000.0 * median_seconds(lambda: segmenter.predict(frame), repeats=repeats, warmup=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="camvid-toy",
                        help="a model name, run folder or .keras file")
    parser.add_argument("--size", default="360x480", help="the frame's HxW")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", type=Path, default=None)
    arguments = parser.parse_args()

    from pixelwise.benchmark import update_results_section
    from pixelwise.inference import KerasSegmenter
    from pixelwise.io import parse_size
    from pixelwise.zoo import resolve_model_path

    height, width = parse_size(arguments.size)
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    graph = KerasSegmenter.from_path(resolve_model_path(arguments.model))
    eager = KerasSegmenter.from_path(resolve_model_path(arguments.model))
    eager._logits = lambda images, training=False: eager._inference_model(images,
                                                                          training=False)
    agreement = float(np.mean(graph.predict(frame) == eager.predict(frame)))
    if agreement < 0.999:  # rounding may flip a near-tie pixel, not more
        raise SystemExit(f"the graph and eager class maps differ on {1 - agreement:.2%} of "
                         f"the pixels")
    load_before = os.getloadavg()[0]
    rounds = [{"graph": frame_ms(graph, frame, arguments.repeats),
               "eager": frame_ms(eager, frame, arguments.repeats)}
              for _ in range(arguments.rounds)]
    for index, times in enumerate(rounds, 1):
        print(f"round {index}: graph {times['graph']:.1f} ms, eager {times['eager']:.1f} ms")
    graph_ms = statistics.median(times["graph"] for times in rounds)
    eager_ms = statistics.median(times["eager"] for times in rounds)
    ratios = [times["eager"] / times["graph"] for times in rounds]
    command = (f"python benchmarks/keras_predictor.py --model {arguments.model} --size "
               f"{arguments.size} --repeats {arguments.repeats} --rounds {arguments.rounds}")
    markdown = (
        f"### The Keras predictor: one graph against eager layer-by-layer calls "
        f"({arguments.model}, one {height} x {width} frame)\n\n"
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
        f"{load_before:.2f} at the start; {arguments.rounds} interleaved rounds in one "
        f"process, each the median of {arguments.repeats} `predict` calls (the model's own "
        f"precision, all cores; class maps {agreement:.3%} the same). Command: "
        f"`{command}`\n\n"
        f"| path | ms per frame | eager / graph (rounds) |\n|---|---|---|\n"
        f"| graph (`tf.function`, now) | {graph_ms:.1f} | |\n"
        f"| eager (before) | {eager_ms:.1f} | {statistics.median(ratios):.2f}x "
        f"({min(ratios):.2f}-{max(ratios):.2f}) |\n")
    print(markdown)
    if arguments.results:
        update_results_section(arguments.results, f"keras_predictor_{height}x{width}",
                               markdown)
        print(f"wrote section keras_predictor_{height}x{width} of {arguments.results}")


if __name__ == "__main__":
    main()
