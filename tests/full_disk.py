"""A file system that fills up, for the tests of writes the machine refuses: every file opened for writing under a
root (through Python's `open`, `os.fdopen`, `Path.write_text`) counts its bytes, and the write that would pass the
capacity fails with OSError(ENOSPC), as a full disk does. Other refusals (EDQUOT, EACCES, EROFS) fail the first
write under the root. Writes by native code (torch, safetensors' Rust) are not seen: their call sites are
injected directly."""
from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path


class _CountedFile:
    def __init__(self, handle, disk: "FullDisk"):
        self._handle, self._disk = handle, disk

    def write(self, data):
        size = len(data.encode("utf-8")) if isinstance(data, str) else memoryview(data).nbytes
        self._disk.take(size)
        return self._handle.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()

    def __iter__(self):
        return iter(self._handle)

    def __getattr__(self, name):
        return getattr(self._handle, name)


class FullDisk:
    """`with FullDisk(monkeypatch, root, capacity_bytes):` — writes under `root` fail once `capacity` is used."""

    def __init__(self, monkeypatch, root: Path, capacity: int, error: int = errno.ENOSPC):
        self.root, self.capacity, self.error = str(Path(root).resolve()), capacity, error
        self.used, self.failed = 0, 0
        real_open = io.open

        def counted_open(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            if any(m in mode for m in "wax+") and self._under_root(file):
                return _CountedFile(handle, self)
            return handle

        monkeypatch.setattr(builtins, "open", counted_open)
        monkeypatch.setattr(io, "open", counted_open)

    def _under_root(self, file) -> bool:
        path = os.readlink(f"/proc/self/fd/{file}") if isinstance(file, int) else os.path.abspath(file)
        return str(Path(path).resolve()).startswith(self.root)

    def take(self, size: int) -> None:
        if self.error != errno.ENOSPC or self.used + size > self.capacity:
            self.failed += 1
            raise OSError(self.error, os.strerror(self.error))
        self.used += size
