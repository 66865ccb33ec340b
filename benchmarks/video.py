"""Video frames/s end to end (decode to overlay written) and the flicker of the class maps,
with and without temporal smoothing.

    python benchmarks/video.py --model benchmarks/camvid/run      # a CamVid test sequence
    python benchmarks/video.py --model model_int8.tflite --video drive.mp4 --threads 1,2
    python benchmarks/video.py --model RUN --max-frames 3 --out /tmp/RESULTS.md   # smoke run

Without ``--video`` the frames of one CamVid test sequence (``--sequence``, default the
longest in ``--camvid``: PNGs named SEQUENCE_FRAME.png) are rendered once into a lossless
FFV1 video in a temporary folder (nothing is kept or committed). Each configuration runs
``pixelwise.video.run_video`` in a fresh process, so TensorFlow's (or the TFLite
interpreter's) thread count can be set before it starts: at each of ``--threads`` with the
reader thread decoding ahead, once without it (does overlapping decode pay?), and once
with ``--smooth`` for the flicker (the share of pixels that change class between
consecutive frames) with smoothing beside the flicker without. Frames/s is frames over
the wall time from the first frame asked for to the last written; the latency is per
frame (median and 95th percentile). Figures go to standard output as JSON and into their
own section of ``--out``. Nothing is asserted on time: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CAMVID_TEST = Path("/work/camvid/CamVid/test")
CAMVID_RATE = 30.0
DEFAULT_SMOOTH = 0.5


def render_sequence(folder: Path, sequence: str | None, destination: Path,
                    max_frames: int | None) -> tuple[Path, str]:
    """The PNG frames of one sequence of ``folder`` as an FFV1 .mkv; (path, sequence)."""
    import numpy as np
    from PIL import Image

    from pixelwise.video import opencv

    frames = sorted(folder.glob("*.png"))
    if not frames:
        raise SystemExit(f"{folder}: no PNG frames")
    sequences = Counter(path.name.split("_")[0] for path in frames)
    sequence = sequence or sequences.most_common(1)[0][0]
    chosen = [path for path in frames if path.name.split("_")[0] == sequence][:max_frames]
    if not chosen:
        raise SystemExit(f"{folder}: no frames of sequence {sequence!r} "
                         f"({', '.join(sorted(sequences))})")
    cv2 = opencv()
    first = np.asarray(Image.open(chosen[0]).convert("RGB"))
    writer = cv2.VideoWriter(str(destination), cv2.VideoWriter_fourcc(*"FFV1"), CAMVID_RATE,
                             (first.shape[1], first.shape[0]))
    for path in chosen:
        writer.write(cv2.cvtColor(np.asarray(Image.open(path).convert("RGB")),
                                  cv2.COLOR_RGB2BGR))
    writer.release()
    return destination, sequence


def worker(arguments: argparse.Namespace) -> None:
    """One configuration in this process: prints run_video's summary as JSON."""
    from pixelwise.predict import open_model
    from pixelwise.video import open_video, run_video

    segmenter = open_model(arguments.model, num_threads=arguments.threads)
    with tempfile.TemporaryDirectory() as out, open_video(arguments.video) as source:
        result = run_video(segmenter, source, out, "bench", smooth=arguments.smooth,
                           max_frames=arguments.max_frames, prefetch=arguments.prefetch,
                           progress=False, echo=lambda line: print(line, file=sys.stderr))
    print(json.dumps(result.summary))


def run_configuration(arguments: argparse.Namespace, video: Path, *, threads: int,
                      prefetch: bool, smooth: float | None) -> dict:
    command = [sys.executable, __file__, "--worker", "--model", str(arguments.model),
               "--video", str(video), "--threads", str(threads),
               "--prefetch" if prefetch else "--no-prefetch"]
    if smooth is not None:
        command += ["--smooth", str(smooth)]
    if arguments.max_frames:
        command += ["--max-frames", str(arguments.max_frames)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"threads": threads, "prefetch": prefetch, "smooth": smooth, **summary}


def result_markdown(result: dict, command: str) -> str:
    lines = [f"## Video: {result['model']} on {result['video']}", "", f"`{command}`", "",
             f"{result['frames']} frames of {result['size'][0]}x{result['size'][1]}, "
             f"{os.cpu_count()} logical CPUs.", "",
             "| threads | reader thread | smoothing | frames/s | latency median ms | "
             "p95 ms | flicker |", "|---|---|---|---|---|---|---|"]
    for row in result["runs"]:
        latency = row["latency_ms"] or {"median": float("nan"), "p95": float("nan")}
        lines.append(f"| {row['threads']} | {'yes' if row['prefetch'] else 'no'} | "
                     f"{row['smooth'] if row['smooth'] is not None else 'off'} | "
                     f"{row['frames_per_second']} | {latency['median']} | {latency['p95']} | "
                     f"{row['flicker'] if row['flicker'] is None else round(row['flicker'], 4)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path,
                        help="Run folder, .keras, SavedModel or .tflite.")
    parser.add_argument("--video", type=Path, help="A video (default: a CamVid sequence).")
    parser.add_argument("--camvid", type=Path, default=DEFAULT_CAMVID_TEST,
                        help="CamVid test frames (PNGs) to render a video from.")
    parser.add_argument("--sequence", help="CamVid sequence prefix (default: the longest).")
    parser.add_argument("--threads", default="1,2", help="Comma-separated thread counts.")
    parser.add_argument("--smooth", type=float, default=None,
                        help=f"Smoothing alpha for the flicker run (default {DEFAULT_SMOOTH}).")
    parser.add_argument("--max-frames", type=int, help="Only the first N frames.")
    parser.add_argument("--prefetch", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="Also write the figures as JSON here.")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    arguments = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if arguments.worker:
        arguments.threads = int(arguments.threads)
        return worker(arguments)
    from pixelwise.benchmark_results import publish_figures
    from pixelwise.video import open_video

    threads = [int(count) for count in arguments.threads.split(",")]
    with tempfile.TemporaryDirectory() as scratch:
        video, name = arguments.video, str(arguments.video)
        if video is None:
            video, sequence = render_sequence(arguments.camvid, arguments.sequence,
                                              Path(scratch) / "camvid.mkv", arguments.max_frames)
            name = f"CamVid test sequence {sequence}"
        with open_video(video) as source:
            info = source.info
        runs = [run_configuration(arguments, video, threads=count, prefetch=True, smooth=None)
                for count in threads]
        runs.append(run_configuration(arguments, video, threads=threads[-1], prefetch=False,
                                      smooth=None))
        runs.append(run_configuration(arguments, video, threads=threads[-1], prefetch=True,
                                      smooth=arguments.smooth or DEFAULT_SMOOTH))
    result = {"model": str(arguments.model), "video": name, "size": list(info.size),
              "frames": runs[0]["frames"], "runs": runs}
    command = "python benchmarks/video.py " + " ".join(sys.argv[1:])
    publish_figures(result, markdown=result_markdown(result, command.strip()),
                    results_path=arguments.out, section=f"video-{Path(arguments.model).name}",
                    json_path=arguments.json)


if __name__ == "__main__":
    main()
