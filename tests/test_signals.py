"""SIGINT (Ctrl-C) and SIGTERM (what a scheduler sends before it kills) stop `lines merge`, the sweep and the training
stage within seconds with one line ("interrupted; run the same command to resume") and exit 130 / 143; every
finished record is kept, nothing half-written is left under a final name, and the same command then finishes with
the results of a run that was never interrupted.

Each signal is sent at a seeded moment defined by what the job has written (the k-th record or shard to appear),
not by a clock, so a moment can be replayed and no sleep races the job.
"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

import launch_helpers
import sweep_fixtures as sf
import tiny
from faults import record_faults
from launch_helpers import REPO, run
from lines.errors import RESUME_LINE
from lines.fingerprints import fingerprint
from test_machine_faults import SMALL
from test_resume_after_kill import unreadable_records
from train_helpers import tiny_base, tiny_config, write_config  # noqa: F401 - tiny_base is a fixture

pytestmark = pytest.mark.slow  # each test runs its stage three or four times in fresh processes
STOPPED_WITHIN_S = 20  # "within seconds", with room for a busy two-core machine


def signalled_when(args: list[str], marker, signum: int, log) -> bool:
    """Run `args`, send `signum` once `marker()` holds, and check how it stopped; True if the signal cut it short
    (False: it finished before the marker)."""
    with open(log, "w") as err:
        proc = subprocess.Popen(args, cwd=REPO, env=launch_helpers.test_env(), stdout=subprocess.DEVNULL, stderr=err)
        while not marker():
            if proc.poll() is not None:
                assert proc.returncode == 0, open(log).read()[-3000:]
                return False
            time.sleep(0.005)  # polling the marker: the moment is the marker's, not this interval's
        sent = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(timeout=120)
    stopped_after = time.monotonic() - sent
    text = open(log).read()
    if code == 0:  # the marker was the job's last write: it finished
        return False
    assert code == 128 + signum, text[-3000:]
    assert [line for line in text.splitlines() if "interrupted" in line] == [RESUME_LINE], text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert stopped_after < STOPPED_WITHIN_S
    return True


def count(directory, pattern="*") -> int:
    return len(list(directory.glob(pattern))) if directory.exists() else 0


# -- lines merge ---------------------------------------------------------------------------------------------------

def test_a_merge_stopped_by_a_signal_leaves_no_output_and_its_rerun_writes_the_uninterrupted_bytes(tmp_path):
    recipe = tiny.ties_recipe_on_two_policies(tmp_path, "4MB", hidden_size=512, intermediate_size=1024,
                                              num_hidden_layers=4)
    merge = lambda out: [sys.executable, "-m", "lines.cli", "merge", str(recipe), str(out), "--quiet"]
    assert run(merge(tmp_path / "reference")).returncode == 0
    expected = fingerprint(tmp_path / "reference")
    shards = count(tmp_path / "reference", "*.safetensors")
    rng, out, cut = random.Random(17), tmp_path / "out", []
    for signum in (signal.SIGINT, signal.SIGTERM):
        k = rng.randint(1, shards - 1)  # signalled once the k-th shard file appears
        cut.append(signalled_when(merge(out), lambda: count(tmp_path, ".out.tmp-*/*.safetensors") >= k, signum,
                                  tmp_path / "err.txt"))
        assert not out.exists() and count(tmp_path, ".out.tmp-*") == 0  # nothing left behind
    assert any(cut)
    assert run(merge(out)).returncode == 0
    assert fingerprint(out) == expected
    record_faults("lines merge", "signal (SIGINT, SIGTERM)", cut)


# -- the sweep -----------------------------------------------------------------------------------------------------

def test_a_sweep_stopped_by_a_signal_resumes_to_the_uninterrupted_points_and_report(tmp_path):
    inputs = sf.build_sweep_inputs(tmp_path / "inputs")
    sweep = lambda root: [sys.executable, str(REPO / "pipelines" / "merge_policies.py"), "--config",
                          str(sf.sweep_config(root, inputs, **SMALL)), "--quiet"]
    assert run(sweep(tmp_path / "reference")).returncode == 0
    points = lambda root: root / "runs" / "tiny" / "sweep" / "points"
    # Finished records only: a record being written is a dot-named temporary file in the same directory, removed
    # when the signal cuts its write short, so counting it would see records vanish.
    records = lambda root: count(points(root), "*.json")
    rng, cut = random.Random(23), []
    for signum in (signal.SIGINT, signal.SIGTERM):
        start = records(tmp_path / "resumed")
        k = start + rng.randint(1, 3)  # signalled once k point records are there
        cut.append(signalled_when(sweep(tmp_path / "resumed"), lambda: records(tmp_path / "resumed") >= k,
                                  signum, tmp_path / "err.txt"))
        assert unreadable_records(tmp_path / "resumed" / "runs") == []
        assert records(tmp_path / "resumed") >= k  # every finished record kept
    assert all(cut)
    assert run(sweep(tmp_path / "resumed")).returncode == 0
    produced = lambda root, name: (root / "runs" / "tiny" / name).read_text()
    for name in ("sweep/points.jsonl", "sweep/plan.json", "report/points.csv"):
        assert produced(tmp_path / "resumed", name) == produced(tmp_path / "reference", name), name
    record_faults("sweep", "signal (SIGINT, SIGTERM)", cut)


# -- the training stage --------------------------------------------------------------------------------------------

def test_a_training_stage_stopped_by_a_signal_resumes_to_the_uninterrupted_policies(tiny_base, tmp_path):
    def train(root):
        config = tiny_config(root / "runs", tiny_base, policies=[{"reward": "long"}, {"reward": "positive"}])
        return [sys.executable, str(REPO / "pipelines" / "train_policies.py"), "--config",
                str(write_config(root / "cfg.yaml", config))]

    for root in ("reference", "resumed"):
        (tmp_path / root).mkdir()
    assert run(train(tmp_path / "reference")).returncode == 0
    policies = lambda root: root / "runs" / "t" / "policies"
    markers = [lambda: (policies(tmp_path / "resumed") / ".long.tmp").exists(),  # while the first policy trains
               lambda: (policies(tmp_path / "resumed") / ".positive.tmp").exists()]  # the second
    cut = [signalled_when(train(tmp_path / "resumed"), marker, signum, tmp_path / "err.txt")
           for marker, signum in zip(markers, (signal.SIGTERM, signal.SIGINT))]
    assert any(cut)
    assert unreadable_records(tmp_path / "resumed" / "runs") == []
    assert run(train(tmp_path / "resumed")).returncode == 0
    for name in ("long", "positive"):
        assert fingerprint(policies(tmp_path / "resumed") / name) == fingerprint(policies(tmp_path / "reference") / name)
    record_faults("training", "signal (SIGINT, SIGTERM)", cut)
