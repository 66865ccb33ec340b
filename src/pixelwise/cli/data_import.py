"""`pixelwise data import ...`: annotations from labelling tools into the dataset layout."""

from __future__ import annotations

from pixelwise.cli.data import data  # noqa: F401  (the group these commands join)
