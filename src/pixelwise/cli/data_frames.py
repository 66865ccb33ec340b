"""`pixelwise data frames` and `pixelwise data suggest`: from videos to frames worth labelling."""

from __future__ import annotations

from pixelwise.cli.data import data  # noqa: F401  (the group these commands join)
