"""Read Hugging Face checkpoints tensor by tensor without loading whole models.

Safetensors headers are parsed directly (8-byte length + JSON), which gives every tensor's dtype, shape and
location up front and lets a corrupt or truncated file be rejected before anything is written. Tensor data is
read with positioned reads straight into a fresh tensor, one tensor (or one block of rows) at a time. Unlike a
memory map, this leaves nothing of the input files resident in the process, so memory stays flat however large
the checkpoints are.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import LinesError, first_line
from .safe_paths import path_component_problem

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
DTYPE_TO_SAFETENSORS = {v: k for k, v in SAFETENSORS_DTYPES.items()}

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_SINGLE_FILE = "pytorch_model.bin"
PICKLE_INDEX_FILE = "pytorch_model.bin.index.json"
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    file: Path
    offset: int = 0  # byte offset of the data inside its file (0 for pickle checkpoints)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


def _refuse_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """json.loads keeps the last of two equal keys silently; a header naming a tensor twice is corrupt."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the header names {key!r} twice")
        out[key] = value
    return out


def _entry_info(path: Path, name: str, entry: object, data_start: int) -> tuple[TensorInfo, int, int]:
    """(info, begin, end) of one header entry, or one LinesError line saying what is wrong with it."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict) or set(entry) - {"dtype", "shape", "data_offsets"} \
            or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise LinesError(f"{where}: a header entry is {{dtype, shape, data_offsets}}, got {str(entry)[:80]}; "
                         f"the file is corrupt")
    dtype = SAFETENSORS_DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
    if dtype is None:
        raise LinesError(f"{where}: unknown dtype {str(entry['dtype'])[:40]!r} (known: "
                         f"{', '.join(SAFETENSORS_DTYPES)}); the file is corrupt or from an unsupported writer")
    shape, offsets = entry["shape"], entry["data_offsets"]
    # bool is an int subclass: `true` is no dimension.
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise LinesError(f"{where}: shape {str(shape)[:80]} is not a list of non-negative integers; "
                         f"the file is corrupt")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(x) is int for x in offsets) \
            or not 0 <= offsets[0] <= offsets[1]:
        raise LinesError(f"{where}: data_offsets {str(offsets)[:80]} are not [begin, end] with 0 <= begin <= end; "
                         f"the file is corrupt")
    info = TensorInfo(name, dtype, tuple(shape), path, data_start + offsets[0])
    if offsets[1] - offsets[0] != info.nbytes:
        raise LinesError(f"{where}: shape {list(shape)} of {entry['dtype']} needs {info.nbytes} bytes but its "
                         f"data_offsets hold {offsets[1] - offsets[0]}; the file is corrupt")
    return info, offsets[0], offsets[1]


def read_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict]:
    """Parse and validate one .safetensors header; returns (tensors, __metadata__).

    The one place a safetensors file is checked before any of its tensors is used: the header fits in the file,
    is a JSON object naming each tensor once, every entry has a known dtype and a shape whose byte size equals its
    data range, and the ranges tile the data section exactly (from 0, no overlap, no gap, nothing past the end) —
    the format's own rule. Anything else is one LinesError line naming the file and the problem."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) != 8:
                raise ValueError("file shorter than the 8-byte header length")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > min(MAX_HEADER_BYTES, size - 8):
                raise ValueError(f"header length {header_len} does not fit in a file of {size} bytes")
            header = json.loads(f.read(header_len).decode("utf-8"), object_pairs_hook=_refuse_duplicate_keys)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise LinesError(f"{path}: unreadable or corrupt safetensors file ({first_line(exc)})") from None
    if not isinstance(header, dict):
        raise LinesError(f"{path}: the safetensors header is JSON {type(header).__name__}, not an object; "
                         f"the file is corrupt")
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata  # null is the format's "no metadata"; false or [] are not
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise LinesError(f"{path}: __metadata__ is not a JSON object of strings (the format's rule); the file is "
                         f"corrupt")
    data_start = 8 + header_len
    tensors: dict[str, TensorInfo] = {}
    ranges: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        info, begin, end = _entry_info(path, name, entry, data_start)
        tensors[name] = info
        ranges.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(ranges):
        if data_start + end > size:
            raise LinesError(f"{path}: tensor {name!r} has data_offsets that run past the end of the file "
                             f"(truncated file?)")
        if begin < position:
            raise LinesError(f"{path}: tensor {name!r} has data_offsets [{begin}, {end}) overlapping the previous "
                             f"tensor's bytes; the file is corrupt")
        if begin > position:
            raise LinesError(f"{path}: {begin - position} bytes before tensor {name!r} belong to no tensor; "
                             f"the file is corrupt")
        position = end
    if data_start + position != size:
        raise LinesError(f"{path}: file size {size} does not match its header ({data_start + position} bytes "
                         f"expected); the file is truncated or corrupt")
    return tensors, metadata


class Checkpoint:
    """A Hugging Face model directory: config.json plus single or sharded safetensors (or, if allowed, .bin)."""

    def __init__(self, path: str | os.PathLike, allow_pickle: bool = False):
        self.path = Path(path)
        if not self.path.is_dir():
            raise LinesError(f"{self.path}: not a directory; expected a Hugging Face checkpoint directory")
        config_path = self.path / "config.json"
        if not config_path.is_file():
            raise LinesError(f"{self.path}: no config.json; expected a Hugging Face checkpoint directory")
        try:
            self.config: dict = json.loads(config_path.read_text())
        except (OSError, ValueError) as exc:
            raise LinesError(f"{config_path}: unreadable JSON ({exc})") from None
        if not isinstance(self.config, dict):
            raise LinesError(f"{config_path}: a model config is a JSON object, got {type(self.config).__name__}")
        self.is_pickle = False
        self.tensors: dict[str, TensorInfo] = {}
        self._fds: dict[Path, int] = {}
        self._pickle_state: dict[Path, dict] = {}
        files = self._weight_files(allow_pickle)
        for file in files:
            if self.is_pickle:
                infos = self._pickle_infos(file)
            else:
                infos, _ = read_safetensors_header(file)
            for name, info in infos.items():
                if name in self.tensors:
                    raise LinesError(f"{file}: tensor {name!r} also appears in {self.tensors[name].file.name}")
                self.tensors[name] = info

    # -- locating weight files -------------------------------------------------------------------------
    def _weight_files(self, allow_pickle: bool) -> list[Path]:
        index = self.path / INDEX_FILE
        if index.is_file():
            return self._files_from_index(index)
        if (self.path / SINGLE_FILE).is_file():
            return [self.path / SINGLE_FILE]
        pickles = [self.path / PICKLE_INDEX_FILE, self.path / PICKLE_SINGLE_FILE]
        if any(p.is_file() for p in pickles):
            if not allow_pickle:
                raise LinesError(f"{self.path}: holds pickle .bin weights, which can run code when loaded; "
                                 f"convert to safetensors or pass --allow-pickle (loaded with weights_only=True)")
            self.is_pickle = True
            if pickles[0].is_file():
                return self._files_from_index(pickles[0])
            return [pickles[1]]
        raise LinesError(f"{self.path}: no {SINGLE_FILE} or {INDEX_FILE} found")

    def _files_from_index(self, index: Path) -> list[Path]:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LinesError(f"{index}: unreadable shard index ({exc})") from None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise LinesError(f"{index}: weight_map is not a mapping of tensor names to shard file names")
        files = []
        for file_name in dict.fromkeys(weight_map.values()):
            if path_component_problem(file_name) is not None:  # "../x", "/etc/x": a shard outside the checkpoint
                raise LinesError(f"{index}: shard {file_name[:80]!r} is not a file name inside {self.path}; "
                                 "the index is corrupt")
            file = self.path / file_name
            if not file.is_file():
                raise LinesError(f"{index}: lists shard {file_name!r}, which is missing")
            files.append(file)
        return files

    def _pickle_infos(self, file: Path) -> dict[str, TensorInfo]:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # torch raises many types for corrupt pickles
            raise LinesError(f"{file}: unreadable pickle checkpoint ({type(exc).__name__}: {exc})") from None
        self._pickle_state[file] = state
        return {name: TensorInfo(name, t.dtype, tuple(t.shape), file) for name, t in state.items()
                if isinstance(t, torch.Tensor)}

    # -- reading -----------------------------------------------------------------------------------------
    def info(self, name: str) -> TensorInfo:
        return self.tensors[name]

    def read(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """One tensor (or rows [start, stop) of its first dimension), in its stored dtype."""
        info = self.tensors[name]
        try:
            if self.is_pickle:
                tensor = self._pickle_state[info.file][name]
                return tensor if rows is None else tensor[rows[0]:rows[1]]
            return self._read_safetensors(info, rows)
        except LinesError:
            raise
        except Exception as exc:
            raise LinesError(f"{info.file}: cannot read tensor {name!r} ({type(exc).__name__}: {exc})") from None

    def _read_safetensors(self, info: TensorInfo, rows: tuple[int, int] | None) -> torch.Tensor:
        shape = list(info.shape)
        offset = info.offset
        if rows is not None:
            row_bytes = info.nbytes // shape[0] if shape[0] else 0
            offset += rows[0] * row_bytes
            shape[0] = rows[1] - rows[0]
        out = torch.empty(shape, dtype=info.dtype)
        buffer = memoryview(out.view(-1).view(torch.uint8).numpy()) if out.numel() else memoryview(b"")
        fd = self._fds.get(info.file)
        if fd is None:
            fd = self._fds[info.file] = os.open(info.file, os.O_RDONLY)
        done = 0
        while done < len(buffer):  # a single read may return less than asked for
            n = os.preadv(fd, [buffer[done:]], offset + done)
            if n <= 0:
                raise LinesError(f"{info.file}: unexpected end of file while reading tensor {info.name!r}")
            done += n
        return out

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._pickle_state.clear()

    def weight_file_names(self) -> set[str]:
        names = {info.file.name for info in self.tensors.values()}
        names.update({INDEX_FILE, PICKLE_INDEX_FILE})
        return names
