"""One job per run directory: a second job on a run that a job holds is refused in one line naming the holder's PID
and host, before it writes anything; the lock dies with its holder (a SIGKILLed job leaves no stale lock)."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys

import yaml

import sweep_fixtures as sf
from faults import record_faults
import launch_helpers
from launch_helpers import REPO
from pipelines.merge_policies import main as sweep_main
from pipelines.run_lock import HOLDER_FILE, LOCK_FILE, _held, acquire, hold_run, release
from pipelines.train_policies import main as train_main
from test_machine_faults import SMALL, one_error_line
from train_helpers import tiny_config, write_config

HOLDER = """
import sys
from pipelines.run_lock import hold_run
with hold_run(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def holding(run_dir) -> subprocess.Popen:
    """Another process holding `run_dir`'s lock; returns once it says it holds it (no race with a sleep)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], cwd=REPO, env=launch_helpers.test_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_job_is_refused_naming_the_holder_and_a_killed_holder_leaves_no_stale_lock(tmp_path, capsys):
    inputs = sf.build_sweep_inputs(tmp_path / "inputs")
    config = sf.sweep_config(tmp_path, inputs, **SMALL)
    run_dir = tmp_path / "runs" / "tiny"
    holder = holding(run_dir)
    try:
        assert sweep_main(["--config", str(config), "--quiet"]) == 2
        one_error_line(capsys.readouterr().err, str(run_dir), "another job is running", f"PID {holder.pid}",
                       socket.gethostname())
        assert sorted(p.name for p in run_dir.iterdir()) == sorted([LOCK_FILE, HOLDER_FILE])  # nothing written
        # The training stage takes the same lock.
        train = tiny_config(tmp_path / "runs", inputs["base"], run_name="tiny")
        assert train_main(["--config", str(write_config(tmp_path / "train.yaml", train))]) == 2
        one_error_line(capsys.readouterr().err, f"PID {holder.pid}", alone=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # Killed, the holder's lock went with it: the job runs.
    assert sweep_main(["--config", str(config), "--quiet"]) == 0
    assert not (run_dir / HOLDER_FILE).exists()
    record_faults("sweep and training", "second job on a held run", [True, True])


def test_the_lock_is_reentrant_and_covers_the_run_directories_inside(tmp_path):
    run_dir = tmp_path / "run"
    with hold_run(run_dir):
        assert not acquire(run_dir) and not acquire(run_dir / "seed-1")  # held already: nothing more taken
        with hold_run(run_dir / "seed-1"):
            pass
        assert run_dir.absolute() in _held  # the inner exit did not release the outer lock
    assert _held == {}
    assert acquire(run_dir)
    release(run_dir)
