"""Our model's speed in its variants, one after the other, with the ratios between them.

Each variant runs as its own ``pixelwise benchmark`` process (so each peak-memory figure is
its own), one at a time:

- ``fused``: the default model: fused batch norm, float32; also XLA inference and TFLite
  latency (1 and 2 threads) and the machine's float32 FLOP rate;
- ``unfused``: Keras's own BatchNormalization (``--no-fused-batchnorm``);
- ``bf16``: fused batch norm under ``mixed_bfloat16``.

It writes the variants' JSON (``--json``) and a section of ``benchmarks/RESULTS.md`` with
every figure and the ratios fused / unfused, bf16 / float32 and XLA / plain inference.

Full run (on a quiet machine, about 15 minutes for DeepLab v3 ResNet-50 at 384):

    python benchmarks/models.py --input-size 384 --batch-size 8 \\
        --json benchmarks/results/models_384.json --results benchmarks/RESULTS.md

Smoke test (seconds):

    python benchmarks/models.py --backbone mobilenetv2 --width-multiplier 0.35 \\
        --input-size 64 --batch-size 2 --quick --json /tmp/models.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {
    "fused": ["--fused-batchnorm", "--xla"],
    "unfused": ["--no-fused-batchnorm", "--tflite-threads", "none", "--matmul-size", "0"],
    "bf16": ["--precision", "mixed_bfloat16", "--tflite-threads", "none", "--matmul-size", "0"],
}
QUICK = ["--latency-repeats", "2", "--throughput-repeats", "1", "--matmul-size", "256",
         "--tflite-threads", "1"]


def run_variant(name: str, common: list[str], quick: bool) -> dict:
    """Run ``pixelwise benchmark`` for one variant in a new process; its JSON result."""
    with tempfile.TemporaryDirectory() as folder:
        json_path = Path(folder) / f"{name}.json"
        # Later options win in click, so the variant's own settings come last.
        command = [sys.executable, "-m", "pixelwise", "benchmark", *common,
                   *(QUICK if quick else []), *VARIANTS[name], "--json", str(json_path)]
        print(f"== {name}: {shlex.join(command[1:])}", flush=True)
        subprocess.run(command, check=True)
        result = json.loads(json_path.read_text())
    result["command"] = shlex.join(["pixelwise", *command[3:-2]])
    return result


def ratios(results: dict[str, dict]) -> dict[str, float]:
    """Speed ratios between the variants that were run (> 1: the first is faster)."""
    found = {}

    def add(label: str, numerator: float | None, denominator: float | None) -> None:
        if numerator and denominator:
            found[label] = numerator / denominator

    fused, unfused, bf16 = (results.get(name) for name in ("fused", "unfused", "bf16"))
    for kind in ("training", "inference"):
        if fused and unfused:
            add(f"{kind}: fused / unfused BN", fused[kind]["images_per_second"],
                unfused[kind]["images_per_second"])
        if fused and bf16:
            add(f"{kind}: bf16 / float32", bf16[kind]["images_per_second"],
                fused[kind]["images_per_second"])
    if fused and fused.get("xla_inference"):
        add("inference: XLA / plain", fused["xla_inference"]["images_per_second"],
            fused["inference"]["images_per_second"])
        add("batch-1 latency: plain / XLA", fused["inference"]["latency_ms"],
            fused["xla_inference"]["latency_ms"])
    return found


def markdown(results: dict[str, dict], found: dict[str, float], command: str) -> str:
    first = next(iter(results.values()))
    settings, environment = first["settings"], first["environment"]
    height, width = settings["input_size"]
    lines = [f"### {settings['model']} / {settings['backbone']}, {height}x{width}, batch "
             f"{settings['batch_size']}: variants",
             "",
             f"{environment['cpu']} ({environment['cpu_count']} CPUs), TF "
             f"{environment['tensorflow']}, Keras {environment['keras']}. Command: "
             f"`{command}`",
             "",
             "| variant | inference batch 1 (ms) | inference (images/s) | training (images/s) "
             "| peak RSS training (MB) | load average |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, result in results.items():
        lines.append(
            f"| {name} | {result['inference']['latency_ms']:.0f} | "
            f"{result['inference']['images_per_second']:.2f} | "
            f"{result['training']['images_per_second']:.2f} | "
            f"{result['memory_mb']['after_training']:.0f} | "
            f"{result['environment']['load_average_before']} |")
    fused = results.get("fused")
    if fused:
        if fused.get("xla_inference"):
            lines.append(f"| fused, XLA inference | {fused['xla_inference']['latency_ms']:.0f} | "
                         f"{fused['xla_inference']['images_per_second']:.2f} | | | |")
        extra = [f"TFLite batch 1: {threads} thread(s) {latency:.0f} ms"
                 for threads, latency in fused["tflite_latency_ms"].items()]
        if fused.get("flop_rate"):
            extra.append(f"float32 matmul {fused['flop_rate'] / 1e9:.1f} GFLOP/s")
            executed = fused.get("fraction_of_executed_limit", {})
            extra += [f"{name} at {value:.1%} of the limit" + (
                f" ({executed[name]:.1%} for the executed multiply-adds)" if name in executed
                else "") for name, value in fused["fraction_of_limit"].items()]
        extra.append(f"{fused['parameters']:,} parameters, "
                     f"{fused['multiply_adds'] / 1e9:.1f} G multiply-adds per image")
        if fused.get("executed_multiply_adds") not in (None, fused["multiply_adds"]):
            extra[-1] += (f" ({fused['executed_multiply_adds'] / 1e9:.1f} G executed: the "
                          "atrous convolutions skip the taps that only read padding)")
        lines += ["", "; ".join(extra) + "."]
    if found:
        lines += ["", "| ratio | value |", "| --- | --- |"]
        lines += [f"| {label} | {value:.2f} |" for label, value in found.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="deeplabv3")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--output-stride", default=None)
    parser.add_argument("--width-multiplier", default="1.0")
    parser.add_argument("--input-size", default="384")
    parser.add_argument("--batch-size", default="8")
    parser.add_argument("--train-steps", default="3")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke test")
    parser.add_argument("--json", dest="json_path", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=None,
                        help="Markdown file whose section to write, e.g. benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    common = [args.model, "--backbone", args.backbone, "--width-multiplier",
              args.width_multiplier, "--input-size", args.input_size, "--batch-size",
              args.batch_size, "--train-steps", "1" if args.quick else args.train_steps]
    if args.output_stride:
        common += ["--output-stride", args.output_stride]
    results = {name: run_variant(name, common, args.quick) for name in names}
    found = ratios(results)
    for label, value in found.items():
        print(f"{label}: {value:.2f}")
    if args.json_path:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps({"variants": results, "ratios": found}, indent=2))
    if args.results:
        from pixelwise.benchmark import update_results_section

        command = shlex.join(["python", "benchmarks/models.py", *(argv or sys.argv[1:])])
        height_width = args.input_size.replace("x", "_")
        update_results_section(args.results, f"variants_{args.model}_{args.backbone}_{height_width}",
                               markdown(results, found, command))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    sys.exit(main())
