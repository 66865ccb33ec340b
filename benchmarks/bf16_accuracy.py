"""Does bfloat16 mixed precision keep the accuracy? The demo's training in float32 and in
``mixed_bfloat16``, same data, same seeds, test mean IoU side by side.

Each (seed, precision) pair is one ``pixelwise.demo.run_demo`` (DeepLab v3 ResNet-50 from
random weights on the synthetic dataset, evaluated on its test split) in its own folder.
The spread between seeds at one precision is the noise the precision difference must be
read against; the script prints both.

Full run (quiet machine; a float32 demo takes about 20 minutes on 2 cores, bfloat16 about
half where the CPU has it natively):

    python benchmarks/bf16_accuracy.py --out runs/bf16-accuracy --seeds 0,1 \\
        --json benchmarks/results/bf16_accuracy.json --results benchmarks/RESULTS.md

Smoke test (a minute; the scores mean nothing):

    python benchmarks/bf16_accuracy.py --out /tmp/bf16 --seeds 0 --num-images 12 \\
        --size 32 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

PRECISIONS = {"float32": None, "bfloat16": "bfloat16"}


def run_pair(out: Path, seed: int, args) -> dict[str, dict]:
    from pixelwise.demo import run_demo

    results = {}
    for name, policy in PRECISIONS.items():
        folder = out / f"seed{seed}-{name}"
        print(f"== seed {seed}, {name}: {folder}", flush=True)
        result = run_demo(folder, num_images=args.num_images, size=args.size, seed=seed,
                          epochs=args.epochs, mixed_precision=policy, progress=False,
                          echo=lambda line: print(f"   {line}", flush=True))
        summary = json.loads((folder / "demo_summary.json").read_text())
        results[name] = {key: summary[key] for key in (
            "test_mean_iou", "test_pixel_accuracy", "test_mean_accuracy",
            "best_val_mean_iou", "epochs_done", "wall_seconds")}
        del result
    return results


def markdown(runs: dict[int, dict[str, dict]], command: str) -> str:
    lines = ["### bfloat16 mixed precision against float32: accuracy (the demo's training)",
             "", f"Command: `{command}`", "",
             "| seed | float32 test mIoU | bfloat16 test mIoU | difference | float32 time (s) "
             "| bfloat16 time (s) |", "| --- | --- | --- | --- | --- | --- |"]
    for seed, pair in runs.items():
        f32, bf16 = pair["float32"], pair["bfloat16"]
        lines.append(f"| {seed} | {f32['test_mean_iou']:.4f} | {bf16['test_mean_iou']:.4f} | "
                     f"{bf16['test_mean_iou'] - f32['test_mean_iou']:+.4f} | "
                     f"{f32['wall_seconds']:.0f} | {bf16['wall_seconds']:.0f} |")
    differences = [pair["bfloat16"]["test_mean_iou"] - pair["float32"]["test_mean_iou"]
                   for pair in runs.values()]
    lines += ["", f"Mean difference bfloat16 - float32: {100 * statistics.mean(differences):+.1f} "
              "mIoU points."]
    if len(runs) > 1:
        spread = statistics.stdev(pair["float32"]["test_mean_iou"] for pair in runs.values())
        lines[-1] += (f" The float32 scores of the seeds spread by {100 * spread:.1f} points "
                      "(standard deviation), the noise a precision difference is read against.")
    lines += ["", "The times are whole demo commands (data, training, evaluation, pictures) "
              "and only indicative where other work shared the machine; the speed ratio "
              "bfloat16 / float32 is measured on its own by `benchmarks/models.py`."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the demo runs")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--num-images", type=int, default=300)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--json", dest="json_path", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    runs = {seed: run_pair(args.out, seed, args) for seed in seeds}
    differences = [pair["bfloat16"]["test_mean_iou"] - pair["float32"]["test_mean_iou"]
                   for pair in runs.values()]
    float32_scores = [pair["float32"]["test_mean_iou"] for pair in runs.values()]
    print("bfloat16 - float32 test mIoU per seed: "
          + ", ".join(f"{value:+.4f}" for value in differences))
    if len(seeds) > 1:
        print(f"float32 spread across seeds (stdev): {statistics.stdev(float32_scores):.4f}")
    if args.json_path:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps({"runs": runs, "differences": differences},
                                             indent=2))
    if args.results:
        from pixelwise.benchmark import update_results_section

        command = shlex.join(["python", "benchmarks/bf16_accuracy.py", *(argv or sys.argv[1:])])
        update_results_section(args.results, "bf16-accuracy", markdown(runs, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
