"""One experiment on any process count: a stated global batch fixes a step's batch, the per-device batch and
accumulation follow from the process count, and the reuse rule says in one line why it retrains."""
from __future__ import annotations

import json
import sys

import pytest

from launch_helpers import REPO, run, two_cpu_processes
from pipelines.training.batching import for_processes, micro_batches
from pipelines.config.training import PolicyTraining
from pipelines.training.errors import TrainingError
from pipelines.training.manifest import FORMAT_VERSION, retrain_reason
from train_helpers import tiny_base, tiny_config, write_config  # noqa: F401


@pytest.mark.parametrize("share, cap, expected", [(16, 16, (16, 1)), (8, 16, (8, 1)), (16, 4, (4, 4)),
                                                  (12, 5, (4, 3)), (7, 4, (1, 7)), (1, 8, (1, 1))])
def test_a_process_share_is_cut_into_the_largest_micro_batch_under_the_cap(share, cap, expected):
    size, steps = micro_batches(share, cap)
    assert (size, steps) == expected and size * steps == share and size <= cap


@pytest.mark.parametrize("processes", [1, 2, 4, 8])
def test_the_global_batch_is_the_same_on_every_process_count(processes):
    settings = for_processes(PolicyTraining(global_batch_size=32, per_device_batch_size=8), processes, "cfg")
    assert settings.per_device_batch_size * settings.gradient_accumulation_steps * processes == 32
    assert settings.per_device_batch_size <= 8


def test_settings_without_a_global_batch_are_left_as_they_are():
    settings = PolicyTraining(per_device_batch_size=4, gradient_accumulation_steps=2)
    assert for_processes(settings, 3, "cfg") is settings


def test_a_global_batch_that_does_not_divide_is_refused_in_one_line():
    with pytest.raises(TrainingError) as err:
        for_processes(PolicyTraining(global_batch_size=10), 4, "cfg.yaml: policy 'long'")
    assert str(err.value) == ("cfg.yaml: policy 'long': global_batch_size 10 does not divide among 4 processes; use a "
                              "multiple of 4 or launch a process count that divides 10")


def test_accumulation_is_not_stated_beside_a_global_batch():
    with pytest.raises(ValueError, match="gradient_accumulation_steps is derived from global_batch_size"):
        PolicyTraining(global_batch_size=16, gradient_accumulation_steps=2)


def test_a_config_without_a_global_batch_keeps_its_hash():
    """Runs finished before the field existed are reused: an unset global batch is not part of the settings' hash."""
    assert "global_batch_size" not in PolicyTraining().model_dump()
    assert PolicyTraining(global_batch_size=8).model_dump()["global_batch_size"] == 8


def complete(inputs: dict) -> dict:
    return {"status": "complete", "format_version": FORMAT_VERSION, "hash_inputs": inputs}


@pytest.mark.parametrize("before, after, reason", [
    (None, {}, "no finished policy at runs/t/policies/long"),
    ({"status": "training"}, {}, "the policy at runs/t/policies/long is not complete"),
    ({"status": "complete", "format_version": FORMAT_VERSION}, {"seed": 0},
     "the config hash of runs/t/policies/long differs (its manifest does not record what it was computed from)"),
    (complete({"seed": 0, "processes": 1}), {"seed": 0, "processes": 2},
     "the process count changed (1 → 2), and with it the global batch; state training.global_batch_size to keep "
     "one experiment on any process count"),
    (complete({"seed": 0, "training": {"learning_rate": 0.01, "max_steps": 3}}),
     {"seed": 1, "training": {"learning_rate": 0.02, "max_steps": 3}},
     "changed since it was trained: seed (0 → 1); training settings (learning_rate: 0.01 → 0.02)"),
])
def test_the_reason_for_retraining_names_what_changed(before, after, reason):
    from pathlib import Path

    assert retrain_reason(before, after, Path("runs/t/policies/long")) == reason


def train(tmp_path, base, two: bool, **training):
    data = tiny_config(tmp_path / "runs", base)
    data["training"].update(max_steps=2, **training)
    config = write_config(tmp_path / "cfg.yaml", data)
    args = [str(REPO / "pipelines" / "train_policies.py"), "--config", str(config)]
    result = run(two_cpu_processes(args) if two else [sys.executable, *args], timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "runs" / "t" / "policies" / "long" / "manifest.json").read_text())
    return result, manifest


@pytest.mark.slow
def test_a_one_process_run_with_a_global_batch_is_reused_by_two_processes(tmp_path, tiny_base):
    _, first = train(tmp_path, tiny_base, two=False, global_batch_size=4)
    assert first["hyperparameters"]["per_device_batch_size"] == 4
    result, second = train(tmp_path, tiny_base, two=True, global_batch_size=4)
    assert "policy 'long': reusing" in result.stderr
    assert second["wall_time_s"] == first["wall_time_s"] and second["processes"] == 1  # the same manifest


def test_the_process_count_decides_reuse_only_without_a_global_batch(monkeypatch):
    """The same config hashed on one and on two processes: equal with a global batch, different (and the reason
    line names the process count) with a per-device batch."""
    from types import SimpleNamespace

    from pipelines.training import run as training_run
    from pipelines.config.load import parse_config

    config = parse_config(tiny_config(REPO / "runs-unused", REPO), "cfg.yaml")
    base = SimpleNamespace(fingerprint="sha256:θ0")

    def inputs(processes, **training):
        monkeypatch.setattr(training_run, "process_state", lambda: SimpleNamespace(num_processes=processes))
        return training_run.policy_hash_inputs(config, "long", {"reward": "long"}, PolicyTraining(**training), base)

    assert inputs(1, global_batch_size=8) == inputs(2, global_batch_size=8)
    one, two = inputs(1, per_device_batch_size=8), inputs(2, per_device_batch_size=8)
    assert one != two
    assert retrain_reason(complete(one), two, REPO).startswith("the process count changed (1 → 2)")


def test_ppo_rules_apply_to_the_batch_a_process_count_gives():
    settings = PolicyTraining(algorithm="ppo", global_batch_size=16, per_device_batch_size=16,
                              ppo={"whiten_rewards": True})
    assert for_processes(settings, 2, "cfg").per_device_batch_size == 8
    with pytest.raises(TrainingError, match="with global_batch_size 16 on 4 processes, ppo.whiten_rewards needs"):
        for_processes(settings, 4, "cfg")


def test_the_plan_cuts_the_global_batch_for_the_launch_it_is_checked_for(monkeypatch):
    from pipelines.check import check_and_plan

    monkeypatch.chdir(REPO)
    accelerate = "configs/accelerate/multi_cpu.yaml"  # two processes
    text = check_and_plan("configs/demo.yaml", [], accelerate, None, None).render()
    assert "positive: dpo, full fine-tuning, 50 steps × 8 per device × 1 accumulation × 2 processes = 800 pairs" in text
    with pytest.raises(TrainingError, match="global_batch_size 15 does not divide among 2 processes"):
        check_and_plan("configs/demo.yaml", ["training.training.global_batch_size=15"], accelerate, None, None)
