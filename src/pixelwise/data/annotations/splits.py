"""Which imported images go to train.txt and which to val.txt: a seeded, deterministic draw.

The names are sorted, shuffled with ``numpy.random.default_rng(seed)`` and the first
``val_count`` go to val; each list keeps sorted order. The same names, fraction and seed
always give the same lists, whatever order the export listed them in.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

DEFAULT_VAL_FRACTION = 0.2
DEFAULT_SEED = 0


def val_count(total: int, fraction: float) -> int:
    """How many of ``total`` images go to val: ``fraction`` of them rounded, at least one
    when the fraction is above 0 and there are two or more, and never all of them."""
    if not 0 <= fraction < 1:
        raise ValueError(f"val fraction {fraction}: must be at least 0 and below 1 "
                         f"(0 puts every image in train)")
    if fraction == 0 or total < 2:
        return 0
    return min(max(1, round(fraction * total)), total - 1)


def split_names(names: Iterable[str], fraction: float = DEFAULT_VAL_FRACTION,
                seed: int = DEFAULT_SEED) -> tuple[list[str], list[str]]:
    """(train names, val names), each sorted; see the module doc."""
    ordered = sorted(set(names))
    order = np.random.default_rng(seed).permutation(len(ordered))
    chosen = {ordered[index] for index in order[:val_count(len(ordered), fraction)]}
    return ([name for name in ordered if name not in chosen],
            [name for name in ordered if name in chosen])


__all__ = ["DEFAULT_SEED", "DEFAULT_VAL_FRACTION", "split_names", "val_count"]
