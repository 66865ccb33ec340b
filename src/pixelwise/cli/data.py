"""`pixelwise data ...`: get, check, convert, prepare and generate datasets."""

from __future__ import annotations

from pathlib import Path

import click

from pixelwise.cli.root import cli
from pixelwise.cli.params import reported


@cli.group()
def data() -> None:
    """Get, check, convert and prepare datasets (VOC or CamVid layout)."""


@data.group("download")
def data_download() -> None:
    """Download, verify and extract a dataset."""


@data_download.command("voc2012")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the tar and VOCdevkit/VOC2012.")
@click.option("--url", default=None, help="Download from here instead of the official URL.")
@click.option("--md5", default=None, help="Expected MD5 of the tar (default: the official one).")
@click.option("--from", "from_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Use this tar (copied in by hand) instead of downloading.")
def data_download_voc2012(dest: Path, url: str | None, md5: str | None,
                          from_file: Path | None) -> None:
    """Get PASCAL VOC 2012 trainval into DEST (resumes; verifies the MD5; extracts safely)."""
    from pixelwise.data import download

    with reported(OSError, ValueError, RuntimeError):
        voc_dir = download.download_voc2012(
            dest, url=url or download.VOC2012_URL, md5=md5 or download.VOC2012_MD5,
            from_file=from_file)
    click.echo(voc_dir)


@data_download.command("camvid")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the archive and CamVid/.")
@click.option("--url", default=None,
              help="Download from here instead of the SegNet tutorial's repository archive.")
@click.option("--from", "from_path", type=click.Path(exists=True, path_type=Path),
              default=None, help="Use this tar or zip, or an extracted CamVid folder, instead "
                                 "of downloading.")
def data_download_camvid(dest: Path, url: str | None, from_path: Path | None) -> None:
    """Get CamVid (11 classes, SegNet tutorial release) into DEST; verifies all 701 pairs."""
    from pixelwise.data import camvid_download as camvid

    with reported(OSError, ValueError, RuntimeError):
        camvid_dir = camvid.download_camvid(dest, url=url or camvid.CAMVID_URL,
                                            from_path=from_path)
    click.echo(camvid_dir)


@data.command("check")
@click.argument("root", type=click.Path(exists=True, path_type=Path))
@click.option("--split", required=True,
              help="train, val, test, val-full, val-half-a, val-half-b, trainval, train_aug, "
                   "or a list file; a dataset's own test.txt wins over the halves of val.txt.")
@click.option("--seed", default=None, type=int, help="Seed of the val/test halves.")
@click.option("--max-problems", default=100, show_default=True,
              help="Problem lines to print (0: all).")
def data_check(root: Path, split: str, seed: int | None, max_problems: int) -> None:
    """Check every image/annotation pair of a split; exit 1 on problems."""
    from pixelwise.data.check import check_dataset
    from pixelwise.data.voc import DEFAULT_SPLIT_SEED

    with reported():
        report = check_dataset(root, split, DEFAULT_SPLIT_SEED if seed is None else seed,
                               progress=True)
    click.echo(report.format(max_problems=max_problems or None))
    if not report.ok:
        raise SystemExit(1)


@data.command("import-rgb-masks")
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--spec", "spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="pixelwise_dataset.json with the class colours (default: VOC).")
def data_import_rgb_masks(src: Path, dest: Path, spec_file: Path | None) -> None:
    """Convert the RGB mask PNGs in SRC to palette PNGs of class indices in DEST."""
    from pixelwise.data.rgb_masks import import_rgb_masks
    from pixelwise.data.spec import DatasetSpec

    with reported():
        spec = DatasetSpec.load(spec_file) if spec_file else DatasetSpec.voc()
        written = import_rgb_masks(src, dest, spec)
    click.echo(f"wrote {len(written)} palette PNG(s) to {dest}")


@data.command("prepare")
@click.argument("root", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Records folder (shards + manifest.json).")
@click.option("--split", "splits", multiple=True,
              help="Split to write (repeatable): train, val, test, val-full, trainval, "
                   "train_aug, or a list file. Default: train, val, test where listed.")
@click.option("--split-seed", default=None, type=int, help="Seed of the val/test halves.")
@click.option("--shard-size", default=256, show_default=True, type=click.IntRange(min=1),
              help="Most examples per shard.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes writing shards in parallel (same files as with one).")
def data_prepare(root: Path, out_dir: Path, splits: tuple[str, ...], split_seed: int | None,
                 shard_size: int, workers: int) -> None:
    """Write the splits of ROOT as sharded TFRecords in OUT (a rerun keeps complete shards)."""
    from pixelwise.data.records_writer import prepare_records
    from pixelwise.data.voc import DEFAULT_SPLIT_SEED

    with reported():
        manifest = prepare_records(
            root, out_dir, splits or None,
            split_seed=DEFAULT_SPLIT_SEED if split_seed is None else split_seed,
            examples_per_shard=shard_size, progress=click.echo, workers=workers)
    for key, split in manifest["splits"].items():
        click.echo(f"{key}: {split['num_examples']} examples in {len(split['shards'])} shard(s)")
    click.echo(f"manifest: {out_dir / 'manifest.json'}")


@data.command("synth")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "num_images", default=300, show_default=True, type=click.IntRange(min=2),
              help="Images in all (train + val).")
@click.option("--size", default=128, show_default=True, type=click.IntRange(min=16),
              help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.option("--val-fraction", default=1 / 3, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Share of the images in val.txt (halved into val and test when read).")
@click.option("--classes", "num_object_classes", default=5, show_default=True,
              type=click.IntRange(1, 5), help="Object classes (plus background).")
@click.option("--overwrite", is_flag=True,
              help="Replace a synthetic dataset made with other settings.")
def data_synth(dest: Path, num_images: int, size: int, seed: int, val_fraction: float,
               num_object_classes: int, overwrite: bool) -> None:
    """Generate a synthetic dataset in the VOC layout in DEST (no-op if already there)."""
    from pixelwise.data.synthetic import generate_synthetic

    with reported():
        layout = generate_synthetic(dest, num_images=num_images, size=size, seed=seed,
                                    val_fraction=val_fraction,
                                    num_object_classes=num_object_classes,
                                    overwrite=overwrite, progress=True)
    click.echo(f"{layout.root}: {num_images} images, {size}x{size} px, classes "
               f"{', '.join(layout.spec.class_names)}")
