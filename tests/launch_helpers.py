"""Running the project's entry points as other processes: under `accelerate launch` with two CPU processes, and
killed with SIGKILL at a chosen moment (for the resume tests)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent


def test_env(**extra: str) -> dict:
    """Offline, CPU, one thread per process, and this checkout's code first on the path."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1", **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_cpu_processes(args: list[str]) -> list[str]:
    """`args` (a script and its arguments, or `-m module ...`) under `accelerate launch` with two CPU processes.
    A free port of its own: launches running at the same time on one machine would otherwise share the default
    rendezvous port and join each other's process group."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), *args]


def run(args: list[str], timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=test_env(ACCELERATE_USE_CPU="1", **env), capture_output=True, text=True,
                          timeout=timeout)


def run_killed_after(args: list[str], seconds: float, after: Callable[[], bool] | None = None, **env: str) -> bool:
    """Start `args` in its own process group and SIGKILL the whole group `seconds` after it starts (or after
    `after()` first holds: a moment inside a phase rather than in Python's start-up), as when a job is killed: no
    clean-up runs. True if it was still running then, False if it had already finished."""
    proc = subprocess.Popen(args, cwd=REPO, env=test_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        if after is not None:
            while not after():
                if proc.poll() is not None:
                    return False
                time.sleep(0.002)
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def phase_span(args: list[str], started: Callable[[], bool], **env: str) -> tuple[float, float]:
    """(seconds until `started()` first holds, seconds from then to the end) of one uninterrupted run."""
    proc = subprocess.Popen(args, cwd=REPO, env=test_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    begin = time.monotonic()
    while not started() and proc.poll() is None:
        time.sleep(0.002)
    seen = time.monotonic()
    _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    return seen - begin, time.monotonic() - seen


def timed(args: list[str], **env: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.monotonic()
    result = run(args, **env)
    return time.monotonic() - start, result
