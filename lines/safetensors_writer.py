"""Write sharded safetensors as a stream: headers are computed from shapes up front, data appended in order.

Because every output tensor's dtype and shape are known before merging starts, each shard's header can be
written first and tensors (or blocks of their rows) appended as they are produced. No shard is ever held in
memory, so memory stays flat however large the model is.
"""
from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import mapped_write_errors
from .checkpoint import DTYPE_TO_SAFETENSORS, INDEX_FILE, SINGLE_FILE
from .errors import LinesError

_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(value: int | str) -> int:
    """'2GB' -> 2e9 bytes (decimal, as Hugging Face does), '500MiB' -> binary units, ints pass through."""
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*", str(value).upper())
    if not match or match.group(2) not in _SIZE_UNITS:
        raise ValueError(f"cannot parse size {value!r}; use e.g. '2GB', '500MB' or '512MiB'")
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    if size <= 0:
        raise ValueError("must be positive")
    return size


@dataclass(frozen=True)
class OutputTensor:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for d in self.shape:
            n *= d
        return n


def plan_shards(tensors: list[OutputTensor], max_shard_bytes: int) -> list[list[OutputTensor]]:
    """Greedy in order: a new shard starts when the next tensor would overflow the current one.
    A single tensor larger than the limit gets a shard of its own (as transformers does)."""
    shards: list[list[OutputTensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


def shard_file_names(count: int) -> list[str]:
    if count == 1:
        return [SINGLE_FILE]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def _header_bytes(shard: list[OutputTensor], metadata: dict[str, str]) -> bytes:
    header: dict = {"__metadata__": metadata}
    offset = 0
    for t in shard:
        header[t.name] = {"dtype": DTYPE_TO_SAFETENSORS[t.dtype], "shape": list(t.shape),
                          "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as the format recommends
    return struct.pack("<Q", len(raw)) + raw


class StreamingSafetensorsWriter:
    """Write tensors in the planned order; each tensor may arrive whole or as consecutive row blocks.

    `only_shards`: write these shards of the plan and no others (one process's share of a merge split across
    processes; the plan, hence every shard's name and bytes, is the same in every process)."""

    def __init__(self, out_dir: Path, tensors: list[OutputTensor], max_shard_bytes: int,
                 metadata: dict[str, str] | None = None, only_shards: set[int] | None = None):
        self.out_dir = Path(out_dir)
        self.metadata = {"format": "pt", **(metadata or {})}
        self.shards = plan_shards(tensors, max_shard_bytes)
        self.file_names = shard_file_names(len(self.shards))
        self._queue = [(si, t) for si, shard in enumerate(self.shards) for t in shard
                       if only_shards is None or si in only_shards]
        self._position = 0  # index into _queue of the tensor being written
        self._written = 0  # bytes of that tensor written so far
        self._remaining = sum(t.nbytes for _, t in self._queue)  # bytes of tensor data still to write (headers aside)
        self._file = None
        self._file_index = -1

    def write(self, name: str, data: torch.Tensor) -> None:
        """Append `data`: the whole tensor `name`, or its next block of rows."""
        if self._position >= len(self._queue):
            raise LinesError(f"internal: tensor {name!r} written after the planned output was complete")
        shard_index, expected = self._queue[self._position]
        if name != expected.name or data.dtype != expected.dtype:
            raise LinesError(f"internal: expected tensor {expected.name!r} ({expected.dtype}), got {name!r} "
                             f"({data.dtype})")
        raw = data.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
        with mapped_write_errors(self.out_dir / self.file_names[shard_index], self._remaining):
            if shard_index != self._file_index:
                self._open_shard(shard_index)
            self._file.write(memoryview(raw))
        self._written += raw.nbytes
        self._remaining -= raw.nbytes
        if self._written > expected.nbytes:
            raise LinesError(f"internal: too many bytes written for tensor {name!r}")
        if self._written == expected.nbytes:
            self._position += 1
            self._written = 0

    def _open_shard(self, shard_index: int) -> None:
        if self._file is not None:
            self._file.close()
        self._file_index = shard_index
        self._file = open(self.out_dir / self.file_names[shard_index], "wb")
        self._file.write(_header_bytes(self.shards[shard_index], self.metadata))

    def tensor_names(self) -> set[str]:
        """The tensors this writer expects (all of them, or those of its shards)."""
        return {t.name for _, t in self._queue}

    def close(self, write_index: bool = True) -> None:
        if self._file is not None:
            with mapped_write_errors(self._file.name):  # the last buffered bytes are written here
                self._file.close()
            self._file = None
        if self._position != len(self._queue):
            missing = self._queue[self._position][1].name
            raise LinesError(f"internal: output incomplete, tensor {missing!r} was never fully written")
        if len(self.shards) > 1 and write_index:
            weight_map = {t.name: self.file_names[i] for i, shard in enumerate(self.shards) for t in shard}
            total = sum(t.nbytes for shard in self.shards for t in shard)
            index = {"metadata": {"total_size": total}, "weight_map": weight_map}
            with mapped_write_errors(self.out_dir / INDEX_FILE):
                (self.out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
