"""The main job behind `pixelwise demo`, on the embedded synthetic dataset.

    result = run_demo("runs/demo")      # runs/demo/data: the synthetic set, checked

So far it generates the synthetic VOC-format dataset (or finds it already there) and
checks its train, val and test splits, reporting where it is and its class pixel
frequencies. Training and evaluation come next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pixelwise.data.check import CheckReport, check_dataset
from pixelwise.data.synthetic import generate_synthetic
from pixelwise.data.voc import DEFAULT_SPLIT_SEED

DEFAULT_DEMO_DIR = Path("runs") / "demo"
DEMO_SPLITS = ("train", "val", "test")


@dataclass
class DemoResult:
    """What a demo run produced: the dataset folder and the check of each split."""

    data_root: Path
    reports: dict[str, CheckReport]


def run_demo(out_dir: str | Path = DEFAULT_DEMO_DIR, *, num_images: int = 300,
             size: int = 128, seed: int = 0, split_seed: int = DEFAULT_SPLIT_SEED,
             echo: Callable[[str], None] = print, progress: bool = True) -> DemoResult:
    """Generate (or reuse) the synthetic dataset under ``out_dir/data`` and check it.

    Args:
        out_dir: the demo's folder; the dataset goes to ``out_dir/data``.
        num_images, size, seed: the synthetic dataset's size and seed (see
            ``pixelwise.data.synthetic.generate_synthetic``).
        split_seed: the seed of the val/test halves.
        echo: where the report lines go.
        progress: show progress bars.

    A dataset from an earlier demo with the same settings is reused as it is; one made
    with other settings is replaced. Raises ValueError, with the check's report, when a
    split has problems.
    """
    data_dir = Path(out_dir) / "data"
    layout = generate_synthetic(data_dir, num_images=num_images, size=size, seed=seed,
                                overwrite=True, progress=progress)
    spec = layout.spec
    echo(f"synthetic dataset: {layout.root} ({num_images} images, {size}x{size} px, "
         f"{spec.num_classes} classes: {', '.join(spec.class_names)})")
    reports = {split: check_dataset(layout.root, split, split_seed) for split in DEMO_SPLITS}
    for report in reports.values():
        echo(report.format(max_problems=20))
    failed = [split for split, report in reports.items() if not report.ok]
    if failed:
        raise ValueError(f"{layout.root}: the check found problems in split(s) "
                         f"{', '.join(failed)}; see the report above")
    return DemoResult(data_root=layout.root, reports=reports)


__all__ = ["DEFAULT_DEMO_DIR", "DemoResult", "run_demo"]
