"""Online RL with the reward as the signal: trl's RLOO and GRPO, with a KL penalty `beta` to θ0 (PPO: ppo.py)."""
from __future__ import annotations

import gc
from pathlib import Path

from ..distributed import barrier
from .checkpoints import load_tokenizer
from .curves import training_curve
from .environment import model_dtypes
from .jobs import PolicyJob, TrainOutcome, trl_prompt
from .rewards import TrlRewardFunction
from .trainer_args import lora_config, trainer_config


def rl_args(job: PolicyJob, config_cls):
    settings = job.settings
    return trainer_config(config_cls, settings.algorithm, settings, job.trainer_dir(), job.seed, job.where,
                          model_init_kwargs={"dtype": model_dtypes(settings, job.where).load})


def train_online(job: PolicyJob, out_dir: Path) -> TrainOutcome:
    from datasets import Dataset  # heavy: only when online RL trains
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer  # heavy: only when online RL trains

    trainer_cls, config_cls = {"rloo": (RLOOTrainer, RLOOConfig), "grpo": (GRPOTrainer, GRPOConfig)}[
        job.settings.algorithm]
    tokenizer = load_tokenizer(job.base_path, padding_side="left")  # generation continues from the right edge
    dataset = Dataset.from_list([{"prompt": trl_prompt(tokenizer, p.prompt)} for p in job.train_prompts])
    lora = job.settings.lora
    trainer = trainer_cls(model=str(job.base_path), reward_funcs=[TrlRewardFunction(job.reward)],
                          args=rl_args(job, config_cls), train_dataset=dataset, processing_class=tokenizer,
                          peft_config=lora_config(lora) if lora is not None else None)
    return train_and_save(trainer, out_dir, {"algorithm": job.settings.algorithm})


def train_and_save(trainer, out_dir: Path, details: dict) -> TrainOutcome:
    """Train, save the policy, keep the curve, and free the trainer before the next policy starts."""
    trainer.train()
    trainer.save_model(str(out_dir))
    curve = training_curve(trainer.state.log_history)
    del trainer
    gc.collect()
    barrier()
    return TrainOutcome(curve, details)
