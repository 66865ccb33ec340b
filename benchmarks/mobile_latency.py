"""Which road-model architecture fits the 20 ms frame: int8 latency at CamVid's full 360x480.

Each candidate is built with random weights (its speed does not depend on them), exported
as int8 TFLite by ``pixelwise.export.export_tflite`` at 360 x 480 (uint8 frame in, class
map out; padded inside the graph to the model's stride), calibrated on random images.
Reference models, already exported .tflite files such as ``benchmarks/camvid/toy_int8.tflite``
(the current toy, its network run at 288 x 384 inside the graph), are timed beside them.
Then ``--rounds`` rounds: each times every model once in a fresh process (LiteRT's
interpreter alone, ``--threads`` threads, the median of ``--repeats`` predictions of fixed
random frames after two), the order rotating by one model per round, so that the
machine's drift falls on every model alike. The table: medians over the rounds, the
rounds' lowest-highest, and each model over the first reference, round by round.

    python benchmarks/mobile_latency.py --rounds 3 \\
        --reference toy=benchmarks/camvid/toy_int8.tflite --results benchmarks/RESULTS.md
    python benchmarks/mobile_latency.py --size 64x96 --candidates lraspp_large \\
        --rounds 1 --repeats 2 --models /tmp/mobile-smoke                     # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NUM_CLASSES = 11  # CamVid's
LIGHT_DEEPLAB_HEAD = dict(aspp_filters=96, aspp_rates=(), low_level_filters=24,
                          decoder_filters=48)
# Name -> build_model arguments. toy_full: the current toy's architecture at the full size.
CANDIDATES = {
    "toy_full": dict(name="deeplabv3plus", backbone="mobilenetv2", **LIGHT_DEEPLAB_HEAD),
    "deeplabv3plus_large": dict(name="deeplabv3plus", backbone="mobilenetv3large",
                                **LIGHT_DEEPLAB_HEAD),
    "lraspp_large": dict(name="lraspp", backbone="mobilenetv3large"),
    "lraspp_large_0.75": dict(name="lraspp", backbone="mobilenetv3large",
                              width_multiplier=0.75),
    "lraspp_small": dict(name="lraspp", backbone="mobilenetv3small"),
    "lraspp_large_minimalistic": dict(name="lraspp", backbone="mobilenetv3large_minimalistic"),
    "deeplabv3plus_large_minimalistic": dict(name="deeplabv3plus",
                                             backbone="mobilenetv3large_minimalistic",
                                             **LIGHT_DEEPLAB_HEAD),
    "deeplabv3plus_large_minimalistic_separable": dict(
        name="deeplabv3plus", backbone="mobilenetv3large_minimalistic", decoder_conv="separable",
        **LIGHT_DEEPLAB_HEAD),
}


def export_candidate(name: str, size: tuple[int, int], folder: Path) -> dict:
    """Build and export candidate ``name`` (once: an existing file is reused); its file,
    parameters and multiply-adds."""
    import numpy as np

    from pixelwise.data.spec import DatasetSpec, voc_colormap
    from pixelwise.export import export_tflite
    from pixelwise.models import build_model, count_multiply_adds, input_multiple

    options = dict(CANDIDATES[name])
    model_name = options.pop("name")
    model = build_model(model_name, num_classes=NUM_CLASSES, backbone_weights=None, **options)
    path = folder / f"{name}_{size[0]}x{size[1]}_int8.tflite"
    if not path.exists():
        spec = DatasetSpec(tuple(f"class_{index}" for index in range(NUM_CLASSES)),
                           tuple(tuple(int(c) for c in rgb) for rgb in voc_colormap(NUM_CLASSES)))
        rng = np.random.default_rng(0)
        calibration = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(8)]
        export_tflite(model, spec, path, input_size=size, quantize="int8",
                      calibration_images=calibration,
                      input_multiple=input_multiple(model_name, options.get("output_stride")))
    return {"path": str(path), "parameters": model.count_params(),
            "multiply_adds": count_multiply_adds(model, size)}


def latency_ms(model_path: str, threads: int, repeats: int) -> float:
    """Median milliseconds of one prediction (frame in, class map out) in this process."""
    import numpy as np

    from pixelwise.inference import TFLiteSegmenter

    segmenter = TFLiteSegmenter(model_path, num_threads=threads)
    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 256, (*segmenter.input_size, 3), dtype=np.uint8)
              for _ in range(4)]
    for frame in frames[:2]:
        segmenter.predict(frame)
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        segmenter.predict(frames[index % len(frames)])
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def latency_in_fresh_process(model_path: str, threads: int, repeats: int) -> float:
    completed = subprocess.run(
        [sys.executable, __file__, "--time-model", model_path, "--threads", str(threads),
         "--repeats", str(repeats)], check=True, capture_output=True, text=True)
    return float(completed.stdout.strip().splitlines()[-1])


def markdown(arguments, models: dict[str, dict], rounds: list[dict[str, float]],
             load: float) -> str:
    from pixelwise.benchmark import machine_description

    reference = next(iter(arguments.reference), None)
    reference = reference.split("=", 1)[0] if reference else None
    lines = [f"### Road-model candidates: int8 latency at {arguments.size}, "
             f"{arguments.threads} thread(s)", "",
             f"{machine_description()}. "
             f"{len(rounds)} round(s), each model in a fresh process per round, order "
             f"rotating; median of {arguments.repeats} predictions per process; load average "
             f"{load:.2f} at the start. Random weights, {NUM_CLASSES} classes. Command: "
             f"`python benchmarks/mobile_latency.py {' '.join(arguments.argv)}`", "",
             "| model | parameters | multiply-adds | ms (median) | rounds' range | "
             + (f"over {reference} (per round) |" if reference else "|"),
             "| --- | --- | --- | --- | --- | " + ("--- |" if reference else "")]
    for name, figures in models.items():
        values = [one[name] for one in rounds]
        ratios = ([one[reference] / one[name] for one in rounds] if reference else [])
        ratio_text = (f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
                      if ratios else "")
        parameters = f"{figures['parameters']:,}" if "parameters" in figures else "-"
        macs = (f"{figures['multiply_adds'] / 1e9:.2f} G" if "multiply_adds" in figures
                else "-")
        lines.append(f"| {name} | {parameters} | {macs} | {statistics.median(values):.1f} | "
                     f"{min(values):.1f}-{max(values):.1f} | "
                     + (f"{ratio_text} |" if reference else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="360x480", help="HxW of the frames")
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help=f"comma-separated, of {', '.join(CANDIDATES)}")
    parser.add_argument("--reference", action="append", default=[],
                        help="NAME=FILE.tflite, timed beside the candidates; the first is "
                             "the ratios' reference")
    parser.add_argument("--models", type=Path, default=Path("/tmp/pixelwise-mobile-models"),
                        help="where the exported candidates are kept (reused when present)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--export-only", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--time-model", default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    arguments.argv = sys.argv[1:] if argv is None else argv
    if arguments.time_model:
        print(latency_ms(arguments.time_model, arguments.threads, arguments.repeats))
        return 0
    height, _, width = arguments.size.lower().partition("x")
    size = (int(height), int(width or height))
    names = [name for name in arguments.candidates.split(",") if name]
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidate(s) {', '.join(unknown)}")
    models: dict[str, dict] = {}
    for reference in arguments.reference:
        name, _, path = reference.partition("=")
        if not Path(path).is_file():
            parser.error(f"{path}: no such .tflite file for reference {name}")
        models[name] = {"path": path}
    arguments.models.mkdir(parents=True, exist_ok=True)
    for name in names:
        print(f"exporting {name} ...", flush=True)
        models[name] = export_candidate(name, size, arguments.models)
    if arguments.export_only:
        print(json.dumps(models, indent=2))
        return 0
    load = os.getloadavg()[0]
    order = list(models)
    rounds = []
    for index in range(arguments.rounds):
        shift = index % len(order)
        timed = {}
        for name in order[shift:] + order[:shift]:
            timed[name] = latency_in_fresh_process(models[name]["path"], arguments.threads,
                                                   arguments.repeats)
            print(f"round {index + 1}: {name} {timed[name]:.1f} ms", flush=True)
        rounds.append(timed)
    if arguments.json:
        arguments.json.write_text(json.dumps({"models": models, "rounds": rounds}, indent=2))
    text = markdown(arguments, models, rounds, load)
    print(text)
    if arguments.results:
        from pixelwise.benchmark import update_results_section

        update_results_section(arguments.results, f"mobile_latency_{size[0]}x{size[1]}", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
