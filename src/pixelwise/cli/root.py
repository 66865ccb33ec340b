"""The root `pixelwise` command group; the command modules register on it."""

from __future__ import annotations

import click

from pixelwise import __version__
from pixelwise.cli.params import debugging, one_line


class PixelwiseGroup(click.Group):
    """The command group; an error no command turned into a message ends as one line
    naming its type (with ``--debug``: raised, traceback and all)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:  # a last resort: the commands report what they expect
            if debugging(ctx):
                raise
            raise click.ClickException(
                f"{type(error).__name__}: {one_line(error)} (unexpected; run `pixelwise "
                f"--debug ...` for the traceback)") from error


@click.group(cls=PixelwiseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pixelwise")
@click.option("--debug", is_flag=True,
              help="Show the Python traceback of an error instead of one line.")
def cli(debug: bool) -> None:
    """Semantic segmentation on TensorFlow 2 / Keras 3."""


__all__ = ["PixelwiseGroup", "cli"]
