"""What the machine does to a job: a full disk (or a quota, a permission lost, a read-only file system) while
writing ends in one `error:` line naming the path and what to do, exit 2, nothing half-written under a final name,
and the same command run again once there is room finishes with the uninterrupted results.

The disk fills at seeded moments (a capacity drawn over the bytes an uninterrupted run writes: tests/full_disk.py),
so a failure names a moment that can be replayed; each fill that cut the job short is counted in tests/faults.py.
"""
from __future__ import annotations

import errno
import os
import random
import shutil
import signal

import pytest

import sweep_fixtures as sf
import tiny
from faults import record_faults
from full_disk import FullDisk
from lines.cli import main as lines_main
from lines.errors import Interrupted, report_interrupted, stop_on_signals
from lines.fingerprints import fingerprint
from pipelines.merge_policies import main as sweep_main
from test_resume_after_kill import unreadable_records
from train_helpers import tiny_base, tiny_config, write_config  # noqa: F401 - tiny_base is a fixture

FILLS = 3


def capacities(seed: int, total: int) -> list[int]:
    rng = random.Random(seed)
    return sorted(rng.randrange(0, total) for _ in range(FILLS))


def bytes_seen(monkeypatch, root, job) -> int:
    """The bytes an uninterrupted `job` writes under `root` as FullDisk counts them (its output then removed)."""
    with monkeypatch.context() as patch:
        disk = FullDisk(patch, root, 10**15)
        assert job() == 0
    for path in root.iterdir():
        shutil.rmtree(path)
    return disk.used


def one_error_line(err: str, *words: str, alone: bool = True) -> str:
    """The one `error:` line of stderr (`alone`: and nothing else there; a stage with progress bars prints them)."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err and (len(lines) == 1 or not alone), err
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


# -- lines merge ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    return tiny.ties_recipe_on_two_policies(tmp_path_factory.mktemp("merge"), "40KB")


def test_a_merge_on_a_full_disk_is_one_line_and_its_rerun_writes_the_uninterrupted_bytes(recipe, tmp_path,
                                                                                        monkeypatch, capsys):
    merge = lambda out: ["merge", str(recipe), str(out), "--quiet"]
    assert lines_main(merge(tmp_path / "reference")) == 0
    expected = fingerprint(tmp_path / "reference")
    assert len(list((tmp_path / "reference").glob("*.safetensors"))) > 1  # shards and an index: every write site
    out_root = tmp_path / "disk"
    out_root.mkdir()
    total = bytes_seen(monkeypatch, out_root, lambda: lines_main(merge(out_root / "unlimited")))
    capsys.readouterr()
    out, cut = out_root / "out", []
    for capacity in capacities(3, total):
        with monkeypatch.context() as patch:
            disk = FullDisk(patch, out_root, capacity)
            code = lines_main(merge(out))
        err = capsys.readouterr().err
        cut.append(disk.failed > 0)
        assert code == 2
        one_error_line(err, str(out_root), "no space left", "free there now", "run the same command again")
        assert list(out_root.iterdir()) == []  # nothing half-written, no temporary left behind
    assert all(cut)
    assert lines_main(merge(out)) == 0  # the space is back
    assert fingerprint(out) == expected
    record_faults("lines merge", "full disk", cut)


@pytest.mark.parametrize("error, words", [(errno.EDQUOT, "disk quota exceeded"), (errno.EACCES, "permission denied"),
                                          (errno.EROFS, "read-only file system")])
def test_a_merge_the_machine_refuses_to_write_is_one_line(recipe, tmp_path, monkeypatch, capsys, error, words):
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        FullDisk(patch, tmp_path, 0, error=error)
        assert lines_main(["merge", str(recipe), str(out), "--quiet"]) == 2
    one_error_line(capsys.readouterr().err, str(tmp_path), words, "run the same command again")
    assert list(tmp_path.iterdir()) == []


# -- the sweep (the main job) --------------------------------------------------------------------------------------

SMALL = dict(sweep={"points": 3, "variants": [
    {"name": "soup", "method": "linear"},
    {"name": "lines", "method": "linear", "lines": {"alpha": "auto", "beta_grid": [0.5, 1.0]}}]},
    forgetting={"gamma_grid": [0.5]}, bootstrap={"samples": 20})


@pytest.fixture(scope="module")
def sweep_inputs(tmp_path_factory):
    return sf.build_sweep_inputs(tmp_path_factory.mktemp("sweep-inputs"))


@pytest.mark.slow  # eight tiny sweeps, about a minute on two cores
def test_a_sweep_on_a_full_disk_is_one_line_and_its_rerun_reaches_the_uninterrupted_points(sweep_inputs, tmp_path,
                                                                                           monkeypatch, capsys):
    job = lambda root: lambda: sweep_main(["--config", str(sf.sweep_config(root, sweep_inputs, **SMALL)), "--quiet"])
    assert job(tmp_path / "reference")() == 0
    runs = tmp_path / "disk" / "runs"
    runs.mkdir(parents=True)
    total = bytes_seen(monkeypatch, runs, job(tmp_path / "disk"))
    capsys.readouterr()
    cut = []
    for capacity in capacities(13, total):
        with monkeypatch.context() as patch:
            disk = FullDisk(patch, runs, capacity)
            code = job(tmp_path / "disk")()
        cut.append(disk.failed > 0)
        assert code == 2
        one_error_line(capsys.readouterr().err, str(runs), "no space left", "run the same command again")
        assert unreadable_records(runs) == []
    assert all(cut)
    assert job(tmp_path / "disk")() == 0
    produced = lambda root, name: (root / "runs" / "tiny" / name).read_text()
    for name in ("sweep/points.jsonl", "sweep/plan.json", "report/points.csv"):
        assert produced(tmp_path / "disk", name) == produced(tmp_path / "reference", name), name
    record_faults("sweep", "full disk", cut)


# -- the training stage --------------------------------------------------------------------------------------------

@pytest.mark.slow  # three tiny DPO trainings
def test_a_policy_whose_checkpoint_finds_the_disk_full_is_one_line_and_its_rerun_trains_it(tiny_base, tmp_path,
                                                                                         monkeypatch, capsys):
    import pipelines.training.run as training_run
    from pipelines.train_policies import main as train_main

    def train(root):
        return ["--config", str(write_config(root / "cfg.yaml", tiny_config(root / "runs", tiny_base)))]

    (tmp_path / "reference").mkdir()
    (tmp_path / "disk").mkdir()
    assert train_main(train(tmp_path / "reference")) == 0
    real = training_run.train_dpo

    def saving_on_a_full_disk(job, out_dir):  # the trainer's last save (native code: safetensors) finds no space
        real(job, out_dir)
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dir / "model.safetensors"))

    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(training_run, "train_dpo", saving_on_a_full_disk)
        assert train_main(train(tmp_path / "disk")) == 2
    policy = lambda root: root / "runs" / "t" / "policies" / "long"
    one_error_line(capsys.readouterr().err, str(policy(tmp_path / "disk").parent), "model.safetensors",
                   "no space left", "run the same command again", alone=False)
    assert not policy(tmp_path / "disk").exists()
    assert unreadable_records(tmp_path / "disk" / "runs") == []
    assert train_main(train(tmp_path / "disk")) == 0
    assert fingerprint(policy(tmp_path / "disk")) == fingerprint(policy(tmp_path / "reference"))
    record_faults("training", "full disk", [True])


# -- signals, in one process (the stages stopped by signals: tests/test_signals.py) -----------------------------------

@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_inside_the_job_raises_interrupted_and_the_handlers_are_restored(signum, code, capsys):
    before = signal.getsignal(signum)
    with pytest.raises(Interrupted) as caught:
        with stop_on_signals():
            os.kill(os.getpid(), signum)
            for _ in range(10**6):  # the handler runs at the next bytecode
                pass
    assert caught.value.exit_code == code
    assert signal.getsignal(signum) is before
    assert report_interrupted(caught.value) == code
    assert capsys.readouterr().err == "interrupted; run the same command to resume\n"


# -- --check: the free space where the run writes -------------------------------------------------------------------

def test_check_warns_when_the_free_space_where_the_run_writes_is_below_the_plan(sweep_inputs, tmp_path,
                                                                             monkeypatch, capsys):
    import pipelines.check.plan as plan_module

    config = str(sf.sweep_config(tmp_path, sweep_inputs, **SMALL))
    assert sweep_main(["--config", config, "--check"]) == 0
    out = capsys.readouterr().out
    assert "disk: the run writes about" in out and "free there now" in out and "warning: disk" not in out
    monkeypatch.setattr(plan_module, "free_bytes", lambda path: 1000)
    assert sweep_main(["--config", config, "--check"]) == 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning: disk")]
    assert len(warnings) == 1 and str(tmp_path / "runs" / "tiny") in warnings[0] and "only 0.0 MB" in warnings[0]


def test_a_native_library_s_os_error_is_mapped_like_python_s(tmp_path):
    """safetensors (checkpoints saved by transformers) reports a full disk in its own exception's message."""
    from lines.atomic import WriteFailed, mapped_write_errors

    native = RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
                          'left on device" })')
    with pytest.raises(WriteFailed, match="no space left on the device"):
        with mapped_write_errors(tmp_path / "model.safetensors"):
            raise native
    with pytest.raises(RuntimeError, match="not an OS error"):  # anything else passes unchanged
        with mapped_write_errors(tmp_path / "model.safetensors"):
            raise RuntimeError("not an OS error")
