"""The `pixelwise` command. Thin: each command parses its arguments, calls one library
function and prints; the commands live in ``data`` (datasets), ``model`` (summary,
benchmark), ``train`` and ``run`` (evaluate, predict, export, visualize, demo)."""

from __future__ import annotations

import click

from pixelwise import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pixelwise")
def cli() -> None:
    """Semantic segmentation on TensorFlow 2 / Keras 3."""


# Registers the commands on `cli`.
from pixelwise.cli import data, model, run, train  # noqa: E402,F401


def main() -> None:
    cli()


__all__ = ["cli", "main"]
