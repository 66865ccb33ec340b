"""Which classes of a trained model a new model's classes start from.

    pairs = parse_class_map("road=floor,sky=sky")          # (("road", "floor"), ("sky", "sky"))
    sources = class_correspondence(old_names, new_names, pairs)   # {new index: [old indices]}

Without a map, a new class starts from the old class of the same name (names compared
ignoring case); the others start anew. A map (``OLD=NEW`` pairs) replaces that matching
entirely: only the classes it names carry over, so ``sky=sky`` must be listed too. Several
old classes into one new one (``car=vehicle,truck=vehicle``) average their classifier rows
(the new logit is the mean of the old logits); one old class may start several new ones.
"""

from __future__ import annotations

from collections.abc import Sequence

ClassPairs = tuple[tuple[str, str], ...]


def parse_class_map(text: str | Sequence | dict | None) -> ClassPairs | None:
    """``"road=floor, sky=sky"``, ``{"road": "floor"}`` or pairs -> ``(("road", "floor"),
    ...)`` in the order given (None and "" stay None). Raises ValueError, naming the
    part, for a pair that is not ``OLD=NEW`` or is given twice."""
    if text is None:
        return None
    if isinstance(text, dict):
        items = list(text.items())
    elif isinstance(text, str):
        if not text.strip():
            return None
        items = []
        for part in text.split(","):
            old, equals, new = part.partition("=")
            if not equals:
                raise ValueError(f"class map {part.strip()!r}: expected OLD=NEW (old class "
                                 f"name = new class name), e.g. road=floor,sky=sky")
            items.append((old, new))
    else:
        items = [tuple(pair) for pair in text]
    pairs: list[tuple[str, str]] = []
    for item in items:
        if len(item) != 2 or not all(str(name).strip() for name in item):
            raise ValueError(f"class map {item!r}: expected OLD=NEW with both names given")
        pair = (str(item[0]).strip(), str(item[1]).strip())
        if pair in pairs:
            raise ValueError(f"class map: {pair[0]}={pair[1]} is given twice")
        pairs.append(pair)
    return tuple(pairs) or None


def format_class_map(pairs: ClassPairs | None) -> str:
    """The inverse of :func:`parse_class_map` for text: ``road=floor,sky=sky``."""
    return ",".join(f"{old}={new}" for old, new in pairs or ())


def class_correspondence(old_names: Sequence[str], new_names: Sequence[str],
                         pairs: ClassPairs | None = None) -> dict[int, list[int]]:
    """New class index -> the old class indices it starts from (only classes that carry
    over appear); see the module docstring. Raises ValueError naming every class of
    ``pairs`` that the old or the new classes do not have."""
    if pairs is None:
        old_index = {name.casefold(): index for index, name in enumerate(old_names)}
        return {new: [old_index[name.casefold()]] for new, name in enumerate(new_names)
                if name.casefold() in old_index}
    old_index = {name: index for index, name in enumerate(old_names)}
    new_index = {name: index for index, name in enumerate(new_names)}
    unknown_old = sorted({old for old, _ in pairs if old not in old_index})
    unknown_new = sorted({new for _, new in pairs if new not in new_index})
    problems = []
    if unknown_old:
        problems.append(f"the init model has no class {', '.join(unknown_old)} (it has "
                        f"{', '.join(old_names)})")
    if unknown_new:
        problems.append(f"the data has no class {', '.join(unknown_new)} (it has "
                        f"{', '.join(new_names)})")
    if problems:
        raise ValueError("class map: " + "; ".join(problems))
    sources: dict[int, list[int]] = {}
    for old, new in pairs:
        sources.setdefault(new_index[new], []).append(old_index[old])
    return dict(sorted(sources.items()))


__all__ = ["ClassPairs", "class_correspondence", "format_class_map", "parse_class_map"]
