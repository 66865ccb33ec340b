"""Input pipeline throughput: the textbook's tf.data pipeline against pixelwise's.

    python benchmarks/pipeline.py                  # 400 pairs, epochs of 1464, 1 and 2 cores
    python benchmarks/pipeline.py --images 16 --epoch-images 32 --rounds 1 \
        --out /tmp/RESULTS.md                      # a quick check

Generates VOC-sized data in a temporary folder (500x375 JPEGs with photo-like texture and
palette PNG annotations with VOC's 21 classes and 255 boundaries), listed in turn up to an
epoch of VOC 2012 train's size (passes of a few hundred images measured mostly tf.data's
start-up on 2 cores), prepares it as records, then measures training batches (384x384
crops, every augmentation) per second for

- textbook: the pipeline as the chapter has it: file names from a Python generator,
  JPEG decoded by TF, the annotation loaded with PIL through ``tf.numpy_function``,
  crop-or-resize, flip, hue/brightness/contrast, shuffle, batch, prefetch;
- ours, from the folder and from records (``pixelwise.data.pipeline.make_dataset``),

each on a first pass (no tf.data cache; one warm-up pass before, so both read files from
the page cache and pay no tracing) and, for the cached variants, a pass served from the
in-memory cache. Each figure is the median of ``--rounds`` passes, the pipelines taking
turns, so that a passing disturbance does not fall on one of them; the CPU time per image
(all threads of the process) is reported beside it. Each core count runs in its own
process pinned with ``os.sched_setaffinity`` before TensorFlow is imported, so TensorFlow
sizes its thread pools to the cores it may use. Figures and ratios go to ``--out`` (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
IMAGE_SIZE = (375, 500)  # height, width
VOC_TRAIN_IMAGES = 1464
GOAL_VS_TEXTBOOK = 1.5
GOAL_SCALING = 1.7


# --------------------------------------------------------------------------- data


def make_voc_sized_data(root: Path, count: int, seed: int = 0,
                        epoch_images: int | None = None) -> Path:
    """``count`` VOC-sized pairs in the VOC layout under ``root``; a train.txt lists them,
    and with ``epoch_images`` > ``count`` as many names, the later ones symbolic links to
    the ``count`` generated files in turn (an epoch of that size, without generating it)."""
    from PIL import Image, ImageDraw, ImageFilter

    from pixelwise.data.palette import write_label

    rng = np.random.default_rng(seed)
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    height, width = IMAGE_SIZE
    names = [f"bench_{index:05d}" for index in range(count)]
    for name in names:
        # Photo-like content: smooth colour fields plus fine noise, so JPEGs compress
        # (and decode) like VOC's ~100 kB photos rather than flat test patterns.
        coarse = rng.integers(0, 256, size=(height // 25, width // 25, 3), dtype=np.uint8)
        picture = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        noise = rng.normal(0, 18, size=(height, width, 3))
        pixels = np.clip(np.asarray(picture, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
        label_image = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(label_image)
        for _ in range(int(rng.integers(1, 4))):
            points = [(float(rng.uniform(0, width)), float(rng.uniform(0, height)))
                      for _ in range(int(rng.integers(3, 8)))]
            draw.polygon(points, fill=int(rng.integers(1, 21)), outline=255, width=5)
        Image.fromarray(pixels).filter(ImageFilter.SMOOTH).save(
            root / "JPEGImages" / f"{name}.jpg", quality=90)
        write_label(root / "SegmentationClass" / f"{name}.png", np.asarray(label_image))
    for index in range(count, epoch_images or count):
        name, original = f"bench_{index:05d}", names[index % count]
        (root / "JPEGImages" / f"{name}.jpg").symlink_to(f"{original}.jpg")
        (root / "SegmentationClass" / f"{name}.png").symlink_to(f"{original}.png")
        names.append(name)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(names) + "\n")
    return root


# --------------------------------------------------------------------------- pipelines


def textbook_dataset(voc_root: Path, *, batch_size: int, crop_size: int, seed: int):
    """The textbook's pipeline, written as the chapter has it (stateful random ops, PIL
    through ``tf.numpy_function`` for the annotations, a Python generator of file names)."""
    import tensorflow as tf
    from PIL import Image

    names = (voc_root / "ImageSets/Segmentation/train.txt").read_text().split()
    image_files = [str(voc_root / "JPEGImages" / f"{name}.jpg") for name in names]
    label_files = [str(voc_root / "SegmentationClass" / f"{name}.png") for name in names]

    def file_names():
        for image_file, label_file in zip(image_files, label_files):
            yield image_file, label_file

    def load_label(label_file):
        return np.asarray(Image.open(label_file.decode()), dtype=np.uint8)

    def parse(image_file, label_file):
        image = tf.io.decode_jpeg(tf.io.read_file(image_file), channels=3)
        image = tf.image.convert_image_dtype(image, tf.float32)
        label = tf.numpy_function(load_label, [label_file], tf.uint8)
        label.set_shape([None, None])
        return image, label[..., tf.newaxis]

    def resize(image, label, size):
        return (tf.image.resize(image, size),
                tf.image.resize(label, size, method=tf.image.ResizeMethod.NEAREST_NEIGHBOR))

    def augment(image, label):
        # Resize to a larger size then random crop, or plain resize, chosen at random.
        def resize_and_crop():
            larger = tf.cast(crop_size * tf.random.uniform([], 1.0, 1.25), tf.int32)
            big_image, big_label = resize(image, label, [larger, larger])
            stacked = tf.concat([big_image, tf.cast(big_label, tf.float32)], axis=-1)
            stacked = tf.image.random_crop(stacked, [crop_size, crop_size, 4])
            return stacked[..., :3], tf.cast(stacked[..., 3:], tf.uint8)

        image, label = tf.cond(tf.random.uniform([]) < 0.5, resize_and_crop,
                               lambda: resize(image, label, [crop_size, crop_size]))
        stacked = tf.concat([image, tf.cast(label, tf.float32)], axis=-1)
        stacked = tf.image.random_flip_left_right(stacked)
        image, label = stacked[..., :3], tf.cast(stacked[..., 3], tf.uint8)
        image = tf.image.random_hue(image, 0.1)
        image = tf.image.random_brightness(image, 0.1)
        image = tf.image.random_contrast(image, 0.8, 1.2)
        return tf.clip_by_value(image, 0.0, 1.0) * 255.0, label

    dataset = tf.data.Dataset.from_generator(
        file_names, output_signature=(tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.string)))
    dataset = dataset.shuffle(1000, seed=seed)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def ours_dataset(source: Path, *, batch_size: int, crop_size: int, seed: int, cache: bool):
    from pixelwise.data.pipeline import make_dataset

    return make_dataset(source, "train", batch_size=batch_size, input_size=crop_size,
                        training=True, seed=seed, augment="textbook",
                        cache="memory" if cache else None, drop_remainder=False)


def one_pass(dataset) -> dict[str, float]:
    """One full pass over ``dataset``: images per second (wall clock) and the process's CPU
    milliseconds per image (every thread's; less disturbed by other processes than the
    wall clock)."""
    count = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for images, _ in dataset:
        count += int(images.shape[0])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"images_per_second": count / wall, "cpu_ms_per_image": 1000 * cpu / count}


def median_passes(datasets: dict, rounds: int) -> dict:
    """Per dataset, the pass with the median throughput over ``rounds`` passes, the
    datasets taking turns so that a disturbance spreads over all of them (one warm-up pass
    each before: tracing, thread pools, page cache, filling a cache)."""
    for dataset in datasets.values():
        one_pass(dataset)
    passes = {key: [] for key in datasets}
    for _ in range(rounds):
        for key, dataset in datasets.items():
            passes[key].append(one_pass(dataset))
    return {key: sorted(runs, key=lambda run: run["images_per_second"])[len(runs) // 2]
            for key, runs in passes.items()}


# --------------------------------------------------------------------------- worker


def run_worker(arguments: argparse.Namespace) -> None:
    """Measure every variant on the cores given (pinned before TensorFlow loads)."""
    cpus = [int(cpu) for cpu in arguments.cpus.split(",")]
    os.sched_setaffinity(0, cpus)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # noqa: F401  (after pinning: thread pools follow the affinity)

    settings = dict(batch_size=arguments.batch_size, crop_size=arguments.crop, seed=0)
    folder, records = Path(arguments.data), Path(arguments.records)
    datasets = {
        ("textbook", "folder", "first"): textbook_dataset(folder, **settings),
        ("ours", "folder", "first"): ours_dataset(folder, cache=False, **settings),
        ("ours", "records", "first"): ours_dataset(records, cache=False, **settings),
        ("ours", "folder", "cached"): ours_dataset(folder, cache=True, **settings),
        ("ours", "records", "cached"): ours_dataset(records, cache=True, **settings),
    }
    medians = median_passes(datasets, arguments.rounds)
    results = [{"pipeline": pipeline, "source": source, "pass": passed, **medians[key]}
               for key in datasets for pipeline, source, passed in [key]]
    print(json.dumps({"cores": len(cpus), "results": results}))


# --------------------------------------------------------------------------- report


def measure(arguments: argparse.Namespace, cores: int, folder: Path, records: Path) -> dict:
    available = sorted(os.sched_getaffinity(0))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker",
               "--cpus", ",".join(str(cpu) for cpu in available[:cores]),
               "--data", str(folder), "--records", str(records),
               "--batch-size", str(arguments.batch_size), "--crop", str(arguments.crop),
               "--rounds", str(arguments.rounds)]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise RuntimeError(f"worker on {cores} core(s) failed:\n{finished.stderr[-4000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def write_report(path: Path, arguments: argparse.Namespace, by_cores: dict[int, dict]) -> str:
    from pixelwise.benchmark import cpu_name, update_results_section

    def figure(cores, pipeline, source, passed, key="images_per_second"):
        for result in by_cores.get(cores, {}).get("results", []):
            if (result["pipeline"], result["source"], result["pass"]) == (pipeline, source,
                                                                         passed):
                return result[key]
        return None

    def ratio(numerator, denominator):
        return f"{numerator / denominator:.2f}x" if numerator and denominator else "n/a"

    core_counts = sorted(by_cores)
    rows = [("textbook", "folder", "first"), ("ours", "folder", "first"),
            ("ours", "records", "first"), ("ours", "folder", "cached"),
            ("ours", "records", "cached")]
    lines = [
        "## Input pipeline throughput",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `python benchmarks/"
        f"pipeline.py --images {arguments.images} --epoch-images {arguments.epoch_images} "
        f"--batch-size {arguments.batch_size} "
        f"--crop {arguments.crop} --rounds {arguments.rounds}` on "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical CPUs ({cpu_name()}).",
        "",
        f"{arguments.images} VOC-sized pairs (500x375 JPEG + palette PNG) read as an epoch of "
        f"{arguments.epoch_images} images (VOC 2012 train's size; the pairs in turn, every "
        "one decoded each time), "
        f"{arguments.crop}x{arguments.crop} training crops with every augmentation "
        f"(crop-or-resize, flip, hue, brightness, contrast), batches of {arguments.batch_size}. "
        f"Images per second: the median of {arguments.rounds} passes, the pipelines taking "
        "turns, after a warm-up pass each; in brackets the process's CPU milliseconds per "
        "image in that pass (all threads). \"cached\" is a pass served from the in-memory "
        "cache of decoded examples. The textbook's hue jitter is "
        "`tf.image.random_hue` (HSV); ours turns hue in YIQ, folded with brightness and "
        "contrast into one affine colour map (`pixelwise.data.pipeline.jitter_colors`).",
        "",
        "| pipeline | source | pass | " + " | ".join(f"{c} core{'s' * (c > 1)}"
                                                     for c in core_counts) + " | scaling |",
        "|---|---|---|" + "---:|" * len(core_counts) + "---:|",
    ]
    for pipeline, source, passed in rows:
        figures = [figure(c, pipeline, source, passed) for c in core_counts]
        cpu = [figure(c, pipeline, source, passed, "cpu_ms_per_image") for c in core_counts]
        cells = [f"{value:.0f} ({ms:.1f} ms)" if value else "n/a"
                 for value, ms in zip(figures, cpu)]
        scaling = ratio(figures[-1], figures[0]) if len(figures) > 1 else "n/a"
        lines.append(f"| {pipeline} | {source} | {passed} | " + " | ".join(cells)
                     + f" | {scaling} |")
    most = core_counts[-1]
    textbook = figure(most, "textbook", "folder", "first")
    lines += ["", f"Goals ({most} cores unless said):", ""]
    for source in ("folder", "records"):
        ours = figure(most, "ours", source, "first")
        met = ours and textbook and ours / textbook >= GOAL_VS_TEXTBOOK
        lines.append(f"- ours from {source} / textbook, first pass: {ratio(ours, textbook)} "
                     f"(goal >= {GOAL_VS_TEXTBOOK}x: {'met' if met else 'not met'})")
    if len(core_counts) > 1:
        for source in ("folder", "records"):
            low = figure(core_counts[0], "ours", source, "first")
            high = figure(most, "ours", source, "first")
            met = low and high and high / low >= GOAL_SCALING
            lines.append(f"- ours from {source}, {most} cores / {core_counts[0]} core: "
                         f"{ratio(high, low)} (goal >= {GOAL_SCALING}x: "
                         f"{'met' if met else 'not met'})")
    text = "\n".join(lines) + "\n"
    update_results_section(path, "pipeline", text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400, help="Pairs to generate.")
    parser.add_argument("--epoch-images", type=int, default=VOC_TRAIN_IMAGES,
                        help="Images per pass (default: VOC 2012 train's 1,464): short "
                        "passes are dominated by tf.data's start-up on several cores.")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=384, help="Training crop side.")
    parser.add_argument("--rounds", type=int, default=3,
                        help="Timed passes per pipeline; the median is reported.")
    parser.add_argument("--cores", default="1,2", help="Core counts to measure, e.g. 1,2.")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cpus", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--records", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        run_worker(arguments)
        return
    core_counts = sorted({int(cores) for cores in arguments.cores.split(",")})
    available = len(os.sched_getaffinity(0))
    if core_counts[-1] > available:
        raise SystemExit(f"--cores asks for {core_counts[-1]} cores; this process may use "
                         f"{available}")
    with tempfile.TemporaryDirectory(prefix="pixelwise-bench-") as scratch:
        folder = make_voc_sized_data(Path(scratch) / "voc", arguments.images,
                                     epoch_images=max(arguments.epoch_images, arguments.images))
        records = Path(scratch) / "records"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from pixelwise.data.records import prepare_records

        prepare_records(folder, records, ("train",))
        by_cores = {}
        for cores in core_counts:
            print(f"measuring on {cores} core(s) ...", flush=True)
            by_cores[cores] = measure(arguments, cores, folder, records)
    print(write_report(arguments.out, arguments, by_cores))


if __name__ == "__main__":
    main()
