"""The training script under `accelerate launch`: two CPU processes (DDP over gloo) and DeepSpeed ZeRO-2."""
from __future__ import annotations

import json

import pytest

from pipelines.config.load import parse_config
from pipelines.demo.data import demo_prompts
from lines.models import load_causal_lm
from pipelines.training.checkpoints import load_tokenizer
from pipelines.training.evaluation import evaluate_model
from pipelines.training.rewards import build_reward_table
from train_helpers import (REPO, accelerate_bin, launch, max_weight_change, one_torch_thread, state_dict_of,  # noqa: F401
                           tiny_base, tiny_config, write_config)

pytestmark = pytest.mark.slow


def run_launched(tmp_path, base, accelerate_config: str, **sections) -> dict:
    data = tiny_config(tmp_path / "runs", base, **sections)
    config_path = write_config(tmp_path / "cfg.yaml", data)
    launcher = str(REPO / "configs" / "accelerate" / accelerate_config)
    result = launch([accelerate_bin(), "launch", "--config_file", launcher, "pipelines/train_policies.py",
                     "--config", str(config_path)], timeout=400)
    assert result.returncode == 0, result.stderr[-12000:]  # enough to show the failing rank's own error
    policy_dir = tmp_path / "runs" / "t" / "policies" / "long"
    assert "policy long [full, trained]" in result.stdout
    return {"data": data, "manifest": json.loads((policy_dir / "manifest.json").read_text()), "dir": policy_dir}


@pytest.mark.parametrize("accelerate_config", ["multi_cpu.yaml", "deepspeed_zero2_cpu.yaml"])
def test_two_processes_train_and_evaluate_like_one(tmp_path, tiny_base, accelerate_config):
    """DPO under DDP and ZeRO-2: the policy trains, the launch is recorded, and θ0's held-out numbers, computed in
    two shards, equal a one-process evaluation exactly."""
    run = run_launched(tmp_path, tiny_base, accelerate_config)
    manifest = run["manifest"]
    assert manifest["distributed"]["processes"] == 2 and manifest["processes"] == 2
    if accelerate_config.startswith("deepspeed"):
        assert manifest["distributed"]["type"] == "DEEPSPEED" and manifest["distributed"]["zero_stage"] == 2
    assert max_weight_change(run["dir"], tiny_base) > 1e-4
    assert manifest["evaluation"]["policy"]["long"]["n"] == 8
    config = parse_config(run["data"], "cfg.yaml")
    rows = json.loads((tmp_path / "runs" / "t" / "base_eval.json").read_text())["rows"]
    model, tokenizer = load_causal_lm(tiny_base), load_tokenizer(tiny_base)
    held_out = demo_prompts("validation", config.prompts.n_eval)
    local = evaluate_model(model, tokenizer, held_out, config.evaluation, build_reward_table(config.rewards),
                           tmp_path, "local")
    assert [(r["prompt_id"], r["sample_index"], r["response"]) for r in rows] == \
        [(r["prompt_id"], r["sample_index"], r["response"]) for r in local["rows"]]
    assert manifest["evaluation"]["base"]["long"] == local["summary"]["long"]


@pytest.mark.parametrize("accelerate_config", ["multi_cpu.yaml", "deepspeed_zero2_cpu.yaml"])
def test_ppo_under_two_processes(tmp_path, tiny_base, accelerate_config):
    """PPO's rollouts, value model and reward under DDP and ZeRO-2: each process scores its own responses."""
    training = {"algorithm": "ppo", "learning_rate": 1e-2, "max_steps": 2, "per_device_batch_size": 4,
                "logging_steps": 1, "beta": 0.05, "max_length": 64, "rl": {"max_new_tokens": 12},
                "ppo": {"num_ppo_epochs": 2}}
    run = run_launched(tmp_path, tiny_base, accelerate_config, training=training)
    manifest = run["manifest"]
    assert manifest["algorithm"] == "ppo" and manifest["distributed"]["processes"] == 2
    if accelerate_config.startswith("deepspeed"):
        assert manifest["distributed"]["type"] == "DEEPSPEED" and manifest["distributed"]["zero_stage"] == 2
    # trl counts episodes over both processes: 2 rollout batches of 4 prompts on each.
    assert [row["step"] for row in manifest["training_curve"]] == [1, 2]
    assert manifest["training_curve"][-1]["episode"] == 16
    assert max_weight_change(run["dir"], tiny_base) > 1e-4
    saved, base = state_dict_of(run["dir"]), state_dict_of(tiny_base)
    assert saved.keys() == base.keys()  # the policy alone, gathered from ZeRO's partitions
