"""Atomic writes: a reader sees the old file (or directory) or the new one, never half of one.

Everything is written under a unique temporary name in the target's own directory (same file system, and two
processes writing the same target never share a temporary) and renamed into place.

This module is also the one place where a write the machine refuses (no space left, quota exceeded, permission lost,
a read-only file system) becomes one line for the user: `write_failure` / `mapped_write_errors` turn such an
`OSError` into `WriteFailed`, naming the path, the free space there and what to do. The temporary is removed, so
nothing half-written is left under a final name, and running the same command again once there is room finishes.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import LinesError

# errno → what the machine said, for the writes it refuses (anything else keeps its traceback: a bug).
SPACE_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                errno.EFBIG: "file too large for the file system"}
ACCESS_ERRORS = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                 errno.EROFS: "read-only file system"}
GB = 10**9
# How Rust libraries (safetensors, which transformers saves checkpoints with; tokenizers) report an OS error.
NATIVE_OS_ERROR = re.compile(r"Os \{ code: (\d+)")


class WriteFailed(LinesError):
    """The machine refused a write (space, quota, permission, read-only): one line naming the path and the fix."""


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system of `path` (its nearest existing parent); None if that cannot be known."""
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return shutil.disk_usage(where).free
    except OSError:
        return None


def size_text(count: int) -> str:
    """Bytes as a person reads them: '16.1 GB', '2.3 MB'."""
    return f"{count / GB:.1f} GB" if count >= GB else f"{max(count / 10**6, 0.1):.1f} MB"


def os_error_code(exc: BaseException) -> int | None:
    """The errno of an OSError, or of a native library's error that carries one in its message."""
    if isinstance(exc, OSError):
        return exc.errno
    match = NATIVE_OS_ERROR.search(str(exc)) if isinstance(exc, Exception) else None
    return int(match.group(1)) if match else None


def write_failure(exc: BaseException, path: str | Path, needed_bytes: int | None = None) -> WriteFailed | None:
    """The one-line error for a write to `path` that the machine refused, or None when `exc` is something else.
    `needed_bytes`: what the write still had to put there, when known (said in the line)."""
    code = os_error_code(exc)
    if code not in SPACE_ERRORS and code not in ACCESS_ERRORS:
        return None
    again = "then run the same command again"
    if code in SPACE_ERRORS:
        free = free_bytes(path)
        have = f"{size_text(free)} free there now" if free is not None else "free space there unknown"
        need = f"; it needs about {size_text(needed_bytes)} more" if needed_bytes else ""
        return WriteFailed(f"{path}: cannot write ({SPACE_ERRORS[code]}; {have}{need}): free space on that "
                           f"file system or choose another place, {again}")
    return WriteFailed(f"{path}: cannot write ({ACCESS_ERRORS[code]}): make it writable or choose another "
                       f"place, {again}")


@contextmanager
def mapped_write_errors(path: str | Path, needed_bytes: int | None = None) -> Iterator[None]:
    """Writes to `path` inside the block: a refused write is `WriteFailed` (see `write_failure`; it names the file
    the error names, else `path`), other errors pass."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - anything but a refused write is re-raised as it was
        failure = write_failure(exc, getattr(exc, "filename", None) or path, needed_bytes)
        if failure is None:
            raise
        raise failure from None


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import (before any writing thread starts): os.umask can only be read by setting it.
UMASK = _process_umask()
# What open() and mkdir() give a new file or directory: a temporary file or directory from `tempfile` is private
# (0600 / 0700), and once renamed into place it must read like any other file the user writes (a report, a merged
# checkpoint on a shared machine).
FILE_MODE, DIRECTORY_MODE = 0o666 & ~UMASK, 0o777 & ~UMASK


def write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:  # named by the file being written, not its temporary
        raise write_failure(exc, path, len(text.encode("utf-8"))) or exc
    return path


def write_json(path: str | Path, data: Any, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(data, indent=indent, default=str) + "\n")


def write_jsonl(path: str | Path, rows: list) -> Path:
    return write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def _make_directory_beside(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    made = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    made.chmod(DIRECTORY_MODE)
    return made


def temporary_directory_beside(target: str | Path) -> Path:
    """A fresh, uniquely named directory next to `target`, to be filled and then renamed over it."""
    target = Path(target)
    try:
        return _make_directory_beside(target)
    except OSError as exc:
        raise write_failure(exc, target) or exc


def output_directory_beside(out_dir: Path) -> Path:
    """The temporary directory a merge writes into, next to `out_dir`; a place where nothing can be written (a
    file in the path, no permission, a read-only file system) is one line, not a traceback."""
    try:
        return _make_directory_beside(Path(out_dir))
    except OSError as exc:
        raise LinesError(f"{out_dir}: cannot create the output directory there ({exc.strerror or exc}); choose "
                         "another path") from None


def replace_directory(new: str | Path, target: str | Path) -> Path:
    """Move the finished directory `new` to `target`, replacing what is there.

    With no old target this is one rename. An old target is first renamed aside, then `new` renamed in:
    `target` is never a partly written directory (it is briefly absent, which readers treat as not done).
    """
    new, target = Path(new), Path(target)
    with mapped_write_errors(target):
        if not target.exists():
            os.replace(new, target)
            return target
        trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, trash / "old")
        os.replace(new, target)
    shutil.rmtree(trash, ignore_errors=True)
    return target


def publish_directory(new: str | Path, target: str | Path) -> bool:
    """Move the finished directory `new` to `target` unless a finished `target` is already there; True if moved.

    For content-addressed outputs (the name stands for the content), where any finished copy is as good as another:
    one rename, never a moment where `target` is absent or partial, and two processes racing to write it both end
    with one complete `target` (the second's copy is discarded).
    """
    new, target = Path(new), Path(target)
    try:
        os.rename(new, target)  # onto an existing non-empty directory this fails instead of replacing it
        return True
    except OSError as err:
        if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise write_failure(err, target) or err
        shutil.rmtree(new, ignore_errors=True)
        return False
