"""PPO reaches the known optimum of a one-token bandit.

The response is one token: an arm. The reward is 1 for the arms of set A (tokens whose text starts with a letter
a–m), 0 otherwise, and the per-token KL penalty makes the objective E_π[r] − β·KL(π‖π0), whose maximiser is known in
closed form: π*(a) ∝ π0(a)·exp(r(a)/β), so P*(A) = p0·e^{1/β} / (p0·e^{1/β} + 1 − p0) with p0 = P_π0(A). PPO must
move the policy's exact probability of A (read off its logits, no sampling) from p0 to P*(A) — not to 1, which a
policy without the KL term would approach, and not toward 0.
"""
from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from lines.models import load_causal_lm
from pipelines.training import ppo_loop
from pipelines.training.checkpoints import load_tokenizer
from pipelines.training.ppo_config import PPOConfig
from reward_models import build_rewards
from reward_models.text_format import policy_prompt_ids
from train_helpers import one_torch_thread, tiny_base  # noqa: F401

PROMPT = "The food was"
BETA = 0.5


def in_a(text: str) -> bool:
    text = text.strip().lower()
    return bool(text) and "a" <= text[0] <= "m"


def arm_reward(prompts, responses):
    return [1.0 if in_a(r) else 0.0 for r in responses]


def arms(tokenizer) -> torch.Tensor:
    """Which vocabulary entries are arms of A, as the reward sees each one-token response."""
    special = set(tokenizer.all_special_ids)
    return torch.tensor([tid not in special and in_a(tokenizer.decode([tid], skip_special_tokens=True))
                         for tid in range(len(tokenizer))])


def probability_of_a(model, tokenizer, members: torch.Tensor) -> float:
    ids = torch.tensor([policy_prompt_ids(tokenizer, PROMPT)])
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1)
    return probs[: len(members)][members].sum().item()


@pytest.mark.slow  # 80 PPO steps on a tiny model (~15 s)
def test_ppo_reaches_the_kl_regularised_optimum_of_a_two_armed_bandit(tiny_base, tmp_path):
    tokenizer = load_tokenizer(tiny_base)
    members = arms(tokenizer)
    policy = load_causal_lm(tiny_base)
    p0 = probability_of_a(policy, tokenizer, members)
    optimum = p0 * math.exp(1 / BETA) / (p0 * math.exp(1 / BETA) + 1 - p0)
    assert 0.1 < p0 < 0.7 and optimum - p0 > 0.2  # an interior optimum, well away from the start and from 1

    reward = build_rewards([{"name": "arm", "type": "callable", "target": "test_ppo_bandit:arm_reward"}])[0]
    value_model = AutoModelForSequenceClassification.from_pretrained(str(tiny_base), num_labels=1)
    value_model.config.pad_token_id = tokenizer.pad_token_id
    reference = load_causal_lm(tiny_base).requires_grad_(False)
    args = PPOConfig(output_dir=str(tmp_path), use_cpu=True, seed=0, learning_rate=3e-3, max_steps=80,
                     per_device_train_batch_size=32, lr_scheduler_type="constant", logging_steps=40,
                     disable_tqdm=True, report_to=[], kl_coef=BETA, response_length=1, num_ppo_epochs=4,
                     num_mini_batches=2, vf_coef=0.5, max_grad_norm=10.0)
    result = ppo_loop.train(args, policy, value_model, reference, tokenizer, [PROMPT] * 32,
                            [policy_prompt_ids(tokenizer, PROMPT)] * 32, reward)
    reached = probability_of_a(result.accelerator.unwrap_model(result.model).policy, tokenizer, members)
    assert reached == pytest.approx(optimum, abs=0.05), (p0, optimum, reached)
