"""The `pixelwise` command. Thin: it parses arguments and calls the library."""

from __future__ import annotations

import click

from pixelwise import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pixelwise")
def cli() -> None:
    """Semantic segmentation on TensorFlow 2 / Keras 3."""


@cli.group()
def data() -> None:
    """Get, check, convert and prepare datasets in the VOC layout."""


def main() -> None:
    cli()
