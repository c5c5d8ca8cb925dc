"""One job per run directory: the main job and the training stage take the run's lock before they write anything.

The lock is an OS file lock (`filelock`) on runs/<name>/.lock, held by the main process of a launch for the whole
job: the other processes of the same `accelerate launch` share it (they never take it; they learn from the main
process whether it was taken). The OS releases it when the holder exits, however it exits, so a killed job never
leaves a stale lock. A second job on the same run is refused in one line naming the holder's PID and host (from
runs/<name>/.lock.holder.json, written once the lock is held). Within one process the lock is re-entrant, and a
run directory inside a held one (a study's seeds, the training stage of the main job) is held already.
"""
from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from lines.atomic import mapped_write_errors, write_json
from lines.errors import stop_on_signals

from .distributed import is_main_process, on_main
from .errors import PipelineError

LOCK_FILE, HOLDER_FILE = ".lock", ".lock.holder.json"
_held: dict[Path, FileLock] = {}  # run directories this process holds


def holder_of(run_dir: Path) -> str:
    """Who holds the run's lock, as its holder file says."""
    try:
        holder = json.loads((run_dir / HOLDER_FILE).read_text())
        return f"PID {holder['pid']} on {holder['host']}, started {holder['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet said who it is"


def _is_held(run_dir: Path) -> bool:
    return any(run_dir == held or held in run_dir.parents for held in _held)


def acquire(run_dir: Path) -> bool:
    """Take the lock of `run_dir` for this process (False: it held it already); refused in one line if taken."""
    run_dir = run_dir.absolute()
    if _is_held(run_dir):
        return False
    with mapped_write_errors(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(run_dir / LOCK_FILE), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise PipelineError(f"{run_dir}: another job is running in this run directory ({holder_of(run_dir)}); "
                                "wait for it to finish or stop it, or give this job another run_name") from None
        _held[run_dir] = lock
        write_json(run_dir / HOLDER_FILE, {"pid": os.getpid(), "host": socket.gethostname(),
                                           "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
    return True


def release(run_dir: Path) -> None:
    run_dir = run_dir.absolute()
    lock = _held.pop(run_dir, None)
    if lock is not None:
        (run_dir / HOLDER_FILE).unlink(missing_ok=True)
        lock.release()


@contextmanager
def hold_run(run_dir: str | Path) -> Iterator[None]:
    """The job's body runs holding the run's lock (taken by the main process; every process stops if refused)."""
    run_dir = Path(run_dir)
    took = on_main(lambda: acquire(run_dir), "taking the run directory's lock")
    try:
        yield
    finally:
        if took and is_main_process():
            release(run_dir)


@contextmanager
def guarded_job(run_dir: str | Path) -> Iterator[None]:
    """An entry point's job: SIGINT and SIGTERM stop it (finished records kept), it holds the run's lock, and a write
    the machine refuses under the run directory is one line."""
    with stop_on_signals(), hold_run(run_dir), mapped_write_errors(run_dir):
        yield
