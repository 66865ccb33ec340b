"""`pixelwise data import ...`: annotations from labelling tools into the dataset layout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from pixelwise.cli.data import data
from pixelwise.cli.params import reported


@data.group("import")
def data_import() -> None:
    """Turn LabelMe, CVAT or COCO annotations into a dataset in the VOC layout.

    Writes OUT/JPEGImages (the images as they are), OUT/SegmentationClass (palette PNGs of
    class indices), OUT/ImageSets/Segmentation/{train,val}.txt and pixelwise_dataset.json;
    into an existing dataset, adds the new images (same classes; names it has are refused
    unless --overwrite). Any problem: every one is listed and nothing is written.
    """


def import_options(command: Callable) -> Callable:
    """The options every import command shares."""
    options = [
        click.option("--out", "out", required=True,
                     type=click.Path(file_okay=False, path_type=Path),
                     help="Dataset folder to write (new, empty, or a dataset to extend)."),
        click.option("--classes", default=None,
                     help="Class names in index order: a comma list (background,road,toy) or a "
                          "labels.txt in labelme2voc's format. Default: the export's (or the "
                          "existing dataset's) classes, background first."),
        click.option("--unlabelled", type=click.Choice(["background", "ignore"]),
                     default="background", show_default=True,
                     help="What pixels no shape covers become: class 0 (background) or the "
                          "ignore label."),
        click.option("--val-fraction", default=0.2, show_default=True,
                     type=click.FloatRange(0, 1, max_open=True),
                     help="Share of the new images listed in val.txt (seeded; 0: all in "
                          "train.txt)."),
        click.option("--seed", default=0, show_default=True, type=int,
                     help="Seed of the train/val draw."),
        click.option("--overwrite", is_flag=True,
                     help="Replace images (and labels) the dataset already has."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def images_option(help_text: str) -> Callable:
    return click.option("--images", default=None,
                        type=click.Path(exists=True, file_okay=False, path_type=Path),
                        help=help_text)


def _options(classes: str | None, unlabelled: str, val_fraction: float, seed: int,
             overwrite: bool):
    from pixelwise.data.annotations.importer import ImportOptions

    return ImportOptions(classes=classes, unlabelled=unlabelled, val_fraction=val_fraction,
                         seed=seed, overwrite=overwrite)


@data_import.command("labelme")
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@import_options
def import_labelme_command(src: Path, out: Path, **options) -> None:
    """LabelMe: SRC is a folder of .json files (one per image), one .json, or a .zip."""
    from pixelwise.data.annotations.labelme import import_labelme

    with reported():
        summary = import_labelme(src, out, _options(**options))
    click.echo(summary.format())


@data_import.command("cvat")
@click.argument("annotations", type=click.Path(exists=True, path_type=Path))
@images_option("Folder of the task's images (default: beside the XML, and its images/).")
@import_options
def import_cvat_command(annotations: Path, images: Path | None, out: Path, **options) -> None:
    """CVAT for images 1.1: ANNOTATIONS is annotations.xml, or the export's .zip."""
    from pixelwise.data.annotations.cvat import import_cvat

    with reported():
        summary = import_cvat(annotations, out, images, _options(**options))
    click.echo(summary.format())


@data_import.command("cvat-masks")
@click.argument("export", type=click.Path(exists=True, path_type=Path))
@images_option("Folder of the images, when the export has no JPEGImages/.")
@import_options
def import_cvat_masks_command(export: Path, images: Path | None, out: Path, **options) -> None:
    """CVAT Segmentation mask 1.1: EXPORT is the export's folder or .zip (labelmap.txt and
    SegmentationClass/)."""
    from pixelwise.data.annotations.cvat_masks import import_cvat_masks

    with reported():
        summary = import_cvat_masks(export, out, images, _options(**options))
    click.echo(summary.format())


@data_import.command("coco")
@click.argument("instances", type=click.Path(exists=True, path_type=Path))
@images_option("Folder the images' file_name is relative to (default: beside the JSON, its "
               "images/, and ../images).")
@import_options
def import_coco_command(instances: Path, images: Path | None, out: Path, **options) -> None:
    """COCO instances JSON (polygons or RLE): INSTANCES is the .json, or a .zip holding it."""
    from pixelwise.data.annotations.coco import import_coco

    with reported():
        summary = import_coco(instances, out, images, _options(**options))
    click.echo(summary.format())
