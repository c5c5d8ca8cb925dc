"""Killed with SIGKILL at seeded random moments and run again, each stage finishes with the results of a run that
was never interrupted: nothing a killed run leaves behind passes for finished work.

Kill moments are drawn from a seeded generator over the span of an uninterrupted run (measured first), so a
failure names a moment that can be replayed. Each kill is followed by another killed attempt or by the final run,
in the same run directory: later attempts resume from what earlier ones left.
"""
from __future__ import annotations

import json
import random
import shutil
import sys

import pytest

import sweep_fixtures as sf
import tiny
from faults import record_kills
from launch_helpers import REPO, phase_span, run, run_killed_after, timed
from lines.fingerprints import fingerprint
from train_helpers import TINY_LLAMA, tiny_config, write_config

pytestmark = pytest.mark.slow
KILLS = 3


def kill_moments(seed: int, span: float, low: float = 0.45) -> list[float]:
    """KILLS moments within a run's span (by default in its second half: the first is mostly Python importing torch
    and transformers)."""
    rng = random.Random(seed)
    return [rng.uniform(low, 0.95) * span for _ in range(KILLS)]


def killed_then_finished(args: list[str], span: float, seed: int, kills: int = 2) -> list[bool]:
    """Run `args` `kills` times killed at seeded moments, then once to the end; which attempts were cut short."""
    cut = [run_killed_after(args, moment) for moment in kill_moments(seed, span)[:kills]]
    final = run(args)
    assert final.returncode == 0, final.stderr[-3000:]
    return cut


def unreadable_records(directory) -> list[str]:
    """JSON records under their final names that do not parse: half-written files passing for finished ones.
    (Temporary files of killed writes, hidden names never read back, may be left behind.)"""
    bad = []
    for path in directory.rglob("*.json*"):
        if path.name.startswith(".") or path.suffix not in (".json", ".jsonl"):
            continue
        text = path.read_text()
        try:
            for record in (text.splitlines() if path.suffix == ".jsonl" else [text]):
                if record:
                    json.loads(record)
        except ValueError:
            bad.append(str(path))
    return bad


# -- lines merge ---------------------------------------------------------------------------------------------------

def test_a_killed_merge_leaves_no_output_and_its_rerun_writes_the_uninterrupted_bytes(tmp_path):
    recipe = tiny.ties_recipe_on_two_policies(tmp_path, "4MB", hidden_size=512, intermediate_size=1024,
                                              num_hidden_layers=4)
    merge = lambda out: [sys.executable, "-m", "lines.cli", "merge", str(recipe), str(out), "--quiet"]
    # The kills land while the output is being written: from its temporary directory's appearance to the end.
    writing = lambda out: lambda: any(tmp_path.glob(f".{out}.tmp-*")) or (tmp_path / out).exists()
    _, span = phase_span(merge(tmp_path / "reference"), writing("reference"))
    expected = fingerprint(tmp_path / "reference")

    out, cut = tmp_path / "out", []
    for moment in kill_moments(7, span, low=0.0):
        cut.append(run_killed_after(merge(out), moment, after=writing("out")))
        # Killed: either no output at all, or (killed after the rename) the whole of it.
        assert not out.exists() or fingerprint(out) == expected
        shutil.rmtree(out, ignore_errors=True)  # a finished one too: the next attempt starts again
    assert any(cut), "no attempt was killed before it finished: the kill moments test nothing"
    final = run(merge(out))
    assert final.returncode == 0, final.stderr[-3000:]
    assert fingerprint(out) == expected
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "reference").iterdir())
    record_kills("lines merge", cut)


# -- the sweep -----------------------------------------------------------------------------------------------------

def test_a_killed_sweep_resumes_to_the_uninterrupted_points_and_report(tmp_path):
    paths = sf.build_sweep_inputs(tmp_path / "inputs")
    # A small sweep (one β candidate, one γ, two metrics) that still has every stage: validation, evaluation,
    # z-scores aside, reference-free fronts and the report.
    small = dict(sweep={"points": 3, "variants": [
        {"name": "soup", "method": "linear"},
        {"name": "lines", "method": "linear", "lines": {"alpha": "auto", "beta_grid": [0.5, 1.0]}}]},
        forgetting={"gamma_grid": [0.5]}, bootstrap={"samples": 20})
    sweep = lambda root: [sys.executable, str(REPO / "pipelines" / "merge_policies.py"), "--config",
                          str(sf.sweep_config(root, paths, **small)), "--quiet"]
    span, reference = timed(sweep(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr[-3000:]
    cut = killed_then_finished(sweep(tmp_path / "resumed"), span, seed=11)
    assert any(cut), "no attempt was killed before it finished: the kill moments test nothing"

    produced = lambda root, name: (root / "runs" / "tiny" / name).read_text()
    for name in ("sweep/points.jsonl", "sweep/plan.json", "report/points.csv"):
        assert produced(tmp_path / "resumed", name) == produced(tmp_path / "reference", name), name
    assert unreadable_records(tmp_path / "resumed" / "runs") == []
    record_kills("sweep", cut)


# -- the training stage --------------------------------------------------------------------------------------------

def test_a_killed_training_stage_resumes_to_the_uninterrupted_theta0_and_policies(tmp_path):
    def train(root):
        config = tiny_config(root / "runs", None, policies=[{"reward": "long"}, {"reward": "positive"}])
        # θ0 trained here too (SFT), so kills land in its stage as well as in the policies'.
        config["base"] = {"sft": {"init": {"model_type": "llama", **TINY_LLAMA}, "tokenizer": {"train": {"vocab_size": 320}},
                                  "data": {"source": "demo", "n": 200}, "max_length": 64,
                                  "training": {"learning_rate": 1e-2, "max_steps": 6, "per_device_batch_size": 8,
                                               "logging_steps": 3}}}
        return [sys.executable, str(REPO / "pipelines" / "train_policies.py"), "--config",
                str(write_config(root / "cfg.yaml", config))]

    (tmp_path / "reference").mkdir()
    (tmp_path / "resumed").mkdir()
    span, reference = timed(train(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr[-3000:]
    cut = killed_then_finished(train(tmp_path / "resumed"), span, seed=5)
    assert any(cut), "no attempt was killed before it finished: the kill moments test nothing"

    theta0 = lambda root: root / "runs" / "t" / "base"
    assert fingerprint(theta0(tmp_path / "resumed")) == fingerprint(theta0(tmp_path / "reference"))
    for name in ("long", "positive"):
        policy = lambda root: root / "runs" / "t" / "policies" / name
        assert fingerprint(policy(tmp_path / "resumed")) == fingerprint(policy(tmp_path / "reference")), name
        manifest = lambda root: json.loads((policy(root) / "manifest.json").read_text())
        resumed, uninterrupted = manifest(tmp_path / "resumed"), manifest(tmp_path / "reference")
        assert resumed["status"] == "complete"
        assert resumed["evaluation"]["policy"] == uninterrupted["evaluation"]["policy"]
    assert unreadable_records(tmp_path / "resumed" / "runs") == []
    base_eval = lambda root: json.loads((root / "runs" / "t" / "base_eval.json").read_text())["summary"]
    assert base_eval(tmp_path / "resumed") == base_eval(tmp_path / "reference")
    record_kills("training (SFT θ0 and DPO policies)", cut)
