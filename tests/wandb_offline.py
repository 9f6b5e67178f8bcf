"""Read the records of an offline wandb run file (LevelDB-style log of protobuf records)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

BLOCK, HEADER = 32768, 7  # file header ":W&B" + magic + version; record header crc32, length, type
FULL, LAST = 1, 4


def read_records(path: Path) -> Iterator:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a wandb run file")
    position, pending = HEADER, b""
    while position + HEADER <= len(data):
        left = BLOCK - position % BLOCK
        if left < HEADER:  # block trailer padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        pending += data[position + HEADER : position + HEADER + length]
        position += HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def history_keys(path: Path) -> set[str]:
    return {item.key or "/".join(item.nested_key) for r in read_records(path) if r.WhichOneof("record_type") == "history"
            for item in r.history.item}


def config_keys(path: Path) -> set[str]:
    return {u.key for r in read_records(path) if r.WhichOneof("record_type") == "config" for u in r.config.update}
