"""The bottom floor: atomic file writes, image-size parsing and JSON helpers.

Nothing here imports any other pixelwise module, so every floor above may use it.

Every file pixelwise writes goes through ``write_atomically``: the content is written to a
temporary name in the destination's folder (``.tmp-NAME-RANDOM.SUFFIX``), flushed to disk
and renamed into place (``os.replace``, atomic on POSIX). A process killed at any moment
leaves either the old file or the new one, never a torn one; leftovers carry
``TEMP_PREFIX`` so they are easy to recognise and sweep.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".tmp-"


def temporary_path(path: str | Path) -> Path:
    """A fresh temporary name beside ``path`` that keeps its suffix (Keras insists on .keras)."""
    path = Path(path)
    return path.parent / f"{TEMP_PREFIX}{path.stem}-{uuid.uuid4().hex[:12]}{path.suffix}"


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file or folder onto ``path``.

    The temporary lives in ``path``'s folder (so the rename is atomic). A file is flushed
    to disk before the rename; a folder (what ``write`` may create, e.g. a SavedModel)
    replaces an old folder of the same name. On any error the temporary is removed and
    ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        write(temporary)
        if temporary.is_dir():
            _replace_folder(temporary, path)
        else:
            with open(temporary, "rb+") as written:
                os.fsync(written.fileno())
            os.replace(temporary, path)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def write_text_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see ``write_atomically``)."""
    write_atomically(path, lambda temporary: temporary.write_text(text))


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``write_atomically``)."""
    write_atomically(path, lambda temporary: temporary.write_bytes(data))


def write_json_atomically(path: str | Path, values: Any, *, indent: int = 2) -> None:
    """Write ``values`` as JSON (NaN allowed, as Python's json writes it) atomically."""
    write_text_atomically(path, json.dumps(values, indent=indent, allow_nan=True) + "\n")


def read_json(path: str | Path, *, what: str = "JSON file") -> Any:
    """Read a JSON file; a missing or malformed one raises ValueError naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: {what} not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a valid {what} ({error})") from None


def fsync_folder(folder: str | Path) -> None:
    """Flush a folder's entries (a rename) to disk, where the platform allows it."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _replace_folder(temporary: Path, path: Path) -> None:
    """Move the finished folder ``temporary`` onto ``path``; an old ``path`` is removed
    only after the new one is complete (folders cannot be swapped atomically)."""
    if path.is_dir():
        old = temporary_path(path)
        os.replace(path, old)
        os.replace(temporary, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if path.exists():
            path.unlink()
        os.replace(temporary, path)


# --------------------------------------------------------------------------- sizes


def parse_size(text: str, *, what: str = "size") -> tuple[int, int]:
    """``"384"`` -> (384, 384); ``"360x480"`` -> (360, 480) (height x width).

    Raises ValueError naming ``what`` and the text for anything else ("64x", "0", "a").
    """
    height, separator, width = str(text).strip().lower().partition("x")
    try:
        if separator and not width:
            raise ValueError
        size = (int(height), int(width or height))
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected S or HxW, e.g. 384 or 360x480") from None
    if min(size) < 1:
        raise ValueError(f"{what} {text!r}: sizes must be positive")
    return size


def size_pair(size: int | Sequence[int], *, what: str = "size") -> tuple[int, int]:
    """An int or a (height, width) pair -> (height, width), both positive ints."""
    if isinstance(size, str):
        return parse_size(size, what=what)
    try:
        values = (size, size) if not isinstance(size, Sequence) else tuple(size)
        if len(values) != 2 or any(isinstance(side, bool) or int(side) != side for side in values):
            raise ValueError
        height, width = (int(side) for side in values)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a positive int or (height, width), got {size!r}") from None
    if height < 1 or width < 1:
        raise ValueError(f"{what} must be positive, got {size!r}")
    return height, width


_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str, *, what: str = "duration") -> float:
    """``"3h"``, ``"2h30m"``, ``"90m"``, ``"45s"`` or plain seconds (``"5400"``) -> seconds.

    Raises ValueError naming ``what`` and the text for anything else or a duration <= 0.
    """
    rest = str(text).strip().lower()
    seconds = 0.0
    try:
        if rest and rest.replace(".", "", 1).isdigit():
            seconds = float(rest)
        else:
            if not rest:
                raise ValueError
            while rest:
                number = ""
                while rest and (rest[0].isdigit() or rest[0] == "."):
                    number, rest = number + rest[0], rest[1:]
                if not number or not rest or rest[0] not in _DURATION_UNITS:
                    raise ValueError
                seconds += float(number) * _DURATION_UNITS[rest[0]]
                rest = rest[1:]
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected e.g. 3h, 2h30m, 90m or seconds") from None
    if not seconds > 0:
        raise ValueError(f"{what} {text!r}: must be more than 0")
    return seconds


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is >= ``value``."""
    return -(-int(value) // int(multiple)) * int(multiple)


__all__ = ["TEMP_PREFIX", "fsync_folder", "parse_duration", "parse_size", "read_json", "round_up", "size_pair",
           "temporary_path", "write_atomically", "write_bytes_atomically", "write_json_atomically",
           "write_text_atomically"]
