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

each on a first pass (no tf.data cache) and, for the cached variants, a pass served from
the in-memory cache of decoded examples. One worker process per core count, pinned with
``os.sched_setaffinity`` before TensorFlow is imported (so TensorFlow sizes its thread
pools to the cores it may use), builds every pipeline and makes a warm-up pass of each
(tracing, thread pools, page cache, filling the caches). Then ``--rounds`` rounds time one
pass of every pipeline on every core count, a pipeline's passes on the core counts back
to back, only one process running at a time: this machine's speed drifts by half within
minutes (the host's load), so only passes seconds apart compare well. Figures are the
median pass with its CPU time per image (all threads); ratios are the median over rounds
of the ratio within a round. Last, the machine's own scaling is probed with a numpy
kernel on 1 core and on every core at once, cache-resident and streaming from memory.
Figures and ratios go to ``--out`` (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
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
PIPELINES = [("textbook", "folder", "first"), ("ours", "folder", "first"),
             ("ours", "records", "first"), ("ours", "folder", "cached"),
             ("ours", "records", "cached")]  # (pipeline, source, pass)


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


# --------------------------------------------------------------------------- workers


def this_script(*arguments: str) -> list[str]:
    """The command that runs this script with ``arguments`` (workers and probes)."""
    return [sys.executable, str(Path(__file__).resolve()), *arguments]


def run_worker(arguments: argparse.Namespace) -> None:
    """A measuring process on the cores given (pinned before TensorFlow loads, so its thread
    pools follow the affinity): builds every pipeline (PIPELINES), makes one warm-up pass of
    each (tracing, thread pools, page cache, filling the caches), says "ready", then times
    one pass of pipeline i whenever its standard input says "pass i"."""
    cpus = [int(cpu) for cpu in arguments.cpus.split(",")]
    os.sched_setaffinity(0, cpus)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # noqa: F401  (after pinning: thread pools follow the affinity)

    settings = dict(batch_size=arguments.batch_size, crop_size=arguments.crop, seed=0)
    folder, records = Path(arguments.data), Path(arguments.records)
    datasets = []
    for pipeline, source, passed in PIPELINES:
        if pipeline == "textbook":
            datasets.append(textbook_dataset(folder, **settings))
        else:
            datasets.append(ours_dataset(folder if source == "folder" else records,
                                         cache=passed == "cached", **settings))
    for dataset in datasets:
        one_pass(dataset)
    print("ready", flush=True)
    for command in sys.stdin:
        word, _, index = command.partition(" ")
        if word != "pass":
            break
        print(json.dumps(one_pass(datasets[int(index)])), flush=True)


class Worker:
    """The parent's handle on a ``run_worker`` process pinned to ``cores`` CPUs."""

    def __init__(self, arguments: argparse.Namespace, cores: int, folder: Path,
                 records: Path, log: Path):
        available = sorted(os.sched_getaffinity(0))
        cpus = ",".join(str(cpu) for cpu in available[:cores])
        command = this_script("--worker", "--cpus", cpus,
                              "--data", str(folder), "--records", str(records),
                              "--batch-size", str(arguments.batch_size),
                              "--crop", str(arguments.crop))
        self.cores, self.log = cores, log
        with open(log, "w") as stderr:  # a file: a full pipe would stall TensorFlow's logging
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=stderr, text=True)

    def _answer(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker on {self.cores} core(s) failed:\n"
                               f"{self.log.read_text()[-4000:]}")
        return line.strip()

    def wait_ready(self) -> None:
        while self._answer() != "ready":
            pass

    def time_pass(self, index: int) -> dict:
        """One timed pass of PIPELINES[index]."""
        self.process.stdin.write(f"pass {index}\n")
        self.process.stdin.flush()
        return json.loads(self._answer())

    def close(self) -> None:
        """End of input ends the worker; one that does not end in a minute is killed."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def host_speed_ms() -> float:
    """Milliseconds of CPU time a fixed pure-Python loop takes on one core: a probe of how
    fast this (virtual) machine runs at the moment, which varies with the host's load."""
    start = time.process_time()
    total = 0
    for value in range(2_000_000):
        total += value * value
    return 1000 * (time.process_time() - start)


# Float32 elements per array of the machine probe: two arrays of 1.8 MB stay in the
# caches; two of 64 MB stream from memory. Both kinds do the same arithmetic in all.
PROBE_ELEMENTS = {"cache-resident": 384 * 384 * 3, "memory-streaming": 16_000_000}
PROBE_WORK = 2_000_000_000  # elements processed per probe (about 0.5 s and 2 s here)


def run_probe(arguments: argparse.Namespace) -> None:
    """One probe process: a fixed numpy kernel on the core given; prints its seconds."""
    os.sched_setaffinity(0, [int(arguments.cpus)])
    elements = PROBE_ELEMENTS[arguments.probe]
    values = np.random.default_rng(0).random(elements, dtype=np.float32)
    scratch = np.empty_like(values)
    start = time.perf_counter()
    for _ in range(PROBE_WORK // elements):
        np.multiply(values, 1.0001, out=scratch)
        np.add(scratch, 1.0, out=values)
    print(time.perf_counter() - start)


def machine_scaling(cores: int, trials: int) -> dict[str, list[float]]:
    """This machine's own throughput scaling from 1 core to ``cores``, per probe kind and
    trial: ``cores`` probe processes at once, each pinned to its own core, against one alone
    (the two back to back). Shows what the hardware gives work that stays in the caches and
    work that streams from memory, whatever the software."""
    available = sorted(os.sched_getaffinity(0))[:cores]

    def seconds(cpus, kind):
        processes = [subprocess.Popen(this_script("--probe", kind, "--cpus", str(cpu)),
                                      stdout=subprocess.PIPE, text=True) for cpu in cpus]
        return [float(process.communicate()[0]) for process in processes]

    scaling = {kind: [] for kind in PROBE_ELEMENTS}
    for trial in range(trials):
        for kind in PROBE_ELEMENTS:
            alone = seconds([available[trial % len(available)]], kind)[0]
            together = seconds(available, kind)
            scaling[kind].append(sum(alone / each for each in together))
    return scaling


def measure(arguments: argparse.Namespace, core_counts: list[int], folder: Path,
            records: Path, scratch: Path) -> dict:
    """Every pipeline on every core count, ``arguments.rounds`` times.

    One worker process per core count stays alive throughout and only one runs at a time.
    Each round takes the pipelines in turn, and each pipeline's pass on every core count
    follows the one before within seconds (1 then 2 cores, or 2 then 1, alternating), so
    that the host's drifting speed falls on every core count alike rather than on
    whichever ran last. Returns {"passes": {cores: {key: [pass per round]}}, "host_ms":
    [a host_speed_ms probe per round]}.
    """
    workers = []
    try:
        for cores in core_counts:  # warm up one at a time
            print(f"warming up on {cores} core(s) ...", flush=True)
            worker = Worker(arguments, cores, folder, records, scratch / f"worker{cores}.log")
            workers.append(worker)
            worker.wait_ready()
        passes = {cores: {key: [] for key in PIPELINES} for cores in core_counts}
        host_ms = []
        for round_index in range(arguments.rounds):
            print(f"round {round_index + 1} of {arguments.rounds} ...", flush=True)
            host_ms.append(host_speed_ms())
            for index, key in enumerate(PIPELINES):
                turn = workers if (round_index + index) % 2 == 0 else workers[::-1]
                for worker in turn:
                    passes[worker.cores][key].append(worker.time_pass(index))
        return {"passes": passes, "host_ms": host_ms}
    finally:
        for worker in workers:
            worker.close()


# --------------------------------------------------------------------------- report


def write_report(path: Path, arguments: argparse.Namespace, measured: dict) -> str:
    """The figures, ratios and goals as RESULTS.md's pipeline section; returns the text.

    Throughputs are each pipeline's median pass. Ratios are the median over rounds of the
    ratio within a round (passes minutes apart on a host whose speed drifts compare less
    well than passes seconds apart).
    """
    from pixelwise.benchmark import cpu_name, update_results_section

    passes, host_ms = measured["passes"], measured["host_ms"]
    core_counts = sorted(passes)

    def median(values):
        return statistics.median_high(values) if values else None

    def median_pass(cores, key):
        runs = sorted(passes[cores][key], key=lambda run: run["images_per_second"])
        return runs[len(runs) // 2] if runs else None

    def round_ratios(numerator, denominator):
        """Throughput of (cores, key) over that of (cores, key), within each round."""
        return [high["images_per_second"] / low["images_per_second"]
                for high, low in zip(passes[numerator[0]][numerator[1]],
                                     passes[denominator[0]][denominator[1]])]

    def spread(values):
        return f"{min(values):.2f}-{max(values):.2f}x" if values else "n/a"

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
        "One process per core count, pinned before TensorFlow loads; after a warm-up pass "
        f"of each pipeline, {arguments.rounds} rounds, each timing one pass of every "
        "pipeline on every core count, a pipeline's passes on the core counts back to back "
        "(order alternating), so that the host's drifting speed falls on every core count "
        "alike. Images per second of the median pass; in brackets "
        "the process's CPU milliseconds per image in that pass (all threads). Ratios: the "
        "median over rounds of the ratio within a round. \"cached\" is a pass served from "
        "the in-memory cache of decoded examples. The textbook's hue jitter is "
        "`tf.image.random_hue` (HSV); ours turns hue in YIQ, folded with brightness and "
        "contrast into one affine colour map (`pixelwise.data.transforms.jitter_colors`).",
        "",
        "| pipeline | source | pass | " + " | ".join(f"{c} core{'s' * (c > 1)}"
                                                     for c in core_counts) + " | scaling |",
        "|---|---|---|" + "---:|" * len(core_counts) + "---:|",
    ]
    low_cores, most = core_counts[0], core_counts[-1]
    for key in PIPELINES:
        cells = []
        for cores in core_counts:
            run = median_pass(cores, key)
            cells.append(f"{run['images_per_second']:.0f} ({run['cpu_ms_per_image']:.1f} ms)"
                         if run else "n/a")
        scaling = (median(round_ratios((most, key), (low_cores, key)))
                   if len(core_counts) > 1 else None)
        lines.append(f"| {' | '.join(key)} | " + " | ".join(cells)
                     + f" | {f'{scaling:.2f}x' if scaling else 'n/a'} |")

    def goal_line(text, values, goal):
        value = median(values)
        verdict = "met" if value and value >= goal else "not met"
        shown = f"{value:.2f}x" if value else "n/a"
        return (f"- {text}: {shown} (rounds: {spread(values)}; goal >= {goal}x: {verdict})")

    textbook = ("textbook", "folder", "first")
    lines += ["", f"Goals ({most} cores unless said):", ""]
    for source in ("folder", "records"):
        ours = ("ours", source, "first")
        lines.append(goal_line(f"ours from {source} / textbook, first pass",
                               round_ratios((most, ours), (most, textbook)), GOAL_VS_TEXTBOOK))
    if len(core_counts) > 1:
        for source in ("folder", "records"):
            ours = ("ours", source, "first")
            lines.append(goal_line(f"ours from {source}, {most} cores / {low_cores} core",
                                   round_ratios((most, ours), (low_cores, ours)), GOAL_SCALING))
    lines += ["", f"The host's speed over the run: a fixed pure-Python loop on one core took "
              f"{min(host_ms):.0f}-{max(host_ms):.0f} ms of CPU time (median "
              f"{median(host_ms):.0f}) at the start of each round."]
    if measured.get("machine"):
        lines += ["", f"The machine's own scaling from 1 to {most} cores ({most} copies of a "
                  "numpy kernel at once, each pinned to its own core, against one alone; "
                  f"median of {arguments.rounds} trials): "
                  + "; ".join(f"{kind} {median(values):.2f}x "
                              f"(trials {spread(values)})"
                              for kind, values in measured["machine"].items())
                  + ". Work that streams from memory cannot scale further than the latter."]
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
    parser.add_argument("--rounds", type=int, default=5,
                        help="Rounds of timed passes (one pass of every pipeline on every "
                        "core count each); medians over rounds are reported.")
    parser.add_argument("--cores", default="1,2", help="Core counts to measure, e.g. 1,2.")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe", choices=sorted(PROBE_ELEMENTS), help=argparse.SUPPRESS)
    parser.add_argument("--cpus", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--records", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        run_worker(arguments)
        return
    if arguments.probe:
        run_probe(arguments)
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
        from pixelwise.data.records_writer import prepare_records

        prepare_records(folder, records, ("train",))
        measured = measure(arguments, core_counts, folder, records, Path(scratch))
    if len(core_counts) > 1:
        print(f"probing the machine's own scaling to {core_counts[-1]} cores ...", flush=True)
        measured["machine"] = machine_scaling(core_counts[-1], arguments.rounds)
    print(write_report(arguments.out, arguments, measured))


if __name__ == "__main__":
    main()
