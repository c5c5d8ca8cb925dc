"""Where one PPO policy's training time goes: rollouts (generation; reference and value passes and the reward) and
updates, with the demo's settings (configs/demo_ppo.yaml) on a finished demo's θ0.

    HF_HUB_OFFLINE=1 PYTHONPATH=$PWD .venv/bin/python benchmarks/ppo_profile.py runs/demo_ppo/base --threads 1

Prints the total and each phase's seconds (the phases are timed around ppo_loop's `collect` and `update` and
ppo_rollout's `sample`), with the machine's load before and after.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="θ0 of a finished demo run, e.g. runs/demo_ppo/base")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the demo runs with 1)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--reward", default="vader", help="reward type (the demo's: vader or length)")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForSequenceClassification

    from lines.models import load_causal_lm
    from pipelines.demo.data import demo_prompts
    from pipelines.training import ppo_loop, ppo_rollout
    from pipelines.training.checkpoints import load_tokenizer
    from pipelines.training.ppo_config import PPOConfig
    from reward_models import build_rewards
    from reward_models.text_format import policy_prompt_ids

    torch.set_num_threads(args.threads)
    base = Path(args.base)
    tokenizer = load_tokenizer(base)
    prompts = [p.prompt for p in demo_prompts("train", 256)]
    ids = [policy_prompt_ids(tokenizer, p) for p in prompts]
    reward = build_rewards([{"name": args.reward, "type": args.reward}])[0]
    seconds = {"rollout": 0.0, "generation": 0.0, "update": 0.0}

    def timed(module, name, key):
        original = getattr(module, name)

        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                seconds[key] += time.perf_counter() - start
        setattr(module, name, wrapper)

    timed(ppo_loop, "collect", "rollout")
    timed(ppo_loop, "update", "update")
    timed(ppo_rollout, "sample", "generation")
    value_model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1)
    value_model.config.pad_token_id = tokenizer.pad_token_id
    settings = PPOConfig(output_dir="/tmp/ppo_profile", use_cpu=True, seed=0, learning_rate=1e-4, max_steps=args.steps,
                         per_device_train_batch_size=16, logging_steps=5, disable_tqdm=True, report_to=[],
                         kl_coef=0.05, response_length=48, num_ppo_epochs=4, whiten_rewards=True)
    load_before = os.getloadavg()
    start = time.perf_counter()
    ppo_loop.train(settings, load_causal_lm(base), value_model, load_causal_lm(base).requires_grad_(False), tokenizer,
                   prompts, ids, reward)
    total = time.perf_counter() - start
    print(f"total {total:.1f} s: updates {seconds['update']:.1f} s, rollouts {seconds['rollout']:.1f} s "
          f"(generation {seconds['generation']:.1f} s); {args.threads} torch thread(s); load before "
          f"{load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
