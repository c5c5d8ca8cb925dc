"""Read Hugging Face checkpoints tensor by tensor without loading whole models.

Safetensors headers are parsed directly (8-byte length + JSON), which gives every tensor's dtype, shape and
location up front and lets a corrupt or truncated file be rejected before anything is written. Tensor data is
read through safetensors' memory map, one tensor (or one block of rows) at a time.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from .errors import LinesError

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


def read_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict]:
    """Parse one .safetensors header; returns (tensors, __metadata__). Raises LinesError if corrupt."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw_len = f.read(8)
            if len(raw_len) != 8:
                raise ValueError("file shorter than the 8-byte header length")
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > min(MAX_HEADER_BYTES, size - 8):
                raise ValueError(f"header length {header_len} does not fit in a file of {size} bytes")
            header = json.loads(f.read(header_len))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise LinesError(f"{path}: unreadable or corrupt safetensors file ({exc})") from None
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + header_len
    tensors: dict[str, TensorInfo] = {}
    covered = 0
    for name, entry in header.items():
        try:
            dtype = SAFETENSORS_DTYPES[entry["dtype"]]
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise LinesError(f"{path}: corrupt safetensors header entry for tensor {name!r}") from None
        info = TensorInfo(name, dtype, shape, path, data_start + begin)
        if end - begin != info.nbytes or data_start + end > size:
            raise LinesError(f"{path}: tensor {name!r} has data offsets that do not match its shape or run "
                             f"past the end of the file (truncated file?)")
        covered += end - begin
        tensors[name] = info
    if data_start + covered != size:
        raise LinesError(f"{path}: file size {size} does not match its header ({data_start + covered} bytes "
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
        self.is_pickle = False
        self.tensors: dict[str, TensorInfo] = {}
        self._handles: dict[Path, object] = {}
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
        files = []
        for file_name in dict.fromkeys(weight_map.values()):
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
            handle = self._handles.get(info.file)
            if handle is None:
                handle = self._handles[info.file] = safe_open(str(info.file), framework="pt")
            if rows is None:
                return handle.get_tensor(name)
            return handle.get_slice(name)[rows[0]:rows[1]]
        except LinesError:
            raise
        except Exception as exc:
            raise LinesError(f"{info.file}: cannot read tensor {name!r} ({type(exc).__name__}: {exc})") from None

    def close(self) -> None:
        self._handles.clear()
        self._pickle_state.clear()

    def weight_file_names(self) -> set[str]:
        names = {info.file.name for info in self.tensors.values()}
        names.update({INDEX_FILE, PICKLE_INDEX_FILE})
        return names
