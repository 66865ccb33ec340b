"""The `pixelwise` command. Thin: each command parses its arguments, calls one library
function and prints; the commands live in ``data`` (datasets), ``model`` (summary, list, show,
benchmark), ``train`` and ``run`` (evaluate, predict, export, visualize, demo).

Errors end the command with one line and exit status 1, never a Python traceback: the
library's known errors through ``params.reported``, anything else through
``PixelwiseGroup``. ``pixelwise --debug COMMAND ...`` lets them through with their traceback.
"""

from __future__ import annotations

from pixelwise.cli import (  # noqa: F401  (register their commands)
    data, data_frames, data_import, model, run, train)
from pixelwise.cli.root import PixelwiseGroup, cli


def main() -> None:
    cli()


__all__ = ["PixelwiseGroup", "cli", "main"]
