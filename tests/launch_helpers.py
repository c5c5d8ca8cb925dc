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


def run_killed_after(args: list[str], seconds: float, **env: str) -> bool:
    """Start `args` in its own process group and SIGKILL the whole group after `seconds` (no clean-up runs, as
    when a job is killed); True if it was still running then, False if it had already finished."""
    proc = subprocess.Popen(args, cwd=REPO, env=test_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def timed(args: list[str], **env: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.monotonic()
    result = run(args, **env)
    return time.monotonic() - start, result
