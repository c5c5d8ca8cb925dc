"""PPO's trainer config: transformers' TrainingArguments (optimiser, schedule, precision, report_to, progress bar)
plus PPO's own fields. The stage sets the PPO fields from the `ppo:`, `rl:` and `beta` settings (trainer_fields.py);
a training block's `trainer:` mapping reaches the rest.

Of TrainingArguments the PPO loop reads: the optimiser (`optim`, `optim_args`, Adam's betas and epsilon,
`weight_decay`), the schedule (`lr_scheduler_type`, `lr_scheduler_kwargs`, warm-up), `max_grad_norm`, `max_steps`
(rollout batches per process), `logging_steps`, `report_to`, `disable_tqdm`, `seed` and the precision flags.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments

@dataclass
class PPOConfig(TrainingArguments):
    """PPO's fields (see pipelines/training/ppo_loop.py for how each is used)."""

    kl_coef: float = field(default=0.05, metadata={"help": "KL coefficient β (its initial value when adaptive)."})
    kl_target: float | None = field(
        default=None, metadata={"help": "Target KL per response of the adaptive controller; None: β fixed."})
    kl_horizon: float | None = field(
        default=None, metadata={"help": "Horizon (responses) of the adaptive controller; None: β fixed."})
    kl_estimator: Literal["k1", "k3"] = field(default="k1", metadata={"help": "Per-token KL estimator."})
    response_length: int = field(default=48, metadata={"help": "Most tokens of a response."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the rollouts."})
    num_ppo_epochs: int = field(default=4, metadata={"help": "Passes over each rollout batch."})
    num_mini_batches: int = field(default=1, metadata={"help": "Minibatches (optimiser steps) per pass."})
    cliprange: float = field(default=0.2, metadata={"help": "Policy ratio clip ε."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Value prediction clip."})
    vf_coef: float = field(default=0.1, metadata={"help": "Value loss weight."})
    gamma: float = field(default=1.0, metadata={"help": "Discount γ."})
    lam: float = field(default=0.95, metadata={"help": "GAE λ."})
    whiten_rewards: bool = field(default=False, metadata={"help": "Scale per-token rewards by their std."})
    missing_eos_penalty: float | None = field(
        default=None, metadata={"help": "Subtracted from the score of a response without EOS."})
    local_rollout_forward_batch_size: int = field(
        default=64, metadata={"help": "Responses per no-grad forward pass (reference, values) in a rollout."})
    ds3_gather_for_generation: bool = field(
        default=True, metadata={"help": "ZeRO-3: gather the policy's weights for generation."})

    def __post_init__(self):
        super().__post_init__()
        if (self.kl_target is None) != (self.kl_horizon is None):
            raise ValueError("kl_target and kl_horizon go together: both set (adaptive β) or both None (fixed β)")
        if self.local_rollout_forward_batch_size < 1:
            raise ValueError("local_rollout_forward_batch_size must be at least 1")
