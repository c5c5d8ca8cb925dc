"""Atomic writes: a reader sees the old file (or directory) or the new one, never half of one.

Everything is written under a unique temporary name in the target's own directory (same file system, and two
processes writing the same target never share a temporary) and renamed into place.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import LinesError


def write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, data: Any, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(data, indent=indent, default=str) + "\n")


def write_jsonl(path: str | Path, rows: list) -> Path:
    return write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def temporary_directory_beside(target: str | Path) -> Path:
    """A fresh, uniquely named directory next to `target`, to be filled and then renamed over it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def output_directory_beside(out_dir: Path) -> Path:
    """The temporary directory a merge writes into, next to `out_dir`; a place where nothing can be written (a
    file in the path, no permission, a read-only file system) is one line, not a traceback."""
    try:
        return temporary_directory_beside(out_dir)
    except OSError as exc:
        raise LinesError(f"{out_dir}: cannot create the output directory there ({exc.strerror or exc}); choose "
                         "another path") from None


def replace_directory(new: str | Path, target: str | Path) -> Path:
    """Move the finished directory `new` to `target`, replacing what is there.

    With no old target this is one rename. An old target is first renamed aside, then `new` renamed in:
    `target` is never a partly written directory (it is briefly absent, which readers treat as not done).
    """
    new, target = Path(new), Path(target)
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
            raise
        shutil.rmtree(new, ignore_errors=True)
        return False
