"""Whole-shard checks for TFRecord files, cheap enough to run whenever records are opened.

A TFRecord file is a run of records, each framed as: length (8 bytes, little endian),
CRC of the length (4), the data (length bytes), CRC of the data (4). Walking the length
headers (seeking over the data) counts the records and finds a file cut short, which
TensorFlow would only report mid-epoch as a ``DataLossError`` without naming the file.
The CRCs are not checked here (TensorFlow checks them as it reads).
"""

from __future__ import annotations

from pathlib import Path

HEADER_BYTES = 12  # length and its CRC
FOOTER_BYTES = 4  # the data's CRC


class ShardError(ValueError):
    """A shard that is not whole: truncated, or not the records the manifest lists."""


def count_records(path: str | Path) -> int:
    """The number of records in the TFRecord file at ``path``; ShardError naming the
    file when the last record is cut short (or a length is garbage)."""
    path = Path(path)
    size = path.stat().st_size
    count = position = 0
    with path.open("rb") as file:
        while position < size:
            file.seek(position)
            header = file.read(HEADER_BYTES)
            end = (position + HEADER_BYTES + int.from_bytes(header[:8], "little") + FOOTER_BYTES
                   if len(header) == HEADER_BYTES else None)
            if end is None or end > size:
                raise ShardError(f"{path}: truncated or corrupt: record {count + 1} starting at "
                                 f"byte {position:,} runs past the end of the file "
                                 f"({size:,} bytes)")
            position = end
            count += 1
    return count


def verify_split_shards(root: Path, key: str, split_info: dict, fix: str) -> None:
    """Check that each shard of one split (its manifest entry ``split_info``) exists and
    holds whole records, as many as the manifest says; the errors end with ``fix``.

    Manifests from before per-shard counts were recorded are checked on the total.
    """
    counts = []
    for name in split_info["shards"]:
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{root}: split {key!r} misses shard {name}; {fix}")
        try:
            counts.append(count_records(path))
        except ShardError as error:
            raise ShardError(f"{error}; {fix}") from None
    expected = split_info.get("shard_examples")
    if expected is not None:
        for name, count, listed in zip(split_info["shards"], counts, expected):
            if count != listed:
                raise ShardError(f"{root / name}: holds {count} record(s), the manifest says "
                                 f"{listed}; {fix}")
    elif sum(counts) != split_info["num_examples"]:
        raise ShardError(f"{root}: the shards of split {key!r} hold {sum(counts)} record(s), "
                         f"the manifest says {split_info['num_examples']}; {fix}")


__all__ = ["ShardError", "count_records", "verify_split_shards"]
